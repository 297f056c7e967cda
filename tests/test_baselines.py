"""Baselines: the metric, the prior, the benchmark features and logistic regression."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib.core.metrics import aggregated_log_loss
from lib.core.schema import HELIUM_MASS, LABELS
from lib.data.dataset import load_competition
from lib.data.images import cache_path, cache_rows
from lib.ensemble.baselines import (
    N_MASSES,
    N_TIME_BINS,
    benchmark_feature_cache,
    benchmark_features,
    feature_matrix,
    logistic_benchmark_oof,
    logistic_benchmark_predict,
    prior_oof,
    prior_predictions,
)
from lib.synthetic import simulate_run


def test_prior_predictions_are_label_means():
    train = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 1], [0, 0, 1]])
    prior = prior_predictions(train, 5)
    assert prior.shape == (5, 3)
    np.testing.assert_allclose(prior, [[0.5, 0.0, 0.75]] * 5)


def _run(rows: list[tuple[float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["time", "mass", "intensity"])


def test_features_hand_made_run():
    """Background subtraction, max scaling, right-closed 0.5-min bins, mass-major order."""
    rows = []
    for t in (0.2, 0.7, 1.2):  # bins 0, 1, 2
        rows += [(t, 4.1, 1e9), (t, 49.8, 100.0), (t, 57.2, 10.0)]
    rows[4] = (0.7, 49.8, 300.0)  # a peak at m/z 50 in bin 1
    rows[8] = (1.2, 57.2, np.nan)  # a missing reading counts as 0
    features = benchmark_features(_run(rows))
    assert features.shape == (N_MASSES * N_TIME_BINS,)
    grid = features.reshape(N_MASSES, N_TIME_BINS)
    assert grid[50, 1] == 1.0  # (300 - 100) / 200: the sample max
    assert grid[50, 0] == 0.0 and grid[50, 2] == 0.0
    np.testing.assert_allclose(grid[57, :3], [0.05, 0.05, 0.0])  # (10 - 0) / 200
    assert not grid[HELIUM_MASS].any()
    assert np.count_nonzero(grid) == 3


def test_features_of_a_synthetic_run():
    run = simulate_run(np.random.default_rng(0), np.ones(len(LABELS), int), False, "tiny")
    features = benchmark_features(run)
    assert features.shape == (N_MASSES * N_TIME_BINS,)
    assert features.min() >= 0 and features.max() == pytest.approx(1.0)
    assert not features.reshape(N_MASSES, N_TIME_BINS)[HELIUM_MASS].any()


def test_benchmark_beats_prior_on_an_easy_case():
    rng = np.random.default_rng(0)
    n = 200
    features = rng.random((n, 30)) * 0.2
    labels = (rng.random((n, 9)) < 0.3).astype(int)
    features[:, :9] += labels  # each label lights one feature
    folds = np.arange(n) % 5
    oof = logistic_benchmark_oof(features, labels, folds)
    prior = prior_oof(labels, folds)
    assert aggregated_log_loss(labels, oof) < 0.5 * aggregated_log_loss(labels, prior)


def test_benchmark_fitted_on_all_predicts_new_samples():
    rng = np.random.default_rng(1)
    features = rng.random((200, 30)) * 0.2
    labels = (rng.random((200, 9)) < 0.3).astype(int)
    labels[:, 8] = 0  # one class only: its mean
    features[:, :9] += labels
    new = features[:40] + rng.normal(0, 0.02, (40, 30))
    predicted = logistic_benchmark_predict(features[40:], labels[40:], new)
    assert predicted.shape == (40, 9) and (predicted[:, 8] == 0).all()
    prior = np.tile(labels[40:].mean(axis=0), (40, 1))
    assert aggregated_log_loss(labels[:40], predicted) < 0.5 * aggregated_log_loss(labels[:40],
                                                                                   prior)


def test_single_class_label_gets_its_mean():
    features = np.random.default_rng(0).random((20, 4))
    labels = np.zeros((20, 2), dtype=int)
    labels[::2, 0] = 1
    oof = logistic_benchmark_oof(features, labels, np.arange(20) % 4)
    assert (oof[:, 1] == 0).all()
    assert ((oof[:, 0] > 0) & (oof[:, 0] < 1)).all()


def test_prior_oof_uses_other_folds_and_extra_samples():
    labels = np.array([[1, 0], [0, 0], [1, 1], [0, 1]])
    folds = np.array([0, 0, 1, 1])
    np.testing.assert_allclose(prior_oof(labels, folds), [[0.5, 1], [0.5, 1], [0.5, 0], [0.5, 0]])
    extra = np.array([[1, 1]])
    with_extra = prior_oof(labels, folds, extra_labels=extra)
    np.testing.assert_allclose(with_extra[0], [2 / 3, 1])
    np.testing.assert_allclose(with_extra[2], [2 / 3, 1 / 3])


def test_extra_samples_train_in_every_fold():
    rng = np.random.default_rng(1)
    features = rng.random((40, 5))
    labels = np.zeros((40, 1), dtype=int)  # one class only within the folds ...
    extra_labels = np.ones((10, 1), dtype=int)  # ... the extra samples bring the other
    extra_features = rng.random((10, 5)) + 5
    oof = logistic_benchmark_oof(features, labels, np.arange(40) % 4,
                                 extra_features=extra_features, extra_labels=extra_labels)
    assert (oof < 0.5).all() and (oof > 0).all()  # a fitted model, not the constant mean 0


def test_a_folders_benchmark_features_are_read_once_and_kept_with_their_cost(competition_dir,
                                                                            tmp_path):
    metadata = load_competition(competition_dir).metadata
    folder = tmp_path / "cache"
    cache = benchmark_feature_cache(metadata, folder, workers=1)
    path = cache_path(folder, N_MASSES, N_TIME_BINS, kind="benchmark")
    assert path.is_file() and list(cache["sample_ids"]) == list(metadata["sample_id"])
    np.testing.assert_array_equal(cache["features"], feature_matrix(metadata["path"], workers=1))
    assert float(cache["build_seconds"]) > 0
    written = path.stat().st_mtime_ns
    again = benchmark_feature_cache(metadata, folder, workers=1)
    assert path.stat().st_mtime_ns == written  # read, not rebuilt
    assert float(again["build_seconds"]) == float(cache["build_seconds"])  # the first build's
    last = metadata["path"].iloc[-1]
    frame = pd.read_csv(last)
    frame["intensity"] = frame["intensity"][::-1].to_numpy()  # the same readings, other times
    frame.to_csv(last, index=False)
    changed = benchmark_feature_cache(metadata, folder, workers=1)
    assert not np.array_equal(changed["features"][-1], cache["features"][-1])
    np.testing.assert_array_equal(changed["features"][:-1], cache["features"][:-1])


def test_a_caches_rows_are_found_by_sample_id_and_a_missing_one_is_named():
    cache = {"sample_ids": np.array(["S2", "S0", "S1"])}
    assert cache_rows(cache, ["S0", "S1", "S0"]).tolist() == [1, 2, 1]
    assert cache_rows(cache, []).tolist() == []
    with pytest.raises(KeyError, match="sample 'S9' is not in the cache"):
        cache_rows(cache, ["S1", "S9"])
