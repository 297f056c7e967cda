"""Wheels for an offline machine that already has torch and timm (a lent GPU machine): what
scripts/gpu_check.py needs besides them, resolved for another Python and platform.

    python scripts/wheelhouse.py --python-version 3.12 --platform manylinux_2_28_x86_64 \
        --dest wheelhouse --max-mib 56

1. pip resolves the closure of GPU_CHECK_NEEDS (with pyproject.toml's version bounds) for the
   target, without installing anything (``pip install --dry-run --report``);
2. torch, torchvision, triton, nvidia-* and cuda-* are never carried (the machine's own
   build is used), nor anything that only they need;
3. every other wheel is downloaded; if they exceed --max-mib, the largest of those the
   target already has (TARGET_HAS) are left out, one by one, until the rest fits.

Install on the target, offline (the machine's torch and timm stay as they are):

    pip install --no-index --find-links wheelhouse --no-deps wheelhouse/*.whl

Prints the wheels kept, those left out and the total size; exit 1 if it cannot fit.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# What the GPU check imports besides torch and timm: lib's own needs on the training path
# (lightgbm too: 03_train imports lib.train.predict, which imports
# lib.models.feature_models), papermill and its kernel (ipykernel), the sweep (dask,
# distributed), the folds; nbconvert, so that the machine renders the reports of what it ran
# (python -m lib.reports).
GPU_CHECK_NEEDS = ["numpy", "pandas", "matplotlib", "scikit-learn", "iterative-stratification",
                   "lightgbm", "pyyaml", "tqdm", "psutil", "papermill", "ipykernel", "nbformat",
                   "nbconvert", "dask", "distributed"]
NEVER_CARRIED = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-.*|cuda-.*)$")
# Python packages of the lent GPU machine's image ('cuda', KINDS.md, read 2026-11-17); left
# out only when the wheelhouse would not fit otherwise.
TARGET_HAS = set("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs certifi
charset-normalizer click cloudpickle colorama contourpy cycler filelock fonttools frozenlist
fsspec h11 h5py hf-xet httpcore httpx huggingface-hub idna imageio jinja2 joblib kiwisolver
markdown-it-py markupsafe matplotlib mdurl msgpack multidict narwhals networkx numpy packaging
pandas pillow pip pluggy propcache protobuf psutil pyarrow pygments pyparsing python-dateutil
pyyaml regex requests rich safetensors scikit-learn scipy setuptools six sortedcontainers
threadpoolctl timm toolz tqdm typing-extensions urllib3 wrapt yarl zipp
""".split())


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_requirements(names: list[str]) -> list[str]:
    """pyproject.toml's requirement strings for ``names`` (bare names for those it lacks)."""
    text = (REPO_ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
    declared = {canonical(re.split(r"[<>=!~ \[]", r, maxsplit=1)[0]): r
                for r in re.findall(r'"([^"]+)"', block)}
    return [declared.get(canonical(n), n) for n in names]


def target_options(python_version: str, platform: str) -> list[str]:
    """pip options that select wheels for CPython ``python_version`` on ``platform``; a
    manylinux_2_N tag also admits every older manylinux tag (pip matches tags exactly)."""
    abi = "cp" + python_version.replace(".", "")
    options = ["--only-binary=:all:", "--implementation", "cp", "--python-version",
               python_version, "--abi", abi, "--abi", "abi3", "--abi", "none"]
    match = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    platforms = [platform]
    if match:
        glibc, arch = int(match.group(1)), match.group(2)
        platforms = [f"manylinux_2_{n}_{arch}" for n in range(glibc, 4, -1)]
        platforms += [f"{legacy}_{arch}" for legacy, n in
                      (("manylinux2014", 17), ("manylinux2010", 12), ("manylinux1", 5))
                      if n <= glibc]
    for tag in platforms:
        options += ["--platform", tag]
    return options


def resolve(requirements: list[str], options: list[str]) -> dict[str, dict]:
    """{canonical name: {"version", "requires": [names]}} of the resolved closure."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
                        "--ignore-installed", "--target", str(Path(scratch) / "t"),
                        "--report", str(report), *options, *requirements], check=True)
        installs = json.loads(report.read_text())["install"]
    closure = {}
    for item in installs:
        meta = item["metadata"]
        requires = [canonical(re.split(r"[<>=!~ ;\[(]", r, maxsplit=1)[0])
                    for r in meta.get("requires_dist", []) if "extra ==" not in r]
        closure[canonical(meta["name"])] = dict(version=meta["version"], requires=requires)
    return closure


def carried(closure: dict[str, dict], roots: list[str]) -> list[str]:
    """Names reachable from ``roots`` without passing through a never-carried package."""
    seen, stack = set(), [canonical(r) for r in roots]
    while stack:
        name = stack.pop()
        if name in seen or name not in closure or NEVER_CARRIED.match(name):
            continue
        seen.add(name)
        stack.extend(closure[name]["requires"])
    return sorted(seen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument("--platform", default="manylinux_2_28_x86_64")
    parser.add_argument("--dest", default="wheelhouse")
    parser.add_argument("--max-mib", type=float, default=56.0)
    args = parser.parse_args(argv)

    options = target_options(args.python_version, args.platform)
    requirements = pyproject_requirements(GPU_CHECK_NEEDS)
    closure = resolve(requirements, options)
    names = carried(closure, GPU_CHECK_NEEDS)
    dest = Path(args.dest)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    pins = [f"{n}=={closure[n]['version']}" for n in names]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--dest", str(dest), *options, *pins], check=True)

    wheels = {canonical(p.name.split("-")[0]): p for p in dest.glob("*.whl")}
    limit = args.max_mib * 2**20
    left_out = []
    for name in sorted((n for n in wheels if n in TARGET_HAS),
                       key=lambda n: wheels[n].stat().st_size, reverse=True):
        if sum(p.stat().st_size for p in wheels.values()) <= limit:
            break
        left_out.append(f"{wheels[name].name} ({wheels[name].stat().st_size / 2**20:.1f} MiB)")
        wheels.pop(name).unlink()
    total = sum(p.stat().st_size for p in wheels.values())
    for name in sorted(wheels):
        print(f"  {wheels[name].name}  {wheels[name].stat().st_size / 2**20:.2f} MiB")
    if left_out:
        print("left out (the target has them):\n  " + "\n  ".join(left_out))
    print(f"{dest}: {len(wheels)} wheels, {total / 2**20:.1f} MiB for CPython "
          f"{args.python_version} on {args.platform}")
    if total > limit:
        print(f"error: {total / 2**20:.1f} MiB is over --max-mib {args.max_mib}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
