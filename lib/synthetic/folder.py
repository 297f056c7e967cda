"""Writing a synthetic folder: runs as competition-format CSVs, labels, metadata, truth.csv.

Usage: ``python -m lib.synthetic OUT_DIR --profile small --seed 0 [--limit N] [--workers W]``;
``--truth-only`` adds truth.csv to a folder written before it existed (same profile and seed).
"""

from __future__ import annotations

import argparse
import hashlib
import os
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd

from lib.files import atomic_path, atomic_write_csv
from lib.schema import LABELS, METADATA_COLUMNS, SAMPLE_COLUMNS, SPLITS
from lib.synthetic.profiles import PROFILES, Profile
from lib.synthetic.samples import sample_table
from lib.synthetic.simulate import simulate_run_with_truth
from lib.synthetic.truth import TRUTH_COLUMNS, TRUTH_FILE


def _fixed_point_chars(values: np.ndarray, decimals: int) -> tuple[np.ndarray, np.ndarray]:
    """ASCII of non-negative numbers with a fixed number of decimals, one row per value.

    Returns chars (n, width) uint8, right-aligned, and keep (n, width) bool marking the
    characters that belong to each number (the leading padding is dropped by the mask).
    """
    scaled = np.rint(values * 10.0**decimals).astype(np.int64)
    if scaled.size and scaled.min() < 0:
        raise ValueError("only non-negative values can be written")
    n_int = max(len(str(int(scaled.max(initial=0)))), decimals + 1)
    width = n_int + (decimals > 0)
    chars = np.empty((len(scaled), width), dtype=np.uint8)
    keep = np.ones((len(scaled), width), dtype=bool)
    rest = scaled.copy()
    # fill digits right to left; division by a scalar is the fast path in numpy
    col = width - 1
    for i in range(n_int):
        if decimals and i == decimals:
            chars[:, col] = ord(".")
            col -= 1
        chars[:, col] = rest % 10 + ord("0")
        rest //= 10
        # a leading zero is padding, except the one before the point ("0.042183")
        if i > decimals:
            keep[:, col] = scaled >= 10**i
        col -= 1
    return chars, keep


def format_run_csv(run: pd.DataFrame) -> bytes:
    """The CSV bytes of one run: header ``time,mass,intensity``, 6-decimal time and mass,
    integer intensity. Vectorised; several times faster than DataFrame.to_csv."""
    time = run["time"].to_numpy(float)
    # time repeats for a whole sweep: format each scan once, then copy the rows
    scan_start = np.flatnonzero(np.r_[True, time[1:] != time[:-1]])
    scan_of_row = np.cumsum(np.r_[False, time[1:] != time[:-1]])
    t_chars, t_keep = _fixed_point_chars(time[scan_start], 6)
    fields = [
        (t_chars[scan_of_row], t_keep[scan_of_row]),
        _fixed_point_chars(run["mass"].to_numpy(float), 6),
        _fixed_point_chars(run["intensity"].to_numpy(np.int64), 0),
    ]
    n = len(run)
    width = sum(c.shape[1] + 1 for c, _ in fields)
    chars = np.empty((n, width), dtype=np.uint8)
    keep = np.empty((n, width), dtype=bool)
    col = 0
    for sep, (c, k) in zip(",,\n", fields, strict=True):
        w = c.shape[1]
        chars[:, col:col + w], keep[:, col:col + w] = c, k
        chars[:, col + w], keep[:, col + w] = ord(sep), True
        col += w + 1
    return (",".join(SAMPLE_COLUMNS) + "\n").encode() + chars[keep].tobytes()


def _write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary name and rename, so no reader sees a partial file."""
    with atomic_path(path) as partial:
        partial.write_bytes(data)


# (path, index, material, labels, derivatized, profile, seed, sample_id)
_Task = tuple[str, int, int, np.ndarray, bool, Profile, int, str]


def _simulate_sample(task: _Task) -> tuple[bytes, pd.DataFrame]:
    """One run's CSV bytes and its truth rows (with sample_id). Each run and each material has
    its own random stream, so the bytes do not depend on worker count or on ``limit``."""
    _, index, material, labels, derivatized, profile, seed, sample_id = task
    run, truth = simulate_run_with_truth(
        np.random.default_rng([seed, 1, index]), labels, derivatized, profile,
        material_rng=np.random.default_rng([seed, 2, material]))
    truth.insert(0, "sample_id", sample_id)
    return format_run_csv(run), truth


def _write_sample(task: _Task) -> tuple[str, pd.DataFrame]:
    """Simulate and write one run; returns its md5 and its truth rows."""
    data, truth = _simulate_sample(task)
    _write_bytes(Path(task[0]), data)
    return hashlib.md5(data).hexdigest(), truth


def _check_sample(task: _Task) -> tuple[str, pd.DataFrame]:
    """Simulate one run without writing it; returns its md5 and its truth rows."""
    data, truth = _simulate_sample(task)
    return hashlib.md5(data).hexdigest(), truth


def _csv_bytes(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False, lineterminator="\n").encode()


def _tasks(out: Path, table: pd.DataFrame, profile: Profile, seed: int) -> list[_Task]:
    return [(str(out / row.features_path), i, row.material, row[list(LABELS)].to_numpy(),
             bool(row.derivatized), profile, seed, row.sample_id)
            for i, row in table.iterrows()]


def _map(function, tasks: list[_Task], workers: int) -> list:
    if workers > 1:
        with Pool(workers) as pool:
            return pool.map(function, tasks, chunksize=4)
    return [function(t) for t in tasks]


def _write_truth(out: Path, parts: list[pd.DataFrame]) -> Path:
    """truth.csv from the samples' truth rows, in sample order."""
    truth = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=list(TRUTH_COLUMNS))
    return atomic_write_csv(truth[list(TRUTH_COLUMNS)], out / TRUTH_FILE, lineterminator="\n")


