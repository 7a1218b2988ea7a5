"""evaluate.py as users run it: bad input gives one clear message; end to end on the embedded model on CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import evaluate
from tests.eval_helpers import ROOT, gold_pairs, make_adapter, write_teacher_file, write_test_file


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, smollm2_dir):
    folder = tmp_path_factory.mktemp("cli")
    teacher = write_teacher_file(folder / "teacher.jsonl", gold_pairs())
    # create_data.py's sidecar: the teacher's tokens per request, which the cascade's cost is counted from.
    sidecar = [{"text": text, "prompt_tokens": 1500, "completion_tokens": 2} for text, _ in gold_pairs()]
    (folder / "teacher.meta.jsonl").write_text("".join(json.dumps(line) + "\n" for line in sidecar), "utf-8")
    return make_adapter(folder / "adapter", smollm2_dir, data_file=teacher)


def fails_with(capsys, *argv) -> str:
    assert evaluate.main(list(argv)) == 2
    return capsys.readouterr().err


# -- bad input: one sentence, exit status 2, before any model is loaded -------------------------------------
def test_missing_adapter(capsys, tmp_path):
    err = fails_with(capsys, "--model_path", str(tmp_path / "nothing"))
    assert err.startswith("error: Adapter folder") and "does not exist" in err and "--no_adapter" in err


def test_base_model_that_does_not_match_the_adapter(capsys, adapter):
    err = fails_with(capsys, "--model_path", str(adapter), "--base_model", "Qwen/Qwen3-30B-A3B-Instruct-2507")
    assert "was trained on smollm2-135m-instruct" in err and "only works on its own base model" in err


def test_unknown_gold_label(capsys, adapter, tmp_path):
    test_file = write_test_file(tmp_path, [("Hello there", "en"), ("Bonjour", "french")])
    err = fails_with(capsys, "--model_path", str(adapter), "--test_file", str(test_file), "--split", "all")
    assert "sentences.gold.tsv:2: unknown label 'french'" in err


def test_test_file_without_gold_or_teacher(capsys, adapter, tmp_path):
    test_file = write_test_file(tmp_path, gold_pairs()[:5], gold=False)
    # The adapter's training data would be the teacher's labels (its run record's data_file): "none" leaves them out.
    err = fails_with(capsys, "--model_path", str(adapter), "--test_file", str(test_file), "--teacher_file", "none")
    assert "has no gold labels" in err and "--teacher_file" in err


def test_missing_files(capsys, adapter, tmp_path):
    assert "not found" in fails_with(capsys, "--model_path", str(adapter), "--test_file", str(tmp_path / "x.txt"))
    assert "not found" in fails_with(capsys, "--predictions_file", str(tmp_path / "r.json"))
    bad_teacher = tmp_path / "t.jsonl"
    bad_teacher.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "xx"}]}\n')
    err = fails_with(capsys, "--model_path", str(adapter), "--teacher_file", str(bad_teacher))
    assert "t.jsonl:1: answer 'xx' is not a label" in err


# -- end to end -------------------------------------------------------------------------------------------
def run_cli(*argv) -> subprocess.CompletedProcess:
    # One thread: on a shared 2-core machine, two threads waiting on each other make generation many times slower.
    # wandb disabled: the default --report_to wandb would write runs into the repository's ./wandb.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, str(ROOT / "evaluate.py"), *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def report_lines(stdout: str) -> list[str]:
    """The report without the lines that name output files or say what was loaded, or the wandb run (a new one
    for each run: evaluate.py reports to wandb by default)."""
    start = stdout.index("CONFUSION MATRIX")
    return [line for line in stdout[start:].splitlines()
            if "saved to" not in line and "image:" not in line and not line.startswith("wandb:")]


@pytest.mark.slow
def test_end_to_end_on_the_held_out_split_then_rescored_identically(adapter, tmp_path):
    results = tmp_path / "results.json"
    first = run_cli("--model_path", str(adapter), "--max_samples", "6", "--batch_size", "6", "--defer_below", "0.5",
                    "--teacher_file", str(adapter.parent / "teacher.jsonl"), "--output_file", str(results))
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout
    assert "None of the 6 evaluated sentences is in the adapter's training data" in out
    sample_lines = [line for line in out.splitlines() if line[:3] in ("✓ [", "✗ [")]
    assert len(sample_lines) == 6 and sample_lines[-1].split("]")[0].endswith("6/6")
    for section in ("CONFUSION MATRIX", "PER-LABEL ACCURACY", "MOST PROBLEMATIC LABELS", "EVALUATION SUMMARY",
                    "TEACHER FIDELITY", "CONFIDENCE", "CASCADE TO THE TEACHER"):
        assert section in out
    assert "Answers: every label scored in one forward pass" in out
    assert "Expected calibration error (15 equal-width bins): " in out
    cascade_line = next(line for line in out.splitlines() if line.startswith("  Cascade at P = 0.5: "))
    assert "deferred to the teacher; tokens/request" in cascade_line and "teacher alone 1,502.0" in cascade_line
    assert "sample/s" in first.stderr  # the progress bar
    saved = json.loads(results.read_text("utf-8"))
    assert saved["split"]["split"] == "eval" and saved["summary"]["total"] == 6
    assert saved["adapter"] == str(adapter) and saved["model"] == "smollm2-135m-instruct"
    assert len(saved["confusion_matrix"]["array"]) == 13 and len(saved["confusion_matrix"]["array"][0]) == 14
    assert sum(map(sum, saved["confusion_matrix"]["array"])) == 6
    assert all(p["raw"] is not None for p in saved["predictions"])
    for p in saved["predictions"]:  # one distribution over the labels per sentence; the answer is its top label
        assert sorted(p["probabilities"]) == sorted(saved["task"]["labels"])
        assert sum(p["probabilities"].values()) == pytest.approx(1.0)
        assert p["predicted"] == max(p["probabilities"], key=p["probabilities"].get)
        assert p["probability"] == p["probabilities"][p["predicted"]] and p["completion_tokens"] >= 2
    confidence, cascade = saved["confidence"], saved["cascade"]
    assert [row["answered"] for row in confidence["coverage"]] == [6, 6, 5, 5, 3]
    below = sum(p["probability"] < 0.5 for p in saved["predictions"])
    assert cascade["deferred"] == below and cascade["below_without_teacher"] == 0  # every sentence has a teacher
    assert results.with_name("results.confusion.png").stat().st_size > 1000
    assert results.with_name("results.reliability.png").stat().st_size > 1000

    again = tmp_path / "again.json"
    second = run_cli("--predictions_file", str(results), "--output_file", str(again))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "no model loaded" in second.stdout and "Loading weights" not in second.stderr
    rescored = json.loads(again.read_text("utf-8"))
    for key in ("summary", "confusion_matrix", "per_label", "error_examples", "fidelity", "predictions", "split",
                "confidence", "cascade"):
        assert rescored[key] == saved[key], key
    assert report_lines(second.stdout) == report_lines(out)


@pytest.mark.slow
def test_constrained_answers_are_always_labels(adapter, tmp_path):
    results = tmp_path / "constrained.json"
    run = run_cli("--model_path", str(adapter), "--max_samples", "3", "--answer_mode", "generate", "--max_tokens",
                  "2", "--constrained", "--output_file", str(results))
    assert run.returncode == 0, run.stderr[-3000:]
    saved = json.loads(results.read_text("utf-8"))
    assert saved["summary"]["unparseable"] == 0 and saved["generation"]["constrained"] is True
    assert all(p["predicted"] in saved["task"]["labels"] for p in saved["predictions"])
    assert Path(results.with_name("constrained.confusion.png")).is_file()
    assert saved["confidence"] is None and not results.with_name("constrained.reliability.png").exists()
    assert "Confidence: no label probabilities" in run.stdout


@pytest.mark.slow
def test_batching_benchmark_prints_both_rates_and_the_ratio():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_batching.py"), "--num_samples", "4",
                          "--batch_size", "4", "--max_tokens", "2", "--threads", "1"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    single = next(line for line in lines if line.startswith("one at a time (batch 1)"))
    batched = next(line for line in lines if line.startswith("batched (batch 4)"))
    rate_single, rate_batched = float(single.split()[-2]), float(batched.split()[-2])
    ratio = float(next(line for line in lines if line.startswith("speed-up:")).split()[1].rstrip("x"))
    assert rate_single > 0 and rate_batched > 0
    assert ratio == pytest.approx(rate_batched / rate_single, rel=0.02)
    assert "answers that differ between the modes: 0 of 4" in run.stdout


# -- --predictions_file: every saved prediction is checked, errors name the file and the position -----------
def write_results(path, mutate=None, scored=False) -> Path:
    """A results file as evaluate.py writes it (build_results on four predictions, no model), then ``mutate``;
    ``scored``: with the label probabilities of --answer_mode scored."""
    from prompt_distill.evaluation.outputs import write_json
    from prompt_distill.evaluation.results import META_KEYS, Prediction, build_results
    from prompt_distill.task import load_task

    task = load_task(None, None)
    predictions = [Prediction(text, gold, gold, raw=gold, predicted=gold) for text, gold in gold_pairs()[:4]]
    if scored:
        for p in predictions:
            p.probabilities = {label: 0.88 if label == p.gold else 0.01 for label in task.labels}
            p.probability, p.finish_reason = 0.88, "scored"
    meta = dict.fromkeys(META_KEYS) | {
        "model": "m", "adapter": None, "backend": "b", "test_file": "t.txt", "gold_file": "t.gold.tsv",
        "split": {"split": "all", "eval_fraction": 0.2, "split_seed": 0, "sentences_in_file": 4,
                  "sentences_in_split": 4, "evaluated": 4},
        "generation": {"max_tokens": 8, "temperature": 0.0, "constrained": False, "batch_size": 1},
        "timing": None, "warnings": [],
    }
    results = build_results(predictions, task, "gold", meta)[0]
    if mutate:
        mutate(results)
    write_json(path, results)
    return Path(path)


def test_a_sound_results_file_is_rescored(capsys, tmp_path):
    results = write_results(tmp_path / "results.json")
    assert evaluate.main(["--predictions_file", str(results), "--output_file", "none"]) == 0
    assert "Re-scoring 4 saved predictions" in capsys.readouterr().out


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda r: r["predictions"][3].pop("raw"), "results.json: predictions[3]: 'raw' missing"),
    (lambda r: r["predictions"][0].pop("text"), "results.json: predictions[0]: 'text' missing"),
    (lambda r: r["predictions"][1].pop("gold"), "results.json: predictions[1]: 'gold' missing"),
    (lambda r: r["predictions"][2].update(raw=None), "results.json: predictions[2]: 'raw' must be a string, not null"),
    (lambda r: r["predictions"][1].update(text=5), "results.json: predictions[1]: 'text' must be a string, not an integer"),
    (lambda r: r["predictions"][0].update(teacher=["en"]),
     "results.json: predictions[0]: 'teacher' must be a string or null, not a list"),
    (lambda r: r["predictions"][2].update(prompt_tokens="12"), "predictions[2]: 'prompt_tokens' must be an integer"),
    (lambda r: r["predictions"].__setitem__(1, "hello"), "results.json: predictions[1]: expected an object"),
    (lambda r: r["predictions"][0].update(gold="french"), "results.json: predictions[0]: 'gold' 'french' is not one"),
    (lambda r: r["split"].update(evaluated=40), "results.json: split.evaluated is 40 but the file holds 4"),
    (lambda r: r["summary"].update(total=5), "results.json: summary.total is 5 but the file holds 4"),
    (lambda r: r.pop("task"), "results.json: 'task' must be an object"),
    (lambda r: r.update(reference="silver"), "results.json: 'reference' must be 'gold' or 'teacher'"),
    (lambda r: r.update(split=None), "results.json: 'split' must be an object"),
], ids=["raw-missing", "text-missing", "gold-missing", "raw-null", "text-int", "teacher-list", "tokens-str",
        "not-object", "unknown-gold", "evaluated-count", "summary-count", "no-task", "bad-reference", "split-null"])
def test_a_bad_prediction_is_named_by_position(capsys, tmp_path, mutate, message):
    results = write_results(tmp_path / "results.json", mutate)
    err = fails_with(capsys, "--predictions_file", str(results), "--output_file", "none")
    assert message in err and err.startswith("error: ") and err.count("\n") == 1


def _set_probabilities(index, **changes):
    def mutate(results):
        results["predictions"][index]["probabilities"].update(changes)
    return mutate


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda r: r["predictions"][2].update(probabilities=None), "predictions[2]: 'probabilities' missing while "
                                                                "predictions[0] has them"),
    (lambda r: r["predictions"][1]["probabilities"].pop("zh"), "predictions[1]: 'probabilities' must have one entry "
                                                               "per label"),
    (_set_probabilities(0, zh=0.5), "predictions[0]: 'probabilities' sum to"),
    (_set_probabilities(3, zh="0.01"), "predictions[3]: 'probabilities' must be numbers in [0, 1]"),
    (lambda r: r["predictions"][0].update(probability=0.5), "predictions[0]: 'probability' is 0.5 but the most"),
    (lambda r: r["predictions"][0].update(probability="high"), "predictions[0]: 'probability' must be a number or "
                                                               "null, not a string"),
], ids=["some-missing", "label-missing", "not-summing", "string", "not-the-top", "probability-str"])
def test_bad_saved_probabilities_are_named_by_position(capsys, tmp_path, mutate, message):
    results = write_results(tmp_path / "results.json", mutate, scored=True)
    err = fails_with(capsys, "--predictions_file", str(results), "--output_file", "none")
    assert message in err and err.startswith("error: ") and err.count("\n") == 1


def test_a_sound_scored_results_file_is_rescored_with_its_confidence(capsys, tmp_path):
    results = write_results(tmp_path / "results.json", scored=True)
    assert evaluate.main(["--predictions_file", str(results), "--output_file", "none"]) == 0
    assert "CONFIDENCE (the student's probability of its label, 4 sentences)" in capsys.readouterr().out


def test_an_empty_predictions_list_is_an_error(capsys, tmp_path):
    def empty(results):
        results["predictions"] = []
        results["split"]["evaluated"] = 40  # what the reported case said: "40 evaluated", "every ... correctly"

    results = write_results(tmp_path / "results.json", empty)
    err = fails_with(capsys, "--predictions_file", str(results), "--output_file", "none")
    assert "results.json: 'predictions' is empty" in err
    assert "classified correctly" not in capsys.readouterr().out


def test_an_output_file_under_a_regular_file_fails_before_the_model_runs(capsys, tmp_path):
    (tmp_path / "a-file").write_text("x", "utf-8")
    err = fails_with(capsys, "--model_path", "none", "--base_model", "nobody/missing-model",
                     "--output_file", str(tmp_path / "a-file" / "results.json"))
    assert err.startswith("error: --output_file") and "is a file" in err and err.count("\n") == 1
