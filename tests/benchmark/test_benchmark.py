"""benchmark.py: thinking length, teacher settings, statistics, and a full run on a tiny model with real engines."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

import benchmark as benchmark_cli
from prompt_distill.benchmark.measure import (
    DEFAULT_EMULATED_THINKING_TOKENS,
    Request,
    Thinking,
    choose_thinking,
    median_thinking_tokens,
    percentile,
    ratios,
    summarize_side,
    teacher_params,
)
from prompt_distill.data import DataError
from prompt_distill.task import language_task
from tests.tiny_models import save_model_dir, tiny_llama


def write_sidecar(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records), "utf-8")
    return path


def test_thinking_length_is_the_median_of_labelled_generations(tmp_path):
    sidecar = write_sidecar(tmp_path / "run.meta.jsonl", [
        {"status": "labelled", "completion_tokens": 900},
        {"status": "labelled", "completion_tokens": 300},
        {"status": "labelled", "completion_tokens": 500},
        {"status": "labelled", "completion_tokens": 0},  # a CPU run's scored answer: no thought
        {"status": "unparseable", "completion_tokens": 4096},  # a runaway thought is not the typical one
    ])
    assert median_thinking_tokens(sidecar) == 500
    thinking = choose_thinking("transformers", None, str(sidecar))
    assert thinking == Thinking(True, 500, f"median of {sidecar}")


def test_sidecar_without_generated_tokens_is_an_error_naming_the_file(tmp_path):
    sidecar = write_sidecar(tmp_path / "cpu.meta.jsonl", [{"status": "labelled", "completion_tokens": 0}])
    with pytest.raises(DataError, match="cpu.meta.jsonl.*--thinking_tokens"):
        median_thinking_tokens(sidecar)


def test_thinking_defaults_per_backend():
    assert choose_thinking("vllm", None, None).emulated is False
    default = choose_thinking("transformers", None, None)
    assert default.tokens == DEFAULT_EMULATED_THINKING_TOKENS and "ASSUMPTION" in default.describe()
    assert choose_thinking("vllm", 40, None) == Thinking(True, 40, "--thinking_tokens")
    with pytest.raises(ValueError, match="at least 1"):
        choose_thinking("transformers", 0, None)


def test_teacher_params_real_and_emulated():
    task = language_task()
    real = teacher_params(task, "vllm", Thinking(False, None, ""), max_tokens=4096, temperature=0.15, seed=3)
    assert (real.max_tokens, real.min_tokens, real.answer_labels, real.seed) == (4096, 0, None, 3)
    forced = teacher_params(task, "transformers", Thinking(True, 64, ""), max_tokens=4096, temperature=0.15, seed=0)
    assert (forced.max_tokens, forced.min_tokens) == (64, 64)
    assert forced.answer_labels == task.labels  # the CPU teacher still ends with a label, scored after the thought
    on_vllm = teacher_params(task, "vllm", Thinking(True, 64, ""), max_tokens=4096, temperature=0.15, seed=0)
    assert on_vllm.answer_labels is None and on_vllm.min_tokens == 64


def test_percentile_matches_numpy():
    generator = random.Random(7)
    for size in (1, 2, 5, 10, 31):
        values = [generator.uniform(0, 10) for _ in range(size)]
        for fraction in (0.0, 0.5, 0.9, 1.0):
            assert percentile(values, fraction) == pytest.approx(np.percentile(values, fraction * 100))


def test_summary_and_ratios_hand_computed():
    teacher = [Request(6000, 5800, 300, 10.0, "de"), Request(6010, 5800, 500, 30.0, "en"),
               Request(6020, 5800, 400, 20.0, "fr")]
    student = [Request(20, None, 2, 0.5, "de"), Request(40, None, 2, 1.5, "en"), Request(30, None, 2, 1.0, "fr")]
    t = summarize_side(teacher, [40.0, 60.0], batch_size=10)  # 20 samples in 100 s
    s = summarize_side(student, [2.0, 2.0], batch_size=10)  # 20 samples in 4 s
    assert t["prompt_tokens"] == 6010 and t["cached_prompt_tokens"] == 5800 and t["completion_tokens"] == 400
    assert t["tokens_per_request"] == 6410 and s["tokens_per_request"] == 32 and s["cached_prompt_tokens"] is None
    assert t["latency_median_s"] == 20.0 and t["latency_p90_s"] == pytest.approx(28.0)
    assert t["throughput_samples_per_s"] == pytest.approx(0.2) and s["throughput_samples_per_s"] == pytest.approx(5.0)
    r = ratios(t, s)
    assert r["tokens_per_request"] == pytest.approx(6410 / 32)
    assert r["prompt_tokens"] == pytest.approx(6010 / 30)
    assert r["latency_median"] == pytest.approx(20.0)
    assert r["latency_p90"] == pytest.approx(28.0 / 1.4)
    assert r["throughput"] == pytest.approx(25.0)


@pytest.fixture(scope="module")
def tiny_model_dir(smollm2_tokenizer, tmp_path_factory):
    """A random two-layer model with SmolLM2's tokenizer and chat template: real prompts, instant forward passes."""
    return save_model_dir(tiny_llama(len(smollm2_tokenizer)), smollm2_tokenizer, tmp_path_factory.mktemp("tiny"))


