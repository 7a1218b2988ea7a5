"""How far the student's probabilities can be trusted: accuracy at coverage, calibration error, reliability data.

Every function takes one confidence (the probability of the chosen label, in [0, 1]) and one correct/incorrect
flag per sentence, so every number is checked on hand-made inputs without a model.

Conventions (the report and docs/evaluate.md state the same):

* **Accuracy at coverage c%**: answer only the ceil(c% x n) most confident sentences (integer arithmetic, so 70% of
  10 is 7, never 8 through float rounding; at least the share asked for is answered). Sentences tied on
  confidence across the cut have no order, so the tied group contributes its *expected* correct count under a
  random order: k places among m tied sentences of which r are correct count k x r / m. The result does not depend
  on the order of the input.
* **Expected calibration error** (Guo et al. 2017): 15 equal-width bins on [0, 1]; bin i holds the confidences in
  (i/15, (i+1)/15], right edge included, and a confidence of exactly 0 goes to the first bin. ECE = sum over bins of
  (sentences in the bin / n) x |accuracy in the bin - mean confidence in the bin|.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import PromptDistillError

COVERAGE_PERCENTS = (100, 90, 80, 70, 50)
ECE_BINS = 15


class CalibrationError(PromptDistillError, ValueError):
    pass


def _check(confidences: Sequence[float], correct: Sequence[bool]) -> None:
    if len(confidences) != len(correct):
        raise CalibrationError(f"{len(confidences)} confidences but {len(correct)} correct flags.")
    if not confidences:
        raise CalibrationError("No sentences: calibration needs at least one confidence.")
    outside = [value for value in confidences if not 0.0 <= value <= 1.0]
    if outside:
        raise CalibrationError(f"A confidence must lie in [0, 1], not {outside[0]!r}.")


def answered_count(total: int, percent: int) -> int:
    """ceil(percent% of total), in integers: the most confident sentences answered at that coverage."""
    if not 0 < percent <= 100:
        raise CalibrationError(f"Coverage must be in (0, 100] percent, not {percent}.")
    return -(-percent * total // 100)


@dataclass(frozen=True)
class CoveragePoint:
    percent: int  # coverage asked for
    answered: int  # sentences answered: ceil(percent% of n)
    total: int
    accuracy: float  # expected accuracy over the answered sentences (ties at the cut averaged)
    lowest_confidence: float  # the confidence of the least confident answered sentence

    def to_dict(self) -> dict:
        return {"percent": self.percent, "answered": self.answered, "total": self.total,
                "accuracy": self.accuracy, "lowest_confidence": self.lowest_confidence}


def accuracy_at_coverage(confidences: Sequence[float], correct: Sequence[bool], percent: int) -> CoveragePoint:
    _check(confidences, correct)
    total = len(confidences)
    answered = answered_count(total, percent)
    ranked = sorted(zip(confidences, correct, strict=True), key=lambda pair: -pair[0])
    cut = ranked[answered - 1][0]  # the lowest confidence answered
    above = [flag for value, flag in ranked if value > cut]
    tied = [flag for value, flag in ranked if value == cut]
    places = answered - len(above)  # how many of the tied sentences are answered
    expected_correct = sum(above) + places * sum(tied) / len(tied)
    return CoveragePoint(percent, answered, total, expected_correct / answered, cut)


def coverage_table(confidences: Sequence[float], correct: Sequence[bool],
                   percents: Sequence[int] = COVERAGE_PERCENTS) -> list[CoveragePoint]:
    return [accuracy_at_coverage(confidences, correct, percent) for percent in percents]


def bin_edges(bins: int = ECE_BINS) -> list[float]:
    return [index / bins for index in range(bins + 1)]


def bin_index(confidence: float, edges: Sequence[float]) -> int:
    """The bin (lower, upper] holding ``confidence``; 0 goes to the first bin."""
    return max(bisect_left(edges, confidence) - 1, 0)


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    mean_confidence: float | None  # None for an empty bin
    accuracy: float | None

    def to_dict(self) -> dict:
        return {"lower": self.lower, "upper": self.upper, "count": self.count,
                "mean_confidence": self.mean_confidence, "accuracy": self.accuracy}


def reliability_bins(confidences: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS) -> list[ReliabilityBin]:
    """Per equal-width bin: how many sentences, their mean confidence and their accuracy (the diagram's data).

    scikit-learn's ``calibration_curve(strategy="uniform")`` bins the same way (tests/evaluation/test_calibration.py
    checks it), but it returns neither the empty bins nor any bin's count, which the diagram and the ECE need, so
    using it would mean binning a second time here for the counts.
    """
    _check(confidences, correct)
    edges = bin_edges(bins)
    members: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for value, flag in zip(confidences, correct, strict=True):
        members[bin_index(value, edges)].append((value, bool(flag)))
    result = []
    for index, pairs in enumerate(members):
        count = len(pairs)
        result.append(ReliabilityBin(
            edges[index], edges[index + 1], count,
            sum(value for value, _ in pairs) / count if count else None,
            sum(flag for _, flag in pairs) / count if count else None,
        ))
    return result


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS) -> float:
    total = len(confidences)
    return sum(
        entry.count / total * abs(entry.accuracy - entry.mean_confidence)
        for entry in reliability_bins(confidences, correct, bins)
        if entry.count
    )


def confidence_summary(confidences: Sequence[float], correct: Sequence[bool]) -> dict:
    """What the results JSON holds and the report prints: the coverage table, ECE and the reliability bins."""
    _check(confidences, correct)
    return {
        "sentences": len(confidences),
        "mean_confidence": sum(confidences) / len(confidences),
        "accuracy": sum(map(bool, correct)) / len(correct),
        "coverage": [point.to_dict() for point in coverage_table(confidences, correct)],
        "ece": expected_calibration_error(confidences, correct),
        "ece_bins": ECE_BINS,
        "reliability": [entry.to_dict() for entry in reliability_bins(confidences, correct)],
    }
