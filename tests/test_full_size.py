"""The real data's code path in seconds: a folder of a few samples with the `full` profile's
scan rate and mass range (runs of about half a million rows, masses to 535, where `small` and
`medium` stop at 300 with a tenth of the scans) through 02_preprocess and a feature run of the
ion-time network on the CSVs (the one family that reads the CSVs itself, at 600 masses)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import papermill as pm
import pytest
import yaml

from lib.core.paths import REPO_ROOT
from lib.data.dataset import read_sample
from lib.data.third_place import feature_names
from lib.runs.run_folder import is_done, read_logits, read_metrics
from lib.synthetic import generate
from lib.synthetic.profiles import PROFILES

NOTEBOOKS = REPO_ROOT / "notebooks"


@pytest.mark.slow
def test_full_resolution_runs_go_through_02_and_a_feature_run(tmp_path):
    profile = dataclasses.replace(PROFILES["full"], n_train=10, n_val=3, n_test=3)
    data_dir = generate(tmp_path / "data", profile, seed=0, workers=2)
    metadata = pd.read_csv(data_dir / "metadata.csv")
    run, _ = read_sample(data_dir / metadata["features_path"][0])
    assert len(run) > 100_000 and run["mass"].max() > 530  # the real data's size of run

    cache_dir = tmp_path / "cache"
    pm.execute_notebook(str(NOTEBOOKS / "02_preprocess.ipynb"), str(tmp_path / "02.ipynb"),
                        parameters=dict(data_dir=str(data_dir), cache_dir=str(cache_dir),
                                        check_md5=True, workers=2, n_show=2),
                        kernel_name="python3", progress_bar=False)
    work = cache_dir / "data"
    with np.load(work / "images_m256_t192.npz") as cache:
        images = cache["images"]
    assert images.shape == (16, 256, 192) and np.isfinite(images).all()
    assert (images.max(axis=(1, 2)) == 1).all()

    run_dir = tmp_path / "runs" / "features_ion_time_csv" / "mlp" / "fold0_seed0"
    run_dir.mkdir(parents=True)
    params = yaml.safe_load((REPO_ROOT / "params" / "features_ion_time_csv.yaml").read_text())
    pm.execute_notebook(str(NOTEBOOKS / "03b_train_features.ipynb"),
                        str(run_dir / "03b_train_features.ipynb"),
                        parameters={**params, "hidden": [16], "mlp_epochs": 2, "n_seeds": 1,
                                    "fold": 0, "data_dir": str(data_dir),
                                    "cache_dir": str(cache_dir), "run_dir": str(run_dir)},
                        kernel_name="python3", progress_bar=False)
    assert is_done(run_dir)
    assert np.isfinite(read_metrics(run_dir)["best_oof_loss"])
    assert len(read_logits(run_dir / "test_logits.csv")) == 6  # val + test, as submitted
    csv_cache = next(work.glob("ion_time_csv_x*_m600_t500.npz"))
    with np.load(csv_cache) as cache:
        features, stretched = cache["features"], cache["stretched"]
    assert features.shape == (16, len(feature_names()))
    assert stretched.shape == (len(params["time_stretch"]), 16, features.shape[1])
    high = [i for i, name in enumerate(feature_names()) if name.startswith("m") and
            301 <= int(name[1:].split("_")[0]) <= 499]  # masses beyond small's range
    assert np.isfinite(features).all() and (features[:, high] > 0).any()
