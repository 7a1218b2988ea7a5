"""The example tasks in example-data/<task>/: aligned gold labels, enough sentences per label, a long prompt whose
worked examples are not in the data, and the first stage of `make demo TASK=<task>` on two sentences."""

import ast
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from prompt_distill.data import gold_path_for, read_gold, read_sentences, split_of
from prompt_distill.task import load_task

ROOT = Path(__file__).resolve().parents[1]
TASKS = sorted(path.name for path in (ROOT / "example-data").iterdir() if (path / "prompt.md").is_file())
MIN_SENTENCES = 400
MIN_PER_LABEL = 30
MIN_PROMPT_TOKENS = 1500


def _task(name):
    folder = ROOT / "example-data" / name
    return folder, load_task(str(folder / "prompt.md"), str(folder / "labels.txt"))


def test_there_is_a_second_task():
    assert "feedback_triage" in TASKS


@pytest.mark.parametrize("name", TASKS)
def test_gold_labels_align_and_cover_every_label(name):
    folder, task = _task(name)
    sentences = folder / "sentences.txt"
    texts = read_sentences(sentences).texts
    gold = read_gold(sentences, task)  # raises on a misaligned line, an unknown label or a conflicting duplicate
    assert gold is not None and gold_path_for(sentences) == folder / "sentences.gold.tsv"
    assert len(texts) >= MIN_SENTENCES
    assert len(set(texts)) == len(texts), "a sentence appears twice"
    counts = Counter(gold[text] for text in texts)
    assert set(counts) == set(task.labels)
    assert min(counts.values()) >= MIN_PER_LABEL, counts
    held_out = Counter(gold[text] for text in texts if split_of(text) == "eval")
    assert set(held_out) == set(task.labels), "a label is missing from the held-out split"


@pytest.mark.parametrize("name", TASKS)
def test_worked_examples_are_not_in_the_data(name):
    folder, task = _task(name)
    examples = re.findall(r"^Ticket: (.+)$", task.system_prompt, flags=re.MULTILINE)
    assert len(examples) >= 3 * len(task.labels)
    data = {text.strip().lower() for text in read_sentences(folder / "sentences.txt").texts}
    assert not [example for example in examples if example.strip().lower() in data]
    answers = re.findall(r"^Final Answer: (\w+)$", task.system_prompt, flags=re.MULTILINE)
    assert set(answers) == set(task.labels), "every label needs worked examples"


@pytest.mark.parametrize("name", TASKS)
def test_prompt_is_long(name, smollm2_tokenizer):
    _, task = _task(name)
    assert len(smollm2_tokenizer(task.system_prompt)["input_ids"]) >= MIN_PROMPT_TOKENS


@pytest.mark.slow
def test_make_demo_first_stage_on_two_sentences(tmp_path, smollm2_dir):
    output = tmp_path / "teacher.jsonl"
    env = {**os.environ, "SAMPLES": "2", "STOP_AFTER": "1", "DATA": str(output)}
    run = subprocess.run(["make", "-s", "demo", "TASK=feedback_triage"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "== 1/3 teacher labels 2 sentences" in run.stdout
    assert "== 2/3" not in run.stdout
    _, task = _task("feedback_triage")
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    first_two = read_sentences(ROOT / "example-data/feedback_triage/sentences.txt").texts[:2]
    assert [line["messages"][0]["content"] for line in lines] == first_two
    assert all(line["messages"][1]["content"] in task.labels for line in lines)
    sidecar = [json.loads(line) for line in (tmp_path / "teacher.meta.jsonl").read_text().splitlines()]
    assert all(record["prompt_tokens"] >= MIN_PROMPT_TOKENS for record in sidecar)  # the prompt was sent


def test_make_demo_refuses_an_unknown_task():
    run = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, env={**os.environ, "TASK": "no_such_task"},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "TASK=no_such_task needs ./example-data/no_such_task/prompt.md" in run.stderr


def test_fresh_check_set_is_aligned_and_new():
    """feedback_triage/fresh.txt was written after the prompt was fixed: a second test set that no choice saw."""
    folder, task = _task("feedback_triage")
    fresh = read_sentences(folder / "fresh.txt").texts
    gold = read_gold(folder / "fresh.txt", task)
    assert Counter(gold[text] for text in fresh) == {label: 30 for label in task.labels}
    assert not set(fresh) & set(read_sentences(folder / "sentences.txt").texts)


@pytest.mark.slow
def test_probe_scores_the_labels_with_and_without_the_prompt(smollm2_dir):
    folder = ROOT / "example-data" / "feedback_triage"
    run = subprocess.run(
        [sys.executable, "scripts/probe_task.py", "--prompt_file", str(folder / "prompt.md"), "--labels",
         str(folder / "labels.txt"), "--test_file", str(folder / "sentences.txt"), "--split", "train",
         "--max_samples", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "3 sentences, gold counts:" in run.stdout
    tokens = int(re.search(r"prompt tokens \(teacher chat of the first sentence\): (\d+)", run.stdout).group(1))
    assert tokens >= MIN_PROMPT_TOKENS
    for setting in ("without prompt", "with prompt"):
        found = re.search(rf"{setting}: accuracy +[\d.]+% \((\d)/3\), predicted (\{{.*?\}})", run.stdout)
        assert found, run.stdout
        assert sum(ast.literal_eval(found.group(2)).values()) == 3
