"""The printed report's layout, on scores small enough to check line by line."""

from prompt_distill.evaluation.metrics import error_examples, fidelity, score
from prompt_distill.evaluation.report import (
    confusion_table,
    fidelity_block,
    marker,
    per_label_table,
    problem_labels,
    sample_line,
    summary_block,
)
from prompt_distill.task import UNPARSEABLE

LABELS = ("ar", "hi", "ot")
GOLD = ["ar", "ar", "hi", "hi", "hi", "ot"]
PRED = ["ar", "ot", "hi", "ot", UNPARSEABLE, "ot"]
TEXTS = ["مرحبا", "السلام", "नमस्ते", "धन्यवाद", "आप कैसे हैं " * 10, "สวัสดี"]
RAWS = ["ar", "ot", "hi", "ot", "I think this is a greeting", "ot"]


def test_sample_line_matches_the_reference_layout():
    assert sample_line(1, 176, "ar", "ar", 1, "مرحبا") == "✓ [  1/176] Pred: ar | GT: ar | Acc: 1/1 (100.0%) | مرحبا"
    assert sample_line(6, 176, "es", "en", 5, "Y él dijo") == "✗ [  6/176] Pred: es | GT: en | Acc: 5/6 ( 83.3%) | Y él dijo"
    # An unreadable answer shows as '?', padded to the label width; the teacher can be the reference.
    line = sample_line(12, 2100, UNPARSEABLE, "hi", 9, "x", reference_name="Teacher", score_name="Agree")
    assert line == "✗ [  12/2100] Pred: ?  | Teacher: hi | Agree: 9/12 ( 75.0%) | x"


def test_long_sentences_are_shortened_on_one_line():
    line = sample_line(1, 1, "en", "en", 1, "word " * 100)
    assert line.endswith("...") and "\n" not in line and len(line) < 200


def test_markers_follow_the_thresholds():
    assert [marker(value).strip() for value in (100.0, 90.0, 89.9, 50.0, 49.9, 0.0)] == ["✓", "✓", "⚠️", "⚠️", "✗", "✗"]


def test_confusion_table_rows_columns_dots_and_totals():
    table = confusion_table(score(GOLD, PRED, LABELS).confusion).splitlines()
    header = next(line for line in table if line.rstrip().endswith("| Total"))
    assert header.split() == ["ar", "hi", "ot", "?", "|", "Total"]
    rows = {line.split()[0]: line.split()[2:] for line in table if line[:3] in ("ar ", "hi ", "ot ")}
    assert rows == {
        "ar": ["1", ".", "1", ".", "|", "2"],
        "hi": [".", "1", "1", "1", "|", "3"],
        "ot": [".", ".", "1", ".", "|", "1"],
    }
    # Columns line up: every count sits under its header's last character.
    hi_row = next(line for line in table if line.startswith("hi "))
    assert hi_row.index("|", 4) == header.index("|")
    for column, cell in (("hi", "1"), ("?", "1")):
        end = header.index(column) + len(column) - 1
        assert hi_row[end] == cell


def test_per_label_table_is_worst_first_with_precision_recall_f1():
    lines = per_label_table(score(GOLD, PRED, LABELS)).splitlines()
    body = [line for line in lines if "precision" in line]
    assert [line.split(":")[0].split()[-1] for line in body] == ["hi", "ar", "ot"]  # 33.3%, 50%, 100%
    assert body[0].startswith("✗ hi:  33.3% (   1/   3)")
    assert body[1].startswith("⚠️  ar:  50.0% (   1/   2)")
    assert body[2].startswith("✓ ot: 100.0% (   1/   1)")
    assert "precision 0.33  recall 1.00  F1 0.50" in body[2]  # ot: predicted 3 times, right once
    assert any(line.startswith("Macro-F1: 0.5556") for line in lines)  # (0.5 + 0.6667 + 0.5) / 3


def test_labels_without_examples_are_named_not_dropped_silently():
    text = per_label_table(score(["ar"], ["ar"], LABELS))
    assert "No examples of: hi, ot" in text


def test_problem_labels_show_errors_including_the_raw_unparseable_answer():
    scores = score(GOLD, PRED, LABELS)
    text = problem_labels(scores, error_examples(TEXTS, GOLD, PRED, RAWS, 10), {"hi": "Hindi"})
    assert "1. Label: hi (Hindi) - Accuracy: 33.3% (1/3)" in text
    assert "     - Predicted ot (should be hi): धन्यवाद" in text
    assert "Unparseable answer 'I think this is a greeting' (should be hi): आप कैसे हैं" in text
    assert "2. Label: ar - Accuracy: 50.0% (1/2)" in text
    assert "3. Label" not in text  # ot has no errors
    perfect = score(["ar"], ["ar"], LABELS)
    assert "No errors" in problem_labels(perfect, {})


