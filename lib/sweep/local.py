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
import json
import logging
import math
import os
import signal
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

from lib.core.paths import project_path
from lib.sweep.batch import (
    asks_for_gpu,
    closing_cluster,
    open_batch_cluster,
    wait_for_batch_workers,
)

# A run's share of a GPU is a multiple of 2**-20: Dask adds and subtracts resources as floats,
# and such multiples add up exactly, so K runs of 1/K fit into GPU=1 (with 1/K itself, 9, 11,
# 12, ... runs would leave a remainder a hair below one share and fit only K - 1).
GPU_SHARE_BITS = 20


MAX_RUNS_PER_GPU = 64


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
        address = scheduler or scheduler_address(scheduler_file)
        check_tls_files()
        try:
            client = Client(address, timeout=f"{CONNECT_TIMEOUT}s")
        except (OSError, TimeoutError) as error:
            source = f" (from {scheduler_file})" if scheduler_file else ""
            raise ConnectError(f"cannot reach the Dask scheduler at {address}{source} within "
                               f"{CONNECT_TIMEOUT} s: {error}") from None
        with client:
            info = client.scheduler_info(n_workers=-1)["workers"]
            gpu = any("GPU" in w.get("resources", {}) for w in info.values())
            yield Session(client, cpu_environments(info) if not gpu else {}, gpu)
        return
    if cluster_file:
        batch, config = open_batch_cluster(cluster_file, n_runs)
        with closing_cluster(batch), Client(batch) as client:
            wait_for_batch_workers(client, batch, wait_timeout, progress)
            yield Session(client, {}, asks_for_gpu(config), batch)
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


# Seconds a client waits for a running scheduler before the sweep gives up.
CONNECT_TIMEOUT = 30


class ConnectError(RuntimeError):
    """A running scheduler cannot be reached; the message names the file or address."""


def scheduler_address(scheduler_file: str) -> str:
    """The address in a Dask scheduler file; ConnectError naming the file if it is missing
    or holds no address (Dask's client would wait for it forever)."""
    path = project_path(scheduler_file)
    try:
        address = json.loads(path.read_text())["address"]
    except FileNotFoundError:
        raise ConnectError(f"--scheduler-file {path}: no such file (the scheduler writes it "
                           f"when it starts: dask scheduler --scheduler-file {path})") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConnectError(f"--scheduler-file {path}: not a Dask scheduler file with an "
                           f"'address' ({type(error).__name__}: {error})") from None
    if not isinstance(address, str) or not address:
        raise ConnectError(f"--scheduler-file {path}: 'address' must be the scheduler's "
                           f"address, got {address!r}")
    return address


# Dask's TLS settings (distributed.comm.tls.*) that name files, by Security attribute.
TLS_FILES = {"tls_ca_file": "distributed.comm.tls.ca-file",
             "tls_client_cert": "distributed.comm.tls.client.cert",
             "tls_client_key": "distributed.comm.tls.client.key"}


def check_tls_files() -> None:
    """ConnectError naming the Dask setting and the file when the TLS configuration (Dask's
    config files or DASK_DISTRIBUTED__COMM__TLS__* variables) names a certificate or key
    file that does not exist (Dask says only "No such file or directory")."""
    from distributed.security import Security

    security = Security()
    for attribute, key in TLS_FILES.items():
        value = getattr(security, attribute)
        if isinstance(value, str) and "-----BEGIN" not in value and not os.path.isfile(value):
            raise ConnectError(f"Dask's TLS setting {key}: no such file {value} (see "
                               f"dask.config: ~/.config/dask/*.yaml or "
                               f"DASK_{key.upper().replace('.', '__').replace('-', '_')})")


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
