"""create_data.py's flags as one typed, frozen config: what ``labeling.teacher_run.run`` and everything below it read.

The script parses its flags (``labeling.teacher_run.add_arguments``: each flag's help and default live there) and
builds this once with ``from_args``; a flag without a field here, or a field without a flag, fails there by name.
``run`` then settles what the flags leave open (backend, max_tokens, constrained answer, the shard's output) into
``run.LabelingConfig``, the settings the labelling loop itself reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..flags import config_from_flags


@dataclass(frozen=True)
class CreateDataConfig:
    # which sentences, written where
    input_file: str
    output_file: str
    max_samples: int | None
    shard_index: int
    num_shards: int
    prompt_file: str | None
    labels: str | None
    # the teacher and how it samples
    model_name: str
    temperature: float
    top_p: float
    cut_thought_sampling: str
    max_tokens: int | None
    max_retries: int
    seed: int
    constrained_answer: str
    # engines
    backend: str
    batch_size: int
    tensor_parallel_size: int
    reasoning_parser: str
    max_model_len: int | None
    gpu_memory_utilization: float
    max_num_seqs: int | None
    # an existing output
    overwrite: bool
    retry_unparseable: bool

    @classmethod
    def from_args(cls, args) -> CreateDataConfig:
        """The config from parsed flags (an ``argparse.Namespace``); the only place that reads one."""
        return config_from_flags(cls, args, "create_data.py")
