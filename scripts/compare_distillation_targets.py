#!/usr/bin/env python
"""Hard vs soft targets on the triage task: the student trained with N seeds x {hard, soft, soft + confidence
filter}, each evaluated on the 93 held-out and the 90 fresh messages (issue 23).

    python scripts/compare_distillation_targets.py                 # make results-distillation-targets

1. The teacher (the embedded SmolLM2-135M with the triage prompt, constrained answer, as in ``make demo``) labels
   the 449 messages and the 90 fresh ones; the constrained pass gives its label probabilities, so the training
   file carries each message's ``"teacher"`` distribution (skipped when the files are there).
2. The base model without the prompt answers both test sets (the baseline of "gain kept").
3. Per seed and arm: train_sft_trl.py's run (the demo's hyperparameters but --num_train_epochs, no eval loss,
   no checkpoints), then the student's scored labels on both sets (what evaluate.py reads): accuracy, expected
   calibration error (15 bins), gain kept = (student - base) / (teacher - base).

Every finished run is saved in --work_dir/runs/ (an interrupted comparison resumes); the table is printed from them.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prompt_distill.data import DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED, in_split, read_gold, read_sentences  # noqa: E402
from prompt_distill.evaluation.calibration import expected_calibration_error  # noqa: E402
from prompt_distill.evaluation.distillation import gain_kept  # noqa: E402
from prompt_distill.task import load_task  # noqa: E402

TASK_DIR = ROOT / "example-data" / "feedback_triage"
MODEL = "smollm2-135m-instruct"
ARMS = ("hard", "soft", "soft+filter")


EXTRA_ARMS = ("mixed",)  # --arms mixed: soft with half the hard label's NLL mixed in (--hard_label_weight 0.5)


def arm_flags(arm: str, min_confidence: float) -> list[str]:
    if arm == "hard":
        return ["--distillation_target", "hard"]
    flags = ["--distillation_target", "soft"]
    if arm == "mixed":
        return flags + ["--hard_label_weight", "0.5"]
    return flags + (["--min_teacher_confidence", str(min_confidence)] if arm == "soft+filter" else [])


def label(input_file: Path, output_file: Path) -> None:
    if output_file.is_file():
        print(f"[compare] teacher labels: {output_file} (already there)", flush=True)
        return
    started = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "create_data.py"), "--backend", "transformers", "--model_name", MODEL,
                    *task_flags(), "--input_file", str(input_file), "--output_file", str(output_file),
                    "--report_to", "none"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    print(f"[compare] teacher labels: {output_file} ({time.perf_counter() - started:.0f} s)", flush=True)


def task_flags() -> list[str]:
    return ["--prompt_file", str(TASK_DIR / "prompt.md"), "--labels", str(TASK_DIR / "labels.txt")]


def teacher_labels(data_file: Path) -> dict[str, dict]:
    """sentence -> {"label", "teacher"} from a training file."""
    rows = {}
    for line in data_file.read_text("utf-8").splitlines():
        record = json.loads(line)
        rows[record["messages"][0]["content"]] = {"label": record["messages"][1]["content"],
                                                   "teacher": record.get("teacher")}
    return rows


def test_sets(task) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (texts, gold labels): the held-out split of the 449 messages, and the 90 fresh ones."""
    sets = {}
    for name, path, split in (("held-out", TASK_DIR / "sentences.txt", "eval"), ("fresh", TASK_DIR / "fresh.txt", "all")):
        gold = read_gold(path, task)
        texts = [text for text in read_sentences(path).texts
                 if in_split(text, split, DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED)]
        sets[name] = (texts, [gold[text] for text in texts])
    return sets


def classify(student, labels, texts, batch_size=16) -> list[dict]:
    from prompt_distill.student.engine import build_student_engine

    built = build_student_engine("transformers", student, batch_size)
    scores = built.engine.classify([student.messages(text) for text in texts], tuple(labels))
    del built
    gc.collect()
    return [{"label": score.label, "probability": score.probability} for score in scores]


def scored(predictions: list[dict], gold: list[str]) -> dict:
    correct = [prediction["label"] == truth for prediction, truth in zip(predictions, gold, strict=True)]
    return {"accuracy": sum(correct) / len(correct),
            "ece": expected_calibration_error([prediction["probability"] for prediction in predictions], correct),
            "labels": [prediction["label"] for prediction in predictions]}


