"""Model diversity and time warp on one data folder, same folds for everything: the table of
issue 9 (OOF aggregated log loss and per-run times).

    .venv/bin/python scripts/measure_diversity.py --train     # run the sweeps, then the table
    .venv/bin/python scripts/measure_diversity.py             # the table from finished runs

--train runs, with lib.sweep and two workers: params/plans/measure_families.yaml (CNN demo
configurations + the feature family) and params/plans/measure_timewarp.yaml (the demo CNN on
seeds 0 and 1) into <runs>/tw0, and measure_timewarp.yaml again with -p time_warp W into
<runs>/tw<W> for each W. Finished runs are skipped, so it can be stopped and started again.
Ensembles are chosen as 05_ensemble does (grow-by-one and remove-by-one, the better of the two).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.core.metrics import aggregated_log_loss  # noqa: E402
from lib.core.paths import dataset_work_dir, project_path  # noqa: E402
from lib.data.dataset import load_competition  # noqa: E402
from lib.data.folds import load_or_make_folds  # noqa: E402
from lib.ensemble import selection  # noqa: E402
from lib.ensemble.collect import collect_models  # noqa: E402
from lib.runs.plans import expand_plan, load_plan  # noqa: E402
from lib.runs.run_folder import is_done, model_key, read_metrics  # noqa: E402
from lib.train.checkpoint import check_model_file  # noqa: E402

FAMILIES = "params/plans/measure_families.yaml"
TIME_WARP = "params/plans/measure_timewarp.yaml"
CNN_MODELS = ("demo/", "demo_flatm/")


def sweep(plan: str, runs_dir: Path, args, *overrides: str) -> None:
    command = [sys.executable, "-m", "lib.sweep", plan, "--workers", str(args.workers),
               "--data-dir", args.data_dir, "--cache-dir", args.cache_dir,
               "--runs-dir", str(runs_dir), "--no-progress", *overrides]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=False)


def collect(plan: str, runs_dir: Path, folds, test_ids):
    """Finished models of the plan and the mean fit seconds of each model's folds."""
    specs = expand_plan(load_plan(plan), runs_dir=runs_dir)
    collected = collect_models([s.run_dir for s in specs], folds, test_ids,
                               check_model=check_model_file)
    seconds = {}
    for spec in specs:
        key = model_key(spec.run_dir)
        if key in collected.names:
            seconds.setdefault(key, []).append(read_metrics(spec.run_dir)["fit_seconds"])
    return collected, {k: float(np.mean(v)) for k, v in seconds.items()}


def fold_losses(plan: str, runs_dir: Path) -> dict[tuple, float]:
    """{(name, seed, fold): the run's OOF loss} of the plan's finished runs."""
    return {(spec.name, spec.seed, spec.fold): read_metrics(spec.run_dir)["best_oof_loss"]
            for spec in expand_plan(load_plan(plan), runs_dir=runs_dir) if is_done(spec.run_dir)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data/synthetic_small")
    parser.add_argument("--cache-dir", default="cache")
    parser.add_argument("--runs", default="runs/measure", help="root of the measurement runs")
    parser.add_argument("--warps", default="0.1,0.2", help="time_warp values besides 0")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--train", action="store_true", help="run the sweeps first")
    args = parser.parse_args(argv)
    runs = project_path(args.runs)
    warps = [w for w in args.warps.split(",") if w]
    if args.train:
        sweep(FAMILIES, runs / "tw0", args)
        sweep(TIME_WARP, runs / "tw0", args)
        for w in warps:
            sweep(TIME_WARP, runs / f"tw{w}", args, "-p", "time_warp", w)

    data = load_competition(project_path(args.data_dir))
    folds = load_or_make_folds(dataset_work_dir(args.cache_dir, args.data_dir),
                               data.train_labels)
    test_ids = data.split_ids("val", "test")
    labels = data.labels.loc[folds["sample_id"]].to_numpy()
    rows = []  # (what, OOF loss, seconds per run, detail)

    models, seconds = collect(FAMILIES, runs / "tw0", folds, test_ids)
    for problem in models.problems:
        print("left out:", problem)
    for name, probs in zip(models.names, models.oof_probs):
        rows.append((f"alone: {name}", aggregated_log_loss(labels, probs), seconds[name], ""))
    groups = {"CNN demo ensemble (demo + demo_flatm)":
              [i for i, n in enumerate(models.names) if n.startswith(CNN_MODELS)],
              "ensemble over all families": list(range(len(models.names)))}
    for what, members in groups.items():
        if not members:
            continue
        picked = selection.select(models.oof_probs, labels, members).chosen
        loss = aggregated_log_loss(labels, selection.mean_logits(models.oof_probs[picked]))
        rows.append((what, loss, sum(seconds[models.names[i]] for i in picked),
                     "fit s: sum over the chosen: " + ", ".join(models.names[i] for i in picked)))

    for w in ["0", *warps]:
        warped, seconds = collect(TIME_WARP, runs / f"tw{w}", folds, test_ids)
        for name, probs in zip(warped.names, warped.oof_probs):
            rows.append((f"time_warp {w}: {name}", aggregated_log_loss(labels, probs),
                         seconds[name], ""))
        if warped.names:
            losses = [aggregated_log_loss(labels, p) for p in warped.oof_probs]
            seeds_together = aggregated_log_loss(labels, selection.mean_logits(warped.oof_probs))
            rows.append((f"time_warp {w}: mean of {len(losses)} seeds", float(np.mean(losses)),
                         float(np.mean(list(seconds.values()))),
                         f"seed spread {min(losses):.4f}-{max(losses):.4f}; the seeds' logit "
                         f"average {seeds_together:.4f}"))

    baseline = fold_losses(TIME_WARP, runs / "tw0")
    for w in warps:
        warped = fold_losses(TIME_WARP, runs / f"tw{w}")
        pairs = [warped[k] - baseline[k] for k in sorted(set(warped) & set(baseline))]
        if pairs:
            spread = np.std(pairs, ddof=1) if len(pairs) > 1 else 0.0
            rows.append((f"time_warp {w} minus off, paired folds", float(np.mean(pairs)), np.nan,
                         f"{sum(d < 0 for d in pairs)} of {len(pairs)} (seed, fold) runs better; "
                         f"sd of the differences {spread:.4f}"))

    print("| what | OOF aggregated log loss | fit s per run (mean over folds) | detail |")
    print("|---|---|---|---|")
    for what, loss, secs, detail in rows:
        seconds_text = "" if np.isnan(secs) else f"{secs:.0f}"
        print(f"| {what} | {loss:+.4f} | {seconds_text} | {detail} |" if "minus" in what else
              f"| {what} | {loss:.4f} | {seconds_text} | {detail} |")


if __name__ == "__main__":
    main()
