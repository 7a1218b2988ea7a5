"""benchmark.py's flags as one typed, frozen config: what ``benchmark.run.run`` and everything below it read.

The script parses its flags (``benchmark.run.add_arguments``: each flag's help and default live there) and builds
this once with ``from_args``; a flag without a field here, or a field without a flag, fails there by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..flags import config_from_flags


@dataclass(frozen=True)
class BenchmarkConfig:
    # the two sides
    teacher_model: str | None
    model_path: str
    no_adapter: bool
    base_model: str | None
    # which sentences
    test_file: str
    num_samples: int
    split: str
    eval_fraction: float
    split_seed: int
    prompt_file: str | None
    labels: str | None
    # what is measured
    student_latency: bool
    batch_size: int
    rounds: int
    # the teacher's generation
    thinking_tokens: int | None
    teacher_meta_file: str | None
    teacher_max_tokens: int
    temperature: float
    seed: int
    # engines
    backend: str
    tensor_parallel_size: int | None
    gpu_memory_utilization: float | None  # None: 0.45 each when loaded together, 0.9 when one at a time
    load_engines: str  # "auto", "together" or "sequential"
    max_model_len: int | None
    # where results go
    output_file: str

    @classmethod
    def from_args(cls, args) -> BenchmarkConfig:
        """The config from parsed flags (an ``argparse.Namespace``); the only place that reads one."""
        return config_from_flags(cls, args, "benchmark.py")
