"""The cascade's arithmetic on six hand-made sentences; every expected number is worked out in the comments."""

import json

import pytest

from prompt_distill.evaluation.cascade import (
    CascadeError,
    Row,
    build_cascade,
    candidate_thresholds,
    cascade_at,
    check_settings,
    pick_threshold,
    rows_from_predictions,
)

# probability, student, teacher, truth, student tokens, teacher tokens
ROWS = [
    Row(0.95, "en", "en", "en", 10, 100),  # A: both right
    Row(0.90, "fr", "de", "de", 12, 110),  # B: student wrong, teacher right
    Row(0.60, "es", "es", "es", 10, 90),  # C: both right
    Row(0.40, "ru", "ot", "ot", 8, 120),  # D: student wrong, teacher right
    Row(0.30, "ar", None, "zh", 10, None),  # E: student wrong, no teacher label: cannot be deferred
    Row(0.20, "hi", "ur", "hi", 10, 80),  # F: student right, teacher wrong
]


def test_defer_below_half():
    # Below 0.5: D, E, F. D and F are deferred; E has no teacher label and keeps the student's (wrong) answer.
    # Final: A en ok, B fr wrong, C es ok, D ot ok, E ar wrong, F ur wrong -> 3/6.
    block = cascade_at(ROWS, 0.5)
    assert (block["deferred"], block["below_without_teacher"], block["correct"]) == (2, 1, 3)
    assert block["deferred_share"] == pytest.approx(2 / 6)
    assert block["accuracy"] == pytest.approx(0.5)
    assert block["student_accuracy"] == pytest.approx(3 / 6)  # A, C, F
    assert (block["with_teacher"], block["teacher_accuracy"]) == (5, pytest.approx(4 / 5))  # F is the teacher's miss
    tokens = block["tokens_per_request"]
    assert tokens["student_only"] == pytest.approx(60 / 6)  # 10 + 12 + 10 + 8 + 10 + 10
    assert tokens["teacher_only"] == pytest.approx(500 / 5)  # the five sentences in the sidecar
    assert tokens["cascade"] == pytest.approx(10 + (120 + 80) / 6)  # every request + D's and F's teacher requests
    assert block["teacher_tokens_known"] == 5


def test_threshold_is_strict_and_every_deferrable_sentence_can_go():
    assert cascade_at(ROWS, 0.2)["deferred"] == 0  # 0.2 is not below 0.2
    everything = cascade_at(ROWS, 1.0)
    # B, C, D, F deferred (and A at 0.95 < 1.0): only E stays with the student -> A B C D right, E F wrong.
    assert (everything["deferred"], everything["correct"], everything["below_without_teacher"]) == (5, 4, 1)
    assert everything["tokens_per_request"]["cascade"] == pytest.approx(10 + 500 / 6)


def test_unknown_tokens_make_the_cost_unknown_not_a_partial_mean():
    rows = [*ROWS[:3], Row(0.40, "ru", "ot", "ot", 8, None), *ROWS[4:]]
    assert cascade_at(rows, 0.5)["tokens_per_request"]["cascade"] is None  # D is deferred, its cost unknown
    assert cascade_at(rows, 0.3)["tokens_per_request"]["cascade"] == pytest.approx(10 + 80 / 6)  # only F deferred
    no_student_count = [Row(0.5, "en", "en", "en", None, 100), *ROWS[1:]]
    tokens = cascade_at(no_student_count, 0.5)["tokens_per_request"]
    assert tokens["student_only"] is None and tokens["cascade"] is None


def test_candidates_defer_one_more_group_each():
    thresholds = candidate_thresholds(ROWS)
    assert thresholds[:6] == [0.2, 0.3, 0.4, 0.6, 0.9, 0.95] and thresholds[6] > 0.95
    assert [cascade_at(ROWS, t)["deferred"] for t in thresholds] == [0, 1, 1, 2, 3, 4, 5]
    # Correct at each: 3 (none), 2 (F lost), 2 (E cannot go), 3 (D won), 3 (C same), 4 (B won), 4 (A same).
    assert [cascade_at(ROWS, t)["correct"] for t in thresholds] == [3, 2, 2, 3, 3, 4, 4]


@pytest.mark.parametrize(("target", "threshold", "deferred", "reached"), [
    (0.5, 0.2, 0, True),  # the student alone reaches 3/6
    (0.6, 0.95, 4, True),  # 4/6 first at 0.95 (B, C, D, F deferred)
    (0.9, 0.95, 4, False),  # never reached: the best, 4/6, with the fewest deferrals
])
def test_target_accuracy_picks_the_fewest_deferrals_that_reach_it(target, threshold, deferred, reached):
    block, was_reached = pick_threshold(ROWS, target)
    assert (block["threshold"], block["deferred"], was_reached) == (threshold, deferred, reached)


def test_picked_threshold_agrees_with_trying_every_candidate():
    import random

    rng = random.Random(3)
    labels = ["a", "b", "c"]
    for _ in range(50):
        rows = [Row(round(rng.random(), 1), rng.choice(labels), rng.choice([*labels, None]), rng.choice(labels))
                for _ in range(12)]
        for target in (0.3, 0.5, 0.7):
            block, reached = pick_threshold(rows, target)
            tried = [cascade_at(rows, t) for t in candidate_thresholds(rows)]
            reaching = [entry for entry in tried if entry["accuracy"] >= target]
            expected = reaching[0] if reaching else max(tried, key=lambda entry: entry["correct"])
            assert reached == bool(reaching)
            assert block == expected


