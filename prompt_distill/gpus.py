"""How many CUDA GPUs this process may use, asked without initialising CUDA.

vLLM starts its engine core (and, above tensor parallel 1, its workers) with ``fork`` unless CUDA is already
initialised in the parent. ``torch.cuda.is_available()`` calls ``cudaGetDeviceCount``, which initialises the CUDA
driver without torch noticing (``torch.cuda.is_initialized()`` stays False): vLLM then forks, and the child fails
to initialise CUDA. torch asks NVML instead, which leaves CUDA alone, when ``PYTORCH_NVML_BASED_CUDA_CHECK=1``
(torch/cuda/__init__.py: ``is_available`` and ``device_count``); vLLM sets that variable on ``import vllm``, which is
too late for a check made to decide whether to import vLLM. So every project check goes through here.

NVML counts the devices that ``CUDA_VISIBLE_DEVICES`` leaves visible. Where NVML itself fails (no driver library),
torch falls back to the CUDA runtime; on such a machine there is no GPU for vLLM to fork over anyway.
"""

from __future__ import annotations

import os

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


def cuda_device_count() -> int:
    """GPUs visible to this process (0 on a CPU build of torch), without initialising CUDA."""
    os.environ.setdefault(NVML_CHECK, "1")
    import torch

    if not torch.cuda.is_available():
        return 0
    return torch.cuda.device_count()


def cuda_available() -> bool:
    return cuda_device_count() > 0


def visible_devices_setting() -> str:
    """``CUDA_VISIBLE_DEVICES`` as a message shows it: what limits the count, or that nothing does."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "CUDA_VISIBLE_DEVICES not set" if value is None else f"CUDA_VISIBLE_DEVICES={value!r}"
