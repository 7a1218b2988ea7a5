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


@pytest.mark.parametrize("flags, message", [
    (["--temperature", "-1"], "--temperature must be 0 or more (0 = greedy), got -1.0."),
    (["--gpu_memory_utilization", "1.2"], "--gpu_memory_utilization must be in (0, 1], a share of each GPU's memory "
                                          "such as 0.9, got 1.2."),
    (["--gpu_memory_utilization", "0"], "--gpu_memory_utilization must be in (0, 1], a share of each GPU's memory "
                                        "such as 0.9, got 0.0."),
])
def test_flag_values_are_refused_before_the_backend_is_chosen_or_anything_loads(flags, message, tmp_path,
                                                                                  monkeypatch, capsys):
    import prompt_distill.benchmark.run as benchmark_run
    from tests.test_user_files import one_error_line

    def refused(*args, **kwargs):
        raise AssertionError("the pre-flight checks come first")

    for name in ("choose_backend", "select_backend", "resolve_student", "resolve_model", "make_engine"):
        monkeypatch.setattr(benchmark_run, name, refused, raising=False)
    (tmp_path / "in.txt").write_text("Bonjour tout le monde\nHello world\n", encoding="utf-8")
    assert benchmark.main(["--test_file", str(tmp_path / "in.txt"), "--split", "all", "--num_samples", "2",
                           "--output_file", "none", *flags]) == 2
    assert one_error_line(capsys) == f"error: {message}"
