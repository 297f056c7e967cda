"""The GPU side of sweeps, tested on the CPU with real Dask clusters on 127.0.0.1: shares that
let exactly K runs use a GPU, GPU pins that survive a worker restart, no silent fallback from
CUDA, a batch queue that is not waited for forever, and the options' bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lib.core.paths import REPO_ROOT
from lib.core.precision import precision_label
from lib.runs.plans import expand_plan, load_plan
from lib.runs.run_folder import METRICS, is_done
from lib.sweep import batch, local, preflight
from lib.sweep.schedule import data_fingerprints, resolve_devices, run_sweep
from lib.sweep.tasks import _finished_status, read_attempts
from lib.synthetic import generate

TINY = dict(m_bins=64, t_bins=96, tta_offsets=[-32, 0, 32], epochs=2, batch_size=4,
            device="cpu")


def hold(index: int, folder: str, release: str) -> int:
    """A trivial task: say it started, then wait for the release file (at most 60 s)."""
    (Path(folder) / f"started-{index}").touch()
    deadline = time.time() + 60
    while not Path(release).exists() and time.time() < deadline:
        time.sleep(0.02)
    return index


def started(folder: Path) -> int:
    return len(list(folder.glob("started-*")))


@pytest.mark.slow
def test_exactly_k_runs_share_a_gpu_for_every_k_up_to_16(tmp_path):
    """One worker advertising GPU=1 with more threads than tasks: K + 1 tasks asking for
    gpu_share(K) each, and exactly K of them run at once (with 1 / K, floats left only K - 1
    room for K = 9, 11, 12, ...)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=17, resources={"GPU": 1},
                      processes=False, dashboard_address=None) as dask_cluster, \
            Client(dask_cluster) as client:
        for k in range(1, 17):
            folder, release = tmp_path / f"k{k}", tmp_path / f"k{k}" / "release"
            folder.mkdir()
            futures = [client.submit(hold, i, str(folder), str(release), pure=False,
                                     resources={"GPU": local.gpu_share(k)})
                       for i in range(k + 1)]
            deadline = time.time() + 30
            while started(folder) < k and time.time() < deadline:
                time.sleep(0.02)
            time.sleep(0.3)  # room for a (K+1)-th to start, if it could
            assert started(folder) == k, f"K={k}: {started(folder)} tasks ran at once"
            release.touch()
            assert sorted(client.gather(futures)) == list(range(k + 1))


def test_gpu_share_is_exact_and_bounded():
    for k in range(1, local.MAX_RUNS_PER_GPU + 1):
        share = local.gpu_share(k)
        total = 0.0
        for _ in range(k):
            total += share
        assert total <= 1.0 and total + share > 1.0
    for bad in (0, -1, local.MAX_RUNS_PER_GPU + 1):
        with pytest.raises(ValueError, match="runs_per_gpu"):
            local.gpu_share(bad)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_data")
    return generate(root / "data", profile="tiny", seed=3), root / "cache"


