#!/usr/bin/env python
"""The prepared GPU check: the project's GPU paths on one device, in a few minutes, with nothing downloaded.

Part A, a tiny Qwen3-MoE built in code (Qwen3-30B-A3B's module layout, a byte-level tokenizer with the
Qwen3-Instruct-2507 chat template): the teacher labels sentences with create_data.py's run (--backend
transformers; crash-safe files, and a rerun resumes), train_sft_trl.py's run_training trains a few bf16 steps with
gradient checkpointing, prompt_distill.Student reloads the adapter and its classify is compared with plain peft's
probabilities (within 1e-3). Prints step times, peak memory and tokens/s.

Part B, the real student architecture (Qwen3-30B-A3B-Instruct-2507's config, random bf16 weights made on the GPU):
the project's LoRA at the default ranks, a few training steps at the default batch on short language-ID-like
examples and one step of 4 x 2048 tokens (the memory budget's worst case), peak memory against
prompt_distill.training.memory_budget's prediction, step time, trained tokens/s, MFU, and a batch of classify
calls. On a card with more than 100 GiB also the reference's expert rank 32.

``--device cpu`` runs the same code with Part B shrunk (2 layers, 8 experts, hidden 64, fp32): the test suite's
dry run. Run it on a GPU machine with scripts/gpu_smoke.sh (it pins one GPU); see docs/gpu.md.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import torch  # noqa: E402
from gpu_smoke_parts import student_arch, tiny  # noqa: E402
from gpu_smoke_parts.common import Checks, banner  # noqa: E402

from prompt_distill.cli import setup_logging  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--parts", default="A,B", help="Which parts to run: A, B or A,B.")
    parser.add_argument("--workdir", default=None, help="Where the tiny model, labels and adapter go (default: a "
                        "fresh temporary folder).")
    part_a = parser.add_argument_group("part A (tiny Qwen3-MoE)")
    part_a.add_argument("--examples", type=int, default=16, help="Sentences the teacher labels and the student "
                        "trains on and classifies.")
    part_a.add_argument("--teacher_max_tokens", type=int, default=8, help="Tokens the teacher generates before its "
                        "constrained answer (random weights never write 'Final Answer:' on their own).")
    part_a.add_argument("--steps", type=int, default=8, help="Optimizer steps.")
    part_a.add_argument("--per_device_train_batch_size", type=int, default=4)
    part_a.add_argument("--hidden_size", type=int, default=512)
    part_a.add_argument("--layers", type=int, default=4)
    part_a.add_argument("--heads", type=int, default=8)
    part_a.add_argument("--kv_heads", type=int, default=2)
    part_a.add_argument("--experts", type=int, default=32)
    part_a.add_argument("--experts_per_token", type=int, default=4)
    part_a.add_argument("--moe_intermediate_size", type=int, default=256)
    part_a.add_argument("--expert_lora_r", type=int, default=8)
    part_a.add_argument("--padding_free", action=argparse.BooleanOptionalAction, default=True)
    student_arch.add_arguments(parser.add_argument_group("part B (the real student architecture)"))
    return parser


def check_device(device: str) -> str | None:
    """Why this device cannot run the smoke, or None."""
    if device == "cpu":
        return None
    if not torch.cuda.is_available():
        return "no CUDA device visible (use --device cpu for the dry run)."
    if torch.cuda.device_count() != 1:
        # Several visible GPUs: the Trainer would wrap the model in nn.DataParallel and multiply the batch.
        return (f"{torch.cuda.device_count()} GPUs visible (CUDA_VISIBLE_DEVICES="
                f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}); run it through scripts/gpu_smoke.sh, which "
                "pins one, or set CUDA_VISIBLE_DEVICES to one GPU.")
    return None


def header(device: str) -> None:
    import peft
    import transformers
    import trl

    print(f"gpu_smoke: torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
          f"trl {trl.__version__}, python {sys.version.split()[0]}")
    if device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        print(f"gpu_smoke: {torch.cuda.get_device_name()} ({properties.total_memory / 2**30:.1f} GiB, CUDA "
              f"{torch.version.cuda}), CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}, "
              f"1 process x 1 GPU", flush=True)
    else:
        print(f"gpu_smoke: CPU dry run ({torch.get_num_threads()} torch threads)", flush=True)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    parts = {part.strip().upper() for part in args.parts.split(",") if part.strip()}
    if not parts or parts - {"A", "B"}:
        print(f"gpu_smoke: --parts {args.parts!r}: name A, B or A,B.", file=sys.stderr)
        return 2
    refusal = check_device(args.device)
    if refusal:
        print(f"gpu_smoke: {refusal}", file=sys.stderr)
        return 2
    setup_logging()  # the library's [train] / [models] lines, as the scripts show them
    os.environ.setdefault("WANDB_MODE", "disabled")  # report_to none everywhere; nothing may reach wandb
    header(args.device)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gpu-smoke-"))
    workdir.mkdir(parents=True, exist_ok=True)
    checks = Checks()
    started = time.perf_counter()
    if "A" in parts:
        begun = time.perf_counter()
        tiny.run_part(args, workdir / "part-a", checks)
        print(f"[A] part A took {time.perf_counter() - begun:.1f} s", flush=True)
    if "B" in parts:
        begun = time.perf_counter()
        student_arch.run_part(args, workdir / "part-b", checks)
        print(f"[B] part B took {time.perf_counter() - begun:.1f} s", flush=True)
    banner(f"gpu_smoke: {len(checks.results)} checks, {time.perf_counter() - started:.0f} s in all (parts "
           f"{','.join(sorted(parts))}, {args.device})")
    if checks.passed:
        print("gpu_smoke: OK")
        return 0
    print(f"gpu_smoke: FAILED ({'; '.join(checks.failed())})")
    return 1


if __name__ == "__main__":
    sys.exit(main())
