"""Models: positional channels, widths and TTA, heads, offline weights."""

from __future__ import annotations

import pytest
import torch

from lib.models.cnn import (
    WeightsNotFoundError,
    add_positional_channels,
    build_model,
    count_parameters,
    find_weights,
    resize_time,
    tta_widths,
)

TINY = "test_efficientnet"


def test_tta_widths():
    assert tta_widths(192) == [128, 160, 192, 224, 256]
    assert tta_widths(96, (-32, 0, 32)) == [64, 96, 128]
    with pytest.raises(ValueError, match="too small"):
        tta_widths(48)


def test_positional_channels():
    x = torch.zeros(2, 2, 4, 5)
    out = add_positional_channels(x)
    assert out.shape == (2, 4, 4, 5)
    torch.testing.assert_close(out[1, 2, 3], torch.arange(5) / 5)  # time index / t
    torch.testing.assert_close(out[0, 3, :, 2], torch.arange(4) / 4)  # mass index / m


def test_resize_time_keeps_mass_axis():
    x = torch.rand(1, 2, 8, 6)
    assert resize_time(x, 6) is x
    out = resize_time(x, 12)
    assert out.shape == (1, 2, 8, 12)
    # upsampling by 2 (align_corners=False) keeps the row means
    torch.testing.assert_close(out.mean(-1), x.mean(-1), atol=1e-6, rtol=0)


def test_eval_forward_is_the_mean_of_the_five_widths():
    torch.manual_seed(0)
    model = build_model(TINY, "cls3", m_bins=64).eval()
    x = torch.rand(3, 2, 64, 96)
    with torch.no_grad():
        per_width = [model.forward_width(x, w) for w in tta_widths(96)]
        out = model(x)
    assert out.shape == (3, 9)
    torch.testing.assert_close(out, torch.stack(per_width).mean(0))
    assert {w for w in tta_widths(96)} == {32, 64, 96, 128, 160}


def test_training_forward_draws_one_width_per_call(monkeypatch):
    model = build_model(TINY, "cls3", m_bins=64).train()
    seen = []
    original = model.forward_width
    monkeypatch.setattr(model, "forward_width", lambda x, w: seen.append(w) or original(x, w))
    torch.manual_seed(1)
    for _ in range(12):
        model(torch.rand(2, 2, 64, 96))
    assert len(seen) == 12 and set(seen) <= set(tta_widths(96)) and len(set(seen)) > 1


@pytest.mark.parametrize("m_bins, rows", [(256, 8), (128, 4), (96, 3)])
def test_flatm_shapes_follow_m_bins(m_bins, rows):
    model = build_model("resnet18", "flatM", m_bins=m_bins).eval()
    assert model.head.fc.in_features == 512 * rows
    with torch.no_grad():
        assert model(torch.rand(2, 2, m_bins, 96)).shape == (2, 9)


def test_cls3_head():
    model = build_model("resnet18", "cls3")
    assert model.head.in_features == 1000 and model.head.out_features == 9
    assert model.input_conv.in_channels == 4 and model.input_conv.kernel_size == (1, 1)


@pytest.mark.parametrize("backbone, head, expected", [
    ("resnet34", "cls3", 21_806_696),
    ("resnet34", "flatM", 21_321_560),
    ("hrnet_w32", "flatM", 30_955_608),
    ("regnetx_320", "flatM", 105_472_024),
])
def test_parameter_counts_of_reference_models(backbone, head, expected):
    with torch.device("meta"):
        assert count_parameters(build_model(backbone, head)) == expected


def test_unknown_head():
    with pytest.raises(ValueError, match="head must be one of"):
        build_model(TINY, "cls4")


def test_pretrained_from_local_file_and_folder(tmp_path):
    torch.manual_seed(0)
    source = build_model("resnet18", "cls3").backbone
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    for weights in (tmp_path / "resnet18.pth", tmp_path):
        model = build_model("resnet18", "cls3", pretrained=True, weights=weights)
        torch.testing.assert_close(model.backbone.conv1.weight, source.conv1.weight)


def test_pretrained_from_prefilled_hugging_face_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--timm--resnet18.a1_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    torch.manual_seed(0)
    source = build_model("resnet18", "cls3").backbone
    torch.save(source.state_dict(), repo / "snapshots" / "abc123" / "pytorch_model.bin")
    model = build_model("resnet18.a1_in1k", "cls3", pretrained=True)
    torch.testing.assert_close(model.backbone.fc.weight, source.fc.weight)


def test_pretrained_missing_says_where_to_put_the_file(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(WeightsNotFoundError, match=r"weights/resnet18.bt_in1k.safetensors"):
        find_weights("resnet18.bt_in1k", tmp_path)


def test_pretrained_offline_without_file_or_cache_names_the_model(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # and never try the network
    with pytest.raises(WeightsNotFoundError, match=r"'resnet18.a1_in1k'.*"
                       r"weights/resnet18.a1_in1k.safetensors"):
        build_model("resnet18.a1_in1k", "cls3", pretrained=True, weights=tmp_path)


def test_head_runs_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    for head in ("cls3", "flatM"):
        model = build_model(TINY, head, m_bins=64).eval()
        captured = {}

        def keep(_module, args, out, captured=captured):
            captured.update(x=args[0], y=out)

        model.head.register_forward_hook(keep)
        x = torch.rand(2, 2, 64, 48)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            model.forward_width(x, 48)
        assert captured["y"].dtype == torch.float32
        with torch.no_grad():  # the same head on the same features, outside autocast
            expected = model.head(captured["x"].float())
        torch.testing.assert_close(captured["y"], expected, rtol=0, atol=1e-6)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # what it avoids
            rounded = model.head(captured["x"]).float()
        assert (rounded - expected).abs().max() > 1e-5  # bf16 would be told apart at atol


def test_seq1d_is_a_sequence_model_in_the_same_frame():
    torch.manual_seed(0)
    model = build_model("seq1d_tiny", "cls3", m_bins=32).eval()
    x = torch.rand(3, 2, 32, 96)
    with torch.no_grad():
        logits = model(x)
        widths = [model.forward_width(x, w) for w in tta_widths(96)]
    assert logits.shape == (3, 9)
    torch.testing.assert_close(logits, torch.stack(widths).mean(dim=0))  # TTA over widths
    with pytest.raises(ValueError, match="built for m_bins=32 mass rows, got images of 64"):
        model(torch.rand(1, 2, 64, 96))


def test_seq1d_sizes_and_what_it_refuses():
    with torch.device("meta"):
        assert count_parameters(build_model("seq1d", "cls3")) == 3_492_632
        assert count_parameters(build_model("seq1d_tiny", "cls3")) == 334_872
    with pytest.raises(ValueError, match="takes head cls3"):
        build_model("seq1d", "flatM")
    with pytest.raises(ValueError, match="pretrained false"):
        build_model("seq1d", "cls3", pretrained=True)
