"""train_sft_trl.py's training path on tiny models: flags and defaults, loss on the label only, the inference
prompt as a token prefix, length accounting, padding-free batches, data errors, outputs, resume, wandb offline."""

import hashlib
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from datasets import Dataset
from peft import PeftModel
from transformers import AutoModelForCausalLM, get_scheduler
from trl import SFTConfig, SFTTrainer
from trl.chat_template_utils import get_training_chat_template

from prompt_distill.data import DataError, split_of, training_record
from prompt_distill.models import load_causal_lm
from prompt_distill.student_framing import EMPTY_SYSTEM, USER_ONLY, choose_framing
from prompt_distill.task import Task, language_task
from prompt_distill.tracking import configure_wandb
from prompt_distill.training.config import ScriptArguments, TrainingError, parser
from prompt_distill.training.examples import tokenize_lengths
from prompt_distill.training.run import build_trainer, prepare_data, read_data, run_training
from tests.tiny_models import (
    ROOT,
    fast_config,
    gold_rows,
    qwen3_instruct_2507_template,
    save_model_dir,
    tiny_llama,
    tiny_qwen3_moe,
    tokenizer_with_template,
    write_fixture_jsonl,
)

END_OF_TURN = "<|im_end|>\n"  # both ChatML templates close the assistant turn this way
TEMPLATES = {"smollm2": None, "qwen3_instruct_2507": "qwen3"}


def template_tokenizer(smollm2_tokenizer, name):
    return tokenizer_with_template(smollm2_tokenizer, qwen3_instruct_2507_template() if TEMPLATES[name] else None)


# -- flags and defaults -----------------------------------------------------------------------------------
def test_defaults_are_the_reference_hyperparameters():
    script_args, config = parser().parse_args_and_config([])
    assert script_args.base_model == "Qwen/Qwen3-30B-A3B-Instruct-2507"
    assert script_args.data_file == "./data/prompt_distillation_lang.jsonl"
    assert (script_args.lora_r, script_args.lora_alpha, script_args.split) == (32, 16, "train")
    assert config.output_dir == "./models/prompt_distillation_trl"
    assert config.learning_rate == 2e-4
    assert config.lr_scheduler_type.value == "cosine_with_min_lr"
    assert config.lr_scheduler_kwargs == {"min_lr_rate": 0.1}
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps) == (4, 4)
    assert (config.max_length, config.num_train_epochs, config.warmup_steps) == (2048, 1.0, 0.03)
    assert config.gradient_checkpointing is True
    assert config.report_to == ["wandb"] and config.logging_steps == 1
    assert config.bf16 is (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    assert config.router_aux_loss_coef == 0.0


def test_warmup_fraction_and_min_lr_schedule():
    _, config = parser().parse_args_and_config([])
    steps = 200
    warmup = config.get_warmup_steps(steps)
    assert warmup == math.ceil(0.03 * steps)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.learning_rate)
    scheduler = get_scheduler(config.lr_scheduler_type, optimizer, num_warmup_steps=warmup,
                              num_training_steps=steps, scheduler_specific_kwargs=config.lr_scheduler_kwargs)
    rates = []
    for _ in range(steps):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates[0] == 0 and max(rates) == pytest.approx(config.learning_rate)
    assert rates.index(max(rates)) == warmup
    assert scheduler.get_last_lr()[0] == pytest.approx(0.1 * config.learning_rate)


def test_flags_override_defaults_and_other_schedules_drop_min_lr_rate():
    script_args, config = parser().parse_args_and_config([
        "--expert_lora_r", "32", "--split", "all", "--report_to", "none", "--lr_scheduler_type", "cosine",
        "--max_length", "512", "--no_padding_free",
    ])
    assert (script_args.expert_lora_r, script_args.split) == (32, "all")
    assert config.report_to == []
    assert config.lr_scheduler_kwargs == {}
    assert (config.max_length, config.padding_free) == (512, False)


# -- loss on the label only -------------------------------------------------------------------------------
def label_trainer(tokenizer, tmp_path, count=6, **config_overrides):
    data_file = write_fixture_jsonl(tmp_path / "train.jsonl", count)
    script_args = ScriptArguments(data_file=str(data_file), split="all")
    config = fast_config(tmp_path / "out", **{"padding_free": False, **config_overrides})
    data = prepare_data(script_args, config, tokenizer)
    return build_trainer(script_args, config, tokenizer, data, model=tiny_llama(len(tokenizer)))


