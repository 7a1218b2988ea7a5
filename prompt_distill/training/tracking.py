"""The numbers a run record needs from the Trainer's log; the wandb run itself is ``prompt_distill.tracking``."""

from __future__ import annotations


def logged_losses(log_history: list[dict]) -> list[float]:
    return [entry["loss"] for entry in log_history if "loss" in entry]


def eval_losses(log_history: list[dict]) -> list[float]:
    return [entry["eval_loss"] for entry in log_history if "eval_loss" in entry]


def trained_tokens(log_history: list[dict]) -> int | None:
    """Non-padding tokens processed in this training session, as TRL counts them.

    ``num_tokens`` is cumulative per trainer object; after a resume the restored history holds the previous
    session's counts first, so the last logged value (not the largest) belongs to this session.
    """
    counts = [entry["num_tokens"] for entry in log_history if "num_tokens" in entry]
    return int(counts[-1]) if counts else None
