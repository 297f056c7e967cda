"""Every GPU check in one bounded call, for a lent machine with torch and timm (and, offline,
the wheelhouse: README, Offline GPU machine).

    BUDGET_S=480 OUT=gpu_results python scripts/gpu_check.py      # the CUDA machine
    python scripts/gpu_check.py --smoke                              # every phase, toy size, CPU

Phases, in priority order, each in its own process with a timeout (a crash or hang is recorded
as failed and the next phase still runs):

1. environment: torch, CUDA, GPU name, capability, memory, versions;
2. throughput: train steps/s at batch 8 of resnet34 and hrnet_w64 (random init, random
   256x192 images on the device), bf16 + channels_last vs fp32, eager then compiled, and
   whether a steady-state epoch ever waits on the host (torch.cuda.set_sync_debug_mode);
3. data: a synthetic folder with the real data's sample counts but coarse scans (seconds,
   not the 20 GB of the full profile), its image cache and folds;
4. runs_per_gpu: ``python -m lib.sweep`` with --runs-per-gpu K = 1, 2, 4, 8 on one pinned GPU
   (K runs each): folds per hour and peak GPU memory (nvidia-smi, polled);
5. precision: one resnet34 fold of 3a/302 through papermill, fp32 then bf16, same seed: OOF
   loss and time of each;
6. hrnet_fold: one hrnet_w64 fold for as many epochs as the budget leaves, and the per-epoch
   time that extrapolates to 20 epochs.

BUDGET_S (default 480) is a deadline for the whole script: before a phase starts it estimates
what it needs (from what earlier phases measured where they could); a phase that cannot finish
in what is left is "skipped (budget)", and each phase leaves later phases their minimum. A
running phase is killed at its timeout, which never passes the deadline, so the script ends
within BUDGET_S + 30 s. OUT (default gpu_results/) gets summary.json, rewritten atomically
after every phase, and gpu_check.log; the data and run folders go to WORK (default a folder
in the system's temp dir). Exit status 1 when a phase failed, 2 on bad input.

What it uses of the project: lib.training's epoch_draws, make_optimizer and train_one_epoch
(the throughput epochs, one of them under sync debug mode "error"), TrainSettings.compile
(lib.training.compile_widths; the smoke run compiles the model here with the "eager" backend,
which needs no C++ compiler) and .tf32 (False: the fp32 configs are true fp32),
configure_backends; ``lib.sweep --gpus 0`` (its runs' attempts.txt lines name the
CUDA_VISIBLE_DEVICES each ran with); 03_train's amp and tf32 parameters.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))  # this checkout's lib, not an installed copy

PHASES = ["environment", "throughput", "data", "runs_per_gpu", "precision", "hrnet_fold"]
NEEDS_DATA = {"runs_per_gpu", "precision", "hrnet_fold"}
PARAMS = REPO_ROOT / "params" / "3a_302_cls3_normM.yaml"
RESERVE_S = 5.0  # kept back from every timeout: killing a phase and writing the summary
KILL_GRACE_S = 5.0
DEFAULT_BUDGET_S = 480.0
# The most of the budget a phase plans for beyond its least useful work; what it leaves
# unused goes to the next phases, and the last one takes what is left.
SHARES = dict(environment=0.1, throughput=0.3, data=0.15, runs_per_gpu=0.35, precision=0.25,
              hrnet_fold=1.0)


@dataclass(frozen=True)
class Config:
    """Sizes of one check. FULL is the CUDA machine's; SMOKE the same phases at toy size on
    the CPU. The *_s fields are the estimates used before anything was measured (seconds)."""

    smoke: bool
    device: str
    m_bins: int = 256
    t_bins: int = 192
    tta_offsets: tuple[int, ...] = (-64, -32, 0, 32, 64)
    batch_size: int = 8
    # throughput: (backbone, amp + channels_last, compile) in priority order
    bench: tuple[tuple[str, bool, bool], ...] = ()
    bench_samples: int = 512
    compile_backend: str = "inductor"
    # data: a synthetic profile (name, or counts and scan settings of one made here)
    profile: str = "tiny"
    profile_sizes: dict = field(default_factory=dict)
    # runs per GPU
    sweep_backbone: str = "resnet34"
    sweep_epochs: int = 2
    runs_per_gpu: tuple[int, ...] = (1, 2, 4, 8)
    # precision and the long fold
    precision_backbone: str = "resnet34"
    precision_epochs: tuple[int, int] = (2, 6)  # fewest, most
    fold_backbone: str = "hrnet_w64"
    fold_epochs: tuple[int, int] = (1, 20)
    # estimates before measurements
    process_start_s: float = 12.0  # python + torch + timm + CUDA context
    compile_s: dict = field(default_factory=dict)
    epoch_s: dict = field(default_factory=dict)
    run_overhead_s: float = 30.0  # papermill run beyond its epochs: kernel, data, model, test
    cluster_s: float = 10.0
    sharing_slowdown: float = 0.15  # each run beside the first slows a shared device by this
    data_s: float = 40.0
    environment_s: float = 20.0


FULL = Config(
    smoke=False, device="cuda",
    bench=(("resnet34", True, False), ("resnet34", False, False), ("hrnet_w64", True, False),
           ("hrnet_w64", False, False), ("resnet34", True, True), ("hrnet_w64", True, True),
           ("resnet34", False, True), ("hrnet_w64", False, True)),
    profile="gpu_check_counts",
    # the real data's sample counts; coarse scans (0.5 min, at least 192) and masses to 250
    profile_sizes=dict(n_train=809, n_val=312, n_test=463, scan_interval_min=0.5,
                       max_mass=250, min_scans=192),
    compile_s={"resnet34": 60.0, "hrnet_w64": 180.0},
    epoch_s={"resnet34": 5.0, "hrnet_w64": 15.0},
)
SMOKE = Config(
    smoke=True, device="cpu", m_bins=64, t_bins=96, tta_offsets=(-32, 0, 32), batch_size=4,
    bench=(("mobilenetv3_small_100", True, False), ("mobilenetv3_small_100", False, False),
           ("resnet18", True, False), ("mobilenetv3_small_100", True, True)),
    bench_samples=16, compile_backend="eager", profile="tiny",
    sweep_backbone="resnet18", sweep_epochs=1, runs_per_gpu=(1, 2),
    precision_backbone="resnet18", precision_epochs=(1, 1),
    fold_backbone="mobilenetv3_small_100", fold_epochs=(1, 1),
    process_start_s=5.0, compile_s={"mobilenetv3_small_100": 10.0}, epoch_s={},
    run_overhead_s=15.0, cluster_s=5.0, sharing_slowdown=0.5, data_s=5.0,
    environment_s=5.0,
)


# ---- the parent: budget, phases, summary ---------------------------------------------------

class BudgetError(ValueError):
    pass


def parse_budget(text: str | None) -> float:
    """BUDGET_S as seconds (default 480); BudgetError unless a non-negative number."""
    if text is None or text == "":
        return DEFAULT_BUDGET_S
    try:
        value = float(text)
    except ValueError:
        raise BudgetError(f"BUDGET_S must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise BudgetError(f"BUDGET_S must be a non-negative number of seconds, got {text!r}")
    return value


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as JSON under a temporary name, then rename: whole or absent."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(partial, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", default=os.environ.get("SMOKE") == "1",
                        help="every phase at toy size on the CPU (also SMOKE=1)")
    parser.add_argument("--budget-s", default=os.environ.get("BUDGET_S"),
                        help="deadline of the whole check in seconds (also BUDGET_S; 480)")
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu_results"))
    parser.add_argument("--work", default=os.environ.get("WORK"),
                        help="data and run folders (default: a temp folder, removed at the end)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)  # internal: run one phase
    parser.add_argument("--bench", help=argparse.SUPPRESS)  # internal: one throughput config
    args = parser.parse_args(argv)
    config = SMOKE if args.smoke else FULL
    out = Path(args.out).resolve()
    if args.bench:
        return bench_one(json.loads(args.bench))
    if args.phase:
        return run_phase_here(args.phase, config, out, Path(args.work),
                              float(os.environ["GPU_CHECK_PHASE_DEADLINE"]),
                              float(os.environ["GPU_CHECK_PHASE_END"]))
    try:
        budget_s = parse_budget(args.budget_s)
    except BudgetError as error:
        print(f"error: {error} (--budget-s or BUDGET_S)", file=sys.stderr)
        return 2
    return run_all(config, budget_s, out, args.work)


def run_all(config: Config, budget_s: float, out: Path, work: str | None) -> int:
    started = time.time()
    deadline = started + budget_s
    out.mkdir(parents=True, exist_ok=True)
    own_work = work is None
    work_dir = Path(work or tempfile.mkdtemp(prefix="mars_gcms_gpu_check_")).resolve()
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    log_path = out / "gpu_check.log"
    log_path.write_text("")
    if config.smoke:  # toy sizes on a shared CPU: threads of several processes would contend
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(name, "1")
    summary = dict(budget_s=budget_s, smoke=config.smoke, started=time.strftime(
        "%Y-%m-%d %H:%M:%S"), out=str(out), work=str(work_dir), config=asdict(config),
        phases=[dict(name=name, status="pending") for name in PHASES])
    write_json(out / "summary.json", summary)
    try:
        for i, name in enumerate(PHASES):
            entry = summary["phases"][i]
            left = deadline - time.time() - RESERVE_S
            need, want = estimate(name, config, summary)
            later = sum(estimate(n, config, summary)[0] for n in PHASES[i + 1:]
                        if not _blocked(n, summary))
            entry.update(estimate_s=round(need, 1), estimate_all_s=round(want, 1))
            if _blocked(name, summary):  # data failed, or was skipped for the budget
                entry.update(status=_blocked(name, summary), seconds=0.0)
            elif need > left:
                entry.update(status="skipped (budget)", seconds=0.0,
                             figures=dict(left_s=round(max(left, 0), 1)))
            else:
                allot, timeout = allotment(need, left, later, SHARES[name] * budget_s)
                entry.update(allotted_s=round(allot, 1))
                _run_child(name, entry, config, out, work_dir, log_path, allot, timeout)
            summary["seconds"] = round(time.time() - started, 1)
            write_json(out / "summary.json", summary)
            print(f"[gpu_check] {name}: {entry['status']} ({entry.get('seconds', 0):.0f} s)",
                  flush=True)
    finally:
        if own_work:
            shutil.rmtree(work_dir, ignore_errors=True)
    failed = [p["name"] for p in summary["phases"] if p["status"] == "failed"]
    print(f"[gpu_check] {out / 'summary.json'}; {time.time() - started:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def allotment(need: float, left: float, later: float, share: float) -> tuple[float, float]:
    """(seconds a phase plans its work for, seconds after which it is killed).

    need: what the phase needs at least; left: what is left of the budget; later: what the
    later phases need at least (kept back for them); share: the most it plans for beyond its
    need. The timeout leaves room for a phase that runs a little over, never past ``left``.
    """
    allot = min(left, max(need, min(left - later, share)))
    return allot, min(left, allot + max(30.0, 0.5 * allot))


def _blocked(name: str, summary: dict) -> str:
    """The status of a phase that cannot run without the data phase ("" if it can)."""
    data = next(p for p in summary["phases"] if p["name"] == "data")
    if name not in NEEDS_DATA or data["status"] in ("pending", "ok"):
        return ""
    return "skipped (data failed)" if data["status"] == "failed" else data["status"]


def _run_child(name: str, entry: dict, config: Config, out: Path, work: Path, log_path: Path,
               allot: float, timeout: float) -> None:
    """Run phase ``name`` in a child process; record status, seconds and its figures. The
    child plans its work to fit ``allot`` s and stops what it runs before ``timeout`` s,
    when it is killed."""
    result_path = work / f"phase_{name}.json"
    result_path.unlink(missing_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--phase", name, "--out", str(out),
               "--work", str(work)] + (["--smoke"] if config.smoke else [])
    started = time.time()
    env = child_environment(GPU_CHECK_PHASE_DEADLINE=str(started + allot),
                            GPU_CHECK_PHASE_END=str(started + timeout - KILL_GRACE_S - 2))
    with open(log_path, "a") as log:
        log.write(f"\n===== {name} =====\n")
        log.flush()
        code = run_bounded(command, timeout, log, env)
    entry["seconds"] = round(time.time() - started, 1)
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    entry["figures"] = result.get("figures", {})
    if code == 0:
        entry["status"] = "ok"
    else:
        entry["status"] = "failed"
        entry["error"] = result.get("error") or (
            f"timed out after {timeout:.0f} s" if code is None else
            f"exit status {code} (see gpu_check.log)")


def child_environment(**extra: str) -> dict[str, str]:
    """os.environ with this checkout first on PYTHONPATH (so papermill's kernels and the
    sweep's workers import it too) and ``extra``."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT) + (os.pathsep + path if path else ""),
            "PYTHONUNBUFFERED": "1", **extra}


