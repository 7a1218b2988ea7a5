"""``benchmark.py --student_latency``: is the one-pass student at the floor? Three ways to answer one sentence,
measured side by side in one run on one thread at batch size 1, with the adapter merged into the weights:

* greedy ``generate`` (the old path): a prefill, then a decode step per token until the end of turn;
* ``classify``: every label's probability from one pass over the prompt (HFEngine.classify);
* the floor: one bare forward of the merged model over the same prompt tokens (the student's framing, the fewest
  its template allows: student_framing), keeping only the last position's logits, the least any answer needs.

The three alternate sentence by sentence, and which goes first rotates, so a shared machine slows them alike.
Medians are compared: classify / bare is the overhead of everything around the forward pass (templating,
tokenizing, the label tokens, the softmax), with a target of at most 1.1x. Throughput: classify over all the
sentences at --batch_size against one at a time (the same engine; only its batch size changes).
"""

from __future__ import annotations

import logging
import statistics
import time

from ..evaluation.run import STUDENT_MAX_TOKENS, student_params
from ..student.check import resolve_student, student_task
from ..student_framing import USER_ONLY, framed_messages
from .config import BenchmarkConfig
from .measure import describe_machine, held_out_texts

RESULTS_FORMAT = "prompt-distill-student-latency/1"
TARGET_RATIO = 1.1
METHODS = ("generate", "classify", "bare_forward")
WARM_UP = 2  # untimed calls per method first: one-off allocations and lazy initialisation are not latency


logger = logging.getLogger(__name__)


def measure_student_latency(config: BenchmarkConfig) -> dict:
    """The three methods' latencies, classify's throughput and the answers' agreement (``format_latency`` prints
    them); the results file is written by ``run.save_results`` (--output_file, else ./student_latency.json)."""
    import torch  # torch and transformers load when a measurement starts, not when benchmark.py parses its flags

    from ..engines.hf import HFEngine

    texts = held_out_texts(config)
    student = resolve_student(config.model_path, config.base_model, config.no_adapter)
    for note in student.notes:
        logger.info(f"[latency] {note}")
    task = student_task(student, config.prompt_file, config.labels)  # the run record's, checked against the flags
    labels = task.labels
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # No shared-prefix KV reuse: every method computes every prompt token, as the bare pass does.
        engine = HFEngine(student.base_model, adapter_path=student.adapter_path, batch_size=1, merge_adapter=True,
                          reuse_prefix=False)
        for note in engine.notes:
            logger.info(f"[latency] {note}")
        chats = [student.messages(text) for text in texts]
        prompts = [engine._prompt(chat, student_params(task, 0, False)).ids for chat in chats]
        params = student_params(task, STUDENT_MAX_TOKENS, constrained=False)
        calls = {
            "generate": lambda i: engine.generate([chats[i]], params),
            "classify": lambda i: engine.classify([chats[i]], labels),
            "bare_forward": lambda i: _bare_forward(engine.model, prompts[i], engine.device),
        }
        latencies = _interleaved(calls, len(texts))
        throughput = _throughput(engine, chats, labels, config.batch_size)
        answers = _agreement(engine, chats, labels, params, task)
        machine = describe_machine(HFEngine.name)
    finally:
        torch.set_num_threads(threads)
    old_framing = [len(engine._prompt(framed_messages(text, USER_ONLY), params).ids) for text in texts]
    merged = bool(student.adapter_path) and not engine.notes
    results = {
        "format": RESULTS_FORMAT,
        "machine": machine,
        "threads": 1,
        "samples": len(texts),
        "test_file": str(config.test_file),
        "student": {"base_model": student.base_model, "adapter": student.adapter_path, "merged": merged,
                    "notes": engine.notes, "labels": list(labels)},
        "framing": {"name": student.framing, "prompt_tokens_median": statistics.median(map(len, prompts)),
                    "user_turn_only_prompt_tokens_median": statistics.median(old_framing)},
        "latency_ms": {name: _summary(values) for name, values in latencies.items()},
        "ratios": {
            "classify_over_bare": _ratio(latencies["classify"], latencies["bare_forward"]),
            "generate_over_bare": _ratio(latencies["generate"], latencies["bare_forward"]),
            "target_classify_over_bare": TARGET_RATIO,
        },
        "throughput": throughput,
        "answers": answers,
    }
    return results


