"""LoRA targets on a tiny Qwen3-MoE with the real module layout: adapters where intended, never on the router,
training moves only adapter weights, and save -> reload / merge reproduce the logits."""

import warnings

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora.layer import ParamWrapper
from transformers import AutoModelForCausalLM

from prompt_distill.training.config import ScriptArguments
from prompt_distill.training.lora import LoraSettings, LoraTargetError, build_lora_config, summarize_adapters
from prompt_distill.training.run import build_trainer, prepare_data
from tests.tiny_models import fast_config, save_model_dir, tiny_llama, tiny_qwen3_moe, write_fixture_jsonl

LAYERS = (0, 1)
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")


def expected_trainable(config, r: int, expert_r: int) -> int:
    """Closed form from the config: one (in + out) x rank pair per adapted matrix, per expert for the experts."""
    h, heads, kv, hd = config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.head_dim
    q_dim, kv_dim, inter, experts = heads * hd, kv * hd, config.moe_intermediate_size, config.num_experts
    attention = r * (h + q_dim) + 2 * r * (h + kv_dim) + r * (q_dim + h)
    expert = experts * expert_r * (h + 2 * inter) + experts * expert_r * (inter + h)
    return config.num_hidden_layers * (attention + expert)


def test_auto_targets_attention_and_fused_experts_but_not_the_router():
    model = tiny_qwen3_moe(vocab_size=256)
    peft_model = get_peft_model(model, build_lora_config(model, LoraSettings(r=4, alpha=16, expert_r=2)))
    summary = summarize_adapters(peft_model)

    assert set(summary.modules) == {f"model.layers.{i}.self_attn.{p}" for i in LAYERS for p in ATTENTION}
    assert set(summary.parameters) == {
        f"model.layers.{i}.mlp.experts.{p}" for i in LAYERS for p in ("gate_up_proj", "down_proj")
    }
    for layer in peft_model.base_model.model.model.layers:
        assert not layer.mlp.gate.weight.requires_grad
        assert type(layer.mlp.gate).__name__ == "Qwen3MoeTopKRouter"  # not wrapped by a LoRA layer
    assert summary.trainable_parameters == expected_trainable(model.config, r=4, expert_r=2)


def test_expert_rank_is_per_expert_and_not_doubled_for_gate_up():
    model = tiny_qwen3_moe(vocab_size=256)
    config = model.config
    peft_model = get_peft_model(model, build_lora_config(model, LoraSettings(r=4, expert_r=2)))
    wrappers = {m.parameter_name: m for m in peft_model.modules() if isinstance(m, ParamWrapper)}
    experts, h, inter = config.num_experts, config.hidden_size, config.moe_intermediate_size
    gate_up, down = wrappers["gate_up_proj"], wrappers["down_proj"]
    assert gate_up.r["default"] == down.r["default"] == 2
    assert tuple(gate_up.lora_A["default"].weight.shape) == (2 * experts, h)
    assert tuple(gate_up.lora_B["default"].weight.shape) == (2 * inter, 2 * experts)
    assert tuple(down.lora_A["default"].weight.shape) == (2 * experts, inter)
    assert tuple(down.lora_B["default"].weight.shape) == (h, 2 * experts)


def test_peft_all_linear_would_adapt_the_router():
    """Why we never pass "all-linear" on this architecture: peft maps it to the router's weight too."""
    model = tiny_qwen3_moe(vocab_size=256)
    summary = summarize_adapters(get_peft_model(model, LoraConfig(r=4, target_modules="all-linear")))
    assert "model.layers.0.mlp.gate.weight" in summary.parameters


@pytest.mark.parametrize("targets", ["all-linear", "q_proj,gate_proj", "q_proj,up_proj,down_proj"])
def test_router_or_v4_expert_names_are_refused_on_fused_moe(targets):
    model = tiny_qwen3_moe(vocab_size=256)
    with pytest.raises(LoraTargetError):
        build_lora_config(model, LoraSettings(target_modules=targets))


