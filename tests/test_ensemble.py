"""Logit averaging, the selection procedures on hand-checkable cases, and submissions."""

from __future__ import annotations

import json
import os
import resource
import signal
import stat
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
import torch

from lib.core import families
from lib.core.files import atomic_path, atomic_write_text, current_umask
from lib.core.metrics import aggregated_log_loss
from lib.core.paths import REPO_ROOT
from lib.core.schema import LABELS
from lib.ensemble import collect, selection, submission
from lib.explain import scoring
from lib.runs import run_folder
from lib.train import checkpoint
from lib.train.checkpoint import check_model_file


def test_mean_logits_by_hand():
    probs = np.array([[[0.5] * 9], [[0.9] * 9]])  # 2 runs, 1 sample
    out = selection.mean_logits(probs)
    expected = 1 / (1 + np.exp(-(0 + np.log(9)) / 2))  # sigmoid(mean(logit)) = 0.75
    np.testing.assert_allclose(out, np.full((1, 9), expected), rtol=1e-6)
    assert expected == pytest.approx(0.75)
    clipped = selection.mean_logits(np.array([[[0.0] * 9], [[1.0] * 9]]))  # clip 1e-4 each side
    np.testing.assert_allclose(clipped, 0.5, atol=1e-6)


def test_selection_score_takes_the_best_clip():
    labels = np.zeros((4, 9))
    labels[0] = 1
    confident = np.where(labels == 1, 1.0 - 1e-9, 1e-9)
    confident[1, 0] = 1 - 1e-9  # one confident mistake: clipping helps a lot
    score, clip = selection.selection_score(confident, labels)
    assert clip > 0
    assert score == pytest.approx(aggregated_log_loss(labels, confident * (1 - 2 * clip) + clip))
    assert score < aggregated_log_loss(labels, confident)
    assert selection.selection_score(np.full((4, 9), 0.25), labels)[1] == 0.0


def three_runs():
    """Run 0 good, run 1 its near copy with small errors, run 2 wrong where 0 is unsure."""
    labels = np.array([[1] * 9, [0] * 9, [1] * 9, [0] * 9], dtype=float)
    good = np.where(labels == 1, 0.8, 0.2)
    near = np.where(labels == 1, 0.75, 0.2)
    bad = np.where(labels == 1, 0.3, 0.6)
    return np.stack([near, good, bad]), labels


def test_grow_by_one_by_hand():
    probs, labels = three_runs()
    trace = []
    chosen = selection.grow_by_one(probs, labels, trace=trace)
    assert chosen == [1]  # the best single run; adding others only hurts
    assert [size for size, _ in trace] == [1, 2, 3]
    assert trace[0][1] == pytest.approx(selection.selection_score(probs[1], labels)[0])
    assert trace[0][1] < trace[1][1] < trace[2][1]


def test_grow_by_one_adds_a_complementary_run():
    labels = np.array([[1] * 9, [0] * 9], dtype=float)
    first = np.array([[0.9] * 9, [0.6] * 9])  # good on sample 0 only
    second = np.array([[0.6] * 9, [0.1] * 9])  # good on sample 1 only
    useless = np.full((2, 9), 0.5)
    chosen = selection.grow_by_one(np.stack([useless, first, second]), labels)
    assert sorted(chosen) == [1, 2] and len(chosen) == 2


def test_remove_by_one_by_hand():
    probs, labels = three_runs()
    trace = []
    kept = selection.remove_by_one(probs, labels, trace=trace)
    assert kept == [1]  # drop the bad run first, then the weaker copy
    assert [size for size, _ in trace] == [3, 2, 1]
    only_good = selection.remove_by_one(probs[:2], labels)
    assert only_good == [1]


def test_remove_by_one_keeps_everything_when_all_help():
    labels = np.array([[1] * 9, [0] * 9], dtype=float)
    first = np.array([[0.9] * 9, [0.6] * 9])
    second = np.array([[0.6] * 9, [0.1] * 9])
    assert selection.remove_by_one(np.stack([first, second]), labels) == [0, 1]


