"""Where a sweep's runs execute: a Dask client on a local cluster, a running scheduler, or a
batch-queue cluster (dask-jobqueue) described by a YAML file; and the preflight every worker
passes before anything trains.

Local cluster: one worker process per GPU (resource GPU=1, pinned with CUDA_VISIBLE_DEVICES,
``runs_per_gpu`` threads), or on CPU ``workers`` processes of one thread that split the cores.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import os
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lib.paths import REPO_ROOT, project_path

# Keys of a cluster YAML besides dask-jobqueue's own keyword arguments of its cluster class.
OWN_KEYS = {"kind", "jobs"}
KINDS = ("slurm", "pbs", "sge", "lsf", "htcondor", "oar", "moab")
REQUIRED_KEYS = ("walltime", "cores", "memory")


class ClusterConfigError(ValueError):
    """A cluster YAML is wrong; the message names the file and the key."""


@dataclass
class Session:
    """An open Dask client, with what the sweep needs to know about its workers.

    environments: {worker address: environment for its papermill processes} (local clusters:
    the GPU pin, or the CPU-thread share); gpu: runs ask for the "GPU" resource.
    """

    client: object
    environments: dict[str, dict[str, str]] = field(default_factory=dict)
    gpu: bool = False


@contextmanager
def open_client(*, scheduler: str | None = None, scheduler_file: str | None = None,
                cluster_file: str | None = None, workers: int = 1, runs_per_gpu: int = 1,
                n_runs: int = 1):
    """Yield a Session: on the scheduler at ``scheduler`` / ``scheduler_file``, on a
    dask-jobqueue cluster built from ``cluster_file`` and scaled to min(jobs, n_runs), or on a
    LocalCluster started here (closed on exit)."""
    from distributed import Client, LocalCluster

    if scheduler or scheduler_file:
        with Client(scheduler, scheduler_file=scheduler_file, timeout="30s") as client:
            info = client.scheduler_info(n_workers=-1)["workers"]
            gpu = any("GPU" in w.get("resources", {}) for w in info.values())
            yield Session(client, cpu_environments(info) if not gpu else {}, gpu)
        return
    if cluster_file:
        batch, config = build_batch_cluster(cluster_file)
        with batch, Client(batch) as client:
            batch.scale(jobs=min(int(config.get("jobs", 1)), n_runs))
            client.wait_for_workers(1, timeout=None)
            yield Session(client, {}, _asks_for_gpu(config))
        return
    gpus = _visible_gpus()
    if gpus:
        options = dict(n_workers=len(gpus), threads_per_worker=runs_per_gpu,
                       resources={"GPU": 1})
    else:
        options = dict(n_workers=workers, threads_per_worker=1)
    with _local_cluster(LocalCluster, options) as local, Client(local) as client:
        client.wait_for_workers(options["n_workers"])
        info = client.scheduler_info(n_workers=-1)["workers"]
        if gpus:  # workers are named 0..n-1: one GPU each
            environments = {address: {"CUDA_VISIBLE_DEVICES": gpus[int(w["name"]) % len(gpus)]}
                            for address, w in info.items()}
        else:
            environments = cpu_environments(info)
        yield Session(client, environments, bool(gpus))


@contextmanager
def _local_cluster(cls, options: dict):
    """A LocalCluster whose worker processes ignore SIGINT: a Ctrl-C at the terminal reaches
    every process of the foreground group, and the sweep, not each worker, decides what stops
    (it cancels queued runs and stops running ones)."""
    import dask

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the workers
    # fork: the worker processes start in 1 s instead of 2.5 (spawn re-imports everything),
    # which is most of what the engine costs a small sweep on a CPU machine
    method = "fork" if sys.platform == "linux" else "spawn"
    try:
        with dask.config.set({"distributed.worker.multiprocessing-method": method}):
            cluster = cls(processes=True, dashboard_address=":0", silence_logs=logging.ERROR,
                          **options)
    finally:
        signal.signal(signal.SIGINT, previous)
    with cluster:
        yield cluster


def cpu_environments(workers: dict) -> dict[str, dict[str, str]]:
    """{address: {OMP/MKL/OPENBLAS_NUM_THREADS}}: each worker's papermill runs get an equal
    share of its host's cores (Dask's nanny would otherwise leave them one thread).

    workers: scheduler_info()["workers"] (each with "host" and "nthreads")."""
    per_host: dict[str, int] = {}
    for w in workers.values():
        per_host[w["host"]] = per_host.get(w["host"], 0) + w.get("nthreads", 1)
    cores = os.cpu_count() or 1  # the client's; hosts of one cluster are usually alike
    result = {}
    for address, w in workers.items():
        threads = str(max(1, cores // max(1, per_host[w["host"]])))
        result[address] = {name: threads for name in
                           ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    return result


def _visible_gpus() -> list[str]:
    """The GPUs this machine's runs may use, as CUDA_VISIBLE_DEVICES entries."""
    try:
        import torch

        count = torch.cuda.device_count()
    except ImportError:
        count = 0
    if count == 0:
        return []
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
               if d.strip()]
    return visible[:count] if visible else [str(i) for i in range(count)]


