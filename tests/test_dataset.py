"""Loading and validating a competition folder: each bad input gets a clear DataError."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from lib.core.schema import LABELS
from lib.data.dataset import DataError, cut_short_row, load_competition, read_sample


def edit_csv(path: Path, edit) -> None:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit(frame).to_csv(path, index=False)


def test_valid_folder_loads(competition_dir):
    data = load_competition(competition_dir, check_md5=True)
    assert len(data.metadata) == 15
    assert data.split_ids("val") == ["S0010", "S0011", "S0012"]
    assert data.metadata["derivatized"].tolist()[:4] == [1, 0, 0, 1]
    assert list(data.labels.columns) == list(LABELS)
    assert len(data.labels) == 13
    assert list(data.train_labels.columns) == ["sample_id", *LABELS]
    assert all(p.is_file() for p in data.metadata["path"])


def test_missing_data_folder(tmp_path):
    with pytest.raises(DataError, match="data folder not found"):
        load_competition(tmp_path / "nowhere")


@pytest.mark.parametrize("edit, message", [
    (lambda f: f.drop(columns=["features_md5_hash"]), r"missing \['features_md5_hash'\]"),
    (lambda f: f.assign(extra=1), r"unexpected \['extra'\]"),
    (lambda f: f.assign(split=f["split"].replace("val", "valid")),
     r"row 12 \(sample S0010\): unknown split 'valid'"),
    (lambda f: pd.concat([f, f.iloc[[3]]]), r"duplicate sample_id \['S0003'\]"),
    (lambda f: f.assign(derivatized=f["derivatized"].replace("1", "yes")),
     r"row 2 \(sample S0000\): derivatized must be 0, 1 or blank, got 'yes'"),
])
def test_bad_metadata(competition_dir, edit, message):
    edit_csv(competition_dir / "metadata.csv", edit)
    with pytest.raises(DataError, match=message) as info:
        load_competition(competition_dir)
    assert "metadata.csv" in str(info.value)


@pytest.mark.parametrize("edit, message", [
    (lambda f: f.drop(columns=["alcohol"]), r"missing \['alcohol'\]"),
    (lambda f: f[["sample_id", *reversed(LABELS)]], "wrong order"),
    (lambda f: f.assign(mineral=f["mineral"].replace("1", "2")), "mineral must be 0 or 1, got 2"),
    (lambda f: f.assign(mineral="0.5"), "mineral must be 0 or 1, got 0.5"),
    (lambda f: pd.concat([f, f.iloc[[0]].assign(sample_id="S9999")]),
     r"label rows for samples that are not train samples.*S9999"),
    (lambda f: pd.concat([f, f.iloc[[0]].assign(sample_id="S0014")]),
     r"not train samples.*S0014"),
    (lambda f: f.iloc[1:], r"1 train samples of metadata.csv have no labels.*S0000"),
    (lambda f: pd.concat([f, f.iloc[[2]]]), r"duplicate sample_id \['S0002'\]"),
])
def test_bad_labels(competition_dir, edit, message):
    edit_csv(competition_dir / "train_labels.csv", edit)
    with pytest.raises(DataError, match=message) as info:
        load_competition(competition_dir)
    assert "train_labels.csv" in str(info.value)


def test_missing_val_labels_file(competition_dir):
    (competition_dir / "val_labels.csv").unlink()
    with pytest.raises(DataError, match=r"val_labels.csv: label file not found \(3 val"):
        load_competition(competition_dir)


def test_missing_feature_file(competition_dir):
    (competition_dir / "test_features" / "S0014.csv").unlink()
    with pytest.raises(DataError,
                       match=r"row 16 \(sample S0014\): feature file .*S0014.csv not found$"):
        load_competition(competition_dir)


def test_nested_feature_folder_hint(competition_dir):
    val = competition_dir / "val_features"
    nested = val / "val_features"
    nested.mkdir()
    for csv in val.glob("*.csv"):
        shutil.move(csv, nested / csv.name)
    with pytest.raises(DataError, match=r"one folder deeper at .*val_features/val_features/S0010"):
        load_competition(competition_dir)


def test_md5_mismatch_is_reported_and_skippable(competition_dir):
    path = competition_dir / "train_features" / "S0004.csv"
    path.write_text(path.read_text().replace("\n1.", "\n2.", 1))
    with pytest.raises(DataError, match=r"md5 mismatch for 1 feature files.*\n  S0004: "):
        load_competition(competition_dir, check_md5=True, workers=2)
    assert len(load_competition(competition_dir, check_md5=False).metadata) == 15


def test_a_last_row_without_newline_is_whole_when_it_has_every_field(tmp_path):
    frame, _ = read_sample(sample_csv(tmp_path, "time,mass,intensity\n0.1,12.0,100\n0.2,13.0,7"))
    assert frame["intensity"].tolist() == [100.0, 7.0]
    assert cut_short_row(sample_csv(tmp_path, "time,mass,intensity\n0.1,12.0,100\n")) is None


def test_md5_mismatch_of_a_truncated_copy_names_its_row(competition_dir):
    path = competition_dir / "train_features" / "S0002.csv"
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(lines[:101]) + b"\n" + lines[101][:12])  # rows 2..101 whole
    with pytest.raises(DataError, match=rf"S0002: {path} has md5 \w+, metadata.csv says \w+; "
                                        rf"it ends mid-row at row 102 \('.+'\): a truncated"):
        load_competition(competition_dir, check_md5=True)
    with pytest.raises(DataError, match=rf"{path}: row 102: cut short"):
        read_sample(path)


def sample_csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "S0000.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("", "empty file"),
    ("time,mass,intensity\n", "no rows"),
    ("time,intensity\n0.1,100\n", r"missing column\(s\) \['mass'\]"),
    ("time,mass,intensity\n0.1,12.0,100\n0.2,abc,100\n", r"row 3: non-numeric mass 'abc'"),
    ("time,mass,intensity\n0.1,12.0,100\n,13.0,100\n", "row 3: missing time"),
    # a copy cut off mid-row: the last line lacks its newline and a field
    ("time,mass,intensity\n0.1,12.0,100\n0.2,13.0,", r"row 3: cut short \('0.2,13.0,'\)"),
    ("time,mass,intensity\n0.1,12.0,100\n0.2,1", r"row 3: cut short \('0.2,1'\).*truncated"),
])
def test_bad_sample_csv(tmp_path, text, message):
    path = sample_csv(tmp_path, text)
    with pytest.raises(DataError, match=message) as info:
        read_sample(path)
    assert str(path) in str(info.value)


def test_nan_intensities_count_as_zero(tmp_path):
    path = sample_csv(tmp_path, "time,mass,intensity\n0.1,12.0,\n0.2,13.0,5\n0.3,14.0,\n")
    frame, repairs = read_sample(path)
    assert repairs.nan == 2 and repairs.negative == 0
    assert frame["intensity"].tolist() == [0.0, 5.0, 0.0]
    assert re.fullmatch("float64", str(frame["time"].dtype))


def test_prediction_samples_from_competition_and_plain_folders(competition_dir, tmp_path):
    from lib.data.dataset import load_prediction_samples

    chosen = load_prediction_samples(competition_dir, splits=["test"])
    assert chosen["sample_id"].tolist() == ["S0013", "S0014"]
    plain = tmp_path / "new"
    plain.mkdir()
    for sid in ("S0013", "S0014"):
        shutil.copy(competition_dir / "test_features" / f"{sid}.csv", plain / f"X{sid}.csv")
    flags = tmp_path / "flags.csv"
    flags.write_text("sample_id,derivatized\nXS0014,1\n")
    samples = load_prediction_samples(plain, derivatized_csv=flags)
    assert samples["sample_id"].tolist() == ["XS0013", "XS0014"]
    assert samples["derivatized"].tolist() == [0, 1]
    flags.write_text("sample_id,derivatized\nNOPE,1\n")
    with pytest.raises(DataError, match=r"flags.csv: samples not in .*\['NOPE'\]"):
        load_prediction_samples(plain, derivatized_csv=flags)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither metadata.csv nor sample CSV files"):
        load_prediction_samples(tmp_path / "empty")


def test_negative_intensities_are_clipped_and_counted(tmp_path):
    path = sample_csv(tmp_path, "time,mass,intensity\n0.1,12.0,-3\n0.2,13.0,5\n0.3,14.0,-0.5\n")
    frame, repairs = read_sample(path)
    assert repairs == (0, 2, 0)
    assert frame["intensity"].tolist() == [0.0, 5.0, 0.0]


@pytest.mark.parametrize("order", ["scan order", "shuffled"])
def test_duplicate_rows_are_counted_and_kept(tmp_path, order):
    """A repeated (time, mass) is summed into its cell like the reference, and counted."""
    rows = ["0.1,12.0,5", "0.1,13.0,6", "0.1,13.0,7", "0.2,12.0,1", "0.2,12.0,1", "0.2,12.0,2",
            "0.2,13.0,4", "0.3,12.0,8"]
    if order == "shuffled":
        rows = [rows[i] for i in (5, 0, 7, 2, 4, 1, 6, 3)]
    frame, repairs = read_sample(sample_csv(tmp_path, "time,mass,intensity\n" + "\n".join(rows)))
    assert repairs == (0, 0, 3) and repairs.duplicate == 3
    assert len(frame) == 8


def test_image_cache_counts_negative_intensities(competition_dir, tmp_path):
    from lib.data.images import build_image_cache

    data = load_competition(competition_dir)
    path = data.metadata["path"].iloc[1]
    frame = pd.read_csv(path)
    frame.loc[:4, "intensity"] = -7
    frame.to_csv(path, index=False)
    cache = build_image_cache(data.metadata, tmp_path / "c.npz", workers=1, progress=False)
    assert cache["negative_counts"].tolist() == [0, 5] + [0] * 13


def test_image_cache_counts_duplicate_rows(competition_dir, tmp_path):
    from lib.data.images import build_image_cache

    data = load_competition(competition_dir)
    path = data.metadata["path"].iloc[2]
    frame = pd.read_csv(path)
    pd.concat([frame, frame.iloc[:3]]).to_csv(path, index=False)
    cache = build_image_cache(data.metadata, tmp_path / "c.npz", workers=1, progress=False)
    assert cache["duplicate_counts"].tolist() == [0, 0, 3] + [0] * 12


@pytest.mark.parametrize("features_path", ["../outside.csv", "/etc/hostname",
                                           "train_features/../../outside.csv"])
def test_features_path_outside_the_data_folder_is_refused(competition_dir, features_path):
    (competition_dir.parent / "outside.csv").write_text("secret first line\n1,2,3\n")

    def edit(frame):
        frame.loc[4, "features_path"] = features_path
        return frame

    edit_csv(competition_dir / "metadata.csv", edit)
    with pytest.raises(DataError, match=r"metadata.csv: row 6 \(sample S0004\): features_path "
                       r".* leaves the data folder") as info:
        load_competition(competition_dir)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize("value", ["yes", "2", "True", "-1"])
def test_prediction_derivatized_csv_accepts_only_0_1_blank(competition_dir, tmp_path, value):
    from lib.data.dataset import load_prediction_samples

    plain = tmp_path / "new"
    plain.mkdir()
    for sid in ("S0013", "S0014"):
        shutil.copy(competition_dir / "test_features" / f"{sid}.csv", plain / f"{sid}.csv")
    flags = tmp_path / "flags.csv"
    flags.write_text("sample_id,derivatized\nS0013,0\nS0014,1.0\n")
    assert load_prediction_samples(plain, derivatized_csv=flags)["derivatized"].tolist() == [0, 1]
    flags.write_text(f"sample_id,derivatized\nS0013,\nS0014,{value}\n")
    with pytest.raises(DataError, match=rf"flags.csv: row 3 \(sample S0014\): derivatized must "
                       rf"be 0, 1 or blank, got '{value}'"):
        load_prediction_samples(plain, derivatized_csv=flags)
    flags.write_text("sample_id,derivatized\nS0013,1\nS0013,0\n")
    with pytest.raises(DataError, match=r"flags.csv: duplicate sample_id \['S0013'\]"):
        load_prediction_samples(plain, derivatized_csv=flags)
