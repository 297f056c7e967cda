"""The phases of scripts/gpu_check.py, one module each, and the code they share.

    config        the phases in priority order, budget shares, FULL and SMOKE sizes
    common        JSON written whole, bounded child processes, PhaseRecord, MemoryPoll
    estimates     the seconds each phase needs (measured where earlier phases could)
    environment   1. torch, CUDA, the GPU, versions, the machine
    throughput    2. train and inference samples/s: bf16 + channels_last vs fp32, compiled
    data          3. a synthetic folder with the real sample counts, its cache and folds
    runs_per_gpu  4. lib.sweep with --runs-per-gpu K: folds per hour, peak GPU memory
    folds         5. precision (fp32 vs bf16 on one fold), 6. hrnet_fold (one long fold)

gpu_check.py, the entry point, keeps the budget and runs each phase in a child process
(``gpu_check.py --phase NAME``: run_phase_here below); the phase writes what it measured to
WORK/phase_<name>.json as it goes, and the parent puts it in summary.json. The package is
imported with scripts/ on sys.path and this checkout first (gpu_check.py puts them there), so
``lib`` is this checkout's.
"""

from __future__ import annotations

import json
from pathlib import Path

from .common import PhaseRecord
from .config import Config
from .data import phase_data
from .environment import phase_environment
from .folds import phase_hrnet_fold, phase_precision
from .runs_per_gpu import phase_runs_per_gpu
from .throughput import phase_throughput

# name -> phase(config, summary, work, deadline, end, record), in config.PHASES order
PHASE_FUNCTIONS = dict(environment=phase_environment, throughput=phase_throughput,
                       data=phase_data, runs_per_gpu=phase_runs_per_gpu,
                       precision=phase_precision, hrnet_fold=phase_hrnet_fold)


def run_phase_here(name: str, config: Config, out: Path, work: Path, deadline: float,
                   end: float) -> int:
    """Run one phase in this (child) process. deadline: when its work should be done (it
    plans by it); end: when whatever it started is stopped (timeouts), before the parent
    kills it."""
    record = PhaseRecord(work / f"phase_{name}.json")
    record.update()
    summary = json.loads((out / "summary.json").read_text())
    phase = PHASE_FUNCTIONS[name]
    try:
        phase(config, summary, work, deadline, end, record)
    except Exception as error:  # recorded for the summary, and the phase exits non-zero
        import traceback

        traceback.print_exc()
        record.fail(f"{type(error).__name__}: {error}"[:1000])
        return 1
    return 0
