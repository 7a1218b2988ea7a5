"""The engines --backend can name, as data: one ``EngineSpec`` each, in ``--backend auto``'s order of preference.

Stage code never tests an engine's name: it asks the spec what the engine can do (``tensor_parallel``,
``scores_labels``, ...) and the engine class for its keyword arguments (``options``). Adding an engine touches two
files: its module (a class with the ``base.Engine`` protocol) and ``ENGINES`` below.

Nothing here imports torch, transformers or vLLM: an engine's module is imported by ``engine_class`` once
--backend has chosen it. GPUs are counted through ``gpus.cuda_device_count``, looked up when asked (the GPU
dry run replaces it on its module).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass

from .. import gpus


@dataclass(frozen=True)
class EngineSpec:
    """One engine: where its class lives, whether it can run here, and what it can do (each stage reads these
    instead of the engine's name)."""

    name: str  # the value of --backend, and the "backend" of every record and result
    engine: str  # where its class lives, "module:Class"; imported only by ``engine_class``
    title: str = ""  # how messages write it ("vLLM"); the name when empty
    package: str | None = None  # a Python package it needs beyond the project's requirements (checked before use)
    install_hint: str = ""  # what to do when --backend names it and it cannot run
    # --backend auto
    auto: bool = False  # auto may pick it (the first in ENGINES order that can run here)
    needs_cuda: bool = False  # ... only where a CUDA GPU is visible
    # what it can do
    gpu_defaults: bool = False  # the GPU defaults (max_tokens, no refusal of a large model) apply on any machine;
    # False: they apply where a CUDA GPU is visible (``on_gpu``)
    tensor_parallel: bool = False  # one engine spans GPUs: --tensor_parallel_size, the benchmark's memory plan
    scores_labels: bool = False  # answers a constrained question by scoring the labels (so 0 generated tokens
    # work); the benchmark's emulated thinking is answered that way
    constrained_by_default: bool = False  # --constrained_answer auto is on
    real_thinking: bool = False  # a thinking teacher thinks; otherwise the benchmark emulates the thought
    reference_scale: bool = False  # the GPU reference setup's engine: defaults name the 30B teacher, not the
    # embedded CPU model
    context_flag: str | None = None  # the flag (and ``options`` keyword) that bounds its context, e.g. max_model_len
    served: bool = False  # the model runs behind a server (--base_url): nothing of it (config, tokenizer) is read here

    @property
    def label(self) -> str:
        return self.title or self.name

    def installed(self) -> str | None:
        """Why it cannot run, from a look that imports nothing (None: it may). Checked before GPUs are counted."""
        if self.package and importlib.util.find_spec(self.package) is None:
            return f"{self.package} is not installed"
        return None

    def available(self) -> tuple[str | None, str | None]:
        """("<package> <version>", None) when it can run (None for a version where it needs no package), or
        (None, why) in one line."""
        if not self.package:
            return None, None
        version, why = import_package(self.package)
        return (None, why) if why is not None else (f"{self.package} {version}", None)

    def on_gpu(self) -> bool:
        """Whether the GPU defaults apply: always (``gpu_defaults``), else where a CUDA GPU is visible."""
        return self.gpu_defaults or gpus.cuda_available()


ENGINES: dict[str, EngineSpec] = {
    spec.name: spec
    for spec in (
        EngineSpec(
            name="vllm", engine="prompt_distill.engines.vllm_engine:VLLMEngine", title="vLLM", package="vllm",
            install_hint="Install vLLM (see docs/vllm.md) or pass --backend transformers.",
            auto=True, needs_cuda=True, gpu_defaults=True, tensor_parallel=True, real_thinking=True,
            reference_scale=True, context_flag="max_model_len",
        ),
        # A small CPU model cannot follow a long prompt: scoring the labels makes it always answer with one.
        EngineSpec(
            name="transformers", engine="prompt_distill.engines.hf:HFEngine", auto=True, scores_labels=True,
            constrained_by_default=True,
        ),
        # A model behind an OpenAI-compatible server (`vllm serve`, a hosted API): never picked by auto, it needs
        # --base_url. The GPU defaults apply (a served teacher runs on a GPU box), it thinks for real.
        EngineSpec(
            name="openai", engine="prompt_distill.engines.openai_engine:OpenAIEngine",
            title="an OpenAI-compatible server", package="openai",
            install_hint="Install the openai client: pip install openai==3.63.0 (requirements-cpu.txt has it).",
            gpu_defaults=True, real_thinking=True, served=True,
        ),
    )
}


def names() -> tuple[str, ...]:
    """The registered engines, in auto's order."""
    return tuple(ENGINES)


def engine_spec(name: str) -> EngineSpec:
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"no engine {name!r}; the engines are {', '.join(ENGINES)}") from None


def engine_class(name: str) -> type:
    """The engine's class, its module imported now (torch or vLLM load with it)."""
    module, _, attribute = engine_spec(name).engine.partition(":")
    return getattr(importlib.import_module(module), attribute)


def with_capability(capability: str) -> tuple[EngineSpec, ...]:
    """The engines that have ``capability`` (an ``EngineSpec`` flag), for the messages that name them."""
    return tuple(spec for spec in ENGINES.values() if getattr(spec, capability))


def import_package(package: str) -> tuple[str | None, str | None]:
    """(version, None) when ``package`` imports, (None, why) when it does not: not installed, or its import's
    one-line error (a CUDA library or torch that does not match, say)."""
    if importlib.util.find_spec(package) is None:
        return None, f"{package} is not installed"
    try:
        module = importlib.import_module(package)
    except Exception as error:  # noqa: BLE001 - any failure of the import is reported, in one line
        first = (str(error).strip().splitlines() or [""])[0]
        return None, f"{package} is installed but `import {package}` failed: {type(error).__name__}: {first}"
    version = getattr(module, "__version__", None)
    if version is None:
        try:
            version = importlib.metadata.version(package)
        except Exception:  # noqa: BLE001 - a version is only shown
            version = "(version unknown)"
    return version, None
