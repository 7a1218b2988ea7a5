"""--num_samples K through create_data.py with a real engine: the transformers backend and the embedded SmolLM2
(K=3, killed mid-run, resumed), and the refusals of a K that cannot sample. The vLLM CPU lane's run is in
test_votes_vllm_cpu.py."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import create_data
from prompt_distill.data import iter_jsonl, read_training_file
from prompt_distill.labeling.run_files import RunFiles
from prompt_distill.task import load_task
from tests.labeling.test_create_data_cli import SHORT_PROMPT, sidecar_count
from tests.test_user_files import one_error_line
from tests.wandb_offline import offline_runs

REPO = Path(__file__).resolve().parents[2]
SENTENCES = 8
K = 3


def write_inputs(tmp_path):
    sentences = (REPO / "example-data" / "multilingual.txt").read_text("utf-8").splitlines()[:SENTENCES]
    (tmp_path / "in.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    (tmp_path / "prompt.md").write_text(SHORT_PROMPT, encoding="utf-8")
    return sentences


def check_every_sentence_once_with_all_samples(files, sentences, prompt):
    records = [record for _, record in iter_jsonl(files.sidecar)]
    assert sorted(record["index"] for record in records) == list(range(len(sentences)))  # each sentence once
    for record in records:
        assert len(record["samples"]) == K
        assert sum(record["votes"].values()) + sum(s["label"] == "unparseable" for s in record["samples"]) == K
        assert record["agreement"] == max(record["votes"].values(), default=0) / K
        assert record["label"] in record["votes"] or record["status"] == "unparseable"
        # the engine scored every sample's labels; the record keeps their mean
        assert all(sample["label_probabilities"] for sample in record["samples"])
        for label, probability in record["label_probabilities"].items():
            assert probability == pytest.approx(sum(s["label_probabilities"][label] for s in record["samples"]) / K)
    labelled = [text for text, _ in read_training_file(files.training, load_task(str(prompt)))]
    assert labelled == [record["text"] for record in sorted(records, key=lambda r: r["index"])
                        if record["status"] == "labelled"]
    return records


@pytest.mark.slow
def test_three_samples_killed_mid_run_then_resumed_gives_every_sentence_once_with_all_three(tmp_path, smollm2_dir):
    sentences = write_inputs(tmp_path)
    output = tmp_path / "data" / "labels.jsonl"
    # Batches of 2 requests and 3 samples per sentence: a kill lands between the samples of a sentence.
    command = [
        sys.executable, str(REPO / "create_data.py"), "--backend", "transformers",
        "--teacher_model", "smollm2-135m-instruct", "--input_file", str(tmp_path / "in.txt"),
        "--output_file", str(output), "--prompt_file", str(tmp_path / "prompt.md"), "--report_to", "none",
        "--max_tokens", "6", "--temperature", "1.0", "--batch_size", "2", "--max_retries", "1",
        "--num_samples", str(K),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    files = RunFiles.for_output(output)

    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + 300
    while sidecar_count(files.sidecar) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = sidecar_count(files.sidecar)
    assert 2 <= done_before < SENTENCES, process.stdout.read().decode()[-2000:]
    for _, record in iter_jsonl(files.sidecar):  # only whole sentences were written
        assert len(record["samples"]) == K

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert f"Already done:         {done_before}" in rerun.stdout
    assert f"{K} answers each" in rerun.stdout and "Agreement (output):" in rerun.stdout
    records = check_every_sentence_once_with_all_samples(files, sentences, tmp_path / "prompt.md")
    # At temperature 1 the samples of a sentence are drawn apart: some sentence's samples differ.
    assert any(len({sample["label"] for sample in record["samples"]}) > 1 or
               len({sample["completion_tokens"] for sample in record["samples"]}) > 1 for record in records)


@pytest.mark.parametrize("flags, message", [
    (["--num_samples", "0"], "--num_samples must be at least 1, got 0."),
    (["--num_samples", "3", "--temperature", "0"], "--num_samples 3 with --temperature 0: greedy decoding"),
    (["--num_samples", "3", "--max_tokens", "0"], "--num_samples 3 with --max_tokens 0: the labels are scored"),
])
def test_a_number_of_samples_that_cannot_differ_is_refused_before_any_model_loads(tmp_path, capsys, flags,
                                                                                   message):
    write_inputs(tmp_path)
    code = create_data.main(["--backend", "transformers", "--teacher_model", "smollm2-135m-instruct",
                             "--input_file", str(tmp_path / "in.txt"), "--output_file", str(tmp_path / "o.jsonl"),
                             "--report_to", "none", *flags])
    assert code == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "o.jsonl").exists()


def test_the_agreement_of_the_samples_reaches_wandb(offline, tmp_path, smollm2_dir):
    write_inputs(tmp_path)
    output = tmp_path / "data" / "labels.jsonl"
    code = create_data.main(["--backend", "transformers", "--teacher_model", "smollm2-135m-instruct",
                             "--input_file", str(tmp_path / "in.txt"), "--output_file", str(output),
                             "--prompt_file", str(tmp_path / "prompt.md"), "--max_samples", "3",
                             "--max_tokens", "4", "--temperature", "1.0", "--num_samples", str(K)])
    assert code == 0
    records = [record for _, record in iter_jsonl(RunFiles.for_output(output).sidecar)]
    expected = sum(record["agreement"] for record in records) / len(records)
    (run,) = offline_runs(offline)
    assert run.metric("label/agreement_mean") == [pytest.approx(expected)]
    assert run.history[-1]["label/unanimous"] == sum(record["agreement"] == 1.0 for record in records)
    assert run.summary["label/agreement_mean_total"] == pytest.approx(expected)
    assert run.summary["label/num_samples"] == K
    assert run.metric("label/generated_tokens_total") == [sum(s["completion_tokens"] for r in records
                                                               for s in r["samples"])]
