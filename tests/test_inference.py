"""Device choice (never a silent fallback) and the precision a finished run predicts in."""

from __future__ import annotations

import json

import pytest
import torch

from lib.core.precision import cuda_problem
from lib.train.device import precision
from lib.train.predict import PRECISION_SETTINGS, DeviceError, pick_device, run_precision
from lib.train.settings import TrainSettings

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")


def test_auto_and_cpu():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@no_gpu
@pytest.mark.parametrize("asked", ["cuda", "cuda:0", "cuda:1"])
def test_asking_for_cuda_without_a_gpu_fails_and_says_why(asked, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    if torch.version.cuda is None:
        why = "built without CUDA"
    else:
        why = "no GPU is visible to torch .*CUDA_VISIBLE_DEVICES is not set"
    with pytest.raises(DeviceError, match=f"device '{asked}' was asked for on .*, but {why}"):
        pick_device(asked)


@no_gpu
def test_the_error_quotes_cuda_visible_devices(monkeypatch):
    if torch.version.cuda is None:
        pytest.skip("a CPU-only torch fails before looking at GPUs")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(DeviceError, match="no GPU is visible to torch.*CUDA_VISIBLE_DEVICES=''"):
        pick_device("cuda")


def test_cuda_problems():
    assert "built without CUDA" in cuda_problem(None, cuda_version=None, n_gpus=0, visible=None)
    assert cuda_problem(None, cuda_version="12.4", n_gpus=2, visible=None) is None
    assert cuda_problem(1, cuda_version="12.4", n_gpus=2, visible=None) is None
    assert cuda_problem(2, cuda_version="12.4", n_gpus=2, visible="0,3") == (
        "torch sees 2 GPUs (cuda:0 to cuda:1; CUDA_VISIBLE_DEVICES='0,3')")
    assert "torch sees 1 GPU (cuda:0 to cuda:0; CUDA_VISIBLE_DEVICES is not set)" in \
        cuda_problem(1, cuda_version="12.4", n_gpus=1, visible=None)
    assert "no GPU is visible to torch (CUDA 12.4; CUDA_VISIBLE_DEVICES='-1'" in \
        cuda_problem(0, cuda_version="12.4", n_gpus=0, visible="-1")


@pytest.mark.parametrize("recorded", ["bf16", "tf32", "fp32"])
def test_runs_predict_in_their_recorded_precision(recorded, tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(dict(precision=recorded, best_epoch=1)))
    assert run_precision(tmp_path) == recorded
    # the settings predict_runs derives from it give that precision on a GPU that has it
    settings = TrainSettings(**PRECISION_SETTINGS[recorded])
    assert precision(torch.device("cuda"), settings, capability=(8, 0)) == recorded


def test_runs_without_a_recorded_precision_are_fp32(tmp_path):
    assert run_precision(tmp_path) == "fp32"
    (tmp_path / "metrics.json").write_text(json.dumps(dict(best_epoch=1)))
    assert run_precision(tmp_path) == "fp32"
    (tmp_path / "metrics.json").write_text(json.dumps(dict(precision="fp8")))
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        run_precision(tmp_path)
