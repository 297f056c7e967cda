"""Sweeps: plan expansion, worker environments, failures, and kill-and-resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from lib.paths import REPO_ROOT
from lib.runs import is_done
from lib.sweep import FAILED, expand_plan, load_plan, run_parameters, worker_environment
from lib.synthetic import generate

TINY = dict(m_bins=64, t_bins=96, tta_offsets=[-32, 0, 32],
            epochs=2, batch_size=4, lr=1e-3, device="cpu")


def write_plan(root, runs, name="plan"):
    params = root / "tiny_a.yaml"
    params.write_text(yaml.safe_dump(dict(name="tiny_a", head="cls3", norm="mass")))
    other = root / "tiny_b.yaml"
    other.write_text(yaml.safe_dump(dict(name="tiny_b", head="flatM", norm="time",
                                         transform="log1p", mixup_prob=0.5)))
    plan = root / f"{name}.yaml"
    plan.write_text(yaml.safe_dump(dict(name=name, folds=[0, 1], runs=[
        dict(params=str(params if which == "a" else other), backbone=backbone, seed=seed)
        for which, backbone, seed in runs])))
    return plan


def test_expand_plan(tmp_path):
    plan = load_plan(write_plan(tmp_path, [("a", "test_efficientnet", 1), ("b", "x.tag", 2)]))
    specs = expand_plan(plan, runs_dir=tmp_path / "runs")
    assert [s.label for s in specs] == [
        "tiny_a/test_efficientnet/fold0_seed1", "tiny_a/test_efficientnet/fold1_seed1",
        "tiny_b/x/fold0_seed2", "tiny_b/x/fold1_seed2"]
    assert specs[2].run_dir == tmp_path / "runs" / "tiny_b" / "x" / "fold0_seed2"
    assert len(expand_plan(plan, folds=[3], runs_dir=tmp_path)) == 2
    values = run_parameters(specs[3], {"epochs": 1})
    assert values["backbone"] == "x.tag" and values["fold"] == 1 and values["seed"] == 2
    assert values["head"] == "flatM" and values["epochs"] == 1
    assert values["run_dir"] == str(specs[3].run_dir)


def test_bad_plan(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(dict(runs=[dict(params="x.yaml", seed=1)])))
    with pytest.raises(ValueError, match="run 1 must have exactly params, backbone, seed"):
        load_plan(path)


def test_worker_environment(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert worker_environment(3, 4, n_gpus=2) == {"CUDA_VISIBLE_DEVICES": "1"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert worker_environment(2, 4, n_gpus=2) == {"CUDA_VISIBLE_DEVICES": "2"}
    assert worker_environment(0, 1, n_gpus=1) == {}
    assert worker_environment(1, 2, n_gpus=0)["OMP_NUM_THREADS"] == str(
        max(1, (os.cpu_count() or 1) // 2))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    return generate(root / "data", profile="tiny", seed=1), root / "cache"


def sweep_command(plan, runs_dir, data_dir, cache_dir, *extra):
    command = [sys.executable, "-m", "lib.sweep", str(plan), "--runs-dir", str(runs_dir),
               "--data-dir", str(data_dir), "--cache-dir", str(cache_dir), "--no-progress"]
    for key, value in TINY.items():
        command += ["-p", key, yaml.safe_dump(value, default_flow_style=True).strip()
                    .removesuffix("...").strip()]
    return command + list(extra)


def snapshot(run_dir):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in run_dir.iterdir()
            if p.is_file()}


def test_sweep_survives_a_kill_and_resumes(tmp_path, tiny_data):
    data_dir, cache_dir = tiny_data
    plan = write_plan(tmp_path, [("a", "test_efficientnet", 1), ("b", "test_efficientnet", 2)])
    runs_dir = tmp_path / "runs"
    specs = expand_plan(load_plan(plan), runs_dir=runs_dir)
    process = subprocess.Popen(sweep_command(plan, runs_dir, data_dir, cache_dir), cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not any(is_done(s.run_dir) for s in specs) and time.time() < deadline:
        time.sleep(0.5)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = [s for s in specs if is_done(s.run_dir)]
    assert 1 <= len(finished) < len(specs)
    time.sleep(2)  # a papermill child would still be writing if it had outlived the sweep
    before = {s.run_dir: snapshot(s.run_dir) for s in finished}

    resumed = subprocess.run(sweep_command(plan, runs_dir, data_dir, cache_dir), cwd=REPO_ROOT,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{len(specs) - len(finished)} ran, {len(finished)} already finished, 0 failed" \
        in resumed.stdout
    for spec in specs:
        assert is_done(spec.run_dir) and not (spec.run_dir / FAILED).exists()
        assert sum(1 for p in spec.run_dir.iterdir() if p.name == "DONE") == 1
    for run_dir, files in before.items():
        assert snapshot(run_dir) == files  # finished runs are not touched


def test_failing_run_writes_failed_and_the_sweep_goes_on(tmp_path, tiny_data):
    data_dir, cache_dir = tiny_data
    plan = write_plan(tmp_path, [("a", "no_such_backbone", 1), ("a", "test_efficientnet", 1)])
    runs_dir = tmp_path / "runs"
    completed = subprocess.run(sweep_command(plan, runs_dir, data_dir, cache_dir, "--folds", "0"),
                               cwd=REPO_ROOT, capture_output=True, text=True)
    assert completed.returncode == 1
    failed = runs_dir / "tiny_a" / "no_such_backbone" / "fold0_seed1"
    assert not is_done(failed)
    error = (failed / FAILED).read_text()
    assert 'Exception encountered at "In [' in error and "no_such_backbone" in error
    assert is_done(runs_dir / "tiny_a" / "test_efficientnet" / "fold0_seed1")
    assert "1 ran, 0 already finished, 1 failed" in completed.stdout
    assert "tiny_a/no_such_backbone/fold0_seed1" in completed.stdout


def test_finished_runs_on_other_data_are_reported_not_reused(tmp_path, tiny_data):
    data_dir, cache_dir = tiny_data
    plan = write_plan(tmp_path, [("a", "test_efficientnet", 1)])
    runs_dir = tmp_path / "runs"
    first = subprocess.run(sweep_command(plan, runs_dir, data_dir, cache_dir, "--folds", "0"),
                           cwd=REPO_ROOT, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    other = subprocess.run(sweep_command(plan, runs_dir, tmp_path, cache_dir, "--folds", "0"),
                           cwd=REPO_ROOT, capture_output=True, text=True)
    assert other.returncode == 1
    assert "1 stale (finished with other data or parameters)" in other.stdout
    assert "use another --runs-dir" in other.stdout
    changed = subprocess.run(sweep_command(plan, runs_dir, data_dir, cache_dir, "--folds", "0",
                                           "-p", "epochs", "1"),
                             cwd=REPO_ROOT, capture_output=True, text=True)
    assert changed.returncode == 1
    assert "finished with other parameters (epochs)" in changed.stdout
