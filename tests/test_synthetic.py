"""The synthetic folder generator: layout, formats, determinism, label statistics, truth."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lib.core.schema import HELIUM_MASS, LABELS, METADATA_COLUMNS, SPLITS
from lib.data.dataset import load_competition
from lib.ensemble.leaderboard import read_test_labels
from lib.synthetic import (
    DEFAULT_SHIFT,
    PROFILES,
    ROLES,
    TRUTH_COLUMNS,
    FolderRefusedError,
    Instrument,
    Profile,
    draw_labels,
    expected_prevalence,
    format_run_csv,
    generate,
    generator_settings,
    main,
    read_truth,
    sample_table,
    shifted_instrument,
    simulate_run,
    simulate_run_with_truth,
    write_truth,
)
from lib.synthetic.space import NotEnoughSpaceError, estimated_bytes

TINY = PROFILES["tiny"]
N_TINY = TINY.n_train + TINY.n_val + TINY.n_test


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("tiny") / "data", "tiny", seed=0)


def _md5s(folder: Path) -> list[str]:
    return pd.read_csv(folder / "metadata.csv")["features_md5_hash"].tolist()


def _runs(folder: Path) -> list[tuple[Path, str]]:
    """(path, raw text) of every run in a folder."""
    metadata = pd.read_csv(folder / "metadata.csv")
    return [(folder / p, (folder / p).read_text()) for p in metadata["features_path"]]


def test_same_seed_same_bytes_other_seed_differs(tiny, tmp_path):
    again = generate(tmp_path / "again", "tiny", seed=0)
    other = generate(tmp_path / "other", "tiny", seed=1)
    assert _md5s(again) == _md5s(tiny)
    for name in ("metadata.csv", "train_labels.csv", "val_labels.csv", "submission_format.csv",
                 "truth.csv"):
        assert (again / name).read_bytes() == (tiny / name).read_bytes()
    assert not set(_md5s(other)) & set(_md5s(tiny))


def test_layout_and_columns(tiny):
    metadata = pd.read_csv(tiny / "metadata.csv", dtype=str, keep_default_na=False)
    assert tuple(metadata.columns) == METADATA_COLUMNS
    assert metadata["sample_id"].tolist() == [f"S{i:04d}" for i in range(N_TINY)]
    sizes = [TINY.n_train, TINY.n_val, TINY.n_test]
    assert metadata["split"].tolist() == [s for s, n in zip(SPLITS, sizes, strict=True)
                                          for _ in range(n)]
    assert (metadata["features_path"]
            == metadata["split"] + "_features/" + metadata["sample_id"] + ".csv").all()
    assert set(metadata["derivatized"]) <= {"1", ""}
    assert set(metadata["derivatized"]) == {"1", ""}  # both kinds occur even in tiny
    assert not list(tiny.rglob("*.tmp"))

    for split, n in (("train", TINY.n_train), ("val", TINY.n_val)):
        labels = pd.read_csv(tiny / f"{split}_labels.csv")
        assert list(labels.columns) == ["sample_id", *LABELS]
        assert labels["sample_id"].tolist() == metadata.loc[metadata["split"] == split,
                                                            "sample_id"].tolist()
        assert len(labels) == n
        values = labels[list(LABELS)].to_numpy()
        assert values.dtype.kind == "i" and set(np.unique(values)) <= {0, 1}

    submission = pd.read_csv(tiny / "submission_format.csv")
    assert list(submission.columns) == ["sample_id", *LABELS]
    assert submission["sample_id"].tolist() == metadata.loc[metadata["split"] != "train",
                                                            "sample_id"].tolist()
    assert (submission[list(LABELS)] == 0.5).all().all()


def test_md5_matches_files(tiny):
    metadata = pd.read_csv(tiny / "metadata.csv")
    for path, md5 in zip(metadata["features_path"], metadata["features_md5_hash"], strict=True):
        assert hashlib.md5((tiny / path).read_bytes()).hexdigest() == md5


def test_run_format(tiny):
    number = r"\d+\.\d{6}"
    line = re.compile(rf"{number},{number},[1-9]\d*")
    for path, text in _runs(tiny):
        lines = text.splitlines()
        assert lines[0] == "time,mass,intensity", path
        assert all(line.fullmatch(row) for row in lines[1:]), path
        run = pd.read_csv(io.StringIO(text))
        time, mass = run["time"].to_numpy(), run["mass"].to_numpy()
        # one sweep per time value: times never go back, masses ascend inside each sweep
        assert (np.diff(time) >= 0).all()
        new_scan = np.r_[True, np.diff(time) > 0]
        assert (np.diff(mass)[~new_scan[1:]] > 0).all()
        offset = np.abs(mass - np.round(mass))
        assert offset.max() < 0.5 and (offset < 0.3).mean() > 0.9
        assert run["intensity"].min() > 0 and run["intensity"].dtype.kind == "i"


def test_helium_and_sweep_start(tiny):
    """Sweeps start near 2-3, 33 or 45; low sweeps carry strong helium in every scan."""
    starts = set()
    for _, text in _runs(tiny):
        run = pd.read_csv(io.StringIO(text))
        first = int(np.round(run["mass"].min()))
        starts.add(first)
        assert first in (2, 3, 33, 34, 45, 46)
        helium = run[np.round(run["mass"]) == HELIUM_MASS]
        if first <= HELIUM_MASS:
            assert helium["time"].nunique() == run["time"].nunique()
            assert helium["intensity"].min() > 50 * run["intensity"].median()
        else:
            assert helium.empty
    assert min(starts) <= 3


def test_run_lengths_by_kind():
    """Derivatized runs start late; mineral-only runs are mostly short; hydrocarbon ones
    mostly 2-18 min; nothing runs past ~41 min."""
    rng = np.random.default_rng(0)
    mineral = np.eye(len(LABELS), dtype=int)[LABELS.index("mineral")]
    hydrocarbon = np.eye(len(LABELS), dtype=int)[LABELS.index("hydrocarbon")]
    spans = {}
    for name, labels, derivatized in (("derivatized", np.zeros(9, int), True),
                                      ("mineral", mineral, False),
                                      ("hydrocarbon", hydrocarbon, False)):
        runs = [simulate_run(rng, labels, derivatized, TINY) for _ in range(30)]
        spans[name] = np.array([(r["time"].min(), r["time"].max()) for r in runs])
    assert (spans["derivatized"][:, 0] > 6.5).all() and (spans["derivatized"][:, 1] < 41).all()
    assert (spans["mineral"][:, 1] <= 8).mean() > 0.5 and (spans["mineral"][:, 1] < 38).all()
    short = spans["hydrocarbon"][:, 1] <= 18
    assert short.mean() > 0.5 and (spans["hydrocarbon"][short, 0] >= 1.8).all()


def test_full_profile_run_sizes():
    """Real scan rate and mass range give real file sizes (~175k-1M rows)."""
    rng = np.random.default_rng(1)
    mineral = np.eye(len(LABELS), dtype=int)[LABELS.index("mineral")]
    sizes = [len(simulate_run(rng, mineral, False, "full")) for _ in range(3)]
    sizes += [len(simulate_run(rng, np.zeros(9, int), True, "full")) for _ in range(3)]
    assert min(sizes) > 150_000 and max(sizes) < 1_100_000


def test_format_run_csv_round_trips():
    run = simulate_run(np.random.default_rng(2), np.ones(9, int), True, TINY)
    text = format_run_csv(run)
    assert text == run.to_csv(index=False, float_format="%.6f").encode()
    pd.testing.assert_frame_equal(pd.read_csv(io.BytesIO(text)), run)


def test_limit_writes_a_prefix(tiny, tmp_path):
    small = generate(tmp_path / "limited", "tiny", seed=0, limit=TINY.n_train + 2)
    metadata = pd.read_csv(small / "metadata.csv")
    assert len(metadata) == TINY.n_train + 2
    assert metadata["features_md5_hash"].tolist() == _md5s(tiny)[: TINY.n_train + 2]
    assert len(pd.read_csv(small / "train_labels.csv")) == TINY.n_train
    assert len(pd.read_csv(small / "val_labels.csv")) == 2
    assert len(pd.read_csv(small / "submission_format.csv")) == 2
    assert not list((small / "test_features").iterdir())


def test_cli_reports_what_it_wrote(tmp_path, capsys):
    main([str(tmp_path / "cli"), "--profile", "tiny", "--limit", "3"])
    assert "wrote" in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "cli" / "metadata.csv")) == 3


# Public train statistics (809 samples): prevalence, and prevalence given derivatized / not.
REAL_PREVALENCE = [0.098, 0.328, 0.142, 0.119, 0.022, 0.038, 0.032, 0.026, 0.145]
REAL_GIVEN_DERIVATIZED = [0.196, 0.063, 0.380, 0.357, 0.063, 0.090, 0.090, 0.059, 0.145]
REAL_GIVEN_NOT = [0.052, 0.449, 0.032, 0.009, 0.004, 0.014, 0.005, 0.011, 0.144]


def test_label_statistics_match_the_real_train_split():
    labels, derivatized = draw_labels(np.random.default_rng(0), 200_000, 0.315)
    assert derivatized.mean() == pytest.approx(0.315, abs=1e-5)
    np.testing.assert_allclose(labels.mean(axis=0), expected_prevalence(0.315), atol=0.005)
    np.testing.assert_allclose(labels.mean(axis=0), REAL_PREVALENCE, atol=0.01)
    np.testing.assert_allclose(labels[derivatized].mean(axis=0), REAL_GIVEN_DERIVATIZED,
                               atol=0.02)
    np.testing.assert_allclose(labels[~derivatized].mean(axis=0), REAL_GIVEN_NOT, atol=0.01)
    per_sample = np.bincount(labels.sum(axis=1), minlength=9) / len(labels)
    real = np.array([303, 383, 58, 38, 13, 3, 0, 0, 11]) / 809
    np.testing.assert_allclose(per_sample, real, atol=0.01)
    hydrocarbon_only = (labels == np.eye(9, dtype=int)[1]).all(axis=1)
    assert derivatized[hydrocarbon_only].mean() < 0.05


# ---- truth.csv ------------------------------------------------------------------------------

def _all_labels(folder: Path) -> pd.DataFrame:
    """Labels of train and val samples, indexed by sample_id."""
    return pd.concat([pd.read_csv(folder / f"{split}_labels.csv") for split in ("train", "val")]
                     ).set_index("sample_id")


def test_truth_names_positive_labels_only(tiny):
    truth = read_truth(tiny)
    assert tuple(truth.columns) == TRUTH_COLUMNS
    assert set(truth["role"]) <= set(ROLES) and {"label", "background"} <= set(truth["role"])
    assert (truth["label"] != "").eq(truth["role"] == "label").all()
    # a row without an ion: a positive the run cannot show, and why
    unseen = truth[truth["mz"].isna()]
    assert len(unseen) and (unseen["role"] == "label").all()
    assert unseen["note"].str.startswith("not shown: ").all()
    assert unseen[["signal", "relative_intensity", "t_start_min"]].isna().all().all()
    assert (truth.loc[truth["mz"].notna(), "note"] == "").all()
    truth = truth[truth["mz"].notna()]
    assert truth["relative_intensity"].between(0, 1, inclusive="right").all()
    assert (truth["t_start_min"] <= truth["t_end_min"]).all()
    labels = _all_labels(tiny)
    rows = truth[truth["sample_id"].isin(labels.index)]
    labelled = rows[rows["role"] == "label"]
    # every label row belongs to a positive label of its sample; a confuser to a negative one
    assert all(labels.at[s, label] == 1 for s, label in zip(labelled["sample_id"],
                                                            labelled["label"]))
    confusers = rows[rows["role"] == "confuser"]
    assert all(labels.at[s, f] == 0 for s, f in zip(confusers["sample_id"], confusers["family"]))
    # most positives show inside the recording (a few elute before or after it); every
    # positive has a row, with an ion or saying why it has none
    positives = labels.stack()
    positives = set(positives[positives == 1].index)
    shown = set(zip(labelled["sample_id"], labelled["label"]))
    assert shown <= positives and len(shown) >= 0.8 * len(positives)
    unseen = unseen[unseen["sample_id"].isin(labels.index)]
    assert shown | set(zip(unseen["sample_id"], unseen["label"])) == positives
    assert not shown & set(zip(unseen["sample_id"], unseen["label"]))


def test_truth_matches_the_rendered_runs(tiny):
    """Strong peaks' ions stand out in the sample CSV inside their stated time window (label
    and distractor peaks are widened to be sampled by the scans; reagent peaks may fall
    between the tiny profile's scans, 0.5 min apart)."""
    truth = read_truth(tiny)
    metadata = pd.read_csv(tiny / "metadata.csv").set_index("sample_id")
    # well above the noise floor (<= ~1e4) and below the saturation ceiling (>= 2e8), where
    # the detector would flatten or drop out
    ion_height = truth["height"] * truth["relative_intensity"]
    strong = truth[ion_height.between(1e6, 8e7) & truth["role"].isin(["label", "distractor"])]
    assert len(strong) > 50
    checked = 0
    for sample_id, rows in strong.groupby("sample_id"):
        run = pd.read_csv(tiny / metadata.at[sample_id, "features_path"])
        mz = np.round(run["mass"]).astype(int)
        for row in rows.itertuples():
            ion = run[mz == row.mz]
            inside = ion["time"].between(row.t_start_min - 1e-6, row.t_end_min + 1e-6)
            assert inside.any(), (sample_id, row.compound, row.mz)
            # above half height inside the window: >= half the ion's peak, times the
            # detector's lowest gain (0.64 at m/z 300) and read-out scatter
            expected = 0.5 * 0.6 * row.height * row.relative_intensity
            assert ion.loc[inside, "intensity"].max() >= expected, (sample_id, row.compound,
                                                                    row.mz)
            checked += 1
    assert checked == len(strong)


