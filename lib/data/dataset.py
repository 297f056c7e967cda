"""Read and validate a competition folder (layout: docs/data.md).

Every problem is reported as a ``DataError`` whose message names the file and, where there is
one, the row or sample and what is wrong, so a user can fix their copy of the data.

The hidden answers a synthetic folder holds beside these files (truth.csv, test_labels.csv) are
never read here: nothing that trains, selects or predicts sees them (lib.ensemble.leaderboard
scores).

    DATA_DIR/metadata.csv            sample_id,split,derivatized,features_path,features_md5_hash
    DATA_DIR/train_labels.csv        sample_id + 9 label columns (0/1)
    DATA_DIR/val_labels.csv          same columns
    DATA_DIR/{train,val,test}_features/S0000.csv   time,mass,intensity
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from lib.core.schema import LABELS, METADATA_COLUMNS, SAMPLE_COLUMNS, SPLITS


class DataError(ValueError):
    """Input data is missing or malformed; the message names the file and the problem."""


@dataclass(frozen=True)
class Competition:
    """A validated competition folder.

    metadata: one row per sample in file order, columns ``sample_id, split, derivatized (int 0/1),
        features_path (relative, as in the file), features_md5_hash, path (absolute Path)``.
    labels: train + val labels, index ``sample_id``, the 9 label columns (int 0/1), train first.
    """

    root: Path
    metadata: pd.DataFrame
    labels: pd.DataFrame

    def split_ids(self, *splits: str) -> list[str]:
        """Sample ids of the given splits, in metadata order."""
        return self.metadata.loc[self.metadata["split"].isin(splits), "sample_id"].tolist()

    @property
    def train_labels(self) -> pd.DataFrame:
        """train_labels.csv rows (sample_id column + 9 labels) in file order: the folds' input."""
        train = set(self.split_ids("train"))
        return self.labels[self.labels.index.isin(train)].reset_index()


