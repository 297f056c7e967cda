"""Training and inference throughput of one backbone on one device, through the real code path
(lib.train.fit.fit and predict_logits on random images held on the device).

    python scripts/bench_training.py --backbone resnet34 --head cls3 --device auto
    python scripts/bench_training.py --backbone hrnet_w64 --no-amp --no-channels-last
    python scripts/bench_training.py --backbone resnet34 --compile

Prints one JSON line: training samples/s (the last epoch, after warm-up), inference samples/s
(eval forward = five time widths), the first epoch's seconds (training + OOF eval; with
--compile it holds the compilation), the graphs torch.compile made, and the settings; and
writes them, with the machine, date and command, to --json (default
benchmarks/bench_training_<backbone>[_<head>][_<device>][_fp32][_compile].json, naming what
differs from the defaults; scripts/render_benchmarks.py renders them into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
from bench_common import add_json_option, default_json, describe_machine, utc_now, write_result

from lib.models.cnn import build_model
from lib.train.device import (
    DeviceImages,
    configure_backends,
    precision,
    predict_logits,
    prepare_model,
)
from lib.train.fit import fit
from lib.train.predict import pick_device
from lib.train.settings import TrainSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet34")
    parser.add_argument("--head", default="cls3", choices=["cls3", "flatM"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--samples", type=int, default=128, help="training samples per epoch")
    parser.add_argument("--epochs", type=int, default=2, help="the last one is timed")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eval-batch-size", type=int, default=32)
    parser.add_argument("--m-bins", type=int, default=256)
    parser.add_argument("--t-bins", type=int, default=192)
    parser.add_argument("--no-amp", dest="amp", action="store_false")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--tf32", action="store_true", help="TF32 for fp32 work on CUDA")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    add_json_option(parser, "bench_training_<backbone>")
    args = parser.parse_args()
    machine, date = describe_machine(), utc_now()

    device = pick_device(args.device)
    rng = np.random.default_rng(0)
    n = args.samples
    images = (rng.random((n, args.m_bins, args.t_bins), dtype=np.float32) ** 16)
    images /= images.max(axis=(1, 2), keepdims=True)
    labels = (rng.random((n, 9)) < 0.2).astype(np.float32)
    data = DeviceImages(images, rng.integers(0, 2, n), device)
    settings = TrainSettings(norm="mass", transform="log", mixup_prob=0.1, epochs=args.epochs,
                             warmup_epochs=0, batch_size=args.batch_size,
                             eval_batch_size=args.eval_batch_size, amp=args.amp, tf32=args.tf32,
                             channels_last=args.channels_last, compile=args.compile)
    configure_backends(device, settings)
    torch.manual_seed(0)
    model = prepare_model(build_model(args.backbone, args.head, m_bins=args.m_bins), device,
                          settings)
    oof = np.arange(min(n, args.eval_batch_size))
    result = fit(model, data, train_index=np.arange(n), train_labels=labels, oof_index=oof,
                 oof_labels=labels[oof], test_index=oof, settings=settings, seed=0,
                 progress=False)
    first, last = result.history[0], result.history[-1]
    train_rate = (n // args.batch_size) * args.batch_size / last["train_seconds"]

    predict_logits(model, data, oof, settings)  # warm-up
    _sync(device)
    started = time.perf_counter()
    predict_logits(model, data, np.arange(n), settings)
    _sync(device)
    infer_rate = n / (time.perf_counter() - started)
    figures = dict(
        backbone=args.backbone, head=args.head, device=str(device),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        precision=precision(device, settings),
        channels_last=args.channels_last and device.type == "cuda", compile=args.compile,
        batch_size=args.batch_size, image=[args.m_bins, args.t_bins],
        train_samples_per_s=round(train_rate, 1), infer_samples_per_s_tta5=round(infer_rate, 1),
        first_epoch_s=round(first["train_seconds"] + first["eval_seconds"], 1),
        compiled_graphs=_compiled_graphs() if args.compile else 0,
        torch_threads=torch.get_num_threads(), samples=n, epochs=args.epochs)
    print(json.dumps(figures))
    path = write_result(args.json or default_json(result_name(args, device)), "bench_training",
                        figures, machine, date)
    print(f"wrote {path}", file=sys.stderr)


def result_name(args: argparse.Namespace, device: torch.device) -> str:
    """bench_training_<backbone>, then what differs from the defaults: _<head> unless cls3,
    _<device type> unless the CPU, _fp32 without amp on a GPU, _compile."""
    parts = ["bench_training", args.backbone.replace("/", "_")]
    if args.head != "cls3":
        parts.append(args.head)
    if device.type != "cpu":
        parts.append(device.type)
        if not args.amp:
            parts.append("fp32")
    if args.compile:
        parts.append("compile")
    return "_".join(parts)


def _compiled_graphs() -> int:
    """Graphs dynamo compiled in this process (its own counter; not a public API)."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
