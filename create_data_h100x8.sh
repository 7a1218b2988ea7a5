#!/usr/bin/env bash
# Label the data on one 8-GPU machine (H100x8): two create_data.py processes with 4 GPUs each (tensor parallel),
# each on half of the sentences, then one merged output at the usual path.
#
# Why two processes: vLLM 0.33's offline LLM refuses data_parallel_size > 1 (vllm/entrypoints/llm.py raises
# "LLM(data_parallel_size=...) is not supported for single-process usage").
#
#   bash create_data_h100x8.sh
#   bash create_data_h100x8.sh --input_file my.txt --output_file data/my.jsonl --tensor_parallel_size 4
#   INPUT=my.txt OUTPUT=data/my.jsonl MODEL=Qwen/Qwen3-30B-A3B-Thinking-2507 TP=4 bash create_data_h100x8.sh
#   RUN_NAME=triage PROMPT_FILE=example-data/feedback_triage/prompt.md LABELS=example-data/feedback_triage/labels.txt \
#       INPUT=example-data/feedback_triage/sentences.txt MAX_TOKENS=8192 bash create_data_h100x8.sh
#
# Your own task: PROMPT_FILE (the teacher's prompt, asking for "Final Answer: <label>") and LABELS (a,b,c or a
# file with one label per line); LABELS without PROMPT_FILE is refused (the built-in prompt asks for language
# codes). They are given here once: the output's run header (data/NAME.run.json) records them, and training,
# evaluation and the benchmark take them from there. RUN_NAME names the output data/${RUN_NAME}.jsonl (OUTPUT or
# --output_file still win); `RUN_NAME=triage bash train_trl.sh` then trains on it into models/triage. MAX_TOKENS:
# tokens per answer, thought included (default: create_data.py's). WANDB_PROJECT is train_trl.sh's: labelling
# logs no wandb run.
# Any other flag goes to both create_data.py processes (e.g. --max_samples 100, --max_tokens 8192).
# The GPUs (CUDA_VISIBLE_DEVICES's list if set, else those `nvidia-smi -L` lists, else 0-7) are split into groups
# of TP, one process per group: TP=4 on 8 GPUs runs "0,1,2,3 4,5,6,7", TP=8 one process, TP=1 on 1 GPU "0".
# GPU_GROUPS="0,1,2,3 4,5,6,7" sets the groups instead; each must have TP GPUs. A TP that does not divide the GPUs
# is refused before any process starts.
# Ctrl-C, TERM, HUP or the failure of one process stops all of them, and the script returns once every process of
# every shard (vLLM workers included) is gone; re-running the same command resumes every shard where it stopped,
# then merges.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INPUT="${INPUT:-./example-data/multilingual.txt}"
RUN_NAME="${RUN_NAME:-}"                 # names the output data/$RUN_NAME.jsonl; empty: the default output below
if [ -n "$RUN_NAME" ]; then DEFAULT_OUTPUT="./data/$RUN_NAME.jsonl"; else DEFAULT_OUTPUT=./data/prompt_distillation_lang.jsonl; fi
OUTPUT="${OUTPUT:-$DEFAULT_OUTPUT}"
PROMPT_FILE="${PROMPT_FILE:-}"           # the teacher's prompt of your task; empty: the built-in language-ID prompt
LABELS="${LABELS:-}"                     # your labels (a,b,c or a file); empty: the language codes
MAX_TOKENS="${MAX_TOKENS:-}"             # tokens per answer, thought included; empty: create_data.py's default
MODEL="${MODEL:-Qwen/Qwen3-30B-A3B-Thinking-2507}"
TP="${TP:-4}"
TEMPERATURE="${TEMPERATURE:-0.15}"
GPU_GROUPS="${GPU_GROUPS:-}"             # empty: groups of TP from the visible GPUs
PYTHON="${PYTHON:-python}"
STOP_GRACE_S="${STOP_GRACE_S:-20}"

value_of() {  # value_of FLAG VALUE: fail clearly when a flag lacks its value
  if [[ $# -lt 2 || "$2" == --* ]]; then
    echo "error: $1 needs a value" >&2
    exit 2
  fi
}

extra=()
while (($#)); do
  case "$1" in
    --input_file) value_of "$@"; INPUT="$2"; shift 2 ;;
    --output_file) value_of "$@"; OUTPUT="$2"; shift 2 ;;
    --model_name) value_of "$@"; MODEL="$2"; shift 2 ;;
    --tensor_parallel_size) value_of "$@"; TP="$2"; shift 2 ;;
    --temperature) value_of "$@"; TEMPERATURE="$2"; shift 2 ;;
    --input_file=*) INPUT="${1#*=}"; shift ;;
    --output_file=*) OUTPUT="${1#*=}"; shift ;;
    --model_name=*) MODEL="${1#*=}"; shift ;;
    --tensor_parallel_size=*) TP="${1#*=}"; shift ;;
    --temperature=*) TEMPERATURE="${1#*=}"; shift ;;
    --shard_index* | --num_shards*) echo "error: this script sets $1 itself" >&2; exit 2 ;;
    *) extra+=("$1"); shift ;;
  esac
done

fail() {
  echo "error: $*" >&2
  exit 2
}

