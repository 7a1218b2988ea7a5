"""One policy for a sentence that occurs more than once, in all three stages.

A sentence's identity is its text without surrounding whitespace (what ``read_sentences`` keeps and what the
train/eval split hashes). Labelling labels it once, at its first occurrence, and its repeats reuse that label; the
training file holds each distinct sentence once; training keeps one example per sentence and refuses copies that
disagree; evaluation grades each distinct sentence once. Every stage says how many repeats it left out: a silent
repeat would weigh one sentence twice in the loss or in the accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import DataError


def sentence_key(text: str) -> str:
    return text.strip()


def first_occurrences(texts: Sequence[str]) -> list[int]:
    """For each position, the position where its sentence first occurs (itself for a first occurrence)."""
    first: dict[str, int] = {}
    return [first.setdefault(sentence_key(text), position) for position, text in enumerate(texts)]


def distinct_sentences(texts: Sequence[str], path) -> tuple[list[str], list[str]]:
    """``(each sentence once, in first-occurrence order; notes)`` for evaluation: a repeated test sentence is
    evaluated once, and the notes say how many repeats were left out."""
    firsts = first_occurrences(texts)
    kept = [text for position, text in enumerate(texts) if firsts[position] == position]
    repeats = len(texts) - len(kept)
    if not repeats:
        return kept, []
    repeated = len({firsts[position] for position in range(len(texts)) if firsts[position] != position})
    return kept, [f"{path}: {repeats} lines repeat an earlier sentence ({repeated} sentences occur more than once); "
                  "each sentence is evaluated once."]


def repeats_dropped_note(path, dropped: int) -> str | None:
    if not dropped:
        return None
    return f"{path}: {dropped} lines repeat an earlier sentence with the same label; each sentence is used once."


def distinct_examples(numbered: Sequence[tuple[int, str, str]], path) -> tuple[list[int], int]:
    """From ``(line, text, label)`` rows: the positions of the rows to keep (a sentence's first line) and the number
    of repeats dropped. Copies of a sentence with different labels are an error naming both lines."""
    first: dict[str, tuple[int, str]] = {}
    kept: list[int] = []
    for position, (line, text, label) in enumerate(numbered):
        key = sentence_key(text)
        if key not in first:
            first[key] = (line, label)
            kept.append(position)
        elif first[key][1] != label:
            raise DataError(f"{path}:{line}: the sentence {_shorten(key)!r} has two teacher labels, {first[key][1]!r} "
                            f"and {label!r} (first at {path}:{first[key][0]}); keep one label for it.")
    return kept, len(numbered) - len(kept)


def _shorten(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
