"""Tiny models, tokenizers and adapters built in code for the vLLM lane (no hub, a few seconds on CPU)."""

from __future__ import annotations

from pathlib import Path

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Like Qwen3 thinking-2507: the generation prompt opens the thought, the model writes only the closing tag.
CHATML_THINKING = CHATML.replace("<|im_start|>assistant\n{% endif %}", "<|im_start|>assistant\n<think>\n{% endif %}")
SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>", "<think>", "</think>", "[UNK]"]
WORDS = "system user assistant rules text classify hello world wie spät ist es final answer de en fr".split()  # noqa: SIM905


def build_tokenizer(chat_template: str = CHATML):
    """A word-level tokenizer: one token per word or special tag, so token counts can be checked by hand."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="[UNK]", eos_token="<|im_end|>", pad_token="<|im_end|>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[:4]})
    tokenizer.chat_template = chat_template
    return tokenizer


def build_tiny_qwen3_moe(folder: Path, head_dim: int = 8) -> Path:
    """A random 2-layer Qwen3-MoE (4 experts) with fused 3-D expert weights, as transformers 5 stores them.

    vLLM's CPU attention needs a common head size (32 and up): the real-engine lane passes ``head_dim=32``.
    """
    import torch
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.manual_seed(0)
    config = Qwen3MoeConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        moe_intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=head_dim,
        num_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=4096,
    )
    Qwen3MoeForCausalLM(config).save_pretrained(folder)
    build_tokenizer().save_pretrained(folder)
    return folder


def save_adapter(model_dir: Path, adapter_dir: Path, lora_config) -> Path:
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    get_peft_model(model, lora_config).save_pretrained(adapter_dir)
    return adapter_dir


def save_project_adapter(model_dir: Path, adapter_dir: Path, *, r: int = 32, expert_r: int = 8) -> Path:
    """An adapter configured exactly as training does (prompt_distill.training.lora), saved by PEFT."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from prompt_distill.training.lora import LoraSettings, build_lora_config

    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    config = build_lora_config(model, LoraSettings(r=r, alpha=16, dropout=0.0, expert_r=expert_r))
    return save_adapter(model_dir, adapter_dir, config)


class EngineArgsCaptured(Exception):
    """Raised where ``LLM.__init__`` hands its ``EngineArgs`` to the engine (where GPU work would start)."""

    def __init__(self, engine_args):
        super().__init__("captured")
        self.engine_args = engine_args


def stop_at_engine_construction(monkeypatch) -> None:
    """Let the real ``LLM.__init__`` run up to engine construction, then raise ``EngineArgsCaptured``."""
    import vllm.entrypoints.llm as llm_module
    from vllm.v1.engine.llm_engine import LLMEngine

    assert llm_module.LLMEngine is LLMEngine  # the class LLM.__init__ calls is the one patched

    def capture(engine_args, usage_context=None):
        raise EngineArgsCaptured(engine_args)

    monkeypatch.setattr(LLMEngine, "from_engine_args", staticmethod(capture))
