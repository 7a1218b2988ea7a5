#!/usr/bin/env python
"""Kill -9 the pipeline at random moments, let it finish, and check that nothing was lost or written twice.

Labelling: ``create_data.py`` (the embedded model, transformers backend) is started on one output again and
again and SIGKILLed (its whole process group): half the kills at a random moment of the start (model loading, the
first batch), the others a random fraction of a second after 1-8 more answers reached the disk (in generation,
or between the appends of a batch). Then the same command runs to the end. Checked: every selected sentence is in
the sidecar exactly once, every line of both JSONL files parses, and the training file is exactly the sidecar's
labelled records in input order.

Training (``--train_kills``): ``train_sft_trl.py`` is SIGKILLed after its first checkpoint, resumed with
``--resume_from_checkpoint last``, and must end at the planned global step with an adapter that loads.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/fault_injection.py              # 20 kills (a few minutes on 2 cores)
    OMP_NUM_THREADS=1 .venv/bin/python scripts/fault_injection.py --kills 3 --sentences 24 --train_kills 1
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prompt_distill.data import iter_jsonl  # noqa: E402

MODEL = "smollm2-135m-instruct"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs of create_data.py during one labelling run.")
    parser.add_argument("--sentences", type=int, default=160, help="Sentences of the example data to label.")
    parser.add_argument("--max_delay_s", type=float, default=15.0,
                        help="Longest wait before a kill at the start of a run (model loading: 5-15 s on 2 cores).")
    parser.add_argument("--train_kills", type=int, default=1, help="SIGKILLs of train_sft_trl.py after a checkpoint.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random delays.")
    parser.add_argument("--work_dir", default=None, help="Where the outputs go (default: a temporary folder).")
    return parser.parse_args(argv)


def start(command: list[str]) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def kill_group(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def finished_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def sidecar_records(path: Path) -> list[dict]:
    return [record for _, record in iter_jsonl(path)] if path.is_file() else []


def label_with_kills(args, work: Path, rng: random.Random) -> dict:
    sentences = work / "sentences.txt"
    lines = (ROOT / "example-data" / "multilingual.txt").read_text("utf-8").splitlines()[: args.sentences]
    sentences.write_text("".join(line + "\n" for line in lines), "utf-8")
    output = work / "labels.jsonl"
    sidecar = work / "labels.meta.jsonl"
    command = [sys.executable, str(ROOT / "create_data.py"), "--backend", "transformers", "--model_name", MODEL,
               "--input_file", str(sentences), "--output_file", str(output), "--batch_size", "4"]
    kills, finished_early = 0, 0
    while kills < args.kills:
        on_disk = finished_lines(sidecar)
        # Half the kills land at a random moment of the start (model loading, the first batch); the others once
        # 1-8 more sentences are on disk, plus up to a second (generation, or between a batch's appends).
        target = 0 if rng.random() < 0.5 else rng.randint(1, 8)
        process = start(command)
        began = time.monotonic()
        delay = rng.uniform(0.2, args.max_delay_s) if target == 0 else None
        while process.poll() is None:
            if delay is None and finished_lines(sidecar) >= on_disk + target:
                delay = time.monotonic() - began + rng.uniform(0.0, 1.0)
            if delay is not None and time.monotonic() - began >= delay:
                break
            time.sleep(0.02)
        if process.poll() is None:
            kill_group(process)
            kills += 1
            phase = "start" if target == 0 else f"after {target} more answers"
            print(f"kill {kills:2d}/{args.kills} at {time.monotonic() - began:5.1f} s ({phase}): "
                  f"{finished_lines(sidecar)} sentences on disk", flush=True)
            continue
        if process.returncode != 0:
            raise SystemExit(f"create_data.py failed (exit {process.returncode}):\n{process.stderr.read()[-3000:]}")
        finished_early += 1
        print("the run finished before its kill: the labelling is complete", flush=True)
        break
    final = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=3600,
                           env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if final.returncode != 0:
        raise SystemExit(f"the final create_data.py failed:\n{final.stderr[-3000:]}")

    records = sidecar_records(sidecar)  # a line that does not parse raises here, naming file and line
    indices = [record["index"] for record in records]
    duplicates = len(indices) - len(set(indices))
    lost = sorted(set(range(len(lines))) - set(indices))
    labelled = sorted((r for r in records if r["status"] == "labelled"), key=lambda record: record["index"])
    training = [record for _, record in iter_jsonl(output)]
    expected = [[record["text"], record["label"]] for record in labelled]
    actual = [[message["content"] for message in record["messages"]] for record in training]
    return {"kills": kills, "sentences": len(lines), "records": len(records), "duplicates": duplicates,
            "lost": len(lost), "training_matches_sidecar": actual == expected, "finished_early": finished_early}


def checkpoints(output_dir: Path) -> set[str]:
    return {path.parent.name for path in output_dir.glob("checkpoint-*/trainer_state.json")}


def train_with_kills(args, work: Path) -> dict:
    from tests.eval_helpers import gold_pairs, write_teacher_file

    data = write_teacher_file(work / "gold.jsonl", gold_pairs()[:48])
    output_dir = work / "adapter"
    steps = 6
    command = [sys.executable, str(ROOT / "train_sft_trl.py"), "--model_name", MODEL, "--data_file", str(data),
               "--output_dir", str(output_dir), "--max_steps", str(steps), "--save_steps", "2",
               "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1", "--report_to", "none"]
    kills = 0
    for _ in range(args.train_kills):
        process = start(command if kills == 0 else [*command, "--resume_from_checkpoint", "last"])
        deadline = time.monotonic() + 1800
        seen = checkpoints(output_dir)
        now = seen
        while process.poll() is None and time.monotonic() < deadline:
            now = checkpoints(output_dir)
            if len(now) > len(seen):  # a new checkpoint is complete (its trainer_state.json is written last)
                break
            time.sleep(0.2)
        if process.poll() is not None:
            break
        kill_group(process)
        kills += 1
        print(f"training kill {kills} after {', '.join(sorted(now))}", flush=True)
    resumed = subprocess.run([*command, "--resume_from_checkpoint", "last"], cwd=ROOT, capture_output=True,
                             text=True, timeout=3600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if resumed.returncode != 0:
        raise SystemExit(f"the resumed training failed:\n{resumed.stderr[-3000:]}")
    import json

    record = json.loads((output_dir / "run_record.json").read_text("utf-8"))
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from prompt_distill.models import resolve_model

    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(resolve_model(MODEL)), str(output_dir))
    return {"train_kills": kills, "global_step": record["results"]["global_step"], "planned_steps": steps,
            "resumed_from_printed": "Resuming from" in resumed.stdout + resumed.stderr}


def main(argv=None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="fault-injection-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    labelling = label_with_kills(args, work, rng)
    print(f"Labelling: {labelling['kills']} kills, {labelling['sentences']} sentences, {labelling['records']} "
          f"records, duplicates {labelling['duplicates']}, lost {labelling['lost']}, training file equals the "
          f"sidecar's labels: {labelling['training_matches_sidecar']}", flush=True)
    ok = labelling["duplicates"] == 0 and labelling["lost"] == 0 and labelling["training_matches_sidecar"]
    if args.train_kills:
        training = train_with_kills(args, work)
        print(f"Training: {training['train_kills']} kills after a checkpoint, resumed to global step "
              f"{training['global_step']} of {training['planned_steps']}; the adapter loads; the resumed run named "
              f"its checkpoint: {training['resumed_from_printed']}", flush=True)
        ok = ok and training["global_step"] == training["planned_steps"] and training["resumed_from_printed"]
    print(f"{'PASSED' if ok else 'FAILED'} in {time.perf_counter() - started:.0f} s (work folder {work})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
