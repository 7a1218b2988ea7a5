"""The headline measured: the teacher setup (long prompt + sentence, with thinking) against the distilled student
(the sentence alone, base model + adapter), on the same machine, backend and sentences.

Per request at batch size 1, teacher and student alternate request by request, and who goes first alternates too,
so a noisy, shared machine slows both alike. Throughput: one call of ``batch_size`` requests per side, alternating
round by round. Before timing, each side serves two requests untimed: the teacher's long prompt is then in the
prefix cache, as it is in production (vLLM caches prefixes by default; the transformers engine keeps the shared
prefix's KV cache); the time of that first, cold call is reported separately. When the two engines do not fit the
GPUs together they are loaded one at a time (``measure_alone``: the same steps, teacher first, no alternation),
and the results say so.

Thinking: on vLLM the teacher thinks for real. On transformers (the CPU demo model cannot think), the teacher is
forced to generate exactly ``thinking_tokens`` tokens, then answers: *emulated* thinking, said in every output.

Votes: a teacher that labels with ``create_data.py --num_samples K`` answers every sentence K times. With
``--teacher_samples K`` (or the K of ``--teacher_meta_file``'s sidecar) each teacher request is the sentence's K
sampled answers sent together, and its tokens are their sum: K times the thinking tokens per sentence.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from itertools import cycle, islice

from ..data import DataError, in_split, iter_jsonl, read_sentences
from ..engines.base import Generation, GenerationParams
from ..engines.registry import engine_spec
from ..preflight import PreflightError
from ..task import ANSWER_PREFIX, Task
from .config import DEFAULT_EMULATED_THINKING_TOKENS, BenchmarkConfig, BenchmarkError

RESULTS_FORMAT = "prompt-distill-benchmark/1"
ROLES = ("teacher", "student")

logger = logging.getLogger(__name__)


@dataclass
class Thinking:
    emulated: bool
    tokens: int | None  # forced length when emulated; None = the model decides (real thinking)
    source: str  # where the length came from, printed next to every number it affects
    answers: int = 1  # sampled answers per sentence (create_data.py --num_samples), each one thinking

    def describe(self) -> str:
        votes = (f"; {self.answers} sampled answers per sentence (majority vote), each thinking"
                 if self.answers > 1 else "")
        if not self.emulated:
            return f"real thinking ({self.source}){votes}"
        return f"EMULATED thinking: exactly {self.tokens} forced tokens ({self.source}){votes}"


@dataclass
class Contender:
    role: str  # "teacher" or "student"
    engine: object
    chats: list[list[dict]]
    params: GenerationParams
    description: str
    answers: int = 1  # requests per sentence: the teacher's K sampled answers (votes), sent together


@dataclass
class Request:
    prompt_tokens: int
    cached_prompt_tokens: int | None
    completion_tokens: int
    latency_s: float
    answer: str


@dataclass
class Measurements:
    warm_up_s: dict[str, float] = field(default_factory=dict)
    requests: dict[str, list[Request]] = field(default_factory=lambda: {role: [] for role in ROLES})
    batch_seconds: dict[str, list[float]] = field(default_factory=lambda: {role: [] for role in ROLES})
    batch_size: int = 0


# -- what the teacher generates ---------------------------------------------------------------------------------
def held_out_texts(config: BenchmarkConfig) -> list[str]:
    """The first --max_samples sentences of --test_file in --split: the ones both sides answer."""
    texts = [text for text in read_sentences(config.test_file).texts
             if in_split(text, config.split, config.eval_fraction, config.split_seed)]
    if len(texts) < max(config.max_samples, 2):
        raise BenchmarkError(f"{config.test_file}: {len(texts)} sentences in split {config.split!r}, "
                             f"--max_samples {config.max_samples} asked (at least 2 are needed).")
    return texts[: config.max_samples]



def median_thinking_tokens(sidecar_path) -> int:
    """Median generated tokens per answer of the labelled sentences in a create_data sidecar (``*.meta.jsonl``):
    every sample's, where a sentence has several (--num_samples)."""
    counts = [
        answer.get("completion_tokens")
        for _, record in iter_jsonl(sidecar_path)
        if record.get("status") == "labelled"
        for answer in (record.get("samples") or [record])
    ]
    counts = [count for count in counts if isinstance(count, int)]
    counts = [count for count in counts if count > 0]
    if not counts:
        raise DataError(
            f"{sidecar_path}: no labelled record with generated tokens (a CPU run with --max_tokens 0 generates "
            "none). Use the sidecar of a GPU run, or pass --thinking_tokens."
        )
    return int(statistics.median(counts))


