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
of it (lib.cluster.gpu_share). The runs' device is decided once, here: ``auto`` becomes ``cuda``
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

import argparse
import ast
import ctypes
import dataclasses
import difflib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from lib.feature_settings import feature_settings
from lib.files import atomic_write_text
from lib.paths import REPO_ROOT, project_path
from lib.runs import DONE, default_run_dir, is_done, notebook_finished, read_metrics

FAILED = "FAILED"
STARTED = "attempts.txt"  # "start <time> worker <name>" and "end <time>" of every attempt
NOTEBOOKS = REPO_ROOT / "notebooks"
DEFAULT_NOTEBOOK = "03_train.ipynb"
FEATURE_NOTEBOOK = "03b_train_features.ipynb"  # its runs' settings: lib.feature_settings
PLAN_KEYS = {"params", "backbone", "seed"}  # and optionally "notebook" (default 03_train.ipynb)
STOP_POLL_SECONDS = 1.0


class PlanError(ValueError):
    """A plan, a params file or a parameter is wrong; the message names the file and entry."""


@dataclass(frozen=True)
class RunSpec:
    """One model-fold-seed: its parameters (params file + plan entry) and its folder."""

    params_file: Path
    name: str
    backbone: str
    seed: int
    fold: int
    run_dir: Path
    notebook: str = DEFAULT_NOTEBOOK
    device: str | None = None  # the device the sweep resolved for it (notebooks with one)

    @property
    def label(self) -> str:
        return "/".join(self.run_dir.parts[-3:])  # <name>/<backbone>/fold<k>_seed<s>


# ---- plans -------------------------------------------------------------------------------------

def load_plan(path: str | Path) -> dict:
    """A plan YAML: ``name``, ``folds`` (list) and ``runs`` (params, backbone, seed, and
    optionally notebook: a training notebook in notebooks/, default 03_train.ipynb; params
    files relative to params/ or absolute). PlanError names the plan file and the entry."""
    path = project_path(path)
    try:
        plan = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise PlanError(f"{path}: cannot read the plan ({error})") from None
    if not isinstance(plan, dict) or not isinstance(plan.get("runs"), list) or not plan["runs"]:
        raise PlanError(f"{path}: a plan needs a non-empty 'runs' list")
    for i, run in enumerate(plan["runs"]):
        keys = sorted(run) if isinstance(run, dict) else type(run).__name__
        if not isinstance(run, dict) or not PLAN_KEYS <= set(run) <= PLAN_KEYS | {"notebook"}:
            raise PlanError(f"{path}: run {i + 1} ({run!r}) must have params, backbone, seed "
                            f"and optionally notebook; got {keys}")
        if not (NOTEBOOKS / run.get("notebook", DEFAULT_NOTEBOOK)).is_file():
            raise PlanError(f"{path}: run {i + 1} ({run!r}): notebook {run['notebook']!r} "
                            f"not found in {NOTEBOOKS}")
        if not isinstance(run["seed"], int) or not isinstance(run["backbone"], str):
            raise PlanError(f"{path}: run {i + 1} ({run!r}): seed must be an integer and "
                            f"backbone a timm name")
    folds = plan.get("folds", [0, 1, 2, 3, 4])
    if not isinstance(folds, list) or not all(isinstance(f, int) for f in folds):
        raise PlanError(f"{path}: folds must be a list of integers, got {folds!r}")
    return {**plan, "path": str(path)}


