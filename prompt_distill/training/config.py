"""train_sft_trl.py's flags: ``ScriptArguments`` (the script's own), ``PromptDistillationConfig`` (TRL's
``SFTConfig`` with the reference README's hyperparameters as defaults, so every SFTConfig field stays a flag), the
parser over both, and ``TrainingJob``, the parsed pair that ``training.run.run`` reads. Also ``TrainingError``, the
stage's one error: what a run refuses (a flag combination, a folder, a process group) is one ``error:`` line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from trl import SFTConfig

from ..cli import flag, make_parser
from ..data import DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED, EVAL_FRACTION_HELP, SPLIT_SEED_HELP
from ..errors import PromptDistillError
from ..student_framing import FRAMINGS
from ..task import LABELS_HELP, PROMPT_FILE_HELP
from ..tracking import DEFAULT_REPORT_TO, REPORT_TO_HELP, RUN_GROUP_HELP
from .lora import AUTO, LoraSettings
from .record import MERGED_SUBDIR

DEFAULT_STUDENT = "Qwen/Qwen3-30B-A3B-Instruct-2507"
DEFAULT_DATA_FILE = "./data/prompt_distillation_lang.jsonl"
DEFAULT_OUTPUT_DIR = "./models/prompt_distillation_trl"
# Reference README: cosine_with_min_lr decays to min_lr_rate x learning rate.
DEFAULT_LR_SCHEDULER_KWARGS = {"min_lr_rate": 0.1}
# The expert rank that fits one 80 GB H100 with max_length 2048 x batch 4 (see scripts/memory_budget.py); the
# reference README's rank 32 on every expert is --expert_lora_r 32 and needs about 85 GiB.
DEFAULT_EXPERT_LORA_R = 8
# The eval loss during training: this many held-out examples every this many steps (cost: --eval_loss_samples help).
DEFAULT_EVAL_LOSS_SAMPLES = 200
DEFAULT_EVAL_STEPS = 50


class TrainingError(PromptDistillError, RuntimeError):
    """A run that cannot start or finish as asked (the output folder, a checkpoint, the process group, --merge
    under FSDP); the message says what to pass instead."""


@dataclass
class ScriptArguments:
    base_model: str = flag(
        DEFAULT_STUDENT, "Student: a Hugging Face id, a local folder, or the embedded CPU alias 'smollm2-135m-instruct'.",
        group="model", aliases=["--model_name", "--model_name_or_path"])
    data_file: str = flag(DEFAULT_DATA_FILE, "Training JSONL written by create_data.py.", group="data")
    prompt_file: str | None = flag(None, PROMPT_FILE_HELP, group="task")
    labels: str | None = flag(None, LABELS_HELP, group="task")
    split: str = flag(
        "train", "'train': hold out the eval split that evaluate.py scores; 'all': train on everything.",
        group="data", choices=["train", "all"])
    # The same flags as data.SplitFlags (evaluate.py, benchmark.py); not inherited: SplitFlags is frozen, TRL's
    # parser returns this dataclass mutable.
    eval_fraction: float = flag(DEFAULT_EVAL_FRACTION, EVAL_FRACTION_HELP, group="data")
    split_seed: int = flag(DEFAULT_SPLIT_SEED, SPLIT_SEED_HELP, group="data")
    lora_r: int = flag(32, "LoRA rank of the attention (or dense) projections.", group="training")
    lora_alpha: int = flag(16, "LoRA alpha, the same for every target.", group="training")
    lora_dropout: float = flag(0.0, "LoRA dropout; must be 0 when fused MoE experts are adapted.", group="training")
    lora_target_modules: str = flag(
        AUTO, "'auto' (MoE: q/k/v/o_proj + fused experts, never the router; dense: every linear layer but the LM "
              "head), 'all-linear' (dense models only), or comma-separated names.", group="training")
    expert_lora_r: int = flag(
        DEFAULT_EXPERT_LORA_R,
        "LoRA rank per expert on fused-MoE models (gate_up_proj, down_proj), and of their dense MLP layers if any "
        "(mlp_only_layers); 0 = attention only; 32 = the reference README (does not fit one 80 GB GPU).", group="training")
    dtype: str = flag(
        "auto", "Weights dtype: 'auto' = bfloat16 on GPUs that support it, else float32.", group="model",
        choices=["auto", "bfloat16", "float16", "float32"])
    attn_implementation: str = flag("sdpa", "Attention kernel: sdpa, eager, flash_attention_2.", group="model")
    experts_implementation: str | None = flag(
        None, "MoE experts kernel (transformers): eager, grouped_mm, batched_mm; default: automatic.", group="model")
    student_framing: str = flag(
        "auto",
        "What surrounds the sentence in the student's chat: auto = the fewest tokens the chat template allows; "
        "user_only = the user turn alone (a template's default system turn stays); empty_system = an empty system "
        "message first. Kept in run_record.json, so inference uses the same.",
        group="model", choices=["auto", *FRAMINGS])
    merge: bool = flag(False, f"Also write base+adapter merged into <output_dir>/{MERGED_SUBDIR}.", group="output")
    overwrite_output_dir: bool = flag(
        False, "Replace an adapter already in output_dir (otherwise refused; --resume_from_checkpoint continues its "
               "run instead).", group="output", aliases=["--overwrite"])  # --overwrite: create_data.py's name
    run_group: str | None = flag(None, RUN_GROUP_HELP, group="output")
    eval_loss_samples: int = flag(
        DEFAULT_EVAL_LOSS_SAMPLES,
        "Held-out examples (the eval split, never trained on) scored for the eval loss every --eval_steps steps; 0 = "
        "no eval loss. On by default: with the defaults (batch 4 x 4 accumulation = 16 examples a step, eval every "
        f"{DEFAULT_EVAL_STEPS} steps) an evaluation is {DEFAULT_EVAL_LOSS_SAMPLES} forward passes, about a third of a "
        "training example's cost each, so about 4 steps' worth every 50: about 8%% of training time, an estimate "
        "(under the 10%% limit; see docs/wandb.md).", group="data")
    distillation_target: str = flag(
        "hard", "What the student is trained towards: 'hard' = the teacher's label (TRL's completion NLL); 'soft' = "
                "the teacher's distribution over the labels (the training file's \"teacher\" key: its label "
                "probabilities, or its vote shares with create_data.py --num_samples K), a KL divergence on the "
                "student's label probabilities after the assistant turn opens (what classify reads). Examples without "
                "a \"teacher\" key keep their hard label under soft (counted in run_record.json). See docs/training.md.",
        group="distillation", choices=["hard", "soft"])
    distillation_temperature: float = flag(
        1.0, "Soft targets: both distributions are softened by this temperature (teacher p^(1/T), student "
             "logits/T) and the KL is scaled by T^2, as in Hinton et al. 2015.", group="distillation")
    hard_label_weight: float = flag(
        0.0, "Soft targets: the share of the hard label's NLL at the label tokens, the rest the KL to the teacher "
             "(0 = pure soft, 1 = hard).", group="distillation")
    min_teacher_confidence: float = flag(
        0.0, "Leave out of training the examples whose teacher confidence (its probability of its label, or the "
             "vote share) is below this; counted in run_record.json and the summary. Examples without a teacher "
             "entry are kept. Works with hard and soft targets; 0 = keep all.", group="distillation")
    log_model_artifact: bool = flag(
        True, "With wandb: log the adapter and run_record.json as a model artifact (--log_model_artifact false skips "
              "the upload, for large adapters).", group="output")

    def lora_settings(self) -> LoraSettings:
        return LoraSettings(r=self.lora_r, alpha=self.lora_alpha, dropout=self.lora_dropout,
                            target_modules=self.lora_target_modules, expert_r=self.expert_lora_r)


def _bf16_supported() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def launched_processes() -> int:
    """WORLD_SIZE as set by accelerate launch / torchrun; 1 for a plain ``python train_sft_trl.py``."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def fsdp_launched() -> bool:
    """accelerate launch with an FSDP config (configs/accelerate_fsdp.yaml) sets ACCELERATE_USE_FSDP."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true", "yes")


@dataclass
class PromptDistillationConfig(SFTConfig):
    """SFTConfig with the reference README's table as defaults (and a few choices of ours, marked)."""

    # --help lists the fields given a group above with the script's own flags; every other SFTConfig /
    # TrainingArguments field comes after them, under this heading.
    HELP_HEADING = "TRL / transformers training arguments"

    output_dir: str | None = field(default=DEFAULT_OUTPUT_DIR, metadata={"group": "output", "help": "Adapter, tokenizer, run record."})
    learning_rate: float = field(default=2e-4, metadata={"group": "training", "help": "Peak learning rate (AdamW)."})
    lr_scheduler_type: str = field(default="cosine_with_min_lr", metadata={"group": "training", "help": "Learning-rate schedule."})
    lr_scheduler_kwargs: dict | str | None = field(
        default_factory=lambda: dict(DEFAULT_LR_SCHEDULER_KWARGS),
        metadata={"group": "training", "help": 'Schedule arguments as JSON, e.g. \'{"min_lr_rate": 0.1}\'.'},
    )
    per_device_train_batch_size: int = field(default=4, metadata={"group": "training", "help": "Examples per device and micro-step."})
    gradient_accumulation_steps: int = field(default=4, metadata={"group": "training", "help": "Micro-steps per optimizer step."})
    max_length: int | None = field(
        default=2048, metadata={"group": "training", "help": "Longest example in tokens; longer ones are dropped and reported."}
    )
    num_train_epochs: float = field(default=1.0, metadata={"group": "training", "help": "Passes over the training split."})
    # transformers 5 has no warmup_ratio: a warmup_steps value below 1 is read as a fraction of all steps.
    warmup_steps: float = field(default=0.03, metadata={"group": "training", "help": "Warmup; a value below 1 is a fraction of all steps."})
    bf16: bool | None = field(
        default=None, metadata={"group": "training", "help": "bf16 mixed precision; default: on where the GPU supports it, off on CPU."}
    )
    report_to: None | str | list[str] = field(
        default=DEFAULT_REPORT_TO, metadata={"group": "output", "help": REPORT_TO_HELP}
    )
    logging_steps: float = field(default=1, metadata={"group": "training", "help": "Log every N optimizer steps."})
    # Ours: the eval loss on held-out examples during training (transformers 5 defaults to no evaluation); its cost
    # is --eval_loss_samples' help.
    eval_strategy: str = field(default="steps", metadata={"group": "training", "help": "When to compute the eval loss on held-out examples: 'steps' (every --eval_steps), 'epoch' or 'no'."})
    eval_steps: float | None = field(default=DEFAULT_EVAL_STEPS, metadata={"group": "training", "help": "Optimizer steps between two eval losses."})
    # Ours: a checkpoint every 25 steps (about 400 examples) so that an interrupted run can resume; two are kept.
    save_steps: float = field(default=25, metadata={"group": "output", "help": "Checkpoint every N steps (resume_from_checkpoint)."})
    save_total_limit: int | None = field(default=2, metadata={"group": "output", "help": "Checkpoints kept in output_dir."})
    # Ours: padding-free batches. Our examples are a sentence and a one-token label, so padding is a large share
    # of a padded batch. Correct with the completion mask (TRL masks each sequence start) and with SDPA/eager
    # attention (transformers builds a block-diagonal mask from the position ids), not only flash attention.
    padding_free: bool = field(
        default=True, metadata={"group": "training", "help": "Concatenate a batch's examples into one row without padding (off: "
                                        "--no_padding_free)."}
    )
    # Ours: no MoE load-balancing loss. The router stays frozen, so the auxiliary loss could only push the
    # adapters to reshape hidden states for balance instead of for the labels; the pretrained routing is already
    # balanced. TRL would otherwise switch it on from the model config (0.001 for Qwen3-MoE).
    router_aux_loss_coef: float | None = field(
        default=0.0, metadata={"group": "training", "help": "MoE load-balancing loss weight; 0 = off (router is frozen)."}
    )

    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"group": "training", "help": "Continue an interrupted run: a checkpoint-N folder, or 'last' for the newest checkpoint-N "
                          "in --output_dir (one is saved every --save_steps steps)."},
    )

    def __post_init__(self):
        if launched_processes() > 1 and not self.use_cpu and not _cuda_available():
            # Started by accelerate launch / torchrun on a machine without CUDA: without use_cpu every process
            # would train alone (accelerate joins CPU processes into one gloo group only when asked for the CPU).
            self.use_cpu = True
        if self.bf16 is None:
            self.bf16 = (not self.fp16) and (not self.use_cpu) and _bf16_supported()
        super().__post_init__()
        scheduler = getattr(self.lr_scheduler_type, "value", self.lr_scheduler_type)
        if scheduler != "cosine_with_min_lr" and self.lr_scheduler_kwargs == DEFAULT_LR_SCHEDULER_KWARGS:
            # min_lr_rate belongs to cosine_with_min_lr only; other schedules reject the argument.
            self.lr_scheduler_kwargs = {}


