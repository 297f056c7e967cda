"""Figures of notebook 06 (explanations). Each function draws one figure and returns it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from lib.core.schema import CHARACTERISTIC_IONS, LABELS, SHORT


def _label_axes(labels: list[str], width: float = 12.0, height: float = 3.0):
    ncols = min(3, len(labels))
    nrows = int(np.ceil(len(labels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height * nrows), squeeze=False)
    for ax in axes.flat[len(labels):]:
        ax.axis("off")
    return fig, axes.flat


def label_maps(maps: dict[str, np.ndarray], counts: dict[str, int], title: str) -> plt.Figure:
    """One panel per label: a mean attribution map (m, t) on the mass x time grid, with the
    label's textbook ions marked on the right edge. counts: samples averaged per label."""
    labels = [label for label in LABELS if label in maps]
    fig, axes = _label_axes(labels)
    for ax, label in zip(axes, labels):
        image = maps[label]
        ax.imshow(image, origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
        ions = [i for i in CHARACTERISTIC_IONS.get(label, []) if i < image.shape[0]]
        ax.plot(np.full(len(ions), image.shape[1] - 1), ions, "<", color="cyan", ms=5)
        ax.set_title(f"{SHORT[label]} (n={counts.get(label, 0)})", fontsize=10)
        ax.set_xlabel("time bin")
        ax.set_ylabel("m/z")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def top_mz_bars(scores: dict[str, np.ndarray], title: str, k: int = 10,
                xlabel: str = "mean logit drop") -> plt.Figure:
    """One panel per label: horizontal bars of the k m/z rows with the highest score.

    scores: {label: (m,) score per m/z row}."""
    labels = [label for label in LABELS if label in scores]
    fig, axes = _label_axes(labels, height=2.6)
    for ax, label in zip(axes, labels):
        row_scores = np.asarray(scores[label])
        top = np.argsort(-row_scores, kind="stable")[:k][::-1]
        known = set(CHARACTERISTIC_IONS.get(label, []))
        colors = ["tab:orange" if mz in known else "tab:blue" for mz in top]
        ax.barh([str(mz) for mz in top], row_scores[top], color=colors)
        ax.set_title(SHORT[label], fontsize=10)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{title} (orange: the label's textbook ions)")
    fig.tight_layout()
    return fig


def explained_examples(inputs: list[np.ndarray], maps: list[np.ndarray], probs: list[np.ndarray],
                       labels: list[str], titles: list[str]) -> plt.Figure:
    """One row per example: the model input (m, t), the attribution map (m, t) of the label
    explained, and the model's nine probabilities (9,) with that label highlighted."""
    fig, axes = plt.subplots(len(inputs), 3, figsize=(13, 3.2 * len(inputs)), squeeze=False,
                             gridspec_kw=dict(width_ratios=[1, 1, 0.7]))
    for row, (image, cam, prob, label, title) in enumerate(zip(inputs, maps, probs, labels,
                                                               titles)):
        left, middle, right = axes[row]
        left.imshow(image, origin="lower", aspect="auto", cmap="viridis", interpolation="nearest")
        left.set_title(f"{title}: model input", fontsize=9)
        middle.imshow(cam, origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
        middle.set_title(f"map for {SHORT[label]}", fontsize=9)
        for ax in (left, middle):
            ax.set_xlabel("time bin")
            ax.set_ylabel("m/z")
        colors = ["tab:red" if name == label else "tab:gray" for name in LABELS]
        right.barh([SHORT[name] for name in LABELS][::-1], prob[::-1], color=colors[::-1])
        right.set_xlim(0, 1)
        right.set_title("probability", fontsize=9)
        right.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def mz_profiles(profiles: dict[str, np.ndarray], true_ions: dict[str, dict[int, float]],
                counts: dict[str, int], title: str, ylabel: str = "mean logit drop"
                ) -> plt.Figure:
    """One panel per label: the attribution profile over m/z (the mean over the label's
    samples of an (m,) attribution, e.g. the ensemble's occlusion drops), with the label's
    true ions marked: orange triangles at the top, their size the share of samples in which
    the ion is a true ion of the label (true_ions: {label: {mz: share in (0, 1]}}); without
    truth, the textbook ions (grey). counts: samples averaged per label."""
    labels = [label for label in LABELS if label in profiles]
    fig, axes = _label_axes(labels, height=2.6)
    for ax, label in zip(axes, labels):
        profile = np.asarray(profiles[label], dtype=float)
        ax.bar(np.arange(profile.size), profile, width=1.0, color="tab:blue")
        top = profile.max() if profile.max() > 0 else 1.0
        ions = true_ions.get(label)
        if ions:
            mz = np.array([m for m in ions if m < profile.size])
            sizes = 10 + 50 * np.array([ions[m] for m in mz])
            ax.scatter(mz, np.full(mz.size, top * 1.08), marker="v", s=sizes, color="tab:orange",
                       label="true ions")
        else:
            mz = [m for m in CHARACTERISTIC_IONS.get(label, []) if m < profile.size]
            ax.scatter(mz, np.full(len(mz), top * 1.08), marker="v", color="tab:gray",
                       label="textbook ions")
        ax.set_ylim(min(profile.min(), 0) * 1.1, top * 1.2)
        ax.set_title(f"{SHORT[label]} (n={counts.get(label, 0)})", fontsize=10)
        ax.set_xlabel("m/z", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{title} (triangles: the label's true ions)" if true_ions else
                 f"{title} (triangles: the label's textbook ions)")
    fig.tight_layout()
    return fig
