"""Attribution maps (grad-cam package, occlusion), their scores against the synthetic truth,
and notebook 06 executed through papermill on tiny data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid

import nbformat
import numpy as np
import pandas as pd
import papermill as pm
import pytest
import torch
from torch import nn

from lib import explain
from lib.models import build_model
from lib.paths import REPO_ROOT
from lib.runs import mark_done, save_checkpoint
from lib.schema import HELIUM_MASS, LABELS
from lib.synthetic import generate

# widths 32, 64, 96: HRNet fuses its branches only at multiples of 32 (the real 192 +- 64 are)
M_BINS, T_BINS, OFFSETS = 64, 64, (-32, 0, 32)

# One backbone per family named in params/, the small member where the named one takes long to
# build (same timm class, same stages): hrnet_w64/w32 -> hrnet_w18_small, dpn98/107 -> dpn68,
# regnetx_320 -> regnetx_002, regnety_040 -> regnety_002; resnet34 and the demo's as named.
BACKBONES = ["hrnet_w18_small", "resnet34", "dpn68", "regnetx_002", "regnety_002",
             "mobilenetv3_small_100"]


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
@pytest.mark.parametrize("backbone", BACKBONES)
def test_cam_maps_for_every_backbone_family(backbone, head):
    model = tiny_model(backbone, head)
    x = tiny_input()
    # the CAM's wrapper computes exactly the model's logits at each width
    for width in (32, 64, 96):
        with torch.no_grad():
            np.testing.assert_allclose(explain._AtWidth(model, width, tapped=True)(x).numpy(),
                                       model.forward_width(x, width).numpy(), atol=1e-5)
    for label in range(len(LABELS)):  # random weights: a label's CAM may be negative everywhere
        maps = explain.cam_maps(model, x, label)
        assert maps.shape == (2, M_BINS, T_BINS) and maps.dtype == np.float32
        assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1 + 1e-6
        if maps.max() > 0:
            break
    assert maps.max() > 0, "no label's map lit up"
    assert all(p.grad is None for p in model.parameters())


def test_hirescam_and_a_named_target_layer():
    model = tiny_model("resnet34", "cls3")
    x = tiny_input(1)
    hires = explain.cam_maps(model, x, 0, method="hirescam")
    staged = explain.cam_maps(model, x, 0, target_layer="backbone.layer3")
    for maps in (hires, staged):
        assert maps.shape == (1, M_BINS, T_BINS) and np.isfinite(maps).all() and maps.min() >= 0
    assert not np.allclose(staged, explain.cam_maps(model, x, 0))  # another layer, another map
    with pytest.raises(ValueError, match="method must be one of"):
        explain.cam_maps(model, x, 0, method="saliency")


def test_target_layer_errors_name_the_backbone_and_the_module():
    model = tiny_model("resnet34", "cls3")
    with pytest.raises(explain.TargetLayerError, match=r"ResNet: no module 'backbone.layer5'.*"
                                                       r"backbone.layer4"):
        explain.find_target_layer(model, "backbone.layer5")
    with pytest.raises(explain.TargetLayerError, match=r"'backbone.fc' gives shape \(1, 1000\)"):
        explain.find_target_layer(model, "backbone.fc")
    assert explain.find_target_layer(model, "backbone.layer4") == "backbone.layer4"


class _HideRow(nn.Module):
    """An input conv that cannot see one m/z row: the row is zeroed before the 1x1 conv."""

    def __init__(self, row: int):
        super().__init__()
        self.row = row
        self.conv = nn.Conv2d(4, 3, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[:, :, self.row] = 0
        return self.conv(x)


def test_occlusion_of_a_row_the_model_cannot_see_is_zero():
    model = tiny_model("test_efficientnet", "cls3")
    model.input_conv = _HideRow(row=20)
    x = tiny_input(1)[0]
    x[:, 40] = 0  # an empty row: skipped, drop 0
    drops = explain.occlusion_drops(model, x, batch_size=16)
    assert drops.shape == (M_BINS, len(LABELS)) and np.isfinite(drops).all()
    assert np.abs(drops[40]).max() == 0
    # the rows it sees matter (random weights: small logit changes), the hidden one does not
    # (up to float rounding between batch sizes)
    seen = np.abs(np.delete(drops, [20, 40], axis=0)).max(axis=1)
    assert seen.min() > 0
    assert np.abs(drops[20]).max() < 1e-3 * seen.mean()
    # bands: every row of a band gets the band's drop
    banded = explain.occlusion_drops(model, x, band=8)
    assert (banded[::8] == banded[1::8]).all() and (banded[::8] == banded[7::8]).all()
    # two passes: label 0's two best bands of 8 rows row by row, the rest spread over its rows
    refined = explain.occlusion_drops(model, x, coarse=8, refine_labels=[0], keep=2)
    best = np.argsort(-banded[::8, 0])[:2]
    fine = np.isin(np.arange(M_BINS) // 8, best)
    np.testing.assert_allclose(refined[fine], drops[fine], atol=1e-3 * seen.mean())
    np.testing.assert_allclose(refined[~fine], banded[~fine] / 8, atol=1e-3 * seen.mean())


def test_truth_region_and_shares():
    rows = pd.DataFrame({"mz": [57, 43, 57, 300, HELIUM_MASS],
                         "t_start_min": [2.0, 2.0, 6.0, 2.0, 0.0],
                         "t_end_min": [2.5, 2.5, 6.0, 2.5, 9.0]})
    region = explain.truth_region(rows, run_start=1.0, run_end=10.0, m_bins=M_BINS * 2,
                                  t_bins=10)
    assert region.shape == (128, 10)
    assert np.flatnonzero(region.any(axis=1)).tolist() == [43, 57]  # 300, helium: off the image
    assert np.flatnonzero(region[57]).tolist() == [1, 2, 5]  # bins of 2.0-2.5 min and 6.0 min
    assert np.flatnonzero(region[43]).tolist() == [1, 2]
    rng = np.random.default_rng(0)
    assert explain.region_share(region.astype(float), region) == 1.0
    uniform = np.ones(region.shape)
    assert explain.region_share(uniform, region) == pytest.approx(5 / 1280)
    assert explain.chance_share(uniform, region, rng) == pytest.approx(5 / 1280)
    assert explain.chance_share(region.astype(float), region, rng) < 0.1
    assert np.isnan(explain.region_share(np.zeros(region.shape), region))

    scores = explain.score_sample(region.astype(float), region.any(axis=1) * 1.0, region, rng)
    assert scores["gradcam_share"] == 1 and scores["occlusion_share"] == 1
    assert scores["top5_hit_rate"] == 1 and scores["gradcam_top5_hit_rate"] == 1
    assert scores["chance_share"] < 0.1 and scores["occlusion_chance_share"] == 2 / 127


def test_top_hit_rate():
    scores = np.array([0.0, 5, 4, 3, 2, 1, 0.5])
    assert explain.top_hit_rate(scores, [1, 2], k=5) == 1.0
    assert explain.top_hit_rate(scores, [1, 6], k=5) == 0.5
    assert explain.top_hit_rate(scores, [0, 6], k=5) == 0.0
    assert np.isnan(explain.top_hit_rate(scores, []))


def test_summary_keeps_shares_in_unit_interval():
    per_sample = pd.DataFrame({"model": "m", "sample_id": ["S1", "S2", "S3"],
                               "label": ["aromatic", "aromatic", "mineral"],
                               "gradcam_share": [0.2, 0.4, np.nan],
                               "top5_hit_rate": [1.0, 0.0, 0.5]})
    summary = explain.summarize_scores(per_sample)
    assert summary == {"aromatic": {"gradcam_share": pytest.approx(0.3), "top5_hit_rate": 0.5},
                       "mineral": {"top5_hit_rate": 0.5}}


# ---- explain_model on hand-made run folders ---------------------------------------------------

def _run_folder(root, fold: int, backbone="mobilenetv3_small_100", head="cls3", checkpoint=True):
    run_dir = root / "demo" / backbone / f"fold{fold}_seed0"
    run_dir.mkdir(parents=True)
    config = dict(backbone=backbone, head=head, m_bins=M_BINS, t_bins=T_BINS,
                  tta_offsets=list(OFFSETS), norm="mass", transform="log")
    if checkpoint:
        save_checkpoint(run_dir / "checkpoint.pt", tiny_model(backbone, head).state_dict(),
                        config)
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
    result = explain.explain_model("demo/m/seed0", runs, cache, labels, folds,
                                   labels=["aromatic", "mineral", "alcohol"], n_per_label=5)
    problems = "\n".join(result.problems)
    assert "fold1_seed0: no checkpoint.pt, not explained" in problems
    assert "alcohol: no positive OOF sample" in problems
    assert "mineral: no positive OOF sample" in problems  # its positives are all in fold 1
    assert result.picked["aromatic"] == ["S0000", "S0004"]  # fold 0's positives only
    assert set(result.cams["aromatic"]) == {"S0000", "S0004"}
    assert set(result.drops) == set(result.probs) == {"S0000", "S0004"}
    assert result.drops["S0000"].shape == (M_BINS, len(LABELS))
    assert result.inputs["S0004"].shape == (M_BINS, T_BINS)
    probs = result.probs["S0000"]
    assert probs.shape == (len(LABELS),) and ((probs > 0) & (probs < 1)).all()


def test_explain_model_reports_a_target_layer_that_is_not_there(tmp_path, tiny_cache):
    cache, labels, folds = tiny_cache
    runs = {0: _run_folder(tmp_path, 0, head="flatM")}
    result = explain.explain_model("demo/m/seed0", runs, cache, labels, folds,
                                   labels=["aromatic"], n_per_label=1, target_layer="backbone.x")
    assert any("fold0_seed0: MobileNetV3Features: no module 'backbone.x'" in p
               for p in result.problems)
    assert not result.cams and len(result.drops) == 1  # occlusion still ran


@pytest.mark.parametrize("settings, message", [
    (dict(n_samples=0), "n_samples .* must be an integer of at least 1, got 0"),
    (dict(n_samples=-2), "got -2"),
    (dict(methods=["occlusions"]), r"methods must be one or more of \['gradcam', 'occlusion'\]"),
    (dict(methods=[]), "methods must be one or more"),
    (dict(cam_method="scorecam"), "cam_method must be one of"),
])
def test_settings_that_cannot_be_used_are_refused(tmp_path, tiny_cache, settings, message):
    chosen = dict(n_samples=2, methods=["gradcam", "occlusion"], cam_method="gradcam") | settings
    with pytest.raises(ValueError, match=message):
        explain.check_settings(**chosen)
    cache, labels, folds = tiny_cache
    with pytest.raises(ValueError, match=message):  # not an empty explanation
        explain.explain_model("demo/m/seed0", {0: _run_folder(tmp_path, 0)}, cache, labels,
                              folds, n_per_label=chosen["n_samples"], methods=chosen["methods"],
                              cam_method=chosen["cam_method"])


def test_no_scores_remove_an_earlier_scores_file(tmp_path):
    scores = {"aromatic": {"top5_hit_rate": 0.5}}
    path = tmp_path / "explain_scores.json"
    assert explain.save_scores(tmp_path, scores, "unused") == f"wrote {path}"
    assert json.loads((tmp_path / "explain_scores.json").read_text()) == scores
    said = explain.save_scores(tmp_path, {}, "no truth.csv in the data folder")
    assert said == (f"no scores (no truth.csv in the data folder): removed "
                    f"{tmp_path / 'explain_scores.json'}, which an earlier execution wrote")
    assert not (tmp_path / "explain_scores.json").exists()
    assert "not written" in explain.save_scores(tmp_path, {}, "no truth.csv")


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
def tiny_run(tmp_path_factory):
    """A tiny synthetic folder (with truth.csv), its folds and image cache, and one 1-epoch run
    of 03_train (fold 0) in a run folder under runs/."""
    root = tmp_path_factory.mktemp("explain")
    data_dir = generate(root / "data", profile="tiny", seed=0)
    cache_dir = root / "cache"
    pm.execute_notebook(str(REPO_ROOT / "notebooks/02_preprocess.ipynb"), str(root / "02.ipynb"),
                        parameters=dict(data_dir=str(data_dir), cache_dir=str(cache_dir),
                                        image_sizes=[[64, 96]], workers=1),
                        kernel_name="python3", progress_bar=False)
    name = f"pytest_{uuid.uuid4().hex[:8]}"
    relative = f"runs/{name}/test_efficientnet/fold0_seed0/03_train.ipynb"
    subprocess.run([sys.executable, "-m", "papermill", "notebooks/03_train.ipynb", relative,
                    "-f", "params/demo.yaml", "-p", "name", name, "-p", "fold", "0",
                    "-p", "data_dir", str(data_dir), "-p", "cache_dir", str(cache_dir),
                    "-y", json.dumps(TINY_RUN), "--kernel", "python3", "--no-progress-bar"],
                   cwd=REPO_ROOT, check=True, capture_output=True)
    yield dict(root=root, data_dir=data_dir, cache_dir=cache_dir,
               run_dir=(REPO_ROOT / relative).parent)
    shutil.rmtree(REPO_ROOT / "runs" / name)


@pytest.mark.slow
def test_explain_notebook_on_a_tiny_run(tiny_run):
    out_dir = tiny_run["root"] / "ensemble"
    executed = tiny_run["root"] / "06.ipynb"
    pm.execute_notebook(str(REPO_ROOT / "notebooks/06_explain.ipynb"), str(executed),
                        parameters=dict(plan="", run_dirs=[str(tiny_run["run_dir"])],
                                        data_dir=str(tiny_run["data_dir"]),
                                        cache_dir=str(tiny_run["cache_dir"]), n_samples=2,
                                        n_examples=2, output_dir=str(out_dir)),
                        kernel_name="python3", progress_bar=False)
    cells = nbformat.read(executed, as_version=4).cells
    figures = sum("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", []))
    assert figures >= 3  # mean maps, top m/z bars, examples
    scores = json.loads((out_dir / "explain_scores.json").read_text())
    assert scores and set(scores) <= set(LABELS)
    for entry in scores.values():
        # a score is left out where no sample had any attribution (a CAM zero everywhere)
        assert entry and set(entry) <= set(explain.SCORE_KEYS)
        assert all(0 <= value <= 1 for value in entry.values())
    # a 1-epoch tiny model's CAMs may be zero everywhere; occlusion always measures something
    assert any({"occlusion_share", "occlusion_chance_share", "top5_hit_rate"} <= set(entry)
               for entry in scores.values()), scores
    assert all(("gradcam_share" in entry) == ("chance_share" in entry)
               for entry in scores.values())
