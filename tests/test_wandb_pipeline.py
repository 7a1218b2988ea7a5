"""Issue 22's "Done means": label -> train -> evaluate on the embedded model with WANDB_MODE=offline, then the three
offline runs read back with wandb's own reader (``tests/wandb_offline.py``: wandb-core decodes each run's .wandb
log): one group, three job types, the dataset and model artifacts with their lineage (data -> adapter ->
evaluation), the evaluation's tables and confusion-matrix chart, the training's eval loss, the labelling metrics."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.eval_helpers import ROOT
from tests.wandb_offline import offline_runs

TRIAGE = ROOT / "example-data" / "feedback_triage"
SENTENCES = 20
EVAL_FRACTION = "0.3"  # 20 sentences: a few held out, for the training's eval loss and the evaluation


def _stage(tmp_path, script: str, *argv: str) -> str:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path),
           # wandb's own caches and staging copies stay in the test's folder
           "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"), "WANDB_DATA_DIR": str(tmp_path / "wandb-data"),
           "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    for name in ("WANDB_RUN_GROUP", "WANDB_PROJECT", "WANDB_JOB_TYPE", "WANDB_NAME", "WANDB_RUN_ID"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, str(ROOT / script), *argv], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{script}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, smollm2_dir):
    """The three default-named stages on 20 triage sentences, with --report_to wandb (no --run_group: the default
    group, derived from the data file, must bring them together)."""
    tmp_path = tmp_path_factory.mktemp("wandb-pipeline")
    lines = (TRIAGE / "sentences.txt").read_text("utf-8").splitlines()[:SENTENCES]
    gold = (TRIAGE / "sentences.gold.tsv").read_text("utf-8").splitlines()[:SENTENCES]
    (tmp_path / "triage.txt").write_text("\n".join(lines) + "\n", "utf-8")
    (tmp_path / "triage.gold.tsv").write_text("\n".join(gold) + "\n", "utf-8")
    task = ["--prompt_file", str(TRIAGE / "prompt.md"), "--labels", str(TRIAGE / "labels.txt")]
    split = ["--eval_fraction", EVAL_FRACTION]
    _stage(tmp_path, "create_data.py", "--backend", "transformers", "--model_name", "smollm2-135m-instruct", *task,
           "--input_file", "triage.txt", "--output_file", "data/triage.jsonl", "--report_to", "wandb")
    _stage(tmp_path, "train_sft_trl.py", "--model_name", "smollm2-135m-instruct", "--data_file", "data/triage.jsonl",
           "--output_dir", "models/triage", "--num_train_epochs", "1", "--per_device_train_batch_size", "4",
           "--learning_rate", "1e-3", "--save_strategy", "no", "--eval_steps", "2", "--logging_steps", "1",
           "--disable_tqdm", "true",
           "--report_to", "wandb", *split)
    _stage(tmp_path, "evaluate.py", "--model_path", "models/triage", "--test_file", "triage.txt",
           "--teacher_file", "data/triage.jsonl", "--output_file", "results/triage_eval.json", "--report_to", "wandb",
           "--defer_below", "0.5", *split)
    runs = offline_runs(tmp_path)
    return {run.job_type: run for run in runs}, runs


def _artifact(run, name: str, used: bool = False) -> dict | None:
    """The artifact ``name`` among the run's outputs, or among its inputs with ``used``."""
    return next((a for a in (run.used() if used else run.logged()) if a.get("name") == name), None)


def _keys(run) -> set[str]:
    return {key for row in run.history for key in row} | set(run.summary)


@pytest.mark.slow
def test_one_group_three_job_types(pipeline):
    by_type, runs = pipeline
    assert sorted(run.job_type for run in runs) == ["evaluate", "label", "train"]
    assert {run.group for run in runs} == {"triage"}  # the data file's stem: the default commands share it
    assert all(run.exit_code == 0 for run in runs)
    assert by_type["evaluate"].name == "triage_eval"  # named after its output


@pytest.mark.slow
def test_lineage_data_to_adapter_to_evaluation(pipeline):
    by_type, _ = pipeline
    label, train, evaluate = by_type["label"], by_type["train"], by_type["evaluate"]
    dataset = _artifact(label, "data-triage")
    assert dataset is not None and dataset["type"] == "dataset"
    assert {"triage.jsonl", "triage.meta.jsonl", "triage.run.json"} <= {
        entry["path"].rsplit("/", 1)[-1] for entry in dataset["manifest"]["contents"]}
    # Used as the training's input: the same files, so the same digest (wandb resolves it to the same version).
    used = _artifact(train, "data-triage", used=True)
    assert used is not None and used.get("digest", dataset["digest"]) == dataset["digest"]
    adapter = _artifact(train, "adapter-triage")
    assert adapter is not None and adapter["type"] == "model"
    assert any(entry["path"].endswith("run_record.json") for entry in adapter["manifest"]["contents"])
    used = _artifact(evaluate, "adapter-triage", used=True)
    assert used is not None and used.get("digest", adapter["digest"]) == adapter["digest"]


@pytest.mark.slow
def test_the_evaluation_logs_tables_the_chart_and_every_block(pipeline):
    evaluate = pipeline[0]["evaluate"]
    summary = evaluate.summary
    for table in ("eval/per_label", "eval/predictions", "eval/reliability"):
        assert summary.get(f"{table}._type") == "table-file", table
    assert summary.get("eval/predictions.nrows") == summary.get("eval/total")
    chart = evaluate.config.get("_wandb.visualize.eval/confusion_matrix") or {}
    assert chart.get("panel_config", {}).get("panelDefId") == "wandb/confusion_matrix/v1"
    assert summary.get("eval/confusion_matrix_table._type") == "table-file"
    assert summary.get("eval/reliability_diagram._type") == "image-file"
    for key in ("eval/accuracy", "eval/macro_f1", "eval/fidelity/student_vs_teacher/rate", "eval/confidence/ece",
                "eval/confidence/coverage_100pct/accuracy", "eval/cascade/accuracy", "eval/cascade/deferred_share"):
        assert isinstance(summary.get(key), (int, float)), key


@pytest.mark.slow
def test_training_logs_eval_loss_and_labelling_its_metrics(pipeline):
    by_type, _ = pipeline
    assert "eval/loss" in _keys(by_type["train"])
    assert "train/loss" in _keys(by_type["train"])
    label = by_type["label"]
    keys = _keys(label)
    for key in ("label/parse_rate", "label/sentences_per_s", "label/prompt_tokens", "label/cached_prompt_tokens",
                "label/too_long", "label/retried", "label/cut_thoughts"):
        assert key in keys, (key, sorted(keys))
    assert any(key.startswith("label/count/") for key in keys), sorted(keys)  # the label distribution
    assert any(key.startswith("label/generated_tokens") for key in keys), sorted(keys)  # the thinking lengths
