"""The ion-time network's parts: the ion_time_stats features (per ion and per time column of
the log-scaled cached image), the MLP with batch normalisation and SGD on features taken as
they are, its model file, and its attribution on the grid."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from lib.core.paths import REPO_ROOT
from lib.core.schema import N_LABELS
from lib.data.features import ION_TIME_FLOOR, image_features, n_features
from lib.explain.features import contributions_to_grid
from lib.models.feature_models import fit_feature_model, predict_feature_logits
from lib.models.feature_settings import FeatureSettings
from lib.models.mlp import build_mlp, mlp_shapes
from lib.models.model_file import ModelFileError, load_feature_model, save_feature_model
from lib.runs.plans import PlanError, check_parameters, check_runs, expand_plan, load_plan

BATCH_NET = dict(learner="mlp", features="ion_time_stats", hidden=[16, 8], activation="relu",
                 dropout=0.0, norm="batch", optimizer="sgd", standardise=False, mlp_epochs=40,
                 mlp_lr=0.05, mlp_batch_size=8, threads=1)


def test_ion_time_stats_of_a_hand_made_image():
    image = np.zeros((3, 4), dtype=np.float32)
    image[0] = [0.0, 1e-6, 1.0, 0.0]
    image[1, 1] = 1e-3
    features, names = image_features(image[None], np.array([1]), kind="ion_time_stats")
    assert features.shape == (1, 3 * 3 + 4 * 2 + 1) == (1, n_features("ion_time_stats", 3, 4,
                                                                        t_bins=4))
    assert names[:3] == ["m0_mean", "m1_mean", "m2_mean"] and names[3] == "m0_max"
    assert names[9:11] == ["t0_mean", "t1_mean"] and names[-2:] == ["t3_std", "derivatized"]
    values = np.log10(1 + image.astype(np.float64) / ION_TIME_FLOOR)
    values = np.minimum(values / np.percentile(values, 99.8), 1)
    by_name = dict(zip(names, features[0].astype(np.float64)))
    assert by_name["m0_max"] == pytest.approx(1.0)  # the image's top cell, at the percentile
    assert by_name["m0_mean"] == pytest.approx(values[0].mean(), rel=1e-5)
    assert by_name["m1_std"] == pytest.approx(values[1].std(), rel=1e-5)
    assert by_name["t1_mean"] == pytest.approx(values[:, 1].mean(), rel=1e-5)
    assert by_name["t2_std"] == pytest.approx(values[:, 2].std(), rel=1e-5)
    assert by_name["m2_max"] == 0 and by_name["derivatized"] == 1
    assert ((features >= 0) & (features <= 1)).all()


def test_ion_time_stats_of_empty_images_are_zero_and_need_the_time_bins():
    features, _ = image_features(np.zeros((70, 5, 6), dtype=np.float32), np.zeros(70),
                                 kind="ion_time_stats")
    assert features.shape == (70, 5 * 3 + 6 * 2 + 1) and not features.any()
    with pytest.raises(ValueError, match="t_bins"):
        n_features("ion_time_stats", 5, 4)


def test_batch_norm_shapes_are_the_saved_networks():
    net = build_mlp(7, [5, 3], "relu", 0.1, norm="batch")
    saved = {k: tuple(v.shape) for k, v in net.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    assert saved == mlp_shapes(7, [5, 3], "batch")
    assert "2.running_var" in saved and "1.weight" not in saved


def toy_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (n, 12, 10), flags (n,), labels (n, 9)): label j puts a peak on mass j."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, N_LABELS)) < 0.4).astype(int)
    images = rng.random((n, 12, 10)).astype(np.float32) * 1e-4
    for i, j in zip(*np.nonzero(labels)):
        images[i, j, rng.integers(2, 8)] = rng.uniform(0.05, 1.0)
    return images, rng.integers(0, 2, n), labels


def test_a_batch_norm_network_learns_and_round_trips_through_its_file(tmp_path):
    images, flags, labels = toy_images(160)
    features, names = image_features(images, flags, kind="ion_time_stats")
    config = dict(learner="mlp", features="ion_time_stats", n_bands=4, m_bins=12, t_bins=10,
                  feature_names=names)
    model = fit_feature_model(features[:120], labels[:120], FeatureSettings(**BATCH_NET),
                              seed=0, config=config)
    assert model.architecture == {"hidden": [16, 8], "activation": "relu", "log_inputs": False,
                                  "norm": "batch"}
    np.testing.assert_array_equal(model.center, 0)  # features taken as they are
    np.testing.assert_array_equal(model.scale, 1)
    logits = predict_feature_logits(model, features[120:])
    assert ((logits > 0) == (labels[120:] == 1)).mean() > 0.85
    path = save_feature_model(tmp_path / "feature_model.json", model)
    np.testing.assert_array_equal(predict_feature_logits(load_feature_model(path),
                                                         features[120:]), logits)
    payload = json.loads(path.read_text())
    payload["architecture"]["norm"] = "group"
    path.write_text(json.dumps(payload))
    with pytest.raises(ModelFileError, match="norm 'group' is not one of"):
        load_feature_model(path)


def test_a_model_file_without_norm_is_a_layer_norm_network(tmp_path):
    """Files written before the norm setting existed load as they did."""
    images, flags, labels = toy_images(40)
    features, _ = image_features(images, flags, kind="mass_stats", n_bands=2)
    model = fit_feature_model(features, labels, FeatureSettings(
        learner="mlp", features="mass_stats", hidden=[8], mlp_epochs=3, threads=1), seed=0)
    path = save_feature_model(tmp_path / "feature_model.json", model)
    payload = json.loads(path.read_text())
    del payload["architecture"]["norm"]
    path.write_text(json.dumps(payload))
    np.testing.assert_array_equal(predict_feature_logits(load_feature_model(path), features),
                                  predict_feature_logits(model, features))


@pytest.mark.parametrize(("change", "message"), [
    (dict(norm="group"), "norm must be one of"),
    (dict(optimizer="lbfgs"), "optimizer must be one of"),
    (dict(standardise="no"), "standardise must be true or false"),
])
def test_bad_network_settings_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        FeatureSettings(**{**BATCH_NET, **change})


def test_time_column_contributions_go_on_the_column_by_intensity():
    image = np.zeros((3, 4), dtype=np.float32)
    image[0, 2], image[2, 2], image[1, 0] = 3.0, 1.0, 5.0
    names = ["m1_max", "t2_mean", "derivatized"]
    grid = contributions_to_grid(np.array([2.0, 4.0, 7.0]), names, image, n_bands=1)
    assert grid[1, 0] == pytest.approx(2.0)  # the row's maximum on its argmax cell
    assert grid[0, 2] == pytest.approx(3.0) and grid[2, 2] == pytest.approx(1.0)
    assert grid.sum() == pytest.approx(6.0)  # derivatized has no cell


@pytest.mark.parametrize(("change", "message"), [
    ({"norm": "group"}, "norm must be one of"),
    ({"standardise": "no"}, "standardise must be true or false"),
    ({"features": "ion_stats"}, "features must be one of"),
    ({"time_stretch": [0.9, 0.4]}, "each factor of time_stretch must be a finite number of at "
                                   "least 0.5"),
])
def test_a_plan_with_a_bad_network_setting_stops_naming_the_file(tmp_path, change, message):
    params = yaml.safe_load((REPO_ROOT / "params" / "features_ion_time.yaml").read_text())
    bad = tmp_path / "bad_ion_time.yaml"
    bad.write_text(yaml.safe_dump({**params, **change}))
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(dict(name="p", folds=[0], runs=[dict(
        params=str(bad), backbone="mlp", seed=0, notebook="03b_train_features.ipynb")])))
    specs = expand_plan(load_plan(plan), folds=[0])
    with pytest.raises(PlanError, match=rf"{bad}, run features_ion_time/mlp/fold0_seed0: "
                                        rf"{message}"):
        check_runs(specs, {})


def test_the_ion_time_params_file_is_a_valid_plan_entry():
    plan = load_plan(REPO_ROOT / "params" / "plans" / "real_counts.yaml")
    specs = expand_plan(plan, folds=[0])
    check_parameters(specs, {})
    check_runs(specs, {})
    assert "features_ion_time/mlp/fold0_seed0" in [s.label for s in specs]
