"""evaluate.py's flags: one typed, frozen config whose fields are the flags (help, group and choices in each field's
metadata, ``cli.flag``); what ``evaluation.run.run`` and everything below it read.

evaluate.py parses it with ``cli.parse_config`` (a ``TrlParser``, so ``--config file.yaml`` works too).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..cli import flag, given_flags
from ..data import SplitFlags, split_flag
from ..engines import BACKENDS
from ..preflight import PreflightError
from ..student.check import DEFAULT_BASE_MODEL
from ..student.serving import StudentFlags
from ..task import TaskFlags
from ..tracking import TrackingFlags

DEFAULT_MODEL_PATH = "./models/prompt_distillation_trl"
DEFAULT_TEST_FILE = "./example-data/multilingual.txt"
DEFAULT_OUTPUT_FILE = "./evaluation_results.json"
DEFAULT_BATCH_SIZE = 32
STUDENT_MAX_TOKENS = 8  # a label is one to three tokens; the rest shows what an unparseable answer looked like
SCORED, GENERATE = "scored", "generate"  # --answer_mode

DESCRIPTION = (
    "Evaluate the distilled student: per-sample lines, confusion matrix, per-label accuracy, teacher fidelity, "
    "confidence (accuracy at coverage, calibration error) and an optional cascade to the teacher; results as JSON, "
    "a confusion-matrix PNG and a reliability-diagram PNG."
)


@dataclass(frozen=True)
class EvaluationConfig(TrackingFlags, SplitFlags, TaskFlags, StudentFlags):
    # which student
    model_path: str = flag(
        DEFAULT_MODEL_PATH, "LoRA adapter folder from train_sft_trl.py; 'none' evaluates the base model alone.",
        group="model")
    no_adapter: bool = flag(False, "Evaluate the base model alone (a baseline).", group="model")
    base_model: str | None = flag(
        None, f"Base model; default: the adapter's own (run_record.json or adapter_config.json), else "
              f"{DEFAULT_BASE_MODEL}. Must match the adapter.", group="model")
    # which sentences, graded against what
    test_file: str = flag(
        DEFAULT_TEST_FILE, "Sentences, one per line; gold labels are read from <name>.gold.tsv beside it.",
        group="data")
    max_samples: int | None = flag(None, "Evaluate only the first N sentences of the split.", group="data")
    split: str = split_flag("eval")
    teacher_file: str | None = flag(
        None, "create_data.py's JSONL: adds student-vs-teacher agreement and teacher accuracy.", group="data")
    predictions_file: str | None = flag(
        None, "Re-score a results JSON written by this script, without loading a model.", group="data")
    # how the student answers
    answer_mode: str = flag(
        SCORED, "scored: every label scored in one forward pass, the most probable is the answer, and its probability "
                "is saved (confidence block, cascade). generate: greedy free generation read with the task's parser "
                "(unparseable answers stay visible).", group="sampling", choices=[SCORED, GENERATE])
    max_tokens: int | None = flag(
        None, f"--answer_mode generate: tokens generated per answer (default {STUDENT_MAX_TOKENS}).", group="sampling")
    constrained: bool = flag(
        False, "--answer_mode generate: choose the best-scoring label when the reply is not one.", group="sampling")
    # which engine
    backend: str = flag(
        "auto", "auto: openai with --base_url (the student behind a server), else vLLM when importable and a CUDA GPU "
                "is present, else transformers.", group="engine",
        choices=list(BACKENDS))
    batch_size: int = flag(DEFAULT_BATCH_SIZE, "Sentences per forward pass (transformers).", group="engine")
    # where results go
    output_file: str = flag(
        DEFAULT_OUTPUT_FILE, "Results JSON; the confusion-matrix PNG is written beside it. 'none' skips both.",
        group="output")
    # what the report adds
    defer_below: float | None = flag(
        None, "Cascade: sentences whose student probability is below this take the teacher's label (needs "
              "--teacher_file); the report adds the cascade's accuracy, share deferred and tokens per request.",
        group="report")
    target_accuracy: float | None = flag(
        None, "Cascade: pick the smallest deferral whose accuracy reaches this fraction (e.g. 0.95) on the evaluated "
              "sentences themselves (optimistic; the report says so).", group="report")
    baseline: str | None = flag(
        None, "Results JSON of an 'evaluate.py --no_adapter' run on the same test file: with --teacher_file and gold "
              "labels, adds the distillation block (base vs teacher vs student, 95%% bootstrap intervals, tokens per "
              "request, gain kept).", group="report")


# What re-scoring a saved results JSON reads (evaluation.rescoring, results.finish); every other flag is about the
# model run that the saved file already holds.
RESCORING_FLAGS = frozenset({"predictions_file", "prompt_file", "labels", "teacher_file", "output_file", "report_to",
                             "run_group",
                             "defer_below", "target_accuracy", "baseline"})


def check_rescoring_flags(config: EvaluationConfig) -> None:
    """--predictions_file with a flag that re-scoring would ignore (--test_file, --max_samples, --answer_mode, the
    split, the model and engine flags): refused, naming them, instead of a report that silently ignores them."""
    ignored = sorted(given_flags(config) - RESCORING_FLAGS)
    if ignored:
        named = ", ".join(f"--{name}" for name in ignored)
        raise PreflightError(f"--predictions_file re-scores the saved predictions without a model, so {named} would "
                             f"be ignored: drop {'it' if len(ignored) == 1 else 'them'}, or drop --predictions_file "
                             "to evaluate anew.")
