"""Adapters saved by PEFT on a tiny Qwen3-MoE, checked with vLLM 0.33's own LoRA validation and loader (CPU)."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("vllm")

import torch  # noqa: E402
from peft import LoraConfig  # noqa: E402
from vllm.config.lora import LoRAConfig  # noqa: E402
from vllm.lora.lora_model import LoRAModel  # noqa: E402
from vllm.lora.peft_helper import PEFTHelper  # noqa: E402
from vllm.model_executor.models.qwen3_moe import Qwen3MoeForCausalLM as VLLMQwen3Moe  # noqa: E402

from prompt_distill.engines.vllm_lora import (  # noqa: E402
    AdapterNotServable,
    allowed_lora_ranks,
    largest_rank,
    round_up_rank,
    vllm_lora_settings,
)
from tests.vllm_tiny_models import save_adapter  # noqa: E402

pytestmark = pytest.mark.vllm

NUM_EXPERTS = 4


def expected_lora_modules() -> set[str]:
    """What vLLM's LoRA worker expects for Qwen3-MoE with enable_mixed_moe_lora_format (see its _load_adapter).

    The supported modules are the model's linear layers (qkv_proj, o_proj, the router gate), its embeddings and
    its experts; packed modules expand to their parts, the experts to per-expert 2-D names plus ``experts``.
    """
    packed = VLLMQwen3Moe.packed_modules_mapping["qkv_proj"]
    per_expert = {f"experts.{i}.{name}" for i in range(NUM_EXPERTS) for name in ("gate_proj", "up_proj", "down_proj")}
    return {*packed, "o_proj", "gate", "embed_tokens", "lm_head", "experts", *per_expert}


def copy_with_config(adapter_dir, target, **changes):
    shutil.copytree(adapter_dir, target)
    path = target / "adapter_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))
    return target


# -- the project's adapter ---------------------------------------------------------------------------------
def test_settings_for_the_trained_moe_adapter(moe_adapter_dir, tiny_moe_dir):
    settings = vllm_lora_settings(moe_adapter_dir)
    assert (settings.largest_rank, settings.max_lora_rank, settings.fused_moe_experts) == (32, 32, True)
    assert settings.base_model == str(tiny_moe_dir)
    assert settings.engine_kwargs() == {
        "enable_lora": True, "max_lora_rank": 32, "max_loras": 1, "enable_mixed_moe_lora_format": True}  # fmt: skip
    request = settings.lora_request()
    assert (request.lora_int_id, request.is_3d_lora_weight, request.lora_path) == (1, True, str(moe_adapter_dir))


def test_vllm_validates_the_derived_rank_and_rejects_a_smaller_one(moe_adapter_dir):
    helper = PEFTHelper.from_local_dir(str(moe_adapter_dir), max_position_embeddings=4096)
    derived = vllm_lora_settings(moe_adapter_dir).max_lora_rank
    helper.validate_legal(LoRAConfig(max_lora_rank=derived, enable_mixed_moe_lora_format=True))
    with pytest.raises(ValueError, match="greater than max_lora_rank"):
        helper.validate_legal(LoRAConfig(max_lora_rank=16, enable_mixed_moe_lora_format=True))


def load_with_vllm(adapter_dir, monkeypatch) -> LoRAModel:
    """vLLM's loader as its LoRA worker calls it, on CPU."""
    # vLLM pins CPU copies for fast upload; pinning needs a CUDA driver, which this lane has not.
    monkeypatch.setattr("vllm.lora.lora_model.PIN_MEMORY", False)
    return LoRAModel.from_local_checkpoint(
        str(adapter_dir),
        expected_lora_modules(),
        PEFTHelper.from_local_dir(str(adapter_dir), max_position_embeddings=4096),
        lora_model_id=1,
        device="cpu",
        dtype=torch.float32,
        weights_mapper=VLLMQwen3Moe.hf_to_vllm_mapper.get_rename_mapper(),
    )


def test_vllm_loads_the_fused_expert_adapter_on_cpu(moe_adapter_dir, monkeypatch):
    lora = load_with_vllm(moe_adapter_dir, monkeypatch)
    layer = "model.layers.0"
    down = lora.get_lora(f"{layer}.mlp.experts")  # PEFT's outer ParamWrapper: down_proj
    gate_up = lora.get_lora(f"{layer}.mlp.experts.base_layer")  # the inner one: gate_up_proj
    attention = lora.get_lora(f"{layer}.self_attn.q_proj")
    # rank_pattern reached vLLM: 8 per expert, 32 on attention, each with PEFT's alpha/r scaling.
    assert (down.rank, gate_up.rank, attention.rank) == (8, 8, 32)
    assert (down.scaling, attention.scaling) == (16 / 8, 16 / 32)
    # The 3-D layout vLLM converts: (experts*rank, in) for A, (out, experts*rank) for B.
    assert tuple(gate_up.lora_a.shape) == (NUM_EXPERTS * 8, 32)
    assert tuple(gate_up.lora_b.shape) == (2 * 16, NUM_EXPERTS * 8)
    assert tuple(down.lora_a.shape) == (NUM_EXPERTS * 8, 16)


