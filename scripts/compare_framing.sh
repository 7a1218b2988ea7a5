#!/usr/bin/env bash
# Does the student's framing change what it learns? Trains the feedback-triage student (the demo's settings) with
# each --student_framing and several seeds, evaluates each on the held-out split, prints one line per run.
# Needs the demo's teacher labels first: `make demo` (or STOP_AFTER=1 of it).
#
#   bash scripts/compare_framing.sh     # SEEDS="0 1 2 42" (42: the demo's), both framings, two runs at a time (~45 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-0 1 2 42}
DATA=${DATA:-./data/demo_feedback_triage.jsonl}
DIR=./example-data/feedback_triage
TASK_FLAGS=(--prompt_file "$DIR/prompt.md" --labels "$DIR/labels.txt")
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
[ -f "$DATA" ] || { echo "error: $DATA not found: run 'make demo' first" >&2; exit 2; }

run_one() {  # framing seed
    local name="framing_$1_seed$2"
    $PY train_sft_trl.py --model_name smollm2-135m-instruct "${TASK_FLAGS[@]}" --data_file "$DATA" \
        --output_dir "./models/$name" --student_framing "$1" --seed "$2" --num_train_epochs 2 --learning_rate 1e-3 \
        --per_device_train_batch_size 8 --gradient_accumulation_steps 1 --save_strategy no --report_to none \
        --overwrite_output_dir > "./data/$name.train.log" 2>&1
    $PY evaluate.py --model_path "./models/$name" "${TASK_FLAGS[@]}" --test_file "$DIR/sentences.txt" \
        --output_file "./data/$name.json" > "./data/$name.eval.log" 2>&1
}

for seed in $SEEDS; do  # the two framings of one seed side by side (one core each)
    run_one user_only "$seed" & first=$!
    run_one empty_system "$seed" & second=$!
    wait "$first"; wait "$second"
done
$PY - "$SEEDS" <<'PY'
import json, sys
seeds = sys.argv[1].split()
accuracies = {"user_only": [], "empty_system": []}
print(f"{'framing':<14}{'seed':>5}{'accuracy':>10}{'ECE':>8}{'prompt tokens':>15}")
for seed in seeds:
    for framing in accuracies:
        r = json.load(open(f"data/framing_{framing}_seed{seed}.json"))
        tokens = sum(p["prompt_tokens"] for p in r["predictions"]) / len(r["predictions"])
        ece = (r.get("confidence") or {}).get("ece")
        accuracies[framing].append(100 * r["summary"]["accuracy"])
        print(f"{framing:<14}{seed:>5}{accuracies[framing][-1]:>9.1f}%{ece if ece is None else round(ece, 3):>8}"
              f"{tokens:>15.1f}")
for framing, values in accuracies.items():
    print(f"{framing:<14} mean accuracy over {len(values)} seeds: {sum(values) / len(values):.1f}%, "
          f"lowest {min(values):.1f}%, highest {max(values):.1f}%")
PY
