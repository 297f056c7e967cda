"""Synthetic stand-in for the competition data: folders laid out exactly like the real one.

The real GC-MS runs cannot be redistributed, so this module writes folders with the same files,
columns, value formats and label statistics, whose runs follow textbook electron-ionisation
chemistry: sharp GC peaks with characteristic fragment ions for organic families, broad
evolved-gas releases for minerals, helium carrier gas, air background, column bleed, detector
saturation and an unknown temperature ramp. Samples are replicate runs of a smaller set of
physical materials (same labels, compounds and method; different ramp stretch, heights, noise).
Signal strength, weak positives, replicates and look-alike contaminants are calibrated
(``scripts/calibrate_synthetic.py``) so that the organisers' logistic-regression benchmark
scores on the ``small`` profile about as it did on the real data.

Usage: ``python -m lib.synthetic OUT_DIR --profile small --seed 0 [--limit N]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd

from lib.schema import HELIUM_MASS, LABELS, METADATA_COLUMNS, SAMPLE_COLUMNS, SPLITS


@dataclass(frozen=True)
class Profile:
    """Size of a synthetic folder.

    n_train, n_val, n_test: samples per split.
    scan_interval_min: minutes between mass sweeps (real data: ~0.02).
    max_mass: last integer m/z of every sweep (real data: ~535).
    min_peak_sigma_scans: GC peaks are widened to at least this many scan intervals (Gaussian
        sigma) so that coarse profiles still sample every peak instead of stepping over it.
    min_scans: short runs scan faster so that every run has at least this many scans; on a
        coarse profile this keeps short runs from leaving empty time bins in the 192-bin
        images (real runs have 4+ scans per bin). 0: the same interval for every run.
    """

    n_train: int
    n_val: int
    n_test: int
    scan_interval_min: float
    max_mass: int
    min_peak_sigma_scans: float = 0.7
    min_scans: int = 0

    @property
    def split_sizes(self) -> dict[str, int]:
        """Samples per split, in SPLITS order."""
        return dict(zip(SPLITS, (self.n_train, self.n_val, self.n_test), strict=True))


PROFILES: dict[str, Profile] = {
    # unit tests: a few thousand rows per run, the whole folder in about a second
    "tiny": Profile(n_train=24, n_val=6, n_test=6, scan_interval_min=0.5, max_mass=90),
    # CPU demo: coarse scans (at least 240 per run) and masses to 300: about 650 MB
    "small": Profile(n_train=240, n_val=80, n_test=80, scan_interval_min=0.2, max_mass=300,
                     min_scans=240),
    # real counts, scan rate and mass range: 175k-1M rows per run
    "full": Profile(n_train=809, n_val=312, n_test=463, scan_interval_min=0.02, max_mass=535),
}

# Fraction of derivatized samples per split, from the public metadata.
DERIVATIZED_FRACTION: dict[str, float] = {"train": 0.315, "val": 0.458, "test": 0.352}

# Label combinations of the real train split (patterns in LABELS order) with how many samples
# show each one when not derivatized / derivatized. The combination totals are the real ones;
# the split by derivatization was fitted by hand to the published conditional prevalences
# (those imply 10 fewer derivatized samples than the published 255, so they match to ~0.015).
_COMBINATIONS: tuple[tuple[str, int, int], ...] = (
    ("000000000", 201, 102),
    ("010000000", 238, 3),
    ("000000001", 63, 18),
    ("001100000", 0, 27),
    ("001000000", 15, 9),
    ("101100000", 0, 17),
    ("000100000", 3, 12),
    ("100000001", 13, 0),
    ("111111110", 0, 11),
    ("100000000", 9, 1),
    ("110001000", 7, 2),
    ("000000010", 3, 4),
    ("001101100", 0, 7),
    ("101100001", 0, 6),
    ("001100001", 0, 5),
    ("101000000", 0, 5),
    ("101000001", 0, 5),
    ("000000100", 2, 2),
    ("000010001", 1, 2),
    ("101101100", 0, 3),
    ("001000001", 2, 1),
    ("000110000", 1, 2),
    ("010000010", 2, 0),
    ("001000110", 1, 0),
    ("000001000", 1, 0),
    ("010000001", 1, 0),
    ("001110000", 0, 1),
    ("010100000", 1, 0),
)
_PATTERNS = np.array([[int(c) for c in p] for p, _, _ in _COMBINATIONS], dtype=np.int8)
_PATTERN_WEIGHTS = {
    False: np.array([n for _, n, _ in _COMBINATIONS], dtype=float),
    True: np.array([d for _, _, d in _COMBINATIONS], dtype=float),
}

# Difficulty knobs, set by scripts/calibrate_synthetic.py (benchmark CV loss ~0.18 on `small`).
P_WEAK = 0.08  # chance that a positive label shows only near the noise floor
CONFUSER_RATE = 0.1  # chance that a negative label's ions appear as a contaminant trace
DISTRACTOR_MEAN = 3.0  # mean number of unlabeled peaks of generic ions per run
STRONG_AMPLITUDE = (5e7, 1e9)  # peak heights of clearly present compounds (log-uniform)
WEAK_AMPLITUDE_X_NOISE = (3.0, 30.0)  # weak compounds, in multiples of the run's noise floor
TRACE_AMPLITUDE_X_NOISE = (3.0, 300.0)  # contaminant traces, in multiples of the noise floor
MINERAL_BOOST = 30.0  # strong mineral releases relative to strong GC peaks
RAMP_SPREAD = 0.15  # relative change of the ramp duration between materials
WARP_SHAPE = 10.0  # gamma shape of a material's ramp knot increments: larger = more linear
RAMP_JITTER = 0.03  # relative change of the ramp duration between replicate runs
RUN_WARP = 0.05  # log-normal scatter of the ramp knot increments between replicate runs
ZIPF = 1.5  # compound i (0-based) of a library is picked with weight 1 / (i + 1) ** ZIPF
RETENTION_JITTER = 0.015  # per-run shift of retentions (ramp fraction)
HEIGHT_JITTER = 0.3  # per-run log-normal scatter of peak heights between replicates
REAGENT_AMPLITUDE = (2e7, 5e8)  # derivatization reagent peaks (log-uniform)
MEAN_REPLICATES = 5.0  # mean runs per material (a physical sample run several times)


@dataclass(frozen=True)
class _Compound:
    """One substance: fragment ions (m/z -> relative intensity) and where it elutes.

    retention: fraction of the temperature ramp (0 = start, 1 = end) at which it elutes; the
    run's ramp turns it into a time.
    """

    name: str
    ions: dict[int, float]
    retention: float


_c = _Compound


# Electron-ionisation fragments (approximate textbook spectra) per label, as GC peaks;
# in every library the common compounds come first (see _pick).
_COMPOUNDS: dict[str, tuple[_Compound, ...]] = {
    "aromatic": (
        _c("benzene", {78: 100, 77: 25, 52: 16, 51: 18, 50: 12}, 0.14),
        _c("toluene", {91: 100, 92: 60, 65: 12, 39: 10}, 0.225),
        _c("naphthalene", {128: 100, 127: 12, 102: 8, 64: 6}, 0.56),
        _c("xylene", {91: 100, 106: 60, 105: 25, 77: 12}, 0.325),
        _c("styrene", {104: 100, 103: 45, 78: 35, 51: 20}, 0.375),
        _c("phenanthrene", {178: 100, 176: 20, 152: 8, 89: 10}, 0.815),
    ),
    "hydrocarbon": (  # a lone alkane: only used for contaminant traces, positives get a series
        _c("alkane", {57: 100, 43: 70, 71: 55, 85: 35, 99: 15}, 0.5),
    ),
    "carboxylic_acid": (
        _c("acetic acid", {60: 75, 45: 90, 43: 100, 42: 15}, 0.175),
        _c("benzoic acid", {105: 100, 122: 75, 77: 70, 51: 25}, 0.525),
        _c("hexanoic acid", {60: 100, 73: 40, 41: 30, 87: 20}, 0.375),
        _c("palmitic acid", {73: 100, 60: 90, 43: 80, 256: 15, 129: 20}, 0.825),
    ),
    "nitrogen_bearing_compound": (
        _c("acetonitrile", {41: 100, 40: 50, 39: 15}, 0.1),
        _c("pyridine", {79: 100, 52: 65, 51: 35}, 0.225),
        _c("benzonitrile", {103: 100, 76: 40, 50: 15}, 0.425),
        _c("pyrrole", {67: 100, 39: 50, 41: 40, 40: 35}, 0.225),
        _c("indole", {117: 100, 90: 40, 89: 30}, 0.625),
        _c("methylamine", {30: 100, 31: 60, 28: 20}, 0.05),
        _c("HCN", {27: 100, 26: 20}, 0.04),
    ),
    "chlorine_bearing_compound": (
        _c("chloromethane", {50: 100, 52: 32, 49: 10}, 0.05),
        _c("dichloromethane", {49: 100, 51: 32, 84: 70, 86: 45, 88: 7}, 0.1),
        _c("chlorobenzene", {112: 100, 114: 32, 77: 50, 51: 15}, 0.325),
        _c("chloroform", {83: 100, 85: 64, 87: 10, 47: 20}, 0.15),
        _c("HCl", {36: 100, 38: 32, 35: 17}, 0.04),
    ),
    "sulfur_bearing_compound": (
        _c("SO2", {64: 100, 48: 50, 66: 5}, 0.04),
        _c("H2S", {34: 100, 33: 40, 32: 30, 36: 4.4}, 0.03),
        _c("CS2", {76: 100, 78: 9, 44: 15, 32: 20}, 0.1),
        _c("thiophene", {84: 100, 58: 60, 45: 40, 86: 4.4}, 0.175),
        _c("COS", {60: 100, 32: 50, 62: 4.4}, 0.04),
        _c("methanethiol", {47: 100, 48: 70, 45: 45, 50: 4}, 0.06),
    ),
    "alcohol": (
        _c("methanol", {31: 100, 32: 70, 29: 60}, 0.05),
        _c("ethanol", {31: 100, 45: 50, 46: 20}, 0.07),
        _c("phenol", {94: 100, 66: 30, 65: 25}, 0.425),
        _c("1-propanol", {31: 100, 59: 10, 42: 10, 60: 5}, 0.115),
        _c("1-butanol", {56: 100, 31: 90, 41: 60, 43: 60}, 0.175),
    ),
    "other_oxygen_bearing_compound": (
        _c("acetone", {43: 100, 58: 30}, 0.07),
        _c("acetaldehyde", {29: 100, 44: 70, 43: 20}, 0.04),
        _c("furan", {68: 100, 39: 90}, 0.07),
        _c("furfural", {96: 100, 95: 95, 39: 40}, 0.325),
        _c("methyl ester", {74: 100, 87: 60, 43: 40, 59: 20}, 0.6),
        _c("diethyl ether", {31: 100, 59: 50, 45: 60, 74: 40}, 0.07),
    ),
}

# In derivatized runs acids and alcohols elute as TBDMS derivatives, seen as [M-57]+ with 73/75.
_DERIVATIZED_COMPOUNDS: dict[str, tuple[_Compound, ...]] = {
    "carboxylic_acid": (
        _c("TBDMS acetate", {117: 100, 75: 60, 73: 40}, 0.175),
        _c("TBDMS lactate", {261: 100, 233: 30, 147: 40, 73: 60}, 0.375),
        _c("TBDMS benzoate", {179: 100, 135: 20, 105: 15, 75: 40, 73: 35}, 0.425),
        _c("TBDMS palmitate", {313: 100, 129: 15, 75: 60, 73: 40}, 0.825),
    ),
    "alcohol": (
        _c("TBDMS ethanol", {103: 100, 75: 70, 73: 30}, 0.125),
        _c("TBDMS phenol", {151: 100, 75: 20, 73: 10}, 0.375),
        _c("TBDMS glycerol", {377: 60, 73: 100, 147: 30}, 0.675),
    ),
}

# Amino acids as TBDMS derivatives: they carry both carboxylic_acid and nitrogen labels.
_AMINO_ACIDS_TBDMS: tuple[_Compound, ...] = (
    _c("Gly", {246: 100, 218: 60, 147: 40, 73: 70}, 0.3),
    _c("Ala", {260: 100, 232: 70, 158: 50, 73: 60}, 0.32),
    _c("Val", {186: 100, 288: 60, 147: 20, 73: 60}, 0.37),
    _c("Leu", {200: 100, 302: 40, 147: 20, 73: 60}, 0.4),
    _c("Pro", {184: 100, 286: 40, 73: 60}, 0.42),
    _c("Phe", {234: 100, 302: 60, 336: 40, 73: 60}, 0.55),
)
_P_AMINO_ACID = 0.7  # chance that a derivatized carboxylic+nitrogen sample shows amino acids

# Evolved gases of minerals: broad releases instead of GC peaks, at the mineral's
# decomposition temperature.
_MINERAL_GASES: tuple[_Compound, ...] = (
    _c("H2O (clays, hydrated minerals)", {18: 100, 17: 23}, 0.3),
    _c("CO2 (carbonates)", {44: 100, 28: 10, 45: 1.2, 16: 9}, 0.6),
    _c("SO2 (sulfates)", {64: 100, 48: 50, 66: 5}, 0.75),
    _c("O2 (perchlorates)", {32: 100, 16: 10}, 0.4),
    _c("HCl (chlorides, perchlorates)", {36: 100, 38: 32, 35: 17}, 0.45),
    _c("H2S (sulfides)", {34: 100, 33: 42, 32: 44}, 0.5),
    _c("NO (nitrates)", {30: 100}, 0.35),
)

# MTBSTFA reagent and its by-products, large early peaks in derivatized runs; the first two
# are in every derivatized run.
_REAGENT_PEAKS: tuple[_Compound, ...] = (
    _c("TBDMS-OH", {75: 100, 73: 20, 77: 5}, 0.02),
    _c("MTBSTFA", {184: 100, 73: 70, 75: 30, 100: 20}, 0.05),
    _c("(TBDMS)2O", {189: 100, 147: 70, 73: 40, 75: 15}, 0.12),
    _c("N-methyltrifluoroacetamide", {127: 100, 58: 60, 69: 50}, 0.01),
    _c("TBDMS by-product", {115: 100, 73: 50, 75: 40, 133: 20}, 0.08),
    _c("siloxane by-product", {221: 100, 207: 40, 73: 30, 147: 30, 281: 15}, 0.25),
)
_REAGENT_BACKGROUND = {73: 1.0, 75: 0.8, 147: 0.3}

# Unlabeled peaks of generic ions that appear in any run.
_DISTRACTORS: tuple[dict[int, float], ...] = (
    {149: 100, 167: 30, 279: 8, 57: 20},  # phthalate plasticiser
    {207: 100, 191: 10, 96: 8},  # cyclic siloxane D3
    {281: 100, 73: 30, 265: 10},  # D4
    {44: 100, 43: 30, 41: 20},
    {41: 100, 39: 40, 27: 30},
    {55: 100, 69: 50, 83: 20},
)

_AIR = {18: 1.0, 17: 0.23, 28: 1.6, 32: 0.4, 40: 0.05, 44: 0.12}
_BLEED = {207: 1.0, 73: 0.6, 281: 0.4, 191: 0.25, 133: 0.2, 96: 0.15}

# Recorded window (minutes) by kind: (start range, end range).
_RUN_WINDOWS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "mineral": ((0.02, 0.1), (6.5, 8.0)),
    "hydrocarbon": ((1.8, 2.5), (13.0, 18.0)),
    "derivatized": ((6.8, 7.4), (25.0, 41.0)),
    "other": ((0.02, 1.5), (22.0, 38.0)),
}
# Nominal temperature ramp (minutes) by kind: each method heats on its own schedule; runs may
# stop recording before the ramp ends.
_RAMPS: dict[str, tuple[float, float]] = {
    "mineral": (0.0, 7.5),
    "hydrocarbon": (2.0, 17.0),
    "derivatized": (7.0, 36.0),
    "other": (0.5, 36.0),
}
_SWEEP_STARTS = (2, 33, 45)
# How often each kind's sweep starts at ~2, ~33, ~45: mineral methods need H2O, CO2, O2 ...
_SWEEP_START_P: dict[str, list[float]] = {
    "mineral": [0.95, 0.03, 0.02],
    "hydrocarbon": [0.7, 0.15, 0.15],
    "derivatized": [0.3, 0.2, 0.5],
    "other": [0.7, 0.15, 0.15],
}


def _log_uniform(rng: np.random.Generator, lo: float, hi: float,
                 size: int | None = None) -> float | np.ndarray:
    """Log-uniform draw(s) between lo and hi: magnitudes spread evenly over decades."""
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def _pick(rng: np.random.Generator, n_items: int, size: int = 1) -> np.ndarray:
    """Indices of `size` distinct library entries; earlier entries are the common ones."""
    weights = 1.0 / np.arange(1, n_items + 1) ** ZIPF
    return rng.choice(n_items, size=size, replace=False, p=weights / weights.sum())


def draw_labels(
    rng: np.random.Generator, n: int, derivatized_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Draw labels for one split without simulating any run.

    Exactly round(n * derivatized_fraction) samples are derivatized (at random positions); each
    sample's label combination is drawn from the real train combinations given its
    derivatization. Returns labels (n, 9) int8 in LABELS order and derivatized (n,) bool.
    """
    derivatized = np.zeros(n, dtype=bool)
    derivatized[rng.permutation(n)[: round(n * derivatized_fraction)]] = True
    labels = np.empty((n, len(LABELS)), dtype=np.int8)
    for state in (False, True):
        idx = np.flatnonzero(derivatized == state)
        weights = _PATTERN_WEIGHTS[state]
        drawn = rng.choice(len(_PATTERNS), size=len(idx), p=weights / weights.sum())
        labels[idx] = _PATTERNS[drawn]
    return labels, derivatized


