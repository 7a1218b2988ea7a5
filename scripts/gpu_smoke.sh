#!/usr/bin/env bash
# The prepared GPU check (docs/gpu.md), about 8 minutes or less on one H100: part A labels, trains, reloads and
# classifies with a tiny Qwen3-MoE built in code; part B trains the real Qwen3-30B-A3B architecture with random
# bf16 weights made on the GPU (memory against the budget, step time, tokens/s, MFU, classify requests/s).
# Extra flags go to scripts/gpu_smoke.py (e.g. --parts A, --steps 20; --device cpu is the CPU dry run).
# Pins ONE GPU: CUDA_VISIBLE_DEVICES unset -> the first GPU nvidia-smi lists; a list -> its first entry (with
# several visible GPUs the Trainer would wrap the model in nn.DataParallel and multiply the batch).
# Runs the python on PATH (the GPU environment: pip install -r requirements.txt, a CUDA build of torch), or
# PYTHON=/path/to/python. Not .venv: that is the CPU-only environment of make setup.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python || command -v python3 || echo python)}"
export CUDA_DEVICE_ORDER="${CUDA_DEVICE_ORDER:-PCI_BUS_ID}"  # CUDA's device 0 is nvidia-smi's GPU 0
if [[ -z "${CUDA_VISIBLE_DEVICES:-}" ]]; then
    first="$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' ' || true)"
    export CUDA_VISIBLE_DEVICES="${first:-0}"
    echo "gpu_smoke.sh: CUDA_VISIBLE_DEVICES was unset; pinned to GPU ${CUDA_VISIBLE_DEVICES} (the first listed)"
elif [[ "$CUDA_VISIBLE_DEVICES" == *,* ]]; then
    echo "gpu_smoke.sh: CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES} lists several; pinned to its first, ${CUDA_VISIBLE_DEVICES%%,*}"
    export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES%%,*}"
else
    echo "gpu_smoke.sh: CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES} (one device, kept)"
fi
nvidia-smi -i "$CUDA_VISIBLE_DEVICES" --query-gpu=index,name,memory.total,driver_version --format=csv,noheader \
    2>/dev/null || echo "gpu_smoke.sh: nvidia-smi not found (or no GPU ${CUDA_VISIBLE_DEVICES})"
exec "$PYTHON" scripts/gpu_smoke.py --device cuda "$@"
