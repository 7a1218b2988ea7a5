"""Weights & Biases without a login, and the numbers a run record needs from the Trainer's log."""

from __future__ import annotations

import netrc
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_WANDB_PROJECT = "prompt-distillation"


def reports_to_wandb(report_to) -> bool:
    if report_to is None:
        return False
    items = [report_to] if isinstance(report_to, str) else list(report_to)
    return "wandb" in items or "all" in items


def wandb_credentials_found() -> bool:
    """An API key in the environment or a netrc entry for the wandb host (what ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return path.is_file() and netrc.netrc(path).authenticators(host) is not None
    except (netrc.NetrcParseError, OSError):
        return False


@dataclass(frozen=True)
class WandbSettings:
    mode: str  # online, offline, disabled ...
    project: str
    directory: str  # wandb writes its run folders under <directory>/wandb
    note: str  # one line for the user


def configure_wandb(report_to, default_dir=None) -> WandbSettings | None:
    """Make ``--report_to wandb`` work without a login; None when wandb is off.

    wandb's run folders go under ``$WANDB_DIR/wandb`` when WANDB_DIR is set, else ``<default_dir>/wandb``, by default
    ``./wandb`` in the working folder: never inside the adapter folder, so that copying an adapter does not copy
    its logs. An explicit ``WANDB_MODE`` is respected. Without credentials the run is logged offline (the Trainer would
    otherwise stop at an interactive login prompt); ``wandb sync`` uploads it later.
    """
    if not reports_to_wandb(report_to):
        return None
    project = os.environ.setdefault("WANDB_PROJECT", DEFAULT_WANDB_PROJECT)
    directory = os.environ.setdefault("WANDB_DIR", str(Path(default_dir or Path.cwd()).resolve()))
    Path(directory).mkdir(parents=True, exist_ok=True)
    if os.environ.get("WANDB_MODE"):
        mode = os.environ["WANDB_MODE"]
        note = f"wandb: WANDB_MODE={mode} (set in the environment); run folders go under {directory}/wandb."
    elif wandb_credentials_found():
        mode = "online"
        note = f"wandb: logging online to project {project!r}."
    else:
        mode = os.environ["WANDB_MODE"] = "offline"
        note = (f"wandb: no API key or login found, logging offline under {directory}/wandb (upload later with "
                "`wandb sync <run folder>`; `--report_to none` disables).")
    return WandbSettings(mode, project, directory, note)


def start_wandb_run(settings: WandbSettings, run_name: str | None) -> str | None:
    """Start the run ourselves with explicit settings (the Trainer's WandbCallback then reuses it): wandb reads
    its environment variables once per process, so a second run in one process would ignore new ones."""
    import wandb

    if wandb.run is not None:
        wandb.finish()
    run = wandb.init(project=settings.project, dir=settings.directory, mode=settings.mode, name=run_name)
    return str(Path(run.dir).parent) if getattr(run, "dir", None) else None


def finish_wandb() -> None:
    import wandb

    if wandb.run is not None:
        wandb.finish()


def logged_losses(log_history: list[dict]) -> list[float]:
    return [entry["loss"] for entry in log_history if "loss" in entry]


def trained_tokens(log_history: list[dict]) -> int | None:
    """Non-padding tokens processed in this training session, as TRL counts them.

    ``num_tokens`` is cumulative per trainer object; after a resume the restored history holds the previous
    session's counts first, so the last logged value (not the largest) belongs to this session.
    """
    counts = [entry["num_tokens"] for entry in log_history if "num_tokens" in entry]
    return int(counts[-1]) if counts else None
