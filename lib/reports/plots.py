"""Figures the notebooks show. Each function draws one figure and returns it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.ticker import MaxNLocator

from lib.core.schema import LABELS, SHORT
from lib.data.images import NORMS, TRANSFORMS, model_input


def label_prevalence(labels: pd.DataFrame, metadata: pd.DataFrame) -> plt.Figure:
    """Bar chart: share of positives per label, per split and derivatized state.

    labels: index sample_id, 9 label columns; metadata: Competition.metadata.
    """
    meta = metadata.set_index("sample_id").loc[labels.index]
    groups = {f"{split}, {'derivatized' if d else 'not derivatized'}": (meta["split"] == split)
              & (meta["derivatized"] == d)
              for split in ("train", "val") for d in (0, 1)}
    fig, ax = plt.subplots(figsize=(11, 4))
    width = 0.8 / len(groups)
    x = np.arange(len(LABELS))
    for i, (name, mask) in enumerate(groups.items()):
        rates = labels[mask.to_numpy()].mean()
        ax.bar(x + i * width, rates, width, label=f"{name} (n={int(mask.sum())})")
    ax.set_xticks(x + 0.4 - width / 2, [SHORT[c] for c in LABELS], rotation=20)
    ax.set_ylabel("fraction positive")
    ax.set_title("Label prevalence by split and derivatization")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def label_cooccurrence(labels: pd.DataFrame) -> plt.Figure:
    """Heat map of P(column label | row label), diagonal = number of positives."""
    values = labels[list(LABELS)].to_numpy()
    counts = values.T @ values
    conditional = counts / np.maximum(np.diag(counts)[:, None], 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    shown = ax.imshow(conditional, cmap="viridis", vmin=0, vmax=1)
    names = [SHORT[c] for c in LABELS]
    ax.set_xticks(range(len(LABELS)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(LABELS)), names)
    for i in range(len(LABELS)):
        for j in range(len(LABELS)):
            text = str(counts[i, i]) if i == j else f"{conditional[i, j]:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if conditional[i, j] < 0.6 else "black")
    ax.set_title("P(column | row); diagonal: positives")
    fig.colorbar(shown, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def run_lengths(summary: pd.DataFrame) -> plt.Figure:
    """Start and end time of runs. summary: columns start_min, end_min, group (str)."""
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, (group, rows) in enumerate(summary.groupby("group")):
        y = i + np.linspace(-0.3, 0.3, len(rows))
        ax.hlines(y, rows["start_min"], rows["end_min"], lw=1, alpha=0.6)
        ax.text(-0.5, i, group, ha="right", va="center", fontsize=8)
    ax.set_yticks([])
    ax.set_xlabel("time (min)")
    ax.set_title("Time span of each run")
    fig.tight_layout()
    return fig


def chromatograms(frame: pd.DataFrame, ions: list[int], title: str) -> plt.Figure:
    """Total-ion chromatogram (without helium) above selected-ion traces of one run.

    frame: a sample's rows (time, mass, intensity); ions: integer m/z to trace.
    """
    mass = np.round(frame["mass"]).astype(int)
    kept = frame[mass != 4]
    tic = kept.groupby("time")["intensity"].sum()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    top.plot(tic.index, tic.to_numpy(), lw=0.8, color="k")
    top.set_ylabel("total ion count")
    top.set_title(title)
    for ion in ions:
        trace = frame[mass == ion]
        bottom.plot(trace["time"], trace["intensity"], lw=0.8, label=f"m/z {ion}")
    bottom.set_yscale("log")
    bottom.set_ylabel("intensity")
    bottom.set_xlabel("time (min)")
    bottom.legend(fontsize=7, ncol=min(len(ions), 6))
    fig.tight_layout()
    return fig


def image_grid(images: list[np.ndarray], titles: list[str], *, ncols: int = 4,
               log: bool = True) -> plt.Figure:
    """Show (m, t) images, mass upwards. log: colour on a log scale (raw images span decades)."""
    nrows = int(np.ceil(len(images) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.0 * nrows), squeeze=False)
    for ax, image, title in zip(axes.flat, images, titles):
        norm = LogNorm(vmin=1e-4, vmax=1, clip=True) if log else None
        ax.imshow(np.clip(image, 1e-4, None) if log else image, origin="lower", aspect="auto",
                  cmap="magma", norm=norm, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("time bin", fontsize=7)
        ax.set_ylabel("m/z", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(images):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def model_input_variants(image: np.ndarray, title: str) -> plt.Figure:
    """One (2, m, t) image under every norm x transform, as the model sees it."""
    channel = int(image[1].any())
    variants, titles = [], []
    for transform in TRANSFORMS:
        for norm in NORMS:
            variants.append(model_input(image, norm=norm, transform=transform)[channel])
            titles.append(f"norm={norm}, {transform}")
    fig = image_grid(variants, titles, ncols=3, log=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def learning_curves(history: pd.DataFrame, best_epoch: int) -> plt.Figure:
    """Train and OOF loss per epoch (left) and the learning rate (right).

    history: one row per epoch with columns epoch, train_loss, oof_loss, lr.
    """
    fig, (losses, rates) = plt.subplots(1, 2, figsize=(11, 3.5))
    losses.plot(history["epoch"], history["train_loss"], "o-", label="train (smoothed targets)")
    losses.plot(history["epoch"], history["oof_loss"], "o-", label="OOF (TTA)")
    losses.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best epoch {best_epoch}")
    losses.set_xlabel("epoch")
    losses.set_ylabel("BCE")
    losses.legend()
    rates.plot(history["epoch"], history["lr"], "o-")
    rates.set_xlabel("epoch")
    rates.set_ylabel("learning rate at epoch start")
    fig.tight_layout()
    return fig


def selection_traces(grow: list[tuple[int, float]], remove: list[tuple[int, float]]
                     ) -> plt.Figure:
    """Selection score against the number of runs for grow-by-one and remove-by-one.

    grow, remove: (number of runs, score) per step, as the ensemble functions trace them.
    """
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for name, trace, style in (("grow-by-one", grow, "o-"), ("remove-by-one", remove, "s-")):
        if trace:
            sizes, scores = zip(*trace)
            ax.plot(sizes, scores, style, label=name)
            best = int(np.argmin(scores))
            ax.plot(sizes[best], scores[best], "k*", ms=12)
    ax.set_xlabel("runs in the ensemble")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("selection score (OOF loss)")
    ax.legend()
    ax.set_title("Greedy selection (star: best set)")
    fig.tight_layout()
    return fig
