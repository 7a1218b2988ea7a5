"""Scores for a list of predicted labels against reference labels (gold, or the teacher's).

Conventions, chosen once here so that every report and test agrees:

* A prediction the parser could not read is ``UNPARSEABLE``. It counts as wrong, lowers the recall of its gold
  label, and is nobody's precision. The confusion matrix shows it in a ``?`` column.
* Precision of a label that was never predicted is 0 (there is nothing right about it), as is F1 when precision
  and recall are both 0.
* Macro-F1 averages over the labels that occur in the references or among the parsed predictions (the usual
  convention): a label absent from both says nothing about the model and is left out.

The counts, precision, recall and F1 come from scikit-learn, with the unparseable answer as one more label;
only what it has no function for (agreement between two label lists, teacher fidelity) is written here.
tests/evaluation/test_metrics_golden.py holds the numbers of the earlier hand-written version: they are equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sklearn import metrics as sklearn_metrics

from ..task import UNPARSEABLE

UNPARSEABLE_COLUMN = "?"


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _check_lengths(references: Sequence[str], predictions: Sequence[str]) -> None:
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions.")


def accuracy(references: Sequence[str], predictions: Sequence[str]) -> float:
    """Fraction of exact matches; an unparseable prediction never matches."""
    return agreement(references, predictions).rate


@dataclass(frozen=True)
class Agreement:
    """How often two label lists give the same, readable label."""

    matches: int
    total: int

    @property
    def rate(self) -> float:
        return _ratio(self.matches, self.total)


def agreement(first: Sequence[str], second: Sequence[str]) -> Agreement:
    _check_lengths(first, second)
    matches = sum(a == b and a != UNPARSEABLE for a, b in zip(first, second, strict=True))
    return Agreement(matches, len(first))


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of (reference row, predicted column); the last column, ``?``, holds unparseable predictions."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    counts: dict[str, dict[str, int]]

    def as_array(self) -> list[list[int]]:
        return [[self.counts[row][column] for column in self.columns] for row in self.rows]

    def row_total(self, row: str) -> int:
        return sum(self.counts[row].values())


def _counts(references: Sequence[str], predictions: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """scikit-learn's confusion matrix over ``labels`` plus UNPARSEABLE (last row and column; the row stays 0).

    A prediction outside ``labels`` goes to the last column; a reference outside them is an error (scikit-learn
    would silently drop it). scikit-learn refuses empty input, which simply counts nothing here.
    """
    _check_lengths(references, predictions)
    known = set(labels)
    for ref in references:
        if ref not in known:
            raise ValueError(f"Reference label {ref!r} is not one of the task's labels: {', '.join(labels)}.")
    if not references:
        return np.zeros((len(labels) + 1, len(labels) + 1), dtype=np.int64)
    columns = [pred if pred in known else UNPARSEABLE for pred in predictions]
    return sklearn_metrics.confusion_matrix(references, columns, labels=[*labels, UNPARSEABLE])


def confusion_matrix(references: Sequence[str], predictions: Sequence[str], labels: Sequence[str]) -> ConfusionMatrix:
    """Rows are ``labels`` (every label, also those without examples); a reference outside ``labels`` is an error."""
    counts = _counts(references, predictions, labels)
    columns = (*labels, UNPARSEABLE_COLUMN)
    table = {row: {column: int(counts[i, j]) for j, column in enumerate(columns)} for i, row in enumerate(labels)}
    return ConfusionMatrix(tuple(labels), columns, table)


@dataclass(frozen=True)
class LabelStats:
    label: str
    support: int  # references with this label
    correct: int
    predicted: int  # predictions of this label, right or wrong
    accuracy: float  # correct / support: the reference report's per-label accuracy, which is recall
    precision: float
    recall: float
    f1: float

    def to_dict(self) -> dict:
        return asdict(self)


def label_stats(references: Sequence[str], predictions: Sequence[str], labels: Sequence[str]) -> list[LabelStats]:
    """One entry per label, in ``labels`` order."""
    counts = _counts(references, predictions, labels)
    support, predicted, correct = counts.sum(axis=1), counts.sum(axis=0), counts.diagonal()
    if references:
        # zero_division=0: a label never predicted has precision 0 (and recall 0 one without references)
        precision, recall, _, _ = sklearn_metrics.precision_recall_fscore_support(
            references, predictions, labels=list(labels), zero_division=0.0
        )
    else:
        precision = recall = np.zeros(len(labels))
    stats = []
    for i, label in enumerate(labels):
        p, r = float(precision[i]), float(recall[i])
        # Not scikit-learn's F1: it computes 2tp / (support + predicted), the same number rounded once instead of
        # three times, so it differs from the F1 this project always wrote in the last bit (0.7 against
        # 0.7000000000000001 in golden_metrics/random_triage_3.json), which would change the results JSON.
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        stats.append(LabelStats(label, int(support[i]), int(correct[i]), int(predicted[i]), r, p, r, f1))
    return stats


def macro_f1(stats: Sequence[LabelStats]) -> float:
    counted = [entry.f1 for entry in stats if entry.support or entry.predicted]
    return sum(counted) / len(counted) if counted else 0.0


@dataclass(frozen=True)
class Scores:
    """Everything the report prints, computed from one pair of label lists."""

    total: int
    correct: int
    unparseable: int
    confusion: ConfusionMatrix
    per_label: list[LabelStats]

    @property
    def parsed(self) -> int:
        return self.total - self.unparseable

    @property
    def parse_rate(self) -> float:
        return _ratio(self.parsed, self.total)

    @property
    def accuracy(self) -> float:
        return _ratio(self.correct, self.total)

    @property
    def macro_f1(self) -> float:
        return macro_f1(self.per_label)

    def worst_first(self) -> list[LabelStats]:
        """Labels with references, lowest accuracy first; ties by more errors, then by name (stable output)."""
        present = [entry for entry in self.per_label if entry.support]
        return sorted(present, key=lambda entry: (entry.accuracy, -(entry.support - entry.correct), entry.label))

    def summary(self) -> dict:
        return {
            "total": self.total,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "parsed": self.parsed,
            "unparseable": self.unparseable,
            "parse_rate": self.parse_rate,
            "macro_f1": self.macro_f1,
        }


def score(references: Sequence[str], predictions: Sequence[str], labels: Sequence[str]) -> Scores:
    _check_lengths(references, predictions)
    unknown = sorted({pred for pred in predictions if pred != UNPARSEABLE and pred not in labels})
    if unknown:
        raise ValueError(f"Predictions {unknown} are neither labels nor {UNPARSEABLE!r}; parse them with Task.parse.")
    confusion = confusion_matrix(references, predictions, labels)  # also rejects a reference outside labels
    correct = int(sklearn_metrics.accuracy_score(references, predictions, normalize=False)) if references else 0
    return Scores(
        total=len(references),
        correct=correct,
        unparseable=sum(pred == UNPARSEABLE for pred in predictions),
        confusion=confusion,
        per_label=label_stats(references, predictions, labels),
    )


def error_examples(
    texts: Sequence[str],
    references: Sequence[str],
    predictions: Sequence[str],
    raw_outputs: Sequence[str],
    limit: int,
) -> dict[str, list[dict]]:
    """Up to ``limit`` wrong predictions per reference label, in input order (for the report and the JSON)."""
    examples: dict[str, list[dict]] = {}
    for text, ref, pred, raw in zip(texts, references, predictions, raw_outputs, strict=True):
        if ref == pred:
            continue
        bucket = examples.setdefault(ref, [])
        if len(bucket) < limit:
            bucket.append({"text": text, "reference": ref, "predicted": pred, "raw": raw})
    return examples


@dataclass(frozen=True)
class Fidelity:
    """Student vs teacher, teacher vs gold, student vs gold, all on the sentences that have a teacher label."""

    evaluated: int  # sentences evaluated
    with_teacher: int  # of those, how many have a teacher label
    student_vs_teacher: Agreement
    teacher_vs_gold: Agreement | None  # None without gold labels
    student_vs_gold: Agreement | None

    def to_dict(self) -> dict:
        def entry(value: Agreement | None):
            return None if value is None else {"matches": value.matches, "total": value.total, "rate": value.rate}

        return {
            "evaluated": self.evaluated,
            "with_teacher_label": self.with_teacher,
            "student_vs_teacher": entry(self.student_vs_teacher),
            "teacher_vs_gold": entry(self.teacher_vs_gold),
            "student_vs_gold": entry(self.student_vs_gold),
        }


def fidelity(
    student: Sequence[str], teacher: Sequence[str | None], gold: Sequence[str] | None = None
) -> Fidelity:
    """``teacher[i]`` is None where the teacher gave no label (unparseable there, or the sentence is not in its file)."""
    _check_lengths(student, teacher)
    if gold is not None:
        _check_lengths(student, gold)
    kept = [i for i, label in enumerate(teacher) if label is not None]
    student_kept = [student[i] for i in kept]
    teacher_kept = [teacher[i] for i in kept]
    gold_kept = None if gold is None else [gold[i] for i in kept]
    return Fidelity(
        evaluated=len(student),
        with_teacher=len(kept),
        student_vs_teacher=agreement(student_kept, teacher_kept),
        teacher_vs_gold=None if gold_kept is None else agreement(teacher_kept, gold_kept),
        student_vs_gold=None if gold_kept is None else agreement(student_kept, gold_kept),
    )
