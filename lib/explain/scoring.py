"""Scoring explanations against the synthetic truth: true regions, shares, hit rates, bootstrap
intervals, and the scores document."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lib.core.files import atomic_write_text
from lib.core.schema import HELIUM_MASS, LABELS
from lib.explain.result import ModelExplanation

# per label and model in explain_scores.json: shares and hit rates in [0, 1], each share's 90 %
# bootstrap interval over samples ([low, high]) and the number of samples scored. "map" is the
# model's own map (a CAM, or a feature model's contributions); top5_hit_rate is occlusion's.
SCORE_KEYS = ("map_share", "chance_share", "map_top5_hit_rate", "occlusion_share",
              "occlusion_chance_share", "top5_hit_rate")


SHARES = ("map_share", "occlusion_share")  # the scores that get a bootstrap interval


INTERVAL_LEVEL = 0.9


SCORES_FILE = "explain_scores.json"  # beside the ensemble's submission.csv


def save_scores(output_dir: str | Path, scores: dict, why_none: str) -> str:
    """Write ``scores`` ({"ensemble": {label: scores}, "models": {model: {"chosen": bool,
    "labels": {label: scores}, "problems": [...]}}}) to output_dir/SCORES_FILE atomically.
    With nothing scored at all (no label of the ensemble or of any model), remove the file an
    earlier execution left there, so that it cannot pass for this one's. why_none: why there
    are no scores (said in the returned line). Returns one line saying what was done."""
    path = Path(output_dir) / SCORES_FILE
    scored = scores.get("ensemble") or any(entry.get("labels")
                                           for entry in scores.get("models", {}).values())
    if scored:
        return f"wrote {atomic_write_text(path, json.dumps(scores, indent=2))}"
    if path.is_file():
        path.unlink()
        return f"no scores ({why_none}): removed {path}, which an earlier execution wrote"
    return f"no scores ({why_none}): {path} not written"


def time_bin(time_min: np.ndarray, run_start: float, run_end: float, t_bins: int) -> np.ndarray:
    """Minutes -> time bin of the image (lib.data.images.render_image's rule), clipped to the
    grid."""
    span = max(run_end - run_start, 1e-12)
    bins = np.round((np.asarray(time_min, float) - run_start) / span * (t_bins - 1))
    return np.clip(bins, 0, t_bins - 1).astype(int)


def truth_region(rows: pd.DataFrame, run_start: float, run_end: float, m_bins: int,
                 t_bins: int) -> np.ndarray:
    """(m, t) bool: the cells of the truth rows' ions inside their half-height windows.

    rows: truth.csv rows of one sample (mz, t_start_min, t_end_min); ions outside the image
    (m/z >= m_bins, helium) and rows without an ion are left out. run_start, run_end: the
    sample's first and last scan.
    """
    mask = np.zeros((m_bins, t_bins), dtype=bool)
    keep = (rows["mz"] < m_bins) & (rows["mz"] != HELIUM_MASS) & (rows["mz"] >= 0)
    rows = rows[keep.fillna(False).astype(bool)]  # a row without an ion (NaN) shows nothing
    starts = time_bin(rows["t_start_min"], run_start, run_end, t_bins)
    ends = time_bin(rows["t_end_min"], run_start, run_end, t_bins)
    for mz, lo, hi in zip(rows["mz"].to_numpy().astype(int), starts, ends):
        mask[mz, lo:hi + 1] = True
    return mask


def region_share(attribution: np.ndarray, region: np.ndarray) -> float:
    """Share of the non-negative attribution (m, t) inside the region (m, t) bool; NaN when
    there is no attribution at all."""
    attribution = np.clip(attribution, 0, None)
    total = attribution.sum()
    return float(attribution[region].sum() / total) if total > 0 else float("nan")


def chance_share(attribution: np.ndarray, region: np.ndarray, rng: np.random.Generator,
                 draws: int = 200) -> float:
    """Mean share of the attribution (m, t) in random regions like ``region``: its rows moved
    to as many distinct random rows (helium's left out) and each row's time span shifted by a
    random offset that keeps it on the grid. NaN when there is no attribution or no region."""
    attribution = np.clip(attribution, 0, None)
    total = attribution.sum()
    rows = np.flatnonzero(region.any(axis=1))
    if total <= 0 or rows.size == 0:
        return float("nan")
    m_bins, t_bins = region.shape
    candidates = np.setdiff1d(np.arange(m_bins), [HELIUM_MASS])
    spans = [np.flatnonzero(region[r]) for r in rows]
    shares = np.empty(draws)
    for d in range(draws):
        targets = rng.choice(candidates, size=rows.size, replace=False)
        inside = 0.0
        for target, cols in zip(targets, spans):
            offset = rng.integers(-cols[0], t_bins - cols[-1])
            inside += attribution[target, cols + offset].sum()
        shares[d] = inside / total
    return float(shares.mean())


def top_hit_rate(row_scores: np.ndarray, true_rows: np.ndarray, k: int = 5) -> float:
    """Share of the k highest-scoring rows that are true ion rows, out of the most that could
    be (min(k, number of true rows)); NaN without true rows."""
    true_rows = np.asarray(true_rows)
    if true_rows.size == 0:
        return float("nan")
    top = np.argsort(-np.asarray(row_scores), kind="stable")[:k]
    return float(np.isin(top, true_rows).sum() / min(k, true_rows.size))


def score_sample(attribution: np.ndarray | None, drops: np.ndarray | None, region: np.ndarray,
                 rng: np.random.Generator) -> dict[str, float]:
    """Scores of one sample for one label.

    attribution: (m, t) map of the label (a CAM, a feature model's contributions) or None (or
    no positive cell: no map scores); drops: (m,) occlusion drops of the label or None;
    region: (m, t) bool truth region of the label (see truth_region). Returns the SCORE_KEYS
    that apply: shares in [0, 1] or NaN.
    """
    true_rows = np.flatnonzero(region.any(axis=1))
    scores = {}
    if attribution is not None and attribution.max() > 0:  # nothing positive: nothing to share
        scores["map_share"] = region_share(attribution, region)
        scores["chance_share"] = chance_share(attribution, region, rng)
        scores["map_top5_hit_rate"] = top_hit_rate(attribution.sum(axis=1), true_rows)
    if drops is not None:
        positive = np.clip(drops, 0, None)
        scores["occlusion_share"] = (float(positive[true_rows].sum() / positive.sum())
                                     if positive.sum() > 0 else float("nan"))
        # a random set of as many rows (helium's left out) holds this share on average
        scores["occlusion_chance_share"] = true_rows.size / (region.shape[0] - 1)
        scores["top5_hit_rate"] = top_hit_rate(drops, true_rows)
    return scores


def bootstrap_interval(values: np.ndarray, rng: np.random.Generator,
                       level: float = INTERVAL_LEVEL, draws: int = 2000) -> tuple[float, float]:
    """(low, high): the central ``level`` interval of the mean of ``values`` (n,) over
    bootstrap resamples of them (percentile method); NaN values are left out first. (NaN, NaN)
    when no value is finite; (v, v) for one value."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    means = rng.choice(values, size=(draws, values.size), replace=True).mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def summarize_scores(per_sample: pd.DataFrame, seed: int = 0) -> dict[str, dict]:
    """Per label, the mean of each score over the scored samples (NaN-aware), each share's
    bootstrap interval and the number of samples.

    per_sample: one row per (sample, label) of one model (or of the ensemble) with a ``label``
    column and score columns (score_explanations). Returns {label: {score: mean in [0, 1],
    "<share>_interval": [low, high] (SHARES), "samples": n}} for the labels present, in LABELS
    order; a score with no finite value is left out.
    """
    rng = np.random.default_rng(seed)
    summary = {}
    if per_sample.empty:
        return summary
    for label in LABELS:
        rows = per_sample[per_sample["label"] == label]
        entry = {key: float(np.clip(rows[key].mean(), 0.0, 1.0)) for key in SCORE_KEYS
                 if key in rows and rows[key].notna().any()}
        if not entry:
            continue
        for key in SHARES:
            if key in entry:
                entry[f"{key}_interval"] = [float(np.clip(v, 0, 1))
                                            for v in bootstrap_interval(rows[key], rng)]
        entry["samples"] = int(len(rows))
        summary[label] = entry
    return summary


def hidden_positives(truth: pd.DataFrame) -> dict[str, set]:
    """{label: sample ids} of the truth's label rows without an ion (a positive the run
    cannot show, lib.synthetic.truth): left out of the samples drawn and of the scores."""
    rows = truth[(truth["role"] == "label") & truth["mz"].isna()]
    return {label: set(group["sample_id"]) for label, group in rows.groupby("label")}


def score_explanations(explanations: Sequence[ModelExplanation], truth: pd.DataFrame,
                       spans: dict[str, tuple[float, float]], m_bins: int, t_bins: int,
                       seed: int = 0) -> pd.DataFrame:
    """Score every explained (model, sample, label) against the truth (lib.synthetic.truth).

    spans: {sample_id: (first, last scan time in minutes)} (lib.data.dataset.run_span). The region
    of a label is its true ions inside their windows (truth_region, role "label"); a sample
    whose label shows no ion inside the image (a row without an ion, or ions off the image) is
    not scored. Returns one row per scored (model, sample_id, label) with the score columns
    of score_sample.
    """
    rng = np.random.default_rng(seed)
    label_rows = truth[(truth["role"] == "label") & truth["mz"].notna()]
    by_sample = dict(tuple(label_rows.groupby("sample_id")))
    rows = []
    for explanation in explanations:
        for label, ids in explanation.picked.items():
            j = LABELS.index(label)
            for sample_id in ids:
                sample_rows = by_sample.get(sample_id)
                if sample_rows is None:
                    continue
                region = truth_region(sample_rows[sample_rows["label"] == label],
                                      *spans[sample_id], m_bins, t_bins)
                if not region.any():
                    continue
                attribution = explanation.maps.get(label, {}).get(sample_id)
                drops = explanation.drops.get(sample_id)
                scores = score_sample(attribution, None if drops is None else drops[:, j],
                                      region, rng)
                rows.append({"model": explanation.name, "sample_id": sample_id, "label": label,
                             "true_rows": int(region.any(axis=1).sum()), **scores})
    return pd.DataFrame(rows)


def scores_document(ensemble: ModelExplanation | None, models: dict[str, ModelExplanation],
                    chosen: Sequence[str], per_sample: pd.DataFrame, seed: int = 0) -> dict:
    """The explain_scores.json document: {"ensemble": {label: scores}, "models": {model:
    {"chosen": bool, "labels": {label: scores}, "problems": [...]}}} (summarize_scores per
    model; every model of ``models``, scored or not). per_sample: score_explanations' rows."""
    def of(name: str) -> dict:
        rows = per_sample[per_sample["model"] == name] if len(per_sample) else per_sample
        return summarize_scores(rows, seed)

    return {"ensemble": of("ensemble") if ensemble is not None else {},
            "models": {name: {"chosen": name in chosen, "labels": of(name),
                              "problems": list(result.problems)}
                       for name, result in models.items()}}


def row_profiles(result: ModelExplanation) -> dict[str, np.ndarray]:
    """{label: (m,) mean attribution per m/z row over the label's explained samples}: the
    occlusion drops of the label where they were measured, else its maps summed over time."""
    profiles = {}
    for label, ids in result.picked.items():
        j = LABELS.index(label)
        drops = [result.drops[s][:, j] for s in ids if s in result.drops]
        maps = [m.sum(axis=1) for m in result.maps.get(label, {}).values()]
        if drops or maps:
            profiles[label] = np.mean(drops or maps, axis=0)
    return profiles


def true_ion_shares(truth: pd.DataFrame, picked: dict[str, list[str]]
                    ) -> dict[str, dict[int, float]]:
    """{label: {m/z: share of the label's picked samples in which it is a true ion}} from the
    truth's label rows (rows without an ion left out)."""
    rows = truth[(truth["role"] == "label") & truth["mz"].notna()]
    shares = {}
    for label, ids in picked.items():
        if not ids:
            continue
        mine = rows[(rows["label"] == label) & rows["sample_id"].isin(ids)]
        per_ion = mine.groupby("mz")["sample_id"].nunique() / len(ids)
        shares[label] = {int(mz): float(v) for mz, v in per_ion.items()}
    return shares
