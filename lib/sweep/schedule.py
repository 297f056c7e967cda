"""The sweep on a Dask client: which device the runs get, submitting one task per run, the
summary table, and the data fingerprints the runs must see."""

from __future__ import annotations

import dataclasses
import os
import sys
import time

from lib.core.paths import project_path
from lib.runs.plans import (
    PlanError,
    RunSpec,
    notebook_parameters,
    parameter_defaults,
    run_parameters,
)
from lib.runs.run_folder import is_done, read_metrics
from lib.sweep.tasks import Result, run_task

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


def run_sweep(client, specs: list[RunSpec], overrides: dict, fingerprints: dict[str, str], *,
              runs_per_gpu: int = 1, environments: dict | None = None, gpu: bool = False,
              capabilities: dict | None = None, progress: bool = True) -> list[Result]:
    """Submit one task per spec to ``client`` and wait for them; returns (spec, status, detail,
    worker) in the order of ``specs``. gpu: each task asks for gpu_share(runs_per_gpu) of the
    workers' "GPU" resource (exactly runs_per_gpu runs share a GPU). Ctrl-C: queued runs are
    cancelled and running ones stopped (both reported as "stopped"), then the results so far
    are returned."""
    from distributed import Event, as_completed

    from lib.sweep.local import gpu_share

    stop_name = f"mars-gcms-sweep-stop-{os.getpid()}-{time.time_ns()}"
    stop = Event(stop_name, client=client)
    resources = {"GPU": gpu_share(runs_per_gpu)} if gpu else None
    futures = {client.submit(run_task, spec, overrides, fingerprints, environments or {},
                             stop_name, capabilities, key=f"run-{spec.label}-{time.time_ns()}",
                             pure=False, resources=resources, retries=0): spec
               for spec in specs}
    results: dict[RunSpec, Result] = {}
    with ProgressReport(len(specs), enabled=progress) as report:
        try:
            for future in as_completed(futures):
                spec = futures[future]
                results[spec] = _result(spec, future)
                report.finished(spec.label, results[spec][1])
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


class ProgressReport:
    """The sweep's progress on ``stream`` (stderr): a tqdm bar on a terminal; elsewhere (a log
    file, a pipe) one line per finished run, "sweep: 3/10 runs finished (last: LABEL ran)",
    instead of a bar that grows into one endless line. Nothing when not ``enabled``."""

    def __init__(self, total: int, enabled: bool = True, stream=None):
        from tqdm.auto import tqdm

        self.total, self.count = total, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        live = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=total, desc="sweep", unit="run", file=self.stream,
                        disable=not live)

    def finished(self, label: str, status: str) -> None:
        self.count += 1
        if not self.bar.disable:
            self.bar.update()
            self.bar.set_postfix_str(f"last: {label} {status}")
        elif self.enabled:
            print(f"sweep: {self.count}/{self.total} runs finished (last: {label} {status})",
                  file=self.stream, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()


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
    from lib.data.dataset import DataError, load_competition
    from lib.runs.run_folder import data_fingerprint

    result = {}
    for spec in specs:
        given = str(run_parameters(spec, overrides).get("data_dir", ""))
        if given in result:
            continue
        folder = given or notebook_default(spec.notebook, "data_dir")
        try:
            result[given] = data_fingerprint(load_competition(project_path(folder)))
        except DataError as error:
            raise PlanError(f"data_dir {folder}: {error}") from None
    return result


def notebook_default(notebook: str, name: str):
    """The default of parameter ``name`` in ``notebook``'s parameters cell."""
    return parameter_defaults(notebook)[name]
