"""The feature family: features from cached images, the LightGBM and logistic-regression
members, their model file, and the 03b notebook end to end (papermill on tiny data, then 04 and
05 with a CNN run beside it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid

import numpy as np
import pandas as pd
import papermill as pm
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

from lib.core.paths import REPO_ROOT, dataset_work_dir
from lib.core.schema import LABELS, N_LABELS
from lib.data.dataset import load_competition
from lib.data.features import image_features, n_features, stretched_image_features
from lib.data.third_place import stretch_time, third_place_cache
from lib.models.feature_models import fit_feature_model, log_features, predict_feature_logits
from lib.models.feature_settings import FeatureSettings
from lib.models.model_file import ModelFileError, load_feature_model, save_feature_model
from lib.runs.run_folder import FEATURE_MODEL, is_done, read_logits, read_metrics
from lib.synthetic import generate

# ---- features ----------------------------------------------------------------------------------


def hand_made_image() -> np.ndarray:
    """One (3 masses x 8 times) image: mass 0 peaks at time 5, mass 1 is flat, mass 2 empty."""
    image = np.zeros((3, 8), dtype=np.float32)
    image[0] = [0, 0.1, 0, 0, 0.2, 1.0, 0.4, 0]
    image[1] = 0.25
    return image


def test_band_features_of_a_hand_made_image():
    features, names = image_features(hand_made_image()[None], np.array([1]), n_bands=2)
    assert features.shape == (1, 3 * 5 + 1) and features.dtype == np.float32
    assert len(names) == features.shape[1] and names[-1] == "derivatized"
    by_name = dict(zip(names, features[0]))
    # bands are columns 0-3 and 4-7; area = band sum / 8 columns
    assert by_name["m0_max_b0"] == pytest.approx(0.1)
    assert by_name["m0_max_b1"] == pytest.approx(1.0)
    assert by_name["m0_area_b0"] == pytest.approx(0.1 / 8)
    assert by_name["m0_area_b1"] == pytest.approx(1.6 / 8)
    assert by_name["m0_peak_time"] == pytest.approx(5 / 7)
    assert by_name["m1_max_b0"] == by_name["m1_max_b1"] == pytest.approx(0.25)
    assert by_name["m1_area_b1"] == pytest.approx(1.0 / 8)
    assert by_name["m1_peak_time"] == 0.0  # the first maximum
    assert [by_name[f"m2_{s}"] for s in ("max_b0", "area_b1", "peak_time")] == [0, 0, 0]
    assert by_name["derivatized"] == 1.0


def test_benchmark_features_subtract_the_background_and_rescale():
    image = hand_made_image()
    image[1] += np.linspace(0, 0.7, 8, dtype=np.float32)  # a rising baseline on mass 1
    features, names = image_features(image[None], np.array([0]), kind="benchmark", n_bands=4)
    assert features.shape == (1, 3 * 4 + 1) and names[0] == "m0_max_b0"
    grid = features[0, :-1].reshape(3, 4)
    # mass 0: min 0, the sample's max after background removal is 1.0 (mass 0, time 5)
    np.testing.assert_allclose(grid[0], [0.1, 0.0, 1.0, 0.4], atol=1e-6)
    np.testing.assert_allclose(grid[1], np.linspace(0, 0.7, 8)[[1, 3, 5, 7]], atol=1e-6)
    np.testing.assert_array_equal(grid[2], 0)
    assert features[0, -1] == 0


@pytest.mark.parametrize("kind", ["bands", "benchmark"])
def test_all_zero_rows_and_images_give_finite_features(kind):
    images = np.zeros((2, 5, 12), dtype=np.float32)
    images[0, 3, 7] = 1.0
    features, names = image_features(images, np.array([0, 1]), kind=kind, n_bands=3)
    assert features.shape == (2, len(names)) and np.isfinite(features).all()
    assert features[1, :-1].max() == 0 and features[1, -1] == 1


@pytest.mark.parametrize("kind", ["bands", "ion_time_stats"])
def test_stretched_features_are_those_of_the_stretched_images(kind):
    images = np.stack([hand_made_image(), hand_made_image()[::-1]])
    flags = np.array([0, 1])
    stretched = stretched_image_features(images, flags, (0.8, 1.25), kind=kind, n_bands=2)
    assert stretched.shape == (2, 2, n_features(kind, 3, 2, 8)) and stretched.dtype == np.float32
    for view, factor in zip(stretched, (0.8, 1.25), strict=True):
        np.testing.assert_array_equal(view, image_features(
            stretch_time(images, factor), flags, kind=kind, n_bands=2)[0])
    assert not np.allclose(stretched[1], image_features(images, flags, kind=kind, n_bands=2)[0])
    assert stretched_image_features(images, flags, (), kind=kind, n_bands=2).shape == (
        0, 2, n_features(kind, 3, 2, 8))


def test_feature_arguments_are_checked():
    with pytest.raises(ValueError, match="kind must be one of"):
        image_features(np.zeros((1, 2, 4)), np.zeros(1), kind="wavelets")
    with pytest.raises(ValueError, match="n_bands"):
        image_features(np.zeros((1, 2, 4)), np.zeros(1), n_bands=5)
    with pytest.raises(ValueError, match=r"\(N, m, t\)"):
        image_features(np.zeros((2, 4)), np.zeros(1))


# ---- the models ---------------------------------------------------------------------------------


def toy_features(n: int = 120, seed: int = 0):
    """Features where label j is positive when feature j is above 0.5; label 8 is all zero."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, N_LABELS)) < 0.4).astype(float)
    labels[:, 8] = 0
    features = rng.random((n, 20)).astype(np.float32)
    features[:, :N_LABELS] = np.where(labels, 0.5 + 0.5 * features[:, :N_LABELS],
                                      0.4 * features[:, :N_LABELS])
    return features, labels


