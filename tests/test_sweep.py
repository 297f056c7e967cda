"""Sweeps (on a local Dask cluster): plan expansion and checks, failures, stale runs,
kill-and-resume, two sweeps at once, Ctrl-C."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from lib.core.paths import REPO_ROOT
from lib.runs.plans import (
    PlanError,
    check_parameters,
    check_runs,
    expand_plan,
    load_plan,
    run_parameters,
)
from lib.runs.run_folder import FAILED, is_done
from lib.sweep.cli import main
from lib.sweep.local import (
    ConnectError,
    check_tls_files,
    cpu_environments,
    open_client,
    scheduler_address,
)
from lib.sweep.schedule import ProgressReport
from lib.sweep.tasks import STARTED, Attempt, read_attempts
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


@pytest.mark.parametrize("runs, message", [
    ([dict(params="x.yaml", seed=1)], r"run 1 \(\{.*\}\) must have params, backbone, seed"),
    ([dict(params="demo.yaml", backbone="b", seed=1, notebook="nope.ipynb")],
     r"run 1 .*: notebook 'nope.ipynb' not found"),
    ([dict(params="demo.yaml", backbone="b", seed="one")], "run 1 .*seed must be an integer"),
    ([dict(params="nope.yaml", backbone="b", seed=1)], "run 1: params file .*nope.yaml not found"),
    ("notalist", "a plan needs a non-empty 'runs' list"),
])
def test_bad_plans_name_the_file_and_the_entry(tmp_path, runs, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(dict(runs=runs)))
    with pytest.raises(PlanError, match=rf"{path}: {message}"):
        expand_plan(load_plan(path))


def test_the_same_run_twice_in_a_plan_is_refused_naming_both_entries(tmp_path):
    plan = write_plan(tmp_path, [("a", "test_efficientnet", 1), ("b", "x", 2),
                                 ("a", "test_efficientnet.tag", 1)])
    with pytest.raises(PlanError, match=r"runs 1 \(.*\) and 3 \(.*\) are the same run \(name "
                       r"'tiny_a', backbone 'test_efficientnet', seed 1\): keep one"):
        expand_plan(load_plan(plan), runs_dir=tmp_path / "runs")


def test_overrides_of_a_mixed_plan_reach_the_runs_that_have_them(tmp_path, capsys):
    """demo.yaml mixes 03_train and 03b: -p epochs 1 reaches the CNNs; the sweep says which
    runs it did not reach; a key that no notebook of the plan has is still refused."""
    specs = expand_plan(load_plan("params/plans/demo.yaml"), folds=[0],
                        runs_dir=tmp_path / "runs")
    skipped = check_parameters(specs, {"epochs": 1, "seed": 3})
    assert skipped == {"epochs": ["features_lr/logistic/fold0_seed0",
                                  "features_mlp/mlp/fold0_seed0",
                                  "features_ion_time_csv/mlp/fold0_seed0"]}
    cnn, features = specs[0], specs[1]
    assert run_parameters(cnn, {"epochs": 1})["epochs"] == 1
    assert "epochs" not in run_parameters(features, {"epochs": 1})
    with pytest.raises(PlanError, match=r"'epoch' is not a parameter of notebooks/03_train.ipynb "
                       r"or notebooks/03b_train_features.ipynb; did you mean 'epochs'\?"):
        check_parameters(specs, {"epoch": 1})


def test_misspelled_parameters_are_refused_before_anything_runs(tmp_path, capsys):
    plan = write_plan(tmp_path, [("a", "test_efficientnet", 1)])
    specs = expand_plan(load_plan(plan), runs_dir=tmp_path / "runs")
    check_parameters(specs, {"epochs": 1})
    with pytest.raises(PlanError, match=r"-p / command line: 'epoch' is not a parameter of "
                       r"notebooks/03_train.ipynb; did you mean 'epochs'\?"):
        check_parameters(specs, {"epoch": 1})
    (tmp_path / "tiny_a.yaml").write_text("name: tiny_a\nmixup_porb: 0.5\n")
    with pytest.raises(PlanError, match=r"tiny_a.yaml: 'mixup_porb' .* did you mean 'mixup_prob'"):
        check_parameters(specs, {})
    # the command line stops before it starts a cluster or touches a run folder
    assert main([str(plan), "--runs-dir", str(tmp_path / "runs"), "-p", "epoch", "1"]) == 2
    assert "did you mean 'mixup_prob'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("params, backbone, notebook, message", [
    (dict(head="flatM"), "seq1d_tiny", None,
     r"backbone 'seq1d_tiny' \(a 1D sequence model\) takes head cls3"),
    (dict(head="cls3"), "resnet_nope", None, r"backbone 'resnet_nope' is neither a timm model"),
    (dict(head="cls3", t_bins=40), "test_efficientnet", None,
     r"tta_offsets \[-64, -32, 0, 32, 64\]: the shortest time width t_bins \+ -64 = -24"),
    (dict(epochs=0), "test_efficientnet", None, r"epochs must be a whole number of at least 1, "
                                                r"got 0"),
    (dict(batch_size=0), "test_efficientnet", None, r"batch_size must be a whole number of at "
                                                    r"least 1, got 0"),
    (dict(lr=-0.01), "test_efficientnet", None, r"lr must be a finite number above 0, got -0.01"),
    (dict(mlp_lr=float("inf")), "mlp", "03b_train_features.ipynb",
     r"mlp_lr must be a finite number above 0, got inf"),
    (dict(C=0.2), "forest", "03b_train_features.ipynb",
     r"learner \(backbone\) must be one of \('lightgbm', 'logistic', 'mlp'\), got 'forest'"),
    (dict(n_bands=500), "logistic", "03b_train_features.ipynb",
     r"n_bands must be in 1\.\.t_bins \(192\), got 500"),
])
def test_parameters_a_run_cannot_train_with_are_refused_naming_the_params_file(
        tmp_path, capsys, params, backbone, notebook, message):
    params_file = tmp_path / "bad_run.yaml"
    params_file.write_text(yaml.safe_dump(dict(name="bad_run", **params)))
    entry = dict(params=str(params_file), backbone=backbone, seed=0)
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(dict(name="plan", folds=[0], runs=[
        {**entry, **({"notebook": notebook} if notebook else {})}])))
    specs = expand_plan(load_plan(plan), runs_dir=tmp_path / "runs")
    with pytest.raises(PlanError, match=rf"{params_file}, run bad_run/{backbone}/fold0_seed0: "
                       rf"{message}"):
        check_runs(specs, {})
    assert main([str(plan), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()


def test_cpu_environments_share_each_host_between_its_workers():
    workers = {"tcp://a:1": dict(host="a", nthreads=1), "tcp://a:2": dict(host="a", nthreads=1),
               "tcp://b:1": dict(host="b", nthreads=1)}
    envs = cpu_environments(workers)
    cores = os.cpu_count() or 1
    assert envs["tcp://a:1"]["OMP_NUM_THREADS"] == str(max(1, cores // 2))
    assert envs["tcp://b:1"]["MKL_NUM_THREADS"] == str(cores)


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


def finished_run(spec) -> bool:
    from lib.runs.run_folder import notebook_finished

    return is_done(spec.run_dir) and notebook_finished(spec.run_dir / spec.notebook)


@pytest.mark.slow
def test_sweep_survives_a_kill_and_resumes(tmp_path, tiny_data):
    data_dir, cache_dir = tiny_data
    plan = write_plan(tmp_path, [("a", "test_efficientnet", 1), ("b", "test_efficientnet", 2)])
    runs_dir = tmp_path / "runs"
    specs = expand_plan(load_plan(plan), runs_dir=runs_dir)
    process = subprocess.Popen(sweep_command(plan, runs_dir, data_dir, cache_dir), cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not any(finished_run(s) for s in specs) and time.time() < deadline:
        time.sleep(0.5)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    time.sleep(2)  # a papermill child would still be writing if it had outlived the sweep
    # finished: DONE and the executed notebook saved after its last cell (a run killed
    # between the two is trained again)
    finished = [s for s in specs if finished_run(s)]
    assert 1 <= len(finished) < len(specs)
    before = {s.run_dir: snapshot(s.run_dir) for s in finished}

    resumed = subprocess.run(sweep_command(plan, runs_dir, data_dir, cache_dir), cwd=REPO_ROOT,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{len(specs) - len(finished)} ran, {len(finished)} already finished, 0 failed" \
        in resumed.stdout
    assert not any(p.name == ".tmp" for s in specs for p in s.run_dir.iterdir())
    for spec in specs:
        assert is_done(spec.run_dir) and not (spec.run_dir / FAILED).exists()
        assert sum(1 for p in spec.run_dir.iterdir() if p.name == "DONE") == 1
    for run_dir, files in before.items():
        assert snapshot(run_dir) == files  # finished runs are not touched


@pytest.mark.slow
def test_failing_run_writes_failed_and_the_sweep_goes_on(tmp_path, tiny_data):
    """A run whose notebook fails (parameters the pre-launch check passes, a weights file that
    is not one) writes FAILED; the other run still trains."""
    data_dir, cache_dir = tiny_data
    broken = tmp_path / "broken.safetensors"
    broken.write_text("not a weights file")
    bad = tmp_path / "tiny_bad.yaml"
    bad.write_text(yaml.safe_dump(dict(name="tiny_bad", head="cls3", pretrained=True,
                                       weights=str(broken))))
    good = tmp_path / "tiny_a.yaml"
    good.write_text(yaml.safe_dump(dict(name="tiny_a", head="cls3", norm="mass")))
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(dict(name="plan", folds=[0], runs=[
        dict(params=str(bad), backbone="test_efficientnet", seed=1),
        dict(params=str(good), backbone="test_efficientnet", seed=1)])))
    runs_dir = tmp_path / "runs"
    completed = subprocess.run(sweep_command(plan, runs_dir, data_dir, cache_dir, "--folds", "0"),
                               cwd=REPO_ROOT, capture_output=True, text=True)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    failed = runs_dir / "tiny_bad" / "test_efficientnet" / "fold0_seed1"
    assert not is_done(failed)
    error = (failed / FAILED).read_text()
    assert 'Exception encountered at "In [' in error and "tiny_bad" in error
    assert is_done(runs_dir / "tiny_a" / "test_efficientnet" / "fold0_seed1")
    assert "1 ran, 0 already finished, 1 failed" in completed.stdout
    # a failed run is not retried by Dask: it was attempted once
    assert (failed / "attempts.txt").read_text().count("start") == 1
    assert "tiny_bad/test_efficientnet/fold0_seed1" in completed.stdout


@pytest.mark.slow
def test_finished_runs_on_other_data_are_reported_not_reused(tmp_path, tiny_data):
    data_dir, cache_dir = tiny_data
    plan = write_plan(tmp_path, [("a", "test_efficientnet", 1)])
    runs_dir = tmp_path / "runs"
    first = subprocess.run(sweep_command(plan, runs_dir, data_dir, cache_dir, "--folds", "0"),
                           cwd=REPO_ROOT, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    other = subprocess.run(sweep_command(plan, runs_dir, tmp_path, cache_dir, "--folds", "0"),
                           cwd=REPO_ROOT, capture_output=True, text=True)
    assert other.returncode == 2  # tmp_path is no data folder: refused before anything runs
    assert "metadata.csv" in other.stderr
    copy = tmp_path / "copy"  # the same data elsewhere (another machine's path): still done
    shutil.copytree(data_dir, copy)
    moved = subprocess.run(sweep_command(plan, runs_dir, copy, cache_dir, "--folds", "0"),
                           cwd=REPO_ROOT, capture_output=True, text=True)
    assert moved.returncode == 0 and "1 already finished" in moved.stdout, moved.stdout
    labels = pd.read_csv(copy / "train_labels.csv")
    labels.iloc[0, 1] = 1 - labels.iloc[0, 1]
    labels.to_csv(copy / "train_labels.csv", index=False)
    changed_data = subprocess.run(sweep_command(plan, runs_dir, copy, cache_dir, "--folds", "0"),
                                  cwd=REPO_ROOT, capture_output=True, text=True)
    assert changed_data.returncode == 1
    assert "1 stale (finished with other data, parameters, device or precision)" in \
        changed_data.stdout
    assert "finished on other data" in changed_data.stdout
    changed = subprocess.run(sweep_command(plan, runs_dir, data_dir, cache_dir, "--folds", "0",
                                           "-p", "epochs", "1"),
                             cwd=REPO_ROOT, capture_output=True, text=True)
    assert changed.returncode == 1
    assert "finished with other parameters (epochs)" in changed.stdout


@pytest.mark.slow
def test_two_sweeps_of_one_plan_at_once_both_succeed(tmp_path, tiny_data):
    """The second sweep waits for the run the first holds and then counts it as done."""
    data_dir, cache_dir = tiny_data
    plan = write_plan(tmp_path, [("a", "test_efficientnet", 1)])
    runs_dir = tmp_path / "runs"
    command = sweep_command(plan, runs_dir, data_dir, cache_dir, "--folds", "0", "-p", "epochs",
                            "1")
    first, second = (subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for _ in range(2))
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    assert sorted(int(o.split(" ran, ")[0].split()[-1]) for o in outputs) == [0, 1], outputs
    run_dir = runs_dir / "tiny_a" / "test_efficientnet" / "fold0_seed1"
    assert is_done(run_dir) and (run_dir / "attempts.txt").read_text().count("start") == 1


@pytest.mark.slow
def test_ctrl_c_stops_running_runs_and_cancels_queued_ones(tmp_path, tiny_data):
    """SIGINT to the whole process group, as a terminal's Ctrl-C: the running run ends
    unfinished (no FAILED), the queued one never starts, no papermill or kernel is left."""
    import psutil

    data_dir, cache_dir = tiny_data
    plan = write_plan(tmp_path, [("a", "test_efficientnet", 1)])
    runs_dir = tmp_path / "runs"
    specs = expand_plan(load_plan(plan), runs_dir=runs_dir)
    process = subprocess.Popen(sweep_command(plan, runs_dir, data_dir, cache_dir, "-p",
                                             "epochs", "5000"),
                               cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True,
                               # a terminal's default, even when pytest runs with SIGINT ignored
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (specs[0].run_dir / "03_train.ipynb").exists() and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(3)
    before = {p.pid for p in psutil.Process(process.pid).children(recursive=True)}
    os.killpg(process.pid, signal.SIGINT)
    started = time.time()
    out, err = process.communicate(timeout=400)
    assert time.time() - started < 200, err[-3000:]  # generous: CI machines may be loaded
    assert process.returncode == 130, out
    assert "stopped by the user (Ctrl-C): left unfinished" in out
    assert "not started (the sweep was stopped)" in out
    assert "0 ran, 0 already finished, 0 failed, 0 stale (finished with other data, " \
           "parameters, device or precision), 2 stopped" in out
    for spec in specs:
        assert not is_done(spec.run_dir) and not (spec.run_dir / FAILED).exists()
    assert not (specs[0].run_dir / ".tmp").exists()
    time.sleep(1)
    assert not [p for p in before if psutil.pid_exists(p)
                and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def test_runs_do_not_inherit_dasks_malloc_trim_setting(tmp_path, monkeypatch):
    from lib.sweep.tasks import _environment

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    env = _environment({"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "2"}, tmp_path)
    assert "MALLOC_TRIM_THRESHOLD_" not in env and env["OMP_NUM_THREADS"] == "2"
    assert env["TMPDIR"] == str(tmp_path) and env["PATH"] == os.environ["PATH"]


@pytest.mark.slow
def test_done_beside_an_unfinished_notebook_is_trained_again(tmp_path, tiny_data):
    """A SIGTERM that lands after the cell writing DONE but before papermill saved the
    notebook leaves DONE beside a notebook whose last cells are "running": not finished."""
    import json

    from lib.runs.run_folder import notebook_finished

    data_dir, cache_dir = tiny_data
    plan = write_plan(tmp_path, [("a", "test_efficientnet", 1)])
    runs_dir = tmp_path / "runs"
    first = subprocess.run(sweep_command(plan, runs_dir, data_dir, cache_dir, "--folds", "0"),
                           cwd=REPO_ROOT, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    run_dir = expand_plan(load_plan(plan), folds=[0], runs_dir=runs_dir)[0].run_dir
    executed = run_dir / "03_train.ipynb"
    assert notebook_finished(executed)
    notebook = json.loads(executed.read_text())
    del notebook["metadata"]["papermill"]["end_time"]
    notebook["cells"][-1]["metadata"]["papermill"]["status"] = "running"
    executed.write_text(json.dumps(notebook))
    assert not notebook_finished(executed) and is_done(run_dir)
    again = subprocess.run(sweep_command(plan, runs_dir, data_dir, cache_dir, "--folds", "0"),
                           cwd=REPO_ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 runs: 1 ran, 0 already finished" in again.stdout
    assert notebook_finished(executed) and is_done(run_dir)


@pytest.mark.parametrize("key, value, message", [
    ("C", "abc", r"C = 'abc' must be a number \(notebooks/03b_train_features.ipynb's default is "
                 r"0.2\)"),
    ("epochs", 1.5, r"epochs = 1.5 must be a whole number"),
    ("pretrained", 1, r"pretrained = 1 must be true or false"),
    ("tta_offsets", 3, r"tta_offsets = 3 must be a list"),
    ("select_epoch", 1, r"select_epoch = 1 must be a string"),
])
def test_parameters_of_the_wrong_kind_are_refused_naming_them(key, value, message):
    specs = expand_plan(load_plan("params/plans/demo.yaml"), folds=[0])
    with pytest.raises(PlanError, match=rf"-p / command line: {message}"):
        check_parameters(specs, {key: value})


@pytest.mark.slow
def test_a_local_sweep_listens_on_loopback_only(tmp_path, tiny_data):
    """Scheduler, dashboard, workers, nannies and the runs' kernels of a local sweep: every
    listening socket of its process tree is bound to 127.0.0.1 (a shared GPU server's
    network cannot read the dashboard or reach the scheduler)."""
    import psutil

    data_dir, cache_dir = tiny_data
    plan = write_plan(tmp_path, [("a", "test_efficientnet", 1)])
    runs_dir = tmp_path / "runs"
    specs = expand_plan(load_plan(plan), folds=[0], runs_dir=runs_dir)
    process = subprocess.Popen(sweep_command(plan, runs_dir, data_dir, cache_dir, "--folds", "0",
                                             "-p", "epochs", "5000"),
                               cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not (specs[0].run_dir / "03_train.ipynb").exists() and time.time() < deadline:
            time.sleep(0.5)
        time.sleep(3)  # the kernel is up and training
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(True)]
        listening = set()
        for member in tree:
            try:
                connections = member.net_connections(kind="inet")
            except psutil.NoSuchProcess:
                continue
            listening |= {(c.laddr.ip, c.laddr.port) for c in connections
                          if c.status == psutil.CONN_LISTEN}
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.communicate(timeout=120)
    assert len(listening) >= 4, listening  # scheduler, dashboard, nanny, worker (+ kernel)
    assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening


def test_attempts_are_read_back_with_their_worker_pin_and_end(tmp_path):
    assert read_attempts(tmp_path) == []  # no attempt yet
    (tmp_path / STARTED).write_text(
        "start 10.0 worker gpu1 CUDA_VISIBLE_DEVICES=1\n"  # killed: no end line
        "start 20.5 worker gpu0 CUDA_VISIBLE_DEVICES=0\n"
        "end 30.0\n"
        "start 40.0 worker w3\n")  # a line written before the pin was recorded
    assert read_attempts(tmp_path) == [Attempt(10.0, None, "gpu1", "1"),
                                       Attempt(20.5, 30.0, "gpu0", "0"),
                                       Attempt(40.0, None, "w3", "")]


def test_a_missing_scheduler_file_is_named_at_once(tmp_path, tiny_data, capsys):
    """Dask's client waits forever for a scheduler file to appear."""
    data_dir, cache_dir = tiny_data
    plan = write_plan(tmp_path, [("a", "test_efficientnet", 1)])
    missing = tmp_path / "missing.json"
    started = time.monotonic()
    assert main([str(plan), "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(data_dir),
                 "--cache-dir", str(cache_dir), "--scheduler-file", str(missing)]) == 2
    assert time.monotonic() - started < 30
    assert f"--scheduler-file {missing}: no such file" in capsys.readouterr().err
    missing.write_text("{}")
    with pytest.raises(ConnectError, match=rf"--scheduler-file {missing}: not a Dask scheduler "
                       r"file with an 'address'"):
        scheduler_address(str(missing))