def _run_kind(rng: np.random.Generator, labels: np.ndarray, derivatized: bool) -> str:
    """Which instrument method a material is run with; it sets run length and ramp.

    Kind follows the labels only loosely, so run length hints at the labels without giving
    them away (label-free samples are blanks of every kind).
    """
    if derivatized:
        return "derivatized"
    organic = labels[:8].any()
    if labels[LABELS.index("mineral")] and not organic:
        return "mineral" if rng.random() < 0.75 else "other"
    if labels[LABELS.index("hydrocarbon")]:
        return "hydrocarbon" if rng.random() < 0.75 else "other"
    if organic:
        return "other"
    return str(rng.choice(["mineral", "hydrocarbon", "other"], p=[0.3, 0.3, 0.4]))


@dataclass(frozen=True)
class _Signal:
    """One elution event: ions, where on the ramp, how strong, which shape.

    height: peak height in counts/s, or in multiples of the run's noise floor when weak.
    broad: an evolved-gas release (1-2 min wide) instead of a sharp GC peak.
    """

    ions: dict[int, float]
    retention: float
    height: float
    weak: bool = False
    broad: bool = False


@dataclass(frozen=True)
class _Material:
    """What replicate runs of one physical sample share: the method and the signals.

    ramp: (7,) temperature fractions at 7 evenly spaced knot times, 0 to 1, increasing;
    ramp_scale: the ramp's duration relative to the method's nominal one.
    """

    kind: str
    first_mass: int
    ramp: tuple[float, ...]
    ramp_scale: float
    signals: tuple[_Signal, ...]


