"""Combining runs (method.md section 7): the candidates (finished run folders grouped into
models, collect_models), logit averaging, the selection score, grow-by-one and remove-by-one,
and the submission.

Shapes: oof_probs (runs, samples, 9) probabilities; labels (samples, 9) 0/1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lib.feature_settings import LEARNERS
from lib.metrics import aggregated_log_loss
from lib.runs import (
    DONE,
    FOLD_DIR,
    METRICS,
    OOF_LOGITS,
    OOF_LOGITS_LAST,
    TEST_LOGITS,
    CheckpointError,
    check_model_file,
    is_done,
    model_key,
    read_logits,
    read_metrics,
)
from lib.schema import LABELS

LOGIT_CLIP = 1e-4
# Post-hoc clips tried when scoring a combination: p' = p (1 - 2c) + c.
SCORE_CLIPS = np.concatenate([[0.0], np.logspace(-5, -1, 20)])
MAX_GROW = 30  # the reference grows at most 30 runs


def to_logits(probabilities: np.ndarray, clip: float = LOGIT_CLIP) -> np.ndarray:
    """Probabilities clipped to [clip, 1 - clip] -> logits (float64), same shape."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), clip, 1 - clip)
    return np.log(p / (1 - p))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-logits))


def mean_logits(probabilities: np.ndarray, clip: float = LOGIT_CLIP) -> np.ndarray:
    """(runs, n, 9) probabilities -> (n, 9) float32: clip, logit, mean over runs, sigmoid."""
    return sigmoid(to_logits(probabilities, clip).mean(axis=0)).astype(np.float32)


