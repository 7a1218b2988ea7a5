"""The distillation block: did the student, without the prompt, keep what the prompt gave the teacher?

Three labellers on the same held-out sentences, graded on gold:

* **base**: the student's base model without the prompt and without the adapter (a saved ``evaluate.py
  --no_adapter`` run, passed as ``--baseline``);
* **teacher**: the same kind of model with the long prompt (the labels in create_data.py's output, passed as
  ``--teacher_file``; its tokens come from the ``.meta.jsonl`` sidecar beside it);
* **student**: the base model with the LoRA adapter, without the prompt (the run being evaluated).

Each gets its accuracy with a 95% percentile bootstrap interval, and its mean tokens per request (prompt +
generated). The paired differences teacher - base and student - base get intervals from the same resamples
(one resample draws sentences, and all three labellers are scored on them), and
**gain kept = (student - base) / (teacher - base)**: 1 means the student kept all that the prompt added, 0 none.

Pure arithmetic on label lists: nothing here loads a model, so every number is tested on hand-made inputs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..data import DataError, iter_jsonl, read_json_object
from ..labeling.run_files import SIDECAR_SUFFIX
from ..labeling.votes import sentence_tokens
from ..task import UNPARSEABLE, Task
from .outputs import RESULTS_FORMAT

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
NAMES = ("base", "teacher", "student")


class DistillationError(DataError):
    pass


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def to_dict(self) -> dict:
        return {"low": self.low, "high": self.high}


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default), on an already sorted list."""
    if not sorted_values:
        raise ValueError("percentile of an empty list")
    position = fraction * (len(sorted_values) - 1)
    below = int(position)
    above = min(below + 1, len(sorted_values) - 1)
    return sorted_values[below] + (sorted_values[above] - sorted_values[below]) * (position - below)


def correct_flags(predicted: Sequence[str], gold: Sequence[str]) -> list[int]:
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predictions but {len(gold)} gold labels.")
    return [int(p == g and p != UNPARSEABLE) for p, g in zip(predicted, gold, strict=True)]


def gain_kept(base: float, teacher: float, student: float) -> float | None:
    """(student - base) / (teacher - base); None when the teacher is not better than the base (nothing to keep)."""
    if teacher <= base:
        return None
    return (student - base) / (teacher - base)