def _hydrocarbon_series(rng: np.random.Generator, kind: str, height: float,
                        weak: bool) -> list[_Signal]:
    """A homologous n-alkane series: 10-13 sharp peaks evenly spaced 0.5-0.9 min apart."""
    n_peaks = int(rng.integers(10, 14))
    ramp_start, ramp_end = _RAMPS[kind]
    spacing = rng.uniform(0.5, 0.9) / (ramp_end - ramp_start)  # in ramp fraction
    carbons = int(rng.integers(8, 14)) + np.arange(n_peaks)
    first = 0.04 * (carbons[0] - 7)  # lighter chains elute earlier
    # a bell-shaped envelope over chain length, as in pyrolysis products
    envelope = np.exp(-0.5 * ((np.arange(n_peaks) - rng.uniform(2, n_peaks - 2)) / 4.0) ** 2)
    heights = height * envelope * rng.lognormal(0.0, 0.3, n_peaks)
    with_alkenes = rng.random() < 0.4
    signals = []
    for i, (n_c, h) in enumerate(zip(carbons.tolist(), heights.tolist(), strict=True)):
        retention = first + i * spacing
        alkane = {57: 100, 43: 70, 71: 55, 85: 35, 99: 15, 113: 8, 14 * n_c + 2: 3}
        signals.append(_Signal(alkane, retention, h, weak))
        if with_alkenes:
            alkene = {55: 100, 41: 80, 69: 60, 83: 40, 97: 20, 14 * n_c: 3}
            signals.append(_Signal(alkene, retention - 0.1 * spacing, 0.4 * h, weak))
    return signals


