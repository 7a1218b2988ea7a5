"""Metrics on cases small enough to compute by hand (the expected numbers are worked out in the comments)."""

import pytest

from prompt_distill.evaluation.metrics import (
    UNPARSEABLE_COLUMN,
    accuracy,
    agreement,
    confusion_matrix,
    error_examples,
    fidelity,
    label_stats,
    macro_f1,
    score,
)
from prompt_distill.task import UNPARSEABLE

LABELS = ("a", "b", "c")
U = UNPARSEABLE
# gold:  a a a b b c
# pred:  a a b b ? a
GOLD = ["a", "a", "a", "b", "b", "c"]
PRED = ["a", "a", "b", "b", U, "a"]


def test_accuracy_counts_unparseable_as_wrong():
    assert accuracy(GOLD, PRED) == pytest.approx(3 / 6)  # positions 0, 1, 3
    assert accuracy([U], [U]) == 0.0  # two unreadable answers never "agree"
    assert accuracy([], []) == 0.0


def test_confusion_matrix_has_a_question_mark_column_and_every_label_row():
    matrix = confusion_matrix(GOLD, PRED, LABELS)
    assert matrix.columns == ("a", "b", "c", UNPARSEABLE_COLUMN)
    assert matrix.as_array() == [
        [2, 1, 0, 0],  # gold a: two right, one as b
        [0, 1, 0, 1],  # gold b: one right, one unparseable
        [1, 0, 0, 0],  # gold c: predicted a
    ]
    assert matrix.counts["b"][UNPARSEABLE_COLUMN] == 1
    assert [matrix.row_total(row) for row in LABELS] == [3, 2, 1]


