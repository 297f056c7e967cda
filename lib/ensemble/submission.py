"""The submission file: checked against the submission format, finite, written with
selection.json as one set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from lib.core.files import write_file_set
from lib.core.schema import LABELS

SUBMISSION_FILE = "submission.csv"
SELECTION_FILE = "selection.json"
# 06's explanations of the chosen ensemble, written beside the pair: they go with the pair
EXPLANATION_FILES = ("explain_scores.json", "explain_ensemble.png")


def validate_submission(submission: pd.DataFrame, submission_format: pd.DataFrame,
                        source: str = "submission") -> None:
    """ValueError unless ``submission`` has submission_format's ids in its order, its columns,
    and probabilities in [0, 1] without NaN."""
    if list(submission.columns) != list(submission_format.columns):
        raise ValueError(f"{source}: columns {list(submission.columns)} differ from the "
                         f"submission format's {list(submission_format.columns)}")
    if submission["sample_id"].tolist() != submission_format["sample_id"].tolist():
        raise ValueError(f"{source}: sample ids differ from the submission format's "
                         f"(rows and order must match)")
    values = submission[list(LABELS)].to_numpy(dtype=np.float64)
    if np.isnan(values).any():
        raise ValueError(f"{source}: {int(np.isnan(values).sum())} NaN probabilities")
    if (values < 0).any() or (values > 1).any():
        raise ValueError(f"{source}: probabilities outside [0, 1]")


def check_finite(sample_ids, values: np.ndarray, source: str = "predictions") -> None:
    """ValueError naming the samples (up to 10) whose row of ``values`` (n, 9) holds NaN or
    inf; sample_ids (n,)."""
    bad = ~np.isfinite(np.asarray(values, dtype=np.float64)).all(axis=1)
    if bad.any():
        names = [str(s) for s, b in zip(sample_ids, bad) if b]
        raise ValueError(f"{source}: non-finite values for {len(names)} samples: {names[:10]}"
                         + (" ..." if len(names) > 10 else ""))


def make_submission(sample_ids, probabilities: np.ndarray,
                    submission_format: pd.DataFrame) -> pd.DataFrame:
    """(n,) ids + (n, 9) probabilities -> a validated DataFrame in submission_format's order."""
    frame = pd.DataFrame(probabilities, columns=list(LABELS), index=list(sample_ids))
    missing = sorted(set(submission_format["sample_id"]) - set(frame.index))
    if missing:
        raise ValueError(f"no predictions for {len(missing)} submission rows, e.g. {missing[:3]}")
    submission = frame.loc[submission_format["sample_id"]].reset_index(names="sample_id")
    validate_submission(submission, submission_format)
    return submission


def write_outputs(output_dir: str | Path, submission: pd.DataFrame, selection: dict) -> Path:
    """Write ``submission`` (probabilities to 6 decimals) as submission.csv and ``selection`` as
    selection.json into output_dir as one set (lib.core.files.write_file_set): a reader finds
    the old pair or the new pair, never a mix, and the old pair's explanations
    (EXPLANATION_FILES) go with it. On any error (a full disk, a value JSON cannot hold) the
    files there stay as they were. Returns the path of submission.csv."""
    output_dir = Path(output_dir)
    try:
        selection_text = json.dumps(selection, indent=2)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{output_dir / SELECTION_FILE}: the selection cannot be written as "
                         f"JSON ({error}); nothing written") from error
    texts = {SUBMISSION_FILE: submission.to_csv(index=False, float_format="%.6f"),
             SELECTION_FILE: selection_text}
    write_file_set(output_dir, texts, retire=EXPLANATION_FILES)
    return output_dir / SUBMISSION_FILE
