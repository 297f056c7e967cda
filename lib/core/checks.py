"""Checks of one numeric setting, shared by the settings of every family: a ValueError that
names the setting, never a TypeError from comparing a string with a number."""

from __future__ import annotations

import math
import numbers


def check_number(name: str, value, *, whole: bool = False, minimum: float | None = None,
                 above: float | None = None, below: float | None = None,
                 maximum: float | None = None) -> None:
    """ValueError naming ``name`` unless ``value`` is a finite real number (an integer when
    ``whole``; True/False never) with minimum <= value, above < value, value < below and
    value <= maximum (each bound only where given). The message says what the setting must
    be, e.g. "mlp_lr must be a finite number above 0, got inf"."""
    bounds = [(minimum, "of at least", lambda v, b: v >= b),
              (above, "above", lambda v, b: v > b),
              (below, "below", lambda v, b: v < b),
              (maximum, "at most", lambda v, b: v <= b)]
    bounds = [(bound, word, holds) for bound, word, holds in bounds if bound is not None]
    wanted = " and ".join(["a whole number" if whole else "a finite number"]
                          + [f"{word} {bound:g}" for bound, word, _ in bounds])
    wanted = wanted.replace(" and ", " ", 1)  # "a finite number above 0 and below 1"
    kind = numbers.Integral if whole else numbers.Real
    if (isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value)
            or not all(holds(value, bound) for bound, _, holds in bounds)):
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
