"""Sweeps through a real Slurm (dask-jobqueue's SLURMCluster, TLS on): a one-node cluster on
127.0.0.1 as scripts/start_slurm.sh starts it (CI does; so can a developer, as root). Skipped
where no Slurm answers."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from lib.core.paths import REPO_ROOT
from lib.runs.plans import expand_plan, load_plan
from lib.runs.run_folder import is_done
from lib.sweep.tasks import read_attempts
from lib.synthetic import generate

TINY = ["-p", "m_bins", "64", "-p", "t_bins", "96", "-p", "tta_offsets", "[-32, 0, 32]",
        "-p", "epochs", "2", "-p", "batch_size", "4", "-p", "device", "cpu"]


def slurm_answers() -> str:
    """"" if a Slurm node is up here, else why the tests are skipped."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no Slurm client here (apt-get install slurm-wlm munge; scripts/start_slurm.sh)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                             timeout=15)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 15 s (is slurmctld running? scripts/start_slurm.sh)"
    states = out.stdout.split()
    if out.returncode != 0 or not any(s.rstrip("*~#") in ("idle", "mixed", "allocated")
                                      for s in states):
        return (f"no Slurm node up (sinfo: {out.stdout.strip() or out.stderr.strip()}); "
                f"scripts/start_slurm.sh starts one")
    return ""


pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(slurm_answers()),
                                                   reason=slurm_answers() or "Slurm is up")]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm_data")
    return generate(root / "data", profile="tiny", seed=4), root / "cache"


def cluster_yaml(root: Path, **changes) -> tuple[Path, str]:
    job_name = f"mars-test-{uuid.uuid4().hex[:8]}"
    config = dict(kind="slurm", jobs=2, queue="debug", walltime="00:30:00", cores=1,
                  processes=1, memory="3GB", interface="lo", job_name=job_name,
                  log_directory=str(root / "slurm-logs"), python=sys.executable,
                  job_script_prologue=[f"cd {REPO_ROOT}"])
    config.update(changes)
    path = root / "cluster.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, job_name


def queued(job_name: str, *states: str) -> list[str]:
    command = ["squeue", "-h", "-n", job_name, "-o", "%i"]
    if states:
        command += ["-t", ",".join(states)]
    return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.split()


def test_a_sweep_through_slurm_survives_a_cancelled_job(tiny_data, make_tiny_plan, tmp_path):
    data_dir, cache_dir = tiny_data
    config, job_name = cluster_yaml(tmp_path)
    plan = make_tiny_plan(folds=[0, 1, 2], seeds=[1])
    runs_dir = tmp_path / "runs"
    specs = expand_plan(load_plan(plan), runs_dir=runs_dir)
    sweep = subprocess.Popen([sys.executable, "-m", "lib.sweep", str(plan), "--cluster",
                              str(config), "--runs-dir", str(runs_dir), "--data-dir",
                              str(data_dir), "--cache-dir", str(cache_dir), "--no-progress",
                              "--wait-timeout", "300", *TINY],
                             cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline, cancelled = time.time() + 400, None
        while cancelled is None and time.time() < deadline and sweep.poll() is None:
            training = [a.worker for s in specs for a in read_attempts(s.run_dir)
                        if a.end is None and (s.run_dir / "03_train.ipynb").exists()]
            running_jobs = queued(job_name, "R")
            if len(set(training)) == 2 and len(running_jobs) == 2:  # both jobs train a run
                time.sleep(2)
                cancelled = running_jobs[0]
                subprocess.run(["scancel", cancelled], check=True, timeout=30)
            time.sleep(0.5)
        assert cancelled is not None, "the two jobs never trained at once"
        out, err = sweep.communicate(timeout=900)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.communicate()
    assert sweep.returncode == 0, out + err
    assert "3 runs: 3 ran, 0 already finished, 0 failed" in out, out + err
    attempts = {s.label: len(read_attempts(s.run_dir)) for s in specs}
    assert sorted(attempts.values()) == [1, 1, 2], attempts  # one run was retried
    for spec in specs:
        assert is_done(spec.run_dir) and not (spec.run_dir / "FAILED").exists()
    logs = list((tmp_path / "slurm-logs").iterdir())
    assert len(logs) >= 2, logs  # each job's output, in the YAML's log directory
    deadline = time.time() + 60
    while queued(job_name) and time.time() < deadline:
        time.sleep(1)
    assert queued(job_name) == []  # no job of the sweep is left in the queue
    assert not list(REPO_ROOT.glob(".dask-tls-*"))  # the credentials went with the cluster


def test_a_partition_that_does_not_exist_is_named_and_nothing_waits(tiny_data, make_tiny_plan,
                                                                    tmp_path):
    data_dir, cache_dir = tiny_data
    config, job_name = cluster_yaml(tmp_path, queue="no_such_partition")
    plan = make_tiny_plan(folds=[0, 1, 2], seeds=[1])
    began = time.time()
    done = subprocess.run([sys.executable, "-m", "lib.sweep", str(plan), "--cluster",
                           str(config), "--runs-dir", str(tmp_path / "runs"), "--data-dir",
                           str(data_dir), "--cache-dir", str(cache_dir), "--no-progress",
                           "--wait-timeout", "60", *TINY],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no_such_partition" in done.stderr and "sbatch --test-only" in done.stderr
    assert time.time() - began < 60
    assert queued(job_name) == []
