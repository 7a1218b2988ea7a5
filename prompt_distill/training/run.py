"""Stage 2: train the student's LoRA adapter with TRL's SFTTrainer on the distilled labels.

``run(job)`` reads the parsed flags (``config.TrainingJob``), checks the data before any model loads, trains, and
writes the adapter, tokenizer and run record (``record``). Progress is logged (``logging``; only the main process
logs INFO under ``accelerate launch``, see ``cli.setup_logging``).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trl import SFTConfig

from ..cli import is_main_process
from ..data import DataError, in_split
from ..duplicates import repeats_dropped_note
from ..labeling.run_files import RunFiles, read_header
from ..models import default_dtype, load_tokenizer, resolve_model
from ..preflight import check_flag_ranges
from ..student_framing import choose_framing
from ..task_source import TASK_KEY, describe, resolve_task
from ..tracking import (
    JOB_TRAIN,
    adapter_files,
    dataset_artifact_name,
    dataset_files,
    model_artifact_name,
    reports_to_wandb,
    run_group,
    start_run,
)
from .config import ScriptArguments, TrainingError, TrainingJob, fsdp_launched, launched_processes
from .data_order import EXAMPLE_INDEX, EpochPermutation, SeenExamples, add_index_and_filler, summarize_order
from .examples import (
    TEACHER_COLUMN,
    drop_too_long,
    file_sha256,
    filter_by_confidence,
    load_distinct_examples,
    prompt_messages,
    select_split,
    to_dataset,
    tokenize_lengths,
)
from .lora import build_lora_config, summarize_adapters
from .losses import (
    DEFAULT_LOSS,
    TEACHER_TARGETS,
    LabelDistillationLoss,
    TeacherTargetsCollator,
    check_distillation_flags,
    loss_function,
)
from .record import (
    MERGED_SUBDIR,
    RUN_RECORD,
    build_record,
    distributed_summary,
    examples_per_optimizer_step,
    write_record,
)

logger = logging.getLogger(__name__)


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
    return AutoModelForCausalLM.from_pretrained(resolve_model(script_args.base_model), **kwargs)


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
    held_out: list = field(default_factory=list, kw_only=True)  # the eval split (--split train), for the eval loss
    distillation: dict = field(default_factory=dict, kw_only=True)  # distillation_summary: targets and filter counts


@dataclass
class PreparedData(SelectedData):
    report: object  # examples.LengthReport
    dataset: object
    eval_dataset: object = field(default=None, kw_only=True)  # held-out examples for the eval loss, or None


def data_task(script_args: ScriptArguments):
    """The task of the data: the one create_data.py recorded in the data's run header (NAME.run.json), checked
    against --labels/--prompt_file when they are given; the flags only for data without a run header."""
    header_path = RunFiles.for_output(script_args.data_file).header
    header = read_header(RunFiles.for_output(script_args.data_file))
    entry = None
    if header is not None:
        entry = header.get(TASK_KEY)
        if entry is None and "labels" in header:  # written before the run header held the prompt
            entry = {"labels": header["labels"], "fingerprint": header.get("task_fingerprint")}
    task = resolve_task(script_args.prompt_file, script_args.labels, entry, str(header_path))
    where = f"from {header_path}" if entry is not None else "from the flags (the data has no run header)"
    logger.info(f"[train] Task {where}: {describe(task)}")
    return task


def read_data(script_args: ScriptArguments) -> SelectedData:
    """Validate every record and apply the split: errors name file and line, and come before any download."""
    task = data_task(script_args)
    examples, repeats_dropped = load_distinct_examples(script_args.data_file, task)
    selected = select_split(examples, script_args.split, script_args.eval_fraction, script_args.split_seed,
                            script_args.data_file)
    held_out = [] if script_args.split == "all" else [
        example for example in examples
        if in_split(example.text, "eval", script_args.eval_fraction, script_args.split_seed)]
    target = getattr(script_args, "distillation_target", "hard")
    threshold = getattr(script_args, "min_teacher_confidence", 0.0)
    left_out = []
    if threshold > 0:
        filtered = filter_by_confidence(selected, threshold)
        selected, left_out = filtered.kept, filtered.left_out
        logger.info(f"[train] --min_teacher_confidence {threshold}: {len(left_out)} of {len(filtered.kept) + len(left_out)} "
                    f"training examples left out (teacher confidence below {threshold}); {filtered.without_teacher} "
                    "kept without a teacher entry.")
        if not selected:
            raise DataError(f"{script_args.data_file}: every training example has a teacher confidence below "
                            f"--min_teacher_confidence {threshold}.")
    with_teacher = sum(example.teacher is not None for example in selected)
    if target == "soft":
        if not with_teacher:
            raise DataError(f"{script_args.data_file}: --distillation_target soft needs the teacher's distribution "
                            "(the \"teacher\" key of create_data.py's training file, written when the teacher's label "
                            "probabilities are known); no training example has one.")
        if with_teacher < len(selected):
            logger.warning(f"[train] ⚠️  {len(selected) - with_teacher} of {len(selected)} training examples have no "
                           "teacher distribution: they train on their hard label.")
    distillation = distillation_summary(script_args, len(selected), with_teacher, len(left_out))
    return SelectedData(task, len(examples), selected, repeats_dropped=repeats_dropped, held_out=held_out,
                        distillation=distillation)


def distillation_summary(script_args: ScriptArguments, selected: int, with_teacher: int, left_out: int) -> dict:
    """What run_record.json says of the targets: which, with what settings, and what the filter left out."""
    target = getattr(script_args, "distillation_target", "hard")
    return {
        "target": target,
        "temperature": getattr(script_args, "distillation_temperature", 1.0) if target == "soft" else None,
        "hard_label_weight": getattr(script_args, "hard_label_weight", 0.0) if target == "soft" else None,
        "min_teacher_confidence": getattr(script_args, "min_teacher_confidence", 0.0),
        "left_out_low_confidence": left_out,
        "examples_with_teacher": with_teacher,
        # under soft, the examples without a teacher entry train on their hard label
        "hard_fallback": selected - with_teacher if target == "soft" else 0,
    }


def resolve_student_framing(script_args: ScriptArguments, tokenizer) -> str:
    """--student_framing, with 'auto' resolved to the fewest framing tokens (student_framing.choose_framing)."""
    chosen = script_args.student_framing
    return choose_framing(tokenizer) if chosen == "auto" else chosen


def prepare_data(script_args: ScriptArguments, config: SFTConfig, tokenizer,
                 selected: SelectedData | None = None) -> PreparedData:
    """Check the chat template and drop examples longer than max_length. No model involved."""
    selected = selected or read_data(script_args)
    framing = resolve_student_framing(script_args, tokenizer)  # the run record keeps it
    lengths = tokenize_lengths(selected.selected, tokenizer, script_args.data_file, framing)
    report = drop_too_long(selected.selected, lengths, config.max_length)
    held_out = selected.examples_in_file - len(selected.selected)
    logger.info(f"[train] {script_args.data_file}: {selected.examples_in_file} examples, {len(selected.selected)} in split "
        f"'{script_args.split}' ({held_out} held out for evaluation).")
    if selected.repeats_dropped:
        logger.info(f"[train] {repeats_dropped_note(script_args.data_file, selected.repeats_dropped)}")
    logger.info("[train] " + report.describe(config.max_length, script_args.data_file))
    if not report.kept:
        raise DataError(f"{script_args.data_file}: every example is longer than max_length={config.max_length}.")
    soft = soft_targets(script_args)
    return PreparedData(selected.task, selected.examples_in_file, selected.selected, report,
                        to_dataset(report.kept, framing, teacher_labels=selected.task.labels if soft else None),
                        repeats_dropped=selected.repeats_dropped, held_out=selected.held_out,
                        distillation=selected.distillation,
                        eval_dataset=eval_loss_dataset(script_args, config, tokenizer, selected.held_out, framing,
                                                     selected.task))


def soft_targets(script_args: ScriptArguments) -> bool:
    return getattr(script_args, "distillation_target", "hard") == "soft"


def eval_loss_dataset(script_args: ScriptArguments, config: SFTConfig, tokenizer, held_out: list, framing: str,
                      task=None):
    """The first --eval_loss_samples held-out examples (file order, so the same ones at every evaluation), those
    within max_length; None when there is no eval loss to compute (--split all, no held-out example, the flag 0 or
    --eval_strategy no). The held-out split is the one evaluate.py scores: never trained on."""
    strategy = getattr(config.eval_strategy, "value", config.eval_strategy)
    if strategy == "no" or script_args.eval_loss_samples <= 0 or not held_out:
        return None
    chosen = held_out[: script_args.eval_loss_samples]
    kept = drop_too_long(chosen, tokenize_lengths(chosen, tokenizer, script_args.data_file, framing),
                         config.max_length).kept
    return to_dataset(kept, framing, teacher_labels=task.labels if soft_targets(script_args) and task else None) if kept else None


def distillation_trainer_class():
    """TRL's SFTTrainer with the data order of ``data_order``: a seeded permutation per epoch, the same for one
    process and for N, each example once per epoch (filler rows without a trainable token complete the last round
    of batches, instead of accelerate repeating real examples)."""
    from trl import SFTTrainer

    class DistillationTrainer(SFTTrainer):
        example_order: EpochPermutation | None = None
        seen_examples: SeenExamples | None = None
        examples_before_filler: int = 0
        soft_targets: bool = False  # the dataset carries TEACHER_COLUMN, the batches TEACHER_TARGETS

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            """TRL's own compute_loss; under soft targets the batch's ``teacher_targets`` is taken out of the inputs
            first (model.forward never sees it) and given to the ``compute_loss_func`` as a keyword."""
            targets = inputs.pop(TEACHER_TARGETS, None)
            loss_func = self.compute_loss_func
            if targets is None or not isinstance(loss_func, LabelDistillationLoss):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            self.compute_loss_func = functools.partial(loss_func, teacher_targets=targets)
            try:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            finally:
                self.compute_loss_func = loss_func

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
            if self.soft_targets and TEACHER_COLUMN not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, TEACHER_COLUMN]

        def _get_train_sampler(self, train_dataset=None):
            if not self.examples_before_filler:
                return super()._get_train_sampler(train_dataset)
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            round_size = self._train_batch_size * self.args.world_size
            self.example_order = EpochPermutation(self.examples_before_filler, self.examples_before_filler,
                                                  round_size, seed)
            return self.example_order

    return DistillationTrainer


def label_distillation_loss(script_args: ScriptArguments, tokenizer, model, data) -> LabelDistillationLoss:
    """The soft loss for this task: the labels' answer tokens after the student's prompt, as classify scores them."""
    from ..engines.hf import model_end_of_turn_ids
    from ..engines.label_tokens import label_tokens

    check_distillation_flags(script_args.distillation_temperature, script_args.hard_label_weight,
                             script_args.min_teacher_confidence)
    framing = resolve_student_framing(script_args, tokenizer)
    answer = label_tokens(tokenizer, prompt_messages("x", framing), tuple(data.task.labels),
                          model_end_of_turn_ids(model, tokenizer))
    return LabelDistillationLoss(answer, script_args.distillation_temperature, script_args.hard_label_weight)


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
    eval_dataset = getattr(data, "eval_dataset", None)
    if eval_dataset is None and getattr(config.eval_strategy, "value", config.eval_strategy) != "no":
        from transformers.trainer_utils import IntervalStrategy

        # nothing held out to score (--split all, no held-out example, --eval_loss_samples 0)
        config.eval_strategy, config.do_eval = IntervalStrategy.NO, False
    soft = soft_targets(script_args)
    if soft and config.packing:
        raise TrainingError("--distillation_target soft does not work with --packing (a packed row loses the "
                            "teacher's per-example targets); padding-free batches (the default) keep them.")
    compute_loss_func = (label_distillation_loss(script_args, tokenizer, model, data) if soft
                         else loss_function(getattr(script_args, "loss", DEFAULT_LOSS)))
    with warnings.catch_warnings():
        # TRL 1.16 announces compute_loss_func's removal in v2 (subclass and override compute_loss instead); it is the
        # hook this project was asked to use, and it costs one extra no-grad forward per batch (docs/training.md).
        warnings.filterwarnings("ignore", message="`compute_loss_func` is deprecated", category=FutureWarning)
        trainer = distillation_trainer_class()(model=model, args=config, train_dataset=data.dataset,
                                               eval_dataset=eval_dataset,
                                               processing_class=tokenizer, peft_config=peft_config,
                                               callbacks=list(callbacks), compute_loss_func=compute_loss_func)
    if soft:
        trainer.soft_targets = True
        trainer.data_collator = TeacherTargetsCollator(trainer.data_collator, len(data.task.labels), TEACHER_COLUMN)
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


def run_training(script_args: ScriptArguments, config: SFTConfig, callbacks=()) -> TrainingResult:
    """Train and save. Under ``accelerate launch`` every process trains its share of each batch; only the main
    process logs progress, starts wandb and writes the adapter, tokenizer, run record and merged model. The
    summary to print is ``record.format_summary(result.record, result.output_dir)``."""
    check_flag_ranges(script_args)  # --eval_fraction, before anything loads
    check_distillation_flags(getattr(script_args, "distillation_temperature", 1.0),
                             getattr(script_args, "hard_label_weight", 0.0),
                             getattr(script_args, "min_teacher_confidence", 0.0))
    main_process = is_main_process()
    requested_max_length = config.max_length
    resume = resolve_resume(config)
    check_output_dir(Path(config.output_dir), script_args.overwrite_output_dir, resume)
    selected = read_data(script_args)  # data errors surface before anything is downloaded or loaded
    tokenizer = load_tokenizer(script_args.base_model)
    data = prepare_data(script_args, config, tokenizer, selected)
    if script_args.merge and (config.fsdp or fsdp_launched()):
        raise TrainingError("--merge does not work under FSDP (each process holds a slice of the base); train, "
                            "then merge the saved adapter in one process (see docs/training.md).")
    if resume:
        logger.info(f"[train] Resuming from {resume}")
    logger.info(f"[train] Loading {script_args.base_model} ...")
    trainer = build_trainer(script_args, config, tokenizer, data, callbacks=callbacks)
    check_process_group(trainer)
    logger.info("[train] " + describe_batch(trainer))
    warning = warmup_warning(config, training_steps(config, len(trainer.train_dataset)))
    if warning:
        logger.warning(f"[train] ⚠️  {warning}")
    summary = summarize_adapters(trainer.model)
    logger.info("[train] " + summary.describe())

    tracking = start_training_run(script_args, config, trainer) if main_process else None
    try:
        started = time.perf_counter()
        output = trainer.train(resume_from_checkpoint=resume)
        wall = time.perf_counter() - started
        output_dir = Path(config.output_dir)
        save_adapter(trainer, output_dir)  # every process takes part, the main one writes
        order = gathered_order(trainer)  # a collective: every process calls it
        leave_process_group(trainer)  # the last collective is behind: the rest is the main process's files

        dtype = str(resolve_dtype(script_args.dtype, resolve_device(config))).removeprefix("torch.")
        record = build_record(script_args, config, data, summary, trainer, output, wall, requested_max_length,
                              resume, tracking.folder if tracking else None, dtype)
        record["distributed"] = distributed_summary(trainer, order)
        record["student_framing"] = resolve_student_framing(script_args, tokenizer)  # what prepare_data trained on
        if script_args.merge:
            record["merged_model_dir"] = str(output_dir / MERGED_SUBDIR)
        if main_process:
            tokenizer.save_pretrained(str(output_dir))
            write_record(output_dir, record)
            if script_args.merge:
                merge_adapter(trainer.model, tokenizer, output_dir / MERGED_SUBDIR)
        if tracking:  # after run_record.json is written: the model artifact holds it
            finish_training_run(tracking, script_args, output_dir, record)
    finally:
        if tracking:
            tracking.finish()  # a no-op once finished; else the run ends here whatever happened
    return TrainingResult(trainer, record, output_dir)


# -- wandb ----------------------------------------------------------------------------------------------------
def start_training_run(script_args: ScriptArguments, config: SFTConfig, trainer):
    """The training run, started before ``train()`` so that the Trainer's WandbCallback logs into it (it reuses an
    active ``wandb.run``, adding the SFTConfig and the model config): group and job type, the script's own
    arguments and the data's fingerprint in the config, the dataset artifact as input. None when wandb is off; when
    wandb fails to start, the Trainer's callback is removed too, so training goes on without it."""
    if not reports_to_wandb(config.report_to):
        return None
    data_file = Path(script_args.data_file)
    run_config = {"script": asdict(script_args), "data": {"file": str(data_file), "sha256": file_sha256(data_file)}}
    tracking = start_run(config.report_to, JOB_TRAIN, config.run_name or Path(config.output_dir).resolve().name,
                         run_group(script_args.run_group, data_file), run_config)
    if tracking is None:
        from transformers.integrations import WandbCallback

        trainer.remove_callback(WandbCallback)
        return None
    tracking.use_artifact(dataset_artifact_name(data_file), "dataset", dataset_files(data_file))
    return tracking


