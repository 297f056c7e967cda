"""Where a sweep's runs execute: a Dask client on a local cluster, a running scheduler, or a
batch-queue cluster (dask-jobqueue) described by a YAML file; and the preflight every worker
passes before anything trains.

Local cluster: one worker process per GPU (named ``gpu<id>``, resource GPU=1, ``runs_per_gpu``
threads), pinned by its nanny with CUDA_VISIBLE_DEVICES, so that a worker the nanny restarts
(on a new port) keeps its GPU; or on CPU ``workers`` processes of one thread that split the
cores. Each run asks for ``gpu_share(runs_per_gpu)`` of its worker's GPU=1.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from lib.paths import REPO_ROOT, project_path

# A run's share of a GPU is a multiple of 2**-20: Dask adds and subtracts resources as floats,
# and such multiples add up exactly, so K runs of 1/K fit into GPU=1 (with 1/K itself, 9, 11,
# 12, ... runs would leave a remainder a hair below one share and fit only K - 1).
GPU_SHARE_BITS = 20
MAX_RUNS_PER_GPU = 64

# Keys of a cluster YAML besides dask-jobqueue's own keyword arguments of its cluster class.
OWN_KEYS = {"kind", "jobs"}
KINDS = ("slurm", "pbs", "sge", "lsf", "htcondor", "oar", "moab")
REQUIRED_KEYS = ("walltime", "cores", "memory")


class ClusterConfigError(ValueError):
    """A cluster YAML is wrong; the message names the file and the key."""


class ClusterWaitError(RuntimeError):
    """A batch queue started no worker in time; what was submitted has been cancelled."""


def gpu_share(runs_per_gpu: int) -> float:
    """The amount of the resource GPU=1 one run asks for, so that exactly ``runs_per_gpu``
    runs fit at once: 1/K rounded down to a multiple of 2**-20 (exact in float arithmetic;
    K + 1 such shares exceed 1 for every K up to MAX_RUNS_PER_GPU)."""
    if not 1 <= runs_per_gpu <= MAX_RUNS_PER_GPU:
        raise ValueError(f"runs_per_gpu must be in 1..{MAX_RUNS_PER_GPU}, got {runs_per_gpu}")
    return math.floor(2 ** GPU_SHARE_BITS / runs_per_gpu) / 2 ** GPU_SHARE_BITS


@dataclass
class Session:
    """An open Dask client, with what the sweep needs to know about its workers.

    environments: {worker name: environment for its papermill processes} (the CPU-thread
    share on clusters the sweep did not start; a local cluster's workers carry theirs, and
    GPU workers their pin, in their own environment); gpu: the workers advertise the "GPU"
    resource, so runs ask for a share of it; cluster: the dask-jobqueue or local cluster the
    sweep started (None for a running scheduler).
    """

    client: object
    environments: dict[str, dict[str, str]] = field(default_factory=dict)
    gpu: bool = False
    cluster: object = None


@contextmanager
def open_client(*, scheduler: str | None = None, scheduler_file: str | None = None,
                cluster_file: str | None = None, workers: int = 1, runs_per_gpu: int = 1,
                n_runs: int = 1, gpus: list[str] | None = None,
                wait_timeout: float = 1800.0, progress=print,
                dashboard_address: str = "127.0.0.1:0"):
    """Yield a Session: on the scheduler at ``scheduler`` / ``scheduler_file``, on a
    dask-jobqueue cluster built from ``cluster_file`` and scaled to min(jobs, n_runs) (its
    first worker awaited at most ``wait_timeout`` seconds, ClusterWaitError after, with the
    jobs cancelled), or on a LocalCluster started here (closed on exit): one pinned worker per
    GPU of ``gpus`` (default: every GPU torch sees; [] for none), else ``workers`` CPU
    workers, its scheduler on 127.0.0.1 and its dashboard at ``dashboard_address`` (loopback
    unless asked: the dashboard shows task names, paths and logs to whoever reaches it).
    ``progress`` receives one line at a time about what is awaited."""
    from distributed import Client, LocalCluster

    if scheduler or scheduler_file:
        with Client(scheduler, scheduler_file=scheduler_file, timeout="30s") as client:
            info = client.scheduler_info(n_workers=-1)["workers"]
            gpu = any("GPU" in w.get("resources", {}) for w in info.values())
            yield Session(client, cpu_environments(info) if not gpu else {}, gpu)
        return
    if cluster_file:
        batch, config = open_batch_cluster(cluster_file, n_runs)
        with _closing(batch), Client(batch) as client:
            wait_for_batch_workers(client, batch, wait_timeout, progress)
            yield Session(client, {}, _asks_for_gpu(config), batch)
        return
    gpus = visible_gpus() if gpus is None else list(gpus)
    if gpus:
        cls, options = pinned_gpu_cluster_class(), dict(gpus=gpus, threads_per_worker=runs_per_gpu)
    else:
        share = str(max(1, (os.cpu_count() or 1) // workers))
        cls, options = LocalCluster, dict(n_workers=workers, threads_per_worker=1,
                                          env={name: share for name in THREAD_VARIABLES})
    with _local_cluster(cls, options, dashboard_address) as local, Client(local) as client:
        client.wait_for_workers(len(gpus) or workers)
        yield Session(client, {}, bool(gpus), local)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@lru_cache(maxsize=1)
def pinned_gpu_cluster_class():
    """PinnedGPUCluster (defined on first use: importing distributed costs the sweep a second)."""
    from distributed import LocalCluster

    class PinnedGPUCluster(LocalCluster):
        """A LocalCluster of one worker per GPU id, named ``gpu<id>``, advertising GPU=1; the
        worker's nanny sets CUDA_VISIBLE_DEVICES=<id> in the worker's environment (Nanny's
        ``env``), and a worker the nanny restarts gets it again, whatever its new address."""

        def __init__(self, gpus: list[str], **kwargs):
            self.gpus = [str(g) for g in gpus]
            super().__init__(n_workers=0, resources={"GPU": 1}, **kwargs)
            self.scale(len(self.gpus))

        def new_worker_spec(self):
            gpu = next(g for g in self.gpus if f"gpu{g}" not in self.worker_spec)
            spec = copy.deepcopy(self.new_spec)
            spec["options"]["env"] = {**spec["options"].get("env", {}),
                                      "CUDA_VISIBLE_DEVICES": gpu}
            return {f"gpu{gpu}": spec}

    return PinnedGPUCluster


@contextmanager
def _local_cluster(cls, options: dict, dashboard_address: str):
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
            cluster = cls(processes=True, host="127.0.0.1", dashboard_address=dashboard_address,
                          silence_logs=logging.ERROR, **options)
    finally:
        signal.signal(signal.SIGINT, previous)
    with cluster:
        yield cluster


def cpu_environments(workers: dict) -> dict[str, dict[str, str]]:
    """{worker name: {OMP/MKL/OPENBLAS_NUM_THREADS}}: each worker's papermill runs get an
    equal share of its host's cores (Dask's nanny would otherwise leave them one thread).

    workers: scheduler_info()["workers"] (each with "name", "host" and "nthreads")."""
    per_host: dict[str, int] = {}
    for w in workers.values():
        per_host[w["host"]] = per_host.get(w["host"], 0) + w.get("nthreads", 1)
    cores = os.cpu_count() or 1  # the client's; hosts of one cluster are usually alike
    result = {}
    for address, w in workers.items():
        threads = str(max(1, cores // max(1, per_host[w["host"]])))
        result[str(w.get("name", address))] = {name: threads for name in THREAD_VARIABLES}
    return result


def visible_gpus() -> list[str]:
    """The GPUs this machine's runs may use, as CUDA_VISIBLE_DEVICES entries: those of this
    process's CUDA_VISIBLE_DEVICES, else 0..n-1 for the n GPUs torch sees."""
    try:
        import torch

        count = torch.cuda.device_count()  # NVML: no CUDA context in this process
    except ImportError:
        count = 0
    if count == 0:
        return []
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
               if d.strip()]
    return visible[:count] if visible else [str(i) for i in range(count)]