def run_bounded(command: list[str], timeout: float, log, env: dict | None = None,
                cwd: Path = REPO_ROOT) -> int | None:
    """Run ``command`` (output to ``log``) for at most ``timeout`` s; returns its exit status,
    or None when it was killed at the timeout (with every process it started)."""
    process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                               env=env or child_environment(), start_new_session=True)
    try:
        return process.wait(timeout=max(timeout, 0.1))
    except subprocess.TimeoutExpired:
        from lib.sweep.tasks import end_process_tree

        # SIGTERM to the phase, then SIGKILL to what is left of its tree (papermill runs too)
        end_process_tree(process, KILL_GRACE_S, signal.SIGTERM)
        return None


# ---- estimates -----------------------------------------------------------------------------

def estimate(name: str, config: Config, summary: dict) -> tuple[float, float]:
    """(least useful, everything) seconds that phase ``name`` needs, from what earlier phases
    measured where they did, else from ``config``'s guesses."""
    if name == "environment":
        return config.environment_s, config.environment_s
    if name == "throughput":
        costs = [bench_estimate(item, config, {}) for item in config.bench]
        return costs[0], sum(costs)
    if name == "data":
        return config.data_s, config.data_s
    if name == "runs_per_gpu":
        costs = [sweep_estimate(k, config, summary) for k in config.runs_per_gpu]
        return costs[0], sum(costs)
    if name == "precision":
        fewest, most = config.precision_epochs
        return (2 * run_estimate(config.precision_backbone, fewest, config, summary),
                2 * run_estimate(config.precision_backbone, most, config, summary))
    if name == "hrnet_fold":
        fewest, most = config.fold_epochs
        return (run_estimate(config.fold_backbone, fewest, config, summary),
                run_estimate(config.fold_backbone, most, config, summary))
    raise KeyError(name)


