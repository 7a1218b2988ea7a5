"""evaluate.py with an adapter takes labels and prompt from its run_record.json: no --labels or --prompt_file to
repeat; given ones that differ are refused naming both (issue 21, item 3)."""

import json

import pytest

import evaluate
from prompt_distill.data import in_split
from prompt_distill.task_source import task_entry
from tests.eval_helpers import make_adapter, write_test_file
from tests.task_runs import TRIAGE_PROMPT, triage_gold, triage_task
from tests.test_user_files import one_error_line


@pytest.fixture(scope="module")
def triage_adapter(tmp_path_factory, smollm2_dir):
    folder = tmp_path_factory.mktemp("triage")
    return make_adapter(folder / "adapter", smollm2_dir, task=task_entry(triage_task()))


@pytest.fixture(scope="module")
def triage_test_file(tmp_path_factory):
    held_out = [pair for pair in triage_gold() if in_split(pair[0], "eval", 0.2, 0)][:3]
    return write_test_file(tmp_path_factory.mktemp("test"), held_out)


def test_the_adapters_task_is_used_without_task_flags(triage_adapter, triage_test_file, tmp_path):
    output = tmp_path / "results.json"
    code = evaluate.main(["--model_path", str(triage_adapter), "--test_file", str(triage_test_file),
                          "--backend", "transformers", "--output_file", str(output)])
    assert code == 0
    results = json.loads(output.read_text("utf-8"))
    assert results["task"]["labels"] == ["K", "M", "T"]
    assert {p["predicted"] for p in results["predictions"]} <= {"K", "M", "T"}


def test_other_labels_are_refused_naming_both(triage_adapter, triage_test_file, capsys):
    code = evaluate.main(["--model_path", str(triage_adapter), "--test_file", str(triage_test_file),
                          "--labels", "en,fr", "--output_file", "none"])
    line = one_error_line(capsys)
    assert code == 2 and "en,fr" in line and "K,M,T" in line


def test_another_prompt_is_refused_naming_both(triage_adapter, triage_test_file, tmp_path, capsys):
    other = tmp_path / "other.md"
    other.write_text("Say K, M or T.\nFinal Answer: <label>\n", "utf-8")
    code = evaluate.main(["--model_path", str(triage_adapter), "--test_file", str(triage_test_file),
                          "--prompt_file", str(other), "--output_file", "none"])
    line = one_error_line(capsys)
    assert code == 2 and str(other) in line and TRIAGE_PROMPT in line and triage_task().fingerprint() in line


def test_the_teacher_file_defaults_to_the_adapters_training_data(smollm2_dir, tmp_path):
    from tests.task_runs import label_triage_data

    data = label_triage_data(tmp_path / "data", count=60).training
    adapter = make_adapter(tmp_path / "adapter", smollm2_dir, data_file=data, task=task_entry(triage_task()))
    held_out = [pair for pair in triage_gold(60) if in_split(pair[0], "eval", 0.2, 0)][:3]
    test_file = write_test_file(tmp_path / "test", held_out, gold=False)  # no gold: graded against the teacher
    output = tmp_path / "results.json"
    code = evaluate.main(["--model_path", str(adapter), "--test_file", str(test_file), "--backend", "transformers",
                          "--output_file", str(output)])
    assert code == 0
    results = json.loads(output.read_text("utf-8"))
    assert results["teacher_file"] == str(data) and results["reference"] == "teacher"
