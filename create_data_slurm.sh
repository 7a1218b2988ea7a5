#!/usr/bin/env bash
# Label the data on several nodes of a Slurm cluster: a job array with one task per shard (create_data.py with
# vLLM, tensor parallel over the GPUs of its node), then a job that starts once every task has succeeded and
# merges the shards into the usual output (the deterministic merge of create_data_h100x8.sh).
#
#   bash create_data_slurm.sh submit
#   NUM_SHARDS=8 TP=4 EXTRA_SBATCH_ARGS="--partition=gpu --time=12:00:00" bash create_data_slurm.sh submit \
#       --input_file queries.txt --output_file /shared/data/queries.jsonl
#   RUN_NAME=triage PROMPT_FILE=example-data/feedback_triage/prompt.md LABELS=example-data/feedback_triage/labels.txt \
#       INPUT=example-data/feedback_triage/sentences.txt MAX_TOKENS=8192 bash create_data_slurm.sh submit
#
# Your own task: PROMPT_FILE (the teacher's prompt, asking for "Final Answer: <label>") and LABELS (a,b,c or a
# file with one label per line); LABELS without PROMPT_FILE is refused (the built-in prompt asks for language
# codes). They are given here once: the output's run header (NAME.run.json) records them, and training,
# evaluation and the benchmark take them from there. RUN_NAME names the output data/${RUN_NAME}.jsonl (OUTPUT or
# --output_file still win); `RUN_NAME=triage bash train_trl.sh` trains on it into models/triage. MAX_TOKENS:
# tokens per answer, thought included (default: create_data.py's). WANDB_PROJECT is train_trl.sh's: labelling
# logs no wandb run.
#
# Every path must be on a filesystem that all nodes share: the input, the output folder (each shard writes
# NAME.shard-k-of-K.jsonl and its sidecar there, and the merge reads them back) and this repository.
# Relative paths are relative to the folder sbatch was called from, where Slurm starts the jobs.
#
# After a node failure or a timeout, run the same submit command again: every shard resumes where its output
# stopped (a finished shard exits without loading the model), and the merge job runs once all are complete.
#
# Settings: the variables below, or --input_file, --output_file, --model_name and --temperature after submit;
# any other flag goes to every create_data.py (e.g. --max_samples 1000, --max_tokens 8192).
# Each task asks sbatch for TP GPUs and runs vLLM with tensor parallel TP, so a GPU request in EXTRA_SBATCH_ARGS
# (--gpus*, -G, --gres=gpu...) is refused, and a task that Slurm gives fewer than TP GPUs stops before loading.
# The jobs run this same script: `create_data_slurm.sh label [create_data.py flags]` in each array task (shard
# $SLURM_ARRAY_TASK_ID of NUM_SHARDS), then `create_data_slurm.sh merge`; the settings reach them through the
# environment that submit exports.
set -euo pipefail

HERE="${PROMPT_DISTILL_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
INPUT="${INPUT:-./example-data/multilingual.txt}"
RUN_NAME="${RUN_NAME:-}"               # names the output data/$RUN_NAME.jsonl; empty: the default output below
if [ -n "$RUN_NAME" ]; then DEFAULT_OUTPUT="./data/$RUN_NAME.jsonl"; else DEFAULT_OUTPUT=./data/prompt_distillation_lang.jsonl; fi
OUTPUT="${OUTPUT:-$DEFAULT_OUTPUT}"
PROMPT_FILE="${PROMPT_FILE:-}"         # the teacher's prompt of your task; empty: the built-in language-ID prompt
LABELS="${LABELS:-}"                   # your labels (a,b,c or a file); empty: the language codes
MAX_TOKENS="${MAX_TOKENS:-}"           # tokens per answer, thought included; empty: create_data.py's default
MODEL="${MODEL:-Qwen/Qwen3-30B-A3B-Thinking-2507}"
NUM_SHARDS="${NUM_SHARDS:-4}"          # array tasks, one node each
TP="${TP:-4}"                          # GPUs per node, one vLLM instance over all of them
TEMPERATURE="${TEMPERATURE:-0.15}"
PYTHON="${PYTHON:-python}"
JOB_NAME="${JOB_NAME:-prompt-distill-label}"
LOG_DIR="${LOG_DIR:-./logs}"
MAX_PARALLEL="${MAX_PARALLEL:-}"       # at most this many array tasks at once (sbatch --array=...%N)
EXTRA_SBATCH_ARGS="${EXTRA_SBATCH_ARGS:-}"   # e.g. "--partition=gpu --account=me --time=12:00:00"

fail() {
  echo "error: $*" >&2
  exit 2
}

[[ "$RUN_NAME" =~ ^[A-Za-z0-9._-]*$ ]] || fail "RUN_NAME must be a name (letters, digits, '.', '_', '-'), got '$RUN_NAME'"
[[ "$NUM_SHARDS" =~ ^[1-9][0-9]*$ ]] || fail "NUM_SHARDS must be a positive integer, got '$NUM_SHARDS'"
[[ "$TP" =~ ^[1-9][0-9]*$ ]] || fail "TP must be a positive integer, got '$TP'"

mode="${1:-}"
shift || true

