"""benchmark.py's GPU defaults: both engines' weights and the student's vLLM LoRA buffers must fit their share of
GPU memory (together, else one at a time), or the run is refused with the arithmetic and what would fit. Pure
numbers here; the weights of a real folder are read from its safetensors files."""

import json

import pytest

from prompt_distill.benchmark.config import BenchmarkConfig
from prompt_distill.benchmark.memory import (
    GIB,
    HEADROOM_BYTES,
    Gpus,
    MemoryPlanError,
    ModelShape,
    Weights,
    lora_buffers,
    plan_engines,
    weights_in_folder,
)
from prompt_distill.cli import parse_config

# Qwen3-30B-A3B in bf16: 30,532,122,624 parameters x 2 bytes (its safetensors index says 61,064,245,248).
QWEN3_30B = 61_064_245_248
H100 = Gpus(1, 85_031_714_816, "NVIDIA H100 80GB HBM3")  # 79.2 GiB as torch reports it
H200 = Gpus(1, 150_121_545_728, "NVIDIA H200")  # 139.8 GiB
# Qwen3-30B-A3B-Instruct-2507's config.json, the numbers that size vLLM's LoRA buffers.
QWEN3_30B_CONFIG = {"architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 2048, "num_hidden_layers": 48,
                    "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "num_experts": 128,
                    "num_experts_per_tok": 8, "moe_intermediate_size": 768, "intermediate_size": 6144,
                    "torch_dtype": "bfloat16"}
EXPERTS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
# train_sft_trl.py's default adapter: r is the experts' rank (8), rank_pattern gives attention --lora_r 32.
DEFAULT_ADAPTER = {"peft_type": "LORA", "r": 8, "target_parameters": EXPERTS, "target_modules": ATTENTION,
                   "rank_pattern": {name: 32 for name in ATTENTION}}
# --lora_r 8 --expert_lora_r 8: one rank, no rank_pattern.
SERVING_ADAPTER = {"peft_type": "LORA", "r": 8, "target_parameters": EXPERTS, "target_modules": ATTENTION,
                   "rank_pattern": {}}
TEACHER = Weights("teacher Qwen/Qwen3-30B-A3B-Thinking-2507", QWEN3_30B, "index")


def student(adapter=DEFAULT_ADAPTER):
    return Weights("student Qwen/Qwen3-30B-A3B-Instruct-2507", QWEN3_30B, "index",
                   lora_buffers(adapter, QWEN3_30B_CONFIG) if adapter else None)


PAIR = [TEACHER, student()]


def machine(gpu: Gpus, count: int) -> Gpus:
    return Gpus(count, gpu.bytes_each, gpu.name)


def defaults():
    args = parse_config(BenchmarkConfig, [])
    return args.tensor_parallel_size, args.gpu_memory_utilization


@pytest.mark.parametrize("count", [2, 4, 8])
def test_the_default_settings_fit_the_30b_pair_on_h100s(count):
    tp, utilization = defaults()
    plan = plan_engines(PAIR, machine(H100, count), tp, utilization)
    share = plan.gpu_memory_utilization * H100.bytes_each
    for engine in PAIR:
        lora = engine.lora.bytes(2) if engine.lora else 0
        assert engine.bytes / plan.tensor_parallel_size + lora + HEADROOM_BYTES <= share
    assert plan.tensor_parallel_size == 2  # the smallest that fits: 28.4 (+ 2.7 of LoRA buffers) in 35.6 GiB
    assert not plan.sequential
    assert all("<=" in line and "/ TP 2" in line for line in plan.lines[:2]) and plan.lines[2].startswith("hint:")


# -- vLLM's LoRA buffers (vllm 0.33 lora/layers/fused_moe.py, base_linear.py), hand-computed -----------------------
# Experts, per layer and GPU, at rank r and TP t: 128 experts x r x (w13 A 2 x 2048 + w13 B 2 x 768/t + w2 A 768/t
# + w2 B 2048) x 2 bytes; 48 layers, max_loras 1.
EXPERTS_R32_TP1 = 128 * 32 * (3 * 2048 + 3 * 768) * 2 * 48  # 3,321,888,768 B = 3.09 GiB
EXPERTS_R8_TP1 = 128 * 8 * (3 * 2048 + 3 * 768) * 2 * 48  # 830,472,192 B = 0.77 GiB
EXPERTS_R32_TP2 = 128 * 32 * (3 * 2048 + 3 * 384) * 2 * 48  # 2,868,903,936 B
# Attention per layer: q/k/v A 3 x r x 2048, B (4096 + 2 x 512)/t x r; o A r x 4096/t, B 2048 x r; router gate
# (a linear layer, wrapped too) A r x 2048, B 128 x r.
ATTENTION_R32_TP1 = 32 * (3 * 2048 + 5120 + 4096 + 2048 + 2048 + 128) * 2 * 48  # 60,162,048 B


