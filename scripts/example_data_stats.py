"""Print the size and label counts of a sentence file's gold labels (the numbers the README quotes).

    python scripts/example_data_stats.py [example-data/multilingual.txt]
"""

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prompt_distill.data import read_gold, read_sentences  # noqa: E402
from prompt_distill.task import language_task  # noqa: E402

path = sys.argv[1] if len(sys.argv) > 1 else "example-data/multilingual.txt"
texts = read_sentences(path).texts
gold = read_gold(path, language_task()) or {}
counts = Counter(gold.get(text, "?") for text in texts)
print(f"{path}: {len(texts)} sentences")
print("  ".join(f"{label} {count}" for label, count in sorted(counts.items())))