@pytest.mark.parametrize("learner", ["lightgbm", "logistic"])
def test_models_learn_and_round_trip_through_their_file(learner, tmp_path):
    features, labels = toy_features()
    settings = FeatureSettings(learner=learner, n_estimators=60, min_data_in_leaf=5,
                               feature_fraction=1.0, C=1.0,
                               threads=1)
    model = fit_feature_model(features[:80], labels[:80], settings, seed=0,
                              config=dict(n_bands=4))
    logits = predict_feature_logits(model, features[80:])
    assert logits.shape == (40, N_LABELS) and logits.dtype == np.float32
    predicted = logits[:, :8] > 0
    assert (predicted == (labels[80:, :8] == 1)).mean() > 0.85
    assert model.per_label[8] == {"constant": pytest.approx(np.log(1e-4 / (1 - 1e-4)))}
    path = save_feature_model(tmp_path / FEATURE_MODEL, model)
    assert json.loads(path.read_text())["learner"] == learner
    loaded = load_feature_model(path)
    assert loaded.config == {"n_bands": 4}
    np.testing.assert_array_equal(predict_feature_logits(loaded, features[80:]), logits)


def test_logistic_logits_equal_scikit_learns():
    features, labels = toy_features()
    model = fit_feature_model(features, labels, FeatureSettings(learner="logistic", C=0.3),
                              seed=0)
    z = (log_features(features) - model.center) / model.scale
    expected = LogisticRegression(C=0.3, max_iter=5000).fit(z, labels[:, 2]).decision_function(z)
    np.testing.assert_allclose(predict_feature_logits(model, features)[:, 2], expected,
                               rtol=1e-4, atol=1e-4)


