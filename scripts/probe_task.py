#!/usr/bin/env python
"""Is a prompt worth distilling? Label accuracy of one model with the prompt and without it, on gold sentences.

    python scripts/probe_task.py --prompt_file example-data/feedback_triage/prompt.md \\
        --labels example-data/feedback_triage/labels.txt --test_file example-data/feedback_triage/sentences.txt --split train

Both settings score every label (then end of turn) as the answer and take the most likely one, as create_data.py
does on CPU (transformers engine, constrained answer, 0 generated tokens):

* with the prompt: the teacher's chat (the prompt as system message, ``Text to classify:`` + sentence), the label
  scored after ``Final Answer: ``;
* without it: the student's chat (the sentence alone), the label scored as the whole reply.

A task is worth distilling on this model when the first is clearly above the second. Run it on a few dozen
sentences (``--max_samples``) before writing hundreds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prompt_distill.data import add_split_arguments, in_split, read_gold, read_sentences  # noqa: E402
from prompt_distill.engines.base import GenerationParams  # noqa: E402
from prompt_distill.task import add_task_arguments, load_task  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--test_file", required=True, help="Sentences, one per line, with <name>.gold.tsv beside it.")
    parser.add_argument("--model_name", default="smollm2-135m-instruct")
    parser.add_argument("--max_samples", type=int, default=None, help="Only the first N sentences of the split.")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--show_errors", action="store_true", help="Print every sentence the prompted model gets wrong.")
    add_split_arguments(parser, default_split="all")
    add_task_arguments(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from prompt_distill.engines.hf import HFEngine

    task = load_task(args.prompt_file, args.labels)
    gold = read_gold(args.test_file, task)
    if gold is None:
        parser.error(f"{args.test_file} has no gold file beside it.")
    texts = [t for t in read_sentences(args.test_file).texts if in_split(t, args.split, args.eval_fraction, args.split_seed)]
    texts = texts[: args.max_samples]
    truths = [gold[t] for t in texts]
    engine = HFEngine(args.model_name, batch_size=args.batch_size)
    settings = {
        "without prompt": ([task.student_messages(t) for t in texts], ""),
        "with prompt": ([task.teacher_messages(t) for t in texts], "Final Answer: "),
    }
    print(f"{len(texts)} sentences, gold counts: {dict(sorted(Counter(truths).items()))}")
    print(f"prompt tokens (teacher chat of the first sentence): "
          f"{engine.count_prompt_tokens(settings['with prompt'][0][0], GenerationParams(max_tokens=0))}")
    for name, (chats, prefix) in settings.items():
        started = time.perf_counter()
        params = GenerationParams(max_tokens=0, answer_labels=task.labels, answer_prefix=prefix)
        scores = engine.label_logprobs(chats, params)
        chosen = [max(task.labels, key=row.__getitem__) for row in scores]  # the first label wins a tie
        correct = sum(c == t for c, t in zip(chosen, truths, strict=True))
        print(f"{name:>15}: accuracy {100 * correct / len(texts):5.1f}% ({correct}/{len(texts)}), "
              f"predicted {dict(sorted(Counter(chosen).items()))}, {time.perf_counter() - started:.0f} s")
        # Diagnostic only: with each label's mean score removed (a per-label bias the model has whatever the text),
        # how often the best label is right. A large gap to the raw accuracy means signal hidden by a bias.
        means = {label: sum(row[label] for row in scores) / len(scores) for label in task.labels}
        centred = [max(task.labels, key=lambda label, row=row: row[label] - means[label]) for row in scores]
        right = sum(c == t for c, t in zip(centred, truths, strict=True))
        print(f"{'':>15}  bias removed: {100 * right / len(texts):5.1f}%, mean score per label "
              f"{ {label: round(value, 2) for label, value in means.items()} }")
        if args.show_errors and prefix:
            for text, c, t in zip(texts, chosen, truths, strict=True):
                if c != t:
                    print(f"    {t:>10} -> {c:<10} {text[:90]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
