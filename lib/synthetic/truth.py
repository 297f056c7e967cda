"""The ground truth of a synthetic folder: which ions each sample's signals put where.

``truth.csv`` in a synthetic folder (real competition folders have none) holds one row per
sample x signal x ion (x label, for a signal that is evidence of two labels, as amino acids are
of carboxylic_acid and nitrogen_bearing_compound):

- sample_id; signal: the signal's number within the sample (rows of one signal share it);
- role: "label" (a compound of a positive label), "confuser" (a negative label's ions as a
  contaminant trace), "distractor" (an unlabeled peak), "reagent" (derivatization reagent and
  its by-products), "background" (helium, air, column bleed);
- label: the positive label the signal is evidence of (empty unless role is "label");
  family: the label whose chemistry the signal shows (a confuser's too; empty otherwise);
- compound: its name; mz: integer m/z of the ion; relative_intensity: the ion's share of the
  compound's base peak, (0, 1]; height: the base peak's height in counts/s before the
  detector (its gain, noise and saturation);
- t_peak_min: the peak's centre (minutes; may lie outside the recording); t_start_min,
  t_end_min: where the signal is above half its height, clipped to the recorded time (a signal
  whose half-height window lies outside the recording has no rows);
- note: empty, except on the row of a positive label that the run cannot show.

Only ions inside the run's mass sweep are listed (a sweep starting at 33 shows no m/z 18).
Every positive label of a sample has at least one row: a positive none of whose signals left a
row (a mineral in a derivatized run whose recording starts after the mineral gases are gone)
gets one row with role "label", no signal number, no ion and no times, whose note says why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lib.core.schema import LABELS

TRUTH_FILE = "truth.csv"
ROLES: tuple[str, ...] = ("label", "confuser", "distractor", "reagent", "background")
TRUTH_COLUMNS: tuple[str, ...] = (
    "sample_id", "signal", "role", "label", "family", "compound", "mz", "relative_intensity",
    "height", "t_peak_min", "t_start_min", "t_end_min", "note",
)
# the columns that are numbers: empty in the row of a positive the run cannot show
NUMERIC_COLUMNS: tuple[str, ...] = ("signal", "mz", "relative_intensity", "height",
                                    "t_peak_min", "t_start_min", "t_end_min")


def unseen_positive_rows(labels: np.ndarray, truth: pd.DataFrame,
                         misses: list[tuple[str, str]]) -> pd.DataFrame:
    """Rows for the positive labels of one run that its truth rows do not show.

    labels: (9,) 0/1 in LABELS order; truth: the run's rows (TRUTH_COLUMNS without sample_id
    and note); misses: (label, why) for each signal of a positive label that left no row
    (lib.synthetic.simulate says why: outside the recording, outside the mass sweep). Returns
    one row per positive label without a "label" row (TRUTH_COLUMNS without sample_id): role
    "label", no signal, ion or times, the note saying why (the misses' reasons, or that no
    signal of the label was drawn).
    """
    shown = set(truth.loc[truth["role"] == "label", "label"])
    rows = []
    for label in np.asarray(LABELS)[np.asarray(labels).astype(bool)]:
        if label in shown:
            continue
        why = sorted({reason for missed, reason in misses if missed == label})
        rows.append(dict(role="label", label=label, family=label, compound="", note="not shown: "
                         + ("; ".join(why) if why else "no signal of the label was drawn")))
    return pd.DataFrame(rows, columns=list(TRUTH_COLUMNS[1:]))


def read_truth(data_dir: str | Path, problems: list[str] | None = None) -> pd.DataFrame | None:
    """The folder's truth.csv as a DataFrame (TRUTH_COLUMNS; text columns "" when empty, the
    NUMERIC_COLUMNS NaN in a row without an ion), or None when the folder has none (real data).
    ValueError naming the file when its columns or roles are not the expected ones. A row whose
    label or family is not one of LABELS is named (the file, the line and the value); with a
    ``problems`` list it is appended there and such rows are left out (notebook 06 explains the
    rest), without one it is a ValueError."""
    path = Path(data_dir) / TRUTH_FILE
    if not path.is_file():
        return None
    truth = pd.read_csv(path, dtype={"sample_id": str, "role": str, "label": str, "family": str,
                                     "compound": str, "note": str}, keep_default_na=False,
                        na_values={column: [""] for column in NUMERIC_COLUMNS})
    if tuple(truth.columns) != TRUTH_COLUMNS:
        raise ValueError(f"{path}: expected columns {list(TRUTH_COLUMNS)}, "
                         f"found {list(truth.columns)} (a file from before the note column: "
                         f"write it again with python -m lib.synthetic DIR --truth-only)")
    unknown = sorted(set(truth["role"]) - set(ROLES))
    if unknown:
        raise ValueError(f"{path}: unknown roles {unknown} (known: {list(ROLES)})")
    bad_rows = pd.Series(False, index=truth.index)
    for column in ("label", "family"):
        bad = ~truth[column].isin(["", *LABELS])
        if bad.any():
            row = truth.index[bad][0]
            message = (f"{path}: line {row + 2}: {column} {truth.at[row, column]!r} is not a "
                       f"label (known: {list(LABELS)}); {int(bad.sum())} such rows")
            if problems is None:
                raise ValueError(message)
            problems.append(f"{message}, left out")
            bad_rows |= bad
    return truth[~bad_rows].reset_index(drop=True)
