"""Training pieces: schedule, smoothing, mixup, the torch twins of the image steps, and fits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lib.data import images as np_images
from lib.models.cnn import build_model
from lib.train.augment import epoch_draws, mixup, smooth_labels, time_warp, warp_exponents
from lib.train.device import (
    DeviceImages,
    configure_backends,
    intensity_transform,
    normalize_axis,
    precision,
    predict_logits,
    prepare_model,
    two_channel,
)
from lib.train.fit import NonFiniteLossError, fit, lr_factor, make_optimizer, train_one_epoch
from lib.train.settings import TrainSettings

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


def test_time_warp_with_exponent_one_is_the_identity():
    x = torch.rand(3, 2, 5, 17)
    assert torch.equal(time_warp(x, torch.ones(3)), x)


def test_time_warp_moves_peaks_along_time_only_and_keeps_their_order():
    x = torch.zeros(2, 2, 6, 40)
    x[:, 0, 1, 10] = 1.0  # an early peak on mass 1
    x[:, 0, 4, 25] = 0.5  # a later one on mass 4
    x[:, 1, 2, 18] = 0.8  # the other channel
    warped = time_warp(x, torch.tensor([0.7, 1.4]))
    assert warped.shape == x.shape
    empty = torch.ones(2, 6, dtype=torch.bool)  # (channel, mass) rows without a peak
    empty[0, 1] = empty[0, 4] = empty[1, 2] = False
    assert warped.amax(dim=-1)[empty.expand(2, 2, 6)].abs().max() == 0  # no row gains signal
    torch.testing.assert_close(warped.sum(dim=-1)[~empty.expand(2, 2, 6)] > 0,
                               torch.ones(6, dtype=torch.bool))
    peaks = warped.argmax(dim=-1)  # (B, C, m)
    assert (peaks[:, 0, 1] < peaks[:, 1, 2]).all() and (peaks[:, 1, 2] < peaks[:, 0, 4]).all()
    # a < 1 moves things later (t**0.7 > t), a > 1 earlier; the ends stay
    assert peaks[0, 0, 1] > 10 and peaks[1, 0, 1] < 10
    ends = torch.zeros(1, 1, 1, 40)
    ends[..., 0], ends[..., -1] = 1.0, 2.0
    warped_ends = time_warp(ends, torch.tensor([1.7]))[0, 0, 0]
    assert warped_ends[0] == 1.0 and warped_ends[-1] == 2.0


def test_time_warp_is_deterministic_for_a_seed_and_bounded():
    def draw(seed):
        return warp_exponents(1000, 0.2, torch.Generator().manual_seed(seed))

    first, again, other = draw(0), draw(0), draw(1)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.log().abs().max() <= 0.2 + 1e-6 and first.log().abs().max() > 0.19
    assert (first.log() < 0).any() and (first.log() > 0).any()


@pytest.mark.parametrize("mixup_prob", [0.0, 0.5])
def test_time_warp_off_draws_nothing_extra_and_on_draws_one_per_item(mixup_prob):
    """time_warp 0 leaves the generator where the reference's draws leave it (the permutation,
    and mixup's three draws per step), so runs made before the option are reproduced; on, it
    draws one exponent per item of every step after them."""
    n, steps, batch = 40, 5, 8

    def state_after(time_warp):
        generator = torch.Generator().manual_seed(3)
        epoch_draws(n, steps, TrainSettings(mixup_prob=mixup_prob, time_warp=time_warp,
                                            batch_size=batch), generator)
        return generator.get_state()

    reference = torch.Generator().manual_seed(3)
    torch.randperm(n, generator=reference)
    for _ in range(steps if mixup_prob else 0):
        torch.randint(n, (batch,), generator=reference)
        torch.rand(batch, generator=reference)
        torch.rand(batch, generator=reference)
    assert torch.equal(state_after(0.0), reference.get_state())
    for _ in range(steps):
        torch.rand(batch, generator=reference)
    if mixup_prob == 0:  # the warps come after everything else of the step
        assert torch.equal(state_after(0.2), reference.get_state())
    assert not torch.equal(state_after(0.2), state_after(0.0))


@pytest.mark.slow
def test_fit_with_time_warp_on_changes_training():
    off, on = run_fit(seed=2, epochs=1), run_fit(seed=2, epochs=1, time_warp=0.2)
    assert not np.array_equal(off.oof_logits, on.oof_logits)
    assert np.isfinite(on.oof_logits).all()


def toy_problem(n: int = 40, seed: int = 0, device: str = "cpu"):
    """Images where label 0 is a bright mass row: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    images = rng.random((n, 64, 96)).astype(np.float32) * 0.01
    labels = (rng.random((n, 9)) < 0.3).astype(np.float32)
    images[labels[:, 0] == 1, 20, :] = 1.0
    images /= images.max(axis=(1, 2), keepdims=True)
    return DeviceImages(images, rng.integers(0, 2, n), torch.device(device)), labels


