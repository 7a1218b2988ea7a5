#!/usr/bin/env bash
# The triage demo's adapter on the 90 messages written after the prompt was fixed (example-data/feedback_triage/
# fresh.txt, a test set no design choice saw): the teacher labels them with the prompt, the base answers without
# it, then the student's report with the distillation block. Run `make demo` first (its adapter).
#
#   bash scripts/triage_fresh.sh        # make results-fresh saves the output as docs/results/fresh_feedback_triage.txt
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MODEL=${MODEL:-smollm2-135m-instruct}
ADAPTER=${ADAPTER:-./models/demo_feedback_triage}
F=./example-data/feedback_triage
T=(--prompt_file "$F/prompt.md" --labels "$F/labels.txt")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
[ -d "$ADAPTER" ] || { echo "error: $ADAPTER not found: run 'make demo' first" >&2; exit 2; }
rm -f data/fresh_feedback_triage.* data/fresh_feedback_triage_*  # start from nothing (labelling would resume)

echo "== the teacher labels the 90 fresh messages with the prompt =="
$PY create_data.py --backend transformers --model_name "$MODEL" "${T[@]}" \
    --input_file "$F/fresh.txt" --output_file data/fresh_feedback_triage.jsonl
echo "== the base model without the prompt (the baseline) =="
$PY evaluate.py --no_adapter --base_model "$MODEL" "${T[@]}" --test_file "$F/fresh.txt" --split all \
    --output_file data/fresh_feedback_triage_baseline.json > data/fresh_feedback_triage_baseline.log
echo "== the student, without the prompt =="
$PY evaluate.py --model_path "$ADAPTER" "${T[@]}" --test_file "$F/fresh.txt" --split all \
    --teacher_file data/fresh_feedback_triage.jsonl --baseline data/fresh_feedback_triage_baseline.json \
    --defer_below 0.5 --output_file data/fresh_feedback_triage_evaluation.json
