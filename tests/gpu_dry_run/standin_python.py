"""The `python` of the GPU dry run: the project's real argument parsing and pre-flight checks, no model.

The dry-run lane (test_gpu_commands.py) puts a `python` on PATH that runs this file with the real interpreter.
It fakes the GPU world only at its edge and stops each script at the first step that would load a model:

- the GPUs: ``prompt_distill.gpus.cuda_device_count`` answers from ``DRY_RUN_GPUS`` (the machine's GPUs) and
  ``CUDA_VISIBLE_DEVICES`` (this process's share), as NVML would, and the benchmark's memory planner sees that
  many H100 80GB (``prompt_distill.benchmark.memory.visible_gpus``);
- vLLM: a stand-in package is importable (the lane's environment puts it on PYTHONPATH);
- the stop: a model config, tokenizer or weights from the hub (``prompt_distill.models.hub_model``), an engine
  (``prompt_distill.engines.make_engine``) or the merge of shard outputs that a stopped labelling never wrote.
  The script then exits 0 with one ``dry-run:`` line; any pre-flight refusal before that exits as it would on
  the GPU box (2 with its ``error:`` line), which fails the test.

``python -m accelerate.commands.launch ARGS script.py FLAGS`` is parsed by accelerate's own launch parser and
validation; the environment accelerate would give each process is computed by accelerate's own
``prepare_multi_gpu_env``, and the script then runs once as the main process of that world.
"""

from __future__ import annotations

import importlib
import os
import runpy
import sys

STOPPED = "dry-run: stopped"  # every stop's line starts so (test_gpu_commands.py looks for it)


class DryRunStop(BaseException):  # not an Exception: no script's `except` may swallow it
    """Raised where the GPU box would start loading a model."""


def visible_gpus() -> int:
    machine = int(os.environ.get("DRY_RUN_GPUS", "0"))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return machine
    ids = [item.strip() for item in visible.split(",") if item.strip()]
    unknown = [item for item in ids if not item.isdigit() or int(item) >= machine]
    if unknown:  # NVML would not count a GPU the machine does not have
        raise SystemExit(f"dry-run: CUDA_VISIBLE_DEVICES={visible} names GPUs {unknown} this {machine}-GPU machine "
                         "does not have")
    return len(ids)


# What torch reports for an H100 80GB HBM3 (81,559 MiB), the card of the examples.
GPU_NAME = "NVIDIA H100 80GB HBM3"
GPU_BYTES = 81559 * 2**20


def stop(what: str):
    raise DryRunStop(what)


def install_edges() -> None:
    import contextlib

    import prompt_distill.gpus

    # The edges are module attributes: a module that imported one by name before the patch would keep the real one.
    early = sorted(name for name in sys.modules if name.startswith("prompt_distill.") and name != "prompt_distill.gpus")
    if early:
        raise SystemExit(f"dry-run: {early} were imported before the stand-in's edges (keep prompt_distill/__init__ lazy)")
    prompt_distill.gpus.cuda_device_count = visible_gpus  # first: every module that imports it must see this one
    import prompt_distill.engines
    import prompt_distill.models

    @contextlib.contextmanager
    def hub_model(name):
        stop(f"would load {name}")
        yield name

    prompt_distill.models.hub_model = hub_model
    prompt_distill.engines.make_engine = lambda backend, model, **kwargs: stop(
        f"would start the {backend} engine for {model} with {sorted(kwargs)}")
    import prompt_distill.benchmark.memory  # after the patches above: these modules must see them
    import prompt_distill.labeling.shards

    prompt_distill.benchmark.memory.visible_gpus = lambda: (
        prompt_distill.benchmark.memory.Gpus(visible_gpus(), GPU_BYTES, GPU_NAME) if visible_gpus() else None)

    prompt_distill.labeling.shards.merge_shards = lambda output_file, num_shards, **kwargs: stop(
        f"would merge {num_shards} shards into {output_file}")


def fake_process_group() -> None:
    """This process joins the launched world as one rank of torch's fake process group (a single process stands
    for all of them; collectives return at once), whatever backend the code asks for."""
    import torch.distributed as dist
    from torch.testing._internal.distributed.fake_pg import FakeStore

    real_init = dist.init_process_group

    def init_process_group(*args, **kwargs):
        return real_init("fake", store=FakeStore(), rank=int(os.environ["RANK"]),
                         world_size=int(os.environ["WORLD_SIZE"]))

    dist.init_process_group = init_process_group


def launch(argv: list[str]) -> list[str]:
    """accelerate's parsing, validation and per-process environment; returns the script's own argv."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_command_parser().parse_args(argv)
    args, _, _ = _validate_launch_command(args)
    per_machine = args.num_processes // args.num_machines
    if args.num_processes % args.num_machines or per_machine > visible_gpus():
        raise SystemExit(f"dry-run: accelerate launch --num_processes {args.num_processes} over "
                         f"{args.num_machines} machine(s) needs {per_machine} GPUs per machine; "
                         f"{visible_gpus()} are visible")
    env = prepare_multi_gpu_env(args)
    os.environ.update(env)
    fake_process_group()
    # What torchrun sets for the first process of this machine.
    first = args.machine_rank * per_machine
    os.environ.update(WORLD_SIZE=str(args.num_processes), RANK=str(first), LOCAL_RANK="0",
                      LOCAL_WORLD_SIZE=str(per_machine), MASTER_ADDR=args.main_process_ip or "127.0.0.1",
                      MASTER_PORT=str(args.main_process_port or 29500))
    print(f"dry-run: accelerate launch, {args.num_processes} processes on {args.num_machines} machine(s) "
          f"({'FSDP' if env.get('ACCELERATE_USE_FSDP') == 'true' else 'data parallel'}); running rank {first}",
          flush=True)
    return [args.training_script, *args.training_script_args]


def record_call(argv: list[str]) -> None:
    """One line per script run (world.World.calls): its argv and the wandb project in its environment."""
    log = os.environ.get("DRY_RUN_ARGV_LOG")
    if log:
        import json

        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"argv": argv, "WANDB_PROJECT": os.environ.get("WANDB_PROJECT")}) + "\n")


def main(argv: list[str]) -> int:
    if argv[:2] == ["-m", "accelerate.commands.launch"]:
        argv = launch(argv[2:])
    record_call(argv)
    install_edges()
    try:
        if argv[:1] == ["-m"]:
            # The module's main(), not a fresh copy of it: that copy would not see the stops installed above.
            sys.argv = [argv[1], *argv[2:]]
            sys.exit(importlib.import_module(argv[1]).main(argv[2:]))
        elif argv and argv[0].endswith(".py"):
            sys.argv = argv
            sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
            runpy.run_path(argv[0], run_name="__main__")
        else:
            raise SystemExit(f"dry-run: the stand-in python runs scripts and modules, not {argv}")
    except DryRunStop as stopped:
        print(f"{STOPPED} {os.path.basename(sys.argv[0])}: {stopped}", flush=True)
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
