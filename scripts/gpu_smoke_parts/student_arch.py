"""Part B: the real student architecture (Qwen3-30B-A3B-Instruct-2507's config) with random weights made on the device.

Nothing is downloaded and nothing passes through the CPU or the disk: the model is built under
``torch.device("cuda")`` in bf16 with transformers' weight initialisation switched off, then every tensor is filled
in place on the GPU (normal(0, initializer_range), norms 1). The project's LoRA (training/lora.py, default ranks)
goes on through ``build_trainer(model=...)``, the function run_training uses, with PromptDistillationConfig's defaults
(4 examples per device x 4 accumulation steps, gradient checkpointing, bf16, padding-free). Reported: peak memory
against prompt_distill.training.memory_budget's prediction, step time, trained tokens/s, MFU, and the requests/s of a
batch of classify calls through the transformers engine (prompt_distill/engines/hf.py) on the trained model.

FLOPs. N = the weights one token multiplies with: attention q/k/v/o, the router, the 8 active experts' gate/up/down
and the LM head (embeddings are a lookup). A forward costs F = 2N + 2 x layers x q_dim x s per token (s: the
sequence length the token attends over, causal mean s/2 for QK^T and for AV). 6N per token is wrong for LoRA on a
frozen base: the backward computes activation gradients (about F) but no weight gradients for the base (the
adapters' are negligible), so the model FLOPs of a training token are 2F; gradient checkpointing recomputes the
forward once more, so the hardware does 3F. MFU = 2F x tokens/s / peak; HFU = 3F x tokens/s / peak, with the dense
bf16 peak of the card (H100 SXM and H200: 989.4 TFLOP/s).
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import statistics
import time
from pathlib import Path

import torch

from .common import (
    GIB,
    Checks,
    StepTimer,
    banner,
    byte_level_tokenizer,
    gold_texts,
    peak_flops,
    peak_gib,
    reset_peak,
    synchronize,
)

# The CPU dry run: the same code on a shrunk config (fp32), the vocabulary cut to the byte-level tokenizer's.
CPU_SHRINK = {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "num_experts": 8,
              "num_experts_per_tok": 2}
BIG_CARD_GIB = 100  # above this (an H200) the reference's expert rank 32 is tried too
REFERENCE_EXPERT_R = 32


def add_arguments(group) -> None:
    group.add_argument("--b_steps", type=int, default=3, help="Optimizer steps at the default batch "
                       "(4 per device x 4 accumulation steps = 16 examples each).")
    group.add_argument("--b_mean_tokens", type=int, default=66, help="Cap on an example's tokens (chat template "
                       "+ sentence + label), like the language-ID data's 66-token mean; sentences are cut to fit.")
    group.add_argument("--b_long_tokens", type=int, default=None, help="One more micro-step of 4 sequences of this "
                       "many tokens, the memory budget's worst case (default: 2048 on CUDA, 128 on CPU; 0: skip).")
    group.add_argument("--b_classify_requests", type=int, default=128, help="classify calls timed after training.")
    group.add_argument("--b_expert_ranks", default="auto", help="Expert LoRA ranks to run, comma-separated; auto: "
                       f"the default, plus {REFERENCE_EXPERT_R} on a card with more than {BIG_CARD_GIB} GiB.")


def student_config(device: str) -> dict:
    from prompt_distill.training.memory_budget import QWEN3_30B_A3B

    return dict(QWEN3_30B_A3B) if device == "cuda" else {**QWEN3_30B_A3B, **CPU_SHRINK}


def expert_ranks(args, default_rank: int) -> list[int]:
    if args.b_expert_ranks != "auto":
        return [int(item) for item in args.b_expert_ranks.split(",") if item.strip()]
    ranks = [default_rank]
    if args.device == "cuda" and torch.cuda.get_device_properties(0).total_memory / GIB > BIG_CARD_GIB:
        ranks.append(REFERENCE_EXPERT_R)
    return ranks


def random_model(config_kwargs: dict, tokenizer, device: str, dtype):
    """Qwen3MoeForCausalLM built directly on ``device`` in ``dtype``, filled with random numbers there."""
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # an older transformers: the default initialisation runs (slower, same result)
        no_init_weights = contextlib.nullcontext
    config = Qwen3MoeConfig(**config_kwargs, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    with torch.device(device), no_init_weights():
        model = Qwen3MoeForCausalLM._from_config(config, dtype=dtype, attn_implementation="sdpa")
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.fill_(1.0)
            else:
                parameter.normal_(0.0, config.initializer_range, generator=generator)
    return model


def active_matmul_parameters(config: dict) -> int:
    """N: weights one token multiplies with (see the module docstring)."""
    h, layers = config["hidden_size"], config["num_hidden_layers"]
    q_dim = config["num_attention_heads"] * config["head_dim"]
    kv_dim = config["num_key_value_heads"] * config["head_dim"]
    attention = h * q_dim + 2 * h * kv_dim + q_dim * h
    router = h * config["num_experts"]
    experts = config["num_experts_per_tok"] * 3 * h * config["moe_intermediate_size"]
    return layers * (attention + router + experts) + config["vocab_size"] * h


def forward_flops_per_token(config: dict, mean_sequence: float) -> float:
    q_dim = config["num_attention_heads"] * config["head_dim"]
    return 2 * active_matmul_parameters(config) + 2 * config["num_hidden_layers"] * q_dim * mean_sequence


def short_examples(tokenizer, count: int, cap: int) -> list[tuple[str, str]]:
    """(text, gold label) pairs, each text cut (at a character) so that its training example has at most ``cap``
    tokens; the example data's sentences repeat when ``count`` exceeds them (the numbering keeps them distinct)."""
    from prompt_distill.data import read_gold
    from prompt_distill.student_framing import chat_ids
    from prompt_distill.task import language_task

    from .common import ROOT

    gold = read_gold(ROOT / "example-data" / "multilingual.txt", language_task())
    texts = gold_texts(len(gold))
    overhead = len(chat_ids(tokenizer, [{"role": "user", "content": "0000 "},
                                        {"role": "assistant", "content": "en"}], add_generation_prompt=False))
    budget = max(cap - overhead, 8)
    examples = []
    for index in range(count):
        text = texts[index % len(texts)]
        kept, size = [], 0
        for character in text:
            size += len(character.encode())
            if size > budget:
                break
            kept.append(character)
        examples.append((f"{index:04d} " + "".join(kept).strip(), gold[text]))
    return examples


