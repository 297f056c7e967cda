"""Every GPU check in one bounded call, for a lent machine with torch and timm (and, offline,
the wheelhouse: docs/gpu.md, "An offline GPU machine").

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

The phases live in scripts/gpu_phases/, one module each (its __init__ lists them); this file
is the entry point: arguments, the budget, each phase in a child process, summary.json.

What it uses of the project: lib.train's epoch_draws, make_optimizer and train_one_epoch
(the throughput epochs, one of them under sync debug mode "error"), TrainSettings.compile
(lib.train.device.compile_widths; the smoke run compiles the model here with the "eager" backend,
which needs no C++ compiler) and .tf32 (False: the fp32 configs are true fp32),
configure_backends; ``lib.sweep --gpus 0`` (its runs' attempts.txt lines name the
CUDA_VISIBLE_DEVICES each ran with); 03_train's amp and tf32 parameters.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))  # this checkout's lib, not an installed copy
if str(REPO_ROOT / "scripts") not in sys.path:
    sys.path.insert(1, str(REPO_ROOT / "scripts"))  # gpu_phases and bench_common, beside us

# the phases and what they share (tests use run_bounded, write_json and SMOKE from here)
from gpu_phases import run_phase_here  # noqa: E402
from gpu_phases.common import child_environment, run_bounded, write_json  # noqa: E402
from gpu_phases.config import (  # noqa: E402
    DEFAULT_BUDGET_S,
    FULL,
    KILL_GRACE_S,
    NEEDS_DATA,
    PHASES,
    RESERVE_S,
    SHARES,
    SMOKE,
    Config,
)
from gpu_phases.estimates import estimate  # noqa: E402
from gpu_phases.throughput import bench_one  # noqa: E402

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


if __name__ == "__main__":
    sys.exit(main())
