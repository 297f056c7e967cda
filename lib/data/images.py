"""GC-MS run -> 2D mass x time image -> model input (method.md sections 1 and 2), and the cache.

Shapes: an image is (2, m_bins, t_bins) float32 = (channel, mass, time); channel 0 holds the run
when the sample is not derivatized, channel 1 when it is. The cache stores the single-channel
images (N, m_bins, t_bins) with the derivatized flags, so the two-channel form is made on demand.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from lib.core.files import atomic_path, check_free_space
from lib.core.schema import HELIUM_MASS
from lib.data.dataset import DataError, Repairs, read_sample

NORMS = ("none", "mass", "time")
TRANSFORMS = ("log", "log1p")
MIN_CLIP = 1e-4
LOG1P_SCALE = 1000.0
# Bump when the rendering changes, so every cache built before is rebuilt.
RENDER_VERSION = 3  # 2: negative intensities clipped to 0, counted; 3: duplicate rows counted


def render_image(time: np.ndarray, mass: np.ndarray, intensity: np.ndarray, *,
                 m_bins: int = 256, t_bins: int = 192, source: str = "sample") -> np.ndarray:
    """Steps 1.2-1.5: sum intensities into integer-mass x time-bin cells, scale to max 1.

    time, mass, intensity: (rows,) float64 (NaN intensities already 0).
    Returns (m_bins, t_bins) float64 with maximum 1. DataError (naming ``source``) if the mass
    filter removes every row, the run has a single time value, or there is no intensity.
    """
    mass_int = np.round(mass).astype(np.int64)
    keep = (mass_int >= 0) & (mass_int <= m_bins - 1) & (mass_int != HELIUM_MASS)
    if not keep.any():
        raise DataError(f"{source}: no rows left after keeping masses 0..{m_bins - 1} "
                        f"without helium (m/z {HELIUM_MASS})")
    time_kept = time[keep]
    # Same operations as the reference (shift, then divide by the new max) so bins agree exactly.
    shifted = time_kept - time_kept.min()
    span = shifted.max()
    if span <= 0:
        raise DataError(f"{source}: all kept rows share one time value ({time_kept[0]}), "
                        f"time cannot be normalised")
    t_bin = np.round(shifted / span * (t_bins - 1)).astype(np.int64)
    cells = np.bincount(mass_int[keep] * t_bins + t_bin, weights=intensity[keep],
                        minlength=m_bins * t_bins)
    peak = cells.max()
    if not peak > 0:
        raise DataError(f"{source}: every kept intensity is zero (or missing)")
    return (cells / peak).reshape(m_bins, t_bins)


def two_channel(image: np.ndarray, derivatized: bool | np.ndarray) -> np.ndarray:
    """Step 1.6: (..., m, t) single-channel images -> (..., 2, m, t), channel = derivatized.

    derivatized: a bool, or an array of the leading shape (one flag per image).
    """
    flags = np.asarray(derivatized, dtype=bool)[..., None, None, None]
    image = image[..., None, :, :]
    return np.concatenate([np.where(flags, 0, image), np.where(flags, image, 0)],
                          axis=-3).astype(np.float32)


def sample_image(csv_path: str | Path, derivatized: bool, *, m_bins: int = 256,
                 t_bins: int = 192) -> np.ndarray:
    """Steps 1.1-1.6 for one sample CSV -> (2, m_bins, t_bins) float32."""
    image, _ = _render_file(csv_path, m_bins, t_bins)
    return two_channel(image.astype(np.float32), derivatized)


def normalize_axis(image: np.ndarray, norm: str) -> np.ndarray:
    """Step 2.1 on (..., m, t): divide each mass row ("mass") or time column ("time") by its
    maximum clipped below at 1e-4; "none" returns the input. Same shape, same dtype."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if norm == "none":
        return image
    axis = -1 if norm == "mass" else -2
    peak = np.clip(image.max(axis=axis, keepdims=True), MIN_CLIP, None)
    return image / peak


def intensity_transform(x: np.ndarray, transform: str) -> np.ndarray:
    """Steps 2.3-2.5 on (..., 2, m, t), each item on its own: scale to max 1, clip at 1e-4,
    log or log1p, min-max to [0, 1] over the item's (2, m, t). Same shape and dtype."""
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
    x = np.clip(x / _item_max(x), MIN_CLIP, 1.0)
    if transform == "log":
        x = np.log10(x)
    else:
        x = x / _item_max(x) * LOG1P_SCALE
        x = np.log10(x + 1)
        x = x / _item_max(x)
    x = x - x.min(axis=(-3, -2, -1), keepdims=True)
    return x / _item_max(x)


def _item_max(x: np.ndarray) -> np.ndarray:
    return x.max(axis=(-3, -2, -1), keepdims=True)


