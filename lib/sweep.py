"""Sweeps: a plan's runs x folds, each executed through papermill into its run folder.

    python -m lib.sweep params/plans/demo.yaml [--folds 0,1,2] [--workers N] [--data-dir D]

Finished runs (DONE) are skipped; interrupted or failed ones start again from scratch. A run
that fails writes FAILED (cell, exception) and the sweep goes on; it ends with a summary table
and exit status 1 if any run failed. Workers each run one papermill process at a time; on a
machine with several GPUs each worker is pinned to one (CUDA_VISIBLE_DEVICES), on CPU the
workers split the cores. A killed sweep takes its papermill processes with it.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import yaml

from lib.files import atomic_write_text
from lib.paths import REPO_ROOT, project_path
from lib.runs import default_run_dir, is_done, read_metrics

FAILED = "FAILED"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
TRAIN_NOTEBOOK = NOTEBOOKS_DIR / "03_train.ipynb"


@dataclass(frozen=True)
class RunSpec:
    """One model-fold-seed: its parameters (params file + plan entry), its folder and the
    training notebook that runs it (its executed copy in the folder has the same name)."""

    params_file: Path
    name: str
    backbone: str
    seed: int
    fold: int
    run_dir: Path
    notebook: Path = TRAIN_NOTEBOOK

    @property
    def label(self) -> str:
        return "/".join(self.run_dir.parts[-3:])  # <name>/<backbone>/fold<k>_seed<s>


def load_plan(path: str | Path) -> dict:
    """A plan YAML: ``name``, ``folds`` (list) and ``runs`` (params, backbone, seed, and
    optionally notebook: a training notebook in notebooks/, default 03_train.ipynb); params
    files are named relative to params/ (or by absolute path)."""
    path = project_path(path)
    plan = yaml.safe_load(path.read_text())
    if not isinstance(plan, dict) or not plan.get("runs"):
        raise ValueError(f"{path}: a plan needs a non-empty 'runs' list")
    for i, run in enumerate(plan["runs"]):
        if not {"params", "backbone", "seed"} <= set(run) <= {"params", "backbone", "seed",
                                                              "notebook"}:
            raise ValueError(f"{path}: run {i + 1} must have exactly params, backbone, seed, "
                             f"and optionally notebook; got {sorted(run)}")
    return plan


def expand_plan(plan: dict, folds: list[int] | None = None, runs_dir: str | Path = "runs"
                ) -> list[RunSpec]:
    """The plan's runs x folds (``folds`` overrides the plan's), in plan order, fold-major
    within a run."""
    specs = []
    for run in plan["runs"]:
        params_file = Path(run["params"])
        if not params_file.is_absolute():
            params_file = project_path("params") / params_file
        if not params_file.is_file():
            raise FileNotFoundError(f"plan names {run['params']}, not found at {params_file}")
        name = yaml.safe_load(params_file.read_text())["name"]
        notebook = NOTEBOOKS_DIR / run.get("notebook", TRAIN_NOTEBOOK.name)
        if not notebook.is_file():
            raise FileNotFoundError(f"plan names notebook {run['notebook']}, not found at "
                                    f"{notebook}")
        for fold in folds if folds is not None else plan.get("folds", [0, 1, 2, 3, 4]):
            specs.append(RunSpec(params_file, name, run["backbone"], int(run["seed"]), int(fold),
                                 default_run_dir(name, run["backbone"], fold, run["seed"],
                                                 runs_dir), notebook))
    return specs


def run_parameters(spec: RunSpec, overrides: dict) -> dict:
    """The papermill parameters of one run: params file, then the plan entry, then overrides."""
    values = yaml.safe_load(spec.params_file.read_text())
    values.update(backbone=spec.backbone, seed=spec.seed, fold=spec.fold,
                  run_dir=str(spec.run_dir))
    values.update(overrides)
    return values


def worker_environment(worker: int, n_workers: int, n_gpus: int) -> dict[str, str]:
    """Environment of worker ``worker``: one GPU each when there are several, else an equal
    share of the CPU cores for torch and BLAS."""
    env = {}
    if n_gpus > 1:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        devices = [d for d in visible.split(",") if d.strip()] or [str(i) for i in range(n_gpus)]
        env["CUDA_VISIBLE_DEVICES"] = devices[worker % len(devices)]
    if n_gpus == 0:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n_workers))
    return env


def execute_run(spec: RunSpec, overrides: dict, env: dict[str, str]) -> tuple[str, str]:
    """Run one spec through papermill unless finished. Returns (status, detail) with status
    "done" (already finished), "ran", "failed", "busy" (another sweep holds it) or "stale"
    (finished on another data folder: left as it is, and reported)."""
    run_dir = spec.run_dir
    if is_done(run_dir):
        return _finished_status(run_dir, run_parameters(spec, overrides))
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = open(run_dir / ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return "busy", "another sweep is running it"
    try:
        if is_done(run_dir):
            return _finished_status(run_dir, run_parameters(spec, overrides))
        (run_dir / FAILED).unlink(missing_ok=True)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            yaml.safe_dump(run_parameters(spec, overrides), handle)
        command = [sys.executable, "-m", "papermill", str(spec.notebook),
                   str(run_dir / spec.notebook.name), "-f", handle.name, "--kernel", "python3",
                   "--no-progress-bar", "--log-level", "ERROR"]
        started = time.perf_counter()
        completed = subprocess.run(command, cwd=REPO_ROOT, env={**os.environ, **env},
                                   capture_output=True, text=True, preexec_fn=_die_with_parent)
        os.unlink(handle.name)
        minutes = (time.perf_counter() - started) / 60
        if completed.returncode == 0 and is_done(run_dir):
            return "ran", f"{minutes:.1f} min"
        error = _error_summary(completed.stderr) or f"papermill exit {completed.returncode}"
        atomic_write_text(run_dir / FAILED, f"{spec.label}\n{error}\n\n{completed.stderr[-4000:]}")
        return "failed", error
    finally:
        lock.close()


def run_sweep(specs: list[RunSpec], overrides: dict, *, workers: int = 1,
              progress: bool = True) -> list[tuple[RunSpec, str, str]]:
    """Execute every spec with ``workers`` parallel workers; returns (spec, status, detail)
    in the order of ``specs``."""
    n_gpus = _gpu_count()
    slots = list(range(workers))
    results = []

    def task(spec: RunSpec):
        worker = slots.pop()
        try:
            return spec, *execute_run(spec, overrides, worker_environment(worker, workers,
                                                                           n_gpus))
        finally:
            slots.append(worker)

    from tqdm.auto import tqdm

    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(specs), desc="sweep", unit="run", disable=not progress) as bar:
        for future in as_completed([pool.submit(task, spec) for spec in specs]):
            spec, status, detail = future.result()
            results.append((spec, status, detail))
            bar.update()
            bar.set_postfix_str(f"last: {spec.label} {status}")
    order = {spec: i for i, spec in enumerate(specs)}
    return sorted(results, key=lambda result: order[result[0]])


def summary_table(results: list[tuple[RunSpec, str, str]]) -> str:
    """One line per run: label, status, best OOF loss (finished runs), detail."""
    lines = [f"{'run':<58}{'status':<8}{'OOF loss':>9}  detail"]
    for spec, status, detail in results:
        loss = ""
        if is_done(spec.run_dir):
            loss = f"{read_metrics(spec.run_dir)['best_oof_loss']:.4f}"
        lines.append(f"{spec.label:<58}{status:<8}{loss:>9}  {detail}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Execute a plan's runs x folds with papermill.")
    parser.add_argument("plan", help="plan YAML (params/plans/...)")
    parser.add_argument("--folds", help="comma-separated folds (default: the plan's)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--data-dir", help="data_dir parameter of every run")
    parser.add_argument("--cache-dir", help="cache_dir parameter of every run")
    parser.add_argument("--runs-dir", default="runs", help="root of the run folders")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[],
                        metavar=("KEY", "VALUE"), help="override a parameter (YAML value)")
    parser.add_argument("--stamp", help="file touched when a run finished in this sweep")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    overrides = {key: yaml.safe_load(value) for key, value in args.param}
    if args.data_dir:
        overrides["data_dir"] = str(project_path(args.data_dir))
    if args.cache_dir:
        overrides["cache_dir"] = str(project_path(args.cache_dir))
    folds = [int(f) for f in args.folds.split(",")] if args.folds else None
    specs = expand_plan(load_plan(args.plan), folds, args.runs_dir)
    results = run_sweep(specs, overrides, workers=max(1, args.workers),
                        progress=not args.no_progress)
    print(summary_table(results))
    counts = {s: sum(1 for _, status, _ in results if status == s)
              for s in ("ran", "done", "failed", "busy", "stale")}
    print(f"{len(results)} runs: {counts['ran']} ran, {counts['done']} already finished, "
          f"{counts['failed']} failed, {counts['busy']} busy elsewhere, "
          f"{counts['stale']} stale (finished with other data or parameters)")
    if args.stamp and (counts["ran"] or not Path(args.stamp).exists()):
        atomic_write_text(args.stamp, f"{time.time()}\n")
    return 1 if counts["failed"] or counts["busy"] or counts["stale"] else 0


def _finished_status(run_dir: Path, wanted: dict) -> tuple[str, str]:
    """"done" if the finished run used the parameters this sweep asks for, else "stale"."""
    used = read_metrics(run_dir)["parameters"]
    if "data_dir" in wanted and used.get("data_dir") and (
            project_path(used["data_dir"]).resolve() != project_path(wanted["data_dir"]).resolve()):
        return "stale", (f"finished on {used['data_dir']}, not {wanted['data_dir']}: "
                         f"use another --runs-dir")
    differ = sorted(k for k, v in wanted.items()
                    if k not in ("data_dir", "cache_dir", "run_dir", "device") and k in used
                    and _normalise(used[k]) != _normalise(v))
    if differ:
        return "stale", (f"finished with other parameters ({', '.join(differ)}): delete the "
                         f"folder or use another --runs-dir")
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
    """In the child: get SIGKILL when the sweep dies, so no orphan keeps training (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
