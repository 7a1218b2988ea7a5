#!/usr/bin/env python
"""The time that wandb logging adds to labelling and training on the CPU demo, measured side by side.

    .venv/bin/python scripts/bench_wandb_overhead.py                       # the triage demo: every sentence, 2 epochs
    .venv/bin/python scripts/bench_wandb_overhead.py --max_samples 120 --epochs 1   # a quicker, smaller run

Each round runs create_data.py and then train_sft_trl.py twice, once with --report_to none and once with
--report_to wandb (WANDB_MODE=offline, into a temporary folder: nothing leaves the machine), the order alternating
from round to round so that a machine getting slower or faster does not favour one side. Labelling reads the same
sentences each time; every training run reads the same labelled file (the first one written). The time is each
command's wall time, model loading and wandb's start and finish included: what the user waits for; and its CPU
time (user + system of the script and the processes it waited for: wandb-core too, which wandb waits for at
exit), which other jobs on a shared machine disturb much less than the wall time. It prints the per-run times,
the median of each side and the ratio wandb / none per stage and for both stages together, for both clocks.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = ("none", "wandb")
LIMIT = 0.05  # the bound on the added time


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="feedback_triage", help="example-data/<task>/ (prompt.md, labels.txt, "
                                                                   "sentences.txt), as scripts/demo.sh TASK=...")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--max_samples", type=int, default=None, help="sentences labelled (default: all, as the demo)")
    parser.add_argument("--epochs", type=float, default=2.0, help="training epochs (the triage demo's 2)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; each runs both sides of both stages")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    return parser.parse_args(argv)


def timed(command: list[str], env: dict, cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one command; CPU: user + system of it and the processes it waited for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(command[:2])} failed:\n{done.stderr[-3000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def table(times: dict, clock: int, name: str) -> float:
    """Print the medians and ratios of one clock (0: wall, 1: CPU); returns the worse stage's added share."""
    print(f"{name:8} {'none (median s)':>16} {'wandb (median s)':>17} {'wandb / none':>13}   runs none | wandb")
    totals = {mode: 0.0 for mode in MODES}
    worst = None
    for stage in ("label", "train"):
        values = {mode: [pair[clock] for pair in times[(stage, mode)]] for mode in MODES}
        medians = {mode: statistics.median(values[mode]) for mode in MODES}
        for mode in MODES:
            totals[mode] += medians[mode]
        ratio = medians["wandb"] / medians["none"]
        worst = ratio - 1 if worst is None else max(worst, ratio - 1)
        runs = " | ".join(" ".join(f"{value:.1f}" for value in values[mode]) for mode in MODES)
        print(f"{stage:8} {medians['none']:16.1f} {medians['wandb']:17.1f} {ratio:13.3f}   {runs}")
    ratio = totals["wandb"] / totals["none"]
    print(f"{'both':8} {totals['none']:16.1f} {totals['wandb']:17.1f} {ratio:13.3f}")
    print(f"Added by wandb ({name}): {100 * (ratio - 1):+.1f}% over both stages, {100 * worst:+.1f}% in the worse "
          f"stage ({'under' if worst < LIMIT else 'NOT under'} the {100 * LIMIT:.0f}% bound).")
    return worst


def main(argv=None) -> int:
    args = parse_args(argv)
    task_dir = ROOT / "example-data" / args.task
    task_flags = ["--prompt_file", str(task_dir / "prompt.md"), "--labels", str(task_dir / "labels.txt")]
    work = Path(tempfile.mkdtemp(prefix="wandb-overhead-"))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "offline", "WANDB_DIR": str(work / "wandb-runs"),
           "WANDB_DATA_DIR": str(work / "wandb-data"), "WANDB_CACHE_DIR": str(work / "wandb-cache"),
           "WANDB_SILENT": "true"}
    python = sys.executable
    times: dict[tuple[str, str], list[tuple[float, float]]] = {(stage, mode): [] for stage in ("label", "train") for mode in MODES}
    shared_data: Path | None = None
    print(f"wandb overhead: task {args.task}, model {args.model}, {args.max_samples or 'all'} sentences, "
          f"{args.epochs:g} epochs, {args.rounds} rounds, WANDB_MODE=offline, OMP_NUM_THREADS={env['OMP_NUM_THREADS']}")
    for round_number in range(args.rounds):
        order = MODES if round_number % 2 == 0 else MODES[::-1]
        for mode in order:
            run_dir = work / f"round{round_number}-{mode}"
            data = run_dir / "data" / "labels.jsonl"
            label = [python, str(ROOT / "create_data.py"), "--backend", "transformers", "--model_name", args.model,
                     *task_flags, "--input_file", str(task_dir / "sentences.txt"), "--output_file", str(data),
                     "--report_to", mode]
            if args.max_samples:
                label += ["--max_samples", str(args.max_samples)]
            wall, cpu = timed(label, env, ROOT)
            times[("label", mode)].append((wall, cpu))
            print(f"round {round_number + 1} label --report_to {mode:5}: {wall:7.1f} s wall, {cpu:7.1f} s CPU",
                  flush=True)
            shared_data = shared_data or data
            train = [python, str(ROOT / "train_sft_trl.py"), "--model_name", args.model, "--data_file",
                     str(shared_data), "--output_dir", str(run_dir / "adapter"), "--num_train_epochs", str(args.epochs),
                     "--learning_rate", "1e-3", "--per_device_train_batch_size", "8",
                     "--gradient_accumulation_steps", "1", "--save_strategy", "no", "--disable_tqdm", "true",
                     "--report_to", mode]
            wall, cpu = timed(train, env, ROOT)
            times[("train", mode)].append((wall, cpu))
            print(f"round {round_number + 1} train --report_to {mode:5}: {wall:7.1f} s wall, {cpu:7.1f} s CPU",
                  flush=True)
    print("")
    table(times, 0, "wall")
    print("")
    table(times, 1, "CPU")
    if args.keep:
        print(f"Runs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
