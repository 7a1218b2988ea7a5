"""--backend on a GPU box, without one (issue 19 items 1 and 6).

Item 1: ``--backend auto`` must choose vLLM without initialising CUDA in the parent (``torch.cuda.is_available()``
runs ``cudaGetDeviceCount``, and vLLM then forks an engine core that cannot initialise CUDA). Here torch is made to
look like a CUDA build that sees 2 GPUs through NVML, a stand-in ``vllm`` package is importable, and the CUDA
runtime's entry points record every call: the choice must be vLLM with no call recorded.

Item 6: the choice is said in one line with its reason; ``--backend vllm`` without an importable vLLM, and
``--tensor_parallel_size`` above 1 without vLLM or above the visible GPUs, are one ``error:`` line and exit 2.
"""

import importlib.util
import sys

import pytest
import torch

import benchmark
import create_data
import evaluate
import predict
from prompt_distill import engines
from prompt_distill.engines import select_backend
from tests.test_user_files import one_error_line

STAND_IN = '__version__ = "0.33.0"\n'
BROKEN = 'raise ImportError("libcudart.so.13: cannot open shared object file: No such file or directory")\n'


def stand_in_vllm(tmp_path, monkeypatch, source: str = STAND_IN) -> None:
    """A ``vllm`` package that ``import vllm`` finds first (the real one, if installed, is hidden meanwhile)."""
    site = tmp_path / "stand_in_site"
    (site / "vllm").mkdir(parents=True)
    (site / "vllm" / "__init__.py").write_text(source, encoding="utf-8")
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    monkeypatch.syspath_prepend(str(site))


def no_vllm(monkeypatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "vllm"
                        else real_find_spec(name, *rest))


