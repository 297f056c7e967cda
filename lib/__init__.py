"""Mars Spectrometry 2 (GC-MS) toolkit: the functions the notebooks import.

Subpackages, bottom layer first; each imports only the ones above it in this list (the
import-linter contracts in pyproject.toml say so, and `make test` checks them):

    core       vocabulary, paths, atomic files, log loss, logits, families by name
    data       the competition folder, folds, images and their cache, features
    synthetic  the built-in synthetic competition folders (python -m lib.synthetic)
    runs       run folders, plans, papermill I/O and engine (files; knows no model)
    models     CNN heads on timm, seq1d, the feature learners
    train      fitting, checkpoints, predicting with finished runs
    sweep      plans -> Dask tasks on local or batch clusters (python -m lib.sweep)
    ensemble   collecting runs, greedy selection, submission, baselines, leaderboard
    explain    CAM, occlusion, feature contributions, scoring against the truth
    reports    figures and the HTML report (python -m lib.reports)
"""

__version__ = "0.1.0"