def test_make_and_validate_submission():
    fmt = pd.DataFrame({"sample_id": ["S2", "S1"], **{c: 0.5 for c in LABELS}})
    probs = np.array([[0.1] * 9, [0.9] * 9])
    sub = submission.make_submission(["S1", "S2"], probs, fmt)
    assert sub["sample_id"].tolist() == ["S2", "S1"]
    np.testing.assert_allclose(sub[list(LABELS)].to_numpy(), probs[::-1])
    with pytest.raises(ValueError, match="no predictions for 1 submission rows"):
        submission.make_submission(["S1"], probs[:1], fmt)
    bad = sub.copy()
    bad.loc[0, "mineral"] = np.nan
    with pytest.raises(ValueError, match="1 NaN probabilities"):
        submission.validate_submission(bad, fmt)
    bad.loc[0, "mineral"] = 1.5
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        submission.validate_submission(bad, fmt)
    with pytest.raises(ValueError, match="sample ids differ"):
        submission.validate_submission(sub.iloc[::-1], fmt)
    with pytest.raises(ValueError, match="columns"):
        submission.validate_submission(sub.drop(columns=["mineral"]), fmt)


def one_row(p: float) -> pd.DataFrame:
    return pd.DataFrame({"sample_id": ["S1"], **{label: [p] for label in LABELS}})


def tree(folder) -> dict[str, str]:
    """Every entry under ``folder``: a file's text, a link's target, a folder's "<folder>"."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            found[os.path.relpath(path, folder)] = (
                f"-> {os.readlink(path)}" if os.path.islink(path) else
                "<folder>" if os.path.isdir(path) else open(path).read())
    return found


def test_outputs_replace_the_old_pair_and_its_explanations_as_one(tmp_path):
    """submission.csv and selection.json are replaced together, and 06's explanations of the
    old pair go with it; a file of the folder outside the set is not touched."""
    out = tmp_path / "ensemble"
    out.mkdir()
    for name, text in (("submission.csv", "old"), ("selection.json", "{}"),  # written before
                       ("explain_scores.json", "{}"), ("explain_ensemble.png", "png"),  # this
                       ("notes.txt", "mine")):  # layout, and a file of the user's
        (out / name).write_text(text)
    path = submission.write_outputs(out, one_row(0.25), {"models": ["a"]})
    assert path == out / "submission.csv"
    pd.testing.assert_frame_equal(pd.read_csv(path), one_row(0.25))
    assert json.loads((out / "selection.json").read_text()) == {"models": ["a"]}
    assert sorted(os.listdir(out)) == ["notes.txt", "selection.json", "submission.csv",
                                       "versions"]
    assert (out / "notes.txt").read_text() == "mine"
    in_force = (out / "versions" / "current").resolve()
    assert sorted(os.listdir(out / "versions")) == sorted(["current", in_force.name])
    assert stat.S_IMODE(in_force.stat().st_mode) == 0o777 & ~current_umask()
    # 06 then explains the new pair beside it, with its own writers
    scoring.save_scores(out, {"ensemble": {"aromatic": {"map_share": 0.5}}}, "")
    with atomic_path(out / "explain_ensemble.png") as figure:
        figure.write_bytes(b"png")
    assert (out / scoring.SCORES_FILE).is_file() and (out / "explain_ensemble.png").is_file()
    submission.write_outputs(out, one_row(0.75), {"models": ["b"]})
    pd.testing.assert_frame_equal(pd.read_csv(out / "submission.csv"), one_row(0.75))
    assert json.loads((out / "selection.json").read_text()) == {"models": ["b"]}
    assert sorted(os.listdir(out)) == ["notes.txt", "selection.json", "submission.csv",
                                       "versions"]
    assert len(os.listdir(out / "versions")) == 2  # current and the version it names
    # the files retired with the pair are the ones 06 writes
    assert set(submission.EXPLANATION_FILES) == {
        scoring.SCORES_FILE, "explain_ensemble.png"}
    assert "explain_ensemble.png" in (REPO_ROOT / "notebooks" / "06_explain.ipynb").read_text()


@contextmanager
def file_size_limit(size: int):
    """Writes past ``size`` bytes fail with EFBIG, as writes on a full disk fail with ENOSPC
    (the kernel's RLIMIT_FSIZE, with SIGXFSZ ignored so that the write raises)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


@pytest.mark.parametrize("failure", ["full disk", "not JSON", "folder in the way"])
def test_a_failed_write_leaves_the_old_set_as_it_was(tmp_path, failure):
    """The new submission.csv is written, selection.json is not: the old pair and its
    explanation stay, and no new version folder is left behind."""
    out = tmp_path / "ensemble"
    submission.write_outputs(out, one_row(0.25), {"models": ["old"]})
    atomic_write_text(out / scoring.SCORES_FILE, "{}")  # 06's, about the old pair
    new = {"models": ["new"], "padding": "x" * 100_000}
    if failure == "folder in the way":
        (out / "explain_ensemble.png").mkdir()
    before = tree(out)
    if failure == "full disk":
        with file_size_limit(10_000), pytest.raises(OSError, match="too large.*selection.json"):
            submission.write_outputs(out, one_row(0.75), new)
    elif failure == "not JSON":
        with pytest.raises(ValueError, match="selection.json: the selection cannot be written"):
            submission.write_outputs(out, one_row(0.75), {**new, "score": np.float32(0.5)})
    else:
        with pytest.raises(IsADirectoryError, match="explain_ensemble.png is not a file"):
            submission.write_outputs(out, one_row(0.75), new)
    assert tree(out) == before
    pd.testing.assert_frame_equal(pd.read_csv(out / "submission.csv"), one_row(0.25))
    assert json.loads((out / "selection.json").read_text()) == {"models": ["old"]}


def test_check_finite_names_the_samples():
    from lib.ensemble.submission import check_finite

    values = np.full((4, 9), 0.5)
    check_finite(["a", "b", "c", "d"], values)
    values[1, 3], values[3, 0] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"predictions: non-finite values for 2 samples: "
                       r"\['b', 'd'\]"):
        check_finite(["a", "b", "c", "d"], values)