def build(args, rank: int, tokenizer_dir: Path, data_file: Path, workdir: Path, model, timer):
    """build_trainer (run_training's own) with the prebuilt model, the defaults but a few steps and no wandb."""
    from prompt_distill.models import load_tokenizer
    from prompt_distill.training.config import PromptDistillationConfig, ScriptArguments
    from prompt_distill.training.run import build_trainer, describe_batch, prepare_data

    script_args = ScriptArguments(base_model=str(tokenizer_dir), data_file=str(data_file), split="all",
                                  expert_lora_r=rank)
    config = PromptDistillationConfig(output_dir=str(workdir / f"out-r{rank}"), report_to="none", save_strategy="no",
                                      max_steps=args.b_steps, use_cpu=args.device == "cpu", disable_tqdm=True)
    tokenizer = load_tokenizer(str(tokenizer_dir))
    data = prepare_data(script_args, config, tokenizer)
    trainer = build_trainer(script_args, config, tokenizer, data, model=model, callbacks=[timer])
    print(f"[B] {describe_batch(trainer)}", flush=True)
    return script_args, config, tokenizer, data, trainer


def long_step(args, trainer, length: int) -> tuple[float, float, tuple[float, float] | None]:
    """One micro-step (forward, backward, AdamW step) on 4 rows of ``length`` tokens made of the training rows."""
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    # input_ids and the per-token columns TRL keeps beside them (labels with the prompt masked, in trl 1.16)
    keys = [key for key, value in rows[0].items()
            if isinstance(value, list) and len(value) == len(rows[0]["input_ids"])]
    features, row = [], 0
    for _ in range(trainer.args.per_device_train_batch_size):
        feature = {key: [] for key in keys}
        while len(feature["input_ids"]) < length:
            for key in keys:
                feature[key] += list(rows[row % len(rows)][key])
            row += 1
        features.append({key: values[:length] for key, values in feature.items()})
    batch = trainer.data_collator(features)
    batch = {key: value.to(trainer.args.device) if torch.is_tensor(value) else value for key, value in batch.items()}
    release(args.device)  # the peak below starts from what is live, not from the short steps' cached blocks
    reset_peak(args.device)
    started = time.perf_counter()
    trainer.model.train()
    loss = float(trainer.training_step(trainer.model, batch))
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    synchronize(args.device)
    return time.perf_counter() - started, loss, peak_gib(args.device)


def classify_batch(args, model, tokenizer_dir: Path, framing: str, labels, count: int):
    """The transformers engine's classify on the trained (in-memory) model: its loader is handed the model."""
    from prompt_distill.engines import hf
    from prompt_distill.student.classifier import DEFAULT_BATCH_SIZE
    from prompt_distill.task import Task

    model.config.use_cache = True  # the Trainer turned the KV cache off for training; serving keeps it on
    original = hf.load_causal_lm
    hf.load_causal_lm = lambda *_, **__: model
    try:
        engine = hf.HFEngine(str(tokenizer_dir), device=args.device, batch_size=DEFAULT_BATCH_SIZE)
    finally:
        hf.load_causal_lm = original
    texts = [text for text, _ in short_examples(engine.tokenizer, count, args.b_mean_tokens)]
    chats = [Task.student_messages(text, framing) for text in texts]
    engine.classify(chats[:DEFAULT_BATCH_SIZE], labels)  # warm-up batch, not timed
    synchronize(args.device)
    started = time.perf_counter()
    scores = engine.classify(chats, labels)
    synchronize(args.device)
    seconds = time.perf_counter() - started
    sums = [sum(score.probabilities.values()) for score in scores]
    return len(scores), seconds, sums


