"""The feature MLP's torch networks: shapes, building, seeding and fitting one network."""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch

from lib.core.metrics import NonFiniteLossError
from lib.core.schema import N_LABELS
from lib.models.feature_settings import FeatureSettings


def mlp_shapes(width: int, hidden: list[int], norm: str = "layer"
               ) -> dict[str, tuple[int, ...]]:
    """{parameter name: shape} of build_mlp(width, hidden, norm=norm) as saved (state_dict
    less batch norm's num_batches_tracked): per hidden layer k a Linear (``{4k}.weight``
    (h, previous), ``{4k}.bias``) and a LayerNorm (``{4k+1}.weight``, ``{4k+1}.bias``, (h,))
    or a BatchNorm1d (``{4k+2}.weight``, ``.bias``, ``.running_mean``, ``.running_var``,
    (h,)), then the output Linear ``{4K}`` to the 9 logits."""
    shapes, previous = {}, width
    for k, size in enumerate(hidden):
        shapes |= {f"{4 * k}.weight": (size, previous), f"{4 * k}.bias": (size,)}
        if norm == "batch":
            shapes |= {f"{4 * k + 2}.{name}": (size,)
                       for name in ("weight", "bias", "running_mean", "running_var")}
        else:
            shapes |= {f"{4 * k + 1}.weight": (size,), f"{4 * k + 1}.bias": (size,)}
        previous = size
    return shapes | {f"{4 * len(hidden)}.weight": (N_LABELS, previous),
                     f"{4 * len(hidden)}.bias": (N_LABELS,)}


def build_mlp(width: int, hidden: list[int], activation: str = "gelu",
              dropout: float = 0.0, norm: str = "layer") -> torch.nn.Sequential:
    """(n, width) features -> (n, 9) logits: per hidden width h, Linear -> LayerNorm ->
    activation (gelu or relu) -> Dropout, or with norm "batch" Linear -> activation ->
    BatchNorm1d (epsilon 1e-3, momentum 0.01: Keras' defaults, as the 3rd place's network)
    -> Dropout; then a Linear to the 9 logits."""
    layers, previous = [], width
    for size in hidden:
        act = torch.nn.GELU() if activation == "gelu" else torch.nn.ReLU()
        if norm == "batch":
            layers += [torch.nn.Linear(previous, size), act,
                       torch.nn.BatchNorm1d(size, eps=1e-3, momentum=0.01)]
        else:
            layers += [torch.nn.Linear(previous, size), torch.nn.LayerNorm(size), act]
        layers.append(torch.nn.Dropout(dropout))
        previous = size
    return torch.nn.Sequential(*layers, torch.nn.Linear(previous, N_LABELS))


@contextmanager
def torch_threads(threads: int):
    """torch's intra-op threads set to ``threads`` inside the block (0: left as they are)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def network_seed(seed: int, k: int) -> int:
    """The seed of the k-th network of a run of ``seed``: distinct across (seed, k) pairs, so
    runs of neighbouring seeds share no network."""
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


def train_mlp(inputs: torch.Tensor, labels: torch.Tensor, settings: FeatureSettings, *,
              seed: int) -> dict[str, np.ndarray]:
    """One network fitted on inputs (n, F) float32 and labels (n, 9) float32: BCE on the
    logits, AdamW or SGD (momentum 0.9), ``mlp_epochs`` epochs of shuffled batches with the
    learning rate decaying to 0 on a cosine (with batch norm, a last batch of one sample is
    skipped: it cannot be normalised). Deterministic for a seed (and a number of threads).
    Returns its state dict as float32 arrays; NonFiniteLossError when an epoch's loss is
    NaN or inf (a diverged network)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # initial weights and dropout masks
        net = build_mlp(inputs.shape[1], settings.hidden, settings.activation, settings.dropout,
                        settings.norm)
        if settings.optimizer == "sgd":
            optimizer = torch.optim.SGD(net.parameters(), lr=settings.mlp_lr, momentum=0.9,
                                        weight_decay=settings.mlp_weight_decay)
        else:
            optimizer = torch.optim.AdamW(net.parameters(), lr=settings.mlp_lr,
                                          weight_decay=settings.mlp_weight_decay)
        batches = math.ceil(len(inputs) / settings.mlp_batch_size)
        total = settings.mlp_epochs * batches
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
        order = torch.Generator().manual_seed(seed)
        net.train()
        for epoch in range(settings.mlp_epochs):
            total_loss = torch.zeros(())
            for batch in torch.randperm(len(inputs), generator=order).split(
                    settings.mlp_batch_size):
                if settings.norm == "batch" and len(batch) < 2:
                    continue
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    net(inputs[batch]), labels[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total_loss += loss.detach()
            if not torch.isfinite(total_loss):
                raise NonFiniteLossError(f"network of seed {seed}, epoch {epoch + 1}: training "
                                         f"loss is {float(total_loss) / batches} (mlp_lr "
                                         f"{settings.mlp_lr:g}: the network diverged)")
    return {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def load_network(state: dict[str, np.ndarray], width: int, architecture: dict
                 ) -> torch.nn.Sequential:
    """A network of ``architecture`` ({"hidden", "activation", "norm" (default "layer")})
    for ``width`` inputs with the saved ``state`` (train_mlp's), in eval mode on the CPU."""
    net = build_mlp(width, architecture["hidden"], architecture["activation"],
                    norm=architecture.get("norm", "layer"))
    full = net.state_dict()  # batch norm's num_batches_tracked is not saved
    full.update({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()})
    net.load_state_dict(full)
    return net.eval()
