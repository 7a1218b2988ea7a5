"""train_sft_trl.py under `accelerate launch` with two CPU processes (gloo): one adapter, one record, one log, each
example once per epoch, in the order and with the losses of a single process at the same effective batch.

accelerate 1.15's `--cpu --num_processes 2` starts a single process unless an mpirun hostfile is given, so the
test uses accelerate's torchrun launcher (`--multi_gpu`); on a machine without CUDA the trainer then joins the
processes into one gloo group (PromptDistillationConfig sets use_cpu when WORLD_SIZE > 1 and there is no CUDA).
"""

import json
import os
import re
import socket
import subprocess
import sys
from collections import Counter

import pytest

from prompt_distill.training.data_order import EpochPermutation, summarize_order
from tests.tiny_models import ROOT, save_model_dir, tiny_llama, write_fixture_jsonl

PER_DEVICE_BATCH = 2
PROCESSES = 2
EPOCHS = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def training_flags(base, data_file, output_dir, gradient_accumulation_steps):
    return [
        "--model_name", str(base), "--data_file", str(data_file), "--output_dir", str(output_dir),
        "--lora_r", "4", "--max_length", "256", "--learning_rate", "3e-2", "--warmup_steps", "0",
        "--num_train_epochs", str(EPOCHS), "--per_device_train_batch_size", str(PER_DEVICE_BATCH),
        "--gradient_accumulation_steps", str(gradient_accumulation_steps), "--save_strategy", "no",
        "--logging_steps", "1", "--disable_tqdm", "true", "--gradient_checkpointing", "false",
        "--report_to", "wandb",
    ]


def run(command, wandb_dir):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", WANDB_MODE="offline",
               TOKENIZERS_PARALLELISM="false", WANDB_DIR=str(wandb_dir))  # else ./wandb of the repository
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, (first_failure_lines(finished.stderr) + finished.stdout[-3000:]
                                      + finished.stderr[-5000:])
    return finished


def first_failure_lines(stderr: str) -> str:
    """What a dying process said before torchrun's summary buries it (a C++ terminate, a traceback's last line)."""
    said = [line for line in stderr.splitlines()
            if re.search(r"terminate called|what\(\)|Error|Exception|Aborted", line)
            and "torch.distributed.elastic" not in line]
    return "first failure lines:\n" + "\n".join(said[:20]) + "\n---\n"


@pytest.fixture(scope="module")
def fixture_files(tmp_path_factory, smollm2_tokenizer):
    folder = tmp_path_factory.mktemp("distributed")
    base = save_model_dir(tiny_llama(len(smollm2_tokenizer)), smollm2_tokenizer, folder / "base")
    # 17 sentences, 14 in the training split: not a multiple of 2 processes x 2 examples, so the last round of
    # every epoch is completed with filler rows, and the second process's last batch holds fillers only.
    data_file = write_fixture_jsonl(folder / "train.jsonl", 17)
    return folder, base, data_file


@pytest.fixture(scope="module")
def two_processes(fixture_files):
    folder, base, data_file = fixture_files
    output_dir = folder / "two-processes"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(PROCESSES),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), "train_sft_trl.py",
               *training_flags(base, data_file, output_dir, gradient_accumulation_steps=1),
               "--merge", "true"]  # the main process merges and saves after the process group is gone
    finished = run(command, folder / "logs-two")
    return finished, output_dir, json.loads((output_dir / "run_record.json").read_text("utf-8"))


