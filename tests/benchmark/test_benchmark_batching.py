"""scripts/bench_batching.py / benchmark/batching.py: the student is timed on the chat it was trained on (the
adapter's recorded student_framing), not on a lone user turn (issue 25)."""

import importlib.util
import json

import pytest

from prompt_distill.benchmark.batching import measure_batching
from prompt_distill.engines.base import Generation, GenerationParams
from prompt_distill.student_framing import EMPTY_SYSTEM, USER_ONLY, framed_messages
from prompt_distill.task import language_task
from tests.eval_helpers import ROOT

TASK = language_task()


class RecordingEngine:
    """Stands in for HFEngine: answers "en" and keeps every chat it was given, with the batch size of the call."""

    def __init__(self, *args, **kwargs):
        self.batch_size = kwargs.get("batch_size", 1)
        self.calls = []
        RecordingEngine.last = self

    def generate(self, chats, params, on_batch=None):
        self.calls.append((self.batch_size, chats))
        return [Generation("en", 10, 1, "stop", 0.001) for _ in chats]


@pytest.mark.parametrize("framing", [EMPTY_SYSTEM, USER_ONLY])
def test_both_modes_run_the_chats_in_the_given_framing(framing):
    engine = RecordingEngine()
    texts = ["Hello there", "Guten Tag", "Bonjour"]
    result = measure_batching(engine, texts, TASK, GenerationParams(max_tokens=2), 3, framing=framing)
    expected = [framed_messages(text, framing) for text in texts]
    assert [size for size, _ in engine.calls] == [2, 1, 3]  # warm-up, one at a time, batched
    assert engine.calls[0][1] == expected[:2] and engine.calls[1][1] == expected and engine.calls[2][1] == expected
    assert result.differing_answers == 0 and result.batched.labels == ["en"] * 3


def load_script():
    spec = importlib.util.spec_from_file_location("bench_batching", ROOT / "scripts" / "bench_batching.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_uses_the_adapters_recorded_framing(tmp_path, monkeypatch, capsys):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "smollm2-135m-instruct"}))
    task = {"name": TASK.name, "fingerprint": TASK.fingerprint(), "labels": list(TASK.labels)}
    (adapter / "run_record.json").write_text(json.dumps({
        "base_model": "smollm2-135m-instruct", "student_framing": EMPTY_SYSTEM, "task": task,
        "split": {"split": "train", "eval_fraction": 0.2, "split_seed": 0},
    }))
    monkeypatch.setattr("prompt_distill.engines.hf.HFEngine", RecordingEngine)
    assert load_script().main(["--model_path", str(adapter), "--num_samples", "3", "--batch_size", "3"]) == 0
    calls = RecordingEngine.last.calls
    assert len(calls) == 3 and len(calls[-1][1]) == 3
    assert all(chat[0] == {"role": "system", "content": ""} and chat[1]["role"] == "user" and len(chat) == 2
               for _, chats in calls for chat in chats)
    assert "student framing empty_system" in capsys.readouterr().out
