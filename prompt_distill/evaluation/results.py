"""The results format of an evaluation: ``Prediction``s in, ``build_results`` -> the dict that the report prints and the
results JSON holds, ``finish`` -> the report printed, the JSON and PNGs written, wandb logged.

A live run (``evaluation.run``) and a re-scoring (``evaluation.rescoring``) both end here, so that they print and
save the same numbers; the cascade and distillation blocks are added here from their own modules.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..data import DataError, read_training_file
from ..errors import PromptDistillError
from ..task import UNPARSEABLE, Task
from .calibration import confidence_summary
from .cascade import build_cascade
from .config import GENERATE, SCORED, EvaluationConfig
from .distillation import build_distillation
from .metrics import error_examples, fidelity, score
from .outputs import (
    RESULTS_FORMAT,
    confusion_png,
    png_path_for,
    reliability_path_for,
    reliability_png,
    write_json,
)
from .report import (
    NARROW_RULE,
    WIDE_RULE,
    cascade_block,
    confidence_block,
    confusion_table,
    distillation_block,
    fidelity_block,
    per_label_table,
    problem_labels,
    summary_block,
)
from .wandb_report import log_evaluation

__all__ = ["META_KEYS", "RESULTS_FORMAT", "EvaluationError", "Prediction", "build_results", "finish", "read_answer",
           "read_teacher_labels"]

ERROR_EXAMPLES_SAVED = 10
# What a results file says about the run, in the order it is written (a re-scoring writes the same order).
META_KEYS = ("model", "adapter", "backend", "test_file", "gold_file", "teacher_file", "split", "generation",
             "timing", "warnings", "baseline_file")


class EvaluationError(PromptDistillError, RuntimeError):
    """An evaluation that cannot run as asked (flags that do not fit together, nothing to grade, a results file that
    cannot be re-scored); the message says what to pass instead."""


@dataclass
class Prediction:
    text: str
    gold: str | None
    teacher: str | None
    raw: str | None = None
    predicted: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None  # the request as the engine counted it: the distillation block's tokens
    completion_tokens: int | None = None
    probability: float | None = None  # --answer_mode scored: the probability of the predicted label
    probabilities: dict[str, float] | None = None  # ... and of every label (they sum to 1)


def read_answer(task: Task, raw: str, finish_reason: str | None) -> str:
    """The label in a reply. A constrained reply that was not a label by itself has the chosen label appended
    on its own line (the engine scored the labels after it), so its last line is the answer."""
    label = task.parse(raw)
    if label == UNPARSEABLE and finish_reason == "constrained" and raw.strip():
        label = task.parse(raw.strip().splitlines()[-1])
    return label


def read_teacher_labels(path, task: Task) -> dict[str, str]:
    """Sentence -> teacher label from create_data.py's JSONL (validated, errors name file:line).

    A sentence labelled twice with different labels has no single teacher answer: it is an error, not a guess.
    """
    labels: dict[str, str] = {}
    for text, label in read_training_file(path, task):
        key = text.strip()
        if labels.get(key, label) != label:
            raise DataError(f"{path}: the sentence {key[:60]!r} has two teacher labels, {labels[key]!r} and {label!r}.")
        labels[key] = label
    return labels


# -- scoring, report, outputs -----------------------------------------------------------------------------
def build_results(predictions: list[Prediction], task: Task, reference: str, meta: dict) -> dict:
    """Everything the report prints and the JSON holds, computed from the predictions alone."""
    texts = [p.text for p in predictions]
    truths = [p.gold if reference == "gold" else p.teacher for p in predictions]
    missing = sum(truth is None for truth in truths)
    if missing:
        raise EvaluationError(f"{missing} predictions have no {reference} label to be graded against.")
    predicted = [p.predicted for p in predictions]
    scores = score(truths, predicted, task.labels)
    has_teacher = any(p.teacher is not None for p in predictions)
    fidelity_result = (
        fidelity(predicted, [p.teacher for p in predictions], None if reference == "teacher" else truths)
        if has_teacher else None
    )
    confidence = None
    if all(p.probability is not None for p in predictions):
        confidence = confidence_summary([p.probability for p in predictions],
                                        [p.predicted == truth for p, truth in zip(predictions, truths, strict=True)])
    matrix = scores.confusion
    ranked = scores.worst_first()
    ranked += [entry for entry in scores.per_label if entry not in ranked]
    return {
        "format": RESULTS_FORMAT,
        **meta,
        "reference": reference,
        "task": {"name": task.name, "labels": list(task.labels), "fingerprint": task.fingerprint()},
        "summary": scores.summary(),
        "confusion_matrix": {
            "rows": list(matrix.rows),
            "columns": list(matrix.columns),
            "dict": matrix.counts,
            "array": matrix.as_array(),
        },
        "per_label": [entry.to_dict() for entry in ranked],
        "error_examples": error_examples(texts, truths, predicted, [p.raw for p in predictions], ERROR_EXAMPLES_SAVED),
        "fidelity": fidelity_result.to_dict() if fidelity_result else None,
        "confidence": confidence,
        "predictions": [
            {**asdict(p), "correct": p.predicted == truth} for p, truth in zip(predictions, truths, strict=True)
        ],
    }, scores, fidelity_result


def format_report(results: dict, scores, fidelity_result, task: Task) -> str:
    """The report below the per-sample lines: confusion matrix, per-label table, problems, summary and blocks."""
    lines = []
    add = lines.append
    reference = results["reference"]
    row_name = "gold" if reference == "gold" else "teacher"
    generation = results["generation"]
    if generation.get("answer_mode", GENERATE) == SCORED:
        answers = "every label scored in one forward pass; the most probable is the answer"
    elif generation["constrained"]:
        answers = "constrained to the label set"
    else:
        answers = f"free generation, greedy, up to {generation['max_tokens']} tokens, read with Task.parse"
    add("")
    add(confusion_table(scores.confusion, row_name))
    add("")
    add(per_label_table(scores))
    add("")
    add(problem_labels(scores, results["error_examples"], task.label_names))
    add("")
    add(WIDE_RULE)
    add("")
    split = results["split"]
    context = [
        ("Model", results["model"]),
        ("Adapter", results["adapter"] or "none (base model alone)"),
        ("Backend", results["backend"]),
        ("Answers", answers),
        ("Test file", results["test_file"]),
        ("Split", f"{split['split']} (eval_fraction {split['eval_fraction']}, split_seed {split['split_seed']}): "
                  f"{split['sentences_in_split']} of {split['sentences_in_file']} sentences, {split['evaluated']} evaluated"),
        ("Graded against", f"gold labels ({results['gold_file']})" if reference == "gold" else
         f"THE TEACHER'S LABELS ({results['teacher_file']}): no gold labels, so this is fidelity, not accuracy"),
    ]
    timing = results.get("timing") or {}
    add(summary_block(context, scores, "Accuracy" if reference == "gold" else "agreement with the teacher",
                      timing.get("samples_per_second"), timing.get("seconds")))
    if fidelity_result is not None:
        add("")
        add(fidelity_block(fidelity_result, results["teacher_file"]))
    add("")
    if results.get("confidence"):
        add(confidence_block(results["confidence"], "accuracy" if reference == "gold" else "agreement"))
    else:
        add("Confidence: no label probabilities (free generation, or a results file saved before they were): no "
            "coverage table, calibration error or reliability diagram.")
    if results.get("cascade"):
        add("")
        add(cascade_block(results["cascade"]))
    if results.get("distillation"):
        add("")
        add(distillation_block(results["distillation"]))
    for warning in results.get("warnings", []):
        add(f"⚠️  {warning}")
    add("")
    add("💡 The student answered from the sentence alone, without the teacher's prompt or thinking.")
    return "\n".join(lines)


def add_distillation(results: dict, task: Task, config: EvaluationConfig) -> None:
    """The distillation block, when ``--baseline`` is given: it needs gold labels and the teacher's labels."""
    baseline = getattr(config, "baseline", None)
    if not baseline:
        return
    if results["reference"] != "gold" or not results.get("teacher_file"):
        raise EvaluationError("--baseline needs gold labels beside the test file and --teacher_file: the "
                              "distillation block grades base, teacher and student on the same gold sentences.")
    results["baseline_file"] = str(baseline)
    block = build_distillation(results["predictions"], baseline, results["teacher_file"], task, results["model"])
    results["distillation"] = {"split": (results.get("split") or {}).get("split"), **block}