def model_input(image: np.ndarray, *, norm: str = "none", transform: str = "log") -> np.ndarray:
    """Steps 2.1 and 2.3-2.5 (no mixup): (2, m, t) image -> (2, m, t) float32 model input.

    Also takes a batch (..., 2, m, t); every item is normalised on its own."""
    x = normalize_axis(np.asarray(image, dtype=np.float32), norm)
    return intensity_transform(x, transform).astype(np.float32)


def sample_image_pandas(csv_path: str | Path, derivatized: bool, *, m_bins: int = 256,
                        t_bins: int = 192) -> np.ndarray:
    """The same as ``sample_image`` written the plain pandas way (read, filter, groupby-sum).

    Slow; kept as the independent implementation that tests compare against and the
    benchmark's baseline. No validation.
    """
    frame = pd.read_csv(csv_path).fillna(0)
    frame["mass"] = np.round(frame["mass"].to_numpy()).astype(int)
    frame = frame[(frame["mass"] >= 0) & (frame["mass"] <= m_bins - 1)
                  & (frame["mass"] != HELIUM_MASS)].copy()
    time = frame["time"].to_numpy() - frame["time"].min()
    frame["time"] = np.round(time / time.max() * (t_bins - 1)).astype(int)
    sums = frame.groupby(["mass", "time"])["intensity"].sum().reset_index()
    image = np.zeros((m_bins, t_bins))
    image[sums["mass"].to_numpy(), sums["time"].to_numpy()] = sums["intensity"].to_numpy()
    image = (image / image.max()).astype(np.float32)
    channels = np.zeros((2, m_bins, t_bins), dtype=np.float32)
    channels[int(derivatized)] = image
    return channels


def _render_file(csv_path: str | Path, m_bins: int, t_bins: int) -> tuple[np.ndarray, Repairs]:
    frame, repairs = read_sample(csv_path)
    image = render_image(frame["time"].to_numpy(), frame["mass"].to_numpy(),
                         frame["intensity"].to_numpy(), m_bins=m_bins, t_bins=t_bins,
                         source=str(csv_path))
    return image, repairs


def _render_one(args: tuple[str, int, int]) -> tuple[np.ndarray, Repairs]:
    path, m_bins, t_bins = args
    image, repairs = _render_file(path, m_bins, t_bins)
    return image.astype(np.float32), repairs


# ---- the cache ------------------------------------------------------------------------------

def cache_fingerprint(metadata: pd.DataFrame, m_bins: int, t_bins: int,
                      version: int | str = RENDER_VERSION) -> str:
    """A hash of everything a cache depends on: the key (m_bins, t_bins), the recipe's
    ``version`` (the image rendering's by default), and per sample its id, derivatized flag,
    declared md5, file size and mtime."""
    entries = []
    for sid, flag, md5, path in zip(metadata["sample_id"], metadata["derivatized"],
                                    metadata["features_md5_hash"], metadata["path"]):
        stat = os.stat(path)
        entries.append([sid, int(flag), md5, stat.st_size, stat.st_mtime_ns])
    payload = json.dumps([version, m_bins, t_bins, entries])
    return hashlib.sha256(payload.encode()).hexdigest()


def cache_path(folder: str | Path, m_bins: int, t_bins: int, kind: str = "images") -> Path:
    """Where an image cache of one key lives: folder/<kind>_m<m_bins>_t<t_bins>.npz."""
    return Path(folder) / f"{kind}_m{m_bins}_t{t_bins}.npz"


CACHE_SPACE_HINT = ("free some space or set cache_dir (make demo CACHE_DIR=...) to a folder on "
                    "a larger disk")


def cache_bytes(n_samples: int, m_bins: int, t_bins: int) -> int:
    """About the size of an image cache file of ``n_samples`` samples: their float32 images,
    ids, flags and counts, and a MiB for the rest."""
    return n_samples * (m_bins * t_bins * 4 + 64) + 2**20


def check_cache_space(metadata: pd.DataFrame, folder: str | Path,
                      sizes: list[tuple[int, int]] | tuple = ((256, 192),)) -> None:
    """NotEnoughSpaceError naming ``folder`` and the gigabytes needed when its disk cannot hold
    the image caches of ``sizes`` ((m_bins, t_bins) pairs) that build_image_cache would have to
    write for ``metadata`` (those whose file is missing or made from other inputs; a new file is
    written beside the old one before replacing it). Cheap: run it before any other work."""
    needed = 0
    for m_bins, t_bins in sizes:
        path = cache_path(folder, m_bins, t_bins)
        if not _fingerprint_matches(path, cache_fingerprint(metadata, m_bins, t_bins)):
            needed += cache_bytes(len(metadata), m_bins, t_bins)
    if needed:
        check_free_space(folder, needed * 1.1, "the image cache", CACHE_SPACE_HINT)


def _fingerprint_matches(path: Path, fingerprint: str) -> bool:
    """Whether the cache file at ``path`` exists and was made from these inputs (reads only its
    fingerprint)."""
    if not path.is_file():
        return False
    with np.load(path, allow_pickle=False) as data:
        return str(data["fingerprint"]) == fingerprint