def bench_estimate(item, config: Config, measured: dict) -> float:
    """Seconds of one throughput config: a process start, model and steps (measured for the
    same backbone when one ran already), plus compilation."""
    backbone, _, compiled = item
    base = measured.get(backbone, config.process_start_s + 8.0)
    return base + (config.compile_s.get(backbone, 60.0) if compiled else 0.0)


def _figures(summary: dict, name: str) -> dict:
    """What phase ``name`` measured (also a failed one: its items that ran are there)."""
    phase = next(p for p in summary["phases"] if p["name"] == name)
    return phase.get("figures", {})


def epoch_seconds(backbone: str, config: Config, summary: dict) -> float:
    """One epoch of a fold (train + OOF eval) of ``backbone``: from its measured throughput
    (eager, the default precision) and the data's sizes, else config's guess."""
    data = _figures(summary, "data")
    n_train, n_oof = data.get("fold_train_samples"), data.get("fold_oof_samples")
    for result in _figures(summary, "throughput").get("configs", []):
        if (result.get("backbone") == backbone and result.get("amp") and not result.get("compiled")
                and result.get("train_samples_per_s") and n_train):
            return (n_train / result["train_samples_per_s"]
                    + n_oof / result["infer_samples_per_s"])
    return config.epoch_s.get(backbone, 5.0)


