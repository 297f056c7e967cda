"""The foundation: the competition's vocabulary (labels, columns, masses), project paths,
atomic file writes, log loss, probabilities <-> logits, model families by name and precision
labels. Pure Python and NumPy; imports nothing of lib (the bottom layer)."""
