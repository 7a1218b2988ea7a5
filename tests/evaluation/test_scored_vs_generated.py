"""scripts/scored_vs_generated.py: the scored label against greedy free generation, counted where it yields one."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from prompt_distill.evaluation.answer_agreement import Agreement, Compared, format_agreement
from prompt_distill.task import UNPARSEABLE, language_task
from tests.eval_helpers import ROOT, eval_split_pairs, gold_pairs, make_adapter, write_test_file
from tests.tiny_models import write_fixture_jsonl

TASK = language_task()


def test_agreement_counts_only_sentences_where_generation_gave_a_label():
    rows = [Compared("a", "en", 0.9, "en", "en"), Compared("b", "de", 0.6, "fr", "fr"),
            Compared("c", "fr", 0.5, "Hello!", UNPARSEABLE), Compared("d", "es", 0.7, "es", "es")]
    agreement = Agreement(rows)
    assert (len(agreement.comparable), agreement.agreeing, agreement.rate) == (3, 2, pytest.approx(2 / 3))
    assert [row.text for row in agreement.disagreements()] == ["b"]
    printed = format_agreement(agreement)
    assert "on 2 of 3 sentences where free generation yields a label (66.7%); 1 of 4 sentences gave no label" in printed
    assert "scored de (0.600), generated fr ('fr'): b" in printed
    assert "nothing to compare" in format_agreement(Agreement(rows[2:3]))


def run_script(*argv) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "scored_vs_generated.py"), *argv], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def check_saved_counts(saved: dict, stdout: str) -> None:
    """The counts the script prints and saves are what its own rows say."""
    comparable = [row for row in saved["rows"] if TASK.parse(row["generated_text"]) in TASK.labels]
    assert all(row["generated"] == TASK.parse(row["generated_text"]) for row in saved["rows"])
    agreeing = sum(row["scored"] == row["generated"] for row in comparable)
    assert (saved["generated_a_label"], saved["scored_equals_generated"]) == (len(comparable), agreeing)
    if comparable:
        assert saved["agreement"] == pytest.approx(agreeing / len(comparable))
        assert f"on {agreeing} of {len(comparable)} sentences where free generation yields a label" in stdout
    for row in saved["rows"]:
        if row["scored"] != row["generated"] and row["generated"] != UNPARSEABLE:
            assert f"scored {row['scored']} ({row['probability']:.3f}), generated {row['generated']}" in stdout


def test_the_script_scores_with_the_engine_and_saves_each_answer(tmp_path, smollm2_dir):
    """An untrained adapter on the embedded model: the structure, and scored labels as HFEngine.classify gives."""
    from prompt_distill.engines.hf import HFEngine
    from prompt_distill.student_framing import EMPTY_SYSTEM, framed_messages

    adapter = make_adapter(tmp_path / "adapter", smollm2_dir, student_framing=EMPTY_SYSTEM)
    pairs = eval_split_pairs(gold_pairs())[:5]
    sentences = write_test_file(tmp_path / "test", pairs, gold=False)
    output = tmp_path / "agreement.json"
    run = run_script("--model_path", str(adapter), "--test_file", str(sentences), "--output_file", str(output))
    saved = json.loads(output.read_text("utf-8"))
    assert saved["sentences"] == 5 and [row["text"] for row in saved["rows"]] == [text for text, _ in pairs]
    check_saved_counts(saved, run.stdout)
    engine = HFEngine(str(smollm2_dir), adapter_path=str(adapter))
    scores = engine.classify([framed_messages(text, EMPTY_SYSTEM) for text, _ in pairs], TASK.labels)
    assert [row["scored"] for row in saved["rows"]] == [score.label for score in scores]
    assert [row["probability"] for row in saved["rows"]] == pytest.approx([s.probability for s in scores], abs=1e-6)


@pytest.mark.slow
def test_on_a_trained_adapter_every_generation_is_a_label_and_the_scored_one(tmp_path, smollm2_dir):
    data_file = write_fixture_jsonl(tmp_path / "train.jsonl", 24)
    out = tmp_path / "adapter"
    train = subprocess.run([
        sys.executable, str(ROOT / "train_sft_trl.py"), "--model_name", "smollm2-135m-instruct", "--data_file",
        str(data_file), "--output_dir", str(out), "--split", "all", "--report_to", "none", "--num_train_epochs", "3",
        "--per_device_train_batch_size", "4", "--learning_rate", "3e-3", "--warmup_steps", "0",
        "--save_strategy", "no", "--disable_tqdm", "true", "--gradient_checkpointing", "false",
    ], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert train.returncode == 0, train.stderr[-3000:]
    pairs = gold_pairs()[24:36]  # not trained on
    sentences = write_test_file(tmp_path / "test", pairs, gold=False)
    output = tmp_path / "agreement.json"
    run = run_script("--model_path", str(out), "--test_file", str(sentences), "--split", "all",
                     "--output_file", str(output))
    saved = json.loads(output.read_text("utf-8"))
    check_saved_counts(saved, run.stdout)
    # What the README claims of the demos (189 of 189, 93 of 93), here on 12 sentences it was not trained on: every
    # free generation is a label, and it is the scored label.
    assert (saved["sentences"], saved["generated_a_label"], saved["scored_equals_generated"]) == (12, 12, 12), saved
    assert "scored label = greedy free generation on 12 of 12 sentences" in run.stdout
    assert "Disagreements" not in run.stdout
