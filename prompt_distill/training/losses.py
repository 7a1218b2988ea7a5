"""The student's training losses, by name: where a new loss goes (docs/architecture.md, "How to add ...").

A loss is a function with the signature of TRL's ``compute_loss_func`` (``SFTTrainer(compute_loss_func=...)``, from
transformers' Trainer): ``(outputs, labels, num_items_in_batch) -> loss``. ``None`` keeps TRL's own loss, the
negative log-likelihood of the completion tokens (the label and the end of turn; the prompt is masked). The
trainer (training/run.py ``build_trainer``) takes the function named by ``ScriptArguments.loss``, DEFAULT_LOSS while
there is one loss; a second loss adds its entry here and a ``loss`` field (choices: these names) to ScriptArguments
in training/config.py.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import PromptDistillError

LossFunction = Callable[..., object]

# name -> compute_loss_func (None: TRL's completion-only NLL)
LOSSES: dict[str, LossFunction | None] = {
    "completion_nll": None,
}
DEFAULT_LOSS = "completion_nll"


class UnknownLossError(PromptDistillError, ValueError):
    """A loss name that is not in LOSSES."""


def loss_function(name: str) -> LossFunction | None:
    """The ``compute_loss_func`` the trainer gets for ``name``."""
    if name not in LOSSES:
        raise UnknownLossError(f"unknown training loss {name!r}; known: {', '.join(LOSSES)}.")
    return LOSSES[name]
