"""The feature MLP and its inputs: the mass_stats features, the MLP's fit, determinism and
model file, its settings' checks (also in a sweep's plan), its attribution on the grid, and the
03b notebook with backbone mlp end to end (then 04 predicts with its run)."""

from __future__ import annotations

import base64
import dataclasses
import json

import numpy as np
import papermill as pm
import pytest
import yaml
from conftest import assert_04_reproduces

from lib.core.metrics import NonFiniteLossError
from lib.core.paths import REPO_ROOT
from lib.core.schema import N_LABELS
from lib.data.features import image_features, n_features
from lib.explain import features as explain_features
from lib.models.feature_models import fit_feature_model, predict_feature_logits
from lib.models.feature_settings import FeatureSettings, feature_settings
from lib.models.mlp import build_mlp, mlp_shapes
from lib.models.model_file import ModelFileError, load_feature_model, save_feature_model
from lib.runs.plans import PlanError, check_parameters, check_runs, expand_plan, load_plan
from lib.runs.run_folder import FEATURE_MODEL, is_done, read_metrics
from lib.synthetic import generate

TINY_MLP = dict(hidden=[16], mlp_epochs=30, mlp_lr=1e-2, mlp_batch_size=8, threads=1)


# ---- mass_stats features --------------------------------------------------------------------

def test_mass_stats_of_a_hand_made_image():
    image = np.zeros((3, 8), dtype=np.float32)
    image[0] = [0, 0.1, 0, 0, 0.2, 1.0, 0.4, 0]
    image[1] = 0.25  # flat: no skewness
    features, names = image_features(image[None], np.array([1]), kind="mass_stats", n_bands=2)
    assert features.shape == (1, 3 * 5 + 2 + 1) == (1, n_features("mass_stats", 3, 2))
    assert features.dtype == np.float32 and np.isfinite(features).all()
    assert names[:5] == ["m0_log_mean", "m0_log_std", "m0_skew", "m0_log_max", "m0_peak_time"]
    assert names[-3:] == ["tic_b0", "tic_b1", "derivatized"]
    by_name = dict(zip(names, features[0].astype(np.float64)))
    row = image[0].astype(np.float64)
    assert by_name["m0_log_mean"] == pytest.approx(np.log10(row.mean() + 1e-6), rel=1e-5)
    assert by_name["m0_log_std"] == pytest.approx(np.log10(row.std() + 1e-6), rel=1e-5)
    skew = ((row - row.mean()) ** 3).mean() / row.std() ** 3
    assert by_name["m0_skew"] == pytest.approx(skew, rel=1e-5)
    assert by_name["m0_log_max"] == pytest.approx(np.log10(1 + 1e-6), abs=1e-6)
    assert by_name["m0_peak_time"] == pytest.approx(5 / 7)
    assert by_name["m1_skew"] == 0 and by_name["m1_log_mean"] == pytest.approx(np.log10(0.25),
                                                                                rel=1e-4)
    # the empty row: every intensity at the floor, no skewness, peak time 0
    assert [by_name[f"m2_{s}"] for s in ("log_mean", "log_std", "log_max")] == [-6, -6, -6]
    assert by_name["m2_skew"] == 0 and by_name["m2_peak_time"] == 0
    # total-ion profile: columns summed over masses, averaged in bands 0-3 and 4-7
    profile = image.sum(axis=0)
    assert by_name["tic_b0"] == pytest.approx(np.log10(profile[:4].mean() + 1e-6), rel=1e-5)
    assert by_name["tic_b1"] == pytest.approx(np.log10(profile[4:].mean() + 1e-6), rel=1e-5)
    assert by_name["derivatized"] == 1


def test_mass_stats_of_empty_images_are_finite():
    images = np.zeros((70, 5, 12), dtype=np.float32)  # more than one chunk of 64
    images[0, 3, 7] = 1.0
    features, names = image_features(images, np.zeros(70), kind="mass_stats", n_bands=3)
    assert features.shape == (70, len(names)) == (70, 5 * 5 + 3 + 1)
    assert np.isfinite(features).all()
    np.testing.assert_array_equal(features[1, :-1].reshape(-1)[:25:5], -6)  # log_mean of rows