def expand_plan(plan: dict, folds: list[int] | None = None, runs_dir: str | Path = "runs"
                ) -> list[RunSpec]:
    """The plan's runs x folds (``folds`` overrides the plan's), in plan order, fold-major
    within a run."""
    where = plan.get("path", "plan")
    specs, entry_of = [], {}
    for i, run in enumerate(plan["runs"]):
        params_file = Path(run["params"])
        if not params_file.is_absolute():
            params_file = project_path("params") / params_file
        values = _read_params(params_file, f"{where}: run {i + 1}")
        if not isinstance(values.get("name"), str):
            raise PlanError(f"{params_file}: needs a 'name' (named by {where}: run {i + 1})")
        folder = default_run_dir(values["name"], run["backbone"], 0, run["seed"], runs_dir)
        if folder in entry_of:
            first = entry_of[folder]
            raise PlanError(f"{where}: runs {first + 1} ({plan['runs'][first]!r}) and {i + 1} "
                            f"({run!r}) are the same run (name {values['name']!r}, backbone "
                            f"{run['backbone'].split('.')[0]!r}, seed {run['seed']}): keep one")
        entry_of[folder] = i
        for fold in folds if folds is not None else plan.get("folds", [0, 1, 2, 3, 4]):
            specs.append(RunSpec(params_file, values["name"], run["backbone"], int(run["seed"]),
                                 int(fold), default_run_dir(values["name"], run["backbone"],
                                                            fold, run["seed"], runs_dir),
                                 run.get("notebook", DEFAULT_NOTEBOOK)))
    return specs


def run_parameters(spec: RunSpec, overrides: dict) -> dict:
    """The papermill parameters of one run: params file, then the plan entry, then the
    overrides its notebook has (a mixed plan's override reaches the runs it can), then the
    device the sweep resolved."""
    values = dict(_read_params(spec.params_file, spec.label))
    values.update(backbone=spec.backbone, seed=spec.seed, fold=spec.fold,
                  run_dir=str(spec.run_dir))
    known = notebook_parameters(spec.notebook)
    values.update({key: value for key, value in overrides.items() if key in known})
    if spec.device is not None:
        values["device"] = spec.device
    return values


SWEEP_DEVICES = ("auto", "cpu", "cuda")


def resolve_devices(specs: list[RunSpec], overrides: dict, gpu_workers: bool
                    ) -> list[RunSpec]:
    """The specs with the device each run will use, decided once for the sweep: "auto" ->
    "cuda" when the workers advertise GPUs, else "cpu"; "cpu" and "cuda" as asked (a run sees
    only its pinned GPU, so "cuda:N" makes no sense here: PlanError). Specs of notebooks
    without a device parameter are returned as they are."""
    resolved = []
    for spec in specs:
        if "device" not in notebook_parameters(spec.notebook):
            resolved.append(spec)
            continue
        asked = run_parameters(spec, overrides).get("device", "auto")
        if asked not in SWEEP_DEVICES:
            raise PlanError(f"device {asked!r} ({spec.label}): a sweep takes auto, cpu or cuda "
                            f"(each run sees only the GPU its worker is pinned to; choose GPUs "
                            f"with --gpus)")
        device = ("cuda" if gpu_workers else "cpu") if asked == "auto" else asked
        resolved.append(dataclasses.replace(spec, device=device))
    return resolved


def check_parameters(specs: list[RunSpec], overrides: dict) -> dict[str, list[str]]:
    """PlanError unless every key of every params file is a parameter of its notebook and
    every override is a parameter of at least one notebook of the plan, naming the key, where
    it comes from and the nearest parameter (papermill would only warn, and the run would
    train with the default). Returns {override: [labels of the runs whose notebook lacks it]}
    for the overrides that do not reach every run (a mixed plan: 03b has no ``epochs``)."""
    for params_file, notebook in dict.fromkeys((s.params_file, s.notebook) for s in specs):
        known = notebook_parameters(notebook)
        for key, value in _read_params(params_file, "").items():
            if key not in known:
                raise PlanError(f"{params_file}: {_unknown(key, known, [notebook])}")
            _check_type(key, value, notebook, str(params_file))
    notebooks = list(dict.fromkeys(s.notebook for s in specs))
    every = frozenset().union(*(notebook_parameters(n) for n in notebooks))
    skipped = {}
    for key, value in overrides.items():
        if key not in every:
            raise PlanError(f"-p / command line: {_unknown(key, every, notebooks)}")
        for notebook in notebooks:
            if key in notebook_parameters(notebook):
                _check_type(key, value, notebook, "-p / command line")
        missed = [s.label for s in specs if key not in notebook_parameters(s.notebook)]
        if missed:
            skipped[key] = missed
    check_settings(specs, overrides)
    return skipped


