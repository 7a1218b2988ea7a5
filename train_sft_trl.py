#!/usr/bin/env python
"""Stage 2: train the student's LoRA adapter on the distilled labels (TRL SFTTrainer).

Every SFTConfig / TrainingArguments field is a flag (``--learning_rate``, ``--max_steps``, ``--report_to none``,
``--resume_from_checkpoint last`` ...), plus the script's own: ``--model_name``, ``--data_file``, the LoRA flags,
the split flags and ``--merge``. ``--config file.yaml`` sets any of them from a file. Defaults are the reference
hyperparameters; see ``python train_sft_trl.py --help``.
"""

import sys

from prompt_distill.data import DataError
from prompt_distill.lora import LoraTargetError
from prompt_distill.models import ModelNotFoundError
from prompt_distill.task import TaskError
from prompt_distill.training import TrainingError, parser, run_training


def main(argv=None) -> int:
    script_args, config = parser().parse_args_and_config(argv)
    try:
        run_training(script_args, config)
    except (DataError, TaskError, LoraTargetError, ModelNotFoundError, TrainingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
