"""Per-sample features from the image cache, for the feature-based family (03b_train_features).

The cached images are (N, m, t): per sample, intensity summed into integer-m/z x normalised-time
cells and scaled to a maximum of 1 (method.md section 1). The features are statistics of each
mass row over time, so no CSV is read again; the whole small folder takes well under a second.
One kind, "ion_time_csv", is the exception: its statistics come from the sample CSVs at a finer
resolution (lib.data.third_place.ion_time_csv_cache), so image_features does not make it.
A run may train on its samples stretched along time too (stretched_image_features,
with_stretched_copies; FeatureSettings.time_stretch).
"""

from __future__ import annotations

import numpy as np

from lib.data import third_place

FEATURE_KINDS = ("bands", "benchmark", "mass_stats", "ion_time_stats", "ion_time_csv")
CSV_KINDS = ("ion_time_csv",)  # read from the sample CSVs, not from the cached image
STATS_LOG_FLOOR = 1e-6  # mass_stats: intensities are log10(value + STATS_LOG_FLOOR)
MASS_STATS = ("log_mean", "log_std", "skew", "log_max", "peak_time")  # per mass row, in order
# ion_time_stats: log10(1 + image / ION_TIME_FLOOR) divided by its ION_TIME_PERCENTILE-th
# percentile and clipped at 1 (the floor is about the noise level of an image scaled to max 1)
ION_TIME_FLOOR = 1e-6
ION_TIME_PERCENTILE = 99.8
ROW_STATS = ("mean", "max", "std")  # ion_time_stats: per mass row over time, stat-major
COLUMN_STATS = ("mean", "std")  # ion_time_stats: per time column over masses, stat-major
STRETCH_CHUNK = 64  # stretched_image_features: samples stretched at a time


def n_features(kind: str, m_bins: int, n_bands: int, t_bins: int | None = None) -> int:
    """How many features image_features gives for images of ``m_bins`` masses (and, for
    ion_time_stats, ``t_bins`` time bins): F of its (N, F) output, the derivatized flag included.
    For "ion_time_csv" the count of lib.data.third_place's features, whatever the image size."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"kind must be one of {FEATURE_KINDS}, got {kind!r}")
    if kind == "mass_stats":
        return m_bins * len(MASS_STATS) + n_bands + 1
    if kind == "ion_time_csv":
        return third_place.N_FEATURES
    if kind == "ion_time_stats":
        if t_bins is None:
            raise ValueError("ion_time_stats features need the number of time bins (t_bins)")
        return m_bins * len(ROW_STATS) + t_bins * len(COLUMN_STATS) + 1
    per_mass = n_bands if kind == "benchmark" else 2 * n_bands + 1
    return m_bins * per_mass + 1


def stretched_image_features(images: np.ndarray, derivatized: np.ndarray,
                             stretches: tuple[float, ...], *, kind: str = "bands",
                             n_bands: int = 4) -> np.ndarray:
    """image_features of the images stretched along time by each factor of ``stretches``
    (lib.data.third_place.stretch_time): images (N, m, t), derivatized (N,) -> (S, N, F)
    float32, STRETCH_CHUNK samples at a time (a few stretched copies of those in memory)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3:
        raise ValueError(f"images must be (N, m, t), got shape {images.shape}")
    flags = np.asarray(derivatized)
    width = n_features(kind, images.shape[1], n_bands, images.shape[2])
    out = np.zeros((len(stretches), len(images), width), dtype=np.float32)
    for s, factor in enumerate(stretches):
        for start in range(0, len(images), STRETCH_CHUNK):
            part = slice(start, start + STRETCH_CHUNK)
            out[s, part] = image_features(third_place.stretch_time(images[part], factor),
                                          flags[part], kind=kind, n_bands=n_bands)[0]
    return out


