"""Coverage, calibration error and reliability bins on hand-made inputs, each expected value worked out by hand."""

import pytest

from prompt_distill.evaluation.calibration import (
    CalibrationError,
    accuracy_at_coverage,
    answered_count,
    bin_edges,
    bin_index,
    confidence_summary,
    coverage_table,
    expected_calibration_error,
    reliability_bins,
)

# Ten sentences, most confident first; correct: 1 1 1 0 1 | 0 1 0 0 0.
CONFIDENCES = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
CORRECT = [True, True, True, False, True, False, True, False, False, False]


def test_answered_count_is_the_ceiling_in_integers():
    assert answered_count(10, 70) == 7  # 0.7 * 10 is 7.000000000000001 in floats: the ceiling would be 8
    assert answered_count(10, 90) == 9
    assert answered_count(7, 90) == 7  # 6.3 -> 7: at least the share asked for
    assert answered_count(7, 50) == 4  # 3.5 -> 4
    assert answered_count(1, 50) == 1
    assert answered_count(40, 100) == 40
    with pytest.raises(CalibrationError, match="Coverage must be in"):
        answered_count(10, 0)


def test_accuracy_at_coverage_answers_the_most_confident_share():
    table = coverage_table(CONFIDENCES, CORRECT)
    assert [point.percent for point in table] == [100, 90, 80, 70, 50]
    assert [point.answered for point in table] == [10, 9, 8, 7, 5]
    # 5 correct in all; the first 9, 8 and 7 hold all 5; the first 5 hold 4.
    assert [point.accuracy for point in table] == pytest.approx([5 / 10, 5 / 9, 5 / 8, 5 / 7, 4 / 5])
    assert [point.lowest_confidence for point in table] == [0.05, 0.1, 0.2, 0.3, 0.5]
    # The input order does not matter.
    shuffled = [7, 2, 9, 0, 4, 1, 8, 3, 6, 5]
    again = coverage_table([CONFIDENCES[i] for i in shuffled], [CORRECT[i] for i in shuffled])
    assert again == table


def test_ties_across_the_cut_count_their_expected_correct_share():
    # 50% of 5 is 3 answered: 0.9 (correct), then 2 of the 3 sentences tied at 0.6, of which 1 is correct.
    confidences = [0.6, 0.9, 0.2, 0.6, 0.6]
    correct = [False, True, True, True, False]
    point = accuracy_at_coverage(confidences, correct, 50)
    assert point.answered == 3 and point.lowest_confidence == 0.6
    assert point.accuracy == pytest.approx((1 + 2 * 1 / 3) / 3)  # 5/9
    reordered = accuracy_at_coverage(confidences[::-1], correct[::-1], 50)
    assert reordered == point


def test_bin_edges_are_right_closed_and_zero_goes_to_the_first_bin():
    edges = bin_edges(15)
    assert len(edges) == 16 and edges[0] == 0.0 and edges[-1] == 1.0
    assert bin_index(0.0, edges) == 0
    assert bin_index(1 / 15, edges) == 0  # on an edge: the bin it closes
    assert bin_index(2 / 15, edges) == 1
    assert bin_index(2 / 15 + 1e-9, edges) == 2
    assert bin_index(0.55, edges) == 8  # 0.55 * 15 = 8.25
    assert bin_index(0.95, edges) == 14
    assert bin_index(1.0, edges) == 14


def test_expected_calibration_error_by_hand():
    # Bin 14 (14/15, 1]: four at 0.95, 3 correct -> |0.75 - 0.95| * 4/6 = 0.1333...
    # Bin 8 (8/15, 9/15]: two at 0.55, 1 correct -> |0.5 - 0.55| * 2/6 = 0.01666...
    confidences = [0.95, 0.95, 0.55, 0.95, 0.95, 0.55]
    correct = [True, True, True, False, True, False]
    assert expected_calibration_error(confidences, correct) == pytest.approx(0.15)
    bins = reliability_bins(confidences, correct)
    assert len(bins) == 15 and sum(entry.count for entry in bins) == 6
    assert (bins[14].count, bins[14].mean_confidence, bins[14].accuracy) == (4, pytest.approx(0.95), 0.75)
    assert (bins[8].count, bins[8].mean_confidence, bins[8].accuracy) == (2, pytest.approx(0.55), 0.5)
    assert bins[8].lower == pytest.approx(8 / 15) and bins[8].upper == pytest.approx(9 / 15)
    assert bins[0].count == 0 and bins[0].mean_confidence is None and bins[0].accuracy is None


