"""Training and prediction of CNN runs: settings, augmentation, device and precision, fitting
one fold, checkpoints, and predicting with any finished run (CNN or feature model).
May import lib.core, lib.data, lib.runs and lib.models."""
