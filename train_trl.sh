#!/usr/bin/env bash
# Train the student's LoRA adapter with the reference hyperparameters, on one GPU or, with NUM_GPUS > 1, data
# parallel through `accelerate launch` (each GPU holds the whole bf16 base; see docs/training.md).
# Every value is a variable below: edit it here, or override it from the environment (LEARNING_RATE=1e-4 bash
# train_trl.sh). Extra flags are passed through to train_sft_trl.py (bash train_trl.sh --max_steps 10);
# --per_device_train_batch_size and --gradient_accumulation_steps among them set the two variables below.
#
#   NUM_GPUS=4 bash train_trl.sh                                           # 4 GPUs, one machine
#   RUN_NAME=triage NUM_GPUS=8 WANDB_PROJECT=triage bash train_trl.sh       # data/triage.jsonl -> models/triage
#   NUM_GPUS=8 ACCELERATE_CONFIG=configs/accelerate_fsdp.yaml bash train_trl.sh   # the base sharded (FSDP)
#   NUM_GPUS=8 NUM_MACHINES=2 MACHINE_RANK=0 MAIN_PROCESS_IP=10.0.0.1 bash train_trl.sh   # on the main node and
#   NUM_GPUS=8 NUM_MACHINES=2 MACHINE_RANK=1 MAIN_PROCESS_IP=10.0.0.1 bash train_trl.sh   # on the second, together
#
# RUN_NAME names the data it reads, data/${RUN_NAME}.jsonl (as create_data_h100x8.sh and create_data_slurm.sh
# write it), the adapter folder models/${RUN_NAME} and the wandb run; empty: the defaults below (DATA_FILE and
# OUTPUT_DIR still win). The labels and the prompt come from the data's run header (data/NAME.run.json), written
# where they were given once, when labelling; LABELS and PROMPT_FILE here are only for data without a run header
# (or to check that the data is the task you think: a difference is refused, naming both). WANDB_PROJECT: the wandb
# project (default: prompt-distillation).
#
# The per-device batch defaults to 4, lowered where needed (8 GPUs: 2; 16: 1) so that EXAMPLES_PER_STEP stays 16.
# Under FSDP each process holds a whole bf16 base in host RAM while loading (~455 GiB on 8 GPUs; docs/training.md).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python}"

# Processes: NUM_GPUS per machine, on NUM_MACHINES machines. Above one process, accelerate launch starts them.
NUM_GPUS="${NUM_GPUS:-1}"
NUM_MACHINES="${NUM_MACHINES:-1}"
MACHINE_RANK="${MACHINE_RANK:-0}"          # 0 on the main machine, 1 .. NUM_MACHINES-1 on the others
MAIN_PROCESS_IP="${MAIN_PROCESS_IP:-}"     # the main machine's address, needed with NUM_MACHINES > 1
MAIN_PROCESS_PORT="${MAIN_PROCESS_PORT:-29500}"
ACCELERATE_CONFIG="${ACCELERATE_CONFIG:-}" # e.g. configs/accelerate_fsdp.yaml; empty: plain data parallel
MODEL_NAME="${MODEL_NAME:-Qwen/Qwen3-30B-A3B-Instruct-2507}"
RUN_NAME="${RUN_NAME:-}"                   # data/$RUN_NAME.jsonl -> models/$RUN_NAME, wandb run $RUN_NAME
if [ -n "$RUN_NAME" ]; then
  DEFAULT_DATA_FILE="./data/$RUN_NAME.jsonl" DEFAULT_OUTPUT_DIR="./models/$RUN_NAME"
else
  DEFAULT_DATA_FILE=./data/prompt_distillation_lang.jsonl DEFAULT_OUTPUT_DIR=./models/prompt_distillation_trl
