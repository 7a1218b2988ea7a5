"""The dry-run lane: every documented GPU command runs as written on a fake 1-GPU or 8-GPU box and gets through
its argument parsing and pre-flight checks to the point where it would load a model (see standin_python.py).

A README or docs/ block, or a script header, whose command would be refused on the machine it is written for fails here,
with the command, its exit code and its output.
"""

from __future__ import annotations

import shutil

import pytest

from tests.gpu_dry_run.commands import HEADERS, Block, documented_blocks, header_commands, readme_blocks
from tests.gpu_dry_run.standin_python import STOPPED
from tests.gpu_dry_run.world import make_world

# The examples write to a cluster's shared filesystem; in the dry run it is a folder of the fake box.
SHARED_FILESYSTEM = "/shared/"
# The only documented commands that start no python of the project.
NO_PROJECT_PYTHON = ("pip install", "wandb login")


def run_block(block: Block, tmp_path) -> list[str]:
    world = make_world(tmp_path, block.gpus)
    (world.root / "shared-fs").mkdir()
    shutil.copy(world.root / "queries.txt", world.root / "shared-fs" / "queries.txt")
    failures = []
    for command in block.commands:
        finished = world.run(command.replace(SHARED_FILESYSTEM, "./shared-fs/"))
        output = finished.stdout + finished.stderr
        if finished.returncode != 0:
            failures.append(f"$ {command}\n(exit {finished.returncode})\n{output[-3000:]}")
        elif STOPPED not in output and not command.startswith(NO_PROJECT_PYTHON):
            failures.append(f"$ {command}\nexited 0 without reaching a model load:\n{output[-3000:]}")
    return failures


def test_the_readme_has_a_one_gpu_and_an_eight_gpu_block():
    assert {block.gpus for block in readme_blocks()} >= {1, 8}


@pytest.mark.parametrize("block", documented_blocks(), ids=lambda block: f"{block.source}-{block.gpus}gpu")
def test_documented_gpu_block_runs_on_its_machine(block, tmp_path):
    failures = run_block(block, tmp_path)
    assert not failures, f"{block.source} ({block.gpus} GPUs):\n\n" + "\n\n".join(failures)


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_script_header_examples_run_on_an_eight_gpu_box(name, tmp_path):
    block = header_commands(name)
    assert block.commands, f"{name}: no example commands found in its header"
    failures = run_block(block, tmp_path)
    assert not failures, f"{block.source}:\n\n" + "\n\n".join(failures)


def flag_values(argv: list[str]) -> dict[str, str]:
    return {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}


def test_the_run_variables_of_the_header_examples_reach_each_script(tmp_path):
    """RUN_NAME, PROMPT_FILE, LABELS and MAX_TOKENS reach create_data.py; RUN_NAME and WANDB_PROJECT reach
    train_sft_trl.py, which takes the task from the data's run header (issue 21, item 3)."""
    labelling = [command for command in header_commands("create_data_h100x8.sh").commands if "RUN_NAME=" in command]
    training = [command for command in header_commands("train_trl.sh").commands if "RUN_NAME=" in command]
    assert labelling and training
    world = make_world(tmp_path, 8)
    outputs = [world.run(command) for command in (labelling[0], training[0])]
    assert all(finished.returncode == 0 for finished in outputs), [f.stdout + f.stderr for f in outputs]
    calls = world.calls()
    shards = [flag_values(call["argv"]) for call in calls if call["argv"][0].endswith("create_data.py")]
    assert len(shards) == 2
    for flags in shards:
        assert flags["--output_file"] == "./data/triage.jsonl" and flags["--max_tokens"] == "8192"
        assert flags["--prompt_file"] == "example-data/feedback_triage/prompt.md"
        assert flags["--labels"] == "example-data/feedback_triage/labels.txt"
    trained = [call for call in calls if call["argv"][0].endswith("train_sft_trl.py")]
    assert len(trained) == 1 and trained[0]["WANDB_PROJECT"] == "triage"
    flags = flag_values(trained[0]["argv"])
    assert (flags["--data_file"], flags["--output_dir"], flags["--run_name"]) == (
        "./data/triage.jsonl", "./models/triage", "triage")
    assert "--labels" not in flags and "--prompt_file" not in flags
    assert "Task from data/triage.run.json: labels K,M,T, prompt example-data/feedback_triage/prompt.md" in outputs[1].stdout
