"""What an evaluation logs to wandb: the builders on a results dict (no run), and offline runs read back with
wandb's own reader (tests/wandb_offline.py) for a live evaluation's ``finish`` and for ``--predictions_file``."""

from __future__ import annotations

import json

import pytest

from prompt_distill.evaluation.results import finish
from prompt_distill.evaluation.run import run
from prompt_distill.evaluation.wandb_report import (
    PER_LABEL_COLUMNS,
    PREDICTION_COLUMNS,
    confusion_inputs,
    payload,
    per_label_rows,
    prediction_rows,
    reliability_rows,
    scalars,
)
from prompt_distill.task import UNPARSEABLE, language_task
from tests.eval_helpers import evaluation_config as parse
from tests.evaluation.test_evaluation import _scored, _scored_with_probabilities
from tests.wandb_offline import offline_runs

TASK = language_task()


def _with_cascade(tmp_path, capsys):
    results, scores, fid = _scored_with_probabilities(tmp_path)
    finish(results, scores, fid, TASK, parse("--output_file", str(tmp_path / "r.json"), "--defer_below", "0.5"))
    capsys.readouterr()
    return results


def test_scalars_cover_every_block(tmp_path, capsys):
    results = _with_cascade(tmp_path, capsys)
    logged = scalars(results)
    for key, value in results["summary"].items():
        assert logged[f"eval/{key}"] == value
    assert logged["eval/fidelity/student_vs_teacher/rate"] == results["fidelity"]["student_vs_teacher"]["rate"]
    assert logged["eval/confidence/ece"] == results["confidence"]["ece"]
    for point in results["confidence"]["coverage"]:
        assert logged[f"eval/confidence/coverage_{point['percent']}pct/accuracy"] == point["accuracy"]
    cascade = results["cascade"]
    assert logged["eval/cascade/accuracy"] == cascade["accuracy"]
    assert logged["eval/cascade/deferred_share"] == cascade["deferred_share"]
    assert logged["eval/cascade/tokens_per_request/cascade"] == cascade["tokens_per_request"]["cascade"]
    assert all(isinstance(value, (int, float)) for value in logged.values())
    assert not any("reliability" in key or "teacher_file" in key for key in logged)  # a table / a file name


def test_distillation_block_is_flattened_too():
    block = {"sentences": 4, "labellers": {"base": {"accuracy": 0.5, "interval": {"low": 0.1, "high": 0.9},
                                                    "tokens_per_request": None}},
             "gain_kept": 0.75, "notes": ["x"], "bootstrap": {"seed": 0}}
    logged = scalars({"summary": {"accuracy": 1.0}, "distillation": block})
    assert logged == {"eval/accuracy": 1.0, "eval/distillation/sentences": 4,
                      "eval/distillation/labellers/base/accuracy": 0.5,
                      "eval/distillation/labellers/base/interval/low": 0.1,
                      "eval/distillation/labellers/base/interval/high": 0.9, "eval/distillation/gain_kept": 0.75}


def test_an_evaluation_joins_the_group_its_adapter_was_trained_in(tmp_path, monkeypatch):
    from prompt_distill.evaluation.wandb_report import pipeline_group

    monkeypatch.delenv("WANDB_RUN_GROUP", raising=False)
    adapter = tmp_path / "models" / "triage"
    adapter.mkdir(parents=True)
    (adapter / "run_record.json").write_text(json.dumps({"data_file": "data/triage.jsonl", "wandb_group": "sweep-3"}))
    results = {"adapter": str(adapter), "test_file": "sentences.txt"}
    assert pipeline_group(None, results) == "sweep-3"  # training's --run_group carries over
    assert pipeline_group("mine", results) == "mine"  # an explicit --run_group wins
    (adapter / "run_record.json").write_text(json.dumps({"data_file": "data/triage.jsonl"}))  # an older record
    assert pipeline_group(None, results) == "triage"


def test_tables_and_confusion_inputs(tmp_path):
    (results, _, _), pairs = _scored(tmp_path, ["ar", "ru", "Hello! How can I help?", "en.", "xx"])
    columns, rows = per_label_rows(results)
    assert columns == list(PER_LABEL_COLUMNS) and [row[0] for row in rows] == list(TASK.labels)
    by_label = {entry["label"]: entry for entry in results["per_label"]}
    for row in rows:
        entry = by_label[row[0]]
        assert row[1:5] == [entry["precision"], entry["recall"], entry["f1"], entry["support"]]
    columns, rows = prediction_rows(results)
    assert columns == list(PREDICTION_COLUMNS) and len(rows) == len(pairs)
    assert [row[0] for row in rows] == [text for text, _ in pairs]
    assert rows[2][3] == UNPARSEABLE and rows[2][5] is False and rows[0][2] is None  # no teacher label for the first
    assert reliability_rows(results) is None  # free generation: no probabilities
    names, truths, predicted = confusion_inputs(results)
    assert names == [*TASK.labels, "?"]
    assert [names[i] for i in truths] == [gold for _, gold in pairs]
    assert [names[i] for i in predicted] == ["ar", "ru", "?", "en", "?"]
    # The same counts as the printed matrix (rows: gold; columns: labels and '?').
    counts = [[0] * len(names) for _ in TASK.labels]
    for truth, guess in zip(truths, predicted, strict=True):
        counts[truth][guess] += 1
    assert counts == results["confusion_matrix"]["array"]


