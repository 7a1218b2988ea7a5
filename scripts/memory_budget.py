#!/usr/bin/env python
"""Print the GPU memory budget of LoRA-training Qwen3-30B-A3B-Instruct-2507 on one GPU.

Parameter counts are exact (the real model class on the meta device, real peft adapters); activations are an
estimate whose terms are listed in prompt_distill/training/memory_budget.py. Example:

    python scripts/memory_budget.py                      # the defaults of train_sft_trl.py
    python scripts/memory_budget.py --expert_lora_r 32   # the reference README's rank on every expert
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prompt_distill.training.config import DEFAULT_EXPERT_LORA_R  # noqa: E402
from prompt_distill.training.memory_budget import (  # noqa: E402
    H100_80GB_GIB,
    QWEN3_30B_A3B,
    RUNTIME_RESERVE_GIB,
    Shape,
    count_parameters,
    estimate,
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lora_r", type=int, default=32, help="Attention LoRA rank.")
    parser.add_argument("--lora_alpha", type=int, default=16)
    parser.add_argument("--expert_lora_r", type=int, default=DEFAULT_EXPERT_LORA_R, help="Per-expert LoRA rank.")
    parser.add_argument("--per_device_train_batch_size", type=int, default=4)
    parser.add_argument("--max_length", type=int, default=2048, help="Tokens per sequence (worst case).")
    parser.add_argument("--gpu_memory_gib", type=float, default=H100_80GB_GIB, help="Card capacity.")
    parser.add_argument("--reserve_gib", type=float, default=RUNTIME_RESERVE_GIB,
                        help="CUDA context and allocator reserve.")
    parser.add_argument("--compare_expert_ranks", default="0,8,16,32",
                        help="Also print the total for these expert ranks ('' to skip).")
    args = parser.parse_args(argv)

    config = QWEN3_30B_A3B
    print(f"Qwen3-30B-A3B: {config['num_hidden_layers']} layers, hidden {config['hidden_size']}, "
          f"{config['num_experts']} experts ({config['num_experts_per_tok']} active), moe_intermediate "
          f"{config['moe_intermediate_size']}, {config['num_attention_heads']} heads / "
          f"{config['num_key_value_heads']} KV heads x {config['head_dim']}, vocab {config['vocab_size']:,}")
    counts = count_parameters(config, args.lora_r, args.lora_alpha, args.expert_lora_r)
    print(f"LoRA r={args.lora_r} on q/k/v/o_proj ({counts.trainable_attention:,} params), r={args.expert_lora_r} "
          f"per expert on gate_up_proj/down_proj ({counts.trainable_experts:,} params), router frozen.")
    print(f"Batch {args.per_device_train_batch_size} x {args.max_length} tokens, gradient checkpointing, bf16 "
          "weights, fp32 adapter/optimizer:")
    shape = Shape.from_config(config, args.lora_r, args.expert_lora_r)
    budget = estimate(counts, shape, args.per_device_train_batch_size, args.max_length, reserve_gib=args.reserve_gib)
    print(budget.format(args.gpu_memory_gib))

    ranks = [int(item) for item in args.compare_expert_ranks.split(",") if item.strip()]
    if ranks:
        print(f"\nTotal by expert rank (attention r={args.lora_r}, same batch and length):")
        for rank in ranks:
            other = count_parameters(config, args.lora_r, args.lora_alpha, rank)
            total = estimate(other, Shape.from_config(config, args.lora_r, rank), args.per_device_train_batch_size,
                             args.max_length, reserve_gib=args.reserve_gib)
            verdict = "fits" if total.fits(args.gpu_memory_gib) else "does not fit"
            print(f"  --expert_lora_r {rank:>2}: {other.trainable:>13,} trainable, {total.total / 2**30:6.2f} GiB "
                  f"-> {verdict} in {args.gpu_memory_gib:.1f} GiB")
    return 0 if budget.fits(args.gpu_memory_gib) else 1


if __name__ == "__main__":
    sys.exit(main())
