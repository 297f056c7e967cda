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

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lib.core.schema import LABELS
from lib.data.dataset import read_sample
from lib.data.features import CSV_KINDS, image_features
from lib.data.images import cache_rows
from lib.data.third_place import STEPS, feature_names, intensity_image, log_features
from lib.explain.cam import CAM_METHODS, TargetLayerError, cam_maps, default_cam
from lib.explain.features import contribution_method, contributions_to_grid, feature_contributions
from lib.explain.occlusion import (
    Predictor,
    cnn_predictor,
    csv_feature_predictor,
    ensemble_predictor,
    feature_predictor,
    occlusion_drops,
)
from lib.explain.result import ModelExplanation
from lib.models.cnn import GcmsNet
from lib.models.feature_models import FeatureModel
from lib.models.feature_settings import LEARNERS
from lib.models.model_file import ModelFileError
from lib.runs.run_folder import (
    CHECKPOINT,
    FEATURE_MODEL,
    FOLD_DIR,
    METRICS,
    is_done,
    model_key,
    read_metrics,
)
from lib.train.checkpoint import ModelMismatchError
from lib.train.device import DeviceImages
from lib.train.predict import load_run_feature_model, load_run_model

METHODS = ("map", "occlusion")


FAMILIES = {"cnn": CHECKPOINT, "feature": FEATURE_MODEL}  # family -> the file it needs


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
    metrics.json records (a feature learner: lib.core.families.LEARNERS). FileNotFoundError
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
class _FoldModel:
    """One fold's loaded model: a CNN (net, config) or a feature model."""

    family: str
    config: dict
    net: GcmsNet | None = None
    feature_model: FeatureModel | None = None

    @property
    def from_csv(self) -> bool:
        """A feature model whose features come from the sample CSVs (CSV_KINDS)."""
        return self.family == "feature" and self.config.get("features") in CSV_KINDS

    def predictor(self, derivatized: int, device: torch.device, image: np.ndarray,
                  csv_image: np.ndarray | None) -> Predictor:
        """The predictor of one sample: its cached ``image`` (m, t) and, for a model of a CSV
        kind, its CSV image (lib.data.third_place.intensity_image)."""
        if self.family == "cnn":
            return cnn_predictor(self.net, self.config, derivatized, device)
        if self.from_csv:
            return csv_feature_predictor(self.feature_model, csv_image, image, derivatized)
        return feature_predictor(self.feature_model, derivatized)


class CsvImages:
    """The samples' CSV images (lib.data.third_place.intensity_image, (IONS, STEPS) float64,
    2.4 MB each): the inputs of feature models of a CSV kind. paths: {sample_id: CSV file};
    keep: hold each image once read (for a sample used again), else read it at every call."""

    def __init__(self, paths: dict[str, str | Path] | None = None, keep: bool = True):
        self.paths = dict(paths or {})
        self.keep = keep
        self._images: dict[str, np.ndarray] = {}

    def __call__(self, sample_id: str) -> np.ndarray:
        if sample_id in self._images:
            return self._images[sample_id]
        image = intensity_image(read_sample(self.paths[sample_id])[0])
        if self.keep:
            self._images[sample_id] = image
        return image


def _load_fold(run_dir: Path, image_size: tuple[int, int], device: torch.device,
               csv_images: CsvImages) -> _FoldModel:
    """The fold's model; FileNotFoundError / ValueError naming the run and the problem."""
    family = run_family(run_dir)
    try:
        if family == "cnn":
            net, config = load_run_model(run_dir, device)
            fold_model = _FoldModel(family, config, net=net)
        else:
            feature_model = load_run_feature_model(run_dir)
            fold_model = _FoldModel(family, feature_model.config, feature_model=feature_model)
    except (OSError, RuntimeError, KeyError, ModelFileError, ModelMismatchError) as error:
        raise ValueError(f"{run_dir}: cannot load the model ({error}), not explained") from None
    if fold_model.from_csv:
        if not csv_images.paths:
            raise ValueError(f"{run_dir}: its {fold_model.config['features']} features come "
                             f"from the sample CSVs, and no CSV paths were given; not explained")
        return fold_model  # any image size: occlusion empties its m/z rows in the CSV image
    size = (fold_model.config["m_bins"], fold_model.config["t_bins"])
    if size != tuple(image_size):
        raise ValueError(f"{run_dir}: trained on {size[0]}x{size[1]} images, the cache holds "
                         f"{image_size[0]}x{image_size[1]}; not explained")
    return fold_model


