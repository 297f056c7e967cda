"""Attribution maps (grad-cam package, occlusion), their scores against the synthetic truth,
and notebook 06 executed through papermill on tiny data."""

from __future__ import annotations

import json
import subprocess
import sys

import nbformat
import numpy as np
import pandas as pd
import papermill as pm
import pytest
import torch
import yaml
from torch import nn

from lib.core.logits import LOGIT_CLIP
from lib.core.paths import REPO_ROOT, dataset_work_dir
from lib.core.schema import HELIUM_MASS, LABELS
from lib.data.dataset import load_competition
from lib.data.features import image_features
from lib.data.folds import load_or_make_folds
from lib.data.images import cache_path, load_image_cache
from lib.ensemble.selection import mean_logits
from lib.explain import cam, explainer, occlusion, scoring
from lib.explain import features as explain_features
from lib.models.cnn import build_model
from lib.models.feature_models import fit_feature_model, parsed_booster, predict_feature_logits
from lib.models.feature_settings import FeatureSettings
from lib.models.model_file import load_feature_model, save_feature_model
from lib.runs.run_folder import mark_done, write_metrics
from lib.synthetic import generate
from lib.train.checkpoint import save_checkpoint
from lib.train.device import DeviceImages
from lib.train.predict import load_run_model

# widths 32, 64, 96: HRNet fuses its branches only at multiples of 32 (the real 192 +- 64 are)
M_BINS, T_BINS, OFFSETS = 64, 64, (-32, 0, 32)

# One backbone per family named in params/, the small member where the named one takes long to
# build (same timm class, same stages): hrnet_w64/w32 -> hrnet_w18_small, dpn98/107 -> dpn68,
# regnetx_320 -> regnetx_002, regnety_040 -> regnety_002; resnet34 and the demo's as named.
BACKBONES = ["hrnet_w18_small", "resnet34", "dpn68", "regnetx_002", "regnety_002",
             "mobilenetv3_small_100"]
FAST = {"mobilenetv3_small_100"}  # the demo's; make test-fast leaves the other builds out


def tiny_model(backbone: str, head: str) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(backbone, head, m_bins=M_BINS)
    model.width_offsets = OFFSETS
    return model.eval()


def tiny_input(batch: int = 2) -> torch.Tensor:
    x = torch.rand(batch, 2, M_BINS, T_BINS, generator=torch.Generator().manual_seed(1))
    x[:, 1] = 0  # not derivatized: the run lives in channel 0
    return x


@pytest.mark.parametrize("head", ["cls3", "flatM"])
@pytest.mark.parametrize("backbone", [
    b if b in FAST else pytest.param(b, marks=pytest.mark.slow) for b in BACKBONES])
def test_cam_maps_for_every_backbone_family(backbone, head):
    model = tiny_model(backbone, head)
    x = tiny_input()
    # the CAM's wrapper computes exactly the model's logits at each width
    for width in (32, 64, 96):
        with torch.no_grad():
            np.testing.assert_allclose(cam._AtWidth(model, width)(x).numpy(),
                                       model.forward_width(x, width).numpy(), atol=1e-5)
    for label in range(len(LABELS)):  # random weights: a label's CAM may be negative everywhere
        maps = cam.cam_maps(model, x, label)
        assert maps.shape == (2, M_BINS, T_BINS) and maps.dtype == np.float32
        assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1 + 1e-6
        if maps.max() > 0:
            break
    assert maps.max() > 0, "no label's map lit up"
    assert all(p.grad is None for p in model.parameters())


def test_hirescam_layercam_and_a_named_target_layer():
    model = tiny_model("resnet34", "cls3")
    x = tiny_input(1)
    hires = cam.cam_maps(model, x, 0, method="hirescam")
    layer = cam.cam_maps(model, x, 0, method="layercam", target_layer="backbone.layer2")
    staged = cam.cam_maps(model, x, 0, target_layer="backbone.layer3")
    for maps in (hires, layer, staged):
        assert maps.shape == (1, M_BINS, T_BINS) and np.isfinite(maps).all() and maps.min() >= 0
    assert not np.allclose(staged, cam.cam_maps(model, x, 0))  # another layer, another map
    with pytest.raises(ValueError, match="method must be one of"):
        cam.cam_maps(model, x, 0, method="saliency")


@pytest.mark.parametrize("backbone", ["seq1d_tiny", "mobilenetv3_small_100"])
def test_cam_at_the_input_is_gradient_times_input(backbone):
    model = tiny_model(backbone, "cls3")
    x = tiny_input()
    x[0, 0, 5:9] = 0  # empty cells get no attribution, whatever their gradient
    expected = []
    for width in (32, 64, 96):  # per width: ReLU(gradient x input) scaled to max 1, then mean
        leaf = x.clone().requires_grad_()
        model.forward_width(leaf, width)[:, 3].sum().backward()
        cell = np.maximum((leaf.grad * leaf.detach()).sum(dim=1).numpy(), 0)
        for _ in range(2):  # the package scales the layer's map, then the layers' mean
            cell = cell / (1e-7 + cell.max(axis=(1, 2), keepdims=True))
        expected.append(cell)
    model.zero_grad(set_to_none=True)
    for method in ("hirescam", "layercam"):  # the same for a non-negative input
        maps = cam.cam_maps(model, x, 3, method=method, target_layer=cam.INPUT_LAYER)
        assert maps.shape == (2, M_BINS, T_BINS) and maps.dtype == np.float32
        np.testing.assert_allclose(maps, np.mean(expected, axis=0), atol=1e-4)
        assert maps[0, 5:9].max() == 0 and maps.max() > 0
    assert all(p.grad is None for p in model.parameters())


