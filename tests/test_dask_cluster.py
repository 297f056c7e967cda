"""Sweeps on a real Dask cluster on 127.0.0.1: `dask scheduler` and `dask worker` processes
started (and stopped) by the tests. A killed worker, runs sharing a GPU resource, preflight."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib.core.paths import REPO_ROOT
from lib.runs.plans import expand_plan, load_plan
from lib.runs.run_folder import FAILED, is_done
from lib.sweep.tasks import read_attempts
from lib.synthetic import generate

pytestmark = pytest.mark.slow  # every test starts a Dask cluster and trains

DASK = [str(Path(sys.executable).parent / "dask"), "scheduler"]  # the CLI users run
WORKER = [str(Path(sys.executable).parent / "dask"), "worker"]
TINY = ["-p", "m_bins", "64", "-p", "t_bins", "96", "-p", "tta_offsets", "[-32, 0, 32]",
        "-p", "epochs", "1", "-p", "batch_size", "4", "-p", "device", "cpu"]


class LoopbackCluster:
    """A scheduler (scheduler file in a temp folder) and named workers, all on 127.0.0.1."""

    def __init__(self, root: Path):
        self.root = root
        self.scheduler_file = root / "scheduler.json"
        self.processes: dict[str, subprocess.Popen] = {}
        self.start("scheduler", DASK + ["--host", "127.0.0.1", "--port", "0",
                                        "--dashboard-address", "127.0.0.1:0",
                                        "--scheduler-file", str(self.scheduler_file)])
        deadline = time.time() + 60
        while not self.scheduler_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        assert self.scheduler_file.exists(), "the scheduler did not start"

    def start(self, name: str, command: list[str], prefix: list[str] = ()) -> None:
        log = open(self.root / f"{name}.log", "w")
        self.processes[name] = subprocess.Popen(list(prefix) + command, cwd=REPO_ROOT,
                                                stdout=log, stderr=log)

    def add_worker(self, name: str, *options: str, prefix: list[str] = ()) -> None:
        self.start(name, WORKER + ["--scheduler-file", str(self.scheduler_file), "--name", name,
                                   "--host", "127.0.0.1", "--no-nanny", "--no-dashboard",
                                   *options], prefix)

    def wait_for_workers(self, n: int) -> None:
        from distributed import Client

        with Client(scheduler_file=str(self.scheduler_file), timeout="30s") as client:
            client.wait_for_workers(n, timeout=120)

    def kill(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes[name].wait(timeout=30)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def cluster(tmp_path):
    loopback = LoopbackCluster(tmp_path)
    yield loopback
    loopback.stop()


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask_data")
    return generate(root / "data", profile="tiny", seed=2), root / "cache"


def sweep(plan, runs_dir, data_dir, cache_dir, *extra) -> list[str]:
    return [sys.executable, "-m", "lib.sweep", str(plan), "--runs-dir", str(runs_dir),
            "--data-dir", str(data_dir), "--cache-dir", str(cache_dir), "--no-progress",
            *TINY, *extra]


def test_killed_worker_costs_only_its_run(cluster, tiny_data, make_tiny_plan, tmp_path):
    data_dir, cache_dir = tiny_data
    cluster.add_worker("w0", "--nthreads", "1")
    cluster.add_worker("w1", "--nthreads", "1")
    cluster.wait_for_workers(2)
    plan = make_tiny_plan(folds=[0, 1], seeds=[1, 2])
    runs_dir = tmp_path / "runs"
    specs = expand_plan(load_plan(plan), runs_dir=runs_dir)
    process = subprocess.Popen(sweep(plan, runs_dir, data_dir, cache_dir, "--scheduler-file",
                                     str(cluster.scheduler_file)),
                               cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    victim, deadline = None, time.time() + 180
    while victim is None and time.time() < deadline:  # a run that w0 is training now
        for spec in specs:
            if (spec.run_dir / "03_train.ipynb").exists():
                tries = read_attempts(spec.run_dir)
                if tries and tries[-1].worker == "w0" and tries[-1].end is None:
                    victim = spec
        time.sleep(0.5)
    assert victim is not None, "w0 never trained a run"
    time.sleep(2)
    cluster.kill("w0")
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, out + err
    assert "4 ran, 0 already finished, 0 failed" in out
    for spec in specs:
        assert is_done(spec.run_dir) and not (spec.run_dir / FAILED).exists()
        assert not (spec.run_dir / ".tmp").exists()
    tries = read_attempts(victim.run_dir)
    assert [t.worker for t in tries] == ["w0", "w1"]  # rescheduled once, on the other worker
    assert tries[0].end is None  # the killed attempt never ended ...
    assert tries[1].start > tries[0].start  # ... and the second began after it
    assert f"{victim.label}" in out and "w1" in out.split(victim.label)[1].splitlines()[0]


def test_runs_per_gpu_share_a_gpu_resource(cluster, tiny_data, make_tiny_plan, tmp_path):
    """One worker with 3 threads advertising GPU=1: with --runs-per-gpu 2 at most two runs at
    once (the resource, not the threads, limits it)."""
    data_dir, cache_dir = tiny_data
    cluster.add_worker("g0", "--nthreads", "3", "--resources", "GPU=1")
    cluster.wait_for_workers(1)
    plan = make_tiny_plan(folds=[0, 1, 2], seeds=[1])
    runs_dir = tmp_path / "runs"
    done = subprocess.run(sweep(plan, runs_dir, data_dir, cache_dir, "--scheduler-file",
                                str(cluster.scheduler_file), "--runs-per-gpu", "2"),
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    firsts = [read_attempts(s.run_dir)[0] for s in expand_plan(load_plan(plan),
                                                               runs_dir=runs_dir)]
    intervals = [(a.start, a.end) for a in firsts]
    moments = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                     key=lambda m: (m[0], m[1]))
    running, most = 0, 0
    for _, change in moments:
        running += change
        most = max(most, running)
    assert most == 2


def test_preflight_names_a_worker_that_cannot_see_the_data(cluster, tiny_data, make_tiny_plan,
                                                          tmp_path):
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare -m (a private mount namespace) to hide a folder")
    data_dir, cache_dir = tiny_data
    hidden = tmp_path / "hidden_data"
    shutil.copytree(data_dir, hidden)
    cluster.add_worker("sees", "--nthreads", "1")
    # this worker's view of the machine has an empty folder mounted over the data
    cluster.add_worker("blind", "--nthreads", "1", prefix=[
        "unshare", "-m", "sh", "-c", f'mount -t tmpfs none "{hidden}" && exec "$0" "$@"'])
    cluster.wait_for_workers(2)
    plan = make_tiny_plan(folds=[0], seeds=[1])
    runs_dir = tmp_path / "runs"
    done = subprocess.run(sweep(plan, runs_dir, hidden, cache_dir, "--scheduler-file",
                                str(cluster.scheduler_file)),
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "workers failed the preflight, nothing was trained" in done.stderr
    assert "blind (tcp://127.0.0.1:" in done.stderr
    assert f"cannot read {hidden / 'metadata.csv'}" in done.stderr
    assert "  sees" not in done.stderr
    assert not list(runs_dir.glob("*/*/fold*"))
    assert os.path.exists(hidden / "metadata.csv")  # only the blind worker was blind
