"""Ctrl-C (SIGINT to the process group, as a terminal sends it) ends each long-running script with one line."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.eval_helpers import EXAMPLE, gold_pairs, write_teacher_file
from tests.signals import default_sigint

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def interrupt_when(command: list[str], ready, timeout_s: float = 600) -> subprocess.CompletedProcess:
    process = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and not ready() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert process.poll() is None, "the script ended before it could be interrupted"
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def last_line(text: str) -> str:
    return [line for line in text.splitlines() if line.strip()][-1]


@pytest.mark.slow
def test_ctrl_c_while_labelling_says_what_is_saved_and_how_to_resume(tmp_path, smollm2_dir):
    sentences = tmp_path / "in.txt"
    sentences.write_text("".join(line + "\n" for line in EXAMPLE.read_text("utf-8").splitlines()[:64]), "utf-8")
    output = tmp_path / "out.jsonl"
    sidecar = tmp_path / "out.meta.jsonl"
    command = [sys.executable, str(ROOT / "create_data.py"), "--backend", "transformers", "--model_name",
               "smollm2-135m-instruct", "--input_file", str(sentences), "--output_file", str(output),
               "--batch_size", "4"]
    run = interrupt_when(command, lambda: sidecar.is_file() and sidecar.read_bytes().count(b"\n") >= 4)
    assert run.returncode == 130
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    saved = sidecar.read_bytes().count(b"\n")
    assert last_line(run.stderr) == (f"Interrupted: {saved} finished sentences are saved in {sidecar}. Run the same "
                                     "command again to resume where it stopped.")


@pytest.mark.slow
def test_ctrl_c_while_training_names_the_checkpoint_to_resume_from(tmp_path, smollm2_dir):
    data = write_teacher_file(tmp_path / "gold.jsonl", gold_pairs()[:64])
    output_dir = tmp_path / "adapter"
    command = [sys.executable, str(ROOT / "train_sft_trl.py"), "--model_name", "smollm2-135m-instruct",
               "--data_file", str(data), "--output_dir", str(output_dir), "--max_steps", "40", "--save_steps", "2",
               "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1", "--report_to", "none"]
    run = interrupt_when(command, lambda: any(output_dir.glob("checkpoint-*/trainer_state.json")))
    assert run.returncode == 130
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    assert last_line(run.stderr).startswith(f"Interrupted: the newest checkpoint is {output_dir}/checkpoint-")
    assert last_line(run.stderr).endswith("with --resume_from_checkpoint last to continue from it.")