@pytest.fixture
def cuda_calls(monkeypatch):
    """torch as a CUDA build seeing ``gpus`` GPUs through NVML; the CUDA runtime's device count and CUDA's
    initialisation are recorded in the list this returns (and initialisation raises, as it would have forked)."""
    calls = []

    def runtime_device_count():
        calls.append("cudaGetDeviceCount")
        return 2

    def lazy_init():
        calls.append("torch.cuda._lazy_init")
        raise AssertionError("CUDA initialised in the parent process")

    monkeypatch.delenv("PYTORCH_NVML_BASED_CUDA_CHECK", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setattr(torch.cuda, "_is_compiled", lambda: True)
    monkeypatch.setattr(torch.cuda, "_device_count_nvml", lambda: 2)
    monkeypatch.setattr(torch._C, "_cuda_getDeviceCount", runtime_device_count, raising=False)
    monkeypatch.setattr(torch.cuda, "_lazy_init", lazy_init)
    yield calls
    sys.modules.pop("vllm", None)  # the stand-in; monkeypatch then restores a real vllm that was imported before


def test_auto_chooses_vllm_without_initialising_cuda(tmp_path, monkeypatch, cuda_calls):
    stand_in_vllm(tmp_path, monkeypatch)
    assert select_backend("auto") == "vllm"
    assert cuda_calls == []


class StopAtTheEngine(Exception):
    pass


def test_create_data_reaches_the_vllm_engine_with_cuda_untouched(tmp_path, monkeypatch, capsys, cuda_calls):
    stand_in_vllm(tmp_path, monkeypatch)
    (tmp_path / "in.txt").write_text("Bonjour tout le monde\n", encoding="utf-8")
    built = []

    def make_engine(backend, model, **options):
        built.append((backend, options["tensor_parallel_size"], list(cuda_calls)))
        raise StopAtTheEngine

    monkeypatch.setattr(engines, "make_engine", make_engine)
    with pytest.raises(StopAtTheEngine):
        create_data.main(["--input_file", str(tmp_path / "in.txt"), "--output_file", str(tmp_path / "out.jsonl"),
                          "--max_model_len", "4096", "--tensor_parallel_size", "2"])
    assert built == [("vllm", 2, [])]
    assert "Backend: vllm (auto: vllm 0.33.0 importable, 2 CUDA GPUs visible)" in capsys.readouterr().out


def test_the_choice_is_one_line_with_its_reason(tmp_path, monkeypatch, cuda_calls):
    assert engines.choose_backend("transformers").line() == "Backend: transformers (--backend transformers)"
    no_vllm(monkeypatch)
    assert engines.choose_backend("auto").line() == "Backend: transformers (auto: vllm is not installed)"


def test_auto_without_a_cuda_gpu_is_transformers(tmp_path, monkeypatch, cuda_calls):
    stand_in_vllm(tmp_path, monkeypatch)
    monkeypatch.setattr(torch.cuda, "_device_count_nvml", lambda: 0)
    assert engines.choose_backend("auto").line() == "Backend: transformers (auto: no CUDA GPU)"
    assert cuda_calls == []


def test_a_vllm_that_fails_to_import_is_said_not_silently_skipped(tmp_path, monkeypatch, cuda_calls):
    stand_in_vllm(tmp_path, monkeypatch, BROKEN)
    choice = engines.choose_backend("auto")
    assert choice.backend == "transformers"
    assert choice.reason == ("auto: vllm is installed but `import vllm` failed: ImportError: libcudart.so.13: "
                             "cannot open shared object file: No such file or directory")
    with pytest.raises(engines.BackendError, match=r"^--backend vllm: vllm is installed but `import vllm` failed: Import"):
        engines.choose_backend("vllm")
    with pytest.raises(engines.BackendError, match="--tensor_parallel_size 2 needs vLLM, but the backend is transformers "
                                           r"\(auto: vllm is installed but `import vllm` failed"):
        engines.choose_backend("auto", tensor_parallel_size=2)


def test_tensor_parallel_above_the_visible_gpus_is_refused(tmp_path, monkeypatch, cuda_calls):
    stand_in_vllm(tmp_path, monkeypatch)
    assert engines.choose_backend("vllm", tensor_parallel_size=2).backend == "vllm"
    with pytest.raises(engines.BackendError) as refused:
        engines.choose_backend("auto", tensor_parallel_size=4)
    assert str(refused.value) == ("--tensor_parallel_size 4 needs 4 GPUs, but 2 CUDA GPUs are visible "
                                  "(CUDA_VISIBLE_DEVICES='0,1'). Pass --tensor_parallel_size 2 or less, or make more "
                                  "GPUs visible.")
    assert cuda_calls == []


def test_vllms_cpu_backend_sees_no_cuda_gpu_and_is_not_counted(tmp_path, monkeypatch):
    stand_in_vllm(tmp_path, monkeypatch)
    monkeypatch.setattr(engines.gpus, "cuda_device_count", lambda: 0)
    try:
        assert engines.choose_backend("vllm", tensor_parallel_size=2).backend == "vllm"
    finally:
        sys.modules.pop("vllm", None)


def loads_refused(monkeypatch):
    """Any model, config or tokenizer load (or engine) fails the test: the refusals come before the first one."""

    def load(*args, **kwargs):
        raise AssertionError("a model, config or tokenizer was loaded before the pre-flight checks")

    names = ("load_tokenizer", "load_config", "resolve_model", "load_causal_lm", "make_engine", "resolve_student",
             "resolve_adapter", "build_student_engine")
    for module in [module for name, module in sys.modules.items() if name.startswith("prompt_distill")]:
        for name in names:
            if callable(getattr(module, name, None)):
                monkeypatch.setattr(module, name, load)


SCRIPTS = {
    "create_data.py": lambda tmp_path, *flags: create_data.main(
        ["--input_file", str(tmp_path / "in.txt"), "--output_file", str(tmp_path / "out" / "labels.jsonl"), *flags]),
    "evaluate.py": lambda tmp_path, *flags: evaluate.main(
        ["--model_path", str(tmp_path / "adapter"), "--output_file", "none", *flags]),
    "predict.py": lambda tmp_path, *flags: predict.main(
        ["--model_path", str(tmp_path / "adapter"), "--input_file", str(tmp_path / "in.txt"), *flags]),
    "benchmark.py": lambda tmp_path, *flags: benchmark.main(
        ["--model_path", str(tmp_path / "adapter"), "--output_file", "none", "--split", "all", "--num_samples", "2",
         "--test_file", str(tmp_path / "in.txt"), *flags]),
}


@pytest.mark.parametrize("script", SCRIPTS)
def test_backend_vllm_without_vllm_is_one_error_line(script, tmp_path, monkeypatch, capsys):
    (tmp_path / "in.txt").write_text("Bonjour tout le monde\nHello world\nHola mundo\n", encoding="utf-8")
    no_vllm(monkeypatch)
    loads_refused(monkeypatch)
    assert SCRIPTS[script](tmp_path, "--backend", "vllm") == 2
    assert one_error_line(capsys) == ("error: --backend vllm: vllm is not installed. Install vLLM (see docs/vllm.md) "
                                      "or pass --backend transformers.")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("script", ["create_data.py", "benchmark.py"])
def test_tensor_parallel_without_vllm_is_one_error_line(script, tmp_path, monkeypatch, capsys):
    (tmp_path / "in.txt").write_text("Bonjour tout le monde\nHello world\nHola mundo\n", encoding="utf-8")
    loads_refused(monkeypatch)
    assert SCRIPTS[script](tmp_path, "--backend", "transformers", "--tensor_parallel_size", "4") == 2
    assert one_error_line(capsys) == (
        "error: --tensor_parallel_size 4 needs vLLM, but the backend is transformers (--backend transformers); "
        "transformers runs on one device. Make vLLM importable, or drop --tensor_parallel_size.")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("script", ["create_data.py", "benchmark.py"])
def test_tensor_parallel_above_the_gpus_is_refused_before_any_load(script, tmp_path, monkeypatch, capsys,
                                                                     cuda_calls):
    (tmp_path / "in.txt").write_text("Bonjour tout le monde\nHello world\nHola mundo\n", encoding="utf-8")
    stand_in_vllm(tmp_path, monkeypatch)
    loads_refused(monkeypatch)
    assert SCRIPTS[script](tmp_path, "--tensor_parallel_size", "8") == 2
    assert one_error_line(capsys) == ("error: --tensor_parallel_size 8 needs 8 GPUs, but 2 CUDA GPUs are visible "
                                      "(CUDA_VISIBLE_DEVICES='0,1'). Pass --tensor_parallel_size 2 or less, or make "
                                      "more GPUs visible.")
    assert not (tmp_path / "out").exists() and cuda_calls == []