def selection_score(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(score, clip): the lowest aggregated log loss of p (1 - 2c) + c over c in SCORE_CLIPS
    (the first c on ties). probabilities, labels: (n, 9)."""
    losses = [aggregated_log_loss(labels, probabilities * (1 - 2 * c) + c) for c in SCORE_CLIPS]
    best = int(np.argmin(losses))
    return float(losses[best]), float(SCORE_CLIPS[best])


def grow_by_one(oof_probs: np.ndarray, labels: np.ndarray, max_runs: int = MAX_GROW,
                trace: list | None = None) -> list[int]:
    """Start empty; repeatedly add the run whose addition scores lowest (the lowest index on
    ties), up to ``max_runs`` additions. Returns the chosen runs in the order they were added,
    cut at the lowest-scoring prefix (the shortest on ties).

    trace: if a list is given, (number of runs, score) of every step is appended to it.
    """
    logits = to_logits(oof_probs)
    chosen: list[int] = []
    total = np.zeros(logits.shape[1:])
    best_score, best_size = np.inf, 0
    while len(chosen) < min(max_runs, len(logits)):
        candidates = [r for r in range(len(logits)) if r not in chosen]
        scores = [selection_score(sigmoid((total + logits[r]) / (len(chosen) + 1)), labels)[0]
                  for r in candidates]
        pick = int(np.argmin(scores))
        chosen.append(candidates[pick])
        total += logits[candidates[pick]]
        if trace is not None:
            trace.append((len(chosen), scores[pick]))
        if scores[pick] < best_score:
            best_score, best_size = scores[pick], len(chosen)
    return chosen[:best_size]


def remove_by_one(oof_probs: np.ndarray, labels: np.ndarray,
                  trace: list | None = None) -> list[int]:
    """Start with every run; repeatedly drop the run whose removal scores lowest (the first on
    ties) down to one run. Returns the best-scoring set seen, all runs included (ascending).

    trace: if a list is given, (number of runs, score) of the full set and of every step.
    """
    logits = to_logits(oof_probs)
    current = list(range(len(logits)))
    best_score = selection_score(sigmoid(logits.mean(axis=0)), labels)[0]
    best_set = list(current)
    if trace is not None:
        trace.append((len(current), best_score))
    total = logits.sum(axis=0)
    while len(current) > 1:
        scores = [selection_score(sigmoid((total - logits[r]) / (len(current) - 1)), labels)[0]
                  for r in current]
        pick = int(np.argmin(scores))
        total -= logits[current.pop(pick)]
        if trace is not None:
            trace.append((len(current), scores[pick]))
        if scores[pick] < best_score:
            best_score, best_set = scores[pick], list(current)
    return best_set


@dataclass
class Selection:
    """The outcome of select: ``chosen`` (indices of the candidate axis, the better of the two
    procedures), ``method`` ("grow-by-one" or "remove-by-one"), ``score`` (its selection
    score), both procedures' sets (``grown``, ``kept``) and scores (``scores``), and their
    (number of runs, score) traces."""

    chosen: list[int]
    method: str
    score: float
    grown: list[int]
    kept: list[int]
    scores: dict[str, float]
    grow_trace: list
    remove_trace: list


def select(oof_probs: np.ndarray, labels: np.ndarray, candidates: list[int] | None = None
           ) -> Selection:
    """Grow-by-one and remove-by-one over ``candidates`` (default: every run of oof_probs,
    (runs, n, 9)); the set with the lower selection score wins (grow-by-one on ties). Indices in
    the result are those of oof_probs."""
    pool = list(range(len(oof_probs))) if candidates is None else list(candidates)
    if not pool:
        raise ValueError("no candidate to select from")
    grow_trace, remove_trace = [], []
    grown = [pool[i] for i in grow_by_one(oof_probs[pool], labels, trace=grow_trace)]
    kept = [pool[i] for i in remove_by_one(oof_probs[pool], labels, trace=remove_trace)]
    scores = {name: selection_score(mean_logits(oof_probs[chosen]), labels)[0]
              for name, chosen in (("grow-by-one", grown), ("remove-by-one", kept))}
    method = min(scores, key=scores.get)
    chosen = grown if method == "grow-by-one" else kept
    return Selection(chosen, method, scores[method], grown, kept, scores, grow_trace,
                     remove_trace)


def model_family(key: str) -> str:
    """The family of a model key <name>/<backbone>/seed<s>, from its backbone: "features:
    <learner>" for a feature learner (lib.feature_settings.LEARNERS), "1D sequence" for a
    lib.models.SEQ_BACKBONES name, else "2D CNN" (a timm backbone)."""
    from lib.models import SEQ_BACKBONES  # torch, only when asked

    backbone = key.rsplit("/", 2)[-2]
    if backbone in LEARNERS:
        return f"features: {backbone}"
    return "1D sequence" if backbone in SEQ_BACKBONES else "2D CNN"


def without_each_family(names: list[str], oof_probs: np.ndarray, labels: np.ndarray
                        ) -> dict[str, Selection | None]:
    """{family: the selection over every model but that family's} for each family among
    ``names`` (model_family; oof_probs (runs, n, 9) in names' order). None where no other
    family is left to select from."""
    family_of = [model_family(name) for name in names]
    result = {}
    for family in dict.fromkeys(family_of):
        others = [i for i, f in enumerate(family_of) if f != family]
        result[family] = select(oof_probs, labels, others) if others else None
    return result


def validate_submission(submission: pd.DataFrame, submission_format: pd.DataFrame,
                        source: str = "submission") -> None:
    """ValueError unless ``submission`` has submission_format's ids in its order, its columns,
    and probabilities in [0, 1] without NaN."""
    if list(submission.columns) != list(submission_format.columns):
        raise ValueError(f"{source}: columns {list(submission.columns)} differ from the "
                         f"submission format's {list(submission_format.columns)}")
    if submission["sample_id"].tolist() != submission_format["sample_id"].tolist():
        raise ValueError(f"{source}: sample ids differ from the submission format's "
                         f"(rows and order must match)")
    values = submission[list(LABELS)].to_numpy(dtype=np.float64)
    if np.isnan(values).any():
        raise ValueError(f"{source}: {int(np.isnan(values).sum())} NaN probabilities")
    if (values < 0).any() or (values > 1).any():
        raise ValueError(f"{source}: probabilities outside [0, 1]")


def check_finite(sample_ids, values: np.ndarray, source: str = "predictions") -> None:
    """ValueError naming the samples (up to 10) whose row of ``values`` (n, 9) holds NaN or
    inf; sample_ids (n,)."""
    bad = ~np.isfinite(np.asarray(values, dtype=np.float64)).all(axis=1)
    if bad.any():
        names = [str(s) for s, b in zip(sample_ids, bad) if b]
        raise ValueError(f"{source}: non-finite values for {len(names)} samples: {names[:10]}"
                         + (" ..." if len(names) > 10 else ""))


def make_submission(sample_ids, probabilities: np.ndarray,
                    submission_format: pd.DataFrame) -> pd.DataFrame:
    """(n,) ids + (n, 9) probabilities -> a validated DataFrame in submission_format's order."""
    frame = pd.DataFrame(probabilities, columns=list(LABELS), index=list(sample_ids))
    missing = sorted(set(submission_format["sample_id"]) - set(frame.index))
    if missing:
        raise ValueError(f"no predictions for {len(missing)} submission rows, e.g. {missing[:3]}")
    submission = frame.loc[submission_format["sample_id"]].reset_index(names="sample_id")
    validate_submission(submission, submission_format)
    return submission


# ---- the candidates: finished run folders grouped into models ------------------------------

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
                   fingerprint: str | None = None) -> CollectedModels:
    """Group finished run folders into models (all folds of one name/backbone/seed) and
    assemble each model's predictions by sample_id.

    folds: sample_id, fold of every train sample (the OOF predictions must cover each fold
    exactly); test_ids: the val + test ids every run must predict; fingerprint: the
    data_fingerprint of the data being ensembled (every fold must have seen that data). A model
    with a missing, unfinished, mismatching or other-data fold, or one whose model file does
    not load (check_model_file), is left out and reported in ``problems`` with the fold and
    the file, never silently.
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
                                        fingerprint)
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
                    test_ids: list[str], fingerprint: str | None
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
            check_model_file(fold_dirs[k])
        except (ValueError, CheckpointError) as error:
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
