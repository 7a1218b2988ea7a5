#!/usr/bin/env python
"""Stage 3: evaluate the distilled student on held-out sentences and print the report.

    python evaluate.py                                   # the reference defaults, held-out split, gold labels
    python evaluate.py --max_samples 100 --teacher_file ./data/prompt_distillation_lang.jsonl
    python evaluate.py --predictions_file ./evaluation_results.json   # re-score without a model
    python evaluate.py --no_adapter                      # the base model alone, as a baseline
    python evaluate.py --teacher_file ./data/prompt_distillation_lang.jsonl --defer_below 0.9   # + a cascade
    python evaluate.py --answer_mode generate            # free generation instead of scoring the labels

See ``python evaluate.py --help``, prompt_distill/evaluation/config.py (the flags) and evaluation/run.py.
"""

import sys

from prompt_distill.cli import make_parser, parse_config, report_error, setup_logging
from prompt_distill.errors import PromptDistillError
from prompt_distill.evaluation.config import DESCRIPTION, EvaluationConfig
from prompt_distill.evaluation.run import run


def build_parser():
    return make_parser(EvaluationConfig, DESCRIPTION)


def main(argv=None) -> int:
    config = parse_config(EvaluationConfig, argv, DESCRIPTION)
    setup_logging()
    try:
        run(config)
    except PromptDistillError as error:
        return report_error(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
