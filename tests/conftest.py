"""Shared fixtures: a hand-made miniature competition folder (no generator involved), a tiny
sweep plan."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import papermill as pm
import pytest
import yaml

from lib.core.paths import REPO_ROOT
from lib.core.schema import LABELS
from lib.runs.run_folder import read_logits


def write_run(path: Path, rng: np.random.Generator, n_scans: int = 40,
              start_min: float = 1.0) -> None:
    """A small but realistic-looking run: scans of masses 2..300 with jitter, helium at 4."""
    times = start_min + 0.02 * np.arange(n_scans) + rng.uniform(0, 0.001, n_scans)
    masses = np.arange(2, 301, dtype=float)
    time = np.repeat(times, masses.size)
    mass = np.tile(masses, n_scans) + rng.uniform(-0.3, 0.3, time.size)
    intensity = rng.integers(500, 4000, time.size).astype(float)
    intensity[np.round(mass) == 4] = 5e7
    peak = np.exp(-0.5 * ((time - times[n_scans // 2]) / 0.05) ** 2)
    intensity += np.where(np.round(mass) == 57, 1e7 * peak, 0).round()
    frame = pd.DataFrame({"time": time, "mass": mass, "intensity": intensity.astype(np.int64)})
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, float_format="%.6f")


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def competition_dir(tmp_path: Path) -> Path:
    """A valid folder: 10 train, 3 val, 2 test samples with metadata, labels and md5s."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    splits = ["train"] * 10 + ["val"] * 3 + ["test"] * 2
    rows, labels = [], {"train": [], "val": []}
    for i, split in enumerate(splits):
        sid = f"S{i:04d}"
        rel = f"{split}_features/{sid}.csv"
        write_run(root / rel, rng, n_scans=20 + i)
        derivatized = "1" if i % 3 == 0 else ""
        rows.append([sid, split, derivatized, rel, md5(root / rel)])
        if split in labels:
            labels[split].append([sid, *rng.integers(0, 2, len(LABELS))])
    pd.DataFrame(rows, columns=["sample_id", "split", "derivatized", "features_path",
                                "features_md5_hash"]).to_csv(root / "metadata.csv", index=False)
    for split, table in labels.items():
        pd.DataFrame(table, columns=["sample_id", *LABELS]).to_csv(
            root / f"{split}_labels.csv", index=False)
    return root


@pytest.fixture
def make_tiny_plan(tmp_path: Path):
    """A function (folds, seeds) -> path of a plan in tmp_path: one run of test_efficientnet
    (params tiny.yaml: cls3 head, mass norm) per seed, on those folds."""
    def write(folds: list[int], seeds: list[int]) -> Path:
        params = tmp_path / "tiny.yaml"
        params.write_text(yaml.safe_dump(dict(name="tiny", head="cls3", norm="mass")))
        plan = tmp_path / "plan.yaml"
        plan.write_text(yaml.safe_dump(dict(name="plan", folds=folds, runs=[
            dict(params=str(params), backbone="test_efficientnet", seed=s) for s in seeds])))
        return plan
    return write


def assert_04_reproduces(run_dir: Path, data_dir: Path, cache_dir: Path, work: Path) -> None:
    """Execute 04_predict on one finished run (outputs in ``work``): its predictions for the
    val and test samples are the sigmoid of the run's own test logits."""
    out_csv = work / "predictions.csv"
    pm.execute_notebook(str(REPO_ROOT / "notebooks" / "04_predict.ipynb"), str(work / "04.ipynb"),
                        parameters=dict(runs_glob=str(run_dir), data_dir=str(data_dir),
                                        cache_dir=str(cache_dir), output_csv=str(out_csv),
                                        device="cpu"),
                        kernel_name="python3", progress_bar=False)
    predicted = pd.read_csv(out_csv).set_index("sample_id")
    assert list(predicted.columns) == list(LABELS)
    logits = read_logits(Path(run_dir) / "test_logits.csv").loc[predicted.index]
    np.testing.assert_allclose(predicted.to_numpy(), 1 / (1 + np.exp(-logits.to_numpy())),
                               atol=1e-5)
