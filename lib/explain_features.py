"""Attribution of the feature family (lib.feature_models) on the m/z x time grid of the CNNs.

A feature model's logit is a sum of per-feature contributions: the logistic regression's
coefficient x standardised feature value, LightGBM's own per-feature contributions
(``pred_contrib``, SHAP values of the trees). lib.features computes every feature from one m/z
row of the cached image, most of them from one time band of it, so each contribution is put
back on the cells it was computed from:

- a band's maximum on the cell that holds it (the band's argmax in that row);
- a band's area on the band's cells of that row, in proportion to their intensity;
- the row's peak time on the row's argmax cell;
- a statistic of an empty row or band (all zeros) spread evenly over its cells;
- the derivatized flag has no m/z row and is left out.

The map keeps signs (a feature that speaks against the label gives negative cells); scoring
takes its positive part, as for a CAM.
"""

from __future__ import annotations

import re

import numpy as np

from lib.feature_models import FeatureModel, model_inputs, parsed_booster
from lib.schema import N_LABELS

_NAME = re.compile(r"^m(\d+)_(max|area)_b(\d+)$|^m(\d+)_(peak_time)$")


def feature_contributions(model: FeatureModel, features: np.ndarray) -> np.ndarray:
    """Per-feature contributions to each label's logit.

    features: (n, F) from lib.features.image_features with the model's settings. Returns
    (n, 9, F) float64: logistic regression: coef x (log10(feature + 1e-4) - center) / scale;
    LightGBM: pred_contrib without its bias column; a label fitted as a constant: zeros. The
    logit is the sum over F plus a per-label offset (intercept, or LightGBM's expected value).
    """
    features = np.asarray(features)
    contributions = np.zeros((len(features), N_LABELS, features.shape[1]))
    inputs = model_inputs(model, features)
    for j, entry in enumerate(model.per_label):
        if "coef" in entry:
            contributions[:, j] = inputs * np.asarray(entry["coef"])[None, :]
        elif "lightgbm" in entry:
            booster = parsed_booster(entry["lightgbm"])
            contributions[:, j] = booster.predict(inputs, pred_contrib=True)[:, :-1]
    return contributions


def contributions_to_grid(contributions: np.ndarray, names: list[str], image: np.ndarray,
                          n_bands: int) -> np.ndarray:
    """One sample's per-feature contributions put back on the cells they were computed from
    (see the module docstring).

    contributions: (F,) or (L, F) for L labels; names: (F,) lib.features names ("bands" or
    "benchmark" kind); image: (m, t) the cached image the features came from; n_bands: the
    features' number of time bands. Returns (m, t) or (L, m, t) float32; the sum over cells
    is the sum of the contributions of the m/z features (derivatized left out).
    """
    contributions = np.asarray(contributions, dtype=np.float64)
    single = contributions.ndim == 1
    contributions = np.atleast_2d(contributions)
    if contributions.shape[1] != len(names):
        raise ValueError(f"{contributions.shape[1]} contributions for {len(names)} features")
    m_bins, t_bins = image.shape
    edges = np.round(np.arange(n_bands + 1) * t_bins / n_bands).astype(int)
    grid = np.zeros((len(contributions), m_bins, t_bins))
    for f, name in enumerate(names):
        match = _NAME.match(name)
        if match is None:  # derivatized: no m/z row
            continue
        if match.group(5):  # peak time: the row's argmax
            mass, lo, hi, stat = int(match.group(4)), 0, t_bins, "max"
        else:
            mass, stat, band = int(match.group(1)), match.group(2), int(match.group(3))
            lo, hi = edges[band], edges[band + 1]
        if mass >= m_bins:
            continue
        cells = image[mass, lo:hi].astype(np.float64)
        weights = np.zeros(hi - lo)
        if cells.max() <= 0:
            weights[:] = 1 / (hi - lo)
        elif stat == "max":
            weights[np.argmax(cells)] = 1.0
        else:
            weights = cells / cells.sum()
        grid[:, mass, lo:hi] += contributions[:, f, None] * weights[None, :]
    grid = grid.astype(np.float32)
    return grid[0] if single else grid
