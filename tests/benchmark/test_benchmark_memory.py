"""benchmark.py's GPU defaults: both engines' weights must fit their share of GPU memory, or the run is refused with
the arithmetic. Pure numbers here; the weights of a real folder are read from its safetensors files."""

import json

import pytest

import benchmark as benchmark_cli
from prompt_distill.benchmark.config import BenchmarkConfig
from prompt_distill.benchmark.memory import (
    GIB,
    HEADROOM_BYTES,
    Gpus,
    MemoryPlanError,
    Weights,
    plan_engines,
    weights_in_folder,
)

# Qwen3-30B-A3B in bf16: 30,532,122,624 parameters x 2 bytes (its safetensors index says 61,064,245,248).
QWEN3_30B = 61_064_245_248
H100 = Gpus(1, 85_031_714_816, "NVIDIA H100 80GB HBM3")  # 79.2 GiB as torch reports it
H200 = Gpus(1, 150_121_545_728, "NVIDIA H200")  # 139.8 GiB
PAIR = [Weights("teacher Qwen/Qwen3-30B-A3B-Thinking-2507", QWEN3_30B, "index"),
        Weights("student Qwen/Qwen3-30B-A3B-Instruct-2507", QWEN3_30B + 700_000_000, "index + the adapter")]


def machine(gpu: Gpus, count: int) -> Gpus:
    return Gpus(count, gpu.bytes_each, gpu.name)


def defaults():
    args = benchmark_cli.build_parser().parse_args([])
    return args.tensor_parallel_size, args.gpu_memory_utilization


@pytest.mark.parametrize("count", [2, 4, 8])
def test_the_default_settings_fit_the_30b_pair_on_h100s(count):
    tp, utilization = defaults()
    plan = plan_engines(PAIR, machine(H100, count), tp, utilization)
    share = plan.gpu_memory_utilization * H100.bytes_each
    for engine in PAIR:
        assert engine.bytes / plan.tensor_parallel_size + HEADROOM_BYTES <= share
    assert plan.tensor_parallel_size == 2  # the smallest that fits: 28.4 GiB per GPU in a 35.6 GiB share
    assert all("<=" in line and "/ TP 2" in line for line in plan.lines)


def test_one_h100_is_refused_with_the_arithmetic():
    tp, utilization = defaults()
    with pytest.raises(MemoryPlanError) as refused:
        plan_engines(PAIR, machine(H100, 1), tp, utilization)
    message = str(refused.value)
    assert "56.9 GiB of weights" in message and "0.45 x 79.2 GiB = 35.6 GiB" in message
    assert "tensor parallel 2, that is 2 GPUs; this machine has 1" in message


def test_one_h200_holds_both_at_tensor_parallel_1():
    tp, utilization = defaults()
    assert plan_engines(PAIR, machine(H200, 1), tp, utilization).tensor_parallel_size == 1


def test_an_explicit_tensor_parallel_size_that_does_not_fit_names_one_that_does():
    with pytest.raises(MemoryPlanError, match="--tensor_parallel_size 2 fits on this machine"):
        plan_engines(PAIR, machine(H100, 4), 1, 0.45)
    assert plan_engines(PAIR, machine(H100, 4), 4, 0.45).tensor_parallel_size == 4


def test_two_shares_above_the_whole_gpu_are_refused():
    with pytest.raises(MemoryPlanError, match="two of them exceed the whole GPU"):
        plan_engines(PAIR, machine(H100, 8), None, 0.6)


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
def model_folder(path, size):
    path.mkdir()
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": size}}))
    return str(path)


@pytest.mark.parametrize("count, expected", [(None, 1), (4, 2), (1, "refused")])
def test_benchmark_picks_or_refuses_the_tensor_parallel_size_for_the_gpus_it_sees(tmp_path, monkeypatch, count,
                                                                                  expected):
    import prompt_distill.benchmark.run as benchmark_run
    from prompt_distill.student.check import Student

    monkeypatch.setattr(benchmark_run, "visible_gpus", lambda: None if count is None else machine(H100, count))
    teacher = model_folder(tmp_path / "teacher", QWEN3_30B)
    student = Student(model_folder(tmp_path / "student", QWEN3_30B), "--base_model")
    config = BenchmarkConfig.from_args(benchmark_cli.build_parser().parse_args(["--backend", "vllm"]))
    lines = []
    if expected == "refused":
        with pytest.raises(benchmark_run.BenchmarkError, match="this machine has 1"):
            benchmark_run.vllm_tensor_parallel_size(config, teacher, student, out=lines.append)
        return
    assert benchmark_run.vllm_tensor_parallel_size(config, teacher, student, out=lines.append) == expected
    if count:
        assert "tensor parallel 2 (chosen: the smallest that fits) on 4 x NVIDIA H100 80GB HBM3" in lines[0]
        assert len(lines) == 3 and all("<= 0.45 x 79.2 GiB" in line for line in lines[1:])
