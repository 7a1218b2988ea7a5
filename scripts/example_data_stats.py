"""Print the size and label counts of the example data's gold labels (the numbers the docs quote).

    python scripts/example_data_stats.py                      # every sentence file of example-data/ below
    python scripts/example_data_stats.py FILE.txt [LABELS]    # one file; LABELS as --labels (default: language ID)

For each file: the sentences, the count per gold label, and the held-out split (the default --eval_fraction and
--split_seed, as every stage uses them) with its count per label. make results-quick saves the output as
docs/results/example_data_stats.txt.
"""

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prompt_distill.data import (  # noqa: E402
    DEFAULT_EVAL_FRACTION,
    DEFAULT_SPLIT_SEED,
    read_gold,
    read_sentences,
    split_of,
)
from prompt_distill.task import language_task, load_task  # noqa: E402

TRIAGE = "example-data/feedback_triage"
FILES = [("example-data/multilingual.txt", None), (f"{TRIAGE}/sentences.txt", f"{TRIAGE}/labels.txt"),
         (f"{TRIAGE}/fresh.txt", f"{TRIAGE}/labels.txt")]


def counts(labels) -> str:
    return "  ".join(f"{label} {count}" for label, count in sorted(Counter(labels).items()))


def report(path: str, labels: str | None) -> None:
    task = load_task(labels=labels) if labels else language_task()
    texts = read_sentences(path).texts
    gold = read_gold(path, task) or {}
    held_out = [text for text in texts if split_of(text, DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED) == "eval"]
    print(f"{path}: {len(texts)} sentences")
    print(f"  all:      {counts(gold.get(text, '?') for text in texts)}")
    print(f"  held out: {len(held_out)} (eval_fraction {DEFAULT_EVAL_FRACTION}, split_seed {DEFAULT_SPLIT_SEED}): "
          f"{counts(gold.get(text, '?') for text in held_out)}")
    print(f"  training: {len(texts) - len(held_out)}")


for path, labels in ([(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)] if len(sys.argv) > 1 else FILES):
    report(path, labels)
