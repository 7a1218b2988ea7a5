"""prompt_distill/cli.py and errors.py: the one parser, the one logging setup, the one error base."""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
from dataclasses import dataclass

import pytest

import prompt_distill
from prompt_distill.cli import flag, make_parser, parse_config, setup_logging
from prompt_distill.errors import PromptDistillError


@dataclass(frozen=True)
class Example:
    output_file: str = flag("out.jsonl", "Where it goes.", group="output")
    input_file: str = flag("in.txt", "Sentences.", group="data")
    temperature: float = flag(0.15, "Sampling temperature.", group="sampling")
    mode: str = flag("auto", "Which mode.", group="engine", choices=["auto", "on", "off"])
    overwrite: bool = flag(False, "Replace the output.", group="output")


def test_help_lists_each_group_under_its_heading_in_the_fixed_order():
    text = make_parser(Example).format_help()
    headings = [line.rstrip(":") for line in text.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headings == ["options", "data", "sampling", "engine", "output"]
    assert "--config FILE.yaml" in text and "--input-file" in text


def test_a_yaml_config_sets_flags_and_the_command_line_wins(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("temperature: 0.5\nmode: 'off'\ninput_file: a.txt\n")  # unquoted, YAML reads off as False
    config = parse_config(Example, ["--config", str(config_file), "--input_file", "b.txt", "--overwrite"])
    assert (config.temperature, config.mode, config.input_file, config.overwrite) == (0.5, "off", "b.txt", True)


def test_a_wrong_value_is_argparse_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_config(Example, ["--mode", "sometimes"])
    assert stopped.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def project_exception_classes():
    for module_info in pkgutil.walk_packages(prompt_distill.__path__, "prompt_distill."):
        module = importlib.import_module(module_info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.__name__:
                yield value


def test_every_error_the_project_defines_is_a_prompt_distill_error_or_an_interrupt():
    classes = list(project_exception_classes())
    assert len(classes) >= 10
    strays = [cls.__qualname__ for cls in classes
              if not issubclass(cls, (PromptDistillError, KeyboardInterrupt))]
    assert not strays, f"errors outside the PromptDistillError base: {strays}"


def test_log_lines_reach_stdout_on_the_main_process_only(capsys):
    logger = logging.getLogger("prompt_distill.labeling.example")
    setup_logging(main_process=False)
    logger.info("from rank 3")
    setup_logging(main_process=True)
    logger.info("from rank 0")
    assert capsys.readouterr().out == "from rank 0\n"


@pytest.mark.parametrize("script", ["create_data", "train_sft_trl", "evaluate", "benchmark", "predict"])
def test_every_script_refuses_a_mistyped_flag_and_an_unknown_yaml_key_in_one_line(script, tmp_path, capsys):
    main = importlib.import_module(script).main
    required = ["--model_path", "adapter"] if script == "predict" else []
    with pytest.raises(SystemExit) as stopped:
        main([*required, "--lerning_rate", "1e-4"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].endswith("unrecognized arguments: --lerning_rate 1e-4") and "Traceback" not in err
    config_file = tmp_path / "run.yaml"
    config_file.write_text("lerning_rate: 0.0001\n")
    with pytest.raises(SystemExit) as stopped:
        main([*required, "--config", str(config_file)])
    assert stopped.value.code == 2
    assert "lerning_rate" in capsys.readouterr().err.splitlines()[-1]
