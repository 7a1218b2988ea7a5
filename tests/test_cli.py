"""prompt_distill/cli.py and errors.py: the one parser, the one logging setup, the one error base."""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
from dataclasses import dataclass

import pytest

import prompt_distill
from prompt_distill.cli import flag, make_parser, misplaced_flags_line, parse_config, setup_logging
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


# -- issue 21: one name per thing across scripts, old names as aliases; refusals in one line ------------------
@dataclass(frozen=True)
class Renamed:
    base_model: str = flag("base", "The model.", group="model", aliases=["--model_name"])
    temperature: float = flag(0.15, "Sampling temperature.", group="sampling")


@pytest.mark.parametrize("argv", [["--base_model", "m"], ["--base-model", "m"], ["--model_name", "m"],
                                  ["--model-name", "m"]])
def test_an_alias_sets_the_same_field_in_every_spelling(argv):
    assert parse_config(Renamed, argv).base_model == "m"


def test_an_alias_works_as_a_yaml_key_and_giving_both_is_refused(tmp_path, capsys):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("model_name: m\n")
    assert parse_config(Renamed, ["--config", str(config_file)]).base_model == "m"
    config_file.write_text("model_name: m\nbase_model: n\n")
    with pytest.raises(SystemExit) as stopped:
        parse_config(Renamed, ["--config", str(config_file)])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith("model_name and base_model are the same flag; give one.")


def test_the_flags_given_are_recorded_whatever_their_spelling_or_source(tmp_path):
    from prompt_distill.cli import given_flags

    config_file = tmp_path / "run.yaml"
    config_file.write_text("temperature: 0.15\n")  # given, though equal to the default
    config = parse_config(Renamed, ["--config", str(config_file), "--model-name", "base"])
    assert given_flags(config) == {"base_model", "temperature"}
    assert given_flags(Renamed(temperature=0.5)) == {"temperature"}  # built in code: what differs from defaults


@pytest.mark.parametrize("yaml_text, named", [("temperature: [1, 2]\n", "temperature: invalid float value: [1, 2]"),
                                              ("temperature: abc\n", "invalid float value: 'abc'"),
                                              ("mode: sometimes\n", "invalid choice")])
def test_a_yaml_value_of_the_wrong_type_is_one_line_and_exit_2(yaml_text, named, tmp_path, capsys):
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml_text)
    with pytest.raises(SystemExit) as stopped:
        parse_config(Example, ["--config", str(config_file)])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert named in err.splitlines()[-1] and "Traceback" not in err


def test_create_data_names_the_teacher_teacher_model_and_keeps_model_name():
    from prompt_distill.labeling.config import CreateDataConfig

    assert parse_config(CreateDataConfig, ["--teacher_model", "t"]).teacher_model == "t"
    assert parse_config(CreateDataConfig, ["--model_name", "t"]).teacher_model == "t"


@pytest.mark.parametrize("spelling", ["--base_model", "--model_name", "--model_name_or_path", "--model-name-or-path"])
def test_training_names_the_student_base_model_and_keeps_the_old_names(spelling):
    from prompt_distill.training.config import parse_job

    assert parse_job([spelling, "s"]).script.base_model == "s"


def test_training_reads_an_old_yaml_key_as_base_model(tmp_path):
    from prompt_distill.training.config import parse_job

    config_file = tmp_path / "train.yaml"
    config_file.write_text("model_name: s\nmax_steps: 2\n")
    job = parse_job(["--config", str(config_file)])
    assert (job.script.base_model, job.sft.max_steps) == ("s", 2)


def test_a_training_yaml_value_of_the_wrong_type_is_one_line(tmp_path, capsys):
    import train_sft_trl

    config_file = tmp_path / "train.yaml"
    config_file.write_text("max_steps: 1.5\n")
    with pytest.raises(SystemExit) as stopped:
        train_sft_trl.main(["--config", str(config_file)])
    assert stopped.value.code == 2
    assert "max_steps: invalid int value: 1.5" in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize("script", ["train_sft_trl", "evaluate", "benchmark"])
