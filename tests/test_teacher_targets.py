"""teacher_targets: the distribution a sidecar record gives a student (the shared data contract of issue 23)."""

import pytest

from prompt_distill.data import DataError
from prompt_distill.teacher_targets import TeacherTarget, teacher_target

LABELS = ("bug", "feature", "praise")


def test_label_probabilities_give_the_distribution_and_the_labels_probability():
    record = {"status": "labelled", "label": "feature", "label_probabilities": {"feature": 0.7, "bug": 0.2,
                                                                              "praise": 0.1}}
    target = teacher_target(record, LABELS)
    assert target.source == "probabilities"
    assert list(target.distribution) == list(LABELS)  # label order, whatever order the record has
    assert target.distribution == pytest.approx({"bug": 0.2, "feature": 0.7, "praise": 0.1})
    assert target.confidence == pytest.approx(0.7)


def test_votes_win_over_probabilities_when_there_are_several_samples():
    record = {"status": "labelled", "label": "bug", "votes": {"bug": 2, "praise": 1}, "agreement": 2 / 3,
              "label_probabilities": {"bug": 0.5, "feature": 0.1, "praise": 0.4},
              "samples": [{"label": "bug"}, {"label": "praise"}, {"label": "bug"}]}
    target = teacher_target(record, LABELS)
    assert target.source == "votes"
    assert target.distribution == pytest.approx({"bug": 2 / 3, "feature": 0.0, "praise": 1 / 3})
    assert target.confidence == pytest.approx(2 / 3) == pytest.approx(record["agreement"])


def test_a_single_sample_uses_its_probabilities_not_a_one_vote_certainty():
    record = {"status": "labelled", "label": "bug", "votes": {"bug": 1}, "samples": [{"label": "bug"}],
              "label_probabilities": {"bug": 0.6, "feature": 0.3, "praise": 0.1}}
    assert teacher_target(record, LABELS).source == "probabilities"


@pytest.mark.parametrize("record", [
    {"status": "labelled", "label": "bug"},  # an older sidecar
    {"status": "labelled", "label": "bug", "label_probabilities": None},  # an engine that did not score
    {"status": "unparseable", "label": "unparseable", "label_probabilities": {"bug": 1.0}},
    {"status": "too_long", "label": None},
])
def test_records_without_a_target_give_none(record):
    assert teacher_target(record, LABELS) is None


@pytest.mark.parametrize("probabilities, message", [
    ({"bug": 0.5, "spam": 0.5}, "not labels"),
    ({"bug": 0.5, "feature": 0.2}, "sums to"),
    ({"bug": 1.5, "feature": -0.5}, "not probabilities"),
    ([0.5, 0.5], "must be an object"),
])
def test_a_malformed_distribution_is_a_data_error(probabilities, message):
    with pytest.raises(DataError, match=message):
        teacher_target({"status": "labelled", "label": "bug", "label_probabilities": probabilities}, LABELS)


def test_the_training_file_entry_round_trips_and_is_checked():
    target = TeacherTarget({"bug": 0.25, "feature": 0.5, "praise": 0.25}, 0.5, "votes")
    assert TeacherTarget.from_json(target.to_json(), LABELS) == target
    with pytest.raises(DataError, match="data.jsonl:3: teacher 'source'"):
        TeacherTarget.from_json({**target.to_json(), "source": "oracle"}, LABELS, "data.jsonl:3")
    with pytest.raises(DataError, match="confidence"):
        TeacherTarget.from_json({**target.to_json(), "confidence": 2}, LABELS)
