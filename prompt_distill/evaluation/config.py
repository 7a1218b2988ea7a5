"""evaluate.py's flags as one typed, frozen config: what ``evaluation.run.run`` and everything below it read.

The script parses its flags (``evaluation.run.add_arguments``: each flag's help and default live there) and builds
this once with ``from_args``; a flag without a field here, or a field without a flag, fails there by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..flags import config_from_flags


@dataclass(frozen=True)
class EvaluationConfig:
    # which student
    model_path: str
    no_adapter: bool
    base_model: str | None
    backend: str
    batch_size: int
    # which sentences, graded against what
    test_file: str
    max_samples: int | None
    split: str
    eval_fraction: float
    split_seed: int
    prompt_file: str | None
    labels: str | None
    teacher_file: str | None
    # how the student answers
    answer_mode: str
    max_tokens: int | None
    constrained: bool
    # what the report adds
    defer_below: float | None
    target_accuracy: float | None
    baseline: str | None
    predictions_file: str | None
    # where results go
    output_file: str
    report_to: str

    @classmethod
    def from_args(cls, args) -> EvaluationConfig:
        """The config from parsed flags (an ``argparse.Namespace``); the only place that reads one."""
        return config_from_flags(cls, args, "evaluate.py")
