"""Attribution of the feature family (lib.models.feature_models) on the m/z x time grid of the CNNs.

A feature model's logit is a sum of per-feature contributions: the logistic regression's
coefficient x standardised feature value, LightGBM's own per-feature contributions
(``pred_contrib``, SHAP values of the trees), the MLP's integrated gradients (the gradient of
its mean logit along the straight path from its input 0 (the training mean of standardised
features; all-zero features for a network that takes them as they are) to the sample's input,
x that input; they add up to the logit minus the logit at input 0). lib.data.features computes
every feature from one m/z row of the cached image, most of them from one time band of it,
so each contribution is put back on the cells it was computed from:

- a band's maximum on the cell that holds it (the band's argmax in that row); likewise a
  row's maximum (mass_stats ``log_max``);
- a band's area on the band's cells of that row, in proportion to their intensity; likewise a
  row's mean, standard deviation and skewness (mass_stats) over the whole row;
- the row's peak time on the row's argmax cell;
- a band of the total-ion profile (mass_stats ``tic_b<k>``, the image summed over masses) has
  no m/z row of its own: it is spread over the band's cells of every row, in proportion to
  their intensity (the masses that made the profile); likewise a time column's mean and
  standard deviation over masses (ion_time_stats ``t<col>_mean``, ``t<col>_std``) over that
  column's cells;
- ion_time_stats' row statistics like mass_stats': ``m<mass>_max`` on the row's argmax cell,
  ``m<mass>_mean`` and ``m<mass>_std`` over the row by intensity;
- the statistics of a CSV kind (ion_time_csv: the same names, from the sample's 600 x 500
  CSV image) likewise, its step s of 500 on column s * t // 500. A step is a fraction of
  each ion's readings, a column one of the run's time, so the columns match where the ions
  are read evenly over the run (the usual scan); m/z beyond the cached image's rows, and
  helium (m/z 4, which the cached image leaves out), are left out;
- a statistic of an empty row or band (all zeros) spread evenly over its cells;
- the derivatized flag has no m/z row and is left out.

The map keeps signs (a feature that speaks against the label gives negative cells); scoring
takes its positive part, as for a CAM.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from lib.core.schema import HELIUM_MASS, N_LABELS
from lib.models.feature_models import FeatureModel, mlp_networks, model_inputs, parsed_booster

_NAME = re.compile(r"^m(\d+)_(max|area)_b(\d+)$|^m(\d+)_(peak_time)$")
_ROW_STAT = re.compile(r"^m(\d+)_(log_mean|log_std|skew|log_max)$")  # mass_stats
_TIC = re.compile(r"^tic_b(\d+)$")  # mass_stats: a band of the total-ion profile
_ION = re.compile(r"^m(\d+)_(mean|max|std)$")  # ion_time_stats: a row's statistic
_COLUMN = re.compile(r"^t(\d+)_(mean|std)$")  # ion_time_stats: a time column's statistic
IG_STEPS = 32  # integrated gradients of an MLP: midpoints of this many steps along the path


def feature_contributions(model: FeatureModel, features: np.ndarray) -> np.ndarray:
    """Per-feature contributions to each label's logit.

    features: (n, F) from lib.data.features.image_features with the model's settings. Returns
    (n, 9, F) float64: logistic regression: coef x (log10(feature + 1e-4) - center) / scale;
    LightGBM: pred_contrib without its bias column; MLP: integrated_gradients; a label fitted
    as a constant: zeros. The logit is the sum over F plus a per-label offset (intercept,
    LightGBM's expected value, or the MLP's logit at input 0; for the MLP up to the
    error of IG_STEPS steps).
    """
    features = np.asarray(features)
    inputs = model_inputs(model, features)
    if model.learner == "mlp":
        return integrated_gradients(model, inputs)
    contributions = np.zeros((len(features), N_LABELS, features.shape[1]))
    for j, entry in enumerate(model.per_label):
        if "coef" in entry:
            contributions[:, j] = inputs * np.asarray(entry["coef"])[None, :]
        elif "lightgbm" in entry:
            booster = parsed_booster(entry["lightgbm"])
            contributions[:, j] = booster.predict(inputs, pred_contrib=True)[:, :-1]
    return contributions


def integrated_gradients(model: FeatureModel, inputs: np.ndarray,
                         steps: int = IG_STEPS) -> np.ndarray:
    """Integrated gradients of an MLP FeatureModel's mean logit, from the baseline input 0
    (the training mean of standardised inputs; all-zero features when not standardised).

    inputs: (n, F) standardised (model_inputs). Returns (n, 9, F) float64: per label, the mean
    gradient at the midpoints (k + 0.5) / steps of the path, times the input."""
    networks = mlp_networks(model)
    x = torch.from_numpy(np.asarray(inputs, dtype=np.float32))
    fractions = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps
    path = (fractions[:, None, None] * x[None]).reshape(-1, x.shape[1])  # (steps * n, F)
    gradients = np.zeros((len(x), N_LABELS, x.shape[1]))
    for j in range(N_LABELS):
        point = path.clone().requires_grad_(True)
        logit = torch.stack([net(point)[:, j] for net in networks]).mean(dim=0)
        (grad,) = torch.autograd.grad(logit.sum(), point)
        gradients[:, j] = grad.reshape(steps, len(x), -1).mean(dim=0).double().numpy()
    return gradients * np.asarray(inputs, dtype=np.float64)[:, None, :]


def contribution_method(learner: str) -> str:
    """How feature_contributions attributes a ``learner``'s logit, in words (for reports)."""
    return {"logistic": "coefficient x standardised feature value",
            "lightgbm": "LightGBM pred_contrib",
            "mlp": f"integrated gradients ({IG_STEPS} steps from input 0)"}[learner]


