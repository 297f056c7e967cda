"""Check a synthetic folder against the real data's reference scores.

Simulates the train split in memory (or reads a generated folder's), then prints the 5-fold
CV aggregated log loss on the train split of the prior-only predictor (real data: 0.2967) and
of the organisers' benchmark (real data: 0.1773), per-label losses of both, and label marginals
per split against targets.

Then, for each train-to-test shift strength of ``--shifts``, the test loss of both fitted on the
whole train split, and the benchmark's test loss over its OOF loss (real data: ~0.228 / 0.177
= ~1.29). The train split is the same for every shift; the test runs of each shift are
simulated in memory (not written), so one folder serves every strength.

Usage: python scripts/calibrate_synthetic.py [--profile small] [--seed 0] [--shifts 0,1]
           [--p-weak P] [--confuser-rate R] [--data-dir D] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from bench_common import describe_machine, utc_now, write_result

from lib.core.metrics import aggregated_log_loss, per_label_log_loss
from lib.core.schema import LABELS, SPLITS
from lib.data.folds import make_folds
from lib.ensemble.baselines import (
    benchmark_features,
    feature_matrix,
    logistic_benchmark_oof,
    logistic_benchmark_predict,
    prior_oof,
    prior_predictions,
)
from lib.synthetic import (
    DERIVATIZED_FRACTION,
    PROFILES,
    Profile,
    expected_prevalence,
    sample_table,
    sample_tasks,
    simulate_sample,
    test_derivatized_fraction,
)
from lib.synthetic.profiles import check_profile

# Real train prevalence per label (public train_labels.csv).
TARGET_PREVALENCE = (0.098, 0.328, 0.142, 0.119, 0.022, 0.038, 0.032, 0.026, 0.145)


def print_marginals(profile: Profile | str, seed: int, shift: float) -> None:
    """Label prevalence and derivatized share per split (all drawn labels, test included, under
    a train-to-test shift of ``shift``), each beside its target ("*": what the label model
    aims at for that split's derivatized share) and the real train prevalence."""
    table = sample_table(profile, seed, shift)
    columns = {}
    for split in SPLITS:
        part = table[table["split"] == split]
        fraction = (test_derivatized_fraction(shift) if split == "test"
                    else DERIVATIZED_FRACTION[split])
        columns[split] = [*part[list(LABELS)].mean(), part["derivatized"].mean()]
        columns[f"{split}*"] = [*expected_prevalence(fraction), fraction]
    columns["real train"] = [*TARGET_PREVALENCE, DERIVATIZED_FRACTION["train"]]
    print(pd.DataFrame(columns, index=[*LABELS, "derivatized"]).round(3).to_string())


def _simulated_features(task) -> np.ndarray:
    return benchmark_features(simulate_sample(task)[0])


def simulated_split(profile: Profile, seed: int, shift: float, split: str
                    ) -> tuple[np.ndarray, pd.DataFrame]:
    """(benchmark features (m, f), the split's rows of the sample table: sample_id, the 9
    labels, ...) of one split of a folder of this profile, seed and shift, simulated in memory
    (nothing written). Train and val rows are the same for every shift."""
    table = sample_table(profile, seed, shift)
    rows = table[table["split"] == split].reset_index(drop=True)
    tasks = sample_tasks(Path("."), table[table["split"] == split], profile, seed, shift)
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        features = np.stack(list(pool.map(_simulated_features, tasks, chunksize=4)))
    return features, rows


def folder_train_split(data_dir: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """(benchmark features (n, f), train_labels.csv) of a generated folder's train split."""
    train = pd.read_csv(data_dir / "train_labels.csv")
    metadata = pd.read_csv(data_dir / "metadata.csv").set_index("sample_id")
    paths = [data_dir / p for p in metadata.loc[train["sample_id"], "features_path"]]
    return feature_matrix(paths), train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="a generated folder of this profile and seed: its train split is "
                             "read from the CSVs (default: simulated in memory)")
    parser.add_argument("--profile", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--C", type=float, default=10.0, help="benchmark inverse L1 strength")
    parser.add_argument("--shifts", default=None,
                        help="comma-separated shift strengths to score on the test split "
                             "(default: 0 and the profile's)")
    parser.add_argument("--p-weak", type=float, default=None,
                        help="try another Profile.p_weak (default: the profile's)")
    parser.add_argument("--confuser-rate", type=float, default=None,
                        help="try another Profile.confuser_rate (default: the profile's)")
    parser.add_argument("--with-val", action="store_true",
                        help="05's protocol: the val split trains in every fold and in the "
                             "test fit (default: the train split alone)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the figures to this JSON file, a benchmark document "
                             "(scripts/render_benchmarks.py renders benchmarks/*.json)")
    args = parser.parse_args(argv)
    machine, started = describe_machine(), utc_now()
    overrides = {k: v for k, v in (("p_weak", args.p_weak),
                                   ("confuser_rate", args.confuser_rate)) if v is not None}
    profile = check_profile(dataclasses.replace(PROFILES[args.profile], **overrides))
    print(f"profile {args.profile} {overrides or ''}: p_weak {profile.p_weak}, "
          f"confuser_rate {profile.confuser_rate}, shift {profile.shift}")

    start = time.perf_counter()
    if args.data_dir is not None:
        features, train = folder_train_split(args.data_dir)
    else:
        features, train = simulated_split(profile, args.seed, profile.shift, "train")
    print(f"benchmark features {features.shape} in {time.perf_counter() - start:.1f} s")

    labels = train[list(LABELS)].to_numpy()
    folds = make_folds(train[["sample_id", *LABELS]])["fold"].to_numpy()
    extra_features, extra_labels = np.zeros((0, features.shape[1])), np.zeros((0, len(LABELS)))
    if args.with_val:
        extra_features, val = simulated_split(profile, args.seed, profile.shift, "val")
        extra_labels = val[list(LABELS)].to_numpy()
    prior = prior_oof(labels, folds, extra_labels)
    bench = logistic_benchmark_oof(features, labels, folds, C=args.C,
                                   extra_features=extra_features, extra_labels=extra_labels)
    print(f"\n5-fold CV aggregated log loss on {len(train)} train samples "
          f"(+ {len(extra_labels)} val samples in every fold's training; "
          "real data: prior 0.2967, benchmark 0.1773)")
    print(f"  prior-only : {aggregated_log_loss(labels, prior):.4f}")
    print(f"  benchmark  : {aggregated_log_loss(labels, bench):.4f}")
    losses = pd.DataFrame({"prior": per_label_log_loss(labels, prior),
                           "benchmark": per_label_log_loss(labels, bench),
                           "positives": labels.sum(axis=0)}, index=list(LABELS))
    print(losses.round(4).to_string())
    print(f"\nlabel marginals per split (test: at the profile's shift {profile.shift})")
    print_marginals(profile, args.seed, profile.shift)

    shifts = ([float(v) for v in args.shifts.split(",")] if args.shifts
              else [0.0, profile.shift])
    oof_prior, oof_bench = aggregated_log_loss(labels, prior), aggregated_log_loss(labels, bench)
    rows = []
    for shift in shifts:
        start = time.perf_counter()
        test_features, test = simulated_split(profile, args.seed, shift, "test")
        test_labels = test[list(LABELS)].to_numpy()
        fit_x = np.concatenate([features, extra_features])
        fit_y = np.concatenate([labels, extra_labels])
        test_prior = aggregated_log_loss(test_labels, prior_predictions(fit_y, len(test_labels)))
        test_bench = aggregated_log_loss(test_labels, logistic_benchmark_predict(
            fit_x, fit_y, test_features, C=args.C))
        rows.append({"shift": shift, "test derivatized": test_derivatized_fraction(shift),
                     "prior OOF": oof_prior, "prior test": test_prior,
                     "benchmark OOF": oof_bench, "benchmark test": test_bench,
                     "test / OOF": test_bench / oof_bench,
                     "seconds": time.perf_counter() - start})
    print(f"\ntrain-to-test shift (fitted on the {len(train)} train samples; test: "
          f"{len(test_labels)} samples; real data: benchmark test / OOF ~1.29)")
    print(pd.DataFrame(rows).round(4).to_string(index=False))
    if args.json is not None:
        figures = {"profile": args.profile, "seed": args.seed,
                   "settings": dataclasses.asdict(profile), "n_train": len(train),
                   "n_val_in_training": len(extra_labels),
                   "real_data": {"prior_oof": 0.2967, "benchmark_oof": 0.1773,
                                 "benchmark_test_over_oof": 1.29},
                   "shifts": [{k: round(v, 4) for k, v in row.items()} for row in rows]}
        print(f"wrote {write_result(args.json, 'calibration', figures, machine, started)}")


if __name__ == "__main__":
    main()
