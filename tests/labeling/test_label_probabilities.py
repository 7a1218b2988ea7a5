"""The teacher's label probabilities in the sidecar and its target in the training file (issue 23, item 1).

A scripted engine (as in test_labeling.py) gives each answer a distribution, so that the files can be checked
exactly; the engines' own probabilities are tested in tests/engines/.
"""

import json

import pytest

from prompt_distill.data import iter_jsonl, read_training_file
from prompt_distill.labeling.run import run_labeling
from prompt_distill.labeling.run_files import RunFiles
from prompt_distill.training.examples import load_examples
from tests.labeling.test_labeling import ANSWERS, SENTENCES, TASK, ScriptedEngine, make_config, write_input


def probabilities_for(label):
    rest = (1 - 0.82) / (len(TASK.labels) - 1)
    return {name: (0.82 if name == label else rest) for name in TASK.labels}


class ScoringEngine(ScriptedEngine):
    """The scripted teacher, with the label distribution a scoring engine reports."""

    def _reply(self, text):
        generation = super()._reply(text)
        if text in ANSWERS and not self.failures.get(text):
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
