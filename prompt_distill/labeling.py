"""Stage 1: the teacher labels every sentence, crash-safely, with retries for unreadable answers.

Each finished sentence is appended (and fsynced) to the sidecar, then to the training file, as its batch completes.
Re-running the same command resumes: finished sentences are skipped, a line cut by a kill is dropped and redone,
and the training file is rebuilt from the sidecar. A sentence whose answer stays unreadable after the retries goes
to the sidecar as "unparseable" (and into the summary), never into the training file and never silently away.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone

from tqdm import tqdm

from .data import JsonlAppender, read_sentences, training_record
from .engines.base import Engine, Generation, GenerationParams
from .run_files import (
    LABELLED,
    UNPARSEABLE_STATUS,
    OutputLock,
    OutputMismatchError,
    RunFiles,
    check_output_path,
    load_sidecar,
    prepare_output,
    rebuild_training_file,
    run_identity,
    sha256_file,
    write_json_atomic,
)
from .shards import select_shard, selected_count
from .task import ANSWER_PREFIX, UNPARSEABLE, Task, strip_thinking

# Room for the teacher's thought: Qwen3 thinking models usually settle a language in a few hundred to ~2000
# tokens; 4096 leaves headroom and stops a runaway thought early (it is retried: see CUT_THOUGHT_SAMPLING).
TEACHER_MAX_TOKENS = 4096


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    top_k: int

    def describe(self) -> str:
        return f"temperature {self.temperature}, top_p {self.top_p}, top_k {self.top_k}"


# A thought cut by max_tokens is retried with this: the sampling that Qwen's model card for the thinking-2507 models
# recommends. Near-greedy decoding (the reference's 0.15) can repeat itself until max_tokens, and a retry that only
# changes the seed tends to loop again.
CUT_THOUGHT_SAMPLING = Sampling(temperature=0.6, top_p=0.95, top_k=20)


@dataclass
class LabelingConfig:
    input_file: str
    output_file: str  # the shard's own output when num_shards > 1 (shards.shard_output_path)
    model_name: str
    backend: str
    max_tokens: int
    temperature: float = 0.15
    top_p: float = 1.0
    max_retries: int = 3  # extra attempts for a sentence whose answer cannot be read
    seed: int | None = 0
    max_samples: int | None = None  # the first N sentences of the input (before sharding)
    shard_index: int = 0
    num_shards: int = 1
    constrained_answer: bool = False
    # Sampling for the retries of a sentence whose thought was cut by max_tokens; None = the run's own sampling.
    cut_thought_sampling: Sampling | None = CUT_THOUGHT_SAMPLING
    # Sentences per engine call (None: all at once). Engines already report batches as they finish (the vLLM
    # engine calls LLM.chat on slices for that), so this only matters for an engine that returns late.
    chunk_size: int | None = None
    overwrite: bool = False


@dataclass
class LabelingSummary:
    files: RunFiles
    selected: int
    blank_lines: int
    resumed: int  # already finished when this session started
    labelled_now: int = 0
    unparseable_now: int = 0
    retried_now: int = 0  # finished sentences that needed more than one attempt
    generations_now: int = 0  # engine replies this session, every attempt counted
    cut_thoughts_now: int = 0  # of those, replies cut by max_tokens inside the thought
    cut_thought_sampling: Sampling | None = None  # what their retries used (None: the run's own sampling)
    finish_reasons: Counter = field(default_factory=Counter)
    prompt_tokens: list[int] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)
    cached_tokens: list[int] = field(default_factory=list)
    generation_s: float = 0.0
    label_counts: Counter = field(default_factory=Counter)  # the whole training file
    unparseable: list[dict] = field(default_factory=list)  # the whole sidecar
    notes: list[str] = field(default_factory=list)

    @property
    def finished_now(self) -> int:
        return self.labelled_now + self.unparseable_now

    @property
    def labelled_total(self) -> int:
        return sum(self.label_counts.values())


def run_labeling(
    config: LabelingConfig, task: Task, make_engine: Callable[[], Engine], *, progress: bool = True
) -> LabelingSummary:
    """Label the selected sentences not yet in the output; the engine is built only if there is work."""
    check_output_path(config.output_file, "--output_file")
    sentences = read_sentences(config.input_file)
    selection = select_shard(
        range(selected_count(len(sentences.texts), config.max_samples)), config.shard_index, config.num_shards
    )
    files = RunFiles.for_output(config.output_file)
    identity = run_identity(
        sha256_file(config.input_file), config.model_name, task, config.shard_index, config.num_shards
    )
    created = [path for path in (files.training, files.sidecar, files.header) if not path.exists()]
    with OutputLock(files):
        previous = prepare_output(files, identity, config.overwrite)
        state = load_sidecar(files, sentences.texts)
        records = state.records
        summary = LabelingSummary(
            files=files,
            selected=len(selection),
            blank_lines=sentences.blank_lines,
            resumed=sum(index in records for index in selection),
        )
        if state.dropped_tail:
            summary.notes.append(f"{files.sidecar}: dropped a last line cut off by a crash; that sentence is redone.")
        if state.duplicates:
            summary.notes.append(f"{files.sidecar}: ignored {state.duplicates} duplicate records (first kept).")
        rebuild_training_file(files, records)  # a kill between the two appends left them out of step

        session = _session_entry(config, len(selection))
        if records:
            refuse_changed_settings(files, (previous or {}).get("sessions", []), session)
        sessions = (previous or {}).get("sessions", []) + [session]
        header = {**identity, "input_file": str(config.input_file), "sentences": len(sentences.texts)}
        write_json_atomic(files.header, {**header, "sessions": sessions})

        pending = [index for index in selection if index not in records]
        if pending:
            try:
                engine = make_engine()
                started = time.perf_counter()
                _label(pending, sentences, task, engine, config, files, records, summary, progress)
            except BaseException:
                files.remove_if_empty(created)  # a model that failed to load leaves nothing to refuse a rerun
                raise
            summary.generation_s = time.perf_counter() - started
            rebuild_training_file(files, records)  # input order, whatever order batches finished in

        session["finished"] = {"labelled": summary.labelled_now, "unparseable": summary.unparseable_now}
        write_json_atomic(files.header, {**header, "sessions": sessions})
    for record in records.values():
        if record["status"] == LABELLED:
            summary.label_counts[record["label"]] += 1
        else:
            summary.unparseable.append(record)
    summary.unparseable.sort(key=lambda record: record["index"])
    return summary


# Settings that change what a label is drawn from: one output holds labels drawn one way (flag names for the error).
LABEL_SETTINGS = {"backend": "--backend", "temperature": "--temperature", "top_p": "--top_p",
                  "max_tokens": "--max_tokens", "seed": "--seed", "constrained_answer": "--constrained_answer",
                  "cut_thought_sampling": "--cut_thought_sampling"}


def refuse_changed_settings(files: RunFiles, sessions: list[dict], session: dict) -> None:
    """A resume with other sampling settings would mix two kinds of labels in one training file: refuse it."""
    differences = []
    for key, flag in LABEL_SETTINGS.items():
        recorded = [earlier[key] for earlier in sessions if key in earlier]  # older headers lack newer keys
        if recorded and recorded[-1] != session[key]:
            differences.append(f"{key} ({flag}): on disk {recorded[-1]!r}, now {session[key]!r}")
    if differences:
        raise OutputMismatchError(
            f"{files.training} was labelled with other settings, and resuming would mix the two:\n  "
            + "\n  ".join(differences)
            + "\nPass the same flags to resume, --overwrite to start again, or choose another --output_file."
        )


def _session_entry(config: LabelingConfig, selected: int) -> dict:
    return {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "backend": config.backend,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "max_tokens": config.max_tokens,
        "max_retries": config.max_retries,
        "seed": config.seed,
        "constrained_answer": config.constrained_answer,
        "cut_thought_sampling": None if config.cut_thought_sampling is None else asdict(config.cut_thought_sampling),
        "max_samples": config.max_samples,
        "selected": selected,
    }


def generation_params(config: LabelingConfig, task: Task) -> GenerationParams:
    return GenerationParams(
        max_tokens=config.max_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        seed=config.seed,
        answer_labels=task.labels if config.constrained_answer else None,
        answer_prefix=ANSWER_PREFIX + " ",
        answer_parser=task.parse,
    )


def cut_in_thought(generation: Generation) -> bool:
    """The reply stopped at max_tokens before its thought ended (no answer could follow)."""
    return generation.finish_reason == "length" and strip_thinking(generation.text) is None


def _label(pending, sentences, task, engine, config, files, records, summary, progress) -> None:
    base_params = generation_params(config, task)
    summary.cut_thought_sampling = config.cut_thought_sampling
    bar = tqdm(total=len(pending), desc="Labelling", unit="sentence", disable=not progress, dynamic_ncols=True)
    with JsonlAppender(files.sidecar) as sidecar, JsonlAppender(files.training) as training, bar:
        writer = _Writer(sidecar, training, records, summary, bar)
        chunk = config.chunk_size or len(pending)
        for start in range(0, len(pending), chunk):
            waiting = pending[start : start + chunk]
            cut: set[int] = set()  # sentences whose thought ran into max_tokens: retried with cut_thought_sampling
            for attempt in range(1, config.max_retries + 2):
                # A new seed per attempt: a retry that samples exactly as before would fail exactly as before.
                params = replace(base_params, seed=None if config.seed is None else config.seed + attempt - 1)
                last = attempt == config.max_retries + 1
                groups = [(waiting, params)]
                if config.cut_thought_sampling is not None:
                    groups = [([index for index in waiting if index not in cut], params),
                              ([index for index in waiting if index in cut],
                               replace(params, **asdict(config.cut_thought_sampling)))]
                retry: list[int] = []
                for group, group_params in groups:
                    if group:
                        retry += _attempt(engine, group_params, group, attempt, last, sentences, task, writer, cut)
                waiting = sorted(retry)
                if not waiting:
                    break


def _attempt(engine, params, waiting, attempt, last, sentences, task, writer, cut) -> list[int]:
    """One engine pass over the waiting sentences; returns those to retry (none on the last attempt), and adds
    those whose thought was cut by max_tokens to ``cut``."""
    failed: list[int] = []
    handled: set[int] = set()
    sampling = {"temperature": params.temperature, "top_p": params.top_p, "top_k": params.top_k}

    def on_batch(positions, generations):
        finished = []
        for position, generation in zip(positions, generations, strict=True):
            handled.add(position)
            writer.summary.generations_now += 1
            if cut_in_thought(generation):
                writer.summary.cut_thoughts_now += 1
                cut.add(waiting[position])
            label = task.parse(generation.text)
            if label == UNPARSEABLE and not last:
                failed.append(waiting[position])
            else:
                record = _record(waiting[position], sentences, label, generation, attempt)
                finished.append({**record, "sampling": sampling})
        writer.write(finished)

    chats = [task.teacher_messages(sentences.texts[index]) for index in waiting]
    if params.seed is not None:
        params = replace(params, request_seeds=tuple(sentence_seed(params.seed, index) for index in waiting))
    generations = engine.generate(chats, params, on_batch=on_batch)
    unreported = [position for position in range(len(waiting)) if position not in handled]
    if unreported:  # an engine that returned results without reporting them through on_batch
        on_batch(unreported, [generations[position] for position in unreported])
    return sorted(failed)


def sentence_seed(seed: int, index: int) -> int:
    """The seed of one sentence's request: fixed by the run's seed and the sentence's index in the input.

    One seed shared by every request would give equal-length requests correlated samples, and two shards with the
    same --seed would sample alike; a seed from the index is the same whatever the batch, shard or resume.
    """
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 2**31


def _record(index: int, sentences, label: str, generation: Generation, attempt: int) -> dict:
    return {
        "index": index,
        "line": sentences.line_numbers[index],
        "text": sentences.texts[index],
        "label": label,
        "status": UNPARSEABLE_STATUS if label == UNPARSEABLE else LABELLED,
        "attempts": attempt,
        "finish_reason": generation.finish_reason,
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
        "cached_prompt_tokens": generation.cached_prompt_tokens,
        "latency_s": round(generation.latency_s, 3),
        "output": generation.text,
        "reasoning": generation.reasoning,
    }


class _Writer:
    def __init__(self, sidecar: JsonlAppender, training: JsonlAppender, records: dict, summary, bar):
        self.sidecar, self.training, self.records, self.summary, self.bar = sidecar, training, records, summary, bar

    def write(self, finished: list[dict]) -> None:
        # Sidecar first: it is the source of truth, and the training file is rebuilt from it on the next start.
        self.sidecar.write(finished)
        self.training.write([training_record(r["text"], r["label"]) for r in finished if r["status"] == LABELLED])
        summary = self.summary
        for record in finished:
            self.records[record["index"]] = record
            if record["status"] == LABELLED:
                summary.labelled_now += 1
            else:
                summary.unparseable_now += 1
            summary.retried_now += record["attempts"] > 1
            summary.finish_reasons[record["finish_reason"]] += 1
            summary.prompt_tokens.append(record["prompt_tokens"])
            summary.completion_tokens.append(record["completion_tokens"])
            if record["cached_prompt_tokens"] is not None:
                summary.cached_tokens.append(record["cached_prompt_tokens"])
        self.bar.update(len(finished))


def _mean(values: list[int]) -> str:
    return f"{sum(values) / len(values):.1f}" if values else "n/a"


def format_summary(summary: LabelingSummary) -> str:
    files = summary.files
    total = summary.labelled_total + len(summary.unparseable)
    lines = [
        "=" * 72,
        "LABELLING SUMMARY",
        "=" * 72,
        f"Selected sentences:   {summary.selected}  (blank input lines skipped: {summary.blank_lines})",
        f"Already done:         {summary.resumed}  (resumed from {files.sidecar})" if summary.resumed else None,
        f"This session:         {summary.finished_now} finished: {summary.labelled_now} labelled, "
        f"{summary.unparseable_now} unparseable, {summary.retried_now} needed a retry",
    ]
    if summary.finished_now:
        rate = summary.finished_now / summary.generation_s if summary.generation_s else float("nan")
        reasons = ", ".join(f"{reason} {count}" for reason, count in summary.finish_reasons.most_common())
        lines += [
            f"Speed:                {rate:.2f} samples/s ({summary.generation_s:.1f} s, model loading excluded)",
            f"Tokens per sample:    prompt {_mean(summary.prompt_tokens)}, completion "
            f"{_mean(summary.completion_tokens)}, prompt tokens from cache {_mean(summary.cached_tokens)}",
            f"Finish reasons:       {reasons}",
            _cut_thoughts_line(summary),
        ]
    parse_rate = f"{100 * summary.labelled_total / total:.1f}%" if total else "n/a"
    lines += [
        f"Whole output:         {summary.labelled_total} labelled, {len(summary.unparseable)} unparseable "
        f"(parse rate {parse_rate})",
        "Label distribution:   "
        + (", ".join(f"{label} {count}" for label, count in sorted(summary.label_counts.items())) or "none"),
    ]
    if summary.unparseable:
        lines.append(f"Unparseable (not in the training file; raw outputs in {files.sidecar}):")
        lines += [f"  line {record['line']}: {_shorten(record['text'])}" for record in summary.unparseable[:20]]
        if len(summary.unparseable) > 20:
            lines.append(f"  ... and {len(summary.unparseable) - 20} more")
    lines += summary.notes
    lines += [
        f"Training file:        {files.training}",
        f"Per-sample metadata:  {files.sidecar}",
        f"Run header:           {files.header}",
    ]
    return "\n".join(line for line in lines if line is not None)


def _cut_thoughts_line(summary: LabelingSummary) -> str:
    cut, total = summary.cut_thoughts_now, summary.generations_now
    line = f"Cut by max_tokens:    {cut} of {total} generations ({100 * cut / total if total else 0:.1f}%) stopped inside the thought"
    if cut:
        retried_with = summary.cut_thought_sampling.describe() if summary.cut_thought_sampling else "the run's sampling"
        line += f"; their retries used {retried_with}"
    return line


def _shorten(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."

