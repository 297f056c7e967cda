"""Batch-queue clusters from YAML (dask-jobqueue): the job script, and clear errors. No batch
system is needed: nothing is submitted."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from lib.cluster import ClusterConfigError, job_script, load_cluster_config
from lib.paths import REPO_ROOT

SLURM = REPO_ROOT / "params" / "clusters" / "slurm.yaml"


def test_the_slurm_yaml_becomes_the_expected_job_script():
    script = job_script(SLURM)
    lines = script.splitlines()
    for directive in ("#SBATCH -p gpu", "#SBATCH -A my-project", "#SBATCH -t 04:00:00",
                      "#SBATCH --gres=gpu:1", "#SBATCH --cpus-per-task=8"):
        assert directive in lines, script
    assert "cd /shared/mars-gcms" in lines and "source .venv/bin/activate" in lines
    worker = lines[-1]
    assert "distributed.cli.dask_worker" in worker and "--resources GPU=1" in worker
    assert lines.index("source .venv/bin/activate") < len(lines) - 1


def test_print_job_script_from_the_command_line():
    done = subprocess.run([sys.executable, "-m", "lib.sweep", "params/plans/demo.yaml",
                           "--cluster", str(SLURM), "--print-job-script"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "#SBATCH --gres=gpu:1" in done.stdout


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(wall_time="01:00:00"), r"unknown key 'wall_time'; did you mean "
                                               r"'walltime'\?"),
    (lambda c: c.pop("walltime"), r"missing 'walltime'"),
    (lambda c: c.update(kind="torque"), r"kind 'torque' is not one of"),
    (lambda c: c.update(jobs=0), r"jobs must be a positive integer"),
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