# ---- batch queues -------------------------------------------------------------------------------

def load_cluster_config(path: str | Path) -> dict:
    """A cluster YAML: ``kind`` (slurm by default), ``jobs`` (how many batch jobs at most) and
    the keyword arguments of dask-jobqueue's cluster class (queue, account, walltime, cores,
    memory, processes, job_extra_directives, job_script_prologue, worker_extra_args, ...).
    ClusterConfigError names the file and the key."""
    path = project_path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ClusterConfigError(f"{path}: cannot read the cluster file ({error})") from None
    if not isinstance(config, dict):
        raise ClusterConfigError(f"{path}: a cluster file is a mapping of key: value")
    kind = config.get("kind", "slurm")
    if kind not in KINDS:
        raise ClusterConfigError(f"{path}: kind {kind!r} is not one of {KINDS}")
    known = _cluster_keywords(kind) | OWN_KEYS
    for key in config:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ClusterConfigError(f"{path}: unknown key {key!r}{hint}")
    for key in REQUIRED_KEYS:
        if config.get(key) in (None, ""):
            raise ClusterConfigError(f"{path}: missing {key!r} (the batch system needs it)")
    if not isinstance(config.get("jobs", 1), int) or config.get("jobs", 1) < 1:
        raise ClusterConfigError(f"{path}: jobs must be a positive integer")
    return config


def build_batch_cluster(path: str | Path):
    """(dask-jobqueue cluster, config) from a cluster YAML; nothing is submitted until it is
    scaled."""
    import dask_jobqueue

    config = load_cluster_config(path)
    options = {k: v for k, v in config.items() if k not in OWN_KEYS}
    cls = getattr(dask_jobqueue, _class_name(config.get("kind", "slurm")))
    return cls(**options), config


def job_script(path: str | Path) -> str:
    """The batch script one job of the cluster YAML would submit."""
    batch, _ = build_batch_cluster(path)
    with batch:
        return batch.job_script()


def _cluster_keywords(kind: str) -> set[str]:
    import dask_jobqueue
    from dask_jobqueue.core import Job, JobQueueCluster

    cls = getattr(dask_jobqueue, _class_name(kind))
    names = set()
    for function in (cls.__init__, JobQueueCluster.__init__, cls.job_cls.__init__,
                     Job.__init__):
        names |= {p for p in inspect.signature(function).parameters
                  if p not in ("self", "kwargs", "job_kwargs", "base_class_kwargs")}
    return names


def _class_name(kind: str) -> str:
    return {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster",
            "lsf": "LSFCluster", "htcondor": "HTCondorCluster", "oar": "OARCluster",
            "moab": "MoabCluster"}[kind]


def _asks_for_gpu(config: dict) -> bool:
    return "GPU" in " ".join(map(str, config.get("worker_extra_args") or []))


# ---- preflight ----------------------------------------------------------------------------------

def git_commit(root: Path = REPO_ROOT) -> str | None:
    """The repo's HEAD commit, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def check_worker(commit: str | None, data_dirs: list[str], runs_dir: str) -> str:
    """Run on a worker: "" if it imports this repo at ``commit`` and can read every data
    folder's metadata.csv and write into ``runs_dir``; else the reasons."""
    import lib

    problems = []
    root = Path(lib.__file__).resolve().parent.parent
    here = git_commit(root)
    if commit and here != commit:
        problems.append(f"repo at {root} is at commit {here}, the sweep at {commit}")
    for data_dir in data_dirs:
        metadata = Path(data_dir) / "metadata.csv"
        if not os.access(metadata, os.R_OK):
            problems.append(f"cannot read {metadata}")
    try:
        Path(runs_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=runs_dir, prefix=".preflight-"):
            pass
    except OSError as error:
        problems.append(f"cannot write into {runs_dir} ({error.strerror or error})")
    if sys.executable and not os.access(sys.executable, os.X_OK):
        problems.append(f"python {sys.executable} is not executable")
    return "; ".join(problems)


def preflight(client, data_dirs: list[Path], runs_dir: Path) -> dict[str, str]:
    """check_worker on every worker (one small task each); {worker: reasons} of those that
    failed (empty: all passed)."""
    answers = client.run(check_worker, git_commit(), [str(d) for d in data_dirs],
                         str(runs_dir))
    names = {a: w.get("name", a) for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
    return {f"{names.get(address, address)} ({address})": reason
            for address, reason in answers.items() if reason}
