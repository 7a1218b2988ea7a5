"""K sampled answers per sentence (``--num_samples K``): one sidecar record from the K, and what they agree on.

Each sample is the teacher's answer to the same chat with its own seed (``run.sample_seed``); a sample whose answer
cannot be read is retried like a single answer (``--max_retries``) and, if it stays unreadable, is kept as an
``unparseable`` sample that votes for nothing. The sentence's record (``combine``) keeps:

- ``samples``: every sample's ``label``, ``label_probabilities``, ``finish_reason``, ``completion_tokens``,
  ``cached_prompt_tokens`` and ``attempts``, in sample order;
- ``votes``: how many samples chose each label (labels without a vote left out, label order);
- ``label``: the majority; a tie goes to the label with the higher mean probability over the samples, then to the
  earlier label of the task;
- ``agreement``: the majority's votes / K (an unreadable sample counts against it);
- ``label_probabilities``: the mean of the samples' (null when any sample has none);
- the rest (``output``, ``reasoning``, ``finish_reason``, ``prompt_tokens``, ``completion_tokens``, ``latency_s``
  ...) from the first sample that chose the majority label: a record read as one answer reads a real one. The cost of
  all K is in ``samples`` (``answers`` lists them for the accounting).

The sentence is ``unparseable`` only when no sample could be read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..task import UNPARSEABLE
from .run_files import LABELLED, UNPARSEABLE_STATUS

SAMPLE_KEYS = ("label", "label_probabilities", "finish_reason", "completion_tokens", "cached_prompt_tokens",
               "attempts")


def combine(samples: list[dict], labels) -> dict:
    """The sentence's record from its K sample records (each as ``run._record`` makes one), in sample order."""
    votes = Counter(sample["label"] for sample in samples if sample["label"] != UNPARSEABLE)
    mean = mean_probabilities([sample.get("label_probabilities") for sample in samples], labels)
    if votes:
        top = max(votes.values())
        tied = [label for label in labels if votes.get(label) == top]
        label = max(tied, key=lambda name: (mean or {}).get(name, 0.0)) if mean else tied[0]  # max: first of equals
        shown = next(sample for sample in samples if sample["label"] == label)
    else:
        top, label, shown = 0, UNPARSEABLE, samples[0]
    return {
        **shown,
        "label": label,
        "status": LABELLED if votes else UNPARSEABLE_STATUS,
        "attempts": max(sample["attempts"] for sample in samples),
        "latency_s": max(sample["latency_s"] for sample in samples),
        "label_probabilities": mean,
        "votes": {name: votes[name] for name in labels if votes.get(name)},
        "agreement": top / len(samples),
        "samples": [{key: sample.get(key) for key in SAMPLE_KEYS} for sample in samples],
    }


def mean_probabilities(distributions: list[dict | None], labels) -> dict[str, float] | None:
    if not distributions or any(distribution is None for distribution in distributions):
        return None
    return {label: sum(distribution.get(label, 0.0) for distribution in distributions) / len(distributions)
            for label in labels}


def answers(record: dict) -> list[dict]:
    """The teacher's answers behind a record, for counting tokens and finish reasons: its samples, or itself."""
    samples = record.get("samples")
    if not samples:
        return [record]
    return [{**sample, "prompt_tokens": record["prompt_tokens"]} for sample in samples]


@dataclass
class Agreement:
    """How the K samples of the labelled sentences agreed."""

    sentences: int = 0
    unanimous: int = 0
    agreement_sum: float = 0.0
    changed: int = 0  # the majority is not the first sample's label: where one sample would have labelled otherwise

    def add(self, record: dict) -> None:
        if record.get("status") != LABELLED or len(record.get("samples") or ()) < 2:
            return
        self.sentences += 1
        self.unanimous += record["agreement"] == 1.0
        self.agreement_sum += record["agreement"]
        self.changed += record["samples"][0]["label"] != record["label"]

    @property
    def mean(self) -> float | None:
        return self.agreement_sum / self.sentences if self.sentences else None

    def describe(self) -> str:
        return (f"mean {self.mean:.3f}, unanimous {self.unanimous} of {self.sentences}; the majority differs from the "
                f"first sample in {self.changed}")