def test_settings_are_checked():
    with pytest.raises(CascadeError, match="not both"):
        check_settings(0.5, 0.9)
    with pytest.raises(CascadeError, match=r"--defer_below 1.5 must be a probability in \[0, 1\]"):
        check_settings(1.5, None)
    with pytest.raises(CascadeError, match=r"--target_accuracy 95.0 must be a fraction in \(0, 1\], e.g. 0.95"):
        check_settings(None, 95.0)


def test_build_cascade_reads_teacher_tokens_from_the_sidecar(tmp_path):
    teacher = tmp_path / "teacher.jsonl"
    teacher.write_text("")  # only its name matters here: the sidecar is found beside it
    sidecar = [{"text": "Hello", "prompt_tokens": 1500, "completion_tokens": 2},
               {"text": "Hola", "prompt_tokens": 1498, "completion_tokens": 2}]
    (tmp_path / "teacher.meta.jsonl").write_text("".join(json.dumps(line) + "\n" for line in sidecar))
    predictions = [
        {"text": "Hello", "gold": "en", "teacher": "en", "predicted": "en", "probability": 0.9,
         "prompt_tokens": 20, "completion_tokens": 2},
        {"text": " Hola ", "gold": "es", "teacher": "es", "predicted": "pt", "probability": 0.4,
         "prompt_tokens": 18, "completion_tokens": 2},
    ]
    block = build_cascade(predictions, "gold", teacher, defer_below=0.5)
    assert (block["deferred"], block["accuracy"], block["teacher_sidecar_found"]) == (1, 1.0, True)
    assert block["tokens_per_request"] == {"student_only": 21.0, "teacher_only": 1501.0, "cascade": 21.0 + 1500 / 2}
    picked = build_cascade(predictions, "gold", teacher, target_accuracy=1.0)
    assert (picked["threshold"], picked["target_reached"], picked["defer_below"]) == (0.9, True, None)
    (tmp_path / "teacher.meta.jsonl").unlink()
    without = build_cascade(predictions, "gold", teacher, defer_below=0.5)
    assert without["teacher_sidecar_found"] is False and without["tokens_per_request"]["cascade"] is None
    with pytest.raises(CascadeError, match="needs the student's probability"):
        build_cascade([{**predictions[0], "probability": None}], "gold", teacher, defer_below=0.5)


# -- tests added for surviving mutants (docs/testing.md, `make mutation`) -------------------------------------------


def test_no_rows_is_named_in_the_error():
    for run in (lambda: cascade_at([], 0.5), lambda: pick_threshold([], 0.9)):
        with pytest.raises(CascadeError, match=r"^No sentences to run the cascade on\.$"):
            run()


def test_the_block_counts_sentences_and_the_students_own_accuracy():
    block = cascade_at(ROWS, 0.5)
    assert (block["sentences"], block["student_accuracy"]) == (6, pytest.approx(3 / 6))
    alone = cascade_at([Row(0.9, "en", None, "en")], 0.5)
    assert (alone["with_teacher"], alone["teacher_accuracy"], alone["student_accuracy"]) == (0, None, 1.0)


def test_settings_at_the_edges_of_their_ranges():
    check_settings(0.0, None)
    check_settings(1.0, None)
    check_settings(None, 1.0)
    for target in (0.0, 1.5):
        with pytest.raises(CascadeError, match="must be a fraction in"):
            check_settings(None, target)
    with pytest.raises(CascadeError, match=r"^Give --defer_below or --target_accuracy, not both"):
        check_settings(0.5, 0.9)


PREDICTIONS = [
    {"text": "Hello", "gold": "en", "teacher": "de", "predicted": "en", "probability": 0.9},
    {"text": "Hola", "gold": "es", "teacher": "es", "predicted": "pt", "probability": 0.4},
]


def test_rows_are_graded_against_the_reference_asked_for():
    assert [row.truth for row in rows_from_predictions(PREDICTIONS, "gold", {})] == ["en", "es"]
    assert [row.truth for row in rows_from_predictions(PREDICTIONS, "teacher", {})] == ["de", "es"]
    with pytest.raises(CascadeError, match=r"^The cascade needs the student's probability"):
        rows_from_predictions([{**PREDICTIONS[0], "probability": None}], "gold", {})


def test_build_cascade_names_its_settings_and_checks_them(tmp_path):
    teacher = tmp_path / "teacher.jsonl"
    block = build_cascade(PREDICTIONS, "gold", teacher, target_accuracy=0.9)
    assert {key: block[key] for key in ("teacher_file", "reference", "target_accuracy", "teacher_sidecar")} == {
        "teacher_file": str(teacher), "reference": "gold", "target_accuracy": 0.9,
        "teacher_sidecar": str(tmp_path / "teacher.meta.jsonl")}
    assert (block["threshold"], block["accuracy"]) == (0.9, 1.0)  # against gold, deferring Hola is enough
    with pytest.raises(CascadeError, match="not both"):
        build_cascade(PREDICTIONS, "gold", teacher, defer_below=0.5, target_accuracy=0.9)
