"""Which weights get LoRA adapters, for dense models and for Qwen3-MoE with fused experts.

In transformers 5 a Qwen3-MoE layer holds its 128 experts as two 3-D parameters, ``mlp.experts.gate_up_proj``
(experts x 2*moe_intermediate x hidden) and ``mlp.experts.down_proj`` (experts x hidden x moe_intermediate), and
its router is ``mlp.gate`` (a custom module, not ``nn.Linear``). Two consequences with peft 0.21:

* ``target_modules="all-linear"`` also adapts the router: for Qwen2/3-MoE peft rewrites the old v4 module names and
  maps ``gate`` to ``gate.weight``. A trained router changes which experts fire for every token; we leave it frozen.
* The experts are no modules at all, so they are adapted as parameters (``target_parameters``). peft's
  ``ParamWrapper`` adds one rank-``r`` LoRA per expert and refuses ``lora_dropout != 0``.

So for a fused-MoE model we name the attention projections as modules and the expert tensors as parameters, with
their own rank (``expert_r``) because rank 32 on every expert does not fit one 80 GB GPU (see
``prompt_distill.training.memory_budget``). Dense models (SmolLM2, Llama, dense Qwen3) get every linear layer except the LM
head, which is what the reference README meant by "all linear layers".

Two more peft 0.21 facts shape the config:

* A Qwen3-MoE may keep dense MLP layers (``mlp_only_layers``: ``mlp.gate_proj/up_proj/down_proj`` as nn.Linear).
  They cannot be named in ``target_modules``: for this model type peft rewrites every target ending in
  ``gate_proj``, ``up_proj`` or ``down_proj`` to the fused expert parameters
  (``utils/transformers_weight_conversion._convert_peft_config_moe``), so the dense layers would stay bare. They
  are adapted as parameters instead (``mlp.gate_proj.weight`` ...; a 2-D ``ParamWrapper`` is an ordinary LoRA
  on the weight, saved under the same keys as a module LoRA), at the feed-forward rank ``expert_r``.
* ``rank_pattern`` keys are checked against the targeted *modules* only (``tuners_utils.inject_adapter``); a key
  that matches a targeted parameter is applied but reported as "did not match any targeted module", at creation
  and again at every ``PeftModel.from_pretrained``. So ``r`` is the rank of the parameters (experts and dense
  MLPs) and ``rank_pattern`` names only modules (attention at ``--lora_r``), and only when the ranks differ.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from dataclasses import dataclass

from ..errors import PromptDistillError

ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
# Leaf names of the fused expert tensors, relative to the decoder layer.
FUSED_EXPERT_PARAMETERS = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")
# The weights of a dense MLP layer inside an MoE model (Qwen3-MoE mlp_only_layers), adapted as parameters.
DENSE_MLP_WEIGHTS = ("mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")
# Module leaf names that route tokens to experts; never adapted.
ROUTER_NAMES = ("gate", "router")
# transformers-4 expert names that peft silently converts to fused parameters (and, for gate_proj + up_proj, to a
# doubled rank) on a transformers-5 MoE model. We refuse them instead of letting the rank change behind the user.
V4_EXPERT_NAMES = ("gate_proj", "up_proj", "down_proj", "w1", "w2", "w3", "gate")

AUTO = "auto"


class LoraTargetError(PromptDistillError, ValueError):
    pass


@dataclass(frozen=True)
class LoraSettings:
    r: int = 32
    alpha: int = 16
    dropout: float = 0.0
    target_modules: str = AUTO  # "auto", "all-linear", or comma-separated leaf names
    # fused-MoE models: rank of each expert's adapter and of the dense MLP layers' (mlp_only_layers); 0 = attention only
    expert_r: int = 8


def fused_expert_parameters(model) -> list[str]:
    """Full names of the 3-D expert tensors (``model.layers.N.mlp.experts.gate_up_proj`` ...); empty if dense."""
    return [
        name
        for name, param in model.named_parameters()
        if param.ndim == 3 and any(name.endswith("." + suffix) for suffix in FUSED_EXPERT_PARAMETERS)
    ]


def dense_mlp_weights(model) -> list[str]:
    """Suffixes of the 2-D MLP weights present in a fused-MoE model's dense layers (none in Qwen3-30B-A3B)."""
    names = [name for name, param in model.named_parameters() if param.ndim == 2]
    return [suffix for suffix in DENSE_MLP_WEIGHTS if any(name.endswith("." + suffix) for name in names)]


def _linear_leaf_names(model) -> set[str]:
    import torch

    output = model.get_output_embeddings()
    return {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not output
    }


def _parse_target_modules(value: str) -> list[str]:
    names = [item.strip() for item in value.split(",") if item.strip()]
    if not names:
        raise LoraTargetError(f"--lora_target_modules {value!r} names no modules.")
    return names


