#!/usr/bin/env python
"""Student inference on CPU: batched vs one sentence at a time, both samples/s and the ratio, in one run.

    python scripts/bench_batching.py                                   # embedded SmolLM2, 32 held-out sentences
    python scripts/bench_batching.py --model_path ./models/prompt_distillation_trl --num_samples 64
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from prompt_distill.benchmark.batching import format_result, measure_batching  # noqa: E402
from prompt_distill.cli import setup_logging  # noqa: E402
from prompt_distill.data import DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED, in_split, read_sentences  # noqa: E402
from prompt_distill.evaluation.run import DEFAULT_TEST_FILE, STUDENT_MAX_TOKENS, student_params  # noqa: E402
from prompt_distill.models import DEFAULT_CPU_MODEL  # noqa: E402
from prompt_distill.student.check import resolve_student  # noqa: E402
from prompt_distill.task import add_task_arguments, load_task  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_path", default="none", help="LoRA adapter folder; 'none' = the base model alone.")
    parser.add_argument("--base_model", default=None, help=f"Default: the adapter's base, else {DEFAULT_CPU_MODEL}.")
    parser.add_argument("--test_file", default=DEFAULT_TEST_FILE)
    parser.add_argument("--num_samples", type=int, default=32, help="Held-out sentences to run in each mode.")
    parser.add_argument("--batch_size", type=int, default=32, help="Batch size of the batched mode.")
    parser.add_argument("--max_tokens", type=int, default=STUDENT_MAX_TOKENS)
    parser.add_argument("--rounds", type=int, default=1, help="Alternating rounds of both modes.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice). On a machine shared with other jobs, "
                             "fewer threads than cores avoids threads waiting on each other.")
    add_task_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging()  # measure_batching logs each round

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    task = load_task(args.prompt_file, args.labels)
    no_adapter = args.model_path.lower() == "none"
    student = resolve_student(args.model_path, args.base_model or (DEFAULT_CPU_MODEL if no_adapter else None))
    texts = [t for t in read_sentences(args.test_file).texts
             if in_split(t, "eval", DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED)][: args.num_samples]

    from prompt_distill.engines.hf import HFEngine

    engine = HFEngine(student.base_model, adapter_path=student.adapter_path, device=args.device,
                      batch_size=args.batch_size)
    params = student_params(task, args.max_tokens, constrained=False)
    load_before = os.getloadavg()[0]
    result = measure_batching(engine, texts, task, params, args.batch_size, args.rounds, framing=student.framing)
    describe = (f"{student.base_model}{' + ' + student.adapter_path if student.adapter_path else ''}, "
                f"student framing {student.framing}, "
                f"{args.device}, {torch.get_num_threads()} of {os.cpu_count()} CPUs as threads, "
                f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}, up to {args.max_tokens} new tokens")
    print(format_result(result, len(texts), describe))
    return 0


if __name__ == "__main__":
    sys.exit(main())