def test_target_layer_errors_name_the_backbone_and_the_module():
    model = tiny_model("resnet34", "cls3")
    with pytest.raises(cam.TargetLayerError, match=r"ResNet: no module 'backbone.layer5'.*"
                                                       r"backbone.layer4"):
        cam.find_target_layer(model, "backbone.layer5")
    with pytest.raises(cam.TargetLayerError, match=r"'backbone.fc' gives shape \(1, 1000\)"):
        cam.find_target_layer(model, "backbone.fc")
    assert cam.find_target_layer(model, "backbone.layer4") == "backbone.layer4"


def _row_sum_predictor(weights: np.ndarray):
    """A predictor whose logit j is sum over rows r of weights[r, j] x the row's total."""
    calls = []

    def predict(images):
        calls.append(len(images))
        return np.asarray(images).sum(axis=2) @ weights

    return predict, calls


def test_occlusion_measures_each_rows_share_of_the_logit():
    rng = np.random.default_rng(0)
    image = rng.random((M_BINS, T_BINS)).astype(np.float32)
    image[40] = 0  # an empty row: skipped, drop 0
    weights = rng.normal(size=(M_BINS, len(LABELS)))
    weights[20] = 0  # a row the predictor does not use
    predict, calls = _row_sum_predictor(weights)
    drops = occlusion.occlusion_drops(predict, image, batch_size=16)
    assert drops.shape == (M_BINS, len(LABELS)) and drops.dtype == np.float32
    expected = image.sum(axis=1)[:, None] * weights
    np.testing.assert_allclose(drops, expected, rtol=1e-4, atol=1e-4)
    assert np.abs(drops[[20, 40]]).max() < 1e-4
    assert calls[0] == 1 and max(calls) == 16 and sum(calls) == 1 + M_BINS - 1  # row 40 skipped
    # bands: every row of a band gets the band's drop
    banded = occlusion.occlusion_drops(predict, image, band=8)
    assert (banded[::8] == banded[1::8]).all() and (banded[::8] == banded[7::8]).all()
    np.testing.assert_allclose(banded[0], expected[:8].sum(axis=0), rtol=1e-4, atol=1e-4)
    # two passes: label 0's two best bands of 8 rows row by row, the rest spread over its rows
    refined = occlusion.occlusion_drops(predict, image, coarse=8, refine_labels=[0], keep=2)
    best = np.argsort(-banded[::8, 0])[:2]
    fine = np.isin(np.arange(M_BINS) // 8, best)
    np.testing.assert_allclose(refined[fine], expected[fine], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(refined[~fine], banded[~fine] / 8, rtol=1e-4, atol=1e-4)


def test_cnn_predictor_is_the_model_on_its_model_input():
    model = tiny_model("test_efficientnet", "cls3")
    images = np.random.default_rng(0).random((3, M_BINS, T_BINS)).astype(np.float32)
    config = dict(norm="mass", transform="log")
    logits = occlusion.cnn_predictor(model, config, derivatized=1)(images)
    data = DeviceImages(images, np.ones(3), torch.device("cpu"))
    with torch.no_grad():
        direct = model(data.model_input(torch.arange(3), "mass", "log")).numpy()
    np.testing.assert_allclose(logits, direct, atol=1e-5)
    other = occlusion.cnn_predictor(model, config, derivatized=0)(images)
    assert not np.allclose(other, direct)  # the other channel


def test_ensemble_predictor_averages_clipped_logits():
    def constant(value):
        return lambda images: np.full((len(images), len(LABELS)), value, dtype=float)

    predict = occlusion.ensemble_predictor([constant(1.0), constant(3.0), constant(-50.0)])
    bound = np.log((1 - LOGIT_CLIP) / LOGIT_CLIP)  # the ensemble clips probabilities
    np.testing.assert_allclose(predict(np.zeros((2, 4, 4))), (1 + 3 - bound) / 3)
    probs = 1 / (1 + np.exp(-np.array([1.0, 3.0, -50.0])))
    assert 1 / (1 + np.exp(-predict(np.zeros((1, 4, 4)))[0, 0])) == pytest.approx(
        float(mean_logits(probs[:, None, None])[0, 0]), rel=1e-5)


# ---- feature models on the grid ----------------------------------------------------------------

def _feature_model(learner: str, images: np.ndarray, derivatized: np.ndarray):
    features, names = image_features(images, derivatized, n_bands=4)
    labels = np.zeros((len(images), len(LABELS)))
    labels[::2, 0] = 1  # aromatic: every other sample; its rows 10-11 are bright
    labels[1::3, 3] = 1
    settings = FeatureSettings(learner=learner, n_estimators=20, min_data_in_leaf=2, threads=1)
    config = dict(features="bands", n_bands=4, m_bins=images.shape[1], t_bins=images.shape[2])
    return fit_feature_model(features, labels, settings, seed=0, config=config), features, names


@pytest.fixture(scope="module")
def feature_images():
    rng = np.random.default_rng(0)
    images = (rng.random((24, M_BINS, T_BINS)) * 0.1).astype(np.float32)
    images[::2, 10:12, 20:24] = 1.0
    images[:, 50] = 0  # an empty row
    return images, np.array([0, 1] * 12)


@pytest.mark.parametrize("learner", ["logistic", "lightgbm"])
def test_feature_contributions_sum_to_the_logit(feature_images, learner):
    images, derivatized = feature_images
    model, features, names = _feature_model(learner, images, derivatized)
    contributions = explain_features.feature_contributions(model, features)
    assert contributions.shape == (len(images), len(LABELS), features.shape[1])
    logits = predict_feature_logits(model, features)
    offsets = logits - contributions.sum(axis=2)
    # the offset is the intercept (logistic) or the trees' expected value: one per label
    np.testing.assert_allclose(offsets, offsets[:1].repeat(len(images), axis=0), atol=1e-4)
    assert np.abs(contributions[:, 1]).max() == 0  # a label fitted as a constant
    grid = explain_features.contributions_to_grid(contributions[0], names, images[0], 4)
    assert grid.shape == (len(LABELS), M_BINS, T_BINS)
    # every m/z feature lands on its row; the derivatized flag has none
    np.testing.assert_allclose(grid.sum(axis=(1, 2)), contributions[0, :, :-1].sum(axis=1),
                               atol=1e-3)
    # the label's evidence, rows 10-11, are among the rows its map supports most
    aromatic = explain_features.contributions_to_grid(contributions[0, 0], names, images[0], 4)
    assert {10, 11} <= set(np.argsort(-np.clip(aromatic, 0, None).sum(axis=1))[:5])


def test_lightgbm_boosters_are_parsed_once(feature_images):
    images, derivatized = feature_images
    model, features, _ = _feature_model("lightgbm", images, derivatized)
    first = predict_feature_logits(model, features)
    parsed = parsed_booster.cache_info().currsize
    np.testing.assert_array_equal(predict_feature_logits(model, features[:3]), first[:3])
    explain_features.feature_contributions(model, features[:2])
    assert parsed_booster.cache_info().currsize == parsed  # the same texts: no new parse


def test_contributions_go_to_the_cells_the_features_came_from():
    image = np.zeros((3, 8), dtype=np.float32)
    image[0, [1, 2]] = [0.5, 1.0]  # band 0 (columns 0-3) of row 0
    image[1, 6] = 0.25  # band 1 (columns 4-7) of row 1
    names = [f"m{m}_{stat}" for m in range(3)
             for stat in ["max_b0", "max_b1", "area_b0", "area_b1", "peak_time"]] + ["derivatized"]
    values = np.zeros(len(names))
    values[names.index("m0_max_b0")] = 2.0
    values[names.index("m0_area_b0")] = 3.0
    values[names.index("m1_peak_time")] = 1.0
    values[names.index("m2_area_b1")] = -4.0  # an empty row: spread evenly over the band
    values[-1] = 7.0  # derivatized: no cell
    grid = explain_features.contributions_to_grid(values, names, image, n_bands=2)
    assert grid.shape == (3, 8)
    np.testing.assert_allclose(grid[0], [0, 1.0, 2.0 + 2.0, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(grid[1], [0, 0, 0, 0, 0, 0, 1.0, 0])
    np.testing.assert_allclose(grid[2], [0, 0, 0, 0, -1, -1, -1, -1])
    with pytest.raises(ValueError, match="3 contributions for 16 features"):
        explain_features.contributions_to_grid(values[:3], names, image, n_bands=2)


def test_truth_region_and_shares():
    rows = pd.DataFrame({"mz": [57, 43, 57, 300, HELIUM_MASS, np.nan],  # NaN: a row without ion
                         "t_start_min": [2.0, 2.0, 6.0, 2.0, 0.0, np.nan],
                         "t_end_min": [2.5, 2.5, 6.0, 2.5, 9.0, np.nan]})
    region = scoring.truth_region(rows, run_start=1.0, run_end=10.0, m_bins=M_BINS * 2,
                                  t_bins=10)
    assert region.shape == (128, 10)
    assert np.flatnonzero(region.any(axis=1)).tolist() == [43, 57]  # 300, helium: off the image
    assert np.flatnonzero(region[57]).tolist() == [1, 2, 5]  # bins of 2.0-2.5 min and 6.0 min
    assert np.flatnonzero(region[43]).tolist() == [1, 2]
    rng = np.random.default_rng(0)
    assert scoring.region_share(region.astype(float), region) == 1.0
    uniform = np.ones(region.shape)
    assert scoring.region_share(uniform, region) == pytest.approx(5 / 1280)
    assert scoring.chance_share(uniform, region, rng) == pytest.approx(5 / 1280)
    assert scoring.chance_share(region.astype(float), region, rng) < 0.1
    assert np.isnan(scoring.region_share(np.zeros(region.shape), region))

    scores = scoring.score_sample(region.astype(float), region.any(axis=1) * 1.0, region, rng)
    assert scores["map_share"] == 1 and scores["occlusion_share"] == 1
    assert scores["top5_hit_rate"] == 1 and scores["map_top5_hit_rate"] == 1
    assert scores["chance_share"] < 0.1 and scores["occlusion_chance_share"] == 2 / 127


def test_top_hit_rate():
    scores = np.array([0.0, 5, 4, 3, 2, 1, 0.5])
    assert scoring.top_hit_rate(scores, [1, 2], k=5) == 1.0
    assert scoring.top_hit_rate(scores, [1, 6], k=5) == 0.5
    assert scoring.top_hit_rate(scores, [0, 6], k=5) == 0.0
    assert np.isnan(scoring.top_hit_rate(scores, []))


def test_summary_keeps_shares_in_unit_interval_with_intervals_and_counts():
    per_sample = pd.DataFrame({"model": "m", "sample_id": ["S1", "S2", "S3"],
                               "label": ["aromatic", "aromatic", "mineral"],
                               "map_share": [0.2, 0.4, np.nan],
                               "top5_hit_rate": [1.0, 0.0, 0.5]})
    summary = scoring.summarize_scores(per_sample)
    assert set(summary) == {"aromatic", "mineral"}
    aromatic = summary["aromatic"]
    assert aromatic["map_share"] == pytest.approx(0.3) and aromatic["top5_hit_rate"] == 0.5
    assert aromatic["samples"] == 2
    low, high = aromatic["map_share_interval"]
    assert 0.2 <= low < 0.3 < high <= 0.4
    assert summary["mineral"] == {"top5_hit_rate": 0.5, "samples": 1}


def test_bootstrap_interval():
    rng = np.random.default_rng(0)
    values = rng.normal(0.5, 0.1, 40)
    low, high = scoring.bootstrap_interval(values, rng)
    assert low < values.mean() < high
    # about 1.645 standard errors each side
    assert high - low == pytest.approx(2 * 1.645 * values.std() / np.sqrt(40), rel=0.2)
    wide = scoring.bootstrap_interval(values[:4], rng)
    assert wide[1] - wide[0] > high - low
    assert scoring.bootstrap_interval([0.3, np.nan], rng) == (0.3, 0.3)
    assert all(np.isnan(scoring.bootstrap_interval([np.nan], rng)))


# ---- explain_model and explain_ensemble on hand-made run folders ---------------------------------

def _run_folder(root, fold: int, backbone="mobilenetv3_small_100", head="cls3", checkpoint=True):
    run_dir = root / "demo" / backbone / f"fold{fold}_seed0"
    run_dir.mkdir(parents=True)
    config = dict(backbone=backbone, head=head, m_bins=M_BINS, t_bins=T_BINS,
                  tta_offsets=list(OFFSETS), norm="mass", transform="log")
    if checkpoint:
        save_checkpoint(run_dir / "checkpoint.pt", tiny_model(backbone, head).state_dict(),
                        config)
    write_metrics(run_dir, dict(parameters=config))
    mark_done(run_dir)
    return run_dir


def _feature_folder(root, fold: int, cache, labels, folds, model_file=True):
    """A logistic-regression run of fold ``fold`` fitted on the other folds' samples."""
    run_dir = root / "features_lr" / "logistic" / f"fold{fold}_seed0"
    run_dir.mkdir(parents=True)
    train = folds.loc[folds["fold"] != fold, "sample_id"].tolist()
    rows = [list(cache["sample_ids"]).index(s) for s in train]
    features, _ = image_features(cache["images"][rows], cache["derivatized"][rows], n_bands=4)
    config = dict(backbone="logistic", features="bands", n_bands=4, m_bins=M_BINS,
                  t_bins=T_BINS)
    if model_file:
        model = fit_feature_model(features, labels.loc[train].to_numpy(),
                                  FeatureSettings(learner="logistic"), seed=0, config=config)
        save_feature_model(run_dir / "feature_model.json", model)
    write_metrics(run_dir, dict(parameters=config))
    mark_done(run_dir)
    return run_dir


@pytest.fixture
def tiny_cache():
    rng = np.random.default_rng(0)
    ids = [f"S{i:04d}" for i in range(8)]
    images = rng.random((8, M_BINS, T_BINS)).astype(np.float32)
    cache = dict(sample_ids=np.array(ids), derivatized=np.array([0, 1] * 4, dtype=np.int8),
                 images=images)
    labels = pd.DataFrame(0, index=pd.Index(ids, name="sample_id"), columns=list(LABELS))
    labels.loc[["S0000", "S0003", "S0004"], "aromatic"] = 1
    labels.loc[["S0001", "S0005"], "mineral"] = 1
    folds = pd.DataFrame({"sample_id": ids, "fold": [0, 1, 0, 1, 0, 1, 0, 1]})
    return cache, labels, folds


def test_explain_model_goes_on_past_bad_runs_and_labels(tmp_path, tiny_cache):
    cache, labels, folds = tiny_cache
    runs = {0: _run_folder(tmp_path, 0), 1: _run_folder(tmp_path, 1, checkpoint=False)}
    result = explainer.explain_model("demo/m/seed0", runs, cache, labels, folds,
                                   labels=["aromatic", "mineral", "alcohol"], n_per_label=5,
                                   cam_method="gradcam")
    problems = "\n".join(result.problems)
    assert "fold1_seed0: a CNN (mobilenetv3_small_100) without checkpoint.pt" in problems
    assert "alcohol: no positive OOF sample" in problems
    assert "mineral: no positive OOF sample" in problems  # its positives are all in fold 1
    # the method asked for, at the backbone's default layer (CAM_DEFAULTS)
    assert result.family == "cnn" and result.map_method == "gradcam at input"
    assert result.picked["aromatic"] == ["S0000", "S0004"]  # fold 0's positives only
    assert set(result.maps["aromatic"]) == {"S0000", "S0004"}
    assert set(result.drops) == set(result.probs) == {"S0000", "S0004"}
    assert result.drops["S0000"].shape == (M_BINS, len(LABELS))
    np.testing.assert_array_equal(result.images["S0004"], cache["images"][4])
    probs = result.probs["S0000"]
    assert probs.shape == (len(LABELS),) and ((probs > 0) & (probs < 1)).all()
    # samples whose run cannot show the label are not drawn
    hidden = explainer.explain_model("demo/m/seed0", runs, cache, labels, folds,
                                   labels=["aromatic"], n_per_label=5, methods=["occlusion"],
                                   hidden={"aromatic": {"S0000"}})
    assert hidden.picked == {"aromatic": ["S0004"]} and not hidden.maps


def test_explain_model_reports_a_target_layer_that_is_not_there(tmp_path, tiny_cache):
    cache, labels, folds = tiny_cache
    runs = {0: _run_folder(tmp_path, 0, head="flatM")}
    result = explainer.explain_model("demo/m/seed0", runs, cache, labels, folds,
                                   labels=["aromatic"], n_per_label=1, target_layer="backbone.x")
    assert any("fold0_seed0: MobileNetV3Features: no module 'backbone.x'" in p
               for p in result.problems)
    assert not result.maps and len(result.drops) == 1  # occlusion still ran


def test_explain_a_sequence_model(tmp_path, tiny_cache):
    cache, labels, folds = tiny_cache
    runs = {0: _run_folder(tmp_path, 0, backbone="seq1d_tiny")}
    result = explainer.explain_model("demo/seq1d_tiny/seed0", runs, cache, labels, folds,
                                   labels=["aromatic"], n_per_label=2)
    assert not result.problems and result.family == "cnn"
    assert result.map_method == "hirescam at input"  # it has no 2D feature map
    maps = result.maps["aromatic"]
    assert set(maps) == set(result.drops) == {"S0000", "S0004"}
    assert all(m.shape == (M_BINS, T_BINS) and m.max() > 0 for m in maps.values())
    last = explainer.explain_model("demo/seq1d_tiny/seed0", runs, cache, labels, folds,
                                 labels=["aromatic"], n_per_label=1, target_layer="")
    assert "has no forward_features; name a target layer (or 'input')" in last.problems[0]
    assert len(last.drops) == 1  # occlusion still explains it


def test_default_cam_per_backbone():
    for backbone, (method, layer) in cam.CAM_DEFAULTS.items():
        assert method in cam.CAM_METHODS
        assert cam.default_cam(f"{backbone}.some_tag") == (method, layer)
        model = tiny_model(backbone, "cls3")
        assert cam.find_target_layer(model, layer or None) == layer
    assert cam.default_cam("unlisted_net") == ("layercam", "")


def test_explain_a_feature_model_and_the_ensemble(tmp_path, tiny_cache):
    cache, labels, folds = tiny_cache
    features = {k: _feature_folder(tmp_path, k, cache, labels, folds) for k in (0, 1)}
    cnn = {0: _run_folder(tmp_path, 0), 1: _run_folder(tmp_path, 1)}
    result = explainer.explain_model("features_lr/logistic/seed0", features, cache, labels, folds,
                                   labels=["aromatic", "mineral"], n_per_label=2)
    assert result.family == "feature" and not result.problems
    assert result.map_method == "coefficient x standardised feature value"
    assert set(result.maps) == {"aromatic", "mineral"}
    assert all(m.shape == (M_BINS, T_BINS) for maps in result.maps.values()
               for m in maps.values())
    assert set(result.drops) == {s for ids in result.picked.values() for s in ids}

    members = {"demo/m/seed0": cnn, "features_lr/logistic/seed0": features}
    ensemble = explainer.explain_ensemble(members, cache, labels, folds, labels=["aromatic"],
                                        n_per_label=3, coarse=0)
    assert ensemble.name == "ensemble" and ensemble.family == "ensemble" and not ensemble.maps
    assert ensemble.picked == {"aromatic": ["S0000", "S0003", "S0004"]}
    # the unoccluded prediction is the ensemble's: the mean of the members' clipped logits
    fold_of_s3 = 1
    cnn_model, config = load_run_model(cnn[fold_of_s3], "cpu")
    lr = load_feature_model(features[fold_of_s3] / "feature_model.json")
    expected = occlusion.ensemble_predictor([occlusion.cnn_predictor(cnn_model, config, 1),
                                           occlusion.feature_predictor(lr, 1)])(
        cache["images"][3:4])[0]
    np.testing.assert_allclose(ensemble.probs["S0003"], 1 / (1 + np.exp(-expected)), rtol=1e-5)
    # emptying a row changes the ensemble's logit by the mean of its members' clipped changes
    member_drops = [occlusion.occlusion_drops(occlusion.ensemble_predictor([member]),
                                            cache["images"][3])
                    for member in (occlusion.cnn_predictor(cnn_model, config, 1),
                                   occlusion.feature_predictor(lr, 1))]
    np.testing.assert_allclose(ensemble.drops["S0003"], np.mean(member_drops, axis=0),
                               atol=1e-4)


def test_ensemble_leaves_out_the_folds_a_member_cannot_predict(tmp_path, tiny_cache):
    cache, labels, folds = tiny_cache
    features = {0: _feature_folder(tmp_path, 0, cache, labels, folds),
                1: _feature_folder(tmp_path, 1, cache, labels, folds, model_file=False)}
    members = {"demo/m/seed0": {0: _run_folder(tmp_path, 0), 1: _run_folder(tmp_path, 1)},
               "features_lr/logistic/seed0": features,
               "demo/untrained/seed0": {}}
    ensemble = explainer.explain_ensemble(members, cache, labels, folds,
                                        labels=["aromatic"], n_per_label=3)
    problems = "\n".join(ensemble.problems)
    assert "fold1_seed0: a feature model (logistic) without feature_model.json" in problems
    assert "demo/untrained/seed0: no run folder" in problems
    assert "no fold that every member can predict" in problems and not ensemble.drops
    del members["demo/untrained/seed0"]
    ensemble = explainer.explain_ensemble(members, cache, labels, folds,
                                        labels=["aromatic"], n_per_label=3)
    assert ensemble.picked == {"aromatic": ["S0000", "S0004"]}  # fold 0 only
    assert set(ensemble.drops) == {"S0000", "S0004"}


@pytest.mark.parametrize("settings, message", [
    (dict(n_samples=0), "n_samples .* must be an integer of at least 1, got 0"),
    (dict(n_samples=-2), "got -2"),
    (dict(methods=["occlusions"]), r"methods must be one or more of \['map', 'occlusion'\]"),
    (dict(methods=[]), "methods must be one or more"),
    (dict(cam_method="scorecam"), "cam_method must be one of"),
])
def test_settings_that_cannot_be_used_are_refused(tmp_path, tiny_cache, settings, message):
    chosen = dict(n_samples=2, methods=["map", "occlusion"], cam_method="") | settings
    with pytest.raises(ValueError, match=message):
        explainer.check_settings(**chosen)
    cache, labels, folds = tiny_cache
    with pytest.raises(ValueError, match=message):  # not an empty explanation
        explainer.explain_model("demo/m/seed0", {0: _run_folder(tmp_path, 0)}, cache, labels,
                              folds, n_per_label=chosen["n_samples"], methods=chosen["methods"],
                              cam_method=chosen["cam_method"])


def test_the_setting_is_named():
    with pytest.raises(ValueError, match="n_model_samples .* at least 1, got 0"):
        explainer.check_settings(0, ["map"], name="n_model_samples")


def test_scores_document_and_its_file(tmp_path):
    per_sample = pd.DataFrame({"model": ["ensemble", "ensemble", "a/b/seed0"],
                               "sample_id": ["S1", "S2", "S1"], "label": "aromatic",
                               "occlusion_share": [0.5, 0.7, 0.1],
                               "occlusion_chance_share": 0.02})
    models = {"a/b/seed0": explainer.ModelExplanation("a/b/seed0"),
              "c/d/seed0": explainer.ModelExplanation("c/d/seed0", problems=["c: not trained"])}
    document = scoring.scores_document(explainer.ModelExplanation("ensemble"), models,
                                       ["a/b/seed0"], per_sample)
    assert document["ensemble"]["aromatic"]["occlusion_share"] == pytest.approx(0.6)
    assert document["ensemble"]["aromatic"]["samples"] == 2
    assert document["models"]["a/b/seed0"]["chosen"] is True
    assert document["models"]["a/b/seed0"]["labels"]["aromatic"]["samples"] == 1
    assert document["models"]["c/d/seed0"] == {"chosen": False, "labels": {},
                                               "problems": ["c: not trained"]}
    path = tmp_path / "explain_scores.json"
    assert scoring.save_scores(tmp_path, document, "unused") == f"wrote {path}"
    assert json.loads(path.read_text()) == document
    nothing = scoring.scores_document(None, {"c/d/seed0": models["c/d/seed0"]}, [],
                                      per_sample.iloc[:0])
    said = scoring.save_scores(tmp_path, nothing, "no truth.csv in the data folder")
    assert said == (f"no scores (no truth.csv in the data folder): removed {path}, which an "
                    f"earlier execution wrote")
    assert not path.exists()
    assert "not written" in scoring.save_scores(tmp_path, {}, "no truth.csv")


def test_hidden_positives_and_true_ions():
    truth = pd.DataFrame({"sample_id": ["S1", "S1", "S2", "S3"],
                          "role": ["label", "label", "label", "confuser"],
                          "label": ["aromatic", "mineral", "aromatic", ""],
                          "mz": [78, np.nan, 91, 78]})
    assert scoring.hidden_positives(truth) == {"mineral": {"S1"}}
    shares = scoring.true_ion_shares(truth, {"aromatic": ["S1", "S2"], "mineral": ["S1"],
                                             "alcohol": []})
    assert shares == {"aromatic": {78: 0.5, 91: 0.5}, "mineral": {}}


@pytest.mark.slow
def test_explain_notebook_refuses_n_samples_0_before_any_work(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="n_samples .* at least 1, got 0"):
        pm.execute_notebook(str(REPO_ROOT / "notebooks/06_explain.ipynb"),
                            str(tmp_path / "06.ipynb"),
                            parameters=dict(n_samples=0, data_dir=str(tmp_path / "none")),
                            kernel_name="python3", progress_bar=False)


# ---- notebook 06 -----------------------------------------------------------------------------

TINY_RUN = dict(backbone="test_efficientnet", m_bins=64, t_bins=96, tta_offsets=[-32, 0, 32],
                epochs=1, batch_size=4, lr=1e-3, device="cpu")


@pytest.fixture(scope="module")
def tiny_plan(tmp_path_factory):
    """A tiny synthetic folder (with truth.csv), its folds and image cache; under a runs folder
    of the temporary directory, one 1-epoch run of 03_train (fold 0 of a CNN) and the feature
    logistic regression on every fold; a plan naming both and a third model never trained; an
    ensemble folder whose selection.json chose the CNN and the logistic regression."""
    root = tmp_path_factory.mktemp("explain")
    data_dir = generate(root / "data", profile="tiny", seed=0)
    cache_dir = root / "cache"
    pm.execute_notebook(str(REPO_ROOT / "notebooks/02_preprocess.ipynb"), str(root / "02.ipynb"),
                        parameters=dict(data_dir=str(data_dir), cache_dir=str(cache_dir),
                                        image_sizes=[[64, 96]], workers=1),
                        kernel_name="python3", progress_bar=False)
    runs_dir = root / "runs"
    cnn_dir = runs_dir / "tiny" / "test_efficientnet" / "fold0_seed0"
    cnn_dir.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "papermill", "notebooks/03_train.ipynb",
                    str(cnn_dir / "03_train.ipynb"), "-f", "params/demo.yaml",
                    "-p", "name", "tiny", "-p", "fold", "0", "-p", "run_dir", str(cnn_dir),
                    "-p", "data_dir", str(data_dir), "-p", "cache_dir", str(cache_dir),
                    "-y", json.dumps(TINY_RUN), "--kernel", "python3", "--no-progress-bar"],
                   cwd=REPO_ROOT, check=True, capture_output=True)
    data = load_competition(data_dir)
    folds = load_or_make_folds(dataset_work_dir(cache_dir, data_dir), data.train_labels)
    cache = load_image_cache(cache_path(dataset_work_dir(cache_dir, data_dir), 64, 96))
    labels = data.labels.loc[data.split_ids("train")]
    for fold in range(5):
        _write_lr_run(runs_dir / "features_lr" / "logistic" / f"fold{fold}_seed0", fold, cache,
                      labels, folds)
    params = root / "params"
    params.mkdir()
    (params / "tiny.yaml").write_text(yaml.safe_dump(dict(name="tiny", **TINY_RUN)))
    (params / "lr.yaml").write_text(yaml.safe_dump(dict(name="features_lr", backbone="logistic",
                                                        m_bins=64, t_bins=96)))
    plan = root / "plan.yaml"
    plan.write_text(yaml.safe_dump(dict(name="tiny", folds=[0, 1, 2, 3, 4], runs=[
        dict(params=str(params / "tiny.yaml"), backbone="test_efficientnet", seed=0),
        dict(params=str(params / "tiny.yaml"), backbone="never_trained", seed=0),
        dict(params=str(params / "lr.yaml"), backbone="logistic", seed=0,
             notebook="03b_train_features.ipynb")])))
    ensemble_dir = root / "ensemble"
    ensemble_dir.mkdir()
    (ensemble_dir / "selection.json").write_text(json.dumps(dict(models=[
        "tiny/test_efficientnet/seed0", "features_lr/logistic/seed0"])))
    return dict(root=root, data_dir=data_dir, cache_dir=cache_dir, runs_dir=runs_dir, plan=plan,
                ensemble_dir=ensemble_dir)


def _write_lr_run(run_dir, fold, cache, labels, folds):
    run_dir.mkdir(parents=True)
    train = folds.loc[folds["fold"] != fold, "sample_id"]
    rows = np.flatnonzero(np.isin(cache["sample_ids"], train))
    features, names = image_features(cache["images"][rows], cache["derivatized"][rows])
    config = dict(backbone="logistic", features="bands", n_bands=4, m_bins=64, t_bins=96)
    model = fit_feature_model(features, labels.loc[cache["sample_ids"][rows]].to_numpy(),
                              FeatureSettings(learner="logistic"), seed=0, config=config)
    save_feature_model(run_dir / "feature_model.json", model)
    write_metrics(run_dir, dict(parameters=config))
    mark_done(run_dir)


def _execute_06(tiny_plan, name, **parameters):
    executed = tiny_plan["root"] / f"{name}.ipynb"
    pm.execute_notebook(str(REPO_ROOT / "notebooks/06_explain.ipynb"), str(executed),
                        parameters=dict(plan=str(tiny_plan["plan"]),
                                        runs_dir=str(tiny_plan["runs_dir"]),
                                        data_dir=str(tiny_plan["data_dir"]),
                                        cache_dir=str(tiny_plan["cache_dir"]), n_samples=3,
                                        n_model_samples=2, n_examples=2,
                                        output_dir=str(tiny_plan["ensemble_dir"]))
                        | parameters, kernel_name="python3", progress_bar=False)
    cells = nbformat.read(executed, as_version=4).cells
    text = "".join(o.get("text", "") for c in cells for o in c.get("outputs", []))
    figures = sum("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", []))
    stderr = [o for c in cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
    scores = json.loads((tiny_plan["ensemble_dir"] / "explain_scores.json").read_text())
    return text, figures, stderr, scores


def _check_scores(entry):
    for label, scores in entry.items():
        assert label in LABELS and scores["samples"] >= 1
        for key, value in scores.items():
            if key.endswith("_interval"):
                assert 0 <= value[0] <= scores[key[:-len("_interval")]] <= value[1] <= 1
            elif key != "samples":
                assert key in scoring.SCORE_KEYS and 0 <= value <= 1


@pytest.mark.slow
def test_explain_notebook_explains_the_ensemble_first_and_every_model(tiny_plan):
    text, figures, stderr, scores = _execute_06(tiny_plan, "06")
    assert figures >= 4  # the ensemble's profiles, mean maps, top m/z bars, examples
    assert not stderr, stderr  # no warning box nobody asked for
    assert (tiny_plan["ensemble_dir"] / "explain_ensemble.png").stat().st_size > 1000
    assert set(scores) == {"ensemble", "models"}
    assert scores["ensemble"] and "occlusion_share_interval" in next(iter(
        scores["ensemble"].values()))
    _check_scores(scores["ensemble"])
    models = scores["models"]
    assert set(models) == {"tiny/test_efficientnet/seed0", "tiny/never_trained/seed0",
                           "features_lr/logistic/seed0"}
    assert models["features_lr/logistic/seed0"]["chosen"] is True
    assert models["tiny/never_trained/seed0"]["chosen"] is False
    assert models["tiny/never_trained/seed0"]["labels"] == {}
    assert "fold0_seed0: not a finished run" in models["tiny/never_trained/seed0"]["problems"][0]
    lr = models["features_lr/logistic/seed0"]["labels"]
    assert lr and any({"map_share", "chance_share", "occlusion_share"} <= set(s)
                      for s in lr.values())
    for entry in models.values():
        _check_scores(entry["labels"])
    assert "never_trained/fold0_seed0: not a finished run (no DONE file)" in text


@pytest.mark.slow
def test_explain_notebook_names_bad_input_and_explains_the_rest(tiny_plan, tmp_path):
    lr_fold = tiny_plan["runs_dir"] / "features_lr" / "logistic" / "fold2_seed0"
    model_file = lr_fold / "feature_model.json"
    saved_model = model_file.read_bytes()
    truth_file = tiny_plan["data_dir"] / "truth.csv"
    saved_truth = truth_file.read_text()
    lines = saved_truth.splitlines()
    label_line = next(i for i, line in enumerate(lines) if ",label,aromatic," in line)
    lines[label_line] = lines[label_line].replace(",label,aromatic,", ",label,aromatics,", 1)
    try:
        model_file.unlink()
        truth_file.write_text("\n".join(lines) + "\n")
        text, _, _, scores = _execute_06(tiny_plan, "06_bad")
    finally:
        model_file.write_bytes(saved_model)
        truth_file.write_text(saved_truth)
    assert f"{lr_fold}: a feature model (logistic) without feature_model.json" in text
    assert f"line {label_line + 1}: label 'aromatics' is not a label" in text
    assert "tiny/never_trained/seed0" in scores["models"]
    # the logistic regression's other folds, the ensemble's other folds: explained and scored
    assert scores["models"]["features_lr/logistic/seed0"]["labels"]
    assert any("fold2_seed0" in p for p in scores["models"]["features_lr/logistic/seed0"]
               ["problems"])
