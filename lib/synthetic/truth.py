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
  whose half-height window lies outside the recording has no rows).

Only ions inside the run's mass sweep are listed (a sweep starting at 33 shows no m/z 18).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lib.schema import LABELS

TRUTH_FILE = "truth.csv"
ROLES: tuple[str, ...] = ("label", "confuser", "distractor", "reagent", "background")
TRUTH_COLUMNS: tuple[str, ...] = (
    "sample_id", "signal", "role", "label", "family", "compound", "mz", "relative_intensity",
    "height", "t_peak_min", "t_start_min", "t_end_min",
)


def read_truth(data_dir: str | Path) -> pd.DataFrame | None:
    """The folder's truth.csv as a DataFrame (TRUTH_COLUMNS; label and family "" when empty),
    or None when the folder has none (real data). ValueError naming the file when its columns
    or roles are not the expected ones, and the file, the line and the value when a label or
    family is not one of LABELS (its scores would otherwise vanish)."""
    path = Path(data_dir) / TRUTH_FILE
    if not path.is_file():
        return None
    truth = pd.read_csv(path, dtype={"sample_id": str, "role": str, "label": str, "family": str,
                                     "compound": str}, keep_default_na=False)
    if tuple(truth.columns) != TRUTH_COLUMNS:
        raise ValueError(f"{path}: expected columns {list(TRUTH_COLUMNS)}, "
                         f"found {list(truth.columns)}")
    unknown = sorted(set(truth["role"]) - set(ROLES))
    if unknown:
        raise ValueError(f"{path}: unknown roles {unknown} (known: {list(ROLES)})")
    for column in ("label", "family"):
        bad = truth.index[~truth[column].isin(["", *LABELS])]
        if len(bad):
            row = bad[0]
            raise ValueError(f"{path}: line {row + 2}: {column} {truth.at[row, column]!r} is not "
                             f"a label (known: {list(LABELS)}); {len(bad)} such rows")
    return truth
