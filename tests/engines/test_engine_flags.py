"""The engine flags (engines/flags.py) against the real vllm package: --vllm_engine_kwargs checked against vLLM's
EngineArgs before anything loads, and every engine flag reaching ``vllm.LLM`` (the import lane, ``-m vllm``) and a
real engine on a CPU (the vllm-cpu lane, ``-m vllm_cpu``).

What needs no vLLM (a vLLM-only flag with the transformers backend, a malformed JSON) is in tests/test_cli.py.
"""

from __future__ import annotations

import pytest

vllm = pytest.importorskip("vllm")

from prompt_distill.cli import parse_config  # noqa: E402
from prompt_distill.engines.flags import engine_flag_settings, student_engine_options  # noqa: E402
from prompt_distill.engines.vllm_engine import VLLMEngine, running_on_cpu  # noqa: E402
from prompt_distill.evaluation.config import EvaluationConfig  # noqa: E402
from prompt_distill.labeling import teacher_run  # noqa: E402
from prompt_distill.labeling.config import CreateDataConfig  # noqa: E402
from prompt_distill.preflight import PreflightError  # noqa: E402
from tests.vllm_tiny_models import EngineArgsCaptured, stop_at_engine_construction  # noqa: E402


def create_data_flags(*argv: str) -> CreateDataConfig:
    return parse_config(CreateDataConfig, list(argv))


@pytest.mark.vllm
@pytest.mark.parametrize("kwargs, message", [
    ('{"cpu_offload_g": 4}', "--vllm_engine_kwargs: vLLM's EngineArgs has no 'cpu_offload_g'; closest: cpu_offload_gb"),
    ('{"enforce_eagr": true}', "--vllm_engine_kwargs: vLLM's EngineArgs has no 'enforce_eagr'; closest: enforce_eager"),
    ('{"max_model_len": 2048}', "--vllm_engine_kwargs: 'max_model_len' has its own flag; pass --max_model_len instead."),
    ('{"dtype": "half"}', "--vllm_engine_kwargs: 'dtype' has its own flag; pass --dtype instead."),
    ('{"seed": 3}', "--vllm_engine_kwargs: 'seed' has its own flag; pass --seed instead."),
    ('{"model": "other"}', "--vllm_engine_kwargs: 'model' is set by the model flag"),
])
def test_engine_kwargs_are_checked_against_vllm_before_anything_loads(kwargs, message):
    with pytest.raises(PreflightError) as refused:
        engine_flag_settings(create_data_flags("--vllm_engine_kwargs", kwargs), "vllm")
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


@pytest.mark.vllm
def test_a_key_only_another_script_has_a_flag_for_passes_through():
    # evaluate.py has no --seed: the student's engine seed may be passed through.
    config = parse_config(EvaluationConfig, ["--vllm_engine_kwargs", '{"seed": 3, "cpu_offload_gb": 2}'])
    assert engine_flag_settings(config, "vllm")["engine_kwargs"] == {"seed": 3, "cpu_offload_gb": 2}


@pytest.mark.vllm
def test_every_engine_flag_reaches_vllm_engine_args(tiny_moe_dir, monkeypatch, gpu_platform):
    stop_at_engine_construction(monkeypatch)
    config = create_data_flags(
        "--dtype", "bfloat16", "--quantization", "fp8", "--enforce_eager", "--trust_remote_code",
        "--max_model_len", "1024", "--gpu_memory_utilization", "0.7", "--reasoning_parser", "none",
        "--vllm_engine_kwargs", '{"cpu_offload_gb": 2, "kv_cache_dtype": "fp8"}')
    options = teacher_run.engine_options(config, "vllm")
    with pytest.raises(EngineArgsCaptured) as caught:
        VLLMEngine(str(tiny_moe_dir), **options)
    args = caught.value.engine_args
    assert (args.dtype, args.quantization, args.enforce_eager, args.trust_remote_code) == ("bfloat16", "fp8", True, True)
    assert (args.max_model_len, args.gpu_memory_utilization, args.cpu_offload_gb, args.kv_cache_dtype) == (
        1024, 0.7, 2, "fp8")


@pytest.mark.vllm
def test_without_the_flags_vllm_keeps_its_own_defaults(tiny_moe_dir, monkeypatch, gpu_platform):
    stop_at_engine_construction(monkeypatch)
    with pytest.raises(EngineArgsCaptured) as caught:
        VLLMEngine(str(tiny_moe_dir), **teacher_run.engine_options(create_data_flags("--reasoning_parser", "none"),
                                                                   "vllm"))
    args = caught.value.engine_args
    assert (args.dtype, args.quantization, args.enforce_eager, args.trust_remote_code) == ("auto", None, False, False)


@pytest.mark.vllm_cpu
@pytest.mark.skipif(not running_on_cpu(), reason="the real-engine lane needs vLLM's CPU build (vllm-cpu)")
def test_evaluate_engine_flags_reach_a_real_engine_on_the_cpu():
    from prompt_distill.student.check import resolve_student
    from prompt_distill.student.engine import build_student_engine

    config = parse_config(EvaluationConfig, ["--backend", "vllm", "--max_model_len", "640",
                                             "--vllm_engine_kwargs", '{"max_num_seqs": 3}'])
    student = resolve_student(None, "smollm2-135m-instruct", no_adapter=True)
    built = build_student_engine("vllm", student, 4, **student_engine_options(config, "vllm"))
    try:
        engine = built.engine
        assert engine.max_context_tokens == 640  # --max_model_len, not the run record's default
        assert engine.llm.llm_engine.vllm_config.scheduler_config.max_num_seqs == 3  # --vllm_engine_kwargs
        assert engine.llm.llm_engine.vllm_config.model_config.enforce_eager  # the CPU backend's default kept
    finally:
        built.engine.close()
