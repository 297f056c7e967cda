"""Reference baselines: the prior-only predictor and the organisers' benchmark.

The benchmark follows the organisers' published notebook for this challenge: per sample, the
maximum background-subtracted, max-scaled intensity in each (0.5-min time bin, integer m/z)
cell over 0-25 min and m/z 0-349, fed to one L1 logistic regression per label. On the real train
split it scored 0.1773 aggregated log loss in 5-fold CV, the prior 0.2967. The features of a
folder are read from its CSVs once and kept beside its image caches (benchmark_feature_cache).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.linear_model import LogisticRegression

from lib.core.files import check_free_space
from lib.core.schema import HELIUM_MASS
from lib.data.dataset import read_sample
from lib.data.images import (
    CACHE_SPACE_HINT,
    RENDER_VERSION,
    cache_fingerprint,
    cache_path,
    cached_arrays,
)

N_MASSES = 350  # integer m/z 0..349
TIME_BIN_MIN = 0.5
N_TIME_BINS = 50  # 0-25 min
# Bump when benchmark_features or the constants above change, so benchmark_feature_cache
# rebuilds its file (its fingerprint also holds RENDER_VERSION, for read_sample's repairs).
BENCHMARK_VERSION = "benchmark 1"
_SKLEARN_VERSION = tuple(int(p) for p in sklearn.__version__.split(".")[:2])


def prior_predictions(train_labels: np.ndarray, n_out: int) -> np.ndarray:
    """Predict every label's training mean for n_out samples.

    train_labels: (n, 9) 0/1. Returns (n_out, 9).
    """
    means = np.asarray(train_labels, dtype=float).mean(axis=0)
    return np.tile(means, (n_out, 1))


def benchmark_features(df: pd.DataFrame) -> np.ndarray:
    """The organisers' benchmark preprocessing of one sample.

    df: one sample CSV (columns time, mass, intensity). Steps: round mass to the nearest
    integer and average readings sharing a (time, integer mass); drop helium (m/z 4) and keep
    m/z 0-349; subtract each mass's minimum over the whole run (background); divide by the
    sample's maximum; take the maximum per (0.5-min bin, mass) over 0 < time <= 25 min (bins are
    right-closed, as pandas.cut made them); empty cells are 0. Missing intensities count as 0.
    Returns (350 * 50,) float, mass-major: index = mass * 50 + time_bin.
    """
    time = df["time"].to_numpy(float)
    mass = np.rint(df["mass"].to_numpy(float))
    intensity = np.nan_to_num(df["intensity"].to_numpy(float), nan=0.0)
    kept = (mass >= 0) & (mass < N_MASSES) & (mass != HELIUM_MASS)
    time, mass, intensity = time[kept], mass[kept].astype(int), intensity[kept]
    scan_times, scan = np.unique(time, return_inverse=True)

    # mean intensity per (scan, integer mass); `present` marks cells the sweep covers
    cell = scan * N_MASSES + mass
    size = len(scan_times) * N_MASSES
    counts = np.bincount(cell, minlength=size).reshape(-1, N_MASSES)
    sums = np.bincount(cell, weights=intensity, minlength=size).reshape(-1, N_MASSES)
    present = counts > 0
    grid = sums / np.maximum(counts, 1)

    background = np.where(present, grid, np.inf).min(axis=0)
    background[np.isinf(background)] = 0.0  # masses the sweep never covers
    grid = np.where(present, grid - background, 0.0)
    if grid.size and grid.max() > 0:
        grid /= grid.max()

    features = np.zeros((N_MASSES, N_TIME_BINS))
    bin_of_scan = np.ceil(scan_times / TIME_BIN_MIN).astype(int) - 1
    for b in np.unique(bin_of_scan[(bin_of_scan >= 0) & (bin_of_scan < N_TIME_BINS)]):
        features[:, b] = grid[bin_of_scan == b].max(axis=0)
    return features.ravel()


def _l1_logistic(C: float) -> LogisticRegression:
    """An L1 logistic regression fitted by liblinear; scikit-learn 1.8 deprecated `penalty`
    and spells L1 as l1_ratio=1."""
    if _SKLEARN_VERSION >= (1, 8):
        return LogisticRegression(l1_ratio=1.0, solver="liblinear", C=C, random_state=0)
    return LogisticRegression(penalty="l1", solver="liblinear", C=C, random_state=0)


def logistic_benchmark_oof(features: np.ndarray, labels: np.ndarray, folds: np.ndarray,
                           C: float = 10.0, extra_features: np.ndarray | None = None,
                           extra_labels: np.ndarray | None = None) -> np.ndarray:
    """Out-of-fold probabilities of the benchmark: one L1 logistic regression per label.

    features: (n, f); labels: (n, 9) 0/1; folds: (n,) fold index per sample; C: inverse L1
    strength (unscaled features, liblinear). extra_features (m, f) / extra_labels (m, 9):
    samples that train in every fold (the val split, as in the CNN runs). A label with one
    class in a training set gets its training mean. Returns (n, 9).
    """
    labels, folds = np.asarray(labels), np.asarray(folds)
    extra_x, extra_y = _extra(features, labels, extra_features, extra_labels)
    oof = np.zeros(labels.shape, dtype=float)
    for k in np.unique(folds):
        train, held = folds != k, folds == k
        oof[held] = logistic_benchmark_predict(
            np.concatenate([features[train], extra_x]),
            np.concatenate([labels[train], extra_y]), features[held], C)
    return oof


def logistic_benchmark_predict(features: np.ndarray, labels: np.ndarray,
                               new_features: np.ndarray, C: float = 10.0) -> np.ndarray:
    """Probabilities of the benchmark fitted on every given sample (one L1 logistic
    regression per label) for other samples, e.g. the test split. features: (n, f); labels:
    (n, 9) 0/1; new_features: (m, f). A label with one class gets its training mean.
    Returns (m, 9)."""
    labels = np.asarray(labels)
    predictions = np.zeros((len(new_features), labels.shape[1]), dtype=float)
    for j in range(labels.shape[1]):
        y = labels[:, j]
        if y.min() == y.max():
            predictions[:, j] = y.mean()
            continue
        predictions[:, j] = _l1_logistic(C).fit(features, y).predict_proba(new_features)[:, 1]
    return predictions


def prior_oof(labels: np.ndarray, folds: np.ndarray,
              extra_labels: np.ndarray | None = None) -> np.ndarray:
    """Out-of-fold prior predictions: each fold gets the label means of the other folds (plus
    ``extra_labels`` (m, 9), samples that train in every fold). labels (n, 9) -> (n, 9)."""
    labels, folds = np.asarray(labels, dtype=float), np.asarray(folds)
    extra = np.zeros((0, labels.shape[1])) if extra_labels is None else extra_labels
    oof = np.zeros(labels.shape, dtype=float)
    for k in np.unique(folds):
        held = folds == k
        oof[held] = prior_predictions(np.concatenate([labels[~held], extra]), int(held.sum()))
    return oof


def feature_matrix(paths, workers: int | None = None) -> np.ndarray:
    """benchmark_features of every sample CSV in ``paths`` (n,), in parallel -> (n, f)."""
    paths = [str(p) for p in paths]
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        return np.stack(list(pool.map(_features_of_file, paths, chunksize=8)))


def benchmark_feature_cache(metadata: pd.DataFrame, folder: str | Path,
                            workers: int | None = None) -> dict[str, np.ndarray]:
    """feature_matrix of every sample of ``metadata`` (Competition.metadata rows), kept in
    folder/benchmark_m350_t50.npz and reused while the samples' files and the recipe
    (BENCHMARK_VERSION) are unchanged (lib.data.images.cached_arrays); NotEnoughSpaceError
    naming ``folder`` before the CSVs are read if its disk cannot hold the file (140 kB a
    sample). Returns sample_ids (N,) str, features (N, 350 * 50) float64, fingerprint () str
    and build_seconds () float."""
    fingerprint = cache_fingerprint(metadata, N_MASSES, N_TIME_BINS,
                                    version=f"{RENDER_VERSION} {BENCHMARK_VERSION}")

    def build() -> dict[str, np.ndarray]:
        check_free_space(folder, len(metadata) * N_MASSES * N_TIME_BINS * 8 * 1.1 + 2**20,
                         "the benchmark's feature cache", CACHE_SPACE_HINT)
        return {"sample_ids": metadata["sample_id"].to_numpy(dtype=str),
                "features": feature_matrix(metadata["path"], workers)}

    path = cache_path(folder, N_MASSES, N_TIME_BINS, kind="benchmark")
    return cached_arrays(path, fingerprint, build)


def _features_of_file(path: str) -> np.ndarray:
    frame, _ = read_sample(path)
    return benchmark_features(frame)


def _extra(features, labels, extra_features, extra_labels):
    if extra_features is None:
        return np.zeros((0, features.shape[1])), np.zeros((0, labels.shape[1]))
    return np.asarray(extra_features), np.asarray(extra_labels)
