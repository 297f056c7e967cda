"""Sizes of synthetic folders: from a few seconds' worth for tests to the real data's size."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from lib.core.schema import SPLITS

# Strength of the train-to-test shift every profile gets by default (0: an i.i.d. test split),
# calibrated with scripts/calibrate_synthetic.py on `small` (docs/synthetic-data.md).
DEFAULT_SHIFT = 1.75
# How often a positive label shows only near the noise floor, and how often a negative label's
# ions appear as a contaminant trace (lib.synthetic.materials): the defaults are small's
# calibration; the profiles at the real counts are made harder (docs/synthetic-data.md).
DEFAULT_P_WEAK = 0.08
DEFAULT_CONFUSER_RATE = 0.1
# medium and full: calibrated on medium at the real counts (scripts/calibrate_synthetic.py
# --with-val, seeds 7-10): the benchmark's OOF loss near the real 0.177, test / OOF near 1.3
REAL_COUNTS_P_WEAK = 0.29
REAL_COUNTS_SHIFT = 0.75


@dataclass(frozen=True)
class Profile:
    """Size of a synthetic folder.

    n_train, n_val, n_test: samples per split.
    scan_interval_min: minutes between mass sweeps (real data: ~0.02).
    max_mass: last integer m/z of every sweep (real data: ~535).
    min_peak_sigma_scans: GC peaks are widened to at least this many scan intervals (Gaussian
        sigma) so that coarse profiles still sample every peak instead of stepping over it.
    min_scans: short runs scan faster so that every run has at least this many scans; on a
        coarse profile this keeps short runs from leaving empty time bins in the 192-bin
        images (real runs have 4+ scans per bin). 0: the same interval for every run.
    shift: strength of the train-to-test shift (lib.synthetic.simulate.shifted_instrument,
        lib.synthetic.samples.sample_table); the generator's --shift overrides it.
    p_weak: chance that a positive label shows only near the noise floor (in [0, 1]).
    confuser_rate: chance that a negative label's ions appear as a contaminant trace ([0, 1]).
    """

    n_train: int
    n_val: int
    n_test: int
    scan_interval_min: float
    max_mass: int
    min_peak_sigma_scans: float = 0.7
    min_scans: int = 0
    shift: float = DEFAULT_SHIFT
    p_weak: float = DEFAULT_P_WEAK
    confuser_rate: float = DEFAULT_CONFUSER_RATE

    @property
    def split_sizes(self) -> dict[str, int]:
        """Samples per split, in SPLITS order."""
        return dict(zip(SPLITS, (self.n_train, self.n_val, self.n_test), strict=True))


PROFILES: dict[str, Profile] = {
    # unit tests: a few thousand rows per run, the whole folder in about a second
    "tiny": Profile(n_train=24, n_val=6, n_test=6, scan_interval_min=0.5, max_mass=90),
    # CPU demo: coarse scans (at least 240 per run) and masses to 300: about 650 MB
    "small": Profile(n_train=240, n_val=80, n_test=80, scan_interval_min=0.2, max_mass=300,
                     min_scans=240),
    # real counts at small's resolution (scans, masses to 300): about 2.6 GB; harder and less
    # shifted than small, calibrated at the real counts (docs/synthetic-data.md)
    "medium": Profile(n_train=809, n_val=312, n_test=463, scan_interval_min=0.2, max_mass=300,
                      min_scans=240, shift=REAL_COUNTS_SHIFT, p_weak=REAL_COUNTS_P_WEAK),
    # real counts, scan rate and mass range: 175k-1M rows per run (medium's calibration)
    "full": Profile(n_train=809, n_val=312, n_test=463, scan_interval_min=0.02, max_mass=535,
                    shift=REAL_COUNTS_SHIFT, p_weak=REAL_COUNTS_P_WEAK),
}


def get_profile(profile: Profile | str) -> Profile:
    """A Profile, or the one of PROFILES with that name (KeyError listing the names)."""
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        raise KeyError(f"unknown synthetic profile {profile!r}; known: {sorted(PROFILES)}")
    return PROFILES[profile]


def check_profile(profile: Profile | str) -> Profile:
    """The Profile of a name of PROFILES, or ``profile`` itself once its fields are checked;
    ValueError naming the unknown name or the field and its allowed values."""
    if not isinstance(profile, Profile):
        try:
            return get_profile(profile)
        except KeyError as error:
            raise ValueError(error.args[0]) from None
    counts = {f.name: getattr(profile, f.name) for f in fields(Profile)
              if f.name in ("n_train", "n_val", "n_test", "max_mass", "min_scans")}
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"profile {name} must be an integer, 0 or more, got {value!r}")
    if profile.n_train + profile.n_val + profile.n_test == 0:
        raise ValueError("profile has no samples (n_train + n_val + n_test is 0)")
    if profile.max_mass < 2:
        raise ValueError(f"profile max_mass must be at least 2, got {profile.max_mass}")
    for name in ("scan_interval_min", "min_peak_sigma_scans"):
        value = getattr(profile, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"profile {name} must be a positive number, got {value!r}")
    if not (isinstance(profile.shift, (int, float)) and math.isfinite(profile.shift)
            and profile.shift >= 0):
        raise ValueError(f"profile shift must be a finite number, 0 or more, "
                         f"got {profile.shift!r}")
    for name in ("p_weak", "confuser_rate"):
        value = getattr(profile, name)
        if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                and 0 <= value <= 1):
            raise ValueError(f"profile {name} must be a number in [0, 1], got {value!r}")
    return profile


def profile_key(profile: Profile | str) -> str | dict:
    """How a folder's MARKER names its profile: the name in PROFILES (also for a Profile equal
    to a named one), else the Profile's fields as a dict."""
    if not isinstance(profile, Profile):
        return profile
    named = [name for name, known in PROFILES.items() if known == profile]
    return named[0] if named else asdict(profile)
