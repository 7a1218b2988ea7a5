"""benchmark.py's flags are the fields of one frozen BenchmarkConfig, each written once (help and heading in its
metadata); --output_file given is kept as given, also with --student_latency."""

import dataclasses
import json

import pytest

import benchmark
from prompt_distill.benchmark.config import (
    DEFAULT_OUTPUT_FILE,
    STUDENT_LATENCY_OUTPUT_FILE,
    BenchmarkConfig,
)
from prompt_distill.cli import parse_config


def parsed(*flags) -> BenchmarkConfig:
    return parse_config(BenchmarkConfig, list(flags))


def test_every_flag_is_a_field_with_the_parsers_value():
    config = parsed("--max_samples", "3", "--student_latency", "--tensor_parallel_size", "2")
    assert (config.max_samples, config.student_latency, config.tensor_parallel_size) == (3, True, 2)
    assert (config.split, config.eval_fraction, config.split_seed) == ("eval", 0.2, 0)  # benchmark's split default


def test_every_field_is_a_flag_with_its_help_and_heading():
    for field in dataclasses.fields(BenchmarkConfig):
        assert field.metadata.get("help") and field.metadata.get("group"), field.name


def test_the_config_is_frozen():
    config = parsed()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rounds = 3


@pytest.mark.parametrize("flags, results_file", [
    ([], DEFAULT_OUTPUT_FILE),
    (["--student_latency"], STUDENT_LATENCY_OUTPUT_FILE),
    (["--output_file", "mine.json"], "mine.json"),
    (["--student_latency", "--output_file", "mine.json"], "mine.json"),
    # The benchmark's default path, given explicitly, is where --student_latency's results go (it was renamed).
    (["--student_latency", "--output_file", DEFAULT_OUTPUT_FILE], DEFAULT_OUTPUT_FILE),
    (["--student_latency", "--output_file", "none"], None),
    (["--output_file", "NONE"], None),
])
def test_the_results_file_is_the_one_given_else_the_modes_default(flags, results_file):
    assert parsed(*flags).results_file == results_file


def test_an_explicit_output_file_is_written_with_student_latency(tmp_path, monkeypatch, capsys):
    import prompt_distill.benchmark.run as benchmark_run

    monkeypatch.chdir(tmp_path)
    results = {"format": "prompt-distill-student-latency/1", "samples": 2}
    monkeypatch.setattr(benchmark_run, "measure_student_latency", lambda config: results)
    monkeypatch.setattr(benchmark_run, "format_latency", lambda found: "STUDENT LATENCY table")
    assert benchmark.main(["--student_latency", "--output_file", "./benchmark_results.json"]) == 0
    assert json.loads((tmp_path / "benchmark_results.json").read_text("utf-8")) == results
    assert not (tmp_path / "student_latency.json").exists()
    printed = capsys.readouterr().out
    assert printed.index("STUDENT LATENCY table") < printed.index("[latency] Results: ./benchmark_results.json")


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