def run_overhead(config: Config, summary: dict) -> float:
    """A papermill run's seconds beyond its epochs: measured by the sweeps, else a guess."""
    for result in _figures(summary, "runs_per_gpu").get("sweeps", []):
        if result.get("K") == 1 and result.get("run_overhead_s"):
            return result["run_overhead_s"]
    return config.run_overhead_s


def run_estimate(backbone: str, epochs: int, config: Config, summary: dict) -> float:
    return run_overhead(config, summary) + epochs * epoch_seconds(backbone, config, summary)


def sweep_estimate(k: int, config: Config, summary: dict) -> float:
    """A sweep of K runs sharing one device: cluster start, then K runs side by side, each
    beside the first assumed to slow them all by config.sharing_slowdown (a guess)."""
    one = run_estimate(config.sweep_backbone, config.sweep_epochs, config, summary)
    return config.cluster_s + one * (1 + config.sharing_slowdown * (k - 1))


# ---- the child: one phase ------------------------------------------------------------------

class PhaseRecord:
    """The figures of a running phase, written to WORK/phase_<name>.json after every change,
    so that what was measured before a crash or a timeout is kept."""

    def __init__(self, path: Path):
        self.path, self.figures = path, {}

    def update(self, **values) -> None:
        self.figures.update(values)
        write_json(self.path, dict(figures=self.figures))

    def fail(self, error: str) -> None:
        write_json(self.path, dict(figures=self.figures, error=error))