def add_cascade(results: dict, config: EvaluationConfig) -> None:
    """The cascade block, when ``--defer_below`` or ``--target_accuracy`` is given (or saved, on a re-scoring)."""
    defer_below, target_accuracy = getattr(config, "defer_below", None), getattr(config, "target_accuracy", None)
    if defer_below is None and target_accuracy is None:
        return
    if not results.get("teacher_file"):
        raise EvaluationError("The cascade (--defer_below/--target_accuracy) needs --teacher_file: deferred "
                              "sentences take the teacher's label.")
    if not results.get("confidence"):
        raise EvaluationError("The cascade (--defer_below/--target_accuracy) needs the student's label "
                              "probabilities: --answer_mode scored (the default), or a results file saved by it.")
    results["cascade"] = build_cascade(results["predictions"], results["reference"], results["teacher_file"],
                                       defer_below, target_accuracy)


def _title(results: dict, what: str) -> str:
    return f"{Path(results['adapter'] or results['model']).name}: {what}"


def finish(results, scores, fidelity_result, task: Task, config: EvaluationConfig) -> dict:
    """Print the report, write the JSON and PNGs, log to wandb; shared by a live run and a re-scoring."""
    add_distillation(results, task, config)
    add_cascade(results, config)
    print(format_report(results, scores, fidelity_result, task))
    png = reliability = None
    if config.output_file and config.output_file.lower() != "none":
        write_json(config.output_file, results)
        png = confusion_png(png_path_for(config.output_file), scores.confusion,
                            _title(results, f"accuracy {100 * scores.accuracy:.1f}% on {scores.total}"),
                            "gold" if results["reference"] == "gold" else "teacher")
        if results.get("confidence"):
            reliability = reliability_png(reliability_path_for(config.output_file), results["confidence"],
                                          _title(results, f"ECE {results['confidence']['ece']:.3f} "
                                                          f"on {scores.total}"))
        print("")
        print(f"📁 Complete results saved to: {config.output_file}")
        print("   Includes: predictions, confusion matrix (dict and array), per-label stats, error examples")
        print(f"🖼️  Confusion matrix image: {png}")
        if reliability:
            print(f"🖼️  Reliability diagram image: {reliability}")
    note = log_evaluation(results, config, {"confusion_matrix_image": png, "reliability_diagram": reliability})
    if note:
        print(note)
    print(NARROW_RULE)
    return results