def fake_model_runs(root, name, folds, test_ids, rng, *, order=None, skip_done=()):
    """Run folders of one model with random logits and a small checkpoint; returns the true
    OOF logits by id."""
    truth = {}
    for k in order or sorted(folds["fold"].unique()):
        run_dir = root / name / "net" / f"fold{k}_seed0"
        run_dir.mkdir(parents=True)
        ids = folds.loc[folds["fold"] == k, "sample_id"].tolist()
        logits = rng.normal(size=(len(ids), 9))
        truth.update(zip(ids, logits))
        shuffled = rng.permutation(len(test_ids))
        run_folder.write_predictions(run_dir, run_folder.label_frame(ids[::-1], logits[::-1]),
                               run_folder.label_frame(np.array(test_ids)[shuffled],
                                                np.full((len(test_ids), 9), float(k))))
        checkpoint.save_checkpoint(run_dir / run_folder.CHECKPOINT, {"w": torch.zeros(2)},
                                   {"fold": int(k)})
        if k not in skip_done:
            run_folder.mark_done(run_dir)
    return truth


def folds_table(n=12, k=3):
    return pd.DataFrame({"sample_id": [f"S{i:04d}" for i in range(n)],
                         "fold": [i % k for i in range(n)]})


def test_collect_models_aligns_by_sample_id(tmp_path):
    rng = np.random.default_rng(0)
    folds, test_ids = folds_table(), ["S0100", "S0101"]
    truth = fake_model_runs(tmp_path, "a", folds, test_ids, rng, order=[2, 0, 1])
    run_dirs = sorted((tmp_path / "a" / "net").iterdir(), reverse=True)
    collected = collect.collect_models(run_dirs, folds, test_ids, check_model=check_model_file)
    assert collected.names == ["a/net/seed0"] and not collected.problems
    expected = 1 / (1 + np.exp(-np.stack([truth[s] for s in folds["sample_id"]])))
    np.testing.assert_allclose(collected.oof_probs[0], expected, rtol=1e-5)
    # test probabilities: mean over folds of sigmoid(k), in test_ids order
    mean = np.mean([1 / (1 + np.exp(-k)) for k in range(3)])
    np.testing.assert_allclose(collected.test_probs[0], mean, rtol=1e-6)


