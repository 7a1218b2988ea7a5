"""Stage 2: train the student's LoRA adapter with TRL's SFTTrainer on the distilled labels.

``ScriptArguments`` holds the script's own flags; ``PromptDistillationConfig`` is TRL's ``SFTConfig`` with the
reference README's hyperparameters as defaults, so every SFTConfig field stays a flag of train_sft_trl.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from trl import SFTConfig

from ..cli_help import DefaultsOnceFormatter
from ..data import DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED, DataError
from ..duplicates import repeats_dropped_note
from ..errors import PromptDistillError
from ..models import default_dtype, load_tokenizer, resolve_model
from ..student_framing import FRAMINGS, choose_framing
from ..task import load_task
from .config import TrainingJob
from .data_order import EXAMPLE_INDEX, EpochPermutation, SeenExamples, add_index_and_filler, summarize_order
from .examples import drop_too_long, file_sha256, load_distinct_examples, select_split, to_dataset, tokenize_lengths
from .lora import AUTO, LoraSettings, build_lora_config, summarize_adapters
from .tracking import configure_wandb, finish_wandb, logged_losses, start_wandb_run, trained_tokens

DEFAULT_STUDENT = "Qwen/Qwen3-30B-A3B-Instruct-2507"
DEFAULT_DATA_FILE = "./data/prompt_distillation_lang.jsonl"
DEFAULT_OUTPUT_DIR = "./models/prompt_distillation_trl"
RUN_RECORD = "run_record.json"
MERGED_SUBDIR = "merged"
# Reference README: cosine_with_min_lr decays to min_lr_rate x learning rate.
DEFAULT_LR_SCHEDULER_KWARGS = {"min_lr_rate": 0.1}
# The expert rank that fits one 80 GB H100 with max_length 2048 x batch 4 (see scripts/memory_budget.py); the
# reference README's rank 32 on every expert is --expert_lora_r 32 and needs about 85 GiB.
DEFAULT_EXPERT_LORA_R = 8


class TrainingError(PromptDistillError, RuntimeError):
    pass


@dataclass
class ScriptArguments:
    model_name: str = field(
        default=DEFAULT_STUDENT,
        metadata={"help": "Student: a Hugging Face id, a local folder, or the embedded CPU alias 'smollm2-135m-instruct'."},
    )
    data_file: str = field(default=DEFAULT_DATA_FILE, metadata={"help": "Training JSONL written by create_data.py."})
    prompt_file: str | None = field(
        default=None, metadata={"help": "Teacher prompt of a custom task (validates answers against its labels)."}
    )
    labels: str | None = field(
        default=None, metadata={"help": "Label codes, comma-separated or a file; default: the language labels."}
    )
    split: str = field(
        default="train",
        metadata={"help": "'train': hold out the eval split that evaluate.py scores; 'all': train on everything.",
                  "choices": ["train", "all"]},
    )
    eval_fraction: float = field(
        default=DEFAULT_EVAL_FRACTION, metadata={"help": "Share of sentences held out (stable hash of the sentence)."}
    )
    split_seed: int = field(default=DEFAULT_SPLIT_SEED, metadata={"help": "Changes which sentences are held out."})
    lora_r: int = field(default=32, metadata={"help": "LoRA rank of the attention (or dense) projections."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha, the same for every target."})
    lora_dropout: float = field(
        default=0.0, metadata={"help": "LoRA dropout; must be 0 when fused MoE experts are adapted."}
    )
    lora_target_modules: str = field(
        default=AUTO,
        metadata={"help": "'auto' (MoE: q/k/v/o_proj + fused experts, never the router; dense: every linear "
                          "layer but the LM head), 'all-linear' (dense models only), or comma-separated names."},
    )
    expert_lora_r: int = field(
        default=DEFAULT_EXPERT_LORA_R,
        metadata={"help": "LoRA rank per expert on fused-MoE models (gate_up_proj, down_proj), and of their dense MLP "
                          "layers if any (mlp_only_layers); 0 = attention only; 32 = the reference README (does not "
                          "fit one 80 GB GPU)."},
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "Weights dtype: 'auto' = bfloat16 on GPUs that support it, else float32.",
                  "choices": ["auto", "bfloat16", "float16", "float32"]},
    )
    attn_implementation: str = field(default="sdpa", metadata={"help": "Attention kernel: sdpa, eager, flash_attention_2."})
    experts_implementation: str | None = field(
        default=None, metadata={"help": "MoE experts kernel (transformers): eager, grouped_mm, batched_mm; default: automatic."}
    )
    merge: bool = field(default=False, metadata={"help": f"Also write base+adapter merged into <output_dir>/{MERGED_SUBDIR}."})
    student_framing: str = field(
        default="auto",
        metadata={"help": "What surrounds the sentence in the student's chat: auto = the fewest tokens the chat "
                          "template allows; user_only = the user turn alone (a template's default system turn "
                          "stays); empty_system = an empty system message first. Kept in run_record.json, so "
                          "inference uses the same.",
                  "choices": ["auto", *FRAMINGS]},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Replace an adapter already in output_dir (otherwise refused; --resume_from_checkpoint "
                          "continues its run instead)."},
    )

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


def is_main_process() -> bool:
    """Global rank 0: the one process, across all nodes, that prints and writes files."""
    return int(os.environ.get("RANK", "0")) == 0


def silent(*_):
    pass


@dataclass
class PromptDistillationConfig(SFTConfig):
    """SFTConfig with the reference README's table as defaults (and a few choices of ours, marked)."""

    output_dir: str | None = field(default=DEFAULT_OUTPUT_DIR, metadata={"help": "Adapter, tokenizer, run record."})
    learning_rate: float = field(default=2e-4, metadata={"help": "Peak learning rate (AdamW)."})
    lr_scheduler_type: str = field(default="cosine_with_min_lr", metadata={"help": "Learning-rate schedule."})
    lr_scheduler_kwargs: dict | str | None = field(
        default_factory=lambda: dict(DEFAULT_LR_SCHEDULER_KWARGS),
        metadata={"help": 'Schedule arguments as JSON, e.g. \'{"min_lr_rate": 0.1}\'.'},
    )
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Examples per device and micro-step."})
    gradient_accumulation_steps: int = field(default=4, metadata={"help": "Micro-steps per optimizer step."})
    max_length: int | None = field(
        default=2048, metadata={"help": "Longest example in tokens; longer ones are dropped and reported."}
    )
    num_train_epochs: float = field(default=1.0, metadata={"help": "Passes over the training split."})
    # transformers 5 has no warmup_ratio: a warmup_steps value below 1 is read as a fraction of all steps.
    warmup_steps: float = field(default=0.03, metadata={"help": "Warmup; a value below 1 is a fraction of all steps."})
    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 mixed precision; default: on where the GPU supports it, off on CPU."}
    )
    report_to: None | str | list[str] = field(
        default="wandb", metadata={"help": "'wandb' (offline without a login) or 'none'."}
    )
    logging_steps: float = field(default=1, metadata={"help": "Log every N optimizer steps."})
    # Ours: a checkpoint every 25 steps (about 400 examples) so that an interrupted run can resume; two are kept.
    save_steps: float = field(default=25, metadata={"help": "Checkpoint every N steps (resume_from_checkpoint)."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept in output_dir."})
    # Ours: padding-free batches. Our examples are a sentence and a one-token label, so padding is a large share
    # of a padded batch. Correct with the completion mask (TRL masks each sequence start) and with SDPA/eager
    # attention (transformers builds a block-diagonal mask from the position ids), not only flash attention.
    padding_free: bool = field(
        default=True, metadata={"help": "Concatenate a batch's examples into one row without padding (off: "
                                        "--no_padding_free)."}
    )
    # Ours: no MoE load-balancing loss. The router stays frozen, so the auxiliary loss could only push the
    # adapters to reshape hidden states for balance instead of for the labels; the pretrained routing is already
    # balanced. TRL would otherwise switch it on from the model config (0.001 for Qwen3-MoE).
    router_aux_loss_coef: float | None = field(
        default=0.0, metadata={"help": "MoE load-balancing loss weight; 0 = off (router is frozen)."}
    )

    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "Continue an interrupted run: a checkpoint-N folder, or 'last' for the newest checkpoint-N "
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
    "Stage 2: train the student's LoRA adapter on create_data.py's JSONL with TRL's SFTTrainer. Every SFTConfig "
    "and TrainingArguments field is a flag; --config FILE.yaml sets any of them from a file (flags given on the "
    "command line win); --resume_from_checkpoint last continues an interrupted run from the newest checkpoint "
    "in --output_dir."
)
NO_PADDING_FREE_HELP = "Pad every example of a batch to the batch's longest instead of concatenating them."


def parser():
    from trl import TrlParser

    built = TrlParser((ScriptArguments, PromptDistillationConfig), description=DESCRIPTION,
                      formatter_class=DefaultsOnceFormatter)
    # TRL reads --config itself before parsing (parse_args_and_config); listed here so that --help shows it.
    # SUPPRESS: never an attribute of the parsed namespace, so the dataclasses are all that parsing returns.
    config_action = built.add_argument(
        "--config", metavar="FILE.yaml", default=argparse.SUPPRESS,
        help="YAML file of flag: value pairs (an 'env:' mapping sets environment variables); command-line flags win.",
    )
    for actions in (built._actions, built._optionals._group_actions):  # listed first, after --help
        actions.remove(config_action)
        actions.insert(1, config_action)
    for action in built._actions:
        # transformers gives a --no_X switch the help of --X; say what the switch does instead.
        if isinstance(action, argparse._StoreFalseAction) and action.option_strings[0].startswith("--no_"):
            action.help = NO_PADDING_FREE_HELP if action.dest == "padding_free" else f"Same as --{action.dest} false."
    return built


def training_steps(config: SFTConfig, examples: int) -> int:
    """Optimizer steps of the run, as the Trainer counts them (max_steps, else epochs x batches per epoch)."""
    if config.max_steps > 0:
        return config.max_steps
    batches = math.ceil(examples / (config.per_device_train_batch_size * config.world_size))
    per_epoch = max(math.ceil(batches / config.gradient_accumulation_steps), 1)
    return math.ceil(config.num_train_epochs * per_epoch)


def warmup_warning(config: SFTConfig, steps: int) -> str | None:
    """Warmup that covers every step leaves the learning rate below its peak all run (with --max_steps 1 the only
    step runs at learning rate 0): the adapter is saved, but it has barely trained, if at all."""
    warmup = config.get_warmup_steps(steps)
    if warmup < steps:
        return None
    return (f"warmup is {warmup} step(s) (--warmup_steps {config.warmup_steps}) and the run has {steps}: the learning "
            f"rate never reaches --learning_rate {config.learning_rate}"
            + (" (the only step runs at learning rate 0)" if steps == 1 else "")
            + "; train more steps or pass --warmup_steps 0.")


# -- model ----------------------------------------------------------------------------------------------------
def resolve_device(config: SFTConfig) -> str:
    import torch

    return "cuda" if torch.cuda.is_available() and not config.use_cpu else "cpu"


def resolve_dtype(name: str, device: str):
    import torch

    return default_dtype(device) if name == "auto" else getattr(torch, name)


def load_student(script_args: ScriptArguments, device: str):
    """The base model in an explicit dtype (transformers 5 would load it in float32), straight onto the GPU."""
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": resolve_dtype(script_args.dtype, device), "attn_implementation": script_args.attn_implementation}
    if script_args.experts_implementation:
        kwargs["experts_implementation"] = script_args.experts_implementation
    if device == "cuda" and not fsdp_launched():
        # One whole copy per GPU (data parallel). Under FSDP the weights load on the CPU (rank 0 only with
        # cpu_ram_efficient_loading) and the Trainer shards them onto the GPUs.
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    return AutoModelForCausalLM.from_pretrained(resolve_model(script_args.model_name), **kwargs)


def resolve_resume(config: SFTConfig) -> str | None:
    """``--resume_from_checkpoint last`` picks the newest checkpoint-N in output_dir (TRL/transformers resume)."""
    from transformers.trainer_utils import get_last_checkpoint

    value = config.resume_from_checkpoint
    if value is None or str(value).lower() in ("", "false", "none"):
        return None
    if str(value).lower() in ("last", "latest", "true"):
        last = get_last_checkpoint(config.output_dir) if Path(config.output_dir).is_dir() else None
        if last is None:
            raise TrainingError(f"--resume_from_checkpoint {value}: no checkpoint-N folder in {config.output_dir}.")
        return last
    if not Path(value).is_dir():
        raise TrainingError(f"--resume_from_checkpoint {value}: no such folder.")
    return value


def check_output_dir(output_dir: Path, overwrite: bool, resume: str | None) -> None:
    """Refuse, before any model loads, to replace a finished adapter that the user did not ask to replace."""
    if output_dir.exists() and not output_dir.is_dir():
        raise TrainingError(f"--output_dir {output_dir} is a file, not a folder.")
    finished = [name for name in ("adapter_config.json", RUN_RECORD) if (output_dir / name).is_file()]
    if finished and not overwrite and resume is None:
        raise TrainingError(f"{output_dir} already holds a trained adapter ({', '.join(finished)}). Pass "
                            "--overwrite_output_dir to replace it, --resume_from_checkpoint last to continue its "
                            "run, or another --output_dir.")


# -- the run --------------------------------------------------------------------------------------------------
@dataclass
class SelectedData:
    task: object
    examples_in_file: int
    selected: list
    repeats_dropped: int = field(default=0, kw_only=True)  # lines repeating an earlier sentence (same label)


@dataclass
class PreparedData(SelectedData):
    report: object  # examples.LengthReport
    dataset: object


def read_data(script_args: ScriptArguments) -> SelectedData:
    """Validate every record and apply the split: errors name file and line, and come before any download."""
    task = load_task(script_args.prompt_file, script_args.labels)
    examples, repeats_dropped = load_distinct_examples(script_args.data_file, task)
    selected = select_split(examples, script_args.split, script_args.eval_fraction, script_args.split_seed,
                            script_args.data_file)
    return SelectedData(task, len(examples), selected, repeats_dropped=repeats_dropped)


def resolve_student_framing(script_args: ScriptArguments, tokenizer) -> str:
    """--student_framing, with 'auto' resolved to the fewest framing tokens (student_framing.choose_framing)."""
    chosen = script_args.student_framing
    return choose_framing(tokenizer) if chosen == "auto" else chosen


def prepare_data(script_args: ScriptArguments, config: SFTConfig, tokenizer, log=print,
                 selected: SelectedData | None = None) -> PreparedData:
    """Check the chat template and drop examples longer than max_length. No model involved."""
    selected = selected or read_data(script_args)
    framing = resolve_student_framing(script_args, tokenizer)  # the run record keeps it
    lengths = tokenize_lengths(selected.selected, tokenizer, script_args.data_file, framing)
    report = drop_too_long(selected.selected, lengths, config.max_length)
    held_out = selected.examples_in_file - len(selected.selected)
    log(f"[train] {script_args.data_file}: {selected.examples_in_file} examples, {len(selected.selected)} in split "
        f"'{script_args.split}' ({held_out} held out for evaluation).")
    if selected.repeats_dropped:
        log(f"[train] {repeats_dropped_note(script_args.data_file, selected.repeats_dropped)}")
    log("[train] " + report.describe(config.max_length, script_args.data_file))
    if not report.kept:
        raise DataError(f"{script_args.data_file}: every example is longer than max_length={config.max_length}.")
    return PreparedData(selected.task, selected.examples_in_file, selected.selected, report, to_dataset(report.kept, framing),
                        repeats_dropped=selected.repeats_dropped)


def distillation_trainer_class():
    """TRL's SFTTrainer with the data order of ``data_order``: a seeded permutation per epoch, the same for one
    process and for N, each example once per epoch (filler rows without a trainable token complete the last round
    of batches, instead of accelerate repeating real examples)."""
    from trl import SFTTrainer

    class DistillationTrainer(SFTTrainer):
        example_order: EpochPermutation | None = None
        seen_examples: SeenExamples | None = None
        examples_before_filler: int = 0

        def track_examples(self) -> None:
            """Train from the numbered rows plus the filler row, and record what each process collates."""
            self.examples_before_filler = len(self.train_dataset)
            if self.args.dataloader_num_workers == 0:
                self.seen_examples = SeenExamples(self.data_collator, self.current_epoch)
                self.data_collator = self.seen_examples
            else:
                self.data_collator = drop_example_index(self.data_collator)

        def get_train_dataloader(self):
            if not self.examples_before_filler:
                return super().get_train_dataloader()
            return self._get_dataloader(dataset=add_index_and_filler(self.train_dataset), description="Training",
                                        batch_size=self._train_batch_size, sampler_fn=self._get_train_sampler,
                                        is_training=True)

        def current_epoch(self) -> int:
            return self.example_order.epoch if self.example_order is not None else 0

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            if self.examples_before_filler and EXAMPLE_INDEX not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, EXAMPLE_INDEX]

        def _get_train_sampler(self, train_dataset=None):
            if not self.examples_before_filler:
                return super()._get_train_sampler(train_dataset)
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            round_size = self._train_batch_size * self.args.world_size
            self.example_order = EpochPermutation(self.examples_before_filler, self.examples_before_filler,
                                                  round_size, seed)
            return self.example_order

    return DistillationTrainer


