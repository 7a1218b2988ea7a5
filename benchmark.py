#!/usr/bin/env python
"""The headline, measured: teacher (long prompt + thinking) vs distilled student (sentence alone), side by side.

    python benchmark.py --model_path ./models/demo_trl            # CPU: embedded model, emulated thinking
    python benchmark.py --tensor_parallel_size 4                   # GPU: both Qwen3 models on vLLM, real thinking
    python benchmark.py --load_engines sequential                  # one GPU: teacher measured and shut down, then
                                                                   # the student (the planner's choice on one H100)
    python benchmark.py --student_latency --model_path ./models/demo_trl --max_samples 8
                                        # the student alone: generate vs one-pass classify vs a bare forward pass

Prints prompt and generated tokens per request, latency at batch size 1 (median, p90), throughput at a batch, and
their ratios; writes everything to --output_file. See prompt_distill/benchmark/measure.py.
"""

import argparse
import sys
from functools import partial

from prompt_distill.benchmark.config import BenchmarkConfig
from prompt_distill.benchmark.run import BenchmarkError, add_arguments, run
from prompt_distill.cli_help import DefaultsOnceFormatter
from prompt_distill.data import DataError
from prompt_distill.models import ModelNotFoundError
from prompt_distill.preflight import PreflightError
from prompt_distill.student.check import StudentError
from prompt_distill.task import TaskError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Teacher (prompt + thinking) vs distilled student: tokens, latency and throughput, with ratios.",
        formatter_class=DefaultsOnceFormatter,
    )
    add_arguments(parser)
    return parser


def main(argv=None) -> int:
    config = BenchmarkConfig.from_args(build_parser().parse_args(argv))
    try:
        run(config, out=partial(print, flush=True))  # long runs: lines show as they happen, also through tee
    except (BenchmarkError, PreflightError, DataError, StudentError, TaskError, ModelNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
