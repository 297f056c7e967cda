"""Writing a synthetic folder: runs as competition-format CSVs, labels, metadata, and the hidden
answers truth.csv and test_labels.csv.

The command line (lib.synthetic.cli): ``python -m lib.synthetic OUT_DIR --profile small
--seed 0 [--shift S] [--limit N] [--workers W] [--force]``; ``--truth-only`` adds truth.csv
and test_labels.csv to a folder written before they existed (same profile and seed). An
existing folder is only reused (made with the same settings) or, with ``--force``, replaced
whole; see generate.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import nullcontext
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd

from lib.core.files import atomic_path, atomic_write_csv, current_umask
from lib.core.schema import LABELS, METADATA_COLUMNS, SAMPLE_COLUMNS, SPLITS
from lib.synthetic.profiles import Profile, check_profile, profile_key
from lib.synthetic.samples import sample_table
from lib.synthetic.simulate import shifted_instrument, simulate_run_with_truth
from lib.synthetic.space import check_space
from lib.synthetic.truth import TRUTH_COLUMNS, TRUTH_FILE

MARKER = "synthetic.json"  # what the generator made this folder with (profile, seed, limit, shift)
MARKER_FORMAT = "mars-gcms synthetic folder v1"
# The test split's labels (train_labels.csv's columns): hidden answers that only scoring reads.
TEST_LABELS = "test_labels.csv"


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


# (path, index, material, labels, derivatized, profile, seed, sample_id, shift of this run)
_Task = tuple[str, int, int, np.ndarray, bool, Profile, int, str, float]


def simulate_sample(task: _Task) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One run (time, mass, intensity) and its truth rows (with sample_id), from a task of
    sample_tasks. Each run and each material has its own random stream, so a run does not
    depend on worker count or on ``limit``; a shifted run's instrument has a stream of its own
    too, so everything else in it is drawn as in the unshifted run."""
    _, index, material, labels, derivatized, profile, seed, sample_id, shift = task
    instrument = (shifted_instrument(np.random.default_rng([seed, 6, index]), shift)
                  if shift > 0 else None)
    run, truth = simulate_run_with_truth(
        np.random.default_rng([seed, 1, index]), labels, derivatized, profile,
        material_rng=np.random.default_rng([seed, 2, material]), instrument=instrument)
    truth.insert(0, "sample_id", sample_id)
    return run, truth


def _simulate_sample(task: _Task) -> tuple[bytes, pd.DataFrame]:
    """One run's CSV bytes and its truth rows (see simulate_sample)."""
    run, truth = simulate_sample(task)
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


def _file_md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _csv_bytes(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False, lineterminator="\n").encode()


def sample_tasks(out: Path, table: pd.DataFrame, profile: Profile, seed: int,
                 shift: float) -> list[_Task]:
    """One task per row of a sample_table (paths under ``out``); the test split's runs get
    the train-to-test shift of strength ``shift``, the others none."""
    return [(str(out / row.features_path), i, row.material, row[list(LABELS)].to_numpy(),
             bool(row.derivatized), profile, seed, row.sample_id,
             float(shift) if row.split == "test" else 0.0)
            for i, row in table.iterrows()]


def _map(function, tasks: list[_Task], workers: int, progress: str = "") -> list:
    """function over tasks, in order, in ``workers`` processes; with a text progress bar on
    standard error named ``progress`` (none when empty)."""
    from tqdm import tqdm

    with Pool(workers) if workers > 1 else nullcontext() as pool:
        results = pool.imap(function, tasks, chunksize=4) if pool else map(function, tasks)
        return list(tqdm(results, total=len(tasks), desc=progress, unit="run",
                         disable=not progress))


def _write_truth(out: Path, parts: list[pd.DataFrame]) -> Path:
    """truth.csv from the samples' truth rows, in sample order."""
    truth = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=list(TRUTH_COLUMNS))
    return atomic_write_csv(truth[list(TRUTH_COLUMNS)], out / TRUTH_FILE, lineterminator="\n")


