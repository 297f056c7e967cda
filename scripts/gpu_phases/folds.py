"""Phases 5 and 6, one fold of 3a/302 through papermill (notebooks/03_train.ipynb):
precision (a resnet34 fold in fp32, then in bf16, same seed: OOF loss and time of each) and
hrnet_fold (one hrnet_w64 fold for as many epochs as the budget leaves, and the per-epoch time
that extrapolates to 20 epochs)."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from .common import MemoryPoll, common_parameters, data_dir, need_packages, run_bounded
from .config import PARAMS, Config
from .estimates import epoch_seconds, run_overhead


def train_fold(config: Config, work: Path, tag: str, backbone: str, epochs: int,
               extra: list[str], timeout: float) -> dict:
    """One fold (0, seed 3) of 3a/302 through papermill into WORK/runs/<tag>; its figures."""

    run_dir = work / "runs" / tag
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    command = [sys.executable, "-m", "papermill", "notebooks/03_train.ipynb",
               str(run_dir / "03_train.ipynb"), "-f", str(PARAMS), "--kernel", "python3",
               "--no-progress-bar", "--log-level", "WARNING", "-p", "backbone", backbone,
               "-p", "epochs", str(epochs), "-p", "fold", "0", "-p", "seed", "3",
               "-p", "run_dir", str(run_dir), "-p", "data_dir", str(data_dir(config, work)),
               "-p", "cache_dir", str(work / "cache"), "-y", json.dumps(common_parameters(config)),
               *extra]
    print(" ".join(command), flush=True)
    started = time.time()
    with MemoryPoll() as memory:
        code = run_bounded(command, timeout, sys.stdout)
    wall = time.time() - started
    figures = dict(backbone=backbone, epochs=epochs, papermill_exit=code, wall_s=round(wall, 1),
                   **memory.figures())
    if code != 0:
        raise RuntimeError(f"{tag}: papermill " + ("timed out" if code is None
                                                   else f"exit {code}"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = metrics["history"]
    figures.update(precision=metrics["precision"], best_epoch=metrics["best_epoch"],
                   best_oof_loss=round(metrics["best_oof_loss"], 5),
                   last_oof_loss=round(history[-1]["oof_loss"], 5),
                   fit_s=round(metrics["fit_seconds"], 1),
                   overhead_s=round(wall - metrics["fit_seconds"], 1),
                   epoch_train_s=[round(e["train_seconds"], 2) for e in history],
                   epoch_eval_s=[round(e["eval_seconds"], 2) for e in history])
    return figures


def phase_precision(config, summary, work, deadline, end, record) -> None:
    need_packages()
    fewest, most = config.precision_epochs
    per_epoch = epoch_seconds(config.precision_backbone, config, summary)
    overhead = run_overhead(config, summary)
    # both runs with the same epochs, fp32 (slower: assume twice the time per epoch) first
    room = (deadline - time.time()) - 2 * overhead
    epochs = int(max(fewest, min(most, room // (3 * per_epoch))))
    record.update(backbone=config.precision_backbone, epochs=epochs, seed=3, fold=0)
    for amp, tag in ((False, "fp32"), (True, "bf16")):
        figures = train_fold(config, work, f"precision_{tag}", config.precision_backbone,
                             epochs, ["-p", "amp", str(amp)], end - time.time())
        record.update(**{tag: figures})
    fp32, bf16 = record.figures["fp32"], record.figures["bf16"]
    record.update(oof_loss_bf16_minus_fp32=round(bf16["best_oof_loss"] - fp32["best_oof_loss"], 5),
                  fit_speedup_bf16=round(fp32["fit_s"] / bf16["fit_s"], 2))


def phase_hrnet_fold(config, summary, work, deadline, end, record) -> None:
    need_packages()
    fewest, most = config.fold_epochs
    per_epoch = epoch_seconds(config.fold_backbone, config, summary)
    overhead = run_overhead(config, summary)
    left = deadline - time.time()
    epochs = int(max(fewest, min(most, (left - overhead) // (1.2 * per_epoch))))
    record.update(estimated_epoch_s=round(per_epoch, 2), estimated_overhead_s=round(overhead, 1))
    figures = train_fold(config, work, "hrnet_fold", config.fold_backbone, epochs, [],
                         end - time.time())
    train, evals = figures["epoch_train_s"], figures["epoch_eval_s"]
    steady = [t + e for t, e in zip(train, evals)][1:] or [train[0] + evals[0]]
    epoch = sum(steady) / len(steady)
    first = train[0] + evals[0]
    record.update(**figures, steady_epoch_s=round(epoch, 2), first_epoch_s=round(first, 2),
                  fit_20_epochs_s=round(first + 19 * epoch, 1),
                  wall_20_epochs_s=round(figures["overhead_s"] + first + 19 * epoch, 1))