def test_full_run_on_real_engines(tiny_model_dir, tmp_path, capsys, monkeypatch):
    from prompt_distill.engines.hf import HFEngine

    calls = []  # (model, number of chats, max_tokens) of every generate call, in order
    original = HFEngine.generate

    def recording(self, chats, params, on_batch=None):
        calls.append(("teacher" if chats[0][0]["role"] == "system" else "student", len(chats), params.max_tokens))
        return original(self, chats, params, on_batch)

    monkeypatch.setattr(HFEngine, "generate", recording)
    output = tmp_path / "bench.json"
    code = benchmark_cli.main([
        "--backend", "transformers", "--teacher_model", str(tiny_model_dir), "--no_adapter",
        "--base_model", str(tiny_model_dir), "--thinking_tokens", "3", "--num_samples", "3", "--batch_size", "2",
        "--rounds", "2", "--output_file", str(output),
    ])
    printed = capsys.readouterr().out
    assert code == 0
    results = json.loads(output.read_text("utf-8"))
    teacher, student = results["requests"]["teacher"], results["requests"]["student"]
    assert len(teacher) == len(student) == 3
    assert all(r["completion_tokens"] == 3 for r in teacher)  # forced: a random model would stop anywhere
    assert all(r["answer"] in language_task().labels for r in teacher)  # scored after the emulated thought
    assert all(t["prompt_tokens"] > 2000 + s["prompt_tokens"] for t, s in zip(teacher, student, strict=True))
    assert all(t["cached_prompt_tokens"] > 2000 for t in teacher)
    summary = results["summary"]
    assert results["ratios"]["tokens_per_request"] == pytest.approx(
        summary["teacher"]["tokens_per_request"] / summary["student"]["tokens_per_request"])
    assert summary["teacher"]["latency_median_s"] == pytest.approx(np.median([r["latency_s"] for r in teacher]))
    assert len(results["batch_seconds"]["teacher"]) == len(results["batch_seconds"]["student"]) == 2
    assert results["thinking"] == {"emulated": True, "tokens": 3, "source": "--thinking_tokens", "answers": 1}
    assert results["loading"] == "together" and "SEQUENTIAL" not in printed
    # warm-up both, then single requests alternating who goes first, then the throughput rounds alternating too
    assert calls == [("teacher", 2, 1), ("student", 2, 1),
                     ("teacher", 1, 3), ("student", 1, 8), ("student", 1, 8), ("teacher", 1, 3),
                     ("teacher", 1, 3), ("student", 1, 8),
                     ("teacher", 2, 3), ("student", 2, 8), ("student", 2, 8), ("teacher", 2, 3)]
    assert "EMULATED thinking: exactly 3 forced tokens" in printed
    assert f"{results['ratios']['tokens_per_request']:.1f}x" in printed


def test_missing_adapter_is_a_clear_error(capsys, tmp_path):
    code = benchmark_cli.main(["--backend", "transformers", "--model_path", str(tmp_path / "nope"),
                               "--output_file", "none"])
    assert code == 2
    assert "nope does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--max_samples", "--batch_size", "--rounds"])
def test_counts_below_one_are_refused(capsys, flag):
    assert benchmark_cli.main(["--backend", "transformers", flag, "0", "--output_file", "none"]) == 2
    assert f"{flag} must be at least 1" in capsys.readouterr().err


def test_too_few_sentences_in_the_split(capsys, tmp_path):
    sentences = tmp_path / "one.txt"
    sentences.write_text("Guten Morgen\n", "utf-8")
    code = benchmark_cli.main(["--backend", "transformers", "--test_file", str(sentences), "--split", "all",
                               "--output_file", "none"])
    assert code == 2
    assert "1 sentences in split 'all'" in capsys.readouterr().err


def test_sequential_run_loads_measures_and_releases_one_engine_at_a_time(tiny_model_dir, tmp_path, capsys,
                                                                          monkeypatch):
    import prompt_distill.benchmark.run as benchmark_run
    from prompt_distill.engines.hf import HFEngine

    events = []  # engine loads, generate calls and releases, in order
    original_init, original_generate, original_release = HFEngine.__init__, HFEngine.generate, \
        benchmark_run.release_engine

    def loading(self, *args, **kwargs):
        events.append("load")
        original_init(self, *args, **kwargs)

    def recording(self, chats, params, on_batch=None):
        events.append(("teacher" if chats[0][0]["role"] == "system" else "student", len(chats), params.max_tokens))
        return original_generate(self, chats, params, on_batch)

    def releasing(engine):
        original_release(engine)
        events.append(("released", engine.model))

    monkeypatch.setattr(HFEngine, "__init__", loading)
    monkeypatch.setattr(HFEngine, "generate", recording)
    monkeypatch.setattr(benchmark_run, "release_engine", releasing)
    output = tmp_path / "bench.json"
    code = benchmark_cli.main([
        "--backend", "transformers", "--teacher_model", str(tiny_model_dir), "--no_adapter",
        "--base_model", str(tiny_model_dir), "--thinking_tokens", "2", "--num_samples", "2", "--batch_size", "2",
        "--rounds", "1", "--load_engines", "sequential", "--output_file", str(output),
    ])
    printed = capsys.readouterr().out
    assert code == 0
    # the teacher loaded, warmed up, timed one request at a time, then one batch, released; then the student
    assert events == ["load", ("teacher", 2, 1), ("teacher", 1, 2), ("teacher", 1, 2), ("teacher", 2, 2),
                      ("released", None),
                      "load", ("student", 2, 1), ("student", 1, 8), ("student", 1, 8), ("student", 2, 8),
                      ("released", None)]
    results = json.loads(output.read_text("utf-8"))
    assert results["loading"] == "sequential"
    assert len(results["requests"]["teacher"]) == len(results["requests"]["student"]) == 2
    assert results["ratios"]["tokens_per_request"] > 1
    assert "SEQUENTIAL: one engine loaded at a time" in printed and "did not alternate" in printed
