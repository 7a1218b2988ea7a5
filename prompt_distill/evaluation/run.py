"""Stage 3: run the student on held-out sentences and print the reference README's report, graded on gold labels.

The student gets the sentence alone, in the framing it was trained with (``Student.messages``). By default
(``--answer_mode scored``) every label is scored in one forward pass (``Engine.classify``): the most probable label
is the answer, and its probability feeds the confidence block (prompt_distill.evaluation.calibration) and the cascade to the
teacher (prompt_distill.evaluation.cascade). ``--answer_mode generate`` writes a few greedy tokens read with ``Task.parse``.
``--predictions_file`` re-scores a saved run without a model (prompt_distill.evaluation.rescoring); both paths end in
``finish`` so that they print and save the same numbers.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..data import (
    DataError,
    add_split_arguments,
    gold_path_for,
    in_split,
    read_gold,
    read_sentences,
    read_training_file,
)
from ..engines import BackendError, choose_backend
from ..engines.base import GenerationParams, LabelScores
from ..errors import PromptDistillError
from ..labeling.run_files import check_output_path
from ..student.check import DEFAULT_BASE_MODEL, StudentError, check_training_match, resolve_student
from ..student.engine import build_student_engine
from ..task import UNPARSEABLE, Task, add_task_arguments, load_task
from .calibration import confidence_summary
from .cascade import CascadeError, build_cascade, check_settings
from .config import EvaluationConfig
from .distillation import build_distillation, read_baseline
from .metrics import error_examples, fidelity, score
from .outputs import confusion_png, log_to_wandb, png_path_for, reliability_path_for, reliability_png, write_json
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
    sample_line,
    summary_block,
)

DEFAULT_MODEL_PATH = "./models/prompt_distillation_trl"
DEFAULT_TEST_FILE = "./example-data/multilingual.txt"
DEFAULT_OUTPUT_FILE = "./evaluation_results.json"
STUDENT_MAX_TOKENS = 8  # a label is one to three tokens; the rest shows what an unparseable answer looked like
SCORED, GENERATE = "scored", "generate"  # --answer_mode
ERROR_EXAMPLES_SAVED = 10
RESULTS_FORMAT = "prompt-distill-evaluation/1"
# What a results file says about the run, in the order it is written (a re-scoring writes the same order).
META_KEYS = ("model", "adapter", "backend", "test_file", "gold_file", "teacher_file", "split", "generation",
             "timing", "warnings", "baseline_file")


class EvaluationError(PromptDistillError, RuntimeError):
    pass


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


def add_arguments(parser) -> None:
    parser.add_argument("--model_path", default=DEFAULT_MODEL_PATH,
                        help="LoRA adapter folder from train_sft_trl.py; 'none' evaluates the base model alone.")
    parser.add_argument("--no_adapter", action="store_true", help="Evaluate the base model alone (a baseline).")
    parser.add_argument("--base_model", default=None,
                        help=f"Base model; default: the adapter's own (run_record.json or adapter_config.json), "
                             f"else {DEFAULT_BASE_MODEL}. Must match the adapter.")
    parser.add_argument("--test_file", default=DEFAULT_TEST_FILE,
                        help="Sentences, one per line; gold labels are read from <name>.gold.tsv beside it.")
    parser.add_argument("--max_samples", type=int, default=None, help="Evaluate only the first N sentences of the split.")
    parser.add_argument("--output_file", default=DEFAULT_OUTPUT_FILE,
                        help="Results JSON; the confusion-matrix PNG is written beside it. 'none' skips both.")
    parser.add_argument("--backend", choices=("auto", "vllm", "transformers"), default="auto",
                        help="auto: vLLM when importable and a CUDA GPU is present, else transformers.")
    parser.add_argument("--batch_size", type=int, default=32, help="Sentences per forward pass (transformers).")
    parser.add_argument("--answer_mode", choices=(SCORED, GENERATE), default=SCORED,
                        help="scored: every label scored in one forward pass, the most probable is the answer, and "
                             "its probability is saved (confidence block, cascade). generate: greedy free "
                             "generation read with the task's parser (unparseable answers stay visible).")
    parser.add_argument("--max_tokens", type=int, default=None,
                        help=f"--answer_mode generate: tokens generated per answer (default {STUDENT_MAX_TOKENS}).")
    parser.add_argument("--constrained", action="store_true",
                        help="--answer_mode generate: choose the best-scoring label when the reply is not one.")
    parser.add_argument("--teacher_file", default=None,
                        help="create_data.py's JSONL: adds student-vs-teacher agreement and teacher accuracy.")
    parser.add_argument("--defer_below", type=float, default=None,
                        help="Cascade: sentences whose student probability is below this take the teacher's label "
                             "(needs --teacher_file); the report adds the cascade's accuracy, share deferred and "
                             "tokens per request.")
    parser.add_argument("--target_accuracy", type=float, default=None,
                        help="Cascade: pick the smallest deferral whose accuracy reaches this fraction (e.g. 0.95) "
                             "on the evaluated sentences themselves (optimistic; the report says so).")
    parser.add_argument("--baseline", default=None,
                        help="Results JSON of an 'evaluate.py --no_adapter' run on the same test file: with "
                             "--teacher_file and gold labels, adds the distillation block (base vs teacher vs "
                             "student, 95%% bootstrap intervals, tokens per request, gain kept).")
    parser.add_argument("--predictions_file", default=None,
                        help="Re-score a results JSON written by this script, without loading a model.")
    parser.add_argument("--report_to", choices=("none", "wandb"), default="none",
                        help="wandb: log the numbers and the confusion-matrix PNG (offline without a login). "
                             "An already active wandb run is always logged to.")
    add_split_arguments(parser, default_split="eval")
    add_task_arguments(parser)


# -- what to evaluate -------------------------------------------------------------------------------------
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


def select_predictions(config: EvaluationConfig, task: Task) -> tuple[list[Prediction], str, dict, list[str]]:
    """``(samples, reference, split_info, notes)``; reference is "gold" or "teacher" (when there is no gold)."""
    sentences = read_sentences(config.test_file)
    gold = read_gold(config.test_file, task)
    teacher = read_teacher_labels(config.teacher_file, task) if config.teacher_file else None
    notes = []
    if sentences.blank_lines:
        notes.append(f"{config.test_file}: {sentences.blank_lines} blank lines skipped.")
    if gold is None and teacher is None:
        raise EvaluationError(
            f"{config.test_file} has no gold labels ({gold_path_for(config.test_file)} not found) and no --teacher_file "
            "was given: there is nothing to grade against. Pass create_data.py's output as --teacher_file to "
            "measure the student's agreement with the teacher."
        )
    from ..duplicates import distinct_sentences  # a repeated test sentence is graded once (one policy, duplicates.py)

    in_split_texts, repeat_notes = distinct_sentences(
        [text for text in sentences.texts if in_split(text, config.split, config.eval_fraction, config.split_seed)],
        config.test_file)
    notes += repeat_notes
    if not in_split_texts:
        raise EvaluationError(
            f"{config.test_file}: none of its {len(sentences.texts)} sentences is in split {config.split!r} "
            f"(eval_fraction {config.eval_fraction}, split_seed {config.split_seed})."
        )
    reference = "gold"
    samples = [
        Prediction(text, gold.get(text) if gold else None, teacher.get(text) if teacher else None)
        for text in in_split_texts
    ]
    if gold is None:
        reference = "teacher"
        graded = [sample for sample in samples if sample.teacher is not None]
        notes.append(
            f"NO GOLD LABELS: {gold_path_for(config.test_file)} not found. Grading against the teacher's labels "
            f"({config.teacher_file}): the numbers below are fidelity to the teacher, not accuracy."
        )
        if len(graded) < len(samples):
            notes.append(f"{len(samples) - len(graded)} sentences of the split have no teacher label and are skipped.")
        samples = graded
        if not samples:
            raise EvaluationError(f"None of the sentences in the split has a label in {config.teacher_file}.")
    if config.max_samples is not None:
        samples = samples[: config.max_samples]
    split_info = {
        "split": config.split,
        "eval_fraction": config.eval_fraction,
        "split_seed": config.split_seed,
        "sentences_in_file": len(sentences.texts),
        "sentences_in_split": len(in_split_texts),
        "evaluated": len(samples),
    }
    return samples, reference, split_info, notes


# -- the student ------------------------------------------------------------------------------------------
def student_params(task: Task, max_tokens: int, constrained: bool) -> GenerationParams:
    """Greedy, a few tokens. Constrained: the reply is made a label (vLLM: structured output from the first
    token; transformers: the labels are scored after a reply that ``Task.parse`` cannot read)."""
    return GenerationParams(
        max_tokens=max_tokens,
        temperature=0.0,
        answer_labels=task.labels if constrained else None,
        answer_prefix="",
        answer_parser=task.parse if constrained else None,
    )


def answer_token_counts(engine, labels: tuple[str, ...]) -> dict[str, int] | None:
    """Label -> the tokens a scored answer counts as: the label's own tokens and the end-of-turn token, what
    generating it would cost, so that tokens per request compare with generated answers and with the teacher."""
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is None:
        return None
    return {label: len(tokenizer.encode(label, add_special_tokens=False)) + 1 for label in labels}


class LivePrinter:
    """Prints one reference-style line per sample as its batch completes, above a tqdm bar with samples/s.

    Takes the engine's results as they come: ``LabelScores`` (scored answers) or ``Generation`` (free generation).
    """

    def __init__(self, predictions: list[Prediction], task: Task, reference: str, out=print,
                 answer_tokens: dict[str, int] | None = None):
        from tqdm import tqdm

        self.predictions, self.task, self.reference = predictions, task, reference
        self.answer_tokens = answer_tokens or {}
        self.done = self.matches = 0
        self.width = max(len(label) for label in task.labels)
        self.bar = tqdm(total=len(predictions), unit="sample", desc="Evaluating", dynamic_ncols=True)
        self.out = out

    def __call__(self, indices, results) -> None:
        new = 0
        for index, result in zip(indices, results, strict=True):
            sample = self.predictions[index]
            if sample.predicted is not None:
                continue  # the engine reported this one already
            new += 1
            if isinstance(result, LabelScores):
                sample.probabilities = {label: float(value) for label, value in result.probabilities.items()}
                sample.predicted = sample.raw = result.label
                sample.probability = sample.probabilities[result.label]
                sample.finish_reason = "scored"
                sample.prompt_tokens, sample.completion_tokens = result.prompt_tokens, self.answer_tokens.get(result.label)
            else:
                sample.raw, sample.finish_reason = result.text, result.finish_reason
                sample.prompt_tokens, sample.completion_tokens = result.prompt_tokens, result.completion_tokens
                sample.predicted = read_answer(self.task, result.text, result.finish_reason)
            truth = sample.gold if self.reference == "gold" else sample.teacher
            self.done += 1
            self.matches += sample.predicted == truth
            line = sample_line(
                self.done, len(self.predictions), sample.predicted, truth, self.matches, sample.text,
                *(("GT", "Acc") if self.reference == "gold" else ("Teacher", "Agree")), label_width=self.width,
            )
            if self.out is not print:
                self.out(line)
            elif sys.stderr.isatty():
                self.bar.write(line)  # above the progress bar, which is redrawn below it
            else:
                print(line, flush=True)  # a log file sees each batch as it completes
        self.bar.update(new)

    def close(self) -> None:
        self.bar.close()


def answer(engine, predictions: list[Prediction], task: Task, student, config: EvaluationConfig, reference: str, out) -> float:
    """Run the student on every prediction (scored or generated, per ``config.answer_mode``); returns the seconds."""
    chats = [student.messages(p.text) for p in predictions]
    scored = config.answer_mode == SCORED
    if scored and not callable(getattr(engine, "classify", None)):
        raise EvaluationError(f"The {getattr(engine, 'name', 'chosen')} engine cannot score labels in one pass; "
                              "pass --answer_mode generate.")
    printer = LivePrinter(predictions, task, reference, out, answer_token_counts(engine, task.labels) if scored else None)
    out("Evaluating model...")
    out(WIDE_RULE)
    started = time.perf_counter()
    try:
        if scored:
            results = engine.classify(chats, task.labels, on_batch=printer)
        else:
            results = engine.generate(chats, student_params(task, config.max_tokens, config.constrained), on_batch=printer)
        printer(list(range(len(predictions))), results)  # any the engine did not report through on_batch
    finally:
        printer.close()
    seconds = time.perf_counter() - started
    out(WIDE_RULE)
    out(f"Evaluation completed: {len(predictions)} samples processed")
    return seconds


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


def print_report(results: dict, scores, fidelity_result, task: Task, out=print) -> None:
    reference = results["reference"]
    row_name = "gold" if reference == "gold" else "teacher"
    generation = results["generation"]
    if generation.get("answer_mode", GENERATE) == SCORED:
        answers = "every label scored in one forward pass; the most probable is the answer"
    elif generation["constrained"]:
        answers = "constrained to the label set"
    else:
        answers = f"free generation, greedy, up to {generation['max_tokens']} tokens, read with Task.parse"
    out("")
    out(confusion_table(scores.confusion, row_name))
    out("")
    out(per_label_table(scores))
    out("")
    out(problem_labels(scores, results["error_examples"], task.label_names))
    out("")
    out(WIDE_RULE)
    out("")
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
    out(summary_block(context, scores, "Accuracy" if reference == "gold" else "agreement with the teacher",
                      timing.get("samples_per_second"), timing.get("seconds")))
    if fidelity_result is not None:
        out("")
        out(fidelity_block(fidelity_result, results["teacher_file"]))
    out("")
    if results.get("confidence"):
        out(confidence_block(results["confidence"], "accuracy" if reference == "gold" else "agreement"))
    else:
        out("Confidence: no label probabilities (free generation, or a results file saved before they were): no "
            "coverage table, calibration error or reliability diagram.")
    if results.get("cascade"):
        out("")
        out(cascade_block(results["cascade"]))
    if results.get("distillation"):
        out("")
        out(distillation_block(results["distillation"]))
    for warning in results.get("warnings", []):
        out(f"⚠️  {warning}")
    out("")
    out("💡 The student answered from the sentence alone, without the teacher's prompt or thinking.")


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


def finish(results, scores, fidelity_result, task: Task, config: EvaluationConfig, out=print) -> dict:
    """Print the report, write the JSON and PNGs, log to wandb; shared by a live run and a re-scoring."""
    add_distillation(results, task, config)
    add_cascade(results, config)
    print_report(results, scores, fidelity_result, task, out)
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
        out("")
        out(f"📁 Complete results saved to: {config.output_file}")
        out("   Includes: predictions, confusion matrix (dict and array), per-label stats, error examples")
        out(f"🖼️  Confusion matrix image: {png}")
        if reliability:
            out(f"🖼️  Reliability diagram image: {reliability}")
    logged = dict(results["summary"])
    if results.get("confidence"):
        logged["ece"] = results["confidence"]["ece"]
    note = log_to_wandb(logged, png, config.report_to == "wandb",
                        {key: results[key] for key in ("model", "adapter", "test_file", "split", "generation")},
                        Path(config.output_file).parent if png else Path.cwd(),
                        {"reliability_diagram": reliability} if reliability else None)
    if note:
        out(note)
    out(NARROW_RULE)
    return results


def check_answer_settings(config: EvaluationConfig) -> None:
    """Flags that cannot work together fail before the model loads, each with what to pass instead."""
    scored = config.answer_mode == SCORED
    if scored and (config.constrained or config.max_tokens is not None):
        raise EvaluationError("--constrained and --max_tokens apply to --answer_mode generate; the default "
                              "--answer_mode scored already answers with a label, from one forward pass.")
    if config.max_tokens is not None and config.max_tokens < 0:
        raise EvaluationError("--max_tokens must be 0 or more.")
    check_settings(config.defer_below, config.target_accuracy)
    if config.defer_below is not None or config.target_accuracy is not None:
        if not scored:
            raise EvaluationError("The cascade (--defer_below/--target_accuracy) needs the student's label "
                                  "probabilities: drop --answer_mode generate.")
        if not config.teacher_file:
            raise EvaluationError("The cascade (--defer_below/--target_accuracy) needs --teacher_file: deferred "
                                  "sentences take the teacher's label.")


def run(config: EvaluationConfig, out=print) -> dict:
    task = load_task(config.prompt_file, config.labels)
    if config.output_file.lower() != "none":
        check_output_path(config.output_file, "--output_file")  # before the model runs, not after
    if config.predictions_file:
        from .rescoring import rescore  # it builds on this module

        check_settings(config.defer_below, config.target_accuracy)
        return rescore(config, task, out)
    if config.max_samples is not None and config.max_samples < 1:
        raise EvaluationError("--max_samples must be at least 1.")
    check_answer_settings(config)
    if config.answer_mode == GENERATE and config.max_tokens is None:
        config = replace(config, max_tokens=STUDENT_MAX_TOKENS)
    choice = choose_backend(config.backend)  # pre-flight: before the student's base model is resolved; said below
    student = resolve_student(config.model_path, config.base_model, config.no_adapter)
    predictions, reference, split_info, notes = select_predictions(config, task)
    if getattr(config, "baseline", None):  # checked before the model runs, not after
        if reference != "gold" or not config.teacher_file:
            raise EvaluationError("--baseline needs gold labels beside the test file and --teacher_file: the "
                                  "distillation block grades base, teacher and student on the same gold sentences.")
        read_baseline(config.baseline, task)
    warnings = check_training_match(student, task, config.split, config.eval_fraction, config.split_seed,
                                    [p.text for p in predictions])
    for line in [*student.notes, *notes, choice.line()]:
        out(f"[evaluate] {line}")
    for warning in warnings:
        out(f"[evaluate] ⚠️  {warning}")
    out(f"[evaluate] Student: {student.base_model} (from {student.base_model_source})"
        f" + adapter {student.adapter_path or 'none'}")
    built = build_student_engine(choice.backend, student, config.batch_size, out)
    out(f"[evaluate] Engine: {built.description}")
    seconds = answer(built.engine, predictions, task, student, config, reference, out)
    scored = config.answer_mode == SCORED
    meta = dict.fromkeys(META_KEYS) | {
        "model": student.base_model,
        "adapter": student.adapter_path,
        "backend": built.description,
        "test_file": str(config.test_file),
        "gold_file": str(gold_path_for(config.test_file)) if reference == "gold" else None,
        "teacher_file": config.teacher_file,
        "split": split_info,
        "generation": {"answer_mode": config.answer_mode, "max_tokens": None if scored else config.max_tokens,
                       "temperature": 0.0, "constrained": None if scored else config.constrained,
                       "batch_size": config.batch_size},
        "timing": {"seconds": round(seconds, 3), "samples_per_second": round(len(predictions) / seconds, 3)},
        "warnings": warnings,
    }
    results, scores, fidelity_result = build_results(predictions, task, reference, meta)
    return finish(results, scores, fidelity_result, task, config, out)


ERRORS = (EvaluationError, StudentError, DataError, CascadeError, BackendError)
