"""Adapters and data files for the evaluation tests (not a test module).

``make_adapter`` saves a real PEFT LoRA adapter of the embedded SmolLM2 (rank 2 on q_proj/v_proj, a second to
build) with a run_record.json carrying the keys train_sft_trl.py writes, so that evaluate.py loads and checks it
exactly as it loads a trained one.
"""

from __future__ import annotations

import json
from pathlib import Path

from prompt_distill.cli import parse_config
from prompt_distill.data import in_split, training_record
from prompt_distill.evaluation.config import EvaluationConfig
from prompt_distill.task import language_task

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "example-data" / "multilingual.txt"
EXAMPLE_GOLD = ROOT / "example-data" / "multilingual.gold.tsv"


def evaluation_config(*argv: str) -> EvaluationConfig:
    """The config evaluate.py builds from these flags (the defaults for the rest)."""
    return parse_config(EvaluationConfig, list(argv))


def gold_pairs() -> list[tuple[str, str]]:
    pairs = []
    for line in EXAMPLE_GOLD.read_text("utf-8").splitlines():
        label, _, text = line.partition("\t")
        pairs.append((text.strip(), label))
    return pairs


def write_teacher_file(path, pairs) -> Path:
    """create_data.py's JSONL format."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as handle:
        for text, label in pairs:
            handle.write(json.dumps(training_record(text, label), ensure_ascii=False) + "\n")
    return path


def write_test_file(folder, pairs, gold: bool = True) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sentences = folder / "sentences.txt"
    sentences.write_text("".join(text + "\n" for text, _ in pairs), "utf-8")
    if gold:
        (folder / "sentences.gold.tsv").write_text("".join(f"{label}\t{text}\n" for text, label in pairs), "utf-8")
    return sentences


def eval_split_pairs(pairs, eval_fraction=0.2, seed=0):
    return [(text, label) for text, label in pairs if in_split(text, "eval", eval_fraction, seed)]


def make_adapter(folder, base_dir, data_file=None, base_model="smollm2-135m-instruct", **record_overrides) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(str(folder))
    task = language_task()
    record = {
        "base_model": base_model,
        "base_model_resolved": str(base_dir),
        "data_file": str(data_file) if data_file else "./data/absent.jsonl",
        "split": {"split": "train", "eval_fraction": 0.2, "split_seed": 0},
        "task": {"name": task.name, "fingerprint": task.fingerprint(), "labels": list(task.labels)},
    }
    record.update(record_overrides)
    (folder / "run_record.json").write_text(json.dumps(record, indent=2), "utf-8")
    return folder
