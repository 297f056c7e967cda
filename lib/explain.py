"""Attribution maps for finished models and for the ensemble as a whole: which m/z rows and
which moments drive each label.

On the (mass, time) grid of the cached image (one row per integer m/z, one column per time bin
of the sample's own run):

- maps of each model: class activation maps of a CNN from the grad-cam package (GradCAM,
  HiResCAM or LayerCAM at a target layer chosen per backbone, CAM_DEFAULTS), computed through
  each of the model's TTA widths and mapped back onto the input grid, then averaged as the TTA
  averages logits; a feature model's per-feature contributions put back on the cells the
  features came from (lib.explain_features);
- occlusion: each m/z row (or band of rows) of the image emptied (set to 0), batched, every
  prediction recomputed from it (a CNN through its model input and TTA, a feature model through
  its features) and the drop of every label's logit measured. For the ensemble the logit is the
  mean of its members' clipped logits (lib.ensemble), so the submission itself is explained.

On synthetic data the maps are scored against the generator's truth.csv (lib.synthetic.truth):
the share of attribution on a label's true ions inside their time windows against the share a
region of the same rows and time spans, placed at random, gets; the top-5 m/z hit rate; and a
bootstrap interval over samples of each share.
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pytorch_grad_cam import GradCAM, HiResCAM, LayerCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from lib.ensemble import LOGIT_CLIP
from lib.explain_features import contribution_method, contributions_to_grid, feature_contributions
from lib.feature_models import (
    FEATURE_MODEL,
    LEARNERS,
    FeatureModel,
    ModelFileError,
    load_feature_model,
    predict_feature_logits,
)
from lib.features import image_features
from lib.files import atomic_write_text
from lib.inference import load_run_model
from lib.models import GcmsNet, add_positional_channels, resize_time, tta_widths
from lib.runs import CHECKPOINT, FOLD_DIR, METRICS, is_done, model_key, read_metrics
from lib.schema import HELIUM_MASS, LABELS, N_LABELS
from lib.training import DeviceImages

CAM_METHODS = {"gradcam": GradCAM, "hirescam": HiResCAM, "layercam": LayerCAM}
# The target "layer" that is the model input (B, 2, m, t) itself, the earliest stage: there
# HiResCAM's gradient x activation is gradient x input, one value per cell of the image, and
# it exists for every backbone (a 1D sequence model has no 2D feature map).
INPUT_LAYER = "input"
# The CAM of each backbone family when 06 names none: (method, target layer), measured against
# the synthetic truth by scripts/measure_cam_layers.py (README: Explanations). A backbone not
# listed gets LayerCAM at its last feature map ("": the map the head pools).
CAM_DEFAULTS: dict[str, tuple[str, str]] = {
    # demo CNN (cls3), synthetic small, 2 positive OOF samples per label: labels (of 9) whose
    # CAM share is 2x chance or more, mean share / chance over labels. HiResCAM at the input
    # 9/9 (2.93); at backbone.blocks.1 3/9 (1.67); blocks.0 2/9, blocks.2 (LayerCAM) 3/9, the
    # last feature map 0/9. A stage's map is 8 or more m/z rows coarse along m/z once
    # upsampled, wider than an ion's row; the input's is one cell per (m/z, time).
    "mobilenetv3_small_100": ("hirescam", INPUT_LAYER),
    # a 1D sequence model has no 2D feature map: gradient x input on the image grid
    "seq1d": ("hirescam", INPUT_LAYER),
    "seq1d_tiny": ("hirescam", INPUT_LAYER),
}
# per label and model in explain_scores.json: shares and hit rates in [0, 1], each share's 90 %
# bootstrap interval over samples ([low, high]) and the number of samples scored. "map" is the
# model's own map (a CAM, or a feature model's contributions); top5_hit_rate is occlusion's.
SCORE_KEYS = ("map_share", "chance_share", "map_top5_hit_rate", "occlusion_share",
              "occlusion_chance_share", "top5_hit_rate")
SHARES = ("map_share", "occlusion_share")  # the scores that get a bootstrap interval
INTERVAL_LEVEL = 0.9

SCORES_FILE = "explain_scores.json"  # beside the ensemble's submission.csv
METHODS = ("map", "occlusion")
FAMILIES = {"cnn": CHECKPOINT, "feature": FEATURE_MODEL}  # family -> the file it needs

# (B, m, t) float32 images -> (B, 9) logits
Predictor = Callable[[np.ndarray], np.ndarray]


def check_settings(n_samples: int, methods: Sequence[str], cam_method: str = "",
                   name: str = "n_samples") -> None:
    """ValueError naming the setting (06's parameter of that name) when it cannot be used:
    n_samples (06's parameter ``name``), the positive OOF samples per label, below 1; methods
    empty or not among METHODS; cam_method neither "" (the backbone's default) nor a key of
    CAM_METHODS."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
            or n_samples < 1:
        raise ValueError(f"{name} (positive out-of-fold samples per label) must be "
                         f"an integer of at least 1, got {n_samples!r}")
    if not methods or not set(methods) <= set(METHODS):
        raise ValueError(f"methods must be one or more of {list(METHODS)}, got {list(methods)}")
    if cam_method and cam_method not in CAM_METHODS:
        raise ValueError(f"cam_method must be one of {sorted(CAM_METHODS)} or empty (the "
                         f"backbone's default), got {cam_method!r}")


def default_cam(backbone: str) -> tuple[str, str]:
    """(CAM method, target layer) for a timm backbone name (pin tags allowed): the
    CAM_DEFAULTS entry of its name without the tag, else LayerCAM at the last feature map."""
    return CAM_DEFAULTS.get(backbone.split(".")[0], ("layercam", ""))


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


class TargetLayerError(ValueError):
    """The CAM's target layer cannot be found or gives no (B, C, h, w) feature map."""


# ---- class activation maps ------------------------------------------------------------------

class _AtWidth(nn.Module):
    """A GcmsNet at one TTA width, as one module for the grad-cam package.

    target: "" (the last feature map): run the backbone as timm's forward_features +
    forward_head (or the features_only list) and pass the last feature map through ``tap``, an
    identity the CAM hooks; the backbone runs without autograd (a CAM needs the gradient of the
    logit with respect to the feature map only, so the backward pass goes through the head
    alone). INPUT_LAYER: ``tap`` is the model input itself (B, 2, m, t), before the time
    resize, so the map lies on the cached image's grid cell by cell. Otherwise (a module named
    by the user) the model's own forward_width.
    """

    def __init__(self, net: GcmsNet, width: int, target: str = ""):
        super().__init__()
        self.net = net
        self.width = width
        self.target = target
        self.tap = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.target == INPUT_LAYER:  # a leaf that wants its gradient, for the package's hook
            return self.net.forward_width(self.tap(x.detach().requires_grad_()), self.width)
        if self.target:
            return self.net.forward_width(x, self.width)
        net = self.net
        with torch.no_grad():
            x = net.input_conv(add_positional_channels(resize_time(x, self.width)))
            if net.features_only:
                features = net.backbone(x)[-1]
            elif hasattr(net.backbone, "forward_features"):
                features = net.backbone.forward_features(x)
            else:
                raise TargetLayerError(f"{type(net.backbone).__name__} has no forward_features; "
                                       f"name a target layer (or {INPUT_LAYER!r})")
        if not (isinstance(features, torch.Tensor) and features.ndim == 4):
            raise TargetLayerError(f"{type(net.backbone).__name__}'s last features are not a "
                                   f"(B, C, h, w) map; name a target layer (or "
                                   f"{INPUT_LAYER!r})")
        features = self.tap(features.requires_grad_())
        out = features if net.features_only else net.backbone.forward_head(features)
        return net.head(out.float())


def find_target_layer(model: GcmsNet, target_layer: str | None = None) -> str:
    """The CAM target's name: "" for the default (the backbone's last feature map),
    INPUT_LAYER (the model input, any backbone), else ``target_layer`` checked: a module of the
    model (e.g. "backbone.layer4") whose output is a (B, C, h, w) tensor. TargetLayerError
    names the backbone and close module names."""
    if not target_layer or target_layer == INPUT_LAYER:
        return target_layer or ""
    names = dict(model.named_modules())
    if target_layer not in names:
        close = difflib.get_close_matches(target_layer, list(names), n=5)
        raise TargetLayerError(f"{type(model.backbone).__name__}: no module {target_layer!r} "
                               f"(close: {close or 'none'}; a stage, e.g. 'backbone.layer4')")
    outputs = []
    handle = names[target_layer].register_forward_hook(lambda m, i, o: outputs.append(o))
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            model.backbone(model.input_conv(torch.zeros(1, 4, 64, 64, device=device)))
    finally:
        handle.remove()
    if not outputs:
        raise TargetLayerError(f"{type(model.backbone).__name__}: module {target_layer!r} is "
                               f"not used in the forward pass")
    for output in outputs:
        if not (isinstance(output, torch.Tensor) and output.ndim == 4):
            got = (f"shape {tuple(output.shape)}" if isinstance(output, torch.Tensor)
                   else type(output).__name__)
            raise TargetLayerError(f"{type(model.backbone).__name__}: module {target_layer!r} "
                                   f"gives {got}, not a (B, C, h, w) feature map")
    return target_layer


def cam_maps(model: GcmsNet, x: torch.Tensor, label: int, *, method: str = "gradcam",
             target_layer: str | None = None) -> np.ndarray:
    """Class activation maps of one label for a batch, through the model's TTA widths.

    x: (B, 2, m, t) model inputs; label: index into LABELS. For each width of
    ``tta_widths(t, model.width_offsets)`` the grad-cam package computes the map at the target
    layer and resizes it to the input's (m, t) (the time resize undone); the maps are averaged
    over widths. Returns (B, m, t) float32, finite, in [0, 1] (each width's map is scaled to
    max 1 by the package). method: a key of CAM_METHODS.
    """
    if method not in CAM_METHODS:
        raise ValueError(f"method must be one of {sorted(CAM_METHODS)}, got {method!r}")
    name = find_target_layer(model, target_layer)
    was_training = model.training
    maps = []
    try:
        for width in tta_widths(x.shape[-1], model.width_offsets):
            wrapper = _AtWidth(model, width, name)
            layer = wrapper.tap if name in ("", INPUT_LAYER) else model.get_submodule(name)
            cam = CAM_METHODS[method](model=wrapper, target_layers=[layer])
            try:  # not `with`: the package's __exit__ would swallow an IndexError
                maps.append(cam(input_tensor=x, targets=[ClassifierOutputTarget(label)] * len(x)))
            finally:
                cam.activations_and_grads.release()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return np.nan_to_num(np.mean(maps, axis=0), nan=0.0).astype(np.float32)


# ---- predictions from images, and occlusion -------------------------------------------------

def cnn_predictor(model: GcmsNet, config: dict, derivatized: int,
                  device: str | torch.device = "cpu") -> Predictor:
    """(B, m, t) cached images of one sample's kind -> (B, 9) TTA logits of a CNN (eval mode),
    through the model input the run trained on (config's norm and transform; derivatized 0/1
    picks the channel)."""
    model.eval()
    device = torch.device(device)

    def predict(images: np.ndarray) -> np.ndarray:
        data = DeviceImages(images, np.full(len(images), derivatized), device)
        with torch.no_grad():
            x = data.model_input(torch.arange(len(images)), config["norm"], config["transform"])
            return model(x).float().cpu().numpy()

    return predict


def feature_predictor(model: FeatureModel, derivatized: int) -> Predictor:
    """(B, m, t) cached images -> (B, 9) logits of a feature model, through its features."""

    def predict(images: np.ndarray) -> np.ndarray:
        features, _ = image_features(images, np.full(len(images), derivatized),
                                     kind=model.config["features"],
                                     n_bands=model.config["n_bands"])
        return predict_feature_logits(model, features)

    return predict


def ensemble_predictor(members: Sequence[Predictor]) -> Predictor:
    """The ensemble's logit (lib.ensemble: each member's probability clipped to
    [LOGIT_CLIP, 1 - LOGIT_CLIP], logits averaged): (B, m, t) -> (B, 9) float64."""
    bound = np.log((1 - LOGIT_CLIP) / LOGIT_CLIP)  # the clip, on the logit scale

    def predict(images: np.ndarray) -> np.ndarray:
        return np.mean([np.clip(member(images), -bound, bound) for member in members], axis=0)

    return predict


def occlusion_drops(predict: Predictor, image: np.ndarray, *, band: int = 1, coarse: int = 0,
                    refine_labels: Sequence[int] = (), keep: int = 3,
                    batch_size: int = 64) -> np.ndarray:
    """Drop of every label's logit when m/z rows of the image are emptied (set to 0), batched.

    predict: (B, m, t) images -> (B, 9) logits (cnn_predictor, feature_predictor,
    ensemble_predictor); image: (m, t) one cached image. Returns (m, 9) float32, positive where
    rows support a label: logit(image) - logit(image with the row's band emptied), the same
    for every row of a band of ``band`` rows. Bands that are already empty are skipped (drop 0).
    coarse > band: two passes to save time. First bands of ``coarse`` rows; then, for each
    label index in refine_labels, the ``keep`` coarse bands with the largest drop are occluded
    again band by band. Rows never refined get their coarse band's drop divided by its number
    of rows (a band's total stays its drop); refined rows get their own.
    """
    if band < 1:
        raise ValueError(f"band must be at least 1 row, got {band}")
    image = np.asarray(image, dtype=np.float32)
    m_rows = image.shape[0]
    base = predict(image[None])[0]

    def bands_of(size: int, rows) -> list[tuple[int, int]]:
        return [(lo, min(lo + size, m_rows)) for lo in rows if image[lo:lo + size].any()]

    def occluded(bands: list[tuple[int, int]]) -> np.ndarray:
        out = []
        for first in range(0, len(bands), batch_size):
            chunk = bands[first:first + batch_size]
            batch = np.repeat(image[None], len(chunk), axis=0)
            for i, (lo, hi) in enumerate(chunk):
                batch[i, lo:hi] = 0
            out.append(predict(batch))
        return np.concatenate(out) if out else np.zeros((0, N_LABELS))

    drops = np.zeros((m_rows, base.shape[-1]))
    if coarse > band and refine_labels:
        first = bands_of(coarse, range(0, m_rows, coarse))
        for (lo, hi), logits in zip(first, occluded(first)):
            drops[lo:hi] = (base - logits) / (hi - lo)
        chosen = set()
        for j in refine_labels:
            ranked = sorted(first, key=lambda b: -float(drops[b[0], j]))
            chosen.update(ranked[:keep])
        for lo, hi in chosen:
            drops[lo:hi] = 0  # empty rows inside stay 0; the others are measured next
        rows = [r for lo, hi in sorted(chosen) for r in range(lo, hi, band)]
    else:
        rows = range(0, m_rows, band)
    fine = bands_of(band, rows)
    for (lo, hi), logits in zip(fine, occluded(fine)):
        drops[lo:hi] = base - logits
    return drops.astype(np.float32)


# ---- scoring against the synthetic truth -----------------------------------------------------

def time_bin(time_min: np.ndarray, run_start: float, run_end: float, t_bins: int) -> np.ndarray:
    """Minutes -> time bin of the image (lib.images.render_image's rule), clipped to the grid."""
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


# ---- explaining models and the ensemble ------------------------------------------------------

def group_runs(run_dirs: Sequence[str | Path]) -> dict[str, dict[int, Path]]:
    """{model key (lib.runs.model_key): {fold: run folder}} in key order; folders not named
    fold<k>_seed<s> are left out."""
    grouped: dict[str, dict[int, Path]] = {}
    for run_dir in map(Path, run_dirs):
        match = FOLD_DIR.search(run_dir.name)
        if match:
            grouped.setdefault(model_key(run_dir), {})[int(match.group(1))] = run_dir
    return dict(sorted(grouped.items()))


def pick_samples(oof_labels: pd.DataFrame, n_per_label: int, seed: int = 0,
                 hidden: dict[str, set] | None = None) -> dict[str, list[str]]:
    """Up to n_per_label positive samples per label, drawn at random (seeded).

    oof_labels: label columns (0/1) indexed by sample_id, for the samples a model did not train
    on. hidden: {label: sample ids whose run cannot show the label} (truth.csv rows without an
    ion), not drawn. Returns {label: sorted [sample_id, ...]} per column, in column order; a
    label with no positive sample gets an empty list.
    """
    rng = np.random.default_rng(seed)
    picked = {}
    for label in oof_labels.columns:
        positives = oof_labels.index[oof_labels[label] == 1]
        positives = np.array(sorted(set(positives) - set((hidden or {}).get(label, ()))))
        n = min(n_per_label, positives.size)
        picked[label] = sorted(rng.choice(positives, size=n, replace=False).tolist()) if n else []
    return picked


def run_family(run_dir: Path) -> str:
    """"cnn" or "feature" (a key of FAMILIES) for a finished run, from the backbone its
    metrics.json records (a feature learner: lib.feature_models.LEARNERS). FileNotFoundError
    naming the run and the file when the run is unfinished (no DONE), has no metrics.json, or
    lacks the file its family needs (checkpoint.pt, feature_model.json)."""
    run_dir = Path(run_dir)
    if not is_done(run_dir):
        raise FileNotFoundError(f"{run_dir}: not a finished run (no DONE file), not explained")
    if not (run_dir / METRICS).is_file():
        raise FileNotFoundError(f"{run_dir}: no {METRICS}, not explained")
    backbone = read_metrics(run_dir).get("parameters", {}).get("backbone", "")
    family = "feature" if backbone in LEARNERS else "cnn"
    if not (run_dir / FAMILIES[family]).is_file():
        kind = "a feature model" if family == "feature" else "a CNN"
        raise FileNotFoundError(f"{run_dir}: {kind} ({backbone}) without {FAMILIES[family]}, "
                                f"not explained")
    return family


@dataclass
class ModelExplanation:
    """What explain_model (or explain_ensemble) found for one model (the folds of one
    name/backbone/seed) or for the ensemble.

    family: "cnn", "feature" or "ensemble"; map_method: what ``maps`` are (e.g. "layercam at
    backbone.blocks.2", "coef x standardised value"); picked: {label: [sample_id, ...]} the
    positive OOF samples explained per label; maps: {label: {sample_id: (m, t) float32 map}};
    drops: {sample_id: (m, 9) float32 occlusion drops}; probs: {sample_id: (9,) probabilities
    of the fold model that did not train on it}; images: {sample_id: (m, t) float32 cached
    image}; problems: one line per run, label or method left out, and why; seconds: wall time.
    """

    name: str
    family: str = ""
    map_method: str = ""
    picked: dict[str, list[str]] = field(default_factory=dict)
    maps: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    drops: dict[str, np.ndarray] = field(default_factory=dict)
    probs: dict[str, np.ndarray] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class _FoldModel:
    """One fold's loaded model: a CNN (net, config) or a feature model."""

    family: str
    config: dict
    net: GcmsNet | None = None
    feature_model: FeatureModel | None = None

    def predictor(self, derivatized: int, device: torch.device) -> Predictor:
        if self.family == "cnn":
            return cnn_predictor(self.net, self.config, derivatized, device)
        return feature_predictor(self.feature_model, derivatized)


def _load_fold(run_dir: Path, image_size: tuple[int, int], device: torch.device) -> _FoldModel:
    """The fold's model; FileNotFoundError / ValueError naming the run and the problem."""
    family = run_family(run_dir)
    try:
        if family == "cnn":
            net, config = load_run_model(run_dir, device)
            fold_model = _FoldModel(family, config, net=net)
        else:
            feature_model = load_feature_model(run_dir / FEATURE_MODEL)
            fold_model = _FoldModel(family, feature_model.config, feature_model=feature_model)
    except (OSError, RuntimeError, KeyError, ModelFileError) as error:
        raise ValueError(f"{run_dir}: cannot load the model ({error}), not explained") from None
    size = (fold_model.config["m_bins"], fold_model.config["t_bins"])
    if size != tuple(image_size):
        raise ValueError(f"{run_dir}: trained on {size[0]}x{size[1]} images, the cache holds "
                         f"{image_size[0]}x{image_size[1]}; not explained")
    return fold_model


def _usable_folds(name: str, fold_runs: dict[int, Path], image_size: tuple[int, int],
                  device: torch.device, problems: list[str]) -> dict[int, _FoldModel]:
    """{fold: loaded model} of the folds that load; the others named in problems."""
    usable = {}
    if not fold_runs:
        problems.append(f"{name}: no run folder, not explained")
    for fold, run_dir in sorted(fold_runs.items()):
        try:
            usable[fold] = _load_fold(Path(run_dir), image_size, device)
        except (FileNotFoundError, ValueError) as error:
            problems.append(str(error))
    return usable


def _pick(name: str, usable: Sequence[int], train_labels: pd.DataFrame, folds: pd.DataFrame,
          labels: Sequence[str], n_per_label: int, seed: int, hidden: dict[str, set] | None,
          problems: list[str]) -> dict[str, list[str]]:
    oof_ids = folds.loc[folds["fold"].isin(list(usable)), "sample_id"]
    oof_ids = [s for s in oof_ids if s in train_labels.index]
    picked = pick_samples(train_labels.loc[oof_ids, list(labels)], n_per_label, seed, hidden)
    for label, ids in picked.items():
        if usable and not ids:  # without a usable fold, the folds' problems say it all
            problems.append(f"{name}: {label}: no positive OOF sample among the finished folds "
                            f"(whose run can show it), not explained")
    return picked


def explain_model(name: str, fold_runs: dict[int, Path], cache: dict[str, np.ndarray],
                  train_labels: pd.DataFrame, folds: pd.DataFrame, *,
                  labels: Sequence[str] = LABELS, n_per_label: int = 4,
                  methods: Sequence[str] = METHODS, cam_method: str = "",
                  target_layer: str | None = None, band: int = 1, coarse: int = 8,
                  hidden: dict[str, set] | None = None,
                  device: str | torch.device = "cpu", seed: int = 0) -> ModelExplanation:
    """Maps and occlusion drops of one model (a CNN or a feature model) for positive OOF
    samples of each label.

    fold_runs: {fold: run folder} of the model; cache: an image cache (lib.images:
    sample_ids, derivatized, images (N, m, t)) of the runs' image size; train_labels: the 9
    label columns indexed by sample_id; folds: sample_id, fold. Each sample is explained by the
    fold model that did not train on it; up to n_per_label samples per label (pick_samples,
    ``hidden`` left out). methods: "map" (a CNN's CAM: cam_method at target_layer, by default
    the backbone's default_cam; a feature model's contributions) and/or "occlusion" (bands of
    ``band`` rows; with coarse > band, a first pass over bands of ``coarse`` rows and the best
    bands of the labels a sample was picked for refined, see occlusion_drops). A run that
    cannot be loaded, a target layer that cannot be found and a label without a positive OOF
    sample are named in ``problems``; the rest goes on. ValueError for settings that cannot
    be used (check_settings).
    """
    check_settings(n_per_label, methods, cam_method)
    started = time.perf_counter()
    device = torch.device(device)
    result = ModelExplanation(name)
    image_size = tuple(cache["images"].shape[1:])
    usable = _usable_folds(name, fold_runs, image_size, device, result.problems)
    result.picked = _pick(name, usable, train_labels, folds, labels, n_per_label, seed, hidden,
                          result.problems)
    position = {sample_id: i for i, sample_id in enumerate(cache["sample_ids"])}
    fold_of = folds.set_index("sample_id")["fold"]
    for fold, fold_model in usable.items():
        result.family = fold_model.family
        wanted = {label: [s for s in ids if fold_of[s] == fold]
                  for label, ids in result.picked.items()}
        ids = sorted({s for chosen in wanted.values() for s in chosen})
        if not ids:
            continue
        images = cache["images"][[position[s] for s in ids]].astype(np.float32)
        flags = cache["derivatized"][[position[s] for s in ids]]
        logits = np.stack([fold_model.predictor(int(flag), device)(image[None])[0]
                           for image, flag in zip(images, flags)])
        for i, sample_id in enumerate(ids):
            result.probs[sample_id] = 1 / (1 + np.exp(-np.clip(logits[i], -30, 30)))
            result.images[sample_id] = images[i]
        if "map" in methods:
            problem = _add_maps(result, fold_model, wanted, ids, images, flags, cam_method,
                                target_layer, device)
            if problem:
                result.problems.append(f"{fold_runs[fold]}: {problem}")
        if "occlusion" in methods:
            for i, sample_id in enumerate(ids):
                refine = [LABELS.index(label) for label, chosen in wanted.items()
                          if sample_id in chosen]
                predict = fold_model.predictor(int(flags[i]), device)
                result.drops[sample_id] = occlusion_drops(predict, images[i], band=band,
                                                          coarse=coarse, refine_labels=refine)
    result.seconds = time.perf_counter() - started
    return result


def _add_maps(result: ModelExplanation, fold_model: _FoldModel, wanted: dict[str, list[str]],
              ids: list[str], images: np.ndarray, flags: np.ndarray, cam_method: str,
              target_layer: str | None, device: torch.device) -> str | None:
    """Put one fold's maps of its wanted samples into result.maps; a problem line or None."""
    if fold_model.family == "feature":
        config = fold_model.config
        features, names = image_features(images, flags, kind=config["features"],
                                         n_bands=config["n_bands"])
        contributions = feature_contributions(fold_model.feature_model, features)
        result.map_method = contribution_method(fold_model.feature_model.learner)
        for label, chosen in wanted.items():
            j = LABELS.index(label)
            for sample_id in chosen:
                i = ids.index(sample_id)
                result.maps.setdefault(label, {})[sample_id] = contributions_to_grid(
                    contributions[i, j], names, images[i], config["n_bands"])
        return None
    config = fold_model.config
    method, layer = default_cam(config["backbone"])
    method, layer = cam_method or method, target_layer if target_layer is not None else layer
    result.map_method = f"{method} at {layer or 'the last feature map'}"
    data = DeviceImages(images, flags, device)
    x = data.model_input(torch.arange(len(ids)), config["norm"], config["transform"])
    for label, chosen in wanted.items():
        if not chosen:
            continue
        rows = torch.as_tensor([ids.index(s) for s in chosen])
        try:
            maps = cam_maps(fold_model.net, x[rows], LABELS.index(label), method=method,
                            target_layer=layer or None)
        except TargetLayerError as error:
            return f"{error}; no CAMs for this run"
        result.maps.setdefault(label, {}).update(zip(chosen, maps))
    return None


def explain_ensemble(members: dict[str, dict[int, Path]], cache: dict[str, np.ndarray],
                     train_labels: pd.DataFrame, folds: pd.DataFrame, *,
                     labels: Sequence[str] = LABELS, n_per_label: int = 4, band: int = 1,
                     coarse: int = 8, hidden: dict[str, set] | None = None,
                     device: str | torch.device = "cpu", seed: int = 0) -> ModelExplanation:
    """Occlusion of the ensemble's mean logit (ensemble_predictor) on positive OOF samples.

    members: {model key: {fold: run folder}} of the ensemble's models (its selection); the
    other arguments as explain_model's. Each sample is predicted, emptied row by row, by every
    member's fold model that did not train on it (a CNN through its model input and TTA, a
    feature model through its features). A fold that a member cannot provide leaves that
    fold's samples out (named in ``problems``): the ensemble without a member is another
    predictor. Returns a ModelExplanation named "ensemble" (family "ensemble", no maps).
    """
    check_settings(n_per_label, ["occlusion"])
    started = time.perf_counter()
    device = torch.device(device)
    result = ModelExplanation("ensemble", family="ensemble", map_method="occlusion")
    image_size = tuple(cache["images"].shape[1:])
    loaded = {name: _usable_folds(name, fold_runs, image_size, device, result.problems)
              for name, fold_runs in members.items()}
    complete = set.intersection(*(set(folds_) for folds_ in loaded.values())) if loaded else set()
    if members and not complete:
        result.problems.append("ensemble: no fold that every member can predict, not explained")
    result.picked = _pick("ensemble", sorted(complete), train_labels, folds, labels,
                          n_per_label, seed, hidden, result.problems)
    position = {sample_id: i for i, sample_id in enumerate(cache["sample_ids"])}
    fold_of = folds.set_index("sample_id")["fold"]
    for sample_id in sorted({s for ids in result.picked.values() for s in ids}):
        fold, i = fold_of[sample_id], position[sample_id]
        image = cache["images"][i].astype(np.float32)
        flag = int(cache["derivatized"][i])
        predict = ensemble_predictor([loaded[name][fold].predictor(flag, device)
                                      for name in members])
        refine = [LABELS.index(label) for label, ids in result.picked.items()
                  if sample_id in ids]
        result.probs[sample_id] = 1 / (1 + np.exp(-predict(image[None])[0]))
        result.images[sample_id] = image
        result.drops[sample_id] = occlusion_drops(predict, image, band=band, coarse=coarse,
                                                  refine_labels=refine)
    result.seconds = time.perf_counter() - started
    return result


def hidden_positives(truth: pd.DataFrame) -> dict[str, set]:
    """{label: sample ids} of the truth's label rows without an ion (a positive the run
    cannot show, lib.synthetic.truth): left out of the samples drawn and of the scores."""
    rows = truth[(truth["role"] == "label") & truth["mz"].isna()]
    return {label: set(group["sample_id"]) for label, group in rows.groupby("label")}


def score_explanations(explanations: Sequence[ModelExplanation], truth: pd.DataFrame,
                       spans: dict[str, tuple[float, float]], m_bins: int, t_bins: int,
                       seed: int = 0) -> pd.DataFrame:
    """Score every explained (model, sample, label) against the truth (lib.synthetic.truth).

    spans: {sample_id: (first, last scan time in minutes)} (lib.dataset.run_span). The region
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


# ---- what 06 shows ---------------------------------------------------------------------------

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
