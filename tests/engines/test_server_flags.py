"""The flags of a served model (issue 24): --base_url, --api_key, --max_concurrent_requests, checked before anything
runs, and the API key never shown (its text is a placeholder wherever the config is recorded)."""

import json
import pickle
import sys
from dataclasses import asdict, replace

import pytest

from prompt_distill.engines import EngineSettings, registry
from prompt_distill.engines.flags import ApiKey, ServerFlags, engine_flag_settings, hide_in_argv
from prompt_distill.labeling.config import CreateDataConfig
from prompt_distill.preflight import PreflightError

KEY = "sk-test-0123456789abcdef"


def parse(argv):
    import create_data

    (config,) = create_data.build_parser().parse_flags(argv)
    return config


def test_the_key_is_a_placeholder_wherever_the_config_is_recorded(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["create_data.py", "--backend", "openai", "--api_key", KEY,
                                      f"--api-key={KEY}", "--base_url", "http://127.0.0.1:9/v1"])
    config = parse(sys.argv[1:])
    assert isinstance(config, ServerFlags) and config.api_key.secret == KEY
    for shown in (str(config.api_key), repr(config), json.dumps(asdict(config)), " ".join(sys.argv)):
        assert KEY not in shown
    assert KEY not in json.dumps(asdict(replace(config, seed=3))) and replace(config, seed=3).api_key.secret == KEY
    with pytest.raises(TypeError):
        pickle.dumps(config.api_key)
    settings = EngineSettings(**engine_flag_settings(config, "openai"))
    assert settings.api_key.secret == KEY and KEY not in repr(settings)
    assert settings.base_url == "http://127.0.0.1:9/v1" and settings.max_concurrent_requests == 16


def test_the_key_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    config = parse(["--backend", "openai", "--base_url", "http://127.0.0.1:9/v1"])
    assert config.api_key is None  # the environment's key is read when the engine is made, never stored in the config
    assert engine_flag_settings(config, "openai")["api_key"].secret == KEY
    monkeypatch.delenv("OPENAI_API_KEY")
    assert engine_flag_settings(config, "openai")["api_key"] is None


def test_hide_in_argv_both_spellings():
    argv = ["x", "--api_key", KEY, "--api-key", KEY, f"--api_key={KEY}", "--seed", "1"]
    hide_in_argv(("api_key",), argv)
    assert KEY not in " ".join(argv) and argv[-2:] == ["--seed", "1"]


@pytest.mark.parametrize("argv, message", [
    (["--backend", "openai"], "--backend openai needs --base_url"),
    (["--backend", "transformers", "--base_url", "http://x/v1"], "--base_url applies to --backend openai only"),
    (["--backend", "transformers", "--max_concurrent_requests", "4", "--api_key", "k"],
     "--api_key, --max_concurrent_requests apply to --backend openai only"),
    (["--backend", "openai", "--base_url", "http://x/v1", "--max_concurrent_requests", "0"],
     "--max_concurrent_requests must be at least 1"),
    (["--backend", "openai", "--base_url", "http://x/v1", "--max_model_len", "512"],
     "--max_model_len applies to the vLLM backend only"),
])
def test_refused_before_anything_runs(argv, message):
    with pytest.raises(PreflightError, match=message.replace("-", "\\-")):
        engine_flag_settings(parse(argv), parse(argv).backend)


def test_the_served_backend_is_registered_but_never_auto():
    spec = registry.engine_spec("openai")
    assert spec.package == "openai" and spec.served and not spec.auto
    assert "openai" in CreateDataConfig.__dataclass_fields__["backend"].metadata["choices"]


def test_a_script_without_server_flags_refuses_the_served_backend():
    from prompt_distill.engines.flags import EngineFlags

    with pytest.raises(PreflightError, match="no --base_url"):
        engine_flag_settings(EngineFlags(), "openai")


def test_api_key_copies_keep_the_secret():
    import copy

    key = ApiKey(KEY)
    assert copy.deepcopy(key) is key and ApiKey(key).secret == KEY and key == ApiKey.PLACEHOLDER