def test_loader_refuses_an_unexpected_module(moe_adapter_dir, monkeypatch):
    monkeypatch.setattr("vllm.lora.lora_model.PIN_MEMORY", False)
    helper = PEFTHelper.from_local_dir(str(moe_adapter_dir), max_position_embeddings=4096)
    with pytest.raises(ValueError, match="expected target modules"):
        LoRAModel.from_local_checkpoint(
            str(moe_adapter_dir), expected_lora_modules() - {"o_proj"}, helper, lora_model_id=1, device="cpu"
        )


# -- rank derivation ----------------------------------------------------------------------------------------
def test_allowed_ranks_come_from_vllm():
    allowed = allowed_lora_ranks()
    assert allowed[:4] == (1, 8, 16, 32) and 512 in allowed
    for rank in allowed:
        LoRAConfig(max_lora_rank=rank)
    with pytest.raises(ValueError):
        LoRAConfig(max_lora_rank=24)


@pytest.mark.parametrize(("rank", "expected"), [(1, 1), (2, 8), (8, 8), (24, 32), (33, 64), (300, 320), (512, 512)])
def test_round_up_rank(rank, expected):
    assert round_up_rank(rank, allowed_lora_ranks()) == expected


def test_rank_above_vllms_largest_is_not_servable():
    with pytest.raises(AdapterNotServable, match="above vLLM's largest"):
        round_up_rank(1024, allowed_lora_ranks())


def test_peft_doubled_gate_up_rank_sets_max_lora_rank(tiny_moe_dir, tmp_path, monkeypatch):
    """transformers-4 style targets: PEFT fuses gate_proj + up_proj into gate_up_proj and doubles its rank."""
    config = LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "gate_proj", "up_proj",
                                                                                 "down_proj"])  # fmt: skip
    adapter = save_adapter(tiny_moe_dir, tmp_path / "v4-names", config)
    saved = json.loads((adapter / "adapter_config.json").read_text())
    assert 32 in saved["rank_pattern"].values()
    assert largest_rank(saved) == 32
    settings = vllm_lora_settings(adapter)
    assert (settings.max_lora_rank, settings.fused_moe_experts) == (32, True)
    lora = load_with_vllm(adapter, monkeypatch)
    assert lora.get_lora("model.layers.1.mlp.experts.base_layer").rank == 32  # gate_up_proj, doubled
    assert lora.get_lora("model.layers.1.mlp.experts").rank == 16  # down_proj


# -- adapters vLLM cannot serve, each with its reason --------------------------------------------------------
def test_dora_is_not_servable(moe_adapter_dir, tmp_path):
    adapter = copy_with_config(moe_adapter_dir, tmp_path / "dora", use_dora=True)
    with pytest.raises(AdapterNotServable, match="DoRA"):
        vllm_lora_settings(adapter)


def test_trained_lm_head_is_not_servable(moe_adapter_dir, tmp_path):
    adapter = copy_with_config(moe_adapter_dir, tmp_path / "save", modules_to_save=["lm_head"])
    with pytest.raises(AdapterNotServable, match="modules_to_save"):
        vllm_lora_settings(adapter)


def test_router_parameter_is_not_servable(moe_adapter_dir, tmp_path):
    targets = ["mlp.experts.down_proj", "mlp.experts.gate_up_proj", "mlp.gate.weight"]
    adapter = copy_with_config(moe_adapter_dir, tmp_path / "router", target_parameters=targets)
    with pytest.raises(AdapterNotServable, match=r"mlp\.gate\.weight"):
        vllm_lora_settings(adapter)


def test_half_of_the_expert_pair_is_not_servable(moe_adapter_dir, tmp_path):
    adapter = copy_with_config(moe_adapter_dir, tmp_path / "half", target_parameters=["mlp.experts.down_proj"])
    with pytest.raises(AdapterNotServable, match="pair"):
        vllm_lora_settings(adapter)


def test_missing_or_broken_adapter_is_a_user_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        vllm_lora_settings(tmp_path / "nope")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text('{\n  "r": 8,\n  oops\n}')
    with pytest.raises(ValueError, match=r"adapter_config\.json:3: not valid JSON"):
        vllm_lora_settings(broken)