def sidecar_answers(sidecar_path) -> int:
    """Sampled answers per sentence in a create_data sidecar (its --num_samples): 1 for a single-answer run."""
    return max((len(record.get("samples") or ()) for _, record in iter_jsonl(sidecar_path)), default=0) or 1


def choose_thinking(backend: str, thinking_tokens: int | None, sidecar_path: str | None,
                    answers: int | None = None) -> Thinking:
    """How long the teacher thinks, and how many answers per sentence (``answers``: --teacher_samples; default the
    sidecar's, else 1)."""
    if answers is not None and answers < 1:
        raise PreflightError(f"--teacher_samples must be at least 1, got {answers}.")
    answers = answers or (sidecar_answers(sidecar_path) if sidecar_path else 1)
    if thinking_tokens is not None:
        if thinking_tokens < 1:
            raise PreflightError(f"--thinking_tokens must be at least 1, got {thinking_tokens}.")
        return Thinking(True, thinking_tokens, "--thinking_tokens", answers)
    if sidecar_path:
        return Thinking(True, median_thinking_tokens(sidecar_path), f"median of {sidecar_path}", answers)
    if engine_spec(backend).real_thinking:
        return Thinking(False, None, "the model decides when to stop", answers)
    return Thinking(True, DEFAULT_EMULATED_THINKING_TOKENS,
                    "an ASSUMPTION, the default of --thinking_tokens; measure it with --teacher_meta_file", answers)


def teacher_params(task: Task, backend: str, thinking: Thinking, *, max_tokens: int, temperature: float,
                   seed: int, top_k: int = 0) -> GenerationParams:
    """Real thinking: as create_data.py asks (free answer after the thought). Emulated: exactly N tokens, then, on
    an engine that scores labels (transformers), the labels are scored after ``Final Answer:`` (the answer the
    engine would otherwise write)."""
    common = {"temperature": temperature, "top_k": top_k, "seed": seed, "answer_prefix": ANSWER_PREFIX + " ",
              "answer_parser": task.parse}
    if not thinking.emulated:
        return GenerationParams(max_tokens=max_tokens, **common)
    return GenerationParams(max_tokens=thinking.tokens, min_tokens=thinking.tokens,
                            answer_labels=task.labels if engine_spec(backend).scores_labels else None, **common)


# -- measuring --------------------------------------------------------------------------------------------------
def _timed(contender: Contender, chats: list[list[dict]], params: GenerationParams) -> tuple[float, list[Generation]]:
    """One call for ``chats``; with K answers per sentence each chat is sent K times (own seeds, as create_data
    seeds its samples) and the K generations of a sentence come back as one, their tokens summed."""
    answers = contender.answers
    if answers > 1:
        chats = [chat for chat in chats for _ in range(answers)]
        if params.seed is not None:
            params = replace(params, request_seeds=tuple(params.seed + number for number in range(len(chats))))
    started = time.perf_counter()
    generations = contender.engine.generate(chats, params)
    seconds = time.perf_counter() - started
    if answers > 1:
        generations = [_summed(generations[start : start + answers]) for start in range(0, len(generations), answers)]
    return seconds, generations


def _summed(generations: list[Generation]) -> Generation:
    """A sentence's K answers as one request: the tokens of all K (the first answer's text)."""
    cached = [generation.cached_prompt_tokens for generation in generations]
    return replace(generations[0], prompt_tokens=sum(generation.prompt_tokens for generation in generations),
                   completion_tokens=sum(generation.completion_tokens for generation in generations),
                   cached_prompt_tokens=None if None in cached else sum(cached))


def _request(generation: Generation, seconds: float, task: Task) -> Request:
    return Request(generation.prompt_tokens, generation.cached_prompt_tokens, generation.completion_tokens,
                   seconds, task.parse(generation.text))


