"""A fake GPU box for the dry run: a copy of the repository, stand-in programs on PATH, and the files that the
earlier stages of the pipeline would have written (not a test module).

The stand-ins: `python` (standin_python.py under the real interpreter), `nvidia-smi` (the machine's GPUs, as
`DRY_RUN_GPUS` H100s), `sbatch` (runs the job's first array task at once), `pip` and `wandb` (they only check their arguments), and a `vllm`
package that is importable but holds nothing (every engine stops before it is made).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

PYTHON = f"""#!/usr/bin/env bash
exec {sys.executable} {HERE / "standin_python.py"} "$@"
"""

NVIDIA_SMI = f"""#!{sys.executable}
import os, sys
count = int(os.environ.get("DRY_RUN_GPUS", "0"))
if count == 0:
    sys.exit("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")
visible = os.environ.get("CUDA_VISIBLE_DEVICES")
ids = [int(i) for i in visible.split(",") if i.strip()] if visible is not None else list(range(count))
fields = {{"index": None, "name": "NVIDIA H100 80GB HBM3", "memory.total": "81559 MiB", "driver_version": "580.95.05"}}
args = " ".join(sys.argv[1:])
if "-L" in sys.argv[1:]:
    for i in range(count):
        print(f"GPU {{i}}: {{fields['name']}} (UUID: GPU-dry-run-{{i}})")
elif "--query-gpu=" in args:
    asked = args.split("--query-gpu=")[1].split()[0].split(",")
    if "noheader" not in args:
        print(", ".join(asked))
    for i in ids:
        print(", ".join(str(i) if name == "index" else fields.get(name, "N/A") for name in asked))
else:
    print(f"dry-run nvidia-smi: {{count}} x {{fields['name']}}")
"""

# sbatch: runs the job at once, as the first task of its array, on the GPUs it asks per node, and answers like
# `sbatch --parsable` (a job id); a job that fails makes the submission fail, so the dry run sees it.
SBATCH = f"""#!{sys.executable}
import os, subprocess, sys
args = sys.argv[1:]
script = next(i for i, arg in enumerate(args) if arg.endswith(".sh"))
options, command = args[:script], args[script:]
value = lambda name, default=None: options[options.index(name) + 1] if name in options else default
env = dict(os.environ, SLURM_JOB_ID="4242")
if value("--array") is not None:
    env["SLURM_ARRAY_TASK_ID"] = "0"
if value("--gpus-per-node") is not None:
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(int(value("--gpus-per-node"))))
job = subprocess.run(["bash", *command], env=env, capture_output=True, text=True)
sys.stderr.write(job.stdout + job.stderr)
if job.returncode:
    sys.exit(job.returncode)