def run_fit(seed: int = 0, epochs: int = 3, mixup_prob: float = 0.5, model=None,
            time_warp: float = 0.0, select_epoch: str = "best"):
    data, labels = toy_problem()
    torch.manual_seed(seed)
    model = model or build_model(TINY, "cls3", m_bins=64)
    settings = TrainSettings(norm="time", transform="log1p", mixup_prob=mixup_prob,
                             time_warp=time_warp, epochs=epochs, warmup_epochs=1, lr=1e-3,
                             batch_size=8, eval_batch_size=16, select_epoch=select_epoch)
    return fit(model, data, train_index=np.arange(30), train_labels=labels[:30],
               oof_index=np.arange(30, 40), oof_labels=labels[30:40],
               test_index=np.arange(35, 40), settings=settings, seed=seed, progress=False)


@pytest.mark.slow
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
    # the last epoch's OOF is recorded too; the best state is the one kept
    assert result.last_oof_loss == losses[-1] and result.last_oof_logits.shape == (10, 9)
    assert result.kept_epoch == result.best_epoch and result.state is result.best_state


@pytest.mark.slow
def test_select_epoch_last_keeps_the_final_state():
    result = run_fit(epochs=4, select_epoch="last")
    losses = [h["oof_loss"] for h in result.history]
    assert result.kept_epoch == 4 and result.last_oof_loss == losses[-1]
    assert result.best_oof_loss == min(losses)
    # test logits come from the last state: the last 5 OOF samples are the test samples
    np.testing.assert_allclose(result.test_logits, result.last_oof_logits[5:], atol=1e-5)
    model = build_model(TINY, "cls3", m_bins=64)
    model.load_state_dict(result.state)  # the kept weights, complete


def test_select_epoch_must_be_best_or_last():
    with pytest.raises(ValueError, match="select_epoch must be one of .*'first'"):
        TrainSettings(select_epoch="first")


@pytest.mark.slow
def test_same_seed_same_predictions_other_seed_differs():
    first, second, other = run_fit(seed=3), run_fit(seed=3), run_fit(seed=4)
    np.testing.assert_array_equal(first.oof_logits, second.oof_logits)
    np.testing.assert_array_equal(first.test_logits, second.test_logits)
    assert not np.array_equal(first.oof_logits, other.oof_logits)


@pytest.mark.slow
def test_nan_loss_stops_the_run():
    torch.manual_seed(0)
    model = build_model(TINY, "cls3", m_bins=64)
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="epoch 1: training loss is nan"):
        run_fit(model=model)


@pytest.mark.slow
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
    with pytest.raises(ValueError, match="time_warp"):
        TrainSettings(time_warp=-0.1)
    # used to fail only mid-run (batch_size 0) or to train backwards (lr < 0)
    for key, value, message in [("batch_size", 0, "a whole number of at least 1, got 0"),
                                ("lr", -0.01, "a finite number above 0, got -0.01"),
                                ("lr", float("inf"), "a finite number above 0, got inf"),
                                ("lr", "abc", "a finite number above 0, got 'abc'"),
                                ("epochs", 0, "a whole number of at least 1, got 0"),
                                ("eval_batch_size", 2.5, "a whole number of at least 1")]:
        with pytest.raises(ValueError, match=rf"^{key} must be {message}"):
            TrainSettings(**{key: value})


@pytest.mark.parametrize("mixup_prob, warp", [(0.5, 0.2), (0.5, 0.0), (0.0, 0.2), (0.0, 0.0)])
def test_epoch_draws_are_the_step_by_step_draws_of_the_reference_order(mixup_prob, warp):
    """All of an epoch's draws made up front equal the draws made step by step in the old
    order (permutation; per step partners, mixed, fractions, then warps), and leave the
    generator where the old order left it (the next epoch draws the same too)."""
    n_train, batch_size = 30, 8
    settings = TrainSettings(mixup_prob=mixup_prob, time_warp=warp, batch_size=batch_size)
    upfront = torch.Generator().manual_seed(7)
    draws = [epoch_draws(n_train, 3, settings, upfront) for _ in range(2)]
    stepwise = torch.Generator().manual_seed(7)
    for epoch in draws:
        order = torch.randperm(n_train, generator=stepwise)
        for step in range(3):
            batch = order[step * batch_size:(step + 1) * batch_size]
            assert torch.equal(epoch.batches[step], batch)
            if mixup_prob > 0:
                assert torch.equal(epoch.partners[step],
                                   torch.randint(n_train, (batch_size,), generator=stepwise))
                assert torch.equal(epoch.mixed[step],
                                   torch.rand(batch_size, generator=stepwise) < mixup_prob)
                assert torch.equal(epoch.fractions[step],
                                   0.4 + 0.2 * torch.rand(batch_size, generator=stepwise))
            if warp > 0:
                assert torch.equal(epoch.warps[step],
                                   warp_exponents(batch_size, warp, stepwise))
        assert (epoch.partners is None) == (mixup_prob == 0)
        assert (epoch.warps is None) == (warp == 0)
    assert torch.equal(torch.rand(4, generator=upfront), torch.rand(4, generator=stepwise))
    assert epoch.batches.shape == (3, batch_size) and epoch.batches.dtype == torch.int64
    moved = epoch.to(torch.device("cpu"))
    assert torch.equal(moved.batches, epoch.batches)


