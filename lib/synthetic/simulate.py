"""Simulation of one GC-MS run, and the record of what it put there (its ground truth).

A run is a material's signals (label compounds, contaminant look-alikes of negative labels,
unlabeled peaks) rendered onto a scan x integer-mass canvas with helium, air, column bleed and,
in derivatized runs, reagent peaks, then read by a noisy, saturating detector. Samples are
replicate runs of materials: same labels, compounds and method; different ramp, heights, noise.
An Instrument other than the default one stands for other instrument settings (the test split's
runs under a train-to-test shift, see shifted_instrument).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lib.core.schema import HELIUM_MASS
from lib.synthetic.chemistry import (
    AIR,
    BLEED,
    REAGENT_BACKGROUND,
    REAGENT_PEAKS,
)
from lib.synthetic.materials import (
    DISTRACTOR_MEAN,
    RAMPS,
    REAGENT_AMPLITUDE,
    RUN_WINDOWS,
    Material,
    Signal,
    distractor_signals,
    draw_material,
    log_uniform,
)
from lib.synthetic.profiles import Profile, get_profile
from lib.synthetic.truth import TRUTH_COLUMNS, unseen_positive_rows

RAMP_JITTER = 0.03  # relative change of the ramp duration between replicate runs


RUN_WARP = 0.05  # log-normal scatter of the ramp knot increments between replicate runs


RETENTION_JITTER = 0.015  # per-run shift of retentions (ramp fraction)


HEIGHT_JITTER = 0.3  # per-run log-normal scatter of peak heights between replicates


# The train-to-test shift at strength 1 (shifted_instrument): per-run log-factors, drawn
# uniformly in these ranges and multiplied by the strength. Ramps run longer and end hotter,
# the scan is faster, the detector noisier and the background higher than for training runs.
SHIFT_LOG_RAMP = (0.05, 0.25)  # ramp duration


SHIFT_LOG_END_TEMPERATURE = (-0.05, 0.15)  # ramp end temperature (relative)


SHIFT_LOG_SCAN_INTERVAL = (-0.4, -0.1)  # minutes between sweeps


SHIFT_LOG_NOISE = (0.3, 1.0)  # detector noise floor


SHIFT_LOG_BACKGROUND = (0.2, 1.0)  # helium, air and column bleed


_HALF_WIDTH = float(np.sqrt(2 * np.log(2)))  # half width at half height of a Gaussian / sigma


@dataclass(frozen=True)
class Instrument:
    """Settings of the instrument a run is recorded on, as factors of the training runs'.

    ramp_scale: the temperature ramp's duration; end_temperature: the temperature the ramp
    ends at (relative: compounds elute earlier above 1, later below); scan_interval_scale:
    minutes between sweeps; noise_scale: the detector's noise floor; background_scale:
    helium, air and column bleed. The default (all 1) is the training runs' instrument and
    simulates exactly the runs it always did.
    """

    ramp_scale: float = 1.0
    end_temperature: float = 1.0
    scan_interval_scale: float = 1.0
    noise_scale: float = 1.0
    background_scale: float = 1.0


def shifted_instrument(rng: np.random.Generator, strength: float) -> Instrument:
    """The instrument of one run under a train-to-test shift of ``strength`` (0: the training
    instrument; 1: each log-factor drawn from its SHIFT_LOG_* range). rng: a stream of its own,
    so that the run's other draws stay those of the unshifted run."""
    if strength < 0:
        raise ValueError(f"shift strength must be 0 or more, got {strength}")
    ranges = (SHIFT_LOG_RAMP, SHIFT_LOG_END_TEMPERATURE, SHIFT_LOG_SCAN_INTERVAL,
              SHIFT_LOG_NOISE, SHIFT_LOG_BACKGROUND)
    return Instrument(*(float(np.exp(strength * rng.uniform(lo, hi))) for lo, hi in ranges))


