"""The teacher's label probabilities in the sidecar and its target in the training file (issue 23, item 1).

A scripted engine (as in test_labeling.py) gives each answer a distribution, so that the files can be checked
exactly; the engines' own probabilities are tested in tests/engines/.
"""

import json
from pathlib import Path

import pytest

import create_data
from prompt_distill.data import iter_jsonl, read_training_file
from prompt_distill.labeling.run import format_summary, run_labeling
from prompt_distill.labeling.run_files import RunFiles
from prompt_distill.training.examples import load_examples
from tests.labeling.test_labeling import ANSWERS, SENTENCES, TASK, ScriptedEngine, make_config, write_input

REPO = Path(__file__).resolve().parents[2]


def probabilities_for(label):
    rest = (1 - 0.82) / (len(TASK.labels) - 1)
    return {name: (0.82 if name == label else rest) for name in TASK.labels}


class ScoringEngine(ScriptedEngine):
    """The scripted teacher, with the label distribution a scoring engine reports."""

    def _reply(self, text):
        generation = super()._reply(text)
        if "Final Answer" in generation.text:  # an unreadable answer has no answer position to score at
            generation.label_probabilities = probabilities_for(ANSWERS[text])
        return generation


@pytest.fixture
def config(tmp_path):
    write_input(tmp_path / "in.txt")
    return make_config(tmp_path)


def texts():
    return [sentence for sentence in SENTENCES if sentence.strip()]


def test_the_sidecar_keeps_the_probabilities_and_the_training_file_the_target(config):
    run_labeling(config, TASK, lambda: ScoringEngine(), progress=False)
    files = RunFiles.for_output(config.output_file)
    sidecar = {record["text"]: record for _, record in iter_jsonl(files.sidecar)}
    for text in texts():
        assert sidecar[text]["label_probabilities"] == probabilities_for(ANSWERS[text])
    lines = [record for _, record in iter_jsonl(files.training)]
    assert [line["messages"][0]["content"] for line in lines] == texts()
    for line in lines:
        label = line["messages"][1]["content"]
        assert list(line) == ["messages", "teacher"]
        assert line["teacher"]["source"] == "probabilities"
        assert line["teacher"]["confidence"] == pytest.approx(0.82)
        assert line["teacher"]["distribution"] == pytest.approx(probabilities_for(label))
        assert list(line["teacher"]["distribution"]) == list(TASK.labels)


def test_the_rebuilt_training_file_keeps_the_targets(config):
    """A kill between the two appends: the training file is rebuilt from the sidecar, targets included."""
    run_labeling(config, TASK, lambda: ScoringEngine(), progress=False)
    files = RunFiles.for_output(config.output_file)
    written = files.training.read_text("utf-8")
    assert written.count('"teacher"') == 6
    files.training.write_text("".join(written.splitlines(keepends=True)[:-2]), "utf-8")

    def no_engine():
        raise AssertionError("nothing is left to label")

    run_labeling(config, TASK, no_engine, progress=False)
    assert files.training.read_text("utf-8") == written


def test_an_engine_without_probabilities_writes_null_and_the_plain_chat(config):
    run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)
    files = RunFiles.for_output(config.output_file)
    assert all(record["label_probabilities"] is None for _, record in iter_jsonl(files.sidecar))
    assert all(list(record) == ["messages"] for _, record in iter_jsonl(files.training))


def test_an_older_output_resumes_and_its_files_still_train_and_evaluate(config, tmp_path):
    """A sidecar written before label probabilities existed (no such key): resumed by a scoring engine, the old
    records give plain chats, the new ones targets, and the training file reads as before."""
    files = RunFiles.for_output(config.output_file)
    run_labeling(make_config(tmp_path, max_samples=3), TASK, lambda: ScriptedEngine(), progress=False)
    old = [record for _, record in iter_jsonl(files.sidecar)]
    for record in old:
        del record["label_probabilities"]
    files.sidecar.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in old), "utf-8")

    run_labeling(config, TASK, lambda: ScoringEngine(), progress=False)
    lines = [record for _, record in iter_jsonl(files.training)]
    assert ["teacher" in line for line in lines] == [False] * 3 + [True] * 3
    assert read_training_file(files.training, TASK) == [(text, ANSWERS[text]) for text in texts()]
    assert [(example.text, example.label) for example in load_examples(files.training, TASK)] == \
        [(text, ANSWERS[text]) for text in texts()]


class CostlyScoringEngine(ScoringEngine):
    """Probabilities scored after a free answer: one more request each, as the vLLM engine reports it."""

    def _reply(self, text):
        generation = super()._reply(text)
        if generation.label_probabilities is not None:
            generation.scoring_requests, generation.scoring_prompt_tokens = 1, 40
            generation.scoring_cached_tokens, generation.scoring_s = 30, 0.5
        return generation


def test_the_labelling_asks_for_every_answers_probabilities_and_reports_their_cost(config):
    engine = CostlyScoringEngine(failures={"Guten Tag": 1})
    summary = run_labeling(config, TASK, lambda: engine, progress=False)
    assert all(params.score_labels == TASK.labels for _, params in engine.calls)
    assert (summary.scoring.answers, summary.scoring.scored, summary.scoring.requests) == (7, 6, 6)
    assert ("Label probabilities:  6 of 7 answers scored; extra cost 6 scoring requests over 240 tokens (180 from "
            "the prefix cache), 0.429 s per answer") in format_summary(summary)


def test_the_embedded_teacher_writes_its_probabilities_and_the_targets(tmp_path, smollm2_dir):
    """The transformers backend on the CPU default (--max_tokens 0: the labels are scored): the sidecar's
    probabilities are the ones the label was chosen by, and the training file carries them."""
    sentences = (REPO / "example-data" / "multilingual.txt").read_text("utf-8").splitlines()[:4]
    (tmp_path / "in.txt").write_text("\n".join(sentences) + "\n", "utf-8")
    output = tmp_path / "labels.jsonl"
    code = create_data.main(["--backend", "transformers", "--teacher_model", "smollm2-135m-instruct",
                             "--input_file", str(tmp_path / "in.txt"), "--output_file", str(output),
                             "--report_to", "none"])
    assert code == 0
    files = RunFiles.for_output(output)
    records = [record for _, record in iter_jsonl(files.sidecar)]
    for record in records:
        probabilities = record["label_probabilities"]
        assert set(probabilities) == set(TASK.labels) and sum(probabilities.values()) == pytest.approx(1.0)
        assert max(probabilities, key=probabilities.get) == record["label"]
    for record, (_, line) in zip(sorted(records, key=lambda r: r["index"]), iter_jsonl(files.training), strict=True):
        assert line["teacher"]["source"] == "probabilities"
        assert line["teacher"]["confidence"] == pytest.approx(record["label_probabilities"][record["label"]])
