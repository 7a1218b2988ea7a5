"""Evaluation without generation: which student, which sentences, graded against what, and re-scoring."""

import json

import pytest

from prompt_distill.data import DataError, in_split
from prompt_distill.evaluation.results import EvaluationError, Prediction, build_results, finish
from prompt_distill.evaluation.run import run, select_predictions
from prompt_distill.student.check import StudentError, check_training_match, resolve_student
from prompt_distill.task import UNPARSEABLE, language_task
from tests.eval_helpers import (
    eval_split_pairs,
    evaluation_config,
    gold_pairs,
    make_adapter,
    write_teacher_file,
    write_test_file,
)

TASK = language_task()


parse = evaluation_config  # the flags as evaluate.py turns them into its config


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, smollm2_dir):
    return make_adapter(tmp_path_factory.mktemp("adapter") / "student", smollm2_dir)


# -- which student ----------------------------------------------------------------------------------------
def test_missing_adapter_folder_is_one_clear_sentence(tmp_path):
    with pytest.raises(StudentError, match=r"Adapter folder .*nope does not exist\. Train one .*--no_adapter"):
        resolve_student(str(tmp_path / "nope"), None)


def test_a_full_model_folder_is_not_an_adapter(smollm2_dir):
    with pytest.raises(StudentError, match=r"holds a full model, not a LoRA adapter .*--no_adapter"):
        resolve_student(str(smollm2_dir), None)


def test_base_model_is_read_from_the_adapter_and_a_mismatch_is_an_error(adapter, smollm2_dir):
    student = resolve_student(str(adapter), None)
    assert (student.base_model, student.base_model_source) == ("smollm2-135m-instruct", "run_record.json")
    # The alias and its cache folder (what PEFT writes into adapter_config.json) are the same model.
    assert resolve_student(str(adapter), str(smollm2_dir)).base_model == str(smollm2_dir)
    with pytest.raises(StudentError, match=r"trained on smollm2-135m-instruct .*but --base_model is Qwen/Other"):
        resolve_student(str(adapter), "Qwen/Other")


def test_no_adapter_evaluates_the_base_model(adapter):
    assert resolve_student(str(adapter), "smollm2-135m-instruct", no_adapter=True).adapter_path is None
    assert resolve_student("none", None).base_model == "Qwen/Qwen3-30B-A3B-Instruct-2507"


# -- evaluated as trained ---------------------------------------------------------------------------------
def test_other_labels_than_training_is_an_error(adapter):
    student = resolve_student(str(adapter), None)
    other = language_task().__class__(labels=("en", "fr"), system_prompt="Final Answer: x")
    with pytest.raises(StudentError, match="trained for the labels ar,de,.*this evaluation uses en,fr"):
        check_training_match(student, other, "eval", 0.2, 0, ["Hello"])


def test_overlap_with_the_training_data_is_counted_from_the_data_file(tmp_path, smollm2_dir):
    pairs = gold_pairs()[:60]
    data = write_teacher_file(tmp_path / "teacher.jsonl", pairs)
    held_out = [text for text, _ in eval_split_pairs(pairs)]
    trained_on_all = make_adapter(tmp_path / "all", smollm2_dir, data, split={"split": "all", "eval_fraction": 0.2,
                                                                                "split_seed": 0})
    student = resolve_student(str(trained_on_all), None)
    warnings = check_training_match(student, TASK, "eval", 0.2, 0, held_out)
    assert any(f"{len(held_out)} of the {len(held_out)} evaluated sentences are in the adapter's training data" in w
               for w in warnings)
    trained_on_train = make_adapter(tmp_path / "train", smollm2_dir, data)
    student = resolve_student(str(trained_on_train), None)
    assert check_training_match(student, TASK, "eval", 0.2, 0, held_out) == []
    assert any("None of the" in note for note in student.notes)
    # Evaluating a different split than was held out shows the overlap.
    some_train = [text for text, _ in pairs if not in_split(text, "eval", 0.2, 0)][:3]
    assert "3 of the 3 evaluated" in check_training_match(student, TASK, "train", 0.2, 0, some_train)[0]


def test_without_the_data_file_other_split_settings_warn(adapter):
    student = resolve_student(str(adapter), None)  # its data_file does not exist
    assert check_training_match(student, TASK, "eval", 0.2, 0, ["x"]) == []
    warnings = check_training_match(student, TASK, "eval", 0.3, 0, ["x"])
    assert "Split settings differ from training" in warnings[0]


