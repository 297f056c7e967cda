"""Phase 4, runs per GPU: ``python -m lib.sweep`` with --runs-per-gpu K (1, 2, 4, 8) on one
pinned GPU, K runs each: folds per hour (of the sweep, of its runs, and extrapolated to 20
epochs from the runs' overhead and epoch times) and peak GPU memory (nvidia-smi, polled)."""

from __future__ import annotations

import json
import math
import re
import sys
import time
from pathlib import Path

from .common import (
    MemoryPoll,
    child_environment,
    common_parameters,
    data_dir,
    need_packages,
    run_bounded,
)
from .config import PARAMS, Config
from .estimates import sweep_estimate


def phase_runs_per_gpu(config, summary, work, deadline, end, record) -> None:
    need_packages()
    pin = [] if config.smoke else ["--gpus", "0"]
    env = child_environment()
    record.update(backbone=config.sweep_backbone, epochs=config.sweep_epochs,
                  pinning=" ".join(pin) or "CPU workers",
                  memory_from="nvidia-smi memory.used of GPU 0, polled every 0.2 s",
                  sweeps=[])
    sweeps, failed = [], []
    for k in config.runs_per_gpu:
        need = sweep_estimate(k, config, dict(summary, phases=summary["phases"] + [
            dict(name="runs_per_gpu", status="ok", figures=dict(sweeps=sweeps))]))
        left = deadline - time.time()
        if need > left:
            sweeps.append(dict(K=k, status="skipped (budget)", estimate_s=round(need, 1)))
            record.update(sweeps=sweeps)
            continue
        runs_dir = work / "sweeps" / f"k{k}"
        plan = work / "sweeps" / f"plan_k{k}.yaml"
        plan.parent.mkdir(parents=True, exist_ok=True)
        folds = list(range(min(k, 4)))
        seeds = range(math.ceil(k / len(folds)))
        plan.write_text(json.dumps(dict(
            name=f"gpu_check_k{k}", folds=folds,
            runs=[dict(params=str(PARAMS), backbone=config.sweep_backbone, seed=s)
                  for s in seeds])))
        command = [sys.executable, "-m", "lib.sweep", str(plan), *pin,
                   "--runs-per-gpu", str(k), "--runs-dir", str(runs_dir),
                   "--data-dir", str(data_dir(config, work)), "--cache-dir", str(work / "cache"),
                   "--no-progress", "-p", "epochs", str(config.sweep_epochs)]
        for key, value in common_parameters(config).items():
            command += ["-p", key, json.dumps(value)]
        if config.smoke:
            command += ["--workers", str(k)]
        print(" ".join(command), flush=True)
        started = time.time()
        with MemoryPoll() as memory:
            code = run_bounded(command, end - time.time(), sys.stdout, env)
        wall = time.time() - started
        result = dict(K=k, runs=len(folds) * len(seeds), sweep_exit=code,
                      status="ok" if code == 0 else "failed", wall_s=round(wall, 1),
                      estimate_s=round(need, 1), **memory.figures(),
                      **run_timings(runs_dir, len(folds) * len(seeds), wall, config))
        if code != 0:
            failed.append(f"K={k}: " + ("timed out" if code is None else f"exit {code}"))
        sweeps.append(result)
        record.update(sweeps=sweeps)
    if failed:
        raise RuntimeError("sweeps failed: " + "; ".join(failed))


def run_timings(runs_dir: Path, n_runs: int, wall: float, config: Config) -> dict:
    """Folds per hour of a sweep and what its runs recorded (attempts.txt, metrics.json)."""
    starts, ends, overheads, epochs, lines = [], [], [], [], []
    for attempts in sorted(runs_dir.rglob("attempts.txt")):
        text = attempts.read_text()
        lines.append(text.splitlines()[0] if text else "")
        start = [float(m) for m in re.findall(r"^start (\S+)", text, re.M)]
        end = [float(m) for m in re.findall(r"^end (\S+)", text, re.M)]
        if start and end:
            starts.append(start[-1])
            ends.append(end[-1])
        metrics_path = attempts.parent / "metrics.json"
        if metrics_path.is_file() and start and end:
            metrics = json.loads(metrics_path.read_text())
            overheads.append(end[-1] - start[-1] - metrics["fit_seconds"])
            history = metrics["history"]
            steady = history[1:] or history
            epochs.append(sum(e["train_seconds"] + e["eval_seconds"] for e in steady)
                          / len(steady))
    figures = dict(folds_per_hour=round(n_runs * 3600 / wall, 1) if wall else None,
                   attempt_first_lines=lines[:2])
    if starts:
        span = max(ends) - min(starts)
        figures["runs_span_s"] = round(span, 1)
        figures["folds_per_hour_runs_only"] = round(len(starts) * 3600 / span, 1)
    if overheads:
        overhead, epoch = sum(overheads) / len(overheads), sum(epochs) / len(epochs)
        k = n_runs
        figures.update(run_overhead_s=round(overhead, 1), epoch_s=round(epoch, 2),
                       folds_per_hour_at_20_epochs=round(
                           k * 3600 / (overhead + 20 * epoch), 1))
    return figures
