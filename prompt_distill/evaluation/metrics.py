"""Scores for a list of predicted labels against reference labels (gold, or the teacher's).

Conventions, chosen once here so that every report and test agrees:

* A prediction the parser could not read is ``UNPARSEABLE``. It counts as wrong, lowers the recall of its gold
  label, and is nobody's precision. The confusion matrix shows it in a ``?`` column.
* Precision of a label that was never predicted is 0 (there is nothing right about it), as is F1 when precision
  and recall are both 0.
* Macro-F1 averages over the labels that occur in the references or among the parsed predictions (the usual
  convention): a label absent from both says nothing about the model and is left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ..task import UNPARSEABLE

UNPARSEABLE_COLUMN = "?"


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _check_lengths(references: Sequence[str], predictions: Sequence[str]) -> None:
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions.")


def accuracy(references: Sequence[str], predictions: Sequence[str]) -> float:
    """Fraction of exact matches; an unparseable prediction never matches."""
    _check_lengths(references, predictions)
    correct = sum(ref == pred and pred != UNPARSEABLE for ref, pred in zip(references, predictions, strict=True))
    return _ratio(correct, len(references))


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


def confusion_matrix(references: Sequence[str], predictions: Sequence[str], labels: Sequence[str]) -> ConfusionMatrix:
    """Rows are ``labels`` (every label, also those without examples); a reference outside ``labels`` is an error."""
    _check_lengths(references, predictions)
    columns = (*labels, UNPARSEABLE_COLUMN)
    counts = {row: dict.fromkeys(columns, 0) for row in labels}
    for ref, pred in zip(references, predictions, strict=True):
        if ref not in counts:
            raise ValueError(f"Reference label {ref!r} is not one of the task's labels: {', '.join(labels)}.")
        column = pred if pred in counts else UNPARSEABLE_COLUMN
        counts[ref][column] += 1
    return ConfusionMatrix(tuple(labels), columns, counts)


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
    _check_lengths(references, predictions)
    support = Counter(references)
    predicted = Counter(predictions)
    correct = Counter(ref for ref, pred in zip(references, predictions, strict=True) if ref == pred)
    stats = []
    for label in labels:
        precision = _ratio(correct[label], predicted[label])
        recall = _ratio(correct[label], support[label])
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        stats.append(
            LabelStats(label, support[label], correct[label], predicted[label], recall, precision, recall, f1)
        )
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
    correct = sum(ref == pred for ref, pred in zip(references, predictions, strict=True))
    return Scores(
        total=len(references),
        correct=correct,
        unparseable=sum(pred == UNPARSEABLE for pred in predictions),
        confusion=confusion_matrix(references, predictions, labels),
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
