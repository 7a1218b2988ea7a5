"""train_sft_trl.py's parsed flags become one frozen TrainingJob: the script's own flags and TRL's SFTConfig."""

import dataclasses

import pytest

from prompt_distill.training.config import PromptDistillationConfig, ScriptArguments, TrainingJob, parser


def test_the_job_holds_both_parsed_dataclasses_and_is_frozen():
    job = TrainingJob.from_args(parser().parse_args_and_config(["--max_steps", "3", "--lora_dropout", "0.1",
                                                                 "--report_to", "none"]))
    assert isinstance(job.script, ScriptArguments) and isinstance(job.sft, PromptDistillationConfig)
    assert (job.sft.max_steps, job.script.lora_dropout) == (3, 0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.sft = None
