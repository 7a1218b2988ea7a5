#!/usr/bin/env bash
# The probes behind docs/feedback_triage.md's "what was tried" table: scripts/probe_task.py (the embedded model's
# label accuracy with each prompt and without it) on every tried task of example-data/tried/ and the final one.
#
#   bash scripts/probe_tried.sh        # make results-probes saves the output as docs/results/probe_tried.txt
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
T=./example-data/tried
F=./example-data/feedback_triage

probe() {  # row name, prompt folder, sentences file, extra flags
    echo "== $1"
    $PY scripts/probe_task.py --prompt_file "$2/prompt.md" --labels "$2/labels.txt" --test_file "$3" "${@:4}"
}
probe "ticket routing, code names" "$T/ticket_routing" "$T/ticket_routing/sentences.txt"
probe "ticket routing, plain names" "$T/ticket_routing_plain_names" "$T/ticket_routing_plain_names/sentences.txt"
probe "ticket routing, letters" "$T/ticket_routing_letters" "$T/ticket_routing_letters/sentences.txt"
probe "product routing" "$T/product_routing" "$T/product_routing/sentences.txt"
probe "feedback triage A B C, train split" "$T/feedback_triage_abc" "$T/feedback_triage_abc/sentences.txt" --split train
probe "feedback triage, first example order, train split" "$T/feedback_triage_first_order" "$F/sentences.txt" --split train
probe "feedback triage, first example order, held-out split" "$T/feedback_triage_first_order" "$F/sentences.txt" --split eval
probe "feedback triage, final prompt, train split" "$F" "$F/sentences.txt" --split train
