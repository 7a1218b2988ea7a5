"""What the teacher knew beyond its one label: the distribution a student can be trained towards.

A sidecar record (``labeling.run._record``) may carry the teacher's ``label_probabilities`` (its probability of
every label at the answer, renormalised over the labels) and, with ``create_data.py --num_samples K`` for K > 1,
the ``votes`` of its K sampled answers. ``teacher_target`` turns either into one ``TeacherTarget``:

- votes (K > 1): the distribution is each label's share of the votes, and the confidence is the majority's share
  (the record's ``agreement``);
- otherwise the label probabilities, and the confidence is the probability of the chosen label.

A record with neither (an older sidecar, an engine that did not score the labels), or one that is not labelled,
has no target: ``None``, and training falls back to the hard label. The training file stores a target beside the
chat as ``"teacher": TeacherTarget.to_json()`` (``data.training_record``); ``TeacherTarget.from_json`` reads it
back, checked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import DataError

VOTES = "votes"
PROBABILITIES = "probabilities"
SOURCES = (VOTES, PROBABILITIES)
TEACHER_KEY = "teacher"  # the training file's key for a target
_TOLERANCE = 1e-3  # how far a stored distribution's sum may stray from 1 (JSON floats, rounding)


@dataclass(frozen=True)
class TeacherTarget:
    distribution: dict[str, float]  # every label, in the task's label order; sums to 1
    confidence: float  # distribution[label]: the agreement for votes, the label's probability otherwise
    source: str  # "votes" | "probabilities"

    def to_json(self) -> dict:
        return {"distribution": dict(self.distribution), "confidence": self.confidence, "source": self.source}

    @classmethod
    def from_json(cls, entry, labels: Sequence[str], where: str = "teacher") -> TeacherTarget:
        """A training file's ``"teacher"`` entry, checked: a DataError naming ``where`` when it is malformed."""
        if not isinstance(entry, dict):
            raise DataError(f"{where}: 'teacher' must be an object with distribution, confidence and source.")
        source = entry.get("source")
        if source not in SOURCES:
            raise DataError(f"{where}: teacher 'source' must be one of {', '.join(SOURCES)}, got {source!r}.")
        distribution = _distribution(entry.get("distribution"), labels, f"{where}: teacher 'distribution'")
        confidence = entry.get("confidence")
        if not _is_probability(confidence):
            raise DataError(f"{where}: teacher 'confidence' must be a number in [0, 1], got {confidence!r}.")
        return cls(distribution, float(confidence), source)


def teacher_target(record: dict, labels: Sequence[str]) -> TeacherTarget | None:
    """The target a labelled sidecar record gives (see the module's docstring); None where it gives none."""
    if record.get("status", "labelled") != "labelled" or record.get("label") not in labels:
        return None
    where = f"sentence {record.get('index', '?')} of the sidecar"
    votes = record.get("votes")
    if isinstance(votes, dict) and votes and (len(record.get("samples") or ()) or sum(votes.values())) > 1:
        counts = {label: votes.get(label, 0) for label in labels}
        unknown = sorted(set(votes) - set(labels))
        if unknown:
            raise DataError(f"{where}: votes for {unknown}, which are not labels ({', '.join(labels)}).")
        total = sum(counts.values())
        distribution = {label: count / total for label, count in counts.items()}
        return TeacherTarget(distribution, distribution[record["label"]], VOTES)
    probabilities = record.get("label_probabilities")
    if probabilities is None:
        return None
    distribution = _distribution(probabilities, labels, f"{where}: 'label_probabilities'")
    return TeacherTarget(distribution, distribution[record["label"]], PROBABILITIES)


def _is_probability(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and 0.0 <= value <= 1.0)


def _distribution(values, labels: Sequence[str], what: str) -> dict[str, float]:
    """``values`` as a distribution over every label in label order (a missing label is 0), renormalised."""
    if not isinstance(values, dict):
        raise DataError(f"{what} must be an object {{label: probability}}.")
    unknown = sorted(set(values) - set(labels))
    if unknown:
        raise DataError(f"{what} names {unknown}, which are not labels ({', '.join(labels)}).")
    bad = {label: value for label, value in values.items() if not _is_probability(value)}
    if bad:
        raise DataError(f"{what}: {bad} are not probabilities in [0, 1].")
    total = sum(values.values())
    if abs(total - 1.0) > _TOLERANCE:
        raise DataError(f"{what} sums to {total:.4f}, not 1.")
    return {label: float(values.get(label, 0.0)) / total for label in labels}
