"""How much disk a synthetic folder needs, checked before the generator writes anything."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lib.core.files import NotEnoughSpaceError, check_free_space
from lib.synthetic.materials import RUN_WINDOWS
from lib.synthetic.profiles import Profile

__all__ = ["BYTES_PER_ROW", "NotEnoughSpaceError", "check_space", "estimated_bytes"]

# estimated_bytes: a run's CSV takes about this many bytes per row (time,mass,intensity with
# 6-decimal time and mass; measured on small and medium, 2026-12-06: 24-25)
BYTES_PER_ROW = 25


def estimated_bytes(profile: Profile, n_samples: int) -> int:
    """About how many bytes ``n_samples`` runs of ``profile`` take on disk: each run as long
    as the mean of the methods' recording windows (lib.synthetic.materials.RUN_WINDOWS), at the
    profile's scan interval (at least min_scans scans), sweeping masses 2..max_mass, at
    BYTES_PER_ROW bytes a row. Within about 10 % of what small and medium write."""
    minutes = np.mean([(e_lo + e_hi - s_lo - s_hi) / 2
                       for (s_lo, s_hi), (e_lo, e_hi) in RUN_WINDOWS.values()])
    scans = max(minutes / profile.scan_interval_min, profile.min_scans) + 1
    return int(n_samples * scans * (profile.max_mass - 1) * BYTES_PER_ROW)


def check_space(out: Path, profile: Profile, n_samples: int) -> None:
    """NotEnoughSpaceError when the disk that will hold ``out`` has less free space than
    estimated_bytes(profile, n_samples) and a tenth more, before anything is written."""
    check_free_space(out, estimated_bytes(profile, n_samples) * 1.1, "the folder",
                     "free some space or write it elsewhere (--limit N writes fewer samples)")