def load_competition(data_dir: str | Path, *, check_md5: bool = False,
                     workers: int | None = None) -> Competition:
    """Read metadata and labels, check them against each other, find every feature file.

    check_md5: also hash every feature file (in parallel) and compare with the metadata.
    Raises DataError on the first problem found.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    metadata = read_metadata(root / "metadata.csv")
    metadata["path"] = [resolve_feature_path(root, rel, sid, row)
                        for row, (sid, rel) in enumerate(zip(metadata["sample_id"],
                                                              metadata["features_path"]), start=2)]
    labels = _read_all_labels(root, metadata)
    if check_md5:
        verify_md5(metadata, workers=workers)
    return Competition(root=root, metadata=metadata, labels=labels)


def read_metadata(path: Path) -> pd.DataFrame:
    """metadata.csv -> DataFrame (see Competition.metadata, without ``path``)."""
    frame = _read_csv(path, dtype=str, keep_default_na=False)
    columns = list(frame.columns)
    missing = [c for c in METADATA_COLUMNS if c not in columns]
    extra = [c for c in columns if c not in METADATA_COLUMNS]
    if missing or extra:
        raise DataError(f"{path}: expected columns {list(METADATA_COLUMNS)}; "
                        f"missing {missing}, unexpected {extra}")
    if frame.empty:
        raise DataError(f"{path}: no samples")
    _check_unique_ids(frame["sample_id"], path)
    bad_split = ~frame["split"].isin(SPLITS)
    if bad_split.any():
        row = int(np.argmax(bad_split.to_numpy()))
        raise DataError(f"{path}: row {row + 2} (sample {frame['sample_id'].iloc[row]}): "
                        f"unknown split {frame['split'].iloc[row]!r}; expected one of {SPLITS}")
    frame["derivatized"] = derivatized_flags(frame, path)
    return frame


def derivatized_flags(frame: pd.DataFrame, path: Path) -> pd.Series:
    """A ``derivatized`` column read as strings -> int 0/1: accepts 0, 1 (also 0.0, 1.0) and
    blank (0); anything else is a DataError naming the file, row, sample and value."""
    derivatized = frame["derivatized"].str.strip().replace({"": "0", "1.0": "1", "0.0": "0"})
    bad = ~derivatized.isin(["0", "1"])
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        raise DataError(f"{path}: row {row + 2} (sample {frame['sample_id'].iloc[row]}): "
                        f"derivatized must be 0, 1 or blank, got "
                        f"{frame['derivatized'].iloc[row]!r}")
    return derivatized.astype(int)


def read_labels(path: Path) -> pd.DataFrame:
    """A labels CSV -> DataFrame indexed by sample_id with the 9 label columns (int 0/1)."""
    frame = _read_csv(path)
    expected = ["sample_id", *LABELS]
    if list(frame.columns) != expected:
        missing = [c for c in expected if c not in frame.columns]
        extra = [c for c in frame.columns if c not in expected]
        problem = (f"missing {missing}, unexpected {extra}" if missing or extra
                   else f"columns are in the wrong order: {list(frame.columns)}")
        raise DataError(f"{path}: expected columns {expected}; {problem}")
    frame["sample_id"] = frame["sample_id"].astype(str)
    _check_unique_ids(frame["sample_id"], path)
    values = frame[list(LABELS)]
    bad = ~values.isin([0, 1])
    if bad.to_numpy().any():
        row, col = (int(i[0]) for i in np.nonzero(bad.to_numpy()))
        raise DataError(f"{path}: row {row + 2} (sample {frame['sample_id'].iloc[row]}): "
                        f"label {LABELS[col]} must be 0 or 1, got {_plain(values.iat[row, col])!r}")
    return frame.set_index("sample_id").astype(int)


def _read_all_labels(root: Path, metadata: pd.DataFrame) -> pd.DataFrame:
    parts = []
    for split in ("train", "val"):
        ids = set(metadata.loc[metadata["split"] == split, "sample_id"])
        path = root / f"{split}_labels.csv"
        if not ids:
            continue
        if not path.is_file():
            raise DataError(f"{path}: label file not found ({len(ids)} {split} samples "
                            f"in metadata.csv need labels)")
        labels = read_labels(path)
        unknown = [s for s in labels.index if s not in ids]
        if unknown:
            raise DataError(f"{path}: {len(unknown)} label rows for samples that are not "
                            f"{split} samples in metadata.csv, e.g. {unknown[:3]}")
        unlabelled = sorted(ids - set(labels.index))
        if unlabelled:
            raise DataError(f"{path}: {len(unlabelled)} {split} samples of metadata.csv "
                            f"have no labels, e.g. {unlabelled[:3]}")
        parts.append(labels)
    if not parts:
        return pd.DataFrame(columns=list(LABELS), index=pd.Index([], name="sample_id"))
    return pd.concat(parts)


def resolve_feature_path(root: Path, relative: str, sample_id: str, row: int | None = None
                         ) -> Path:
    """The absolute path of a sample's CSV; DataError if it leaves the data folder (absolute,
    or ``..`` above it) or is absent (with a hint at nested archives). ``row``: its line in
    metadata.csv, for the message."""
    where = f"row {row} (sample {sample_id})" if row else f"sample {sample_id}"
    path = root / relative
    if Path(relative).is_absolute() or not path.resolve().is_relative_to(root.resolve()):
        raise DataError(f"{root / 'metadata.csv'}: {where}: features_path {relative!r} leaves "
                        f"the data folder; it must be relative to {root}, inside it")
    if path.is_file():
        return path
    nested = path.parent / path.parent.name / path.name
    hint = ""
    if nested.is_file():
        hint = (f"; it exists one folder deeper at {nested}: the archive was unpacked into a "
                f"nested folder, move the files up one level")
    raise DataError(f"{root / 'metadata.csv'}: {where}: feature file {path} not found{hint}")


def file_md5(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def verify_md5(metadata: pd.DataFrame, *, workers: int | None = None) -> None:
    """Hash every feature file in parallel; DataError listing every mismatch."""
    paths = list(metadata["path"])
    # hashlib releases the GIL, so threads use every core without pickling.
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        actual = list(pool.map(file_md5, paths))
    expected = metadata["features_md5_hash"].str.strip().str.lower().tolist()
    bad = [(sid, p, e, a) for sid, p, e, a in zip(metadata["sample_id"], paths, expected, actual)
           if e != a]
    if bad:
        lines = "\n".join(f"  {sid}: {p} has md5 {a}, metadata.csv says {e}{_cut_note(p)}"
                          for sid, p, e, a in bad[:10])
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise DataError(f"md5 mismatch for {len(bad)} feature files (corrupt or changed "
                        f"copies; re-extract them or pass check_md5=False to skip):\n{lines}{more}")


def cut_short_row(path: str | Path, n_fields: int = len(SAMPLE_COLUMNS)) -> tuple[int, str] | None:
    """(line number, text) of a CSV's last line when the file ends mid-row: no newline after
    it, and fewer than ``n_fields`` fields or an empty one (a copy cut off while written or
    extracted); None otherwise. Reads the file's tail, and counts its lines only when cut."""
    path = Path(path)
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - 4096))
        tail = handle.read()
    if not tail or tail.endswith(b"\n"):
        return None
    last = tail.rsplit(b"\n", 1)[-1].rstrip(b"\r")
    fields = last.split(b",")
    if len(fields) >= n_fields and all(f.strip() for f in fields[:n_fields]):
        return None
    with open(path, "rb") as handle:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    return lines + 1, last.decode(errors="replace")


