"""Batch-queue clusters (dask-jobqueue) from a YAML file: reading and checking it, building the
cluster, waiting for its workers, describing and closing its jobs."""

from __future__ import annotations

import difflib
import inspect
import os
import re
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

from lib.core.paths import REPO_ROOT, project_path

# Keys of a cluster YAML besides dask-jobqueue's own keyword arguments of its cluster class.
OWN_KEYS = {"kind", "jobs"}


KINDS = ("slurm", "pbs", "sge", "lsf", "htcondor", "oar", "moab")


REQUIRED_KEYS = ("walltime", "cores", "memory")


# The keys whose type is checked before a cluster object is built (dask-jobqueue takes any
# value and fails late, or writes a wrong job script): what each must be.
LIST_KEYS = ("job_extra_directives", "job_script_prologue", "worker_extra_args",
             "job_directives_skip", "job_extra", "env_extra", "extra", "header_skip",
             "submit_command_extra", "cancel_command_extra")
POSITIVE_INT_KEYS = ("jobs", "cores", "processes", "job_cpu", "ncpus")
BYTES_KEYS = ("memory", "job_mem", "mem", "disk")
TEXT_KEYS = ("queue", "account", "project", "resource_spec", "interface", "local_directory",
             "log_directory", "shebang", "python", "job_name", "shared_temp_directory",
             "protocol", "worker_command", "lsf_units")
# walltime as the batch system reads it: HH:MM:SS (LSF: HH:MM)
WALLTIME = {"lsf": (re.compile(r"\d+:[0-5]\d"), "HH:MM")}
WALLTIME_DEFAULT = (re.compile(r"\d+:[0-5]\d:[0-5]\d"), "HH:MM:SS")


class ClusterConfigError(ValueError):
    """A cluster YAML is wrong; the message names the file and the key."""


class ClusterWaitError(RuntimeError):
    """A batch queue started no worker in time; what was submitted has been cancelled."""


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
    _check_types(path, config, kind)
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


def _check_types(path: Path, config: dict, kind: str) -> None:
    """ClusterConfigError naming the file, the key, the expected type and the value given,
    for the first key of ``config`` whose value has the wrong type (a list given as a
    string, an unquoted walltime that YAML read as seconds, memory without a unit, ...)."""

    def refuse(key, expected):
        raise ClusterConfigError(f"{path}: {key} must be {expected}, got {config[key]!r} "
                                 f"({type(config[key]).__name__})")

    for key, value in config.items():
        if value is None:
            continue
        if key in LIST_KEYS and not (isinstance(value, list)
                                     and all(isinstance(v, str) for v in value)):
            refuse(key, "a list of strings (one YAML item per line: - \"...\")")
        if key in POSITIVE_INT_KEYS and not (isinstance(value, int)
                                             and not isinstance(value, bool) and value >= 1):
            refuse(key, "a positive integer")
        if key in TEXT_KEYS and not isinstance(value, str):
            refuse(key, "a string")
        if key in BYTES_KEYS and not _is_amount(value):
            refuse(key, 'an amount with its unit as a string, e.g. "64GB"')
        if key == "walltime":
            pattern, form = WALLTIME.get(kind, WALLTIME_DEFAULT)
            if not (isinstance(value, str) and pattern.fullmatch(value.strip())):
                hint = (" (unquoted, YAML reads 4:00:00 as a number of seconds: quote it)"
                        if isinstance(value, int) else "")
                refuse(key, f'a quoted "{form}" string{hint}')
        if key == "scheduler_options" and not isinstance(value, dict):
            refuse(key, "a mapping of key: value")


def _is_amount(value) -> bool:
    """True for a positive amount of bytes with its unit, as dask reads it ("64GB")."""
    from dask.utils import parse_bytes

    if not isinstance(value, str) or not value.strip() or value.strip()[-1].isdigit():
        return False
    try:
        return parse_bytes(value) > 0
    except (ValueError, OverflowError):
        return False


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
def closing_cluster(batch):
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


def asks_for_gpu(config: dict) -> bool:
    return "GPU" in " ".join(map(str, config.get("worker_extra_args") or []))
