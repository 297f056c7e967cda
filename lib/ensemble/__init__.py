"""The ensemble: collect finished runs into models (files only), greedy selection of logit
averages, the submission, the organisers' benchmark and the prior, the hidden-test leaderboard.
May import lib.core, lib.data, lib.synthetic and lib.runs; never lib.models or lib.train (it
sees only files; 05 passes the model-file check in)."""