@pytest.mark.parametrize("template", TEMPLATES)
def test_loss_only_on_the_label_and_end_of_turn(template, smollm2_tokenizer, tmp_path):
    tokenizer = template_tokenizer(smollm2_tokenizer, template)
    trainer = label_trainer(tokenizer, tmp_path)
    rows = gold_rows(4)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
    for row, (text, label) in enumerate(rows):
        ids, labels = batch["input_ids"][row], batch["labels"][row]
        real = int(batch["attention_mask"][row].sum())
        trained = (labels != -100).nonzero().flatten().tolist()
        assert tokenizer.decode(ids[trained]) == label + END_OF_TURN
        assert trained == list(range(real - len(trained), real)), "label tokens must end the real sequence"
        assert text in tokenizer.decode(ids[:real]), "the user text is in the input ..."
        assert text not in tokenizer.decode(ids[trained]), "... but not in the loss"


def test_label_mask_matches_trl_assistant_mask_for_qwen3_instruct_2507(smollm2_tokenizer, tmp_path):
    """TRL recognises this template byte for byte and has a {% generation %} version of it: both routes agree."""
    tokenizer = template_tokenizer(smollm2_tokenizer, "qwen3_instruct_2507")
    training_template = get_training_chat_template(tokenizer)
    assert training_template is not None
    trainer = label_trainer(tokenizer, tmp_path)
    for index, (text, label) in enumerate(gold_rows(4)):
        example = trainer.train_dataset[index]
        messages = Task.student_messages(text, USER_ONLY) + [{"role": "assistant", "content": label}]
        reference = tokenizer.apply_chat_template(messages, chat_template=training_template, tokenize=True,
                                                  return_dict=True, return_assistant_tokens_mask=True)
        assert reference["input_ids"] == example["input_ids"]
        assert reference["assistant_masks"] == [int(value != -100) for value in example["labels"]]


def test_plain_messages_dataset_would_train_on_the_user_text(smollm2_tokenizer, tmp_path):
    """The TRL default this project avoids: a `messages` dataset gets loss on every token, user text included."""
    text, label = gold_rows(1)[0]
    dataset = Dataset.from_list([training_record(text, label)])
    args = SFTConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False, max_steps=1)
    trainer = SFTTrainer(model=tiny_llama(len(smollm2_tokenizer)), args=args, train_dataset=dataset,
                         processing_class=smollm2_tokenizer)
    example = trainer.train_dataset[0]
    trained = [token for token, mask in zip(example["input_ids"], example["labels"], strict=True) if mask != -100]
    assert len(trained) == len(example["input_ids"])
    assert text in smollm2_tokenizer.decode(trained)


@pytest.mark.parametrize("template", TEMPLATES)
def test_inference_prompt_is_an_exact_token_prefix_of_the_training_sequence(template, smollm2_tokenizer, tmp_path):
    tokenizer = template_tokenizer(smollm2_tokenizer, template)
    trainer = label_trainer(tokenizer, tmp_path)
    # The fewest framing tokens: SmolLM2's template would inject a default system turn, Qwen3's injects none.
    framing = {"smollm2": EMPTY_SYSTEM, "qwen3_instruct_2507": USER_ONLY}[template]
    assert choose_framing(tokenizer) == framing
    for index, (text, _label) in enumerate(gold_rows(6)):
        prompt = tokenizer.apply_chat_template(Task.student_messages(text, framing), add_generation_prompt=True,
                                               tokenize=True, return_dict=True)["input_ids"]
        example = trainer.train_dataset[index]
        assert example["input_ids"][: len(prompt)] == prompt
        assert set(example["labels"][: len(prompt)]) == {-100}
        assert example["labels"][len(prompt)] == example["input_ids"][len(prompt)]


def test_a_template_that_changes_the_prompt_is_refused(smollm2_tokenizer, tmp_path):
    """A template whose generation prompt differs from the rendered conversation would train a foreign context."""
    odd = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
           "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n\n</think>\n\n{% endif %}")
    tokenizer = tokenizer_with_template(smollm2_tokenizer, odd)
    data_file = write_fixture_jsonl(tmp_path / "train.jsonl", 3)
    script_args = ScriptArguments(data_file=str(data_file), split="all")
    with pytest.raises(DataError, match=r"train\.jsonl:1: .*not a prefix"):
        prepare_data(script_args, fast_config(tmp_path / "out"), tokenizer)