def drop_example_index(collator):
    def collate(features):
        return collator([{key: value for key, value in feature.items() if key != EXAMPLE_INDEX}
                         for feature in features])

    return collate


def build_trainer(script_args: ScriptArguments, config: SFTConfig, tokenizer, data: PreparedData, model=None,
                  callbacks=()):
    device = resolve_device(config)
    model = model if model is not None else load_student(script_args, device)
    peft_config = build_lora_config(model, script_args.lora_settings())
    if config.padding_free and not config.packing:
        # Lengths were enforced in prepare_data; TRL refuses padding-free without packing unless max_length is None.
        config.max_length = None
    trainer = distillation_trainer_class()(model=model, args=config, train_dataset=data.dataset,
                                           processing_class=tokenizer, peft_config=peft_config,
                                           callbacks=list(callbacks))
    if not config.packing and len(trainer.train_dataset) != len(data.report.kept):
        raise TrainingError(
            f"TRL kept {len(trainer.train_dataset)} of {len(data.report.kept)} examples after tokenization; "
            "some lost every trainable token. Check the chat template and max_length."
        )
    if not config.packing and config.train_sampling_strategy == "random":
        # Packed rows hold many examples, and the other strategies order by length: both keep the stock sampler.
        trainer.track_examples()
    return trainer