def test_truth_of_simulate_run_is_its_rows():
    """The truth returned with a run is what the run shows: ions inside the sweep, windows
    inside the recording; the same rng gives the same run with or without truth."""
    labels = np.ones(9, int)
    run, truth = simulate_run_with_truth(np.random.default_rng(5), labels, True, TINY)
    pd.testing.assert_frame_equal(run, simulate_run(np.random.default_rng(5), labels, True, TINY))
    assert list(truth.columns) == list(TRUTH_COLUMNS[1:])
    assert set(truth.loc[truth["role"] == "label", "label"]) == set(LABELS)  # all nine positive
    truth = truth[truth["mz"].notna()]
    assert truth["mz"].between(np.round(run["mass"]).min(), np.round(run["mass"]).max()).all()
    assert truth["t_start_min"].min() >= run["time"].min()
    assert truth["t_end_min"].max() <= run["time"].max()
    amino = truth[truth["compound"].isin(["Gly", "Ala", "Val", "Leu", "Pro", "Phe"])]
    for _, rows in amino.groupby("signal"):  # evidence of both labels
        assert set(rows["label"]) == {"carboxylic_acid", "nitrogen_bearing_compound"}


def test_truth_only_rebuilds_the_same_file_and_refuses_another_seed(tiny, tmp_path):
    folder = tmp_path / "copy"
    generate(folder, "tiny", seed=0, limit=5)
    (folder / "truth.csv").unlink()
    assert read_truth(folder) is None
    write_truth(folder, "tiny", seed=0)
    assert read_truth(folder).equals(read_truth(tiny).query("sample_id <= 'S0004'")
                                     .reset_index(drop=True))
    with pytest.raises(ValueError, match="S0000 is not the run"):
        write_truth(folder, "tiny", seed=1)


