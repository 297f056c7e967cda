"""HTML reports: executed notebooks rendered with nbconvert, and an index page linking them.

    python -m lib.reports --reports reports/synthetic_small --plan params/plans/demo.yaml \
        --runs-dir runs/synthetic_small --ensemble-dir runs/synthetic_small/ensembles/demo
"""

from __future__ import annotations

import argparse
import html
import json
import os
import time
from pathlib import Path

import pandas as pd

from lib.core.files import atomic_write_text
from lib.core.paths import project_path
from lib.core.schema import SHORT
from lib.runs.plans import expand_plan, load_plan
from lib.runs.run_folder import FAILED, is_done, read_metrics


def render_html(notebook: Path, html_path: Path) -> Path:
    """Render an executed notebook to HTML, unless the HTML is newer than the notebook."""
    if html_path.is_file() and html_path.stat().st_mtime >= notebook.stat().st_mtime:
        return html_path
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    atomic_write_text(html_path, body)
    return html_path


def run_table(plan: str | Path, runs_dir: str | Path, reports: Path) -> pd.DataFrame:
    """One row per run of the plan: status, best epoch, OOF loss (the kept epoch's), the last
    epoch's OOF loss (runs with epochs that record it), minutes, report link."""
    rows = []
    for spec in expand_plan(load_plan(plan), runs_dir=runs_dir):
        row = {"run": spec.label, "status": "not run", "best epoch": "", "OOF loss": "",
               "last-epoch OOF": "", "minutes": "", "report": ""}
        notebook = spec.run_dir / spec.notebook
        if is_done(spec.run_dir):
            metrics = read_metrics(spec.run_dir)
            epoch = metrics["best_epoch"]  # None for runs without epochs (feature models)
            row.update(status="done", **{"best epoch": "-" if epoch is None else epoch,
                                         "OOF loss": f"{metrics['best_oof_loss']:.4f}",
                                         "minutes": f"{metrics['fit_seconds'] / 60:.1f}"})
            if metrics.get("last_oof_loss") is not None:
                row["last-epoch OOF"] = f"{metrics['last_oof_loss']:.4f}"
        elif (spec.run_dir / FAILED).is_file():
            row["status"] = "FAILED: " + (spec.run_dir / FAILED).read_text().splitlines()[1][:120]
        if notebook.is_file():
            page = render_html(notebook, reports / "runs" / f"{spec.label.replace('/', '__')}.html")
            row["report"] = page.relative_to(reports).as_posix()
        rows.append(row)
    return pd.DataFrame(rows)


