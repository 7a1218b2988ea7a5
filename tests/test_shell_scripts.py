"""Every shell script parses (bash -n) and passes shellcheck; train_trl.sh's process and batch arithmetic."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(path for path in REPO.rglob("*.sh") if not any(part.startswith(".") for part in
                                                                  path.relative_to(REPO).parts))

# Records its arguments (NUL-separated) and the GPUs it was given, so that the test sees each one exactly.
RECORDER = """#!/usr/bin/env bash
printf '%s\\0' "$@" > "{calls}"
printf '%s' "$CUDA_VISIBLE_DEVICES" > "{gpus}"
"""


def test_the_scripts_are_found():
    names = {path.relative_to(REPO).as_posix() for path in SCRIPTS}
    assert {"train_trl.sh", "create_data_h100x8.sh", "create_data_slurm.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.relative_to(REPO).as_posix())
def test_bash_parses_the_script(script):
    finished = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (apt-get install shellcheck)")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.relative_to(REPO).as_posix())
def test_shellcheck_passes(script):
    finished = subprocess.run(["shellcheck", "--shell=bash", str(script)], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stdout


def run_train_trl(tmp_path, *args, **env_overrides):
    stub = tmp_path / "python-stub"
    stub.write_text(RECORDER.format(calls=tmp_path / "calls", gpus=tmp_path / "gpus"))
    stub.chmod(0o755)
    env = dict(os.environ, PYTHON=str(stub), **env_overrides)
    for name in ("CUDA_VISIBLE_DEVICES", "GRADIENT_ACCUMULATION_STEPS", "NUM_GPUS", "NUM_MACHINES",
                 "ACCELERATE_CONFIG", "MAIN_PROCESS_IP", "PER_DEVICE_TRAIN_BATCH_SIZE", "GRADIENT_CHECKPOINTING"):
        if name not in env_overrides:
            env.pop(name, None)
    finished = subprocess.run(["bash", str(REPO / "train_trl.sh"), *args], env=env, capture_output=True, text=True)
    if finished.returncode != 0:
        return finished, None, None
    calls = (tmp_path / "calls").read_bytes().decode().split("\0")[:-1]
    return finished, calls, (tmp_path / "gpus").read_text()


def flag(args, name):
    return args[args.index(name) + 1]


def test_one_gpu_runs_python_directly_with_the_reference_batch(tmp_path):
    finished, args, gpus = run_train_trl(tmp_path, "--max_steps", "1")
    assert finished.returncode == 0, finished.stderr
    assert args[0] == "train_sft_trl.py" and gpus == "0"
    assert (flag(args, "--per_device_train_batch_size"), flag(args, "--gradient_accumulation_steps")) == ("4", "4")
    assert flag(args, "--gradient_checkpointing") == "true"


def test_several_gpus_go_through_accelerate_launch_with_the_same_examples_per_step(tmp_path):
    finished, args, gpus = run_train_trl(tmp_path, "--max_steps", "1", NUM_GPUS="2")
    assert finished.returncode == 0, finished.stderr
    script = args.index("train_sft_trl.py")
    launcher = args[:script]
    assert launcher[:2] == ["-m", "accelerate.commands.launch"] and "--multi_gpu" in launcher
    assert (flag(launcher, "--num_processes"), flag(launcher, "--num_machines")) == ("2", "1")
    assert gpus == "0,1"
    # 2 GPUs x 4 examples x 2 accumulation steps = the one-GPU run's 16 examples per optimizer step
    assert (flag(args, "--per_device_train_batch_size"), flag(args, "--gradient_accumulation_steps")) == ("4", "2")
    assert args[-2:] == ["--max_steps", "1"]
    assert "16 examples per optimizer step" in finished.stdout


def test_a_batch_that_cannot_keep_the_examples_per_step_is_refused(tmp_path):
    finished, _, _ = run_train_trl(tmp_path, NUM_GPUS="8", PER_DEVICE_TRAIN_BATCH_SIZE="4")
    assert finished.returncode == 2
    assert "EXAMPLES_PER_STEP=16 is not a multiple of PER_DEVICE_TRAIN_BATCH_SIZE=4 x 8 processes" in finished.stderr
    finished, args, _ = run_train_trl(tmp_path, NUM_GPUS="8", PER_DEVICE_TRAIN_BATCH_SIZE="2")
    assert finished.returncode == 0 and flag(args, "--gradient_accumulation_steps") == "1"
    finished, args, _ = run_train_trl(tmp_path, NUM_GPUS="8", GRADIENT_ACCUMULATION_STEPS="3")
    assert finished.returncode == 0 and flag(args, "--gradient_accumulation_steps") == "3"


def test_several_machines_need_the_main_address_and_pass_rank_and_port(tmp_path):
    finished, _, _ = run_train_trl(tmp_path, NUM_GPUS="8", NUM_MACHINES="2", PER_DEVICE_TRAIN_BATCH_SIZE="1")
    assert finished.returncode == 2 and "needs MAIN_PROCESS_IP" in finished.stderr
    finished, args, _ = run_train_trl(tmp_path, NUM_GPUS="8", NUM_MACHINES="2", PER_DEVICE_TRAIN_BATCH_SIZE="1",
                                      MACHINE_RANK="1", MAIN_PROCESS_IP="10.0.0.1")
    assert finished.returncode == 0, finished.stderr
    launcher = args[:args.index("train_sft_trl.py")]
    assert (flag(launcher, "--num_processes"), flag(launcher, "--machine_rank")) == ("16", "1")
    assert (flag(launcher, "--main_process_ip"), flag(launcher, "--main_process_port")) == ("10.0.0.1", "29500")


def test_an_fsdp_config_replaces_transformers_checkpointing_with_fsdp_s(tmp_path):
    finished, args, _ = run_train_trl(tmp_path, NUM_GPUS="4", ACCELERATE_CONFIG="configs/accelerate_fsdp.yaml")
    assert finished.returncode == 0, finished.stderr
    launcher = args[:args.index("train_sft_trl.py")]
    assert flag(launcher, "--config_file") == "configs/accelerate_fsdp.yaml" and "--multi_gpu" not in launcher
    assert flag(args, "--gradient_checkpointing") == "false"


def test_the_fsdp_config_is_valid_for_accelerate_and_names_the_student_s_layer():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType
    from transformers.models.qwen3_moe import modeling_qwen3_moe

    config = load_config_from_file(str(REPO / "configs" / "accelerate_fsdp.yaml"))  # unknown keys are an error
    assert config.distributed_type == DistributedType.FSDP
    fsdp = config.fsdp_config
    assert hasattr(modeling_qwen3_moe, fsdp["fsdp_transformer_layer_cls_to_wrap"])
    assert fsdp["fsdp_cpu_ram_efficient_loading"] and fsdp["fsdp_sync_module_states"]  # accelerate requires both
    assert fsdp["fsdp_state_dict_type"] == "SHARDED_STATE_DICT" and fsdp["fsdp_activation_checkpointing"] is True


# -- the run's name and task (issue 21, item 3): RUN_NAME, PROMPT_FILE, LABELS, MAX_TOKENS, WANDB_PROJECT ----------
# Appends one line per call: the wandb project it saw, then its arguments (NUL-separated).
APPENDING_RECORDER = """#!/usr/bin/env bash
{{ printf '%s\\0' "${{WANDB_PROJECT-unset}}" "$@"; printf '\\n'; }} >> "{calls}"
"""
TRIAGE_TASK = {"PROMPT_FILE": "example-data/feedback_triage/prompt.md",
               "LABELS": "example-data/feedback_triage/labels.txt"}
RUN_VARIABLES = ("RUN_NAME", "PROMPT_FILE", "LABELS", "MAX_TOKENS", "WANDB_PROJECT", "OUTPUT", "DATA_FILE",
                 "OUTPUT_DIR", "CUDA_VISIBLE_DEVICES", "NUM_GPUS", "GPU_GROUPS", "TP")


def run_recorded(tmp_path, script, *args, **variables):
    """The script with a recording python; [(WANDB_PROJECT, argv)] of each call, in order."""
    stub = tmp_path / "python-stub"
    stub.write_text(APPENDING_RECORDER.format(calls=tmp_path / "calls"))
    stub.chmod(0o755)
    (tmp_path / "calls").unlink(missing_ok=True)
    env = {key: value for key, value in os.environ.items() if key not in RUN_VARIABLES and not key.startswith("SLURM_")}
    env.update(PYTHON=str(stub), **variables)
    finished = subprocess.run(["bash", str(REPO / script), *args], env=env, capture_output=True, text=True,
                              cwd=tmp_path)
    lines = (tmp_path / "calls").read_bytes().decode().split("\0\n")[:-1] if (tmp_path / "calls").exists() else []
    return finished, [(line.split("\0")[0], line.split("\0")[1:]) for line in lines]


def flags_of(argv):
    return {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}


def test_train_trl_run_name_names_the_data_the_adapter_and_the_wandb_run(tmp_path):
    finished, calls = run_recorded(tmp_path, "train_trl.sh", RUN_NAME="triage", WANDB_PROJECT="triage")
    assert finished.returncode == 0, finished.stderr
    (project, argv), = calls
    flags = flags_of(argv)
    assert (flags["--data_file"], flags["--output_dir"], flags["--run_name"]) == (
        "./data/triage.jsonl", "./models/triage", "triage")
    assert project == "triage" and "--labels" not in flags and "--prompt_file" not in flags  # the run header's


def test_train_trl_without_the_variables_keeps_the_defaults_and_passes_a_task_when_given(tmp_path):
    finished, calls = run_recorded(tmp_path, "train_trl.sh")
    (project, argv), = calls
    flags = flags_of(argv)
    assert (flags["--data_file"], flags["--output_dir"]) == (
        "./data/prompt_distillation_lang.jsonl", "./models/prompt_distillation_trl")
    assert project == "unset" and "--run_name" not in flags and "--labels" not in flags
    finished, calls = run_recorded(tmp_path, "train_trl.sh", **TRIAGE_TASK)
    flags = flags_of(calls[0][1])
    assert (flags["--prompt_file"], flags["--labels"]) == (TRIAGE_TASK["PROMPT_FILE"], TRIAGE_TASK["LABELS"])


@pytest.mark.parametrize("script", ["train_trl.sh", "create_data_h100x8.sh", "create_data_slurm.sh"])
def test_a_run_name_that_is_a_path_is_refused(tmp_path, script):
    finished, calls = run_recorded(tmp_path, script, "submit", RUN_NAME="a/b")
    assert finished.returncode == 2 and "RUN_NAME must be a name" in finished.stderr and not calls


def test_create_data_h100x8_gives_every_shard_the_run_name_task_and_token_budget(tmp_path):
    finished, calls = run_recorded(tmp_path, "create_data_h100x8.sh", RUN_NAME="triage", MAX_TOKENS="8192",
                                   GPU_GROUPS="0 1", TP="1", **TRIAGE_TASK)
    assert finished.returncode == 0, finished.stderr
    shards = [flags_of(argv) for _, argv in calls if argv[0].endswith("create_data.py")]
    merge = [flags_of(argv) for _, argv in calls if argv[:2] == ["-m", "prompt_distill.labeling.shards"]]
    assert len(shards) == 2 and merge == [{"--output_file": "./data/triage.jsonl", "--num_shards": "2"}]
    for flags in shards:
        assert flags["--output_file"] == "./data/triage.jsonl" and flags["--max_tokens"] == "8192"
        assert (flags["--prompt_file"], flags["--labels"]) == (TRIAGE_TASK["PROMPT_FILE"], TRIAGE_TASK["LABELS"])
    finished, calls = run_recorded(tmp_path, "create_data_h100x8.sh", GPU_GROUPS="0", TP="1")
    flags = flags_of(calls[0][1])
    assert flags["--output_file"] == "./data/prompt_distillation_lang.jsonl"
    assert not {"--prompt_file", "--labels", "--max_tokens"} & set(flags)


def test_create_data_slurm_tasks_get_the_run_name_task_and_token_budget(tmp_path):
    finished, calls = run_recorded(tmp_path, "create_data_slurm.sh", "label", RUN_NAME="triage", MAX_TOKENS="8192",
                                   SLURM_ARRAY_TASK_ID="1", NUM_SHARDS="2", TP="1", **TRIAGE_TASK)
    assert finished.returncode == 0, finished.stderr
    (_, argv), = calls
    flags = flags_of(argv)
    assert (flags["--output_file"], flags["--shard_index"], flags["--max_tokens"]) == (
        "./data/triage.jsonl", "1", "8192")
    assert (flags["--prompt_file"], flags["--labels"]) == (TRIAGE_TASK["PROMPT_FILE"], TRIAGE_TASK["LABELS"])