def test_truth_only_refuses_a_missing_folder_and_an_edited_run(tiny, tmp_path, capsys):
    missing = tmp_path / "missing"
    with pytest.raises(SystemExit) as exited:
        main([str(missing), "--profile", "tiny", "--truth-only"])
    assert exited.value.code == 2
    assert f"{missing}: no metadata.csv; --truth-only adds truth.csv" in capsys.readouterr().err
    assert not missing.exists()
    folder = tmp_path / "copy"
    generate(folder, "tiny", seed=0, limit=5)
    (folder / "truth.csv").unlink()
    run = folder / "train_features" / "S0003.csv"
    run.write_text(run.read_text() + "9.000000,50.000000,7\n")  # one row more, same md5 listed
    with pytest.raises(SystemExit) as exited:
        main([str(folder), "--profile", "tiny", "--seed", "0", "--truth-only"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert f"error: {run}: not the run the generator wrote" in err and "edited" in err
    assert not (folder / "truth.csv").exists()


def test_a_profile_whose_shift_is_out_of_range_is_refused(tmp_path):
    strong = dataclasses.replace(TINY, shift=20.0)
    with pytest.raises(ValueError, match=r"shift must be at most 5 .*got 20.0"):
        generate(tmp_path / "strong", strong, seed=0)
    assert not (tmp_path / "strong").exists()


def test_truth_reader_names_the_file_with_wrong_columns(tmp_path):
    (tmp_path / "truth.csv").write_text("sample_id,mz\nS0000,57\n")
    with pytest.raises(ValueError, match="truth.csv: expected columns"):
        read_truth(tmp_path)


# ---- the output folder: whole or absent, never over what the generator did not make ---------

def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def foreign(tiny, tmp_path) -> Path:
    """A competition-format folder the generator did not write: tiny's files, one run edited
    (as a real folder would differ), plus the user's notes."""
    folder = tmp_path / "real"
    for path, data in _snapshot(tiny).items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    (folder / "synthetic.json").unlink(missing_ok=True)
    (folder / "train_features" / "S0000.csv").write_text("time,mass,intensity\n0.1,50.0,7\n")
    (folder / "notes.txt").write_text("mine\n")
    return folder


@pytest.mark.parametrize("flags, message", [
    (["--seed", "-1"], "seed must be a non-negative integer"),
    (["--profile", "huge"], "invalid choice: 'huge'"),
    (["--limit", "-3"], "limit must be 1 or more samples, got -3"),
    (["--limit", "0"], "limit must be 1 or more samples, got 0"),  # an empty folder
    (["--workers", "0"], "workers must be at least 1"),
    (["--shift", "-0.5"], "shift must be a finite number, 0 or more"),
    # ZeroDivisionError, OverflowError after 3.3 GB, petabytes, 347 MB for the tiny profile
    (["--shift", "1e9"], "shift must be at most 5 (test runs of up to exp(0.4 * shift) times "
                         "the scans), got 1000000000.0"),
    (["--shift", "30"], "shift must be at most 5"),
    (["--shift", "100"], "shift must be at most 5"),
    (["--shift", "20"], "shift must be at most 5"),
    (["--shift", "inf"], "shift must be a finite number, 0 or more"),
])
def test_bad_settings_exit_2_before_touching_the_folder(foreign, capsys, flags, message):
    before = _snapshot(foreign)
    with pytest.raises(SystemExit) as exited:
        main([str(foreign), "--profile", "tiny", *flags])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert _snapshot(foreign) == before


def test_a_folder_it_did_not_make_is_refused_and_left_alone(foreign, capsys):
    before = _snapshot(foreign)
    with pytest.raises(FolderRefusedError, match="real: not written: .*--force"):
        generate(foreign, "tiny", seed=0)
    with pytest.raises(SystemExit) as exited:
        main([str(foreign), "--profile", "tiny"])
    assert exited.value.code == 1 and "pass --force" in capsys.readouterr().err
    assert _snapshot(foreign) == before
    # --force replaces the whole folder with a complete synthetic one
    main([str(foreign), "--profile", "tiny", "--force"])
    assert not (foreign / "notes.txt").exists()
    assert _md5s(foreign) == _md5s(generate(foreign.parent / "fresh", "tiny", seed=0))
    assert [p.name for p in foreign.parent.iterdir() if p.name.startswith(".")] == []


def test_its_own_folder_is_reused_and_other_settings_are_refused(tiny, capsys):
    before = _snapshot(tiny)
    assert generator_settings(tiny) == {"format": "mars-gcms synthetic folder v1",
                                        "profile": "tiny", "seed": 0, "limit": None,
                                        "shift": DEFAULT_SHIFT}
    main([str(tiny), "--profile", "tiny", "--seed", "0"])
    assert "kept (made earlier with these settings)" in capsys.readouterr().out
    for other in (dict(seed=1), dict(seed=0, limit=3), dict(profile="small"), dict(shift=0)):
        with pytest.raises(FolderRefusedError, match="the generator made it with profile tiny"):
            generate(tiny, **{"profile": "tiny", **other})
    assert _snapshot(tiny) == before


def test_a_profile_object_makes_a_folder_of_its_own_size(tiny, tmp_path):
    """generate takes a Profile as well as a name: its sizes are written, the marker holds
    its fields (or the name of an equal named profile), the folder is reused for the same
    Profile and refused for another; a Profile with a bad field is refused before writing."""
    custom = dataclasses.replace(TINY, n_train=5, n_val=2, n_test=3)
    folder = generate(tmp_path / "custom", custom, seed=0)
    assert load_competition(folder).metadata["split"].value_counts().to_dict() == {
        "train": 5, "test": 3, "val": 2}
    assert generator_settings(folder)["profile"] == dataclasses.asdict(custom)
    assert generate(folder, dataclasses.replace(custom), seed=0) == folder  # reused
    with pytest.raises(FolderRefusedError, match="the generator made it with profile"):
        generate(folder, dataclasses.replace(custom, n_test=4), seed=0)
    # the same sizes as the named profile: the same folder, byte for byte, marked by name
    same = generate(tmp_path / "same", Profile(**dataclasses.asdict(TINY)), seed=0)
    assert generator_settings(same)["profile"] == "tiny" and _md5s(same) == _md5s(tiny)
    for field, bad in (("n_train", -1), ("max_mass", 1), ("scan_interval_min", 0.0),
                       ("shift", float("nan")), ("n_val", 2.5)):
        with pytest.raises(ValueError, match=f"profile {field} must be"):
            generate(tmp_path / f"bad_{field}", dataclasses.replace(custom, **{field: bad}))
        assert not (tmp_path / f"bad_{field}").exists()


def test_a_folder_made_before_the_marker_is_recognised_by_its_runs(tiny, tmp_path):
    folder = generate(tmp_path / "old", "tiny", seed=0, limit=5)
    (folder / "synthetic.json").unlink()
    with pytest.raises(FolderRefusedError, match="no synthetic.json, and no metadata.csv"):
        generate(folder, "tiny", seed=1, limit=5)
    assert not (folder / "synthetic.json").exists()
    generate(folder, "tiny", seed=0, limit=5)  # recognised: kept, and marked
    assert generator_settings(folder)["limit"] == 5


def test_an_interrupted_generation_leaves_no_folder(tmp_path):
    """Killed while writing runs: the output folder does not exist (the work in progress is a
    hidden sibling), so nothing can mistake a partial folder for data."""
    out = tmp_path / "data"
    process = subprocess.Popen([sys.executable, "-m", "lib.synthetic", str(out), "--profile",
                                "small", "--limit", "60"], cwd=Path(__file__).parents[1])
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".data.*/train_features/*.csv")):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()
    assert not out.exists()


