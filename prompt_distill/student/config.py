"""predict.py's flags: one typed, frozen config whose fields are the flags (``cli.flag``), parsed with
``cli.parse_config``. The Python API (``prompt_distill.Student``) takes the same settings as arguments."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..cli import flag
from ..engines import BACKENDS
from .classifier import DEFAULT_BATCH_SIZE
from .serving import StudentFlags

DESCRIPTION = (
    "Label sentences with a trained student (LoRA adapter): one JSON line per sentence with its most probable label "
    "and that label's probability, in input order."
)


@dataclass(frozen=True, kw_only=True)  # kw_only: model_path has no default, the engine flags do
class PredictConfig(StudentFlags):
    # Required, so without a default: a plain dataclass field (cli.flag always gives one).
    model_path: str = field(metadata={
        "help": "Adapter folder written by train_sft_trl.py (its run_record.json gives the labels).", "group": "model"})
    base_model: str | None = flag(
        None, "Base model; default: the one in the adapter's run record. Only to point at a local copy of it.",
        group="model")
    input_file: str | None = flag(
        None, "Sentences, one per line, UTF-8; blank lines are skipped. Default: stdin.", group="data")
    labels: str | None = flag(
        None, "Only for an adapter without run_record.json: the labels it was trained with (comma-separated or a "
              "file). Refused when the run record names them.", group="task")
    backend: str = flag(
        "auto", "auto: openai with --base_url (the student behind a server), else vLLM when importable and a CUDA GPU "
                "is present, else transformers.", group="engine",
        choices=list(BACKENDS))
    batch_size: int = flag(DEFAULT_BATCH_SIZE, "Sentences per forward pass (transformers).", group="engine")
    output_file: str | None = flag(None, "Where the JSON lines go. Default: stdout.", group="output")
    all_probabilities: bool = flag(
        False, "Add every label's probability to each line (\"probabilities\").", group="output")
