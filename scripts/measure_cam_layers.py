"""Which CAM method and target layer answer "which ions, when": every CNN of a plan, every
CAM method and every stage of its backbone, scored against the synthetic truth.

    python scripts/measure_cam_layers.py --plan params/plans/demo.yaml \
        --runs-dir runs/synthetic_small --data-dir data/synthetic_small --samples 4

For each (model, method, layer) it prints, per label with scored samples, the CAM's share on
the label's true ions inside their windows against the chance share of the same region placed
at random (lib.explain), and how many labels reach two times chance. The defaults of
lib.explain.CAM_DEFAULTS come from this table. Layer "last" is the backbone's last feature map,
"input" the model input itself (gradient x input for HiResCAM and LayerCAM).
"""

from __future__ import annotations

import argparse
import re
import time

import numpy as np
import pandas as pd

from lib.core.paths import dataset_work_dir, project_path
from lib.data.dataset import load_competition, run_span
from lib.data.folds import load_or_make_folds
from lib.data.images import cache_path, load_image_cache
from lib.explain import cam, explainer, scoring
from lib.runs.plans import expand_plan, load_plan
from lib.synthetic import read_truth
from lib.train.predict import load_run_model

STAGE = re.compile(r"backbone\.(blocks\.\d+|layer\d|stages\.\d+)")


def stage_layers(run_dir) -> list[str]:
    """"" (the last feature map), the backbone's stages (timm's blocks.N, layerN, stages.N)
    last to first, the input convolution and the model input (cam.INPUT_LAYER)."""
    model, _ = load_run_model(run_dir, "cpu")
    stages = [name for name, _ in model.named_modules() if STAGE.fullmatch(name)]
    return ["", *reversed(stages), "input_conv", cam.INPUT_LAYER]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default="params/plans/demo.yaml")
    parser.add_argument("--runs-dir", default="runs/synthetic_small")
    parser.add_argument("--data-dir", default="data/synthetic_small")
    parser.add_argument("--cache-dir", default="cache")
    parser.add_argument("--samples", type=int, default=4, help="positive OOF samples per label")
    parser.add_argument("--methods", default="gradcam,hirescam,layercam")
    parser.add_argument("--layers", default="", help="comma-separated target layers to try "
                        "('last': the last feature map; default: every stage)")
    parser.add_argument("--models", default="", help="comma-separated model keys (default: "
                        "every CNN of the plan)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="", help="also write the per-label table as CSV")
    args = parser.parse_args(argv)

    data_dir = project_path(args.data_dir)
    data = load_competition(data_dir)
    truth = read_truth(data_dir)
    if truth is None:
        raise SystemExit(f"{data_dir}: no truth.csv, nothing to measure against")
    folds = load_or_make_folds(dataset_work_dir(args.cache_dir, data_dir), data.train_labels)
    train_labels = data.labels.loc[data.split_ids("train")]
    hidden = scoring.hidden_positives(truth)
    paths = data.metadata.set_index("sample_id")["path"]
    folders = [spec.run_dir for spec in expand_plan(load_plan(args.plan),
                                                    runs_dir=project_path(args.runs_dir))]
    rows = []
    for name, fold_runs in explainer.group_runs(folders).items():
        if args.models and name not in args.models.split(","):
            continue
        finished = [d for d in fold_runs.values() if (d / "checkpoint.pt").is_file()]
        if not finished:
            continue  # a feature model, or nothing trained
        config = load_run_model(finished[0], "cpu")[1]
        size = (config["m_bins"], config["t_bins"])
        cache = load_image_cache(cache_path(dataset_work_dir(args.cache_dir, data_dir), *size))
        spans = {}
        for method in args.methods.split(","):
            layers = ([{"last": ""}.get(x, x) for x in args.layers.split(",")] if args.layers
                      else stage_layers(finished[0]))
            for layer in layers:
                started = time.perf_counter()
                result = explainer.explain_model(
                    name, fold_runs, cache, train_labels, folds, n_per_label=args.samples,
                    methods=["map"], cam_method=method, target_layer=layer, hidden=hidden,
                    seed=args.seed)
                if not result.maps:
                    print(f"{name} {method} {layer or 'last'}: {'; '.join(result.problems)}")
                    continue
                ids = {s for ids in result.picked.values() for s in ids}
                spans.update({s: run_span(paths[s])[:2] for s in ids - set(spans)})
                scored = scoring.score_explanations([result], truth, spans, *size, args.seed)
                seconds = time.perf_counter() - started
                ratios = scored.groupby("label")["map_share"].mean() / scored.groupby(
                    "label")["chance_share"].mean()
                print(f"{name} {method} {layer or 'last'}: {int((ratios >= 2).sum())} of "
                      f"{len(ratios)} labels at 2x chance or more, {seconds:.0f} s", flush=True)
                for label, group in scored.groupby("label"):
                    rows.append(dict(model=name, method=method, layer=layer or "last",
                                     label=label, samples=len(group),
                                     share=group["map_share"].mean(),
                                     chance=group["chance_share"].mean(), seconds=seconds))
    table = pd.DataFrame(rows)
    if table.empty:
        raise SystemExit("no CNN of the plan could be measured")
    table["ratio"] = table["share"] / table["chance"]
    if args.out:
        table.to_csv(args.out, index=False)
    summary = table.groupby(["model", "method", "layer"], sort=False).agg(
        labels=("label", "size"), at_2x=("ratio", lambda r: int((r >= 2).sum())),
        median_ratio=("ratio", "median"), share=("share", "mean"), chance=("chance", "mean"),
        seconds=("seconds", "first"))
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(summary.round(3).to_string())
        print()
        print(table.pivot_table(index=["model", "method", "layer"], columns="label",
                                values="ratio", sort=False).round(2).to_string())
    print(f"\nmean ratio over labels, per method and layer:\n"
          f"{table.groupby(['method', 'layer'])['ratio'].apply(np.nanmean).round(2)}")


if __name__ == "__main__":
    main()