# -- lengths and padding-free -----------------------------------------------------------------------------
def test_examples_longer_than_max_length_are_dropped_counted_and_named(smollm2_tokenizer, tmp_path, capsys):
    data_file = write_fixture_jsonl(tmp_path / "train.jsonl", 12)
    script_args = ScriptArguments(data_file=str(data_file), split="all")
    selected = read_data(script_args).selected
    framing = choose_framing(smollm2_tokenizer)  # as prepare_data frames the prompts
    lengths = [item.total_tokens for item in tokenize_lengths(selected, smollm2_tokenizer, framing=framing)]
    max_length = sorted(lengths)[len(lengths) // 2]
    expected_lines = [example.line for example, length in zip(selected, lengths, strict=True) if length > max_length]
    assert expected_lines, "fixture needs examples on both sides of the limit"

    config = fast_config(tmp_path / "out", max_length=max_length, padding_free=False)
    data = prepare_data(script_args, config, smollm2_tokenizer)
    messages = capsys.readouterr().out.splitlines()
    assert [example.line for example in data.report.too_long] == expected_lines
    assert f"Dropped {len(expected_lines)} of 12 examples" in "\n".join(messages)
    trainer = build_trainer(script_args, config, smollm2_tokenizer, data, model=tiny_llama(len(smollm2_tokenizer)))
    assert len(trainer.train_dataset) == 12 - len(expected_lines)
    assert max(len(example["input_ids"]) for example in trainer.train_dataset) <= max_length


@pytest.mark.parametrize("make_model", [tiny_llama, tiny_qwen3_moe], ids=["llama", "qwen3_moe"])
def test_padding_free_batch_has_the_same_loss_as_a_padded_one(make_model, smollm2_tokenizer, tmp_path):
    """Padding-free is correct on CPU attention: sequences in one row do not attend to each other."""
    losses = {}
    for padding_free in (False, True):
        data_file = write_fixture_jsonl(tmp_path / f"train{padding_free}.jsonl", 4)
        script_args = ScriptArguments(data_file=str(data_file), split="all", expert_lora_r=2)
        config = fast_config(tmp_path / f"out{padding_free}", padding_free=padding_free)
        data = prepare_data(script_args, config, smollm2_tokenizer)
        trainer = build_trainer(script_args, config, smollm2_tokenizer, data, model=make_model(len(smollm2_tokenizer)))
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
        assert ("attention_mask" in batch) is not padding_free
        with torch.no_grad():
            losses[padding_free] = trainer.compute_loss(trainer.model, batch).item()
    assert losses[True] == pytest.approx(losses[False], abs=1e-5)


# -- data validation before any model ---------------------------------------------------------------------
GOOD = json.dumps(training_record("Ich bin gleich da.", "de"), ensure_ascii=False)
BAD_LINES = {
    "malformed JSON": ('{"messages": [', "not valid JSON"),
    "missing role": ('{"messages": [{"content": "hola"}, {"role": "assistant", "content": "es"}]}', "role"),
    "empty answer": (json.dumps(training_record("hola", " ")), "answer is empty"),
    "label outside the set": (json.dumps(training_record("hola", "xx")), "not a label"),
}


@pytest.mark.parametrize("case", BAD_LINES)
def test_bad_record_stops_with_file_and_line_before_loading_a_model(case, tmp_path):
    line, message = BAD_LINES[case]
    data_file = tmp_path / "train.jsonl"
    data_file.write_text(GOOD + "\n" + line + "\n", "utf-8")
    script_args = ScriptArguments(base_model="/nonexistent/model", data_file=str(data_file), split="all")
    with pytest.raises(DataError, match=rf"train\.jsonl:2: .*{message}"):
        run_training(script_args, fast_config(tmp_path / "out"))


def test_missing_data_file_is_one_clear_sentence(tmp_path):
    script_args = ScriptArguments(base_model="/nonexistent/model", data_file=str(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match=r"nope\.jsonl: file not found\.$"):
        run_training(script_args, fast_config(tmp_path / "out"))


def test_training_split_holds_out_the_eval_sentences(tmp_path):
    data_file = write_fixture_jsonl(tmp_path / "train.jsonl", 40)
    train = read_data(ScriptArguments(data_file=str(data_file), split="train", eval_fraction=0.3)).selected
    everything = read_data(ScriptArguments(data_file=str(data_file), split="all")).selected
    held_out = {example.text for example in everything} - {example.text for example in train}
    assert len(everything) == 40 and 0 < len(train) < 40
    assert held_out == {e.text for e in everything if split_of(e.text, 0.3, 0) == "eval"}


def test_a_split_without_examples_is_an_error(tmp_path):
    text = next(t for t, _ in gold_rows(50) if split_of(t, 0.5, 0) == "eval")
    data_file = tmp_path / "train.jsonl"
    data_file.write_text(json.dumps(training_record(text, "en"), ensure_ascii=False) + "\n", "utf-8")
    with pytest.raises(DataError, match="none of the 1 examples"):
        read_data(ScriptArguments(data_file=str(data_file), split="train", eval_fraction=0.5))


# -- a whole run: outputs, reload, merge, resume, wandb ----------------------------------------------------
@pytest.fixture
def tiny_base(tmp_path, smollm2_tokenizer):
    return save_model_dir(tiny_llama(len(smollm2_tokenizer)), smollm2_tokenizer, tmp_path / "base")


def test_run_writes_adapter_record_and_merged_model_that_reload_identically(tiny_base, tmp_path):
    data_file = write_fixture_jsonl(tmp_path / "train.jsonl", 16)
    out = tmp_path / "out"
    script_args = ScriptArguments(base_model=str(tiny_base), data_file=str(data_file), lora_r=4, merge=True)
    result = run_training(script_args, fast_config(out, max_steps=2))

    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "run_record.json"):
        assert (out / name).is_file(), name
    record = json.loads((out / "run_record.json").read_text("utf-8"))
    assert record == result.record
    assert record["base_model"] == str(tiny_base)
    assert record["data_sha256"] == hashlib.sha256(data_file.read_bytes()).hexdigest()
    assert record["wandb_group"] == data_file.stem  # the pipeline's group, which evaluate.py and benchmark.py join
    task = language_task()
    assert record["task"] == {"name": "language", "fingerprint": task.fingerprint(), "labels": list(task.labels),
                              "prompt_file": None, "prompt": task.system_prompt}
    expected_train = sum(split_of(text) == "train" for text, _ in gold_rows(16))
    assert record["split"]["examples_in_file"] == 16
    assert record["split"]["examples_trained"] == expected_train
    assert record["split"]["dropped_too_long"] == 0
    assert record["results"]["global_step"] == 2
    assert math.isfinite(record["results"]["final_train_loss"])
    assert record["results"]["train_tokens_per_second"] > 0

    # evaluate.py's side: the base named in the record + the adapter == the merged model == the trained weights
    inputs = torch.tensor([[1, 20, 300, 4000, 50, 6]])
    base = load_causal_lm(record["base_model"], device="cpu")
    with torch.no_grad():
        base_logits = base(input_ids=inputs).logits
        adapted = PeftModel.from_pretrained(base, str(out)).eval()(input_ids=inputs).logits
        merged = AutoModelForCausalLM.from_pretrained(out / "merged")(input_ids=inputs).logits
    assert not torch.allclose(adapted, base_logits, atol=1e-4)
    torch.testing.assert_close(adapted, merged, rtol=0, atol=1e-4)
    # The Trainer turns the KV cache off for training (TrainingArguments.use_cache); a served model needs it on.
    assert json.loads((out / "merged" / "config.json").read_text("utf-8"))["use_cache"] is True


def test_resume_from_the_last_checkpoint(tiny_base, tmp_path):
    data_file = write_fixture_jsonl(tmp_path / "train.jsonl", 16)
    out = tmp_path / "out"
    script_args = ScriptArguments(base_model=str(tiny_base), data_file=str(data_file), split="all", lora_r=4)
    with pytest.raises(TrainingError, match="no checkpoint"):
        run_training(script_args, fast_config(out, resume_from_checkpoint="last"))
    run_training(script_args, fast_config(out, max_steps=2, save_strategy="steps", save_steps=1))
    resumed = run_training(script_args, fast_config(out, max_steps=3, save_strategy="steps", save_steps=1,
                                                    resume_from_checkpoint="last"))
    assert resumed.record["results"]["resumed_from"].endswith("checkpoint-2")
    assert resumed.record["results"]["global_step"] == 3


@pytest.fixture
def no_wandb_login(monkeypatch, tmp_path):
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "netrc"
    empty.write_text("")
    monkeypatch.setenv("NETRC", str(empty))
    return empty


def test_wandb_without_login_logs_offline_for_real(no_wandb_login, tiny_base, tmp_path, capsys, monkeypatch):
    data_file = write_fixture_jsonl(tmp_path / "train.jsonl", 8)
    out = tmp_path / "out"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    script_args = ScriptArguments(base_model=str(tiny_base), data_file=str(data_file), split="all", lora_r=4)
    result = run_training(script_args, fast_config(out, max_steps=2, report_to="wandb"))
    lines = capsys.readouterr().out.splitlines()
    assert os.environ["WANDB_MODE"] == "offline"
    assert any("logging offline" in line for line in lines)
    run_dir = result.record["wandb_run_dir"]
    # ./wandb of the working folder, not the adapter folder: copying the adapter does not copy the logs.
    assert run_dir.startswith(str(work / "wandb" / "offline-run-"))
    assert list((work / "wandb").glob("offline-run-*/run-*.wandb")), "no offline run file written"
    assert not (out / "wandb").exists()


def test_wandb_goes_to_the_working_folder_or_wandb_dir_never_the_adapter(no_wandb_login, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert configure_wandb(["wandb"]).directory == str(tmp_path)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "logs"))
    settings = configure_wandb(["wandb"])
    assert settings.directory == str(tmp_path / "logs") and (tmp_path / "logs").is_dir()