def paired_bootstrap(
    flags: dict[str, list[int]], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> dict[str, list[float]]:
    """Accuracy of every labeller on each resample; one resample is the same sentences for all of them."""
    lengths = {len(values) for values in flags.values()}
    if len(lengths) != 1:
        raise ValueError(f"The labellers were scored on different numbers of sentences: {sorted(lengths)}.")
    count = lengths.pop()
    if count == 0:
        raise ValueError("No sentences to resample.")
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {name: [] for name in flags}
    for _ in range(resamples):
        picks = [rng.randrange(count) for _ in range(count)]
        for name, values in flags.items():
            samples[name].append(sum(values[i] for i in picks) / count)
    return samples


def interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    ordered = sorted(values)
    tail = (1.0 - confidence) / 2
    return Interval(percentile(ordered, tail), percentile(ordered, 1.0 - tail))


def mean_or_none(values: Sequence[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    if not known or len(known) < len(values):
        return None  # a mean over some of the sentences would not be the same sentences as the others'
    return sum(known) / len(known)


def distillation_summary(
    gold: Sequence[str],
    predicted: dict[str, Sequence[str]],
    tokens: dict[str, Sequence[float | None]] | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict:
    """The block's numbers. ``predicted`` and ``tokens`` map "base", "teacher", "student" to one entry per sentence
    of ``gold``, in the same order; a token count may be None where it is not known (then no mean is shown)."""
    missing = [name for name in NAMES if name not in predicted]
    if missing:
        raise ValueError(f"Missing predictions for: {', '.join(missing)}.")
    flags = {name: correct_flags(predicted[name], gold) for name in NAMES}
    samples = paired_bootstrap(flags, resamples, seed)
    count = len(gold)
    accuracy = {name: sum(flags[name]) / count for name in NAMES}
    tokens = tokens or {}
    labellers = {
        name: {
            "correct": sum(flags[name]),
            "total": count,
            "accuracy": accuracy[name],
            "interval": interval(samples[name]).to_dict(),
            "tokens_per_request": mean_or_none(tokens[name]) if name in tokens else None,
        }
        for name in NAMES
    }

    def difference(first: str, second: str) -> dict:
        values = [a - b for a, b in zip(samples[first], samples[second], strict=True)]
        return {"points": accuracy[first] - accuracy[second], "interval": interval(values).to_dict()}

    teacher_tokens = labellers["teacher"]["tokens_per_request"]
    student_tokens = labellers["student"]["tokens_per_request"]
    return {
        "sentences": count,
        "labellers": labellers,
        "teacher_minus_base": difference("teacher", "base"),
        "student_minus_base": difference("student", "base"),
        "student_minus_teacher": difference("student", "teacher"),
        "gain_kept": gain_kept(accuracy["base"], accuracy["teacher"], accuracy["student"]),
        "token_ratio_teacher_to_student": (
            teacher_tokens / student_tokens if teacher_tokens is not None and student_tokens else None
        ),
        "bootstrap": {"resamples": resamples, "seed": seed, "confidence": CONFIDENCE, "method": "paired percentile"},
    }


# -- inputs from files ------------------------------------------------------------------------------------
def read_baseline(path, task: Task) -> tuple[dict[str, dict], dict]:
    """Sentence -> saved prediction of a ``evaluate.py --no_adapter`` results file, and the file's header."""
    try:
        saved = read_json_object(path)
    except DataError as error:  # read_json_object: a missing file or one that is not a JSON object
        raise DistillationError(f"--baseline: {error}") from None
    if saved.get("format") != RESULTS_FORMAT or not isinstance(saved.get("predictions"), list):
        raise DistillationError(f"--baseline {path}: not a results file written by evaluate.py ({RESULTS_FORMAT}).")
    if saved.get("task", {}).get("labels") != list(task.labels):
        raise DistillationError(
            f"--baseline {path} was scored with labels {','.join(saved.get('task', {}).get('labels') or [])}, "
            f"not {','.join(task.labels)}."
        )
    if saved.get("adapter"):
        raise DistillationError(
            f"--baseline {path} evaluated an adapter ({saved['adapter']}); the base is the model without one "
            "(evaluate.py --no_adapter)."
        )
    return {p["text"].strip(): p for p in saved["predictions"]}, saved


def sidecar_path(teacher_file) -> Path:
    """create_data.py's ``<output>.meta.jsonl`` beside its output: one record per request, with token counts."""
    return Path(teacher_file).with_name(Path(teacher_file).stem + SIDECAR_SUFFIX)


def teacher_tokens(teacher_file) -> dict[str, int]:
    """Sentence -> prompt + generated tokens of the teacher's request, from create_data.py's sidecar (with
    --num_samples K, of its K answers)."""
    sidecar = sidecar_path(teacher_file)
    if not sidecar.is_file():
        return {}
    counts: dict[str, int] = {}
    for _, record in iter_jsonl(sidecar):
        tokens = sentence_tokens(record)  # a voting teacher (--num_samples K): all K answers
        if tokens is not None:
            counts[str(record.get("text", "")).strip()] = tokens
    return counts


def request_tokens(prediction: dict) -> int | None:
    prompt, completion = prediction.get("prompt_tokens"), prediction.get("completion_tokens")
    return prompt + completion if isinstance(prompt, int) and isinstance(completion, int) else None


def build_distillation(predictions: list[dict], baseline_path, teacher_file, task: Task, student_model: str) -> dict:
    """The block for saved-prediction dicts of the student (text, gold, teacher, predicted, token counts)."""
    baseline, header = read_baseline(baseline_path, task)
    notes = []
    if header.get("model") != student_model:
        notes.append(f"The baseline ran {header.get('model')}, the student's base is {student_model}.")
    kept = [p for p in predictions if p["gold"] is not None and p["text"].strip() in baseline and p["teacher"] is not None]
    if not kept:
        raise DistillationError(
            f"No evaluated sentence has a gold label, a baseline prediction ({baseline_path}) and a teacher label "
            f"({teacher_file}): were they made from the same test file and split?"
        )
    if len(kept) < len(predictions):
        notes.append(f"{len(predictions) - len(kept)} of {len(predictions)} evaluated sentences lack a gold label, a "
                     "baseline prediction or a teacher label and are left out of this block.")
    teacher_counts = teacher_tokens(teacher_file)
    base_rows = [baseline[p["text"].strip()] for p in kept]
    summary = distillation_summary(
        [p["gold"] for p in kept],
        {
            "base": [row["predicted"] for row in base_rows],
            "teacher": [p["teacher"] for p in kept],
            "student": [p["predicted"] for p in kept],
        },
        {
            "base": [request_tokens(row) for row in base_rows],
            "teacher": [teacher_counts.get(p["text"].strip()) for p in kept],
            "student": [request_tokens(p) for p in kept],
        },
    )
    return {"baseline_file": str(baseline_path), "teacher_file": str(teacher_file), "notes": notes, **summary}
