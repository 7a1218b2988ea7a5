"""Can vLLM serve this LoRA adapter, and with which engine settings? Decided from the adapter's own config.

An adapter trained on a transformers-5 Qwen3-MoE adapts the experts through PEFT ``target_parameters``: each layer
saves two fused 3-D expert LoRAs (``mlp.experts.base_layer`` = ``gate_up_proj``, ``mlp.experts`` = ``down_proj``).
vLLM 0.33 models Qwen3-MoE experts with its 2-D per-expert LoRA wrapper, so it loads such an adapter only when
the engine runs with ``enable_mixed_moe_lora_format=True`` (which converts 3-D adapters to the 2-D layout) and the
request says ``LoRARequest(..., is_3d_lora_weight=True)``. Without both it refuses the adapter at load time.
Attention-only (or dense-model) adapters need neither flag.

``max_lora_rank`` must be at least the adapter's largest rank (``r`` or any ``rank_pattern`` value; PEFT doubles
the rank of ``gate_up_proj`` when it fuses ``gate_proj`` + ``up_proj`` targets) and must be one of the values vLLM
allows, read from vLLM itself. Everything vLLM would reject (DoRA, bias, modules_to_save, a rank above vLLM's
largest) is found here, before a 60 GB model is loaded, by running vLLM's own ``PEFTHelper`` checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data import read_json_object
from .base import AdapterNotServable

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin", "adapter_model.pt")
# The fused expert tensors PEFT adapts as parameters; vLLM loads exactly this pair per MoE layer.
FUSED_EXPERT_TENSORS = ("experts.gate_up_proj", "experts.down_proj")


@dataclass(frozen=True)
class VLLMLoraSettings:
    adapter_dir: str  # absolute path, as vLLM's LoRARequest wants it
    largest_rank: int
    max_lora_rank: int  # largest_rank rounded up to a value vLLM allows
    fused_moe_experts: bool  # the adapter holds 3-D fused expert LoRAs (PEFT target_parameters)
    base_model: str | None  # base_model_name_or_path recorded by PEFT

    def engine_kwargs(self) -> dict:
        """Keyword arguments for ``vllm.LLM`` (they become ``EngineArgs`` fields)."""
        kwargs = {"enable_lora": True, "max_lora_rank": self.max_lora_rank, "max_loras": 1}
        if self.fused_moe_experts:
            kwargs["enable_mixed_moe_lora_format"] = True
        return kwargs

    def lora_request(self, name: str = "adapter", lora_int_id: int = 1):
        from vllm.lora.request import LoRARequest

        return LoRARequest(
            lora_name=name,
            lora_int_id=lora_int_id,
            lora_path=self.adapter_dir,
            is_3d_lora_weight=self.fused_moe_experts,
        )


def read_adapter_config(adapter_dir: str | Path) -> dict:
    """The adapter's ``adapter_config.json``; a clear error when the folder or file is missing or broken."""
    folder = Path(adapter_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"Adapter folder {folder} does not exist.")
    path = folder / ADAPTER_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no {ADAPTER_CONFIG}: not a PEFT adapter folder.")
    return read_json_object(path)


def largest_rank(config: dict) -> int:
    ranks = [int(config["r"]), *(int(rank) for rank in (config.get("rank_pattern") or {}).values())]
    return max(ranks)


def allowed_lora_ranks() -> tuple[int, ...]:
    """The ``max_lora_rank`` values this vLLM accepts (a Literal in its LoRAConfig)."""
    from typing import get_args

    from vllm.config.lora import MaxLoRARanks

    return tuple(sorted(get_args(MaxLoRARanks)))


def round_up_rank(rank: int, allowed: tuple[int, ...]) -> int:
    for value in allowed:
        if value >= rank:
            return value
    raise AdapterNotServable(f"LoRA rank {rank} is above vLLM's largest max_lora_rank {allowed[-1]}.")


def _fused_expert_leaf(name: str) -> str | None:
    """``gate_up_proj``/``down_proj`` when ``name`` targets a fused expert tensor (PEFT matches by suffix)."""
    for tensor in FUSED_EXPERT_TENSORS:
        leaf = tensor.split(".")[-1]
        if name in (tensor, leaf) or name.endswith("." + tensor):
            return leaf
    return None


def uses_fused_experts(config: dict) -> bool:
    """True when the adapter adapts the fused expert tensors; refuses parameters vLLM cannot load."""
    parameters = list(config.get("target_parameters") or [])
    if not parameters:
        return False
    unsupported = [name for name in parameters if _fused_expert_leaf(name) is None]
    if unsupported:
        raise AdapterNotServable(
            f"it adapts parameters {', '.join(unsupported)}; vLLM serves LoRA on parameters only for the fused "
            f"MoE expert tensors ({', '.join(FUSED_EXPERT_TENSORS)})."
        )
    present = {_fused_expert_leaf(name) for name in parameters}
    if len(present) != len(FUSED_EXPERT_TENSORS):
        raise AdapterNotServable(
            f"it adapts only {', '.join(sorted(present))}; vLLM 0.33 converts fused expert LoRA only as the "
            f"pair {' + '.join(FUSED_EXPERT_TENSORS)}."
        )
    return True


def vllm_lora_settings(adapter_dir: str | Path, *, max_position_embeddings: int | None = None) -> VLLMLoraSettings:
    """Engine settings that let vLLM serve the adapter, or ``AdapterNotServable`` with the reason.

    A missing or malformed adapter raises ``FileNotFoundError``/``ValueError``: that is a user error, not a reason
    to fall back to a merged model.
    """
    folder = Path(adapter_dir).resolve()
    config = read_adapter_config(folder)
    if not any((folder / name).is_file() for name in ADAPTER_WEIGHTS):
        raise FileNotFoundError(f"{folder} holds no adapter weights ({' or '.join(ADAPTER_WEIGHTS)}).")
    try:
        peft_type = str(config.get("peft_type", "LORA")).upper()
        if peft_type != "LORA":
            raise AdapterNotServable(f"it is a {peft_type} adapter; vLLM serves LoRA adapters only.")
        if config.get("trainable_token_indices"):
            raise AdapterNotServable("it trains token embeddings (trainable_token_indices), which vLLM ignores.")
        fused = uses_fused_experts(config)
        rank = largest_rank(config)
        max_rank = round_up_rank(rank, allowed_lora_ranks())
        validate_with_vllm(folder, max_rank, fused, max_position_embeddings)
    except AdapterNotServable as error:
        raise AdapterNotServable(f"vLLM cannot serve the adapter {folder}: {error}") from None
    return VLLMLoraSettings(
        adapter_dir=str(folder),
        largest_rank=rank,
        max_lora_rank=max_rank,
        fused_moe_experts=fused,
        base_model=config.get("base_model_name_or_path"),
    )


def validate_with_vllm(folder: Path, max_lora_rank: int, fused: bool, max_position_embeddings: int | None) -> None:
    """vLLM's own pre-load checks (the ones its LoRA worker runs before reading the weights)."""
    from vllm.config.lora import LoRAConfig
    from vllm.lora.peft_helper import PEFTHelper

    try:
        helper = PEFTHelper.from_local_dir(str(folder), max_position_embeddings)
        helper.validate_legal(LoRAConfig(max_lora_rank=max_lora_rank, enable_mixed_moe_lora_format=fused))
    except ValueError as error:
        raise AdapterNotServable(str(error)) from error
