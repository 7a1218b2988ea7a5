"""evaluate.py's flags become one frozen EvaluationConfig; a flag and a field can never drift apart silently."""

import argparse
import dataclasses

import pytest

import evaluate
from prompt_distill.evaluation.config import EvaluationConfig
from tests.eval_helpers import evaluation_config


def test_every_flag_is_a_field_with_the_parsers_default():
    parsed = evaluate.build_parser().parse_args([])
    config = EvaluationConfig.from_args(parsed)
    assert dataclasses.asdict(config) == vars(parsed)


def test_a_flag_without_a_field_is_named():
    parsed = argparse.Namespace(**vars(evaluate.build_parser().parse_args([])), new_flag=1)
    with pytest.raises(TypeError, match=r"flags only \['new_flag'\]"):
        EvaluationConfig.from_args(parsed)


def test_the_config_is_frozen():
    config = evaluation_config("--answer_mode", "generate")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_tokens = 3
    assert config.answer_mode == "generate" and config.max_tokens is None