def _bare_forward(model, ids: list[int], device):
    import torch

    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids], device=device), logits_to_keep=1).logits


def _interleaved(calls: dict, samples: int) -> dict[str, list[float]]:
    """Seconds per call, per method; methods alternate per sentence and the first one rotates."""
    names = list(calls)
    for name in names:
        for i in range(min(WARM_UP, samples)):
            calls[name](i)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for i in range(samples):
        for name in names[i % len(names):] + names[: i % len(names)]:
            started = time.perf_counter()
            calls[name](i)
            seconds[name].append(time.perf_counter() - started)
    return seconds


def _throughput(engine, chats, labels, batch_size: int) -> dict:
    timings = {}
    for mode, size in (("one_at_a_time", 1), ("batched", batch_size)):
        engine.batch_size = size
        started = time.perf_counter()
        engine.classify(chats, labels)
        timings[mode] = time.perf_counter() - started
    engine.batch_size = 1
    rate = {mode: len(chats) / seconds for mode, seconds in timings.items()}
    return {"batch_size": batch_size, "one_at_a_time_samples_per_s": rate["one_at_a_time"],
            "batched_samples_per_s": rate["batched"], "speedup": rate["batched"] / rate["one_at_a_time"]}


def _agreement(engine, chats, labels, params, task) -> dict:
    """The scored label against what greedy generation answers (where it answers a label)."""
    scored = [scores.label for scores in engine.classify(chats, labels)]
    generated = [task.parse(generation.text) for generation in engine.generate(chats, params)]
    comparable = [(s, g) for s, g in zip(scored, generated, strict=True) if g in labels]
    return {"generated_a_label": len(comparable), "scored_equals_generated": sum(s == g for s, g in comparable)}


def _summary(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    return {"median": 1000 * statistics.median(ordered), "p90": 1000 * ordered[int(0.9 * (len(ordered) - 1))],
            "all": [round(1000 * value, 3) for value in seconds]}


def _ratio(first: list[float], second: list[float]) -> float:
    return statistics.median(first) / statistics.median(second)


def format_latency(results: dict) -> str:
    latency, ratios, throughput = results["latency_ms"], results["ratios"], results["throughput"]
    framing = results["framing"]
    student = results["student"]
    weights = "adapter merged into the weights" if student["merged"] else (
        "adapter as PEFT layers (not merged)" if student["adapter"] else "no adapter")
    verdict = "within" if ratios["classify_over_bare"] <= TARGET_RATIO else "ABOVE"
    answers = results["answers"]
    return "\n".join([
        "=" * 72,
        f"STUDENT LATENCY, 1 thread, batch size 1, {results['samples']} sentences ({weights})",
        "=" * 72,
        f"prompt tokens (median): {framing['prompt_tokens_median']:g} with framing {framing['name']!r} "
        f"(the user turn alone: {framing['user_turn_only_prompt_tokens_median']:g})",
        f"{'method':<34}{'median ms':>12}{'p90 ms':>10}",
        *(f"{label:<34}{latency[name]['median']:>12.1f}{latency[name]['p90']:>10.1f}" for name, label in (
            ("generate", "greedy generate (old path)"), ("classify", "classify (one pass, all labels)"),
            ("bare_forward", "bare forward, merged model"))),
        f"classify / bare forward: {ratios['classify_over_bare']:.2f}x ({verdict} the {TARGET_RATIO}x target); "
        f"generate / bare forward: {ratios['generate_over_bare']:.2f}x",
        f"classify throughput: {throughput['batched_samples_per_s']:.1f} samples/s at batch size "
        f"{throughput['batch_size']} vs {throughput['one_at_a_time_samples_per_s']:.1f} one at a time "
        f"({throughput['speedup']:.2f}x)",
        f"scored label = greedy generation on {answers['scored_equals_generated']} of the "
        f"{answers['generated_a_label']} sentences where generation gave a label",
        f"machine: {results['machine']}",
    ])
