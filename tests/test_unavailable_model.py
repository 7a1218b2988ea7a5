"""A model that is neither local nor in the Hugging Face cache, offline: one line naming the model and what to pass,
in seconds, instead of hub retries and an OSError traceback (issue 12 item 5). Tests run with HF_HUB_OFFLINE=1."""

import json
import time

import pytest
from eval_helpers import gold_pairs, make_adapter, write_teacher_file

import evaluate
import train_sft_trl
from prompt_distill.models import ModelNotFoundError, load_causal_lm, load_config, load_tokenizer
from tests.test_user_files import one_error_line

MISSING = "nobody/missing-model"


def adapter_on_missing_model(folder, smollm2_dir, **kwargs):
    """An adapter trained on a hub model: both run_record.json and adapter_config.json name it."""
    adapter = make_adapter(folder, smollm2_dir, base_model=MISSING, **kwargs)
    config = json.loads((adapter / "adapter_config.json").read_text("utf-8"))
    config["base_model_name_or_path"] = MISSING
    (adapter / "adapter_config.json").write_text(json.dumps(config), "utf-8")
    return adapter


def assert_explains(message: str) -> None:
    assert f"'{MISSING}'" in message and "not available offline" in message
    assert "local model folder" in message and "smollm2-135m-instruct" in message


@pytest.mark.parametrize("load", [load_config, load_tokenizer, load_causal_lm])
def test_loading_a_model_that_is_not_available_offline(monkeypatch, load):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as error:
        load(MISSING)
    assert_explains(str(error.value))
    assert "\n" not in str(error.value)


def test_evaluate_with_an_adapter_whose_base_model_is_not_available(tmp_path, smollm2_dir, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    teacher = write_teacher_file(tmp_path / "teacher.jsonl", gold_pairs())
    adapter = adapter_on_missing_model(tmp_path / "adapter", smollm2_dir, data_file=teacher)
    start = time.monotonic()
    code = evaluate.main(["--backend", "transformers", "--model_path", str(adapter),
                          "--output_file", str(tmp_path / "r.json")])
    assert code == 2 and time.monotonic() - start < 10
    assert_explains(one_error_line(capsys))


def test_training_on_a_base_model_that_is_not_available(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = write_teacher_file(tmp_path / "train.jsonl", gold_pairs())
    start = time.monotonic()
    code = train_sft_trl.main(["--model_name", MISSING, "--data_file", str(data), "--report_to", "none",
                               "--output_dir", str(tmp_path / "out")])
    assert code == 2 and time.monotonic() - start < 10
    assert_explains(one_error_line(capsys))


def test_a_local_copy_of_an_unavailable_base_model_is_accepted_with_a_note(tmp_path, smollm2_dir):
    """The error says to pass a local folder; evaluate must then accept it instead of calling it another model."""
    from prompt_distill.student.check import StudentError, resolve_student

    adapter = adapter_on_missing_model(tmp_path / "adapter", smollm2_dir)
    student = resolve_student(str(adapter), str(smollm2_dir))
    assert student.base_model == str(smollm2_dir) and student.base_model_source == "--base_model"
    assert any(MISSING in note and "local copy" in note for note in student.notes)
    with pytest.raises(StudentError, match="only works on its own base model"):
        resolve_student(str(adapter), "other/model")  # not a local folder: still another model
