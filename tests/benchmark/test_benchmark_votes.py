"""The benchmark of a teacher that votes (create_data.py --num_samples K): every sentence costs K answers, K times
the thinking tokens (issue 23)."""

import json

import pytest

import benchmark as benchmark_cli
from prompt_distill.benchmark.measure import Thinking, choose_thinking, median_thinking_tokens
from tests.benchmark.test_benchmark import tiny_model_dir, write_sidecar  # noqa: F401 (a fixture)


def test_a_voting_sidecar_gives_the_thinking_per_answer_and_its_number_of_answers(tmp_path):
    sidecar = write_sidecar(tmp_path / "votes.meta.jsonl", [
        {"status": "labelled", "completion_tokens": 100,
         "samples": [{"completion_tokens": 100}, {"completion_tokens": 300}, {"completion_tokens": 700}]},
        {"status": "labelled", "completion_tokens": 200,
         "samples": [{"completion_tokens": 200}, {"completion_tokens": 400}, {"completion_tokens": 900}]},
    ])
    assert median_thinking_tokens(sidecar) == 350  # over all six answers, not the two shown ones
    assert choose_thinking("transformers", None, str(sidecar)) == Thinking(True, 350, f"median of {sidecar}", 3)
    assert choose_thinking("transformers", None, str(sidecar), 5).answers == 5  # --teacher_samples wins
    with pytest.raises(ValueError, match="--teacher_samples must be at least 1"):
        choose_thinking("vllm", None, None, 0)


def test_the_teacher_answers_each_sentence_k_times_and_its_tokens_are_their_sum(tiny_model_dir, tmp_path,  # noqa: F811
                                                                                  capsys, monkeypatch):
    from prompt_distill.engines.hf import HFEngine

    calls = []  # (side, number of chats) of every generate call
    original = HFEngine.generate

    def recording(self, chats, params, on_batch=None):
        calls.append(("teacher" if chats[0][0]["role"] == "system" else "student", len(chats)))
        return original(self, chats, params, on_batch)

    monkeypatch.setattr(HFEngine, "generate", recording)
    output = tmp_path / "bench.json"
    code = benchmark_cli.main([
        "--backend", "transformers", "--teacher_model", str(tiny_model_dir), "--no_adapter",
        "--base_model", str(tiny_model_dir), "--thinking_tokens", "3", "--max_samples", "2", "--batch_size", "2",
        "--rounds", "1", "--teacher_samples", "3", "--output_file", str(output),
    ])
    printed = capsys.readouterr().out
    assert code == 0
    results = json.loads(output.read_text("utf-8"))
    teacher, student = results["requests"]["teacher"], results["requests"]["student"]
    assert len(teacher) == len(student) == 2  # per sentence
    assert all(request["completion_tokens"] == 3 * 3 for request in teacher)  # three answers of 3 forced tokens
    assert all(t["prompt_tokens"] > 3 * 2000 for t in teacher)
    assert results["thinking"]["answers"] == 3
    # warm-up: 2 sentences x 3; one sentence at a time: 3 requests; a throughput batch of 2 sentences: 6
    assert [count for side, count in calls if side == "teacher"] == [6, 3, 3, 6]
    assert [count for side, count in calls if side == "student"] == [2, 1, 1, 2]
    assert "3 sampled answers per sentence (majority vote), each thinking" in printed
    assert "per sentence" in printed and "VOTES: each teacher request is a sentence's 3 sampled answers" in printed