def test_wandb_login_is_respected_and_none_disables(no_wandb_login, tmp_path):
    no_wandb_login.write_text("machine api.wandb.ai\n  login user\n  password " + "x" * 40 + "\n")
    settings = configure_wandb(["wandb"], tmp_path)
    assert settings.mode == "online" and "online" in settings.note
    assert "WANDB_MODE" not in os.environ
    assert configure_wandb([], tmp_path / "none") is None
    assert not (tmp_path / "none").exists()


# -- the script as a user runs it ----------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_on_the_embedded_model_overfits_and_the_reloaded_adapter_prefers_the_labels(tmp_path, smollm2_dir):
    data_file = write_fixture_jsonl(tmp_path / "train.jsonl", 4)
    out = tmp_path / "out"
    command = [
        sys.executable, str(ROOT / "train_sft_trl.py"), "--model_name", "smollm2-135m-instruct",
        "--data_file", str(data_file), "--output_dir", str(out), "--split", "all", "--report_to", "none",
        "--num_train_epochs", "5", "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1",
        "--learning_rate", "2e-3", "--warmup_steps", "0", "--save_strategy", "no", "--disable_tqdm", "true",
        "--gradient_checkpointing", "false",
    ]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "Adapter saved to" in finished.stdout
    record = json.loads((out / "run_record.json").read_text("utf-8"))
    losses = record["results"]["loss_history"]
    assert record["base_model"] == "smollm2-135m-instruct"
    assert record["student_framing"] == EMPTY_SYSTEM  # SmolLM2's template injects a system turn otherwise
    assert len(losses) == 5 and losses[-1] < 0.5 * losses[0], losses

    # Reloaded as evaluate.py would (base named in the record + adapter folder): the labels became likelier.
    from prompt_distill.models import load_tokenizer

    tokenizer = load_tokenizer(str(out))
    base = load_causal_lm(record["base_model"], device="cpu").eval()

    def label_log_prob(model, text, label):
        chat = Task.student_messages(text, record["student_framing"])
        prompt = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True,
                                               return_dict=True)["input_ids"]
        full = tokenizer.apply_chat_template(chat + [{"role": "assistant", "content": label}],
                                             tokenize=True, return_dict=True)["input_ids"]
        with torch.no_grad():
            log_probs = model(input_ids=torch.tensor([full])).logits[0].log_softmax(-1)
        return sum(log_probs[i - 1, full[i]].item() for i in range(len(prompt), len(full)))

    rows = gold_rows(4)
    before = [label_log_prob(base, text, label) for text, label in rows]
    adapted = PeftModel.from_pretrained(base, str(out)).eval()
    after = [label_log_prob(adapted, text, label) for text, label in rows]
    assert all(a > b + 1.0 for a, b in zip(after, before, strict=True)), (before, after)


