"""benchmark.py's flags become one frozen BenchmarkConfig; a flag and a field can never drift apart silently."""

import argparse
import dataclasses

import pytest

import benchmark
from prompt_distill.benchmark.config import BenchmarkConfig


def parsed(*flags) -> argparse.Namespace:
    return benchmark.build_parser().parse_args(list(flags))


def test_every_flag_is_a_field_with_the_parsers_value():
    flags = parsed("--max_samples", "3", "--student_latency", "--tensor_parallel_size", "2")
    config = BenchmarkConfig.from_args(flags)
    assert dataclasses.asdict(config) == vars(flags)
    assert (config.num_samples, config.student_latency, config.tensor_parallel_size) == (3, True, 2)


def test_a_flag_without_a_field_is_named():
    with pytest.raises(TypeError, match=r"flags only \['new_flag'\], config only \[\]"):
        BenchmarkConfig.from_args(argparse.Namespace(**vars(parsed()), new_flag=1))


def test_a_field_without_a_flag_is_named():
    flags = vars(parsed())
    del flags["rounds"]
    with pytest.raises(TypeError, match=r"config only \['rounds'\]"):
        BenchmarkConfig.from_args(argparse.Namespace(**flags))


def test_the_config_is_frozen():
    config = BenchmarkConfig.from_args(parsed())
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rounds = 3