def _usable_folds(name: str, fold_runs: dict[int, Path], image_size: tuple[int, int],
                  device: torch.device, problems: list[str],
                  csv_images: CsvImages) -> dict[int, _FoldModel]:
    """{fold: loaded model} of the folds that load; the others named in problems."""
    usable = {}
    if not fold_runs:
        problems.append(f"{name}: no run folder, not explained")
    for fold, run_dir in sorted(fold_runs.items()):
        try:
            usable[fold] = _load_fold(Path(run_dir), image_size, device, csv_images)
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
                  device: str | torch.device = "cpu", seed: int = 0,
                  paths: dict[str, str | Path] | None = None) -> ModelExplanation:
    """Maps and occlusion drops of one model (a CNN or a feature model) for positive OOF
    samples of each label.

    fold_runs: {fold: run folder} of the model; cache: an image cache (lib.data.images:
    sample_ids, derivatized, images (N, m, t)) of the runs' image size; train_labels: the 9
    label columns indexed by sample_id; folds: sample_id, fold. Each sample is explained by the
    fold model that did not train on it; up to n_per_label samples per label (pick_samples,
    ``hidden`` left out). methods: "map" (a CNN's CAM: cam_method at target_layer, by default
    the backbone's default_cam; a feature model's contributions) and/or "occlusion" (bands of
    ``band`` rows; with coarse > band, a first pass over bands of ``coarse`` rows and the best
    bands of the labels a sample was picked for refined, see occlusion_drops). A run that
    cannot be loaded, a target layer that cannot be found and a label without a positive OOF
    sample are named in ``problems``; the rest goes on. ValueError for settings that cannot
    be used (check_settings). paths: {sample_id: CSV file}, read by feature models of a CSV
    kind (without them such a model is named in ``problems``): their maps are put on the
    cached image's grid, and occlusion empties the same m/z rows in their CSV image.
    """
    check_settings(n_per_label, methods, cam_method)
    started = time.perf_counter()
    device = torch.device(device)
    result = ModelExplanation(name)
    image_size = tuple(cache["images"].shape[1:])
    csv_images = CsvImages(paths)
    usable = _usable_folds(name, fold_runs, image_size, device, result.problems, csv_images)
    result.picked = _pick(name, usable, train_labels, folds, labels, n_per_label, seed, hidden,
                          result.problems)
    fold_of = folds.set_index("sample_id")["fold"]
    for fold, fold_model in usable.items():
        result.family = fold_model.family
        wanted = {label: [s for s in ids if fold_of[s] == fold]
                  for label, ids in result.picked.items()}
        ids = sorted({s for chosen in wanted.values() for s in chosen})
        if not ids:
            continue
        rows = cache_rows(cache, ids)
        images, flags = cache["images"][rows].astype(np.float32), cache["derivatized"][rows]
        predictors = [fold_model.predictor(int(flag), device, image,
                                           csv_images(s) if fold_model.from_csv else None)
                      for s, image, flag in zip(ids, images, flags)]
        logits = np.stack([predict(image[None])[0] for predict, image in zip(predictors, images)])
        for i, sample_id in enumerate(ids):
            result.probs[sample_id] = 1 / (1 + np.exp(-np.clip(logits[i], -30, 30)))
            result.images[sample_id] = images[i]
        if "map" in methods:
            problem = _add_maps(result, fold_model, wanted, ids, images, flags, cam_method,
                                target_layer, device, csv_images)
            if problem:
                result.problems.append(f"{fold_runs[fold]}: {problem}")
        if "occlusion" in methods:
            for i, sample_id in enumerate(ids):
                refine = [LABELS.index(label) for label, chosen in wanted.items()
                          if sample_id in chosen]
                result.drops[sample_id] = occlusion_drops(predictors[i], images[i], band=band,
                                                          coarse=coarse, refine_labels=refine)
    result.seconds = time.perf_counter() - started
    return result