def test_a_calibrated_student_has_zero_error_and_an_overconfident_one_does_not():
    assert expected_calibration_error([0.8] * 5, [True, True, True, True, False]) == pytest.approx(0.0)
    assert expected_calibration_error([1.0] * 4, [True, False, True, False]) == pytest.approx(0.5)


def test_summary_holds_every_number_the_report_prints():
    summary = confidence_summary(CONFIDENCES, CORRECT)
    assert summary["sentences"] == 10 and summary["accuracy"] == 0.5
    assert summary["mean_confidence"] == pytest.approx(sum(CONFIDENCES) / 10)
    assert [row["answered"] for row in summary["coverage"]] == [10, 9, 8, 7, 5]
    assert summary["ece_bins"] == 15 and len(summary["reliability"]) == 15
    # Each of the ten confidences falls in a bin of its own (0.05 in bin 0, 0.1 in bin 1, 0.2 = 3/15 in bin 2, ...),
    # so ECE is the mean of |correct - confidence|.
    by_hand = sum(abs(float(flag) - value) for value, flag in zip(CONFIDENCES, CORRECT, strict=True)) / 10
    assert summary["ece"] == pytest.approx(by_hand)


def test_bad_inputs_are_refused():
    with pytest.raises(CalibrationError, match="2 confidences but 1 correct"):
        expected_calibration_error([0.5, 0.6], [True])
    with pytest.raises(CalibrationError, match="at least one"):
        coverage_table([], [])
    with pytest.raises(CalibrationError, match=r"in \[0, 1\], not 1.5"):
        reliability_bins([1.5], [True])


def test_reliability_bins_agree_with_scikit_learns_calibration_curve_on_the_filled_bins():
    import random

    from sklearn.calibration import calibration_curve

    rng = random.Random(3)
    # edges k/15 themselves, 0 and 1, and random values: the right-closed convention shows on the edges
    confidences = [index / 15 for index in range(16)] + [rng.random() for _ in range(300)]
    correct = [rng.random() < value for value in confidences]
    filled = [entry for entry in reliability_bins(confidences, correct) if entry.count]
    accuracy, mean_confidence = calibration_curve(correct, confidences, n_bins=15, strategy="uniform")
    assert [entry.accuracy for entry in filled] == accuracy.tolist()
    assert [entry.mean_confidence for entry in filled] == mean_confidence.tolist()


# -- tests added for surviving mutants (docs/testing.md, `make mutation`) -------------------------------------------


def test_answered_count_at_the_edges_of_the_coverage_range():
    assert answered_count(200, 1) == 2
    assert answered_count(1000, 100) == 1000
    with pytest.raises(CalibrationError, match=r"Coverage must be in \(0, 100\] percent, not 101\."):
        answered_count(10, 101)


def test_points_and_bins_as_the_results_json_holds_them():
    point = accuracy_at_coverage(CONFIDENCES, CORRECT, 50)
    assert point.to_dict() == {"percent": 50, "answered": 5, "total": 10, "accuracy": 0.8, "lowest_confidence": 0.5}
    first = reliability_bins([0.05, 0.95], [True, False], bins=2)[0]
    assert first.to_dict() == {"lower": 0.0, "upper": 0.5, "count": 1, "mean_confidence": 0.05, "accuracy": 1.0}


def test_expected_calibration_error_uses_the_bins_it_is_given():
    # Two bins: (0, .5] holds .3 (wrong) and .4 (right), |0.5 - 0.35| = 0.15; ten bins split them: (0.3 + 0.6) / 2.
    assert expected_calibration_error([0.3, 0.4], [False, True], bins=2) == pytest.approx(0.15)
    assert expected_calibration_error([0.3, 0.4], [False, True]) == pytest.approx(0.45)


def test_no_sentences_is_named_in_the_error():
    with pytest.raises(CalibrationError, match=r"^No sentences: calibration needs at least one confidence\.$"):
        confidence_summary([], [])
