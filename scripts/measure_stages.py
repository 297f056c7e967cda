"""Wall time and peak memory of each stage of a command such as `make demo`, measured from
outside by sampling its process tree.

    .venv/bin/python scripts/measure_stages.py --name stages_small --data-dir data/synthetic_small \
        -- make demo

Every ``--interval`` seconds the resident memory (RSS) of every process under the command is
read (psutil) and credited to a stage, found from the process's own command line or its
nearest ancestor's, the outermost match winning:

    pip -> setup, lib.synthetic -> generate, papermill ... notebooks/NN_name.ipynb -> NN_name
    (a papermill run of a numbered notebook), lib.sweep -> sweep, lib.reports -> report

A stage's ``peak_rss_mib`` is the largest sum over its processes at one moment (a process's
shared pages count in each process that maps them, so this bounds the real use from above);
``peak_process_mib`` its largest single process; ``wall_s`` the time from the first to the
last sample that saw it. The measured command itself is no stage (it may be a shell that
runs several). Inside the sweep each run (a ``python -m lib.runs.engine`` process and
its kernel) is also followed: per model, the number of runs, their mean wall time and the
largest peak of one run. Spikes shorter than the interval can be missed.

The document goes to benchmarks/<name>.json (scripts/render_benchmarks.py renders it) only when
the command exits 0, so a failed or interrupted run never replaces a finished result; the
table is printed either way, and the command's exit status is this script's.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import psutil
from bench_common import add_json_option, default_json, describe_machine, utc_now, write_result

MIB = 2**20
NOTEBOOK = re.compile(r"(?:^|/)notebooks/(\d\d\w*)\.ipynb$")
MARKERS = (("-m pip", "setup"), ("lib.synthetic", "generate"), ("lib.sweep", "sweep"),
           ("lib.reports", "report"))


def stage_of(argv: list[str]) -> str | None:
    """The stage a process with command line ``argv`` belongs to, or None."""
    line = " ".join(argv)
    for marker, stage in MARKERS:
        if marker in line:
            return stage
    if "papermill" not in line:  # e.g. make's look-up of a notebook's lib/ files
        return None
    for arg in argv:
        found = NOTEBOOK.search(arg)
        if found:
            return found.group(1)
    return None


def run_of(argv: list[str]) -> str | None:
    """A sweep run's model (name/backbone of its run folder) from the command line of its
    ``python -m lib.runs.engine INPUT OUTPUT ...`` process, else None."""
    if "lib.runs.engine" not in argv:
        return None
    notebooks = [a for a in argv if a.endswith(".ipynb")]
    if len(notebooks) < 2:
        return None
    run_dir = Path(notebooks[1]).parent
    return f"{run_dir.parent.parent.name}/{run_dir.parent.name}"


def snapshot(root: psutil.Process) -> dict[int, tuple[int | None, list[str], int]]:
    """{pid: (parent pid, command line, rss bytes)} of ``root`` and its descendants alive now."""
    found = {}
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return found
    for process in processes:
        try:
            with process.oneshot():
                found[process.pid] = (process.ppid(), process.cmdline(),
                                      process.memory_info().rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def attribute(processes: dict[int, tuple[int | None, list[str], int]], root: int
              ) -> tuple[dict[str, list[int]], dict[int, list[int]], dict[int, str]]:
    """({stage: rss of its processes}, {engine pid: rss of its run's processes}, {engine pid:
    model}) for one snapshot: each process goes to the outermost stage among itself and its
    ancestors below ``root`` (the measured command, maybe a shell running several stages,
    is none), and to the innermost sweep run."""
    stages: dict[str, list[int]] = {}
    runs: dict[int, list[int]] = {}
    models: dict[int, str] = {}
    for pid, (_, _, rss) in processes.items():
        stage, run, current = None, None, pid
        while current in processes and current != root:
            parent, argv, _ = processes[current]
            stage = stage_of(argv) or stage
            model = run_of(argv) if run is None else None
            if model:
                run, models[current] = current, model
            current = parent
        if stage is not None:
            stages.setdefault(stage, []).append(rss)
        if run is not None:
            runs.setdefault(run, []).append(rss)
    return stages, runs, models


def measure(command: list[str], interval: float) -> tuple[int, float, dict, dict]:
    """Run ``command``, sampling its tree every ``interval`` s. Returns (exit status, wall
    seconds, {stage: {first, last, peak, peak_process}}, {engine pid: {model, first, last,
    peak}})."""
    start = time.monotonic()
    child = subprocess.Popen(command)
    root = psutil.Process(child.pid)
    stages: dict[str, dict] = {}
    runs: dict[int, dict] = {}
    while child.poll() is None:
        now = time.monotonic() - start
        by_stage, by_run, models = attribute(snapshot(root), root.pid)
        for stage, sizes in by_stage.items():
            seen = stages.setdefault(stage, dict(first=now, peak=0, peak_process=0))
            seen.update(last=now, peak=max(seen["peak"], sum(sizes)),
                        peak_process=max(seen["peak_process"], max(sizes)))
        for pid, sizes in by_run.items():
            seen = runs.setdefault(pid, dict(model=models[pid], first=now, peak=0))
            seen.update(last=now, peak=max(seen["peak"], sum(sizes)))
        time.sleep(interval)
    return child.returncode, time.monotonic() - start, stages, runs


def folder_facts(data_dir: Path | None) -> dict:
    """Samples and gigabytes of run files of a competition folder (nothing without one)."""
    if data_dir is None or not (data_dir / "metadata.csv").is_file():
        return {}
    import pandas as pd

    metadata = pd.read_csv(data_dir / "metadata.csv")
    size = sum((data_dir / p).stat().st_size for p in metadata["features_path"]
               if (data_dir / p).is_file())
    return dict(data=str(data_dir), samples=len(metadata), run_files_gb=round(size / 1e9, 2))


def figures_of(wall: float, stages: dict, runs: dict, facts: dict) -> dict:
    """The benchmark's figures: the folder, each stage's seconds (also per sample) and peak
    memory, and each sweep model's runs."""
    samples = facts.get("samples")
    rows = []
    for stage, seen in sorted(stages.items(), key=lambda item: item[1]["first"]):
        seconds = seen["last"] - seen["first"]
        rows.append(dict(stage=stage, wall_s=round(seconds, 1),
                         s_per_sample=round(seconds / samples, 4) if samples else None,
                         peak_rss_mib=round(seen["peak"] / MIB),
                         peak_process_mib=round(seen["peak_process"] / MIB)))
    models: dict[str, list[dict]] = {}
    for seen in runs.values():
        models.setdefault(seen["model"], []).append(seen)
    run_rows = [dict(model=model, runs=len(seen),
                     mean_run_s=round(sum(s["last"] - s["first"] for s in seen) / len(seen), 1),
                     peak_run_rss_mib=round(max(s["peak"] for s in seen) / MIB))
                for model, seen in models.items()]
    return dict(facts, wall_s=round(wall, 1), stages=rows, runs=run_rows)


