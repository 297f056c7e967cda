"""Check a synthetic folder against the real data's reference scores.

Generates the folder if it is missing, then prints the 5-fold CV aggregated log loss on the
train split of the prior-only predictor (real data: 0.2967) and of the organisers' benchmark
(real data: 0.1773), per-label losses of both, and label marginals per split against targets.

Usage: python scripts/calibrate_synthetic.py [--data-dir D] [--profile small] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

from lib.baselines import feature_matrix, logistic_benchmark_oof, prior_oof
from lib.folds import make_folds
from lib.metrics import aggregated_log_loss, per_label_log_loss
from lib.schema import LABELS, SPLITS
from lib.synthetic import DERIVATIZED_FRACTION, expected_prevalence, generate, sample_table

# Real train prevalence per label (public train_labels.csv).
TARGET_PREVALENCE = (0.098, 0.328, 0.142, 0.119, 0.022, 0.038, 0.032, 0.026, 0.145)


def print_marginals(profile: str, seed: int) -> None:
    """Label prevalence and derivatized share per split (all drawn labels, test included),
    each beside its target ("*": what the label model aims at for that split's derivatized
    share) and the real train prevalence."""
    table = sample_table(profile, seed)
    columns = {}
    for split in SPLITS:
        part = table[table["split"] == split]
        fraction = DERIVATIZED_FRACTION[split]
        columns[split] = [*part[list(LABELS)].mean(), part["derivatized"].mean()]
        columns[f"{split}*"] = [*expected_prevalence(fraction), fraction]
    columns["real train"] = [*TARGET_PREVALENCE, DERIVATIZED_FRACTION["train"]]
    print(pd.DataFrame(columns, index=[*LABELS, "derivatized"]).round(3).to_string())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="default: data/synthetic_<profile> (generated when missing)")
    parser.add_argument("--profile", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--C", type=float, default=10.0, help="benchmark inverse L1 strength")
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
    print("\nlabel marginals per split")
    print_marginals(args.profile, args.seed)


if __name__ == "__main__":
    main()