# ---- the MLP --------------------------------------------------------------------------------

def toy_data(n: int = 400, seed: int = 0):
    """Non-negative features where label j is positive when feature j is high."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, N_LABELS)) < 0.4).astype(float)
    features = rng.random((n, 20)).astype(np.float32) * 0.4
    features[:, :N_LABELS] += labels * 0.6
    return features, labels


def test_mlp_learns_and_is_deterministic_for_a_seed():
    features, labels = toy_data()
    settings = FeatureSettings(learner="mlp", **TINY_MLP)
    model = fit_feature_model(features[:300], labels[:300], settings, seed=3)
    logits = predict_feature_logits(model, features[300:])
    assert logits.shape == (100, N_LABELS) and logits.dtype == np.float32
    assert ((logits > 0) == (labels[300:] == 1)).mean() > 0.85
    again = predict_feature_logits(fit_feature_model(features[:300], labels[:300], settings,
                                                     seed=3), features[300:])
    np.testing.assert_array_equal(logits, again)
    other = predict_feature_logits(fit_feature_model(features[:300], labels[:300], settings,
                                                     seed=4), features[300:])
    assert not np.array_equal(logits, other)


def test_n_seeds_averages_the_networks_of_the_seeds():
    features, labels = toy_data(120)
    one = fit_feature_model(features, labels, FeatureSettings(learner="mlp", **TINY_MLP), seed=0)
    three = fit_feature_model(features, labels, FeatureSettings(
        learner="mlp", n_seeds=3, **TINY_MLP), seed=0)
    assert len(three.networks) == 3
    for name, values in one.networks[0].items():  # network 0 is the same in both runs
        np.testing.assert_array_equal(three.networks[0][name], values)
    singles = [predict_feature_logits(dataclasses.replace(three, networks=[state]), features)
               for state in three.networks]
    np.testing.assert_allclose(predict_feature_logits(three, features), np.mean(singles, axis=0),
                               atol=1e-5)


def test_mlp_shapes_are_the_networks():
    net = build_mlp(7, [5, 3], "relu", 0.1)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == mlp_shapes(7, [5, 3])


def test_the_mlp_logs_non_negative_kinds_only():
    assert fit_feature_model(*toy_data(40), FeatureSettings(learner="mlp", **TINY_MLP), seed=0
                             ).architecture["log_inputs"] is True
    model = fit_feature_model(*toy_data(40), FeatureSettings(
        learner="mlp", features="mass_stats", **TINY_MLP), seed=0)
    assert model.architecture["log_inputs"] is False


def saved_mlp(tmp_path) -> tuple[dict, np.ndarray, np.ndarray]:
    """An MLP on the mass_stats of random (6 masses x 10 times) images, saved: its decoded
    file, the features and the logits."""
    rng = np.random.default_rng(0)
    images, flags = rng.random((30, 6, 10)).astype(np.float32), rng.integers(0, 2, 30)
    features, names = image_features(images, flags, kind="mass_stats", n_bands=2)
    labels = (rng.random((30, N_LABELS)) < 0.4).astype(int)
    config = dict(learner="mlp", features="mass_stats", n_bands=2, m_bins=6, t_bins=10,
                  feature_names=names)
    model = fit_feature_model(features, labels, FeatureSettings(
        learner="mlp", features="mass_stats", n_bands=2, n_seeds=2, **TINY_MLP), seed=0,
        config=config)
    path = save_feature_model(tmp_path / FEATURE_MODEL, model)
    return json.loads(path.read_text()), features, predict_feature_logits(model, features)


def test_mlp_round_trips_through_its_file(tmp_path):
    payload, features, logits = saved_mlp(tmp_path)
    assert payload["learner"] == "mlp" and payload["per_label"] == []
    assert payload["architecture"] == {"hidden": [16], "activation": "gelu", "log_inputs": False,
                                       "norm": "layer"}
    loaded = load_feature_model(tmp_path / FEATURE_MODEL)
    assert loaded.config["features"] == "mass_stats" and len(loaded.networks) == 2
    np.testing.assert_array_equal(predict_feature_logits(loaded, features), logits)


def _weights(payload, k=0, name="0.weight"):
    return payload["networks"][k][name]


def _set(payload, name, entry):
    networks = [dict(n) for n in payload["networks"]]
    networks[0][name] = entry
    return {**payload, "networks": networks}


def _nan_weights(p):
    values = np.frombuffer(base64.b64decode(_weights(p)["float32_base64"]), "<f4").copy()
    values[0] = np.nan
    return _set(p, "0.weight", {**_weights(p), "float32_base64":
                                base64.b64encode(values.tobytes()).decode()})


MLP_DAMAGE = {
    "hidden edited": (lambda p: {**p, "architecture": {**p["architecture"], "hidden": [8]}},
                      r"network 0's 0.weight has shape \(16, 33\), expected \(8, 33\)"),
    "hidden zero": (lambda p: {**p, "architecture": {**p["architecture"], "hidden": [0]}},
                    r"architecture's hidden \[0\] is not a list of widths >= 1"),
    "activation edited": (lambda p: {**p, "architecture": {**p["architecture"],
                                                           "activation": "tanh"}},
                          "architecture's activation 'tanh' is not one of"),
    "no networks": (lambda p: {**p, "networks": []}, "networks must be a non-empty list"),
    "a parameter missing": (lambda p: {**p, "networks": [
        {k: v for k, v in p["networks"][0].items() if k != "4.bias"}]},
        r"network 0 has parameters \[.*\], expected \[.*'4.bias'"),
    "weights cut short": (lambda p: _set(p, "0.weight", {
        **_weights(p), "float32_base64": _weights(p)["float32_base64"][:-8]}),
        r"network 0's 0.weight: \d+ bytes for shape \[16, 33\] \(2112 expected\)"),
    "not base64": (lambda p: _set(p, "0.weight", {**_weights(p), "float32_base64": "?!"}),
                   "network 0's 0.weight: float32_base64 is not base64 text"),
    "a NaN weight": (_nan_weights, "network 0's 0.weight is not finite"),
    "center shortened": (lambda p: {**p, "center": p["center"][:-1]},
                         r"network 0's 0.weight has shape \(16, 33\), expected \(16, 32\)"),
    "n_bands edited": (lambda p: {**p, "config": {**p["config"], "n_bands": 3}},
                       "feature counts differ"),
    "per_label given": (lambda p: {**p, "per_label": [{"constant": 0.0}] * 9},
                        "per_label must be empty for an MLP"),
}


@pytest.mark.parametrize("damage", MLP_DAMAGE)
def test_a_damaged_mlp_file_is_refused_naming_the_file(tmp_path, damage):
    payload, _, _ = saved_mlp(tmp_path)
    edit, message = MLP_DAMAGE[damage]
    path = tmp_path / FEATURE_MODEL
    path.write_text(json.dumps(edit(payload)))
    with pytest.raises(ModelFileError, match=f"{path}: {message}"):
        load_feature_model(path)


def test_a_truncated_mlp_file_is_refused(tmp_path):
    saved_mlp(tmp_path)
    path = tmp_path / FEATURE_MODEL
    path.write_text(path.read_text()[:5000])
    with pytest.raises(ModelFileError, match=f"{path}: not readable as JSON .* truncated"):
        load_feature_model(path)


# ---- bad settings, in the notebook's terms and in a plan -------------------------------------

@pytest.mark.parametrize("changes, message", [
    (dict(hidden=[0]), r"hidden must be a non-empty list of layer widths, each at least 1, "
                       r"got \[0\]"),
    (dict(hidden=[64, -3]), r"hidden must be .* got \[64, -3\]"),
    (dict(hidden=[]), r"hidden must be a non-empty list"),
    (dict(hidden=[1.5]), r"hidden must be"),
    (dict(backbone="xgboost"), r"learner \(backbone\) must be one of \('lightgbm', "
                               r"'logistic', 'mlp'\), got 'xgboost'"),
    (dict(mlp_epochs=0), "mlp_epochs must be a whole number of at least 1"),
    (dict(n_seeds=0), "n_seeds must be a whole number of at least 1"),
    (dict(dropout=1.0), r"dropout must be a finite number of at least 0 and below 1, got 1.0"),
    # a diverging or impossible network is refused when the settings are made, naming the key
    (dict(mlp_lr=float("inf")), r"mlp_lr must be a finite number above 0, got inf"),
    (dict(mlp_lr=float("nan")), r"mlp_lr must be a finite number above 0, got nan"),
    (dict(mlp_lr=0), r"mlp_lr must be a finite number above 0, got 0"),
    (dict(mlp_lr="abc"), r"mlp_lr must be a finite number above 0, got 'abc'"),
    (dict(mlp_batch_size=0), r"mlp_batch_size must be a whole number of at least 1, got 0"),
    (dict(learning_rate=-0.1), r"learning_rate must be a finite number above 0, got -0.1"),
    (dict(n_estimators=0), r"n_estimators must be a whole number of at least 1, got 0"),
    (dict(activation="tanh"), "activation must be one of"),
    (dict(backbone="logistic", features="mass_stats"),
     r"'mass_stats' is not for the logistic regression, which takes log10 of the band kinds"),
    (dict(backbone="logistic", features="ion_time_csv"),
     r"'ion_time_csv' is not for the logistic regression"),
    (dict(features="ion_time_csv", time_stretch=[0.9, 3]),
     r"each factor of time_stretch must be a finite number of at least 0.5 and at most 2, got 3"),
    (dict(features="ion_time_csv", time_stretch=["fast"]), r"time_stretch must be .* got 'fast'"),
    (dict(features="ion_time_csv", time_stretch=0.9), r"time_stretch must be a list of factors"),
    (dict(features="ion_time_csv", time_stretch=None), r"time_stretch must be a list of factors"),
    (dict(features="ion_time_csv", time_stretch=[True]), r"each factor of time_stretch must be"),
    (dict(features="ion_time_csv", time_stretch=[[0.9]]), r"each factor of time_stretch must be"),
    (dict(features="ion_time_csv", time_stretch=[1.0, 1.1]),
     r"time_stretch must not repeat a factor or hold 1"),
    (dict(features="ion_time_csv", time_stretch=[1.1, 1.1]), r"must not repeat a factor"),
])
def test_bad_mlp_settings_are_refused_naming_the_parameter(changes, message):
    with pytest.raises(ValueError, match=message):
        feature_settings({"backbone": "mlp", **changes})


def test_time_stretch_factors_are_kept_sorted_as_floats():
    settings = feature_settings({"backbone": "mlp", "features": "ion_time_csv",
                                 "time_stretch": [1.25, 0.8]})
    assert settings.time_stretch == (0.8, 1.25)
    assert feature_settings({"backbone": "mlp"}).time_stretch == ()


def test_a_plan_with_a_bad_mlp_setting_fails_before_launch_naming_the_params_file(tmp_path):
    params = yaml.safe_load((REPO_ROOT / "params" / "features_mlp.yaml").read_text())
    bad = tmp_path / "bad_mlp.yaml"
    bad.write_text(yaml.safe_dump({**params, "hidden": [128, 0]}))
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(dict(name="p", folds=[0], runs=[dict(
        params=str(bad), backbone="mlp", seed=0, notebook="03b_train_features.ipynb")])))
    specs = expand_plan(load_plan(plan), folds=[0])
    check_parameters(specs, {})  # every key is a 03b parameter of the right kind
    with pytest.raises(PlanError, match=rf"{bad}, run features_mlp/mlp/fold0_seed0: hidden must"):
        check_runs(specs, {})
    bad.write_text(yaml.safe_dump(params))
    check_runs(specs, {})
    with pytest.raises(PlanError, match=rf"{bad} \(with \['n_seeds'\] from the command line\), "
                       rf"run features_mlp/mlp/fold0_seed0: n_seeds must"):
        check_runs(specs, {"n_seeds": 0})
    plan.write_text(plan.read_text().replace("backbone: mlp", "backbone: xgb"))
    with pytest.raises(PlanError, match=rf"{bad}, run .*learner \(backbone\) must be one of"):
        check_runs(expand_plan(load_plan(plan), folds=[0]), {})
    with pytest.raises(PlanError, match=rf"{bad} \(with \['time_stretch'\] from the command "
                       rf"line\), run .*time_stretch must not repeat a factor or hold 1"):
        check_runs(specs, {"time_stretch": [1.0]})


# ---- attribution on the grid ----------------------------------------------------------------

def test_mlp_contributions_add_up_to_the_logit_and_land_on_the_grid():
    rng = np.random.default_rng(1)
    images = (rng.random((24, 12, 16)) * 0.1).astype(np.float32)
    images[::2, 4, 6:9] = 1.0  # aromatic's evidence: row 4
    images[:, 9] = 0  # an empty row
    labels = np.zeros((24, N_LABELS))
    labels[::2, 0] = 1
    for kind in ("mass_stats", "bands"):
        features, names = image_features(images, np.arange(24) % 2, kind=kind, n_bands=4)
        model = fit_feature_model(features, labels, FeatureSettings(
            learner="mlp", features=kind, n_bands=4, n_seeds=2, **TINY_MLP), seed=0)
        contributions = explain_features.feature_contributions(model, features)
        assert contributions.shape == (24, N_LABELS, len(names))
        at_mean = predict_feature_logits(model, _mean_features(model))
        logits = predict_feature_logits(model, features)
        np.testing.assert_allclose(contributions.sum(axis=2), logits - at_mean, atol=0.05)
        grid = explain_features.contributions_to_grid(contributions[0], names, images[0], 4)
        assert grid.shape == (N_LABELS, 12, 16)
        np.testing.assert_allclose(grid.sum(axis=(1, 2)), contributions[0, :, :-1].sum(axis=1),
                                   atol=1e-4)
        aromatic = np.clip(grid[0], 0, None).sum(axis=1)
        assert 4 in np.argsort(-aromatic)[:3]
    assert explain_features.contribution_method("mlp").startswith("integrated gradients")


def _mean_features(model) -> np.ndarray:
    """The features whose standardised inputs are 0 (the training mean)."""
    values = model.center[None]
    return 10 ** values - 1e-4 if model.architecture["log_inputs"] else values


def test_total_ion_contributions_spread_over_every_row_of_their_band():
    image = np.zeros((3, 8), dtype=np.float32)
    image[0, 1], image[2, 2] = 1.0, 3.0  # band 0 (columns 0-3): rows 0 and 2
    names = [f"m{m}_{s}" for m in range(3) for s in
             ("log_mean", "log_std", "skew", "log_max", "peak_time")] + ["tic_b0", "tic_b1",
                                                                         "derivatized"]
    values = np.zeros(len(names))
    values[names.index("tic_b0")] = 4.0
    values[names.index("tic_b1")] = -8.0  # an empty band: evenly over its 3 x 4 cells
    values[names.index("m2_log_max")] = 1.0
    values[names.index("m0_log_mean")] = 2.0
    grid = explain_features.contributions_to_grid(values, names, image, n_bands=2)
    np.testing.assert_allclose(grid[0], [0, 1 + 2, 0, 0, *[-8 / 12] * 4])
    np.testing.assert_allclose(grid[1], [0, 0, 0, 0, *[-8 / 12] * 4])
    np.testing.assert_allclose(grid[2], [0, 0, 3 + 1, 0, *[-8 / 12] * 4])


# ---- the notebook, end to end ---------------------------------------------------------------

@pytest.mark.slow
def test_feature_notebook_trains_an_mlp_run_that_04_reproduces(tmp_path):
    data_dir = generate(tmp_path / "data", profile="tiny", seed=0)
    run_dir = tmp_path / "runs" / "features_mlp" / "mlp" / "fold1_seed0"
    run_dir.mkdir(parents=True)
    params = yaml.safe_load((REPO_ROOT / "params" / "features_mlp.yaml").read_text())
    pm.execute_notebook(str(REPO_ROOT / "notebooks" / "03b_train_features.ipynb"),
                        str(run_dir / "03b_train_features.ipynb"),
                        parameters={**params, **TINY_MLP, "m_bins": 64, "t_bins": 96, "fold": 1,
                                    "n_seeds": 2, "data_dir": str(data_dir),
                                    "cache_dir": str(tmp_path / "cache"),
                                    "run_dir": str(run_dir)},
                        kernel_name="python3", progress_bar=False)
    assert is_done(run_dir)
    assert {p.name for p in run_dir.iterdir()} >= {
        "03b_train_features.ipynb", FEATURE_MODEL, "oof_logits.csv", "test_logits.csv",
        "metrics.json", "DONE"}
    metrics = read_metrics(run_dir)
    assert metrics["parameters"]["backbone"] == "mlp"
    assert metrics["parameters"]["hidden"] == [16] and metrics["parameters"]["n_seeds"] == 2
    assert np.isfinite(metrics["best_oof_loss"]) and metrics["best_epoch"] is None
    assert set(metrics["samples"]) == {"train", "oof", "test"}
    assert len(load_feature_model(run_dir / FEATURE_MODEL).networks) == 2
    assert load_feature_model(run_dir / FEATURE_MODEL).config["run"] == dict(  # what it is
        name="features_mlp", backbone="mlp", fold=1, seed=0,
        data_fingerprint=metrics["data_fingerprint"])
    assert_04_reproduces(run_dir, data_dir, tmp_path / "cache", tmp_path)


# ---- a diverged network is a failed run --------------------------------------------------------

def test_a_diverging_mlp_stops_with_a_non_finite_loss():
    """mlp_lr 1e3 used to give NaN logits, OOF nan and DONE."""
    rng = np.random.default_rng(0)
    features = rng.random((40, 20)).astype(np.float32)
    labels = (rng.random((40, N_LABELS)) < 0.3).astype(float)
    settings = FeatureSettings(learner="mlp", **{**TINY_MLP, "mlp_lr": 1e3})
    with pytest.raises(NonFiniteLossError, match=r"network of seed \d+, epoch \d+: training "
                       r"loss is nan \(mlp_lr 1000: the network diverged\)"):
        fit_feature_model(features, labels, settings, seed=0)


@pytest.mark.slow
def test_03b_refuses_a_diverging_network_and_an_unknown_parameter(tmp_path):
    data_dir = generate(tmp_path / "data", profile="tiny", seed=0)
    params = yaml.safe_load((REPO_ROOT / "params" / "features_mlp.yaml").read_text())
    common = {**params, **TINY_MLP, "m_bins": 64, "t_bins": 96, "data_dir": str(data_dir),
              "cache_dir": str(tmp_path / "cache")}
    for name, changes, message in [
            ("diverged", {"mlp_lr": 1e3}, "NonFiniteLossError"),
            ("unknown", {"mlp_lrr": 0.1}, "papermill parameter 'mlp_lrr' is not a parameter of "
                                          "notebooks/03b_train_features.ipynb; did you mean "
                                          "'mlp_lr'")]:
        run_dir = tmp_path / "runs" / name / "mlp" / "fold0_seed0"
        run_dir.mkdir(parents=True)
        with pytest.raises(pm.PapermillExecutionError, match=message):
            pm.execute_notebook(str(REPO_ROOT / "notebooks" / "03b_train_features.ipynb"),
                                str(run_dir / "03b_train_features.ipynb"),
                                parameters={**common, **changes, "run_dir": str(run_dir)},
                                kernel_name="python3", progress_bar=False)
        assert not is_done(run_dir) and not (run_dir / FEATURE_MODEL).exists()


# ---- a model file is checked against its run folder --------------------------------------------

def _finished_feature_run(root, data, learner, *, fold=0, seed=0, identity_data=None):
    """runs/<name>/<learner>/fold<k>_seed<s> with a fitted model (its file recording the run,
    on ``identity_data``: the run's own data unless given), metrics.json and DONE."""
    from lib.runs.fold_run import model_identity
    from lib.runs.run_folder import data_fingerprint, mark_done, write_metrics

    name = f"features_{learner}"
    run_dir = root / name / learner / f"fold{fold}_seed{seed}"
    run_dir.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    features = rng.random((30, 12)).astype(np.float32)
    labels = (rng.random((30, N_LABELS)) < 0.4).astype(float)
    settings = FeatureSettings(learner=learner, **(TINY_MLP if learner == "mlp" else {}))
    identity = model_identity(identity_data or data, name=name, backbone=learner, fold=fold,
                              seed=seed)
    model = fit_feature_model(features, labels, settings, seed=seed,
                              config=dict(learner=learner, run=identity))
    save_feature_model(run_dir / FEATURE_MODEL, model)
    parameters = dict(name=name, backbone=learner, fold=fold, seed=seed)
    write_metrics(run_dir, dict(parameters=parameters, data_fingerprint=data_fingerprint(data)))
    mark_done(run_dir)
    return run_dir


def test_a_model_file_from_another_run_is_refused_naming_the_file(competition_dir, tmp_path):
    """The logistic regression's file, a CNN checkpoint or an MLP of other data in an MLP's
    run folder used to be predicted with (and labelled as the MLP by 06)."""
    import copy
    import shutil

    from lib.data.dataset import load_competition
    from lib.train.checkpoint import ModelMismatchError, check_model_file, save_checkpoint
    from lib.train.predict import load_run_feature_model, load_run_model

    data = load_competition(competition_dir)
    mlp = _finished_feature_run(tmp_path / "runs", data, "mlp")
    logistic = _finished_feature_run(tmp_path / "runs", data, "logistic")
    check_model_file(mlp)
    assert load_run_feature_model(mlp).learner == "mlp"
    model_file = mlp / FEATURE_MODEL
    own = model_file.read_bytes()

    shutil.copy(logistic / FEATURE_MODEL, model_file)  # the same fold's logistic regression
    for load in (check_model_file, load_run_feature_model):
        with pytest.raises(ModelMismatchError, match=rf"{model_file}: backbone 'logistic' in "
                           r"the model file, but the run's metrics.json says 'mlp'"):
            load(mlp)

    other = copy.deepcopy(data)  # an MLP trained on other labels
    other.labels.iloc[0, 0] = 1 - other.labels.iloc[0, 0]
    elsewhere = _finished_feature_run(tmp_path / "other", data, "mlp", identity_data=other)
    shutil.copy(elsewhere / FEATURE_MODEL, model_file)
    with pytest.raises(ModelMismatchError, match=rf"{model_file}: data_fingerprint '[0-9a-f]+' "
                       r"in the model file, but the run's metrics.json says"):
        check_model_file(mlp)

    model_file.write_bytes(own)
    seed1 = _finished_feature_run(tmp_path / "seed1", data, "mlp", seed=1)
    shutil.copy(seed1 / FEATURE_MODEL, model_file)
    with pytest.raises(ModelMismatchError, match=r"seed 1 in the model file, but .* says 0"):
        check_model_file(mlp)

    model_file.unlink()  # a CNN's checkpoint in the MLP's folder
    save_checkpoint(mlp / "checkpoint.pt", {}, dict(backbone="resnet18", head="cls3"))
    with pytest.raises(ModelMismatchError, match=rf"{mlp / 'checkpoint.pt'}: backbone "
                       r"'resnet18' in the model file, but the run's metrics.json says 'mlp'"):
        check_model_file(mlp)
    with pytest.raises(ModelMismatchError, match="holds a CNN checkpoint, not a feature model"):
        load_run_feature_model(mlp)

    model_file.write_bytes(own)  # both kinds of model file in one folder
    for load in (check_model_file, load_run_feature_model, lambda r: load_run_model(r, "cpu")):
        with pytest.raises(ModelMismatchError, match=rf"{mlp}: holds both feature_model.json "
                           r"and checkpoint.pt"):
            load(mlp)
