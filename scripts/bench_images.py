"""Preprocessing throughput: sample CSV -> 2D image, on full-size synthetic runs.

    python scripts/bench_images.py [--samples 24] [--workers 2] [--data-dir D] [--json PATH]

Generates the first N samples of the `full` synthetic profile (real file sizes) unless
--data-dir points at a competition folder, then times per sample:
  pandas   the plain pandas way (read_csv, filter, groupby-sum): the baseline
  lib      lib.data.images.sample_image (validated read, np.bincount), one process
  cache    lib.data.images.build_image_cache with --workers processes (what 02_preprocess runs)
  reuse    build_image_cache again with unchanged inputs (the cache is only read)

Prints a table and writes it, with the machine, date and command, to --json (default
benchmarks/bench_images.json; scripts/render_benchmarks.py renders it into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_common import add_json_option, default_json, describe_machine, utc_now, write_result

from lib.data.dataset import load_competition
from lib.data.images import build_image_cache, sample_image, sample_image_pandas
from lib.synthetic import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    add_json_option(parser, "bench_images")
    args = parser.parse_args()
    machine, date = describe_machine(), utc_now()
    generate_seconds = None

    with tempfile.TemporaryDirectory() as scratch:
        data_dir = args.data_dir
        if data_dir is None:
            data_dir = Path(scratch) / "full"
            started = time.perf_counter()
            generate(data_dir, profile="full", seed=args.seed, limit=args.samples)
            generate_seconds = time.perf_counter() - started
            print(f"generated {args.samples} full-size samples in {generate_seconds:.1f} s")
        metadata = load_competition(data_dir).metadata.head(args.samples)
        paths, flags = list(metadata["path"]), metadata["derivatized"].astype(bool).tolist()
        megabytes = sum(p.stat().st_size for p in paths) / 2**20
        rows = sum(sum(1 for _ in open(p)) - 1 for p in paths)
        print(f"{len(paths)} samples, {rows / len(paths):,.0f} rows and "
              f"{megabytes / len(paths):.1f} MB per sample on average; {os.cpu_count()} CPUs")

        results = {}
        for name, render in (("pandas", sample_image_pandas), ("lib", sample_image)):
            started = time.perf_counter()
            images = [render(p, f) for p, f in zip(paths, flags)]
            results[name] = (time.perf_counter() - started, images)
        same = all(np.array_equal(a, b) for a, b in zip(results["pandas"][1], results["lib"][1]))

        cache_file = Path(scratch) / "cache.npz"
        started = time.perf_counter()
        build_image_cache(metadata, cache_file, workers=args.workers, progress=False)
        cache_seconds = time.perf_counter() - started
        started = time.perf_counter()
        build_image_cache(metadata, cache_file, workers=args.workers, progress=False)
        reuse_seconds = time.perf_counter() - started

    n = len(paths)
    methods = []
    print(f"{'method':<34}{'samples/s':>10}{'s/sample':>10}")
    for label, seconds in (("pandas groupby (1 process)", results["pandas"][0]),
                           ("lib.data.images.sample_image (1 process)", results["lib"][0]),
                           (f"build_image_cache ({args.workers} workers)", cache_seconds),
                           ("build_image_cache, reused", reuse_seconds)):
        print(f"{label:<34}{n / seconds:>10.1f}{seconds / n:>10.3f}")
        methods.append(dict(method=label, seconds=round(seconds, 3),
                            samples_per_s=round(n / seconds, 1),
                            s_per_sample=round(seconds / n, 4)))
    print(f"identical images (lib vs pandas): {same}")
    figures = dict(samples=n, data=str(args.data_dir) if args.data_dir else
                   f"synthetic profile full, seed {args.seed}",
                   rows_per_sample=round(rows / n), mib_per_sample=round(megabytes / n, 2),
                   workers=args.workers, identical_images=same, methods=methods)
    if generate_seconds is not None:
        figures["generate_s"] = round(generate_seconds, 1)
    path = write_result(args.json or default_json("bench_images"), "bench_images", figures,
                        machine, date)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