def test_lightgbm_seed_is_honoured():
    features, labels = toy_features()
    settings = FeatureSettings(n_estimators=30, min_data_in_leaf=5, threads=1)

    def fit(seed):
        return predict_feature_logits(fit_feature_model(features, labels, settings, seed=seed),
                                      features)

    first, again, other = fit(1), fit(1), fit(2)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_settings_and_inputs_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"learner \(backbone\) must be one of"):
        FeatureSettings(learner="xgboost")
    with pytest.raises(ValueError, match="features must be one of"):
        FeatureSettings(features="raw")
    with pytest.raises(ValueError, match="do not match"):
        fit_feature_model(np.zeros((5, 3)), np.zeros((4, N_LABELS)), FeatureSettings(), seed=0)
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="not a feature model file"):
        load_feature_model(tmp_path / "other.json")


def saved_model(tmp_path, learner: str) -> tuple[dict, np.ndarray]:
    """A model fitted on the features of random (8 masses x 12 times) images, as its decoded
    file, and those features (40, F)."""
    rng = np.random.default_rng(0)
    images, flags = rng.random((40, 8, 12)), rng.integers(0, 2, 40)
    features, names = image_features(images, flags, kind="bands", n_bands=2)
    labels = (rng.random((40, N_LABELS)) < 0.4).astype(int)
    config = dict(learner=learner, features="bands", n_bands=2, m_bins=8, t_bins=12,
                  feature_names=names)
    model = fit_feature_model(features, labels, FeatureSettings(
        learner=learner, n_estimators=3, min_data_in_leaf=3, threads=1), seed=0, config=config)
    path = save_feature_model(tmp_path / FEATURE_MODEL, model)
    return json.loads(path.read_text()), features


def test_n_features_is_what_image_features_gives():
    images = np.zeros((2, 7, 10))
    for kind in ("bands", "benchmark", "mass_stats"):
        assert image_features(images, [0, 1], kind=kind, n_bands=3)[0].shape[1] == n_features(
            kind, 7, 3)


LOGISTIC_DAMAGE = {
    "one label short": (lambda p: {**p, "per_label": p["per_label"][:8]},
                        r"per_label has 8 entries, expected one per label \(9\)"),
    "learner edited": (lambda p: {**p, "learner": "lightgbm"},
                       "learner 'lightgbm' differs from the config's 'logistic'"),
    "learner edited everywhere": (
        lambda p: {**p, "learner": "lightgbm", "config": {**p["config"], "learner": "lightgbm"}},
        r"per_label entry of aromatic: keys \['coef', 'intercept'\], expected constant or "
        "lightgbm"),
    "n_bands edited": (lambda p: {**p, "config": {**p["config"], "n_bands": 3}},
                       "feature counts differ: aromatic's coefficients 41, features 'bands' of 8 "
                       "masses x 3 bands 57"),
    "features edited": (lambda p: {**p, "config": {**p["config"], "features": "benchmark"}},
                        "feature counts differ"),
    "scale shortened": (lambda p: {**p, "scale": p["scale"][:-1]}, "feature counts differ"),
    "zero scale": (lambda p: {**p, "scale": [0.0] * len(p["scale"])},
                   "scale is not a list of finite numbers > 0"),
    "labels reordered": (lambda p: {**p, "labels": p["labels"][::-1]}, "labels .* are not"),
    "not a model": (lambda p: [p], "not a feature model file"),
}


@pytest.mark.parametrize("damage", LOGISTIC_DAMAGE)
def test_a_damaged_model_file_is_refused_naming_the_file(tmp_path, damage):
    payload, features = saved_model(tmp_path, "logistic")
    edit, message = LOGISTIC_DAMAGE[damage]
    path = tmp_path / FEATURE_MODEL
    path.write_text(json.dumps(edit(payload)))
    with pytest.raises(ModelFileError, match=f"{path}: {message}"):
        load_feature_model(path)