class FolderRefusedError(ValueError):
    """The output folder holds something the generator did not make (or made with other
    settings); it is left as it is. The message names the folder and says why."""


# The strongest train-to-test shift the generator writes. The shift scales the test runs'
# instrument as exp(shift * U(lo, hi)) (lib.synthetic.simulate.SHIFT_LOG_*): at 5 a test run
# has up to exp(5 * 0.4) ~ 7.4 times the training runs' scans; at 20 it would be ~3000 times
# (hundreds of MB for the tiny profile), at 30 and more numbers overflow.
MAX_SHIFT = 5.0


def check_settings(profile: Profile | str, seed: int, limit: int | None = None,
                   workers: int = 1, shift: float | None = None) -> None:
    """ValueError saying which setting is wrong: an unknown profile name or a Profile with a
    bad field (lib.synthetic.profiles.check_profile), a negative seed (numpy's generators take
    non-negative integers), a limit below 1 (a folder of no sample is no competition folder),
    fewer than one worker, a shift (``shift``, else the profile's) outside 0..MAX_SHIFT."""
    if shift is not None and not (np.isfinite(shift) and shift >= 0):
        raise ValueError(f"shift must be a finite number, 0 or more, got {shift!r}")
    prof = check_profile(profile)
    effective = prof.shift if shift is None else shift
    if effective > MAX_SHIFT:
        raise ValueError(f"shift must be at most {MAX_SHIFT:g} (test runs of up to "
                         f"exp(0.4 * shift) times the scans), got {effective!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be 1 or more samples, got {limit}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")


def generate(
    out_dir: str | os.PathLike,
    profile: Profile | str = "small",
    seed: int = 0,
    limit: int | None = None,
    workers: int = 1,
    force: bool = False,
    shift: float | None = None,
    progress: bool = False,
) -> Path:
    """Write a synthetic competition folder and return its path.

    profile: a name of PROFILES, or any Profile (a folder of any size, e.g.
    ``dataclasses.replace(PROFILES["small"], n_train=500)``). limit: write only the first N
    samples (sample-id order); metadata, label and truth files then cover only those.
    workers: processes used to simulate and write runs (output is identical for any value).
    shift: strength of the train-to-test shift of the test split (None: the profile's; 0: an
    i.i.d. test split; train and val are the same for every shift). truth.csv: see
    lib.synthetic.truth; TEST_LABELS (test_labels.csv): the test split's labels, which only
    scoring may read. MARKER (synthetic.json) records the profile (its name, or its fields),
    seed, limit and shift. progress: a text progress bar of the runs on standard error.

    The folder is written, one run at a time per worker (memory does not grow with the
    folder), as a temporary sibling and renamed into place, so it is whole or
    absent. An existing folder is never changed unless ``force``: one the generator made with
    the same settings is reused as it is (its MARKER, or for a folder made before MARKER
    existed its metadata.csv and a few runs simulated again); an empty one is filled;
    anything else raises FolderRefusedError. ``force`` replaces the whole folder, whatever it
    holds (the old one is removed only once the new one is in place). ValueError for bad
    settings (check_settings), before anything is touched.
    """
    check_settings(profile, seed, limit, workers, shift)
    prof = check_profile(profile)
    shift = prof.shift if shift is None else float(shift)
    out = Path(out_dir)
    wanted = _marker(prof, seed, limit, shift)
    occupied = out.exists() and (not out.is_dir() or any(out.iterdir()))
    if occupied and not force:
        found = generator_settings(out) or _recognise_unmarked(out, prof, seed, shift)
        if found == wanted:
            return out
        raise FolderRefusedError(_refusal(out, found, wanted))
    total = sum(prof.split_sizes.values())
    check_space(out, prof, total if limit is None else min(limit, total))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    try:
        partial.chmod(0o777 & ~current_umask())  # mkdtemp's 0700 would hide the data
        _write_folder(partial, prof, seed, limit, workers, shift, progress)
        _write_bytes(partial / MARKER, json.dumps(wanted, indent=2).encode())
        _move_into_place(partial, out)
    finally:
        if partial.exists():
            shutil.rmtree(partial)
    return out


