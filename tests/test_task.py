import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prompt_distill.task import (
    LANGUAGE_LABEL_NAMES,
    UNPARSEABLE,
    Task,
    TaskError,
    language_task,
    load_task,
    parse_labels_flag,
    strip_thinking,
)

TASK = language_task()

# (raw model output, expected label): realistic teacher and student outputs.
REALISTIC_OUTPUTS = [
    # Qwen3 thinking-2507: the template opens <think> in the prompt, so only the closing tag appears.
    ("The text uses Cyrillic with ы, so Russian.\n</think>\n\nFinal Answer: ru", "ru"),
    ("Okay, Devanagari script, Hindi words है and में.</think>Final Answer: hi", "hi"),
    ("<think>\nGreek letters.\n</think>\n\nFinal Answer: el", "el"),
    ("<think>Let me check. Maybe Final Answer: es? No, it has ç and ş.</think>\nFinal Answer: tr", "tr"),
    ("<think>Arabic script with ے and ٹ -> Urdu.</think>\n\n**Final Answer:** ur", "ur"),
    ("<think>Hmm</think>\nFinal Answer: `zh`", "zh"),
    ("<think>x</think>Final Answer: \"fr\"", "fr"),
    ("<think>x</think>Final Answer: 'de'.", "de"),
    ("<think>x</think>\nFINAL ANSWER: EN", "en"),
    ("<think>x</think>\nfinal answer: vi", "vi"),
    ("<think>x</think>\nFinal answer - ar", "ar"),
    ("<think>x</think>\nFinal Answer: ot (Swahili is not in the label set)", "ot"),
    ("<think>x</think>\nFinal Answer:\nes", "es"),
    ("<think>x</think>\nFinal Answer: **el**", "el"),
    ("<think>x</think>\nFinal Answer: [ru]", "ru"),
    ("<think>x</think>\nFinal Answer: English", "en"),
    ("<think>x</think>\nFinal Answer: The language is Spanish", "es"),
    ("Reasoning done.</think>\nThe text is Portuguese, which is not listed.\nFinal Answer: ot", "ot"),
    # Extra prose after the thought, two answers: the last one counts.
    ("</think>First I thought Final Answer: es, but the ñ-free spelling and 'você' mean...\nFinal Answer: ot", "ot"),
    # Truncated at max_tokens inside the thought: nothing committed, even if a label was mentioned.
    ("<think>\nThe script is Latin. Candidates: es, pt. Final Answer: es would be", UNPARSEABLE),
    ("<think>\nLet me look at the diacritics", UNPARSEABLE),
    # Wrong or missing labels.
    ("<think>x</think>\nFinal Answer: ja", UNPARSEABLE),
    ("<think>x</think>\nFinal Answer: pt", UNPARSEABLE),
    ("<think>x</think>\nI cannot determine the language.", UNPARSEABLE),
    ("<think>x</think>\n", UNPARSEABLE),
    ("<think>x</think>\nFinal Answer: en or de", "en"),
    ("<think>x</think>\nFinal Answer: it could be de or fr", UNPARSEABLE),
    # Non-thinking outputs: the student answers with the bare label.
    ("en", "en"),
    ("EN", "en"),
    (" fr.\n", "fr"),
    ("`zh`", "zh"),
    ("**hi**", "hi"),
    ("Final Answer: ur", "ur"),
    ("the answer is en", UNPARSEABLE),
    ("", UNPARSEABLE),
    ("Final Answer:", UNPARSEABLE),
]


@pytest.mark.parametrize("raw,expected", REALISTIC_OUTPUTS)
def test_parser_on_realistic_outputs(raw, expected):
    assert TASK.parse(raw) == expected


def test_table_is_large_enough():
    assert len(REALISTIC_OUTPUTS) >= 30


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1")), st.none(), st.integers()))
def test_parser_never_raises_and_returns_a_label_or_unparseable(raw):
    assert TASK.parse(raw) in set(TASK.labels) | {UNPARSEABLE}


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="<>")), st.sampled_from(list(LANGUAGE_LABEL_NAMES)))
def test_parser_finds_the_label_after_any_thought(thought, label):
    assert TASK.parse(f"{thought}</think>\n\nFinal Answer: {label}") == label


def test_strip_thinking():
    assert strip_thinking("a</think>b") == "b"
    assert strip_thinking("<think>a</think>b</think>c") == "c"
    assert strip_thinking("<think>never closed") is None
    assert strip_thinking("plain") == "plain"


def test_prompt_is_at_least_2000_smollm2_tokens(smollm2_tokenizer):
    count = len(smollm2_tokenizer(TASK.system_prompt, add_special_tokens=False)["input_ids"])
    assert count >= 2000, count


def test_prompt_names_every_label_and_the_answer_format():
    for code in TASK.labels:
        assert f"`{code}`" in TASK.system_prompt or f" {code} " in TASK.system_prompt or f"{code}:" in TASK.system_prompt
    assert "Final Answer:" in TASK.system_prompt


def test_teacher_messages_share_a_prefix_and_end_with_the_text():
    first, second = TASK.teacher_messages("Hola"), TASK.teacher_messages("Bonjour")
    assert first[0] == second[0]
    assert first[-1]["content"].endswith("Hola") and second[-1]["content"].endswith("Bonjour")
    assert TASK.student_messages("Hola") == [{"role": "user", "content": "Hola"}]


def test_fingerprint_changes_with_prompt_and_labels():
    other_prompt = Task(labels=TASK.labels, system_prompt=TASK.system_prompt + " ", label_names={})
    other_labels = Task(labels=TASK.labels[:-1], system_prompt=TASK.system_prompt, label_names={})
    fingerprints = {TASK.fingerprint(), other_prompt.fingerprint(), other_labels.fingerprint()}
    assert len(fingerprints) == 3


def test_custom_task_from_flags(tmp_path):
    prompt = tmp_path / "sentiment.txt"
    prompt.write_text("Classify sentiment. End with 'Final Answer: positive' or 'Final Answer: negative'.")
    task = load_task(str(prompt), "positive,negative")
    assert task.labels == ("positive", "negative")
    assert task.parse("</think>Final Answer: Negative") == "negative"
    assert task.parse("Final Answer: en") == UNPARSEABLE


def test_custom_prompt_must_ask_for_the_answer_format(tmp_path):
    prompt = tmp_path / "p.txt"
    prompt.write_text("Classify the text.")
    with pytest.raises(TaskError, match="Final Answer"):
        load_task(str(prompt), "a,b")
    with pytest.raises(TaskError, match="no such file"):
        load_task(str(tmp_path / "missing.txt"))


@pytest.mark.parametrize("labels", [("a",), ("a", "A"), ("a", "b c"), ("a", "unparseable"), ("a", "")])
def test_bad_label_sets_are_refused(labels):
    with pytest.raises(TaskError):
        Task(labels=labels, system_prompt="x")


def test_labels_flag_accepts_list_or_file(tmp_path):
    assert parse_labels_flag("a, b,c") == ("a", "b", "c")
    path = tmp_path / "labels.txt"
    path.write_text("x\ny\n\n")
    assert parse_labels_flag(str(path)) == ("x", "y")