def test_a_truncated_missing_or_edited_lightgbm_file_is_refused(tmp_path):
    payload, features = saved_model(tmp_path, "lightgbm")
    path = tmp_path / FEATURE_MODEL
    text = path.read_text()
    assert load_feature_model(path).learner == "lightgbm"
    path.write_text(text[:len(text) // 2])
    with pytest.raises(ModelFileError, match=f"{path}: not readable as JSON .* truncated"):
        load_feature_model(path)
    path.write_text(json.dumps({**payload, "config": {**payload["config"], "m_bins": 9}}))
    with pytest.raises(ModelFileError, match="aromatic's LightGBM model 41, features 'bands' "
                                             "of 9 masses"):
        load_feature_model(path)
    path.unlink()
    with pytest.raises(ModelFileError, match=f"{path}: feature model file not found"):
        load_feature_model(path)


# ---- the notebook, end to end ----------------------------------------------------------------

NOTEBOOKS = REPO_ROOT / "notebooks"
TINY_CNN = dict(m_bins=64, t_bins=96, tta_offsets=[-32, 0, 32], epochs=1, batch_size=4, lr=1e-3,
                device="cpu")
TINY_GBM = dict(m_bins=64, t_bins=96, n_estimators=20, min_data_in_leaf=3,
                time_stretch=[0.9, 1.1])  # trained on two stretched copies too


def shrunk_params(root, name: str, changes: dict):
    """params/<name> with ``changes``, written under ``root``."""
    values = yaml.safe_load((REPO_ROOT / "params" / name).read_text()) | changes
    path = root / name
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Tiny synthetic data, and a plan with a CNN model and a LightGBM model (5 folds each)
    trained through lib.sweep into a temporary runs folder."""
    root = tmp_path_factory.mktemp("features")
    data_dir = generate(root / "data", profile="tiny", seed=0)
    cnn = shrunk_params(root, "demo.yaml", TINY_CNN)
    gbm = shrunk_params(root, "features_gbm.yaml", TINY_GBM)
    plan = root / "plan.yaml"
    plan.write_text(
        "name: mixed\nfolds: [0, 1, 2, 3, 4]\nruns:\n"
        f"  - {{params: {cnn}, backbone: test_efficientnet, seed: 0}}\n"
        f"  - {{params: {gbm}, backbone: lightgbm, seed: 0, notebook: 03b_train_features.ipynb}}\n")
    command = [sys.executable, "-m", "lib.sweep", str(plan), "--runs-dir", str(root / "runs"),
               "--data-dir", str(data_dir), "--cache-dir", str(root / "cache"), "--no-progress",
               "--workers", "2"]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return dict(root=root, data_dir=str(data_dir), cache_dir=str(root / "cache"), plan=plan,
                runs=root / "runs")


@pytest.mark.slow
def test_feature_runs_leave_complete_run_folders(workspace):
    folds = pd.read_csv(workspace["root"] / "cache" / "data" / "folds_n5_seed42.csv")
    for fold in range(5):
        run_dir = workspace["runs"] / "features_gbm" / "lightgbm" / f"fold{fold}_seed0"
        assert is_done(run_dir)
        assert {p.name for p in run_dir.iterdir()} >= {
            "03b_train_features.ipynb", FEATURE_MODEL, "oof_logits.csv", "test_logits.csv",
            "metrics.json", "DONE"}
        metrics = read_metrics(run_dir)
        assert metrics["parameters"]["fold"] == fold and metrics["parameters"]["n_estimators"] == 20
        assert metrics["parameters"]["time_stretch"] == [0.9, 1.1]
        executed = (run_dir / "03b_train_features.ipynb").read_text()
        train, rows = map(int, re.search(r"train (\d+) \((\d+) rows\)", executed).groups())
        assert train == metrics["samples"]["train"] and rows == 3 * train  # and 2 copies each
        assert np.isfinite(metrics["best_oof_loss"]) and metrics["fit_seconds"] > 0
        oof = read_logits(run_dir / "oof_logits.csv")
        assert sorted(oof.index) == sorted(folds.loc[folds["fold"] == fold, "sample_id"])
        test = read_logits(run_dir / "test_logits.csv")
        assert len(test) == 12 and np.isfinite(test.to_numpy()).all()
    cnn_dir = workspace["runs"] / "demo" / "test_efficientnet" / "fold0_seed0"
    assert (cnn_dir / "03_train.ipynb").is_file() and is_done(cnn_dir)


@pytest.mark.slow
def test_ensemble_takes_feature_and_cnn_runs(workspace):
    out = workspace["root"] / "ensemble"
    # the 3rd place's features, cached as if building them had taken 10^6 s: 05 must count that
    work_dir = dataset_work_dir(workspace["cache_dir"], workspace["data_dir"])
    third_place_cache(load_competition(workspace["data_dir"]).metadata, work_dir, workers=1)
    dense_path = work_dir / "third_place_m600_t500.npz"
    with np.load(dense_path) as cached:
        arrays = {**cached, "build_seconds": np.array(1e6)}
    np.savez(dense_path, **arrays)
    pm.execute_notebook(str(NOTEBOOKS / "05_ensemble.ipynb"), str(workspace["root"] / "05.ipynb"),
                        parameters=dict(plan=str(workspace["plan"]),
                                        runs_dir=str(workspace["runs"]),
                                        data_dir=workspace["data_dir"],
                                        cache_dir=workspace["cache_dir"], output_dir=str(out)),
                        kernel_name="python3", progress_bar=False)
    selection = json.loads((out / "selection.json").read_text())
    assert selection["left_out"] == []
    # the cached features were used (the file is still the one written above), their build
    # time counted in the 3rd place's time; the benchmark's features were cached too
    with np.load(dense_path) as cached:
        assert float(cached["build_seconds"]) == 1e6
    assert 1e6 < selection["baseline_seconds"]["3rd place's dense network"] < 1e6 + 3600
    assert (work_dir / "benchmark_m350_t50.npz").is_file()
    assert set(selection["grow_by_one"]) | set(selection["remove_by_one"]) <= {
        "demo/test_efficientnet/seed0", "features_gbm/lightgbm/seed0"}
    assert {"ensemble (chosen)", "best single model", "3rd place's dense network",
            "logistic regression (organisers' benchmark)"} <= set(selection["comparison"])
    assert selection["best_single_model"] in {"demo/test_efficientnet/seed0",
                                              "features_gbm/lightgbm/seed0"}
    # the score selection compares (clipped) is shown beside the loss: the chosen ensemble's
    # is never above the best single model's (up to float32 rounding), whatever their losses
    scored = selection["comparison_selection_score"]
    assert set(scored) == set(selection["comparison"])
    assert scored["ensemble (chosen)"] <= scored["best single model"] + 1e-6  # float32
    assert all(scored[k] <= selection["comparison"][k] + 1e-12 for k in scored)
    submission = pd.read_csv(out / "submission.csv")
    assert list(submission.columns) == ["sample_id", *LABELS] and len(submission) == 12
    # the pair is written as one set (lib.core.files.write_file_set), read through its links
    in_force = (out / "versions" / "current").resolve()
    assert {(out / n).resolve() for n in ("submission.csv", "selection.json")} == {
        in_force / "submission.csv", in_force / "selection.json"}
    # synthetic data: every predictor of the comparison is scored on the hidden test labels too
    assert set(selection["test"]) == set(selection["comparison"])
    assert all(0 < loss < 5 for loss in selection["test"].values())
    assert "test_labels_problem" not in selection
    # which family each member is from, and the ensemble without each family
    assert set(selection["families"]) == set(selection["models"])
    assert set(selection["families"].values()) <= {"2D CNN", "features: lightgbm"}
    rows = selection["with_and_without_families"]
    assert set(rows) == {"chosen ensemble (every family)", "without 2D CNN",
                         "without features: lightgbm"}
    assert rows["without 2D CNN"]["families"] == "features: lightgbm"
    assert rows["without 2D CNN"]["members"] == 1  # a count, stored as an integer
    assert isinstance(rows["without 2D CNN"]["members"], int)
    assert rows["without features: lightgbm"]["families"] == "2D CNN"
    chosen_row = rows["chosen ensemble (every family)"]
    assert chosen_row["OOF loss"] == pytest.approx(selection["oof_loss"])
    assert chosen_row["test loss"] == pytest.approx(selection["test"]["ensemble (chosen)"])
    for row in rows.values():  # selection minimises OOF: no ensemble without a family beats it
        assert row["Δ OOF loss"] >= -0.02


@pytest.mark.slow
def test_ensemble_scores_nothing_on_bad_test_labels_and_still_submits(workspace):
    """A test_labels.csv with a value other than 0/1 (or ids of another split) is named with its
    row; nothing is scored on the test split and the submission is still written."""
    data_dir = workspace["root"] / "bad" / "data"  # same name: same cache folder and folds
    shutil.copytree(workspace["data_dir"], data_dir)
    labels = pd.read_csv(data_dir / "test_labels.csv")
    good = labels.copy()
    for problem, change, message in (
            ("value", lambda t: t.assign(mineral=[2, *t["mineral"][1:]]),
             "test_labels.csv: row 2 .*label mineral must be 0 or 1, got 2"),
            ("ids", lambda t: t.assign(sample_id=[*t["sample_id"][:-1], "S0000"]),
             "test_labels.csv: row 7: sample S0000 is not a test sample")):
        change(good).to_csv(data_dir / "test_labels.csv", index=False)
        out = workspace["root"] / f"ensemble_bad_{problem}"
        pm.execute_notebook(str(NOTEBOOKS / "05_ensemble.ipynb"),
                            str(workspace["root"] / f"05_bad_{problem}.ipynb"),
                            parameters=dict(plan=str(workspace["plan"]),
                                            runs_dir=str(workspace["runs"]),
                                            data_dir=str(data_dir),
                                            cache_dir=workspace["cache_dir"], output_dir=str(out),
                                            lr_baseline=False, third_place=False),
                            kernel_name="python3", progress_bar=False)
        selection = json.loads((out / "selection.json").read_text())
        assert "test" not in selection
        assert re.search(message, selection["test_labels_problem"])
        assert len(pd.read_csv(out / "submission.csv")) == 12


@pytest.mark.slow
def test_predict_notebook_reproduces_feature_and_cnn_runs(workspace):
    """04 predicts with both kinds of run folder; each model alone reproduces its test logits."""
    for name, backbone in (("features_gbm", "lightgbm"), ("demo", "test_efficientnet")):
        run_dir = workspace["runs"] / name / backbone / "fold2_seed0"
        out_csv = workspace["root"] / f"predictions_{name}.csv"
        pm.execute_notebook(str(NOTEBOOKS / "04_predict.ipynb"),
                            str(workspace["root"] / "04.ipynb"),
                            parameters=dict(runs_glob=str(run_dir),
                                            data_dir=workspace["data_dir"],
                                            cache_dir=workspace["cache_dir"],
                                            output_csv=str(out_csv), device="cpu"),
                            kernel_name="python3", progress_bar=False)
        predicted = pd.read_csv(out_csv).set_index("sample_id")
        logits = read_logits(run_dir / "test_logits.csv").loc[predicted.index]
        np.testing.assert_allclose(predicted.to_numpy(), 1 / (1 + np.exp(-logits.to_numpy())),
                                   atol=1e-5)


@pytest.mark.slow
def test_feature_notebook_refuses_a_finished_run(workspace):
    run_dir = workspace["runs"] / "features_gbm" / "lightgbm" / "fold0_seed0"
    with pytest.raises(pm.PapermillExecutionError, match="RunFinishedError"):
        pm.execute_notebook(str(NOTEBOOKS / "03b_train_features.ipynb"),
                            str(workspace["root"] / f"{uuid.uuid4().hex}.ipynb"),
                            parameters=dict(run_dir=str(run_dir), data_dir=workspace["data_dir"],
                                            cache_dir=workspace["cache_dir"]),
                            kernel_name="python3", progress_bar=False)
