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

The same statistics on a log scale make the feature kind "ion_time_csv" (log_features): the
image of the raw intensity at the same resolution (resampled, smoothed twice), then
v = log10(1 + image / (LOG_FLOOR * the image's maximum)), divided by v's 99.8th percentile and
clipped at 1, kept as floats. The floor, 1e-4 of the sample's peak (most often helium's), was
chosen by 5-fold CV on a `medium` folder of seed 11 among 1e-3 .. 1e-6 (docs/families.md). Its
matrix over a competition folder is cached beside the image caches (ion_time_csv_cache), with
the same features of the image stretched along time (stretch_time) where a run trains on
stretched copies of its samples (FeatureSettings.time_stretch). The recipe's matrix is cached
the same way (third_place_cache), for 05_ensemble's baseline.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from lib.data.dataset import read_sample
from lib.data.images import RENDER_VERSION, cache_fingerprint, cache_path, cached_arrays

IONS = 600  # integer m/z 0..599 in the image
FEATURE_IONS = 500  # the first 500 of them make the features
STEPS = 500
PERCENTILE = 99.8
SMOOTH_TIMES = 2
N_FEATURES = FEATURE_IONS * 3 + FEATURE_IONS * 2 + 1
# ion_time_csv: the log's floor, relative to the sample image's maximum (most often helium's,
# m/z 4, which the 3rd place's image keeps)
LOG_FLOOR = 1e-4
KINDS = ("third_place", "ion_time_csv")  # sqrt and uint8 (the recipe), or the log scale
# Bump when what a kind's features are made of changes, so its cache is rebuilt; both caches'
# fingerprints also hold RENDER_VERSION, bumped when read_sample's repairs change.
# CSV_VERSION (ion_time_csv_cache): ion_image, resample_max, smooth_time, intensity_image,
# log_scale, ion_time_features, log_features, stretch_time and their constants.
CSV_VERSION = "ion_time_csv 2"  # 2: log_scale divides by the peak first (no underflow)
# THIRD_PLACE_VERSION (third_place_cache): ion_image, resample_max, smooth_time, scale_uint8,
# third_place_image, ion_time_features, third_place_features and their constants.
THIRD_PLACE_VERSION = "third_place 1"


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


def ion_image(frame: pd.DataFrame, values: np.ndarray) -> np.ndarray:
    """One sample (columns time, mass, intensity, in file order) and a value per reading (n,)
    -> (IONS, STEPS) float: each integer m/z's values in time order, resample_max'ed to STEPS
    points, then smooth_time'd SMOOTH_TIMES times; an ion without readings stays 0."""
    mass = np.rint(frame["mass"].to_numpy(float)).astype(int)
    kept = (mass >= 0) & (mass < IONS)
    mass, values = mass[kept], np.asarray(values, dtype=float)[kept]
    order = np.argsort(mass, kind="stable")  # each ion's readings stay in time order
    mass, values = mass[order], values[order]
    starts = np.searchsorted(mass, np.arange(IONS + 1))
    image = np.zeros((IONS, STEPS))
    for ion in range(IONS):
        if starts[ion + 1] > starts[ion]:
            image[ion] = resample_max(values[starts[ion]:starts[ion + 1]])
    for _ in range(SMOOTH_TIMES):
        image = smooth_time(image)
    return image


def third_place_image(frame: pd.DataFrame) -> np.ndarray:
    """One sample -> (IONS, STEPS) uint8: ion_image of sqrt(intensity), scale_uint8'ed."""
    intensity = np.clip(frame["intensity"].to_numpy(float), 0, None)
    return scale_uint8(ion_image(frame, np.sqrt(intensity)))


def intensity_image(frame: pd.DataFrame) -> np.ndarray:
    """One sample -> (IONS, STEPS) float: the ion_image of its intensity."""
    return ion_image(frame, np.clip(frame["intensity"].to_numpy(float), 0, None))


def log_scale(image: np.ndarray, floor: float = LOG_FLOOR) -> np.ndarray:
    """(ions, steps) intensity image -> the same shape in [0, 1]: v = log10(1 + image /
    (floor * its max)), divided by v's PERCENTILE-th percentile (by v's maximum where fewer
    cells than that are lit) and clipped at 1; an all-zero image stays 0."""
    peak = image.max()
    if peak <= 0:
        return np.zeros(image.shape)
    values = np.log10(1 + image / peak / floor)  # not floor * peak: it underflows for tiny peaks
    top = np.percentile(values, PERCENTILE)
    return np.minimum(values / (top if top > 0 else values.max()), 1)


def stretch_time(image: np.ndarray, factor: float) -> np.ndarray:
    """(..., steps) image(s), time last -> the same shape (float), stretched along time by
    ``factor`` about step 0: step k takes the value at k / factor (linear between steps), so
    content moves later for a factor above 1 (what falls past the last step is cut) and
    earlier below 1 (the steps left at the end repeat the last one)."""
    steps = image.shape[-1]
    source = np.minimum(np.arange(steps) / factor, steps - 1)
    left = np.floor(source).astype(int)
    right = np.minimum(left + 1, steps - 1)
    weight = (source - left).astype(image.dtype if image.dtype.kind == "f" else float)
    return image[..., left] * (1 - weight) + image[..., right] * weight


def ion_time_features(image: np.ndarray, derivatized: bool) -> np.ndarray:
    """(IONS, STEPS) image in [0, 1] -> (N_FEATURES,) float32: per ion (the first
    FEATURE_IONS) the mean, max and std over time, per step the mean and std over those ions,
    then derivatized (0/1)."""
    part = np.asarray(image, dtype=float)[:FEATURE_IONS]
    return np.concatenate([part.mean(axis=1), part.max(axis=1), part.std(axis=1),
                           part.mean(axis=0), part.std(axis=0),
                           [float(derivatized)]]).astype(np.float32)


def log_features(image: np.ndarray, derivatized: bool) -> np.ndarray:
    """(IONS, STEPS) intensity_image -> (N_FEATURES,) float32: the "ion_time_csv" features,
    ion_time_features of its log_scale."""
    return ion_time_features(log_scale(image), derivatized)


def third_place_features(image: np.ndarray, derivatized: bool) -> np.ndarray:
    """(IONS, STEPS) uint8 image -> (N_FEATURES,) float32: ion_time_features of image / 255."""
    return ion_time_features(image.astype(float) / 255, derivatized)


def feature_names() -> list[str]:
    """The N_FEATURES names, in order: m<ion>_mean..., m<ion>_max..., m<ion>_std..., then
    t<step>_mean..., t<step>_std..., then derivatized (ion: integer m/z; step: 0..STEPS-1)."""
    names = [f"m{ion}_{stat}" for stat in ("mean", "max", "std") for ion in range(FEATURE_IONS)]
    names += [f"t{step}_{stat}" for stat in ("mean", "std") for step in range(STEPS)]
    return [*names, "derivatized"]


def third_place_matrix(paths, derivatized, workers: int | None = None,
                       kind: str = "third_place") -> np.ndarray:
    """The features of every sample CSV in ``paths`` (n,) with its derivatized flag (n,), in
    parallel processes -> (n, N_FEATURES) float32. kind "third_place": third_place_features of
    third_place_image (the recipe); "ion_time_csv": log_features of intensity_image.
    DataError names a bad file."""
    return _views_matrix(paths, derivatized, workers, kind, ())[:, 0]


def ion_time_csv_cache(metadata: pd.DataFrame, folder: str | Path, workers: int | None = None,
                       stretches: tuple[float, ...] = ()) -> dict[str, np.ndarray]:
    """The "ion_time_csv" features of every sample of ``metadata`` (Competition.metadata rows),
    kept in folder/ion_time_csv_m600_t500.npz (with stretches, e.g. (0.9, 1.1):
    ion_time_csv_x0.9_1.1_m600_t500.npz) and reused while the samples' files, the recipe
    (CSV_VERSION) and the stretches are unchanged (lib.data.images.cached_arrays: built once,
    whole or absent). ``workers`` processes build it (default: every core; only the first of
    the runs that start together builds it). Returns sample_ids (N,) str, features
    (N, N_FEATURES) float32, fingerprint and, with stretches, stretched (S, N, N_FEATURES)
    float32: log_features of stretch_time(intensity_image, s) for each s of ``stretches``."""
    stretches = tuple(float(s) for s in stretches)
    tag = "".join(f"_{s:g}" for s in stretches)  # the file's name; the fingerprint: every digit
    version = f"{RENDER_VERSION} {CSV_VERSION}" + (f" stretches {stretches!r}" if stretches else "")
    fingerprint = cache_fingerprint(metadata, IONS, STEPS, version=version)

    def build() -> dict[str, np.ndarray]:
        views = _views_matrix(metadata["path"], metadata["derivatized"], workers,
                              "ion_time_csv", stretches)
        arrays = {"sample_ids": metadata["sample_id"].to_numpy(dtype=str),
                  "features": np.ascontiguousarray(views[:, 0])}
        if stretches:
            arrays["stretched"] = np.ascontiguousarray(views[:, 1:].transpose(1, 0, 2))
        return arrays

    kind = f"ion_time_csv_x{tag[1:]}" if stretches else "ion_time_csv"
    return cached_arrays(cache_path(folder, IONS, STEPS, kind=kind), fingerprint, build)


def third_place_cache(metadata: pd.DataFrame, folder: str | Path,
                      workers: int | None = None) -> dict[str, np.ndarray]:
    """The 3rd place's features (third_place_matrix, kind "third_place") of every sample of
    ``metadata`` (Competition.metadata rows), kept in folder/third_place_m600_t500.npz and
    reused while the samples' files and the recipe (THIRD_PLACE_VERSION) are unchanged
    (lib.data.images.cached_arrays). Returns sample_ids (N,) str, features (N, N_FEATURES)
    float32, fingerprint () str and build_seconds () float (what building them took)."""
    fingerprint = cache_fingerprint(metadata, IONS, STEPS,
                                    version=f"{RENDER_VERSION} {THIRD_PLACE_VERSION}")

    def build() -> dict[str, np.ndarray]:
        features = third_place_matrix(metadata["path"], metadata["derivatized"], workers)
        return {"sample_ids": metadata["sample_id"].to_numpy(dtype=str), "features": features}

    return cached_arrays(cache_path(folder, IONS, STEPS, kind="third_place"), fingerprint, build)


def _views_matrix(paths, derivatized, workers: int | None, kind: str,
                  stretches: tuple[float, ...]) -> np.ndarray:
    """(n, 1 + S, N_FEATURES) float32: the features of each sample CSV (third_place_matrix),
    then those of its image stretched by each of ``stretches`` (kind "ion_time_csv" only)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if stretches and kind != "ion_time_csv":
        raise ValueError(f"stretched copies are made for kind 'ion_time_csv' only, not {kind!r}")
    tasks = [(str(path), bool(flag), kind, tuple(stretches))
             for path, flag in zip(paths, derivatized, strict=True)]
    if not tasks:
        return np.zeros((0, 1 + len(stretches), N_FEATURES), dtype=np.float32)
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        return np.stack(list(pool.map(_features_of_file, tasks, chunksize=8)))


def _features_of_file(task: tuple[str, bool, str, tuple[float, ...]]) -> np.ndarray:
    """(1 + S, N_FEATURES): one CSV's features, then those of each stretch of its image."""
    path, derivatized, kind, stretches = task
    frame, _ = read_sample(path)
    if kind == "ion_time_csv":
        image = intensity_image(frame)
        return np.stack([log_features(image, derivatized)]
                        + [log_features(stretch_time(image, s), derivatized) for s in stretches])
    return third_place_features(third_place_image(frame), derivatized)[None]