def run_phase_here(name: str, config: Config, out: Path, work: Path, deadline: float,
                   end: float) -> int:
    """Run one phase in this (child) process. deadline: when its work should be done (it
    plans by it); end: when whatever it started is stopped (timeouts), before the parent
    kills it."""
    record = PhaseRecord(work / f"phase_{name}.json")
    record.update()
    summary = json.loads((out / "summary.json").read_text())
    phase = globals()[f"phase_{name}"]
    try:
        phase(config, summary, work, deadline, end, record)
    except Exception as error:  # recorded for the summary, and the phase exits non-zero
        import traceback

        traceback.print_exc()
        record.fail(f"{type(error).__name__}: {error}"[:1000])
        return 1
    return 0


def phase_environment(config, summary, work, deadline, end, record) -> None:
    from importlib import metadata

    import torch

    versions = {}
    for package in ("torch", "timm", "numpy", "pandas", "scikit-learn", "papermill", "ipykernel",
                    "dask", "distributed", "iterative-stratification", "lightgbm", "pyyaml",
                    "psutil"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    record.update(python=sys.version.split()[0], versions=versions,
                  torch_cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                  cuda_available=torch.cuda.is_available(), cpu_count=os.cpu_count())
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        record.update(device_count=torch.cuda.device_count(), gpu=props.name,
                      capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                      memory_gib=round(props.total_memory / 2**30, 1),
                      multiprocessors=props.multi_processor_count,
                      bf16_supported=torch.cuda.is_bf16_supported(),
                      nvidia_smi=_nvidia_smi("name,driver_version,memory.total,memory.used"))
    missing = [p for p in ("papermill", "ipykernel", "dask", "distributed",
                           "iterative-stratification", "lightgbm") if versions[p] is None]
    if missing:
        record.update(missing=missing, hint="install the wheelhouse (README: Offline GPU "
                      "machine); the sweep, precision and hrnet_fold phases need them")
    if not config.smoke and not torch.cuda.is_available():
        raise RuntimeError("torch sees no CUDA device (use --smoke on a CPU machine)")


def _nvidia_smi(query: str) -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    result = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                            capture_output=True, text=True, timeout=30)
    return result.stdout.strip() or result.stderr.strip()


# ---- phase: throughput ---------------------------------------------------------------------

def phase_throughput(config, summary, work, deadline, end, record) -> None:
    results, measured = [], {}
    for backbone, amp, compiled in config.bench:
        item = dict(backbone=backbone, amp=amp, channels_last=amp, compiled=compiled)
        need = bench_estimate((backbone, amp, compiled), config, measured)
        left = deadline - time.time()
        if need > left:
            results.append(dict(item, status="skipped (budget)", estimate_s=round(need, 1)))
            record.update(configs=results)
            continue
        spec = dict(item, device=config.device, m_bins=config.m_bins, t_bins=config.t_bins,
                    tta_offsets=list(config.tta_offsets), batch_size=config.batch_size,
                    samples=config.bench_samples, compile_backend=config.compile_backend,
                    smoke=config.smoke)
        result_file = work / "bench_result.json"
        result_file.unlink(missing_ok=True)
        started = time.time()
        command = [sys.executable, str(Path(__file__).resolve()), "--bench",
                   json.dumps(dict(spec, result_file=str(result_file)))]
        code = run_bounded(command, end - time.time(), sys.stdout)
        wall = time.time() - started
        result = json.loads(result_file.read_text()) if result_file.is_file() else {}
        status = "ok" if code == 0 else ("failed: timed out" if code is None
                                         else f"failed: exit {code}")
        results.append(dict(item, **result, status=status, wall_s=round(wall, 1),
                            estimate_s=round(need, 1)))
        if code == 0 and not compiled:
            measured[backbone] = wall
        record.update(configs=results)
    if any(r["status"].startswith("failed") for r in results):
        raise RuntimeError("throughput configs failed: " + ", ".join(
            _bench_label(r) for r in results if r["status"].startswith("failed")))