def test_collect_models_reads_the_last_epoch_oof_where_every_fold_has_it(tmp_path):
    rng = np.random.default_rng(0)
    folds, test_ids = folds_table(), ["S0100", "S0101"]
    fake_model_runs(tmp_path, "a", folds, test_ids, rng)
    fake_model_runs(tmp_path, "b", folds, test_ids, rng)
    last = {}
    for k in range(3):
        ids = folds.loc[folds["fold"] == k, "sample_id"].tolist()
        logits = rng.normal(size=(len(ids), 9))
        last.update(zip(ids, logits))
        for name in ("a", "b"):
            if name == "a" or k != 1:  # b's fold 1 lacks it
                run_dir = tmp_path / name / "net" / f"fold{k}_seed0"
                run_folder.label_frame(ids[::-1], logits[::-1]).to_csv(
                    run_dir / run_folder.OOF_LOGITS_LAST, index=False)
    collected = collect.collect_models(sorted(tmp_path.glob("*/net/fold*")), folds, test_ids,
                                       check_model=check_model_file)
    assert collected.names == ["a/net/seed0", "b/net/seed0"]
    expected = 1 / (1 + np.exp(-np.stack([last[s] for s in folds["sample_id"]])))
    np.testing.assert_allclose(collected.oof_last_probs[0], expected, rtol=1e-5)
    assert np.isnan(collected.oof_last_probs[1]).all()


def test_collect_models_refuses_incomplete_models(tmp_path):
    rng = np.random.default_rng(1)
    folds, test_ids = folds_table(), ["S0100", "S0101"]
    fake_model_runs(tmp_path, "good", folds, test_ids, rng)
    fake_model_runs(tmp_path, "missing", folds, test_ids, rng, order=[0, 1])
    fake_model_runs(tmp_path, "unfinished", folds, test_ids, rng, skip_done=(1,))
    fake_model_runs(tmp_path, "other_ids", folds, ["S0100", "S0999"], rng)
    fake_model_runs(tmp_path, "nan", folds, test_ids, rng)
    nan_oof = tmp_path / "nan" / "net" / "fold0_seed0" / run_folder.OOF_LOGITS
    broken = pd.read_csv(nan_oof)
    broken.loc[0, "mineral"] = np.nan
    broken.to_csv(nan_oof, index=False)
    run_dirs = sorted(tmp_path.glob("*/net/fold*"))
    collected = collect.collect_models(run_dirs, folds, test_ids, check_model=check_model_file)
    assert collected.names == ["good/net/seed0"]
    problems = "\n".join(collected.problems)
    model = {name: tmp_path / name / "net"
             for name in ("missing", "unfinished", "other_ids", "nan")}
    assert (f"missing/net/seed0: left out: no run folder for fold(s) [2] (looked for "
            f"{model['missing'] / 'fold2_seed0'})") in problems
    assert (f"unfinished/net/seed0: left out: fold(s) [1] not finished: no "
            f"{model['unfinished'] / 'fold1_seed0' / 'DONE'}") in problems
    assert (f"other_ids/net/seed0: left out: fold 0: {model['other_ids'] / 'fold0_seed0'}"
            f"/test_logits.csv: its sample ids differ") in problems
    assert (f"nan/net/seed0: left out: fold 0: {model['nan'] / 'fold0_seed0'}/oof_logits.csv: "
            f"non-finite logits") in problems
    assert collected.oof_probs.shape == (1, 12, 9)


def test_collect_models_leaves_out_runs_trained_on_other_data(tmp_path):
    rng = np.random.default_rng(2)
    folds, test_ids = folds_table(), ["S0100", "S0101"]
    for name in ("same", "other", "unrecorded"):
        fake_model_runs(tmp_path, name, folds, test_ids, rng)
        for run_dir in (tmp_path / name / "net").iterdir():
            if name != "unrecorded":
                fingerprint = "abc" if name == "same" or run_dir.name != "fold1_seed0" else "xyz"
                run_folder.write_metrics(run_dir, {"data_fingerprint": fingerprint})
            else:
                run_folder.write_metrics(run_dir, {})
    run_dirs = sorted(tmp_path.glob("*/net/fold*"))
    collected = collect.collect_models(run_dirs, folds, test_ids, fingerprint="abc",
                                       check_model=check_model_file)
    assert collected.names == ["same/net/seed0"]
    problems = "\n".join(collected.problems)
    assert (f"other/net/seed0: left out: fold 1: trained on other data "
            f"({tmp_path / 'other/net/fold1_seed0/metrics.json'} has data fingerprint xyz, "
            f"this data is abc)") in problems
    assert "unrecorded/net/seed0: left out: fold 0: trained on other data" in problems
    # without a fingerprint to compare with, nothing is checked
    assert len(collect.collect_models(run_dirs, folds, test_ids,
                                  check_model=check_model_file).names) == 3


