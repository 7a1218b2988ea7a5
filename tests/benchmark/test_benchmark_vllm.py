"""benchmark.py on vLLM, against the real vllm 0.33 package without a GPU.

The real ``LLM.__init__`` runs for each engine the benchmark builds and stops where it hands its ``EngineArgs`` to
the engine; the teacher's and the student's arguments are checked there, and the teacher's requests are checked
as the real ``SamplingParams`` they become.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

vllm = pytest.importorskip("vllm")

import prompt_distill.benchmark.run as benchmark_run  # noqa: E402
from prompt_distill import engines  # noqa: E402
from prompt_distill.benchmark.config import BenchmarkConfig  # noqa: E402
from prompt_distill.benchmark.measure import Thinking, choose_thinking, teacher_params  # noqa: E402
from prompt_distill.cli import parse_config  # noqa: E402
from prompt_distill.engines.vllm_engine import build_sampling_params  # noqa: E402
from prompt_distill.student.engine import DEFAULT_STUDENT_MAX_MODEL_LEN  # noqa: E402
from prompt_distill.task import language_task  # noqa: E402
from tests.vllm_tiny_models import (  # noqa: E402
    EngineArgsCaptured,
    stop_at_engine_construction,
)

# The GPU decisions; the CPU backend's own are tested with cpu_platform (and for real in tests/vllm_cpu/).
pytestmark = [pytest.mark.vllm, pytest.mark.usefixtures("gpu_platform")]
TASK = language_task()


def parse(*flags):
    return parse_config(BenchmarkConfig, ["--backend", "vllm", *flags])


def engine_args(args, monkeypatch, thinking=None):
    stop_at_engine_construction(monkeypatch)
    thinking = thinking or choose_thinking("vllm", args.thinking_tokens, None)
    with pytest.raises(EngineArgsCaptured) as caught:
        builders, _ = benchmark_run.build_contenders(args, TASK, "vllm", thinking, ["Wie spät ist es?"])
        for build in builders:  # teacher first; the first real LLM stops there
            build()
    return caught.value.engine_args


def test_teacher_engine_args(tiny_moe_dir, moe_adapter_dir, monkeypatch):
    args = parse("--teacher_model", str(tiny_moe_dir), "--model_path", str(moe_adapter_dir),
                 "--tensor_parallel_size", "4", "--seed", "5")
    teacher = engine_args(args, monkeypatch)
    assert teacher.model == str(tiny_moe_dir)
    assert teacher.reasoning_parser == "qwen3"
    assert teacher.tensor_parallel_size == 4 and teacher.seed == 5
    assert teacher.gpu_memory_utilization == benchmark_run.TOGETHER_SHARE  # two engines share the GPUs
    # room for the whole prompt and a full thought, in whole 256-token blocks
    assert teacher.max_model_len % 256 == 0
    assert teacher.max_model_len >= len(TASK.system_prompt) // 4 + args.teacher_max_tokens
    assert teacher.enable_lora is False


def test_student_engine_args_serve_the_adapter(tiny_moe_dir, moe_adapter_dir, monkeypatch):
    built = []
    teacher = SimpleNamespace(count_prompt_tokens=lambda chat, params: 6000)
    real = engines.make_engine  # the teacher (built first) is a stand-in; the student's engine is the real one
    monkeypatch.setattr(engines, "make_engine", lambda *a, **k: real(*a, **k) if built else built.append((a, k)) or teacher)
    args = parse("--teacher_model", str(tiny_moe_dir), "--model_path", str(moe_adapter_dir),
                 "--tensor_parallel_size", "2", "--gpu_memory_utilization", "0.4")
    student = engine_args(args, monkeypatch)
    assert built and built[0][1]["reasoning_parser"] == "qwen3"  # the teacher was built first, the stand-in
    assert student.model == str(tiny_moe_dir)  # the adapter's base, from adapter_config.json
    assert student.enable_lora is True and student.max_lora_rank == 32 and student.enable_mixed_moe_lora_format
    assert student.tensor_parallel_size == 2 and student.gpu_memory_utilization == 0.4
    assert student.max_model_len == DEFAULT_STUDENT_MAX_MODEL_LEN
    assert student.reasoning_parser in (None, "")  # the student does not think


def test_teacher_requests_think_for_real_unless_a_length_is_forced():
    real = build_sampling_params(
        teacher_params(TASK, "vllm", choose_thinking("vllm", None, None), max_tokens=4096, temperature=0.15, seed=0),
        after_thought=True,
    )
    assert (real.max_tokens, real.min_tokens, real.ignore_eos, real.temperature) == (4096, 0, False, 0.15)
    assert real.structured_outputs is None  # a free answer after the thought, as create_data.py asks on vLLM
    forced = build_sampling_params(
        teacher_params(TASK, "vllm", Thinking(True, 700, "--thinking_tokens"), max_tokens=4096, temperature=0.15,
                       seed=0),
        after_thought=True,
    )
    assert (forced.max_tokens, forced.min_tokens, forced.ignore_eos) == (700, 700, True)
