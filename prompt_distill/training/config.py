"""train_sft_trl.py's flags as one typed, frozen job: what ``training.run.run`` reads.

TRL's parser already turns every flag into a field of two dataclasses (``run.ScriptArguments``, the script's own
flags, and ``run.PromptDistillationConfig``, TRL's ``SFTConfig``) and refuses an unknown flag, so the job only holds
the pair. Frozen means the pair is never swapped; the Trainer still reads (and adjusts) the SFTConfig it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trl import SFTConfig

    from .run import ScriptArguments


@dataclass(frozen=True)
class TrainingJob:
    script: ScriptArguments
    sft: SFTConfig

    @classmethod
    def from_args(cls, parsed) -> TrainingJob:
        """The job from ``TrlParser.parse_args_and_config``'s result: (ScriptArguments, SFTConfig), in that order."""
        script, sft = parsed
        return cls(script=script, sft=sft)
