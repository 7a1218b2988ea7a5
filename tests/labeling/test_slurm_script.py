"""create_data_slurm.sh without Slurm: submit with a stand-in sbatch, then each array task and the merge run for
real on the embedded model (SLURM_ARRAY_TASK_ID set by hand), with a node failure resumed in between."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from prompt_distill.labeling.run_files import RunFiles
from prompt_distill.labeling.shards import shard_output_path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "create_data_slurm.sh"
SHORT_PROMPT = """Identify the language of the text. Labels: ar de el en es fr hi ru tr ur vi zh ot.
Reply with exactly one line: Final Answer: <label>
"""

# Records each call's arguments and the settings the jobs would inherit (one JSON object per line) and answers
# like `sbatch --parsable`: a job id.
SBATCH = """#!/usr/bin/env python3
import json, os, sys
settings = {{name: os.environ.get(name) for name in ("INPUT", "OUTPUT", "MODEL", "NUM_SHARDS", "TP",
                                                   "PROMPT_DISTILL_REPO")}}
with open({calls!r}, "a") as handle:
    handle.write(json.dumps({{"args": sys.argv[1:], "env": settings}}) + "\\n")
count = sum(1 for _ in open({calls!r}))
print(str(4241 + count) + ";cluster")
"""


def environment(tmp_path, **settings):
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("SLURM_") and key not in ("NUM_SHARDS", "TP", "OUTPUT", "INPUT", "MODEL",
                                                            "CUDA_VISIBLE_DEVICES", "EXTRA_SBATCH_ARGS")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", **settings)
    return env


def fake_sbatch(tmp_path) -> dict:
    folder = tmp_path / "bin"
    folder.mkdir()
    sbatch = folder / "sbatch"
    sbatch.write_text(SBATCH.format(calls=str(tmp_path / "sbatch-calls")))
    sbatch.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


def flag(args, name):
    return args[args.index(name) + 1]


def test_submit_makes_one_array_task_per_shard_and_a_merge_that_waits_for_all(tmp_path):
    env = environment(tmp_path, NUM_SHARDS="3", TP="4", MAX_PARALLEL="2", LOG_DIR=str(tmp_path / "logs"),
                      EXTRA_SBATCH_ARGS="--partition=gpu --time=1:00:00", **fake_sbatch(tmp_path))
    output = str(tmp_path / "data" / "x.jsonl")
    finished = subprocess.run(["bash", str(SCRIPT), "submit", "--output_file", output, "--max_samples", "100",
                               "--input_file=queries.txt"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    label, merge = [json.loads(line) for line in (tmp_path / "sbatch-calls").read_text().splitlines()]
    args = label["args"]
    assert flag(args, "--array") == "0-2%2" and flag(args, "--gpus-per-node") == "4"
    assert flag(args, "--export") == "ALL" and "--partition=gpu" in args and "--time=1:00:00" in args
    assert args[-4:] == [str(SCRIPT), "label", "--max_samples", "100"]
    assert flag(merge["args"], "--dependency") == "afterok:4242" and flag(merge["args"], "--kill-on-invalid-dep") == "yes"
    assert merge["args"][-2:] == [str(SCRIPT), "merge"] and "--gpus-per-node" not in merge["args"]
    # The files the merge job needs are settings that both jobs inherit, not flags of the labelling job alone.
    for call in (label, merge):
        assert call["env"] == {"INPUT": "queries.txt", "OUTPUT": output, "MODEL": "Qwen/Qwen3-30B-A3B-Thinking-2507",
                               "NUM_SHARDS": "3", "TP": "4", "PROMPT_DISTILL_REPO": str(REPO)}
    assert "array job 4242" in finished.stdout and "job 4243" in finished.stdout


@pytest.mark.parametrize("mode_and_flag", [["submit", "--num_shards", "2"], ["submit", "--shard_index=1"], ["label"],
                                           ["unknown"]])
def test_misuse_is_one_clear_error(tmp_path, mode_and_flag):
    env = environment(tmp_path, **fake_sbatch(tmp_path))
    finished = subprocess.run(["bash", str(SCRIPT), *mode_and_flag], env=env, cwd=tmp_path, capture_output=True,
                              text=True)
    assert finished.returncode == 2 and finished.stderr.startswith("error: ")
    assert not (tmp_path / "sbatch-calls").exists()


@pytest.mark.parametrize("gpu_option", ["--gpus-per-node=8", "--gpus=2", "-G", "--gres=gpu:h100:8", "--gres"])
def test_a_gpu_request_in_the_extra_sbatch_args_is_refused_in_favour_of_tp(tmp_path, gpu_option):
    env = environment(tmp_path, TP="4", EXTRA_SBATCH_ARGS=f"--partition=gpu {gpu_option}", **fake_sbatch(tmp_path))
    finished = subprocess.run(["bash", str(SCRIPT), "submit"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert finished.returncode == 2, finished.stderr
    assert finished.stderr.startswith("error: EXTRA_SBATCH_ARGS asks for GPUs") and "set TP instead" in finished.stderr
    assert not (tmp_path / "sbatch-calls").exists()


def stand_in_python(tmp_path):
    stub = tmp_path / "python-stub"
    calls = tmp_path / "calls"
    stub.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" > "{calls}"\n')
    stub.chmod(0o755)
    return str(stub)


def test_a_task_given_fewer_gpus_than_tp_stops_before_loading_the_model(tmp_path):
    env = environment(tmp_path, TP="4", SLURM_ARRAY_TASK_ID="0", CUDA_VISIBLE_DEVICES="0,1",
                      PYTHON=stand_in_python(tmp_path))
    finished = subprocess.run(["bash", str(SCRIPT), "label"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert finished.returncode == 2 and "error: this task has 2 GPU(s)" in finished.stderr and "TP=4" in finished.stderr
    assert not (tmp_path / "calls").exists()
    env.update(CUDA_VISIBLE_DEVICES="0,1,2,3")
    finished = subprocess.run(["bash", str(SCRIPT), "label"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert "--tensor_parallel_size 4 " in (tmp_path / "calls").read_text()


@pytest.mark.slow
def test_array_tasks_then_merge_equal_a_single_process_run_after_a_resumed_node_failure(tmp_path, smollm2_dir):
    sentences = (REPO / "example-data" / "multilingual.txt").read_text("utf-8").splitlines()[:6]
    (tmp_path / "in.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    (tmp_path / "prompt.md").write_text(SHORT_PROMPT, encoding="utf-8")
    flags = ["--backend", "transformers", "--prompt_file", str(tmp_path / "prompt.md"), "--batch_size", "3"]
    output = tmp_path / "shared" / "labels.jsonl"
    settings = dict(INPUT=str(tmp_path / "in.txt"), OUTPUT=str(output), MODEL="smollm2-135m-instruct",
                    NUM_SHARDS="2", TP="1", PYTHON=sys.executable)

    def job(mode, task=None):
        env = environment(tmp_path, **settings, **({"SLURM_ARRAY_TASK_ID": str(task)} if task is not None else {}))
        return subprocess.run(["bash", str(SCRIPT), mode, *(flags if mode == "label" else [])], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=600)

    for task in (0, 1):
        finished = job("label", task)
        assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-3000:]
    # The node of task 1 died while writing its last record: the sidecar ends in half a line.
    sidecar = RunFiles.for_output(shard_output_path(output, 1, 2)).sidecar
    content = sidecar.read_bytes()
    sidecar.write_bytes(content[: content.rstrip(b"\n").rfind(b"\n") + 20])
    refused = job("merge")
    assert refused.returncode == 2 and "shard 1 is incomplete" in refused.stderr
    # Resubmitted: the finished task has nothing to do, the failed one labels only what it lost.
    finished = job("label", 0)
    assert finished.returncode == 0 and re.search(r"Already done:\s+3\b", finished.stdout), finished.stdout[-2000:]
    finished = job("label", 1)
    assert finished.returncode == 0 and re.search(r"Already done:\s+2\b", finished.stdout), finished.stdout[-2000:]
    merged = job("merge")
    assert merged.returncode == 0, merged.stderr[-3000:]

    single_output = tmp_path / "single" / "labels.jsonl"
    single = subprocess.run([sys.executable, str(REPO / "create_data.py"), "--input_file", str(tmp_path / "in.txt"),
                             "--output_file", str(single_output), "--model_name", "smollm2-135m-instruct", *flags],
                            env=environment(tmp_path), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]

    def user_texts(path):
        return [json.loads(line)["messages"][0]["content"] for line in path.read_text("utf-8").splitlines()]

    merged_texts = user_texts(output)
    assert merged_texts == user_texts(single_output)
    assert sorted(merged_texts) == sorted(set(merged_texts)) and len(merged_texts) == len(sentences)
    merged_lines = [json.loads(line) for line in output.read_text("utf-8").splitlines()]
    single_lines = [json.loads(line) for line in single_output.read_text("utf-8").splitlines()]
    # the labels too: scoring is deterministic; the teacher's probabilities up to float noise (the shards batch
    # the sentences differently, and a padded batch sums in another order)
    assert [line["messages"] for line in merged_lines] == [line["messages"] for line in single_lines]
    for merged_line, single_line in zip(merged_lines, single_lines, strict=True):
        assert merged_line["teacher"]["distribution"] == pytest.approx(single_line["teacher"]["distribution"],
                                                                       abs=1e-4)
