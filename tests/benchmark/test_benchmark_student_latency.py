"""benchmark.py --student_latency on a tiny model + adapter: what it prints and saves (not how fast it is)."""

from __future__ import annotations

import json

import pytest

import benchmark as benchmark_cli
from prompt_distill.student_framing import EMPTY_SYSTEM
from tests.eval_helpers import gold_pairs, make_adapter, write_test_file
from tests.tiny_models import save_model_dir, tiny_llama


@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory, smollm2_tokenizer):
    folder = tmp_path_factory.mktemp("latency")
    base = save_model_dir(tiny_llama(len(smollm2_tokenizer)), smollm2_tokenizer, folder / "base")
    return make_adapter(folder / "adapter", base, base_model=str(base), student_framing=EMPTY_SYSTEM)


def test_student_latency_prints_and_saves_the_three_methods_and_the_ratios(tiny_adapter, tmp_path, capsys):
    sentences = write_test_file(tmp_path, gold_pairs()[:6], gold=False)
    output = tmp_path / "latency.json"
    code = benchmark_cli.main(["--student_latency", "--model_path", str(tiny_adapter), "--test_file", str(sentences),
                               "--split", "all", "--max_samples", "4", "--batch_size", "2",
                               "--output_file", str(output)])
    assert code == 0
    printed = capsys.readouterr().out
    for line in ("STUDENT LATENCY, 1 thread, batch size 1, 4 sentences (adapter merged into the weights)",
                 "greedy generate (old path)", "classify (one pass, all labels)", "bare forward, merged model",
                 "classify / bare forward: ", "x target); generate / bare forward: ",
                 "samples/s at batch size 2 vs", "with framing 'empty_system' (the user turn alone: "):
        assert line in printed, line
    results = json.loads(output.read_text("utf-8"))
    assert results["format"] == "prompt-distill-student-latency/1"
    assert results["threads"] == 1 and results["samples"] == 4
    assert results["student"]["merged"] is True and results["student"]["notes"] == []
    for method in ("generate", "classify", "bare_forward"):
        summary = results["latency_ms"][method]
        assert len(summary["all"]) == 4
        assert min(summary["all"]) - 1e-3 <= summary["median"] <= max(summary["all"]) + 1e-3
    ratios = results["ratios"]
    median = {m: results["latency_ms"][m]["median"] for m in ("classify", "bare_forward", "generate")}
    assert ratios["classify_over_bare"] == pytest.approx(median["classify"] / median["bare_forward"], rel=1e-3)
    assert ratios["target_classify_over_bare"] == 1.1
    # SmolLM2's template: the empty system message saves its injected 15-token system turn plus one marker.
    assert results["framing"]["user_turn_only_prompt_tokens_median"] - results["framing"]["prompt_tokens_median"] == 16
    throughput = results["throughput"]
    assert throughput["batch_size"] == 2
    assert throughput["speedup"] == pytest.approx(
        throughput["batched_samples_per_s"] / throughput["one_at_a_time_samples_per_s"])
    answers = results["answers"]
    assert 0 <= answers["scored_equals_generated"] <= answers["generated_a_label"] <= 4
