#!/usr/bin/env python
"""Stage 1: the thinking teacher labels every sentence with the long prompt; the output is the training JSONL.

    python create_data.py --input_file ./example-data/multilingual.txt \\
        --output_file ./data/prompt_distillation_lang.jsonl \\
        --model_name Qwen/Qwen3-30B-A3B-Thinking-2507 --temperature 0.15 --tensor_parallel_size 4

On a CPU machine: python create_data.py --backend transformers --model_name smollm2-135m-instruct --max_samples 20

Re-running the same command after a crash or Ctrl-C resumes where it stopped; add --retry_unparseable to redo the
sentences whose answer could not be read.

See ``python create_data.py --help`` and prompt_distill/labeling/teacher_run.py.
"""

import argparse
import sys

from prompt_distill.cli_help import DefaultsOnceFormatter
from prompt_distill.labeling.config import CreateDataConfig
from prompt_distill.labeling.teacher_run import ERRORS, LabelingInterrupted, add_arguments, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=DefaultsOnceFormatter)
    add_arguments(parser)
    return parser


def main(argv=None) -> int:
    config = CreateDataConfig.from_args(build_parser().parse_args(argv))
    try:
        run(config)
    except ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except LabelingInterrupted as interrupted:
        print(f"\n{interrupted}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
