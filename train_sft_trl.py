#!/usr/bin/env python
"""Stage 2: train the student's LoRA adapter on the distilled labels (TRL SFTTrainer).

Every SFTConfig / TrainingArguments field is a flag (``--learning_rate``, ``--max_steps``, ``--report_to none``,
``--resume_from_checkpoint last`` ...), plus the script's own: ``--base_model`` (old names ``--model_name``, ``--model_name_or_path``), ``--data_file``, the LoRA flags,
the split flags and ``--merge``. ``--config file.yaml`` sets any of them from a file. Defaults are the reference
hyperparameters; see ``python train_sft_trl.py --help``.
"""

import sys

from prompt_distill.cli_help import print_help_cached


def build_parser():
    from prompt_distill.training.config import parser

    return parser()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # --help from the cache when current: building the parser imports TRL, transformers and torch (seconds).
    if print_help_cached(__file__, argv, build_parser):
        return 0
    from prompt_distill.cli import is_main_process, report_error, setup_logging
    from prompt_distill.errors import PromptDistillError
    from prompt_distill.training.config import parse_job
    from prompt_distill.training.record import format_summary
    from prompt_distill.training.run import run

    job = parse_job(argv)
    setup_logging()
    try:
        result = run(job)
    except PromptDistillError as error:
        return report_error(error)
    except KeyboardInterrupt:
        close_progress_bars()  # else the Trainer's bar redraws itself below the message when it is collected
        print(f"\n{interrupted_line(job.sft)}", file=sys.stderr)
        return 130
    if is_main_process():  # under accelerate launch every process trains; one prints the summary
        print(format_summary(result.record, result.output_dir), flush=True)
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
