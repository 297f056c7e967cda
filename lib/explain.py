"""Attribution maps for finished models: which m/z rows and which moments drive each label.

Two methods, both on the (mass, time) grid of the model input (one row per integer m/z, one
column per time bin of the sample's own run):

- class activation maps from the grad-cam package (GradCAM, or HiResCAM, which is exact for the
  flatM head), computed through each of the model's TTA widths and mapped back onto the input
  grid, then averaged as the TTA averages logits. The target is the backbone's last feature
  map (the map the head pools: the last feature stage of every timm family), unless a module
  name is given;
- occlusion: each m/z row (or band of rows) set to the empty-cell value 0, batched, and the drop
  of every label's TTA logit measured. Model-agnostic, so backbones can be compared.

On synthetic data the maps are scored against the generator's truth.csv (lib.synthetic.truth):
the share of attribution on a label's true ions inside their time windows against the share a
region of the same rows and time spans, placed at random, gets; and the top-5 m/z hit rate.
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pytorch_grad_cam import GradCAM, HiResCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from lib.files import atomic_write_text
from lib.inference import load_run_model
from lib.models import GcmsNet, add_positional_channels, resize_time, tta_widths
from lib.runs import CHECKPOINT, FOLD_DIR, is_done, model_key
from lib.schema import HELIUM_MASS, LABELS, N_LABELS
from lib.training import DeviceImages

CAM_METHODS = {"gradcam": GradCAM, "hirescam": HiResCAM}
# per label in explain_scores.json, every value in [0, 1]; top5_hit_rate is occlusion's (it
# resolves single m/z rows, the CAM's coarse last feature map does not)
SCORE_KEYS = ("gradcam_share", "occlusion_share", "chance_share", "occlusion_chance_share",
              "top5_hit_rate", "gradcam_top5_hit_rate")

SCORES_FILE = "explain_scores.json"  # beside the ensemble's submission.csv
METHODS = ("gradcam", "occlusion")


def check_settings(n_samples: int, methods: Sequence[str], cam_method: str) -> None:
    """ValueError naming the setting (06's parameter of that name) when it cannot be used:
    n_samples, the positive OOF samples per label and model, below 1; methods empty or not
    among METHODS; cam_method not a key of CAM_METHODS."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
            or n_samples < 1:
        raise ValueError(f"n_samples (positive out-of-fold samples per label and model) must be "
                         f"an integer of at least 1, got {n_samples!r}")
    if not methods or not set(methods) <= set(METHODS):
        raise ValueError(f"methods must be one or more of {list(METHODS)}, got {list(methods)}")
    if cam_method not in CAM_METHODS:
        raise ValueError(f"cam_method must be one of {sorted(CAM_METHODS)}, got {cam_method!r}")


def save_scores(output_dir: str | Path, scores: dict[str, dict[str, float]], why_none: str
                ) -> str:
    """Write ``scores`` (summarize_scores) to output_dir/SCORES_FILE atomically; with no
    scores, remove the file an earlier execution left there, so that it cannot pass for this
    one's. why_none: why there are no scores (said in the returned line). Returns one line
    saying what was done."""
    path = Path(output_dir) / SCORES_FILE
    if scores:
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

    tapped: run the backbone as timm's forward_features + forward_head (or the features_only
    list) and pass the last feature map through ``tap``, an identity the CAM hooks; otherwise
    the model's own forward_width (for a target layer named by the user). Tapped, the backbone
    runs without autograd: a CAM needs the gradient of the logit with respect to the feature
    map only, so the backward pass goes through the head alone.
    """

    def __init__(self, net: GcmsNet, width: int, tapped: bool):
        super().__init__()
        self.net = net
        self.width = width
        self.tapped = tapped
        self.tap = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.tapped:
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
                                       f"name a target layer")
        if not (isinstance(features, torch.Tensor) and features.ndim == 4):
            raise TargetLayerError(f"{type(net.backbone).__name__}'s last features are not a "
                                   f"(B, C, h, w) map; name a target layer")
        features = self.tap(features.requires_grad_())
        out = features if net.features_only else net.backbone.forward_head(features)
        return net.head(out.float())


def find_target_layer(model: GcmsNet, target_layer: str | None = None) -> str:
    """The CAM target's name: "" for the default (the backbone's last feature map), else
    ``target_layer`` checked: a module of the model (e.g. "backbone.layer4") whose output is
    a (B, C, h, w) tensor. TargetLayerError names the backbone and close module names."""
    if not target_layer:
        return ""
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
            wrapper = _AtWidth(model, width, tapped=not name)
            layer = wrapper.tap if not name else model.get_submodule(name)
            cam = CAM_METHODS[method](model=wrapper, target_layers=[layer])
            try:  # not `with`: the package's __exit__ would swallow an IndexError
                maps.append(cam(input_tensor=x, targets=[ClassifierOutputTarget(label)] * len(x)))
            finally:
                cam.activations_and_grads.release()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return np.nan_to_num(np.mean(maps, axis=0), nan=0.0).astype(np.float32)


# ---- occlusion ------------------------------------------------------------------------------

@torch.no_grad()
def _occlude(model: nn.Module, x: torch.Tensor, bands: list[tuple[int, int]],
             batch_size: int) -> torch.Tensor:
    """TTA logits (n_bands, 9) of copies of x (2, m, t), each with rows [lo, hi) set to 0."""
    out = []
    for first in range(0, len(bands), batch_size):
        chunk = bands[first:first + batch_size]
        batch = x.expand(len(chunk), *x.shape).clone()
        for i, (lo, hi) in enumerate(chunk):
            batch[i, :, lo:hi] = 0
        out.append(model(batch).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, N_LABELS)


@torch.no_grad()
def occlusion_drops(model: nn.Module, x: torch.Tensor, *, band: int = 1, coarse: int = 0,
                    refine_labels: Sequence[int] = (), keep: int = 3,
                    batch_size: int = 64) -> np.ndarray:
    """Drop of every label's logit when m/z rows are emptied (set to 0, the empty-cell value
    of the model input), batched, through the model's TTA (eval mode).

    x: (2, m, t) one model input. Returns (m, 9) float32, positive where rows support a label:
    logit(x) - logit(x with the row's band emptied), the same for every row of a band of
    ``band`` rows. Bands that are already empty are skipped (drop 0).
    coarse > band: two passes to save time. First bands of ``coarse`` rows; then, for each
    label index in refine_labels, the ``keep`` coarse bands with the largest drop are occluded
    again band by band. Rows never refined get their coarse band's drop divided by its number
    of rows (a band's total stays its drop); refined rows get their own.
    """
    if band < 1:
        raise ValueError(f"band must be at least 1 row, got {band}")
    was_training = model.training
    model.eval()
    m_rows = x.shape[-2]
    base = model(x[None])[0].float().cpu()

    def bands_of(size: int, rows) -> list[tuple[int, int]]:
        return [(lo, min(lo + size, m_rows)) for lo in rows if bool(x[:, lo:lo + size].any())]

    drops = torch.zeros(m_rows, base.shape[-1])
    if coarse > band and refine_labels:
        first = bands_of(coarse, range(0, m_rows, coarse))
        for (lo, hi), logits in zip(first, _occlude(model, x, first, batch_size)):
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
    for (lo, hi), logits in zip(fine, _occlude(model, x, fine, batch_size)):
        drops[lo:hi] = base - logits
    model.train(was_training)
    return drops.numpy()


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
    (m/z >= m_bins, helium) are left out. run_start, run_end: the sample's first and last scan.
    """
    mask = np.zeros((m_bins, t_bins), dtype=bool)
    keep = (rows["mz"] < m_bins) & (rows["mz"] != HELIUM_MASS) & (rows["mz"] >= 0)
    rows = rows[keep]
    starts = time_bin(rows["t_start_min"], run_start, run_end, t_bins)
    ends = time_bin(rows["t_end_min"], run_start, run_end, t_bins)
    for mz, lo, hi in zip(rows["mz"].to_numpy(), starts, ends):
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


def score_sample(cam: np.ndarray | None, drops: np.ndarray | None, region: np.ndarray,
                 rng: np.random.Generator) -> dict[str, float]:
    """Scores of one sample for one label.

    cam: (m, t) map of the label or None (or zero everywhere: no CAM scores); drops: (m,)
    occlusion drops of the label or None;
    region: (m, t) bool truth region of the label (see truth_region). Returns the SCORE_KEYS
    that apply (without "samples"): shares in [0, 1] or NaN.
    """
    true_rows = np.flatnonzero(region.any(axis=1))
    scores = {}
    if cam is not None and cam.max() > 0:  # a CAM zero everywhere attributes nothing
        scores["gradcam_share"] = region_share(cam, region)
        scores["chance_share"] = chance_share(cam, region, rng)
        scores["gradcam_top5_hit_rate"] = top_hit_rate(cam.sum(axis=1), true_rows)
    if drops is not None:
        positive = np.clip(drops, 0, None)
        scores["occlusion_share"] = (float(positive[true_rows].sum() / positive.sum())
                                     if positive.sum() > 0 else float("nan"))
        # a random set of as many rows (helium's left out) holds this share on average
        scores["occlusion_chance_share"] = true_rows.size / (region.shape[0] - 1)
        scores["top5_hit_rate"] = top_hit_rate(drops, true_rows)
    return scores


def summarize_scores(per_sample: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Mean of each score per label over the scored samples (NaN-aware).

    per_sample: one row per (model, sample, label) with a ``label`` column and score columns.
    Returns {label: {score: mean in [0, 1]}} for the labels present, in LABELS order; a score
    with no finite value is left out.
    """
    summary = {}
    for label in LABELS:
        rows = per_sample[per_sample["label"] == label]
        entry = {key: float(np.clip(rows[key].mean(), 0.0, 1.0)) for key in SCORE_KEYS
                 if key in rows and rows[key].notna().any()}
        if entry:
            summary[label] = entry
    return summary


# ---- explaining one model ------------------------------------------------------------------

def group_runs(run_dirs: Sequence[str | Path]) -> dict[str, dict[int, Path]]:
    """{model key (lib.runs.model_key): {fold: run folder}} in key order; folders not named
    fold<k>_seed<s> are left out."""
    grouped: dict[str, dict[int, Path]] = {}
    for run_dir in map(Path, run_dirs):
        match = FOLD_DIR.search(run_dir.name)
        if match:
            grouped.setdefault(model_key(run_dir), {})[int(match.group(1))] = run_dir
    return dict(sorted(grouped.items()))


def pick_samples(oof_labels: pd.DataFrame, n_per_label: int, seed: int = 0
                 ) -> dict[str, list[str]]:
    """Up to n_per_label positive samples per label, drawn at random (seeded).

    oof_labels: label columns (0/1) indexed by sample_id, for the samples a model did not train
    on. Returns {label: sorted [sample_id, ...]} per column, in column order; a label with no
    positive sample gets an empty list.
    """
    rng = np.random.default_rng(seed)
    picked = {}
    for label in oof_labels.columns:
        positives = oof_labels.index[oof_labels[label] == 1].to_numpy()
        n = min(n_per_label, positives.size)
        picked[label] = sorted(rng.choice(positives, size=n, replace=False).tolist()) if n else []
    return picked


def check_run_dir(run_dir: Path) -> None:
    """FileNotFoundError naming the run when it cannot be explained (no DONE or checkpoint)."""
    if not is_done(run_dir):
        raise FileNotFoundError(f"{run_dir}: not a finished run (no DONE file), not explained")
    if not (Path(run_dir) / CHECKPOINT).is_file():
        raise FileNotFoundError(f"{run_dir}: no {CHECKPOINT}, not explained")


@dataclass
class ModelExplanation:
    """What explain_model found for one model (the folds of one name/backbone/seed).

    picked: {label: [sample_id, ...]} the positive OOF samples explained per label;
    cams: {label: {sample_id: (m, t) float32 map}}; drops: {sample_id: (m, 9) float32
    occlusion drops}; probs: {sample_id: (9,) probabilities of the fold model that did not
    train on it}; inputs: {sample_id: (m, t) float32 model input (its non-empty channel)};
    problems: one line per run, label or method left out, and why; seconds: wall time.
    """

    name: str
    picked: dict[str, list[str]] = field(default_factory=dict)
    cams: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    drops: dict[str, np.ndarray] = field(default_factory=dict)
    probs: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def explain_model(name: str, fold_runs: dict[int, Path], cache: dict[str, np.ndarray],
                  train_labels: pd.DataFrame, folds: pd.DataFrame, *,
                  labels: Sequence[str] = LABELS, n_per_label: int = 4,
                  methods: Sequence[str] = ("gradcam", "occlusion"), cam_method: str = "gradcam",
                  target_layer: str | None = None, band: int = 1, coarse: int = 8,
                  device: str | torch.device = "cpu", seed: int = 0) -> ModelExplanation:
    """CAMs and occlusion drops of one model for positive OOF samples of each label.

    fold_runs: {fold: run folder} of the model; cache: an image cache (lib.images:
    sample_ids, derivatized, images (N, m, t)) of the runs' image size; train_labels: the 9
    label columns indexed by sample_id; folds: sample_id, fold. Each sample is explained by the
    fold model that did not train on it; up to n_per_label samples per label (pick_samples).
    methods: "gradcam" (the CAM_METHODS entry cam_method) and/or "occlusion" (bands of
    ``band`` rows; with coarse > band, a first pass over bands of ``coarse`` rows and the
    best bands of the labels a sample was picked for refined, see occlusion_drops). A run
    that cannot be loaded, a target layer that cannot be found and a label without a positive
    OOF sample are named in ``problems``; the rest goes on. ValueError for settings that
    cannot be used (check_settings).
    """
    check_settings(n_per_label, methods, cam_method)
    started = time.perf_counter()
    device = torch.device(device)
    result = ModelExplanation(name)
    usable = {}
    for fold, run_dir in sorted(fold_runs.items()):
        try:
            check_run_dir(run_dir)
            usable[fold] = Path(run_dir)
        except FileNotFoundError as error:
            result.problems.append(str(error))
    oof_ids = folds.loc[folds["fold"].isin(usable), "sample_id"]
    oof_ids = [s for s in oof_ids if s in train_labels.index]
    result.picked = pick_samples(train_labels.loc[oof_ids, list(labels)], n_per_label, seed)
    for label, ids in result.picked.items():
        if not ids:
            result.problems.append(f"{name}: {label}: no positive OOF sample among the "
                                   f"model's finished folds, not explained")
    position = {sample_id: i for i, sample_id in enumerate(cache["sample_ids"])}
    data = DeviceImages(cache["images"], cache["derivatized"], device)
    fold_of = folds.set_index("sample_id")["fold"]
    use_cam = "gradcam" in methods
    for fold, run_dir in usable.items():
        wanted = {label: [s for s in ids if fold_of[s] == fold]
                  for label, ids in result.picked.items()}
        ids = sorted({s for chosen in wanted.values() for s in chosen})
        if not ids:
            continue
        try:
            model, config = load_run_model(run_dir, device)
        except (OSError, RuntimeError, KeyError) as error:
            result.problems.append(f"{run_dir}: cannot load the model ({error}), not explained")
            continue
        if (config["m_bins"], config["t_bins"]) != tuple(cache["images"].shape[1:]):
            result.problems.append(f"{run_dir}: trained on {config['m_bins']}x"
                                   f"{config['t_bins']} images, the cache holds "
                                   f"{cache['images'].shape[1:]}; not explained")
            continue
        index = torch.as_tensor([position[s] for s in ids])
        x = data.model_input(index, config["norm"], config["transform"])
        with torch.no_grad():
            probs = torch.sigmoid(model.eval()(x)).cpu().numpy()
        for i, sample_id in enumerate(ids):
            result.probs[sample_id] = probs[i]
            result.inputs[sample_id] = x[i].amax(dim=0).cpu().numpy()
        if use_cam:
            for label, chosen in wanted.items():
                if not chosen:
                    continue
                rows = torch.as_tensor([ids.index(s) for s in chosen])
                try:
                    maps = cam_maps(model, x[rows], LABELS.index(label), method=cam_method,
                                    target_layer=target_layer)
                except TargetLayerError as error:
                    result.problems.append(f"{run_dir}: {error}; no CAMs for this run")
                    break
                result.cams.setdefault(label, {}).update(zip(chosen, maps))
        if "occlusion" in methods:
            for i, sample_id in enumerate(ids):
                refine = [LABELS.index(label) for label, chosen in wanted.items()
                          if sample_id in chosen]
                result.drops[sample_id] = occlusion_drops(model, x[i], band=band, coarse=coarse,
                                                          refine_labels=refine)
    result.seconds = time.perf_counter() - started
    return result


def score_explanations(explanations: Sequence[ModelExplanation], truth: pd.DataFrame,
                       spans: dict[str, tuple[float, float]], m_bins: int, t_bins: int,
                       seed: int = 0) -> pd.DataFrame:
    """Score every explained (model, sample, label) against the truth (lib.synthetic.truth).

    spans: {sample_id: (first, last scan time in minutes)} (lib.dataset.run_span). The region
    of a label is its true ions inside their windows (truth_region, role "label"); a sample
    whose label shows no ion inside the image is not scored. Returns one row per scored
    (model, sample_id, label) with the score columns of score_sample.
    """
    rng = np.random.default_rng(seed)
    label_rows = truth[truth["role"] == "label"]
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
                cam = explanation.cams.get(label, {}).get(sample_id)
                drops = explanation.drops.get(sample_id)
                scores = score_sample(cam, None if drops is None else drops[:, j], region, rng)
                rows.append({"model": explanation.name, "sample_id": sample_id, "label": label,
                             "true_rows": int(region.any(axis=1).sum()), **scores})
    return pd.DataFrame(rows)
