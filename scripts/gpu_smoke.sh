#!/usr/bin/env bash
# bf16 + gradient-checkpointing LoRA steps on a tiny Qwen3-MoE on one CUDA GPU, through train_sft_trl.py's code
# path; prints step times and peak GPU memory. Extra flags go to scripts/gpu_smoke.py (e.g. --steps 20).
# Runs the python on PATH (the GPU environment: pip install -r requirements.txt, a CUDA build of torch), or
# PYTHON=/path/to/python. Not .venv: that is the CPU-only environment of make setup.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python || command -v python3 || echo python)}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "nvidia-smi not found"
exec "$PYTHON" scripts/gpu_smoke.py --device cuda "$@"