def _mineral_release(rng: np.random.Generator, height: float, weak: bool) -> _Signal:
    """A broad evolved-gas release of one mineral gas near its decomposition temperature."""
    gas = _MINERAL_GASES[_pick(rng, len(_MINERAL_GASES))[0]]
    return _Signal(gas.ions, gas.retention + rng.normal(0.0, 0.06), height, weak, broad=True)


def _label_compounds(rng: np.random.Generator, label: str, derivatized: bool,
                     amino_acids: bool) -> list[_Compound]:
    """The compounds through which a positive label shows (1 to ~3)."""
    if amino_acids and label in ("carboxylic_acid", "nitrogen_bearing_compound"):
        library = _AMINO_ACIDS_TBDMS
    elif derivatized and label in _DERIVATIZED_COMPOUNDS:
        library = _DERIVATIZED_COMPOUNDS[label]
    else:
        library = _COMPOUNDS[label]
    n = min(1 + rng.poisson(0.8), len(library))
    return [library[i] for i in _pick(rng, len(library), n)]


def _label_height(rng: np.random.Generator, weak: bool) -> float:
    """Height of one compound of a positive label (a noise multiple when weak)."""
    return _log_uniform(rng, *(WEAK_AMPLITUDE_X_NOISE if weak else STRONG_AMPLITUDE))