def print_table(figures: dict) -> None:
    print(f"{'stage':<22}{'wall s':>10}{'s/sample':>10}{'peak MiB':>10}{'1 process':>11}")
    for row in figures["stages"]:
        per = "" if row["s_per_sample"] is None else f"{row['s_per_sample']:.4f}"
        print(f"{row['stage']:<22}{row['wall_s']:>10.1f}{per:>10}{row['peak_rss_mib']:>10}"
              f"{row['peak_process_mib']:>11}")
    for row in figures["runs"]:
        print(f"  run {row['model']:<34} x{row['runs']:<4} {row['mean_run_s']:>7.1f} s "
              f"{row['peak_run_rss_mib']:>7} MiB")
    print(f"total {figures['wall_s']:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="stages",
                        help="benchmarks/<name>.json (default stages)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the competition folder the command works on (for per-sample "
                             "figures; read after the command, so it may generate it)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    add_json_option(parser, "stages")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="the command to measure, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to measure after --, e.g. -- make demo")
    if not args.interval > 0:
        parser.error(f"--interval must be a positive number of seconds, got {args.interval}")
    machine, date = describe_machine(), utc_now()
    code, wall, stages, runs = measure(command, args.interval)
    figures = figures_of(wall, stages, runs, folder_facts(args.data_dir))
    print_table(figures)
    if code != 0:
        print(f"{shlex.join(command)} exited with status {code}: nothing written",
              file=sys.stderr)
        return code
    path = write_result(args.json or default_json(args.name), "stages", figures, machine, date)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
