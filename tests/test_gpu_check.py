"""scripts/gpu_check.sh: every phase at toy size on the CPU (--smoke), and its budget input."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time

import psutil
import pytest

from lib.core.paths import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "gpu_check.sh"
PHASES = ["environment", "throughput", "data", "runs_per_gpu", "precision", "hrnet_fold"]


def run_check(tmp_path, *args, **env):
    environment = {**os.environ, "PY": sys.executable, "OUT": str(tmp_path / "out"),
                   "WORK": str(tmp_path / "work"), **env}
    return subprocess.run(["bash", str(SCRIPT), *args], env=environment, capture_output=True,
                          text=True, timeout=600)


def read_summary(tmp_path) -> dict:
    return json.loads((tmp_path / "out" / "summary.json").read_text())


@pytest.mark.slow
def test_smoke_runs_every_phase(tmp_path):
    done = run_check(tmp_path, "--smoke", BUDGET_S="480")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = read_summary(tmp_path)
    phases = {p["name"]: p for p in summary["phases"]}
    assert [p["name"] for p in summary["phases"]] == PHASES
    assert {name: p["status"] for name, p in phases.items()} == dict.fromkeys(PHASES, "ok")
    assert summary["seconds"] < 480
    assert all(p["seconds"] >= 0 and "figures" in p for p in phases.values())

    assert phases["environment"]["figures"]["versions"]["torch"]
    configs = phases["throughput"]["figures"]["configs"]
    assert [c["status"] for c in configs] == ["ok"] * 4
    assert all(c["train_samples_per_s"] > 0 and c["infer_samples_per_s"] > 0 for c in configs)
    assert [c["compiled"] for c in configs] == [False, False, False, True]
    assert phases["data"]["figures"]["splits"] == {"train": 24, "val": 6, "test": 6}
    sweeps = phases["runs_per_gpu"]["figures"]["sweeps"]
    assert [(s["K"], s["runs"], s["sweep_exit"]) for s in sweeps] == [(1, 1, 0), (2, 2, 0)]
    assert all(s["folds_per_hour"] > 0 for s in sweeps)
    precision = phases["precision"]["figures"]
    assert all(math.isfinite(precision[tag]["best_oof_loss"]) for tag in ("fp32", "bf16"))
    fold = phases["hrnet_fold"]["figures"]
    assert fold["epochs"] == 1 and fold["steady_epoch_s"] > 0 and fold["wall_20_epochs_s"] > 0
    # what comes back from a lent machine: a few files in OUT, the runs stay in WORK
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["gpu_check.log",
                                                                    "summary.json"]


@pytest.mark.parametrize("budget", ["-5", "abc", "inf"])
def test_bad_budget_is_refused_before_anything_starts(tmp_path, budget):
    done = run_check(tmp_path, "--smoke", BUDGET_S=budget)
    assert done.returncode == 2
    assert "BUDGET_S" in done.stderr and repr(budget) in done.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_no_budget_skips_every_phase(tmp_path):
    done = run_check(tmp_path, "--smoke", BUDGET_S="0")
    assert done.returncode == 0, done.stderr
    statuses = [p["status"] for p in read_summary(tmp_path)["phases"]]
    assert statuses == ["skipped (budget)"] * len(PHASES)


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT.with_suffix(".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gpu_check", module)  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_allotment_keeps_back_what_later_phases_need():
    allotment = load_script().allotment
    assert allotment(need=20, left=400, later=100, share=144) == (144, 216)  # its share
    assert allotment(need=20, left=200, later=150, share=144) == (50, 80)  # later phases first
    assert allotment(need=60, left=200, later=180, share=144) == (60, 90)  # but its own need
    assert allotment(need=20, left=100, later=0, share=1000) == (100, 100)  # never past left


@pytest.mark.slow
def test_a_hang_is_ended_with_what_it_started(tmp_path):
    gpu_check = load_script()
    code = ("import subprocess, sys, time; p = subprocess.Popen(['sleep', '60'], "
            "start_new_session=True); print(p.pid, flush=True); time.sleep(60)")
    started = time.time()
    with open(tmp_path / "log", "w") as log:
        assert gpu_check.run_bounded([sys.executable, "-c", code], 3, log) is None
    assert time.time() - started < 20
    grandchild = int((tmp_path / "log").read_text().split()[0])
    assert not psutil.pid_exists(grandchild) or \
        psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE


def test_a_crashing_phase_is_recorded_as_failed(tmp_path):
    gpu_check = load_script()
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    work.mkdir()
    gpu_check.write_json(out / "summary.json", dict(smoke=True, phases=[]))
    entry = dict(name="no_such_phase")
    gpu_check._run_child("no_such_phase", entry, gpu_check.SMOKE, out, work, out / "log",
                         allot=10, timeout=30)
    assert entry["status"] == "failed" and "exit status 1" in entry["error"]


def test_the_wheelhouse_carries_what_the_reports_import():
    """An offline GPU machine renders the reports of what it ran (python -m lib.reports):
    every third-party module lib.reports imports is in the wheelhouse (or is torch/timm)."""
    import ast

    spec = importlib.util.spec_from_file_location("wheelhouse",
                                                  REPO_ROOT / "scripts" / "wheelhouse.py")
    wheelhouse = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wheelhouse)
    distributions = {"sklearn": "scikit-learn", "yaml": "pyyaml"}
    imported = set()
    for path in (REPO_ROOT / "lib" / "reports").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported
                   if m not in sys.stdlib_module_names and m not in ("lib", "torch", "timm")}
    assert "nbconvert" in third_party
    needs = set(wheelhouse.GPU_CHECK_NEEDS)
    assert {distributions.get(m, m) for m in third_party} <= needs
