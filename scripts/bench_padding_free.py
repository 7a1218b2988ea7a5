#!/usr/bin/env python
"""Train tokens/s with padded batches vs padding-free batches, side by side in one run (CPU by default).

Both modes train the same LoRA on the same examples in the same order through train_sft_trl.py's code path;
the rounds alternate between the modes so that a busy machine slows both alike. Tokens are real (non-padding)
tokens, as TRL counts them, so the ratio of the two rates is the speed-up.

    python scripts/bench_padding_free.py                       # embedded SmolLM2-135M, example data
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prompt_distill.data import read_gold, read_sentences, training_record, write_jsonl  # noqa: E402
from prompt_distill.models import DEFAULT_CPU_MODEL, load_causal_lm, load_tokenizer  # noqa: E402
from prompt_distill.task import language_task  # noqa: E402
from prompt_distill.training.config import PromptDistillationConfig, ScriptArguments  # noqa: E402
from prompt_distill.training.run import build_trainer, prepare_data, resolve_device  # noqa: E402
from prompt_distill.training.tracking import trained_tokens  # noqa: E402

MODES = {"padded": False, "padding-free": True}


def fixture(path: Path, sentences_file: Path, count: int) -> Path:
    gold = read_gold(sentences_file, language_task())
    if gold is None:
        raise SystemExit(f"{sentences_file}: needs a .gold.tsv beside it for the labels.")
    texts = [text for text in read_sentences(sentences_file).texts if text in gold][:count]
    write_jsonl(path, [training_record(text, gold[text]) for text in texts])
    return path


def padded_share(trainer, batch_size: int) -> float:
    """Share of padding in padded batches of this size, taking the examples in file order."""
    lengths = [len(example["input_ids"]) for example in trainer.train_dataset]
    real = padded = 0
    for start in range(0, len(lengths), batch_size):
        chunk = lengths[start:start + batch_size]
        real += sum(chunk)
        padded += max(chunk) * len(chunk)
    return 1 - real / padded


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_name", default=DEFAULT_CPU_MODEL)
    parser.add_argument("--input_file", default=str(ROOT / "example-data" / "multilingual.txt"))
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--per_device_train_batch_size", type=int, default=8)
    parser.add_argument("--max_steps", type=int, default=4, help="Optimizer steps per measurement.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating measurements per mode.")
    parser.add_argument("--use_cpu", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench-padding-free-"))
    data_file = fixture(workdir / "train.jsonl", Path(args.input_file), args.examples)
    tokenizer = load_tokenizer(args.model_name)
    trainers = {}
    for mode, padding_free in MODES.items():
        script_args = ScriptArguments(base_model=args.model_name, data_file=str(data_file), split="all")
        config = PromptDistillationConfig(
            output_dir=str(workdir / mode), report_to="none", save_strategy="no", max_steps=args.max_steps,
            per_device_train_batch_size=args.per_device_train_batch_size, gradient_accumulation_steps=1,
            padding_free=padding_free, use_cpu=args.use_cpu, disable_tqdm=True, logging_steps=1,
        )
        data = prepare_data(script_args, config, tokenizer)
        model = load_causal_lm(args.model_name, device=resolve_device(config))
        trainers[mode] = build_trainer(script_args, config, tokenizer, data, model=model)

    # One untimed step per mode first: the first step pays for allocations and kernel selection.
    for trainer in trainers.values():
        trainer.args.max_steps = 1
        trainer.train()
        trainer.args.max_steps = args.max_steps
    rates = {mode: [] for mode in MODES}
    counted = {mode: trained_tokens(trainer.state.log_history) for mode, trainer in trainers.items()}
    for round_index in range(args.rounds):
        # Alternate which mode goes first, so that a drift in machine load does not favour one of them.
        order = list(trainers.items()) if round_index % 2 == 0 else list(reversed(trainers.items()))
        for mode, trainer in order:
            started = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - started
            total = trained_tokens(trainer.state.log_history)
            tokens, counted[mode] = total - counted[mode], total
            rates[mode].append(tokens / seconds)
            print(f"round {round_index + 1} {mode:>12}: {tokens} tokens in {seconds:6.1f} s = "
                  f"{tokens / seconds:7.1f} tokens/s", flush=True)

    share = padded_share(trainers["padded"], args.per_device_train_batch_size)
    padded, free = (statistics.median(rates[mode]) for mode in MODES)
    print("=" * 72)
    print(f"{args.model_name}, {args.examples} examples, batch {args.per_device_train_batch_size}, "
          f"{args.max_steps} steps x {args.rounds} rounds, device {trainers['padded'].args.device}")
    print(f"padding in padded batches: {100 * share:.0f}% of the tokens processed")
    print(f"median train tokens/s: padded {padded:.1f}, padding-free {free:.1f} (x{free / padded:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