@dataclass
class TrainingResult:
    trainer: object
    record: dict
    output_dir: Path


def run_training(script_args: ScriptArguments, config: SFTConfig, callbacks=(), log=print) -> TrainingResult:
    """Train and save. Under ``accelerate launch`` every process trains its share of each batch; only the main
    process prints, starts wandb and writes the adapter, tokenizer, run record and merged model."""
    main_process = is_main_process()
    log = log if main_process else silent
    requested_max_length = config.max_length
    resume = resolve_resume(config)
    check_output_dir(Path(config.output_dir), script_args.overwrite_output_dir, resume)
    selected = read_data(script_args)  # data errors surface before anything is downloaded or loaded
    tokenizer = load_tokenizer(script_args.model_name)
    data = prepare_data(script_args, config, tokenizer, log, selected)
    if script_args.merge and (config.fsdp or fsdp_launched()):
        raise TrainingError("--merge does not work under FSDP (each process holds a slice of the base); train, "
                            "then merge the saved adapter in one process (see docs/training.md).")
    wandb_settings = configure_wandb(config.report_to, config.output_dir)
    if wandb_settings:
        log("[train] " + wandb_settings.note)
    if resume:
        log(f"[train] Resuming from {resume}")
    log(f"[train] Loading {script_args.model_name} ...")
    trainer = build_trainer(script_args, config, tokenizer, data, callbacks=callbacks)
    check_process_group(trainer)
    log("[train] " + describe_batch(trainer))
    warning = warmup_warning(config, training_steps(config, len(trainer.train_dataset)))
    if warning:
        log(f"[train] ⚠️  {warning}")
    summary = summarize_adapters(trainer.model)
    log("[train] " + summary.describe())

    wandb_dir = start_wandb_run(wandb_settings, config.run_name) if wandb_settings and main_process else None
    try:
        started = time.perf_counter()
        output = trainer.train(resume_from_checkpoint=resume)
        wall = time.perf_counter() - started
    finally:
        if wandb_settings and main_process:
            finish_wandb()
    output_dir = Path(config.output_dir)
    save_adapter(trainer, output_dir)  # every process takes part, the main one writes
    order = gathered_order(trainer)  # a collective: every process calls it

    record = build_record(script_args, config, data, summary, trainer, output, wall, requested_max_length,
                          resume, wandb_dir)
    record["distributed"] = distributed_summary(trainer, order)
    record["student_framing"] = resolve_student_framing(script_args, tokenizer)  # what prepare_data trained on
    if script_args.merge:
        record["merged_model_dir"] = str(output_dir / MERGED_SUBDIR)
    if main_process:
        tokenizer.save_pretrained(str(output_dir))
        (output_dir / RUN_RECORD).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", "utf-8")
        if script_args.merge:
            merge_adapter(trainer.model, tokenizer, output_dir / MERGED_SUBDIR, log)
    log(format_summary(record, output_dir))
    return TrainingResult(trainer, record, output_dir)


