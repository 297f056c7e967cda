"""A finished 05_ensemble against the winners' baselines, as one benchmark document
(benchmarks/<name>.json), which scripts/render_benchmarks.py renders into docs/benchmarks.md.

    make demo DATA_DIR=data/medium_s12 PLAN=params/plans/real_counts.yaml THIRD_PLACE=True
    .venv/bin/python scripts/compare_baselines.py \\
        --ensemble-dir runs/medium_s12/ensembles/real_counts --runs-dir runs/medium_s12 \\
        --data-dir data/medium_s12 --name real_counts_medium

What it reads:

- ENSEMBLE_DIR/selection.json (05_ensemble): the chosen members, "comparison" (OOF loss of the
  ensemble, the best single model and each baseline fitted there: the prior, the organisers'
  benchmark, the 3rd place's dense network), "test" (the same on the hidden test split),
  "model_losses" (every model alone, OOF and test) and "intervals" (paired bootstrap 95 %
  intervals of the ensemble's and the best single model's loss minus each baseline's), and
  "baseline_seconds" (optional: what fitting a baseline took, its features included). Required.
- RUNS_DIR/<name>/<backbone>/fold*_seed*/metrics.json: each model's fit seconds over its folds
  (``fit_seconds``; optional: "–" where a run has none).
- DATA_DIR/synthetic.json: the synthetic folder's profile and seed (optional).

Writes figures: the dataset, one row per predictor (every model alone, the baselines, the best
single model and the chosen ensemble, with OOF loss, test loss and fit seconds) and one row per
interval. "date" is now, "machine" this machine: run it where the ensemble ran. Exit status 2,
naming the file, on missing or bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench_common import (
    add_json_option,
    default_json,
    describe_machine,
    read_json_object,
    utc_now,
    write_result,
)

ENSEMBLE, BEST = "ensemble (chosen)", "best single model"


class CompareError(ValueError):
    """A file of the ensemble is missing or cannot be read (the message names it)."""


def read_json(path: Path, required: bool = True) -> dict | None:
    """The JSON object in ``path`` (None when absent and not ``required``); CompareError
    naming it when it is required and absent, or unreadable."""
    if not required and not path.exists():
        return None
    return read_json_object(path, CompareError, "not found (has 05_ensemble finished?)")


def fit_seconds(runs_dir: Path, model: str) -> float | None:
    """Sum of ``fit_seconds`` over the folds of model ``name/backbone/seed<s>`` (None when a
    fold has no figure)."""
    name, backbone, seed = model.split("/")
    folds = sorted((runs_dir / name / backbone).glob(f"fold*_{seed}"))
    seconds = [(read_json(f / "metrics.json", required=False) or {}).get("fit_seconds")
               for f in folds]
    if not folds or any(not isinstance(s, int | float) for s in seconds):
        return None
    return round(float(sum(seconds)), 1)


def comparison_figures(selection: dict, path: Path, runs_dir: Path) -> dict:
    """The figures of one selection.json (``path`` names it in errors)."""
    missing = [k for k in ("models", "comparison", "model_losses", "intervals")
               if k not in selection]
    if missing:
        raise CompareError(f"{path}: missing {', '.join(missing)} (written by a 05_ensemble "
                           f"older than the bootstrap intervals? run 05 again)")
    test = selection.get("test", {})
    rows = [{"predictor": name, "kind": "model", "oof_loss": losses.get("OOF"),
             "test_loss": losses.get("test"), "fit_s": fit_seconds(runs_dir, name)}
            for name, losses in sorted(selection["model_losses"].items(),
                                       key=lambda item: item[1].get("OOF", float("inf")))]
    for name, oof in selection["comparison"].items():
        kind = "ensemble" if name in (ENSEMBLE, BEST) else "baseline"
        label = {ENSEMBLE: f"{ENSEMBLE}: {' + '.join(selection['models'])}",
                 BEST: f"{BEST}: {selection.get('best_single_model', '?')}"}.get(name, name)
        seconds = selection.get("baseline_seconds", {}).get(name)
        rows.append({"predictor": label, "kind": kind, "oof_loss": oof,
                     "test_loss": test.get(name),
                     "fit_s": None if seconds is None else round(float(seconds), 1)})
    intervals = [{"pair": pair, "split": split, **values}
                 for pair, splits in selection["intervals"].items()
                 for split, values in splits.items()]
    return {"losses": rows, "intervals_95": intervals}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ensemble-dir", type=Path, required=True)
    parser.add_argument("--runs-dir", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--name", default="real_counts_medium",
                        help="the benchmark's name (its JSON file's, by default)")
    add_json_option(parser, "<name>")
    args = parser.parse_args(argv)
    machine, started = describe_machine(), utc_now()
    try:
        path = args.ensemble_dir / "selection.json"
        figures = {"dataset": args.runs_dir.name}
        if args.data_dir is not None:
            marker = read_json(args.data_dir / "synthetic.json", required=False) or {}
            figures |= {k: marker[k] for k in ("profile", "seed", "shift") if k in marker}
        figures |= comparison_figures(read_json(path), path, args.runs_dir)
    except CompareError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = args.json or default_json(args.name)
    print(f"wrote {write_result(out, 'real_counts', figures, machine, started)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
