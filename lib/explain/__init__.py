"""Explanations of finished models: CAM maps (cam), occlusion (occlusion), feature
contributions (features), scoring against the synthetic truth (scoring), figures (plots), and
the workflow over run folders (explainer). May import every layer below it, and loads finished
models through lib.train.predict; never the training code (lib.train.fit, augment)."""