def save_adapter(trainer, output_dir: Path) -> None:
    """The final adapter as peft files (adapter_config.json, adapter_model.safetensors).

    Under FSDP the checkpoints are sharded (configs/accelerate_fsdp.yaml: SHARDED_STATE_DICT, each process writes its
    slice of the adapter and optimizer state), and with a sharded state dict ``Trainer.save_model`` writes no model
    file at all (transformers trainer.py: ``save_model`` saves under FSDP only for FULL_STATE_DICT). So the final save
    switches the plugin to FULL_STATE_DICT first, as PEFT's FSDP guide does: the whole state dict is gathered once,
    onto the main process's CPU, and peft's ``save_pretrained`` keeps the adapter's tensors.
    """
    plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None)
    if plugin is not None:
        use_full_state_dict(plugin)
    trainer.save_model(str(output_dir))


def use_full_state_dict(plugin) -> bool:
    """Switch an accelerate FullyShardedDataParallelPlugin to FULL_STATE_DICT (rank 0 only, offloaded to the CPU);
    False when it already was."""
    if "FULL_STATE_DICT" in str(plugin.state_dict_type):
        return False
    plugin.state_dict_config = plugin.optim_state_dict_config = None  # else set_state_dict_type keeps the sharded ones
    plugin.set_state_dict_type("FULL_STATE_DICT")
    return True