def _bench_label(r: dict) -> str:
    return (f"{r['backbone']} {'bf16+CL' if r['amp'] else 'fp32'}"
            f"{' compiled' if r['compiled'] else ''}")


def bench_one(spec: dict) -> int:
    """One throughput config in this process; writes its figures to spec["result_file"]."""
    import numpy as np
    import torch

    from lib.models.cnn import build_model
    from lib.train.device import (
        DeviceImages,
        configure_backends,
        precision,
        predict_logits,
        prepare_model,
    )
    from lib.train.settings import TrainSettings

    device = torch.device(spec["device"])
    out = Path(spec["result_file"])
    # compiled by the project's own code (TrainSettings.compile), except in the smoke run,
    # which compiles here with a backend that needs no C++ compiler; tf32 False: fp32 is the
    # original's fp32
    settings = TrainSettings(norm="mass", transform="log", mixup_prob=0.0, epochs=3,
                             warmup_epochs=0, batch_size=spec["batch_size"], amp=spec["amp"],
                             channels_last=spec["channels_last"], tf32=False,
                             compile=spec["compiled"] and not spec["smoke"])
    configure_backends(device, settings)

    rng = np.random.default_rng(0)
    n = spec["samples"]
    images = rng.random((n, spec["m_bins"], spec["t_bins"]), dtype=np.float32) ** 16
    images /= images.max(axis=(1, 2), keepdims=True)
    labels = (rng.random((n, 9)) < 0.2).astype(np.float32)
    data = DeviceImages(images, rng.integers(0, 2, n), device)
    torch.manual_seed(0)
    model = build_model(spec["backbone"], "cls3", m_bins=spec["m_bins"])
    model.width_offsets = tuple(spec["tta_offsets"])
    model = prepare_model(model, device, settings)
    compiled_by = None
    if settings.compile:
        compiled_by = "lib.training.prepare_model (compile_widths)"
    elif spec["compiled"]:
        model = torch.compile(model, backend=spec["compile_backend"])
        compiled_by = f"gpu_check (torch.compile, backend {spec['compile_backend']})"
    figures = dict(device=str(device), precision=precision(device, settings),
                   batch_size=spec["batch_size"], image=[spec["m_bins"], spec["t_bins"]],
                   compiled_by=compiled_by, torch=torch.__version__)
    steps = n // spec["batch_size"]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    figures.update(_bench_epochs(model, data, labels, settings, device, steps))
    oof = np.arange(min(n, 32))
    predict_logits(model, data, oof, settings)  # warm-up (and compilation of eval mode)
    _sync(device)
    started = time.perf_counter()
    predict_logits(model, data, np.arange(n), settings)
    _sync(device)
    figures["infer_samples_per_s"] = round(n / (time.perf_counter() - started), 1)
    if device.type == "cuda":
        figures["peak_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    write_json(out, figures)
    print(json.dumps(dict(spec=spec, **figures)), flush=True)
    return 0


def _bench_epochs(model, data, labels, settings, device, steps: int) -> dict:
    """Epochs through lib.training.train_one_epoch: one warm-up (compilation, cuDNN autotune),
    one under set_sync_debug_mode("error") (ok, or the error of the first host sync), one
    timed."""
    import torch

    from lib.train.augment import epoch_draws
    from lib.train.fit import make_optimizer, train_one_epoch

    generator = torch.Generator().manual_seed(0)
    n = len(labels)
    optimizer, scheduler = make_optimizer(model, settings, steps, device)
    train_index = torch.arange(n, device=device)
    train_labels = torch.as_tensor(labels, device=device)
    figures = dict(api="lib.training.train_one_epoch")

    def epoch(check_sync: bool = False):
        draws = epoch_draws(n, steps, settings, generator).to(device)
        _sync(device)
        started = time.perf_counter()
        if check_sync:
            torch.cuda.set_sync_debug_mode("error")
        try:
            loss_sum = train_one_epoch(model, data, optimizer, scheduler, draws,
                                       train_index, train_labels, settings)
        finally:
            if check_sync:
                torch.cuda.set_sync_debug_mode("default")
        _sync(device)
        return time.perf_counter() - started, float(loss_sum)

    model.train()
    figures["warmup_epoch_s"] = round(epoch()[0], 2)
    if device.type == "cuda":
        try:
            epoch(check_sync=True)
            figures["sync_debug"] = "ok"
        except RuntimeError as error:
            figures["sync_debug"] = f"error: {str(error).splitlines()[0][:300]}"
    else:
        figures["sync_debug"] = "not checked (CPU)"
    seconds, loss_sum = epoch()
    figures.update(train_samples_per_s=round(steps * settings.batch_size / seconds, 1),
                   step_ms=round(1000 * seconds / steps, 2), loss_finite=math.isfinite(loss_sum))
    return figures


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- phase: data ---------------------------------------------------------------------------

def data_dir(config: Config, work: Path) -> Path:
    return work / "data" / f"synthetic_{config.profile}"


def phase_data(config, summary, work, deadline, end, record) -> None:
    from lib.core.paths import dataset_work_dir
    from lib.data.dataset import load_competition
    from lib.data.folds import load_or_make_folds
    from lib.data.images import build_image_cache, cache_path
    from lib.synthetic import generate
    from lib.synthetic.profiles import PROFILES, Profile

    if config.profile_sizes:  # a profile of this check's own, known to the generator here
        PROFILES.setdefault(config.profile, Profile(**config.profile_sizes))
    folder = data_dir(config, work)
    workers = 1 if config.smoke else (os.cpu_count() or 1)
    started = time.time()
    generate(folder, profile=config.profile, seed=0, workers=workers)
    record.update(profile=config.profile, generate_s=round(time.time() - started, 1),
                  size_mib=round(sum(p.stat().st_size for p in folder.rglob("*.csv")) / 2**20))
    started = time.time()
    data = load_competition(folder)
    work_dir = dataset_work_dir(work / "cache", folder)
    cache = build_image_cache(data.metadata, cache_path(work_dir, config.m_bins, config.t_bins),
                              m_bins=config.m_bins, t_bins=config.t_bins, workers=workers,
                              progress=False)
    folds = load_or_make_folds(work_dir, data.train_labels)
    n_oof = int((folds["fold"] == 0).sum())
    record.update(cache_s=round(time.time() - started, 1), images=list(cache["images"].shape),
                  splits=data.metadata["split"].value_counts().to_dict(),
                  fold_train_samples=len(data.split_ids("train")) - n_oof
                  + len(data.split_ids("val")), fold_oof_samples=n_oof,
                  fold_test_samples=len(data.split_ids("val", "test")))


# ---- phase: runs per GPU -------------------------------------------------------------------

class MemoryPoll:
    """Peak GPU memory in use (MiB, nvidia-smi, every 0.2 s) while the block runs; None
    without nvidia-smi."""

    def __init__(self):
        self.peak = self.baseline = None
        self._process = None

    def __enter__(self):
        if shutil.which("nvidia-smi"):
            query = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                     "-i", "0"]
            self.baseline = _first_int(subprocess.run(query, capture_output=True, text=True,
                                                      timeout=30).stdout)
            self._process = subprocess.Popen(query + ["-lms", "200"], stdout=subprocess.PIPE,
                                             text=True)
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        return self

    def _read(self):
        for line in self._process.stdout:
            value = _first_int(line)
            if value is not None:
                self.peak = value if self.peak is None else max(self.peak, value)

    def __exit__(self, *exc):
        if self._process:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._thread.join(timeout=5)

    def figures(self) -> dict:
        if self._process is None:
            return dict(peak_gpu_memory_mib=None, memory_note="no nvidia-smi")
        return dict(peak_gpu_memory_mib=self.peak, idle_gpu_memory_mib=self.baseline)


