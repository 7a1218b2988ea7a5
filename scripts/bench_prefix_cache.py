#!/usr/bin/env python
"""Shared-prefix KV reuse vs naive per-request generation, with the real teacher prompt, in one run.

Both modes run the same engine on the same sentences, interleaved (naive, reuse, naive, ...), so machine load
hits both alike. Naive: one request at a time, the whole prompt recomputed each time. Reuse: batches, the
shared system prompt computed once (its cost is included). Every request generates exactly --max_tokens
tokens in both modes, so both do the same decoding work, and the greedy outputs must agree.

    python scripts/bench_prefix_cache.py        # embedded SmolLM2 on CPU: about 1m40s on 2 shared cores
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from prompt_distill.data import read_sentences  # noqa: E402
from prompt_distill.engines.base import GenerationParams  # noqa: E402
from prompt_distill.engines.hf import HFEngine  # noqa: E402
from prompt_distill.models import DEFAULT_CPU_MODEL  # noqa: E402
from prompt_distill.task import add_task_arguments, load_task  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_name", default=DEFAULT_CPU_MODEL)
    parser.add_argument("--input_file", default="./example-data/multilingual.txt")
    parser.add_argument("--num_sentences", type=int, default=8, help="Sentences for the reuse mode.")
    parser.add_argument("--naive_samples", type=int, default=2, help="Of those, how many also run naively.")
    parser.add_argument("--max_tokens", type=int, default=8, help="Tokens generated per request (exactly).")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (0: torch's choice). 1 by default: on a small shared machine two threads fight.",
    )
    add_task_arguments(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.naive_samples <= args.num_sentences:
        parser.error("--naive_samples must be between 1 and --num_sentences.")
    if args.threads:
        torch.set_num_threads(args.threads)

    task = load_task(args.prompt_file, args.labels)
    texts = read_sentences(args.input_file).texts[: args.num_sentences]
    chats = [task.teacher_messages(text) for text in texts]
    params = GenerationParams(max_tokens=args.max_tokens, min_tokens=args.max_tokens, temperature=0.0)
    engine = HFEngine(args.model_name, batch_size=args.batch_size)
    prompt_tokens = engine.count_prompt_tokens(chats[0], params)

    naive_texts, naive_seconds = [], 0.0
    reuse, reuse_seconds = None, 0.0

    def run_naive(chat):
        nonlocal naive_seconds
        engine.batch_size, engine.reuse_prefix = 1, False
        began = time.perf_counter()
        naive_texts.append(engine.generate([chat], params)[0].text)
        naive_seconds += time.perf_counter() - began

    # Interleaved: naive, reuse (from a cold cache), then the remaining naive ones.
    run_naive(chats[0])
    engine.batch_size, engine.reuse_prefix = args.batch_size, True
    engine.reset_prefix_cache()
    began = time.perf_counter()
    reuse = engine.generate(chats, params)
    reuse_seconds = time.perf_counter() - began
    for chat in chats[1 : args.naive_samples]:
        run_naive(chat)

    naive_rate = args.naive_samples / naive_seconds
    reuse_rate = len(chats) / reuse_seconds
    same = all(reuse[i].text == naive_texts[i] for i in range(args.naive_samples))
    print(f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, "
          f"device {engine.device}; model {args.model_name}")
    print(f"Teacher prompt: {prompt_tokens} tokens, of which {reuse[0].cached_prompt_tokens} shared and reused; "
          f"{args.max_tokens} generated tokens per request")
    print(f"naive per-request generate:    {args.naive_samples} samples in {naive_seconds:6.1f} s -> "
          f"{naive_rate:.3f} samples/s")
    print(f"batched + shared-prefix reuse: {len(chats)} samples in {reuse_seconds:6.1f} s -> {reuse_rate:.3f} samples/s "
          f"(batch {args.batch_size}, prefix computed once, included)")
    print(f"speed-up: {reuse_rate / naive_rate:.1f}x")
    print(f"greedy outputs identical on the {args.naive_samples} sentences run both ways: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
