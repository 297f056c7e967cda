"""Training pieces: schedule, smoothing, mixup, the torch twins of the image steps, and fits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lib.images as np_images
from lib.models import build_model
from lib.training import (
    DeviceImages,
    NonFiniteLossError,
    TrainSettings,
    fit,
    intensity_transform,
    lr_factor,
    mixup,
    normalize_axis,
    predict_logits,
    smooth_labels,
    two_channel,
)

TINY = "test_efficientnet"


def test_lr_schedule_values():
    warmup, total = 10, 50
    assert lr_factor(0, warmup, total) == 0.0
    assert lr_factor(5, warmup, total) == 0.5
    assert lr_factor(10, warmup, total) == 1.0
    assert lr_factor(30, warmup, total) == pytest.approx(0.5)  # half-way through the cosine
    assert lr_factor(40, warmup, total) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.75)))
    assert lr_factor(50, warmup, total) == 0.0
    factors = [lr_factor(s, warmup, total) for s in range(total)]
    assert factors[warmup:] == sorted(factors[warmup:], reverse=True)


def test_label_smoothing():
    out = smooth_labels(torch.tensor([0.0, 1.0]), 0.01)
    torch.testing.assert_close(out, torch.tensor([0.01, 1 / 1.02 + 0.01]))


def test_mixup_mixes_only_chosen_items_and_takes_max_labels():
    x, partner = torch.ones(3, 2, 4, 5), torch.zeros(3, 2, 4, 5)
    y = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 0, 0]])
    partner_y = torch.tensor([[0.0, 1, 0], [1, 0, 0], [1, 1, 1]])
    mixed = torch.tensor([True, False, True])
    out_x, out_y = mixup(x, y, partner, partner_y, mixed, torch.tensor([0.4, 0.5, 0.6]))
    torch.testing.assert_close(out_x[:, 0, 0, 0], torch.tensor([0.4, 1.0, 0.6]))
    torch.testing.assert_close(out_y, torch.tensor([[1.0, 1, 0], [0, 0, 1], [1, 1, 1]]))


@pytest.mark.parametrize("norm", ["none", "mass", "time"])
@pytest.mark.parametrize("transform", ["log", "log1p"])
def test_torch_steps_equal_numpy_steps(norm, transform):
    rng = np.random.default_rng(0)
    singles = (rng.random((4, 16, 12)) ** 8).astype(np.float32)
    singles /= singles.max(axis=(1, 2), keepdims=True)
    flags = np.array([0, 1, 1, 0])
    expected = np_images.model_input(np_images.two_channel(singles, flags), norm=norm,
                                     transform=transform)
    data = DeviceImages(singles, flags, torch.device("cpu"))
    got = data.model_input(torch.arange(4), norm, transform)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)
    torch.testing.assert_close(
        intensity_transform(two_channel(normalize_axis(torch.as_tensor(singles), norm),
                                        torch.as_tensor(flags).bool()), transform), got)


def toy_problem(n: int = 40, seed: int = 0):
    """Images where label 0 is a bright mass row: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    images = rng.random((n, 64, 96)).astype(np.float32) * 0.01
    labels = (rng.random((n, 9)) < 0.3).astype(np.float32)
    images[labels[:, 0] == 1, 20, :] = 1.0
    images /= images.max(axis=(1, 2), keepdims=True)
    return DeviceImages(images, rng.integers(0, 2, n), torch.device("cpu")), labels


def run_fit(seed: int = 0, epochs: int = 3, mixup_prob: float = 0.5, model=None):
    data, labels = toy_problem()
    torch.manual_seed(seed)
    model = model or build_model(TINY, "cls3", m_bins=64)
    settings = TrainSettings(norm="time", transform="log1p", mixup_prob=mixup_prob,
                             epochs=epochs, warmup_epochs=1, lr=1e-3, batch_size=8,
                             eval_batch_size=16)
    return fit(model, data, train_index=np.arange(30), train_labels=labels[:30],
               oof_index=np.arange(30, 40), oof_labels=labels[30:40],
               test_index=np.arange(35, 40), settings=settings, seed=seed, progress=False)


def test_fit_picks_the_best_epoch_and_its_predictions():
    result = run_fit(epochs=4)
    losses = [h["oof_loss"] for h in result.history]
    assert len(losses) == 4
    best = len(losses) - 1 - int(np.argmin(losses[::-1]))  # the later epoch on ties
    assert result.best_epoch == best + 1 and result.best_oof_loss == losses[best]
    assert result.oof_logits.shape == (10, 9) and result.test_logits.shape == (5, 9)
    # test logits come from the best state: the last 5 OOF samples are the test samples
    np.testing.assert_allclose(result.test_logits, result.oof_logits[5:], atol=1e-5)
    assert [h["lr"] for h in result.history][0] == 0.0  # warm-up starts at zero


def test_same_seed_same_predictions_other_seed_differs():
    first, second, other = run_fit(seed=3), run_fit(seed=3), run_fit(seed=4)
    np.testing.assert_array_equal(first.oof_logits, second.oof_logits)
    np.testing.assert_array_equal(first.test_logits, second.test_logits)
    assert not np.array_equal(first.oof_logits, other.oof_logits)


def test_nan_loss_stops_the_run():
    torch.manual_seed(0)
    model = build_model(TINY, "cls3", m_bins=64)
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="epoch 1: training loss is nan"):
        run_fit(model=model)


def test_predict_logits_matches_eval_forward():
    data, _ = toy_problem()
    model = build_model(TINY, "cls3", m_bins=64).eval()
    settings = TrainSettings(norm="mass", transform="log", eval_batch_size=7)
    out = predict_logits(model, data, np.arange(10), settings)
    with torch.no_grad():
        expected = model(data.model_input(torch.arange(10), "mass", "log")).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="norm must be one of"):
        TrainSettings(norm="both")
    with pytest.raises(ValueError, match="mixup_prob"):
        TrainSettings(mixup_prob=2)
