"""Sweeps: a plan's runs x folds, one Dask task per run, each a papermill execution of the
training notebook into its run folder.

    python -m lib.sweep params/plans/demo.yaml [--folds 0,1,2] [--workers N] [--data-dir D]
    python -m lib.sweep PLAN --runs-per-gpu 2                       # several runs share a GPU
    python -m lib.sweep PLAN --scheduler tcp://HOST:8786             # an existing Dask cluster
    python -m lib.sweep PLAN --cluster params/clusters/slurm.yaml    # a batch queue (dask-jobqueue)

Dask schedules: without an address a ``distributed.LocalCluster`` of worker processes runs on
this machine (one per GPU of ``--gpus``, default all, each pinned by its nanny with
CUDA_VISIBLE_DEVICES; on CPU ``--workers`` of them sharing the cores) and is closed at the end.
GPU workers advertise the resource ``GPU=1`` and each run asks for a ``1 / runs_per_gpu`` share
of it (lib.sweep.local.gpu_share). The runs' device is decided once, here: ``auto`` becomes ``cuda``
when the workers advertise GPUs, else ``cpu``; runs that need CUDA are checked on every worker
before anything trains, and never fall back to the CPU.

Finished runs (DONE) are skipped; interrupted ones start again from scratch. A run whose
notebook fails writes FAILED (cell, exception) and is not retried; a run whose worker dies is
rescheduled by Dask on another worker. A per-run lock keeps two sweeps from training the same
run; a sweep that finds a run held waits for it. The sweep ends with a summary table (which
worker ran what) and exit status 1 if any run failed or is stale. Ctrl-C cancels queued runs,
stops running ones (their papermill and kernel processes end, the folders stay unfinished)
and prints the summary.
"""

from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from lib.core.files import atomic_write_text
from lib.core.paths import REPO_ROOT
from lib.runs.plans import (
    NOTEBOOKS,
    RunSpec,
    run_parameters,
)
from lib.runs.run_folder import DONE, FAILED, is_done, notebook_finished, read_metrics

STARTED = "attempts.txt"  # "start <time> worker <name>" and "end <time>" of every attempt


STOP_POLL_SECONDS = 1.0


def execute_run(spec: RunSpec, overrides: dict, fingerprints: dict[str, str],
                env: dict[str, str | None] | None = None, should_stop=None,
                precision: str | None = None) -> tuple[str, str]:
    """Run one spec through papermill unless finished. Returns (status, detail), status one of
    "done" (already finished), "ran", "failed", "stale" (finished with other data, parameters,
    device or precision: left as it is, and reported) or "stopped" (``should_stop()`` became
    true: papermill and its kernel were ended, the folder stays unfinished).

    fingerprints: {data_dir: data_fingerprint} of the data the runs must see; env: variables
    for papermill's process (None removes one); precision: what this run would compute in
    here ("bf16", "tf32", "fp32"; None: not known, not compared).
    """
    run_dir = spec.run_dir
    wanted = run_parameters(spec, overrides)
    if is_done(run_dir) and _notebook_kept(spec):
        _clear_scratch(run_dir)
        return _finished_status(run_dir, wanted, fingerprints, precision)
    run_dir.mkdir(parents=True, exist_ok=True)
    with _run_lock(run_dir, should_stop) as held:
        if not held:
            return "stopped", "stopped while another sweep held the run"
        if is_done(run_dir):
            if _notebook_kept(spec):  # finished by the sweep that held the lock
                return _finished_status(run_dir, wanted, fingerprints, precision)
            # DONE beside an executed notebook that was never saved after its last cell: the
            # attempt was killed as it finished, so the run is not trusted and trains again
            (run_dir / DONE).unlink()
        return _train(spec, wanted, env or {}, should_stop)


