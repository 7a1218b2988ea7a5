"""Generation engines behind one small interface: "generate these chats".

The engine modules import torch/transformers or vLLM, so they are imported only when an engine is made.
``choose_backend`` settles --backend (and checks --tensor_parallel_size against it) before anything is loaded.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass

from .. import gpus
from ..preflight import PreflightError
from .base import Engine, Generation, GenerationParams

BACKENDS = ("auto", "vllm", "transformers")

__all__ = ["BACKENDS", "BackendChoice", "BackendError", "Engine", "Generation", "GenerationParams", "choose_backend",
           "make_engine", "select_backend"]


class BackendError(PreflightError):
    """--backend vllm without an importable vLLM, or --tensor_parallel_size that the backend or GPUs cannot run."""


@dataclass(frozen=True)
class BackendChoice:
    backend: str  # "vllm" or "transformers"
    reason: str  # why, e.g. "auto: vllm 0.33.0 importable, 8 CUDA GPUs visible"
    gpus: int | None = None  # CUDA GPUs visible, where they were counted

    def line(self) -> str:
        """The one line the scripts print, e.g. "Backend: transformers (auto: vllm is not installed)"."""
        return f"Backend: {self.backend} ({self.reason})"


def _import_vllm() -> tuple[str | None, str | None]:
    """(version, None) when vLLM imports, (None, why) when it does not: not installed, or its import's one-line
    error (a CUDA library or torch that does not match, say)."""
    if importlib.util.find_spec("vllm") is None:
        return None, "vllm is not installed"
    try:
        import vllm
    except Exception as error:  # noqa: BLE001 - any failure of the import is reported, in one line
        first = (str(error).strip().splitlines() or [""])[0]
        return None, f"vllm is installed but `import vllm` failed: {type(error).__name__}: {first}"
    version = getattr(vllm, "__version__", None)
    if version is None:
        try:
            version = importlib.metadata.version("vllm")
        except Exception:  # noqa: BLE001 - a version is only shown
            version = "(version unknown)"
    return version, None


def _plural(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


def choose_backend(requested: str = "auto", tensor_parallel_size: int | None = None) -> BackendChoice:
    """The backend for --backend ``requested`` and why; raises ``BackendError`` (one line) when it cannot run.

    'auto' is vLLM when it imports and a CUDA GPU is visible, transformers otherwise. The GPUs are counted through
    NVML (``gpus.cuda_device_count``), never the CUDA runtime: CUDA initialised here would make vLLM's forked
    engine core fail. --tensor_parallel_size above 1 needs vLLM, and no more than the visible GPUs (not checked on
    vLLM's CPU backend, which sees no CUDA GPU)."""
    if requested not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {requested!r}")
    if requested == "transformers":
        choice = BackendChoice("transformers", "--backend transformers")
    elif requested == "vllm":
        version, why = _import_vllm()
        if why is not None:
            raise BackendError(f"--backend vllm: {why}. Install vLLM (see docs/vllm.md) or pass --backend "
                               "transformers.")
        choice = BackendChoice("vllm", f"--backend vllm, vllm {version}", gpus.cuda_device_count())
    elif importlib.util.find_spec("vllm") is None:
        choice = BackendChoice("transformers", "auto: vllm is not installed")
    else:
        visible = gpus.cuda_device_count()
        if visible == 0:
            choice = BackendChoice("transformers", "auto: no CUDA GPU", 0)
        else:
            version, why = _import_vllm()
            if why is not None:
                choice = BackendChoice("transformers", f"auto: {why}", visible)
            else:
                choice = BackendChoice("vllm", f"auto: vllm {version} importable, "
                                       f"{_plural(visible, 'CUDA GPU')} visible", visible)
    check_tensor_parallel(choice, tensor_parallel_size)
    return choice


def check_tensor_parallel(choice: BackendChoice, tensor_parallel_size: int | None) -> None:
    """--tensor_parallel_size above 1 needs vLLM and at least that many visible CUDA GPUs."""
    if tensor_parallel_size is None or tensor_parallel_size <= 1:
        return
    if choice.backend != "vllm":
        raise BackendError(f"--tensor_parallel_size {tensor_parallel_size} needs vLLM, but the backend is "
                           f"{choice.backend} ({choice.reason}); transformers runs on one device. Make vLLM "
                           "importable, or drop --tensor_parallel_size.")
    if choice.gpus and tensor_parallel_size > choice.gpus:
        raise BackendError(f"--tensor_parallel_size {tensor_parallel_size} needs {tensor_parallel_size} GPUs, but "
                           f"{_plural(choice.gpus, 'CUDA GPU')} {'is' if choice.gpus == 1 else 'are'} visible "
                           f"({gpus.visible_devices_setting()}). Pass --tensor_parallel_size {choice.gpus} or less, or "
                           "make more GPUs visible.")


def select_backend(requested: str = "auto") -> str:
    """The backend's name alone (``choose_backend`` says why too)."""
    return choose_backend(requested).backend


def make_engine(backend: str, model: str, **kwargs) -> Engine:
    """Build the engine of a concrete backend ('vllm' or 'transformers') with its own keyword arguments."""
    if backend == "vllm":
        from .vllm_engine import VLLMEngine

        return VLLMEngine(model, **kwargs)
    if backend == "transformers":
        from .hf import HFEngine

        return HFEngine(model, **kwargs)
    raise ValueError(f"make_engine needs 'vllm' or 'transformers' (use select_backend first); got {backend!r}")