def _label_signals(rng: np.random.Generator, labels: np.ndarray, derivatized: bool,
                   kind: str) -> list[_Signal]:
    """Signals of the positive labels, some of them weak (near the noise floor)."""
    acid_and_nitrogen = labels[LABELS.index("carboxylic_acid")] and labels[
        LABELS.index("nitrogen_bearing_compound")]
    amino_acids = bool(derivatized and acid_and_nitrogen and rng.random() < _P_AMINO_ACID)
    signals: list[_Signal] = []
    for j, label in enumerate(LABELS):
        if not labels[j]:
            continue
        weak = rng.random() < P_WEAK
        if label == "mineral":
            # evolved gases come in bulk: strong releases are the largest signals of all
            boost = 1.0 if weak else MINERAL_BOOST
            signals += [_mineral_release(rng, boost * _label_height(rng, weak), weak)
                        for _ in range(1 + rng.poisson(0.5))]
        elif label == "hydrocarbon":
            signals += _hydrocarbon_series(rng, kind, _label_height(rng, weak), weak)
        else:
            signals += [_Signal(c.ions, c.retention, _label_height(rng, weak), weak)
                        for c in _label_compounds(rng, label, derivatized, amino_acids)]
    return signals


def _confuser_signals(rng: np.random.Generator, labels: np.ndarray) -> list[_Signal]:
    """Contaminant traces of NEGATIVE labels' ions, so a label's ions alone do not prove it."""
    signals = []
    for j, label in enumerate(LABELS):
        if labels[j] or rng.random() >= CONFUSER_RATE:
            continue
        height = _log_uniform(rng, *TRACE_AMPLITUDE_X_NOISE)
        if label == "mineral":
            signals.append(_mineral_release(rng, height, weak=True))
        else:
            c = _COMPOUNDS[label][_pick(rng, len(_COMPOUNDS[label]))[0]]
            signals.append(_Signal(c.ions, c.retention, height, weak=True))
    return signals


def _distractor_signals(rng: np.random.Generator, mean: float) -> list[_Signal]:
    """Unlabeled peaks: known contaminants or random ion sets, anywhere on the ramp."""
    signals = []
    for _ in range(rng.poisson(mean)):
        if rng.random() < 0.5:
            ions = _DISTRACTORS[rng.integers(len(_DISTRACTORS))]
        else:
            mz = rng.choice(np.arange(27, 301), size=rng.integers(2, 6), replace=False)
            ions = dict(zip(mz.tolist(), rng.uniform(5, 100, len(mz)).tolist(), strict=True))
        signals.append(_Signal(ions, rng.uniform(0.0, 1.0), _log_uniform(rng, 1e5, 1e8)))
    return signals


def _draw_material(rng: np.random.Generator, labels: np.ndarray, derivatized: bool) -> _Material:
    """A physical sample: its method, mass sweep, label signals, contaminants."""
    kind = _run_kind(rng, labels, derivatized)
    first_mass = int(rng.choice(_SWEEP_STARTS, p=_SWEEP_START_P[kind])) + int(rng.integers(0, 2))
    # the temperature ramp, bent through random knots: unknown and different per material
    ramp = np.concatenate([[0.0], np.cumsum(rng.gamma(WARP_SHAPE, size=6))])
    ramp_scale = rng.uniform(1 - RAMP_SPREAD, 1 + RAMP_SPREAD)
    signals = (_label_signals(rng, labels, derivatized, kind) + _confuser_signals(rng, labels)
               + _distractor_signals(rng, DISTRACTOR_MEAN / 2))
    return _Material(kind, first_mass, tuple(ramp / ramp[-1]), ramp_scale, tuple(signals))