def _add_maps(result: ModelExplanation, fold_model: _FoldModel, wanted: dict[str, list[str]],
              ids: list[str], images: np.ndarray, flags: np.ndarray, cam_method: str,
              target_layer: str | None, device: torch.device,
              csv_images: CsvImages) -> str | None:
    """Put one fold's maps of its wanted samples into result.maps; a problem line or None."""
    if fold_model.family == "feature":
        config = fold_model.config
        steps = STEPS if fold_model.from_csv else None
        if fold_model.from_csv:
            features = np.stack([log_features(csv_images(s), bool(flag))
                                 for s, flag in zip(ids, flags)])
            names = feature_names()
        else:
            features, names = image_features(images, flags, kind=config["features"],
                                             n_bands=config["n_bands"])
        contributions = feature_contributions(fold_model.feature_model, features)
        result.map_method = contribution_method(fold_model.feature_model.learner)
        for label, chosen in wanted.items():
            j = LABELS.index(label)
            for sample_id in chosen:
                i = ids.index(sample_id)
                result.maps.setdefault(label, {})[sample_id] = contributions_to_grid(
                    contributions[i, j], names, images[i], config["n_bands"], steps)
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
                     device: str | torch.device = "cpu", seed: int = 0,
                     paths: dict[str, str | Path] | None = None) -> ModelExplanation:
    """Occlusion of the ensemble's mean logit (ensemble_predictor) on positive OOF samples.

    members: {model key: {fold: run folder}} of the ensemble's models (its selection); the
    other arguments as explain_model's. Each sample is predicted, emptied row by row, by every
    member's fold model that did not train on it (a CNN through its model input and TTA, a
    feature model through its features, one of a CSV kind through its CSV image with the same
    m/z emptied: ``paths`` as explain_model's). A fold that a member cannot provide leaves that
    fold's samples out (named in ``problems``): the ensemble without a member is another
    predictor. Returns a ModelExplanation named "ensemble" (family "ensemble", no maps).
    """
    check_settings(n_per_label, ["occlusion"])
    started = time.perf_counter()
    device = torch.device(device)
    result = ModelExplanation("ensemble", family="ensemble", map_method="occlusion")
    image_size = tuple(cache["images"].shape[1:])
    csv_images = CsvImages(paths, keep=False)  # each sample is occluded once
    loaded = {name: _usable_folds(name, fold_runs, image_size, device, result.problems,
                                  csv_images) for name, fold_runs in members.items()}
    complete = set.intersection(*(set(folds_) for folds_ in loaded.values())) if loaded else set()
    if members and not complete:
        result.problems.append("ensemble: no fold that every member can predict, not explained")
    result.picked = _pick("ensemble", sorted(complete), train_labels, folds, labels,
                          n_per_label, seed, hidden, result.problems)
    fold_of = folds.set_index("sample_id")["fold"]
    picked = sorted({s for ids in result.picked.values() for s in ids})
    for sample_id, i in zip(picked, cache_rows(cache, picked)):
        fold = fold_of[sample_id]
        image = cache["images"][i].astype(np.float32)
        flag = int(cache["derivatized"][i])
        fold_models = [loaded[name][fold] for name in members]
        predict = ensemble_predictor([
            model.predictor(flag, device, image, csv_images(sample_id) if model.from_csv
                            else None) for model in fold_models])
        refine = [LABELS.index(label) for label, ids in result.picked.items()
                  if sample_id in ids]
        result.probs[sample_id] = 1 / (1 + np.exp(-predict(image[None])[0]))
        result.images[sample_id] = image
        result.drops[sample_id] = occlusion_drops(predict, image, band=band, coarse=coarse,
                                                  refine_labels=refine)
    result.seconds = time.perf_counter() - started
    return result
