#!/usr/bin/env bash
# The whole pipeline on the embedded SmolLM2-135M over a slice of the example data (CPU, a few minutes).
# The 135M model cannot follow the long prompt: the accuracy printed at the end is a smoke test, not a result.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MODEL=${MODEL:-smollm2-135m-instruct}
SAMPLES=${SAMPLES:-48}          # sentences the teacher labels
EVAL_SAMPLES=${EVAL_SAMPLES:-40}  # held-out sentences the student answers
DATA=${DATA:-./data/demo_lang.jsonl}
ADAPTER=${ADAPTER:-./models/demo_trl}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

echo "== 1/3 teacher labels $SAMPLES sentences with the full prompt ($MODEL, transformers backend) =="
$PY create_data.py --backend transformers --model_name "$MODEL" \
    --input_file ./example-data/multilingual.txt --output_file "$DATA" --max_samples "$SAMPLES"

echo "== 2/3 student learns sentence -> label without the prompt (LoRA, CPU, fp32) =="
# 36 training sentences are few: a higher learning rate than the GPU default (2e-4) and 5 epochs make the 135M
# student learn the answer format (a label, then end of turn) instead of continuing the sentence.
$PY train_sft_trl.py --model_name "$MODEL" --data_file "$DATA" --output_dir "$ADAPTER" \
    --num_train_epochs 5 --learning_rate 1e-3 --per_device_train_batch_size 8 --gradient_accumulation_steps 1 \
    --save_strategy no --report_to none

echo "== 3/3 evaluation on the held-out split (gold labels + agreement with the teacher) =="
$PY evaluate.py --model_path "$ADAPTER" --test_file ./example-data/multilingual.txt \
    --teacher_file "$DATA" --max_samples "$EVAL_SAMPLES" --output_file ./data/demo_evaluation.json