def test_truth_reader_names_the_line_of_a_label_it_does_not_know(tiny, tmp_path):
    """A misspelt label would make that label's scores vanish in 06; it is refused instead."""
    lines = (tiny / "truth.csv").read_text().splitlines(keepends=True)
    row = next(i for i, line in enumerate(lines) if ",label,hydrocarbon," in line)
    lines[row] = lines[row].replace(",label,hydrocarbon,", ",label,Hydrocarbon,")
    (tmp_path / "truth.csv").write_text("".join(lines))
    with pytest.raises(ValueError, match=rf"truth.csv: line {row + 1}: label 'Hydrocarbon' is "
                                         r"not a label .*; 1 such rows"):
        read_truth(tmp_path)



def test_a_positive_the_run_cannot_show_has_a_row_saying_why():
    """A derivatized run starts recording after the mineral gases are gone, and its mass sweep
    starts above water: its mineral positive has one row, without an ion, saying why; the
    run itself is the one the generator always made."""
    labels = np.zeros(9, int)
    labels[LABELS.index("mineral")] = 1
    reasons = []
    for seed in range(6):
        run, truth = simulate_run_with_truth(np.random.default_rng(seed), labels, True, TINY)
        pd.testing.assert_frame_equal(run, simulate_run(np.random.default_rng(seed), labels,
                                                        True, TINY))
        mineral = truth[truth["label"] == "mineral"]
        assert len(mineral)
        if mineral["mz"].isna().any():
            assert len(mineral) == 1 and mineral["note"].iloc[0].startswith("not shown: ")
            reasons.append(mineral["note"].iloc[0])
    assert reasons and all("outside the" in reason for reason in reasons), reasons


