"""Check a synthetic folder against the real data's reference scores.

Generates the folder if it is missing, then prints the 5-fold CV aggregated log loss on the
train split of the prior-only predictor (real data: 0.2967) and of the organisers' benchmark
(real data: 0.1773), per-label losses of both, and label marginals per split against targets.

Then, for each train-to-test shift strength of ``--shifts``, the test loss of both fitted on the
whole train split, and the benchmark's test loss over its OOF loss (real data: ~0.228 / 0.177
= ~1.29). The train split is the same for every shift; the test runs of each shift are
simulated in memory (not written), so one folder serves every strength.

Usage: python scripts/calibrate_synthetic.py [--data-dir D] [--profile small] [--seed 0]
           [--shifts 0,1]
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

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
    expected_prevalence,
    generate,
    sample_table,
    sample_tasks,
    simulate_sample,
    test_derivatized_fraction,
)

# Real train prevalence per label (public train_labels.csv).
TARGET_PREVALENCE = (0.098, 0.328, 0.142, 0.119, 0.022, 0.038, 0.032, 0.026, 0.145)


def print_marginals(profile: str, seed: int, shift: float) -> None:
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


def shifted_test_split(profile: str, seed: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """(benchmark features (m, f), labels (m, 9)) of the test split of a folder of this profile,
    seed and shift, simulated in memory."""
    table = sample_table(profile, seed, shift)
    test = table[table["split"] == "test"]
    tasks = sample_tasks(Path("."), test, PROFILES[profile], seed, shift)
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        features = np.stack(list(pool.map(_simulated_features, tasks, chunksize=4)))
    return features, test[list(LABELS)].to_numpy()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="default: data/synthetic_<profile> (generated when missing)")
    parser.add_argument("--profile", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--C", type=float, default=10.0, help="benchmark inverse L1 strength")
    parser.add_argument("--shifts", default=None,
                        help="comma-separated shift strengths to score on the test split "
                             "(default: 0 and the profile's)")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or Path("data") / f"synthetic_{args.profile}"
    if not (data_dir / "metadata.csv").exists():
        start = time.perf_counter()
        generate(data_dir, args.profile, args.seed, workers=os.cpu_count() or 1)
        print(f"generated {data_dir} in {time.perf_counter() - start:.1f} s")

    train = pd.read_csv(data_dir / "train_labels.csv")
    metadata = pd.read_csv(data_dir / "metadata.csv").set_index("sample_id")
    paths = [data_dir / p for p in metadata.loc[train["sample_id"], "features_path"]]
    start = time.perf_counter()
    features = feature_matrix(paths)
    print(f"benchmark features {features.shape} in {time.perf_counter() - start:.1f} s")

    labels = train[list(LABELS)].to_numpy()
    folds = make_folds(train)["fold"].to_numpy()
    prior = prior_oof(labels, folds)
    bench = logistic_benchmark_oof(features, labels, folds, C=args.C)
    print(f"\n5-fold CV aggregated log loss on {len(train)} train samples "
          "(real data: prior 0.2967, benchmark 0.1773)")
    print(f"  prior-only : {aggregated_log_loss(labels, prior):.4f}")
    print(f"  benchmark  : {aggregated_log_loss(labels, bench):.4f}")
    losses = pd.DataFrame({"prior": per_label_log_loss(labels, prior),
                           "benchmark": per_label_log_loss(labels, bench),
                           "positives": labels.sum(axis=0)}, index=list(LABELS))
    print(losses.round(4).to_string())
    print(f"\nlabel marginals per split (test: at the profile's shift "
          f"{PROFILES[args.profile].shift})")
    print_marginals(args.profile, args.seed, PROFILES[args.profile].shift)

    shifts = ([float(v) for v in args.shifts.split(",")] if args.shifts
              else [0.0, PROFILES[args.profile].shift])
    oof_prior, oof_bench = aggregated_log_loss(labels, prior), aggregated_log_loss(labels, bench)
    rows = []
    for shift in shifts:
        start = time.perf_counter()
        test_features, test_labels = shifted_test_split(args.profile, args.seed, shift)
        test_prior = aggregated_log_loss(test_labels, prior_predictions(labels, len(test_labels)))
        test_bench = aggregated_log_loss(test_labels, logistic_benchmark_predict(
            features, labels, test_features, C=args.C))
        rows.append({"shift": shift, "test derivatized": test_derivatized_fraction(shift),
                     "prior OOF": oof_prior, "prior test": test_prior,
                     "benchmark OOF": oof_bench, "benchmark test": test_bench,
                     "test / OOF": test_bench / oof_bench,
                     "seconds": time.perf_counter() - start})
    print(f"\ntrain-to-test shift (fitted on the {len(train)} train samples; test: "
          f"{len(test_labels)} samples; real data: benchmark test / OOF ~1.29)")
    print(pd.DataFrame(rows).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
