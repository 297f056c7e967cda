"""The generator's command line: ``python -m lib.synthetic OUT_DIR --profile small --seed 0
[--shift S] [--limit N] [--workers N] [--truth-only] [--force]`` (lib.synthetic.folder writes)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from lib.core.schema import SPLITS
from lib.synthetic.folder import (
    MAX_SHIFT,
    TEST_LABELS,
    FolderRefusedError,
    check_settings,
    generate,
    generator_settings,
    write_truth,
)
from lib.synthetic.profiles import PROFILES
from lib.synthetic.space import NotEnoughSpaceError
from lib.synthetic.truth import TRUTH_FILE


def main(argv: list[str] | None = None) -> None:
    """Command line: write a synthetic folder (or only its truth.csv) and say what was written.
    Bad settings (and --truth-only on a folder without metadata.csv) exit with status 2, a
    refused folder with status 1, before anything is written."""
    parser = argparse.ArgumentParser(prog="python -m lib.synthetic",
                                     description="Write a synthetic competition-format folder.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="small")
    parser.add_argument("--seed", type=int, default=0, help="a non-negative integer")
    parser.add_argument("--shift", type=float, default=None,
                        help=f"strength of the train-to-test shift of the test split, 0 to "
                             f"{MAX_SHIFT:g} (default: the profile's; 0: an i.i.d. test split)")
    parser.add_argument("--limit", type=int, default=None,
                        help="write only the first N samples (N >= 1)")
    parser.add_argument("--workers", type=int, default=1, help="processes (output is identical)")
    parser.add_argument("--truth-only", action="store_true",
                        help="only add truth.csv and test_labels.csv to a folder written earlier "
                             "with these settings (the shift: the folder's, unless --shift)")
    parser.add_argument("--force", action="store_true",
                        help="replace OUT_DIR and everything in it when the generator did not "
                             "make it with these settings")
    args = parser.parse_args(argv)
    try:
        check_settings(args.profile, args.seed, args.limit, args.workers, args.shift)
    except ValueError as error:
        parser.error(str(error))
    if args.truth_only:
        if not (args.out_dir / "metadata.csv").is_file():
            parser.error(f"{args.out_dir}: no metadata.csv; --truth-only adds truth.csv to a "
                         f"folder the generator wrote earlier (leave it out to write one)")
        try:
            path = write_truth(args.out_dir, args.profile, args.seed, args.workers, args.shift)
        except FolderRefusedError as error:
            parser.exit(1, f"error: {error}\n")
        print(f"wrote {path}: {sum(1 for _ in open(path)) - 1} rows, and "
              f"{path.parent / TEST_LABELS}")
        return
    occupied = args.out_dir.is_dir() and any(args.out_dir.iterdir())
    try:
        out = generate(args.out_dir, args.profile, args.seed, args.limit, args.workers,
                       force=args.force, shift=args.shift, progress=True)
    except FolderRefusedError as error:
        parser.exit(1, f"error: {error}\n")
    except NotEnoughSpaceError as error:
        parser.exit(2, f"error: {error}\n")
    metadata = pd.read_csv(out / "metadata.csv")
    size = sum((out / p).stat().st_size for p in metadata["features_path"])
    counts = metadata["split"].value_counts().reindex(SPLITS, fill_value=0)
    truth = f" and {TRUTH_FILE}" if (out / TRUTH_FILE).is_file() else f", no {TRUTH_FILE}"
    done = ("kept (made earlier with these settings)" if occupied and not args.force
            else "wrote")
    shift = generator_settings(out)["shift"]
    print(f"{done} {out}: profile={args.profile} seed={args.seed} shift={shift:g} "
          + " ".join(f"{s}={n}" for s, n in counts.items())
          + f", {f'{size / 1e9:.2f} GB' if size >= 1e9 else f'{size / 1e6:.1f} MB'} of runs"
          + truth)
