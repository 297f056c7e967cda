"""Phase 1, environment: torch, CUDA, the GPU's name, capability and memory, the versions of
what the check uses, the machine (scripts/bench_common.py's description, as the benchmarks
record it), and what is missing for the later phases."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def phase_environment(config, summary, work, deadline, end, record) -> None:
    from importlib import metadata

    import torch
    from bench_common import describe_machine  # scripts/ is on sys.path (gpu_check.py)

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
                  cuda_available=torch.cuda.is_available(), cpu_count=os.cpu_count(),
                  machine=describe_machine())
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
        record.update(missing=missing, hint="install the wheelhouse (docs/gpu.md: An offline GPU "
                      "machine); the sweep, precision and hrnet_fold phases need them")
    if not config.smoke and not torch.cuda.is_available():
        raise RuntimeError("torch sees no CUDA device (use --smoke on a CPU machine)")


def _nvidia_smi(query: str) -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    result = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                            capture_output=True, text=True, timeout=30)
    return result.stdout.strip() or result.stderr.strip()