def _train(spec: RunSpec, parameters: dict, env: dict[str, str | None], should_stop
           ) -> tuple[str, str]:
    run_dir = spec.run_dir
    (run_dir / FAILED).unlink(missing_ok=True)
    # Every temporary file of the attempt (parameters, kernel connection files, papermill's
    # log) lives in run_dir/.tmp, removed at the end and, after a killed attempt, by the next.
    scratch = run_dir / ".tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    params_file, log = scratch / "params.yaml", scratch / "papermill.log"
    params_file.write_text(yaml.safe_dump(parameters))
    started = time.time()
    environment = _environment(env, scratch)
    visible = environment.get("CUDA_VISIBLE_DEVICES", "(unset)")
    with open(run_dir / STARTED, "a") as record:  # one line per attempt, and one at its end
        record.write(f"start {started} worker {_worker_name()} "
                     f"CUDA_VISIBLE_DEVICES={visible}\n")
    command = [sys.executable, "-m", "lib.runs.engine", str(NOTEBOOKS / spec.notebook),
               str(run_dir / spec.notebook), "-f", str(params_file), "--kernel", "python3",
               "--engine", "ipc", "--no-progress-bar", "--log-level", "ERROR"]
    try:
        with open(log, "w") as stderr:
            # its own session: a Ctrl-C at the terminal reaches the sweep, which stops it
            process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                       stderr=stderr, preexec_fn=_die_with_parent,
                                       start_new_session=True, env=environment)
            next_check = time.time() + STOP_POLL_SECONDS
            while process.poll() is None:
                if should_stop is not None and time.time() >= next_check:
                    if should_stop():
                        end_process_tree(process)
                        return "stopped", "stopped by the user (Ctrl-C): left unfinished"
                    next_check = time.time() + STOP_POLL_SECONDS
                time.sleep(0.1)
        errors = log.read_text()
        minutes = (time.time() - started) / 60
        if process.returncode == 0 and is_done(run_dir):
            return "ran", f"{minutes:.1f} min"
        error = _error_summary(errors) or f"papermill exit {process.returncode}"
        atomic_write_text(run_dir / FAILED, f"{spec.label}\n{error}\n\n{errors[-4000:]}")
        return "failed", error
    finally:
        with open(run_dir / STARTED, "a") as record:
            record.write(f"end {time.time()}\n")
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass(frozen=True)
class Attempt:
    """One attempt at a run, as run_dir/attempts.txt records it."""

    start: float
    end: float | None  # None: still running, or killed before it could say
    worker: str
    visible: str  # its CUDA_VISIBLE_DEVICES ("(unset)"; "" where the line predates it)


def read_attempts(run_dir: Path) -> list[Attempt]:
    """Every attempt recorded in run_dir/attempts.txt, oldest first ([] where none started).
    Lines: "start <time> worker <name> CUDA_VISIBLE_DEVICES=<value>" and "end <time>"."""
    path = run_dir / STARTED
    attempts: list[Attempt] = []
    for line in (path.read_text().splitlines() if path.exists() else []):
        kind, moment, *rest = line.split()
        if kind == "start":
            visible = rest[2].partition("=")[2] if len(rest) > 2 else ""
            attempts.append(Attempt(float(moment), None, rest[1], visible))
        elif attempts and attempts[-1].end is None:
            attempts[-1] = dataclasses.replace(attempts[-1], end=float(moment))
    return attempts


def _notebook_kept(spec: RunSpec) -> bool:
    """The run's executed notebook is complete, or absent (a run made outside a sweep)."""
    executed = spec.run_dir / spec.notebook
    return not executed.exists() or notebook_finished(executed)


def _clear_scratch(run_dir: Path) -> None:
    """Remove the .tmp folder a finished run's killed sweep left behind, unless a sweep still
    holds the run."""
    if not (run_dir / ".tmp").exists():
        return
    with open(run_dir / ".lock", "a") as lock:  # "a": never touch the file
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        shutil.rmtree(run_dir / ".tmp", ignore_errors=True)


def _environment(env: dict[str, str | None], scratch: Path) -> dict[str, str]:
    """os.environ updated with ``env`` (None: remove the variable), temp files in scratch."""
    merged = {**os.environ, **env, "TMPDIR": str(scratch), "JUPYTER_RUNTIME_DIR": str(scratch)}
    return {key: value for key, value in merged.items() if value is not None}


@contextmanager
def _run_lock(run_dir: Path, should_stop):
    """Hold run_dir/.lock (flock) while training; wait while another sweep holds it. Yields
    False if asked to stop while waiting."""
    with open(run_dir / ".lock", "a") as lock:  # "a": never touch the file
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if should_stop is not None and should_stop():
                    yield False
                    return
                time.sleep(STOP_POLL_SECONDS)
        yield True


