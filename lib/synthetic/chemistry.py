"""Chemistry tables of the generator: electron-ionisation spectra (m/z -> relative intensity)
of the compounds behind each label, mineral gases, derivatization reagent, contaminants and
background gases. Textbook values, approximate; see shared reference/data.md."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Compound:
    """One substance: fragment ions (m/z -> relative intensity) and where it elutes.

    retention: fraction of the temperature ramp (0 = start, 1 = end) at which it elutes; the
    run's ramp turns it into a time.
    """

    name: str
    ions: dict[int, float]
    retention: float


_c = Compound


# Electron-ionisation fragments (approximate textbook spectra) per label, as GC peaks;
# in every library the common compounds come first (see _pick).
COMPOUNDS: dict[str, tuple[Compound, ...]] = {
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
DERIVATIZED_COMPOUNDS: dict[str, tuple[Compound, ...]] = {
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
AMINO_ACIDS_TBDMS: tuple[Compound, ...] = (
    _c("Gly", {246: 100, 218: 60, 147: 40, 73: 70}, 0.3),
    _c("Ala", {260: 100, 232: 70, 158: 50, 73: 60}, 0.32),
    _c("Val", {186: 100, 288: 60, 147: 20, 73: 60}, 0.37),
    _c("Leu", {200: 100, 302: 40, 147: 20, 73: 60}, 0.4),
    _c("Pro", {184: 100, 286: 40, 73: 60}, 0.42),
    _c("Phe", {234: 100, 302: 60, 336: 40, 73: 60}, 0.55),
)

# Evolved gases of minerals: broad releases instead of GC peaks, at the mineral's
# decomposition temperature.
MINERAL_GASES: tuple[Compound, ...] = (
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
REAGENT_PEAKS: tuple[Compound, ...] = (
    _c("TBDMS-OH", {75: 100, 73: 20, 77: 5}, 0.02),
    _c("MTBSTFA", {184: 100, 73: 70, 75: 30, 100: 20}, 0.05),
    _c("(TBDMS)2O", {189: 100, 147: 70, 73: 40, 75: 15}, 0.12),
    _c("N-methyltrifluoroacetamide", {127: 100, 58: 60, 69: 50}, 0.01),
    _c("TBDMS by-product", {115: 100, 73: 50, 75: 40, 133: 20}, 0.08),
    _c("siloxane by-product", {221: 100, 207: 40, 73: 30, 147: 30, 281: 15}, 0.25),
)
REAGENT_BACKGROUND = {73: 1.0, 75: 0.8, 147: 0.3}

# Unlabeled peaks of generic ions that appear in any run: (name, ions).
DISTRACTORS: tuple[tuple[str, dict[int, float]], ...] = (
    ("phthalate plasticiser", {149: 100, 167: 30, 279: 8, 57: 20}),
    ("cyclic siloxane D3", {207: 100, 191: 10, 96: 8}),
    ("cyclic siloxane D4", {281: 100, 73: 30, 265: 10}),
    ("generic 44/43/41", {44: 100, 43: 30, 41: 20}),
    ("generic 41/39/27", {41: 100, 39: 40, 27: 30}),
    ("generic 55/69/83", {55: 100, 69: 50, 83: 20}),
)

AIR = {18: 1.0, 17: 0.23, 28: 1.6, 32: 0.4, 40: 0.05, 44: 0.12}
BLEED = {207: 1.0, 73: 0.6, 281: 0.4, 191: 0.25, 133: 0.2, 96: 0.15}
