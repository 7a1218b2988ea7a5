"""evaluate.py's flags are EvaluationConfig's fields, written once: the parser offers exactly the fields, with their
defaults, and the config it returns is frozen."""

import dataclasses

import pytest

import evaluate
from prompt_distill.cli import parse_config
from prompt_distill.evaluation.config import EvaluationConfig
from tests.eval_helpers import evaluation_config


def test_every_flag_is_a_field_with_the_parsers_default():
    parser = evaluate.build_parser()
    flags = {action.dest: action.default for action in parser._actions if action.dest not in ("help", "config")}
    assert flags == dataclasses.asdict(EvaluationConfig())
    assert parse_config(EvaluationConfig, []) == EvaluationConfig()


def test_a_yaml_config_sets_the_flags(tmp_path):
    config_file = tmp_path / "evaluate.yaml"
    config_file.write_text("max_samples: 5\nanswer_mode: generate\n")
    config = evaluation_config("--config", str(config_file), "--max_samples", "7")
    assert (config.max_samples, config.answer_mode) == (7, "generate")


def test_the_config_is_frozen():
    config = evaluation_config("--answer_mode", "generate")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_tokens = 3
    assert config.answer_mode == "generate" and config.max_tokens is None


def test_an_unknown_flag_is_argparse_one_line_and_exit_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as stopped:
        evaluation_config("--max_sampels", "3")
    assert stopped.value.code == 2 and "unrecognized arguments: --max_sampels 3" in capsys.readouterr().err
    config_file = tmp_path / "evaluate.yaml"
    config_file.write_text("max_sampels: 3\n")
    with pytest.raises(SystemExit) as stopped:
        evaluation_config("--config", str(config_file))
    assert stopped.value.code == 2 and "--config: unknown flags --max_sampels 3" in capsys.readouterr().err
