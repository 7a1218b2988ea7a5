"""Weights & Biases for every stage: one group per pipeline, a job type per stage, artifacts that link them, and a
run that can fail without taking the stage's outputs with it.

The API (every stage imports it from here; ``training.tracking`` keeps only the Trainer-log helpers):

- ``DEFAULT_WANDB_PROJECT``, ``DEFAULT_REPORT_TO`` ("wandb"), ``REPORT_TO`` (the choices "wandb", "none"),
  ``REPORT_TO_HELP`` and ``RUN_GROUP_HELP`` (the flags' help, the same on every stage); ``TrackingFlags``, the
  frozen mixin that gives create_data / evaluate / benchmark configs ``report_to`` and ``run_group``.
- ``JOB_LABEL``, ``JOB_TRAIN``, ``JOB_EVALUATE``, ``JOB_BENCHMARK``: the job types.
- ``reports_to_wandb(report_to) -> bool``.
- ``run_group(explicit, data_file) -> str``: ``--run_group``, else ``$WANDB_RUN_GROUP``, else the data file's stem
  (a shard's file gives the final output's stem), so the default create_data / train / evaluate commands share it.
- ``dataset_artifact_name(data_file) -> "data-<stem>"``, ``model_artifact_name(adapter_dir) -> "adapter-<folder>"``;
  ``dataset_files(data_file)`` (JSONL, sidecar, run file) and ``adapter_files(adapter_dir)`` (the folder's files, no
  checkpoints): what the producer logs and what the consumer passes to ``use_artifact`` (same files, same version).
- ``configure_wandb(report_to, default_dir=None) -> WandbSettings | None``: project, directory and mode (offline
  without a login); None when wandb is off.
- ``start_run(report_to, job_type, name, group, config, directory=None) -> PipelineRun | None``: None when
  ``report_to`` excludes wandb or when wandb fails to start (one warning line, never an exception).
- ``PipelineRun``: ``.log(metrics, step=None)``, ``.summary(values)``, ``.update_config(values)``,
  ``.use_artifact(name, type, paths=None, metadata=None)`` (offline too, see its docstring),
  ``.log_artifact(paths, name, type, metadata=None)``, ``.finish()``; ``.run`` (the
  wandb run, None once disabled), ``.folder`` (the run's folder) and ``.disabled``. Each call catches wandb's
  exceptions, warns once and disables the run: a stage's data or adapter is never lost because of wandb.
- ``Throttle(seconds)``: ``.due()`` is True at most once every ``seconds`` (live metrics that never slow a stage).
"""

from __future__ import annotations

import contextlib
import logging
import netrc
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .cli import flag

logger = logging.getLogger(__name__)

DEFAULT_WANDB_PROJECT = "prompt-distillation"
REPORT_TO = ("wandb", "none")
# wandb by default on every stage: the people who run this watch wandb, and without a login the run is written offline
# (nothing leaves the machine, `wandb sync` uploads it later); transformers 5's own default ("none") would leave
# training, the stage that needs it most, unlogged. `--report_to none` turns it off.
DEFAULT_REPORT_TO = "wandb"
REPORT_TO_HELP = ("'wandb' or 'none'. wandb is the default on every stage (its runs are the pipeline's dashboard); "
                  "without a login it logs offline under $WANDB_DIR/wandb or ./wandb, nothing leaves the machine "
                  f"until `wandb sync`. WANDB_PROJECT names the project (default {DEFAULT_WANDB_PROJECT!r}).")
RUN_GROUP_HELP = ("wandb group of this pipeline's runs (default: $WANDB_RUN_GROUP, else the data file's name, so "
                  "create_data, train and evaluate on the same data land in one group).")

JOB_LABEL, JOB_TRAIN, JOB_EVALUATE, JOB_BENCHMARK = "label", "train", "evaluate", "benchmark"


@dataclass(frozen=True)
class TrackingFlags:
    """``--report_to`` and ``--run_group``, the same on create_data.py, evaluate.py and benchmark.py (train_sft_trl.py
    has TrainingArguments' ``report_to`` with this default and help, and ``run_group`` in its ScriptArguments)."""

    report_to: str = flag(DEFAULT_REPORT_TO, REPORT_TO_HELP, group="output", choices=list(REPORT_TO))
    run_group: str | None = flag(None, RUN_GROUP_HELP, group="output")