def test_tls_settings_naming_missing_files_are_named(tmp_path):
    """Dask itself says only "[Errno 2] No such file or directory"."""
    import dask

    ca = tmp_path / "nope" / "ca.pem"
    with dask.config.set({"distributed.comm.tls.ca-file": str(ca)}):
        with pytest.raises(ConnectError, match=rf"TLS setting distributed.comm.tls.ca-file: no "
                           rf"such file {ca} .*DASK_DISTRIBUTED__COMM__TLS__CA_FILE"):
            with open_client(scheduler="tls://127.0.0.1:1"):
                pass
    ca.parent.mkdir()
    ca.write_text("-")
    key = tmp_path / "key.pem"
    with dask.config.set({"distributed.comm.tls.ca-file": str(ca),
                          "distributed.comm.tls.client.key": str(key)}):
        with pytest.raises(ConnectError, match=rf"distributed.comm.tls.client.key: no such "
                           rf"file {key}"):
            check_tls_files()


def test_an_unreachable_scheduler_fails_within_the_timeout(monkeypatch):
    from lib.sweep import local

    monkeypatch.setattr(local, "CONNECT_TIMEOUT", 2)
    started = time.monotonic()
    with pytest.raises(ConnectError, match=r"cannot reach the Dask scheduler at "
                       r"tcp://127.0.0.1:1 within 2 s"):
        with open_client(scheduler="tcp://127.0.0.1:1"):
            pass
    assert time.monotonic() - started < 20


def test_progress_is_one_line_per_run_when_not_a_terminal():
    """`python -m lib.sweep ... > sweep.log 2>&1` used to get the bar as one growing line."""
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    log, terminal = io.StringIO(), Terminal()
    for stream in (log, terminal):
        with ProgressReport(3, stream=stream) as report:
            report.finished("a/x/fold0_seed0", "ran")
            report.finished("a/x/fold1_seed0", "failed")
    assert log.getvalue().splitlines() == [
        "sweep: 1/3 runs finished (last: a/x/fold0_seed0 ran)",
        "sweep: 2/3 runs finished (last: a/x/fold1_seed0 failed)"]
    assert "\r" in terminal.getvalue() and "2/3" in terminal.getvalue()  # tqdm's bar
    quiet = io.StringIO()
    with ProgressReport(3, enabled=False, stream=quiet) as report:
        report.finished("a/x/fold0_seed0", "ran")
    assert quiet.getvalue() == ""
