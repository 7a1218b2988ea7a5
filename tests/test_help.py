"""``--help`` of every script: each default stated once, never "(default: None)", every option explained."""

import re
from pathlib import Path

import pytest

import benchmark
import create_data
import evaluate
import predict
from prompt_distill.training.config import parser as training_parser


def help_text(build) -> str:
    return build().format_help()


def option_blocks(text: str) -> dict[str, str]:
    """Each option's help, whitespace collapsed (wrapping differs with the terminal), by its first flag."""
    options = text.split("\noptions:\n", 1)[1]
    options = re.sub(r"\n\S[^\n]*:\n", "\n", options)  # group headings ("data:") end a block, not extend it
    blocks = {}
    for block in re.split(r"\n  (?=-)", "\n" + options):
        block = " ".join(block.split())
        if block.startswith("-"):
            blocks[block.split()[0].rstrip(",")] = block
    return blocks


SCRIPTS = {"create_data": create_data.build_parser, "evaluate": evaluate.build_parser,
           "benchmark": benchmark.build_parser, "train_sft_trl": training_parser, "predict": predict.build_parser}


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_default_is_stated_once_and_never_as_none(script):
    blocks = option_blocks(help_text(SCRIPTS[script]))
    assert len(blocks) > 5
    for block in blocks.values():
        assert "(default: None)" not in block, block
        assert block.lower().count("default:") <= 1, block


@pytest.mark.parametrize("script", ["create_data", "evaluate", "benchmark", "predict"])
def test_every_option_is_explained_with_its_default(script):
    build = SCRIPTS[script]
    blocks = option_blocks(help_text(build))
    for action in build()._actions:
        if action.option_strings in (["-h", "--help"], ["--config"]):  # the parser's own (argparse, TRL)
            continue
        assert action.help, f"{script} {action.option_strings[0]} has no help"
        block = blocks[action.option_strings[0]]
        switch = action.nargs == 0 or (action.nargs == "?" and action.const is True and action.default is False)
        if action.default is not None and not switch:
            assert "default:" in block.lower(), block


def test_create_data_help_explains_top_p_and_seed_with_defaults():
    blocks = option_blocks(help_text(create_data.build_parser))
    assert "Nucleus sampling" in blocks["--top_p"] and blocks["--top_p"].endswith("(default: 1.0)")
    assert "Sampling seed" in blocks["--seed"] and blocks["--seed"].endswith("(default: 0)")
    assert blocks["--temperature"].endswith("(default: 0.15)")


def test_split_and_labels_state_their_default_once():
    blocks = option_blocks(help_text(evaluate.build_parser))
    assert blocks["--split"].count("eval") == 2 and "(default: eval)" in blocks["--split"]  # "eval" in the choices
    assert blocks["--labels"].count("ar,de,el,en,es,fr,hi,ru,tr,ur,vi,zh,ot") == 1
    assert "(default:" not in blocks["--labels"]


def test_training_help_describes_the_script_config_and_resume():
    text = help_text(training_parser)
    flat = " ".join(text.split())
    assert "Stage 2: train the student's LoRA adapter" in flat
    blocks = option_blocks(text)
    assert "--config" in blocks and "YAML" in blocks["--config"]
    assert "'last' for the newest checkpoint-N" in blocks["--resume_from_checkpoint"]
    assert "--resume_from_checkpoint last" in flat


def test_no_padding_free_says_what_it_does():
    blocks = option_blocks(help_text(training_parser))
    assert "without padding" in blocks["--padding_free"]
    assert "Pad every example" in blocks["--no_padding_free"] and "without padding" not in blocks["--no_padding_free"]
    # every other --no_X switch says that it turns X off, not X's own help
    assert blocks["--no_remove_unused_columns"].endswith("Same as --remove_unused_columns false.")


def test_the_config_flag_is_still_read_by_trl_and_parsing_returns_the_two_dataclasses(tmp_path):
    config_file = tmp_path / "c.yaml"
    config_file.write_text("max_steps: 3\nlearning_rate: 0.001\n")
    parsed = training_parser().parse_args_and_config(["--config", str(config_file), "--learning_rate", "0.01"])
    assert len(parsed) == 2
    assert parsed[1].max_steps == 3 and parsed[1].learning_rate == 0.01