def parse_gpus(text: str, available: list[str]) -> list[str]:
    """``--gpus 2,3`` -> ["2", "3"]; ValueError naming the option unless every id is one of
    ``available`` (visible_gpus()) and none repeats."""
    gpus = [g.strip() for g in text.split(",")]
    if not all(gpus) or len(set(gpus)) != len(gpus):
        raise ValueError(f"--gpus {text!r}: give distinct GPU ids separated by commas, e.g. "
                         f"--gpus 2,3")
    if not available:
        raise ValueError(f"--gpus {text}: torch sees no GPU on this machine")
    missing = [g for g in gpus if g not in available]
    if missing:
        raise ValueError(f"--gpus {text}: no GPU {', '.join(missing)} on this machine (the "
                         f"GPUs torch sees: {', '.join(available)})")
    return gpus


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
    if not isinstance(config.get("security", True), bool):
        raise ClusterConfigError(f"{path}: security must be true (TLS with temporary "
                                 f"credentials, the default) or false, got "
                                 f"{config['security']!r}")
    shared = config.get("shared_temp_directory")
    if shared is not None and Path(os.path.expandvars(str(shared))).expanduser().exists():
        mode = Path(os.path.expandvars(str(shared))).expanduser().stat().st_mode
        if mode & 0o077:
            raise ClusterConfigError(f"{path}: shared_temp_directory {shared} (where the TLS "
                                     f"credentials go) can be read by other users (mode "
                                     f"{mode & 0o777:o}): chmod 700 it, or leave the key out")
    return config


