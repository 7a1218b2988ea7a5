#!/usr/bin/env bash
# bf16 + gradient-checkpointing LoRA steps on a tiny Qwen3-MoE on one CUDA GPU, through train_sft_trl.py's code
# path; prints step times and peak GPU memory. Extra flags go to scripts/gpu_smoke.py (e.g. --steps 20).
# Needs the project's environment with a CUDA build of torch (PYTHON=... to pick another interpreter).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "nvidia-smi not found"
exec "$PYTHON" scripts/gpu_smoke.py --device cuda "$@"