def test_collect_models_leaves_out_models_whose_model_file_does_not_load(tmp_path):
    """04 could not predict with these models, so the ensemble must not choose them."""
    rng = np.random.default_rng(3)
    folds, test_ids = folds_table(), ["S0100", "S0101"]
    for name in ("good", "truncated", "deleted", "feature"):
        fake_model_runs(tmp_path, name, folds, test_ids, rng)
    fold = {name: tmp_path / name / "net" / "fold1_seed0"
            for name in ("truncated", "deleted", "feature")}
    truncated = fold["truncated"] / run_folder.CHECKPOINT
    truncated.write_bytes(truncated.read_bytes()[:200])
    (fold["deleted"] / run_folder.CHECKPOINT).unlink()
    (fold["feature"] / run_folder.CHECKPOINT).unlink()
    (fold["feature"] / "feature_model.json").write_text('{"format": "mars-gcms feature mo')
    collected = collect.collect_models(sorted(tmp_path.glob("*/net/fold*")), folds, test_ids,
                                       check_model=check_model_file)
    assert collected.names == ["good/net/seed0"]
    problems = "\n".join(collected.problems)
    assert (f"truncated/net/seed0: left out: fold 1: {truncated}: cannot load the "
            f"checkpoint") in problems
    assert (f"deleted/net/seed0: left out: fold 1: {fold['deleted']}: no model file "
            f"(checkpoint.pt or feature_model.json)") in problems
    assert (f"feature/net/seed0: left out: fold 1: {fold['feature'] / 'feature_model.json'}: "
            f"not readable as JSON") in problems


def test_select_keeps_the_better_procedure_and_indexes_the_full_axis():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, size=(60, 9))
    truth_like = np.clip(labels * 0.7 + 0.15 + rng.normal(0, 0.1, labels.shape), 0.01, 0.99)
    noise = rng.uniform(0.05, 0.95, size=(3, 60, 9))
    oof = np.concatenate([noise, truth_like[None]])  # run 3 is the informative one
    picked = selection.select(oof, labels)
    assert 3 in picked.chosen and picked.method in picked.scores
    assert picked.score == min(picked.scores.values())
    only_noise = selection.select(oof, labels, candidates=[0, 2])
    assert set(only_noise.chosen) <= {0, 2} and only_noise.score > picked.score
    with pytest.raises(ValueError, match="no candidate"):
        selection.select(oof, labels, candidates=[])


def test_model_family_from_the_backbone():
    assert families.model_family("features_lr/logistic/seed0") == "features: logistic"
    assert families.model_family("features_gbm/lightgbm/seed1") == "features: lightgbm"
    assert families.model_family("demo_seq1d/seq1d_tiny/seed0") == "1D sequence"
    assert families.model_family("demo/mobilenetv3_small_100/seed0") == "2D CNN"


def test_without_each_family_selects_from_the_other_families_only():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, size=(40, 9))
    oof = rng.uniform(0.05, 0.95, size=(4, 40, 9))
    names = ["a/resnet18/seed0", "b/logistic/seed0", "c/seq1d/seed0", "d/resnet18/seed1"]
    result = selection.without_each_family(names, oof, labels)
    assert list(result) == ["2D CNN", "features: logistic", "1D sequence"]
    assert set(result["2D CNN"].chosen) <= {1, 2}
    assert set(result["1D sequence"].chosen) <= {0, 1, 3}
    assert selection.without_each_family(names[:1], oof[:1], labels) == {"2D CNN": None}