class _Canvas:
    """Intensity grid of one run (scan x integer mass) that signals are added onto, and the
    record of every signal added (the run's ground truth).

    times: (n_scans,) minutes (scan_interval: their median spacing); masses: (n_masses,)
    integer m/z of the sweep; gain: (n_masses,) detector sensitivity (heavier ions are seen
    less); ramp_times, ramp_temps: knots of the run's monotone temperature ramp (minutes ->
    ramp fraction 0..1); grid: (n_scans, n_masses) float counts/s; truth: one tuple per
    signal x ion (x label), in TRUTH_COLUMNS order without sample_id.
    """

    def __init__(self, times: np.ndarray, masses: np.ndarray, gain: np.ndarray,
                 ramp_times: np.ndarray, ramp_temps: np.ndarray):
        self.times = times
        self.scan_interval = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
        self.masses = masses
        self.gain = gain
        self.ramp_times = ramp_times
        self.ramp_temps = ramp_temps
        # isothermal before and after the ramp
        self.temperature = np.interp(times, ramp_times, ramp_temps)
        self.grid = np.zeros((len(times), len(masses)))
        self.truth: list[tuple] = []
        self.misses: list[tuple[str, str]] = []  # (label, why) of label signals left unseen
        self.n_signals = 0

    def _columns(self, ions: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
        """Grid columns and relative intensities of the ions this sweep covers."""
        mz = np.fromiter(ions.keys(), dtype=int)
        rel = np.fromiter(ions.values(), dtype=float) / max(ions.values())
        col = mz - self.masses[0]
        ok = (col >= 0) & (col < len(self.masses))
        return col[ok], rel[ok] * self.gain[col[ok]]

    def time_at(self, temperature: float) -> float:
        """Time at which the ramp reaches the given fraction; may lie outside the recording."""
        return float(np.interp(temperature, self.ramp_temps, self.ramp_times))

    def add_peak(self, ions: dict[int, float], center: float, sigma: float, tail: float,
                 height: float, *, role: str, compound: str,
                 families: tuple[str, ...] = ()) -> None:
        """A tailing Gaussian elution profile (sigma minutes, right side sigma * tail)."""
        lo, hi = np.searchsorted(self.times, [center - 6 * sigma, center + 6 * sigma * tail])
        if hi <= lo:
            self._miss(role, families, f"{compound} at {center:.2f} min, outside the recording")
            return
        col, rel = self._columns(ions)
        dt = self.times[lo:hi] - center
        shape = np.exp(-0.5 * (dt / np.where(dt < 0, sigma, sigma * tail)) ** 2)
        self.grid[lo:hi, col] += height * shape[:, None] * rel[None, :]
        self._record(ions, role, families, compound, height, center,
                     center - _HALF_WIDTH * sigma, center + _HALF_WIDTH * sigma * tail)

    def add_trace(self, ions: dict[int, float], curve: np.ndarray, *, role: str,
                  compound: str) -> None:
        """A slowly varying background: curve (n_scans,) times each ion's share."""
        col, rel = self._columns(ions)
        self.grid[:, col] += curve[:, None] * rel[None, :]
        above_half = self.times[curve >= 0.5 * curve.max()]
        self._record(ions, role, (), compound, float(curve.max()),
                     float(self.times[np.argmax(curve)]), above_half[0], above_half[-1])

    def _miss(self, role: str, families: tuple[str, ...], why: str) -> None:
        """Note why a signal of a positive label left no truth row (lib.synthetic.truth)."""
        if role == "label":
            self.misses.extend((label, f"{why} ({self.times[0]:.2f}-{self.times[-1]:.2f} min, "
                                f"m/z {self.masses[0]}-{self.masses[-1]})") for label in families)

    def _record(self, ions: dict[int, float], role: str, families: tuple[str, ...],
                compound: str, height: float, t_peak: float, t_start: float,
                t_end: float) -> None:
        """Truth rows of one signal: the ions this sweep covers, with the part of the
        half-height window that lies inside the recording (none when it lies outside)."""
        t_start, t_end = max(t_start, self.times[0]), min(t_end, self.times[-1])
        swept = {mz: v for mz, v in ions.items() if self.masses[0] <= mz <= self.masses[-1]}
        if t_start > t_end:
            self._miss(role, families, f"{compound} at {t_peak:.2f} min, its half-height window "
                       f"outside the recording")
        elif not swept:
            self._miss(role, families, f"{compound}'s ions outside the mass sweep")
        if t_start > t_end or not swept:
            return
        signal, top = self.n_signals, max(ions.values())
        self.n_signals += 1
        # a label row per family the signal is evidence of; other roles name the family only
        labelled = families if role == "label" else ("",)
        family = families[0] if families and role != "label" else ""
        for mz, value in swept.items():
            for label in labelled:
                self.truth.append((signal, role, label, label or family, compound, int(mz),
                                   round(value / top, 4), round(height), round(t_peak, 6),
                                   round(t_start, 6), round(t_end, 6)))


def _make_canvas(rng: np.random.Generator, material: Material, profile: Profile,
                 instrument: Instrument) -> _Canvas:
    """Scan times, a random monotone temperature ramp and the mass sweep of one run."""
    (s_lo, s_hi), (e_lo, e_hi) = RUN_WINDOWS[material.kind]
    start, end = rng.uniform(s_lo, s_hi), rng.uniform(e_lo, e_hi)
    dt = profile.scan_interval_min
    if profile.min_scans:
        dt = min(dt, (end - start) / profile.min_scans)
    dt *= instrument.scan_interval_scale
    n_scans = int((end - start) / dt) + 1
    # slightly irregular scan spacing, as on the real instrument
    times = start + np.concatenate([[0.0], np.cumsum(dt * rng.uniform(0.98, 1.02, n_scans - 1))])
    # the material's ramp, slightly stretched and bent again per run: replicates elute close
    # to, but not exactly at, the same times
    ramp_start, ramp_end = RAMPS[material.kind]
    duration = ((ramp_end - ramp_start) * material.ramp_scale * instrument.ramp_scale
                * rng.uniform(1 - RAMP_JITTER, 1 + RAMP_JITTER))
    ramp_times = ramp_start + rng.uniform(-0.1, 0.1) + np.linspace(0.0, duration, 7)
    ramp_temps = np.concatenate([[0.0], np.cumsum(np.diff(material.ramp)
                                                  * rng.lognormal(0.0, RUN_WARP, 6))])
    masses = np.arange(material.first_mass, profile.max_mass + 1)
    gain = (masses / 100.0) ** -rng.uniform(0.0, 0.4)
    ramp_temps = ramp_temps / ramp_temps[-1] * instrument.end_temperature
    return _Canvas(times, masses, gain, ramp_times, ramp_temps)


def _render(rng: np.random.Generator, canvas: _Canvas, signal: Signal, noise: float,
            shift: float, profile: Profile) -> None:
    """Add one signal to the run: retention shifted per run, height scattered per run."""
    center = canvas.time_at(signal.retention + shift + rng.normal(0.0, RETENTION_JITTER / 3))
    if signal.broad:
        sigma, tail = rng.uniform(0.35, 0.8), rng.uniform(1.0, 1.8)
    else:
        # GC peaks are 1.5-4 s (sigma) wide, widened on coarse profiles to stay sampled
        floor = profile.min_peak_sigma_scans * canvas.scan_interval
        sigma, tail = max(rng.uniform(1.5, 4.0) / 60.0, floor), rng.uniform(1.0, 2.5)
    height = signal.height * (noise if signal.weak else 1.0) * rng.lognormal(0.0, HEIGHT_JITTER)
    canvas.add_peak(signal.ions, center, sigma, tail, height, role=signal.role,
                    families=signal.families, compound=signal.compound)


def _add_background(rng: np.random.Generator, canvas: _Canvas, derivatized: bool,
                    level: float = 1.0) -> None:
    """Helium carrier, air rising with temperature, column bleed (all three times ``level``),
    reagent (derivatized runs)."""
    n = len(canvas.times)
    temp = canvas.temperature
    helium = log_uniform(rng, 3e5, 1e7) * rng.lognormal(0.0, 0.02, n)
    canvas.add_trace({HELIUM_MASS: 1.0}, level * helium, role="background",
                     compound="helium carrier")
    rise = log_uniform(rng, 0.5, 10) * temp ** rng.uniform(1.5, 4)
    air = log_uniform(rng, 1e4, 1e6) * (1 + rise)
    canvas.add_trace(AIR, level * air, role="background", compound="air")
    if rng.random() < 0.85:
        k = rng.uniform(2.0, 6.0)
        bleed = log_uniform(rng, 1e6, 3e7) * np.expm1(k * temp) / np.expm1(k)
        canvas.add_trace(BLEED, level * bleed, role="background", compound="column bleed")
    if derivatized:
        canvas.add_trace(REAGENT_BACKGROUND, np.full(n, log_uniform(rng, 1e4, 1e6)),
                         role="reagent", compound="reagent background")
        extra = rng.choice(np.arange(2, len(REAGENT_PEAKS)), size=rng.integers(1, 5),
                           replace=False)
        for i in (0, 1, *extra):
            peak = REAGENT_PEAKS[i]
            center = canvas.time_at(peak.retention + rng.normal(0.0, RETENTION_JITTER))
            canvas.add_peak(peak.ions, center, rng.uniform(0.03, 0.15), rng.uniform(1.0, 3.0),
                            log_uniform(rng, *REAGENT_AMPLITUDE), role="reagent",
                            compound=peak.name)


def _detector(rng: np.random.Generator, grid: np.ndarray, noise: float) -> np.ndarray:
    """Counts as the detector reports them: noise floor, shot noise, saturation, integers.

    grid: (n_scans, n_masses) true intensities. Returns int64 counts, all >= 1.
    """
    n_masses = grid.shape[1]
    floor = noise * log_uniform(rng, 0.5, 2.0, n_masses)[None, :]
    counts = floor * rng.lognormal(0.0, 0.35, grid.shape)
    counts += grid * rng.lognormal(0.0, 0.05, grid.shape)
    # saturation: flat plateaus at a per-run ceiling, with occasional drop-outs inside them
    ceiling = log_uniform(rng, 2e8, 1.7e9)
    saturated = counts > ceiling
    counts[saturated] = ceiling
    dropout = saturated & (rng.random(grid.shape) < 0.08)
    counts[dropout] = ceiling * rng.uniform(0.02, 0.5, int(dropout.sum()))
    return np.maximum(np.rint(counts), 1).astype(np.int64)


def simulate_run_with_truth(
    rng: np.random.Generator,
    labels: np.ndarray,
    derivatized: bool,
    profile: Profile | str,
    material_rng: np.random.Generator | None = None,
    instrument: Instrument | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate one GC-MS run and record what it put there.

    labels: (9,) 0/1 in LABELS order. material_rng draws what replicate runs of one physical
    sample share (method, compounds, their strengths, contaminants); rng draws everything
    specific to this run (ramp, noise, background, extra distractors). Without material_rng,
    rng draws both. instrument: the settings the run is recorded with (default: the training
    runs'; see Instrument). Returns (run, truth):

    run: columns time, mass, intensity (n_scans * n_masses rows): time in minutes and mass in
    m/z rounded to 6 decimals, intensity int64 >= 1; one sweep per time value, masses
    ascending inside it.
    truth: TRUTH_COLUMNS without sample_id, one row per signal x ion covered by the sweep
    (x label for a signal that is evidence of two labels), and one row without an ion for each
    positive label the run cannot show, its note saying why; see lib.synthetic.truth.
    """
    profile = get_profile(profile)
    labels = np.asarray(labels).astype(bool)
    material = draw_material(material_rng or rng, labels, derivatized, p_weak=profile.p_weak,
                             confuser_rate=profile.confuser_rate)
    instrument = instrument or Instrument()
    canvas = _make_canvas(rng, material, profile, instrument)
    noise = log_uniform(rng, 5e2, 4e3) * instrument.noise_scale
    _add_background(rng, canvas, derivatized, instrument.background_scale)
    shift = rng.normal(0.0, RETENTION_JITTER)  # column/flow drift moves every peak together
    for signal in (*material.signals, *distractor_signals(rng, DISTRACTOR_MEAN / 2)):
        _render(rng, canvas, signal, noise, shift, profile)
    intensity = _detector(rng, canvas.grid, noise)
    n_scans, n_masses = intensity.shape
    # readings scatter around the integer: a per-run calibration drift plus per-reading noise,
    # kept inside +-0.49 so no reading sits on .5 and sweeps stay ascending
    drift = rng.normal(0.0, 0.03) + rng.normal(0.0, 0.05) * canvas.masses / profile.max_mass
    jitter = np.clip(drift[None, :] + rng.normal(0.0, 0.12, (n_scans, n_masses)), -0.49, 0.49)
    run = pd.DataFrame({
        "time": np.repeat(np.round(canvas.times, 6), n_masses),
        "mass": np.round(canvas.masses[None, :] + jitter, 6).ravel(),
        "intensity": intensity.ravel(),
    })
    truth = pd.DataFrame(canvas.truth, columns=list(TRUTH_COLUMNS[1:-1])).assign(note="")
    unseen = unseen_positive_rows(labels, truth, canvas.misses)
    if len(unseen):
        truth = pd.concat([truth, unseen], ignore_index=True)
    return run, truth.astype({"signal": "Int64", "mz": "Int64", "height": "Int64"})


def simulate_run(
    rng: np.random.Generator,
    labels: np.ndarray,
    derivatized: bool,
    profile: Profile | str,
    material_rng: np.random.Generator | None = None,
    instrument: Instrument | None = None,
) -> pd.DataFrame:
    """The run of simulate_run_with_truth (columns time, mass, intensity), without its truth."""
    return simulate_run_with_truth(rng, labels, derivatized, profile, material_rng,
                                   instrument)[0]
