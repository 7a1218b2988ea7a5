"""A cascade: the student answers, and the sentences it is unsure of go to the teacher.

A sentence whose student probability is below the threshold P takes the teacher's label (create_data.py's output,
``--teacher_file``); every other sentence keeps the student's. A sentence below P *without* a teacher label cannot
be deferred: it keeps the student's answer, is graded as such, and is counted apart ("below P, no teacher label").

Cost is counted in tokens per request, prompt + answer: the student's from its own requests, the teacher's from
create_data.py's ``<output>.meta.jsonl`` sidecar (``prompt_distill.evaluation.distillation.teacher_tokens``). A cascade request
always costs the student's tokens, and a deferred one the teacher's on top.

``--target_accuracy A`` picks the smallest deferral whose cascade accuracy reaches A **on the same sentences it is
then reported on**: the accuracy shown is optimistic, and the report says so, naming the P it picked.

Pure arithmetic on prediction dicts; nothing here loads a model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import PromptDistillError
from .distillation import mean_or_none, request_tokens, sidecar_path, teacher_tokens


class CascadeError(PromptDistillError, ValueError):
    pass


@dataclass(frozen=True)
class Row:
    probability: float  # the student's probability of its label
    student: str
    teacher: str | None  # None: no teacher label, cannot be deferred
    truth: str
    student_tokens: int | None = None
    teacher_tokens: int | None = None


def _final(row: Row, threshold: float) -> str:
    return row.teacher if row.probability < threshold and row.teacher is not None else row.student


def cascade_at(rows: Sequence[Row], threshold: float) -> dict:
    """The cascade's numbers when every sentence with probability < ``threshold`` and a teacher label is deferred."""
    if not rows:
        raise CascadeError("No sentences to run the cascade on.")
    total = len(rows)
    below = [row for row in rows if row.probability < threshold]
    deferred = [row for row in below if row.teacher is not None]
    correct = sum(_final(row, threshold) == row.truth for row in rows)
    with_teacher = [row for row in rows if row.teacher is not None]
    known_teacher_tokens = [row.teacher_tokens for row in rows if row.teacher_tokens is not None]
    student_only = mean_or_none([row.student_tokens for row in rows])
    deferred_teacher = [row.teacher_tokens for row in deferred]
    cascade_tokens = None
    if student_only is not None and all(count is not None for count in deferred_teacher):
        cascade_tokens = student_only + sum(deferred_teacher) / total
    return {
        "threshold": threshold,
        "sentences": total,
        "deferred": len(deferred),
        "deferred_share": len(deferred) / total,
        "below_without_teacher": len(below) - len(deferred),
        "correct": correct,
        "accuracy": correct / total,
        "student_accuracy": sum(row.student == row.truth for row in rows) / total,
        "with_teacher": len(with_teacher),
        "teacher_accuracy": (sum(row.teacher == row.truth for row in with_teacher) / len(with_teacher)
                             if with_teacher else None),
        "tokens_per_request": {
            "student_only": student_only,
            # Over the sentences whose teacher request is in the sidecar (teacher_tokens_known of them).
            "teacher_only": sum(known_teacher_tokens) / len(known_teacher_tokens) if known_teacher_tokens else None,
            "cascade": cascade_tokens,
        },
        "teacher_tokens_known": len(known_teacher_tokens),
    }


def candidate_thresholds(rows: Sequence[Row]) -> list[float]:
    """Every threshold that defers a different set, fewest deferred first: each distinct probability (deferring
    those strictly below it), then one just above the highest (deferring every sentence with a teacher label)."""
    values = sorted({row.probability for row in rows})
    return [*values, math.nextafter(values[-1], math.inf)]


def pick_threshold(rows: Sequence[Row], target_accuracy: float) -> tuple[dict, bool]:
    """The cascade with the fewest deferrals whose accuracy reaches ``target_accuracy``, and True; when none does,
    the most accurate one (fewest deferrals among equals) and False."""
    if not rows:
        raise CascadeError("No sentences to run the cascade on.")
    thresholds = candidate_thresholds(rows)
    ranked = sorted(rows, key=lambda row: row.probability)
    correct = sum(row.student == row.truth for row in rows)  # at the lowest threshold nothing is deferred
    best_threshold, best_correct = thresholds[0], correct
    position = 0
    for threshold in thresholds:
        while position < len(ranked) and ranked[position].probability < threshold:
            row = ranked[position]
            if row.teacher is not None:  # deferred from now on: the teacher's label replaces the student's
                correct += (row.teacher == row.truth) - (row.student == row.truth)
            position += 1
        if correct / len(rows) >= target_accuracy:
            return cascade_at(rows, threshold), True
        if correct > best_correct:
            best_threshold, best_correct = threshold, correct
    return cascade_at(rows, best_threshold), False


def check_settings(defer_below: float | None, target_accuracy: float | None) -> None:
    if defer_below is not None and target_accuracy is not None:
        raise CascadeError("Give --defer_below or --target_accuracy, not both: --target_accuracy picks the threshold.")
    if defer_below is not None and not 0.0 <= defer_below <= 1.0:
        raise CascadeError(f"--defer_below {defer_below} must be a probability in [0, 1].")
    if target_accuracy is not None and not 0.0 < target_accuracy <= 1.0:
        raise CascadeError(f"--target_accuracy {target_accuracy} must be a fraction in (0, 1], e.g. 0.95.")


def rows_from_predictions(predictions: list[dict], reference: str, teacher_counts: dict[str, int]) -> list[Row]:
    """Saved prediction dicts (evaluate.py's results) -> cascade rows, graded against ``reference``."""
    rows = []
    for prediction in predictions:
        if prediction.get("probability") is None:
            raise CascadeError("The cascade needs the student's probability for every sentence (--answer_mode scored).")
        rows.append(Row(
            probability=prediction["probability"],
            student=prediction["predicted"],
            teacher=prediction["teacher"],
            truth=prediction["gold"] if reference == "gold" else prediction["teacher"],
            student_tokens=request_tokens(prediction),
            teacher_tokens=teacher_counts.get(prediction["text"].strip()),
        ))
    return rows


def build_cascade(predictions: list[dict], reference: str, teacher_file, defer_below: float | None = None,
                  target_accuracy: float | None = None) -> dict:
    """The results JSON's ``cascade`` entry: the settings, then ``cascade_at``'s numbers."""
    check_settings(defer_below, target_accuracy)
    counts = teacher_tokens(teacher_file)
    rows = rows_from_predictions(predictions, reference, counts)
    if target_accuracy is None:
        block, reached = cascade_at(rows, defer_below), None
    else:
        block, reached = pick_threshold(rows, target_accuracy)
    return {
        "teacher_file": str(teacher_file),
        "reference": reference,
        "defer_below": defer_below,
        "target_accuracy": target_accuracy,
        "target_reached": reached,
        "teacher_sidecar": str(sidecar_path(teacher_file)),
        "teacher_sidecar_found": bool(counts),
        **block,
    }
