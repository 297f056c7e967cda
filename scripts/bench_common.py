"""What the benchmark scripts share: the description of the machine they ran on, and the one
JSON document each of them writes (scripts/render_benchmarks.py renders them all into
docs/benchmarks.md):

    {"benchmark": name, "command": the exact command line, "date": ISO date-time UTC,
     "machine": describe_machine(), "figures": {...}}

By default a benchmark writes benchmarks/<name>.json in this checkout (``--json PATH``
elsewhere). ``machine`` holds the load average when the benchmark started and when it ended:
on a shared machine the figures are only as good as the load was low.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_DIR = REPO_ROOT / "benchmarks"
KEYS = ("benchmark", "command", "date", "machine", "figures")


def utc_now() -> str:
    """The current date and time, ISO 8601 in UTC to the second (2026-12-05T19:04:08Z)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def command_line() -> str:
    """This process's command line as it was typed (interpreter included), shell-quoted."""
    argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
    return shlex.join(argv)


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the system has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what platform says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def memory_gib() -> float | None:
    """Physical memory in GiB (None where the system does not say)."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (AttributeError, ValueError, OSError):
        return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def gpu_name() -> str | None:
    """The first CUDA device's name, with the count when there are several; None without
    one. Asks torch when this process imported it already, else nvidia-smi (a benchmark that
    needs no torch does not pay for importing it)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        if not torch.cuda.is_available():
            return None
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    elif shutil.which("nvidia-smi"):
        try:
            done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        names = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    else:
        return None
    if not names:
        return None
    return names[0] if len(names) == 1 else f"{len(names)} x {names[0]}"


def describe_machine() -> dict:
    """The machine a benchmark runs on: CPU model, cores (and those this process may use),
    memory, GPU (None: none), Python, torch, OS, and the load average now (call it at the
    start; write_result adds the load at the end)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return dict(cpu=cpu_model(), cores=os.cpu_count(), usable_cores=usable,
                memory_gib=memory_gib(), gpu=gpu_name(), python=platform.python_version(),
                torch=_version("torch"), os=platform.platform(terse=True),
                load_avg_start=load_average())


def default_json(name: str) -> Path:
    """Where benchmark ``name`` writes by default: benchmarks/<name>.json in this checkout."""
    return BENCHMARKS_DIR / f"{name}.json"


def add_json_option(parser: argparse.ArgumentParser, default_name: str) -> None:
    """--json PATH: where the result goes (default: benchmarks/<default_name>.json)."""
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help=f"write the result here (default benchmarks/{default_name}.json; "
                             "scripts/render_benchmarks.py renders benchmarks/*.json)")


def write_json(path: Path, data: dict) -> Path:
    """``data`` as indented JSON under a temporary name, then renamed: whole or absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(partial, path)
    return path


def write_result(path: Path, benchmark: str, figures: dict, machine: dict, date: str,
                 command: str | None = None) -> Path:
    """Write one benchmark's document to ``path``; ``machine`` (describe_machine() at the
    start) gets the load average now, ``date`` is when it started (utc_now()), ``command``
    defaults to this process's command line."""
    document = dict(benchmark=benchmark, command=command or command_line(), date=date,
                    machine=dict(machine, load_avg_end=load_average()), figures=figures)
    return write_json(path, document)


def read_json_object(path: Path, error: type[Exception] = ValueError,
                     missing: str = "not found") -> dict:
    """The JSON object in ``path``; ``error`` naming the file when it is absent (``missing``
    says why it might be), unreadable, not JSON or not an object."""
    if not path.is_file():
        raise error(f"{path}: {missing}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise error(f"{path}: cannot be read as JSON: {problem}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: holds {type(data).__name__}, not a JSON object")
    return data
