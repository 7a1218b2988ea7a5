#!/usr/bin/env python
"""Stage 3: evaluate the distilled student on held-out sentences and print the report.

    python evaluate.py                                   # the reference defaults, held-out split, gold labels
    python evaluate.py --max_samples 100 --teacher_file ./data/prompt_distillation_lang.jsonl
    python evaluate.py --predictions_file ./evaluation_results.json   # re-score without a model
    python evaluate.py --no_adapter                      # the base model alone, as a baseline
    python evaluate.py --teacher_file ./data/prompt_distillation_lang.jsonl --defer_below 0.9   # + a cascade
    python evaluate.py --answer_mode generate            # free generation instead of scoring the labels

See ``python evaluate.py --help`` and prompt_distill/evaluation/run.py.
"""

import argparse
import sys

from prompt_distill.cli_help import DefaultsOnceFormatter
from prompt_distill.evaluation.config import EvaluationConfig
from prompt_distill.evaluation.run import ERRORS, add_arguments, run
from prompt_distill.models import ModelNotFoundError
from prompt_distill.task import TaskError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Evaluate the distilled student: per-sample lines, confusion matrix, per-label accuracy, "
        "teacher fidelity, confidence (accuracy at coverage, calibration error) and an optional cascade to the "
        "teacher; results as JSON, a confusion-matrix PNG and a reliability-diagram PNG.",
        formatter_class=DefaultsOnceFormatter,
    )
    add_arguments(parser)
    return parser


def main(argv=None) -> int:
    config = EvaluationConfig.from_args(build_parser().parse_args(argv))
    try:
        run(config)
    except (*ERRORS, TaskError, ModelNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
