"""Run folders: where they are, refusal to overwrite finished runs, checkpoints, predictions."""

from __future__ import annotations

import os
import shutil
import stat

import numpy as np
import pandas as pd
import pytest
import torch

from lib.core.paths import REPO_ROOT
from lib.models.cnn import build_model
from lib.runs import run_folder
from lib.train import checkpoint


def test_run_dir_resolution(tmp_path):
    assert run_folder.resolve_run_dir("", None, "hrnet_s3", "hrnet_w64.ms_in1k", 0, 3) == (
        REPO_ROOT / "runs" / "hrnet_s3" / "hrnet_w64" / "fold0_seed3")
    executed = tmp_path / "x" / "03_train.ipynb"
    assert run_folder.resolve_run_dir("", str(executed), "n", "b", 0, 0) == executed.parent
    given = run_folder.resolve_run_dir(str(tmp_path / "r"), str(executed), "n", "b", 0, 0)
    assert given == tmp_path / "r"


def test_start_run_refuses_finished_and_clears_interrupted(tmp_path):
    run_dir = tmp_path / "run"
    run_folder.start_run(run_dir)
    (run_dir / run_folder.OOF_LOGITS).write_text("partial")
    (run_dir / "03_train.ipynb").write_text("{}")
    run_folder.start_run(run_dir)  # an interrupted run: its leftovers go, the notebook stays
    assert not (run_dir / run_folder.OOF_LOGITS).exists() and (run_dir / "03_train.ipynb").exists()
    (run_dir / run_folder.OOF_LOGITS).write_text("finished")
    run_folder.mark_done(run_dir)
    with pytest.raises(run_folder.RunFinishedError, match="holds a finished run"):
        run_folder.start_run(run_dir)
    assert (run_dir / run_folder.OOF_LOGITS).read_text() == "finished"


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    model = build_model("test_efficientnet", "flatM", m_bins=64)
    config = dict(backbone="test_efficientnet", head="flatM", m_bins=64, t_bins=96,
                  norm="time", transform="log1p", tta_offsets=[-32, 0, 32])
    path = tmp_path / run_folder.CHECKPOINT
    checkpoint.save_checkpoint(path, model.state_dict(), config)
    state, loaded_config = checkpoint.load_checkpoint(path)
    assert loaded_config == config
    fresh = build_model("test_efficientnet", "flatM", m_bins=64)
    fresh.load_state_dict(state)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value)


def test_predictions_and_metrics_files(tmp_path):
    logits = np.arange(18, dtype=np.float32).reshape(2, 9) / 7
    run_folder.write_predictions(tmp_path, run_folder.label_frame(["S1", "S0"], logits),
                           run_folder.label_frame(["S2"], logits[:1]))
    assert not (tmp_path / run_folder.OOF_LOGITS_LAST).exists()
    run_folder.write_predictions(tmp_path, run_folder.label_frame(["S1", "S0"], logits),
                           run_folder.label_frame(["S2"], logits[:1]),
                           oof_last=run_folder.label_frame(["S1", "S0"], -logits))
    np.testing.assert_allclose(
        run_folder.read_logits(tmp_path / run_folder.OOF_LOGITS_LAST).to_numpy(), -logits,
        atol=1e-6)
    run_folder.write_metrics(tmp_path, {"best_oof_loss": np.float64(0.25)})
    oof = run_folder.read_logits(tmp_path / run_folder.OOF_LOGITS)
    assert oof.index.tolist() == ["S1", "S0"]
    np.testing.assert_allclose(oof.to_numpy(), logits, atol=1e-6)
    metrics = run_folder.read_metrics(tmp_path)
    assert metrics["best_oof_loss"] == 0.25 and "torch" in metrics["environment"]
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_model_key_groups_folds():
    key = run_folder.model_key(REPO_ROOT / "runs/demo/resnet18/fold3_seed1")
    assert key == "demo/resnet18/seed1"


def test_data_fingerprint_follows_the_data_not_its_path(competition_dir, tmp_path):
    from lib.data.dataset import load_competition

    a, b = competition_dir, tmp_path / "copy"
    shutil.copytree(a, b)
    first = run_folder.data_fingerprint(load_competition(a))
    assert first == run_folder.data_fingerprint(load_competition(b))
    labels = pd.read_csv(b / "train_labels.csv")
    labels.iloc[0, 1] = 1 - labels.iloc[0, 1]
    labels.to_csv(b / "train_labels.csv", index=False)
    assert run_folder.data_fingerprint(load_competition(b)) != first


def test_start_run_clears_partial_files_of_a_killed_write(tmp_path):
    (tmp_path / ".oof_logits.csv.abc.partial").write_text("half")
    (tmp_path / "notes.txt").write_text("kept")
    run_folder.start_run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_broken_checkpoint_error_names_the_file(tmp_path):
    path = tmp_path / run_folder.CHECKPOINT
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match=str(path)) as error:
        checkpoint.load_checkpoint(path)
    assert "weights_only=False" not in str(error.value)
    torch.save({"model": {}, "other": object()}, path)  # not loadable with weights_only
    with pytest.raises(checkpoint.CheckpointError,
                       match="not a checkpoint written by this project"):
        checkpoint.load_checkpoint(path)


def test_atomic_writes_respect_the_umask(tmp_path):
    from lib.core.files import atomic_write_text

    old = os.umask(0o027)
    try:
        path = atomic_write_text(tmp_path / "group.txt", "x")
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        os.umask(0o002)
        path = atomic_write_text(tmp_path / "shared.txt", "x")
        assert stat.S_IMODE(path.stat().st_mode) == 0o664
    finally:
        os.umask(old)
