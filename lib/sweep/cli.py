"""The sweep's command line (``python -m lib.sweep``): parse, check the plan, open the cluster,
run, summarise."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

from lib.core.files import atomic_write_text
from lib.core.paths import project_path
from lib.runs.plans import (
    PlanError,
    check_folds,
    check_parameters,
    check_runs,
    expand_plan,
    load_plan,
)
from lib.sweep.schedule import (
    data_fingerprints,
    notebook_default,
    resolve_devices,
    run_sweep,
    summary_table,
)


def main(argv: list[str] | None = None) -> int:
    from lib.sweep import batch, local, preflight

    parser = argparse.ArgumentParser(
        description="Execute a plan's runs x folds with papermill, one Dask task per run.")
    parser.add_argument("plan", help="plan YAML (params/plans/...)")
    parser.add_argument("--folds", help="comma-separated folds (default: the plan's)")
    parser.add_argument("--workers", type=int, default=1,
                        help="local CPU workers (local cluster without GPUs)")
    parser.add_argument("--gpus", help="local cluster: the GPUs to use, e.g. 2,3 (default: "
                        "every GPU torch sees); one pinned worker each")
    parser.add_argument("--runs-per-gpu", type=int, default=1,
                        help="runs sharing one GPU (each asks for a 1/K share of its GPU)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://HOST:8786)")
    where.add_argument("--scheduler-file", help="scheduler file of a running Dask scheduler")
    where.add_argument("--cluster", help="batch-queue cluster YAML (params/clusters/slurm.yaml)")
    parser.add_argument("--wait-timeout", type=float, default=1800.0,
                        help="with --cluster: seconds to wait for the first batch job's worker "
                        "before cancelling the jobs (default 1800)")
    parser.add_argument("--dashboard-address", default="127.0.0.1:0",
                        help="local cluster: where its Dask dashboard listens (default: "
                        "loopback, a free port; e.g. 0.0.0.0:8787 to expose it on purpose)")
    parser.add_argument("--print-job-script", action="store_true",
                        help="with --cluster: print the batch script and exit")
    parser.add_argument("--data-dir", help="data_dir parameter of every run")
    parser.add_argument("--cache-dir", help="cache_dir parameter of every run")
    parser.add_argument("--runs-dir", default="runs", help="root of the run folders")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[],
                        metavar=("KEY", "VALUE"), help="override a parameter (YAML value)")
    parser.add_argument("--stamp", help="file touched when a run finished in this sweep")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.runs_per_gpu <= local.MAX_RUNS_PER_GPU:
        parser.error(f"--runs-per-gpu must be in 1..{local.MAX_RUNS_PER_GPU}, got "
                     f"{args.runs_per_gpu}")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if not args.wait_timeout > 0:
        parser.error(f"--wait-timeout must be a positive number of seconds, got "
                     f"{args.wait_timeout}")
    if args.gpus is not None and (args.scheduler or args.scheduler_file or args.cluster):
        parser.error("--gpus chooses the GPUs of a local sweep; on a running scheduler or a "
                     "batch cluster each worker's CUDA_VISIBLE_DEVICES decides")

    try:
        if args.print_job_script:
            if not args.cluster:
                parser.error("--print-job-script needs --cluster")
            print(batch.job_script(args.cluster))
            return 0
        if args.cluster:  # its keys and types, before the plan's checks or any submission
            batch.load_cluster_config(args.cluster)
        gpus = None
        if args.gpus is not None:
            try:
                gpus = local.parse_gpus(args.gpus, local.visible_gpus())
            except ValueError as error:
                parser.error(str(error))
        overrides = {key: yaml.safe_load(value) for key, value in args.param}
        if args.data_dir:
            overrides["data_dir"] = str(project_path(args.data_dir))
        if args.cache_dir:
            overrides["cache_dir"] = str(project_path(args.cache_dir))
        folds = _parse_folds(args.folds) if args.folds else None
        specs = expand_plan(load_plan(args.plan), folds, args.runs_dir)
        skipped = check_parameters(specs, overrides)
        check_folds(specs, overrides)
        check_runs(specs, overrides)
        resolve_devices(specs, overrides, gpu_workers=False)  # refuses cuda:N before starting
        fingerprints = data_fingerprints(specs, overrides)
    except (PlanError, batch.ClusterConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    runs_root = project_path(args.runs_dir)
    data_dirs = [project_path(d or notebook_default(specs[0].notebook, "data_dir"))
                 for d in fingerprints]
    try:
        with local.open_client(scheduler=args.scheduler, scheduler_file=args.scheduler_file,
                                 cluster_file=args.cluster, workers=args.workers, gpus=gpus,
                                 runs_per_gpu=args.runs_per_gpu, n_runs=len(specs),
                                 wait_timeout=args.wait_timeout,
                                 dashboard_address=args.dashboard_address,
                                 progress=lambda line: print(line, file=sys.stderr)
                                 ) as session:
            print(f"Dask dashboard: {session.client.dashboard_link}", file=sys.stderr)
            specs = resolve_devices(specs, overrides, session.gpu)
            devices = sorted({s.device for s in specs if s.device})
            if devices:
                print(f"device: {', '.join(devices)}", file=sys.stderr)
            problems, cuda = preflight.preflight(session.client, data_dirs, runs_root,
                                               need_cuda="cuda" in devices)
            if problems:
                print("error: workers failed the preflight, nothing was trained:\n" +
                      "\n".join(f"  {worker}: {reason}" for worker, reason in problems.items()),
                      file=sys.stderr)
                return 2
            capabilities = {name: info.get("capability") for name, info in cuda.items()}
            results = run_sweep(session.client, specs, overrides, fingerprints,
                                runs_per_gpu=args.runs_per_gpu,
                                environments=session.environments, gpu=session.gpu,
                                capabilities=capabilities, progress=not args.no_progress)
    except (batch.ClusterWaitError, batch.ClusterConfigError, local.ConnectError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary_table(results))
    statuses = [status for _, status, _, _ in results]
    counts = {s: statuses.count(s) for s in ("ran", "done", "failed", "stale", "stopped")}
    print(f"{len(results)} runs: {counts['ran']} ran, {counts['done']} already finished, "
          f"{counts['failed']} failed, {counts['stale']} stale (finished with other data, "
          f"parameters, device or precision), {counts['stopped']} stopped")
    for key, missed in skipped.items():
        print(f"note: -p {key} did not apply to {len(missed)} run(s) whose notebook has no "
              f"such parameter: {', '.join(missed)}")
    if args.stamp and (counts["ran"] or not Path(args.stamp).exists()):
        atomic_write_text(args.stamp, f"{time.time()}\n")
    if counts["stopped"]:
        return 130
    return 1 if counts["failed"] or counts["stale"] else 0


def _parse_folds(text: str) -> list[int]:
    try:
        return [int(f) for f in text.split(",")]
    except ValueError:
        raise PlanError(f"--folds {text!r}: give fold numbers separated by commas, e.g. "
                        f"--folds 0,1") from None