_SHARD_SUFFIX = re.compile(r"\.shard-\d+-of-\d+$")
_ARTIFACT_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def reports_to_wandb(report_to) -> bool:
    if report_to is None:
        return False
    items = [report_to] if isinstance(report_to, str) else list(report_to)
    return "wandb" in items or "all" in items


def _stem(path) -> str:
    """The data file's name without suffix; a shard's file (NAME.shard-k-of-n.jsonl) gives the final output's."""
    return _SHARD_SUFFIX.sub("", Path(str(path)).stem)


def run_group(explicit: str | None, data_file) -> str:
    """``--run_group``, else ``$WANDB_RUN_GROUP``, else the data file's stem (shard files give the final output's)."""
    if explicit:
        return explicit
    if os.environ.get("WANDB_RUN_GROUP"):
        return os.environ["WANDB_RUN_GROUP"]
    return _stem(data_file) if data_file else "prompt-distill"


def _artifact_name(prefix: str, name: str) -> str:
    return f"{prefix}-{_ARTIFACT_UNSAFE.sub('-', name).strip('-') or 'unnamed'}"


def dataset_artifact_name(data_file) -> str:
    return _artifact_name("data", _stem(data_file))


def model_artifact_name(adapter_dir) -> str:
    return _artifact_name("adapter", Path(str(adapter_dir)).resolve().name)


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
    otherwise stop at an interactive login prompt); ``wandb sync`` uploads it later. A folder that cannot be made
    is left to ``start_run``, where it is a warning.
    """
    if not reports_to_wandb(report_to):
        return None
    project = os.environ.setdefault("WANDB_PROJECT", DEFAULT_WANDB_PROJECT)
    directory = os.environ.setdefault("WANDB_DIR", str(Path(default_dir or Path.cwd()).resolve()))
    with contextlib.suppress(OSError):  # start_run warns and goes on without wandb
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


def dataset_files(data_file) -> list[Path]:
    """The labelled dataset as create_data.py leaves it: the training JSONL, its sidecar and its run file."""
    from .labeling.run_files import RunFiles

    files = RunFiles.for_output(data_file)
    return [path for path in (files.training, files.sidecar, files.header) if path.is_file()]


def adapter_files(adapter_dir) -> list[Path]:
    """The adapter folder's own files (adapter, tokenizer, run_record.json), not its checkpoints or merged model."""
    folder = Path(adapter_dir)
    return sorted(path for path in folder.iterdir() if path.is_file() and not path.name.startswith(".")) \
        if folder.is_dir() else []


def _build_artifact(paths: Iterable, name: str, type: str, metadata: dict | None):  # noqa: A002
    import wandb

    artifact = wandb.Artifact(name, type=type, metadata=metadata or {})
    # "immutable": referenced in place until the run ends, not copied to wandb's staging folder first (a
    # multi-GB adapter or dataset would be copied whole); the stage has finished writing these files.
    for path in map(Path, paths):
        if path.is_dir():
            artifact.add_dir(str(path), name=path.name, policy="immutable")
        elif path.is_file():
            artifact.add_file(str(path), name=path.name, policy="immutable")
    return artifact