def _warm_up(contender: Contender, result: Measurements) -> None:
    """Untimed in the comparison: fills the prefix cache, first-call allocations."""
    short = replace(contender.params, max_tokens=1, min_tokens=min(1, contender.params.min_tokens))
    result.warm_up_s[contender.role], _ = _timed(contender, contender.chats[:2], short)
    logger.info(f"[benchmark] {contender.role} warm-up (2 requests, 1 token, prompt prefix computed): "
                f"{result.warm_up_s[contender.role]:.2f} s")


def _batch(contender: Contender, result: Measurements, batch_size: int, round_number: int, rounds: int) -> None:
    if hasattr(contender.engine, "batch_size"):  # transformers: one forward pass per batch
        contender.engine.batch_size = batch_size
    chats = list(islice(cycle(contender.chats), batch_size))
    seconds, _ = _timed(contender, chats, contender.params)
    result.batch_seconds[contender.role].append(seconds)
    logger.info(f"[benchmark] round {round_number}/{rounds}: {contender.role} batch of {batch_size}: {seconds:.2f} s "
                f"({batch_size / seconds:.2f} samples/s)")


def measure(contenders: list[Contender], task: Task, *, samples: int, batch_size: int, rounds: int) -> Measurements:
    """Both engines loaded: requests and rounds alternate between them."""
    result = Measurements(batch_size=batch_size)
    for contender in contenders:
        _warm_up(contender, result)
    for index in range(samples):
        order = contenders if index % 2 == 0 else contenders[::-1]
        for contender in order:
            seconds, [generation] = _timed(contender, [contender.chats[index]], contender.params)
            result.requests[contender.role].append(_request(generation, seconds, task))
        logger.info(f"[benchmark] request {index + 1}/{samples} at batch size 1: " + ", ".join(
            f"{role} {result.requests[role][-1].latency_s:.2f} s" for role in ROLES))
    for round_number in range(1, rounds + 1):
        for contender in contenders if round_number % 2 else contenders[::-1]:
            _batch(contender, result, batch_size, round_number, rounds)
    return result


def measure_alone(contender: Contender, task: Task, result: Measurements, *, samples: int,
                  rounds: int) -> Measurements:
    """One engine loaded (the other not yet, or already shut down): the same warm-up, requests and rounds as
    ``measure``, without alternation. ``result`` collects both sides, one after the other."""
    _warm_up(contender, result)
    for index in range(samples):
        seconds, [generation] = _timed(contender, [contender.chats[index]], contender.params)
        result.requests[contender.role].append(_request(generation, seconds, task))
        logger.info(f"[benchmark] {contender.role} request {index + 1}/{samples} at batch size 1: {seconds:.2f} s")
    for round_number in range(1, rounds + 1):
        _batch(contender, result, result.batch_size, round_number, rounds)
    return result


