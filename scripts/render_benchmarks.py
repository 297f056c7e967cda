"""Render every benchmarks/*.json into docs/benchmarks.md, and the README's demo results block.

    make benchmarks-doc
    .venv/bin/python scripts/render_benchmarks.py [--benchmarks benchmarks] \\
        [--out docs/benchmarks.md] [--readme README.md]

Each JSON file is one benchmark document as scripts/bench_common.py writes it (benchmark,
command, date, machine, figures), or a summary.json of scripts/gpu_check.sh copied there (e.g.
benchmarks/gpu_check.json). docs/benchmarks.md gets a short intro (what each benchmark
measures and the command that reproduces it), then per benchmark a table of each document's
figures with "machine: ..., date: ..., command: ..." under it; nothing in it is typed by hand.

The README's block between ``<!-- demo-results:start -->`` and ``<!-- demo-results:end -->``
is replaced with a table rendered from benchmarks/demo_small.json (scripts/demo_results.py)
when both the markers and that file exist; otherwise README is left untouched.

Exit status 2, naming the file, when a JSON file cannot be read or lacks a key.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_common import KEYS, REPO_ROOT

START, END = "<!-- demo-results:start -->", "<!-- demo-results:end -->"
# Known benchmarks, in the order the page shows them: title, what it measures, its command.
KNOWN = {
    "demo_small": (
        "The demo (`make demo`)",
        "What `make demo` ends with on the built-in synthetic data: the ensemble chosen by greedy "
        "selection, and the OOF and hidden-test log loss of the ensemble, the best single model, "
        "the organisers' logistic-regression benchmark and the prior (label means), with the "
        "wall time of each stage.",
        "make demo && .venv/bin/python scripts/demo_results.py"),
    "real_counts": (
        "At the real counts: the project against the winners' baselines",
        "A synthetic `medium` folder (the real competition's 809 / 312 / 463 samples): every "
        "model of params/plans/real_counts.yaml alone, the ensemble 05 chose, the organisers' "
        "benchmark, the 3rd place's dense network and the prior, on OOF and hidden test, with "
        "paired bootstrap 95 % intervals of the ensemble's and the best single model's loss "
        "minus each baseline's (below 0: better beyond the samples' luck).",
        "make demo DATA_DIR=data/medium_s12 PLAN=params/plans/real_counts.yaml THIRD_PLACE=True "
        "&& .venv/bin/python scripts/compare_baselines.py --ensemble-dir "
        "runs/medium_s12/ensembles/real_counts --runs-dir runs/medium_s12 --data-dir "
        "data/medium_s12"),
    "calibration": (
        "Synthetic data calibration",
        "The prior's and the organisers' benchmark's OOF loss (5 folds over train, val in every "
        "fold's training) and hidden-test loss on a synthetic folder simulated in memory, per "
        "train-to-test shift, against the real data's 0.297 (prior), 0.177 (benchmark OOF) and "
        "test / OOF ~1.29.",
        ".venv/bin/python scripts/calibrate_synthetic.py --profile medium --seed 12 --with-val "
        "--json benchmarks/calibration_medium_s12.json"),
    "stages": (
        "The whole job per data size: time and memory per stage",
        "Each stage of `make demo` (and of the generator) on a synthetic folder of each size "
        "(`tiny`, `small`, `full`: the real data's counts, scan rate and mass range), measured "
        "from outside by sampling the process tree every 0.5 s: wall time, time per sample, "
        "peak resident memory of the stage's processes together and of its largest single "
        "process, and per sweep model the runs' mean time and largest peak.",
        ".venv/bin/python scripts/measure_stages.py --name stages_small --data-dir "
        "data/synthetic_small -- make demo"),
    "bench_images": (
        "Preprocessing throughput",
        "Sample CSV to 2D image on full-size synthetic samples: the plain pandas way against "
        "lib's reader, the image cache with several workers (what 02_preprocess runs) and the "
        "cache reused.",
        ".venv/bin/python scripts/bench_images.py --samples 96"),
    "bench_training": (
        "Training and inference throughput",
        "Samples per second of one backbone through lib's training loop (the last of its "
        "epochs, after warm-up) and of inference (five time widths), on random 256x192 images "
        "held on the device.",
        ".venv/bin/python scripts/bench_training.py --backbone resnet34 --device cpu"),
    "gpu_check": (
        "GPU check",
        "Every GPU check in one bounded call (environment, throughput, data, runs per GPU, fp32 "
        "vs bf16, one hrnet_w64 fold); its summary.json copied to benchmarks/gpu_check.json.",
        "BUDGET_S=480 OUT=gpu_results bash scripts/gpu_check.sh && "
        "cp gpu_results/summary.json benchmarks/gpu_check.json"),
}


class BenchmarkError(ValueError):
    """A benchmark file that cannot be rendered (the message names it)."""


# ---- reading -------------------------------------------------------------------------------

def read_document(path: Path) -> dict:
    """One benchmark document from ``path`` (a gpu_check summary.json is converted);
    BenchmarkError naming the file when it cannot be read, is not JSON or lacks a key."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise BenchmarkError(f"{path}: cannot be read: {error}") from None
    except json.JSONDecodeError as error:
        raise BenchmarkError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise BenchmarkError(f"{path}: holds {type(data).__name__}, not a JSON object")
    if "phases" in data and "budget_s" in data:
        return from_gpu_check(data, path)
    missing = [key for key in KEYS if key not in data]
    if missing:
        raise BenchmarkError(f"{path}: missing {', '.join(map(repr, missing))} (a benchmark "
                             f"document has {', '.join(KEYS)}: scripts/bench_common.py)")
    for key in ("machine", "figures"):
        if not isinstance(data[key], dict):
            raise BenchmarkError(f"{path}: {key!r} is {type(data[key]).__name__}, not an object")
    return data


