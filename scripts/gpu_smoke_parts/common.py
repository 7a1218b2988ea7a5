"""What both parts of the smoke share: the byte-level tokenizer, step timing, peak memory and the list of checks."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parents[2]
GIB = 1024**3
# Dense bf16 tensor-core peak without sparsity (NVIDIA's data sheets): H100 SXM and H200 both 989.4 TFLOP/s.
# An H100 PCIe is lower (756); any other card gets no MFU.
PEAK_BF16_FLOPS = {"H100 PCIe": 756e12, "H100": 989.4e12, "H200": 989.4e12}

# Qwen3's special tokens that its chat template writes (besides <|im_end|>, the end of turn, and <|endoftext|>, the
# padding); everything else is spelled in bytes.
ADDITIONAL_SPECIAL_TOKENS = ["<|im_start|>", "<think>", "</think>"]


def byte_level_tokenizer():
    """A byte-level BPE tokenizer with no merges (one token per UTF-8 byte) and Qwen3's special tokens, built in
    code: the smoke test needs no model hub and no embedded model (the GPU environment has neither)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from trl.chat_template_utils import qwen3_instruct_2507_chat_template

    vocab = {symbol: i for i, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=ADDITIONAL_SPECIAL_TOKENS)
    tokenizer.chat_template = qwen3_instruct_2507_chat_template
    return tokenizer


def gold_texts(count: int) -> list[str]:
    """The first ``count`` sentences of the example data that have a gold label (distinct, non-blank)."""
    from prompt_distill.data import read_gold, read_sentences
    from prompt_distill.task import language_task

    source = ROOT / "example-data" / "multilingual.txt"
    gold = read_gold(source, language_task())
    texts = list(dict.fromkeys(text for text in read_sentences(source).texts if text in gold))
    return texts[:count]


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> tuple[float, float] | None:
    """(allocated, reserved) peak since the last reset, GiB; None on CPU."""
    if device != "cuda":
        return None
    return torch.cuda.max_memory_allocated() / GIB, torch.cuda.max_memory_reserved() / GIB


def describe_peak(device: str) -> str:
    peak = peak_gib(device)
    if peak is None:
        return "peak GPU memory: n/a on CPU"
    return f"peak GPU memory: {peak[0]:.2f} GiB allocated, {peak[1]:.2f} GiB reserved (torch allocator)"


def peak_flops(device: str) -> float | None:
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    for key, flops in PEAK_BF16_FLOPS.items():  # "H100 PCIe" before "H100"
        if key in name:
            return flops
    return None


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step (synchronised on CUDA), and the peak memory from the start of training."""

    def __init__(self, device: str):
        self.device = device
        self.times: list[float] = []
        self._start = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        reset_peak(self.device)

    def on_step_begin(self, args, state, control, **kwargs):
        synchronize(self.device)
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        synchronize(self.device)
        self.times.append(time.perf_counter() - self._start)

    def steady(self) -> list[float]:
        """Step times after the first (which pays for kernel selection and allocator growth)."""
        return self.times[1:] or self.times

    def describe(self) -> str:
        return (f"step times (s): {', '.join(f'{t:.3f}' for t in self.times)}; median after the first "
                f"{statistics.median(self.steady()):.3f} s")


@dataclass
class Checks:
    """Named pass/fail results; the smoke prints each and ends with one OK or FAILED line."""

    results: list[tuple[str, bool, str]] = field(default_factory=list)

    def add(self, name: str, passed: bool, detail: str = "") -> bool:
        self.results.append((name, bool(passed), detail))
        print(f"[check] {'ok  ' if passed else 'FAIL'} {name}" + (f": {detail}" if detail else ""), flush=True)
        return bool(passed)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(passed for _, passed, _ in self.results)

    def failed(self) -> list[str]:
        return [name for name, passed, _ in self.results if not passed]


def banner(title: str) -> None:
    print("=" * 100 + f"\n{title}\n" + "=" * 100, flush=True)
