"""The data layer: read and validate a competition folder, multilabel folds, sample CSVs ->
(mass x time) images and their cache, per-sample features of the cached images.
May import lib.core only."""