def generator_settings(folder: str | os.PathLike) -> dict | None:
    """{"format", "profile", "seed", "limit", "shift"} the generator made ``folder`` with, read
    from its MARKER (a MARKER written before the shift existed: shift 0, an i.i.d. test split);
    None when it has no readable MARKER."""
    try:
        found = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(found, dict) and found.get("format") == MARKER_FORMAT):
        return None
    return {**found, "shift": float(found.get("shift", 0.0))}


def _recognise_unmarked(folder: Path, prof: Profile, seed: int, shift: float) -> dict | None:
    """The settings of a folder the generator made with ``profile``, ``seed`` and ``shift``
    before MARKER
    existed, or None: its metadata.csv must list a prefix of that profile's samples with their
    splits and derivatized flags, and the md5s of three runs simulated again (first, middle,
    last) must match metadata.csv's and the files'. The MARKER is written then."""
    try:
        metadata = pd.read_csv(folder / "metadata.csv", dtype=str, keep_default_na=False)
        columns = [metadata[c].tolist() for c in ("sample_id", "split", "derivatized",
                                                  "features_md5_hash")]
    except (OSError, ValueError, KeyError):
        return None
    table = sample_table(prof, seed, shift).iloc[:len(metadata)]
    expected = [table["sample_id"].tolist(), table["split"].tolist(),
                np.where(table["derivatized"], "1", "").tolist()]
    if len(metadata) == 0 or columns[:3] != expected:
        return None
    tasks = sample_tasks(folder, table, prof, seed, shift)
    for i in sorted({0, len(tasks) // 2, len(tasks) - 1}):
        simulated, path = _check_sample(tasks[i])[0], Path(tasks[i][0])
        if simulated != columns[3][i] or not path.is_file() or _file_md5(path) != simulated:
            return None
    found = _marker(prof, seed, len(metadata), shift)
    _write_bytes(folder / MARKER, json.dumps(found, indent=2).encode())
    return found


def _marker(prof: Profile, seed: int, limit: int | None, shift: float) -> dict:
    """The MARKER of a folder of these settings (limit None when it covers the profile;
    profile: lib.synthetic.profiles.profile_key)."""
    n_samples = sum(prof.split_sizes.values())
    limit = None if limit is None or limit >= n_samples else int(limit)
    return {"format": MARKER_FORMAT, "profile": profile_key(prof), "seed": int(seed),
            "limit": limit, "shift": float(shift)}


def _refusal(out: Path, found: dict | None, wanted: dict) -> str:
    """Why ``out`` is left alone, and what to do instead."""
    settings = ", ".join(f"{k} {wanted[k]}" for k in ("profile", "seed", "limit", "shift"))
    if found is None:
        reason = (f"it is not empty and not a folder the generator made with {settings} (it "
                  f"has no {MARKER}, and no metadata.csv of those settings)")
    else:
        made = ", ".join(f"{k} {found.get(k)}" for k in ("profile", "seed", "limit", "shift"))
        reason = f"the generator made it with {made}, not {settings}"
    return (f"{out}: not written: {reason}. Choose another folder, or pass --force "
            f"(force=True) to replace the whole folder and everything in it.")


def _move_into_place(partial: Path, out: Path) -> None:
    """Rename the finished folder to ``out``; an existing ``out`` (empty, or replaced by
    force) is moved aside first and removed once the new one is in place."""
    if not out.exists() and not out.is_symlink():
        os.rename(partial, out)
        return
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".replaced"))
    os.rename(out, old / out.name)
    os.rename(partial, out)
    shutil.rmtree(old)


