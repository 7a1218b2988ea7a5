"""Will the benchmark's two vLLM engines fit the GPUs? Weights per GPU against each engine's share of GPU memory.

benchmark.py loads the teacher and the student in one process, each with ``gpu_memory_utilization`` of every GPU
it spans (0.45 each by default, so that both fit). vLLM's share covers the engine's weights, its activations and
CUDA graphs, and its KV cache; it refuses to start when the weights leave no room for the KV cache of one
sequence. Qwen3-30B-A3B in bf16 is about 57 GiB of weights, so at tensor parallel 1 neither engine fits 0.45 of an
80 GB GPU; split over 2 GPUs it is about 28 GiB per GPU, which does.

The arithmetic here is a pure function of numbers (weights in bytes, GPU memory, GPU count), so it is tested
without a GPU; the weights come from the model's safetensors files (local folder or Hugging Face cache/hub).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

GIB = 2**30
# What an engine needs on each GPU beyond its weights: the KV cache of a full teacher sequence (about 10k tokens,
# 96 KiB per token for Qwen3-30B-A3B: 1 GiB), activations during vLLM's memory profiling, and CUDA graphs. An
# estimate with room to spare, not a measurement.
HEADROOM_BYTES = 4 * GIB
TENSOR_PARALLEL_CHOICES = (1, 2, 4, 8)
SAFETENSORS_INDEX = "model.safetensors.index.json"


class MemoryPlanError(ValueError):
    """The engines do not fit; the message carries the arithmetic."""


@dataclass(frozen=True)
class Weights:
    name: str  # role and model, as printed
    bytes: int
    source: str  # where the size was read


@dataclass(frozen=True)
class Gpus:
    count: int
    bytes_each: int  # the smallest GPU's total memory
    name: str = "GPU"


@dataclass(frozen=True)
class EnginePlan:
    tensor_parallel_size: int
    gpu_memory_utilization: float
    lines: tuple[str, ...]  # the arithmetic, one line per engine


def _gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"


def _need(weights: Weights, tp: int) -> int:
    return -(-weights.bytes // tp) + HEADROOM_BYTES


def _lines(engines: list[Weights], gpus: Gpus, tp: int, utilization: float) -> tuple[str, ...]:
    share = utilization * gpus.bytes_each
    return tuple(
        f"{w.name}: {_gib(w.bytes)} of weights ({w.source}) / TP {tp} = {_gib(w.bytes / tp)} per GPU + "
        f"{_gib(HEADROOM_BYTES)} headroom = {_gib(_need(w, tp))} {'<=' if _need(w, tp) <= share else '>'} "
        f"{utilization} x {_gib(gpus.bytes_each)} = {_gib(share)}"
        for w in engines
    )


def plan_engines(engines: list[Weights], gpus: Gpus, tensor_parallel_size: int | None,
                 gpu_memory_utilization: float) -> EnginePlan:
    """The tensor parallel size (given, or the smallest that fits) at which every engine fits its share."""
    share = gpu_memory_utilization * gpus.bytes_each
    if gpu_memory_utilization * 2 > 1:
        raise MemoryPlanError(
            f"--gpu_memory_utilization {gpu_memory_utilization}: the teacher and the student each take that share "
            "of every GPU, so two of them exceed the whole GPU. Use at most 0.5 (0.45 leaves room for the CUDA "
            "context).")

    def fits(tp: int) -> bool:
        return all(_need(w, tp) <= share for w in engines)

    if tensor_parallel_size is not None:
        if fits(tensor_parallel_size):
            return EnginePlan(tensor_parallel_size, gpu_memory_utilization,
                              _lines(engines, gpus, tensor_parallel_size, gpu_memory_utilization))
        candidates = [tp for tp in TENSOR_PARALLEL_CHOICES if tp <= gpus.count and fits(tp)]
        hint = (f" --tensor_parallel_size {candidates[0]} fits on this machine." if candidates else
                " No tensor parallel size fits on this machine.")
        raise MemoryPlanError(
            f"The two engines do not fit at --tensor_parallel_size {tensor_parallel_size} and "
            f"--gpu_memory_utilization {gpu_memory_utilization} on {gpus.count} x {gpus.name}:\n  "
            + "\n  ".join(_lines(engines, gpus, tensor_parallel_size, gpu_memory_utilization)) + "\n" + hint.strip())
    for tp in TENSOR_PARALLEL_CHOICES:
        if tp <= gpus.count and fits(tp):
            return EnginePlan(tp, gpu_memory_utilization, _lines(engines, gpus, tp, gpu_memory_utilization))
    needed = next((tp for tp in TENSOR_PARALLEL_CHOICES if fits(tp)), None)
    largest = max(tp for tp in TENSOR_PARALLEL_CHOICES if tp <= gpus.count) if gpus.count else 0
    need_text = (f"They need tensor parallel {needed}, that is {needed} GPUs; this machine has {gpus.count}."
                 if needed else "They do not fit even on 8 GPUs.")
    raise MemoryPlanError(
        f"The teacher and the student cannot both be loaded on {gpus.count} x {gpus.name} with "
        f"--gpu_memory_utilization {gpu_memory_utilization} each:\n  "
        + "\n  ".join(_lines(engines, gpus, max(largest, 1), gpu_memory_utilization)) + "\n" + need_text)


# -- reading the numbers ------------------------------------------------------------------------------------------
def weights_in_folder(folder: Path) -> tuple[int, str] | None:
    """Bytes of the weights in a model folder: the safetensors index's total_size, else the safetensors files."""
    index = folder / SAFETENSORS_INDEX
    if index.is_file():
        total = json.loads(index.read_text("utf-8")).get("metadata", {}).get("total_size")
        if isinstance(total, int) and total > 0:
            return total, f"{SAFETENSORS_INDEX} total_size"
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return sum(path.stat().st_size for path in files), "size of its safetensors files"
    return None


def model_weights(name: str, resolved: str) -> tuple[int, str] | None:
    """Weights of a local folder, or of a hub model from its safetensors index (cached, or fetched: a small file)."""
    folder = Path(resolved)
    if folder.is_dir():
        return weights_in_folder(folder)
    try:
        from huggingface_hub import hf_hub_download

        index = Path(hf_hub_download(resolved, SAFETENSORS_INDEX))
    except Exception:  # offline, gated, single-file model, no such repository: the check is skipped, and says so
        return None
    found = weights_in_folder(index.parent)
    return None if found is None else (found[0], f"{name}'s {SAFETENSORS_INDEX}")


def visible_gpus() -> Gpus | None:
    import torch

    from ..gpus import cuda_device_count

    if cuda_device_count() == 0:  # asked without initialising CUDA; get_device_properties below then does
        return None
    properties = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
    smallest = min(properties, key=lambda p: p.total_memory)
    return Gpus(len(properties), smallest.total_memory, smallest.name)
