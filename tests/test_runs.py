"""Run folders: where they are, refusal to overwrite finished runs, checkpoints, predictions."""

from __future__ import annotations

import os
import shutil
import stat

import numpy as np
import pandas as pd
import pytest
import torch

from lib import runs
from lib.models import build_model
from lib.paths import REPO_ROOT


def test_run_dir_resolution(tmp_path):
    assert runs.resolve_run_dir("", None, "hrnet_s3", "hrnet_w64.ms_in1k", 0, 3) == (
        REPO_ROOT / "runs" / "hrnet_s3" / "hrnet_w64" / "fold0_seed3")
    executed = tmp_path / "x" / "03_train.ipynb"
    assert runs.resolve_run_dir("", str(executed), "n", "b", 0, 0) == executed.parent
    given = runs.resolve_run_dir(str(tmp_path / "r"), str(executed), "n", "b", 0, 0)
    assert given == tmp_path / "r"


def test_start_run_refuses_finished_and_clears_interrupted(tmp_path):
    run_dir = tmp_path / "run"
    runs.start_run(run_dir)
    (run_dir / runs.OOF_LOGITS).write_text("partial")
    (run_dir / "03_train.ipynb").write_text("{}")
    runs.start_run(run_dir)  # an interrupted run: its leftovers go, the notebook stays
    assert not (run_dir / runs.OOF_LOGITS).exists() and (run_dir / "03_train.ipynb").exists()
    (run_dir / runs.OOF_LOGITS).write_text("finished")
    runs.mark_done(run_dir)
    with pytest.raises(runs.RunFinishedError, match="holds a finished run"):
        runs.start_run(run_dir)
    assert (run_dir / runs.OOF_LOGITS).read_text() == "finished"


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    model = build_model("test_efficientnet", "flatM", m_bins=64)
    config = dict(backbone="test_efficientnet", head="flatM", m_bins=64, t_bins=96,
                  norm="time", transform="log1p", tta_offsets=[-32, 0, 32])
    path = tmp_path / runs.CHECKPOINT
    runs.save_checkpoint(path, model.state_dict(), config)
    state, loaded_config = runs.load_checkpoint(path)
    assert loaded_config == config
    fresh = build_model("test_efficientnet", "flatM", m_bins=64)
    fresh.load_state_dict(state)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value)


def test_predictions_and_metrics_files(tmp_path):
    logits = np.arange(18, dtype=np.float32).reshape(2, 9) / 7
    runs.write_predictions(tmp_path, runs.label_frame(["S1", "S0"], logits),
                           runs.label_frame(["S2"], logits[:1]))
    assert not (tmp_path / runs.OOF_LOGITS_LAST).exists()
    runs.write_predictions(tmp_path, runs.label_frame(["S1", "S0"], logits),
                           runs.label_frame(["S2"], logits[:1]),
                           oof_last=runs.label_frame(["S1", "S0"], -logits))
    np.testing.assert_allclose(runs.read_logits(tmp_path / runs.OOF_LOGITS_LAST).to_numpy(),
                               -logits, atol=1e-6)
    runs.write_metrics(tmp_path, {"best_oof_loss": np.float64(0.25)})
    oof = runs.read_logits(tmp_path / runs.OOF_LOGITS)
    assert oof.index.tolist() == ["S1", "S0"]
    np.testing.assert_allclose(oof.to_numpy(), logits, atol=1e-6)
    metrics = runs.read_metrics(tmp_path)
    assert metrics["best_oof_loss"] == 0.25 and "torch" in metrics["environment"]
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_model_key_groups_folds():
    assert runs.model_key(REPO_ROOT / "runs/demo/resnet18/fold3_seed1") == "demo/resnet18/seed1"


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
        runs.write_predictions(run_dir, runs.label_frame(ids[::-1], logits[::-1]),
                               runs.label_frame(np.array(test_ids)[shuffled],
                                                np.full((len(test_ids), 9), float(k))))
        runs.save_checkpoint(run_dir / runs.CHECKPOINT, {"w": torch.zeros(2)}, {"fold": int(k)})
        if k not in skip_done:
            runs.mark_done(run_dir)
    return truth


def folds_table(n=12, k=3):
    return pd.DataFrame({"sample_id": [f"S{i:04d}" for i in range(n)],
                         "fold": [i % k for i in range(n)]})


