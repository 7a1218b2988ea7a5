"""GPU memory for LoRA training of the student, from exact parameter counts and a stated activation model.

Parameter counts come from the real model class built on the meta device (no memory, no download) with the real
peft adapters attached, so they are exact. The activation part is an estimate whose every term is spelled out in
``activation_terms``; it assumes gradient checkpointing at decoder-layer boundaries, bf16 activations, SDPA
attention without materialized scores, and TRL's fused LM head (no full-vocabulary logits).
"""

from __future__ import annotations

from dataclasses import dataclass, field

GIB = 1024**3

# Qwen/Qwen3-30B-A3B-Instruct-2507 (config.json of the release). All 48 layers are MoE layers.
QWEN3_30B_A3B = {
    "vocab_size": 151936,
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "moe_intermediate_size": 768,
    "num_hidden_layers": 48,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "tie_word_embeddings": False,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
}

# What nvidia-smi reports for an H100 80GB HBM3 (81,559 MiB).
H100_80GB_GIB = 81559 / 1024
# CUDA context, cuBLAS workspaces and allocator fragmentation: a rule-of-thumb reserve, not a measurement.
RUNTIME_RESERVE_GIB = 3.0

BF16 = 2
FP32 = 4
# fp32 adapter weight + fp32 gradient + AdamW's two fp32 moments.
BYTES_PER_TRAINABLE = FP32 + FP32 + 2 * FP32


@dataclass(frozen=True)
class ParameterCounts:
    base: int
    trainable: int
    trainable_attention: int
    trainable_experts: int


def meta_model(config_kwargs: dict):
    """The real Qwen3-MoE model class on the meta device: right names and shapes, no memory."""
    import torch
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    config = Qwen3MoeConfig(**config_kwargs)
    with torch.device("meta"):
        return Qwen3MoeForCausalLM(config)


def count_parameters(config_kwargs: dict, lora_r: int, lora_alpha: int, expert_r: int) -> ParameterCounts:
    """Exact counts: base weights of the meta model, and the trainable adapter that peft attaches to it."""
    from peft import get_peft_model

    from .lora import LoraSettings, build_lora_config, expected_rank_pattern_warning_silenced

    model = meta_model(config_kwargs)
    base = sum(p.numel() for p in model.parameters())
    config = build_lora_config(model, LoraSettings(r=lora_r, alpha=lora_alpha, expert_r=expert_r))
    # low_cpu_mem_usage keeps the adapters on the meta device too (rank 32 on all experts is 5 GB in fp32).
    with expected_rank_pattern_warning_silenced(config):
        peft_model = get_peft_model(model, config, low_cpu_mem_usage=True)
    attention = experts = 0
    for name, param in peft_model.named_parameters():
        if not param.requires_grad:
            continue
        if ".mlp.experts." in name:
            experts += param.numel()
        else:
            attention += param.numel()
    return ParameterCounts(base=base, trainable=attention + experts, trainable_attention=attention,
                           trainable_experts=experts)


@dataclass(frozen=True)
class Shape:
    """What the activation estimate needs to know about the model."""

    hidden: int
    layers: int
    q_dim: int
    kv_dim: int
    experts: int
    experts_per_token: int
    moe_intermediate: int
    lora_r: int
    expert_r: int

    @classmethod
    def from_config(cls, config: dict, lora_r: int, expert_r: int) -> Shape:
        head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
        return cls(
            hidden=config["hidden_size"],
            layers=config["num_hidden_layers"],
            q_dim=config["num_attention_heads"] * head_dim,
            kv_dim=config["num_key_value_heads"] * head_dim,
            experts=config["num_experts"],
            experts_per_token=config["num_experts_per_tok"],
            moe_intermediate=config["moe_intermediate_size"],
            lora_r=lora_r,
            expert_r=expert_r,
        )


def activation_terms(shape: Shape, tokens: int) -> dict[str, int]:
    """Bytes of the activation-side terms for ``tokens`` = batch x sequence length, with checkpointing.

    * checkpoints: each decoder layer keeps only its input (tokens x hidden, bf16).
    * one layer recomputed: during the backward pass one layer's forward is re-run and its tensors kept:
      norms, q/k/v (twice: before and after q/k-norm and rotary), attention output, LoRA rank-r intermediates,
      router probabilities (fp32), and per routed token-expert pair its input, gate/up output, activation and
      down output. Doubled for the gradients of the same tensors in flight.
    * folded expert weights: peft applies expert LoRA by forming W + B@A for the whole expert stack of a layer
      (gate_up and down, bf16) inside that layer's forward, and the backward produces a gradient of that size.
    """
    h, t = shape.hidden, tokens
    attention = t * (2 * h + 2 * (shape.q_dim + 2 * shape.kv_dim) + shape.q_dim) * BF16
    lora = t * shape.lora_r * 4 * BF16
    pairs = t * shape.experts_per_token
    moe = t * shape.experts * FP32 + pairs * (h + 3 * shape.moe_intermediate + h) * BF16
    expert_stack = shape.experts * (2 * shape.moe_intermediate * h + h * shape.moe_intermediate) * BF16
    return {
        "checkpointed layer inputs": shape.layers * t * h * BF16,
        "one layer recomputed (+ its gradients)": 2 * (attention + lora + moe),
        "folded expert weights W+BA (+ gradient)": 2 * expert_stack if shape.expert_r > 0 else 0,
    }


@dataclass
class MemoryBudget:
    rows: list[tuple[str, int, str]] = field(default_factory=list)  # (what, bytes, how it was computed)

    @property
    def total(self) -> int:
        return sum(size for _, size, _ in self.rows)

    def fits(self, capacity_gib: float) -> bool:
        return self.total <= capacity_gib * GIB

    def format(self, capacity_gib: float) -> str:
        width = max(len(what) for what, _, _ in self.rows)
        lines = [f"  {what:<{width}}  {size / GIB:7.2f} GiB   {how}" for what, size, how in self.rows]
        lines.append(f"  {'total':<{width}}  {self.total / GIB:7.2f} GiB")
        verdict = "fits" if self.fits(capacity_gib) else "does NOT fit"
        lines.append(f"  -> {verdict} in {capacity_gib:.1f} GiB (headroom {capacity_gib - self.total / GIB:+.2f} GiB)")
        return "\n".join(lines)


def estimate(counts: ParameterCounts, shape: Shape, batch_size: int, seq_len: int,
             weight_bytes: int = BF16, reserve_gib: float = RUNTIME_RESERVE_GIB) -> MemoryBudget:
    tokens = batch_size * seq_len
    budget = MemoryBudget()
    budget.rows.append(("base weights", counts.base * weight_bytes,
                        f"{counts.base:,} params x {weight_bytes} B"))
    budget.rows.append(("LoRA weights + grads + AdamW", counts.trainable * BYTES_PER_TRAINABLE,
                        f"{counts.trainable:,} params x {BYTES_PER_TRAINABLE} B (fp32 w, g, m, v)"))
    for what, size in activation_terms(shape, tokens).items():
        budget.rows.append((what, size, f"estimate, {batch_size} x {seq_len} tokens"))
    budget.rows.append(("CUDA context + allocator reserve", int(reserve_gib * GIB), "rule of thumb"))
    return budget
