"""Part A: a tiny Qwen3-MoE built in code, through the project's own code paths on the device.

(a) the teacher labels sentences with create_data.py's run (``--backend transformers``), crash-safe files and all,
    and a second run of the same command resumes (labels nothing again);
(b) train_sft_trl.py's ``run_training`` trains a few steps (bf16 on CUDA, gradient checkpointing) on those labels;
(c) ``prompt_distill.Student`` reloads the saved adapter and ``classify`` is compared with the probabilities that
    plain peft + transformers give over the same chat-templated prompt and label tokens;
(d) step times, peak memory and tokens/s are printed.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from .common import ROOT, Checks, StepTimer, banner, byte_level_tokenizer, describe_peak, gold_texts

CLASSIFY_TOLERANCE = 1e-3
BF16_TOLERANCE = 1e-2  # production dtype on a GPU: rounding, not a bug (see reload_and_classify)


def tiny_model_dir(path: Path, tokenizer, args) -> Path:
    """Qwen3-30B-A3B's module layout (fused experts, mlp.gate router, q/k-norm attention) at a small size, saved
    with the byte-level tokenizer as an ordinary model folder (what a downloaded model looks like)."""
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    config = Qwen3MoeConfig(
        vocab_size=len(tokenizer), hidden_size=args.hidden_size, intermediate_size=2 * args.hidden_size,
        moe_intermediate_size=args.moe_intermediate_size, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, head_dim=args.hidden_size // args.heads,
        num_experts=args.experts, num_experts_per_tok=args.experts_per_token, tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    Qwen3MoeForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def label(args, model_dir: Path, workdir: Path, checks: Checks) -> Path:
    """(a) create_data.py's run with --backend transformers, twice: the second run must resume, not relabel."""
    from prompt_distill.cli import parse_config, setup_logging
    from prompt_distill.labeling.config import CreateDataConfig
    from prompt_distill.labeling.run_files import LABELLED, RunFiles
    from prompt_distill.labeling.summary import format_summary
    from prompt_distill.labeling.teacher_run import run
    from prompt_distill.task import language_task

    texts = gold_texts(args.examples)
    input_file = workdir / "sentences.txt"
    input_file.write_text("".join(text + "\n" for text in texts), "utf-8")
    output_file = workdir / "labels" / "labelled.jsonl"
    argv = ["--backend", "transformers", "--model_name", str(model_dir), "--input_file", str(input_file),
            "--output_file", str(output_file), "--max_tokens", str(args.teacher_max_tokens), "--batch_size", "8"]
    print(f"[A] python create_data.py {' '.join(argv)}", flush=True)
    started = time.perf_counter()
    setup_logging()  # run() logs the backend and the teacher as create_data.py shows them
    first = run(parse_config(CreateDataConfig, argv))
    seconds = time.perf_counter() - started
    print(format_summary(first))
    again = run(parse_config(CreateDataConfig, argv))
    print(format_summary(again))

    files = RunFiles.for_output(output_file)
    labels = set(language_task().labels)
    training = [json.loads(line) for line in files.training.read_text("utf-8").splitlines()]
    sidecar = [json.loads(line) for line in files.sidecar.read_text("utf-8").splitlines()] if files.sidecar.is_file() else []
    header = json.loads(files.header.read_text("utf-8")) if files.header.is_file() else {}
    answers = [record["messages"][-1]["content"] if "messages" in record else record.get("completion")
               for record in training]
    print(f"[A] teacher: {first.labelled_now} labelled, {first.unparseable_now} unparseable, {first.too_long_now} too "
          f"long in {seconds:.1f} s (prompt {int(sum(first.prompt_tokens) / max(len(first.prompt_tokens), 1))} tokens "
          f"per request, {int(sum(first.cached_tokens) / max(len(first.cached_tokens), 1))} from the shared prefix); "
          f"labels {dict(first.label_counts)}", flush=True)
    checks.add("A(a) teacher labelled every sentence on the device", first.labelled_now == len(texts),
               f"{first.labelled_now}/{len(texts)}")
    checks.add("A(a) training file, sidecar and run header written",
               len(training) == len(texts) and len(sidecar) == len(texts)
               and all(record.get("status") == LABELLED for record in sidecar)
               and len(header.get("sessions", [])) == 2 and header["sessions"][0].get("finished") is not None,
               f"{files.training.name} {len(training)} lines, {files.sidecar.name} {len(sidecar)}, "
               f"{files.header.name} {len(header.get('sessions', []))} sessions")
    checks.add("A(a) every training answer is a task label", bool(answers) and all(
        _answer_label(answer) in labels for answer in answers), f"{sorted({_answer_label(a) for a in answers})}")
    checks.add("A(a) rerunning the same command resumes and labels nothing again",
               again.resumed == len(texts) and again.finished_now == 0,
               f"resumed {again.resumed}, labelled now {again.labelled_now}")
    return output_file


