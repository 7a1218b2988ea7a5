"""create_data.py as a user runs it: flags, clear errors, and a SIGKILL mid-run followed by a resume."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import create_data
from prompt_distill import engines
from prompt_distill.cli import parse_config
from prompt_distill.data import iter_jsonl, read_training_file
from prompt_distill.engines import make_engine, select_backend
from prompt_distill.labeling import teacher_run
from prompt_distill.labeling.config import CreateDataConfig
from prompt_distill.labeling.run import run_labeling
from prompt_distill.labeling.run_files import RunFiles
from prompt_distill.task import load_task
from tests.labeling.test_labeling import TASK, ScriptedEngine, make_config, write_input
from tests.test_user_files import one_error_line

REPO = Path(__file__).resolve().parents[2]
SHORT_PROMPT = """Identify the language of the text. Labels: ar de el en es fr hi ru tr ur vi zh ot.
Reply with exactly one line: Final Answer: <label>
"""


def test_a_missing_input_file_is_one_clear_error(tmp_path, capsys):
    code = create_data.main(["--backend", "transformers", "--input_file", str(tmp_path / "nope.txt"),
                             "--output_file", str(tmp_path / "out.jsonl")])
    assert code == 2
    assert f"{tmp_path / 'nope.txt'}: input file not found" in capsys.readouterr().err


def test_an_output_from_another_model_is_refused_before_any_model_loads(tmp_path, capsys):
    write_input(tmp_path / "in.txt")
    config = make_config(tmp_path)
    run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)
    code = create_data.main(["--backend", "transformers", "--model_name", "another/model",
                             "--input_file", config.input_file, "--output_file", config.output_file])
    error = capsys.readouterr().err
    assert code == 2 and "--teacher_model" in error and "--overwrite" in error


def test_counts_must_be_positive(tmp_path, capsys):
    assert create_data.main(["--max_samples", "0"]) == 2
    assert "--max_samples must be at least 1" in capsys.readouterr().err
    arguments = ["--backend", "transformers", "--input_file", str(tmp_path / "in.txt"), "--max_tokens", "0"]
    assert create_data.main([*arguments, "--constrained_answer", "off"]) == 2
    assert "--max_tokens 0" in capsys.readouterr().err


def test_backend_selection(monkeypatch):
    import importlib.util

    assert select_backend("transformers") == "transformers"
    with pytest.raises(ValueError, match="backend"):
        select_backend("tensorrt")
    with pytest.raises(ValueError, match="select_backend"):
        make_engine("auto", "m")
    # No GPU here: the GPU branch is reached by pretending one exists (and that vllm is installed and imports);
    # tests/engines/test_select_backend.py does it at torch's own CUDA entry points.
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "vllm" else real_find_spec(name))
    monkeypatch.setattr(engines.registry, "import_package", lambda package: ("0.33.0", None))
    assert select_backend("vllm") == "vllm"
    monkeypatch.setattr(engines.gpus, "cuda_device_count", lambda: 8)
    assert select_backend("auto") == "vllm"
    monkeypatch.setattr(engines.gpus, "cuda_device_count", lambda: 0)
    assert select_backend("auto") == "transformers"


def test_the_reference_flags_parse_with_their_defaults():
    args = parse_config(CreateDataConfig, [])
    assert (args.input_file, args.output_file) == ("./example-data/multilingual.txt", "./data/prompt_distillation_lang.jsonl")
    assert (args.teacher_model, args.temperature, args.max_retries) == ("Qwen/Qwen3-30B-A3B-Thinking-2507", 0.15, 3)
    options = teacher_run.engine_options(parse_config(
        CreateDataConfig, ["--tensor_parallel_size", "4", "--reasoning_parser", "none"]), "vllm")
    assert options["tensor_parallel_size"] == 4 and options["reasoning_parser"] is None


def sidecar_count(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_ends_with_every_sentence_exactly_once(tmp_path, smollm2_dir):
    sentences = (REPO / "example-data" / "multilingual.txt").read_text("utf-8").splitlines()[:20]
    (tmp_path / "in.txt").write_text("\n".join(sentences[:10] + [""] + sentences[10:]) + "\n", encoding="utf-8")
    (tmp_path / "prompt.md").write_text(SHORT_PROMPT, encoding="utf-8")
    output = tmp_path / "data" / "labels.jsonl"
    command = [
        sys.executable, str(REPO / "create_data.py"), "--backend", "transformers",
        "--model_name", "smollm2-135m-instruct", "--input_file", str(tmp_path / "in.txt"),
        "--output_file", str(output), "--prompt_file", str(tmp_path / "prompt.md"),
        "--max_tokens", "4", "--batch_size", "2", "--max_retries", "1",
    ]
    # One thread per process: the test machines have two shared cores, where two threads fight each other.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    files = RunFiles.for_output(output)

    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + 180
    while sidecar_count(files.sidecar) < 4 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = sidecar_count(files.sidecar)
    assert 4 <= done_before < 20, process.stdout.read().decode()[-2000:]

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert "Already done:" in rerun.stdout and "LABELLING SUMMARY" in rerun.stdout

    task = load_task(str(tmp_path / "prompt.md"))
    labelled = [text for text, _ in read_training_file(output, task)]
    unparseable = [r["text"] for _, r in iter_jsonl(files.sidecar) if r["status"] == "unparseable"]
    assert sorted(labelled + unparseable) == sorted(sentences)  # each once: none lost, none duplicated
    assert sorted(r["index"] for _, r in iter_jsonl(files.sidecar)) == list(range(20))


def wandb_offline_in(folder: Path, monkeypatch) -> Path:
    """wandb as a user without a login has it (offline runs), writing under ``folder``: a refused command must not
    start a run (its lines would bury the one error line, and an empty run would join the pipeline's group)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(folder))
    return folder / "wandb"


def test_an_output_path_that_cannot_be_written_fails_before_any_model_work(tmp_path, capsys, monkeypatch):
    runs = wandb_offline_in(tmp_path.parent / f"{tmp_path.name}-wandb", monkeypatch)
    write_input(tmp_path / "in.txt")
    (tmp_path / "a-file").write_text("x", "utf-8")
    (tmp_path / "a-folder").mkdir()
    for output, expected in ((tmp_path / "a-folder", "is a folder"), (tmp_path / "a-file" / "out.jsonl", "is a file")):
        code = create_data.main(["--backend", "transformers", "--model_name", "nobody/absent-model",
                                 "--input_file", str(tmp_path / "in.txt"), "--output_file", str(output)])
        error = capsys.readouterr().err
        assert code == 2 and error.startswith("error: --output_file") and expected in error, error
        assert error.count("\n") == 1  # one line, no traceback
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file", "a-folder", "in.txt"]  # nothing new
    assert not list((tmp_path / "a-folder").iterdir())
    assert not runs.exists()


def test_an_unavailable_teacher_is_one_line_and_leaves_no_file(tmp_path, capsys, monkeypatch):
    runs = wandb_offline_in(tmp_path.parent / f"{tmp_path.name}-wandb", monkeypatch)
    write_input(tmp_path / "in.txt")
    code = create_data.main(["--backend", "transformers", "--model_name", "nobody/missing-model",
                             "--input_file", str(tmp_path / "in.txt"), "--output_file", str(tmp_path / "out.jsonl")])
    error = capsys.readouterr().err
    assert code == 2 and error.startswith("error: model 'nobody/missing-model' is not available") and \
        error.count("\n") == 1, error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.txt"]
    assert not runs.exists()


def test_the_default_teacher_on_a_machine_without_cuda_is_refused_before_any_model_loads(tmp_path, capsys,
                                                                                         monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    write_input(tmp_path / "in.txt")

    def no_model(*args, **kwargs):
        raise AssertionError("nothing may load before the refusal")

    monkeypatch.setattr(engines, "make_engine", no_model)
    monkeypatch.setattr(teacher_run, "load_config", no_model)
    code = create_data.main(["--input_file", str(tmp_path / "in.txt"), "--output_file", str(tmp_path / "out.jsonl")])
    error = one_error_line(capsys)
    assert code == 2
    assert error == ("error: --backend auto found no CUDA GPU, so it would load Qwen/Qwen3-30B-A3B-Thinking-2507 with "
                     "transformers on the CPU. For the CPU demo pass --teacher_model smollm2-135m-instruct; to really run "
                     "this model on the CPU pass --backend transformers.")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.txt"]


@pytest.mark.slow
def test_a_line_too_long_for_the_teachers_context_is_reported_not_labelled(tmp_path):
    # 20,000 characters: a prompt of about 10,900 tokens with the default teacher prompt; SmolLM2 has 8,192.
    sentences = (REPO / "example-data" / "multilingual.txt").read_text("utf-8").splitlines()[:2]
    (tmp_path / "in.txt").write_text("\n".join([sentences[0], "word " * 4000, sentences[1]]) + "\n", "utf-8")
    output = tmp_path / "labels.jsonl"
    command = [sys.executable, str(REPO / "create_data.py"), "--backend", "transformers", "--model_name",
               "smollm2-135m-instruct", "--input_file", str(tmp_path / "in.txt"), "--output_file", str(output),
               "--max_tokens", "0"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Loading the teacher smollm2-135m-instruct with transformers on cpu." in run.stdout
    assert "1 too long for the context" in run.stdout and "> context 8,192" in run.stdout
    records = {record["line"]: record for _, record in iter_jsonl(RunFiles.for_output(output).sidecar)}
    assert records[2]["status"] == "too_long" and records[2]["prompt_tokens"] > 8192
    assert {records[1]["status"], records[3]["status"]} == {"labelled"}
    assert [json.loads(line)["messages"][0]["content"] for line in output.read_text("utf-8").splitlines()] == sentences

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert rerun.returncode == 0 and re.search(r"Already done:\s+3\b", rerun.stdout), rerun.stdout[-2000:]
    assert "Loading the teacher" not in rerun.stdout  # finished: not retried, no model loaded


def test_retry_unparseable_and_overwrite_are_exclusive(capsys):
    assert create_data.main(["--retry_unparseable", "--overwrite"]) == 2
    assert "--retry_unparseable redoes part of an existing output and --overwrite replaces it" in one_error_line(capsys)
