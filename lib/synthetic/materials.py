"""What a sample is made of: its labels' compounds and their heights, weak positives, contaminant
traces, distractor peaks, mineral releases, and the material a sample's replicate runs share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lib.core.schema import LABELS
from lib.synthetic.chemistry import (
    AMINO_ACIDS_TBDMS,
    COMPOUNDS,
    DERIVATIZED_COMPOUNDS,
    DISTRACTORS,
    MINERAL_GASES,
    Compound,
)

# Difficulty knobs, set by scripts/calibrate_synthetic.py (benchmark CV loss ~0.18 on `small`).




DISTRACTOR_MEAN = 3.0  # mean number of unlabeled peaks of generic ions per run


STRONG_AMPLITUDE = (5e7, 1e9)  # peak heights of clearly present compounds (log-uniform)


WEAK_AMPLITUDE_X_NOISE = (3.0, 30.0)  # weak compounds, in multiples of the run's noise floor


TRACE_AMPLITUDE_X_NOISE = (3.0, 300.0)  # contaminant traces, in multiples of the noise floor


MINERAL_BOOST = 30.0  # strong mineral releases relative to strong GC peaks


RAMP_SPREAD = 0.15  # relative change of the ramp duration between materials


WARP_SHAPE = 10.0  # gamma shape of a material's ramp knot increments: larger = more linear


ZIPF = 1.5  # compound i (0-based) of a library is picked with weight 1 / (i + 1) ** ZIPF


REAGENT_AMPLITUDE = (2e7, 5e8)  # derivatization reagent peaks (log-uniform)


P_AMINO_ACID = 0.7  # chance that a derivatized carboxylic+nitrogen sample shows amino acids


AMINO_ACID_LABELS = ("carboxylic_acid", "nitrogen_bearing_compound")  # what amino acids show


# Recorded window (minutes) by kind: (start range, end range).
RUN_WINDOWS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "mineral": ((0.02, 0.1), (6.5, 8.0)),
    "hydrocarbon": ((1.8, 2.5), (13.0, 18.0)),
    "derivatized": ((6.8, 7.4), (25.0, 41.0)),
    "other": ((0.02, 1.5), (22.0, 38.0)),
}


# Nominal temperature ramp (minutes) by kind: each method heats on its own schedule; runs may
# stop recording before the ramp ends.
RAMPS: dict[str, tuple[float, float]] = {
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


def log_uniform(rng: np.random.Generator, lo: float, hi: float,
                 size: int | None = None) -> float | np.ndarray:
    """Log-uniform draw(s) between lo and hi: magnitudes spread evenly over decades."""
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def _pick(rng: np.random.Generator, n_items: int, size: int = 1) -> np.ndarray:
    """Indices of `size` distinct library entries; earlier entries are the common ones."""
    weights = 1.0 / np.arange(1, n_items + 1) ** ZIPF
    return rng.choice(n_items, size=size, replace=False, p=weights / weights.sum())


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
class Signal:
    """One elution event: ions, where on the ramp, how strong, which shape, and what it is.

    height: peak height in counts/s, or in multiples of the run's noise floor when weak.
    broad: an evolved-gas release (1-2 min wide) instead of a sharp GC peak.
    role: "label" (evidence of a positive label), "confuser" (a negative label's ions as a
    contaminant trace) or "distractor" (unlabeled peak); families: the labels whose chemistry
    it shows (amino acids show two); compound: its name in the ground truth.
    """

    ions: dict[int, float]
    retention: float
    height: float
    weak: bool = False
    broad: bool = False
    role: str = "distractor"
    families: tuple[str, ...] = ()
    compound: str = ""


@dataclass(frozen=True)
class Material:
    """What replicate runs of one physical sample share: the method and the signals.

    ramp: (7,) temperature fractions at 7 evenly spaced knot times, 0 to 1, increasing;
    ramp_scale: the ramp's duration relative to the method's nominal one.
    """

    kind: str
    first_mass: int
    ramp: tuple[float, ...]
    ramp_scale: float
    signals: tuple[Signal, ...]


def _hydrocarbon_series(rng: np.random.Generator, kind: str, height: float,
                        weak: bool) -> list[Signal]:
    """A homologous n-alkane series: 10-13 sharp peaks evenly spaced 0.5-0.9 min apart."""
    n_peaks = int(rng.integers(10, 14))
    ramp_start, ramp_end = RAMPS[kind]
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
        signals.append(Signal(alkane, retention, h, weak, role="label",
                               families=("hydrocarbon",), compound=f"C{n_c} n-alkane"))
        if with_alkenes:
            alkene = {55: 100, 41: 80, 69: 60, 83: 40, 97: 20, 14 * n_c: 3}
            signals.append(Signal(alkene, retention - 0.1 * spacing, 0.4 * h, weak,
                                   role="label", families=("hydrocarbon",),
                                   compound=f"C{n_c} 1-alkene"))
    return signals


def _mineral_release(rng: np.random.Generator, height: float, weak: bool, role: str) -> Signal:
    """A broad evolved-gas release of one mineral gas near its decomposition temperature."""
    gas = MINERAL_GASES[_pick(rng, len(MINERAL_GASES))[0]]
    return Signal(gas.ions, gas.retention + rng.normal(0.0, 0.06), height, weak, broad=True,
                   role=role, families=("mineral",), compound=gas.name)


def _label_compounds(rng: np.random.Generator, label: str, derivatized: bool,
                     amino_acids: bool) -> list[Compound]:
    """The compounds through which a positive label shows (1 to ~3)."""
    if amino_acids and label in ("carboxylic_acid", "nitrogen_bearing_compound"):
        library = AMINO_ACIDS_TBDMS
    elif derivatized and label in DERIVATIZED_COMPOUNDS:
        library = DERIVATIZED_COMPOUNDS[label]
    else:
        library = COMPOUNDS[label]
    n = min(1 + rng.poisson(0.8), len(library))
    return [library[i] for i in _pick(rng, len(library), n)]


def _label_height(rng: np.random.Generator, weak: bool) -> float:
    """Height of one compound of a positive label (a noise multiple when weak)."""
    return log_uniform(rng, *(WEAK_AMPLITUDE_X_NOISE if weak else STRONG_AMPLITUDE))


def _label_signals(rng: np.random.Generator, labels: np.ndarray, derivatized: bool,
                   kind: str, p_weak: float) -> list[Signal]:
    """Signals of the positive labels, each label weak (near the noise floor) with chance
    ``p_weak``."""
    acid_and_nitrogen = labels[LABELS.index("carboxylic_acid")] and labels[
        LABELS.index("nitrogen_bearing_compound")]
    amino_acids = bool(derivatized and acid_and_nitrogen and rng.random() < P_AMINO_ACID)
    signals: list[Signal] = []
    for j, label in enumerate(LABELS):
        if not labels[j]:
            continue
        weak = rng.random() < p_weak
        if label == "mineral":
            # evolved gases come in bulk: strong releases are the largest signals of all
            boost = 1.0 if weak else MINERAL_BOOST
            signals += [_mineral_release(rng, boost * _label_height(rng, weak), weak, "label")
                        for _ in range(1 + rng.poisson(0.5))]
        elif label == "hydrocarbon":
            signals += _hydrocarbon_series(rng, kind, _label_height(rng, weak), weak)
        else:
            for c in _label_compounds(rng, label, derivatized, amino_acids):
                families = AMINO_ACID_LABELS if c in AMINO_ACIDS_TBDMS else (label,)
                signals.append(Signal(c.ions, c.retention, _label_height(rng, weak), weak,
                                       role="label", families=families, compound=c.name))
    return signals


def _confuser_signals(rng: np.random.Generator, labels: np.ndarray,
                      rate: float) -> list[Signal]:
    """Contaminant traces of NEGATIVE labels' ions (each with chance ``rate``), so a label's
    ions alone do not prove it."""
    signals = []
    for j, label in enumerate(LABELS):
        if labels[j] or rng.random() >= rate:
            continue
        height = log_uniform(rng, *TRACE_AMPLITUDE_X_NOISE)
        if label == "mineral":
            signals.append(_mineral_release(rng, height, weak=True, role="confuser"))
        else:
            c = COMPOUNDS[label][_pick(rng, len(COMPOUNDS[label]))[0]]
            signals.append(Signal(c.ions, c.retention, height, weak=True, role="confuser",
                                   families=(label,), compound=c.name))
    return signals


def distractor_signals(rng: np.random.Generator, mean: float) -> list[Signal]:
    """Unlabeled peaks: known contaminants or random ion sets, anywhere on the ramp."""
    signals = []
    for _ in range(rng.poisson(mean)):
        if rng.random() < 0.5:
            name, ions = DISTRACTORS[rng.integers(len(DISTRACTORS))]
        else:
            mz = rng.choice(np.arange(27, 301), size=rng.integers(2, 6), replace=False)
            ions = dict(zip(mz.tolist(), rng.uniform(5, 100, len(mz)).tolist(), strict=True))
            name = "random ions"
        signals.append(Signal(ions, rng.uniform(0.0, 1.0), log_uniform(rng, 1e5, 1e8),
                               compound=name))
    return signals


def draw_material(rng: np.random.Generator, labels: np.ndarray, derivatized: bool, *,
                  p_weak: float, confuser_rate: float) -> Material:
    """A physical sample: its method, mass sweep, label signals (weak with chance ``p_weak``),
    contaminants (negative labels' traces with chance ``confuser_rate``)."""
    kind = _run_kind(rng, labels, derivatized)
    first_mass = int(rng.choice(_SWEEP_STARTS, p=_SWEEP_START_P[kind])) + int(rng.integers(0, 2))
    # the temperature ramp, bent through random knots: unknown and different per material
    ramp = np.concatenate([[0.0], np.cumsum(rng.gamma(WARP_SHAPE, size=6))])
    ramp_scale = rng.uniform(1 - RAMP_SPREAD, 1 + RAMP_SPREAD)
    signals = (_label_signals(rng, labels, derivatized, kind, p_weak)
               + _confuser_signals(rng, labels, confuser_rate)
               + distractor_signals(rng, DISTRACTOR_MEAN / 2))
    return Material(kind, first_mass, tuple(ramp / ramp[-1]), ramp_scale, tuple(signals))
