"""The results of a finished ``make demo`` as one benchmark document (benchmarks/demo_small.json),
which scripts/render_benchmarks.py renders into docs/benchmarks.md and the README's results block.

    make demo
    .venv/bin/python scripts/demo_results.py [--runs-dir runs/synthetic_small] \\
        [--ensemble-dir runs/synthetic_small/ensembles/demo] [--reports reports/synthetic_small] \\
        [--plan params/plans/demo.yaml] [--json benchmarks/demo_small.json]

What it reads (the defaults are the built-in synthetic data's folders):

- ENSEMBLE_DIR/selection.json, which 05_ensemble writes: the selection method and members, the
  ensemble's OOF loss, "comparison" (OOF loss of the ensemble, the best single model, the prior
  and the organisers' logistic-regression benchmark on the same folds) and "test" (the same on
  the hidden test split; synthetic data only) and "best_single_model" (its name). Required.
- REPORTS/notebooks/*.ipynb: papermill's start and end time of each notebook (the stages'
  wall times). Optional.
- RUNS_DIR/<name>/<backbone>/fold*_seed*/attempts.txt of the plan's runs (every run under
  RUNS_DIR with --plan ''): the sweep's span, from the first run's start to the last one's end,
  and each model's run seconds. Optional.
- REPORTS/index.html's modification time: the HTML report's stage ends there (it starts when
  the last notebook ended). Optional.

"date" is when the demo's last stage ended (when unknown: now); "machine" describes this
machine, so run it where the demo ran. Exit status 2, naming the file, on missing or bad input.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

from bench_common import default_json, describe_machine, read_json_object, utc_now, write_result

NOTEBOOK_STAGES = ("01_eda", "02_preprocess", "05_ensemble", "06_explain")
BEST_SINGLE = "best single model"
REPORT_MAX_S = 1800.0


class DemoResultsError(ValueError):
    """A file of the demo is missing or cannot be read (the message names it)."""


def read_json(path: Path) -> dict:
    """The JSON object in ``path``; DemoResultsError naming it when absent or unreadable."""
    return read_json_object(path, DemoResultsError, "not found (has `make demo` finished?)")


def losses(selection: dict, path: Path, best_name: str | None) -> list[dict]:
    """One row per predictor of selection.json's "comparison": its OOF and test loss."""
    comparison = selection.get("comparison")
    if not isinstance(comparison, dict) or not comparison:
        raise DemoResultsError(f"{path}: no \"comparison\" of OOF losses (written by an older "
                               f"05_ensemble? run `make demo` again)")
    test = selection.get("test") or {}
    rows = []
    for model, oof in comparison.items():
        row = dict(model=model, oof_loss=oof, test_loss=test.get(model))
        if model == "ensemble (chosen)":
            row["name"] = " + ".join(selection.get("models", []))
        elif model == BEST_SINGLE:
            row["name"] = best_name
        rows.append(row)
    return rows


def _time(text: str | None) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def notebook_stage(path: Path) -> dict | None:
    """{stage, wall_s, start, end} of an executed notebook, from papermill's metadata."""
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text()).get("metadata", {}).get("papermill", {})
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    start, end = _time(meta.get("start_time")), _time(meta.get("end_time"))
    if meta.get("duration") is None or start is None or end is None:
        return None
    return dict(stage=path.stem, wall_s=round(float(meta["duration"]), 1), start=start,
                end=end)


def attempt_span(attempts: Path) -> tuple[float, float] | None:
    """(start, end) in epoch seconds of the last finished attempt in a run's attempts.txt."""
    try:
        text = attempts.read_text()
    except OSError:
        return None
    starts = [float(m) for m in re.findall(r"^start (\S+)", text, re.M)]
    ends = [float(m) for m in re.findall(r"^end (\S+)", text, re.M)]
    return (starts[-1], ends[-1]) if starts and ends else None


def plan_run_dirs(plan: str, runs_dir: Path) -> list[Path]:
    """The plan's run folders under ``runs_dir``; every run folder there when plan is ''."""
    if plan:
        from lib.runs.plans import expand_plan, load_plan

        return [spec.run_dir for spec in expand_plan(load_plan(plan), runs_dir=runs_dir)]
    return sorted(p for p in runs_dir.glob("*/*/fold*_seed*") if p.is_dir())