def test_the_lora_buffers_of_the_default_adapter_are_sized_at_rank_32_on_every_expert():
    buffers = lora_buffers(DEFAULT_ADAPTER, QWEN3_30B_CONFIG)
    assert (buffers.max_lora_rank, buffers.attention_rank, buffers.expert_rank) == (32, 32, 8)
    assert buffers.expert_bytes(1) == EXPERTS_R32_TP1 == 3_321_888_768
    assert buffers.attention_bytes(1) == ATTENTION_R32_TP1 == 60_162_048
    assert buffers.bytes(1) == 3_382_050_816  # 3.15 GiB
    assert buffers.expert_bytes(2) == EXPERTS_R32_TP2  # the intermediate dim is split by TP, the hidden dim not
    serving = lora_buffers(SERVING_ADAPTER, QWEN3_30B_CONFIG)
    assert serving.max_lora_rank == 8 and serving.expert_bytes(1) == EXPERTS_R8_TP1 == 830_472_192
    assert buffers.expert_bytes(1) == 4 * serving.expert_bytes(1)
    assert serving.bytes(1) == 845_512_704  # 0.79 GiB
    assert serving.hint(1) is None
    assert "3.09 GiB per GPU instead of 0.77 GiB" in buffers.hint(1) and "--lora_r 8" in buffers.hint(1)


def test_the_model_shape_comes_from_config_json():
    assert ModelShape.from_config(QWEN3_30B_CONFIG) == ModelShape(48, 2048, 128, 768, 4096, 4, 128, 2)
    assert ModelShape.from_config({"hidden_size": 2048}) is None  # unknown: the buffers are not counted, and said


def test_the_student_line_counts_the_lora_buffers_and_prints_the_hint():
    plan = plan_engines(PAIR, machine(H100, 2), None, None)
    assert plan.tensor_parallel_size == 2 and not plan.sequential
    student_line = next(line for line in plan.lines if line.startswith("student"))
    # 28.4 GiB of weights + 2.7 GiB of buffers + 4 GiB = 35.1 GiB in a 35.6 GiB share
    assert "+ 2.7 GiB of vLLM LoRA buffers (max_lora_rank 32: experts 2.67 GiB" in student_line
    assert "= 35.1 GiB <= 0.45 x 79.2 GiB = 35.6 GiB" in student_line
    assert any(line.startswith("hint: the adapter's experts have r=8 but max_lora_rank is 32") for line in plan.lines)


def test_one_h200_holds_both_at_tensor_parallel_1_only_with_a_one_rank_adapter():
    # 0.45 x 139.8 = 62.9 GiB: teacher 56.9 + 4 = 60.9 fits; student + rank-32 buffers 56.9 + 3.15 + 4 = 64.0 does
    # not, so the engines are loaded one at a time; with rank-8 buffers 56.9 + 0.79 + 4 = 61.7 fits alongside.
    plan = plan_engines(PAIR, machine(H200, 1), None, None)
    assert (plan.tensor_parallel_size, plan.gpu_memory_utilization, plan.sequential) == (1, 0.9, True)
    assert "student 64.0 GiB against 0.45 x 139.8 GiB = 62.9 GiB" in plan.lines[0]
    assert any("would fit together at TP 1" in line and "student 61.7 GiB" in line for line in plan.lines)
    together = plan_engines([TEACHER, student(SERVING_ADAPTER)], machine(H200, 1), None, None)
    assert (together.tensor_parallel_size, together.gpu_memory_utilization, together.sequential) == (1, 0.45, False)


def test_without_the_lora_buffers_one_h200_would_wrongly_hold_both():
    """The old plan (weights only) put both on one H200; the buffers push the student over its share."""
    assert not plan_engines([TEACHER, student(None)], machine(H200, 1), None, None).sequential
    assert plan_engines(PAIR, machine(H200, 1), None, None).sequential


def test_one_h100_loads_the_engines_one_at_a_time():
    # 0.45 x 79.2 = 35.6 GiB holds neither; 0.9 x 79.2 = 71.3 GiB holds each: 60.9 and 64.0 GiB.
    plan = plan_engines(PAIR, machine(H100, 1), None, None)
    assert (plan.tensor_parallel_size, plan.gpu_memory_utilization, plan.sequential) == (1, 0.9, True)
    assert plan.lines[0].startswith("not together: at TP 1 the engines need teacher 60.9 GiB, student 64.0 GiB")
    assert "one at a time" in plan.lines[0]
    assert "= 64.0 GiB <= 0.9 x 79.2 GiB = 71.3 GiB" in plan.lines[2]


def test_one_h100_is_refused_together_with_the_arithmetic_and_what_would_fit():
    with pytest.raises(MemoryPlanError) as refused:
        plan_engines(PAIR, machine(H100, 1), None, None, "together")
    message = str(refused.value)
    assert "56.9 GiB of weights" in message and "0.45 x 79.2 GiB = 35.6 GiB" in message
    assert "What would fit: both together at tensor parallel 2 (2 x NVIDIA H100 80GB HBM3); or one at a time at " \
           "tensor parallel 1 (1 x NVIDIA H100 80GB HBM3)" in message
    assert "This machine has 1 x NVIDIA H100 80GB HBM3." in message