def test_expert_adapters_require_zero_dropout_and_can_be_switched_off():
    model = tiny_qwen3_moe(vocab_size=256)
    with pytest.raises(LoraTargetError, match="lora_dropout"):
        build_lora_config(model, LoraSettings(dropout=0.05))
    attention_only = build_lora_config(model, LoraSettings(dropout=0.05, expert_r=0))
    summary = summarize_adapters(get_peft_model(model, attention_only))
    assert summary.parameters == ()
    assert {name.rsplit(".", 1)[-1] for name in summary.modules} == set(ATTENTION)


def test_dense_model_auto_targets_every_linear_layer_but_the_lm_head():
    model = tiny_llama(vocab_size=256)
    summary = summarize_adapters(get_peft_model(model, build_lora_config(model, LoraSettings(r=4))))
    leaves = {name.rsplit(".", 1)[-1] for name in summary.modules}
    assert leaves == {*ATTENTION, "gate_proj", "up_proj", "down_proj"}
    assert not any("lm_head" in name for name in summary.modules)


# -- training through the project's trainer -----------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_moe(tmp_path_factory, smollm2_tokenizer):
    """Two optimizer steps on a tiny Qwen3-MoE through prepare_data + build_trainer (real TRL and peft)."""
    root = tmp_path_factory.mktemp("moe")
    model = tiny_qwen3_moe(vocab_size=len(smollm2_tokenizer))
    base_dir = save_model_dir(model, smollm2_tokenizer, root / "base")
    data_file = write_fixture_jsonl(root / "train.jsonl", 8)
    script_args = ScriptArguments(base_model=str(base_dir), data_file=str(data_file), split="all",
                                  lora_r=4, expert_lora_r=2)
    config = fast_config(root / "out", max_steps=2, per_device_train_batch_size=4)
    data = prepare_data(script_args, config, smollm2_tokenizer)
    trainer = build_trainer(script_args, config, smollm2_tokenizer, data, model=model)
    before = {name: param.detach().clone() for name, param in trainer.model.named_parameters()}
    trainer.train()
    return trainer, before, base_dir, root


def test_training_changes_only_adapter_weights(trained_moe):
    trainer, before, _, _ = trained_moe
    after = dict(trainer.model.named_parameters())
    changed = {name for name, value in before.items() if not torch.equal(value, after[name].detach())}
    trainable = {name for name, param in after.items() if param.requires_grad}
    assert changed, "nothing was trained"
    assert changed <= trainable
    assert all(".lora_" in name for name in trainable)
    # B starts at zero, so step 1 moves B only and step 2 moves A as well: every adapter matrix took part.
    assert changed == trainable
    assert not any(".mlp.gate." in name for name in trainable)


def test_router_aux_loss_is_off(trained_moe):
    trainer = trained_moe[0]
    assert trainer.aux_loss_enabled is False
    assert trainer.model.config.output_router_logits is False


def test_save_reload_and_merge_reproduce_logits(trained_moe):
    trainer, _, base_dir, root = trained_moe
    adapter_dir = root / "adapter"
    trainer.save_model(str(adapter_dir))
    inputs = torch.tensor([[5, 17, 300, 42, 7, 999, 3]])
    trained = trainer.model.eval()
    with torch.no_grad():
        expected = trained(input_ids=inputs).logits
        base_logits = AutoModelForCausalLM.from_pretrained(base_dir)(input_ids=inputs).logits
    assert not torch.allclose(expected, base_logits, atol=1e-4), "the adapter has no effect"

    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter_dir).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=inputs).logits, expected, rtol=0, atol=1e-5)
        merged = reloaded.merge_and_unload()
        torch.testing.assert_close(merged(input_ids=inputs).logits, expected, rtol=0, atol=1e-4)


# -- rank_pattern without peft's "did not match" warning, and dense MLP layers of a Qwen3-MoE -----------------
RANK_PATTERN_WARNING = "rank_pattern keys did not match any targeted module"


def lora_ranks(peft_model) -> dict[str, int]:
    """Rank of every adapter by the name of the module or parameter it adapts."""
    ranks = {}
    for name, module in peft_model.named_modules():
        if hasattr(module, "r") and "default" in getattr(module, "r", {}):
            clean = name.removeprefix("base_model.model.").replace(".base_layer", "")
            key = f"{clean}.{module.parameter_name}" if isinstance(module, ParamWrapper) else clean
            ranks[key] = module.r["default"]
    return ranks