# -- summarising ------------------------------------------------------------------------------------------------
def percentile(values: list[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize_side(requests: list[Request], batch_seconds: list[float], batch_size: int) -> dict:
    latencies = [request.latency_s for request in requests]
    prompt = statistics.fmean(request.prompt_tokens for request in requests)
    completion = statistics.fmean(request.completion_tokens for request in requests)
    cached = [request.cached_prompt_tokens for request in requests]
    return {
        "prompt_tokens": prompt,
        "cached_prompt_tokens": statistics.fmean(cached) if None not in cached else None,
        "completion_tokens": completion,
        "tokens_per_request": prompt + completion,
        "latency_median_s": statistics.median(latencies),
        "latency_p90_s": percentile(latencies, 0.9),
        "throughput_samples_per_s": batch_size * len(batch_seconds) / sum(batch_seconds),
    }


def ratios(teacher: dict, student: dict) -> dict:
    """How many times cheaper or faster the student is; every ratio reads "teacher / student" in cost."""
    return {
        "tokens_per_request": teacher["tokens_per_request"] / student["tokens_per_request"],
        "prompt_tokens": teacher["prompt_tokens"] / student["prompt_tokens"],
        "latency_median": teacher["latency_median_s"] / student["latency_median_s"],
        "latency_p90": teacher["latency_p90_s"] / student["latency_p90_s"],
        "throughput": student["throughput_samples_per_s"] / teacher["throughput_samples_per_s"],
    }


def describe_machine(backend: str) -> str:
    import torch

    if torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        return f"{torch.cuda.device_count()} x {', '.join(names)}, {os.cpu_count()} CPUs, {backend}"
    return (f"CPU only: {os.cpu_count()} x {cpu_model()}, torch on {torch.get_num_threads()} threads, {backend}")


def cpu_model() -> str:
    try:  # Linux names the processor here; platform.processor() is often empty there
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_results(contenders: list[Contender], thinking: Thinking, measured: Measurements, meta: dict) -> dict:
    summary = {role: summarize_side(measured.requests[role], measured.batch_seconds[role], measured.batch_size)
               for role in ROLES}
    by_role = {contender.role: contender for contender in contenders}
    return {
        "format": RESULTS_FORMAT,
        **meta,
        "thinking": asdict(thinking),
        "setups": {role: by_role[role].description for role in ROLES},
        "batch_size": measured.batch_size,
        "warm_up_s": measured.warm_up_s,
        "summary": summary,
        "ratios": ratios(summary["teacher"], summary["student"]),
        "requests": {role: [asdict(request) for request in measured.requests[role]] for role in ROLES},
        "batch_seconds": measured.batch_seconds,
    }


def format_table(results: dict) -> str:
    teacher, student, ratio = results["summary"]["teacher"], results["summary"]["student"], results["ratios"]
    thinking = Thinking(**results["thinking"])

    def row(name, key, digits, ratio_key=None):
        cells = [teacher[key], student[key]]
        shown = ["-" if value is None else f"{value:,.{digits}f}" for value in cells]
        times = f"{ratio[ratio_key]:.1f}x" if ratio_key else ""
        return f"{name:<36}{shown[0]:>14}{shown[1]:>14}{times:>12}"

    batch = results["batch_size"]
    lines = [
        "=" * 76,
        f"TEACHER (PROMPT + THINKING) VS DISTILLED STUDENT: {results['samples']} held-out sentences",
        f"machine: {results['machine']}",
        f"teacher: {results['setups']['teacher']}",
        f"         {thinking.describe()}",
        f"student: {results['setups']['student']}",
        "=" * 76,
        f"{'per request' if thinking.answers == 1 else 'per sentence':<36}{'teacher':>14}{'student':>14}"
        f"{'ratio':>12}",
        row("prompt tokens", "prompt_tokens", 1, "prompt_tokens"),
        row("  of which served from prefix cache", "cached_prompt_tokens", 1),
        row("generated tokens" + (" (emulated thinking)" if thinking.emulated else ""), "completion_tokens", 1),
        row("tokens (prompt + generated)", "tokens_per_request", 1, "tokens_per_request"),
        row("latency at batch size 1, median (s)", "latency_median_s", 3, "latency_median"),
        row("latency at batch size 1, p90 (s)", "latency_p90_s", 3, "latency_p90"),
        row(f"throughput at batch {batch} (samples/s)", "throughput_samples_per_s", 3, "throughput"),
        "-" * 76,
        "ratio = how many times fewer tokens, lower latency or more samples/s the student needs or gives.",
        "warm-up (untimed above; the teacher's first call computes its prompt): "
        + ", ".join(f"{role} {seconds:.2f} s" for role, seconds in results["warm_up_s"].items()),
    ]
    if results.get("loading") == "sequential":
        lines.append("SEQUENTIAL: one engine loaded at a time (teacher measured, shut down, then the student): the "
                     "two sides did not alternate, so machine noise between the two runs is not shared.")
    if thinking.answers > 1:
        lines.append(f"VOTES: each teacher request is a sentence's {thinking.answers} sampled answers sent together; its "
                     f"tokens are the sum of the {thinking.answers}, its latency the call's.")
    if thinking.emulated:
        lines.append("EMULATED thinking: the teacher generated a forced number of tokens; its latency and throughput "
                     "are those of a thought that long on this model.")
    return "\n".join(lines)