def test_collect_models_aligns_by_sample_id(tmp_path):
    rng = np.random.default_rng(0)
    folds, test_ids = folds_table(), ["S0100", "S0101"]
    truth = fake_model_runs(tmp_path, "a", folds, test_ids, rng, order=[2, 0, 1])
    run_dirs = sorted((tmp_path / "a" / "net").iterdir(), reverse=True)
    collected = runs.collect_models(run_dirs, folds, test_ids)
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
                runs.label_frame(ids[::-1], logits[::-1]).to_csv(run_dir / runs.OOF_LOGITS_LAST,
                                                                 index=False)
    collected = runs.collect_models(sorted(tmp_path.glob("*/net/fold*")), folds, test_ids)
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
    nan_oof = tmp_path / "nan" / "net" / "fold0_seed0" / runs.OOF_LOGITS
    broken = pd.read_csv(nan_oof)
    broken.loc[0, "mineral"] = np.nan
    broken.to_csv(nan_oof, index=False)
    run_dirs = sorted(tmp_path.glob("*/net/fold*"))
    collected = runs.collect_models(run_dirs, folds, test_ids)
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
                runs.write_metrics(run_dir, {"data_fingerprint": fingerprint})
            else:
                runs.write_metrics(run_dir, {})
    run_dirs = sorted(tmp_path.glob("*/net/fold*"))
    collected = runs.collect_models(run_dirs, folds, test_ids, fingerprint="abc")
    assert collected.names == ["same/net/seed0"]
    problems = "\n".join(collected.problems)
    assert (f"other/net/seed0: left out: fold 1: trained on other data "
            f"({tmp_path / 'other/net/fold1_seed0/metrics.json'} has data fingerprint xyz, "
            f"this data is abc)") in problems
    assert "unrecorded/net/seed0: left out: fold 0: trained on other data" in problems
    # without a fingerprint to compare with, nothing is checked
    assert len(runs.collect_models(run_dirs, folds, test_ids).names) == 3


def test_collect_models_leaves_out_models_whose_model_file_does_not_load(tmp_path):
    """04 could not predict with these models, so the ensemble must not choose them."""
    rng = np.random.default_rng(3)
    folds, test_ids = folds_table(), ["S0100", "S0101"]
    for name in ("good", "truncated", "deleted", "feature"):
        fake_model_runs(tmp_path, name, folds, test_ids, rng)
    fold = {name: tmp_path / name / "net" / "fold1_seed0"
            for name in ("truncated", "deleted", "feature")}
    checkpoint = fold["truncated"] / runs.CHECKPOINT
    checkpoint.write_bytes(checkpoint.read_bytes()[:200])
    (fold["deleted"] / runs.CHECKPOINT).unlink()
    (fold["feature"] / runs.CHECKPOINT).unlink()
    (fold["feature"] / "feature_model.json").write_text('{"format": "mars-gcms feature mo')
    collected = runs.collect_models(sorted(tmp_path.glob("*/net/fold*")), folds, test_ids)
    assert collected.names == ["good/net/seed0"]
    problems = "\n".join(collected.problems)
    assert (f"truncated/net/seed0: left out: fold 1: {checkpoint}: cannot load the "
            f"checkpoint") in problems
    assert (f"deleted/net/seed0: left out: fold 1: {fold['deleted']}: no model file "
            f"(checkpoint.pt or feature_model.json)") in problems
    assert (f"feature/net/seed0: left out: fold 1: {fold['feature'] / 'feature_model.json'}: "
            f"not readable as JSON") in problems


def test_data_fingerprint_follows_the_data_not_its_path(competition_dir, tmp_path):
    from lib.dataset import load_competition

    a, b = competition_dir, tmp_path / "copy"
    shutil.copytree(a, b)
    first = runs.data_fingerprint(load_competition(a))
    assert first == runs.data_fingerprint(load_competition(b))
    labels = pd.read_csv(b / "train_labels.csv")
    labels.iloc[0, 1] = 1 - labels.iloc[0, 1]
    labels.to_csv(b / "train_labels.csv", index=False)
    assert runs.data_fingerprint(load_competition(b)) != first


def test_start_run_clears_partial_files_of_a_killed_write(tmp_path):
    (tmp_path / ".oof_logits.csv.abc.partial").write_text("half")
    (tmp_path / "notes.txt").write_text("kept")
    runs.start_run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_broken_checkpoint_error_names_the_file(tmp_path):
    path = tmp_path / runs.CHECKPOINT
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(runs.CheckpointError, match=str(path)) as error:
        runs.load_checkpoint(path)
    assert "weights_only=False" not in str(error.value)
    torch.save({"model": {}, "other": object()}, path)  # not loadable with weights_only
    with pytest.raises(runs.CheckpointError, match="not a checkpoint written by this project"):
        runs.load_checkpoint(path)


def test_atomic_writes_respect_the_umask(tmp_path):
    from lib.files import atomic_write_text

    old = os.umask(0o027)
    try:
        path = atomic_write_text(tmp_path / "group.txt", "x")
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        os.umask(0o002)
        path = atomic_write_text(tmp_path / "shared.txt", "x")
        assert stat.S_IMODE(path.stat().st_mode) == 0o664
    finally:
        os.umask(old)