def build_image_cache(metadata: pd.DataFrame, path: str | Path, *, m_bins: int = 256,
                      t_bins: int = 192, workers: int | None = None,
                      progress: bool = True) -> dict[str, np.ndarray]:
    """Render every sample of ``metadata`` (Competition.metadata rows) into one .npz file, or
    reuse the file when its fingerprint matches. Returns the cache's arrays:

    sample_ids (N,) str, derivatized (N,) int8, images (N, m_bins, t_bins) float32,
    nan_counts (N,) int64 (NaN intensities read as 0), negative_counts (N,) int64 (negative
    intensities clipped to 0), duplicate_counts (N,) int64 (rows repeating an earlier row's
    (time, mass), summed into their cell), fingerprint () str, build_seconds () float.
    The file is written under a temporary name and renamed, so it is whole or absent; before
    rendering, NotEnoughSpaceError (naming the folder) if its disk cannot hold it. Runs
    that start together on a fresh cache (a sweep) render it once: the first holds
    ``<path>.lock`` while it renders, the others wait for it and then read its file.
    """
    def build() -> dict[str, np.ndarray]:
        check_free_space(Path(path).parent, cache_bytes(len(metadata), m_bins, t_bins) * 1.1,
                         "the image cache", CACHE_SPACE_HINT)
        return _render_cache(metadata, m_bins, t_bins, workers, progress)

    return cached_arrays(path, cache_fingerprint(metadata, m_bins, t_bins), build)


def cached_arrays(path: str | Path, fingerprint: str,
                  build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays of the .npz file at ``path`` when its ``fingerprint`` array matches, else
    build()'s arrays with the fingerprint and ``build_seconds`` () float added (build()'s wall
    time, so that a reader of the file knows what it cost; files written before 2026-12-07
    lack it), written there under a temporary name and renamed (whole or absent). Processes
    that start together on a fresh file build it once: the first holds ``<path>.lock`` while it
    builds, the others wait for it and read its file."""
    path = Path(path)
    cached = _matching_cache(path, fingerprint)
    if cached is not None:
        return cached
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:  # "a": never truncates
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        cached = _matching_cache(path, fingerprint)  # built while this one waited
        if cached is not None:
            return cached
        started = time.perf_counter()
        arrays = build()
        arrays.update(fingerprint=np.array(fingerprint),
                      build_seconds=np.array(time.perf_counter() - started))
        with atomic_path(path) as partial, open(partial, "wb") as handle:
            np.savez(handle, **arrays)
        return arrays


def cache_rows(cache: dict[str, np.ndarray], sample_ids) -> np.ndarray:
    """(n,) int: the row of each of ``sample_ids`` (n,) in a cache's arrays (its
    ``sample_ids``); KeyError naming the first sample the cache does not hold."""
    row_of = {sample_id: i for i, sample_id in enumerate(cache["sample_ids"])}
    missing = next((s for s in sample_ids if s not in row_of), None)
    if missing is not None:
        raise KeyError(f"sample {missing!r} is not in the cache (made for other data?)")
    return np.array([row_of[s] for s in sample_ids], dtype=int)


def _matching_cache(path: Path, fingerprint: str) -> dict[str, np.ndarray] | None:
    """The cache file's arrays when it was made from these inputs (a stale file is not read
    whole), else None."""
    return load_image_cache(path) if _fingerprint_matches(path, fingerprint) else None


def _render_cache(metadata: pd.DataFrame, m_bins: int, t_bins: int, workers: int | None,
                  progress: bool) -> dict[str, np.ndarray]:
    jobs = [(str(p), m_bins, t_bins) for p in metadata["path"]]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    if workers == 1:
        results = list(map(_render_one, _progress(jobs, progress)))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(_progress(pool.map(_render_one, jobs, chunksize=4), progress,
                                     total=len(jobs)))
    arrays = {
        "sample_ids": metadata["sample_id"].to_numpy(dtype=str),
        "derivatized": metadata["derivatized"].to_numpy(dtype=np.int8),
        "images": np.stack([image for image, _ in results]),
        "nan_counts": np.array([r.nan for _, r in results], dtype=np.int64),
        "negative_counts": np.array([r.negative for _, r in results], dtype=np.int64),
        "duplicate_counts": np.array([r.duplicate for _, r in results], dtype=np.int64),
    }
    return arrays


def load_image_cache(path: str | Path) -> dict[str, np.ndarray]:
    """Read a cache file written by build_image_cache (see there for the arrays)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _progress(iterable, enabled: bool, total: int | None = None):
    if not enabled:
        return iterable
    from tqdm import tqdm  # text bar on stderr: no widget library needed in a notebook

    return tqdm(iterable, total=total, desc="rendering images", unit="sample")