def _write_folder(out: Path, prof: Profile, seed: int, limit: int | None, workers: int,
                  shift: float, progress: bool = False) -> None:
    """Every file of a synthetic folder into the (new, empty) folder ``out``."""
    table = sample_table(prof, seed, shift)
    if limit is not None:
        table = table.iloc[:limit]
    for split in SPLITS:
        (out / f"{split}_features").mkdir()
    results = _map(_write_sample, sample_tasks(out, table, prof, seed, shift), workers,
                   "writing runs" if progress else "")

    label_cols = ["sample_id", *LABELS]
    for split in ("train", "val"):
        _write_bytes(out / f"{split}_labels.csv",
                     _csv_bytes(table.loc[table["split"] == split, label_cols]))
    scored = table.loc[table["split"] != "train", ["sample_id"]].copy()
    for label in LABELS:
        scored[label] = 0.5
    _write_bytes(out / "submission_format.csv", _csv_bytes(scored))
    _write_truth(out, [truth for _, truth in results])
    _write_test_labels(out, table)
    metadata = table[["sample_id", "split", "features_path"]].copy()
    metadata.insert(2, "derivatized", np.where(table["derivatized"], "1", ""))
    metadata["features_md5_hash"] = [md5 for md5, _ in results]
    _write_bytes(out / "metadata.csv", _csv_bytes(metadata[list(METADATA_COLUMNS)]))


def _write_test_labels(out: Path, table: pd.DataFrame) -> Path:
    """TEST_LABELS: sample_id + the 9 labels of the table's test rows, in sample order."""
    test = table.loc[table["split"] == "test", ["sample_id", *LABELS]]
    return atomic_write_csv(test, out / TEST_LABELS, lineterminator="\n")


def write_truth(out_dir: str | os.PathLike, profile: Profile | str = "small", seed: int = 0,
                workers: int = 1, shift: float | None = None) -> Path:
    """Add truth.csv and TEST_LABELS (test_labels.csv) to a folder that ``generate`` wrote
    (with the same profile and seed) before those files existed; the runs are simulated
    again, not written. shift: the one the folder was made with (None: its MARKER's, 0 for a
    folder without one, made before the shift existed). FolderRefusedError naming the sample
    when a run's md5 differs from metadata.csv's (another profile, seed, shift or generator
    version), or when a run file on disk differs from the run simulated again (an edited
    file): FolderRefusedError naming the file, also for a folder without a readable
    metadata.csv; nothing is written then. Returns the path of truth.csv."""
    out = Path(out_dir)
    if shift is None:
        shift = (generator_settings(out) or {}).get("shift", 0.0)
    try:
        metadata = pd.read_csv(out / "metadata.csv", dtype=str, keep_default_na=False)
        ids, hashes = metadata["sample_id"], metadata["features_md5_hash"]
    except (OSError, ValueError, KeyError) as error:
        raise FolderRefusedError(f"{out}: no truth written: {out / 'metadata.csv'} cannot be "
                                 f"read ({type(error).__name__}: {error}); --truth-only adds "
                                 f"truth to a folder the generator wrote") from None
    prof = check_profile(profile)
    table = sample_table(prof, seed, shift)
    if list(ids) != list(table["sample_id"][:len(metadata)]):
        raise FolderRefusedError(f"{out}: its samples are not those of profile {profile!r}")
    table = table.iloc[:len(metadata)]
    tasks = sample_tasks(out, table, prof, seed, shift)
    results = _map(_check_sample, tasks, workers)
    for sample_id, expected, task, (md5, _) in zip(ids, hashes, tasks, results):
        if md5 != expected:
            raise FolderRefusedError(f"{out}: {sample_id} is not the run that profile "
                                     f"{profile!r} seed {seed} shift {shift} simulates (md5 "
                                     f"{md5}, metadata says {expected}); no truth written")
        path = Path(task[0])
        on_disk = _file_md5(path) if path.is_file() else "missing"
        if on_disk != md5:
            raise FolderRefusedError(f"{path}: not the run the generator wrote (md5 "
                                     f"{on_disk}, simulated again {md5}): the file was "
                                     f"edited or replaced; no truth written for {out}")
    _write_test_labels(out, table)
    return _write_truth(out, [truth for _, truth in results])
