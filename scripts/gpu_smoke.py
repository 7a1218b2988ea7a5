#!/usr/bin/env python
"""A few bf16 + gradient-checkpointing LoRA steps on a tiny Qwen3-MoE, through train_sft_trl.py's code path.

The model has Qwen3-30B-A3B's module layout (fused experts, mlp.gate router, q/k-norm attention) at a small
size, the Qwen3-Instruct-2507 chat template, and the LoRA targets of the real run (attention + fused experts).
Prints the time per optimizer step and the peak GPU memory. ``--device cpu`` runs the same path in fp32 on a CPU
(a dry run of everything but CUDA).
"""

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM, TrainerCallback  # noqa: E402
from trl.chat_template_utils import qwen3_instruct_2507_chat_template  # noqa: E402

from prompt_distill.data import read_gold, read_sentences, training_record, write_jsonl  # noqa: E402
from prompt_distill.task import language_task  # noqa: E402
from prompt_distill.training.run import PromptDistillationConfig, ScriptArguments, run_training  # noqa: E402


class StepTimer(TrainerCallback):
    def __init__(self, device: str):
        self.device = device
        self.times: list[float] = []
        self._start = 0.0

    def _sync(self):
        if self.device == "cuda":
            torch.cuda.synchronize()

    def on_train_begin(self, args, state, control, **kwargs):
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def on_step_begin(self, args, state, control, **kwargs):
        self._sync()
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        self.times.append(time.perf_counter() - self._start)


# Qwen3's special tokens that its chat template writes (besides <|im_end|>, the end of turn, and <|endoftext|>, the
# padding); everything else is spelled in bytes.
ADDITIONAL_SPECIAL_TOKENS = ["<|im_start|>", "<think>", "</think>"]


def byte_level_tokenizer():
    """A byte-level BPE tokenizer with no merges (one token per UTF-8 byte) and Qwen3's special tokens, built in
    code: the smoke test needs no model hub and no embedded model (the GPU environment has neither)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {symbol: i for i, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=ADDITIONAL_SPECIAL_TOKENS)
    tokenizer.chat_template = qwen3_instruct_2507_chat_template
    return tokenizer


def tiny_model_dir(path: Path, vocab_size: int, args) -> Path:
    config = Qwen3MoeConfig(
        vocab_size=vocab_size, hidden_size=args.hidden_size, intermediate_size=2 * args.hidden_size,
        moe_intermediate_size=args.moe_intermediate_size, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, head_dim=args.hidden_size // args.heads,
        num_experts=args.experts, num_experts_per_tok=args.experts_per_token, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    Qwen3MoeForCausalLM(config).save_pretrained(path)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--per_device_train_batch_size", type=int, default=4)
    parser.add_argument("--hidden_size", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv_heads", type=int, default=2)
    parser.add_argument("--experts", type=int, default=32)
    parser.add_argument("--experts_per_token", type=int, default=4)
    parser.add_argument("--moe_intermediate_size", type=int, default=256)
    parser.add_argument("--expert_lora_r", type=int, default=8)
    parser.add_argument("--padding_free", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_smoke: no CUDA device visible (use --device cpu for the dry run).", file=sys.stderr)
        return 2

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gpu-smoke-"))
    tokenizer = byte_level_tokenizer()
    model_dir = tiny_model_dir(workdir / "model", len(tokenizer), args)
    tokenizer.save_pretrained(model_dir)
    sentences_file = ROOT / "example-data" / "multilingual.txt"
    gold = read_gold(sentences_file, language_task())
    texts = [text for text in read_sentences(sentences_file).texts if text in gold][: args.examples]
    data_file = workdir / "train.jsonl"
    write_jsonl(data_file, [training_record(text, gold[text]) for text in texts])

    timer = StepTimer(args.device)
    script_args = ScriptArguments(model_name=str(model_dir), data_file=str(data_file), split="all",
                                  lora_r=32, expert_lora_r=args.expert_lora_r)
    config = PromptDistillationConfig(
        output_dir=str(workdir / "out"), report_to="none", save_strategy="no", max_steps=args.steps,
        per_device_train_batch_size=args.per_device_train_batch_size, gradient_accumulation_steps=1,
        use_cpu=args.device == "cpu", padding_free=args.padding_free, disable_tqdm=True,
    )
    result = run_training(script_args, config, callbacks=[timer])

    model = result.trainer.model
    base_dtypes = sorted({str(p.dtype) for p in model.parameters() if not p.requires_grad})
    adapter_dtypes = sorted({str(p.dtype) for p in model.parameters() if p.requires_grad})
    devices = sorted({p.device.type for p in model.parameters()})
    losses = result.record["results"]["loss_history"]
    steady = timer.times[1:] or timer.times
    print("=" * 72)
    if args.device == "cuda":
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    print(f"bf16 mixed precision: {config.bf16}; gradient checkpointing: {config.gradient_checkpointing}; "
          f"padding-free: {args.padding_free}")
    print(f"base weights {base_dtypes}, adapter {adapter_dtypes}, on {devices}; "
          f"experts implementation {model.config._experts_implementation}, attention {model.config._attn_implementation}")
    print(f"step times (s): {', '.join(f'{t:.3f}' for t in timer.times)}")
    print(f"median step time after the first: {statistics.median(steady):.3f} s; "
          f"{result.record['results']['train_tokens_per_second']} train tokens/s")
    if args.device == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB allocated, "
              f"{torch.cuda.max_memory_reserved() / 2**20:.0f} MiB reserved")
    print(f"losses: {', '.join(f'{loss:.3f}' for loss in losses)}")
    healthy = all(math.isfinite(loss) for loss in losses) and devices == [args.device]
    if args.device == "cuda":
        healthy = healthy and base_dtypes == ["torch.bfloat16"] and adapter_dtypes == ["torch.float32"]
    print("gpu_smoke: OK" if healthy else "gpu_smoke: FAILED")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