def test_summary_and_fidelity_blocks():
    scores = score(GOLD, PRED, LABELS)
    text = summary_block([("Model", "m"), ("Adapter", "a")], scores, "Accuracy", 12.5, 0.48)
    for expected in ("Model: m", "Total samples: 6", "Successfully parsed: 5", "Unparseable responses: 1",
                     "Parse rate: 83.33%", "Overall Accuracy: 50.00%", "Correct: 3/6", "12.50 samples/s"):
        assert expected in text
    teacher = ["ar", "ar", None, "hi", "hi", "ot"]
    block = fidelity_block(fidelity(PRED, teacher, GOLD), "t.jsonl")
    assert "5 of 6 evaluated sentences have a teacher label" in block
    assert "Student vs teacher agreement:   40.00% (2/5)" in block  # ar=ar, ot=ot
    assert "Teacher vs gold accuracy:      100.00% (5/5)" in block
    assert "Student vs gold accuracy:       40.00% (2/5)" in block
    assert "cannot be computed" in fidelity_block(fidelity(PRED, teacher), "t.jsonl")


def test_fidelity_without_any_teacher_label_says_why():
    block = fidelity_block(fidelity(PRED, [None] * len(PRED), GOLD), "t.jsonl")
    assert "0 of 6 evaluated sentences have a teacher label" in block
    assert "was the teacher file made from this test file?" in block
    assert "Teacher vs gold" not in block


def test_confidence_block_lists_the_coverage_table_and_the_calibration_error():
    from prompt_distill.evaluation.calibration import confidence_summary
    from prompt_distill.evaluation.report import confidence_block

    # 4 sentences: 0.9 right, 0.8 right, 0.7 wrong, 0.6 right -> mean confidence 75%, accuracy 75%.
    block = confidence_block(confidence_summary([0.9, 0.7, 0.8, 0.6], [True, False, True, True])).splitlines()
    assert "CONFIDENCE (the student's probability of its label, 4 sentences)" in block[1]
    rows = {line.split()[0]: line.split()[1:] for line in block if line.strip()[:1].isdigit()}
    assert rows == {"100%": ["4/4", "75.0%", "0.6000"], "90%": ["4/4", "75.0%", "0.6000"],
                    "80%": ["4/4", "75.0%", "0.6000"], "70%": ["3/4", "66.7%", "0.7000"],
                    "50%": ["2/4", "100.0%", "0.8000"]}
    # Four bins of one: |1-0.9| + |1-0.8| + |0-0.7| + |1-0.6| = 1.4, over 4.
    assert "  Expected calibration error (15 equal-width bins): 0.3500" in block
    assert block[-1] == "  Mean confidence 75.0% vs accuracy 75.0%: the same on average"


def test_cascade_block_names_the_picked_threshold_and_counts_what_could_not_be_deferred():
    from prompt_distill.evaluation.cascade import Row, cascade_at
    from prompt_distill.evaluation.report import cascade_block

    rows = [Row(0.9, "en", "en", "en", 30, 1500), Row(0.4, "fr", "es", "es", 30, 1500),
            Row(0.3, "de", None, "de", 30, None)]
    cascade = {"teacher_file": "t.jsonl", "reference": "gold", "defer_below": None, "target_accuracy": 1.0,
               "target_reached": True, "teacher_sidecar": "t.meta.jsonl", "teacher_sidecar_found": True,
               **cascade_at(rows, 0.9)}
    lines = cascade_block(cascade).splitlines()
    assert lines[4] == ("  Cascade at P = 0.9: 100.0% (3/3) with 33.3% deferred to the teacher; tokens/request 530.0 "
                        "vs student alone 30.0, teacher alone 1,500.0")
    assert "P = 0.9 was picked by --target_accuracy 1 on the same sentences it is reported on" in lines[5]
    assert "optimistic" in lines[5]
    assert "  Deferred to the teacher: 1 of 3 (33.3%)" in lines
    assert any(line.startswith("  Below P without a teacher label: 1 (cannot be deferred") for line in lines)
    assert "  Accuracy: cascade 100.0%, student alone 66.7%, teacher alone 100.0% (on the 2 with a teacher label)" \
        in lines
    assert "Teacher alone: the mean over the 2 of 3 sentences whose request is in the sidecar." in lines[-1]
    missing = cascade_block({**cascade, "teacher_sidecar_found": False, "target_reached": False})
    assert "t.meta.jsonl (create_data.py's sidecar) was not found" in missing
    assert "--target_accuracy 1 is not reached on these sentences" in missing