def check_settings(specs: list[RunSpec], overrides: dict) -> None:
    """PlanError naming the params file (and the run) when a run's values cannot work
    together, as its notebook would find before training: the feature runs' FeatureSettings
    (an unknown learner in ``backbone``, a hidden width below 1, ...). Each run's values are
    its notebook's defaults, then run_parameters."""
    for spec in specs:
        if spec.notebook != FEATURE_NOTEBOOK:
            continue
        values = {**_parameter_defaults(spec.notebook), **run_parameters(spec, overrides)}
        try:
            feature_settings(values)
        except (TypeError, ValueError) as error:
            extra = " with the -p overrides" if overrides else ""
            raise PlanError(f"{spec.params_file} ({spec.label}{extra}): {error}") from None


def check_folds(specs: list[RunSpec], overrides: dict) -> None:
    """PlanError unless every run's fold is in 0..n_folds-1 (its n_folds parameter)."""
    for spec in specs:
        n_folds = run_parameters(spec, overrides).get(
            "n_folds", _parameter_defaults(spec.notebook).get("n_folds"))
        if isinstance(n_folds, int) and not 0 <= spec.fold < n_folds:
            raise PlanError(f"fold {spec.fold} ({spec.label}): the runs have n_folds="
                            f"{n_folds}, so folds are 0..{n_folds - 1}")


def _check_type(key: str, value, notebook: str, source: str) -> None:
    """PlanError unless ``value`` has the kind of the notebook's default for ``key``: a
    string, a list, a whole number or any number (a bool only where the default is one)."""
    default = _parameter_defaults(notebook).get(key)
    if default is None:
        return
    kinds = [(bool, (bool,), "true or false"), (int, (int,), "a whole number"),
             (float, (int, float), "a number"), (str, (str,), "a string"),
             (list, (list, tuple), "a list")]
    for kind, accepted, words in kinds:
        if isinstance(default, kind):
            if isinstance(value, bool) != (kind is bool) or not isinstance(value, accepted):
                raise PlanError(f"{source}: {key} = {value!r} must be {words} (notebooks/"
                                f"{notebook}'s default is {default!r})")
            return


def _unknown(key: str, known: frozenset[str], notebooks: list[str]) -> str:
    near = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    where = " or ".join(f"notebooks/{n}" for n in notebooks)
    return f"{key!r} is not a parameter of {where}{hint} (known: {', '.join(sorted(known))})"


@lru_cache
def notebook_parameters(notebook: str) -> frozenset[str]:
    """The names assigned in a notebook's cell tagged "parameters" (what papermill.inspect_notebook
    finds, read without importing papermill, which would cost the sweep seconds)."""
    return frozenset(_parameter_defaults(notebook))