@pytest.mark.slow
def test_two_processes_write_one_adapter_one_record_one_log_and_see_each_example_once(two_processes):
    finished, output_dir, record = two_processes
    distributed = record["distributed"]
    assert distributed["world_size"] == PROCESSES and distributed["distributed_type"] == "MULTI_CPU"
    assert distributed["examples_per_optimizer_step"] == PER_DEVICE_BATCH * PROCESSES

    # One adapter, one wandb run (offline), written by the main process only.
    assert sorted(path.name for path in output_dir.glob("adapter_*")) == ["adapter_config.json",
                                                                          "adapter_model.safetensors"]
    assert len(list((output_dir.parent / "logs-two" / "wandb").glob("offline-run-*"))) == 1
    assert not (output_dir / "wandb").exists()  # never inside the adapter folder
    assert record["wandb_run_dir"] is not None
    assert (output_dir / "merged" / "model.safetensors").is_file()

    # One copy of each line the script prints, and one loss line per optimizer step.
    ours = [line for line in finished.stdout.splitlines() if line.startswith(("[train]", "Adapter saved to"))]
    assert ours and not [line for line, count in Counter(ours).items() if count > 1], ours
    assert any("2 process(es) x 2 examples per device x 1 accumulation steps = 4 examples" in line for line in ours)
    loss_lines = re.findall(r"\{'loss': ", finished.stdout)
    assert len(loss_lines) == record["results"]["global_step"]

    # Each example of the training split once per epoch, none repeated to even out the last round.
    trained = record["split"]["examples_trained"]
    assert trained % (PER_DEVICE_BATCH * PROCESSES) != 0, "fixture: the filler rows must be needed"
    order = distributed["data_order"]
    assert order["epochs"] == list(range(EPOCHS))
    assert order["examples_seen_per_epoch"] == [trained] * EPOCHS
    assert order["distinct_examples_per_epoch"] == [trained] * EPOCHS
    assert all(fillers > 0 for fillers in order["filler_rows_per_epoch"])
    steps_per_epoch = -(-trained // (PER_DEVICE_BATCH * PROCESSES))
    assert record["results"]["global_step"] == steps_per_epoch * EPOCHS


@pytest.mark.slow
def test_two_processes_follow_the_single_process_order_and_loss_curve(two_processes, fixture_files):
    _, _, distributed_record = two_processes
    folder, base, data_file = fixture_files
    output_dir = folder / "one-process"
    # The same effective batch: 1 process x 2 examples x 2 accumulation steps.
    run([sys.executable, "train_sft_trl.py",
         *training_flags(base, data_file, output_dir, gradient_accumulation_steps=PROCESSES)], folder / "logs-one")
    single_record = json.loads((output_dir / "run_record.json").read_text("utf-8"))
    single, distributed = single_record["distributed"], distributed_record["distributed"]
    assert single["world_size"] == 1
    assert single["examples_per_optimizer_step"] == distributed["examples_per_optimizer_step"]
    assert single["data_order"]["order_sha256"] == distributed["data_order"]["order_sha256"]

    single_losses = single_record["results"]["loss_history"]
    distributed_losses = distributed_record["results"]["loss_history"]
    assert len(single_losses) == len(distributed_losses) == single_record["results"]["global_step"]
    assert single_losses[-1] < single_losses[0] - 0.3, "the fixture must show a falling curve"
    # Close step by step: all-reduced gradients and accumulated ones may round differently (on this CPU they
    # came out equal to the last printed digit).
    assert distributed_losses == pytest.approx(single_losses, rel=1e-3)


def test_epoch_permutation_pads_a_round_with_fillers_and_reshuffles_each_epoch():
    sampler = EpochPermutation(num_examples=7, filler_index=7, round_size=4, seed=3)
    first = list(sampler)
    assert len(first) == len(sampler) == 8 and first[-1] == 7 and sorted(first[:-1]) == list(range(7))
    assert list(sampler) == first, "the same epoch gives the same order on every process"
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_summary_interleaves_processes_into_the_shared_order():
    # Shared order [4, 0, 3, 1, 2, F, F, F] in batches of 2 over 2 processes: p0 gets batches 0 and 2, p1 1 and 3.
    filler = 5
    per_process = [[(0, [4, 0]), (0, [2, filler])], [(0, [3, 1]), (0, [filler, filler])]]
    summary = summarize_order(per_process, filler)
    single = summarize_order([[(0, [4, 0]), (0, [3, 1]), (0, [2, filler])]], filler)
    assert summary["examples_seen_per_epoch"] == [5] and summary["filler_rows_per_epoch"] == [3]
    assert summary["order_sha256"] == single["order_sha256"]
    swapped = summarize_order([per_process[1], per_process[0]], filler)
    assert swapped["order_sha256"] != single["order_sha256"]


def fsdp_plugin_as_launched(monkeypatch, processes=8):
    """accelerate's own FSDP plugin, built from the environment that `accelerate launch --config_file
    configs/accelerate_fsdp.yaml` gives each process (accelerate.utils.launch.prepare_multi_gpu_env)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(ROOT / "configs" / "accelerate_fsdp.yaml"),
                                               "--num_processes", str(processes), "train_sft_trl.py"])
    args, _, _ = _validate_launch_command(args)
    for name, value in prepare_multi_gpu_env(args).items():
        if name.startswith(("FSDP_", "ACCELERATE_")):
            monkeypatch.setenv(name, value)
    return FullyShardedDataParallelPlugin()


def test_fsdp_checkpoints_are_sharded_and_the_final_save_switches_to_a_full_state_dict(monkeypatch):
    """A 2-process FSDP run cannot happen on CPU (accelerate 1.15's AcceleratorState turns FSDP on only for
    multi-accelerator types, never MULTI_CPU): this checks the plugin the GPU processes get and the final switch."""
    from accelerate.utils.fsdp_utils import _prepare_sd_options
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType

    from prompt_distill.training.run import use_full_state_dict

    plugin = fsdp_plugin_as_launched(monkeypatch)
    assert plugin.fsdp_version == 2 and plugin.cpu_ram_efficient_loading
    # Checkpoints: each process writes its own slice (save_fsdp_model's SHARDED_STATE_DICT branch, DCP).
    assert plugin.state_dict_type == StateDictType.SHARDED_STATE_DICT
    assert not _prepare_sd_options(plugin).full_state_dict
    # The final save: Trainer.save_model writes under FSDP only with FULL_STATE_DICT, gathered on rank 0's CPU.
    assert use_full_state_dict(plugin) is True
    assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT
    assert isinstance(plugin.state_dict_config, FullStateDictConfig)
    assert plugin.state_dict_config.rank0_only and plugin.state_dict_config.offload_to_cpu
    options = _prepare_sd_options(plugin)
    assert options.full_state_dict and options.cpu_offload and options.broadcast_from_rank0
    assert use_full_state_dict(plugin) is False  # already full: nothing changes
