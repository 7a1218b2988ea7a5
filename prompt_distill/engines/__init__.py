"""Generation engines behind one small interface: "generate these chats".

The engine modules import torch/transformers or vLLM, so they are imported only when an engine is made.
"""

from __future__ import annotations

import importlib.util

from .base import Engine, Generation, GenerationParams

BACKENDS = ("auto", "vllm", "transformers")

__all__ = ["BACKENDS", "Engine", "Generation", "GenerationParams", "make_engine", "select_backend"]


def select_backend(requested: str = "auto") -> str:
    """'auto' is vLLM when it is installed and a CUDA GPU is present, transformers otherwise."""
    if requested not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {requested!r}")
    if requested != "auto":
        return requested
    if importlib.util.find_spec("vllm") is None:
        return "transformers"
    import torch

    return "vllm" if torch.cuda.is_available() else "transformers"


def make_engine(backend: str, model: str, **kwargs) -> Engine:
    """Build the engine of a concrete backend ('vllm' or 'transformers') with its own keyword arguments."""
    if backend == "vllm":
        from .vllm_engine import VLLMEngine

        return VLLMEngine(model, **kwargs)
    if backend == "transformers":
        from .hf import HFEngine

        return HFEngine(model, **kwargs)
    raise ValueError(f"make_engine needs 'vllm' or 'transformers' (use select_backend first); got {backend!r}")
