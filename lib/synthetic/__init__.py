"""Synthetic stand-in for the competition data: folders laid out exactly like the real one.

The real GC-MS runs cannot be redistributed, so this package writes folders with the same files,
columns, value formats and label statistics, whose runs follow textbook electron-ionisation
chemistry: sharp GC peaks with characteristic fragment ions for organic families, broad
evolved-gas releases for minerals, helium carrier gas, air background, column bleed, detector
saturation and an unknown temperature ramp. Samples are replicate runs of a smaller set of
physical materials (same labels, compounds and method; different ramp stretch, heights, noise).
Signal strength, weak positives, replicates and look-alike contaminants are calibrated
(``scripts/calibrate_synthetic.py``) so that the organisers' logistic-regression benchmark
scores on the ``small`` profile about as it did on the real data. Each folder also gets
``truth.csv``: which ions every signal put where (see ``lib.synthetic.truth``).

Parts: ``profiles`` (folder sizes), ``samples`` (labels, derivatization, materials),
``chemistry`` (spectra tables), ``simulate`` (one run and its truth), ``folder`` (writing),
``truth`` (the truth file's format and reader).

Usage: ``python -m lib.synthetic OUT_DIR --profile small --seed 0 [--limit N]``.
"""

from lib.synthetic.folder import (
    MARKER,
    FolderRefusedError,
    format_run_csv,
    generate,
    generator_settings,
    main,
    write_truth,
)
from lib.synthetic.profiles import PROFILES, Profile
from lib.synthetic.samples import (
    DERIVATIZED_FRACTION,
    draw_labels,
    expected_prevalence,
    sample_table,
)
from lib.synthetic.simulate import simulate_run, simulate_run_with_truth
from lib.synthetic.truth import ROLES, TRUTH_COLUMNS, TRUTH_FILE, read_truth

__all__ = [
    "DERIVATIZED_FRACTION", "MARKER", "PROFILES", "ROLES", "TRUTH_COLUMNS", "TRUTH_FILE",
    "FolderRefusedError", "Profile", "generator_settings",
    "draw_labels", "expected_prevalence", "format_run_csv", "generate", "main", "read_truth",
    "sample_table", "simulate_run", "simulate_run_with_truth", "write_truth",
]
