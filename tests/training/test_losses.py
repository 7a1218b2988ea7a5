"""training/losses.py: the trainer takes its loss from the registry, and the default is TRL's own."""

import math

import pytest
import torch

from prompt_distill.training import losses
from prompt_distill.training.config import ScriptArguments
from prompt_distill.training.losses import DEFAULT_LOSS, UnknownLossError, loss_function
from prompt_distill.training.run import run_training
from tests.tiny_models import save_model_dir, tiny_llama
from tests.training.test_training import fast_config, write_fixture_jsonl


def test_the_default_loss_is_trl_own_and_an_unknown_name_is_refused():
    assert loss_function(DEFAULT_LOSS) is None  # SFTTrainer keeps its completion-only NLL
    with pytest.raises(UnknownLossError, match="known: completion_nll"):
        loss_function("focal")


def test_the_trainer_computes_its_loss_with_the_registered_function(monkeypatch, smollm2_tokenizer, tmp_path):
    calls = []

    def mean_nll(outputs, labels, num_items_in_batch=None):
        calls.append(num_items_in_batch)
        logits = outputs.logits[:, :-1].float()
        targets = labels[:, 1:]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                                                 ignore_index=-100)

    monkeypatch.setitem(losses.LOSSES, DEFAULT_LOSS, mean_nll)
    base = save_model_dir(tiny_llama(len(smollm2_tokenizer)), smollm2_tokenizer, tmp_path / "base")
    data_file = write_fixture_jsonl(tmp_path / "train.jsonl", 8)
    script_args = ScriptArguments(base_model=str(base), data_file=str(data_file), split="all", lora_r=4)
    result = run_training(script_args, fast_config(tmp_path / "out", max_steps=2))
    assert calls, "the registered loss was never called"
    assert math.isfinite(result.record["results"]["final_train_loss"])