def scalars(values: dict, prefix: str) -> dict:
    """The numbers and strings of a nested dict, keys joined with '/' (lists and None left out)."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(scalars(value, f"{prefix}/{key}"))
        elif isinstance(value, (int, float, str, bool)):
            flat[f"{prefix}/{key}"] = value
    return flat


def finish_training_run(tracking, script_args: ScriptArguments, output_dir: Path, record: dict) -> None:
    """After run_record.json is written: the adapter and its run record as the model artifact (unless
    --log_model_artifact false), the record's numbers as the run summary, then finish."""
    tracking.summary(scalars(record, "run_record"))
    if script_args.log_model_artifact:
        tracking.log_artifact(adapter_files(output_dir), model_artifact_name(output_dir), "model",
                              metadata={"base_model": script_args.base_model, "data_file": str(script_args.data_file)})
    tracking.finish()


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


def run(job: TrainingJob, callbacks=()) -> TrainingResult:
    """train_sft_trl.py's one entry: train and save what ``job`` says (see ``run_training``)."""
    return run_training(job.script, job.sft, callbacks=callbacks)


def leave_process_group(trainer) -> None:
    """Under ``accelerate launch``, once the last collective is done: all processes meet, then each tears its
    process group down while its interpreter is still whole. A process that exits with its gloo group still up can
    die with SIGABRT at interpreter shutdown (gloo's worker threads still hold tensors of finished collectives;
    pytorch/pytorch#179291), and torchrun then kills the main process in the middle of its writes: it happened once
    in CI, to rank 1. The main process writes the record, the merged model and the wandb run after this, with no
    group to time out while the others wait. No-op in a single process."""
    if trainer.args.world_size > 1:
        trainer.accelerator.wait_for_everyone()  # else one process could shut down while another still sends
        trainer.accelerator.state.destroy_process_group()


def check_process_group(trainer) -> None:
    """Started as N processes, trained as N: otherwise each process would train alone and overwrite the others."""
    launched = launched_processes()
    if launched != trainer.args.world_size:
        raise TrainingError(
            f"Started as {launched} processes (WORLD_SIZE) but the trainer sees a world of {trainer.args.world_size} "
            f"({trainer.accelerator.distributed_type}); on a machine without CUDA pass --use_cpu true."
        )


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


def merge_adapter(peft_model, tokenizer, target: Path) -> None:
    """Fold the adapter into the base weights (in place) and save a plain model for serving without LoRA."""
    logger.info(f"[train] Merging the adapter into the base weights -> {target}")
    merged = peft_model.merge_and_unload()
    # The Trainer set config.use_cache from TrainingArguments.use_cache (False: no KV cache while training); the
    # merged model is for serving, where generation without a KV cache recomputes the whole sequence each step.
    merged.config.use_cache = True
    merged.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