def run(job: TrainingJob, callbacks=(), log=print) -> TrainingResult:
    """train_sft_trl.py's one entry: train and save what ``job`` says (see ``run_training``)."""
    return run_training(job.script, job.sft, callbacks=callbacks, log=log)


def check_process_group(trainer) -> None:
    """Started as N processes, trained as N: otherwise each process would train alone and overwrite the others."""
    launched = launched_processes()
    if launched != trainer.args.world_size:
        raise TrainingError(
            f"Started as {launched} processes (WORLD_SIZE) but the trainer sees a world of {trainer.args.world_size} "
            f"({trainer.accelerator.distributed_type}); on a machine without CUDA pass --use_cpu true."
        )


def examples_per_optimizer_step(args) -> int:
    return args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size


def describe_batch(trainer) -> str:
    args = trainer.args
    return (f"{args.world_size} process(es) x {args.per_device_train_batch_size} examples per device x "
            f"{args.gradient_accumulation_steps} accumulation steps = {examples_per_optimizer_step(args)} examples "
            f"per optimizer step ({trainer.accelerator.distributed_type}).")


def gathered_order(trainer) -> dict | None:
    """Which examples every process collated, summarised on each (see data_order.summarize_order)."""
    seen = getattr(trainer, "seen_examples", None)
    if seen is None:
        return None
    if trainer.args.world_size > 1:
        from accelerate.utils import gather_object

        per_process = gather_object([seen.batches])
    else:
        per_process = [seen.batches]
    return summarize_order(per_process, trainer.examples_before_filler)