def _answer_label(answer) -> str:
    if isinstance(answer, list):  # a conversational completion: [{"role": "assistant", "content": ...}]
        answer = answer[-1]["content"]
    if isinstance(answer, dict):
        answer = answer.get("content")
    return str(answer).strip()


def train(args, model_dir: Path, data_file: Path, workdir: Path, checks: Checks):
    """(b) run_training, the function train_sft_trl.py calls, with the defaults but a few steps and no wandb."""
    from prompt_distill.training.config import PromptDistillationConfig, ScriptArguments
    from prompt_distill.training.run import run_training

    timer = StepTimer(args.device)
    script_args = ScriptArguments(base_model=str(model_dir), data_file=str(data_file), split="all",
                                  lora_r=32, expert_lora_r=args.expert_lora_r)
    config = PromptDistillationConfig(
        output_dir=str(workdir / "adapter"), report_to="none", save_strategy="no", max_steps=args.steps,
        per_device_train_batch_size=args.per_device_train_batch_size, gradient_accumulation_steps=1,
        use_cpu=args.device == "cpu", padding_free=args.padding_free, disable_tqdm=True,
    )
    result = run_training(script_args, config, callbacks=[timer])
    model = result.trainer.model
    base_dtypes = sorted({str(p.dtype) for p in model.parameters() if not p.requires_grad})
    adapter_dtypes = sorted({str(p.dtype) for p in model.parameters() if p.requires_grad})
    devices = sorted({p.device.type for p in model.parameters()})
    losses = result.record["results"]["loss_history"]
    print(f"[A] bf16 mixed precision: {config.bf16}; gradient checkpointing: {config.gradient_checkpointing} "
          f"(model: {model.is_gradient_checkpointing}); padding-free: {args.padding_free}; "
          f"{result.trainer.args.n_gpu} GPU(s) seen by the Trainer", flush=True)
    print(f"[A] base weights {base_dtypes}, adapter {adapter_dtypes}, on {devices}; experts implementation "
          f"{model.config._experts_implementation}, attention {model.config._attn_implementation}")
    print(f"[A] {timer.describe()}; {result.record['results']['train_tokens_per_second']} train tokens/s")
    print(f"[A] {describe_peak(args.device)}")
    print(f"[A] losses: {', '.join(f'{loss:.3f}' for loss in losses)}", flush=True)
    checks.add("A(b) trained every step with finite losses", len(losses) == args.steps
               and all(math.isfinite(loss) for loss in losses), f"{len(losses)} steps")
    checks.add("A(b) gradient checkpointing on", bool(config.gradient_checkpointing and model.is_gradient_checkpointing))
    checks.add(f"A(b) weights on {args.device}, one device", devices == [args.device]
               and result.trainer.args.n_gpu == (1 if args.device == "cuda" else 0), f"n_gpu {result.trainer.args.n_gpu}")
    if args.device == "cuda":
        checks.add("A(b) bf16 base weights, fp32 adapter", base_dtypes == ["torch.bfloat16"]
                   and adapter_dtypes == ["torch.float32"] and bool(config.bf16))
    return result