def resolve_targets(model, settings: LoraSettings) -> tuple[list[str], list[str]]:
    """``(target_modules, target_parameters)`` for this model."""
    experts = fused_expert_parameters(model)
    requested = settings.target_modules.strip()
    if experts:
        if requested.lower() == "all-linear":
            raise LoraTargetError(
                "--lora_target_modules all-linear on a fused-MoE model also adapts the router (mlp.gate) in peft "
                "0.21. Use 'auto' (attention projections + fused experts) or name the modules."
            )
        modules = list(ATTENTION_PROJECTIONS) if requested.lower() == AUTO else _parse_target_modules(requested)
        converted = sorted(set(modules) & set(V4_EXPERT_NAMES))
        if converted:
            raise LoraTargetError(
                f"--lora_target_modules names {', '.join(converted)}: on this model the experts are fused "
                "parameters and the router is 'gate'; peft would convert these names (adapting the router or "
                "doubling the rank). Set the expert rank with --expert_lora_r instead."
            )
        parameters = sorted([*FUSED_EXPERT_PARAMETERS, *dense_mlp_weights(model)]) if settings.expert_r > 0 else []
        return modules, parameters
    if requested.lower() == AUTO:
        modules = sorted(_linear_leaf_names(model) - set(ROUTER_NAMES))
        if not modules:
            raise LoraTargetError(f"{type(model).__name__} has no linear layers to adapt.")
        return modules, []
    if requested.lower() == "all-linear":
        return ["all-linear"], []
    return _parse_target_modules(requested), []


def build_lora_config(model, settings: LoraSettings):
    """A peft ``LoraConfig`` with explicit targets; raises ``LoraTargetError`` with a plain-language reason."""
    from peft import LoraConfig

    if settings.r <= 0:
        raise LoraTargetError(f"--lora_r must be positive, got {settings.r}.")
    if settings.expert_r < 0:
        raise LoraTargetError(f"--expert_lora_r must be 0 (no expert adapters) or positive, got {settings.expert_r}.")
    modules, parameters = resolve_targets(model, settings)
    if parameters and settings.dropout:
        raise LoraTargetError(
            f"--lora_dropout {settings.dropout}: LoRA on fused expert parameters (peft ParamWrapper) only works "
            "with lora_dropout 0. Use --lora_dropout 0, or --expert_lora_r 0 to adapt attention only."
        )
    # The expert tensors get their own rank; alpha stays the same for every target, so a smaller expert rank
    # means a larger alpha/r scale on each expert update (with 1/r scaling the best learning rate barely depends
    # on the rank, so one learning rate serves both). r is the parameters' rank and rank_pattern names modules
    # only: peft checks pattern keys against targeted modules (see the module docstring).
    r = settings.expert_r if parameters else settings.r
    rank_pattern = {re.escape(name): settings.r for name in modules} if r != settings.r else {}
    return LoraConfig(
        r=r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=modules if modules != ["all-linear"] else "all-linear",
        target_parameters=parameters or None,
        rank_pattern=rank_pattern,
        bias="none",
        task_type="CAUSAL_LM",
    )


@dataclass(frozen=True)
class AdapterSummary:
    modules: tuple[str, ...]  # full names of modules with a LoRA adapter on their weight
    parameters: tuple[str, ...]  # full names of parameters adapted directly (fused experts, routers)
    trainable_parameters: int
    total_parameters: int

    def describe(self) -> str:
        def leaves(names):
            return ", ".join(sorted({name.split(".")[-1] for name in names})) or "none"

        share = 100 * self.trainable_parameters / max(self.total_parameters, 1)
        parameters = sorted({".".join(name.split(".")[-2:]) for name in self.parameters})
        return (
            f"LoRA on {len(self.modules)} modules ({leaves(self.modules)}) and {len(self.parameters)} parameter "
            f"tensors ({', '.join(parameters) or 'none'}); {self.trainable_parameters:,} trainable parameters "
            f"({share:.2f}% of {self.total_parameters:,})."
        )


def summarize_adapters(peft_model) -> AdapterSummary:
    """Read back which modules and parameters actually carry adapters (what peft did, not what was asked)."""
    from peft.tuners.lora.layer import LoraLayer, ParamWrapper

    modules, parameters = [], []
    for name, module in peft_model.named_modules():
        clean = name.removeprefix("base_model.model.")
        if isinstance(module, ParamWrapper):
            # Nested wrappers adapt several tensors of one module; name each by the unwrapped module path.
            owner = clean.replace(".base_layer", "")
            parameters.append(f"{owner}.{module.parameter_name}")
        elif isinstance(module, LoraLayer):
            modules.append(clean)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())
    return AdapterSummary(tuple(modules), tuple(sorted(parameters)), trainable, total)


@contextlib.contextmanager
def expected_rank_pattern_warning_silenced(lora_config):
    """peft 0.21 checks rank_pattern keys against targeted modules only and warns that keys for parameters matched
    nothing, although it applies them. ``build_lora_config`` no longer writes such keys (its rank_pattern names
    modules only), so this is a no-op for its configs; kept for callers with older configs."""
    keys = sorted(lora_config.rank_pattern or {})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=re.escape(
            f"The following rank_pattern keys did not match any targeted module and were ignored: {keys}"))
        yield