def test_truth_reader_leaves_out_unknown_labels_when_asked_to_go_on(tiny, tmp_path):
    lines = (tiny / "truth.csv").read_text().splitlines(keepends=True)
    row = next(i for i, line in enumerate(lines) if ",label,hydrocarbon," in line)
    lines[row] = lines[row].replace(",label,hydrocarbon,", ",label,Hydrocarbon,")
    (tmp_path / "truth.csv").write_text("".join(lines))
    problems = []
    truth = read_truth(tmp_path, problems)
    assert problems == [f"{tmp_path / 'truth.csv'}: line {row + 1}: label 'Hydrocarbon' is not "
                        f"a label (known: {list(LABELS)}); 1 such rows, left out"]
    assert len(truth) == len(lines) - 2 and "Hydrocarbon" not in set(truth["label"])


# ---- hidden test labels and the train-to-test shift -------------------------------------------

def test_test_labels_are_written_and_never_loaded(tiny):
    """test_labels.csv has train_labels.csv's columns and one row per test sample, with the
    labels the runs were simulated from; loading the competition never reads it, so no test id
    reaches the training labels."""
    metadata = pd.read_csv(tiny / "metadata.csv")
    test_ids = metadata.loc[metadata["split"] == "test", "sample_id"].tolist()
    written = pd.read_csv(tiny / "test_labels.csv")
    assert list(written.columns) == list(pd.read_csv(tiny / "train_labels.csv").columns)
    assert written["sample_id"].tolist() == test_ids
    table = sample_table("tiny", 0, DEFAULT_SHIFT).set_index("sample_id")
    np.testing.assert_array_equal(written[list(LABELS)].to_numpy(),
                                  table.loc[test_ids, list(LABELS)].to_numpy())
    assert read_test_labels(tiny / "test_labels.csv", test_ids).shape == (len(test_ids), 9)
    data = load_competition(tiny)
    assert not set(test_ids) & set(data.labels.index)
    assert not set(test_ids) & set(data.train_labels["sample_id"])