def from_gpu_check(summary: dict, path: Path) -> dict:
    """scripts/gpu_check.sh's summary.json as a benchmark document: the machine from its
    environment phase, the command from its budget, a table of phases, then each phase's."""
    phases = summary["phases"]
    if not isinstance(phases, list) or not all(isinstance(p, dict) and "name" in p
                                               for p in phases):
        raise BenchmarkError(f"{path}: \"phases\" is not a list of phases with names")
    environment = next((p.get("figures", {}) for p in phases if p["name"] == "environment"), {})
    machine = environment.get("machine") or dict(
        cores=environment.get("cpu_count"), gpu=environment.get("gpu"),
        python=environment.get("python"), torch=(environment.get("versions") or {}).get("torch"))
    budget = summary["budget_s"]
    command = (f"BUDGET_S={budget:g} bash scripts/gpu_check.sh" if isinstance(budget, float | int)
               else "bash scripts/gpu_check.sh") + (" --smoke" if summary.get("smoke") else "")
    overview = [{k: p.get(k) for k in ("name", "status", "seconds", "estimate_s", "allotted_s",
                                       "error") if k in p} for p in phases]
    figures = {"seconds": summary.get("seconds"), "phases": overview}
    figures.update({p["name"]: p["figures"] for p in phases if p.get("figures")})
    return dict(benchmark="gpu_check", command=command,
                date=f"{summary.get('started', '?')} (the machine's local time)",
                machine=machine, figures=figures, sections=[p["name"] for p in phases])


def load_documents(folder: Path) -> list[tuple[Path, dict]]:
    """(path, document) of every *.json in ``folder``, by file name."""
    return [(path, read_document(path)) for path in sorted(Path(folder).glob("*.json"))]


# ---- tables --------------------------------------------------------------------------------

def cell(value) -> str:
    """A value as a markdown table cell."""
    if value is None or value == []:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {cell(v)}" for k, v in value.items())
    return str(value).replace("|", "\\|").replace("\n", " ")


