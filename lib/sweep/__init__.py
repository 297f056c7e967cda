"""Sweeps: a plan's runs x folds as Dask tasks, each a papermill execution into its run folder;
local, existing and batch-queue (dask-jobqueue) clusters; the workers' preflight.
``python -m lib.sweep PLAN``. May import lib.core, lib.data and lib.runs; never lib.models or
lib.train (a run's notebook imports those, in its own process)."""
