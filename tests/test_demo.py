"""`make demo` runs the task the embedded teacher is competent at (feedback triage) and ends with the distillation
block; the language-ID run is one variable away and says it is a machinery check; `make benchmark` times the pair
`make demo` trained.

These tests check the wiring only: scripts/demo.sh runs with PY=echo, so each stage prints the command it would
run (the stages themselves are tested end to end in tests/test_example_tasks.py and the slow tests; the full demo's
output is the receipt docs/results/demo_feedback_triage.txt).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRIAGE = "./example-data/feedback_triage"


def demo(tmp_path, **env) -> str:
    paths = {"DATA": tmp_path / "d.jsonl", "ADAPTER": tmp_path / "a", "OUTPUT": tmp_path / "e.json"}
    run_env = {**os.environ, "PY": "echo", **{key: str(value) for key, value in paths.items()}, **env}
    run_env.pop("TASK", None) if "TASK" not in env else None
    run = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, env=run_env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_the_default_demo_is_feedback_triage_and_ends_with_the_distillation_block(tmp_path):
    out = demo(tmp_path)
    stages = [line for line in out.splitlines() if line.startswith(("create_data.py", "train_sft_trl.py",
                                                                     "evaluate.py"))]
    assert [line.split()[0] for line in stages] == ["create_data.py", "train_sft_trl.py", "evaluate.py"]
    for line in stages:
        assert f"--prompt_file {TRIAGE}/prompt.md --labels {TRIAGE}/labels.txt" in line
    assert f"--input_file {TRIAGE}/sentences.txt" in stages[0]
    assert "--max_samples" not in stages[0]  # every message: the teacher's accuracy on the held-out ones too
    baseline = (tmp_path / "e_baseline.log").read_text()  # the base model's run (its stdout goes to its log)
    assert baseline.startswith("evaluate.py --no_adapter")
    assert f"--baseline {tmp_path / 'e_baseline.json'}" in stages[-1]  # the distillation block
    assert "machinery" not in out


def test_language_id_is_one_variable_away_and_says_it_is_a_machinery_check(tmp_path):
    out = demo(tmp_path, TASK="language_id")
    assert "checks the machinery only" in out and "cannot follow the language-ID prompt" in out
    assert "--input_file ./example-data/multilingual.txt" in out
    assert "--prompt_file" not in out and "--baseline" not in out


def test_fresh_removes_only_the_demos_own_outputs(tmp_path):
    keep = tmp_path / "other.jsonl"
    for path in (tmp_path / "d.jsonl", tmp_path / "d.run.json", tmp_path / "e.json", keep):
        path.write_text("x")
    (tmp_path / "a").mkdir()
    demo(tmp_path, FRESH="1", STOP_AFTER="1")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["other.jsonl"]


def make_dry(*args) -> str:
    run = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_make_demo_and_make_benchmark_default_to_the_triage_pair():
    assert 'TASK="feedback_triage"' in make_dry("demo")
    bench = make_dry("benchmark")
    assert "--model_path models/demo_feedback_triage" in bench
    assert "--prompt_file example-data/feedback_triage/prompt.md" in bench
    language = make_dry("benchmark", "TASK=language_id")
    assert "--model_path models/demo_trl" in language and "--prompt_file" not in language