def _parameter_defaults(notebook: str) -> dict:
    """{name: default value (None if not a literal)} of a notebook's parameters cell."""
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    source = next("".join(c["source"]) for c in cells
                  if "parameters" in c.get("metadata", {}).get("tags", []))
    defaults = {}
    for statement in ast.parse(source).body:
        if isinstance(statement, (ast.Assign, ast.AnnAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    try:
                        defaults[target.id] = ast.literal_eval(statement.value)
                    except ValueError:
                        defaults[target.id] = None
    return defaults


def _read_params(path: Path, named_by: str) -> dict:
    if not path.is_file():
        raise PlanError(f"{named_by}: params file {path} not found")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise PlanError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(values, dict):
        raise PlanError(f"{path}: a params file is a mapping of parameter: value")
    return values


# ---- one run, on a worker ----------------------------------------------------------------------

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
    command = [sys.executable, "-m", "lib.papermill_engine", str(NOTEBOOKS / spec.notebook),
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


# ---- the sweep, on Dask ------------------------------------------------------------------------

Result = tuple  # (RunSpec, status, detail, worker)


def run_task(spec: RunSpec, overrides: dict, fingerprints: dict[str, str],
             environments: dict[str, dict[str, str]], stop_event: str,
             capabilities: dict[str, list[int] | None] | None = None) -> tuple[str, str, str]:
    """The Dask task of one run: execute_run with this worker's environment (its own, where
    a GPU pin lives, plus ``environments`` keyed by worker name), stopping when the Dask Event
    ``stop_event`` is set. capabilities: {worker name: its GPU's compute capability} from the
    preflight, for the precision a finished run must have. Returns (status, detail, worker)."""
    from distributed import Event, get_worker

    from lib.precision import precision_label

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


def run_sweep(client, specs: list[RunSpec], overrides: dict, fingerprints: dict[str, str], *,
              runs_per_gpu: int = 1, environments: dict | None = None, gpu: bool = False,
              capabilities: dict | None = None, progress: bool = True) -> list[Result]:
    """Submit one task per spec to ``client`` and wait for them; returns (spec, status, detail,
    worker) in the order of ``specs``. gpu: each task asks for gpu_share(runs_per_gpu) of the
    workers' "GPU" resource (exactly runs_per_gpu runs share a GPU). Ctrl-C: queued runs are
    cancelled and running ones stopped (both reported as "stopped"), then the results so far
    are returned."""
    from distributed import Event, as_completed
    from tqdm.auto import tqdm

    from lib.cluster import gpu_share

    stop_name = f"mars-gcms-sweep-stop-{os.getpid()}-{time.time_ns()}"
    stop = Event(stop_name, client=client)
    resources = {"GPU": gpu_share(runs_per_gpu)} if gpu else None
    futures = {client.submit(run_task, spec, overrides, fingerprints, environments or {},
                             stop_name, capabilities, key=f"run-{spec.label}-{time.time_ns()}",
                             pure=False, resources=resources, retries=0): spec
               for spec in specs}
    results: dict[RunSpec, Result] = {}
    with tqdm(total=len(specs), desc="sweep", unit="run", disable=not progress) as bar:
        try:
            for future in as_completed(futures):
                spec = futures[future]
                results[spec] = _result(spec, future)
                bar.update()
                bar.set_postfix_str(f"last: {spec.label} {results[spec][1]}")
        except KeyboardInterrupt:
            print("\nstopping: queued runs cancelled, running runs being stopped ...",
                  file=sys.stderr)
            stop.set()  # queued runs return at once, running ones end their papermill
            for future, spec in futures.items():
                if spec not in results:
                    try:
                        results[spec] = _result(spec, future, timeout=60)
                    except Exception as error:  # the worker is gone, or did not answer
                        results[spec] = (spec, "stopped", f"no answer ({error!r})", "")
    return [results[spec] for spec in specs]


def _result(spec: RunSpec, future, timeout: float | None = None) -> Result:
    future.exception(timeout=timeout)  # waits; a lost or failed task raises nothing here
    if future.status == "error":  # lost workers beyond Dask's allowed failures, ...
        return spec, "failed", f"{type(future.exception()).__name__}: {future.exception()}", ""
    status, detail, worker = future.result(timeout=timeout)
    return spec, status, detail, worker


def summary_table(results: list[Result]) -> str:
    """One line per run: label, status, best OOF loss (finished runs), worker, detail."""
    width = max([len("worker")] + [len(worker) for *_, worker in results]) + 2
    lines = [f"{'run':<58}{'status':<9}{'OOF loss':>9}  {'worker':<{width}}detail"]
    for spec, status, detail, worker in results:
        loss = ""
        if is_done(spec.run_dir):
            loss = f"{read_metrics(spec.run_dir)['best_oof_loss']:.4f}"
        lines.append(f"{spec.label:<58}{status:<9}{loss:>9}  {worker:<{width}}{detail}")
    return "\n".join(lines)


def data_fingerprints(specs: list[RunSpec], overrides: dict) -> dict[str, str]:
    """{data_dir as the runs get it: data_fingerprint} for the data folders the runs will
    read; PlanError naming the folder if one cannot be loaded."""
    from lib.dataset import DataError, load_competition
    from lib.runs import data_fingerprint

    result = {}
    for spec in specs:
        given = str(run_parameters(spec, overrides).get("data_dir", ""))
        if given in result:
            continue
        folder = given or _notebook_default(spec.notebook, "data_dir")
        try:
            result[given] = data_fingerprint(load_competition(project_path(folder)))
        except DataError as error:
            raise PlanError(f"data_dir {folder}: {error}") from None
    return result


def _notebook_default(notebook: str, name: str):
    return _parameter_defaults(notebook)[name]


def main(argv: list[str] | None = None) -> int:
    from lib import cluster

    parser = argparse.ArgumentParser(
        description="Execute a plan's runs x folds with papermill, one Dask task per run.")
    parser.add_argument("plan", help="plan YAML (params/plans/...)")
    parser.add_argument("--folds", help="comma-separated folds (default: the plan's)")
    parser.add_argument("--workers", type=int, default=1,
                        help="local CPU workers (local cluster without GPUs)")
    parser.add_argument("--gpus", help="local cluster: the GPUs to use, e.g. 2,3 (default: "
                        "every GPU torch sees); one pinned worker each")
    parser.add_argument("--runs-per-gpu", type=int, default=1,
                        help="runs sharing one GPU (each asks for a 1/K share of its GPU)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://HOST:8786)")
    where.add_argument("--scheduler-file", help="scheduler file of a running Dask scheduler")
    where.add_argument("--cluster", help="batch-queue cluster YAML (params/clusters/slurm.yaml)")
    parser.add_argument("--wait-timeout", type=float, default=1800.0,
                        help="with --cluster: seconds to wait for the first batch job's worker "
                        "before cancelling the jobs (default 1800)")
    parser.add_argument("--dashboard-address", default="127.0.0.1:0",
                        help="local cluster: where its Dask dashboard listens (default: "
                        "loopback, a free port; e.g. 0.0.0.0:8787 to expose it on purpose)")
    parser.add_argument("--print-job-script", action="store_true",
                        help="with --cluster: print the batch script and exit")
    parser.add_argument("--data-dir", help="data_dir parameter of every run")
    parser.add_argument("--cache-dir", help="cache_dir parameter of every run")
    parser.add_argument("--runs-dir", default="runs", help="root of the run folders")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[],
                        metavar=("KEY", "VALUE"), help="override a parameter (YAML value)")
    parser.add_argument("--stamp", help="file touched when a run finished in this sweep")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.runs_per_gpu <= cluster.MAX_RUNS_PER_GPU:
        parser.error(f"--runs-per-gpu must be in 1..{cluster.MAX_RUNS_PER_GPU}, got "
                     f"{args.runs_per_gpu}")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if not args.wait_timeout > 0:
        parser.error(f"--wait-timeout must be a positive number of seconds, got "
                     f"{args.wait_timeout}")
    if args.gpus is not None and (args.scheduler or args.scheduler_file or args.cluster):
        parser.error("--gpus chooses the GPUs of a local sweep; on a running scheduler or a "
                     "batch cluster each worker's CUDA_VISIBLE_DEVICES decides")

    try:
        if args.print_job_script:
            if not args.cluster:
                parser.error("--print-job-script needs --cluster")
            print(cluster.job_script(args.cluster))
            return 0
        gpus = None
        if args.gpus is not None:
            try:
                gpus = cluster.parse_gpus(args.gpus, cluster.visible_gpus())
            except ValueError as error:
                parser.error(str(error))
        overrides = {key: yaml.safe_load(value) for key, value in args.param}
        if args.data_dir:
            overrides["data_dir"] = str(project_path(args.data_dir))
        if args.cache_dir:
            overrides["cache_dir"] = str(project_path(args.cache_dir))
        folds = _parse_folds(args.folds) if args.folds else None
        specs = expand_plan(load_plan(args.plan), folds, args.runs_dir)
        skipped = check_parameters(specs, overrides)
        check_folds(specs, overrides)
        resolve_devices(specs, overrides, gpu_workers=False)  # refuses cuda:N before starting
        fingerprints = data_fingerprints(specs, overrides)
    except (PlanError, cluster.ClusterConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    runs_root = project_path(args.runs_dir)
    data_dirs = [project_path(d or _notebook_default(specs[0].notebook, "data_dir"))
                 for d in fingerprints]
    try:
        with cluster.open_client(scheduler=args.scheduler, scheduler_file=args.scheduler_file,
                                 cluster_file=args.cluster, workers=args.workers, gpus=gpus,
                                 runs_per_gpu=args.runs_per_gpu, n_runs=len(specs),
                                 wait_timeout=args.wait_timeout,
                                 dashboard_address=args.dashboard_address,
                                 progress=lambda line: print(line, file=sys.stderr)
                                 ) as session:
            print(f"Dask dashboard: {session.client.dashboard_link}", file=sys.stderr)
            specs = resolve_devices(specs, overrides, session.gpu)
            devices = sorted({s.device for s in specs if s.device})
            if devices:
                print(f"device: {', '.join(devices)}", file=sys.stderr)
            problems, cuda = cluster.preflight(session.client, data_dirs, runs_root,
                                               need_cuda="cuda" in devices)
            if problems:
                print("error: workers failed the preflight, nothing was trained:\n" +
                      "\n".join(f"  {worker}: {reason}" for worker, reason in problems.items()),
                      file=sys.stderr)
                return 2
            capabilities = {name: info.get("capability") for name, info in cuda.items()}
            results = run_sweep(session.client, specs, overrides, fingerprints,
                                runs_per_gpu=args.runs_per_gpu,
                                environments=session.environments, gpu=session.gpu,
                                capabilities=capabilities, progress=not args.no_progress)
    except (cluster.ClusterWaitError, cluster.ClusterConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary_table(results))
    statuses = [status for _, status, _, _ in results]
    counts = {s: statuses.count(s) for s in ("ran", "done", "failed", "stale", "stopped")}
    print(f"{len(results)} runs: {counts['ran']} ran, {counts['done']} already finished, "
          f"{counts['failed']} failed, {counts['stale']} stale (finished with other data, "
          f"parameters, device or precision), {counts['stopped']} stopped")
    for key, missed in skipped.items():
        print(f"note: -p {key} did not apply to {len(missed)} run(s) whose notebook has no "
              f"such parameter: {', '.join(missed)}")
    if args.stamp and (counts["ran"] or not Path(args.stamp).exists()):
        atomic_write_text(args.stamp, f"{time.time()}\n")
    if counts["stopped"]:
        return 130
    return 1 if counts["failed"] or counts["stale"] else 0


def _parse_folds(text: str) -> list[int]:
    try:
        return [int(f) for f in text.split(",")]
    except ValueError:
        raise PlanError(f"--folds {text!r}: give fold numbers separated by commas, e.g. "
                        f"--folds 0,1") from None


if __name__ == "__main__":
    # run as the module lib.sweep, not __main__: Dask then pickles the tasks' functions by
    # reference, which a scheduler and workers started elsewhere (`dask scheduler`) can load
    from lib import sweep

    sys.exit(sweep.main())
