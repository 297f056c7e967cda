"""Names shared by every module: the label order, the metadata columns, the splits."""

LABELS: tuple[str, ...] = (
    "aromatic",
    "hydrocarbon",
    "carboxylic_acid",
    "nitrogen_bearing_compound",
    "chlorine_bearing_compound",
    "sulfur_bearing_compound",
    "alcohol",
    "other_oxygen_bearing_compound",
    "mineral",
)
N_LABELS = len(LABELS)

METADATA_COLUMNS: tuple[str, ...] = (
    "sample_id",
    "split",
    "derivatized",
    "features_path",
    "features_md5_hash",
)
SPLITS: tuple[str, ...] = ("train", "val", "test")
SAMPLE_COLUMNS: tuple[str, ...] = ("time", "mass", "intensity")
HELIUM_MASS = 4

# A few textbook electron-ionisation ions per label, for plots of selected-ion traces.
CHARACTERISTIC_IONS: dict[str, list[int]] = {
    "aromatic": [78, 91, 128],
    "hydrocarbon": [43, 57, 71, 85],
    "carboxylic_acid": [60, 73, 45],
    "nitrogen_bearing_compound": [30, 41, 79],
    "chlorine_bearing_compound": [35, 36, 38, 50, 52],
    "sulfur_bearing_compound": [34, 64, 76],
    "alcohol": [31, 45],
    "other_oxygen_bearing_compound": [74, 87, 68],
    "mineral": [18, 44, 64, 32],
}

# short label names for tables and figures
SHORT = {
    "aromatic": "aromatic",
    "hydrocarbon": "hydrocarbon",
    "carboxylic_acid": "carboxylic",
    "nitrogen_bearing_compound": "nitrogen",
    "chlorine_bearing_compound": "chlorine",
    "sulfur_bearing_compound": "sulfur",
    "alcohol": "alcohol",
    "other_oxygen_bearing_compound": "other O",
    "mineral": "mineral",
}
