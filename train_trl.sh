#!/usr/bin/env bash
# Train the student's LoRA adapter on one GPU with the reference hyperparameters.
# Every value is a variable below: edit it here, or override it from the environment (LEARNING_RATE=1e-4 bash
# train_trl.sh). Extra flags are passed through to train_sft_trl.py (bash train_trl.sh --max_steps 10).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python}"
MODEL_NAME="${MODEL_NAME:-Qwen/Qwen3-30B-A3B-Instruct-2507}"
DATA_FILE="${DATA_FILE:-./data/prompt_distillation_lang.jsonl}"
OUTPUT_DIR="${OUTPUT_DIR:-./models/prompt_distillation_trl}"

# Held-out split: evaluate.py recomputes the same split from the same three values.
SPLIT="${SPLIT:-train}"                 # train | all
EVAL_FRACTION="${EVAL_FRACTION:-0.2}"
SPLIT_SEED="${SPLIT_SEED:-0}"

# LoRA. Attention projections get LORA_R; each of the 128 experts gets EXPERT_LORA_R. The reference README's
# rank 32 on every expert (EXPERT_LORA_R=32) needs about 85 GiB: see python scripts/memory_budget.py.
LORA_R="${LORA_R:-32}"
LORA_ALPHA="${LORA_ALPHA:-16}"
LORA_DROPOUT="${LORA_DROPOUT:-0.0}"     # must be 0 while experts are adapted
EXPERT_LORA_R="${EXPERT_LORA_R:-8}"

# Optimisation (reference README table).
LEARNING_RATE="${LEARNING_RATE:-2e-4}"
LR_SCHEDULER_TYPE="${LR_SCHEDULER_TYPE:-cosine_with_min_lr}"
# JSON. Kept in its own variable: in ${VAR:-{...}} bash ends the default at the first "}" and appends the
# second one to any value set from the environment.
DEFAULT_LR_SCHEDULER_KWARGS='{"min_lr_rate": 0.1}'
LR_SCHEDULER_KWARGS="${LR_SCHEDULER_KWARGS:-$DEFAULT_LR_SCHEDULER_KWARGS}"
WARMUP_STEPS="${WARMUP_STEPS:-0.03}"    # below 1: a fraction of all steps (transformers 5 has no warmup_ratio)
NUM_TRAIN_EPOCHS="${NUM_TRAIN_EPOCHS:-1}"
PER_DEVICE_TRAIN_BATCH_SIZE="${PER_DEVICE_TRAIN_BATCH_SIZE:-4}"
GRADIENT_ACCUMULATION_STEPS="${GRADIENT_ACCUMULATION_STEPS:-4}"
MAX_LENGTH="${MAX_LENGTH:-2048}"
GRADIENT_CHECKPOINTING="${GRADIENT_CHECKPOINTING:-true}"
BF16="${BF16:-auto}"                   # auto: bf16 where the GPU supports it | true | false
PADDING_FREE="${PADDING_FREE:-true}"
ROUTER_AUX_LOSS_COEF="${ROUTER_AUX_LOSS_COEF:-0.0}"   # the router is frozen; see the README
SEED="${SEED:-42}"

# Bookkeeping.
REPORT_TO="${REPORT_TO:-wandb}"         # wandb (offline without a login) | none
LOGGING_STEPS="${LOGGING_STEPS:-1}"
SAVE_STEPS="${SAVE_STEPS:-25}"
SAVE_TOTAL_LIMIT="${SAVE_TOTAL_LIMIT:-2}"
MERGE="${MERGE:-false}"                 # true: also write a merged model to $OUTPUT_DIR/merged

export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"

PRECISION=()
if [ "$BF16" != "auto" ]; then PRECISION=(--bf16 "$BF16"); fi

"$PYTHON" train_sft_trl.py \
    --model_name "$MODEL_NAME" \
    --data_file "$DATA_FILE" \
    --output_dir "$OUTPUT_DIR" \
    --split "$SPLIT" \
    --eval_fraction "$EVAL_FRACTION" \
    --split_seed "$SPLIT_SEED" \
    --lora_r "$LORA_R" \
    --lora_alpha "$LORA_ALPHA" \
    --lora_dropout "$LORA_DROPOUT" \
    --expert_lora_r "$EXPERT_LORA_R" \
    --learning_rate "$LEARNING_RATE" \
    --lr_scheduler_type "$LR_SCHEDULER_TYPE" \
    --lr_scheduler_kwargs "$LR_SCHEDULER_KWARGS" \
    --warmup_steps "$WARMUP_STEPS" \
    --num_train_epochs "$NUM_TRAIN_EPOCHS" \
    --per_device_train_batch_size "$PER_DEVICE_TRAIN_BATCH_SIZE" \
    --gradient_accumulation_steps "$GRADIENT_ACCUMULATION_STEPS" \
    --max_length "$MAX_LENGTH" \
    --gradient_checkpointing "$GRADIENT_CHECKPOINTING" \
    "${PRECISION[@]}" \
    --padding_free "$PADDING_FREE" \
    --router_aux_loss_coef "$ROUTER_AUX_LOSS_COEF" \
    --seed "$SEED" \
    --report_to "$REPORT_TO" \
    --logging_steps "$LOGGING_STEPS" \
    --save_steps "$SAVE_STEPS" \
    --save_total_limit "$SAVE_TOTAL_LIMIT" \
    --merge "$MERGE" \
    "$@"