class PipelineRun:
    """One stage's wandb run. Every method catches wandb's exceptions, warns once and disables the run."""

    def __init__(self, run, settings: WandbSettings | None = None):
        self.run = run
        self.settings = settings
        self.warned = False  # the one warning of a failure that disabled the run
        self.notes: set[str] = set()
        self.folder = str(Path(run.dir).parent) if getattr(run, "dir", None) else None

    @property
    def disabled(self) -> bool:
        return self.run is None

    def _warn(self, message: str) -> None:
        """A warning that leaves the run on, once per message."""
        if message not in self.notes:
            logger.warning(message)
            self.notes.add(message)

    def _fail(self, action: str, error: BaseException) -> None:
        if not self.warned:
            logger.warning(f"wandb: {action} failed ({type(error).__name__}: {error}); wandb logging is off for the "
                           "rest of this run, the stage's own outputs are not affected.")
            self.warned = True
        run, self.run = self.run, None
        if run is not None:
            with contextlib.suppress(Exception):  # wandb is already broken; the stage goes on
                run.finish(exit_code=1)

    def log(self, metrics: dict, step: int | None = None) -> None:
        if self.run is None:
            return
        try:
            self.run.log(metrics, step=step)
        except Exception as error:  # noqa: BLE001 - wandb must never stop a stage
            self._fail("log", error)

    def summary(self, values: dict) -> None:
        if self.run is None:
            return
        try:
            self.run.summary.update(values)
        except Exception as error:  # noqa: BLE001
            self._fail("summary", error)

    def update_config(self, values: dict) -> None:
        if self.run is None:
            return
        try:
            self.run.config.update(values, allow_val_change=True)
        except Exception as error:  # noqa: BLE001
            self._fail("config update", error)

    def use_artifact(self, name: str, type: str, paths: Iterable | None = None, metadata: dict | None = None):  # noqa: A002
        """Declare the artifact ``name`` as this run's input; None when it cannot (a warning; the run goes on
        logging: a missing input link must not turn the rest off).

        With ``paths`` (the same files its producer logged: ``dataset_files`` / ``adapter_files``) the input is the
        artifact built from them, which wandb stores by content, so it is the version the producer logged. This is
        how an offline run records its input: wandb refuses ``use_artifact`` offline, so the draft is logged with
        ``use_after_commit`` (what ``use_artifact`` does online with a draft); ``wandb sync`` then links it. Without
        ``paths`` an online run uses ``name:latest``; an offline run only notes the name in its config.
        """
        if self.run is None:
            return None
        try:
            self.run.config.update({f"inputs/{type}": name}, allow_val_change=True)
            offline = bool(getattr(self.run.settings, "_offline", False))
            if paths is not None:
                artifact = _build_artifact(paths, name, type, metadata)
                if offline:
                    return self.run._log_artifact(artifact, is_user_created=True, use_after_commit=True)
                return self.run.use_artifact(artifact)
            if offline:
                self._warn(f"wandb: the input {name} is noted in the config only (an offline run can link an "
                           "input artifact only from its files).")
                return None
            return self.run.use_artifact(name if ":" in name else f"{name}:latest", type=type)
        except Exception as error:  # noqa: BLE001
            self._warn(f"wandb: use_artifact {name} failed ({error.__class__.__name__}: {error}); this run has no "
                       "link to its input, the rest is logged.")
            return None

    def log_artifact(self, paths: Iterable, name: str, type: str, metadata: dict | None = None):  # noqa: A002
        """Log files and folders (the ones that exist) as one artifact; None on failure."""
        if self.run is None:
            return None
        try:
            return self.run.log_artifact(_build_artifact(paths, name, type, metadata))
        except Exception as error:  # noqa: BLE001
            self._fail(f"log_artifact {name}", error)
            return None

    def finish(self) -> None:
        run, self.run = self.run, None
        if run is None:
            return
        try:
            run.finish()
        except Exception as error:  # noqa: BLE001
            if not self.warned:
                logger.warning(f"wandb: finish failed ({type(error).__name__}: {error}); the stage's own outputs "
                               "are not affected.")
                self.warned = True


def start_run(report_to, job_type: str, name: str | None, group: str | None, config: dict | None,
              directory=None) -> PipelineRun | None:
    """Start this stage's wandb run (finishing one still active in this process); None when wandb is off or fails.

    Project, folder and mode as ``configure_wandb`` settles them; group and job type are passed explicitly (wandb
    reads its environment once per process, so several stages in one process would otherwise share the first's).
    """
    settings = configure_wandb(report_to, directory)
    if settings is None:
        return None
    try:
        import wandb

        Path(settings.directory).mkdir(parents=True, exist_ok=True)
        if not os.access(settings.directory, os.W_OK):
            raise PermissionError(f"{settings.directory} is not writable")
        run = wandb.init(project=settings.project, dir=settings.directory, mode=settings.mode, job_type=job_type,
                         name=name, group=group, config=config or {}, reinit="finish_previous")
    except Exception as error:  # noqa: BLE001 - wandb must never stop a stage
        logger.warning(f"wandb: could not start the {job_type} run ({type(error).__name__}: {error}); going on "
                       "without wandb.")
        return None
    logger.info(settings.note)
    return PipelineRun(run, settings)


class Throttle:
    """``due()`` is True the first time and then at most once every ``seconds``."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.last: float | None = None

    def due(self) -> bool:
        now = time.monotonic()
        if self.last is None or now - self.last >= self.seconds:
            self.last = now
            return True
        return False
