"""Training takes the task from the data's run header (create_data.py's NAME.run.json): no --labels or
--prompt_file to repeat; given ones that differ are refused naming both; the run record carries the task on."""

import json

import pytest

import train_sft_trl
from prompt_distill.training.config import ScriptArguments
from prompt_distill.training.run import read_data, run_training
from tests.task_runs import TRIAGE_LABELS, TRIAGE_PROMPT, label_triage_data, triage_task
from tests.test_user_files import one_error_line
from tests.tiny_models import fast_config, save_model_dir, tiny_llama


@pytest.fixture(scope="module")
def triage_data(tmp_path_factory):
    return label_triage_data(tmp_path_factory.mktemp("data"), count=40).training


def test_training_takes_labels_and_prompt_from_the_data_run_file(triage_data):
    data = read_data(ScriptArguments(data_file=str(triage_data), split="all"))
    assert data.task == triage_task() and data.task.prompt_file == TRIAGE_PROMPT
    assert data.examples_in_file == 40


def test_the_same_flags_are_accepted(triage_data):
    data = read_data(ScriptArguments(data_file=str(triage_data), split="all", labels=TRIAGE_LABELS,
                                     prompt_file=TRIAGE_PROMPT))
    assert data.task == triage_task()


def test_other_labels_are_refused_naming_both(triage_data, tmp_path, capsys):
    code = train_sft_trl.main(["--data_file", str(triage_data), "--labels", "pos,neg",
                               "--output_dir", str(tmp_path / "out"), "--use_cpu", "true", "--report_to", "none"])
    line = one_error_line(capsys)
    assert code == 2 and "--labels pos,neg" in line and "K,M,T" in line and "triage.run.json" in line


def test_another_prompt_is_refused_naming_both_prompts(triage_data, tmp_path, capsys):
    other = tmp_path / "other.md"
    other.write_text("Say K, M or T.\nFinal Answer: <label>\n", "utf-8")
    code = train_sft_trl.main(["--data_file", str(triage_data), "--prompt_file", str(other),
                               "--output_dir", str(tmp_path / "out"), "--use_cpu", "true", "--report_to", "none"])
    line = one_error_line(capsys)
    assert code == 2 and str(other) in line and TRIAGE_PROMPT in line and triage_task().fingerprint() in line


def test_the_run_record_carries_the_labels_and_the_prompt(triage_data, tmp_path, smollm2_tokenizer):
    base = save_model_dir(tiny_llama(len(smollm2_tokenizer)), smollm2_tokenizer, tmp_path / "base")
    out = tmp_path / "adapter"
    run_training(ScriptArguments(base_model=str(base), data_file=str(triage_data), lora_r=2), fast_config(out))
    record = json.loads((out / "run_record.json").read_text("utf-8"))
    task = triage_task()
    assert record["task"] == {"name": "custom", "fingerprint": task.fingerprint(), "labels": ["K", "M", "T"],
                              "prompt_file": TRIAGE_PROMPT, "prompt": task.system_prompt}