# -- which sentences, graded against what ----------------------------------------------------------------
def test_default_is_the_held_out_split_with_gold_labels(tmp_path):
    pairs = gold_pairs()[:80]
    test_file = write_test_file(tmp_path, pairs)
    samples, reference, split_info, _ = select_predictions(parse("--test_file", str(test_file)), TASK)
    expected = eval_split_pairs(pairs)
    assert reference == "gold"
    assert [(s.text, s.gold) for s in samples] == expected
    assert split_info["sentences_in_file"] == 80 and split_info["evaluated"] == len(expected) > 0


def test_unknown_gold_label_names_file_and_line(tmp_path):
    test_file = write_test_file(tmp_path, [("Hello there", "en"), ("Hola", "xx")])
    with pytest.raises(DataError, match=r"sentences\.gold\.tsv:2: unknown label 'xx'"):
        select_predictions(parse("--test_file", str(test_file)), TASK)


def test_without_gold_the_teacher_is_the_reference_and_says_so(tmp_path):
    pairs = gold_pairs()[:80]
    test_file = write_test_file(tmp_path, pairs, gold=False)
    with pytest.raises(EvaluationError, match="no gold labels .* nothing to grade against"):
        select_predictions(parse("--test_file", str(test_file)), TASK)
    teacher = write_teacher_file(tmp_path / "t.jsonl", pairs[:40])
    args = parse("--test_file", str(test_file), "--teacher_file", str(teacher), "--split", "all")
    samples, reference, _, notes = select_predictions(args, TASK)
    assert reference == "teacher"
    assert [s.text for s in samples] == [text for text, _ in pairs[:40]]
    assert any(note.startswith("NO GOLD LABELS") for note in notes)
    assert any("40 sentences of the split have no teacher label" in note for note in notes)


# -- results and re-scoring -------------------------------------------------------------------------------
def _scored(tmp_path, answers):
    pairs = eval_split_pairs(gold_pairs())[: len(answers)]
    teacher_file = write_teacher_file(tmp_path / "t.jsonl", pairs[1:])
    predictions = [Prediction(text, gold, None if i == 0 else gold, raw) for i, ((text, gold), raw)
                   in enumerate(zip(pairs, answers, strict=True))]
    for p in predictions:
        p.predicted = TASK.parse(p.raw)
    meta = {"model": "m", "adapter": None, "backend": "b", "test_file": "f", "gold_file": "g",
            "teacher_file": str(teacher_file), "split": {"split": "eval", "eval_fraction": 0.2, "split_seed": 0,
                                                         "sentences_in_file": 9, "sentences_in_split": 9,
                                                         "evaluated": 5},
            "generation": {"max_tokens": 8, "temperature": 0.0, "constrained": False, "batch_size": 4},
            "timing": {"seconds": 1.0, "samples_per_second": 5.0}, "warnings": []}
    return build_results(predictions, TASK, "gold", meta), pairs


