"""The 3rd place's dense network (Mars Spectrometry 2) as a baseline on its own features
(lib.data.third_place): fitted on the same folds as every model of the ensemble.

The network, from its public recipe: three hidden layers of 400, 300 and 200 units with batch
normalisation, nine sigmoid outputs, binary cross-entropy; SGD with momentum 0.9, learning rate
0.01 annealed on a cosine per epoch (epoch e trains at 0.01 (1 + cos(pi e / 80)) / 2), batches
of 32, 80 epochs, three seeds whose probabilities are averaged. Each hidden layer here is
Linear -> ReLU -> BatchNorm1d (Keras' momentum 0.99 and epsilon 1e-3). The recipe kept, per
fold, the epoch with the lowest loss on the held-out fold; that choice reads the scored labels,
so here every network keeps its last epoch.

Shapes: features (n, F) float32, labels (n, 9) 0/1, folds (n,) fold index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from lib.core.schema import N_LABELS
from lib.models.mlp import torch_threads


@dataclass(frozen=True)
class DenseBaseline:
    """The recipe's settings (see the module docstring); ``threads``: torch threads (0: as
    they are)."""

    hidden: tuple[int, ...] = (400, 300, 200)
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int = 32
    epochs: int = 80
    seeds: tuple[int, ...] = (42, 2022, 22)
    threads: int = 0


def build_dense(width: int, hidden: tuple[int, ...]) -> torch.nn.Sequential:
    """(n, width) -> (n, 9) logits: per hidden size Linear -> ReLU -> BatchNorm1d."""
    layers, previous = [], width
    for size in hidden:
        layers += [torch.nn.Linear(previous, size), torch.nn.ReLU(),
                   torch.nn.BatchNorm1d(size, eps=1e-3, momentum=0.01)]
        previous = size
    return torch.nn.Sequential(*layers, torch.nn.Linear(previous, N_LABELS))


def fit_predict_dense(features: np.ndarray, labels: np.ndarray, new_features: np.ndarray,
                      settings: DenseBaseline = DenseBaseline()) -> np.ndarray:
    """One network per seed of ``settings`` fitted on (features, labels); the mean of their
    probabilities for new_features (m, F) -> (m, 9) float64. Deterministic for given settings
    (and a number of threads)."""
    x = torch.as_tensor(np.asarray(features, dtype=np.float32))
    y = torch.as_tensor(np.asarray(labels, dtype=np.float32))
    new = torch.as_tensor(np.asarray(new_features, dtype=np.float32))
    probabilities = np.zeros((len(new), N_LABELS))
    with torch_threads(settings.threads), torch.random.fork_rng(devices=[]):
        for seed in settings.seeds:
            net = _train(x, y, settings, seed)
            net.eval()
            with torch.no_grad():
                probabilities += torch.sigmoid(net(new)).double().numpy()
    return probabilities / len(settings.seeds)


def _train(x: torch.Tensor, y: torch.Tensor, settings: DenseBaseline,
           seed: int) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    net = build_dense(x.shape[1], settings.hidden)
    optimizer = torch.optim.SGD(net.parameters(), lr=settings.lr, momentum=settings.momentum)
    order = torch.Generator().manual_seed(seed)
    net.train()
    for epoch in range(settings.epochs):
        for group in optimizer.param_groups:
            group["lr"] = settings.lr / 2 * (1 + math.cos(math.pi * epoch / settings.epochs))
        for batch in torch.randperm(len(x), generator=order).split(settings.batch_size):
            if len(batch) < 2:  # batch normalisation needs two samples to train on
                continue
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[batch]),
                                                                        y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net


def dense_baseline_oof(features: np.ndarray, labels: np.ndarray, folds: np.ndarray,
                       extra_features: np.ndarray | None = None,
                       extra_labels: np.ndarray | None = None,
                       settings: DenseBaseline = DenseBaseline()) -> np.ndarray:
    """Out-of-fold probabilities (n, 9): for each fold, fit_predict_dense on the other folds
    plus ``extra_features`` (m, F) / ``extra_labels`` (m, 9), samples that train in every
    fold (the val split, as in every run of the ensemble)."""
    labels, folds = np.asarray(labels, dtype=float), np.asarray(folds)
    features = np.asarray(features, dtype=np.float32)
    if extra_features is None:
        extra_features = np.zeros((0, features.shape[1]), dtype=np.float32)
        extra_labels = np.zeros((0, labels.shape[1]))
    oof = np.zeros(labels.shape)
    for k in np.unique(folds):
        train, held = folds != k, folds == k
        oof[held] = fit_predict_dense(np.concatenate([features[train], extra_features]),
                                      np.concatenate([labels[train], extra_labels]),
                                      features[held], settings)
    return oof