def sweep_stage(run_dirs: list[Path]) -> dict | None:
    """The sweep as a stage: from its first run's start to its last run's end, the runs that
    finished, and each model's (name/backbone/seed) run seconds summed over its folds."""
    spans, per_model = [], {}
    for run_dir in run_dirs:
        span = attempt_span(run_dir / "attempts.txt")
        if span is None:
            continue
        spans.append(span)
        seed = run_dir.name.split("_", 1)[1] if "_" in run_dir.name else run_dir.name
        model = f"{run_dir.parent.parent.name}/{run_dir.parent.name}/{seed}"
        per_model[model] = per_model.get(model, 0.0) + span[1] - span[0]
    if not spans:
        return None
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    return dict(stage="sweep", wall_s=round(end - start, 1), runs=len(spans),
                run_s={m: round(s, 1) for m, s in per_model.items()},
                start=datetime.fromtimestamp(start, timezone.utc),
                end=datetime.fromtimestamp(end, timezone.utc))


def report_stage(index: Path, after: datetime) -> dict | None:
    """The HTML report (python -m lib.reports, the demo's last step) as a stage: from the end
    of the last notebook to index.html's modification time, when that is within
    REPORT_MAX_S after it (else the report was made again later and its time is unknown)."""
    if not index.is_file():
        return None
    end = datetime.fromtimestamp(index.stat().st_mtime, timezone.utc)
    seconds = (end - after).total_seconds()
    if not 0 <= seconds <= REPORT_MAX_S:
        return None
    return dict(stage="report", wall_s=round(seconds, 1), start=after, end=end)


def stages(reports: Path, run_dirs: list[Path]) -> list[dict]:
    """The demo's stages that left times, in the order they ran (times are UTC)."""
    found = [notebook_stage(reports / "notebooks" / f"{name}.ipynb") for name in NOTEBOOK_STAGES]
    found.append(sweep_stage(run_dirs))
    found = sorted((s for s in found if s), key=lambda s: s["start"])
    if found:
        report = report_stage(reports / "index.html", max(s["end"] for s in found))
        found += [report] if report else []
    return found


def collect(runs_dir: Path, ensemble_dir: Path, reports: Path, plan: str) -> tuple[dict, str]:
    """(figures, date) of the demo in these folders."""
    selection_path = ensemble_dir / "selection.json"
    selection = read_json(selection_path)
    best = selection.get("best_single_model")
    try:
        run_dirs = plan_run_dirs(plan, runs_dir)
    except (OSError, ValueError) as error:
        raise DemoResultsError(f"{plan}: {error}") from None
    timed = stages(reports, run_dirs)
    figures = dict(
        dataset=runs_dir.name,
        ensemble=dict(method=selection.get("method"), members=selection.get("models", []),
                      families=sorted(set((selection.get("families") or {}).values())),
                      oof_loss=selection.get("oof_loss"),
                      test_loss=(selection.get("test") or {}).get("ensemble (chosen)"),
                      left_out=selection.get("left_out", [])),
        losses=losses(selection, selection_path, best),
        stages=[dict(s, start=s["start"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                     end=s["end"].strftime("%Y-%m-%dT%H:%M:%SZ")) for s in timed],
    )
    if selection.get("test_labels_problem"):
        figures["test_labels_problem"] = selection["test_labels_problem"]
    if timed:
        figures["wall_s"] = round((max(s["end"] for s in timed)
                                   - min(s["start"] for s in timed)).total_seconds(), 1)
        date = max(s["end"] for s in timed).strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        date = utc_now()
    return figures, date


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/synthetic_small"))
    parser.add_argument("--ensemble-dir", type=Path, default=None,
                        help="default: RUNS_DIR/ensembles/demo")
    parser.add_argument("--reports", type=Path, default=Path("reports/synthetic_small"))
    parser.add_argument("--plan", default="params/plans/demo.yaml",
                        help="the sweep's runs ('': every run folder under RUNS_DIR)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="default benchmarks/demo_small.json")
    args = parser.parse_args(argv)
    machine = describe_machine()
    runs_dir = args.runs_dir.resolve()
    ensemble_dir = args.ensemble_dir or runs_dir / "ensembles" / "demo"
    try:
        figures, date = collect(runs_dir, ensemble_dir.resolve(), args.reports.resolve(),
                                args.plan)
    except DemoResultsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    path = write_result(args.json or default_json("demo_small"), "demo_small", figures,
                        machine, date)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
