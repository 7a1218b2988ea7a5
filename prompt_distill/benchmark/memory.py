"""Will the benchmark's two vLLM engines fit the GPUs? Weights and LoRA buffers per GPU against each engine's share.

benchmark.py loads the teacher and the student in one process, each with ``gpu_memory_utilization`` of every GPU
it spans (0.45 each by default, so that both fit). vLLM's share covers the engine's weights, its LoRA buffers, its
activations and CUDA graphs, and its KV cache; it refuses to start when these leave no room for the KV cache of one
sequence. Qwen3-30B-A3B in bf16 is about 57 GiB of weights, so at tensor parallel 1 neither engine fits 0.45 of an
80 GB GPU; split over 2 GPUs it is about 28 GiB per GPU, which does. When the two do not fit together but each fits
alone, the engines are loaded one after the other (teacher built, measured, shut down; then the student), each with
0.9 of the GPU: that is how one 80 GB GPU runs the benchmark.

The student's vLLM engine also holds LoRA buffers sized by ``max_lora_rank`` (the adapter's largest rank, rounded
up to a value vLLM allows), not by each module's own rank. vllm 0.33 ``lora/layers/fused_moe.py``
(``FusedMoEWithLoRA``, used for Qwen3-MoE with ``enable_mixed_moe_lora_format``) allocates per MoE layer, in the
model's dtype, for ``max_loras`` adapters and every expert: w13 lora_A 2 x (rank x hidden), w13 lora_B
2 x (moe_inter/TP x rank), w2 lora_A (rank x moe_inter/TP), w2 lora_B (hidden x rank). The intermediate dimension
is split by tensor parallelism, the hidden one is not (``fully_sharded_loras`` is off). Every linear layer is
wrapped too (attention q/k/v/o, the router), whatever the adapter targets, and the adapter's own tensors stay in
CPU memory (``worker_manager.py`` loads them with ``device="cpu"``). An adapter with attention r=32 and expert
r=8 therefore costs the expert buffers of rank 32: 3.1 GiB per GPU on Qwen3-30B-A3B at TP 1 instead of 0.8 GiB.

The arithmetic here is a pure function of numbers (weights in bytes, model shape, ranks, GPU memory, GPU count),
so it is tested without a GPU; the weights come from the model's safetensors files (local folder or Hugging Face
cache/hub).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

from ..engines.vllm_lora import largest_rank, round_up_rank
from ..errors import PromptDistillError

GIB = 2**30
# What an engine needs on each GPU beyond its weights: the KV cache of a full teacher sequence (about 10k tokens,
# 96 KiB per token for Qwen3-30B-A3B: 1 GiB), activations during vLLM's memory profiling, and CUDA graphs. An
# estimate with room to spare, not a measurement.
HEADROOM_BYTES = 4 * GIB
TENSOR_PARALLEL_CHOICES = (1, 2, 4, 8)
SAFETENSORS_INDEX = "model.safetensors.index.json"
# Both engines on the same GPUs, each with this share; one engine alone takes vLLM's own default.
TOGETHER_SHARE = 0.45
ALONE_SHARE = 0.9
LOADINGS = ("auto", "together", "sequential")
# vllm 0.33 config/lora.py MaxLoRARanks: the max_lora_rank values it accepts (engines/vllm_lora.py reads them from
# vLLM itself; here, without vLLM installed, the same tuple).
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
VLLM_MAX_LORAS = 1  # engines/vllm_lora.py: one adapter per engine


class MemoryPlanError(PromptDistillError, ValueError):
    """The engines do not fit; the message carries the arithmetic."""


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a (MoE or dense) decoder that size vLLM's LoRA buffers; a dense MLP counts as one expert."""
    layers: int
    hidden: int
    experts: int  # 1: a dense MLP
    intermediate: int  # moe_intermediate_size, or intermediate_size of a dense MLP
    q_dim: int  # attention heads x head_dim
    kv_heads: int
    head_dim: int
    dtype_bytes: int = 2

    @classmethod
    def from_config(cls, config: dict) -> ModelShape | None:
        """From a transformers ``config.json`` (None when a number is missing)."""
        config = config.get("text_config", config)
        try:
            hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
            head_dim = int(config.get("head_dim") or hidden // heads)
            experts = int(config.get("num_experts") or config.get("num_local_experts") or 1)
            intermediate = int(config["moe_intermediate_size"] if experts > 1 else config["intermediate_size"])
            return cls(int(config["num_hidden_layers"]), hidden, experts, intermediate, heads * head_dim,
                       int(config.get("num_key_value_heads") or heads), head_dim,
                       4 if config.get("torch_dtype", config.get("dtype")) == "float32" else 2)
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class LoraBuffers:
    """vLLM's LoRA buffers on one GPU for one model at ``max_lora_rank``; the adapter's ranks only for the hint."""
    shape: ModelShape
    max_lora_rank: int
    attention_rank: int | None  # the adapter's, None when it adapts no module
    expert_rank: int | None  # the adapter's, None when it adapts no expert
    max_loras: int = VLLM_MAX_LORAS

    def expert_bytes(self, tp: int, rank: int | None = None) -> int:
        """FusedMoEWithLoRA: w13 A 2 x (r, H), w13 B 2 x (I/TP, r), w2 A (r, I/TP), w2 B (H, r) per expert."""
        s, r = self.shape, rank or self.max_lora_rank
        inter = -(-s.intermediate // tp)
        return self.max_loras * s.experts * r * (3 * s.hidden + 3 * inter) * s.dtype_bytes * s.layers

    def attention_bytes(self, tp: int, rank: int | None = None) -> int:
        """q/k/v (A: 3 x (r, H), B: (q + 2 kv)/TP x r), o_proj (A: r x q/TP, B: H x r) and, on a MoE model, the
        router (A: r x H, B: experts x r)."""
        s, r = self.shape, rank or self.max_lora_rank
        kv = max(s.kv_heads // tp, 1) * s.head_dim
        q = -(-s.q_dim // tp)
        router = s.hidden + s.experts if s.experts > 1 else 0
        return self.max_loras * r * (3 * s.hidden + q + 2 * kv + q + s.hidden + router) * s.dtype_bytes * s.layers

    def bytes(self, tp: int) -> int:
        return self.expert_bytes(tp) + self.attention_bytes(tp)

    def describe(self, tp: int) -> str:
        mlp = "experts" if self.shape.experts > 1 else "MLP"
        return (f"{_gib(self.bytes(tp))} of vLLM LoRA buffers (max_lora_rank {self.max_lora_rank}: {mlp} "
                f"{_gib(self.expert_bytes(tp), 2)}, attention {_gib(self.attention_bytes(tp), 2)})")

    def hint(self, tp: int) -> str | None:
        """One line when the experts' rank is below max_lora_rank: what a serving-friendly adapter saves."""
        if self.expert_rank is None or self.expert_rank >= self.max_lora_rank:
            return None
        smaller = round_up_rank(self.expert_rank, VLLM_MAX_LORA_RANKS)
        return (f"hint: the adapter's experts have r={self.expert_rank} but max_lora_rank is {self.max_lora_rank} "
                f"(attention r={self.attention_rank}), and vLLM sizes every expert buffer at max_lora_rank: "
                f"{_gib(self.expert_bytes(tp), 2)} per GPU instead of {_gib(self.expert_bytes(tp, smaller), 2)}. "
                f"An adapter trained with --lora_r {self.expert_rank} (= --expert_lora_r) needs "
                f"{self.max_lora_rank // smaller}x less (docs/benchmark.md).")


def lora_buffers(adapter_config: dict, model_config: dict) -> LoraBuffers | None:
    """The buffers vLLM allocates to serve this adapter on this model (None when the model's shape is unknown).

    In the project's adapters ``r`` is the rank of the fused expert parameters (``target_parameters``) and
    ``rank_pattern`` gives the attention modules their rank (training/lora.py); max_lora_rank is decided as
    engines/vllm_lora.py decides it."""
    shape = ModelShape.from_config(model_config)
    if shape is None:
        return None
    r = int(adapter_config["r"])
    pattern = [int(rank) for rank in (adapter_config.get("rank_pattern") or {}).values()]
    experts = r if adapter_config.get("target_parameters") else None
    attention = (max(pattern) if pattern else r) if adapter_config.get("target_modules") else None
    max_rank = round_up_rank(largest_rank(adapter_config), VLLM_MAX_LORA_RANKS)
    return LoraBuffers(shape, max_rank, attention, experts)


@dataclass(frozen=True)
class Weights:
    name: str  # role and model, as printed
    bytes: int
    source: str  # where the size was read
    lora: LoraBuffers | None = None  # the student's vLLM LoRA buffers, when it serves an adapter


@dataclass(frozen=True)
class Gpus:
    count: int
    bytes_each: int  # the smallest GPU's total memory
    name: str = "GPU"


@dataclass(frozen=True)
class EnginePlan:
    tensor_parallel_size: int
    gpu_memory_utilization: float
    lines: tuple[str, ...]  # the arithmetic, one line per engine, then the hint if any
    sequential: bool = False  # one engine at a time: built, measured, shut down, then the next


def _gib(value: float, digits: int = 1) -> str:
    return f"{value / GIB:.{digits}f} GiB"


def _need(weights: Weights, tp: int) -> int:
    lora = weights.lora.bytes(tp) if weights.lora else 0
    return -(-weights.bytes // tp) + lora + HEADROOM_BYTES


def _hints(engines: list[Weights], tp: int) -> tuple[str, ...]:
    return tuple(hint for w in engines if w.lora and (hint := w.lora.hint(tp)))


def _lines(engines: list[Weights], gpus: Gpus, tp: int, utilization: float) -> tuple[str, ...]:
    share = utilization * gpus.bytes_each
    return tuple(
        f"{w.name}: {_gib(w.bytes)} of weights ({w.source}) / TP {tp} = {_gib(w.bytes / tp)} per GPU + "
        + (f"{w.lora.describe(tp)} + " if w.lora else "")
        + f"{_gib(HEADROOM_BYTES)} headroom = {_gib(_need(w, tp))} {'<=' if _need(w, tp) <= share else '>'} "
        f"{utilization} x {_gib(gpus.bytes_each)} = {_gib(share)}"
        for w in engines
    ) + _hints(engines, tp)


def _fits(engines: list[Weights], gpus: Gpus, tp: int, utilization: float) -> bool:
    return all(_need(w, tp) <= utilization * gpus.bytes_each for w in engines)


def _smaller_rank_fits(engines: list[Weights], gpus: Gpus, tp: int, together: float) -> tuple[str, ...]:
    """When only the padded expert buffers keep the pair apart: say that a serving-friendly adapter fits."""
    smaller = []
    for w in engines:
        if w.lora and w.lora.hint(tp):
            rank = round_up_rank(w.lora.expert_rank, VLLM_MAX_LORA_RANKS)
            w = replace(w, lora=replace(w.lora, max_lora_rank=rank))
        smaller.append(w)
    if smaller == engines or not _fits(smaller, gpus, tp, together):
        return ()
    return (f"with an adapter of one rank (--lora_r = --expert_lora_r) the two engines would fit together at TP "
            f"{tp} and alternate: " + ", ".join(f"{w.name.split()[0]} {_gib(_need(w, tp))}" for w in smaller)
            + f" <= {_gib(together * gpus.bytes_each)}.",)


def _would_fit(engines: list[Weights], gpus: Gpus, together: float, alone: float) -> str:
    """What would fit, whatever this machine has: tensor parallel sizes, and the share one engine alone needs."""
    options = []
    tp_together = next((tp for tp in TENSOR_PARALLEL_CHOICES if _fits(engines, gpus, tp, together)), None)
    if tp_together and together * 2 <= 1:
        options.append(f"both together at tensor parallel {tp_together} ({tp_together} x {gpus.name})")
    tp_alone = next((tp for tp in TENSOR_PARALLEL_CHOICES if _fits(engines, gpus, tp, alone)), None)
    if tp_alone and (tp_together is None or tp_alone < tp_together):
        options.append(f"one at a time at tensor parallel {tp_alone} ({tp_alone} x {gpus.name})")
    largest = max(tp for tp in TENSOR_PARALLEL_CHOICES if tp <= max(gpus.count, 1))
    needed = math.ceil(100 * max(_need(w, largest) for w in engines) / gpus.bytes_each) / 100
    if needed < 1:
        options.append(f"one at a time at tensor parallel {largest} with --gpu_memory_utilization {needed:.2f} or "
                       "more")
    if not options:
        return "Nothing fits: the engines need more than 8 GPUs of this size."
    return f"What would fit: {'; or '.join(options)}. This machine has {gpus.count} x {gpus.name}."


def plan_engines(engines: list[Weights], gpus: Gpus, tensor_parallel_size: int | None,
                 gpu_memory_utilization: float | None, loading: str = "auto") -> EnginePlan:
    """The tensor parallel size (given, or the smallest that fits) and how the engines are loaded.

    ``loading``: "together" (both at once, each with ``gpu_memory_utilization``, default 0.45, so that their
    alternating runs share the machine's noise), "sequential" (one at a time, default 0.9 each), or "auto":
    together when that fits at some tensor parallel size on this machine, else one at a time when that fits."""
    if loading not in LOADINGS:
        raise ValueError(f"loading must be one of {LOADINGS}, got {loading!r}")
    together = gpu_memory_utilization or TOGETHER_SHARE
    alone = gpu_memory_utilization or ALONE_SHARE
    if loading == "together" and together * 2 > 1:
        raise MemoryPlanError(
            f"--gpu_memory_utilization {together}: the teacher and the student each take that share "
            "of every GPU, so two of them exceed the whole GPU. Use at most 0.5 (0.45 leaves room for the CUDA "
            "context), or --load_engines sequential.")
    sizes = ([tensor_parallel_size] if tensor_parallel_size is not None else
             [tp for tp in TENSOR_PARALLEL_CHOICES if tp <= gpus.count])
    if loading != "sequential" and together * 2 <= 1:
        for tp in sizes:
            if _fits(engines, gpus, tp, together):
                return EnginePlan(tp, together, _lines(engines, gpus, tp, together))
    if loading != "together":
        for tp in sizes:
            if _fits(engines, gpus, tp, alone):
                lines = _lines(engines, gpus, tp, alone)
                if loading == "auto" and together * 2 <= 1:
                    needs = ", ".join(f"{w.name.split()[0]} {_gib(_need(w, tp))}" for w in engines)
                    lines = (f"not together: at TP {tp} the engines need {needs} against {together} x "
                             f"{_gib(gpus.bytes_each)} = {_gib(together * gpus.bytes_each)} each; so one at a "
                             f"time, {alone} of the GPU each, measured one after the other:",) + lines
                    lines += _smaller_rank_fits(engines, gpus, tp, together)
                return EnginePlan(tp, alone, lines, sequential=True)
    shown = tensor_parallel_size or max(sizes, default=1)
    utilization = alone if loading == "sequential" or together * 2 > 1 else together
    how = "one at a time" if utilization == alone and loading != "together" else "together"
    at = f"--tensor_parallel_size {tensor_parallel_size}" if tensor_parallel_size else "any tensor parallel size"
    raise MemoryPlanError(
        f"The teacher and the student do not fit {how} at {at} and --gpu_memory_utilization {utilization} "
        f"on {gpus.count} x {gpus.name}:\n  "
        + "\n  ".join(_lines(engines, gpus, shown, utilization)) + "\n"
        + _would_fit(engines, gpus, together, alone))


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


def model_config(resolved: str) -> dict | None:
    """A model's ``config.json``: of a local folder, or of a hub model (cached, or fetched: a small file)."""
    path = Path(resolved) / "config.json"
    if not Path(resolved).is_dir():
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(resolved, "config.json"))
        except Exception:  # offline, gated, no such repository: the buffers are not counted, and that is said
            return None
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def visible_gpus() -> Gpus | None:
    import torch

    from ..gpus import cuda_device_count

    if cuda_device_count() == 0:  # asked without initialising CUDA; get_device_properties below then does
        return None
    properties = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
    smallest = min(properties, key=lambda p: p.total_memory)
    return Gpus(len(properties), smallest.total_memory, smallest.name)