def build_batch_cluster(path: str | Path):
    """(dask-jobqueue cluster, config) from a cluster YAML; nothing is submitted until it is
    scaled. Unless the YAML says ``security: false``, the scheduler speaks TLS with temporary
    credentials (dask-jobqueue's ``security=True``), written for the jobs into
    ``shared_temp_directory``: the YAML's (mode 0700, created if missing), else a fresh 0700
    folder ``.dask-tls-*`` in the repo, which the jobs see on the shared filesystem and which
    closing the cluster (close_batch_cluster) removes."""
    import dask_jobqueue

    config = load_cluster_config(path)
    options = {k: v for k, v in config.items() if k not in OWN_KEYS}
    owned = None
    if options.setdefault("security", True):
        if options.get("shared_temp_directory") is None:
            owned = tempfile.mkdtemp(prefix=".dask-tls-", dir=REPO_ROOT)  # mode 0700
            options["shared_temp_directory"] = owned
        else:
            folder = Path(os.path.expandvars(str(options["shared_temp_directory"]))).expanduser()
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    else:
        options.pop("security")
    cls = getattr(dask_jobqueue, _class_name(config.get("kind", "slurm")))
    try:
        batch = cls(**options)
    except BaseException:
        if owned:
            shutil.rmtree(owned, ignore_errors=True)
        raise
    batch.owned_credentials_dir = owned
    return batch, config


def open_batch_cluster(cluster_file: str | Path, n_runs: int):
    """(dask-jobqueue cluster, config) built from a cluster YAML and scaled to min(jobs,
    n_runs); ClusterConfigError when this machine cannot submit jobs (no submit command)."""
    batch, config = build_batch_cluster(cluster_file)
    submit = batch.job_cls.submit_command.split()[0]
    if shutil.which(submit) is None:
        close_batch_cluster(batch)
        raise ClusterConfigError(f"{project_path(cluster_file)}: kind "
                                 f"{config.get('kind', 'slurm')!r} submits jobs with {submit!r}, "
                                 f"which is not on this machine's PATH (run the sweep on a "
                                 f"submit host of the batch system)")
    refusal = _slurm_test_only(batch) if submit == "sbatch" else ""
    if refusal:
        close_batch_cluster(batch)
        raise ClusterConfigError(f"{project_path(cluster_file)}: Slurm refuses the job "
                                 f"(sbatch --test-only): {refusal}")
    batch.scale(jobs=min(int(config.get("jobs", 1)), n_runs))
    return batch, config


