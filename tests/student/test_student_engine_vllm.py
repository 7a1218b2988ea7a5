"""evaluate.py's choice of vLLM engine for the student, against the real vllm 0.33 package without a GPU.

``LLM.__init__`` runs for real; only ``LLMEngine.from_engine_args`` (where GPU work starts) is replaced, to capture
the ``EngineArgs``. Checked: the adapter is served with LoRA when vLLM can, and when it cannot the merged model is
served instead, with the reason logged.
"""

from __future__ import annotations

import pytest

vllm = pytest.importorskip("vllm")

from prompt_distill.student.check import resolve_student  # noqa: E402
from prompt_distill.student.engine import DEFAULT_STUDENT_MAX_MODEL_LEN, build_student_engine  # noqa: E402
from tests.vllm_tiny_models import (  # noqa: E402
    EngineArgsCaptured,
    save_adapter,
    save_project_adapter,
    stop_at_engine_construction,
)

# The GPU decisions; the CPU backend's own are tested with cpu_platform (and for real in tests/vllm_cpu/).
pytestmark = [pytest.mark.vllm, pytest.mark.usefixtures("gpu_platform")]


@pytest.fixture
def engine_args_of(monkeypatch):
    stop_at_engine_construction(monkeypatch)

    def run(student):
        with pytest.raises(EngineArgsCaptured) as caught:
            build_student_engine("vllm", student, batch_size=8)
        return caught.value.engine_args

    return run


def test_servable_moe_adapter_is_served_with_lora(tiny_moe_dir, tmp_path, engine_args_of):
    adapter = save_project_adapter(tiny_moe_dir, tmp_path / "adapter", r=16, expert_r=8)
    student = resolve_student(str(adapter), None)
    assert student.base_model == str(tiny_moe_dir)  # from adapter_config.json
    args = engine_args_of(student)
    assert args.model == str(tiny_moe_dir)
    assert args.enable_lora is True and args.max_lora_rank == 16 and args.enable_mixed_moe_lora_format is True
    assert args.max_model_len == DEFAULT_STUDENT_MAX_MODEL_LEN


def test_base_model_alone(tiny_moe_dir, engine_args_of):
    args = engine_args_of(resolve_student("none", str(tiny_moe_dir)))
    assert args.model == str(tiny_moe_dir) and not args.enable_lora


def test_unservable_adapter_falls_back_to_the_merged_model_and_says_why(tiny_moe_dir, tmp_path, engine_args_of,
                                                                       capsys):
    from peft import LoraConfig

    # vLLM serves no DoRA adapters; transformers + PEFT merge them fine.
    adapter = save_adapter(tiny_moe_dir, tmp_path / "dora", LoraConfig(r=4, target_modules=["q_proj"], use_dora=True))
    capsys.readouterr()
    args = engine_args_of(resolve_student(str(adapter), None))
    lines = capsys.readouterr().out.splitlines()  # the log lines
    merged = adapter / "merged"
    assert (merged / "config.json").is_file() and (merged / "tokenizer_config.json").is_file()
    assert args.model == str(merged) and not args.enable_lora
    assert any("vLLM cannot serve the adapter" in line for line in lines)
    assert any(f"Serving the merged model {merged}" in line for line in lines)
    # The merged folder is reused, not merged again.
    engine_args_of(resolve_student(str(adapter), None))
    lines = capsys.readouterr().out.splitlines()
    assert not any(line.startswith("[student] Merging") for line in lines)
