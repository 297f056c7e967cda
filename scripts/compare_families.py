"""Every model family on one data folder, same folds: each model's OOF and test loss and fit
time per fold, the mean over seeds per configuration, the cross-family ensemble (chosen as
05_ensemble chooses) with its members, and that ensemble selected again without each family.

    .venv/bin/python scripts/compare_families.py --train   # run the plan's sweep, then the tables
    .venv/bin/python scripts/compare_families.py           # the tables from finished runs

--train runs lib.sweep on the plan (default params/plans/families.yaml) with --workers workers;
finished runs are skipped. Test losses need the data folder's hidden test_labels.csv
(synthetic data); without it those columns stay empty. Fit seconds are each run's own
(metrics.json: fit_seconds), so they depend on what else the machine was doing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.core import families
from lib.core.metrics import aggregated_log_loss  # noqa: E402
from lib.core.paths import dataset_work_dir, project_path  # noqa: E402
from lib.data.dataset import load_competition  # noqa: E402
from lib.data.folds import load_or_make_folds  # noqa: E402
from lib.ensemble import collect, leaderboard, selection
from lib.runs.plans import expand_plan, load_plan  # noqa: E402
from lib.runs.run_folder import data_fingerprint, is_done, model_key, read_metrics  # noqa: E402
from lib.train.checkpoint import check_model_file  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default="params/plans/families.yaml")
    parser.add_argument("--data-dir", default="data/synthetic_small")
    parser.add_argument("--cache-dir", default="cache")
    parser.add_argument("--runs", default="runs/synthetic_small", help="the plan's runs_dir")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--train", action="store_true", help="run the plan's sweep first")
    args = parser.parse_args(argv)
    runs = project_path(args.runs)
    if args.train:
        command = [sys.executable, "-m", "lib.sweep", args.plan, "--workers", str(args.workers),
                   "--data-dir", args.data_dir, "--cache-dir", args.cache_dir,
                   "--runs-dir", str(runs), "--no-progress"]
        print("+", " ".join(command), flush=True)
        subprocess.run(command, check=False)

    data = load_competition(project_path(args.data_dir))
    folds = load_or_make_folds(dataset_work_dir(args.cache_dir, args.data_dir),
                               data.train_labels)
    train_ids, test_ids = folds["sample_id"].tolist(), data.split_ids("val", "test")
    labels = data.labels.loc[train_ids].to_numpy()
    specs = expand_plan(load_plan(args.plan), runs_dir=runs)
    models = collect.collect_models([s.run_dir for s in specs], folds, test_ids,
                                     fingerprint=data_fingerprint(data),
                                     check_model=check_model_file)
    for problem in models.problems:
        print("left out:", problem)
    truth, problem = leaderboard.load_test_labels(project_path(args.data_dir),
                                                  data.split_ids("test"))
    if problem:
        print("test labels not used:", problem)
    rows = [test_ids.index(s) for s in data.split_ids("test")]

    def test_loss(probs: np.ndarray) -> float:
        return np.nan if truth is None else aggregated_log_loss(truth.to_numpy(), probs[rows])

    seconds: dict[str, list[float]] = {}
    for spec in specs:
        key = model_key(spec.run_dir)
        if is_done(spec.run_dir):
            seconds.setdefault(key, []).append(read_metrics(spec.run_dir)["fit_seconds"])

    print("\n| model | family | OOF | last-epoch OOF | test | fit s per fold |")
    print("|---|---|---|---|---|---|")
    by_config: dict[str, list[tuple[float, float]]] = {}
    for i, name in enumerate(models.names):
        oof = aggregated_log_loss(labels, models.oof_probs[i])
        last = models.oof_last_probs[i]
        last_text = f"{aggregated_log_loss(labels, last):.4f}" if np.isfinite(last).all() else ""
        test = test_loss(models.test_probs[i])
        by_config.setdefault(name.rsplit("/", 1)[0], []).append((oof, test))
        print(f"| {name} | {families.model_family(name)} | {oof:.4f} | {last_text} | "
              f"{test:.4f} | {np.mean(seconds[name]):.1f} |")

    print("\n| configuration | seeds | mean OOF | mean test |")
    print("|---|---|---|---|")
    for config, pairs in by_config.items():
        oofs, tests = zip(*pairs)
        print(f"| {config} | {len(pairs)} | {np.mean(oofs):.4f} | {np.mean(tests):.4f} |")

    def ensemble_row(what: str, picked: list[int]) -> None:
        oof = aggregated_log_loss(labels, selection.mean_logits(models.oof_probs[picked]))
        test = test_loss(selection.mean_logits(models.test_probs[picked]))
        members = ", ".join(models.names[i] for i in picked)
        print(f"| {what} | {oof:.4f} | {test:.4f} | {members} |")

    print("\n| ensemble (05's selection) | OOF | test | members |")
    print("|---|---|---|---|")
    chosen = selection.select(models.oof_probs, labels)
    ensemble_row("every family", chosen.chosen)
    for family, picked in selection.without_each_family(models.names, models.oof_probs,
                                                        labels).items():
        if picked is not None:
            ensemble_row(f"without {family}", picked.chosen)
    for family in dict.fromkeys(map(families.model_family, models.names)):
        only = [i for i, n in enumerate(models.names) if families.model_family(n) == family]
        ensemble_row(f"{family} only", selection.select(models.oof_probs, labels, only).chosen)


if __name__ == "__main__":
    main()