@pytest.mark.slow
def test_gpu_smoke_script_dry_run_on_cpu(tmp_path, smollm2_dir):
    """The GPU smoke script's whole path except CUDA (it has its own check of bf16 weights on a GPU)."""
    command = [sys.executable, str(ROOT / "scripts" / "gpu_smoke.py"), "--device", "cpu", "--steps", "2",
               "--examples", "8", "--hidden_size", "64", "--experts", "4", "--workdir", str(tmp_path)]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "gpu_smoke: OK" in finished.stdout
    assert "step times (s):" in finished.stdout


def test_an_existing_adapter_is_not_replaced_unless_asked(tmp_path, capsys):
    """Refused before the data or the model is read: a finished adapter is replaced only on request."""
    import train_sft_trl
    from prompt_distill.training.run import check_output_dir

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}", "utf-8")
    code = train_sft_trl.main(["--model_name", "smollm2-135m-instruct", "--data_file", str(tmp_path / "absent.jsonl"),
                               "--output_dir", str(adapter), "--report_to", "none"])
    error = capsys.readouterr().err
    assert code == 2 and "already holds a trained adapter" in error and "--overwrite_output_dir" in error
    check_output_dir(adapter, overwrite=True, resume=None)
    check_output_dir(adapter, overwrite=False, resume=str(adapter / "checkpoint-2"))
    check_output_dir(tmp_path / "new", overwrite=False, resume=None)
    (tmp_path / "file").write_text("x", "utf-8")
    with pytest.raises(TrainingError, match="is a file"):
        check_output_dir(tmp_path / "file", overwrite=False, resume=None)