def _first_int(text: str) -> int | None:
    match = re.search(r"\d+", text or "")
    return int(match.group()) if match else None


def _need_packages() -> None:
    import importlib.util

    missing = [m for m in ("papermill", "ipykernel", "distributed", "iterstrat", "lightgbm")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not installed: install the wheelhouse "
                           f"(README: Offline GPU machine)")


def common_parameters(config: Config) -> dict:
    """Parameters every run of the check gets besides the params file's (no pretrained
    weights: the machine is offline; the check's image size)."""
    values = dict(pretrained=False, m_bins=config.m_bins, t_bins=config.t_bins,
                  tta_offsets=list(config.tta_offsets), batch_size=config.batch_size)
    if config.smoke:
        values["device"] = "cpu"
    return values


def phase_runs_per_gpu(config, summary, work, deadline, end, record) -> None:
    _need_packages()
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


# ---- phases: precision and the long fold (papermill) ---------------------------------------

def train_fold(config: Config, work: Path, tag: str, backbone: str, epochs: int,
               extra: list[str], timeout: float) -> dict:
    """One fold (0, seed 3) of 3a/302 through papermill into WORK/runs/<tag>; its figures."""

    run_dir = work / "runs" / tag
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    command = [sys.executable, "-m", "papermill", "notebooks/03_train.ipynb",
               str(run_dir / "03_train.ipynb"), "-f", str(PARAMS), "--kernel", "python3",
               "--no-progress-bar", "--log-level", "WARNING", "-p", "backbone", backbone,
               "-p", "epochs", str(epochs), "-p", "fold", "0", "-p", "seed", "3",
               "-p", "run_dir", str(run_dir), "-p", "data_dir", str(data_dir(config, work)),
               "-p", "cache_dir", str(work / "cache"), "-y", json.dumps(common_parameters(config)),
               *extra]
    print(" ".join(command), flush=True)
    started = time.time()
    with MemoryPoll() as memory:
        code = run_bounded(command, timeout, sys.stdout)
    wall = time.time() - started
    figures = dict(backbone=backbone, epochs=epochs, papermill_exit=code, wall_s=round(wall, 1),
                   **memory.figures())
    if code != 0:
        raise RuntimeError(f"{tag}: papermill " + ("timed out" if code is None
                                                   else f"exit {code}"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = metrics["history"]
    figures.update(precision=metrics["precision"], best_epoch=metrics["best_epoch"],
                   best_oof_loss=round(metrics["best_oof_loss"], 5),
                   last_oof_loss=round(history[-1]["oof_loss"], 5),
                   fit_s=round(metrics["fit_seconds"], 1),
                   overhead_s=round(wall - metrics["fit_seconds"], 1),
                   epoch_train_s=[round(e["train_seconds"], 2) for e in history],
                   epoch_eval_s=[round(e["eval_seconds"], 2) for e in history])
    return figures


def phase_precision(config, summary, work, deadline, end, record) -> None:
    _need_packages()
    fewest, most = config.precision_epochs
    per_epoch = epoch_seconds(config.precision_backbone, config, summary)
    overhead = run_overhead(config, summary)
    # both runs with the same epochs, fp32 (slower: assume twice the time per epoch) first
    room = (deadline - time.time()) - 2 * overhead
    epochs = int(max(fewest, min(most, room // (3 * per_epoch))))
    record.update(backbone=config.precision_backbone, epochs=epochs, seed=3, fold=0)
    for amp, tag in ((False, "fp32"), (True, "bf16")):
        figures = train_fold(config, work, f"precision_{tag}", config.precision_backbone,
                             epochs, ["-p", "amp", str(amp)], end - time.time())
        record.update(**{tag: figures})
    fp32, bf16 = record.figures["fp32"], record.figures["bf16"]
    record.update(oof_loss_bf16_minus_fp32=round(bf16["best_oof_loss"] - fp32["best_oof_loss"], 5),
                  fit_speedup_bf16=round(fp32["fit_s"] / bf16["fit_s"], 2))


def phase_hrnet_fold(config, summary, work, deadline, end, record) -> None:
    _need_packages()
    fewest, most = config.fold_epochs
    per_epoch = epoch_seconds(config.fold_backbone, config, summary)
    overhead = run_overhead(config, summary)
    left = deadline - time.time()
    epochs = int(max(fewest, min(most, (left - overhead) // (1.2 * per_epoch))))
    record.update(estimated_epoch_s=round(per_epoch, 2), estimated_overhead_s=round(overhead, 1))
    figures = train_fold(config, work, "hrnet_fold", config.fold_backbone, epochs, [],
                         end - time.time())
    train, evals = figures["epoch_train_s"], figures["epoch_eval_s"]
    steady = [t + e for t, e in zip(train, evals)][1:] or [train[0] + evals[0]]
    epoch = sum(steady) / len(steady)
    first = train[0] + evals[0]
    record.update(**figures, steady_epoch_s=round(epoch, 2), first_epoch_s=round(first, 2),
                  fit_20_epochs_s=round(first + 19 * epoch, 1),
                  wall_20_epochs_s=round(figures["overhead_s"] + first + 19 * epoch, 1))


if __name__ == "__main__":
    sys.exit(main())