def contributions_to_grid(contributions: np.ndarray, names: list[str], image: np.ndarray,
                          n_bands: int, steps: int | None = None) -> np.ndarray:
    """One sample's per-feature contributions put back on the cells they were computed from
    (see the module docstring).

    contributions: (F,) or (L, F) for L labels; names: (F,) lib.data.features names (any kind);
    image: (m, t) the cached image the features came from; n_bands: the features' number of
    time bands; steps: for features of a CSV kind (lib.data.third_place), their number of time
    steps: step s of ``t<s>_...`` goes on column s * t // steps, and row statistics of m/z at
    or above m and of helium (HELIUM_MASS, not in the cached image) are left out. Returns
    (m, t) or (L, m, t) float32; the sum over cells is the sum of the contributions of the m/z
    and total-ion features on the grid (derivatized left out).
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
        tic, column = _TIC.match(name), _COLUMN.match(name)
        if tic or column:  # every row's cells of the band or column, by intensity
            lo = edges[int(tic.group(1))] if tic else int(column.group(1))
            if column and steps:
                lo = lo * t_bins // steps
            hi = edges[int(tic.group(1)) + 1] if tic else lo + 1
            cells = image[:, lo:hi].astype(np.float64)
            total = cells.sum()
            weights = cells / total if total > 0 else np.full(cells.shape, 1 / cells.size)
            grid[:, :, lo:hi] += contributions[:, f, None, None] * weights[None]
            continue
        row_stat = _ROW_STAT.match(name) or _ION.match(name)
        match = _NAME.match(name)
        if row_stat:  # the whole row: its maximum on the argmax cell, the rest by intensity
            mass, lo, hi = int(row_stat.group(1)), 0, t_bins
            stat = "max" if row_stat.group(2) in ("log_max", "max") else "area"
        elif match is None:  # derivatized: no m/z row
            continue
        elif match.group(5):  # peak time: the row's argmax
            mass, lo, hi, stat = int(match.group(4)), 0, t_bins, "max"
        else:
            mass, stat, band = int(match.group(1)), match.group(2), int(match.group(3))
            lo, hi = edges[band], edges[band + 1]
        if mass >= m_bins or (steps and mass == HELIUM_MASS):
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
