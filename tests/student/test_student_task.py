"""prompt_distill.Student takes its labels from the adapter's run record: the same labels are accepted, other ones
are refused naming both (issue 21, item 3; the predict.py side is in test_predict.py)."""

import pytest

from prompt_distill.student.check import StudentError
from prompt_distill.student.classifier import Student
from prompt_distill.task_source import task_entry
from tests.eval_helpers import make_adapter
from tests.task_runs import triage_task


@pytest.fixture(scope="module")
def triage_adapter(tmp_path_factory, smollm2_dir):
    return make_adapter(tmp_path_factory.mktemp("student") / "adapter", smollm2_dir, task=task_entry(triage_task()))


def test_other_labels_are_refused_naming_both(triage_adapter):
    with pytest.raises(StudentError) as refused:
        Student.load(triage_adapter, backend="transformers", labels=["pos", "neg"])
    assert "K,M,T" in str(refused.value) and "pos,neg" in str(refused.value)


def test_the_run_records_labels_without_any_given_and_the_same_ones_given(triage_adapter):
    assert Student.load(triage_adapter, backend="transformers").labels == ("K", "M", "T")
    assert Student.load(triage_adapter, backend="transformers", labels=["K", "M", "T"]).labels == ("K", "M", "T")
