"""The 3rd place's featurisation (Mars Spectrometry 2, dense network), from the sample CSVs.

Per sample (its public recipe, "DS2"): a (600 ions x 500 steps) image of sqrt(intensity); the
readings of each integer m/z, in file (time) order, resampled to 500 points (point k is the
larger of readings floor(k t) and floor((k + 1) t), t = readings / 500); smoothed twice along
time with a 3-point moving average (each end copies its neighbour); clipped at the image's
99.8th percentile and scaled to 0-255 as uint8. Features of the first 500 ions: per ion the
mean, maximum and standard deviation over time, per time step the mean and standard deviation
over ions (the chromatogram's shape), all divided by 255, then the derivatized flag:
500 * 3 + 500 * 2 + 1 = 2501 values.

Differs from the recipe only where the data needs it: readings are those of
lib.data.dataset.read_sample (NaN intensities 0, negative ones clipped to 0, which keeps the
square root real).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

from lib.data.dataset import read_sample

IONS = 600  # integer m/z 0..599 in the image
FEATURE_IONS = 500  # the first 500 of them make the features
STEPS = 500
PERCENTILE = 99.8
SMOOTH_TIMES = 2
N_FEATURES = FEATURE_IONS * 3 + FEATURE_IONS * 2 + 1


def resample_max(values: np.ndarray, length: int = STEPS) -> np.ndarray:
    """(n,) readings -> (length,): point k is max(values[floor(k t)], values[floor((k+1) t)])
    with t = n / length (the last point uses floor(k t) twice); n < length repeats readings."""
    step = len(values) / length
    first = (np.arange(length) * step).astype(int)
    second = np.append(first[1:], first[-1])
    return np.maximum(values[first], values[second])


def smooth_time(image: np.ndarray) -> np.ndarray:
    """(ions, steps) -> the same shape: 3-point moving average along time; the first and last
    step copy their neighbour's average."""
    out = np.zeros_like(image, dtype=float)
    out[:, 1:-1] = (image[:, :-2] + image[:, 1:-1] + image[:, 2:]) / 3
    out[:, 0], out[:, -1] = out[:, 1], out[:, -2]
    return out


def scale_uint8(image: np.ndarray, percentile: float = PERCENTILE) -> np.ndarray:
    """Clip at the image's ``percentile`` and map [0, that value] to 0-255 (uint8, truncated);
    an image whose percentile is 0 stays all 0."""
    top = float(np.percentile(image, percentile))
    if top <= 0:
        return np.zeros(image.shape, dtype=np.uint8)
    return (np.clip(image, image.min(), top) / top * 255).astype(np.uint8)


def third_place_image(frame: pd.DataFrame) -> np.ndarray:
    """One sample (columns time, mass, intensity, in file order) -> (IONS, STEPS) uint8."""
    mass = np.rint(frame["mass"].to_numpy(float)).astype(int)
    intensity = np.sqrt(np.clip(frame["intensity"].to_numpy(float), 0, None))
    kept = (mass >= 0) & (mass < IONS)
    mass, intensity = mass[kept], intensity[kept]
    order = np.argsort(mass, kind="stable")  # each ion's readings stay in time order
    mass, intensity = mass[order], intensity[order]
    starts = np.searchsorted(mass, np.arange(IONS + 1))
    image = np.zeros((IONS, STEPS))
    for ion in range(IONS):
        if starts[ion + 1] > starts[ion]:
            image[ion] = resample_max(intensity[starts[ion]:starts[ion + 1]])
    for _ in range(SMOOTH_TIMES):
        image = smooth_time(image)
    return scale_uint8(image)


def third_place_features(image: np.ndarray, derivatized: bool) -> np.ndarray:
    """(IONS, STEPS) uint8 image -> (N_FEATURES,) float32: per ion (first FEATURE_IONS) mean,
    max, std over time; per step mean, std over those ions; all / 255; then derivatized."""
    part = image[:FEATURE_IONS].astype(float) / 255
    return np.concatenate([part.mean(axis=1), part.max(axis=1), part.std(axis=1),
                           part.mean(axis=0), part.std(axis=0),
                           [float(derivatized)]]).astype(np.float32)


def third_place_matrix(paths, derivatized, workers: int | None = None) -> np.ndarray:
    """third_place_features of every sample CSV in ``paths`` (n,) with its derivatized flag
    (n,), in parallel processes -> (n, N_FEATURES) float32. DataError names a bad file."""
    tasks = list(zip([str(p) for p in paths], [bool(d) for d in derivatized], strict=True))
    if not tasks:
        return np.zeros((0, N_FEATURES), dtype=np.float32)
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        return np.stack(list(pool.map(_features_of_file, tasks, chunksize=8)))


def _features_of_file(task: tuple[str, bool]) -> np.ndarray:
    path, derivatized = task
    frame, _ = read_sample(path)
    return third_place_features(third_place_image(frame), derivatized)
