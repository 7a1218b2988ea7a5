"""The student behind a vLLM server: the ``vllm serve`` command that serves an adapter as the student, and the
flags that point predict.py / evaluate.py at it (``StudentFlags``: ``--base_url``, ``--served_model_name`` ...;
``Student.load(path, base_url=...)`` in Python). The engine is ``engine.served_student_engine``.

    python -m prompt_distill.student.serving --model_path models/feedback_triage    # prints the serve command

The command serves what the in-process vLLM engine would (``engines.vllm_lora``, checked by vLLM's own
``PEFTHelper`` before anything loads): the adapter as LoRA module ``student`` on its base model, with
``--max-lora-rank`` rounded up to a value vLLM allows; an adapter of a transformers-5 Qwen3-MoE that adapts the
fused experts also gets ``--enable-mixed-moe-lora-format`` and ``"is_3d_lora_weight": true`` (vLLM converts the 3-D
expert LoRAs to its per-expert layout when it loads them). An adapter vLLM cannot serve as LoRA (DoRA, trained
embeddings ...) is merged into its base model once (``engine.merged_model_dir``) and the merged folder is served
under the name ``student``; ``--merged`` asks for that whatever the adapter (vLLM's CPU backend runs no MoE LoRA).
The context is the student's training ``max_length`` (its run record), as in-process.

The client side tokenizes with the base model's own tokenizer (``engines.openai_classify``), so the tokens the
server scores are the ones the in-process engines score.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import sys
from dataclasses import dataclass, field, replace

from ..cli import flag, given_flags, misplaced_flags_line, parse_config, report_error, setup_logging
from ..engines import BackendChoice, choose_backend
from ..engines.base import AdapterNotServable
from ..engines.flags import SERVED, EngineFlags, ServerFlags
from ..errors import PromptDistillError
from ..models import resolve_model
from .check import Student, StudentError, resolve_student
from .engine import SERVED_NAME, merged_model_dir, student_max_model_len

logger = logging.getLogger(__name__)

# Flags of a model loaded in this process; with --base_url the server loads the model, so they are refused.
# (--batch_size is not among them: the scripts pass it to every engine, and the served one ignores it.)
LOCAL_ENGINE_FLAGS = ("dtype", "quantization", "enforce_eager", "gpu_memory_utilization", "max_model_len",
                      "vllm_engine_kwargs")


def serve_args(student: Student, served_name: str = SERVED_NAME, *, merged: bool = False) -> list[str]:
    """The arguments of ``vllm serve`` that serve ``student`` (an adapter) as ``served_name``."""
    from ..engines.vllm_lora import vllm_lora_settings

    context = ["--max-model-len", str(student_max_model_len(student))]
    if not merged:
        try:
            lora = vllm_lora_settings(student.adapter_path)
        except AdapterNotServable as why:
            logger.info(f"[serve] {why}: the merged model is served instead.")
            merged = True
        except FileNotFoundError as error:  # no weights in the folder
            raise StudentError(str(error)) from None
    if merged:
        folder = merged_model_dir(student)
        return [str(folder.resolve()), "--served-model-name", served_name, *context]
    module = {"name": served_name, "path": lora.adapter_dir}
    moe = []
    if lora.fused_moe_experts:
        module["is_3d_lora_weight"] = True
        moe = ["--enable-mixed-moe-lora-format"]
    modules = json.dumps(module) if len(module) > 2 else f"{served_name}={lora.adapter_dir}"
    return [resolve_model(student.base_model), *context, "--enable-lora", "--max-lora-rank", str(lora.max_lora_rank),
            "--max-loras", "1", *moe, "--lora-modules", modules]


def serve_command(student: Student, served_name: str = SERVED_NAME, *, merged: bool = False) -> str:
    """``vllm serve ...`` as one shell line."""
    return shlex.join(["vllm", "serve", *serve_args(student, served_name, merged=merged)])


@dataclass(frozen=True)
class StudentFlags(EngineFlags, ServerFlags):
    """How the student's engine is reached: loaded here (``EngineFlags``) or behind a server (``ServerFlags``:
    --base_url ...), asked by its served name. predict.py's and evaluate.py's configs inherit it."""

    served_model_name: str = flag(
        SERVED_NAME, "With --base_url: the model name the server gives the student (`vllm serve ... --lora-modules "
                     "student=ADAPTER`; `python -m prompt_distill.student.serving` prints the command).",
        group="engine")


def choose_student_backend(requested: str, config) -> BackendChoice:
    """``engines.choose_backend`` for a student: auto with --base_url is the served engine (the server holds the
    student). The flags that load a model here are refused with it first (``check_served_flags``); any other
    pairing of --base_url and --backend is left to ``engines.flags.server_settings``, which refuses it by name."""
    base_url = getattr(config, "base_url", None)
    name = SERVED if base_url and requested == "auto" else requested
    if config is not None:
        check_served_flags(config, name)
    if name != requested:
        return replace(choose_backend(name), reason=f"auto: --base_url {base_url}")
    return choose_backend(name)


def check_served_flags(config, backend: str) -> None:
    """With the served backend the server holds the model: flags that load one here are refused by name;
    --served_model_name without it is refused too."""
    given = given_flags(config)
    if backend != SERVED:
        if "served_model_name" in given:
            raise StudentError("--served_model_name names the student on a server: it needs --base_url.")
        return
    local = [name for name in LOCAL_ENGINE_FLAGS if name in given]
    if local:
        raise StudentError(misplaced_flags_line(local, "a model loaded in this process; with --base_url the server "
                                                       f"at {config.base_url} holds the student (set it on `vllm serve`)"))


# -- python -m prompt_distill.student.serving -------------------------------------------------------------------
DESCRIPTION = ("Print the `vllm serve` command that serves a trained student (LoRA adapter) under the model name "
               "predict.py/evaluate.py --base_url ask for; an adapter vLLM cannot serve is merged first.")


@dataclass(frozen=True, kw_only=True)
class ServeCommandConfig:
    model_path: str = field(metadata={"help": "Adapter folder written by train_sft_trl.py.", "group": "model"})
    base_model: str | None = flag(
        None, "Base model; default: the one in the adapter's run record. Only to point at a local copy of it.",
        group="model")
    served_model_name: str = flag(SERVED_NAME, "The model name the server gives the student.", group="model")
    merged: bool = flag(False, "Serve the merged model (merged once into <model_path>/merged) instead of the "
                               "adapter as LoRA: for a server without LoRA, or vLLM's CPU backend with a MoE model.",
                        group="model")


def main(argv=None) -> int:
    config = parse_config(ServeCommandConfig, argv, DESCRIPTION)
    setup_logging()
    stdout = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):  # log lines (a merge, vLLM's) on stderr: stdout is the command
            student = resolve_student(config.model_path, config.base_model)
            if student.adapter_path is None:
                raise StudentError(f"--model_path {config.model_path}: name an adapter folder.")
            for note in student.notes:
                logger.info(f"[serve] {note}")
            command = serve_command(student, config.served_model_name, merged=config.merged)
    except PromptDistillError as error:
        return report_error(error)
    print(command, file=stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