def _slurm_test_only(batch) -> str:
    """"" if ``sbatch --test-only`` accepts one job of ``batch`` (partition, account, time,
    resources), else what sbatch said. Nothing is submitted."""
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix=".mars-gcms-job-") as script:
        script.write(batch.job_script())
        script.flush()
        try:
            out = subprocess.run(["sbatch", "--test-only", script.name], capture_output=True,
                                 text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as error:
            return f"sbatch did not answer ({error})"
    return "" if out.returncode == 0 else " ".join(out.stderr.split()) or f"exit {out.returncode}"


def wait_for_batch_workers(client, batch, timeout: float, progress=print,
                           report_every: float = 60.0) -> None:
    """Wait until the first batch job's worker joins, saying every ``report_every`` seconds
    what is awaited (the jobs, their ids and the queue's view of them); after ``timeout``
    seconds raise ClusterWaitError (the caller's closing of ``batch`` cancels the jobs)."""
    from distributed.exceptions import WorkerStartTimeoutError

    started = time.monotonic()
    next_report = started + min(5.0, report_every)  # a queue that answers at once says nothing
    while True:
        left = timeout - (time.monotonic() - started)
        try:
            client.wait_for_workers(1, timeout=max(0.1, min(1.0, left)))
            return
        except (TimeoutError, WorkerStartTimeoutError):
            pass
        waited = time.monotonic() - started
        if time.monotonic() >= next_report:
            progress(f"waiting for a worker ({waited:.0f} s of {timeout:.0f}): "
                     f"{describe_jobs(batch)}")
            next_report = time.monotonic() + report_every
        if waited >= timeout:
            raise ClusterWaitError(f"no batch job started a Dask worker within {timeout:.0f} s "
                                   f"(--wait-timeout): {describe_jobs(batch)}; the jobs are "
                                   f"cancelled")


# What the batch system says of its jobs: a command that takes job ids, by kind of cluster.
QUEUE_STATUS = {"SLURMJob": ["squeue", "-h", "-o", "%i %T %R", "-j"],
                "PBSJob": ["qstat"], "LSFJob": ["bjobs"], "OARJob": ["oarstat", "-j"]}


def describe_jobs(batch) -> str:
    """'2 batch jobs: ids 17, 18; queue: 17 PENDING (Resources), ...' for a dask-jobqueue
    cluster's jobs (ids are None until the submit command answered)."""
    jobs = list(batch.workers.values())
    ids = [str(j.job_id) for j in jobs if getattr(j, "job_id", None)]
    text = (f"{len(jobs)} batch job(s) asked for, {len(ids)} submitted"
            + (f" (ids {', '.join(ids)})" if ids else ""))
    command = QUEUE_STATUS.get(type(jobs[0]).__name__) if jobs else None
    if ids and command and shutil.which(command[0]):
        cmd = command + [",".join(ids)] if command[-1] == "-j" else command + ids
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
            states = "; ".join(line.strip() for line in (out.stdout + out.stderr).splitlines()
                               if line.strip())
            text += f"; {command[0]}: {states or 'no such jobs (ended?)'}"
        except (OSError, subprocess.SubprocessError) as error:
            text += f"; {command[0]} did not answer ({error})"
    return text


@contextmanager
def _closing(batch):
    """Close a batch cluster on exit: see close_batch_cluster."""
    try:
        yield batch
    finally:
        close_batch_cluster(batch)


def close_batch_cluster(batch) -> None:
    """Close a batch cluster (its jobs are cancelled) and remove the TLS credentials folder
    the sweep made for it. A job that never got submitted makes dask-jobqueue's close fail an
    assertion, which is not the user's problem."""
    try:
        batch.close()
    except AssertionError:
        pass
    finally:
        # dask-jobqueue keeps the credential files open as _job_<key> attributes (deleted
        # when closed): close them before the folder goes
        for name in [n for n in vars(batch) if n.startswith("_job_")]:
            if hasattr(getattr(batch, name), "close"):
                getattr(batch, name).close()
        if getattr(batch, "owned_credentials_dir", None):
            shutil.rmtree(batch.owned_credentials_dir, ignore_errors=True)


def job_script(path: str | Path) -> str:
    """The batch script one job of the cluster YAML would submit."""
    batch, _ = build_batch_cluster(path)
    try:
        return batch.job_script()
    finally:
        close_batch_cluster(batch)


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


def check_worker(commit: str | None, data_dirs: list[str], runs_dir: str,
                 need_cuda: bool = False) -> dict:
    """Run on a worker: {"problems": "" or the reasons, "cuda": probe_cuda() or None,
    "host": hostname}. Problems: the repo is not at ``commit``, a data folder's metadata.csv
    is unreadable, ``runs_dir`` is not writable; with ``need_cuda`` also cuda_problem()."""
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
    cuda = None
    if need_cuda:
        cuda = probe_cuda()
        machine = probe_cuda(pinned=False) if cuda.get("count") == 0 and cuda.get("visible") \
            else None
        problem = cuda_problem(cuda, machine)
        if problem:
            problems.append(problem)
    return {"problems": "; ".join(problems), "cuda": cuda, "host": socket.gethostname()}


# Run in a fresh Python with the worker's environment, as a run's kernel starts: what torch
# sees of CUDA (without touching CUDA in the long-lived worker process itself).
CUDA_PROBE = r"""
import json, os
info = {"visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "count": 0}
try:
    import torch
    info.update(torch=torch.__version__, cuda_build=torch.version.cuda)
    if torch.version.cuda is not None:
        info["count"] = torch.cuda.device_count()
        if info["count"]:
            torch.zeros(1, device="cuda")  # a context and an allocation: the driver works
            info["name"] = torch.cuda.get_device_name(0)
            info["capability"] = list(torch.cuda.get_device_capability(0))
except Exception as error:
    info["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
print(json.dumps(info))
"""


def probe_cuda(pinned: bool = True, timeout: float = 180.0) -> dict:
    """What a run started from this process would see of CUDA: {"visible" (its
    CUDA_VISIBLE_DEVICES or None), "count", "torch", "cuda_build" (None: a CPU-only torch),
    "name", "capability" [major, minor] of the first GPU, "error"}. pinned=False: as if
    CUDA_VISIBLE_DEVICES were unset (how many GPUs the machine has)."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    if not pinned:
        env.pop("CUDA_VISIBLE_DEVICES", None)
    try:
        out = subprocess.run([sys.executable, "-c", CUDA_PROBE], capture_output=True, text=True,
                             timeout=timeout, env=env)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as error:
        return {"visible": env.get("CUDA_VISIBLE_DEVICES"), "count": 0,
                "error": f"the CUDA probe did not answer ({type(error).__name__})"}


def cuda_problem(cuda: dict, machine: dict | None = None) -> str:
    """"" if the probe (probe_cuda) shows a usable GPU, else why not, in words. machine: the
    unpinned probe, to say what exists when the pinned GPU does not."""
    from lib.precision import cuda_problem as why_not

    if "torch" not in cuda and cuda.get("error"):
        return f"CUDA check failed: {cuda['error']}"
    if cuda.get("cuda_build") is not None and cuda.get("error"):
        return f"CUDA does not work here: {cuda['error']}"
    if cuda.get("cuda_build") is not None and not cuda.get("count") \
            and cuda.get("visible") is not None:
        seen = machine.get("count", "?") if machine else "?"
        return (f"pinned to GPU CUDA_VISIBLE_DEVICES={cuda['visible']!r}, which torch "
                f"cannot see (this machine has {seen} GPU(s) when unpinned)")
    return why_not(None, cuda_version=cuda.get("cuda_build"), n_gpus=cuda.get("count") or 0,
                   visible=cuda.get("visible"), torch_version=cuda.get("torch", "")) or ""


def preflight(client, data_dirs: list[Path], runs_dir: Path, need_cuda: bool = False
              ) -> tuple[dict[str, str], dict[str, dict]]:
    """check_worker on every worker (one small task each). Returns ({"name (address)":
    reasons} of the workers that failed (empty: all passed), {worker name: CUDA probe} when
    ``need_cuda``). With need_cuda, GPU workers of one host that would all train on the same
    GPU (the same first CUDA_VISIBLE_DEVICES entry, or none set) fail too."""
    answers = client.run(check_worker, git_commit(), [str(d) for d in data_dirs],
                         str(runs_dir), need_cuda)
    workers = client.scheduler_info(n_workers=-1)["workers"]
    label = {a: f"{workers.get(a, {}).get('name', a)} ({a})" for a in answers}
    problems = {label[a]: answer["problems"] for a, answer in answers.items()
                if answer["problems"]}
    if need_cuda:
        first_gpu: dict[tuple, list[str]] = {}
        for address, answer in answers.items():
            visible = (answer["cuda"].get("visible") or "").split(",")[0] or "(unset)"
            if "GPU" in workers.get(address, {}).get("resources", {}):
                first_gpu.setdefault((answer["host"], visible), []).append(address)
        for (host, gpu), sharing in first_gpu.items():
            for address in sharing if len(sharing) > 1 else []:
                others = ", ".join(label[a] for a in sharing if a != address)
                problems[label[address]] = "; ".join(filter(None, [
                    problems.get(label[address]),
                    f"trains on the same GPU of {host} (CUDA_VISIBLE_DEVICES first entry "
                    f"{gpu}) as {others}: pin each worker to its GPU"]))
    cuda = {str(workers.get(a, {}).get("name", a)): answer["cuda"]
            for a, answer in answers.items() if answer["cuda"] is not None}
    return problems, cuda
