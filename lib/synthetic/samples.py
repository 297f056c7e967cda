"""Who is in a synthetic folder: sample ids, splits, derivatization, labels and materials
(replicate runs of one physical sample), drawn to match the real train split's statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lib.core.schema import LABELS
from lib.synthetic.profiles import Profile, get_profile

MEAN_REPLICATES = 5.0  # mean runs per material (a physical sample run several times)

# Fraction of derivatized samples per split, from the public metadata.
DERIVATIZED_FRACTION: dict[str, float] = {"train": 0.315, "val": 0.458, "test": 0.352}
# Under a train-to-test shift of strength s the test split's derivatized share is
# DERIVATIZED_FRACTION["test"] + s * SHIFT_DERIVATIZED (capped at 1).
SHIFT_DERIVATIZED = 0.05

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


def test_derivatized_fraction(shift: float) -> float:
    """The test split's derivatized share under a train-to-test shift of strength ``shift``."""
    return min(1.0, DERIVATIZED_FRACTION["test"] + shift * SHIFT_DERIVATIZED)


def sample_table(profile: Profile | str = "small", seed: int = 0,
                 shift: float = 0.0) -> pd.DataFrame:
    """Every sample of a synthetic folder, without runs.

    Returns a DataFrame with sample_id (S0000.. over train, val, test), split, derivatized
    (bool), features_path, material (replicate runs of one physical sample share it) and the
    9 label columns (int8). Labels exist for test too (they drive the simulated signals); the
    generator writes them only as the hidden test_labels.csv.

    shift > 0: the test rows are drawn again, from streams of their own, with the derivatized
    share test_derivatized_fraction(shift); each is a replicate of a material of the same labels
    and derivatization drawn at random from those of the unshifted table (a new material where
    there is none). Train and val rows are the same for every shift.
    """
    profile = get_profile(profile)
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
    if shift > 0:
        table = _shifted_test_rows(table, seed, shift)
    return table


def _shifted_test_rows(table: pd.DataFrame, seed: int, shift: float) -> pd.DataFrame:
    """``table`` with its test rows' labels, derivatization and materials drawn again (see
    sample_table) from stream [seed, 4] only, so the other rows stay. The draws are fixed
    uniforms read through the shift's derivatized share, so a stronger shift changes a few
    samples, not all: the first k of a fixed order are derivatized, each sample's label
    combination is its uniform's quantile given its derivatization, its material likewise."""
    test = np.flatnonzero(table["split"].to_numpy() == "test")
    rng = np.random.default_rng([seed, 4])
    order = rng.permutation(len(test))
    u_labels, u_material = rng.random(len(test)), rng.random(len(test))
    derivatized = np.zeros(len(test), dtype=bool)
    derivatized[order[: round(len(test) * test_derivatized_fraction(shift))]] = True
    cumulative = {state: np.cumsum(w) / w.sum() for state, w in _PATTERN_WEIGHTS.items()}
    labels = np.stack([_PATTERNS[min(int(np.searchsorted(cumulative[bool(d)], u, side="right")),
                                     len(_PATTERNS) - 1)]
                       for d, u in zip(derivatized, u_labels)])
    materials: dict[tuple, set[int]] = {}
    keys = np.column_stack([table[list(LABELS)].to_numpy(), table["derivatized"].to_numpy()])
    for key, material in zip(map(tuple, keys), table["material"]):
        materials.setdefault(key, set()).add(int(material))
    next_id = int(table["material"].max()) + 1
    new_materials = []
    for key, u in zip(map(tuple, np.column_stack([labels, derivatized])), u_material):
        if key not in materials:
            materials[key], next_id = {next_id}, next_id + 1
        known = sorted(materials[key])
        new_materials.append(known[int(u * len(known))])
    table = table.copy()
    table.loc[test, list(LABELS)] = labels
    table.loc[test, "derivatized"] = derivatized
    table.loc[test, "material"] = new_materials
    return table
