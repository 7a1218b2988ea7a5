"""create_data_h100x8.sh splits the GPUs into groups of TP (one create_data.py per group) and refuses, before any
shard starts, a TP that does not divide the GPUs or GPU_GROUPS whose groups are not TP GPUs each.

The GPU world is faked at its edge: a stand-in `nvidia-smi` on PATH lists the GPUs, and a stand-in python records
each call with the CUDA_VISIBLE_DEVICES it was given.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PYTHON = """#!/usr/bin/env bash
echo "$CUDA_VISIBLE_DEVICES|$*" >> "{calls}"
"""

# As `nvidia-smi -L` prints them; a MIG line under a GPU is not a GPU of its own.
NVIDIA_SMI = """#!/usr/bin/env bash
[ "$1" = "-L" ] || exit 9
for ((i = 0; i < {count}; i++)); do
  echo "GPU $i: NVIDIA H100 80GB HBM3 (UUID: GPU-0000000$i)"
done
echo "  MIG 1g.10gb     Device  0: (UUID: MIG-00000000)"
"""

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process groups as on the GPU servers")


def run(tmp_path, *args, gpus=8, **settings):
    """(return code, stderr, [(CUDA_VISIBLE_DEVICES, argv) of each create_data.py call])."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    (folder / "python-stub").write_text(PYTHON.format(calls=tmp_path / "calls"))
    (folder / "nvidia-smi").write_text(NVIDIA_SMI.format(count=gpus))
    for stub in folder.iterdir():
        stub.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key not in ("CUDA_VISIBLE_DEVICES", "GPU_GROUPS", "TP")}
    env.update(PATH=f"{folder}:{os.environ['PATH']}", PYTHON=str(folder / "python-stub"), **settings)
    finished = subprocess.run(["bash", str(REPO / "create_data_h100x8.sh"), "--output_file",
                               str(tmp_path / "out.jsonl"), *args], env=env, capture_output=True, text=True,
                              timeout=30)
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    shards = [tuple(line.split("|", 1)) for line in calls if "create_data.py" in line]
    return finished.returncode, finished.stderr, sorted(shards)


@pytest.mark.parametrize(("gpus", "args", "settings", "expected"), [
    (8, [], {}, ["0,1,2,3", "4,5,6,7"]),  # the default TP=4
    (8, [], {"TP": "8"}, ["0,1,2,3,4,5,6,7"]),
    (8, ["--tensor_parallel_size", "8"], {}, ["0,1,2,3,4,5,6,7"]),
    (8, ["--tensor_parallel_size=2"], {}, ["0,1", "2,3", "4,5", "6,7"]),
    (1, [], {"TP": "1"}, ["0"]),
    (8, [], {"TP": "2", "CUDA_VISIBLE_DEVICES": "2,3,6,7"}, ["2,3", "6,7"]),  # the list given, not nvidia-smi's
    (8, [], {"TP": "1", "CUDA_VISIBLE_DEVICES": "5"}, ["5"]),
    (8, [], {"TP": "8", "GPU_GROUPS": "7,6,5,4,3,2,1,0"}, ["7,6,5,4,3,2,1,0"]),
])
def test_the_gpu_groups_follow_the_tensor_parallel_size(tmp_path, gpus, args, settings, expected):
    code, stderr, shards = run(tmp_path, *args, gpus=gpus, **settings)
    assert code == 0, stderr
    assert [group for group, _ in shards] == expected
    tp = str(len(expected[0].split(",")))
    assert all(f"--tensor_parallel_size {tp} " in argv for _, argv in shards)
    indices = sorted(int(argv.split("--shard_index ")[1].split()[0]) for _, argv in shards)
    assert indices == list(range(len(expected)))
    assert all(f"--num_shards {len(expected)}" in argv for _, argv in shards)


@pytest.mark.parametrize(("gpus", "args", "settings", "message"), [
    (8, [], {"TP": "3"}, "TP=3 does not divide the 8 GPUs"),
    (1, [], {}, "TP=4 does not divide the 1 GPUs"),  # the default TP=4 on a one-GPU machine
    (8, [], {"TP": "4", "CUDA_VISIBLE_DEVICES": "0,1"}, "TP=4 does not divide the 2 GPUs"),
    (8, [], {"TP": "1", "CUDA_VISIBLE_DEVICES": ""}, "no GPU found"),
    (0, [], {"TP": "1"}, "no GPU found"),
    (8, ["--tensor_parallel_size", "8"], {"GPU_GROUPS": "0,1,2,3 4,5,6,7"}, "has a group of 4 GPUs (0,1,2,3) but TP=8"),
    (8, [], {"TP": "2", "GPU_GROUPS": "0,1 2,3,4"}, "has a group of 3 GPUs (2,3,4) but TP=2"),
    (8, [], {"TP": "0"}, "must be a positive integer, got '0'"),
])
def test_a_tensor_parallel_size_that_does_not_fit_the_gpus_is_one_error_before_any_shard(tmp_path, gpus, args,
                                                                                        settings, message):
    code, stderr, shards = run(tmp_path, *args, gpus=gpus, **settings)
    assert code == 2 and shards == [], stderr
    assert stderr.count("error:") == 1 and stderr.startswith("error:") and message in stderr, stderr
    assert not (tmp_path / "calls").exists()


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has an nvidia-smi")
def test_without_nvidia_smi_the_eight_gpus_of_an_h100x8_are_assumed(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "python-stub").write_text(PYTHON.format(calls=tmp_path / "calls"))
    (folder / "python-stub").chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key not in ("CUDA_VISIBLE_DEVICES", "GPU_GROUPS", "TP")}
    env.update(PYTHON=str(folder / "python-stub"), TP="8")
    finished = subprocess.run(["bash", str(REPO / "create_data_h100x8.sh"), "--output_file",
                               str(tmp_path / "out.jsonl")], env=env, capture_output=True, text=True, timeout=30)
    assert finished.returncode == 0, finished.stderr
    assert "nvidia-smi not found: assuming GPUs 0-7" in finished.stdout
    assert [line.split("|")[0] for line in (tmp_path / "calls").read_text().splitlines()
            if "create_data.py" in line] == ["0,1,2,3,4,5,6,7"]