def test_results_json_and_png_and_rescoring_reproduce_every_number(tmp_path, capsys):
    (results, scores, fid), pairs = _scored(tmp_path, ["ar", "ru", "Hello! How can I help?", "en.", "xx"])
    golds = [gold for _, gold in pairs]
    assert results["predictions"][2]["predicted"] == UNPARSEABLE
    assert results["summary"]["unparseable"] == 2
    assert results["summary"]["correct"] == sum(g == p for g, p in zip(golds, ["ar", "ru", None, "en", None],
                                                                       strict=True))
    assert results["confusion_matrix"]["array"][0][-1] == results["confusion_matrix"]["dict"]["ar"]["?"]
    assert fid.with_teacher == 4
    out_file = tmp_path / "out" / "results.json"
    capsys.readouterr()
    finish(results, scores, fid, TASK, parse("--output_file", str(out_file)))
    lines = capsys.readouterr().out.splitlines()
    assert (tmp_path / "out" / "results.confusion.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads(out_file.read_text("utf-8"))
    again = run(parse("--predictions_file", str(out_file), "--output_file", str(tmp_path / "again.json")))
    rescored_lines = capsys.readouterr().out.splitlines()
    for key in ("summary", "confusion_matrix", "per_label", "error_examples", "fidelity", "predictions"):
        assert again[key] == saved[key], key
    # evaluate.py reports to wandb by default: each run names its own wandb run
    report = [line for line in lines if "saved to" not in line and "image" not in line
              and not line.startswith("wandb:")]
    rescored_report = [line for line in rescored_lines if "saved to" not in line and "image" not in line
                       and not line.startswith(("[evaluate] Re-scoring", "wandb:"))]
    assert rescored_report == report


def test_rescoring_refuses_other_labels_and_foreign_files(tmp_path):
    (results, scores, fid), _ = _scored(tmp_path, ["ar"])
    finish(results, scores, fid, TASK, parse("--output_file", str(tmp_path / "r.json")))
    with pytest.raises(EvaluationError, match="pass the same --labels"):
        run(parse("--predictions_file", str(tmp_path / "r.json"), "--labels", "en,fr"))
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(EvaluationError, match="not a results file written by evaluate.py"):
        run(parse("--predictions_file", str(tmp_path / "other.json")))


def test_teacher_file_with_two_labels_for_one_sentence_is_an_error(tmp_path):
    from prompt_distill.evaluation.results import read_teacher_labels

    path = write_teacher_file(tmp_path / "t.jsonl", [("Hola", "es"), ("Hello", "en"), ("Hola", "en")])
    with pytest.raises(DataError, match="'Hola' has two teacher labels, 'es' and 'en'"):
        read_teacher_labels(path, TASK)


# -- scored answers: confidence, reliability diagram, cascade, and their re-scoring -----------------------
CONFIDENCES = [0.9, 0.8, 0.6, 0.4, 0.3]
STUDENT_RIGHT = [True, True, False, True, False]


def _spread(chosen: str, probability: float) -> dict[str, float]:
    """A distribution over the task's labels with ``chosen`` the most probable at ``probability``."""
    rest = (1.0 - probability) / (len(TASK.labels) - 1)
    return {label: probability if label == chosen else rest for label in TASK.labels}


def _scored_with_probabilities(tmp_path):
    pairs = eval_split_pairs(gold_pairs())[:5]
    teacher_file = write_teacher_file(tmp_path / "t.jsonl", pairs[1:])  # the first sentence has no teacher label
    sidecar = [{"text": text, "prompt_tokens": 1500, "completion_tokens": 1} for text, _ in pairs[1:]]
    (tmp_path / "t.meta.jsonl").write_text("".join(json.dumps(line) + "\n" for line in sidecar), "utf-8")
    predictions = []
    for (text, gold), probability, right in zip(pairs, CONFIDENCES, STUDENT_RIGHT, strict=True):
        label = gold if right else next(other for other in TASK.labels if other != gold)
        predictions.append(Prediction(text, gold, gold if predictions else None, label, label, "scored", 30, 2,
                                      _spread(label, probability)[label], _spread(label, probability)))
    meta = {"model": "m", "adapter": None, "backend": "b", "test_file": "f", "gold_file": "g",
            "teacher_file": str(teacher_file), "split": {"split": "eval", "eval_fraction": 0.2, "split_seed": 0,
                                                         "sentences_in_file": 5, "sentences_in_split": 5,
                                                         "evaluated": 5},
            "generation": {"answer_mode": "scored", "max_tokens": None, "temperature": 0.0, "constrained": None,
                           "batch_size": 4},
            "timing": {"seconds": 1.0, "samples_per_second": 5.0}, "warnings": []}
    return build_results(predictions, TASK, "gold", meta)


def test_probabilities_give_the_confidence_block_and_a_reliability_png(tmp_path, capsys):
    results, scores, fid = _scored_with_probabilities(tmp_path)
    confidence = results["confidence"]
    # Coverage: 5, ceil(4.5) = 5, 4, ceil(3.5) = 4, ceil(2.5) = 3 answered; right: 3/5, 3/5, 3/4, 3/4, 2/3.
    assert [row["answered"] for row in confidence["coverage"]] == [5, 5, 4, 4, 3]
    assert [row["accuracy"] for row in confidence["coverage"]] == pytest.approx([0.6, 0.6, 0.75, 0.75, 2 / 3])
    # Each confidence sits in its own bin: ECE = mean |right - confidence| = (0.1+0.2+0.6+0.6+0.3)/5.
    assert confidence["ece"] == pytest.approx(0.36)
    assert results["predictions"][2]["probability"] == 0.6 and len(results["predictions"][2]["probabilities"]) == 13
    capsys.readouterr()
    finish(results, scores, fid, TASK, parse("--output_file", str(tmp_path / "r.json")))
    lines = capsys.readouterr().out.splitlines()
    text = "\n".join(lines)
    assert "CONFIDENCE (the student's probability of its label, 5 sentences)" in text
    assert "Expected calibration error (15 equal-width bins): 0.3600" in text
    assert "Answers: every label scored in one forward pass" in text
    assert "CASCADE" not in text  # not asked for
    assert (tmp_path / "r.reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert any(line.startswith("🖼️  Reliability diagram image:") for line in lines)


def test_cascade_block_and_its_rescoring_from_saved_probabilities(tmp_path, capsys):
    results, scores, fid = _scored_with_probabilities(tmp_path)
    out_file = tmp_path / "r.json"
    capsys.readouterr()
    finish(results, scores, fid, TASK, parse("--output_file", str(out_file), "--defer_below", "0.5"))
    lines = capsys.readouterr().out.splitlines()
    cascade = results["cascade"]
    # Below 0.5: the 0.4 (student right) and 0.3 (student wrong) sentences, both with a teacher label (= gold).
    assert (cascade["deferred"], cascade["correct"], cascade["below_without_teacher"]) == (2, 4, 0)
    assert cascade["tokens_per_request"] == pytest.approx(
        {"student_only": 32.0, "teacher_only": 1501.0, "cascade": 32.0 + 2 * 1501 / 5})
    assert "  Cascade at P = 0.5: 80.0% (4/5) with 40.0% deferred to the teacher; tokens/request 632.4 vs student " \
           "alone 32.0, teacher alone 1,501.0" in "\n".join(lines).splitlines()
    saved = json.loads(out_file.read_text("utf-8"))
    # Re-scoring without the flag reproduces the saved cascade; with another flag, it computes that one.
    again = run(parse("--predictions_file", str(out_file), "--output_file", "none"))
    rescored_lines = capsys.readouterr().out.splitlines()
    for key in ("summary", "confidence", "cascade", "predictions", "fidelity"):
        assert again[key] == saved[key], key
    def report(printed):  # from the confusion matrix to the closing hint; output paths differ
        return printed[next(i for i, line in enumerate(printed) if "CONFUSION MATRIX" in line):
                       next(i for i, line in enumerate(printed) if line.startswith("💡"))]

    assert report(rescored_lines) == report(lines)
    picked = run(parse("--predictions_file", str(out_file), "--output_file", "none", "--target_accuracy", "0.8"))[
        "cascade"]
    assert (picked["threshold"], picked["deferred"], picked["target_reached"]) == (0.4, 1, True)  # 0.3 deferred


def test_an_older_results_file_without_probabilities_is_rescored_and_says_so_once(tmp_path, capsys):
    (results, scores, fid), _ = _scored(tmp_path, ["ar", "ru", "en", "fr", "de"])
    for prediction in results["predictions"]:  # as written before probabilities were saved
        del prediction["probability"], prediction["probabilities"]
    del results["confidence"]
    from prompt_distill.evaluation.outputs import write_json

    write_json(tmp_path / "old.json", results)
    capsys.readouterr()
    again = run(parse("--predictions_file", str(tmp_path / "old.json"), "--output_file", str(tmp_path / "n.json")))
    lines = capsys.readouterr().out.splitlines()
    assert again["confidence"] is None and again["summary"] == results["summary"]
    assert sum("no label probabilities" in line for line in lines) == 1
    assert not (tmp_path / "n.reliability.png").exists()
    with pytest.raises(EvaluationError, match="needs the student's label probabilities"):
        run(parse("--predictions_file", str(tmp_path / "old.json"), "--output_file", "none", "--defer_below", "0.5"))


@pytest.mark.parametrize(("argv", "message"), [
    (("--max_tokens", "4"), "--constrained and --max_tokens apply to --answer_mode generate"),
    (("--constrained",), "--constrained and --max_tokens apply to --answer_mode generate"),
    (("--defer_below", "0.5"), "needs --teacher_file"),
    (("--answer_mode", "generate", "--defer_below", "0.5", "--teacher_file", "t.jsonl"), "drop --answer_mode generate"),
    (("--defer_below", "0.5", "--target_accuracy", "0.9"), "not both"),
    (("--target_accuracy", "95"), "must be a fraction in (0, 1]"),
])
def test_flags_that_cannot_work_together_fail_before_the_model_loads(argv, message):
    from prompt_distill.evaluation.cascade import CascadeError

    with pytest.raises((EvaluationError, CascadeError)) as raised:
        run(parse("--model_path", "/nonexistent", "--output_file", "none", *argv))
    assert message in str(raised.value)