@pytest.mark.slow
def test_gpu_pins_survive_a_worker_restart(tiny_data, make_tiny_plan, tmp_path):
    """A local cluster pinned to GPU ids 0 and 1 (the runs train on the CPU device): the
    worker of GPU 1 is killed mid-run, its nanny restarts it on a new port, and the runs it
    trains after that still see CUDA_VISIBLE_DEVICES=1; no attempt ever sees another id."""
    data_dir, cache_dir = tiny_data
    runs_dir = tmp_path / "runs"
    plan = make_tiny_plan(folds=[0, 1, 2], seeds=[1, 2])
    overrides = dict(TINY, data_dir=str(data_dir), cache_dir=str(cache_dir))
    specs = resolve_devices(expand_plan(load_plan(plan), runs_dir=runs_dir), overrides, True)
    assert {s.device for s in specs} == {"cpu"}  # asked for explicitly: not resolved to cuda
    fingerprints = data_fingerprints(specs, overrides)
    with local.open_client(gpus=["0", "1"], runs_per_gpu=1) as session:
        client = session.client
        assert session.gpu
        names = {a: w["name"] for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
        assert sorted(names.values()) == ["gpu0", "gpu1"]
        pids = {names[a]: pid for a, pid in client.run(os.getpid).items()}
        results = []
        sweep = threading.Thread(target=lambda: results.extend(run_sweep(
            client, specs, overrides, fingerprints, gpu=True, progress=False)))
        sweep.start()
        victim, deadline = None, time.time() + 300
        while victim is None and time.time() < deadline:  # a run gpu1 is training now
            for spec in specs:
                tries = read_attempts(spec.run_dir)
                if tries and tries[-1].worker == "gpu1" and tries[-1].end is None \
                        and (spec.run_dir / "03_train.ipynb").exists():
                    victim = spec
            time.sleep(0.2)
        assert victim is not None, "gpu1 never trained a run"
        time.sleep(1)
        killed_at = time.time()
        os.kill(pids["gpu1"], signal.SIGKILL)
        sweep.join(timeout=600)
        assert not sweep.is_alive()
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        assert sorted(w["name"] for w in workers) == ["gpu0", "gpu1"]  # gpu1 came back
    assert [status for _, status, _, _ in results] == ["ran"] * len(specs), results
    records = {spec.label: read_attempts(spec.run_dir) for spec in specs}
    for label, tries in records.items():
        for attempt in tries:
            assert attempt.worker in ("gpu0", "gpu1"), (label, attempt)
            assert attempt.visible == attempt.worker.removeprefix("gpu"), (label, attempt)
    assert records[victim.label][0].end is None  # the killed attempt never ended
    assert is_done(victim.run_dir) and len(records[victim.label]) == 2
    restarted = [a for tries in records.values() for a in tries
                 if a.worker == "gpu1" and a.start > killed_at]
    assert restarted, "the restarted gpu1 trained nothing after the kill"


@pytest.mark.slow
def test_a_batch_queue_that_starts_no_worker_is_not_waited_for_forever():
    """A cluster with no worker to come (a real LocalCluster of none, standing in for a queue
    that never starts a job): the wait says what it waits for and gives up at the timeout."""
    from distributed import Client, LocalCluster

    lines = []
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as dask_cluster, \
            Client(dask_cluster) as client:
        began = time.monotonic()
        with pytest.raises(batch.ClusterWaitError, match=r"within 2 s \(--wait-timeout\)"):
            batch.wait_for_batch_workers(client, dask_cluster, timeout=2, progress=lines.append,
                                           report_every=0.5)
        assert time.monotonic() - began < 15
    assert lines and "0 batch job(s) asked for, 0 submitted" in lines[0]


def sweep_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lib.sweep", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["--runs-per-gpu", "0"], "--runs-per-gpu must be in 1..64, got 0"),
    (["--workers", "0"], "--workers must be at least 1, got 0"),
    pytest.param(["--gpus", "0"], "--gpus 0: torch sees no GPU on this machine",
                 marks=pytest.mark.slow),  # the sweep asks a fresh Python with torch
    (["--folds", "0,x"], "--folds '0,x': give fold numbers separated by commas"),
    (["--folds", "7"], "fold 7 (tiny/test_efficientnet/fold7_seed1): the runs have n_folds=5"),
    (["-p", "device", "cuda:1"], "a sweep takes auto, cpu or cuda"),
])
def test_bad_sweep_options_are_refused_before_anything_starts(tmp_path, make_tiny_plan, args,
                                                             message):
    if args[0] == "--gpus" and local.visible_gpus():
        pytest.skip("this machine has GPUs")
    plan = make_tiny_plan(folds=[0], seeds=[1])
    done = sweep_cli(str(plan), "--runs-dir", str(tmp_path / "runs"), *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_cuda_asked_on_a_machine_without_it_is_refused_naming_each_worker(tiny_data, make_tiny_plan,
                                                                          tmp_path):
    if local.visible_gpus():
        pytest.skip("this machine has GPUs")
    data_dir, cache_dir = tiny_data
    plan = make_tiny_plan(folds=[0], seeds=[1])
    runs_dir = tmp_path / "runs"
    done = sweep_cli(str(plan), "--runs-dir", str(runs_dir), "--data-dir", str(data_dir),
                     "--cache-dir", str(cache_dir), "--workers", "2", "-p", "device", "cuda")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "workers failed the preflight, nothing was trained" in done.stderr
    # the sweep's own lines, "  <worker> (<address>): <reason>"; a worker may also log a
    # traceback while the cluster shuts down (a heartbeat racing the close), which is not ours
    problems = [line for line in done.stderr.splitlines()
                if re.match(r"  \S+ \(tcp://127\.0\.0\.1:\d+\): ", line)]
    assert len(problems) == 2, done.stderr  # both workers, by name and address
    assert len({line.split()[0] for line in problems}) == 2, done.stderr
    for line in problems:
        assert ("no GPU is visible to torch" in line or "built without CUDA" in line), line
    assert not list(runs_dir.glob("*/*/fold*"))


def test_cuda_problems_are_named():
    assert "this torch 2.4.0 is built without CUDA" in preflight.cuda_problem(
        {"torch": "2.4.0", "cuda_build": None, "count": 0})
    assert "pinned to GPU CUDA_VISIBLE_DEVICES='5'" in preflight.cuda_problem(
        {"torch": "2.4.0", "cuda_build": "12.1", "count": 0, "visible": "5"}, {"count": 2})
    assert "this machine has 2 GPU(s)" in preflight.cuda_problem(
        {"torch": "2.4.0", "cuda_build": "12.1", "count": 0, "visible": "5"}, {"count": 2})
    assert "driver" in preflight.cuda_problem(
        {"torch": "2.4.0", "cuda_build": "12.1", "count": 0, "visible": None})
    assert "CUDA does not work here: RuntimeError: CUDA driver version is insufficient" in \
        preflight.cuda_problem({"torch": "2.4.0", "cuda_build": "12.1", "count": 0,
                              "error": "RuntimeError: CUDA driver version is insufficient"})
    assert preflight.cuda_problem({"torch": "2.4.0", "cuda_build": "12.1", "count": 1,
                                 "capability": [9, 0]}) == ""


@pytest.mark.slow  # two fresh Pythons that import torch
def test_probe_reports_what_torch_sees_here():
    probe = preflight.probe_cuda()
    assert probe["torch"].split("+")[0] == __import__("torch").__version__.split("+")[0]
    assert probe["count"] == len(local.visible_gpus())


def test_parse_gpus():
    assert local.parse_gpus("2,3", ["0", "1", "2", "3"]) == ["2", "3"]
    with pytest.raises(ValueError, match=r"--gpus 2,5: no GPU 5 on this machine \(the GPUs "
                                         r"torch sees: 0, 1, 2, 3\)"):
        local.parse_gpus("2,5", ["0", "1", "2", "3"])
    with pytest.raises(ValueError, match="distinct GPU ids"):
        local.parse_gpus("1,1", ["0", "1"])


@pytest.mark.parametrize("used, precision, wanted, expected, status", [
    ("cpu", "fp32", "cuda", "bf16", "stale"),   # a CPU run is not done for a GPU sweep
    ("cuda", "bf16", "cpu", "fp32", "stale"),
    ("cuda", "fp32", "cuda", "bf16", "stale"),  # trained where bf16 was not supported
    ("cuda:0", "bf16", "cuda", "bf16", "done"),
    ("cuda", "bf16", "cuda", None, "done"),     # precision not known: not compared
])
def test_device_and_precision_are_part_of_the_stale_check(tmp_path, used, precision, wanted,
                                                          expected, status):
    parameters = dict(epochs=2, device=used)
    (tmp_path / METRICS).write_text(json.dumps(dict(parameters=parameters,
                                                    precision=precision)))
    got, detail = _finished_status(tmp_path, dict(epochs=2, device=wanted), {}, expected)
    assert got == status, detail


def test_precision_labels():
    assert precision_label("cpu", True, True, None) == "fp32"
    assert precision_label("cuda", True, False, (9, 0)) == "bf16"
    assert precision_label("cuda", True, False, (7, 0)) == "fp32"
    assert precision_label("cuda", False, True, (8, 0)) == "tf32"
    assert precision_label("cuda", False, True, (7, 5)) == "fp32"
    assert precision_label("cuda", False, False, [9, 0]) == "fp32"
