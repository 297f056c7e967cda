"""Collecting finished runs into models: each model's OOF logits over every training sample and
its test logits averaged over folds, checked against the data they saw."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lib.core.logits import sigmoid
from lib.core.schema import LABELS
from lib.runs.run_folder import (
    DONE,
    FOLD_DIR,
    METRICS,
    OOF_LOGITS,
    OOF_LOGITS_LAST,
    TEST_LOGITS,
    is_done,
    model_key,
    read_logits,
    read_metrics,
)


@dataclass
class CollectedModels:
    """Finished models ready for the ensemble.

    names: (R,) model keys (<name>/<backbone>/seed<s>), sorted; oof_probs: (R, n_train, 9)
    OOF probabilities in ``train_ids`` order; test_probs: (R, n_test, 9) mean over folds of the
    test probabilities in ``test_ids`` order; problems: one line per model left out and why;
    oof_last_probs: (R, n_train, 9) the last epoch's OOF probabilities (OOF_LOGITS_LAST), NaN
    for a model whose folds lack them (feature models, runs made before they existed).
    """

    names: list[str]
    oof_probs: np.ndarray
    test_probs: np.ndarray
    problems: list[str]
    oof_last_probs: np.ndarray


def collect_models(run_dirs: list[Path], folds: pd.DataFrame, test_ids: list[str],
                   fingerprint: str | None = None,
                   check_model: Callable[[Path], None] | None = None) -> CollectedModels:
    """Group finished run folders into models (all folds of one name/backbone/seed) and
    assemble each model's predictions by sample_id.

    folds: sample_id, fold of every train sample (the OOF predictions must cover each fold
    exactly); test_ids: the val + test ids every run must predict; fingerprint: the
    data_fingerprint of the data being ensembled (every fold must have seen that data). A model
    with a missing, unfinished, mismatching or other-data fold, or one whose model file does
    not load (``check_model(run_dir)`` raises ValueError or RuntimeError; 05 passes
    lib.train.checkpoint.check_model_file, so the ensemble itself never loads a model), is
    left out and reported in ``problems`` with the fold and the file, never silently.
    """
    by_model: dict[str, dict[int, Path]] = {}
    for run_dir in run_dirs:
        match = FOLD_DIR.search(Path(run_dir).name)
        if match:
            by_model.setdefault(model_key(run_dir), {})[int(match.group(1))] = Path(run_dir)
    train_ids = folds["sample_id"].tolist()
    fold_ids = {k: set(g["sample_id"]) for k, g in folds.groupby("fold")}
    names, oof_list, test_list, last_list, problems = [], [], [], [], []
    for name in sorted(by_model, key=_model_order):
        try:
            oof, test = _assemble_model(by_model[name], fold_ids, train_ids, test_ids,
                                        fingerprint, check_model)
        except ValueError as error:
            problems.append(f"{name}: left out: {error}")
            continue
        names.append(name)
        oof_list.append(oof)
        test_list.append(test)
        last_list.append(_last_epoch_oof(by_model[name], fold_ids, train_ids))
    shape = (0, 0, len(LABELS))
    return CollectedModels(names, np.stack(oof_list) if oof_list else np.zeros(shape),
                           np.stack(test_list) if test_list else np.zeros(shape), problems,
                           np.stack(last_list) if last_list else np.zeros(shape))


def _last_epoch_oof(fold_dirs: dict[int, Path], fold_ids: dict[int, set],
                    train_ids: list[str]) -> np.ndarray:
    """(n_train, 9) the last epoch's OOF probabilities of a model's folds, in train_ids order;
    all NaN unless every fold has a readable OOF_LOGITS_LAST with its fold's samples."""
    parts = []
    for k in sorted(fold_ids):
        path = fold_dirs[k] / OOF_LOGITS_LAST
        if not path.is_file():
            return np.full((len(train_ids), len(LABELS)), np.nan)
        part = read_logits(path)
        if set(part.index) != fold_ids[k]:
            return np.full((len(train_ids), len(LABELS)), np.nan)
        parts.append(part)
    return sigmoid(pd.concat(parts).loc[train_ids].to_numpy(dtype=np.float64))


def _assemble_model(fold_dirs: dict[int, Path], fold_ids: dict[int, set], train_ids: list[str],
                    test_ids: list[str], fingerprint: str | None,
                    check_model: Callable[[Path], None] | None
                    ) -> tuple[np.ndarray, np.ndarray]:
    missing = sorted(set(fold_ids) - set(fold_dirs))
    if missing:
        raise ValueError(f"no run folder for fold(s) {missing} (looked for "
                         f"{_sibling(fold_dirs, missing[0])})")
    unfinished = [k for k in sorted(fold_ids) if not is_done(fold_dirs[k])]
    if unfinished:
        raise ValueError(f"fold(s) {unfinished} not finished: no {fold_dirs[unfinished[0]] / DONE}")
    oof_parts, test_probs = [], []
    for k in sorted(fold_ids):
        if fingerprint is not None:
            seen = read_metrics(fold_dirs[k]).get("data_fingerprint")
            if seen != fingerprint:
                raise ValueError(f"fold {k}: trained on other data ({fold_dirs[k] / METRICS} "
                                 f"has data fingerprint {seen}, this data is {fingerprint})")
        try:
            if check_model is not None:
                check_model(fold_dirs[k])
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"fold {k}: {error}") from None
        oof = read_logits(fold_dirs[k] / OOF_LOGITS)
        if set(oof.index) != fold_ids[k] or len(oof) != len(fold_ids[k]):
            raise ValueError(f"fold {k}: {fold_dirs[k] / OOF_LOGITS}: its sample ids differ "
                             f"from the folds file's fold {k}")
        test = read_logits(fold_dirs[k] / TEST_LOGITS)
        if sorted(test.index) != sorted(test_ids) or len(test) != len(test_ids):
            raise ValueError(f"fold {k}: {fold_dirs[k] / TEST_LOGITS}: its sample ids differ "
                             f"from the data's val + test ids")
        if not np.isfinite(oof.to_numpy()).all() or not np.isfinite(test.to_numpy()).all():
            bad = OOF_LOGITS if not np.isfinite(oof.to_numpy()).all() else TEST_LOGITS
            raise ValueError(f"fold {k}: {fold_dirs[k] / bad}: non-finite logits")
        oof_parts.append(oof)
        test_probs.append(sigmoid(test.loc[test_ids].to_numpy(dtype=np.float64)))
    oof_logits = pd.concat(oof_parts).loc[train_ids].to_numpy(dtype=np.float64)
    return sigmoid(oof_logits), np.mean(test_probs, axis=0)


def _sibling(fold_dirs: dict[int, Path], fold: int) -> Path:
    """The folder fold ``fold`` would have, beside the model's other folds."""
    some = next(iter(fold_dirs.values()))
    seed = FOLD_DIR.search(some.name).group(2)
    return some.parent / f"fold{fold}_seed{seed}"


def _model_order(key: str) -> tuple:
    """(name, backbone, seed as a number): the reference's candidate order (ties in the
    selection go to the earlier model)."""
    name, backbone, seed = key.rsplit("/", 2)
    return name, backbone, int(seed.removeprefix("seed")) if seed[4:].isdigit() else seed
