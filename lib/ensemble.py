"""Combining runs (method.md section 7): logit averaging, the selection score, grow-by-one and
remove-by-one, and the submission.

Shapes: oof_probs (runs, samples, 9) probabilities; labels (samples, 9) 0/1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lib.metrics import aggregated_log_loss
from lib.schema import LABELS

LOGIT_CLIP = 1e-4
# Post-hoc clips tried when scoring a combination: p' = p (1 - 2c) + c.
SCORE_CLIPS = np.concatenate([[0.0], np.logspace(-5, -1, 20)])
MAX_GROW = 30  # the reference grows at most 30 runs


def to_logits(probabilities: np.ndarray, clip: float = LOGIT_CLIP) -> np.ndarray:
    """Probabilities clipped to [clip, 1 - clip] -> logits (float64), same shape."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), clip, 1 - clip)
    return np.log(p / (1 - p))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-logits))


def mean_logits(probabilities: np.ndarray, clip: float = LOGIT_CLIP) -> np.ndarray:
    """(runs, n, 9) probabilities -> (n, 9) float32: clip, logit, mean over runs, sigmoid."""
    return sigmoid(to_logits(probabilities, clip).mean(axis=0)).astype(np.float32)


def selection_score(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(score, clip): the lowest aggregated log loss of p (1 - 2c) + c over c in SCORE_CLIPS
    (the first c on ties). probabilities, labels: (n, 9)."""
    losses = [aggregated_log_loss(labels, probabilities * (1 - 2 * c) + c) for c in SCORE_CLIPS]
    best = int(np.argmin(losses))
    return float(losses[best]), float(SCORE_CLIPS[best])


def grow_by_one(oof_probs: np.ndarray, labels: np.ndarray, max_runs: int = MAX_GROW,
                trace: list | None = None) -> list[int]:
    """Start empty; repeatedly add the run whose addition scores lowest (the lowest index on
    ties), up to ``max_runs`` additions. Returns the chosen runs in the order they were added,
    cut at the lowest-scoring prefix (the shortest on ties).

    trace: if a list is given, (number of runs, score) of every step is appended to it.
    """
    logits = to_logits(oof_probs)
    chosen: list[int] = []
    total = np.zeros(logits.shape[1:])
    best_score, best_size = np.inf, 0
    while len(chosen) < min(max_runs, len(logits)):
        candidates = [r for r in range(len(logits)) if r not in chosen]
        scores = [selection_score(sigmoid((total + logits[r]) / (len(chosen) + 1)), labels)[0]
                  for r in candidates]
        pick = int(np.argmin(scores))
        chosen.append(candidates[pick])
        total += logits[candidates[pick]]
        if trace is not None:
            trace.append((len(chosen), scores[pick]))
        if scores[pick] < best_score:
            best_score, best_size = scores[pick], len(chosen)
    return chosen[:best_size]


def remove_by_one(oof_probs: np.ndarray, labels: np.ndarray,
                  trace: list | None = None) -> list[int]:
    """Start with every run; repeatedly drop the run whose removal scores lowest (the first on
    ties) down to one run. Returns the best-scoring set seen, all runs included (ascending).

    trace: if a list is given, (number of runs, score) of the full set and of every step.
    """
    logits = to_logits(oof_probs)
    current = list(range(len(logits)))
    best_score = selection_score(sigmoid(logits.mean(axis=0)), labels)[0]
    best_set = list(current)
    if trace is not None:
        trace.append((len(current), best_score))
    total = logits.sum(axis=0)
    while len(current) > 1:
        scores = [selection_score(sigmoid((total - logits[r]) / (len(current) - 1)), labels)[0]
                  for r in current]
        pick = int(np.argmin(scores))
        total -= logits[current.pop(pick)]
        if trace is not None:
            trace.append((len(current), scores[pick]))
        if scores[pick] < best_score:
            best_score, best_set = scores[pick], list(current)
    return best_set


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
