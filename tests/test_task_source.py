"""task_source: the task from the flags once, then from the file an earlier stage wrote; a flag that differs from
that file is refused naming both values."""

import pytest

from prompt_distill.errors import DataError, TaskError
from prompt_distill.task import language_task
from prompt_distill.task_source import TaskConflictError, recorded_task, resolve_task, task_entry, teacher_task
from tests.task_runs import TRIAGE_LABELS, TRIAGE_PROMPT, triage_task

WHERE = "models/x/run_record.json"


def test_an_entry_gives_the_task_back_whole():
    task = triage_task()
    entry = task_entry(task)
    assert entry["prompt_file"] == TRIAGE_PROMPT and entry["labels"] == ["K", "M", "T"]
    again = recorded_task(None, None, entry, WHERE)
    assert again == task and again.prompt_file == TRIAGE_PROMPT and again.fingerprint() == task.fingerprint()


def test_the_same_flags_are_not_a_conflict():
    entry = task_entry(triage_task())
    assert recorded_task(TRIAGE_PROMPT, TRIAGE_LABELS, entry, WHERE) == triage_task()
    assert recorded_task(None, "K,M,T", entry, WHERE) == triage_task()


def test_other_labels_are_refused_naming_both_lists():
    with pytest.raises(TaskConflictError) as refused:
        recorded_task(None, "pos,neg", task_entry(triage_task()), WHERE)
    assert "--labels pos,neg" in str(refused.value) and "K,M,T" in str(refused.value) and WHERE in str(refused.value)


def test_another_prompt_is_refused_naming_both_files_and_fingerprints(tmp_path):
    other = tmp_path / "other.md"
    other.write_text("Sort it into K, M or T.\nFinal Answer: <label>\n", "utf-8")
    task = triage_task()
    with pytest.raises(TaskConflictError) as refused:
        recorded_task(str(other), None, task_entry(task), WHERE)
    message = str(refused.value)
    assert str(other) in message and TRIAGE_PROMPT in message and task.fingerprint() in message


def test_an_older_entry_without_the_prompt_is_the_builtin_one_or_needs_the_prompt_file():
    language = language_task()
    old = {"name": "language", "fingerprint": language.fingerprint(), "labels": list(language.labels)}
    assert recorded_task(None, None, old, WHERE) == language
    triage = triage_task()
    old_triage = {"name": "custom", "fingerprint": triage.fingerprint(), "labels": ["K", "M", "T"]}
    with pytest.raises(TaskError, match="pass the --prompt_file it was made with"):
        recorded_task(None, None, old_triage, WHERE)
    assert recorded_task(TRIAGE_PROMPT, None, old_triage, WHERE) == triage


def test_an_edited_entry_is_a_data_error():
    entry = task_entry(triage_task()) | {"prompt": "Something else. Final Answer: <label>"}
    with pytest.raises(DataError, match="fingerprint"):
        recorded_task(None, None, entry, WHERE)


@pytest.mark.parametrize("labels", ["pos,neg", "en,fr"])
def test_a_teacher_is_not_asked_the_language_prompt_for_other_labels(labels):
    with pytest.raises(TaskError) as refused:
        teacher_task(None, labels)
    assert "without --prompt_file" in str(refused.value) and "language codes" in str(refused.value)
    assert teacher_task(None, "ar,de,el,en,es,fr,hi,ru,tr,ur,vi,zh,ot").labels == language_task().labels
    assert teacher_task(TRIAGE_PROMPT, "K,M,T") == triage_task()


def test_without_a_recorded_entry_the_flags_decide():
    assert resolve_task(None, "en,fr", None, None).labels == ("en", "fr")  # not a teacher: no refusal
    with pytest.raises(TaskError, match="without --prompt_file"):
        resolve_task(None, "en,fr", None, None, teacher=True)
