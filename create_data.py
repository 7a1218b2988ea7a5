#!/usr/bin/env python
"""Stage 1: the thinking teacher labels every sentence with the long prompt; the output is the training JSONL.

    python create_data.py --input_file ./example-data/multilingual.txt \\
        --output_file ./data/prompt_distillation_lang.jsonl \\
        --teacher_model Qwen/Qwen3-30B-A3B-Thinking-2507 --temperature 0.15 --tensor_parallel_size 4

On a CPU machine: python create_data.py --backend transformers --teacher_model smollm2-135m-instruct --max_samples 20

Re-running the same command after a crash or Ctrl-C resumes where it stopped; add --retry_unparseable to redo the
sentences whose answer could not be read.

See ``python create_data.py --help`` (or ``--config run.yaml``), prompt_distill/labeling/config.py (the flags)
and prompt_distill/labeling/teacher_run.py.
"""

import sys

from prompt_distill.cli import make_parser, report_error, setup_logging
from prompt_distill.errors import PromptDistillError
from prompt_distill.labeling.config import CreateDataConfig
from prompt_distill.labeling.summary import format_summary
from prompt_distill.labeling.teacher_run import LabelingInterrupted, run


def build_parser():
    """create_data.py's parser (what ``main`` parses with), for --help and the tests."""
    return make_parser(CreateDataConfig, __doc__.split("\n\n")[0])


def main(argv=None) -> int:
    (config,) = build_parser().parse_flags(argv)
    setup_logging()
    try:
        summary = run(config)
    except PromptDistillError as error:
        return report_error(error)
    except LabelingInterrupted as interrupted:
        print(f"\n{interrupted}", file=sys.stderr)
        return 130
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