@pytest.mark.parametrize("value", ["1.5", "0", "-0.1"])
def test_eval_fraction_outside_0_1_is_one_line_and_exit_2(script, value, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written, wherever the script would write
    main = importlib.import_module(script).main
    assert main(["--eval_fraction", value]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"error: --eval_fraction must be between 0 and 1, the share of sentences "
                                           f"held out (e.g. 0.1), got {float(value)}.")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra, named", [
    (["--test_file", "other.txt"], "--test_file"),
    (["--max_samples", "5", "--answer_mode", "generate"], "--answer_mode, --max_samples"),
    (["--eval_fraction", "0.2", "--split_seed", "3"], "--eval_fraction, --split_seed"),
    (["--split", "eval", "--model_path", "adapter"], "--model_path, --split"),  # given, though --split is the default
    (["--backend", "transformers", "--batch_size", "4"], "--backend, --batch_size"),
])
def test_predictions_file_refuses_the_flags_that_rescoring_ignores(extra, named, tmp_path, capsys):
    import evaluate

    assert evaluate.main(["--predictions_file", str(tmp_path / "saved.json"), "--output_file", "none", *extra]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [f"error: --predictions_file re-scores the saved predictions without a model, so {named} would be "
                     f"ignored: drop {'them' if ',' in named else 'it'}, or drop --predictions_file to evaluate anew."]


def test_predictions_file_takes_the_flags_rescoring_reads(tmp_path, capsys):
    import evaluate

    code = evaluate.main(["--predictions_file", str(tmp_path / "saved.json"), "--output_file", "none",
                          "--teacher_file", "t.jsonl", "--defer_below", "0.9", "--report_to", "none"])
    assert code == 2
    assert "re-scores" not in capsys.readouterr().err  # refused for the missing file instead, not for a flag


def test_vllm_only_flags_are_refused_with_the_transformers_backend(tmp_path, capsys, monkeypatch):
    import create_data

    monkeypatch.chdir(tmp_path)
    code = create_data.main(["--backend", "transformers", "--teacher_model", "smollm2-135m-instruct",
                             "--enforce_eager", "--vllm_engine_kwargs", '{"cpu_offload_gb": 4}'])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --enforce_eager, --vllm_engine_kwargs apply to the vLLM backend only; the backend is transformers. "
        "Drop them, or pass --backend vllm."]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("script", ["create_data", "evaluate", "predict"])
def test_vllm_memory_and_context_flags_are_refused_with_the_transformers_backend(script, tmp_path, capsys,
                                                                                 monkeypatch):
    """The transformers engine neither reserves a share of GPU memory nor bounds its context by a flag: given, the
    two vLLM flags would be ignored."""
    module = __import__(script)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.txt").write_text("a sentence\n")
    required = ["--model_path", "models/x", "--input_file", "in.txt"] if script == "predict" else []
    code = module.main([*required, "--backend", "transformers", "--gpu_memory_utilization", "0.5",
                        "--max_model_len", "4096"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: --gpu_memory_utilization, --max_model_len apply to the vLLM backend only; the backend is transformers. "
        "Drop them, or pass --backend vllm.")


def test_vllm_engine_kwargs_must_be_a_json_object(capsys):
    import evaluate

    assert evaluate.main(["--backend", "transformers", "--vllm_engine_kwargs", "{cpu_offload_gb: 4}"]) == 2
    assert "--vllm_engine_kwargs must be a JSON object" in capsys.readouterr().err.splitlines()[-1]


def test_misplaced_flags_line_names_each_flag_and_agrees_in_number():
    one = misplaced_flags_line(["tensor_parallel_size"], "the vLLM backend only", "pass --backend vllm")
    assert one == "--tensor_parallel_size applies to the vLLM backend only. Drop it, or pass --backend vllm."
    several = misplaced_flags_line(["dtype", "quantization"], "a model loaded in this process")
    assert several == "--dtype, --quantization apply to a model loaded in this process. Drop them."