def test_shift_changes_only_the_test_split(tiny, tmp_path):
    """--shift 0 is the i.i.d. split; any shift leaves train and val byte for byte as they are,
    and moves the test split's runs and derivatized share."""
    iid = generate(tmp_path / "iid", "tiny", seed=0, shift=0)
    strong = generate(tmp_path / "strong", "tiny", seed=0, shift=4)
    meta = {name: pd.read_csv(f / "metadata.csv") for name, f in
            (("iid", iid), ("default", tiny), ("strong", strong))}
    trainval = meta["iid"]["split"] != "test"
    for name in ("default", "strong"):
        assert meta[name].loc[trainval].equals(meta["iid"].loc[trainval])
        assert not (meta[name].loc[~trainval, "features_md5_hash"]
                    == meta["iid"].loc[~trainval, "features_md5_hash"]).any()
    for file in ("train_labels.csv", "val_labels.csv", "submission_format.csv"):
        assert (strong / file).read_bytes() == (iid / file).read_bytes()
    derivatized = {name: m.loc[~trainval, "derivatized"].notna().mean()
                   for name, m in meta.items()}
    assert derivatized["iid"] < derivatized["strong"]
    assert generator_settings(iid)["shift"] == 0 and generator_settings(strong)["shift"] == 4


def test_shifted_runs_come_from_other_instrument_settings(tmp_path):
    """Under a strong shift the test runs scan faster and are noisier than the same samples
    unshifted; the truth still describes each shifted run."""
    iid = generate(tmp_path / "iid", "tiny", seed=0, shift=0)
    strong = generate(tmp_path / "strong", "tiny", seed=0, shift=4)
    test = pd.read_csv(iid / "metadata.csv").query("split == 'test'")["features_path"]
    scans = {name: np.mean([pd.read_csv(f / p)["time"].nunique() for p in test])
             for name, f in (("iid", iid), ("strong", strong))}
    floor = {name: np.mean([pd.read_csv(f / p)["intensity"].quantile(0.1) for p in test])
             for name, f in (("iid", iid), ("strong", strong))}
    assert scans["strong"] > 1.2 * scans["iid"] and floor["strong"] > 2 * floor["iid"]
    truth = read_truth(strong)
    assert set(truth["sample_id"]) >= set(pd.read_csv(strong / "test_labels.csv")["sample_id"])


