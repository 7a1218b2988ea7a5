"""The run record: ``run_record.json`` beside the adapter, what a finished run was and gave, and the summary
train_sft_trl.py ends with. The later stages read it (``student.check``: the base model, task, split and framing
an adapter was trained with), so its name is defined here, once.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from ..models import resolve_model
from ..task_source import task_entry
from ..tracking import run_group
from .examples import file_sha256
from .tracking import logged_losses, trained_tokens

RUN_RECORD = "run_record.json"
MERGED_SUBDIR = "merged"  # train_sft_trl.py --merge writes the merged model there; the student merges there too


def write_record(output_dir: Path, record: dict) -> Path:
    path = output_dir / RUN_RECORD
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return path


def distributed_summary(trainer, order: dict | None) -> dict:
    """How the run was spread over processes, and which examples each saw (data_order.summarize_order)."""
    args = trainer.args
    return {
        "world_size": args.world_size,
        "distributed_type": str(trainer.accelerator.distributed_type).removeprefix("DistributedType."),
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "examples_per_optimizer_step": examples_per_optimizer_step(args),
        "data_order": order,
    }


def examples_per_optimizer_step(args) -> int:
    return args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size


def build_record(script_args, config, data, summary, trainer, output, wall, requested_max_length, resume,
                 wandb_dir, dtype: str) -> dict:
    """What the run was (base model, data, split, task, LoRA, hyperparameters) and what it gave (losses, tokens/s).
    ``dtype``: the base weights' dtype as loaded ("bfloat16"), ``requested_max_length`` --max_length as given (the
    Trainer may have cleared it for padding-free batches)."""
    import peft
    import torch
    import transformers
    import trl

    history = trainer.state.log_history
    losses = logged_losses(history)
    tokens = trained_tokens(history)
    runtime = output.metrics.get("train_runtime", wall)
    scheduler = getattr(config.lr_scheduler_type, "value", config.lr_scheduler_type)
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "base_model": script_args.base_model,
        "base_model_resolved": resolve_model(script_args.base_model),
        "data_file": str(script_args.data_file),
        "data_sha256": file_sha256(script_args.data_file),
        # The pipeline's wandb group, whether or not this run logged: evaluate.py and benchmark.py join it.
        "wandb_group": run_group(script_args.run_group, script_args.data_file),
        "split": {
            "split": script_args.split,
            "eval_fraction": script_args.eval_fraction,
            "split_seed": script_args.split_seed,
            "examples_in_file": data.examples_in_file,
            "examples_in_split": len(data.selected),
            "examples_trained": len(data.report.kept),
            "dropped_too_long": len(data.report.too_long),
            "dropped_too_long_lines": [example.line for example in data.report.too_long],
        },
        # --distillation_target and --min_teacher_confidence: the targets, and what the filter left out
        "distillation": dict(getattr(data, "distillation", None) or {}),
        "task": task_entry(data.task),  # what evaluate.py, benchmark.py and predict.py take the task from
        "lora": {
            "r": script_args.lora_r,
            "alpha": script_args.lora_alpha,
            "dropout": script_args.lora_dropout,
            "expert_r": script_args.expert_lora_r,
            "target_modules": sorted({name.rsplit(".", 1)[-1] for name in summary.modules}),
            "target_parameters": sorted({".".join(name.split(".")[-3:]) for name in summary.parameters}),
            "trainable_parameters": summary.trainable_parameters,
        },
        "hyperparameters": {
            "learning_rate": config.learning_rate,
            "lr_scheduler_type": scheduler,
            "lr_scheduler_kwargs": config.lr_scheduler_kwargs,
            "per_device_train_batch_size": config.per_device_train_batch_size,
            "gradient_accumulation_steps": config.gradient_accumulation_steps,
            "num_train_epochs": config.num_train_epochs,
            "max_steps": config.max_steps,
            "warmup_steps": config.warmup_steps,
            "max_length": requested_max_length,
            "gradient_checkpointing": config.gradient_checkpointing,
            "bf16": config.bf16,
            "dtype": dtype,
            "padding_free": config.padding_free,
            "packing": config.packing,
            "router_aux_loss_coef": config.router_aux_loss_coef,
            "seed": config.seed,
        },
        "results": {
            "global_step": trainer.state.global_step,
            "final_train_loss": losses[-1] if losses else None,
            "mean_train_loss": output.training_loss,
            "loss_history": losses,
            "train_tokens": tokens,
            "train_runtime_s": round(runtime, 3),
            "train_tokens_per_second": round(tokens / runtime, 2) if tokens and runtime else None,
            "resumed_from": resume,
        },
        "wandb_run_dir": wandb_dir,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
                     "peft": peft.__version__},
    }


def format_summary(record: dict, output_dir: Path) -> str:
    results, split = record["results"], record["split"]
    lines = [
        "=" * 80,
        f"Adapter saved to {output_dir} (run record: {output_dir / RUN_RECORD})",
        f"  trained on {split['examples_trained']} examples (split '{split['split']}', "
        f"{split['dropped_too_long']} dropped as too long), {results['global_step']} optimizer steps",
        f"  final train loss {_rounded(results['final_train_loss'])}, {_rounded(results['train_tokens_per_second'])} "
        "train tokens/s",
    ]
    distillation = record.get("distillation") or {}
    if distillation.get("target") == "soft":
        lines.append(f"  soft targets (temperature {distillation['temperature']}, hard label weight "
                     f"{distillation['hard_label_weight']}): {distillation['examples_with_teacher']} examples with the "
                     f"teacher's distribution, {distillation['hard_fallback']} without it on their hard label")
    if distillation.get("min_teacher_confidence"):
        lines.append(f"  {distillation['left_out_low_confidence']} left out: teacher confidence below "
                     f"{distillation['min_teacher_confidence']} (--min_teacher_confidence)")
    if record.get("wandb_run_dir"):
        lines.append(f"  wandb run folder: {record['wandb_run_dir']}")
    if record.get("merged_model_dir"):
        lines.append(f"  merged model: {record['merged_model_dir']}")
    lines.append("=" * 80)
    return "\n".join(lines)


def _rounded(value) -> str:
    """4 significant digits for the printed summary (the run record keeps the full value)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
