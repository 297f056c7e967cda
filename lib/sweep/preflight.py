"""The preflight every worker passes before anything trains: the same code (git commit), the
data and runs folders reachable, CUDA where the runs need it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from lib.core.paths import REPO_ROOT


def git_commit(root: Path = REPO_ROOT) -> str | None:
    """The repo's HEAD commit, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def check_worker(commit: str | None, data_dirs: list[str], runs_dir: str,
                 need_cuda: bool = False) -> dict:
    """Run on a worker: {"problems": "" or the reasons, "cuda": probe_cuda() or None,
    "host": hostname}. Problems: the repo is not at ``commit``, a data folder's metadata.csv
    is unreadable, ``runs_dir`` is not writable; with ``need_cuda`` also cuda_problem()."""
    import lib

    problems = []
    root = Path(lib.__file__).resolve().parent.parent
    here = git_commit(root)
    if commit and here != commit:
        problems.append(f"repo at {root} is at commit {here}, the sweep at {commit}")
    for data_dir in data_dirs:
        metadata = Path(data_dir) / "metadata.csv"
        if not os.access(metadata, os.R_OK):
            problems.append(f"cannot read {metadata}")
    try:
        Path(runs_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=runs_dir, prefix=".preflight-"):
            pass
    except OSError as error:
        problems.append(f"cannot write into {runs_dir} ({error.strerror or error})")
    if sys.executable and not os.access(sys.executable, os.X_OK):
        problems.append(f"python {sys.executable} is not executable")
    cuda = None
    if need_cuda:
        cuda = probe_cuda()
        machine = probe_cuda(pinned=False) if cuda.get("count") == 0 and cuda.get("visible") \
            else None
        problem = cuda_problem(cuda, machine)
        if problem:
            problems.append(problem)
    return {"problems": "; ".join(problems), "cuda": cuda, "host": socket.gethostname()}


# Run in a fresh Python with the worker's environment, as a run's kernel starts: what torch
# sees of CUDA (without touching CUDA in the long-lived worker process itself).
CUDA_PROBE = r"""
import json, os
info = {"visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "count": 0}
try:
    import torch
    info.update(torch=torch.__version__, cuda_build=torch.version.cuda)
    if torch.version.cuda is not None:
        info["count"] = torch.cuda.device_count()
        if info["count"]:
            torch.zeros(1, device="cuda")  # a context and an allocation: the driver works
            info["name"] = torch.cuda.get_device_name(0)
            info["capability"] = list(torch.cuda.get_device_capability(0))
except Exception as error:
    info["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
print(json.dumps(info))
"""


def probe_cuda(pinned: bool = True, timeout: float = 180.0) -> dict:
    """What a run started from this process would see of CUDA: {"visible" (its
    CUDA_VISIBLE_DEVICES or None), "count", "torch", "cuda_build" (None: a CPU-only torch),
    "name", "capability" [major, minor] of the first GPU, "error"}. pinned=False: as if
    CUDA_VISIBLE_DEVICES were unset (how many GPUs the machine has)."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    if not pinned:
        env.pop("CUDA_VISIBLE_DEVICES", None)
    try:
        out = subprocess.run([sys.executable, "-c", CUDA_PROBE], capture_output=True, text=True,
                             timeout=timeout, env=env)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as error:
        return {"visible": env.get("CUDA_VISIBLE_DEVICES"), "count": 0,
                "error": f"the CUDA probe did not answer ({type(error).__name__})"}


def cuda_problem(cuda: dict, machine: dict | None = None) -> str:
    """"" if the probe (probe_cuda) shows a usable GPU, else why not, in words. machine: the
    unpinned probe, to say what exists when the pinned GPU does not."""
    from lib.core.precision import cuda_problem as why_not

    if "torch" not in cuda and cuda.get("error"):
        return f"CUDA check failed: {cuda['error']}"
    if cuda.get("cuda_build") is not None and cuda.get("error"):
        return f"CUDA does not work here: {cuda['error']}"
    if cuda.get("cuda_build") is not None and not cuda.get("count") \
            and cuda.get("visible") is not None:
        seen = machine.get("count", "?") if machine else "?"
        return (f"pinned to GPU CUDA_VISIBLE_DEVICES={cuda['visible']!r}, which torch "
                f"cannot see (this machine has {seen} GPU(s) when unpinned)")
    return why_not(None, cuda_version=cuda.get("cuda_build"), n_gpus=cuda.get("count") or 0,
                   visible=cuda.get("visible"), torch_version=cuda.get("torch", "")) or ""


def preflight(client, data_dirs: list[Path], runs_dir: Path, need_cuda: bool = False
              ) -> tuple[dict[str, str], dict[str, dict]]:
    """check_worker on every worker (one small task each). Returns ({"name (address)":
    reasons} of the workers that failed (empty: all passed), {worker name: CUDA probe} when
    ``need_cuda``). With need_cuda, GPU workers of one host that would all train on the same
    GPU (the same first CUDA_VISIBLE_DEVICES entry, or none set) fail too."""
    answers = client.run(check_worker, git_commit(), [str(d) for d in data_dirs],
                         str(runs_dir), need_cuda)
    workers = client.scheduler_info(n_workers=-1)["workers"]
    label = {a: f"{workers.get(a, {}).get('name', a)} ({a})" for a in answers}
    problems = {label[a]: answer["problems"] for a, answer in answers.items()
                if answer["problems"]}
    if need_cuda:
        first_gpu: dict[tuple, list[str]] = {}
        for address, answer in answers.items():
            visible = (answer["cuda"].get("visible") or "").split(",")[0] or "(unset)"
            if "GPU" in workers.get(address, {}).get("resources", {}):
                first_gpu.setdefault((answer["host"], visible), []).append(address)
        for (host, gpu), sharing in first_gpu.items():
            for address in sharing if len(sharing) > 1 else []:
                others = ", ".join(label[a] for a in sharing if a != address)
                problems[label[address]] = "; ".join(filter(None, [
                    problems.get(label[address]),
                    f"trains on the same GPU of {host} (CUDA_VISIBLE_DEVICES first entry "
                    f"{gpu}) as {others}: pin each worker to its GPU"]))
    cuda = {str(workers.get(a, {}).get("name", a)): answer["cuda"]
            for a, answer in answers.items() if answer["cuda"] is not None}
    return problems, cuda