[[ "$RUN_NAME" =~ ^[A-Za-z0-9._-]*$ ]] || fail "RUN_NAME must be a name (letters, digits, '.', '_', '-'), got '$RUN_NAME'"
task=()  # the task and the token budget, given to create_data.py only when set
if [ -n "$PROMPT_FILE" ]; then task+=(--prompt_file "$PROMPT_FILE"); fi
if [ -n "$LABELS" ]; then task+=(--labels "$LABELS"); fi
if [ -n "$MAX_TOKENS" ]; then task+=(--max_tokens "$MAX_TOKENS"); fi
[[ "$TP" =~ ^[1-9][0-9]*$ ]] || fail "the tensor parallel size (TP or --tensor_parallel_size) must be a positive integer, got '$TP'"
if [ -z "$GPU_GROUPS" ]; then
  if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then
    IFS=, read -r -a gpus <<<"$CUDA_VISIBLE_DEVICES"
    source_of_gpus="CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"
  elif command -v nvidia-smi >/dev/null; then
    listing=$(nvidia-smi -L) || fail "nvidia-smi -L failed; set CUDA_VISIBLE_DEVICES or GPU_GROUPS to say which GPUs to use"
    count=$(grep -c '^GPU ' <<<"$listing" || true)
    gpus=()
    for ((i = 0; i < count; i++)); do gpus+=("$i"); done
    source_of_gpus="nvidia-smi -L"
  else
    gpus=(0 1 2 3 4 5 6 7)
    source_of_gpus="no nvidia-smi: assumed the 8 GPUs of an H100x8"
    echo "nvidia-smi not found: assuming GPUs 0-7 (set CUDA_VISIBLE_DEVICES or GPU_GROUPS to say otherwise)"
  fi
  ((${#gpus[@]} > 0)) || fail "no GPU found ($source_of_gpus)"
  ((${#gpus[@]} % TP == 0)) || fail "TP=$TP does not divide the ${#gpus[@]} GPUs ($source_of_gpus); use a TP that divides it, or set CUDA_VISIBLE_DEVICES or GPU_GROUPS"
  groups=()
  for ((start = 0; start < ${#gpus[@]}; start += TP)); do
    group="${gpus[*]:start:TP}"
    groups+=("${group// /,}")
  done
else
  read -r -a groups <<<"$GPU_GROUPS"
  ((${#groups[@]} > 0)) || fail "GPU_GROUPS has no group"
  for group in "${groups[@]}"; do
    IFS=, read -r -a members <<<"$group"
    ((${#members[@]} == TP)) || fail "GPU_GROUPS=\"$GPU_GROUPS\" has a group of ${#members[@]} GPUs ($group) but TP=$TP: each group must have TP GPUs"
  done
fi
num_shards=${#groups[@]}
mkdir -p "$(dirname "$OUTPUT")"

# Job control puts each shard in its own process group (its id is the shard's pid): a stop then reaches vLLM's
# worker processes too, and Ctrl-C reaches only this script, which stops the shards itself.
set -m
pids=()
logs=()

group_alive() {  # group_alive PGID: a process of the group still runs (vLLM workers outlive create_data.py)
  kill -0 -- "-$1" 2>/dev/null
}

stop_all() {
  trap - INT TERM HUP
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  # Wait for every process of every group, not only each shard's main process: a worker still running holds
  # GPU memory that a re-run needs. Polled in tenths of a second; bash reaps the exited main processes meanwhile.
  for _ in $(seq "$((STOP_GRACE_S * 10))"); do
    alive=0
    for pid in "${pids[@]}"; do group_alive "$pid" && alive=1; done
    ((alive)) || return 0
    sleep 0.1
  done
  echo "Some shard processes ignored SIGTERM for ${STOP_GRACE_S} s: killing them." >&2
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do  # KILL cannot be ignored; a process in uninterruptible sleep (a driver call) takes a while
    alive=0
    for pid in "${pids[@]}"; do group_alive "$pid" && alive=1; done
    ((alive)) || return 0
    sleep 0.1
  done
  echo "warning: processes of groups ${pids[*]} are still alive; check nvidia-smi before re-running." >&2
}
trap 'echo "Interrupted: stopping all shards (re-run the same command to resume)." >&2; stop_all; exit 130' INT TERM HUP

for k in "${!groups[@]}"; do
  log="${OUTPUT%.jsonl}.shard-$k-of-$num_shards.log"
  CUDA_VISIBLE_DEVICES="${groups[$k]}" "$PYTHON" "$HERE/create_data.py" \
    --input_file "$INPUT" --output_file "$OUTPUT" --model_name "$MODEL" \
    --tensor_parallel_size "$TP" --temperature "$TEMPERATURE" \
    --shard_index "$k" --num_shards "$num_shards" ${task[@]+"${task[@]}"} ${extra[@]+"${extra[@]}"} >"$log" 2>&1 &
  pids+=("$!")
  logs+=("$log")
  echo "shard $k of $num_shards: GPUs ${groups[$k]}, pid $!, log $log"
done
set +m  # the groups are made; without job control bash does not print job-status lines
echo "Follow progress with: tail -f ${logs[*]}"

for _ in "${pids[@]}"; do
  status=0
  wait -n || status=$?
  if ((status != 0)); then
    echo "A shard failed (exit $status): stopping the others." >&2
    stop_all
    for log in "${logs[@]}"; do
      echo "--- last lines of $log" >&2
      tail -n 15 "$log" >&2 || true
    done
    exit "$status"
  fi
done
trap - INT TERM HUP

PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m prompt_distill.labeling.shards \
  --output_file "$OUTPUT" --num_shards "$num_shards"