fi
DATA_FILE="${DATA_FILE:-$DEFAULT_DATA_FILE}"
OUTPUT_DIR="${OUTPUT_DIR:-$DEFAULT_OUTPUT_DIR}"
LABELS="${LABELS:-}"                       # empty: the data's run header gives them
PROMPT_FILE="${PROMPT_FILE:-}"             # empty: the data's run header gives it
WANDB_PROJECT="${WANDB_PROJECT:-}"         # empty: prompt-distillation

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
# Examples per optimizer step, whatever the number of GPUs: the accumulation steps default to
# EXAMPLES_PER_STEP / (PER_DEVICE_TRAIN_BATCH_SIZE x processes), so that the learning rate keeps its meaning.
# Unset, PER_DEVICE_TRAIN_BATCH_SIZE is the largest value up to 4 for which that division is exact.
PER_DEVICE_TRAIN_BATCH_SIZE="${PER_DEVICE_TRAIN_BATCH_SIZE:-}"
GRADIENT_ACCUMULATION_STEPS="${GRADIENT_ACCUMULATION_STEPS:-}"
EXAMPLES_PER_STEP="${EXAMPLES_PER_STEP:-16}"
MAX_LENGTH="${MAX_LENGTH:-2048}"
# Under an FSDP config, FSDP's activation checkpointing replaces transformers' (they cannot be on together).
if [ -n "$ACCELERATE_CONFIG" ]; then DEFAULT_GRADIENT_CHECKPOINTING=false; else DEFAULT_GRADIENT_CHECKPOINTING=true; fi
GRADIENT_CHECKPOINTING="${GRADIENT_CHECKPOINTING:-$DEFAULT_GRADIENT_CHECKPOINTING}"
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

fail() {
  echo "error: $*" >&2
  exit 2
}

value_of() {  # value_of FLAG VALUE: fail clearly when a flag lacks its value
  if [[ $# -lt 2 || "$2" == --* ]]; then fail "$1 needs a value"; fi
}

# The two batch flags among the pass-through ones become the variables, before the arithmetic below, so that the
# summary line says what is trained on and train_sft_trl.py gets each flag once.
passed=()
while (($#)); do
  case "$1" in
    --per_device_train_batch_size) value_of "$@"; PER_DEVICE_TRAIN_BATCH_SIZE="$2"; shift 2 ;;
    --gradient_accumulation_steps) value_of "$@"; GRADIENT_ACCUMULATION_STEPS="$2"; shift 2 ;;
    --per_device_train_batch_size=*) PER_DEVICE_TRAIN_BATCH_SIZE="${1#*=}"; shift ;;
    --gradient_accumulation_steps=*) GRADIENT_ACCUMULATION_STEPS="${1#*=}"; shift ;;
    *) passed+=("$1"); shift ;;
  esac
done

positive() {  # positive NAME: the variable NAME holds a positive integer
  [[ "${!1}" =~ ^[1-9][0-9]*$ ]] || fail "$1 must be a positive integer, got '${!1}'"
}
for name in NUM_GPUS NUM_MACHINES EXAMPLES_PER_STEP; do positive "$name"; done
for name in PER_DEVICE_TRAIN_BATCH_SIZE GRADIENT_ACCUMULATION_STEPS; do
  if [ -n "${!name}" ]; then positive "$name"; fi
done
[[ "$RUN_NAME" =~ ^[A-Za-z0-9._-]*$ ]] || fail "RUN_NAME must be a name (letters, digits, '.', '_', '-'), got '$RUN_NAME'"
processes=$((NUM_GPUS * NUM_MACHINES))
note=""
if [ -z "$PER_DEVICE_TRAIN_BATCH_SIZE" ]; then
  PER_DEVICE_TRAIN_BATCH_SIZE=4
  if [ -z "$GRADIENT_ACCUMULATION_STEPS" ]; then
    while ((PER_DEVICE_TRAIN_BATCH_SIZE > 1 && EXAMPLES_PER_STEP % (PER_DEVICE_TRAIN_BATCH_SIZE * processes) != 0)); do
      PER_DEVICE_TRAIN_BATCH_SIZE=$((PER_DEVICE_TRAIN_BATCH_SIZE - 1))
    done
    if ((PER_DEVICE_TRAIN_BATCH_SIZE < 4)); then
      note=" (per-device batch lowered from 4 to $PER_DEVICE_TRAIN_BATCH_SIZE to keep $EXAMPLES_PER_STEP examples per step on $processes processes)"
    fi
  fi