def generate(
    out_dir: str | os.PathLike,
    profile: str = "small",
    seed: int = 0,
    limit: int | None = None,
    workers: int = 1,
) -> Path:
    """Write a synthetic competition folder and return its path.

    limit: write only the first N samples (sample-id order); metadata, label and truth files
    then cover only those. workers: processes used to simulate and write runs (output is
    identical for any value). metadata.csv is written last, and removed first when
    regenerating, so a folder without it is unfinished. truth.csv: see lib.synthetic.truth.
    """
    prof = PROFILES[profile]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metadata.csv").unlink(missing_ok=True)
    table = sample_table(prof, seed)
    if limit is not None:
        table = table.iloc[:limit]
    for split in SPLITS:
        (out / f"{split}_features").mkdir(exist_ok=True)
    results = _map(_write_sample, _tasks(out, table, prof, seed), workers)

    label_cols = ["sample_id", *LABELS]
    for split in ("train", "val"):
        _write_bytes(out / f"{split}_labels.csv",
                     _csv_bytes(table.loc[table["split"] == split, label_cols]))
    scored = table.loc[table["split"] != "train", ["sample_id"]].copy()
    for label in LABELS:
        scored[label] = 0.5
    _write_bytes(out / "submission_format.csv", _csv_bytes(scored))
    _write_truth(out, [truth for _, truth in results])
    metadata = table[["sample_id", "split", "features_path"]].copy()
    metadata.insert(2, "derivatized", np.where(table["derivatized"], "1", ""))
    metadata["features_md5_hash"] = [md5 for md5, _ in results]
    _write_bytes(out / "metadata.csv", _csv_bytes(metadata[list(METADATA_COLUMNS)]))
    return out


def write_truth(out_dir: str | os.PathLike, profile: str = "small", seed: int = 0,
                workers: int = 1) -> Path:
    """Add truth.csv to a folder that ``generate`` wrote (with the same profile and seed)
    before truth files existed; the runs are simulated again, not written. ValueError naming
    the sample when a run's md5 differs from metadata.csv's (another profile, seed or
    generator version). Returns the path of truth.csv."""
    out = Path(out_dir)
    metadata = pd.read_csv(out / "metadata.csv", dtype=str, keep_default_na=False)
    table = sample_table(PROFILES[profile], seed)
    if list(metadata["sample_id"]) != list(table["sample_id"][:len(metadata)]):
        raise ValueError(f"{out}: its samples are not those of profile {profile!r}")
    table = table.iloc[:len(metadata)]
    results = _map(_check_sample, _tasks(out, table, PROFILES[profile], seed), workers)
    for sample_id, expected, (md5, _) in zip(metadata["sample_id"],
                                             metadata["features_md5_hash"], results):
        if md5 != expected:
            raise ValueError(f"{out}: {sample_id} is not the run that profile {profile!r} "
                             f"seed {seed} simulates (md5 {md5}, metadata says {expected}); "
                             f"no truth written")
    return _write_truth(out, [truth for _, truth in results])


def main(argv: list[str] | None = None) -> None:
    """Command line: write a synthetic folder (or only its truth.csv) and say what was written."""
    parser = argparse.ArgumentParser(description="Write a synthetic competition-format folder.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="write only the first N samples")
    parser.add_argument("--workers", type=int, default=1, help="processes (output is identical)")
    parser.add_argument("--truth-only", action="store_true",
                        help="only add truth.csv to a folder written earlier with these settings")
    args = parser.parse_args(argv)
    if args.truth_only:
        path = write_truth(args.out_dir, args.profile, args.seed, args.workers)
        print(f"wrote {path}: {sum(1 for _ in open(path)) - 1} rows")
        return
    out = generate(args.out_dir, args.profile, args.seed, args.limit, args.workers)
    metadata = pd.read_csv(out / "metadata.csv")
    size = sum((out / p).stat().st_size for p in metadata["features_path"])
    counts = metadata["split"].value_counts().reindex(SPLITS, fill_value=0)
    print(f"wrote {out}: profile={args.profile} seed={args.seed} "
          + " ".join(f"{s}={n}" for s, n in counts.items())
          + f", {size / 1e6:.1f} MB of runs and {TRUTH_FILE}")
