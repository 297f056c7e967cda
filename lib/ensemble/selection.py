"""Combining runs (method.md section 7): the candidates (finished run folders grouped into
models, collect_models), logit averaging, the selection score, grow-by-one and remove-by-one,
and the submission.

Shapes: oof_probs (runs, samples, 9) probabilities; labels (samples, 9) 0/1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lib.core.families import model_family
from lib.core.logits import LOGIT_CLIP, sigmoid, to_logits
from lib.core.metrics import aggregated_log_loss

# Post-hoc clips tried when scoring a combination: p' = p (1 - 2c) + c.
SCORE_CLIPS = np.concatenate([[0.0], np.logspace(-5, -1, 20)])


MAX_GROW = 30  # the reference grows at most 30 runs


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


@dataclass
class Selection:
    """The outcome of select: ``chosen`` (indices of the candidate axis, the better of the two
    procedures), ``method`` ("grow-by-one" or "remove-by-one"), ``score`` (its selection
    score), both procedures' sets (``grown``, ``kept``) and scores (``scores``), and their
    (number of runs, score) traces."""

    chosen: list[int]
    method: str
    score: float
    grown: list[int]
    kept: list[int]
    scores: dict[str, float]
    grow_trace: list
    remove_trace: list


def select(oof_probs: np.ndarray, labels: np.ndarray, candidates: list[int] | None = None
           ) -> Selection:
    """Grow-by-one and remove-by-one over ``candidates`` (default: every run of oof_probs,
    (runs, n, 9)); the set with the lower selection score wins (grow-by-one on ties). Indices in
    the result are those of oof_probs."""
    pool = list(range(len(oof_probs))) if candidates is None else list(candidates)
    if not pool:
        raise ValueError("no candidate to select from")
    grow_trace, remove_trace = [], []
    grown = [pool[i] for i in grow_by_one(oof_probs[pool], labels, trace=grow_trace)]
    kept = [pool[i] for i in remove_by_one(oof_probs[pool], labels, trace=remove_trace)]
    scores = {name: selection_score(mean_logits(oof_probs[chosen]), labels)[0]
              for name, chosen in (("grow-by-one", grown), ("remove-by-one", kept))}
    method = min(scores, key=scores.get)
    chosen = grown if method == "grow-by-one" else kept
    return Selection(chosen, method, scores[method], grown, kept, scores, grow_trace,
                     remove_trace)


def without_each_family(names: list[str], oof_probs: np.ndarray, labels: np.ndarray
                        ) -> dict[str, Selection | None]:
    """{family: the selection over every model but that family's} for each family among
    ``names`` (model_family; oof_probs (runs, n, 9) in names' order). None where no other
    family is left to select from."""
    family_of = [model_family(name) for name in names]
    result = {}
    for family in dict.fromkeys(family_of):
        others = [i for i, f in enumerate(family_of) if f != family]
        result[family] = select(oof_probs, labels, others) if others else None
    return result
