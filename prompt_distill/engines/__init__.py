"""Generation engines behind one small interface: "generate these chats".

``registry.ENGINES`` lists the engines (``EngineSpec``: where the class lives, whether it can run here, what it
can do); ``base.Engine`` is the protocol each class follows. The engine modules import torch/transformers or vLLM,
so they are imported only when an engine is chosen. ``choose_backend`` settles --backend (and checks
--tensor_parallel_size against it) before anything is loaded; ``make_engine`` builds the chosen one. Callers look
``make_engine`` up on this module when they call it (``engines.make_engine``): the GPU dry run replaces it here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import gpus
from ..preflight import PreflightError
from . import registry
from .base import Engine, EngineSettings, Generation, GenerationParams
from .registry import EngineSpec, engine_class, engine_spec

BACKENDS = ("auto", *registry.names())

__all__ = ["BACKENDS", "BackendChoice", "BackendError", "Engine", "EngineSettings", "EngineSpec", "Generation",
           "GenerationParams", "choose_backend", "engine_class", "engine_spec", "make_engine", "select_backend"]


class BackendError(PreflightError):
    """--backend naming an engine that cannot run here, or --tensor_parallel_size that the engine or GPUs cannot
    run."""


@dataclass(frozen=True)
class BackendChoice:
    backend: str  # a registry name ("vllm", "transformers")
    reason: str  # why, e.g. "auto: vllm 0.33.0 importable, 8 CUDA GPUs visible"
    gpus: int | None = None  # CUDA GPUs visible, where they were counted

    def line(self) -> str:
        """The one line the scripts print, e.g. "Backend: transformers (auto: vllm is not installed)"."""
        return f"Backend: {self.backend} ({self.reason})"


def _plural(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


def choose_backend(requested: str = "auto", tensor_parallel_size: int | None = None) -> BackendChoice:
    """The engine for --backend ``requested`` and why; raises ``BackendError`` (one line) when it cannot run.

    'auto' is the first engine of the registry that may be picked and can run here (vLLM when it imports and a
    CUDA GPU is visible, transformers otherwise). The GPUs are counted through NVML (``gpus.cuda_device_count``),
    never the CUDA runtime: CUDA initialised here would make vLLM's forked engine core fail. --tensor_parallel_size
    above 1 needs an engine that spans GPUs, and no more than the visible GPUs (not checked on vLLM's CPU backend,
    which sees no CUDA GPU)."""
    known = ("auto", *registry.names())
    if requested not in known:
        raise ValueError(f"backend must be one of {', '.join(known)}; got {requested!r}")
    choice = _auto() if requested == "auto" else _requested(engine_spec(requested))
    check_tensor_parallel(choice, tensor_parallel_size)
    return choice


def _requested(spec: EngineSpec) -> BackendChoice:
    version, why = spec.available()
    if why is not None:
        raise BackendError(" ".join(filter(None, [f"--backend {spec.name}: {why}.", spec.install_hint])))
    reason = f"--backend {spec.name}" + (f", {version}" if version else "")
    return BackendChoice(spec.name, reason, gpus.cuda_device_count() if spec.tensor_parallel else None)


def _auto() -> BackendChoice:
    """The first engine auto may pick that can run here; its reason is why those before it could not (else what
    it found). Cheap checks first: whether it is installed, then the GPUs, then its import."""
    refused, visible = [], None
    for spec in registry.ENGINES.values():
        if not spec.auto:
            continue
        version, why = None, spec.installed()
        if why is None and spec.needs_cuda:
            visible = gpus.cuda_device_count()
            why = "no CUDA GPU" if visible == 0 else None
        if why is None:
            version, why = spec.available()
        if why is None:
            found = f"{version or spec.name} importable" + (
                f", {_plural(visible, 'CUDA GPU')} visible" if spec.needs_cuda else "")
            return BackendChoice(spec.name, f"auto: {'; '.join(refused) or found}", visible)
        refused.append(why)
    raise BackendError(f"--backend auto: no engine can run here ({'; '.join(refused)}).")


def check_tensor_parallel(choice: BackendChoice, tensor_parallel_size: int | None) -> None:
    """--tensor_parallel_size above 1 needs an engine that spans GPUs, and at least that many visible CUDA GPUs."""
    if tensor_parallel_size is None or tensor_parallel_size <= 1:
        return
    if not engine_spec(choice.backend).tensor_parallel:
        spanning = " or ".join(spec.label for spec in registry.with_capability("tensor_parallel"))
        raise BackendError(f"--tensor_parallel_size {tensor_parallel_size} needs {spanning}, but the backend is "
                           f"{choice.backend} ({choice.reason}); {choice.backend} runs on one device. Make "
                           f"{spanning} importable, or drop --tensor_parallel_size.")
    if choice.gpus and tensor_parallel_size > choice.gpus:
        raise BackendError(f"--tensor_parallel_size {tensor_parallel_size} needs {tensor_parallel_size} GPUs, but "
                           f"{_plural(choice.gpus, 'CUDA GPU')} {'is' if choice.gpus == 1 else 'are'} visible "
                           f"({gpus.visible_devices_setting()}). Pass --tensor_parallel_size {choice.gpus} or less, or "
                           "make more GPUs visible.")


def select_backend(requested: str = "auto") -> str:
    """The backend's name alone (``choose_backend`` says why too)."""
    return choose_backend(requested).backend


def make_engine(backend: str, model: str, **kwargs) -> Engine:
    """Build the engine of a registered backend (not 'auto') with its own keyword arguments (``options``)."""
    if backend not in registry.ENGINES:
        raise ValueError(f"make_engine needs {' or '.join(map(repr, registry.names()))} (use select_backend first); "
                         f"got {backend!r}")
    return engine_class(backend)(model, **kwargs)