@pytest.mark.parametrize("capability, amp, tf32, expected", [
    ((9, 0), True, False, "bf16"),
    ((9, 0), True, True, "bf16"),
    ((9, 0), False, False, "fp32"),
    ((9, 0), False, True, "tf32"),
    ((8, 0), True, False, "bf16"),
    ((8, 0), False, True, "tf32"),
    ((8, 0), False, False, "fp32"),
    ((7, 0), False, True, "fp32"),  # no TF32 before Ampere
    ((7, 0), False, False, "fp32"),
])
def test_precision_follows_settings_and_gpu(capability, amp, tf32, expected):
    settings = TrainSettings(amp=amp, tf32=tf32)
    assert precision(torch.device("cuda"), settings, capability) == expected
    assert precision(torch.device("cpu"), settings) == "fp32"


def test_amp_on_a_gpu_without_bf16_computes_in_fp32_and_warns():
    with pytest.warns(UserWarning, match="compute capability 8.0 or newer; this one has 7.0"):
        assert precision(torch.device("cuda:0"), TrainSettings(amp=True, tf32=True),
                         (7, 0)) == "fp32"


@pytest.fixture
def restore_backends():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.benchmark)
    yield
    (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
     torch.backends.cudnn.benchmark) = saved


def _tf32_flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@pytest.mark.usefixtures("restore_backends")
def test_configure_backends_makes_fp32_true_fp32_unless_tf32_is_asked():
    torch.backends.cudnn.benchmark = False
    configure_backends(torch.device("cpu"), TrainSettings(tf32=True))
    assert torch.backends.cudnn.benchmark is False  # nothing changes off CUDA
    torch.backends.cudnn.allow_tf32 = True  # cuDNN's default
    configure_backends(torch.device("cuda"), TrainSettings(amp=False))
    assert _tf32_flags() == (False, False)
    assert torch.backends.cudnn.benchmark is True
    configure_backends(torch.device("cuda:0"), TrainSettings(amp=False, tf32=True))
    assert _tf32_flags() == (True, True)
    assert torch.get_float32_matmul_precision() == "high"  # what torch makes of it
    configure_backends(torch.device("cuda"), TrainSettings(amp=True))
    assert _tf32_flags() == (False, False)
    assert torch.get_float32_matmul_precision() == "highest"


@pytest.mark.slow
def test_compiled_model_keeps_its_checkpoint_keys_and_eval_forward():
    """compile=True wraps the training forward only (compilation happens at the first
    training call): the state_dict a checkpoint saves and the eval logits are unchanged."""
    torch.manual_seed(0)
    plain = build_model(TINY, "cls3", m_bins=64).eval()
    compiled = build_model(TINY, "cls3", m_bins=64)
    compiled.load_state_dict(plain.state_dict())
    compiled = prepare_model(compiled, torch.device("cpu"), TrainSettings(compile=True)).eval()
    assert list(compiled.state_dict()) == list(plain.state_dict())
    assert "forward_width" in vars(compiled) and "forward_width" not in vars(plain)
    x = torch.rand(2, 2, 64, 96)
    with torch.no_grad():
        assert torch.equal(compiled(x), plain(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cuda_training_epoch_never_waits_on_the_host():
    """torch's sync debug mode turns every host-device synchronisation into an error; the
    first epoch (cuDNN benchmarking, allocator warm-up) runs outside it."""
    device = torch.device("cuda")
    data, labels = toy_problem(device="cuda")
    settings = TrainSettings(mixup_prob=0.5, time_warp=0.2, epochs=2, batch_size=8)
    configure_backends(device, settings)
    model = prepare_model(build_model(TINY, "cls3", m_bins=64), device, settings)
    optimizer, scheduler = make_optimizer(model, settings, 3, device)
    train_index = torch.arange(30, device=device)
    train_labels = torch.as_tensor(labels[:30], device=device)
    generator = torch.Generator().manual_seed(0)
    for debug_mode in ("default", "error"):
        draws = epoch_draws(30, 3, settings, generator).to(device)
        torch.cuda.set_sync_debug_mode(debug_mode)
        try:
            loss_sum = train_one_epoch(model, data, optimizer, scheduler, draws, train_index,
                                       train_labels, settings)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert loss_sum.shape == () and loss_sum.device.type == "cuda"
    assert math.isfinite(float(loss_sum))