class _Canvas:
    """Intensity grid of one run (scan x integer mass) that signals are added onto.

    times: (n_scans,) minutes (scan_interval: their median spacing); masses: (n_masses,)
    integer m/z of the sweep; gain: (n_masses,) detector sensitivity (heavier ions are seen
    less); ramp_times, ramp_temps: knots of the run's monotone temperature ramp (minutes ->
    ramp fraction 0..1); grid: (n_scans, n_masses) float counts/s.
    """

    def __init__(self, times: np.ndarray, masses: np.ndarray, gain: np.ndarray,
                 ramp_times: np.ndarray, ramp_temps: np.ndarray):
        self.times = times
        self.scan_interval = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
        self.masses = masses
        self.gain = gain
        self.ramp_times = ramp_times
        self.ramp_temps = ramp_temps
        # isothermal before and after the ramp
        self.temperature = np.interp(times, ramp_times, ramp_temps)
        self.grid = np.zeros((len(times), len(masses)))

    def _columns(self, ions: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
        """Grid columns and relative intensities of the ions this sweep covers."""
        mz = np.fromiter(ions.keys(), dtype=int)
        rel = np.fromiter(ions.values(), dtype=float) / max(ions.values())
        col = mz - self.masses[0]
        ok = (col >= 0) & (col < len(self.masses))
        return col[ok], rel[ok] * self.gain[col[ok]]

    def time_at(self, temperature: float) -> float:
        """Time at which the ramp reaches the given fraction; may lie outside the recording."""
        return float(np.interp(temperature, self.ramp_temps, self.ramp_times))

    def add_peak(self, ions: dict[int, float], center: float, sigma: float, tail: float,
                 height: float) -> None:
        """A tailing Gaussian elution profile (sigma minutes, right side sigma * tail)."""
        lo, hi = np.searchsorted(self.times, [center - 6 * sigma, center + 6 * sigma * tail])
        if hi <= lo:
            return
        col, rel = self._columns(ions)
        dt = self.times[lo:hi] - center
        shape = np.exp(-0.5 * (dt / np.where(dt < 0, sigma, sigma * tail)) ** 2)
        self.grid[lo:hi, col] += height * shape[:, None] * rel[None, :]

    def add_trace(self, ions: dict[int, float], curve: np.ndarray) -> None:
        """A slowly varying background: curve (n_scans,) times each ion's share."""
        col, rel = self._columns(ions)
        self.grid[:, col] += curve[:, None] * rel[None, :]


def _make_canvas(rng: np.random.Generator, material: _Material, profile: Profile) -> _Canvas:
    """Scan times, a random monotone temperature ramp and the mass sweep of one run."""
    (s_lo, s_hi), (e_lo, e_hi) = _RUN_WINDOWS[material.kind]
    start, end = rng.uniform(s_lo, s_hi), rng.uniform(e_lo, e_hi)
    dt = profile.scan_interval_min
    if profile.min_scans:
        dt = min(dt, (end - start) / profile.min_scans)
    n_scans = int((end - start) / dt) + 1
    # slightly irregular scan spacing, as on the real instrument
    times = start + np.concatenate([[0.0], np.cumsum(dt * rng.uniform(0.98, 1.02, n_scans - 1))])
    # the material's ramp, slightly stretched and bent again per run: replicates elute close
    # to, but not exactly at, the same times
    ramp_start, ramp_end = _RAMPS[material.kind]
    duration = ((ramp_end - ramp_start) * material.ramp_scale
                * rng.uniform(1 - RAMP_JITTER, 1 + RAMP_JITTER))
    ramp_times = ramp_start + rng.uniform(-0.1, 0.1) + np.linspace(0.0, duration, 7)
    ramp_temps = np.concatenate([[0.0], np.cumsum(np.diff(material.ramp)
                                                  * rng.lognormal(0.0, RUN_WARP, 6))])
    masses = np.arange(material.first_mass, profile.max_mass + 1)
    gain = (masses / 100.0) ** -rng.uniform(0.0, 0.4)
    return _Canvas(times, masses, gain, ramp_times, ramp_temps / ramp_temps[-1])


def _render(rng: np.random.Generator, canvas: _Canvas, signal: _Signal, noise: float,
            shift: float, profile: Profile) -> None:
    """Add one signal to the run: retention shifted per run, height scattered per run."""
    center = canvas.time_at(signal.retention + shift + rng.normal(0.0, RETENTION_JITTER / 3))
    if signal.broad:
        sigma, tail = rng.uniform(0.35, 0.8), rng.uniform(1.0, 1.8)
    else:
        # GC peaks are 1.5-4 s (sigma) wide, widened on coarse profiles to stay sampled
        floor = profile.min_peak_sigma_scans * canvas.scan_interval
        sigma, tail = max(rng.uniform(1.5, 4.0) / 60.0, floor), rng.uniform(1.0, 2.5)
    height = signal.height * (noise if signal.weak else 1.0) * rng.lognormal(0.0, HEIGHT_JITTER)
    canvas.add_peak(signal.ions, center, sigma, tail, height)


def _add_background(rng: np.random.Generator, canvas: _Canvas, derivatized: bool) -> None:
    """Helium carrier, air rising with temperature, column bleed, reagent (derivatized runs)."""
    n = len(canvas.times)
    temp = canvas.temperature
    canvas.add_trace({HELIUM_MASS: 1.0}, _log_uniform(rng, 3e5, 1e7) * rng.lognormal(0.0, 0.02, n))
    rise = _log_uniform(rng, 0.5, 10) * temp ** rng.uniform(1.5, 4)
    air = _log_uniform(rng, 1e4, 1e6) * (1 + rise)
    canvas.add_trace(_AIR, air)
    if rng.random() < 0.85:
        k = rng.uniform(2.0, 6.0)
        bleed = _log_uniform(rng, 1e6, 3e7) * np.expm1(k * temp) / np.expm1(k)
        canvas.add_trace(_BLEED, bleed)
    if derivatized:
        canvas.add_trace(_REAGENT_BACKGROUND, np.full(n, _log_uniform(rng, 1e4, 1e6)))
        extra = rng.choice(np.arange(2, len(_REAGENT_PEAKS)), size=rng.integers(1, 5),
                           replace=False)
        for i in (0, 1, *extra):
            peak = _REAGENT_PEAKS[i]
            center = canvas.time_at(peak.retention + rng.normal(0.0, RETENTION_JITTER))
            canvas.add_peak(peak.ions, center, rng.uniform(0.03, 0.15), rng.uniform(1.0, 3.0),
                            _log_uniform(rng, *REAGENT_AMPLITUDE))


def _detector(rng: np.random.Generator, grid: np.ndarray, noise: float) -> np.ndarray:
    """Counts as the detector reports them: noise floor, shot noise, saturation, integers.

    grid: (n_scans, n_masses) true intensities. Returns int64 counts, all >= 1.
    """
    n_masses = grid.shape[1]
    floor = noise * _log_uniform(rng, 0.5, 2.0, n_masses)[None, :]
    counts = floor * rng.lognormal(0.0, 0.35, grid.shape)
    counts += grid * rng.lognormal(0.0, 0.05, grid.shape)
    # saturation: flat plateaus at a per-run ceiling, with occasional drop-outs inside them
    ceiling = _log_uniform(rng, 2e8, 1.7e9)
    saturated = counts > ceiling
    counts[saturated] = ceiling
    dropout = saturated & (rng.random(grid.shape) < 0.08)
    counts[dropout] = ceiling * rng.uniform(0.02, 0.5, int(dropout.sum()))
    return np.maximum(np.rint(counts), 1).astype(np.int64)


def simulate_run(
    rng: np.random.Generator,
    labels: np.ndarray,
    derivatized: bool,
    profile: Profile | str,
    material_rng: np.random.Generator | None = None,
) -> pd.DataFrame:
    """Simulate one GC-MS run.

    labels: (9,) 0/1 in LABELS order. material_rng draws what replicate runs of one physical
    sample share (method, compounds, their strengths, contaminants); rng draws everything
    specific to this run (ramp, noise, background, extra distractors). Without material_rng,
    rng draws both. Returns a DataFrame with columns time, mass, intensity
    (n_scans * n_masses rows): time in minutes and mass in m/z rounded to 6 decimals,
    intensity int64 >= 1; one sweep per time value, masses ascending inside it.
    """
    if isinstance(profile, str):
        profile = PROFILES[profile]
    labels = np.asarray(labels).astype(bool)
    material = _draw_material(material_rng or rng, labels, derivatized)
    canvas = _make_canvas(rng, material, profile)
    noise = _log_uniform(rng, 5e2, 4e3)
    _add_background(rng, canvas, derivatized)
    shift = rng.normal(0.0, RETENTION_JITTER)  # column/flow drift moves every peak together
    for signal in (*material.signals, *_distractor_signals(rng, DISTRACTOR_MEAN / 2)):
        _render(rng, canvas, signal, noise, shift, profile)
    intensity = _detector(rng, canvas.grid, noise)
    n_scans, n_masses = intensity.shape
    # readings scatter around the integer: a per-run calibration drift plus per-reading noise,
    # kept inside +-0.49 so no reading sits on .5 and sweeps stay ascending
    drift = rng.normal(0.0, 0.03) + rng.normal(0.0, 0.05) * canvas.masses / profile.max_mass
    jitter = np.clip(drift[None, :] + rng.normal(0.0, 0.12, (n_scans, n_masses)), -0.49, 0.49)
    return pd.DataFrame({
        "time": np.repeat(np.round(canvas.times, 6), n_masses),
        "mass": np.round(canvas.masses[None, :] + jitter, 6).ravel(),
        "intensity": intensity.ravel(),
    })


def _fixed_point_chars(values: np.ndarray, decimals: int) -> tuple[np.ndarray, np.ndarray]:
    """ASCII of non-negative numbers with a fixed number of decimals, one row per value.

    Returns chars (n, width) uint8, right-aligned, and keep (n, width) bool marking the
    characters that belong to each number (the leading padding is dropped by the mask).
    """
    scaled = np.rint(values * 10.0**decimals).astype(np.int64)
    if scaled.size and scaled.min() < 0:
        raise ValueError("only non-negative values can be written")
    n_int = max(len(str(int(scaled.max(initial=0)))), decimals + 1)
    width = n_int + (decimals > 0)
    chars = np.empty((len(scaled), width), dtype=np.uint8)
    keep = np.ones((len(scaled), width), dtype=bool)
    rest = scaled.copy()
    # fill digits right to left; division by a scalar is the fast path in numpy
    col = width - 1
    for i in range(n_int):
        if decimals and i == decimals:
            chars[:, col] = ord(".")
            col -= 1
        chars[:, col] = rest % 10 + ord("0")
        rest //= 10
        # a leading zero is padding, except the one before the point ("0.042183")
        if i > decimals:
            keep[:, col] = scaled >= 10**i
        col -= 1
    return chars, keep


def format_run_csv(run: pd.DataFrame) -> bytes:
    """The CSV bytes of one run: header ``time,mass,intensity``, 6-decimal time and mass,
    integer intensity. Vectorised; several times faster than DataFrame.to_csv."""
    time = run["time"].to_numpy(float)
    # time repeats for a whole sweep: format each scan once, then copy the rows
    scan_start = np.flatnonzero(np.r_[True, time[1:] != time[:-1]])
    scan_of_row = np.cumsum(np.r_[False, time[1:] != time[:-1]])
    t_chars, t_keep = _fixed_point_chars(time[scan_start], 6)
    fields = [
        (t_chars[scan_of_row], t_keep[scan_of_row]),
        _fixed_point_chars(run["mass"].to_numpy(float), 6),
        _fixed_point_chars(run["intensity"].to_numpy(np.int64), 0),
    ]
    n = len(run)
    width = sum(c.shape[1] + 1 for c, _ in fields)
    chars = np.empty((n, width), dtype=np.uint8)
    keep = np.empty((n, width), dtype=bool)
    col = 0
    for sep, (c, k) in zip(",,\n", fields, strict=True):
        w = c.shape[1]
        chars[:, col:col + w], keep[:, col:col + w] = c, k
        chars[:, col + w], keep[:, col + w] = ord(sep), True
        col += w + 1
    return (",".join(SAMPLE_COLUMNS) + "\n").encode() + chars[keep].tobytes()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary name and rename, so no reader sees a partial file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _assign_materials(rng: np.random.Generator, labels: np.ndarray,
                      derivatized: np.ndarray) -> np.ndarray:
    """Group samples into physical materials of about MEAN_REPLICATES runs each.

    Only samples with the same labels and derivatization share a material. labels: (n, 9);
    derivatized: (n,). Returns (n,) int material ids (they seed each material's stream).
    """
    _, group = np.unique(np.column_stack([labels, derivatized]), axis=0, return_inverse=True)
    material = np.empty(len(group), dtype=int)
    next_id = 0
    for g in range(group.max() + 1):
        members = np.flatnonzero(group == g)
        n_materials = int(np.ceil(len(members) / MEAN_REPLICATES))
        material[members] = next_id + rng.integers(n_materials, size=len(members))
        next_id += n_materials
    return material


def expected_prevalence(derivatized_fraction: float) -> np.ndarray:
    """Label prevalence (9,) that draw_labels aims at for a split with this derivatized share."""
    given = {state: w @ _PATTERNS / w.sum() for state, w in _PATTERN_WEIGHTS.items()}
    return derivatized_fraction * given[True] + (1 - derivatized_fraction) * given[False]


def sample_table(profile: Profile | str = "small", seed: int = 0) -> pd.DataFrame:
    """Every sample of a synthetic folder, without runs.

    Returns a DataFrame with sample_id (S0000.. over train, val, test), split, derivatized
    (bool), features_path, material (replicate runs of one physical sample share it) and the
    9 label columns (int8). Labels exist for test too (they drive the simulated signals) but
    are never written.
    """
    if isinstance(profile, str):
        profile = PROFILES[profile]
    parts = []
    for i, (split, n) in enumerate(profile.split_sizes.items()):
        labels, derivatized = draw_labels(np.random.default_rng([seed, 0, i]), n,
                                          DERIVATIZED_FRACTION[split])
        part = pd.DataFrame(labels, columns=list(LABELS))
        part.insert(0, "split", split)
        part.insert(1, "derivatized", derivatized)
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)
    table.insert(0, "sample_id", [f"S{i:04d}" for i in range(len(table))])
    table.insert(3, "features_path", table["split"] + "_features/" + table["sample_id"] + ".csv")
    table.insert(4, "material", _assign_materials(np.random.default_rng([seed, 3]),
                                                  table[list(LABELS)].to_numpy(),
                                                  table["derivatized"].to_numpy()))
    return table


