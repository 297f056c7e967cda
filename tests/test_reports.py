"""The report index: run table, ensemble section, links."""

from __future__ import annotations

import json

import nbformat
import pandas as pd
import yaml

from lib.core.schema import LABELS
from lib.reports import html
from lib.runs import run_folder


def test_index_lists_runs_ensemble_and_submission(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(dict(name="demo")))
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(dict(name="plan", folds=[0, 1], runs=[
        dict(params=str(params), backbone="net", seed=0)])))
    runs_dir = tmp_path / "runs"
    done = runs_dir / "demo" / "net" / "fold0_seed0"
    done.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), done / "03_train.ipynb")
    run_folder.write_metrics(done, dict(best_epoch=3, best_oof_loss=0.1234, fit_seconds=90))
    run_folder.mark_done(done)
    failed = runs_dir / "demo" / "net" / "fold1_seed0"
    failed.mkdir(parents=True)
    (failed / "FAILED").write_text("demo/net/fold1_seed0\nRuntimeError: boom\n")
    ensemble_dir = tmp_path / "ensemble"
    ensemble_dir.mkdir()
    (ensemble_dir / "selection.json").write_text(json.dumps(dict(
        method="grow-by-one", models=["demo/net/seed0"], left_out=["x: left out: missing"],
        comparison={"ensemble (chosen)": 0.1, "prior only": 0.3})))
    pd.DataFrame({"sample_id": ["S1"], **{c: [0.5] for c in LABELS}}).to_csv(
        ensemble_dir / "submission.csv", index=False)
    report_dir = tmp_path / "reports"
    report_dir.mkdir()
    (report_dir / "01_eda.html").write_text("<html></html>")

    table = html.run_table(plan, runs_dir, report_dir)
    assert table["status"].tolist() == ["done", "FAILED: RuntimeError: boom"]
    assert table["OOF loss"].tolist() == ["0.1234", ""]
    index = html.write_index(report_dir, table, ensemble_dir).read_text()
    assert 'href="01_eda.html"' in index and 'href="runs/demo__net__fold0_seed0.html"' in index
    assert (report_dir / "runs" / "demo__net__fold0_seed0.html").is_file()
    assert "grow-by-one" in index and "0.3000" in index and "x: left out: missing" in index
    assert "submission.csv" in index and "S1" in index
    assert "test loss" not in index  # real data: no hidden test labels, no test column


def test_index_shows_test_losses_beside_oof_losses(tmp_path):
    ensemble_dir = tmp_path / "ensemble"
    ensemble_dir.mkdir()
    pd.DataFrame({"sample_id": ["S1"], **{c: [0.5] for c in LABELS}}).to_csv(
        ensemble_dir / "submission.csv", index=False)
    (ensemble_dir / "selection.json").write_text(json.dumps(dict(
        method="grow-by-one", models=["m"], left_out=[],
        comparison={"ensemble (chosen)": 0.1111, "prior only": 0.2222},
        test={"ensemble (chosen)": 0.3333, "prior only": 0.4444})))
    report_dir = tmp_path / "reports"
    report_dir.mkdir()
    index = html.write_index(report_dir, pd.DataFrame(columns=["run"]), ensemble_dir).read_text()
    assert "<th>test loss (hidden labels)</th>" in index
    assert "<td>ensemble (chosen)</td><td>0.1111</td><td>0.3333</td>" in index
    assert "<td>prior only</td><td>0.2222</td><td>0.4444</td>" in index


def test_index_links_the_explanations_and_their_scores(tmp_path):
    report_dir = tmp_path / "reports"
    report_dir.mkdir()
    ensemble_dir = tmp_path / "ensemble"
    ensemble_dir.mkdir()
    empty = pd.DataFrame(columns=["run"])
    index = html.write_index(report_dir, empty, ensemble_dir).read_text()
    assert "No explanations yet" in index
    (report_dir / "06_explain.html").write_text("<html></html>")
    (ensemble_dir / "explain_scores.json").write_text(json.dumps({
        "ensemble": {"chlorine_bearing_compound": {
            "occlusion_share": 0.41234, "occlusion_share_interval": [0.3012, 0.5234],
            "occlusion_chance_share": 0.02, "top5_hit_rate": 0.8, "samples": 6}},
        "models": {
            "features_lr/logistic/seed0": {"chosen": True, "problems": [], "labels": {
                "aromatic": {"map_share": 0.2468, "chance_share": 0.01, "samples": 6}}},
            "demo/net/seed0": {"chosen": False, "problems": ["not trained"], "labels": {}}}}))
    index = html.write_index(report_dir, empty, ensemble_dir).read_text()
    assert 'href="06_explain.html"' in index and "No explanations yet" not in index
    assert "The ensemble" in index and "chlorine" in index and "0.412" in index
    assert "0.301-0.523" in index and "<th>top5 hit rate</th>" in index
    assert index.count('class="dataframe scores"') == 2  # their cells do not wrap
    assert "features_lr/logistic/seed0 (chosen)" in index and "0.247" in index
    assert "demo/net/seed0" not in index  # nothing scored for it
    assert "<img" not in index  # no figure yet
    (ensemble_dir / "explain_ensemble.png").write_bytes(b"png")
    index = html.write_index(report_dir, empty, ensemble_dir).read_text()
    assert '<img src="../ensemble/explain_ensemble.png"' in index
