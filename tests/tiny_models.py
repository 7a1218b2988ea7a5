"""Tiny random models and fixture data for the training tests (not a test module).

The models use the embedded SmolLM2 tokenizer's vocabulary so that real chat templates tokenize real text; the
network itself is a few thousand parameters wide so that a training step takes well under a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from prompt_distill.data import training_record

ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT / "example-data" / "multilingual.gold.tsv"


def gold_rows(count: int, start: int = 0) -> list[tuple[str, str]]:
    """(text, label) pairs from the example data's gold file."""
    rows = []
    for line in GOLD.read_text("utf-8").splitlines()[start:]:
        label, _, text = line.partition("\t")
        if text.strip():
            rows.append((text.strip(), label))
        if len(rows) == count:
            break
    return rows


def write_fixture_jsonl(path, count: int, start: int = 0) -> Path:
    """A training file in create_data.py's format, labels taken from the gold file."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as handle:
        for text, label in gold_rows(count, start):
            handle.write(json.dumps(training_record(text, label), ensure_ascii=False) + "\n")
    return path


def tiny_qwen3_moe(vocab_size: int, seed: int = 0):
    """Same module layout as Qwen3-30B-A3B (fused experts, mlp.gate router), a few thousand parameters wide.

    moe_intermediate is not hidden/2, so gate_up_proj (experts x 48 x 32) and down_proj (experts x 32 x 24) have
    different shapes and a swapped axis would show up.
    """
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.manual_seed(seed)
    config = Qwen3MoeConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, moe_intermediate_size=24,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
        num_experts=4, num_experts_per_tok=2, tie_word_embeddings=False, max_position_embeddings=512,
    )
    return Qwen3MoeForCausalLM(config)


def tiny_llama(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def save_model_dir(model, tokenizer, path, chat_template: str | None = None) -> Path:
    """A local model folder that resolve_model / from_pretrained accept like a downloaded model."""
    path = Path(path)
    model.save_pretrained(path)
    if chat_template is not None:
        tokenizer = _with_template(tokenizer, chat_template)
    tokenizer.save_pretrained(path)
    return path


def _with_template(tokenizer, chat_template: str):
    import copy

    clone = copy.deepcopy(tokenizer)
    clone.chat_template = chat_template
    return clone


def qwen3_instruct_2507_template() -> str:
    """The Qwen3-Instruct-2507 chat template as TRL ships it for byte-for-byte recognition."""
    from trl.chat_template_utils import qwen3_instruct_2507_chat_template

    return qwen3_instruct_2507_chat_template


def tokenizer_with_template(tokenizer, chat_template: str | None):
    return tokenizer if chat_template is None else _with_template(tokenizer, chat_template)


def fast_config(output_dir, **overrides):
    """Fast CPU settings; everything else stays at the project's defaults."""
    from prompt_distill.training.config import PromptDistillationConfig

    settings = dict(
        output_dir=str(output_dir), report_to="none", max_steps=1, per_device_train_batch_size=2,
        gradient_accumulation_steps=1, save_strategy="no", use_cpu=True, disable_tqdm=True, learning_rate=1e-2,
        warmup_steps=0, dataloader_num_workers=0,
    )
    settings.update(overrides)
    return PromptDistillationConfig(**settings)

