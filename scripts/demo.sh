#!/usr/bin/env bash
# The whole pipeline on the embedded SmolLM2-135M (CPU, a few minutes).
#
#   bash scripts/demo.sh                      # TASK=feedback_triage (the default): the task in
#                                             # example-data/feedback_triage/ on which the 135M teacher does better
#                                             # with its prompt than without; the report ends with the distillation
#                                             # block (base without the prompt vs teacher with it vs student without it)
#   TASK=language_id bash scripts/demo.sh     # the machinery check: language ID over a slice of
#                                             # example-data/multilingual.txt (the reference task of the GPU setup)
#   TASK=<name> bash scripts/demo.sh          # any task in example-data/<name>/: prompt.md, labels.txt,
#                                             # sentences.txt + sentences.gold.tsv; all of it is labelled
#
# A 135M model cannot follow the long language-ID prompt, so the language-ID accuracy is a smoke test of the
# machinery (labelling, resume, training, reload, report), not a result; feedback_triage is where it shows a gain.
# FRESH=1 first removes the demo's own data, adapter and reports. STOP_AFTER=1 (or 2) stops after that stage.
# The student's report ends with the confidence block (coverage table, calibration error, reliability diagram)
# and a cascade to the teacher below DEFER_BELOW (default 0.5).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MODEL=${MODEL:-smollm2-135m-instruct}
TASK=${TASK:-feedback_triage}
STOP_AFTER=${STOP_AFTER:-3}
DEFER_BELOW=${DEFER_BELOW:-0.5}  # the cascade: sentences the student gives less than this go to the teacher's label
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if [ "$TASK" = language_id ]; then
    INPUT=./example-data/multilingual.txt
    TASK_FLAGS=()
    echo "(TASK=language_id checks the machinery only: the 135M teacher cannot follow the language-ID prompt, so its"
    echo " labels, and the student that copies them, are close to chance. make demo shows a distillation that works.)"
    SAMPLES=${SAMPLES:-48}            # sentences the teacher labels
    EVAL_SAMPLES=${EVAL_SAMPLES:-40}  # held-out sentences the student answers
    DATA=${DATA:-./data/demo_lang.jsonl}
    ADAPTER=${ADAPTER:-./models/demo_trl}
    OUTPUT=${OUTPUT:-./data/demo_evaluation.json}
    # 36 training sentences are few: a higher learning rate than the GPU default (2e-4) and 5 epochs make the
    # 135M student learn the answer format (a label, then end of turn) instead of continuing the sentence.
    EPOCHS=${EPOCHS:-5}
else
    DIR=./example-data/$TASK
    for file in prompt.md labels.txt sentences.txt; do
        [ -f "$DIR/$file" ] || { echo "error: TASK=$TASK needs $DIR/$file" >&2; exit 2; }
    done
    INPUT=$DIR/sentences.txt
    TASK_FLAGS=(--prompt_file "$DIR/prompt.md" --labels "$DIR/labels.txt")
    SAMPLES=${SAMPLES:-}              # empty: every sentence (the held-out ones too, for the teacher's accuracy)
    EVAL_SAMPLES=${EVAL_SAMPLES:-}    # empty: the whole held-out split
    DATA=${DATA:-./data/demo_$TASK.jsonl}
    ADAPTER=${ADAPTER:-./models/demo_$TASK}
    OUTPUT=${OUTPUT:-./data/demo_${TASK}_evaluation.json}
    EPOCHS=${EPOCHS:-2}
fi
BASELINE=${BASELINE:-${OUTPUT%.json}_baseline.json}
if [ -n "${FRESH:-}" ]; then  # start from nothing: the labels and their run files, the adapter, the reports
    rm -rf "$ADAPTER"
    rm -f "$DATA" "${DATA%.jsonl}".* "$OUTPUT" "${OUTPUT%.json}".* "$BASELINE" "${BASELINE%.json}".*
fi

echo "== 1/3 teacher labels ${SAMPLES:-all} sentences with the full prompt ($MODEL, transformers backend) =="
$PY create_data.py --backend transformers --model_name "$MODEL" "${TASK_FLAGS[@]}" \
    --input_file "$INPUT" --output_file "$DATA" ${SAMPLES:+--max_samples "$SAMPLES"}
[ "$STOP_AFTER" -le 1 ] && exit 0

echo "== 2/3 student learns sentence -> label without the prompt (LoRA, CPU, fp32) =="
$PY train_sft_trl.py --model_name "$MODEL" "${TASK_FLAGS[@]}" --data_file "$DATA" --output_dir "$ADAPTER" \
    --num_train_epochs "$EPOCHS" --learning_rate 1e-3 --per_device_train_batch_size 8 --gradient_accumulation_steps 1 \
    --save_strategy no --report_to none --overwrite_output_dir  # a rerun of the demo retrains its adapter
[ "$STOP_AFTER" -le 2 ] && exit 0

echo "== 3/3 evaluation on the held-out split (gold labels + agreement with the teacher) =="
DISTILL=()
if [ "$TASK" != language_id ]; then
    echo "-- the base model without the prompt and without the adapter, labels scored (the distillation baseline) --"
    $PY evaluate.py --no_adapter --base_model "$MODEL" "${TASK_FLAGS[@]}" --test_file "$INPUT" \
        ${EVAL_SAMPLES:+--max_samples "$EVAL_SAMPLES"} --output_file "$BASELINE" \
        > "${BASELINE%.json}.log"
    echo "   saved to $BASELINE (report: ${BASELINE%.json}.log)"
    DISTILL=(--baseline "$BASELINE")
fi
$PY evaluate.py --model_path "$ADAPTER" "${TASK_FLAGS[@]}" --test_file "$INPUT" \
    --teacher_file "$DATA" ${EVAL_SAMPLES:+--max_samples "$EVAL_SAMPLES"} --output_file "$OUTPUT" "${DISTILL[@]}" \
    --defer_below "$DEFER_BELOW"