def _is_rows(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _flat(values: dict, prefix: str = "") -> dict:
    """Nested objects flattened to dotted keys."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]


def figure_tables(figures: dict, prefix: str = "", sections=()) -> list[str]:
    """Markdown of a document's figures: one table of its single values (nested objects of
    single values with dotted names), then one captioned table per list of rows; an object
    holding objects or rows (or named in ``sections``) gets its own caption and tables."""
    lines, scalars, later = [], {}, []
    for key, value in figures.items():
        if _is_rows(value) or isinstance(value, dict) and (
                key in sections or any(_is_rows(v) or isinstance(v, dict)
                                       for v in value.values())):
            later.append((key, value))
        elif isinstance(value, dict):
            scalars.update(_flat(value, f"{key}."))
        else:
            scalars[key] = value
    if scalars:
        lines += markdown_table(["figure", "value"], [[k, v] for k, v in scalars.items()])
    for key, value in later:
        caption = f"{prefix}{key}"
        if _is_rows(value):
            columns = list(dict.fromkeys(k for row in value for k in _flat(row)))
            lines += ["", f"*{caption}*", ""]
            lines += markdown_table(columns, [[_flat(row).get(c) for c in columns]
                                              for row in value])
            continue
        inner = figure_tables(value, prefix=f"{caption} / ")
        if inner and inner[0].startswith("|"):
            lines += ["", f"*{caption}*", ""]
        lines += inner
    return lines


def machine_line(document: dict) -> str:
    """'machine: ..., date: ..., command: ...' of one document."""
    m = document["machine"]
    parts = [m.get("cpu")]
    if m.get("cores"):
        parts.append(f"{m['cores']} cores" + (f" ({m['usable_cores']} usable)"
                                               if m.get("usable_cores") not in (None, m["cores"])
                                               else ""))
    if m.get("memory_gib"):
        parts.append(f"{m['memory_gib']:g} GiB")
    parts.append(f"GPU {m['gpu']}" if m.get("gpu") else "no GPU")
    parts += [f"Python {m['python']}" if m.get("python") else None,
              f"torch {m['torch']}" if m.get("torch") else None]
    load = [f"{name} {m[key][0]:g}" for key, name in (("load_avg_start", "at start"),
                                                       ("load_avg_end", "at end"))
            if isinstance(m.get(key), list) and m[key]]
    if load:
        parts.append("load average " + ", ".join(load))
    machine = ", ".join(p for p in parts if p)
    return f"machine: {machine}; date: {document['date']}; command: `{document['command']}`"


def title(path: Path, document: dict) -> str:
    figures = document["figures"]
    if document["benchmark"] == "bench_training" and "backbone" in figures:
        return (f"{figures['backbone']} ({figures.get('head', '?')}), "
                f"{figures.get('device_name', figures.get('device', '?'))}, "
                f"{figures.get('precision', '?')}" + (", compiled" if figures.get("compile")
                                                       else ""))
    return path.name


def render_page(documents: list[tuple[Path, dict]]) -> str:
    """docs/benchmarks.md of these documents."""
    names = list(dict.fromkeys([n for n in KNOWN if any(d["benchmark"] == n
                                                        for _, d in documents)]
                               + sorted(d["benchmark"] for _, d in documents)))
    lines = ["<!-- Generated by scripts/render_benchmarks.py from benchmarks/*.json "
             "(make benchmarks-doc): edit or rerun those, not this page. -->", "",
             "# Benchmarks", "",
             "Every figure here is read from a JSON file in `benchmarks/` that a benchmark "
             "script wrote (machine, date, command, figures); `make benchmarks-doc` renders "
             "this page again. Under each table: the machine it ran on (with the load average "
             "when it started and ended: the machines are shared), the date (UTC) and the "
             "command.", ""]
    for name, (heading, what, command) in KNOWN.items():
        have = name in names
        lines.append(f"- **{heading}** (`{name}`{'' if have else ', no results yet'}): {what} "
                     f"Reproduce: `{command}`")
    lines.append("")
    if not documents:
        lines += ["No results yet: run the commands above, then `make benchmarks-doc`.", ""]
    for name in names:
        heading = KNOWN.get(name, (name,))[0]
        lines += [f"## {heading}", ""]
        group = [(path, document) for path, document in documents
                 if document["benchmark"] == name]
        if name == "stages" and len(group) > 1:
            lines += growth_table(group)
        if len(group) > 1 and all(_is_flat(d["figures"]) for _, d in group):
            lines += side_by_side(group)
            continue
        for path, document in group:
            lines += [f"### {title(path, document)}", ""]
            tables = figure_tables(document["figures"], sections=document.get("sections", ()))
            while tables and not tables[0]:
                tables.pop(0)
            lines += tables
            lines += ["", machine_line(document) + f" (`benchmarks/{path.name}`)", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _is_flat(figures: dict) -> bool:
    return not any(_is_rows(v) for v in _flat(figures).values())


def side_by_side(group: list[tuple[Path, dict]]) -> list[str]:
    """Documents of one benchmark whose figures are single values: one table, a column each,
    and under it each column's machine, date and command."""
    titles = [title(path, document) for path, document in group]
    flats = [_flat(document["figures"]) for _, document in group]
    keys = list(dict.fromkeys(k for flat in flats for k in flat))
    lines = markdown_table(["figure", *titles], [[k, *(f.get(k) for f in flats)] for k in keys])
    lines.append("")
    for column, (path, document) in zip(titles, group):
        lines += [f"- {column}: {machine_line(document)} (`benchmarks/{path.name}`)"]
    return lines + [""]


