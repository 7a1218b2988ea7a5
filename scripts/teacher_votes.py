#!/usr/bin/env python
"""Does a majority of K sampled answers make the triage teacher more accurate? (issue 23, votes on CPU)

    python scripts/teacher_votes.py                    # make results-teacher-votes

The embedded SmolLM2-135M with the triage prompt answers the 93 held-out and the 90 fresh messages K times
(create_data.py --num_samples K at --temperature T, --max_tokens M generated tokens before the constrained
label, each sample with its own seed), and the same messages are graded against the gold labels: one sample (the
first, what --num_samples 1 gives at that temperature), the majority of the first 3, the majority of all K (ties
by the mean label probability, as create_data.py breaks them), and the default teacher (temperature 0.15, labels
scored, no generated tokens; from scripts/compare_distillation_targets.py's labels when they are there).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compare_distillation_targets import label as label_with_default_teacher  # noqa: E402 (scripts/, beside this)

from prompt_distill.data import DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED, in_split, read_gold, read_sentences  # noqa: E402
from prompt_distill.labeling.votes import combine  # noqa: E402
from prompt_distill.task import load_task  # noqa: E402

TASK_DIR = ROOT / "example-data" / "feedback_triage"
MODEL = "smollm2-135m-instruct"


def majority(samples: list[dict], labels) -> str:
    """The label create_data.py would have written for these samples (votes.combine; the sidecar's samples keep
    no latency, which combine only reports)."""
    return combine([{**sample, "latency_s": 0.0} for sample in samples], labels)["label"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_samples", type=int, default=3)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max_tokens", type=int, default=4)
    parser.add_argument("--work_dir", type=Path, default=ROOT / "data" / "distillation_targets")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    task = load_task(str(TASK_DIR / "prompt.md"), str(TASK_DIR / "labels.txt"))
    gold, sets = {}, {}
    for name, path, split in (("held-out", TASK_DIR / "sentences.txt", "eval"), ("fresh", TASK_DIR / "fresh.txt", "all")):
        answers = read_gold(path, task)
        sets[name] = [text for text in read_sentences(path).texts
                      if in_split(text, split, DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED)]
        gold.update({text: answers[text] for text in sets[name]})
    args.work_dir.mkdir(parents=True, exist_ok=True)
    input_file = args.work_dir / "votes_input.txt"
    input_file.write_text("".join(f"{text}\n" for texts in sets.values() for text in texts), "utf-8")
    output = args.work_dir / f"votes_k{args.num_samples}_t{args.temperature:g}_m{args.max_tokens}.jsonl"
    started = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "create_data.py"), "--backend", "transformers", "--model_name", MODEL,
                    "--prompt_file", str(TASK_DIR / "prompt.md"), "--labels", str(TASK_DIR / "labels.txt"),
                    "--input_file", str(input_file), "--output_file", str(output), "--report_to", "none",
                    "--num_samples", str(args.num_samples), "--temperature", str(args.temperature),
                    "--max_tokens", str(args.max_tokens)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    labelling_s = time.perf_counter() - started
    records = {}
    for line in output.with_suffix(".meta.jsonl").read_text("utf-8").splitlines():
        record = json.loads(line)
        if "samples" in record:
            records[record["text"]] = record
    # The default teacher's labels (temperature 0.15, labels scored): the ones the distillation comparison trains
    # on, made here when that script has not run yet.
    default = {}
    for source, name in ((TASK_DIR / "sentences.txt", "triage.jsonl"), (TASK_DIR / "fresh.txt", "fresh.jsonl")):
        label_with_default_teacher(source, args.work_dir / name)
        for line in (args.work_dir / name).read_text("utf-8").splitlines():
            record = json.loads(line)
            default[record["messages"][0]["content"]] = record["messages"][1]["content"]

    print(f"Triage teacher ({MODEL}, with the prompt), {args.num_samples} samples per message at temperature "
          f"{args.temperature:g}, up to {args.max_tokens} generated tokens then the constrained label "
          f"(labelling {labelling_s:.0f} s)")
    counts = [("1 sample (the first)", 1), *((f"majority of {k}", k) for k in sorted({3, args.num_samples}) if k > 1)]
    for name, texts in sets.items():
        mine = [records[text] for text in texts if text in records]
        print(f"\n{name}: {len(mine)} of {len(texts)} messages labelled")
        split = sum(len({sample["label"] for sample in record["samples"]}) > 1 for record in mine)
        print(f"  samples differ on {split} of {len(mine)} messages ({split / max(len(mine), 1):.1%}); mean "
              f"agreement {sum(record['agreement'] for record in mine) / max(len(mine), 1):.3f}")
        for title, k in counts:
            if k > args.num_samples:
                continue
            correct = sum(majority(record["samples"][:k], task.labels) == gold[record["text"]] for record in mine)
            print(f"  {title:<26} accuracy {correct / len(mine):.1%} ({correct}/{len(mine)})")
        if all(record["text"] in default for record in mine):
            correct = sum(default[record["text"]] == gold[record["text"]] for record in mine)
            print(f"  {'default (T 0.15, scored)':<26} accuracy {correct / len(mine):.1%} ({correct}/{len(mine)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