def test_a_share_too_small_for_one_engine_alone_says_which_share_would_do():
    with pytest.raises(MemoryPlanError) as refused:
        plan_engines(PAIR, machine(H100, 1), 1, 0.7, "sequential")
    message = str(refused.value)
    assert "do not fit one at a time at --tensor_parallel_size 1 and --gpu_memory_utilization 0.7" in message
    assert "= 64.0 GiB > 0.7 x 79.2 GiB = 55.4 GiB" in message
    assert "one at a time at tensor parallel 1 with --gpu_memory_utilization 0.81 or more" in message


def test_an_explicit_tensor_parallel_size_that_does_not_fit_names_one_that_does():
    with pytest.raises(MemoryPlanError, match="What would fit: both together at tensor parallel 2"):
        plan_engines(PAIR, machine(H100, 4), 1, 0.45, "together")
    assert plan_engines(PAIR, machine(H100, 4), 4, 0.45).tensor_parallel_size == 4


def test_two_shares_above_the_whole_gpu_are_refused():
    with pytest.raises(MemoryPlanError, match="two of them exceed the whole GPU"):
        plan_engines(PAIR, machine(H100, 8), None, 0.6, "together")
    assert plan_engines(PAIR, machine(H100, 8), None, 0.6).sequential  # auto: a share above 0.5 is one at a time


def test_small_models_fit_at_tensor_parallel_1():
    small = [Weights("teacher", 2 * GIB, "x"), Weights("student", 1 * GIB, "x")]
    assert plan_engines(small, machine(H100, 8), None, 0.45).tensor_parallel_size == 1


def test_weights_come_from_the_safetensors_index_or_the_files(tmp_path, smollm2_dir):
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": QWEN3_30B},
                                                                       "weight_map": {}}))
    assert weights_in_folder(tmp_path) == (QWEN3_30B, "model.safetensors.index.json total_size")
    size, source = weights_in_folder(smollm2_dir)
    assert size == (smollm2_dir / "model.safetensors").stat().st_size and "safetensors files" in source
    assert weights_in_folder(tmp_path / "nothing") is None


# -- benchmark.py's wiring: the GPUs seen, the weights read from the model folders ---------------------------------
def model_folder(path, size, config=None):
    path.mkdir()
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": size}}))
    if config:
        (path / "config.json").write_text(json.dumps(config))
    return str(path)


def adapter_folder(path, config):
    path.mkdir()
    (path / "adapter_config.json").write_text(json.dumps(config))
    return str(path)


@pytest.mark.parametrize("count, expected", [(None, (1, 0.45, False)), (4, (2, 0.45, False)),
                                             (1, (1, 0.9, True)), ("together", "refused")])
def test_benchmark_plans_the_engines_for_the_gpus_it_sees(tmp_path, monkeypatch, capsys, count, expected):
    import prompt_distill.benchmark.run as benchmark_run
    from prompt_distill.student.check import Student

    gpus = {None: None, 4: machine(H100, 4), 1: machine(H100, 1), "together": machine(H100, 1)}[count]
    monkeypatch.setattr(benchmark_run, "visible_gpus", lambda: gpus)
    teacher = model_folder(tmp_path / "teacher", QWEN3_30B)
    student = Student(model_folder(tmp_path / "student", QWEN3_30B, QWEN3_30B_CONFIG), "--base_model",
                      adapter_folder(tmp_path / "adapter", DEFAULT_ADAPTER))
    flags = ["--backend", "vllm"] + (["--load_engines", "together"] if count == "together" else [])
    config = parse_config(BenchmarkConfig, flags)
    if expected == "refused":
        with pytest.raises(benchmark_run.BenchmarkError, match="This machine has 1 x NVIDIA H100"):
            benchmark_run.vllm_engine_plan(config, teacher, student)
        return
    plan = benchmark_run.vllm_engine_plan(config, teacher, student)
    lines = capsys.readouterr().out.splitlines()
    assert (plan.tensor_parallel_size, plan.gpu_memory_utilization, plan.sequential) == expected
    if count == 4:
        assert lines[0] == ("[benchmark] tensor parallel 2 (chosen: the smallest that fits) on 4 x NVIDIA H100 80GB "
                            "HBM3, both engines loaded together:")
        assert all("<= 0.45 x 79.2 GiB" in line for line in lines[1:3])
        assert "2.7 GiB of vLLM LoRA buffers (max_lora_rank 32" in lines[2]  # read from the two config files
        assert lines[3].startswith("[benchmark]   hint: the adapter's experts have r=8")
    if count == 1:
        assert "one at a time:" in lines[0] and "<= 0.9 x 79.2 GiB" in lines[3]