def write_index(reports: Path, runs: pd.DataFrame, ensemble_dir: Path | None,
                subtitle: str = "") -> Path:
    """reports/index.html: the notebooks, the run table, the ensemble and the submission.
    subtitle: a line under the title (data folder, plan)."""
    notebooks = sorted(reports.glob("*.html"))
    links = "".join(f'<li><a href="{p.name}">{html.escape(p.stem)}</a></li>'
                    for p in notebooks if p.name != "index.html")
    run_rows = "".join(
        "<tr>" + "".join(
            f'<td><a href="{v}">report</a></td>' if k == "report" and v else
            f"<td class='{'bad' if str(v).startswith('FAILED') else ''}'>{html.escape(str(v))}</td>"
            for k, v in row.items()) + "</tr>"
        for row in runs.to_dict("records"))
    header = "".join(f"<th>{html.escape(c)}</th>" for c in runs.columns)
    ensemble_html = "<p>No ensemble yet.</p>"
    if ensemble_dir and (ensemble_dir / "selection.json").is_file():
        selection = json.loads((ensemble_dir / "selection.json").read_text())
        comparison = comparison_rows(selection)
        submission = ensemble_dir / "submission.csv"
        preview = (pd.read_csv(submission).rename(columns=SHORT).head(5).round(3)
                   .to_html(index=False, border=0))
        link = os.path.relpath(submission, reports)
        left_out = "".join(f"<li class='bad'>{html.escape(p)}</li>" for p in selection["left_out"])
        ensemble_html = (
            f"<p>Selection: <b>{html.escape(selection['method'])}</b>, "
            f"{len(selection['models'])} models: {html.escape(', '.join(selection['models']))}."
            f"</p><table>{comparison}</table>"
            + (f"<p>Left out:</p><ul>{left_out}</ul>" if left_out else "")
            + f'<h2>Submission</h2><p><a href="{html.escape(link)}">submission.csv</a> '
            f"(<code>{html.escape(str(submission))}</code>), first rows:</p>{preview}")
    explain_html = explanation_section(reports, ensemble_dir)
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Mars Spectrometry 2: report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 14px; }}
h2 {{ margin-top: 1.5em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }}
th {{ background: #f3f3f3; }}
.scores td {{ white-space: nowrap; }}
.bad {{ color: #b00020; }}
code {{ background: #f3f3f3; padding: 1px 4px; }}
</style></head><body>
<h1>Mars Spectrometry 2 (GC-MS): report</h1>
<p>{html.escape(subtitle)} Generated {time.strftime('%Y-%m-%d %H:%M')}.</p>
<h2>Notebooks</h2><ul>{links}</ul>
<h2>Runs</h2><table><tr>{header}</tr>{run_rows}</table>
<h2>Ensemble</h2>{ensemble_html}
<h2>Explanations</h2>{explain_html}
</body></html>
"""
    return atomic_write_text(reports / "index.html", page)


def comparison_rows(selection: dict) -> str:
    """HTML rows (header first) of the ensemble against the baselines: the OOF aggregated log
    loss on the same folds and, when selection.json has "test" (hidden test labels, synthetic
    data), the test loss beside it."""
    test = selection.get("test", {})
    header = "<tr><th>predictor</th><th>OOF loss (same folds)</th>" + (
        "<th>test loss (hidden labels)</th>" if test else "") + "</tr>"
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{loss:.4f}</td>"
        + (f"<td>{test[name]:.4f}</td>" if name in test else "<td></td>" if test else "")
        + "</tr>" for name, loss in selection["comparison"].items())
    problem = selection.get("test_labels_problem")
    note = (f"<tr><td colspan='3' class='bad'>test labels not used: {html.escape(problem)}</td>"
            f"</tr>" if problem else "")
    return header + rows + note


def explanation_section(reports: Path, ensemble_dir: Path | None) -> str:
    """HTML: a link to the executed 06_explain, the ensemble's attribution figure
    (explain_ensemble.png in the ensemble folder) and the scores against the synthetic truth
    (explain_scores.json there: the ensemble's per label, then each model's)."""
    page = reports / "06_explain.html"
    link = (f'<p><a href="{page.name}">06_explain</a>: which m/z rows and moments drive each '
            f"label, for the submission and for every model of the plan.</p>"
            if page.is_file() else "<p>No explanations yet (notebook 06).</p>")
    if not ensemble_dir:
        return link
    figure = ensemble_dir / "explain_ensemble.png"
    if figure.is_file():
        link += (f'<p>The submission: drop of the ensemble\'s mean logit when each m/z row is '
                 f'emptied, per label (triangles: the true ions).</p>'
                 f'<img src="{html.escape(os.path.relpath(figure, reports))}" '
                 f'style="max-width: 100%">')
    scores_path = ensemble_dir / "explain_scores.json"
    if not scores_path.is_file():
        return link
    scores = json.loads(scores_path.read_text())
    ensemble = score_frame(scores.get("ensemble", {}))
    models = pd.concat({f"{name}{' (chosen)' if entry.get('chosen') else ''}":
                        score_frame(entry.get("labels", {}))
                        for name, entry in scores.get("models", {}).items()
                        if entry.get("labels")} or {"": pd.DataFrame()})
    text = ("<p>Attribution on the labels' true ions (synthetic truth) against chance, with the "
            "90 % bootstrap interval of the share over samples; top-5 hit rate: share of the "
            "top-5 m/z (occlusion) that are true ions.</p>")
    if len(ensemble):
        text += "<h3>The ensemble</h3>" + ensemble.to_html(border=0, na_rep="", classes="scores")
    if len(models):
        text += "<h3>Each model</h3>" + models.to_html(border=0, na_rep="", classes="scores")
    return link + text


def score_frame(per_label: dict[str, dict]) -> pd.DataFrame:
    """{label: scores} of explain_scores.json -> a table, one row per label (short names),
    shares rounded to 3 decimals, intervals as "low-high"; the columns are the scores' names
    with spaces for underscores (a header may wrap: the page keeps its width)."""
    frame = pd.DataFrame(per_label).T.rename(index=SHORT)
    frame.columns = [str(c).replace("_", " ") for c in frame.columns]
    for column in frame.columns:
        frame[column] = [f"{v[0]:.3f}-{v[1]:.3f}" if isinstance(v, list) else
                         "" if pd.isna(v) else f"{v:.3f}" if isinstance(v, float) else v
                         for v in frame[column]]
    return frame


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Render executed notebooks and the index page.")
    parser.add_argument("--reports", required=True, help="folder with notebooks/*.ipynb")
    parser.add_argument("--plan", required=True)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--ensemble-dir", default=None)
    parser.add_argument("--data-dir", default=None, help="shown in the page's subtitle")
    args = parser.parse_args(argv)
    reports = project_path(args.reports)
    for notebook in sorted((reports / "notebooks").glob("*.ipynb")):
        render_html(notebook, reports / f"{notebook.stem}.html")
    table = run_table(args.plan, args.runs_dir, reports)
    ensemble_dir = project_path(args.ensemble_dir) if args.ensemble_dir else None
    subtitle = f"Plan {args.plan}" + (f" on {args.data_dir}." if args.data_dir else ".")
    index = write_index(reports, table, ensemble_dir, subtitle)
    print(f"report: {index}")