def _cut_note(path: Path) -> str:
    """", and it ends mid-row at row N (...)" for a feature file cut short, else ""."""
    cut = cut_short_row(path)
    return f"; it ends mid-row at row {cut[0]} ({cut[1]!r}): a truncated copy" if cut else ""


class Repairs(NamedTuple):
    """What read_sample found to repair in a sample: NaN intensities and negative intensities,
    each set to 0 (rows kept), and duplicate rows, whose (time, mass) an earlier row already has
    (kept: the image sums them into one cell, as the reference's group-by sum does)."""

    nan: int
    negative: int
    duplicate: int = 0


def duplicated_rows(time: np.ndarray, mass: np.ndarray) -> int:
    """How many rows repeat the exact (time, mass) of an earlier row. time, mass: (rows,).
    A run in scan order (time non-decreasing, mass non-decreasing within a scan) is counted in
    one pass; any other order through pandas' hashing."""
    time_step, mass_step = np.diff(time), np.diff(mass)
    if (time_step >= 0).all() and ((mass_step >= 0) | (time_step > 0)).all():
        return int(np.count_nonzero((time_step == 0) & (mass_step == 0)))
    return int(pd.DataFrame({"time": time, "mass": mass}).duplicated().sum())


def read_sample(path: str | Path) -> tuple[pd.DataFrame, Repairs]:
    """One sample CSV -> (frame with float64 columns time, mass, intensity; Repairs: the
    number of NaN intensities, set to 0 as in the reference, of negative intensities,
    clipped to 0 so that they cannot cancel signal in a cell, and of duplicate (time, mass)
    rows, kept and summed like any rows of one cell, as in the reference).

    DataError if the file is empty, lacks a column, ends mid-row (cut_short_row), holds a
    non-numeric value or a missing time or mass.
    """
    path = Path(path)
    frame = _read_csv(path)
    cut = cut_short_row(path)
    if cut:
        raise DataError(f"{path}: row {cut[0]}: cut short ({cut[1]!r}): the file ends mid-row "
                        f"(a truncated copy?); re-extract or re-download it")
    missing = [c for c in SAMPLE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; expected header "
                        f"{','.join(SAMPLE_COLUMNS)}, found {list(frame.columns)}")
    if frame.empty:
        raise DataError(f"{path}: no rows")
    columns = {}
    for name in SAMPLE_COLUMNS:
        column = frame[name]
        if not pd.api.types.is_numeric_dtype(column):  # only then look for the bad cell
            numeric = pd.to_numeric(column, errors="coerce")
            bad = numeric.isna() & column.notna()
            if bad.any():
                row = int(np.argmax(bad.to_numpy()))
                raise DataError(f"{path}: row {row + 2}: non-numeric {name} "
                                f"{column.iloc[row]!r}")
            column = numeric
        values = column.to_numpy(dtype=np.float64)
        missing = np.isnan(values)
        if name != "intensity" and missing.any():
            raise DataError(f"{path}: row {int(np.argmax(missing)) + 2}: missing {name}")
        if np.isinf(values).any():
            raise DataError(f"{path}: infinite {name} values")
        columns[name] = values
    intensity = columns["intensity"]
    repairs = Repairs(nan=int(np.isnan(intensity).sum()), negative=int((intensity < 0).sum()),
                      duplicate=duplicated_rows(columns["time"], columns["mass"]))
    columns["intensity"] = np.clip(np.nan_to_num(intensity, nan=0.0), 0.0, None)
    return pd.DataFrame(columns), repairs