print("4242;dry-run")
"""

PIP = """#!/usr/bin/env bash
# pip install -r FILE: the file must exist (nothing is installed).
while (($#)); do
  if [ "$1" = "-r" ]; then [ -f "$2" ] || { echo "pip: no such file $2" >&2; exit 1; }; fi
  shift
done
"""

WANDB = """#!/usr/bin/env bash
[ "${1:-}" = "login" ] || { echo "wandb stand-in: only 'wandb login'" >&2; exit 1; }
"""

ACCELERATE = f"""#!/usr/bin/env bash
[ "${{1:-}}" = "launch" ] || {{ echo "accelerate stand-in: only 'accelerate launch'" >&2; exit 1; }}
shift
exec {sys.executable} {HERE / "standin_python.py"} -m accelerate.commands.launch "$@"
"""

STANDINS = {"python": PYTHON, "python3": PYTHON, "accelerate": ACCELERATE, "nvidia-smi": NVIDIA_SMI, "sbatch": SBATCH, "pip": PIP,
            "wandb": WANDB}


@dataclass
class World:
    root: Path  # the copy of the repository the commands run in
    env: dict

    def run(self, command: str, timeout: int = 300) -> subprocess.CompletedProcess:
        """Run one command. A stage's command finds no output of its own before it and leaves one after it (the
        dry run stopped it before it wrote anything), so the next stage finds what it would on the GPU box."""
        stages = [stage for stage in STAGES if any(script in command for script in stage.scripts)]
        for stage in stages:
            stage.remove(self.root, command)
        finished = subprocess.run(["bash", "-c", command], cwd=self.root, env=self.env, capture_output=True,
                                  text=True, timeout=timeout)
        for stage in stages:
            stage.seed(self.root, command)
        return finished

    def calls(self) -> list[dict]:
        """Every project script the stand-in python ran, in order: its argv and the wandb project it saw."""
        log = Path(self.env[ARGV_LOG])
        return [json.loads(line) for line in log.read_text("utf-8").splitlines()] if log.is_file() else []


def tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode()
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


def copy_repository(target: Path) -> Path:
    for name in tracked_files():
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, destination)
    return target


def standins(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in STANDINS.items():
        path = folder / name
        path.write_text(text)
        path.chmod(0o755)
    package = folder.parent / "site" / "vllm"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text('"""Stand-in: importable, holds nothing."""\n__version__ = "0.33.0"\n')
    return folder


# Input files that the documented examples name as the user's own.
EXAMPLE_INPUTS = ("my.txt", "queries.txt")


ADAPTER = "models/prompt_distillation_trl"
LABELS = "data/prompt_distillation_lang.jsonl"
ARGV_LOG = "DRY_RUN_ARGV_LOG"  # where the stand-in python records each script's argv (World.calls)
# The custom task the documented examples use, as its run is named there: its data and adapter are in the world
# from the start, like the default run's, for the commands that name it without labelling it first.
EXAMPLE_RUN = ("RUN_NAME=triage PROMPT_FILE=example-data/feedback_triage/prompt.md "
               "LABELS=example-data/feedback_triage/labels.txt")


def command_variable(command: str, name: str) -> str | None:
    """A ``NAME=value`` a command sets for the script it runs (``RUN_NAME=triage bash train_trl.sh``)."""
    found = re.search(rf"(?:^|\s){name}=(\S+)", command)
    return found.group(1) if found else None


def labels_path(command: str = "") -> str:
    run = command_variable(command, "RUN_NAME")
    return f"data/{run}.jsonl" if run else LABELS


def adapter_path(command: str = "") -> str:
    run = command_variable(command, "RUN_NAME")
    return f"models/{run}" if run else ADAPTER


def command_task(root: Path, command: str):
    """The task the command gives (PROMPT_FILE, LABELS) and the gold file of its sentences."""
    from prompt_distill.task import load_task

    prompt, labels = command_variable(command, "PROMPT_FILE"), command_variable(command, "LABELS")
    if labels is None:
        return load_task(), root / "example-data" / "multilingual.gold.tsv"
    task = load_task(prompt and str(root / prompt), str(root / labels))
    return task, (root / labels).parent / "sentences.gold.tsv"


def seed_labels(root: Path, command: str = "") -> None:
    """What stage 1 would have written: the teacher's labels (here the gold labels of example-data) and the run
    header with the task the command gave."""
    from prompt_distill.data import training_record
    from prompt_distill.task_source import TASK_KEY, task_entry

    for name in EXAMPLE_INPUTS:
        shutil.copy(root / "example-data" / "multilingual.txt", root / name)
    task, gold = command_task(root, command)
    lines = gold.read_text("utf-8").splitlines()
    output = root / labels_path(command)
    with output.open("w", encoding="utf-8") as handle:
        for line in lines:
            label, _, text = line.partition("\t")
            handle.write(json.dumps(training_record(text.strip(), label), ensure_ascii=False) + "\n")
    entry = task_entry(task) | {"prompt_file": command_variable(command, "PROMPT_FILE")}
    output.with_suffix(".run.json").write_text(json.dumps({
        "labels": list(task.labels), "task_fingerprint": task.fingerprint(), TASK_KEY: entry}))


def seed_adapter(root: Path, command: str = "") -> None:
    """What stage 2 would have written: the adapter's two JSON files, as train_sft_trl.py writes them (no
    weights: every command stops before loading them), with the task of its data's run header."""
    from prompt_distill.student.check import DEFAULT_BASE_MODEL
    from prompt_distill.task import language_task
    from prompt_distill.task_source import TASK_KEY, recorded_task, task_entry

    header = root / labels_path(command).replace(".jsonl", ".run.json")
    task = (recorded_task(None, None, json.loads(header.read_text("utf-8"))[TASK_KEY], str(header))
            if header.is_file() else language_task())
    adapter = root / adapter_path(command)
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "base_model_name_or_path": DEFAULT_BASE_MODEL, "r": 32, "lora_alpha": 16,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "target_parameters": ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"],
        "rank_pattern": {}, "alpha_pattern": {}}))
    (adapter / "run_record.json").write_text(json.dumps({
        "base_model": DEFAULT_BASE_MODEL, "base_model_resolved": DEFAULT_BASE_MODEL,
        "data_file": "./" + labels_path(command),
        "split": {"split": "train", "eval_fraction": 0.2, "split_seed": 0},
        "task": task_entry(task),
        "hyperparameters": {"max_length": 2048}, "student_framing": "user_only"}))


