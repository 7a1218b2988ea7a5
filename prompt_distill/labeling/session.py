"""What one labelling session does on an existing output: the settings it must share with the run, which sentences
it labels (new ones, or only the unparseable ones with --retry_unparseable, or too_long ones whose context grew),
and the notes it prints about the sidecar it found."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone

from .run_files import TOO_LONG_STATUS, UNPARSEABLE_STATUS, OutputMismatchError, RunFiles


def sidecar_notes(state, files: RunFiles, summary) -> None:
    if state.dropped_tail:
        summary.notes.append(f"{files.sidecar}: dropped a last line cut off by a crash; that sentence is redone.")
    if state.superseded:
        summary.notes.append(f"{files.sidecar}: {state.superseded} earlier records were redone later (the last "
                             "record of a sentence counts; the earlier ones are kept as history).")
    if state.repeat_records:
        summary.notes.append(f"{files.sidecar}: ignored {state.repeat_records} records of repeated sentences (an "
                             "older version labelled every copy; now a sentence is labelled once).")


def pending_sentences(config, distinct: list[int], records: dict, summary, context_tokens):
    """The sentences this session labels, and the most attempts any of them already had (a retry's attempt numbers,
    and so its seeds, continue after those).

    A plain run (or resume) labels the sentences without a record. --retry_unparseable labels only those whose
    record is unparseable. A too_long sentence is finished, unless the context has grown since it was recorded.
    """
    if config.retry_unparseable:
        pending = [index for index in distinct if records.get(index, {}).get("status") == UNPARSEABLE_STATUS]
        unfinished = sum(index not in records for index in distinct)
        if unfinished:
            summary.notes.append(f"{unfinished} selected sentences are not finished yet: run without "
                                 "--retry_unparseable to label them with the run's own settings.")
    else:
        pending = [index for index in distinct if index not in records]
    too_long = [index for index in distinct if records.get(index, {}).get("status") == TOO_LONG_STATUS]
    context = context_tokens() if too_long and context_tokens is not None else None
    if context is not None:
        pending = sorted(pending + [index for index in too_long if records[index]["context_tokens"] < context])
    attempts_before = max((records[index].get("attempts", 0) for index in pending if index in records), default=0)
    return pending, attempts_before


# Settings that change what a label is drawn from: one output holds labels drawn one way (flag names for the error).
LABEL_SETTINGS = {"backend": "--backend", "temperature": "--temperature", "top_p": "--top_p", "top_k": "--top_k",
                  "max_tokens": "--max_tokens", "seed": "--seed", "constrained_answer": "--constrained_answer",
                  "cut_thought_sampling": "--cut_thought_sampling", "num_samples": "--num_samples"}

# The value a setting had before the run header recorded it: an output labelled before --num_samples existed holds
# one answer per sentence.
SETTING_DEFAULTS = {"num_samples": 1}


# What --retry_unparseable may not change either: the kind of answer a label is (scored or generated, by which
# engine, one answer or the majority of how many). Its sampling flags may change (more --max_tokens for a cut thought, another --seed or --temperature):
# each retried record names its session, whose settings the run header keeps.
RETRY_FIXED_SETTINGS = ("backend", "constrained_answer", "num_samples")


def refuse_changed_settings(files: RunFiles, sessions: list[dict], session: dict) -> None:
    """A resume with other sampling settings would mix two kinds of labels in one training file: refuse it.

    A resume is compared with the last session that was not a --retry_unparseable one (a retry's own settings do
    not become the run's); a retry only on RETRY_FIXED_SETTINGS."""
    differences = []
    retrying = session.get("retry_unparseable", False)
    regular = [earlier for earlier in sessions if not earlier.get("retry_unparseable")]
    for key, flag in LABEL_SETTINGS.items():
        if retrying and key not in RETRY_FIXED_SETTINGS:
            continue
        recorded = [earlier[key] if key in earlier else SETTING_DEFAULTS[key]  # older headers lack newer keys
                    for earlier in regular if key in earlier or key in SETTING_DEFAULTS]
        if recorded and recorded[-1] != session[key]:
            differences.append(f"{key} ({flag}): on disk {recorded[-1]!r}, now {session[key]!r}")
    if differences:
        raise OutputMismatchError(
            f"{files.training} was labelled with other settings, and resuming would mix the two:\n  "
            + "\n  ".join(differences)
            + ("\n--retry_unparseable may change the sampling flags, not these." if retrying else
           "\nPass the same flags to resume, --overwrite to start again, or choose another --output_file.")
        )


def session_entry(config, selected: int) -> dict:
    return {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "backend": config.backend,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "top_k": config.top_k,
        "max_tokens": config.max_tokens,
        "max_retries": config.max_retries,
        "seed": config.seed,
        "constrained_answer": config.constrained_answer,
        "cut_thought_sampling": None if config.cut_thought_sampling is None else asdict(config.cut_thought_sampling),
        "max_samples": config.max_samples,
        "retry_unparseable": config.retry_unparseable,
        "selected": selected,
        "num_samples": config.num_samples,
    }
