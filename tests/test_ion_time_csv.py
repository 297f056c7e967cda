"""The ion-time network on the CSVs: the "ion_time_csv" features (lib.data.third_place's image
of each sample, log-scaled against the sample's peak), their per-folder cache, and a run of
03b that 04 reproduces and 06 names as not explained."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import papermill as pm
import pytest
import yaml
from conftest import assert_04_reproduces

from lib.core.paths import REPO_ROOT
from lib.core.schema import LABELS
from lib.data import third_place
from lib.data.dataset import DataError, load_competition, read_sample
from lib.data.features import image_features, n_features, with_stretched_copies
from lib.data.folds import load_or_make_folds
from lib.data.images import build_image_cache, cache_path
from lib.data.third_place import (
    IONS,
    LOG_FLOOR,
    N_FEATURES,
    STEPS,
    feature_names,
    intensity_image,
    ion_time_csv_cache,
    ion_time_features,
    log_features,
    log_scale,
    stretch_time,
    third_place_features,
    third_place_image,
    third_place_matrix,
)
from lib.explain.explainer import explain_ensemble, explain_model
from lib.explain.features import contributions_to_grid
from lib.explain.occlusion import csv_feature_predictor
from lib.models.feature_models import fit_feature_model, predict_feature_logits
from lib.models.feature_settings import FeatureSettings
from lib.runs.plans import check_parameters, check_runs, expand_plan, load_plan
from lib.runs.run_folder import is_done, read_logits, read_metrics
from lib.synthetic import generate


def hand_made_run(scans: int = 1000) -> pd.DataFrame:
    """Ion i (0..99) reads (i + 1)^2 at every scan; m/z 700 and -3 are outside the image."""
    ions = np.arange(100)
    masses = np.tile(np.append(ions + 0.2, [700.0, -3.0]), scans)
    intensity = np.tile(np.append((ions + 1.0) ** 2, [1e6, 1e6]), scans)
    times = np.repeat(np.arange(scans) * 0.01, len(ions) + 2)
    return pd.DataFrame(dict(time=times, mass=masses, intensity=intensity))


def log_image(frame: pd.DataFrame) -> np.ndarray:
    """The log-scaled CSV image the ion_time_csv features are taken of."""
    return log_scale(intensity_image(frame))


def test_the_log_image_of_a_hand_made_run():
    """The peak is 100^2, so v_i = log10(1 + (i + 1)^2 / (1e-4 * 1e4)); the 99.8th percentile
    of the 600 x 500 cells falls in row 98 (the top 0.2 % are row 99 and 100 cells of row 98),
    so row i is v_i / v_98, clipped at 1, at every step; rows 100.. stay 0."""
    image = log_image(hand_made_run())
    assert image.shape == (IONS, STEPS) and LOG_FLOOR == 1e-4
    rows = np.log10(1 + (np.arange(100) + 1.0) ** 2)
    expected = np.minimum(rows / rows[98], 1)
    np.testing.assert_allclose(image[:100], np.repeat(expected[:, None], STEPS, axis=1),
                               rtol=1e-12)
    assert not image[100:].any()
    assert not log_image(hand_made_run().assign(intensity=0.0)).any()  # no peak: all 0
    sparse = log_image(pd.DataFrame(dict(time=[0.0, 0.1], mass=[18.0, 18.0],
                                             intensity=[5.0, 0.0])))
    assert sparse.max() == 1 and 0 < (sparse > 0).sum() < 600  # under 0.2 % of cells lit


def test_the_log_scale_lifts_small_peaks_the_square_root_leaves_near_zero():
    """Ion 0 at 1/10,000 of the peak: under 1 % of the scale under sqrt (2 of 255), 7.5 %
    on the log (log10(2) / log10(9802))."""
    log_row = log_image(hand_made_run())[0, 0]
    sqrt_row = third_place_image(hand_made_run())[0, 0] / 255
    assert sqrt_row < 0.01 < 0.07 < log_row


def test_features_are_the_third_places_statistics_in_order():
    image = np.random.default_rng(0).random((IONS, STEPS))
    features = ion_time_features(image, derivatized=True)
    names = feature_names()
    assert features.shape == (N_FEATURES,) == (len(names),) and features.dtype == np.float32
    by_name = dict(zip(names, features.astype(float)))
    assert by_name["m7_max"] == pytest.approx(image[7].max(), rel=1e-6)
    assert by_name["m499_std"] == pytest.approx(image[499].std(), rel=1e-6)
    assert by_name["t3_mean"] == pytest.approx(image[:500, 3].mean(), rel=1e-6)
    assert names[-1] == "derivatized" and by_name["derivatized"] == 1
    uint8 = (image * 255).astype(np.uint8)
    np.testing.assert_array_equal(third_place_features(uint8, False),
                                  ion_time_features(uint8 / 255, False))
    assert n_features("ion_time_csv", 256, 4, 192) == N_FEATURES
    with pytest.raises(ValueError, match="ion_time_csv features come from the sample CSVs"):
        image_features(np.zeros((1, 4, 6)), np.zeros(1), kind="ion_time_csv")
    with pytest.raises(ValueError, match="kind must be one of"):
        third_place_matrix([], [], kind="cubic")


def test_the_folder_cache_is_built_once_and_rebuilt_when_a_file_changes(competition_dir,
                                                                       tmp_path):
    metadata = load_competition(competition_dir).metadata
    cache = ion_time_csv_cache(metadata, tmp_path / "cache", workers=1)
    path = tmp_path / "cache" / f"ion_time_csv_m{IONS}_t{STEPS}.npz"
    assert path.is_file() and list(cache["sample_ids"]) == list(metadata["sample_id"])
    assert cache["features"].shape == (len(metadata), N_FEATURES)
    np.testing.assert_array_equal(cache["features"][:, -1], metadata["derivatized"])
    np.testing.assert_array_equal(cache["features"][2], third_place_matrix(
        metadata["path"][2:3], metadata["derivatized"][2:3], workers=1, kind="ion_time_csv")[0])
    written = path.stat().st_mtime_ns
    again = ion_time_csv_cache(metadata, tmp_path / "cache", workers=1)
    assert path.stat().st_mtime_ns == written  # read, not rebuilt
    np.testing.assert_array_equal(again["features"], cache["features"])
    first = metadata["path"].iloc[0]
    frame = pd.read_csv(first)
    frame.loc[frame["mass"].round() == 57, "intensity"] = 0  # the run's peak is gone
    frame.to_csv(first, index=False)
    changed = ion_time_csv_cache(metadata, tmp_path / "cache", workers=1)
    assert not np.array_equal(changed["features"][0], cache["features"][0])
    np.testing.assert_array_equal(changed["features"][1:], cache["features"][1:])


def test_stretching_time_moves_a_peak_and_keeps_the_image_size():
    image = np.zeros((3, STEPS))
    image[1, 100] = 8.0
    image[2] = np.arange(STEPS)  # a ramp: its last step is what a shrunk image repeats
    np.testing.assert_array_equal(stretch_time(image, 1.0), image)
    longer, shorter = stretch_time(image, 1.25), stretch_time(image, 0.8)
    assert longer.shape == shorter.shape == image.shape
    assert np.argmax(longer[1]) == 125 and longer[1, 125] == 8.0  # 125 / 1.25 = step 100
    assert np.argmax(shorter[1]) == 80 and shorter[1, 80] == 8.0
    assert longer[1, 124] == pytest.approx(8.0 * 0.2)  # 124 / 1.25 = 99.2: a fifth of the way
    np.testing.assert_allclose(longer[2], np.arange(STEPS) / 1.25)
    assert shorter[2, -1] == shorter[2, 400] == STEPS - 1  # past 499 * 0.8: the last step


def test_the_cache_with_stretches_holds_each_stretched_image_s_features(competition_dir,
                                                                        tmp_path):
    metadata = load_competition(competition_dir).metadata
    plain = ion_time_csv_cache(metadata, tmp_path / "cache", workers=1)
    cache = ion_time_csv_cache(metadata, tmp_path / "cache", workers=1, stretches=(0.8, 1.25))
    assert (tmp_path / "cache" / f"ion_time_csv_x0.8_1.25_m{IONS}_t{STEPS}.npz").is_file()
    assert cache["stretched"].shape == (2, len(metadata), N_FEATURES)
    assert "stretched" not in ion_time_csv_cache(metadata, tmp_path / "cache", workers=1)
    assert str(cache["fingerprint"]) != str(plain["fingerprint"])
    # factors that print alike in the file name are still told apart by the fingerprint
    close = ion_time_csv_cache(metadata, tmp_path / "cache", workers=1,
                               stretches=(0.8, 1.2500001))
    assert str(close["fingerprint"]) != str(cache["fingerprint"])
    with pytest.raises(ValueError, match="for kind 'ion_time_csv' only, not 'third_place'"):
        third_place._views_matrix(metadata["path"][:1], metadata["derivatized"][:1], 1,
                                  "third_place", (1.1,))
    np.testing.assert_array_equal(cache["features"], plain["features"])
    frame, _ = read_sample(metadata["path"].iloc[2])
    flag = bool(metadata["derivatized"].iloc[2])
    for view, factor in zip(cache["stretched"], (0.8, 1.25), strict=True):
        np.testing.assert_allclose(view[2], log_features(
            stretch_time(intensity_image(frame), factor), flag), rtol=1e-6)
    # a stretch moves the chromatogram (the per-step statistics, from feature 1500 on)
    assert not np.allclose(cache["stretched"][1, 2, 1500:], cache["features"][2, 1500:])
    labels = np.arange(2 * 9).reshape(2, 9)
    x, y = with_stretched_copies(cache["features"][[4, 1]], cache["stretched"][:, [4, 1]],
                                 labels)
    assert x.shape == (6, N_FEATURES) and y.shape == (6, 9)
    np.testing.assert_array_equal(x[[0, 1]], cache["features"][[4, 1]])
    np.testing.assert_array_equal(x[[2, 3]], cache["stretched"][0][[4, 1]])
    np.testing.assert_array_equal(x[[4, 5]], cache["stretched"][1][[4, 1]])
    np.testing.assert_array_equal(y, np.concatenate([labels] * 3))


def test_a_bad_csv_is_named_and_leaves_no_cache(competition_dir, tmp_path):
    metadata = load_competition(competition_dir).metadata
    bad = metadata["path"].iloc[3]
    with open(bad, "a") as handle:
        handle.write("1.0,abc,5\n")
    with pytest.raises(DataError, match=os.path.basename(bad)):
        ion_time_csv_cache(metadata, tmp_path / "cache", workers=1)
    assert not list((tmp_path / "cache").glob("*.npz"))


def test_the_params_file_is_in_the_real_counts_plan():
    params = yaml.safe_load((REPO_ROOT / "params" / "features_ion_time_csv.yaml").read_text())
    assert params["features"] == "ion_time_csv" and params["backbone"] == "mlp"
    specs = expand_plan(load_plan(REPO_ROOT / "params" / "plans" / "real_counts.yaml"),
                        folds=[0])
    check_parameters(specs, {})
    check_runs(specs, {})
    assert "features_ion_time_csv/mlp/fold0_seed0" in [s.label for s in specs]


@pytest.mark.slow
def test_a_run_of_03b_that_04_reproduces_and_06_names(tmp_path):
    data_dir = generate(tmp_path / "data", profile="tiny", seed=0)
    run_dir = tmp_path / "runs" / "features_ion_time_csv" / "mlp" / "fold1_seed0"
    run_dir.mkdir(parents=True)
    params = yaml.safe_load((REPO_ROOT / "params" / "features_ion_time_csv.yaml").read_text())
    cache_dir = tmp_path / "cache"
    pm.execute_notebook(str(REPO_ROOT / "notebooks" / "03b_train_features.ipynb"),
                        str(run_dir / "03b_train_features.ipynb"),
                        parameters={**params, "hidden": [16], "mlp_epochs": 5, "n_seeds": 1,
                                    "m_bins": 64, "t_bins": 96, "fold": 1,
                                    "data_dir": str(data_dir), "cache_dir": str(cache_dir),
                                    "run_dir": str(run_dir)},
                        kernel_name="python3", progress_bar=False)
    assert is_done(run_dir)
    metrics = read_metrics(run_dir)
    assert metrics["n_features"] == N_FEATURES and np.isfinite(metrics["best_oof_loss"])
    stretches = "_".join(f"{factor:g}" for factor in params["time_stretch"])
    assert len(list(cache_dir.rglob(f"ion_time_csv_x{stretches}_m{IONS}_t{STEPS}.npz"))) == 1
    assert metrics["parameters"]["time_stretch"] == params["time_stretch"]
    assert not list(cache_dir.rglob("images_m64_t96.npz"))  # no image cache needed
    assert_04_reproduces(run_dir, data_dir, cache_dir, tmp_path)
    data = load_competition(data_dir)
    folds = load_or_make_folds(tmp_path / "folds", data.train_labels)
    images = build_image_cache(data.metadata, cache_path(tmp_path / "img", 64, 96), m_bins=64,
                               t_bins=96, progress=False)
    name, runs = "features_ion_time_csv/mlp/seed0", {1: run_dir}
    unread = explain_model(name, runs, images, data.labels, folds, n_per_label=1)
    assert not unread.maps and not unread.drops
    assert any("no CSV paths were given" in problem and str(run_dir) in problem
               for problem in unread.problems)
    paths = data.metadata.set_index("sample_id")["path"].to_dict()
    result = explain_model(name, runs, images, data.labels, folds, n_per_label=1, coarse=0,
                           paths=paths)
    picked = sorted({s for ids in result.picked.values() for s in ids})
    assert picked and set(result.drops) == set(picked) and result.maps
    for sample_id in picked:  # 03b's logits, from the CSV features
        np.testing.assert_allclose(result.probs[sample_id], 1 / (1 + np.exp(
            -read_logits(run_dir / "oof_logits.csv").loc[sample_id].to_numpy())), atol=1e-5)
        assert result.drops[sample_id].shape == (64, len(LABELS))
    some_map = next(iter(next(iter(result.maps.values())).values()))
    assert some_map.shape == (64, 96) and np.abs(some_map).sum() > 0
    ensemble = explain_ensemble({name: runs}, images, data.labels, folds, n_per_label=1,
                                coarse=0, paths=paths)
    for sample_id, drops in ensemble.drops.items():  # one member: the ensemble is that model
        np.testing.assert_allclose(drops, result.drops[sample_id], atol=1e-5)
    # 06 itself, on a cache folder where no image cache was built (only 03b of this run ran)
    pm.execute_notebook(str(REPO_ROOT / "notebooks" / "06_explain.ipynb"),
                        str(tmp_path / "06.ipynb"),
                        parameters=dict(plan="", run_dirs=[str(run_dir)],
                                        data_dir=str(data_dir), cache_dir=str(cache_dir),
                                        n_model_samples=1, device="cpu"),
                        kernel_name="python3", progress_bar=False)
    executed = (tmp_path / "06.ipynb").read_text()
    assert f"{name}: feature, " in executed and "maps (integrated gradients" in executed
    assert len(list(cache_dir.rglob("images_m64_t96.npz"))) == 1  # 06 built its grid


def test_occlusion_empties_the_same_mz_in_the_csv_image():
    """Emptying cached row 3 gives the model's logits of the CSV image with ion 3 emptied; the
    unoccluded image gives those of the whole CSV image, ion 5 included although the cache's
    row 5 is empty (a row empty in the cache itself is not an occlusion)."""
    rng = np.random.default_rng(0)
    x = rng.random((24, N_FEATURES)).astype(np.float32)
    labels = (rng.random((24, len(LABELS))) > 0.5).astype(float)
    settings = FeatureSettings(learner="mlp", features="ion_time_csv", hidden=[8],
                               mlp_epochs=2, threads=1)
    model = fit_feature_model(x, labels, settings, seed=0)
    csv_image = rng.random((IONS, STEPS))  # row 5 is lit here but empty in the cache
    reference = np.ones((8, 4), dtype=np.float32)
    reference[5] = 0
    predict = csv_feature_predictor(model, csv_image, reference, derivatized=1)
    emptied = reference.copy()
    emptied[3] = 0
    logits = predict(np.stack([reference, emptied]))
    without_3 = csv_image.copy()
    without_3[3] = 0
    expected = predict_feature_logits(model, np.stack([
        ion_time_features(log_scale(csv_image), True),
        ion_time_features(log_scale(without_3), True)]))
    np.testing.assert_allclose(logits, expected, rtol=1e-6)
    assert not np.allclose(logits[0], logits[1])


def test_contributions_of_csv_features_go_on_the_cached_grid():
    """Step s of 500 goes on column s * t // 500 by intensity; ions past the cache's rows,
    helium and the derivatized flag are left out."""
    names = feature_names()
    image = np.zeros((8, 4), dtype=np.float32)
    image[2, 3], image[6, 3] = 1.0, 3.0
    values = np.zeros(len(names))
    values[names.index("t499_std")] = 4.0  # column 3: rows 2 and 6 by intensity
    values[names.index("t10_mean")] = 2.0  # column 0: empty, spread evenly over its 8 cells
    values[names.index("m6_max")] = 1.0  # row 6's argmax
    values[names.index("m300_mean")] = 5.0  # past the 8 rows
    values[names.index("m4_max")] = 6.0  # helium: not in the cached image
    values[names.index("derivatized")] = 7.0
    grid = contributions_to_grid(values, names, image, n_bands=4, steps=STEPS)
    assert grid[2, 3] == pytest.approx(1.0) and grid[6, 3] == pytest.approx(3.0 + 1.0)
    np.testing.assert_allclose(grid[:, 0], 2.0 / 8)
    assert grid.sum() == pytest.approx(4.0 + 2.0 + 1.0)
