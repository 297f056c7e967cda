"""Run folders and how they are made: the folder layout (file names, atomic artifacts, DONE,
data fingerprint), opening and finishing one fold's run, plans of runs, papermill's I/O handler
and the ``ipc`` engine. Reads and writes files; knows no model.
May import lib.core and lib.data."""
