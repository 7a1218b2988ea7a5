"""create_data.py's flags are the fields of one frozen CreateDataConfig (each flag written once, as in TRL)."""

import dataclasses

import pytest

import create_data
from prompt_distill.cli import make_parser, parse_config
from prompt_distill.labeling.config import CreateDataConfig
from prompt_distill.labeling.teacher_run import labeling_config


def test_every_flag_is_a_field_with_the_parsers_default():
    parsed = make_parser(CreateDataConfig).parse_args([])
    config = parse_config(CreateDataConfig, [])
    assert dataclasses.asdict(config) == vars(parsed)


def test_the_config_is_frozen_and_the_open_choices_are_settled_per_backend():
    config = parse_config(CreateDataConfig,
        ["--num_shards", "2", "--shard_index", "1", "--output_file", "out.jsonl", "--cut_thought_sampling", "same"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_tokens = 3
    on_vllm = labeling_config(config, "vllm")
    assert (on_vllm.constrained_answer, on_vllm.max_tokens, on_vllm.cut_thought_sampling) == (False, 4096, None)
    assert on_vllm.output_file != "out.jsonl" and on_vllm.shard_index == 1  # the shard's own output
    assert labeling_config(config, "transformers").constrained_answer is True


@pytest.mark.parametrize("flags, message", [
    (["--temperature", "-0.1"], "--temperature must be 0 or more (0 = greedy), got -0.1."),
    (["--top_p", "1.5"], "--top_p must be in (0, 1] (1 keeps every token), got 1.5."),
    (["--top_p", "0"], "--top_p must be in (0, 1] (1 keeps every token), got 0.0."),
    (["--tensor_parallel_size", "0"], "--tensor_parallel_size must be at least 1 (GPUs per vLLM engine), got 0."),
    (["--gpu_memory_utilization", "90"], "--gpu_memory_utilization must be in (0, 1], a share of each GPU's memory "
                                         "such as 0.9, got 90.0."),
    (["--gpu_memory_utilization", "0"], "--gpu_memory_utilization must be in (0, 1], a share of each GPU's memory "
                                        "such as 0.9, got 0.0."),
    (["--max_retries", "-1"], "--max_retries must be 0 or more (extra attempts for an unparseable answer), got -1."),
    (["--num_shards", "0"], "--num_shards must be at least 1, got 0."),
    (["--num_shards", "2", "--shard_index", "2"], "--shard_index must be in 0..1, got 2."),
    (["--shard_index", "-1"], "--shard_index must be in 0..0, got -1."),
])
def test_flag_values_are_refused_before_the_backend_is_chosen_or_anything_loads(flags, message, tmp_path,
                                                                                  monkeypatch, capsys):
    from prompt_distill.labeling import teacher_run
    from tests.test_user_files import one_error_line

    def refused(*args, **kwargs):
        raise AssertionError("the pre-flight checks come first")

    for name in ("choose_backend", "load_config", "load_tokenizer", "make_engine"):
        monkeypatch.setattr(teacher_run, name, refused, raising=False)
    output = tmp_path / "out" / "labels.jsonl"
    # The default 30B teacher with --backend auto, on this CPU machine: the flag is named, not the missing GPU.
    assert create_data.main(["--output_file", str(output), *flags]) == 2
    assert one_error_line(capsys) == f"error: {message}"
    assert not output.parent.exists()


def test_a_served_teacher_context_is_not_read_from_a_local_config():
    # The served model's name need not exist here (a hosted name, a --served-model-name): resuming an output with
    # too_long records must not try to load its config.
    from prompt_distill.labeling.teacher_run import context_tokens

    config = parse_config(CreateDataConfig, ["--backend", "openai", "--base_url", "http://127.0.0.1:9/v1",
                                             "--teacher_model", "served-name-that-exists-nowhere"])
    assert context_tokens(config, "openai") is None
