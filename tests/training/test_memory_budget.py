"""The memory budget: exact counts from the meta model against closed forms, and the arithmetic of the estimate."""

import pytest

from prompt_distill.training.config import DEFAULT_EXPERT_LORA_R
from prompt_distill.training.memory_budget import (
    BF16,
    GIB,
    H100_80GB_GIB,
    QWEN3_30B_A3B,
    ParameterCounts,
    Shape,
    activation_terms,
    count_parameters,
    estimate,
)

C = QWEN3_30B_A3B
H, L, E = C["hidden_size"], C["num_hidden_layers"], C["num_experts"]
Q, KV = C["num_attention_heads"] * C["head_dim"], C["num_key_value_heads"] * C["head_dim"]
INTER, V = C["moe_intermediate_size"], C["vocab_size"]


def closed_form_base() -> int:
    attention = H * Q + 2 * H * KV + Q * H + 2 * C["head_dim"]  # q, k, v, o, q_norm, k_norm
    experts = E * (2 * INTER * H + H * INTER) + E * H  # gate_up, down, router
    return 2 * V * H + L * (attention + experts + 2 * H) + H  # embed, lm_head, layers (+2 norms), final norm


def closed_form_lora(r: int, expert_r: int) -> int:
    attention = r * (H + Q) + 2 * r * (H + KV) + r * (Q + H)
    experts = E * expert_r * (H + 2 * INTER) + E * expert_r * (INTER + H)
    return L * (attention + experts)


@pytest.fixture(scope="module")
def counts_by_rank():
    return {rank: count_parameters(C, 32, 16, rank) for rank in (0, DEFAULT_EXPERT_LORA_R, 32)}


def test_meta_model_counts_match_the_closed_forms(counts_by_rank):
    for rank, counts in counts_by_rank.items():
        assert counts.base == closed_form_base()
        assert counts.trainable == closed_form_lora(32, rank)
        assert counts.trainable == counts.trainable_attention + counts.trainable_experts
    assert counts_by_rank[0].trainable_experts == 0
    # The figure: rank 32 on all 128 experts x 48 layers is about 1.29 B trainable parameters.
    assert 1.28e9 < counts_by_rank[32].trainable < 1.30e9
    assert 30.0e9 < counts_by_rank[32].base < 31.0e9  # "30B"


def test_budget_rows_are_the_stated_arithmetic():
    counts = ParameterCounts(base=1000, trainable=10, trainable_attention=4, trainable_experts=6)
    shape = Shape.from_config(C, 32, 8)
    budget = estimate(counts, shape, batch_size=2, seq_len=100, reserve_gib=1.0)
    rows = {what: size for what, size, _ in budget.rows}
    assert rows["base weights"] == 1000 * BF16
    assert rows["LoRA weights + grads + AdamW"] == 10 * 16
    assert rows["checkpointed layer inputs"] == L * 200 * H * BF16
    assert rows["CUDA context + allocator reserve"] == GIB
    assert budget.total == sum(rows.values())


def test_activations_grow_linearly_with_tokens_and_expert_folding_does_not():
    shape = Shape.from_config(C, 32, 8)
    small, large = activation_terms(shape, 1000), activation_terms(shape, 4000)
    for term in ("checkpointed layer inputs", "one layer recomputed (+ its gradients)"):
        assert large[term] == 4 * small[term]
    folded = "folded expert weights W+BA (+ gradient)"
    assert large[folded] == small[folded] == 2 * E * 3 * INTER * H * BF16
    assert activation_terms(Shape.from_config(C, 32, 0), 1000)[folded] == 0


def test_default_expert_rank_fits_one_h100_and_the_reference_rank_does_not(counts_by_rank):
    def total(rank):
        return estimate(counts_by_rank[rank], Shape.from_config(C, 32, rank), 4, 2048)

    assert total(DEFAULT_EXPERT_LORA_R).fits(H100_80GB_GIB)
    assert H100_80GB_GIB * GIB - total(DEFAULT_EXPERT_LORA_R).total > 5 * GIB, "keep headroom for the estimate"
    assert not total(32).fits(H100_80GB_GIB)