def test_truth_only_adds_test_labels_with_the_folders_shift(tiny, tmp_path):
    folder = tmp_path / "copy"
    for path, data in _snapshot(tiny).items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    (folder / "test_labels.csv").unlink()
    (folder / "truth.csv").unlink()
    main([str(folder), "--profile", "tiny", "--truth-only"])
    assert (folder / "test_labels.csv").read_bytes() == (tiny / "test_labels.csv").read_bytes()
    assert (folder / "truth.csv").read_bytes() == (tiny / "truth.csv").read_bytes()
    (folder / "test_labels.csv").unlink()
    with pytest.raises(ValueError, match="S0030 is not the run .* shift 0"):
        write_truth(folder, "tiny", seed=0, shift=0)  # another shift: nothing written
    assert not (folder / "test_labels.csv").exists()


def test_shifted_instrument_factors_grow_with_the_strength():
    assert shifted_instrument(np.random.default_rng(0), 0.0) == Instrument()
    weak, strong = (shifted_instrument(np.random.default_rng(0), s) for s in (1.0, 2.0))
    assert 1 < weak.ramp_scale < strong.ramp_scale  # same draws, twice the log-factor
    assert strong.ramp_scale == pytest.approx(weak.ramp_scale ** 2)
    assert strong.scan_interval_scale < weak.scan_interval_scale < 1
    assert 1 < weak.noise_scale < strong.noise_scale and 1 < weak.background_scale
    with pytest.raises(ValueError, match="shift strength must be 0 or more"):
        shifted_instrument(np.random.default_rng(0), -1.0)


def test_a_folder_the_disk_cannot_hold_is_refused_before_writing(tmp_path):
    huge = dataclasses.replace(PROFILES["tiny"], n_train=10**9)
    with pytest.raises(NotEnoughSpaceError, match=rf"{tmp_path / 'huge'}: the folder needs "
                                                  r"about [\d.]+ GB and its disk has"):
        generate(tmp_path / "huge", huge, seed=0)
    assert list(tmp_path.iterdir()) == []  # nothing written, no partial folder
    # the estimate against what small's 400 runs took on disk (0.75 GB, measured 2026-12-06)
    small = PROFILES["small"]
    assert estimated_bytes(small, 400) == pytest.approx(0.75e9, rel=0.1)