def end_process_tree(process: subprocess.Popen, grace_seconds: float = 10.0,
                     first_signal: int = signal.SIGINT) -> None:
    """``first_signal`` to ``process`` (SIGINT: papermill shuts its kernel down), then, after
    at most ``grace_seconds``, SIGKILL to whatever of it and its descendants is still alive
    (those in sessions of their own too, like a sweep's papermill runs)."""
    import psutil

    try:
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(True)]
    except psutil.NoSuchProcess:
        return
    process.send_signal(first_signal)
    _, alive = psutil.wait_procs(tree, timeout=grace_seconds)
    for leftover in alive:
        try:
            leftover.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    process.wait()


def _finished_status(run_dir: Path, wanted: dict, fingerprints: dict[str, str],
                     precision: str | None = None) -> tuple[str, str]:
    """"done" if the finished run saw this data and used the parameters, the kind of device
    and (when known) the precision asked for, else "stale"."""
    metrics = read_metrics(run_dir)
    used = metrics["parameters"]
    expected = fingerprints.get(str(wanted.get("data_dir", "")))
    if expected is not None and metrics.get("data_fingerprint") != expected:
        return "stale", (f"finished on other data ({used.get('data_dir')}, fingerprint "
                         f"{metrics.get('data_fingerprint')}), not {wanted['data_dir']} "
                         f"({expected}): use another --runs-dir")
    differ = sorted(k for k, v in wanted.items()
                    if k not in ("data_dir", "cache_dir", "run_dir", "device") and k in used
                    and _normalise(used[k]) != _normalise(v))
    if differ:
        return "stale", (f"finished with other parameters ({', '.join(differ)}): delete the "
                         f"folder or use another --runs-dir")
    device = wanted.get("device")
    if device is not None and str(used.get("device", "")).split(":")[0] != device:
        return "stale", (f"finished on device {used.get('device')}, this sweep trains on "
                         f"{device}: delete the folder or use another --runs-dir")
    if precision is not None and metrics.get("precision") != precision:
        return "stale", (f"finished in precision {metrics.get('precision')}, this sweep's runs "
                         f"compute in {precision}: delete the folder or use another --runs-dir")
    return "done", ""


def _normalise(value):
    """Parameter values as compared: lists as tuples, numbers as floats."""
    if isinstance(value, (list, tuple)):
        return tuple(_normalise(v) for v in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def _error_summary(stderr: str) -> str:
    """The papermill error line ("Exception encountered at In [n]" + the exception)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    cell = next((line for line in lines if "Exception encountered at" in line), "")
    exception = next((line for line in reversed(lines) if "Error" in line.split(":")[0]), "")
    return " ".join(part for part in (cell, exception) if part)[:500]


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the worker dies, so no orphan keeps training (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return "local"


Result = tuple  # (RunSpec, status, detail, worker)


def run_task(spec: RunSpec, overrides: dict, fingerprints: dict[str, str],
             environments: dict[str, dict[str, str]], stop_event: str,
             capabilities: dict[str, list[int] | None] | None = None) -> tuple[str, str, str]:
    """The Dask task of one run: execute_run with this worker's environment (its own, where
    a GPU pin lives, plus ``environments`` keyed by worker name), stopping when the Dask Event
    ``stop_event`` is set. capabilities: {worker name: its GPU's compute capability} from the
    preflight, for the precision a finished run must have. Returns (status, detail, worker)."""
    from distributed import Event, get_worker

    from lib.core.precision import precision_label

    worker = get_worker()
    name = str(worker.name)
    stop = Event(stop_event)
    if stop.is_set():  # queued when the sweep was stopped
        return "stopped", "not started (the sweep was stopped)", ""
    # Dask's nanny gives its workers MALLOC_TRIM_THRESHOLD_=65536, which makes torch on the CPU
    # 2.5x slower (measured: mobilenetv3 training 9 vs 24 samples/s); the runs do not inherit it
    env = {"MALLOC_TRIM_THRESHOLD_": None, **environments.get(name, {})}
    precision = None
    if spec.device == "cpu" or (capabilities or {}).get(name):
        wanted = run_parameters(spec, overrides)
        precision = precision_label(spec.device, bool(wanted.get("amp", True)),
                                    bool(wanted.get("tf32", False)),
                                    (capabilities or {}).get(name))
    status, detail = execute_run(spec, overrides, fingerprints, env, should_stop=stop.is_set,
                                 precision=precision)
    return status, detail, name
