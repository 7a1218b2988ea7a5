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

import sys

from prompt_distill.benchmark.config import DESCRIPTION, BenchmarkConfig
from prompt_distill.benchmark.run import report, run, save_results
from prompt_distill.benchmark.wandb_log import log_benchmark
from prompt_distill.cli import make_parser, parse_config, report_error, setup_logging
from prompt_distill.errors import PromptDistillError


def build_parser():
    """benchmark.py's parser (what ``main`` parses with), for --help and the tests."""
    return make_parser(BenchmarkConfig, DESCRIPTION)


def main(argv=None) -> int:
    config = parse_config(BenchmarkConfig, argv, DESCRIPTION)
    setup_logging()
    try:
        results = run(config)
        print(report(results), flush=True)  # long runs: the table shows at once, also through tee
        save_results(config, results)
        note = log_benchmark(config, results)  # after the file: a wandb failure is a warning
        if note:
            print(note)
    except PromptDistillError as error:
        return report_error(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
