"""The models: CNN heads on timm backbones with TTA (cnn), 1D sequence backbones (seq1d), and
the feature learners (logistic regression, LightGBM, MLP) with their settings and model file.
May import lib.core, lib.data and lib.runs (file names only)."""
