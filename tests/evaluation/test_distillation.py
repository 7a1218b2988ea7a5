"""The distillation block's arithmetic, on label lists small enough to check by hand."""

import json
import random

import pytest

from prompt_distill.evaluation.distillation import (
    DistillationError,
    build_distillation,
    distillation_summary,
    gain_kept,
    interval,
    paired_bootstrap,
    percentile,
)
from prompt_distill.evaluation.report import distillation_block
from prompt_distill.evaluation.results import RESULTS_FORMAT, add_distillation
from prompt_distill.task import UNPARSEABLE, Task
from tests.eval_helpers import evaluation_config

TASK = Task(labels=("K", "M", "T"), system_prompt="Sort it. Final Answer: <queue>")
GOLD = ["K", "M", "T", "K", "M", "T", "K", "M", "T", "K"]
# base always says M: right on the 3 M sentences; teacher right on 8; student right on 7 (one unparseable).
BASE = ["M"] * 10
TEACHER = ["K", "M", "T", "K", "M", "T", "K", "M", "K", "T"]
STUDENT = ["K", "M", "T", "K", "M", "T", "K", UNPARSEABLE, "K", "T"]


def test_percentile_interpolates_like_numpy():
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 1.0) == 4.0
    assert percentile(values, 0.5) == 2.5
    assert percentile(values, 0.25) == pytest.approx(1.75)  # numpy.percentile([1,2,3,4], 25) == 1.75


def test_gain_kept_is_the_share_of_the_prompts_gain():
    assert gain_kept(0.30, 0.70, 0.60) == pytest.approx(0.75)
    assert gain_kept(0.30, 0.70, 0.70) == pytest.approx(1.0)
    assert gain_kept(0.30, 0.70, 0.20) == pytest.approx(-0.25)
    assert gain_kept(0.50, 0.50, 0.90) is None  # the prompt added nothing: nothing to keep
    assert gain_kept(0.60, 0.40, 0.50) is None


def test_summary_on_hand_made_labels():
    block = distillation_summary(GOLD, {"base": BASE, "teacher": TEACHER, "student": STUDENT},
                                 {"base": [20] * 10, "teacher": [1500] * 10, "student": [20] * 10}, resamples=2000)
    accuracy = {name: entry["accuracy"] for name, entry in block["labellers"].items()}
    assert accuracy == {"base": pytest.approx(0.3), "teacher": pytest.approx(0.8), "student": pytest.approx(0.7)}
    assert block["labellers"]["student"]["correct"] == 7  # the unparseable answer counts as wrong
    assert block["teacher_minus_base"]["points"] == pytest.approx(0.5)
    assert block["student_minus_base"]["points"] == pytest.approx(0.4)
    assert block["gain_kept"] == pytest.approx(0.8)
    assert block["labellers"]["teacher"]["tokens_per_request"] == 1500
    assert block["token_ratio_teacher_to_student"] == pytest.approx(75.0)
    for name in ("base", "teacher", "student"):
        entry = block["labellers"][name]
        assert entry["interval"]["low"] <= entry["accuracy"] <= entry["interval"]["high"]
    low, high = block["teacher_minus_base"]["interval"].values()
    # The teacher is right wherever the base is, and on 5 more sentences: no resample can favour the base.
    assert 0.0 <= low < 0.5 < high <= 1.0
    assert (low, high) == pytest.approx((0.2, 0.8))


def test_the_differences_are_paired():
    """Two labellers right on the same sentences differ by exactly 0 in every resample; unpaired they would not."""
    flags = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1]
    samples = paired_bootstrap({"a": flags, "b": list(flags)}, resamples=500, seed=3)
    assert samples["a"] == samples["b"]
    block = distillation_summary(GOLD, {"base": BASE, "teacher": TEACHER, "student": TEACHER}, resamples=500)
    assert block["student_minus_teacher"]["interval"] == {"low": 0.0, "high": 0.0}
    assert block["gain_kept"] == pytest.approx(1.0)


def test_bootstrap_interval_matches_the_normal_approximation():
    """50 right of 100: the 95% interval is about 0.5 +- 1.96 * sqrt(0.25 / 100) = [0.402, 0.598]."""
    flags = [1] * 50 + [0] * 50
    random.Random(1).shuffle(flags)
    found = interval(paired_bootstrap({"x": flags}, resamples=10_000, seed=0)["x"])
    assert found.low == pytest.approx(0.402, abs=0.015)
    assert found.high == pytest.approx(0.598, abs=0.015)


def test_bootstrap_is_reproducible_and_seeded():
    flags = {"x": [1, 0, 0, 1, 1, 0, 1]}
    assert paired_bootstrap(flags, 300, seed=5) == paired_bootstrap(flags, 300, seed=5)
    assert paired_bootstrap(flags, 300, seed=5) != paired_bootstrap(flags, 300, seed=6)


def test_unknown_tokens_give_no_mean_and_mismatched_lengths_fail():
    block = distillation_summary(GOLD, {"base": BASE, "teacher": TEACHER, "student": STUDENT},
                                 {"base": [20] * 9 + [None], "teacher": [1500] * 10, "student": [20] * 10},
                                 resamples=100)
    assert block["labellers"]["base"]["tokens_per_request"] is None
    with pytest.raises(ValueError, match="9 predictions but 10"):
        distillation_summary(GOLD, {"base": BASE[:9], "teacher": TEACHER, "student": STUDENT}, resamples=10)


