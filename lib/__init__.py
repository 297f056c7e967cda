"""Mars Spectrometry 2 (GC-MS) toolkit: data, images, folds, models, training, ensembles."""

__version__ = "0.1.0"