def load_prediction_samples(data_dir: str | Path, *, splits=("val", "test"),
                            derivatized_csv: str | Path | None = None) -> pd.DataFrame:
    """The samples to predict: a competition folder's ``splits``, or every ``*.csv`` of a
    plain folder (sample_id = file name without .csv).

    For a plain folder, derivatized flags come from ``derivatized_csv`` (columns sample_id,
    derivatized: 0, 1 or blank; samples it does not list get 0), else 0 for every sample.
    Returns columns sample_id, derivatized, features_md5_hash, path, like Competition.metadata.
    """
    root = Path(data_dir)
    if (root / "metadata.csv").is_file():
        metadata = load_competition(root).metadata
        chosen = metadata[metadata["split"].isin(list(splits))].reset_index(drop=True)
        if chosen.empty:
            raise DataError(f"{root / 'metadata.csv'}: no samples in splits {list(splits)}")
        return chosen
    paths = sorted(p for p in root.glob("*.csv") if p.name != "derivatized.csv")
    if not paths:
        raise DataError(f"{root}: neither metadata.csv nor sample CSV files found")
    frame = pd.DataFrame({"sample_id": [p.stem for p in paths], "derivatized": 0,
                          "features_md5_hash": "", "path": paths})
    _check_unique_ids(frame["sample_id"], root)
    if derivatized_csv:
        path = Path(derivatized_csv)
        flags = _read_csv(path, dtype=str, keep_default_na=False)
        if not {"sample_id", "derivatized"} <= set(flags.columns):
            raise DataError(f"{path}: needs columns sample_id, derivatized")
        _check_unique_ids(flags["sample_id"], path)
        known = pd.Series(derivatized_flags(flags, path).to_numpy(), index=flags["sample_id"])
        unknown = sorted(set(known.index) - set(frame["sample_id"]))
        if unknown:
            raise DataError(f"{path}: samples not in {root}: {unknown[:5]}")
        frame["derivatized"] = [int(known.get(s, 0)) for s in frame["sample_id"]]
    return frame


def run_span(path: str | Path) -> tuple[float, float, int]:
    """(first time, last time, number of rows) of a sample CSV, reading only its time column."""
    time = _read_csv(Path(path), usecols=["time"])["time"].to_numpy()
    if time.size == 0:
        raise DataError(f"{path}: no rows")
    return float(time.min()), float(time.max()), int(time.size)


def _read_csv(path: Path, **kwargs) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError as error:
        raise DataError(f"{path}: empty file") from error
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a readable CSV ({error})") from error


def _plain(value):
    """numpy scalars print as np.float64(...); show the plain Python value instead."""
    return value.item() if hasattr(value, "item") else value


def _check_unique_ids(ids: pd.Series, path: Path) -> None:
    duplicated = ids[ids.duplicated()].unique().tolist()
    if duplicated:
        raise DataError(f"{path}: duplicate sample_id {duplicated[:5]}")
