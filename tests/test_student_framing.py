"""The student's framing: the fewest tokens the chat template allows, chosen at training, read back at inference."""

import json

import pytest

from prompt_distill.student.check import StudentError, resolve_student
from prompt_distill.student_framing import EMPTY_SYSTEM, USER_ONLY, choose_framing, framed_messages, framing_tokens
from prompt_distill.task import Task
from tests.tiny_models import qwen3_instruct_2507_template, tokenizer_with_template


def prompt_length(tokenizer, chat):
    return len(tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True,
                                             return_dict=True)["input_ids"])


def test_smollm2_drops_its_injected_system_turn(smollm2_tokenizer):
    assert choose_framing(smollm2_tokenizer) == EMPTY_SYSTEM
    # The figures: a short sentence's prompt goes from 35 to 19 tokens, 16 of framing saved.
    saved = framing_tokens(smollm2_tokenizer, USER_ONLY) - framing_tokens(smollm2_tokenizer, EMPTY_SYSTEM)
    assert saved == 16
    text = "Hola amigo"
    assert prompt_length(smollm2_tokenizer, framed_messages(text, EMPTY_SYSTEM)) == (
        prompt_length(smollm2_tokenizer, framed_messages(text, USER_ONLY)) - saved)
    rendered = smollm2_tokenizer.apply_chat_template(framed_messages(text, EMPTY_SYSTEM), add_generation_prompt=True,
                                                     tokenize=False)
    assert "SmolLM" not in rendered


def test_qwen3_instruct_keeps_the_user_turn_alone(smollm2_tokenizer):
    tokenizer = tokenizer_with_template(smollm2_tokenizer, qwen3_instruct_2507_template())
    assert choose_framing(tokenizer) == USER_ONLY
    assert framing_tokens(tokenizer, USER_ONLY) < framing_tokens(tokenizer, EMPTY_SYSTEM)


def test_a_template_that_refuses_a_system_message_keeps_the_user_turn(smollm2_tokenizer):
    refusing = ("{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
                "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    assert choose_framing(tokenizer_with_template(smollm2_tokenizer, refusing)) == USER_ONLY


def test_unknown_framing_is_refused():
    with pytest.raises(ValueError, match="student framing must be one of"):
        Task.student_messages("x", "no_framing")


def adapter_folder(tmp_path, record):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "base"}))
    if record is not None:
        (folder / "run_record.json").write_text(json.dumps({"base_model": "base", **record}))
    return str(folder)


def test_the_student_uses_the_framing_of_its_run_record(tmp_path):
    student = resolve_student(adapter_folder(tmp_path, {"student_framing": EMPTY_SYSTEM}), None)
    assert student.messages("Hola") == [{"role": "system", "content": ""}, {"role": "user", "content": "Hola"}]
    assert not any("framing" in note for note in student.notes)


@pytest.mark.parametrize("record", [{}, None])
def test_an_older_adapter_keeps_the_user_turn_and_says_so(tmp_path, record):
    student = resolve_student(adapter_folder(tmp_path, record), None)
    assert student.messages("Hola") == [{"role": "user", "content": "Hola"}]
    assert any("framed as a lone user turn" in note for note in student.notes)


def test_a_recorded_framing_that_is_unknown_is_an_error(tmp_path):
    with pytest.raises(StudentError, match="student_framing 'odd' is not one of"):
        resolve_student(adapter_folder(tmp_path, {"student_framing": "odd"}), None)


def test_no_adapter_is_the_user_turn():
    assert resolve_student(None, "base").messages("Hola") == [{"role": "user", "content": "Hola"}]
