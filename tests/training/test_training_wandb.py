"""Training in wandb (issue 22): the run's group, job type and config (the script's arguments, the data's sha256),
the dataset artifact as input, the adapter with run_record.json as the model artifact, the eval loss on held-out
examples; and a wandb that cannot start leaves the adapter and run_record.json intact. Offline runs read back with
wandb's own reader (tests/wandb_offline.py)."""

import json

import pytest

from prompt_distill.training.config import ScriptArguments
from prompt_distill.training.examples import file_sha256
from prompt_distill.training.run import run_training
from tests.tiny_models import fast_config, save_model_dir, tiny_llama, write_fixture_jsonl
from tests.wandb_offline import offline_runs


@pytest.fixture
def tiny_base(tmp_path, smollm2_tokenizer):
    return save_model_dir(tiny_llama(len(smollm2_tokenizer)), smollm2_tokenizer, tmp_path / "base")


def train(tmp_path, tiny_base, **overrides):
    data_file = write_fixture_jsonl(tmp_path / "labels.jsonl", 24)
    script_args = ScriptArguments(base_model=str(tiny_base), data_file=str(data_file), lora_r=4)
    config = fast_config(tmp_path / "adapter", max_steps=2, report_to="wandb", **overrides)
    return data_file, run_training(script_args, config)


def test_the_training_run_has_config_lineage_model_artifact_and_eval_loss(offline, tmp_path, tiny_base):
    data_file, result = train(tmp_path, tiny_base, eval_steps=1)
    (run,) = offline_runs(offline)
    assert (run.group, run.job_type, run.name) == ("labels", "train", "adapter")
    script = run.config["script"]
    assert script["data_file"] == str(data_file) and script["split"] == "train" and script["lora_r"] == 4
    assert "expert_lora_r" in script and "eval_loss_samples" in script
    assert run.config["data"]["sha256"] == file_sha256(data_file)
    assert run.config["learning_rate"] == 1e-2  # the Trainer's own config still comes in
    (used,) = run.used()
    assert (used["name"], used["type"]) == ("data-labels", "dataset")
    (model,) = run.logged()
    assert (model["name"], model["type"]) == ("adapter-adapter", "model")
    contents = {entry["path"] for entry in model["manifest"]["contents"]}
    # run_record.json is in the artifact: it was written before the artifact was logged
    assert {"run_record.json", "adapter_model.safetensors", "adapter_config.json"} <= contents
    eval_losses = run.metric("eval/loss")
    assert len(eval_losses) == 2 and all(loss > 0 for loss in eval_losses)  # every step (--eval_steps 1)
    assert run.summary["run_record/split/examples_in_file"] == 24
    assert result.record["wandb_run_dir"] == str(run.folder)


def test_a_run_shorter_than_eval_steps_still_gets_one_eval_loss_and_the_artifact_can_be_skipped(
        offline, tmp_path, tiny_base, monkeypatch):
    data_file = write_fixture_jsonl(tmp_path / "labels.jsonl", 24)
    script_args = ScriptArguments(base_model=str(tiny_base), data_file=str(data_file), lora_r=4,
                                  log_model_artifact=False)
    run_training(script_args, fast_config(tmp_path / "adapter", max_steps=2, report_to="wandb"))  # eval_steps 50
    (run,) = offline_runs(offline)
    assert len(run.metric("eval/loss")) == 1
    assert run.logged() == []


def test_a_wandb_that_cannot_start_still_writes_the_adapter_and_run_record(offline, tmp_path, tiny_base, monkeypatch,
                                                                         capsys):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setenv("WANDB_DIR", str(not_a_folder / "wandb"))  # cannot be created, even by root
    _, result = train(tmp_path, tiny_base)
    assert capsys.readouterr().out.count("wandb: could not start the train run") == 1
    adapter = tmp_path / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()
    assert json.loads((adapter / "run_record.json").read_text("utf-8")) == result.record
