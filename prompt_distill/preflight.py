"""Pre-flight checks: flag values refused before anything is loaded, each in one line that names the flag, the
value and what to pass.

Every script runs these (and then ``engines.choose_backend``, which checks the backend and the GPU count) before
its first tokenizer, config or model load, so a wrong flag costs nothing and leaves no file behind. The checks read
the flags a config has (``getattr``): create_data.py, benchmark.py, evaluate.py and predict.py share them.
"""

from __future__ import annotations

from .errors import PromptDistillError


class PreflightError(PromptDistillError, ValueError):
    """A flag value (or the backend or GPUs it needs) that cannot work; the message says what to pass instead."""


def _given(config, name: str):
    return getattr(config, name, None)


def check_flag_ranges(config) -> None:
    """The sampling, vLLM and sharding flags that ``config`` has, each within its range (messages in the style of
    the scripts' other count checks: "--flag must be ..., got value.")."""
    temperature = _given(config, "temperature")
    if temperature is not None and temperature < 0:
        raise PreflightError(f"--temperature must be 0 or more (0 = greedy), got {temperature}.")
    top_p = _given(config, "top_p")
    if top_p is not None and not 0 < top_p <= 1:
        raise PreflightError(f"--top_p must be in (0, 1] (1 keeps every token), got {top_p}.")
    tensor_parallel_size = _given(config, "tensor_parallel_size")
    if tensor_parallel_size is not None and tensor_parallel_size < 1:
        raise PreflightError(f"--tensor_parallel_size must be at least 1 (GPUs per vLLM engine), got "
                             f"{tensor_parallel_size}.")
    share = _given(config, "gpu_memory_utilization")
    if share is not None and not 0 < share <= 1:
        raise PreflightError(f"--gpu_memory_utilization must be in (0, 1], a share of each GPU's memory such as 0.9, "
                             f"got {share}.")
    max_retries = _given(config, "max_retries")
    if max_retries is not None and max_retries < 0:
        raise PreflightError(f"--max_retries must be 0 or more (extra attempts for an unparseable answer), got "
                             f"{max_retries}.")
    eval_fraction = _given(config, "eval_fraction")
    if eval_fraction is not None and not 0 < eval_fraction < 1:
        raise PreflightError(f"--eval_fraction must be between 0 and 1, the share of sentences held out (e.g. 0.1), "
                             f"got {eval_fraction}." + (" To train on every sentence pass --split all."
                                                        if eval_fraction <= 0 else ""))
    num_shards = _given(config, "num_shards")
    if num_shards is not None and num_shards < 1:
        raise PreflightError(f"--num_shards must be at least 1, got {num_shards}.")
    shard_index = _given(config, "shard_index")
    if num_shards is not None and shard_index is not None and not 0 <= shard_index < num_shards:
        raise PreflightError(f"--shard_index must be in 0..{num_shards - 1}, got {shard_index}.")