def peft_reference(model_dir: Path, adapter_dir: Path, chats: list[list[dict]], labels: tuple[str, ...],
                   device: str, dtype) -> list[dict[str, float]]:
    """Each label's probability from plain peft + transformers: one unbatched, unpadded forward per text and
    label over the chat-templated prompt + the label's tokens (label_tokens), summing the tokens' log-probs."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prompt_distill.engines.label_tokens import label_tokens, renormalised
    from prompt_distill.student_framing import chat_ids

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    configured = model.generation_config.eos_token_id
    end_ids = {tokenizer.eos_token_id, *(configured if isinstance(configured, list) else [configured])} - {None}
    results = []
    with torch.inference_mode():
        for chat in chats:
            tokens = label_tokens(tokenizer, chat, labels, end_ids)
            context = chat_ids(tokenizer, chat, add_generation_prompt=True) + list(tokens.shared)
            logprobs = []
            for continuation in tokens.continuations:
                ids = torch.tensor([context + list(continuation)], device=device)
                logits = model(input_ids=ids).logits[0].float().log_softmax(-1)
                logprobs.append(sum(logits[len(context) - 1 + j, token].item() for j, token in enumerate(continuation)))
            results.append(renormalised(labels, logprobs))
    del model, base
    return results


def compare(name: str, predictions, reference, labels) -> tuple[float, int]:
    difference = max(abs(prediction.probabilities[label] - expected[label])
                     for prediction, expected in zip(predictions, reference, strict=True) for label in labels)
    agree = sum(prediction.label == max(expected, key=expected.get)
                for prediction, expected in zip(predictions, reference, strict=True))
    print(f"[A] {name}: max |classify - peft| over {len(predictions)} texts x {len(labels)} labels = "
          f"{difference:.2e}; top label agrees on {agree}/{len(predictions)}", flush=True)
    return difference, agree


def reload_and_classify(args, model_dir: Path, adapter_dir: Path, checks: Checks) -> None:
    """(c) The saved adapter through the student's classify, against the peft reference.

    First in float32 on the device: the student's transformers engine (shared-prefix cache, left-padded batches,
    the label trie) must give peft's probabilities within 1e-3; any larger difference is a bug, not rounding. Then
    ``Student.load`` exactly as predict.py and evaluate.py load it (bf16 on a GPU, fp32 on a CPU) against peft in
    the same dtype: in bf16 the two differ by rounding (8 bits of mantissa; about 2e-3 on a CPU), so that check
    allows 1e-2 (the top-label agreement is printed, not required: rounding may flip a near tie)."""
    from prompt_distill.engines.hf import HFEngine
    from prompt_distill.models import default_dtype
    from prompt_distill.student.check import resolve_student
    from prompt_distill.student.classifier import Student

    texts = gold_texts(args.examples)
    setup = resolve_student(str(adapter_dir), None)
    chats = [setup.messages(text) for text in texts]
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # no TF32 in the float32 comparison
    try:
        engine = HFEngine(setup.base_model, adapter_path=setup.adapter_path, device=args.device, dtype=torch.float32,
                          batch_size=8)
        student = Student(setup, engine, tuple(setup.run_record["task"]["labels"]), "transformers, float32")
        predictions = student.classify(texts)
        del student, engine
        reference = peft_reference(model_dir, adapter_dir, chats, tuple(setup.run_record["task"]["labels"]),
                                   args.device, torch.float32)
    finally:
        torch.set_float32_matmul_precision(precision)
    difference, _ = compare("classify (student engine, float32)", predictions, reference,
                            tuple(setup.run_record["task"]["labels"]))
    checks.add(f"A(c) classify equals peft's probabilities within {CLASSIFY_TOLERANCE:g} (float32)",
               difference < CLASSIFY_TOLERANCE, f"max difference {difference:.2e}")

    student = Student.load(str(adapter_dir), backend="transformers", batch_size=8)
    print(f"[A] reloaded: {student}", flush=True)
    started = time.perf_counter()
    predictions = student.classify(texts)
    seconds = time.perf_counter() - started
    dtype = default_dtype(args.device)
    reference = peft_reference(model_dir, adapter_dir, chats, student.labels, args.device, dtype)
    name = str(dtype).removeprefix("torch.")
    difference, agree = compare(f"classify (Student.load, {name}), {len(texts) / seconds:.1f} requests/s",
                                predictions, reference, student.labels)
    tolerance = CLASSIFY_TOLERANCE if dtype == torch.float32 else BF16_TOLERANCE
    checks.add(f"A(c) Student.load's classify matches peft in {name} within {tolerance:g}",
               difference < tolerance, f"max difference {difference:.2e}, top label "
               f"{agree}/{len(texts)}")
    del student


def run_part(args, workdir: Path, checks: Checks) -> None:
    banner(f"Part A: tiny Qwen3-MoE ({args.layers} layers, hidden {args.hidden_size}, {args.experts} experts) on "
           f"{args.device}: label -> train -> reload -> classify")
    tokenizer = byte_level_tokenizer()
    model_dir = tiny_model_dir(workdir / "tiny-model", tokenizer, args)
    data_file = label(args, model_dir, workdir, checks)
    result = train(args, model_dir, data_file, workdir, checks)
    adapter_dir = result.output_dir
    del result
    _free(args.device)
    reload_and_classify(args, model_dir, adapter_dir, checks)
    _free(args.device)


def _free(device: str) -> None:
    import gc

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


__all__ = ["ROOT", "run_part"]
