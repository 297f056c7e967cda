"""What the GPU check's parent and phases share: JSON files written whole, child processes
bounded by a timeout (with everything they start), a phase's record of its figures, GPU memory
polled with nvidia-smi, and the data folder and run parameters of the check."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path

from .config import KILL_GRACE_S, REPO_ROOT, Config


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as JSON under a temporary name, then rename: whole or absent."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(partial, path)


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


def need_packages() -> None:
    """RuntimeError naming what the papermill phases need and this Python lacks."""
    import importlib.util

    missing = [m for m in ("papermill", "ipykernel", "distributed", "iterstrat", "lightgbm")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not installed: install the wheelhouse "
                           f"(docs/gpu.md: An offline GPU machine)")


def common_parameters(config: Config) -> dict:
    """Parameters every run of the check gets besides the params file's (no pretrained
    weights: the machine is offline; the check's image size)."""
    values = dict(pretrained=False, m_bins=config.m_bins, t_bins=config.t_bins,
                  tta_offsets=list(config.tta_offsets), batch_size=config.batch_size)
    if config.smoke:
        values["device"] = "cpu"
    return values


def data_dir(config: Config, work: Path) -> Path:
    """The synthetic competition folder the data phase makes in WORK."""
    return work / "data" / f"synthetic_{config.profile}"


def sync(device) -> None:
    """Wait for the device's queued work (CUDA; nothing on the CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
