"""Batch-queue clusters from YAML (dask-jobqueue): the job script, and clear errors. No batch
system is needed: nothing is submitted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lib.core.paths import REPO_ROOT
from lib.sweep.batch import (
    ClusterConfigError,
    build_batch_cluster,
    close_batch_cluster,
    job_script,
    load_cluster_config,
)

SLURM = REPO_ROOT / "params" / "clusters" / "slurm.yaml"


@pytest.fixture
def slurm_yaml(tmp_path):
    """params/clusters/slurm.yaml with its log directory (made when a cluster object is
    built) in the test's folder rather than the repository's runs/."""
    config = yaml.safe_load(SLURM.read_text()) | {"log_directory": str(tmp_path / "logs")}
    path = tmp_path / "slurm.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_the_slurm_yaml_becomes_the_expected_job_script(slurm_yaml):
    script = job_script(slurm_yaml)
    lines = script.splitlines()
    for directive in ("#SBATCH -p gpu", "#SBATCH -A my-project", "#SBATCH -t 04:00:00",
                      "#SBATCH --gres=gpu:1", "#SBATCH --cpus-per-task=8"):
        assert directive in lines, script
    assert "cd /shared/mars-gcms" in lines and "source .venv/bin/activate" in lines
    worker = lines[-1]
    assert "distributed.cli.dask_worker" in worker and "--resources GPU=1" in worker
    assert lines.index("source .venv/bin/activate") < len(lines) - 1


@pytest.mark.slow
def test_print_job_script_from_the_command_line(slurm_yaml):
    done = subprocess.run([sys.executable, "-m", "lib.sweep", "params/plans/demo.yaml",
                           "--cluster", str(slurm_yaml), "--print-job-script"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "#SBATCH --gres=gpu:1" in done.stdout


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(wall_time="01:00:00"), r"unknown key 'wall_time'; did you mean "
                                               r"'walltime'\?"),
    (lambda c: c.pop("walltime"), r"missing 'walltime'"),
    (lambda c: c.update(kind="torque"), r"kind 'torque' is not one of"),
    (lambda c: c.update(jobs=0), r"jobs must be a positive integer"),
    (lambda c: c.update(security="yes"), r"security must be true \(TLS with temporary "
                                         r"credentials, the default\) or false, got 'yes'"),
])
def test_bad_cluster_yaml_names_the_file_and_the_key(tmp_path, edit, message):
    config = yaml.safe_load(SLURM.read_text())
    edit(config)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ClusterConfigError, match=rf"{path}: {message}"):
        load_cluster_config(path)
    done = subprocess.run([sys.executable, "-m", "lib.sweep", "params/plans/demo.yaml",
                           "--cluster", str(path), "--print-job-script"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and str(path) in done.stderr


def test_credentials_folder_that_others_can_read_is_refused(tmp_path):
    shared = tmp_path / "tls"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    config = yaml.safe_load(SLURM.read_text())
    config["shared_temp_directory"] = str(shared)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ClusterConfigError, match=rf"{path}: shared_temp_directory {shared} "
                       r"\(where the TLS credentials go\) can be read by other users \(mode "
                       r"755\)"):
        load_cluster_config(path)


@pytest.mark.slow
def test_a_batch_clusters_scheduler_refuses_clients_without_its_credentials(tmp_path):
    """security defaults to TLS with temporary credentials: the sweep's own client gets in, a
    client without them does not; the credentials folder is private and goes with the
    cluster. Nothing is submitted (the cluster is never scaled)."""
    from distributed import Client
    from distributed.security import Security

    config = yaml.safe_load(SLURM.read_text())
    config.update(log_directory=str(tmp_path / "logs"), interface="lo")
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    batch, _ = build_batch_cluster(path)
    folder = batch.owned_credentials_dir
    try:
        assert batch.scheduler_address.startswith("tls://127.0.0.1:")
        assert (os.stat(folder).st_mode & 0o777) == 0o700
        assert "--tls-ca-file" in batch.job_script()
        files = list(Path(folder).iterdir())
        assert files and all((f.stat().st_mode & 0o077) == 0 for f in files)
        with Client(batch, timeout="20s") as client:  # the sweep's: with the credentials
            assert client.scheduler_info()["address"] == batch.scheduler_address
        with pytest.raises((OSError, TimeoutError)):  # TLS, but credentials of its own
            Client(batch.scheduler_address, security=Security.temporary(), timeout="3s")
        with pytest.raises((OSError, TimeoutError)):  # plain TCP to the TLS port
            Client(batch.scheduler_address.replace("tls://", "tcp://"), timeout="3s")
    finally:
        close_batch_cluster(batch)
    assert not os.path.exists(folder)


@pytest.mark.slow
def test_security_false_is_plain_tcp(tmp_path):
    config = yaml.safe_load(SLURM.read_text())
    config.update(security=False, interface="lo", log_directory=str(tmp_path / "logs"))
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    batch, _ = build_batch_cluster(path)
    try:
        assert batch.scheduler_address.startswith("tcp://")
        assert batch.owned_credentials_dir is None
    finally:
        close_batch_cluster(batch)


@pytest.mark.parametrize("key, text, message", [
    ("job_script_prologue", "job_script_prologue: cd /shared/mars-gcms",
     r"job_script_prologue must be a list of strings .*, got 'cd /shared/mars-gcms' \(str\)"),
    ("job_extra_directives", "job_extra_directives: --gres=gpu:1",
     r"job_extra_directives must be a list of strings"),
    ("walltime", "walltime: 4:00:00", r"walltime must be a quoted \"HH:MM:SS\" string "
                                      r"\(unquoted, YAML reads 4:00:00 as a number of seconds: "
                                      r"quote it\), got 14400 \(int\)"),
    ("walltime", "walltime: 4", r"walltime must be a quoted \"HH:MM:SS\" string.*got 4"),
    ("walltime", "walltime: '4'", r"walltime must be a quoted \"HH:MM:SS\" string, got '4'"),
    ("cores", "cores: eight", r"cores must be a positive integer, got 'eight' \(str\)"),
    ("cores", "cores: -1", r"cores must be a positive integer, got -1"),
    ("memory", "memory: 64", r"memory must be an amount with its unit as a string, e.g. "
                             r"\"64GB\", got 64 \(int\)"),
    ("processes", "processes: 0", r"processes must be a positive integer, got 0"),
    ("jobs", "jobs: true", r"jobs must be a positive integer, got True \(bool\)"),
])
def test_cluster_values_are_typed_before_anything_is_built(tmp_path, key, text, message):
    """Each of these used to be accepted (a job script of one character per line, a walltime
    of 10 days) or to fail late with a raw TypeError."""
    config = yaml.safe_load(SLURM.read_text())
    config.pop(key)
    body = yaml.safe_dump(config)  # the rest as it is; the key as the user typed it
    path = tmp_path / "site.yaml"
    path.write_text(f"{body}\n{text}\nlog_directory: {tmp_path / 'logs'}\n")
    with pytest.raises(ClusterConfigError, match=rf"{path}: {message}"):
        load_cluster_config(path)


def test_a_mistyped_cluster_yaml_stops_the_sweep_with_exit_2(tmp_path):
    config = yaml.safe_load(SLURM.read_text()) | {"log_directory": str(tmp_path / "logs")}
    config["job_script_prologue"] = "cd /shared/mars-gcms"
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    for extra in (["--print-job-script"], []):
        done = subprocess.run([sys.executable, "-m", "lib.sweep", "params/plans/demo.yaml",
                               "--cluster", str(path), *extra],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert f"{path}: job_script_prologue must be a list" in done.stderr
        assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
        assert not (tmp_path / "logs").exists()  # no cluster object was built
