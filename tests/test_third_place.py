"""The 3rd place's featurisation (lib.data.third_place) and dense network
(lib.models.dense_baseline), the winner's yardstick of 05's comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib.core.metrics import aggregated_log_loss
from lib.data.dataset import DataError, load_competition
from lib.data.images import cache_path
from lib.data.third_place import (
    IONS,
    N_FEATURES,
    STEPS,
    resample_max,
    scale_uint8,
    smooth_time,
    third_place_cache,
    third_place_features,
    third_place_image,
    third_place_matrix,
)
from lib.ensemble.baselines import prior_oof
from lib.models.dense_baseline import DenseBaseline, dense_baseline_oof, fit_predict_dense


def test_resampling_keeps_the_larger_of_neighbouring_readings():
    assert resample_max(np.arange(10.0), 5).tolist() == [2, 4, 6, 8, 8]
    assert resample_max(np.array([1.0, 5.0]), 4).tolist() == [1, 5, 5, 5]  # fewer readings


def test_smoothing_and_scaling():
    assert smooth_time(np.array([[0.0, 3.0, 0.0, 0.0]])).tolist() == [[1, 1, 1, 1]]
    assert smooth_time(np.array([[0.0, 0.0, 6.0, 0.0, 0.0]])).tolist() == [[2, 2, 2, 2, 2]]
    image = np.linspace(0, 1, 1000).reshape(10, 100)
    scaled = scale_uint8(image, percentile=50)
    assert scaled.dtype == np.uint8 and scaled.max() == 255
    assert (scaled[image >= np.percentile(image, 50)] == 255).all()
    assert not scale_uint8(np.zeros((3, 4))).any()


def test_an_image_of_a_hand_made_run():
    """m/z rounded to integers, sqrt of the intensity, masses outside 0..599 dropped, clipped at
    the image's 99.8th percentile: ion i reads (i + 1)^2 at every scan, so its row is i + 1;
    the top 0.2 % of the 600 x 500 cells are row 99 and part of row 98, so the clip is 99."""
    scans, ions = 1000, np.arange(100)
    masses = np.tile(np.append(ions + 0.2, [700.0, -3.0]), scans)
    intensity = np.tile(np.append((ions + 1.0) ** 2, [1e6, 1e6]), scans)
    times = np.repeat(np.arange(scans) * 0.01, len(ions) + 2)
    image = third_place_image(pd.DataFrame(dict(time=times, mass=masses, intensity=intensity)))
    assert image.shape == (IONS, STEPS) and image.dtype == np.uint8
    expected = np.minimum((ions + 1) / 99 * 255, 255).astype(np.uint8)  # 2, 5, ..., 255, 255
    np.testing.assert_array_equal(image[:100], np.repeat(expected[:, None], STEPS, axis=1))
    assert not image[100:].any()
    features = third_place_features(image, derivatized=True)
    assert features.shape == (N_FEATURES,) == (2501,) and features.dtype == np.float32
    np.testing.assert_allclose(features[:100], expected / 255, rtol=1e-6)  # mean over time
    np.testing.assert_allclose(features[500:600], expected / 255, rtol=1e-6)  # max over time
    np.testing.assert_allclose(features[1000:1500], 0, atol=1e-6)  # constant rows: no spread
    np.testing.assert_allclose(features[1500:2000], expected.sum() / 255 / 500, rtol=1e-6)
    assert features[-1] == 1 and third_place_features(image, derivatized=False)[-1] == 0


def test_the_matrix_reads_the_csvs_and_names_a_bad_one(tmp_path):
    good = tmp_path / "S0.csv"
    good.write_text("time,mass,intensity\n0.0,18.0,9.0\n0.1,18.0,16.0\n0.2,18.0,0.0\n")
    matrix = third_place_matrix([good, good], [0, 1], workers=1)
    assert matrix.shape == (2, N_FEATURES) and matrix[:, -1].tolist() == [0, 1]
    bad = tmp_path / "S1.csv"
    bad.write_text("time,mass,intensity\n0.0,abc,1.0\n")
    with pytest.raises(DataError, match="S1.csv"):
        third_place_matrix([good, bad], [0, 0], workers=1)


def toy_problem(n=160, width=30, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, width)).astype(np.float32)
    labels = (x[:, :9] > 0.6).astype(float)  # label j is "feature j is high"
    return x, labels, np.arange(n) % 4


SMALL = DenseBaseline(hidden=(32, 16), epochs=40, batch_size=16, seeds=(0, 1), lr=0.05,
                      threads=1)


def test_the_dense_network_learns_and_is_deterministic():
    x, labels, folds = toy_problem()
    oof = dense_baseline_oof(x, labels, folds, settings=SMALL)
    assert oof.shape == labels.shape and np.isfinite(oof).all()
    assert aggregated_log_loss(labels, oof) < 0.8 * aggregated_log_loss(
        labels, prior_oof(labels, folds))
    np.testing.assert_array_equal(oof, dense_baseline_oof(x, labels, folds, settings=SMALL))


def test_out_of_fold_rows_never_see_their_own_labels():
    """Flipping fold 0's labels changes only the other folds' predictions; extra samples
    (the val split) train in every fold."""
    x, labels, folds = toy_problem()
    flipped = labels.copy()
    flipped[folds == 0] = 1 - flipped[folds == 0]
    a = dense_baseline_oof(x, labels, folds, settings=SMALL)
    b = dense_baseline_oof(x, flipped, folds, settings=SMALL)
    np.testing.assert_array_equal(a[folds == 0], b[folds == 0])
    assert not np.array_equal(a[folds == 1], b[folds == 1])
    extra_x, extra_y, _ = toy_problem(n=20, seed=1)
    with_extra = dense_baseline_oof(x, labels, folds, extra_x, extra_y, settings=SMALL)
    assert not np.array_equal(with_extra[folds == 0], a[folds == 0])
    test = fit_predict_dense(x, labels, extra_x, SMALL)
    assert test.shape == (20, 9) and ((0 < test) & (test < 1)).all()


def test_a_folders_features_are_cached_once_with_the_time_they_took(competition_dir, tmp_path):
    metadata = load_competition(competition_dir).metadata
    cache = third_place_cache(metadata, tmp_path / "cache", workers=1)
    path = cache_path(tmp_path / "cache", IONS, STEPS, kind="third_place")
    assert list(cache["sample_ids"]) == list(metadata["sample_id"])
    np.testing.assert_array_equal(
        cache["features"], third_place_matrix(metadata["path"], metadata["derivatized"], workers=1))
    assert cache["features"].shape == (len(metadata), N_FEATURES)
    written = path.stat().st_mtime_ns
    again = third_place_cache(metadata, tmp_path / "cache", workers=1)
    assert path.stat().st_mtime_ns == written
    assert float(again["build_seconds"]) == float(cache["build_seconds"]) > 0
    np.testing.assert_array_equal(again["features"], cache["features"])