def distributed_summary(trainer, order: dict | None) -> dict:
    args = trainer.args
    return {
        "world_size": args.world_size,
        "distributed_type": str(trainer.accelerator.distributed_type).removeprefix("DistributedType."),
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "examples_per_optimizer_step": examples_per_optimizer_step(args),
        "data_order": order,
    }


def merge_adapter(peft_model, tokenizer, target: Path, log=print) -> None:
    """Fold the adapter into the base weights (in place) and save a plain model for serving without LoRA."""
    log(f"[train] Merging the adapter into the base weights -> {target}")
    merged = peft_model.merge_and_unload()
    # The Trainer set config.use_cache from TrainingArguments.use_cache (False: no KV cache while training); the
    # merged model is for serving, where generation without a KV cache recomputes the whole sequence each step.
    merged.config.use_cache = True
    merged.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))


def build_record(script_args, config, data, summary, trainer, output, wall, requested_max_length, resume,
                 wandb_dir) -> dict:
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
        "base_model": script_args.model_name,
        "base_model_resolved": resolve_model(script_args.model_name),
        "data_file": str(script_args.data_file),
        "data_sha256": file_sha256(script_args.data_file),
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
        "task": {"name": data.task.name, "fingerprint": data.task.fingerprint(), "labels": list(data.task.labels)},
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
            "dtype": str(resolve_dtype(script_args.dtype, resolve_device(config))).removeprefix("torch."),
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
    if record.get("wandb_run_dir"):
        lines.append(f"  wandb run folder: {record['wandb_run_dir']}")
    if record.get("merged_model_dir"):
        lines.append(f"  merged model: {record['merged_model_dir']}")
    lines.append("=" * 80)
    return "\n".join(lines)


def _rounded(value) -> str:
    """4 significant digits for the printed summary (the run record keeps the full value)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