# The weights of the default teacher and student (Qwen3-30B-A3B: 30,532,122,624 bf16 parameters), as their
# safetensors index on the hub says; the memory planners read this index, never the weights.
HUB_MODELS = {"Qwen/Qwen3-30B-A3B-Thinking-2507": 61_064_245_248, "Qwen/Qwen3-30B-A3B-Instruct-2507": 61_064_245_248}


@dataclass(frozen=True)
class Stage:
    scripts: tuple[str, ...]  # a command that names one of these runs the stage
    output: Callable[[str], str]  # the command -> the stage's output (its RUN_NAME names it)
    seed: Callable[[Path, str], None]

    def remove(self, root: Path, command: str = "") -> None:
        target = root / self.output(command)
        if target.is_dir():
            shutil.rmtree(target)
        for path in target.parent.glob(target.stem + "*"):  # the JSONL's sidecar, run header and shards
            path.unlink() if path.is_file() else shutil.rmtree(path)


STAGES = (Stage(("create_data.py", "create_data_h100x8.sh", "create_data_slurm.sh"), labels_path, seed_labels),
          Stage(("train_trl.sh", "train_sft_trl.py"), adapter_path, seed_adapter))


def hub_cache(home: Path) -> Path:
    """A Hugging Face cache holding only each default model's model.safetensors.index.json."""
    for model, total in HUB_MODELS.items():
        repo = home / "hub" / f"models--{model.replace('/', '--')}"
        snapshot = repo / "snapshots" / ("0" * 40)
        snapshot.mkdir(parents=True)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("0" * 40)
        (snapshot / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}}))
    return home


def make_world(tmp: Path, gpus: int) -> World:
    root = copy_repository(tmp / "repo")
    bin_dir = standins(tmp / "bin")
    for command in ("", EXAMPLE_RUN):
        seed_labels(root, command)
        seed_adapter(root, command)
    env = {key: value for key, value in os.environ.items()
           if key not in ("CUDA_VISIBLE_DEVICES", "PYTHON", "PYTHONPATH", "VIRTUAL_ENV", "HF_HUB_CACHE")
           and not key.startswith(("SLURM_", "ACCELERATE_", "NUM_", "WORLD_SIZE", "RANK", "LOCAL_RANK"))}
    env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", DRY_RUN_GPUS=str(gpus), HF_HUB_OFFLINE="1",
               WANDB_MODE="offline", PYTHONPATH=f"{tmp / 'site'}:{root}", OMP_NUM_THREADS="1",
               PYTHONUNBUFFERED="1", HF_HOME=str(hub_cache(tmp / "hf-home")), **{ARGV_LOG: str(tmp / "argv.jsonl")})
    return World(root, env)
