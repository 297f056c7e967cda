"""Phase 2, throughput: train steps/s and inference samples/s at the check's batch size and
image size (random init, random images on the device), bf16 + channels_last against fp32,
eager then compiled, each config in its own process (``gpu_check.py --bench SPEC``, bench_one
here), and whether a steady-state epoch ever waits on the host
(torch.cuda.set_sync_debug_mode "error" around lib's train_one_epoch)."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from .common import run_bounded, sync, write_json
from .config import ENTRY
from .estimates import bench_estimate


def phase_throughput(config, summary, work, deadline, end, record) -> None:
    results, measured = [], {}
    for backbone, amp, compiled in config.bench:
        item = dict(backbone=backbone, amp=amp, channels_last=amp, compiled=compiled)
        need = bench_estimate((backbone, amp, compiled), config, measured)
        left = deadline - time.time()
        if need > left:
            results.append(dict(item, status="skipped (budget)", estimate_s=round(need, 1)))
            record.update(configs=results)
            continue
        spec = dict(item, device=config.device, m_bins=config.m_bins, t_bins=config.t_bins,
                    tta_offsets=list(config.tta_offsets), batch_size=config.batch_size,
                    samples=config.bench_samples, compile_backend=config.compile_backend,
                    smoke=config.smoke)
        result_file = work / "bench_result.json"
        result_file.unlink(missing_ok=True)
        started = time.time()
        command = [sys.executable, str(ENTRY), "--bench",
                   json.dumps(dict(spec, result_file=str(result_file)))]
        code = run_bounded(command, end - time.time(), sys.stdout)
        wall = time.time() - started
        result = json.loads(result_file.read_text()) if result_file.is_file() else {}
        status = "ok" if code == 0 else ("failed: timed out" if code is None
                                         else f"failed: exit {code}")
        results.append(dict(item, **result, status=status, wall_s=round(wall, 1),
                            estimate_s=round(need, 1)))
        if code == 0 and not compiled:
            measured[backbone] = wall
        record.update(configs=results)
    if any(r["status"].startswith("failed") for r in results):
        raise RuntimeError("throughput configs failed: " + ", ".join(
            _bench_label(r) for r in results if r["status"].startswith("failed")))


def _bench_label(r: dict) -> str:
    return (f"{r['backbone']} {'bf16+CL' if r['amp'] else 'fp32'}"
            f"{' compiled' if r['compiled'] else ''}")


def bench_one(spec: dict) -> int:
    """One throughput config in this process; writes its figures to spec["result_file"]."""
    import numpy as np
    import torch

    from lib.models.cnn import build_model
    from lib.train.device import (
        DeviceImages,
        configure_backends,
        precision,
        predict_logits,
        prepare_model,
    )
    from lib.train.settings import TrainSettings

    device = torch.device(spec["device"])
    out = Path(spec["result_file"])
    # compiled by the project's own code (TrainSettings.compile), except in the smoke run,
    # which compiles here with a backend that needs no C++ compiler; tf32 False: fp32 is the
    # original's fp32
    settings = TrainSettings(norm="mass", transform="log", mixup_prob=0.0, epochs=3,
                             warmup_epochs=0, batch_size=spec["batch_size"], amp=spec["amp"],
                             channels_last=spec["channels_last"], tf32=False,
                             compile=spec["compiled"] and not spec["smoke"])
    configure_backends(device, settings)

    rng = np.random.default_rng(0)
    n = spec["samples"]
    images = rng.random((n, spec["m_bins"], spec["t_bins"]), dtype=np.float32) ** 16
    images /= images.max(axis=(1, 2), keepdims=True)
    labels = (rng.random((n, 9)) < 0.2).astype(np.float32)
    data = DeviceImages(images, rng.integers(0, 2, n), device)
    torch.manual_seed(0)
    model = build_model(spec["backbone"], "cls3", m_bins=spec["m_bins"])
    model.width_offsets = tuple(spec["tta_offsets"])
    model = prepare_model(model, device, settings)
    compiled_by = None
    if settings.compile:
        compiled_by = "lib.train.device.prepare_model (compile_widths)"
    elif spec["compiled"]:
        model = torch.compile(model, backend=spec["compile_backend"])
        compiled_by = f"gpu_check (torch.compile, backend {spec['compile_backend']})"
    figures = dict(device=str(device), precision=precision(device, settings),
                   batch_size=spec["batch_size"], image=[spec["m_bins"], spec["t_bins"]],
                   compiled_by=compiled_by, torch=torch.__version__)
    steps = n // spec["batch_size"]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    figures.update(_bench_epochs(model, data, labels, settings, device, steps))
    oof = np.arange(min(n, 32))
    predict_logits(model, data, oof, settings)  # warm-up (and compilation of eval mode)
    sync(device)
    started = time.perf_counter()
    predict_logits(model, data, np.arange(n), settings)
    sync(device)
    figures["infer_samples_per_s"] = round(n / (time.perf_counter() - started), 1)
    if device.type == "cuda":
        figures["peak_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    write_json(out, figures)
    print(json.dumps(dict(spec=spec, **figures)), flush=True)
    return 0


def _bench_epochs(model, data, labels, settings, device, steps: int) -> dict:
    """Epochs through lib.train.fit.train_one_epoch: one warm-up (compilation, cuDNN autotune),
    one under set_sync_debug_mode("error") (ok, or the error of the first host sync), one
    timed."""
    import torch

    from lib.train.augment import epoch_draws
    from lib.train.fit import make_optimizer, train_one_epoch

    generator = torch.Generator().manual_seed(0)
    n = len(labels)
    optimizer, scheduler = make_optimizer(model, settings, steps, device)
    train_index = torch.arange(n, device=device)
    train_labels = torch.as_tensor(labels, device=device)
    figures = dict(api="lib.train.fit.train_one_epoch")

    def epoch(check_sync: bool = False):
        draws = epoch_draws(n, steps, settings, generator).to(device)
        sync(device)
        started = time.perf_counter()
        if check_sync:
            torch.cuda.set_sync_debug_mode("error")
        try:
            loss_sum = train_one_epoch(model, data, optimizer, scheduler, draws,
                                       train_index, train_labels, settings)
        finally:
            if check_sync:
                torch.cuda.set_sync_debug_mode("default")
        sync(device)
        return time.perf_counter() - started, float(loss_sum)

    model.train()
    figures["warmup_epoch_s"] = round(epoch()[0], 2)
    if device.type == "cuda":
        try:
            epoch(check_sync=True)
            figures["sync_debug"] = "ok"
        except RuntimeError as error:
            figures["sync_debug"] = f"error: {str(error).splitlines()[0][:300]}"
    else:
        figures["sync_debug"] = "not checked (CPU)"
    seconds, loss_sum = epoch()
    figures.update(train_samples_per_s=round(steps * settings.batch_size / seconds, 1),
                   step_ms=round(1000 * seconds / steps, 2), loss_finite=math.isfinite(loss_sum))
    return figures