def test_payload_holds_the_tables_the_chart_and_the_images_without_a_run(tmp_path, capsys):
    import wandb
    from wandb.plot.custom_chart import CustomChart

    results = _with_cascade(tmp_path, capsys)
    assert wandb.run is None
    logged = payload(results, {"reliability_diagram": tmp_path / "r.reliability.png", "missing": None})
    assert isinstance(logged["eval/per_label"], wandb.Table) and isinstance(logged["eval/predictions"], wandb.Table)
    assert logged["eval/predictions"].columns == list(PREDICTION_COLUMNS)
    assert len(logged["eval/predictions"].data) == len(results["predictions"])
    assert isinstance(logged["eval/reliability"], wandb.Table)
    assert isinstance(logged["eval/confusion_matrix"], CustomChart)
    assert isinstance(logged["eval/reliability_diagram"], wandb.Image) and "eval/missing" not in logged
    assert logged["eval/accuracy"] == results["summary"]["accuracy"]


# -- offline runs, read back ---------------------------------------------------------------------------------
@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    folder = tmp_path / "runs"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(folder))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.delenv("WANDB_RUN_GROUP", raising=False)
    return folder


def _assert_evaluation_run(run, results):
    assert run.job_type == "evaluate"
    for table in ("eval/per_label", "eval/predictions", "eval/reliability", "eval/confusion_matrix_table"):
        assert run.summary.get(f"{table}._type") == "table-file", table
    assert run.summary["eval/predictions.nrows"] == len(results["predictions"])
    chart = run.config.get("_wandb.visualize.eval/confusion_matrix") or {}
    assert chart.get("panel_config", {}).get("panelDefId") == "wandb/confusion_matrix/v1"
    for image in ("eval/confusion_matrix_image", "eval/reliability_diagram"):
        assert run.summary.get(f"{image}._type") == "image-file", image
    for key, value in scalars(results).items():
        assert run.summary[key] == pytest.approx(value), key


def test_a_live_evaluation_and_its_rescoring_log_the_same(tmp_path, capsys, offline_wandb):
    results, scores, fid = _scored_with_probabilities(tmp_path)
    out = tmp_path / "out" / "r.json"
    finish(results, scores, fid, TASK, parse("--output_file", str(out), "--defer_below", "0.5",
                                             "--report_to", "wandb"))
    assert "wandb: evaluation logged to" in capsys.readouterr().out
    again = run(parse("--predictions_file", str(out), "--output_file", str(tmp_path / "again.json"),
                      "--report_to", "wandb"))
    runs = offline_runs(offline_wandb)
    assert len(runs) == 2
    for offline_run, logged in zip(runs, (results, again), strict=True):
        _assert_evaluation_run(offline_run, logged)
    assert [r.name for r in runs] == ["r", "again"]  # named after the results file
    assert runs[0].group == runs[1].group == "t"  # no adapter: the teacher file's name
    assert scalars(results) == scalars(again)


def test_report_to_none_logs_nothing_and_an_active_run_is_logged_to(tmp_path, capsys, offline_wandb):
    import wandb

    results, scores, fid = _scored_with_probabilities(tmp_path)
    finish(results, scores, fid, TASK, parse("--output_file", str(tmp_path / "a.json"), "--report_to", "none"))
    assert not (offline_wandb / "wandb").exists()
    active = wandb.init(project="p", dir=str(offline_wandb), job_type="mine", mode="offline")
    try:
        finish(results, scores, fid, TASK, parse("--output_file", str(tmp_path / "b.json"), "--report_to", "none"))
        assert wandb.run is active  # the caller's run is logged to and left open
    finally:
        wandb.finish()
    (logged,) = offline_runs(offline_wandb)
    assert logged.job_type == "mine" and logged.summary.get("eval/per_label._type") == "table-file"


def test_a_wandb_that_cannot_start_leaves_the_results_and_says_so(tmp_path, capsys, offline_wandb, monkeypatch):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where wandb's folder would go")
    monkeypatch.setenv("WANDB_DIR", str(blocked))
    results, scores, fid = _scored_with_probabilities(tmp_path)
    out = tmp_path / "r.json"
    finish(results, scores, fid, TASK, parse("--output_file", str(out), "--report_to", "wandb"))
    assert out.is_file() and out.with_name("r.confusion.png").is_file()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("wandb:")]
    assert len(lines) == 1 and "could not start the evaluate run" in lines[0], lines  # one warning, no traceback
