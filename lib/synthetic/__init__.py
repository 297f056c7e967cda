"""Synthetic stand-in for the competition data: folders laid out exactly like the real one.

The real GC-MS runs cannot be redistributed, so this package writes folders with the same files,
columns, value formats and label statistics, whose runs follow textbook electron-ionisation
chemistry: sharp GC peaks with characteristic fragment ions for organic families, broad
evolved-gas releases for minerals, helium carrier gas, air background, column bleed, detector
saturation and an unknown temperature ramp. Samples are replicate runs of a smaller set of
physical materials (same labels, compounds and method; different ramp stretch, heights, noise).
Signal strength, weak positives, replicates and look-alike contaminants are calibrated
(``scripts/calibrate_synthetic.py``) so that the organisers' logistic-regression benchmark
scores on the ``small`` profile about as it did on the real data. The test split's runs come
from other instrument settings and another derivatized share (a train-to-test shift whose
strength is a knob, ``--shift``; 0: i.i.d.; at most MAX_SHIFT), calibrated so that the
benchmark's test loss over its OOF loss is about the real data's. Each folder also gets
hidden answers that only scoring reads: ``truth.csv``, which ions every signal put where (see
``lib.synthetic.truth``), and ``test_labels.csv``, the test split's labels.

Parts: ``profiles`` (folder sizes), ``samples`` (labels, derivatization, materials),
``chemistry`` (spectra tables), ``materials`` (what a sample is made of), ``simulate`` (one
run and its truth), ``folder`` (writing), ``space`` (the disk a folder needs), ``cli`` (the
command line), ``truth`` (the truth file's format and reader).
May import lib.core only.

Usage: ``python -m lib.synthetic OUT_DIR --profile small --seed 0 [--shift S] [--limit N]``.
"""

from lib.synthetic.cli import main
from lib.synthetic.folder import (
    MARKER,
    MAX_SHIFT,
    TEST_LABELS,
    FolderRefusedError,
    format_run_csv,
    generate,
    generator_settings,
    sample_tasks,
    simulate_sample,
    write_truth,
)
from lib.synthetic.profiles import DEFAULT_SHIFT, PROFILES, Profile
from lib.synthetic.samples import (
    DERIVATIZED_FRACTION,
    draw_labels,
    expected_prevalence,
    sample_table,
    test_derivatized_fraction,
)
from lib.synthetic.simulate import (
    Instrument,
    shifted_instrument,
    simulate_run,
    simulate_run_with_truth,
)
from lib.synthetic.truth import ROLES, TRUTH_COLUMNS, TRUTH_FILE, read_truth

__all__ = [
    "DEFAULT_SHIFT", "DERIVATIZED_FRACTION", "MARKER", "MAX_SHIFT", "PROFILES", "ROLES",
    "TEST_LABELS",
    "TRUTH_COLUMNS", "TRUTH_FILE", "FolderRefusedError", "Instrument", "Profile",
    "generator_settings", "draw_labels", "expected_prevalence", "format_run_csv", "generate",
    "main", "read_truth", "sample_table", "sample_tasks", "shifted_instrument",
    "simulate_run", "simulate_run_with_truth", "simulate_sample", "test_derivatized_fraction",
    "write_truth",
]
