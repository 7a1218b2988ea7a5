"""Stage 1: the teacher labels every sentence, crash-safely, with retries for unreadable answers.

Each finished sentence is appended (and fsynced) to the sidecar, then to the training file, as its batch completes.
Re-running the same command resumes: finished sentences are skipped, a line cut by a kill is dropped and redone,
and the training file is rebuilt from the sidecar. A sentence whose answer stays unreadable after the retries goes
to the sidecar as "unparseable" (and into the summary), never into the training file and never silently away;
``retry_unparseable`` redoes those. A sentence whose prompt does not fit the teacher's context is "too_long": counted
and listed, never generated. A repeated sentence is labelled once (duplicates.py).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from tqdm import tqdm

from ..data import JsonlAppender, read_sentences
from ..duplicates import first_occurrences
from ..engines.base import Engine, Generation, GenerationParams
from ..task import ANSWER_PREFIX, UNPARSEABLE, Task, strip_thinking
from ..task_source import TASK_KEY, task_entry
from . import votes
from .context_length import check_prompts
from .run_files import (
    LABELLED,
    TOO_LONG_STATUS,
    UNPARSEABLE_STATUS,
    OutputLock,
    RunFiles,
    check_output_path,
    load_sidecar,
    prepare_output,
    rebuild_training_file,
    run_identity,
    sha256_file,
    training_line,
    write_json_atomic,
)
from .session import (  # noqa: F401 (refuse_changed_settings and LABEL_SETTINGS are used from here)
    LABEL_SETTINGS,
    pending_sentences,
    refuse_changed_settings,
    session_entry,
    sidecar_notes,
)
from .shards import select_shard, selected_count
from .summary import LabelingSummary, format_summary  # noqa: F401 (format_summary: imported from here too)

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
    top_k: int = 0  # 0 = off
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
    retry_unparseable: bool = False  # redo only the sentences whose record is unparseable (see _pending)
    # Sampled answers per sentence (votes.py); a sentence is written once all of them are in. 1: one answer, the
    # record as before votes existed.
    num_samples: int = 1


def run_labeling(
    config: LabelingConfig, task: Task, make_engine: Callable[[], Engine], *, progress: bool = True,
    context_tokens: Callable[[], int | None] | None = None, observer=None,
) -> LabelingSummary:
    """Label the selected sentences not yet in the output; the engine is built only if there is work.

    ``context_tokens``: the context the engine will have, known without loading it (the model's config, or
    --max_model_len); asked only when a sentence was recorded too_long, which is redone when the context grew.
    ``observer``: told what happens (``labeling.tracking.LabelingTracker``, the wandb run): ``started(header)``,
    ``generation_started()``, ``progress(summary, finished_records)`` after each batch is on disk, and
    ``finished(summary, files)`` once the output is complete.
    """
    check_output_path(config.output_file, "--output_file")
    sentences = read_sentences(config.input_file)
    selection = select_shard(
        range(selected_count(len(sentences.texts), config.max_samples)), config.shard_index, config.num_shards
    )
    firsts = first_occurrences(sentences.texts)
    distinct = [index for index in selection if firsts[index] == index]  # a repeat reuses its first copy's label
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
            resumed=sum(index in records for index in distinct),
            repeats=len(selection) - len(distinct),
            num_samples=config.num_samples,
        )
        sidecar_notes(state, files, summary)
        rebuild_training_file(files, records, task.labels)  # a kill between the two appends left them out of step

        sessions = (previous or {}).get("sessions", [])
        session = session_entry(config, len(selection))
        if records:
            refuse_changed_settings(files, sessions, session)
        sessions = sessions + [session]
        header = {**identity, "input_file": str(config.input_file), "sentences": len(sentences.texts),
                  TASK_KEY: task_entry(task)}  # what training reads: the labels and the prompt
        write_json_atomic(files.header, {**header, "sessions": sessions})
        if observer:
            observer.started({**header, "sessions": sessions})

        pending, attempts_before = pending_sentences(config, distinct, records, summary, context_tokens)
        if pending:
            try:
                engine = make_engine()
                started = time.perf_counter()
                if observer:
                    observer.generation_started()
                _label(pending, sentences, task, engine, config, files, records, summary, progress,
                       attempts_before, len(sessions) - 1, observer)
            except BaseException:
                files.remove_if_empty(created)  # a model that failed to load leaves nothing to refuse a rerun
                raise
            summary.generation_s = time.perf_counter() - started
            rebuild_training_file(files, records, task.labels)  # input order, whatever order batches finished in

        session["finished"] = {"labelled": summary.labelled_now, "unparseable": summary.unparseable_now,
                               "too_long": summary.too_long_now}
        write_json_atomic(files.header, {**header, "sessions": sessions})
    for record in records.values():
        summary.agreement_total.add(record)
        if record["status"] == LABELLED:
            summary.label_counts[record["label"]] += 1
        else:
            (summary.unparseable if record["status"] == UNPARSEABLE_STATUS else summary.too_long).append(record)
    summary.unparseable.sort(key=lambda record: record["index"])
    summary.too_long.sort(key=lambda record: record["index"])
    if observer:
        observer.finished(summary, files)
    return summary


def generation_params(config: LabelingConfig, task: Task) -> GenerationParams:
    return GenerationParams(
        max_tokens=config.max_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=config.top_k,
        seed=config.seed,
        answer_labels=task.labels if config.constrained_answer else None,
        answer_prefix=ANSWER_PREFIX + " ",
        answer_parser=task.parse,
        score_labels=task.labels,  # every answer's label probabilities, for the sidecar and soft targets
    )


def cut_in_thought(generation: Generation) -> bool:
    """The reply stopped at max_tokens before its thought ended (no answer could follow)."""
    return generation.finish_reason == "length" and strip_thinking(generation.text) is None


def _label(pending, sentences, task, engine, config, files, records, summary, progress, attempts_before: int,
           session: int, observer=None) -> None:
    """Label ``pending``; attempt numbers (and so seeds) continue after ``attempts_before`` earlier attempts, and
    every record names its ``session`` in the run header, whose entry holds the settings it was made with."""
    base_params = generation_params(config, task)
    samples = config.num_samples
    summary.cut_thought_sampling = config.cut_thought_sampling
    bar = tqdm(total=len(pending), desc="Labelling", unit="sentence", disable=not progress, dynamic_ncols=True)
    with JsonlAppender(files.sidecar) as sidecar, JsonlAppender(files.training) as training, bar:
        writer = _Writer(sidecar, training, records, summary, bar, session, task.labels, observer)
        check = check_prompts(engine, task, {index: sentences.texts[index] for index in pending}, base_params,
                              config.max_tokens)
        writer.write([_too_long_record(index, sentences, tokens, check)
                      for index, tokens in sorted(check.too_long.items())])
        pending = [index for index in pending if index not in check.too_long]
        chunk = config.chunk_size or len(pending) or 1
        for start in range(0, len(pending), chunk):
            # One request per sample of each sentence, a sentence's samples side by side (one batch, one prefix).
            waiting = [(index, sample) for index in pending[start : start + chunk] for sample in range(samples)]
            collector = _Samples(samples, writer, task.labels)
            cut: set[tuple[int, int]] = set()  # samples whose thought ran into max_tokens: retried with
            # cut_thought_sampling
            for try_number in range(1, config.max_retries + 2):
                attempt = attempts_before + try_number
                # A new seed per attempt: a retry that samples exactly as before would fail exactly as before.
                params = replace(base_params, seed=None if config.seed is None else config.seed + attempt - 1)
                last = try_number == config.max_retries + 1
                groups = [(waiting, params)]
                if config.cut_thought_sampling is not None:
                    groups = [([index for index in waiting if index not in cut], params),
                              ([index for index in waiting if index in cut],
                               replace(params, **asdict(config.cut_thought_sampling)))]
                retry: list[int] = []
                for group, group_params in groups:
                    if group:
                        retry += _attempt(engine, group_params, group, attempt, last, sentences, task, collector,
                                          cut, retried=try_number > 1)
                waiting = sorted(retry)
                if not waiting:
                    break


def _attempt(engine, params, waiting, attempt, last, sentences, task, collector, cut, retried: bool) -> list:
    """One engine pass over the waiting ``(sentence, sample)`` pairs; returns those to retry (none on the last
    attempt), and adds those whose thought was cut by max_tokens to ``cut``."""
    failed: list[int] = []
    handled: set[int] = set()
    sampling = {"temperature": params.temperature, "top_p": params.top_p, "top_k": params.top_k}

    def on_batch(positions, generations):
        finished = []
        for position, generation in zip(positions, generations, strict=True):
            handled.add(position)
            collector.summary.generations_now += 1
            collector.summary.scoring.add(generation)
            if cut_in_thought(generation):
                collector.summary.cut_thoughts_now += 1
                cut.add(waiting[position])
            label = task.parse(generation.text)
            if label == UNPARSEABLE and not last:
                failed.append(waiting[position])
            else:
                index, sample = waiting[position]
                record = _record(index, sentences, label, generation, attempt)
                finished.append((sample, {**record, "sampling": sampling, "max_tokens": params.max_tokens}, retried))
        collector.add(finished)

    chats = [task.teacher_messages(sentences.texts[index]) for index, _ in waiting]
    if params.seed is not None:
        params = replace(params, request_seeds=tuple(sample_seed(params.seed, index, sample)
                                                     for index, sample in waiting))
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


def sample_seed(seed: int, index: int, sample: int) -> int:
    """The seed of one sample of a sentence: sample 0 is the sentence's own seed (what one answer samples with), and
    every further sample has its own, fixed by the run's seed, the sentence's index and the sample number."""
    if sample == 0:
        return sentence_seed(seed, index)
    digest = hashlib.blake2b(f"{seed}:{index}:{sample}".encode(), digest_size=8).digest()
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
        "label_probabilities": generation.label_probabilities,
    }


def _too_long_record(index: int, sentences, prompt_tokens: int, check) -> dict:
    return {
        "index": index,
        "line": sentences.line_numbers[index],
        "text": sentences.texts[index],
        "label": None,
        "status": TOO_LONG_STATUS,
        "prompt_tokens": prompt_tokens,
        "reply_room": check.reply_room,
        "context_tokens": check.context_tokens,
    }


class _Samples:
    """Holds a sentence's samples until all K are in, then writes its one record (votes.combine): a kill before that
    leaves nothing of the sentence on disk, so a resume redoes it whole, and never a finished one. With K = 1 each
    answer is the record and is written at once."""

    def __init__(self, samples: int, writer, labels: tuple[str, ...]):
        self.samples, self.writer, self.labels = samples, writer, labels
        self.summary = writer.summary
        self.partial: dict[int, dict[int, tuple[dict, bool]]] = {}  # sentence -> sample -> (record, retried)

    def add(self, finished: list[tuple[int, dict, bool]]) -> None:
        if self.samples == 1:
            self.summary.retried_now += sum(retried for _, _, retried in finished)
            self.writer.write([record for _, record, _ in finished])
            return
        complete = []
        for sample, record, retried in finished:
            got = self.partial.setdefault(record["index"], {})
            got[sample] = (record, retried)
            if len(got) == self.samples:
                del self.partial[record["index"]]
                self.summary.retried_now += any(got[number][1] for number in range(self.samples))
                complete.append(votes.combine([got[number][0] for number in range(self.samples)], self.labels))
        self.writer.write(complete)


class _Writer:
    def __init__(self, sidecar: JsonlAppender, training: JsonlAppender, records: dict, summary, bar, session: int,
                 labels: tuple[str, ...], observer=None):
        self.sidecar, self.training, self.records, self.summary, self.bar = sidecar, training, records, summary, bar
        self.session, self.labels, self.observer = session, labels, observer

    def write(self, finished: list[dict]) -> None:
        if not finished:
            return
        finished = [{**record, "session": self.session} for record in finished]
        # Sidecar first: it is the source of truth, and the training file is rebuilt from it on the next start.
        self.sidecar.write(finished)
        self.training.write([training_line(r, self.labels) for r in finished if r["status"] == LABELLED])
        summary = self.summary
        for record in finished:
            self.records[record["index"]] = record
            if record["status"] == TOO_LONG_STATUS:
                summary.too_long_now += 1
                continue
            if record["status"] == LABELLED:
                summary.labelled_now += 1
            else:
                summary.unparseable_now += 1
            summary.agreement.add(record)
            for answer in votes.answers(record):  # K answers for a sentence with K samples: K times the tokens
                summary.finish_reasons[answer["finish_reason"]] += 1
                summary.prompt_tokens.append(answer["prompt_tokens"])
                summary.completion_tokens.append(answer["completion_tokens"])
                if answer["cached_prompt_tokens"] is not None:
                    summary.cached_tokens.append(answer["cached_prompt_tokens"])
        self.bar.update(len(finished))
        if self.observer:  # after the records are on disk
            self.observer.progress(summary, finished)
