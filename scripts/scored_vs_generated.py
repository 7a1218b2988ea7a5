#!/usr/bin/env python
"""How often the student's scored label (one pass over every label) equals its greedy free generation.

    python scripts/scored_vs_generated.py --model_path ./models/demo_trl --test_file example-data/multilingual.txt

On the held-out split (the split flags as evaluate.py uses them), on transformers. Counts agreement where free
generation yields a label, lists every disagreement, and with --output_file saves each sentence's two answers.
See prompt_distill/evaluation/answer_agreement.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prompt_distill.cli import setup_logging  # noqa: E402
from prompt_distill.data import DataError, add_split_arguments, in_split, read_sentences  # noqa: E402
from prompt_distill.evaluation.answer_agreement import compare, format_agreement  # noqa: E402
from prompt_distill.evaluation.run import STUDENT_MAX_TOKENS, student_params  # noqa: E402
from prompt_distill.labeling.run_files import write_json_atomic  # noqa: E402
from prompt_distill.models import ModelNotFoundError  # noqa: E402
from prompt_distill.student.check import StudentError, resolve_student  # noqa: E402
from prompt_distill.student.engine import build_student_engine  # noqa: E402
from prompt_distill.task import TaskError, add_task_arguments, load_task  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_path", required=True, help="The student's LoRA adapter folder.")
    parser.add_argument("--base_model", default=None, help="Student base model (default: the adapter's own).")
    parser.add_argument("--test_file", required=True, help="Sentences, one per line.")
    parser.add_argument("--max_samples", type=int, default=None, help="Only the first N sentences of the split.")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--output_file", default=None, help="JSON with the counts and every sentence's answers.")
    add_split_arguments(parser, default_split="eval")
    add_task_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging()  # build_student_engine logs its notes
    try:
        student = resolve_student(args.model_path, args.base_model)
        task = load_task(args.prompt_file, args.labels)
        labels = tuple(((student.run_record or {}).get("task") or {}).get("labels") or task.labels)
        texts = [text for text in read_sentences(args.test_file).texts
                 if in_split(text, args.split, args.eval_fraction, args.split_seed)][: args.max_samples]
        if not texts:
            raise DataError(f"{args.test_file}: no sentence in split {args.split!r}.")
        for note in student.notes:
            print(f"[agreement] {note}")
        built = build_student_engine("transformers", student, args.batch_size)
        params = student_params(task, STUDENT_MAX_TOKENS, constrained=False)
        agreement = compare(built.engine, [student.messages(text) for text in texts], texts, task, labels, params)
    except (DataError, StudentError, TaskError, ModelNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"[agreement] {len(texts)} sentences of {args.test_file} (split {args.split}), {built.description}")
    print(format_agreement(agreement))
    if args.output_file:
        write_json_atomic(Path(args.output_file), agreement.to_json())
        print(f"[agreement] Saved {args.output_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