value_of() {  # value_of FLAG VALUE: fail clearly when a flag lacks its value
  if [[ $# -lt 2 || "$2" == --* ]]; then fail "$1 needs a value"; fi
}

submit() {
  # The flags that the merge job needs too become settings; the others go to every create_data.py.
  local extra=()
  while (($#)); do
    case "$1" in
      --input_file) value_of "$@"; INPUT="$2"; shift 2 ;;
      --output_file) value_of "$@"; OUTPUT="$2"; shift 2 ;;
      --model_name) value_of "$@"; MODEL="$2"; shift 2 ;;
      --temperature) value_of "$@"; TEMPERATURE="$2"; shift 2 ;;
      --input_file=*) INPUT="${1#*=}"; shift ;;
      --output_file=*) OUTPUT="${1#*=}"; shift ;;
      --model_name=*) MODEL="${1#*=}"; shift ;;
      --temperature=*) TEMPERATURE="${1#*=}"; shift ;;
      --shard_index* | --num_shards* | --tensor_parallel_size*)
        fail "$1 is set by this script (NUM_SHARDS, TP)" ;;
      *) extra+=("$1"); shift ;;
    esac
  done
  command -v sbatch >/dev/null || fail "sbatch not found: submit on a Slurm login node"
  local options=() option
  read -r -a options <<<"$EXTRA_SBATCH_ARGS"
  # The tasks ask for TP GPUs (--gpus-per-node) and vLLM shards over TP: a GPU request here would override the
  # first (later sbatch options win), leaving vLLM too few GPUs or idle ones.
  for option in ${options[@]+"${options[@]}"}; do
    case "$option" in
      --gpus* | -G* | --gres*gpu* | --gres)
        fail "EXTRA_SBATCH_ARGS asks for GPUs ($option): the script asks for TP=$TP per task itself; set TP instead" ;;
    esac
  done
  mkdir -p "$LOG_DIR" "$(dirname "$OUTPUT")"
  # The jobs see this environment (--export ALL); the script itself runs from a copy in Slurm's spool folder.
  export PROMPT_DISTILL_REPO="$HERE" INPUT OUTPUT MODEL NUM_SHARDS TP TEMPERATURE PYTHON PROMPT_FILE LABELS MAX_TOKENS

  local array="0-$((NUM_SHARDS - 1))${MAX_PARALLEL:+%$MAX_PARALLEL}"
  local label_job merge_job
  label_job=$(sbatch --parsable --export ALL --job-name "$JOB_NAME" --array "$array" --nodes 1 --ntasks 1 \
    --gpus-per-node "$TP" --output "$LOG_DIR/$JOB_NAME-%A_%a.log" ${options[@]+"${options[@]}"} \
    "$HERE/create_data_slurm.sh" label ${extra[@]+"${extra[@]}"})
  label_job="${label_job%%;*}"  # --parsable prints "id" or "id;cluster"
  # afterok on an array job waits for every task; a failed task cancels the merge instead of leaving it pending.
  merge_job=$(sbatch --parsable --export ALL --job-name "$JOB_NAME-merge" --dependency "afterok:$label_job" \
    --kill-on-invalid-dep yes --nodes 1 --ntasks 1 --output "$LOG_DIR/$JOB_NAME-merge-%j.log" \
    ${options[@]+"${options[@]}"} "$HERE/create_data_slurm.sh" merge)
  merge_job="${merge_job%%;*}"
  echo "Submitted $NUM_SHARDS labelling tasks (array job $label_job, $TP GPUs each) and the merge (job $merge_job)"
  echo "into $OUTPUT."
  echo "Logs: $LOG_DIR/$JOB_NAME-${label_job}_<task>.log and $LOG_DIR/$JOB_NAME-merge-$merge_job.log"
  echo "If a task fails, run the same command again: the shards resume, then merge."
}

label() {
  [ -n "${SLURM_ARRAY_TASK_ID:-}" ] || fail "label runs inside a Slurm array task (SLURM_ARRAY_TASK_ID is unset); use: bash create_data_slurm.sh submit"
  echo "shard $SLURM_ARRAY_TASK_ID of $NUM_SHARDS on $(hostname), GPUs ${CUDA_VISIBLE_DEVICES:-?}"
  if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then  # Slurm lists the GPUs it gave the task
    local visible=()
    IFS=, read -r -a visible <<<"$CUDA_VISIBLE_DEVICES"
    ((${#visible[@]} >= TP)) || fail "this task has ${#visible[@]} GPU(s) (CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES) but TP=$TP"
    ((${#visible[@]} == TP)) || echo "note: this task has ${#visible[@]} GPUs; vLLM uses $TP of them (TP=$TP)"
  fi
  local task=()  # the task and the token budget, given to create_data.py only when set
  if [ -n "$PROMPT_FILE" ]; then task+=(--prompt_file "$PROMPT_FILE"); fi
  if [ -n "$LABELS" ]; then task+=(--labels "$LABELS"); fi
  if [ -n "$MAX_TOKENS" ]; then task+=(--max_tokens "$MAX_TOKENS"); fi
  exec "$PYTHON" "$HERE/create_data.py" \
    --input_file "$INPUT" --output_file "$OUTPUT" --model_name "$MODEL" \
    --tensor_parallel_size "$TP" --temperature "$TEMPERATURE" \
    --shard_index "$SLURM_ARRAY_TASK_ID" --num_shards "$NUM_SHARDS" ${task[@]+"${task[@]}"} "$@"
}

merge() {
  PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m prompt_distill.labeling.shards \
    --output_file "$OUTPUT" --num_shards "$NUM_SHARDS"
}

case "$mode" in
  submit) submit "$@" ;;
  label) label "$@" ;;
  merge) merge ;;
  *) fail "usage: bash create_data_slurm.sh submit [create_data.py flags]   (label and merge are the jobs' own modes)" ;;
esac