def train_and_score(seed: int, arm: str, args, sets, labels, run_file: Path) -> dict:
    from prompt_distill.student.check import resolve_student
    from prompt_distill.training.config import parse_job
    from prompt_distill.training.run import run

    adapter = args.work_dir / "adapters" / f"{arm.replace('+', '_')}_seed{seed}"
    argv = ["--model_name", MODEL, *task_flags(), "--data_file", str(args.work_dir / "triage.jsonl"),
            "--output_dir", str(adapter), "--num_train_epochs", str(args.epochs), "--learning_rate", "1e-3",
            "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1", "--save_strategy", "no",
            "--eval_strategy", "no", "--report_to", "none", "--overwrite_output_dir", "--gradient_checkpointing",
            "false", "--disable_tqdm", "true", "--seed", str(seed), *arm_flags(arm, args.min_teacher_confidence)]
    started = time.perf_counter()
    result = run(parse_job(argv))
    train_s = time.perf_counter() - started
    record = result.record
    del result
    gc.collect()
    student = resolve_student(str(adapter), None)
    outcome = {"seed": seed, "arm": arm, "flags": arm_flags(arm, args.min_teacher_confidence), "train_s": round(train_s, 1),
               "trained_examples": record["split"]["examples_trained"], "distillation": record["distillation"],
               "final_train_loss": record["results"]["final_train_loss"]}
    for name, (texts, gold) in sets.items():
        outcome[name] = scored(classify(student, labels, texts), gold)
    run_file.parent.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(outcome, indent=1), "utf-8")
    print(f"[compare] seed {seed} {arm}: trained {outcome['trained_examples']} examples in {train_s:.0f} s; "
          + ", ".join(f"{name} {outcome[name]['accuracy']:.1%}" for name in sets), flush=True)
    return outcome


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--epochs", type=float, default=1.0, help="--num_train_epochs of every run (demo: 2).")
    parser.add_argument("--min_teacher_confidence", type=float, default=0.4,
                        help="The filter of soft+filter (0.4: about the lowest fifth of the triage teacher's confidences).")
    parser.add_argument("--work_dir", type=Path, default=ROOT / "data" / "distillation_targets")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"Among {', '.join(ARMS + EXTRA_ARMS)}.")
    args = parser.parse_args(argv)
    unknown = set(args.arms.split(",")) - set(ARMS + EXTRA_ARMS)
    if unknown:
        parser.error(f"--arms: unknown {', '.join(sorted(unknown))}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from prompt_distill.cli import setup_logging

    setup_logging()
    started = time.perf_counter()
    task = load_task(str(TASK_DIR / "prompt.md"), str(TASK_DIR / "labels.txt"))
    labels = task.labels
    args.work_dir.mkdir(parents=True, exist_ok=True)
    label(TASK_DIR / "sentences.txt", args.work_dir / "triage.jsonl")
    label(TASK_DIR / "fresh.txt", args.work_dir / "fresh.jsonl")
    sets = test_sets(task)
    teacher = {**teacher_labels(args.work_dir / "fresh.jsonl"), **teacher_labels(args.work_dir / "triage.jsonl")}
    training = teacher_labels(args.work_dir / "triage.jsonl")
    train_texts = [text for text in training if in_split(text, "train", DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED)]
    confidences = sorted(training[text]["teacher"]["confidence"] for text in train_texts if training[text]["teacher"])
    below = sum(value < args.min_teacher_confidence for value in confidences)
    print(f"[compare] training split: {len(train_texts)} messages, {len(confidences)} with the teacher's "
          f"distribution; confidence median {statistics.median(confidences):.3f}, {below} below "
          f"{args.min_teacher_confidence}", flush=True)

    base_file = args.work_dir / "base.json"
    if not base_file.is_file():
        from prompt_distill.student.check import resolve_student

        base = resolve_student(None, MODEL, no_adapter=True)
        base_file.write_text(json.dumps({name: scored(classify(base, labels, texts), gold)
                                         for name, (texts, gold) in sets.items()}), "utf-8")
    base = json.loads(base_file.read_text("utf-8"))
    teacher_accuracy = {name: sum(teacher[text]["label"] == truth for text, truth in zip(texts, gold, strict=True))
                        / len(texts) for name, (texts, gold) in sets.items()}

    runs = []
    for seed in range(args.seeds):
        for arm in args.arms.split(","):
            run_file = args.work_dir / "runs" / f"e{args.epochs:g}_p{args.min_teacher_confidence:g}_{arm}_seed{seed}.json"
            if run_file.is_file():  # finished by an earlier, interrupted invocation
                runs.append({**json.loads(run_file.read_text("utf-8")), "earlier": True})
            else:
                runs.append(train_and_score(seed, arm, args, sets, labels, run_file))

    print()
    print(f"Triage student, {args.seeds} seeds x {{{', '.join(args.arms.split(','))}}}, {args.epochs:g} epoch(s) each "
          f"(lr 1e-3, batch 8, LoRA r 32), soft = KL to the teacher's label probabilities (temperature 1, hard label "
          f"weight 0; mixed: 0.5), filter = --min_teacher_confidence {args.min_teacher_confidence:g}")
    for name, (texts, _) in sets.items():
        print(f"\n{name} ({len(texts)} messages): base {base[name]['accuracy']:.1%}, teacher "
              f"{teacher_accuracy[name]:.1%}")
        print(f"  {'targets':<13} {'trained on':>10} {'mean acc':>9} {'min-max over seeds':>19} {'ECE':>7} "
              f"{'gain kept':>10}")
        for arm in args.arms.split(","):
            mine = [run for run in runs if run["arm"] == arm]
            accuracies = [run[name]["accuracy"] for run in mine]
            gains = [gain_kept(base[name]["accuracy"], teacher_accuracy[name], value) for value in accuracies]
            gain = (f"{statistics.mean(gains):.2f}" if all(value is not None for value in gains) else "n/a")
            print(f"  {arm:<13} {statistics.mean(run['trained_examples'] for run in mine):>10.0f} "
                  f"{statistics.mean(accuracies):>8.1%} {min(accuracies):>9.1%} - {max(accuracies):>5.1%} "
                  f"{statistics.mean(run[name]['ece'] for run in mine):>7.4f} {gain:>10}")
    print("\nper run (seed, targets, held-out, fresh, train s):")
    for run in runs:
        print(f"  {run['seed']} {run['arm']:<12} {run['held-out']['accuracy']:.1%} {run['fresh']['accuracy']:.1%} "
              f"{run['train_s']:.0f}" + ("  (trained by an earlier invocation, read from its run file)"
                                         if run.get("earlier") else ""))
    print(f"\n[compare] {len(runs)} runs; this invocation {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
