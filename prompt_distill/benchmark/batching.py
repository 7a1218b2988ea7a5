"""Batched vs one-at-a-time student inference on one loaded engine, on the same sentences.

Both modes run on the same engine object (only its batch size changes), alternating round by round so that a
noisy, shared machine slows both alike. Greedy answers must not depend on the batch size; the number of sentences
whose parsed label differs between the modes is reported as a check.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ..engines.base import GenerationParams
from ..task import Task

logger = logging.getLogger(__name__)


@dataclass
class ModeResult:
    batch_size: int
    seconds: list[float]  # one entry per round
    labels: list[str]  # parsed answers of the last round

    @property
    def samples_per_second(self) -> float:
        """Over all rounds: total samples / total time."""
        return len(self.labels) * len(self.seconds) / sum(self.seconds)


@dataclass
class BatchingResult:
    one_at_a_time: ModeResult
    batched: ModeResult

    @property
    def speedup(self) -> float:
        return self.batched.samples_per_second / self.one_at_a_time.samples_per_second

    @property
    def differing_answers(self) -> int:
        return sum(a != b for a, b in zip(self.one_at_a_time.labels, self.batched.labels, strict=True))


def _timed_run(engine, chats, params: GenerationParams, task: Task, batch_size: int) -> tuple[float, list[str]]:
    engine.batch_size = batch_size
    started = time.perf_counter()
    generations = engine.generate(chats, params)
    seconds = time.perf_counter() - started
    return seconds, [task.parse(generation.text) for generation in generations]


def measure_batching(engine, texts: list[str], task: Task, params: GenerationParams, batch_size: int,
                     rounds: int = 1, *, framing: str) -> BatchingResult:
    """``framing``: the adapter's recorded student framing (``Student.framing``), the chat it was trained on."""
    chats = [task.student_messages(text, framing) for text in texts]
    _timed_run(engine, chats[:2], params, task, 2)  # warm-up: first-call allocations are not part of either mode
    single = ModeResult(1, [], [])
    batched = ModeResult(batch_size, [], [])
    for round_number in range(1, rounds + 1):
        for mode in (single, batched):
            seconds, mode.labels = _timed_run(engine, chats, params, task, mode.batch_size)
            mode.seconds.append(seconds)
            logger.info(f"[bench] round {round_number}/{rounds}: batch size {mode.batch_size:>3}: {seconds:7.2f} s "
                        f"({len(texts) / seconds:.2f} samples/s)")
    return BatchingResult(single, batched)


def format_result(result: BatchingResult, samples: int, describe: str) -> str:
    one, many = result.one_at_a_time, result.batched
    return "\n".join([
        "=" * 72,
        f"STUDENT INFERENCE, BATCHED VS ONE AT A TIME ({describe})",
        "=" * 72,
        f"{'mode':<28}{'samples/s':>12}{'seconds/round':>16}",
        f"{'one at a time (batch 1)':<28}{one.samples_per_second:>12.2f}{sum(one.seconds) / len(one.seconds):>16.2f}",
        f"{f'batched (batch {many.batch_size})':<28}{many.samples_per_second:>12.2f}"
        f"{sum(many.seconds) / len(many.seconds):>16.2f}",
        f"speed-up: {result.speedup:.2f}x over {samples} sentences x {len(one.seconds)} round(s)",
        f"answers that differ between the modes: {result.differing_answers} of {samples}",
    ])