def test_creating_and_reloading_an_moe_adapter_warns_about_no_rank_pattern_key(tmp_path):
    """peft 0.21 checks rank_pattern keys against targeted modules only (tuners_utils.inject_adapter), so a key
    meant for the expert parameters warned at creation and again at every PeftModel.from_pretrained."""
    model = tiny_qwen3_moe(vocab_size=256)
    model.save_pretrained(tmp_path / "base")
    config = build_lora_config(model, LoraSettings(r=4, alpha=16, expert_r=2))
    with warnings.catch_warnings(record=True) as created:
        warnings.simplefilter("always")
        peft_model = get_peft_model(model, config)
    assert [str(w.message) for w in created if RANK_PATTERN_WARNING in str(w.message)] == []
    ranks = lora_ranks(peft_model)
    peft_model.save_pretrained(tmp_path / "adapter")

    with warnings.catch_warnings(record=True) as reloaded_warnings:
        warnings.simplefilter("always")
        reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tmp_path / "base"),
                                             tmp_path / "adapter")
    assert [str(w.message) for w in reloaded_warnings if RANK_PATTERN_WARNING in str(w.message)] == []
    # the ranks are still 4 on attention and 2 per expert, before and after the reload
    assert lora_ranks(reloaded) == ranks
    assert {rank for name, rank in ranks.items() if ".self_attn." in name} == {4}
    assert {rank for name, rank in ranks.items() if ".experts." in name} == {2}


def test_an_expert_rank_equal_to_r_writes_no_rank_pattern():
    model = tiny_qwen3_moe(vocab_size=256)
    assert build_lora_config(model, LoraSettings(r=4, expert_r=4)).rank_pattern == {}
    assert build_lora_config(model, LoraSettings(r=4, expert_r=0)).rank_pattern == {}


def tiny_qwen3_moe_with_a_dense_layer():
    """Layer 0 is a dense MLP (Qwen3MoeMLP: gate_proj, up_proj, down_proj as nn.Linear), layer 1 a sparse block."""
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.manual_seed(0)
    config = Qwen3MoeConfig(
        vocab_size=256, hidden_size=32, intermediate_size=64, moe_intermediate_size=24, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_experts=4, num_experts_per_tok=2,
        tie_word_embeddings=False, max_position_embeddings=512, mlp_only_layers=[0],
    )
    return Qwen3MoeForCausalLM(config)


def test_dense_mlp_layers_of_an_moe_model_get_lora_under_auto(tmp_path):
    model = tiny_qwen3_moe_with_a_dense_layer()
    assert type(model.model.layers[0].mlp).__name__ == "Qwen3MoeMLP"
    model.save_pretrained(tmp_path / "base")
    peft_model = get_peft_model(model, build_lora_config(model, LoraSettings(r=4, alpha=16, expert_r=2)))
    ranks = lora_ranks(peft_model)
    dense = {f"model.layers.0.mlp.{p}.weight" for p in ("gate_proj", "up_proj", "down_proj")}
    assert dense <= set(ranks), sorted(ranks)
    assert {ranks[name] for name in dense} == {2}  # the feed-forward rank, as the experts of the other layers
    assert {f"model.layers.1.mlp.experts.{p}" for p in ("gate_up_proj", "down_proj")} <= set(ranks)
    assert not any(".mlp.gate." in name or name.endswith(".mlp.gate") for name in ranks)  # router left alone
    trainable = {name for name, param in peft_model.named_parameters() if param.requires_grad}
    assert any("layers.0.mlp.down_proj.lora_B" in name for name in trainable)

    # the dense adapters act, and survive save -> reload and merge
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "layers.0.mlp." in name and "lora_B" in name:
                param.normal_(0, 0.1)
    inputs = torch.tensor([[5, 17, 200, 42, 7]])
    peft_model.eval()
    with torch.no_grad():
        expected = peft_model(input_ids=inputs).logits
        base = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
        assert not torch.allclose(base(input_ids=inputs).logits, expected, atol=1e-4)
        peft_model.save_pretrained(tmp_path / "adapter")
        reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
        torch.testing.assert_close(reloaded(input_ids=inputs).logits, expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(reloaded.merge_and_unload()(input_ids=inputs).logits, expected, rtol=0, atol=1e-4)
