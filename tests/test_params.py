"""Every params file sets only parameters its notebook has; plans point at real params files.

params/features_*.yaml are for notebooks/03b_train_features.ipynb, the others for 03_train."""

from __future__ import annotations

from pathlib import Path

import papermill as pm
import pytest
import timm
import torch
import yaml

from lib.core.paths import REPO_ROOT

PARAMS = sorted((REPO_ROOT / "params").glob("*.yaml"))
PLANS = sorted((REPO_ROOT / "params" / "plans").glob("*.yaml"))
NOTEBOOK_PARAMETERS = {name: set(pm.inspect_notebook(str(REPO_ROOT / "notebooks" / name)))
                       for name in ("03_train.ipynb", "03b_train_features.ipynb")}


def notebook_of(params_name: str) -> str:
    """The training notebook a params file is for."""
    return "03b_train_features.ipynb" if params_name.startswith("features_") else "03_train.ipynb"


def test_there_are_params_for_every_reference_configuration():
    names = {p.stem for p in PARAMS}
    for stage in ("3a", "3c"):
        for config in ("302_cls3_normM", "303_cls3_normT", "304_cls3_normM_mix01",
                       "307_cls3_normT_mix01", "313_flatM_normT_mix01"):
            assert f"{stage}_{config}" in names
    assert {"hrnet_s3", "demo"} <= names


@pytest.mark.parametrize("path", PARAMS, ids=lambda p: p.name)
def test_params_keys_are_notebook_parameters(path: Path):
    values = yaml.safe_load(path.read_text())
    notebook = notebook_of(path.name)
    unknown = set(values) - NOTEBOOK_PARAMETERS[notebook]
    assert not unknown, f"{path.name}: not parameters of {notebook}: {sorted(unknown)}"
    assert values["name"] == path.stem


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.name)
def test_plans_reference_existing_params(path: Path):
    plan = yaml.safe_load(path.read_text())
    assert plan["runs"]
    for run in plan["runs"]:
        assert {"params", "backbone", "seed"} <= set(run) <= {"params", "backbone", "seed",
                                                             "notebook"}
        assert (REPO_ROOT / "params" / run["params"]).is_file()
        assert run.get("notebook", "03_train.ipynb") == notebook_of(run["params"])


@pytest.mark.slow  # builds every backbone of the reference plans
@pytest.mark.parametrize("plan_name", ["submitted11", "final16"])
def test_reference_plans_name_backbones_that_exist_and_build(plan_name: str):
    plan = yaml.safe_load((REPO_ROOT / "params" / "plans" / f"{plan_name}.yaml").read_text())
    from lib.models.cnn import build_model

    built = set()
    for run in plan["runs"]:
        params = yaml.safe_load((REPO_ROOT / "params" / run["params"]).read_text())
        key = (run["backbone"], params["head"])
        assert timm.models.get_pretrained_cfg(run["backbone"]).hf_hub_id, key
        if key not in built:
            with torch.device("meta"):  # shapes only: no memory, no weights
                build_model(run["backbone"], params["head"], m_bins=params["m_bins"])
            built.add(key)


def test_submitted_plan_is_the_scored_entry():
    plan = yaml.safe_load((REPO_ROOT / "params" / "plans" / "submitted11.yaml").read_text())
    runs = [(r["params"][:-5], r["backbone"], r["seed"]) for r in plan["runs"]]
    assert len(runs) == 11 and len(set(runs)) == 11
    assert all(params.startswith("3a_") for params, _, _ in runs)
    assert ("3a_302_cls3_normM", "regnety_040.ra3_in1k", 4) in runs
    assert ("3a_313_flatM_normT_mix01", "regnetx_320.pycls_in1k", 5) in runs
    assert plan["folds"] == [0, 1, 2, 3, 4]


def test_final_plan_is_the_post_competition_rerun():
    plan = yaml.safe_load((REPO_ROOT / "params" / "plans" / "final16.yaml").read_text())
    runs = [(r["params"][:-5], r["backbone"].split(".")[0], r["seed"]) for r in plan["runs"]]
    assert len(runs) == 16 and len(set(runs)) == 16
    assert ("3a_313_flatM_normT_mix01", "regnetx_320", 5) in runs
    assert ("3c_307_cls3_normT_mix01", "dpn98", 9) in runs
    assert plan["folds"] == [0, 1, 2, 3, 4]