def test_the_printed_summary_rounds_the_loss_and_speed():
    from pathlib import Path

    from prompt_distill.training.record import format_summary

    record = {"results": {"final_train_loss": 10.934041023254395, "train_tokens_per_second": 12.891234,
                          "global_step": 4},
              "split": {"examples_trained": 8, "split": "train", "dropped_too_long": 0}}
    summary = format_summary(record, Path("out"))
    assert "final train loss 10.93, 12.89 train tokens/s" in summary


# -- warmup that covers every step (issue 12 item 11) -------------------------------------------------------
def test_warmup_that_covers_every_step_is_warned():
    from prompt_distill.training.run import training_steps, warmup_warning

    _, config = parser().parse_args_and_config(["--max_steps", "1"])
    steps = training_steps(config, examples=160)
    assert steps == 1
    warning = warmup_warning(config, steps)
    assert warning and "the only step runs at learning rate 0" in warning and "--warmup_steps 0" in warning
    _, config = parser().parse_args_and_config(["--max_steps", "1", "--warmup_steps", "0"])
    assert warmup_warning(config, 1) is None


def test_the_default_run_is_not_warned():
    from prompt_distill.training.run import training_steps, warmup_warning

    _, config = parser().parse_args_and_config([])
    # 160 examples / (4 per device x 4 accumulation) = 10 steps per epoch; warmup ceil(0.03 x 10) = 1 step
    assert training_steps(config, examples=160) == 10
    assert warmup_warning(config, 10) is None
    _, config = parser().parse_args_and_config(["--warmup_steps", "10"])
    assert "never reaches --learning_rate" in warmup_warning(config, 10)


@pytest.mark.parametrize("flag, expected", [("auto", EMPTY_SYSTEM), ("user_only", USER_ONLY),
                                            ("empty_system", EMPTY_SYSTEM)])
def test_student_framing_flag_sets_what_training_frames_and_records(smollm2_tokenizer, flag, expected):
    from prompt_distill.training.run import resolve_student_framing

    script_args = parser().parse_args_into_dataclasses(["--student_framing", flag, "--output_dir", "x"])[0]
    assert resolve_student_framing(script_args, smollm2_tokenizer) == expected


def test_student_framing_flag_refuses_an_unknown_framing():
    with pytest.raises(SystemExit):
        parser().parse_args_into_dataclasses(["--student_framing", "system_prompt"])
