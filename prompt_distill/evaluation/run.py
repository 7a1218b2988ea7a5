"""Stage 3: run the student on held-out sentences and print the reference README's report, graded on gold labels.

The student gets the sentence alone, in the framing it was trained with (``Student.messages``). By default
(``--answer_mode scored``) every label is scored in one forward pass (``Engine.classify``): the most probable label
is the answer, and its probability feeds the confidence block (prompt_distill.evaluation.calibration) and the cascade to the
teacher (prompt_distill.evaluation.cascade). ``--answer_mode generate`` writes a few greedy tokens read with ``Task.parse``.
``--predictions_file`` re-scores a saved run without a model (prompt_distill.evaluation.rescoring); both paths end in
``finish`` (prompt_distill.evaluation.results, which owns the results format) so that they print and save the same
numbers. The flags are prompt_distill.evaluation.config's ``EvaluationConfig``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

from ..data import gold_path_for, in_split, read_gold, read_sentences
from ..duplicates import distinct_sentences
from ..engines.base import GenerationParams, LabelScores
from ..engines.flags import student_engine_options
from ..labeling.run_files import check_output_path
from ..preflight import check_flag_ranges
from ..student.check import RUN_RECORD, check_training_match, resolve_student, student_task
from ..student.engine import build_student_engine
from ..student.serving import choose_student_backend
from ..task import Task, load_task
from ..task_source import describe
from .cascade import check_settings
from .config import DEFAULT_MODEL_PATH as DEFAULT_MODEL_PATH  # re-exported: benchmark/ and scripts/ import these
from .config import DEFAULT_TEST_FILE as DEFAULT_TEST_FILE
from .config import GENERATE, SCORED, STUDENT_MAX_TOKENS, EvaluationConfig, check_rescoring_flags
from .distillation import read_baseline
from .report import WIDE_RULE, sample_line
from .rescoring import rescore
from .results import META_KEYS, EvaluationError, Prediction, build_results, finish, read_answer, read_teacher_labels

logger = logging.getLogger(__name__)


# -- what to evaluate -------------------------------------------------------------------------------------
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
    # A repeated test sentence is graded once (one policy, duplicates.py).
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

    def __init__(self, predictions: list[Prediction], task: Task, reference: str,
                 answer_tokens: dict[str, int] | None = None):
        from tqdm import tqdm

        self.predictions, self.task, self.reference = predictions, task, reference
        self.answer_tokens = answer_tokens or {}
        self.done = self.matches = 0
        self.width = max(len(label) for label in task.labels)
        self.bar = tqdm(total=len(predictions), unit="sample", desc="Evaluating", dynamic_ncols=True)

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
            if sys.stderr.isatty():
                self.bar.write(line)  # above the progress bar, which is redrawn below it
            else:
                print(line, flush=True)  # a log file sees each batch as it completes
        self.bar.update(new)

    def close(self) -> None:
        self.bar.close()


def answer(engine, predictions: list[Prediction], task: Task, student, config: EvaluationConfig, reference: str) -> float:
    """Run the student on every prediction (scored or generated, per ``config.answer_mode``); returns the seconds."""
    chats = [student.messages(p.text) for p in predictions]
    scored = config.answer_mode == SCORED
    if scored and not callable(getattr(engine, "classify", None)):
        raise EvaluationError(f"The {getattr(engine, 'name', 'chosen')} engine cannot score labels in one pass; "
                              "pass --answer_mode generate.")
    printer = LivePrinter(predictions, task, reference, answer_token_counts(engine, task.labels) if scored else None)
    print("Evaluating model...")
    print(WIDE_RULE)
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
    print(WIDE_RULE)
    print(f"Evaluation completed: {len(predictions)} samples processed")
    return seconds


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


def recorded_teacher_file(config: EvaluationConfig) -> EvaluationConfig:
    """--teacher_file not given: the adapter's training data (its run record's data_file, create_data.py's output),
    when that file is still there; ``--teacher_file none`` evaluates without the teacher's labels."""
    if config.teacher_file is not None:
        return replace(config, teacher_file=None) if config.teacher_file.lower() == "none" else config
    record = Path(config.model_path) / RUN_RECORD
    if config.no_adapter or not record.is_file():
        return config
    try:
        data_file = json.loads(record.read_text("utf-8")).get("data_file")
    except (ValueError, AttributeError):  # resolve_student names an unreadable run record
        return config
    if not isinstance(data_file, str) or not Path(data_file).is_file():
        return config
    logger.info(f"[evaluate] Teacher labels: {data_file}, the adapter's training data ({RUN_RECORD}); "
                "--teacher_file none leaves them out.")
    return replace(config, teacher_file=data_file)


def run(config: EvaluationConfig) -> dict:
    """The evaluation evaluate.py runs: the report printed, the results JSON and PNGs written, the results returned."""
    check_flag_ranges(config)  # --eval_fraction, --gpu_memory_utilization
    if config.output_file.lower() != "none":
        check_output_path(config.output_file, "--output_file")  # before the model runs, not after
    if config.predictions_file:
        check_rescoring_flags(config)  # the flags of a live run would be ignored: refused, named
        check_settings(config.defer_below, config.target_accuracy)
        return rescore(config, load_task(config.prompt_file, config.labels))
    if config.max_samples is not None and config.max_samples < 1:
        raise EvaluationError("--max_samples must be at least 1.")
    config = recorded_teacher_file(config)
    check_answer_settings(config)
    if config.answer_mode == GENERATE and config.max_tokens is None:
        config = replace(config, max_tokens=STUDENT_MAX_TOKENS)
    choice = choose_student_backend(config.backend, config)  # pre-flight: before the student is resolved; said below
    engine_options = student_engine_options(config, choice.backend)  # pre-flight too: --vllm_engine_kwargs ...
    student = resolve_student(config.model_path, config.base_model, config.no_adapter)
    # The adapter's own task (its run record), checked against --labels/--prompt_file; the flags for a base model.
    task = student_task(student, config.prompt_file, config.labels)
    logger.info(f"[evaluate] Task: {describe(task)}")
    predictions, reference, split_info, notes = select_predictions(config, task)
    if getattr(config, "baseline", None):  # checked before the model runs, not after
        if reference != "gold" or not config.teacher_file:
            raise EvaluationError("--baseline needs gold labels beside the test file and --teacher_file: the "
                                  "distillation block grades base, teacher and student on the same gold sentences.")
        read_baseline(config.baseline, task)
    warnings = check_training_match(student, task, config.split, config.eval_fraction, config.split_seed,
                                    [p.text for p in predictions])
    for line in [*student.notes, *notes, choice.line()]:
        logger.info(f"[evaluate] {line}")
    for warning in warnings:
        logger.warning(f"[evaluate] ⚠️  {warning}")
    logger.info(f"[evaluate] Student: {student.base_model} (from {student.base_model_source})"
        f" + adapter {student.adapter_path or 'none'}")
    built = build_student_engine(choice.backend, student, config.batch_size, **engine_options,
                                 served_model_name=config.served_model_name)
    logger.info(f"[evaluate] Engine: {built.description}")
    seconds = answer(built.engine, predictions, task, student, config, reference)
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
    return finish(results, scores, fidelity_result, task, config)