def test_confusion_matrix_keeps_labels_without_examples_and_rejects_unknown_references():
    matrix = confusion_matrix(["a"], ["a"], LABELS)
    assert matrix.as_array() == [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    with pytest.raises(ValueError, match="'z' is not one of the task's labels"):
        confusion_matrix(["z"], ["a"], LABELS)


def test_per_label_precision_recall_f1_by_hand():
    stats = {entry.label: entry for entry in label_stats(GOLD, PRED, LABELS)}
    # a: support 3, predicted 3 times (0, 1, 5), correct 2 -> P 2/3, R 2/3, F1 2/3
    assert (stats["a"].support, stats["a"].predicted, stats["a"].correct) == (3, 3, 2)
    assert stats["a"].precision == pytest.approx(2 / 3)
    assert stats["a"].recall == stats["a"].accuracy == pytest.approx(2 / 3)
    assert stats["a"].f1 == pytest.approx(2 / 3)
    # b: support 2, predicted twice (2, 3), correct 1 -> P 1/2, R 1/2 (the unparseable one counts against recall)
    assert stats["b"].precision == pytest.approx(0.5)
    assert stats["b"].recall == pytest.approx(0.5)
    assert stats["b"].f1 == pytest.approx(0.5)
    # c: never predicted -> precision 0 by convention, recall 0, F1 0
    assert (stats["c"].predicted, stats["c"].precision, stats["c"].recall, stats["c"].f1) == (0, 0.0, 0.0, 0.0)


def test_macro_f1_counts_labels_absent_from_predictions_but_not_labels_absent_everywhere():
    stats = label_stats(GOLD, PRED, (*LABELS, "d"))  # d: no gold, never predicted
    assert macro_f1(stats) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    # A label predicted but never in gold counts with F1 0: gold a b, pred a c -> (1 + 0 + 0) / 3
    stats = label_stats(["a", "b"], ["a", "c"], LABELS)
    assert macro_f1(stats) == pytest.approx(1 / 3)


def test_score_summary_and_worst_first_order():
    scores = score(GOLD, PRED, LABELS)
    assert (scores.total, scores.correct, scores.unparseable, scores.parsed) == (6, 3, 1, 5)
    assert scores.parse_rate == pytest.approx(5 / 6)
    assert scores.accuracy == pytest.approx(0.5)
    assert [entry.label for entry in scores.worst_first()] == ["c", "b", "a"]  # 0%, 50%, 66.7%
    summary = scores.summary()
    assert summary["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 3)


def test_worst_first_breaks_ties_by_number_of_errors_and_skips_labels_without_examples():
    # a: 1/2 (1 error), b: 2/4 (2 errors): same accuracy, b has more errors so it comes first; c has no gold.
    scores = score(["a", "a", "b", "b", "b", "b"], ["a", "b", "b", "b", "a", U], LABELS)
    assert [entry.label for entry in scores.worst_first()] == ["b", "a"]


def test_score_rejects_predictions_that_were_not_parsed():
    with pytest.raises(ValueError, match="parse them with Task.parse"):
        score(["a"], ["A"], LABELS)
    with pytest.raises(ValueError, match="1 references but 2 predictions"):
        score(["a"], ["a", "b"], LABELS)


def test_agreement_and_fidelity_on_the_sentences_with_a_teacher_label():
    assert agreement(["a", "b", U], ["a", "c", U]).matches == 1
    student = ["a", "b", "b", U, "c"]
    teacher = ["a", "a", None, "b", "c"]
    gold = ["a", "a", "b", "b", "a"]
    result = fidelity(student, teacher, gold)
    assert (result.evaluated, result.with_teacher) == (5, 4)
    # kept positions 0, 1, 3, 4: student a b ? c, teacher a a b c, gold a a b a
    assert (result.student_vs_teacher.matches, result.student_vs_teacher.total) == (2, 4)
    assert (result.teacher_vs_gold.matches, result.teacher_vs_gold.total) == (3, 4)
    assert (result.student_vs_gold.matches, result.student_vs_gold.total) == (1, 4)
    assert result.to_dict()["student_vs_teacher"]["rate"] == pytest.approx(0.5)
    no_gold = fidelity(student, teacher)
    assert no_gold.teacher_vs_gold is None and no_gold.to_dict()["student_vs_gold"] is None


def test_error_examples_keep_input_order_and_the_limit():
    texts = [f"t{i}" for i in range(6)]
    raws = ["a", "a", "b", "b", "Hello!", "a"]
    examples = error_examples(texts, GOLD, PRED, raws, limit=1)
    assert examples == {
        "a": [{"text": "t2", "reference": "a", "predicted": "b", "raw": "b"}],
        "b": [{"text": "t4", "reference": "b", "predicted": U, "raw": "Hello!"}],
        "c": [{"text": "t5", "reference": "c", "predicted": "a", "raw": "a"}],
    }


# -- tests added for surviving mutants (docs/testing.md, `make mutation`) -------------------------------------------


def test_an_unknown_reference_lists_the_labels_and_an_unknown_prediction_goes_to_the_question_mark_column():
    with pytest.raises(ValueError, match=r"Reference label 'x' is not one of the task's labels: a, b, c\."):
        confusion_matrix(["x"], ["a"], LABELS)
    matrix = confusion_matrix(["a", "a"], ["a", "zz"], LABELS)
    assert matrix.counts["a"] == {"a": 1, "b": 0, "c": 0, UNPARSEABLE_COLUMN: 1}


def test_an_empty_confusion_matrix_is_square_and_holds_integers():
    import json

    rows = confusion_matrix([], [], LABELS).as_array()
    assert json.dumps(rows) == json.dumps([[0, 0, 0, 0]] * 3)
    assert label_stats([], [], LABELS)[0].support == 0


def test_per_label_stats_do_not_warn_about_a_label_never_predicted():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = label_stats(["a", "b"], ["a", "a"], LABELS)
    assert [entry.precision for entry in stats] == [0.5, 0.0, 0.0]


def test_worst_first_orders_perfect_labels_by_name():
    scores = score(["b", "b", "a"], ["b", "b", "a"], LABELS)
    assert [entry.label for entry in scores.worst_first()] == ["a", "b"]


def test_error_examples_refuse_lists_of_different_lengths_and_keep_the_limit():
    with pytest.raises(ValueError):
        error_examples(["t0", "t1"], ["a", "a"], ["b", "b"], ["b"], limit=5)
    examples = error_examples(["t0", "t1", "t2"], ["a", "a", "a"], ["b", "b", "b"], ["b", "b", "b"], limit=2)
    assert [example["text"] for example in examples["a"]] == ["t0", "t1"]


def test_fidelity_as_the_results_json_holds_it():
    result = fidelity(["a", "b"], ["a", "a"], ["b", "a"])
    assert result.to_dict() == {
        "evaluated": 2,
        "with_teacher_label": 2,
        "student_vs_teacher": {"matches": 1, "total": 2, "rate": 0.5},
        "teacher_vs_gold": {"matches": 1, "total": 2, "rate": 0.5},
        "student_vs_gold": {"matches": 0, "total": 2, "rate": 0.0},
    }