def with_stretched_copies(features: np.ndarray, stretched: np.ndarray,
                          labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A training set with each sample once more per stretch of its time axis: the training
    samples' features (n, F), those of their stretched images (S, n, F)
    (stretched_image_features, or an ion_time_csv_cache's stretched) and labels (n, 9) ->
    ((1 + S) n, F) features (the samples as they are, then each stretch's copies) and
    ((1 + S) n, 9) labels."""
    copies = np.concatenate([features, *stretched])
    return copies, np.tile(np.asarray(labels), (1 + len(stretched), 1))


def image_features(images: np.ndarray, derivatized: np.ndarray, *, kind: str = "bands",
                   n_bands: int = 4) -> tuple[np.ndarray, list[str]]:
    """Per sample and integer m/z, statistics over time of the cached image, plus the
    derivatized flag.

    images: (N, m, t) float, each image scaled to max 1 (an image cache's ``images``);
    derivatized: (N,) 0/1. ``kind``:

    - "bands": the normalised time axis is cut into ``n_bands`` equal bands (column edges
      round(k * t / n_bands)); per mass row: the maximum in each band, the area in each band
      (sum of the band's cells / t), and the time of the row's maximum (column / (t - 1), in
      [0, 1]; 0 for an all-zero row). m * (2 * n_bands + 1) features, mass-major:
      m<mass>_max_b<k>..., m<mass>_area_b<k>..., m<mass>_peak_time.
    - "benchmark": the organisers' benchmark recipe (lib.ensemble.baselines.benchmark_features)
      on the cached image: subtract each mass row's minimum over time (background), divide by the
      sample's new maximum, then the maximum of each row in ``n_bands`` equal time bands
      (the benchmark's 50 bins of 0.5 min over 0-25 min become bands of normalised time here,
      and its m/z 0-349 the cache's 0..m-1). m * n_bands features: m<mass>_max_b<k>.
    - "mass_stats": what the winning teams fed their networks (for the MLP learner): per mass
      row over time its mean, standard deviation, skewness, maximum and peak time, then the
      total-ion profile (the image summed over masses) averaged in ``n_bands`` equal time bands.
      Intensities span decades, so the mean, std, maximum and the profile are
      log10(value + 1e-6) (an empty row: -6); the skewness is the third standardised moment
      (0 for a constant row) and the peak time the column of the maximum / (t - 1) as for
      "bands". m * 5 + n_bands features: m<mass>_log_mean, m<mass>_log_std, m<mass>_skew,
      m<mass>_log_max, m<mass>_peak_time (mass-major), then tic_b<k>. Not all non-negative:
      only for learners that take features as they are (mlp, lightgbm).
    - "ion_time_stats": the statistics of the 3rd place's dense network (lib.data.third_place)
      on the cached image, on a log scale: v = log10(1 + image / 1e-6), divided by its 99.8th
      percentile and clipped at 1 (the 3rd place took sqrt(intensity); the log lifts peaks
      near the noise floor, which the synthetic folders at the real counts are full of:
      docs/families.md); per mass row over time the mean, maximum and standard deviation of
      v, and per time column over masses its mean and standard deviation (the chromatogram's
      shape). m * 3 + t * 2 features in [0, 1], stat-major: m<mass>_mean..., m<mass>_max...,
      m<mass>_std..., t<col>_mean..., t<col>_std... ``n_bands`` is not used.

    The last feature is ``derivatized`` (0/1). Returns (features (N, F) float32, names (F,)).
    No NaN or inf for any finite input, all-zero rows and images included.
    """
    if kind not in FEATURE_KINDS:
        raise ValueError(f"kind must be one of {FEATURE_KINDS}, got {kind!r}")
    if kind in CSV_KINDS:
        raise ValueError(f"{kind} features come from the sample CSVs "
                         f"(lib.data.third_place.ion_time_csv_cache), not from a cached image")
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3:
        raise ValueError(f"images must be (N, m, t), got shape {images.shape}")
    n, m_bins, t_bins = images.shape
    if not 1 <= n_bands <= t_bins:
        raise ValueError(f"n_bands must be in 1..{t_bins} (the time bins), got {n_bands}")
    flags = np.asarray(derivatized, dtype=np.float32).reshape(n, 1)
    starts = np.round(np.arange(n_bands) * t_bins / n_bands).astype(np.int64)
    bands = [f"b{k}" for k in range(n_bands)]
    masses = range(m_bins)

    if kind == "mass_stats":
        return _mass_stats(images, flags, starts)
    if kind == "ion_time_stats":
        return _ion_time_stats(images, flags)
    if kind == "benchmark":
        grid = images - images.min(axis=2, keepdims=True)
        peak = grid.max(axis=(1, 2), keepdims=True)
        grid = grid / np.where(peak > 0, peak, 1)
        stats = np.maximum.reduceat(grid, starts, axis=2)  # (N, m, n_bands)
        names = [f"m{mass}_max_{b}" for mass in masses for b in bands]
    else:
        band_max = np.maximum.reduceat(images, starts, axis=2)
        band_area = np.add.reduceat(images, starts, axis=2) / t_bins
        peak_time = images.argmax(axis=2)[..., None] / max(1, t_bins - 1)  # 0 for empty rows
        stats = np.concatenate([band_max, band_area, peak_time], axis=2)  # (N, m, 2 bands + 1)
        names = [f"m{mass}_{stat}" for mass in masses
                 for stat in [f"max_{b}" for b in bands] + [f"area_{b}" for b in bands]
                 + ["peak_time"]]
    features = np.concatenate([stats.reshape(n, -1), flags], axis=1).astype(np.float32)
    return features, [*names, "derivatized"]


def _mass_stats(images: np.ndarray, flags: np.ndarray, starts: np.ndarray
                ) -> tuple[np.ndarray, list[str]]:
    """image_features of kind "mass_stats": images (N, m, t) float32, flags (N, 1), band
    starts (n_bands,) -> (features (N, m * 5 + n_bands + 1), names)."""
    n, m_bins, t_bins = images.shape
    widths = np.diff(np.append(starts, t_bins))
    parts = []
    for chunk in range(0, n, 64):  # float64 moments, a few samples at a time
        values = images[chunk:chunk + 64].astype(np.float64)
        mean = values.mean(axis=2)
        centred = values - mean[..., None]
        std = np.sqrt((centred ** 2).mean(axis=2))
        peak = values.max(axis=2)
        flat = std <= 1e-9 * peak  # constant rows (empty ones too): no skewness
        skew = np.where(flat, 0.0, (centred ** 3).mean(axis=2) / np.where(flat, 1.0, std) ** 3)
        peak_time = values.argmax(axis=2) / max(1, t_bins - 1)  # 0 for empty rows
        per_mass = np.stack([np.log10(mean + STATS_LOG_FLOOR), np.log10(std + STATS_LOG_FLOOR),
                             skew, np.log10(peak + STATS_LOG_FLOOR), peak_time], axis=2)
        tic = np.add.reduceat(values.sum(axis=1), starts, axis=1) / widths  # (chunk, n_bands)
        parts.append(np.concatenate([per_mass.reshape(len(values), -1),
                                     np.log10(tic + STATS_LOG_FLOOR)], axis=1))
    width = m_bins * len(MASS_STATS) + len(starts)
    features = np.concatenate(parts, axis=0) if parts else np.zeros((0, width))
    features = np.concatenate([features, flags], axis=1).astype(np.float32)
    names = [f"m{mass}_{stat}" for mass in range(m_bins) for stat in MASS_STATS]
    return features, [*names, *(f"tic_b{k}" for k in range(len(starts))), "derivatized"]


def _ion_time_stats(images: np.ndarray, flags: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """image_features of kind "ion_time_stats": images (N, m, t) float32, flags (N, 1) ->
    (features (N, m * 3 + t * 2 + 1), names)."""
    n, m_bins, t_bins = images.shape
    parts = []
    for chunk in range(0, n, 64):
        values = np.log10(1 + np.clip(images[chunk:chunk + 64], 0, None) / ION_TIME_FLOOR)
        top = np.percentile(values.reshape(len(values), -1), ION_TIME_PERCENTILE, axis=1)
        values = np.minimum(values / np.where(top > 0, top, 1)[:, None, None], 1)
        parts.append(np.concatenate([values.mean(axis=2), values.max(axis=2),
                                     values.std(axis=2), values.mean(axis=1),
                                     values.std(axis=1)], axis=1))
    width = m_bins * len(ROW_STATS) + t_bins * len(COLUMN_STATS)
    features = np.concatenate(parts, axis=0) if parts else np.zeros((0, width))
    features = np.concatenate([features, flags], axis=1).astype(np.float32)
    names = [f"m{mass}_{stat}" for stat in ROW_STATS for mass in range(m_bins)]
    names += [f"t{col}_{stat}" for stat in COLUMN_STATS for col in range(t_bins)]
    return features, [*names, "derivatized"]