def growth_table(group: list[tuple[Path, dict]]) -> list[str]:
    """How each stage grows with the folder: one row per stage, per document (smallest folder
    first) its seconds, seconds per sample and peak MiB."""
    group = sorted(group, key=lambda item: item[1]["figures"].get("samples") or 0)
    names = [path.stem.removeprefix("stages_") for path, _ in group]
    by_stage = [{row["stage"]: row for row in document["figures"].get("stages", [])}
                for _, document in group]
    stages = list(dict.fromkeys(stage for rows in by_stage for stage in rows))
    header = ["stage"] + [f"{name}: {what}" for name in names
                          for what in ("s", "s / sample", "peak MiB")]
    rows = [[stage] + [rows[stage][key] if stage in rows else None for rows in by_stage
                       for key in ("wall_s", "s_per_sample", "peak_rss_mib")]
            for stage in stages]
    rows.append(["whole command"] + [v for _, document in group for v in (
        document["figures"].get("wall_s"), None, None)])
    samples = ", ".join(f"{name}: {document['figures'].get('samples')} samples, "
                        f"{document['figures'].get('run_files_gb')} GB of run files"
                        for name, (_, document) in zip(names, group))
    return [f"How each stage grows ({samples}):", "", *markdown_table(header, rows), ""]


# ---- the README's block --------------------------------------------------------------------

def _loss(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def demo_block(document: dict) -> str:
    """The README's results table from benchmarks/demo_small.json, with its machine line."""
    figures = document["figures"]
    ensemble = figures.get("ensemble", {})
    lines = ["| | model | OOF loss | test loss |", "|---|---|---|---|"]
    for row in figures.get("losses", []):
        label = row["model"]
        if label == "ensemble (chosen)" and ensemble.get("method"):
            label = f"ensemble (chosen, {ensemble['method']})"
        lines.append(f"| {cell(label)} | {cell(row.get('name') or '')} | "
                     f"{_loss(row.get('oof_loss'))} | {_loss(row.get('test_loss'))} |")
    stages = figures.get("stages", [])
    lines.append("")
    if stages:
        times = ", ".join(f"{s['stage']} {_duration(s['wall_s'])}" for s in stages)
        total = (f"{_duration(figures['wall_s'])} in all: " if figures.get("wall_s") is not None
                 else "")
        lines += [f"Wall time: {total}{times}.", ""]
    lines.append(machine_line(document) + " (`benchmarks/demo_small.json`, rendered by "
                 "`make benchmarks-doc`)")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def update_readme(readme: Path, demo_json: Path) -> bool:
    """Replace what is between the README's markers with demo_block of ``demo_json``; True
    when README was rewritten. Untouched (False) without either marker or the file."""
    if not readme.is_file() or not demo_json.is_file():
        return False
    text = readme.read_text()
    start = text.find(START)
    end = text.find(END, start + len(START)) if start >= 0 else -1
    if start < 0 or end < 0:
        return False
    block = demo_block(read_document(demo_json))
    new = text[:start + len(START)] + "\n" + block + "\n" + text[end:]
    if new == text:
        return False
    partial = readme.with_name(readme.name + ".partial")
    partial.write_text(new)
    partial.replace(readme)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarks", type=Path, default=REPO_ROOT / "benchmarks")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--readme", type=Path, default=REPO_ROOT / "README.md")
    args = parser.parse_args(argv)
    try:
        documents = load_documents(args.benchmarks)
        page = render_page(documents)
        readme = update_readme(args.readme, args.benchmarks / "demo_small.json")
    except BenchmarkError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page)
    print(f"wrote {args.out} ({len(documents)} benchmark files)"
          + (f"; updated {args.readme}'s demo results" if readme else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