def release(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def run_rank(args, rank: int, config_kwargs: dict, tokenizer, tokenizer_dir: Path, workdir: Path, checks: Checks):
    from prompt_distill.training.config import ScriptArguments
    from prompt_distill.training.memory_budget import RUNTIME_RESERVE_GIB, Shape, count_parameters, estimate
    from prompt_distill.training.run import resolve_student_framing
    from prompt_distill.training.tracking import trained_tokens

    defaults = ScriptArguments()
    tag = f"B r{rank}"
    device, dtype = args.device, (torch.bfloat16 if args.device == "cuda" else torch.float32)
    counts = count_parameters(config_kwargs, defaults.lora_r, defaults.lora_alpha, rank)
    shape = Shape.from_config(config_kwargs, defaults.lora_r, rank)
    worst = estimate(counts, shape, 4, 2048)
    print(f"[{tag}] memory budget (prompt_distill.training.memory_budget) for attention r={defaults.lora_r}, expert "
          f"r={rank}, batch 4 x 2048 tokens: {worst.total / GIB:.2f} GiB", flush=True)

    started = time.perf_counter()
    reset_peak(device)
    model = random_model(config_kwargs, tokenizer, device, dtype)
    synchronize(device)
    built_s = time.perf_counter() - started
    base = sum(p.numel() for p in model.parameters())
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()})
    devices = sorted({p.device.type for p in model.parameters()})
    weights = f", {torch.cuda.memory_allocated() / GIB:.2f} GiB allocated" if device == "cuda" else ""
    print(f"[{tag}] random model built on {devices} in {built_s:.1f} s: {base:,} parameters {dtypes}{weights}",
          flush=True)
    checks.add(f"{tag} model made on {device} in {dtypes[0]} with the budget's parameter count",
               devices == [device] and dtypes == [str(dtype).removeprefix("torch.")] and base == counts.base,
               f"{base:,} vs {counts.base:,}")

    data_file = workdir / "short.jsonl"
    examples = short_examples(tokenizer, args.b_steps * 16, args.b_mean_tokens)
    from prompt_distill.data import training_record, write_jsonl

    write_jsonl(data_file, [training_record(text, label) for text, label in examples])
    timer = StepTimer(device)
    script_args, config, hf_tokenizer, data, trainer = build(args, rank, tokenizer_dir, data_file, workdir, model, timer)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    checks.add(f"{tag} the project's LoRA has the budget's trainable parameters", trainable == counts.trainable,
               f"{trainable:,} vs {counts.trainable:,}")
    output = trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    peak_short = peak_gib(device)
    tokens = trained_tokens(trainer.state.log_history) or 0
    per_step = [entry["num_tokens"] for entry in trainer.state.log_history if "num_tokens" in entry]
    step_tokens = [b - a for a, b in zip([0, *per_step], per_step, strict=False)]
    steady_tokens = sum(step_tokens[1:]) if len(step_tokens) > 1 else sum(step_tokens)
    steady_seconds = sum(timer.steady())
    tokens_per_s = steady_tokens / steady_seconds if steady_seconds else float("nan")
    mean_sequence = tokens / max(len(examples), 1) if tokens else args.b_mean_tokens
    flops = forward_flops_per_token(config_kwargs, mean_sequence)
    peak = peak_flops(device)
    print(f"[{tag}] {len(examples)} examples of at most {args.b_mean_tokens} tokens (mean {mean_sequence:.1f} "
          f"tokens per example, prompt + answer); {timer.describe()}", flush=True)
    print(f"[{tag}] losses: {', '.join(f'{loss:.3f}' for loss in losses)}; train_runtime "
          f"{output.metrics.get('train_runtime')} s", flush=True)
    print(f"[{tag}] trained tokens/s (steps after the first): {tokens_per_s:,.0f}; N = "
          f"{active_matmul_parameters(config_kwargs) / 1e9:.3f} B active matmul weights, forward F = "
          f"{flops / 1e9:.2f} GFLOP/token", flush=True)
    if peak:
        print(f"[{tag}] MFU (2F per token: forward + activation gradients, frozen base) "
              f"{100 * 2 * flops * tokens_per_s / peak:.2f}%; HFU (3F: + checkpoint recompute) "
              f"{100 * 3 * flops * tokens_per_s / peak:.2f}% of {peak / 1e12:.1f} TFLOP/s dense bf16", flush=True)
    else:
        print(f"[{tag}] MFU: n/a (no known bf16 peak for this device)")
    if peak_short:
        short_budget = estimate(counts, shape, config.per_device_train_batch_size, args.b_mean_tokens)
        print(f"[{tag}] peak memory, short steps: {peak_short[0]:.2f} GiB allocated, {peak_short[1]:.2f} GiB "
              f"reserved; budget for 4 x {args.b_mean_tokens} tokens {short_budget.total / GIB:.2f} GiB (with its "
              f"{RUNTIME_RESERVE_GIB:g} GiB reserve)", flush=True)
    checks.add(f"{tag} {args.b_steps} optimizer steps with finite losses",
               len(losses) == args.b_steps and all(math.isfinite(loss) for loss in losses), f"{len(losses)} losses")

    long_tokens = args.b_long_tokens if args.b_long_tokens is not None else (2048 if device == "cuda" else 128)
    if long_tokens:
        budget = estimate(counts, shape, config.per_device_train_batch_size, long_tokens)
        try:
            seconds, loss, long_peak = long_step(args, trainer, long_tokens)
        except torch.OutOfMemoryError as error:
            trainer.optimizer.zero_grad(set_to_none=True)
            checks.add(f"{tag} one micro-step of 4 x {long_tokens} tokens fits", False,
                       f"out of memory; budget predicted {budget.total / GIB:.2f} GiB ({str(error).splitlines()[0]})")
        else:
            detail = f"training_step loss {loss:.3f} (scaled by 1/accumulation), {seconds:.2f} s, {4 * long_tokens / seconds:,.0f} tokens/s"
            if long_peak:
                detail += (f"; peak {long_peak[0]:.2f} GiB allocated, {long_peak[1]:.2f} GiB reserved vs the budget's "
                           f"{budget.total / GIB:.2f} GiB ({long_peak[1] - budget.total / GIB:+.2f} GiB)")
            print(f"[{tag}] worst-case micro-step, 4 x {long_tokens} tokens: {detail}", flush=True)
            checks.add(f"{tag} one micro-step of 4 x {long_tokens} tokens fits"
                       + (" within the budget's prediction" if long_peak else ""),
                       math.isfinite(loss) and (long_peak is None or long_peak[1] <= budget.total / GIB), detail)
        release(device)

    framing = resolve_student_framing(script_args, hf_tokenizer)
    count, seconds, sums = classify_batch(args, trainer.model, tokenizer_dir, framing, data.task.labels,
                                          args.b_classify_requests)
    print(f"[{tag}] classify: {count} requests in {seconds:.2f} s = {count / seconds:.1f} requests/s "
          f"(transformers engine, batch 32, adapter unmerged)", flush=True)
    checks.add(f"{tag} classify returns a distribution per request", count == args.b_classify_requests
               and all(abs(total - 1) < 1e-3 for total in sums), f"{count} requests")
    record = {"expert_r": rank, "steps_s": timer.times, "tokens_per_s": tokens_per_s, "classify_rps": count / seconds,
              "peak_short_gib": peak_short, "budget_4x2048_gib": worst.total / GIB, "losses": losses,
              "median_step_s": statistics.median(timer.steady())}
    (workdir / f"part-b-r{rank}.json").write_text(json.dumps(record, indent=2) + "\n", "utf-8")
    trainer.accelerator.free_memory()  # accelerate keeps references to the prepared model and optimizer
    del trainer, model
    release(device)
    if device == "cuda":
        print(f"[{tag}] after cleanup: {torch.cuda.memory_allocated() / GIB:.2f} GiB still allocated", flush=True)


def run_part(args, workdir: Path, checks: Checks) -> None:
    from prompt_distill.training.config import ScriptArguments

    config_kwargs = student_config(args.device)
    banner(f"Part B: the student architecture on {args.device} ({config_kwargs['num_hidden_layers']} layers, hidden "
           f"{config_kwargs['hidden_size']}, {config_kwargs['num_experts']} experts, {config_kwargs['num_experts_per_tok']} "
           f"active, vocab {config_kwargs['vocab_size']:,})" + ("" if args.device == "cuda" else ": shrunk for the CPU"))
    workdir.mkdir(parents=True, exist_ok=True)
    tokenizer = byte_level_tokenizer()
    tokenizer_dir = workdir / "tokenizer"  # what load_tokenizer reads; the weights never leave the device
    tokenizer.save_pretrained(tokenizer_dir)
    for rank in expert_ranks(args, ScriptArguments().expert_lora_r):
        run_rank(args, rank, config_kwargs, tokenizer, tokenizer_dir, workdir, checks)
