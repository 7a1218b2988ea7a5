"""scripts/bench_batching.py / benchmark/batching.py: the student is timed on the chat it was trained on (the
adapter's recorded student_framing), not on a lone user turn (issue 25)."""

import importlib.util

import pytest

from prompt_distill.benchmark.batching import measure_batching
from prompt_distill.engines.base import GenerationParams
from prompt_distill.engines.hf import HFEngine
from prompt_distill.student_framing import EMPTY_SYSTEM, USER_ONLY, framed_messages
from prompt_distill.task import language_task
from tests.eval_helpers import ROOT, make_adapter

TASK = language_task()


@pytest.fixture
def recorded(monkeypatch):
    """The real HFEngine, with every generate call's batch size and chats recorded on the way through."""
    calls = []
    real_generate = HFEngine.generate

    def generate(self, chats, params, on_batch=None):
        calls.append((self.batch_size, chats))
        return real_generate(self, chats, params, on_batch)

    monkeypatch.setattr(HFEngine, "generate", generate)
    return calls


@pytest.mark.parametrize("framing", [EMPTY_SYSTEM, USER_ONLY])
def test_both_modes_run_the_chats_in_the_given_framing(framing, smollm2_dir, recorded):
    engine = HFEngine(str(smollm2_dir), device="cpu", batch_size=3)
    texts = ["Hello there", "Guten Tag", "Bonjour"]
    result = measure_batching(engine, texts, TASK, GenerationParams(max_tokens=2), 3, framing=framing)
    expected = [framed_messages(text, framing) for text in texts]
    assert [size for size, _ in recorded] == [2, 1, 3]  # warm-up, one at a time, batched
    assert recorded[0][1] == expected[:2] and recorded[1][1] == expected and recorded[2][1] == expected
    assert len(result.batched.labels) == 3


def load_script():
    spec = importlib.util.spec_from_file_location("bench_batching", ROOT / "scripts" / "bench_batching.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_uses_the_adapters_recorded_framing(tmp_path, smollm2_dir, recorded, capsys):
    adapter = make_adapter(tmp_path / "adapter", smollm2_dir, student_framing=EMPTY_SYSTEM)
    assert load_script().main(["--model_path", str(adapter), "--num_samples", "3", "--batch_size", "3"]) == 0
    calls = recorded
    assert calls and len(calls[-1][1]) == 3
    assert all(chat[0] == {"role": "system", "content": ""} and chat[1]["role"] == "user" and len(chat) == 2
               for _, chats in calls for chat in chats)
    assert "student framing empty_system" in capsys.readouterr().out
