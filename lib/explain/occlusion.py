"""Occlusion: how much a model's logit drops when bands of the image are blanked, for any
predictor (a CNN, a feature model, one of a CSV kind, an ensemble's mean logit)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from lib.core.logits import LOGIT_CLIP
from lib.core.schema import N_LABELS
from lib.data.features import image_features
from lib.data.third_place import IONS, log_features
from lib.models.cnn import GcmsNet
from lib.models.feature_models import FeatureModel, predict_feature_logits
from lib.train.device import DeviceImages

# (B, m, t) float32 images -> (B, 9) logits
Predictor = Callable[[np.ndarray], np.ndarray]


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


def csv_feature_predictor(model: FeatureModel, csv_image: np.ndarray, reference: np.ndarray,
                          derivatized: int) -> Predictor:
    """(B, m, t) cached images -> (B, 9) logits of a feature model of a CSV kind (its features
    come from the sample's CSV image, lib.data.third_place, not from the cached one).

    csv_image: (IONS, STEPS) the sample's intensity_image; reference: (m, t) its cached image.
    An m/z row that is empty in a given image but not in the reference (occlusion emptied it)
    is emptied in the CSV image too before its features are computed, so occlusion means the
    same m/z gone for every member of an ensemble; m/z at or above the cache's m are never
    emptied."""
    lit = np.asarray(reference).any(axis=1)[:IONS]

    def predict(images: np.ndarray) -> np.ndarray:
        rows = []
        for image in np.asarray(images):
            emptied = lit & ~image.any(axis=1)[:IONS]
            occluded = csv_image.copy()
            occluded[:len(emptied)][emptied] = 0
            rows.append(log_features(occluded, bool(derivatized)))
        return predict_feature_logits(model, np.stack(rows))

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