def test_printed_block():
    block = distillation_summary(GOLD, {"base": BASE, "teacher": TEACHER, "student": STUDENT},
                                 {"base": [20] * 10, "teacher": [1500] * 10, "student": [20] * 10}, resamples=500)
    text = distillation_block({"baseline_file": "b.json", "teacher_file": "t.jsonl", "notes": [], "split": "eval",
                              **block})
    assert "DISTILLATION (gold labels, 10 sentences of split eval, the same for all three)" in text
    assert "Base model, no prompt         30.0%  [ 0.0, 60.0]" in text
    assert "Teacher, with the prompt      80.0%" in text
    assert "Student, no prompt            70.0%" in text
    assert "Teacher - base: +50.0 points, 95% CI [+20.0, +80.0]" in text
    assert "Gain kept, (student - base) / (teacher - base): 0.80" in text
    assert "Tokens per request, teacher / student: 75.0x" in text
    assert "1,500.0" in text


# -- from the files evaluate.py reads ---------------------------------------------------------------------
SENTENCES = [f"message number {i}" for i in range(10)]


def _baseline_file(tmp_path, adapter=None, labels=("K", "M", "T")):
    path = tmp_path / "baseline.json"
    predictions = [
        {"text": text, "gold": gold, "teacher": None, "raw": base, "predicted": base, "finish_reason": "constrained",
         "prompt_tokens": 18, "completion_tokens": 0}
        for text, gold, base in zip(SENTENCES, GOLD, BASE, strict=True)
    ]
    path.write_text(json.dumps({"format": RESULTS_FORMAT, "model": "smollm2-135m-instruct", "adapter": adapter,
                                "task": {"labels": list(labels)}, "predictions": predictions}))
    return path


def _teacher_file(tmp_path):
    path = tmp_path / "teacher.jsonl"
    lines, meta = [], []
    for text, label in zip(SENTENCES, TEACHER, strict=True):
        lines.append({"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": label}]})
        meta.append({"text": text, "label": label, "prompt_tokens": 1540 + len(text), "completion_tokens": 1})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp_path / "teacher.meta.jsonl").write_text("".join(json.dumps(line) + "\n" for line in meta))
    return path


def _student_predictions():
    return [
        {"text": text, "gold": gold, "teacher": teacher, "predicted": student, "prompt_tokens": 17,
         "completion_tokens": 2}
        for text, gold, teacher, student in zip(SENTENCES, GOLD, TEACHER, STUDENT, strict=True)
    ]


def test_block_from_a_baseline_run_and_the_teachers_files(tmp_path):
    block = build_distillation(_student_predictions(), _baseline_file(tmp_path), _teacher_file(tmp_path), TASK,
                               "smollm2-135m-instruct")
    assert block["sentences"] == 10
    assert block["notes"] == []
    assert block["labellers"]["base"]["accuracy"] == pytest.approx(0.3)
    assert block["labellers"]["base"]["tokens_per_request"] == 18
    assert block["labellers"]["student"]["tokens_per_request"] == 19
    # teacher: 1540 + len("message number i") (16) + 1 generated
    assert block["labellers"]["teacher"]["tokens_per_request"] == pytest.approx(1557)
    assert block["gain_kept"] == pytest.approx(0.8)


def test_sentences_missing_from_the_baseline_are_left_out_and_said(tmp_path):
    predictions = _student_predictions() + [{"text": "not in the baseline", "gold": "K", "teacher": "K",
                                             "predicted": "K", "prompt_tokens": 5, "completion_tokens": 1}]
    block = build_distillation(predictions, _baseline_file(tmp_path), _teacher_file(tmp_path), TASK,
                               "other-model")
    assert block["sentences"] == 10
    assert any("1 of 11 evaluated sentences" in note for note in block["notes"])
    assert any("The baseline ran smollm2-135m-instruct" in note for note in block["notes"])


def test_a_baseline_with_an_adapter_or_other_labels_is_refused(tmp_path):
    teacher = _teacher_file(tmp_path)
    with pytest.raises(DistillationError, match="evaluated an adapter"):
        build_distillation(_student_predictions(), _baseline_file(tmp_path, adapter="models/x"), teacher, TASK, "m")
    with pytest.raises(DistillationError, match="scored with labels a,b"):
        build_distillation(_student_predictions(), _baseline_file(tmp_path, labels=("a", "b")), teacher, TASK, "m")


def test_evaluate_adds_the_block_only_with_what_it_needs(tmp_path):
    results = {"reference": "gold", "teacher_file": str(_teacher_file(tmp_path)), "model": "smollm2-135m-instruct",
               "predictions": _student_predictions(), "split": {"split": "eval"}}
    add_distillation(results, TASK, evaluation_config())
    assert "distillation" not in results
    add_distillation(results, TASK, evaluation_config("--baseline", str(_baseline_file(tmp_path))))
    assert results["distillation"]["gain_kept"] == pytest.approx(0.8)
    assert results["distillation"]["split"] == "eval"
    from prompt_distill.evaluation.results import EvaluationError

    with pytest.raises(EvaluationError, match="needs gold labels"):
        add_distillation({**results, "teacher_file": None}, TASK, evaluation_config("--baseline", "b.json"))
