#!/usr/bin/env python
"""Stage 2: train the student's LoRA adapter on the distilled labels (TRL SFTTrainer).

Every SFTConfig / TrainingArguments field is a flag (``--learning_rate``, ``--max_steps``, ``--report_to none``,
``--resume_from_checkpoint last`` ...), plus the script's own: ``--model_name``, ``--data_file``, the LoRA flags,
the split flags and ``--merge``. ``--config file.yaml`` sets any of them from a file. Defaults are the reference
hyperparameters; see ``python train_sft_trl.py --help``.
"""

import sys

from prompt_distill.data import DataError
from prompt_distill.models import ModelNotFoundError
from prompt_distill.task import TaskError
from prompt_distill.training.config import TrainingJob
from prompt_distill.training.lora import LoraTargetError
from prompt_distill.training.run import TrainingError, parser, run


def main(argv=None) -> int:
    job = TrainingJob.from_args(parser().parse_args_and_config(argv))
    try:
        run(job)
    except (DataError, TaskError, LoraTargetError, ModelNotFoundError, TrainingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        close_progress_bars()  # else the Trainer's bar redraws itself below the message when it is collected
        print(f"\n{interrupted_line(job.sft)}", file=sys.stderr)
        return 130
    return 0


def close_progress_bars() -> None:
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def interrupted_line(config) -> str:
    """One line on Ctrl-C: the newest checkpoint and the command that resumes from it, or that there is none."""
    from pathlib import Path

    from transformers.trainer_utils import get_last_checkpoint

    output_dir = Path(config.output_dir)
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if last is None:
        return (f"Interrupted before the first checkpoint (every {config.save_steps} steps with --save_strategy "
                f"{config.save_strategy}); nothing to resume in {output_dir}.")
    return (f"Interrupted: the newest checkpoint is {last}. Run the same command with --resume_from_checkpoint last "
            "to continue from it.")


if __name__ == "__main__":
    sys.exit(main())