# -- issue 21: --help grouped in every script, training's own flags before TRL's ------------------------------
TRL_HEADING = "TRL / transformers training arguments"


def headings(text: str) -> list[str]:
    return [line[:-1] for line in text.splitlines() if line.endswith(":") and line[:1].isalpha()
            and not line.startswith("usage")]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_groups_its_flags_under_the_fixed_headings(script):
    from prompt_distill.cli import GROUP_ORDER

    found = headings(help_text(SCRIPTS[script]))
    assert found[0] == "options" and len(found) >= 5, found
    ordered = [name for name in found[1:] if name in GROUP_ORDER]
    assert ordered == [name for name in GROUP_ORDER if name in ordered]
    assert {"data", "model", "engine" if script != "train_sft_trl" else "training", "output"} <= set(found)
    options = help_text(SCRIPTS[script]).split("\noptions:\n", 1)[1].split("\n\n", 1)[0]
    assert set(option_blocks("\noptions:\n" + options)) <= {"-h", "--config"}  # every flag is under a heading


def test_training_help_leads_with_the_project_flags_and_lists_trl_after_them():
    text = help_text(training_parser)
    assert headings(text) == ["options", "data", "task", "model", "training", "output", "distillation", TRL_HEADING]
    ours, trl = text.split(f"\n{TRL_HEADING}:")
    for flag in ("--base_model", "--data_file", "--lora_r", "--learning_rate", "--output_dir", "--report_to",
                 "--distillation_target", "--min_teacher_confidence"):
        assert f"\n  {flag}" in ours, flag
    for flag in ("--max_steps", "--save_strategy", "--gradient_checkpointing"):
        assert f"\n  {flag}" in trl, flag
    assert text.startswith("usage: ") and len(text.split("\n\n", 1)[0].splitlines()) == 1  # one usage line


def test_every_engine_building_script_offers_the_vllm_engine_flags():
    for script in ("create_data", "evaluate", "benchmark", "predict"):
        blocks = option_blocks(help_text(SCRIPTS[script]))
        for flag in ("--dtype", "--enforce_eager", "--quantization", "--trust_remote_code",
                     "--gpu_memory_utilization", "--max_model_len", "--vllm_engine_kwargs"):
            assert flag in blocks, (script, flag)
    for script in ("create_data", "benchmark"):
        assert "--top_k" in option_blocks(help_text(SCRIPTS[script]))


def test_training_help_is_served_from_a_cache_keyed_by_what_it_is_made_of(tmp_path, monkeypatch, capsys):
    import train_sft_trl
    from prompt_distill.cli_help import _help_key

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    built = []

    def build():
        built.append(1)
        return training_parser()

    monkeypatch.setattr(train_sft_trl, "build_parser", build)
    assert train_sft_trl.main(["--help"]) == 0
    first = capsys.readouterr().out
    assert train_sft_trl.main(["-h"]) == 0
    assert capsys.readouterr().out == first and len(built) == 1  # the second from the cache, no TRL import
    assert first == training_parser().format_help()
    assert len(list((tmp_path / "prompt-distill" / "help").glob("train_sft_trl-*.txt"))) == 1
    script = Path(train_sft_trl.__file__)
    key = _help_key(script)
    monkeypatch.setenv("COLUMNS", "61")
    assert _help_key(script) != key  # another width, another text


def test_a_config_file_is_read_before_help_so_its_values_show_as_defaults(tmp_path, monkeypatch, capsys):
    import train_sft_trl

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    config_file = tmp_path / "c.yaml"
    config_file.write_text("max_steps: 7\n")
    with pytest.raises(SystemExit):
        train_sft_trl.main(["--config", str(config_file), "--help"])
    assert "(default: 7)" in " ".join(capsys.readouterr().out.split())
    assert not (tmp_path / "cache").exists()