fi
per_round=$((PER_DEVICE_TRAIN_BATCH_SIZE * processes))
if [ -z "$GRADIENT_ACCUMULATION_STEPS" ]; then
  if ((EXAMPLES_PER_STEP % per_round != 0)); then
    fail "EXAMPLES_PER_STEP=$EXAMPLES_PER_STEP is not a multiple of PER_DEVICE_TRAIN_BATCH_SIZE=$PER_DEVICE_TRAIN_BATCH_SIZE x $processes processes; change one of them or set GRADIENT_ACCUMULATION_STEPS"
  fi
  GRADIENT_ACCUMULATION_STEPS=$((EXAMPLES_PER_STEP / per_round))
fi
echo "$processes process(es) x $PER_DEVICE_TRAIN_BATCH_SIZE examples x $GRADIENT_ACCUMULATION_STEPS accumulation steps = $((per_round * GRADIENT_ACCUMULATION_STEPS)) examples per optimizer step$note"

# The first NUM_GPUS GPUs unless CUDA_VISIBLE_DEVICES says which.
CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-$(seq -s, 0 $((NUM_GPUS - 1)))}"
export CUDA_VISIBLE_DEVICES

if ((processes > 1)) || [ -n "$ACCELERATE_CONFIG" ]; then
  # --mixed_precision no: precision is train_sft_trl.py's --bf16 (which transformers hands to accelerate).
  LAUNCH=("$PYTHON" -m accelerate.commands.launch --num_processes "$processes" --num_machines "$NUM_MACHINES"
          --machine_rank "$MACHINE_RANK" --mixed_precision no --dynamo_backend no)
  if [ -n "$ACCELERATE_CONFIG" ]; then LAUNCH+=(--config_file "$ACCELERATE_CONFIG"); else LAUNCH+=(--multi_gpu); fi
  if ((NUM_MACHINES > 1)); then
    [ -n "$MAIN_PROCESS_IP" ] || fail "NUM_MACHINES=$NUM_MACHINES needs MAIN_PROCESS_IP (the address of the machine with MACHINE_RANK=0)"
    LAUNCH+=(--main_process_ip "$MAIN_PROCESS_IP" --main_process_port "$MAIN_PROCESS_PORT")
  fi
else
  LAUNCH=("$PYTHON")
fi

PRECISION=()
if [ "$BF16" != "auto" ]; then PRECISION=(--bf16 "$BF16"); fi
RUN=()  # the run's name and task, given to train_sft_trl.py only when set
if [ -n "$RUN_NAME" ]; then RUN+=(--run_name "$RUN_NAME"); fi
if [ -n "$LABELS" ]; then RUN+=(--labels "$LABELS"); fi
if [ -n "$PROMPT_FILE" ]; then RUN+=(--prompt_file "$PROMPT_FILE"); fi
if [ -n "$WANDB_PROJECT" ]; then export WANDB_PROJECT; fi

"${LAUNCH[@]}" train_sft_trl.py \
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
    ${PRECISION[@]+"${PRECISION[@]}"} \
    --padding_free "$PADDING_FREE" \
    --router_aux_loss_coef "$ROUTER_AUX_LOSS_COEF" \
    --seed "$SEED" \
    --report_to "$REPORT_TO" \
    --logging_steps "$LOGGING_STEPS" \
    --save_steps "$SAVE_STEPS" \
    --save_total_limit "$SAVE_TOTAL_LIMIT" \
    --merge "$MERGE" \
    ${RUN[@]+"${RUN[@]}"} \
    ${passed[@]+"${passed[@]}"}
