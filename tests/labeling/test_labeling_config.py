"""create_data.py's flags become one frozen CreateDataConfig; a flag and a field can never drift apart silently."""

import argparse
import dataclasses

import pytest

import create_data
from prompt_distill.labeling.config import CreateDataConfig
from prompt_distill.labeling.teacher_run import labeling_config


def test_every_flag_is_a_field_with_the_parsers_default():
    parsed = create_data.build_parser().parse_args([])
    config = CreateDataConfig.from_args(parsed)
    assert dataclasses.asdict(config) == vars(parsed)


def test_a_flag_without_a_field_is_named():
    parsed = argparse.Namespace(**vars(create_data.build_parser().parse_args([])), new_flag=1)
    with pytest.raises(TypeError, match=r"flags only \['new_flag'\]"):
        CreateDataConfig.from_args(parsed)


def test_a_field_without_a_flag_is_named():
    flags = vars(create_data.build_parser().parse_args([]))
    del flags["seed"]
    with pytest.raises(TypeError, match=r"config only \['seed'\]"):
        CreateDataConfig.from_args(argparse.Namespace(**flags))


def test_the_config_is_frozen_and_the_open_choices_are_settled_per_backend():
    config = CreateDataConfig.from_args(create_data.build_parser().parse_args(
        ["--num_shards", "2", "--shard_index", "1", "--output_file", "out.jsonl", "--cut_thought_sampling", "same"]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_tokens = 3
    on_vllm = labeling_config(config, "vllm")
    assert (on_vllm.constrained_answer, on_vllm.max_tokens, on_vllm.cut_thought_sampling) == (False, 4096, None)
    assert on_vllm.output_file != "out.jsonl" and on_vllm.shard_index == 1  # the shard's own output
    assert labeling_config(config, "transformers").constrained_answer is True
