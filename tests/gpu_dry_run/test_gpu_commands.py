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