DESCRIPTION = (
    "Stage 2: train the student's LoRA adapter on create_data.py's JSONL with TRL's SFTTrainer. The script's own "
    "flags come first; every other SFTConfig and TrainingArguments field is a flag too, listed last under 'TRL / "
    "transformers training arguments'; --config FILE.yaml sets any of them from a file (flags given on the "
    "command line win); --resume_from_checkpoint last continues an interrupted run from the newest checkpoint "
    "in --output_dir."
)
NO_PADDING_FREE_HELP = "Pad every example of a batch to the batch's longest instead of concatenating them."


def parser():
    """train_sft_trl.py's parser: both dataclasses' fields are the flags, ``--config FILE.yaml`` sets any of them."""
    built = make_parser([ScriptArguments, PromptDistillationConfig], DESCRIPTION)
    for action in built._actions:
        if action.dest == "padding_free" and action.option_strings[0].startswith("--no_"):
            action.help = NO_PADDING_FREE_HELP
    return built


def parse_job(argv=None) -> TrainingJob:
    """The job from train_sft_trl.py's command line (and ``--config``): argparse's one line and exit 2 on a bad flag."""
    return TrainingJob.from_args(parser().parse_flags(argv))


@dataclass(frozen=True)
class TrainingJob:
    """The parsed flags as one typed, frozen job: what ``training.run.run`` reads. Frozen means the pair is never
    swapped; the Trainer still reads (and adjusts) the SFTConfig it is given."""

    script: ScriptArguments
    sft: SFTConfig

    @classmethod
    def from_args(cls, parsed) -> TrainingJob:
        """The job from ``TrlParser.parse_args_and_config``'s result: (ScriptArguments, SFTConfig), in that order."""
        script, sft = parsed
        return cls(script=script, sft=sft)