def _write_sample(task: tuple[str, int, int, np.ndarray, bool, Profile, int]) -> str:
    """Simulate and write one run; returns its md5. Each run and each material has its own
    random stream, so the bytes do not depend on worker count or on ``limit``."""
    path, index, material, labels, derivatized, profile, seed = task
    run = simulate_run(np.random.default_rng([seed, 1, index]), labels, derivatized, profile,
                       material_rng=np.random.default_rng([seed, 2, material]))
    data = format_run_csv(run)
    _write_atomic(Path(path), data)
    return hashlib.md5(data).hexdigest()


def _csv_bytes(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False, lineterminator="\n").encode()


def generate(
    out_dir: str | os.PathLike,
    profile: str = "small",
    seed: int = 0,
    limit: int | None = None,
    workers: int = 1,
) -> Path:
    """Write a synthetic competition folder and return its path.

    limit: write only the first N samples (sample-id order); metadata and label files then
    cover only those. workers: processes used to simulate and write runs (output is identical
    for any value). metadata.csv is written last, and removed first when regenerating, so a
    folder without it is unfinished.
    """
    prof = PROFILES[profile]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metadata.csv").unlink(missing_ok=True)
    table = sample_table(prof, seed)
    if limit is not None:
        table = table.iloc[:limit]
    for split in SPLITS:
        (out / f"{split}_features").mkdir(exist_ok=True)
    tasks = [
        (str(out / row.features_path), i, row.material, row[list(LABELS)].to_numpy(),
         bool(row.derivatized), prof, seed)
        for i, row in table.iterrows()
    ]
    if workers > 1:
        with Pool(workers) as pool:
            md5s = pool.map(_write_sample, tasks, chunksize=4)
    else:
        md5s = [_write_sample(t) for t in tasks]

    label_cols = ["sample_id", *LABELS]
    for split in ("train", "val"):
        _write_atomic(out / f"{split}_labels.csv",
                      _csv_bytes(table.loc[table["split"] == split, label_cols]))
    scored = table.loc[table["split"] != "train", ["sample_id"]].copy()
    for label in LABELS:
        scored[label] = 0.5
    _write_atomic(out / "submission_format.csv", _csv_bytes(scored))
    metadata = table[["sample_id", "split", "features_path"]].copy()
    metadata.insert(2, "derivatized", np.where(table["derivatized"], "1", ""))
    metadata["features_md5_hash"] = md5s
    _write_atomic(out / "metadata.csv", _csv_bytes(metadata[list(METADATA_COLUMNS)]))
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: write a synthetic folder and say what was written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="write only the first N samples")
    parser.add_argument("--workers", type=int, default=1, help="processes (output is identical)")
    args = parser.parse_args(argv)
    out = generate(args.out_dir, args.profile, args.seed, args.limit, args.workers)
    metadata = pd.read_csv(out / "metadata.csv")
    size = sum((out / p).stat().st_size for p in metadata["features_path"])
    counts = metadata["split"].value_counts().reindex(SPLITS, fill_value=0)
    print(f"wrote {out}: profile={args.profile} seed={args.seed} "
          + " ".join(f"{s}={n}" for s, n in counts.items())
          + f", {size / 1e6:.1f} MB of runs")


if __name__ == "__main__":
    main()
