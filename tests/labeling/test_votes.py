"""--num_samples K: K sampled answers per sentence, their votes, and a crash-safe resume (issue 23, item 2).

A scripted engine (test_labeling.py's) answers by the request's seed, so each sample's answer is chosen by the test;
the real engines run K samples in test_votes_engines.py (transformers) and tests/engines (the vLLM CPU lane).
"""

import json

import pytest

from prompt_distill.data import iter_jsonl
from prompt_distill.engines.base import Generation
from prompt_distill.labeling.run import format_summary, run_labeling, sample_seed, sentence_seed
from prompt_distill.labeling.run_files import OutputMismatchError, RunFiles
from prompt_distill.task import TEACHER_USER_PREFIX, UNPARSEABLE
from tests.labeling.test_labeling import ANSWERS, SENTENCES, TASK, ScriptedEngine, make_config, write_input

TEXTS = [sentence for sentence in SENTENCES if sentence.strip()]
INDEX = {text: TEXTS.index(text) for text in TEXTS}  # the sentence's index in the input (blank lines skipped)


class VotingEngine(ScriptedEngine):
    """Answers sample j of a sentence with ``samples[text][j]`` (default: the right label): the sample is found from
    the request's seed. ``"?"`` is an unreadable answer; ``probabilities[text][j]`` a label distribution."""

    def __init__(self, samples=None, probabilities=None, seed=0, k=3, crash_after_batches=None, **kwargs):
        super().__init__(**kwargs)
        self.samples, self.probabilities = samples or {}, probabilities or {}
        self.which = {sample_seed(seed + attempt, index, j): j
                      for index in INDEX.values() for j in range(k) for attempt in range(5)}
        self.crash_after_batches = crash_after_batches
        self.batches = 0
        self.seen = []  # (text, sample) per request
        self.reported = []  # (text, sample) per answer reported through on_batch

    def generate(self, chats, params, on_batch=None):
        self._seeds = list(params.request_seeds)
        self.seen += [(chat[-1]["content"].removeprefix(TEACHER_USER_PREFIX), self.which[seed])
                      for chat, seed in zip(chats, self._seeds, strict=True)]
        self._position = 0
        start = len(self.seen) - len(chats)

        def counted(indices, generations):
            if self.crash_after_batches is not None and self.batches == self.crash_after_batches:
                raise KeyboardInterrupt  # a kill between two batches
            self.batches += 1
            self.reported += [self.seen[start + i] for i in indices]
            on_batch(indices, generations)

        return super().generate(chats, params, counted if on_batch else None)

    def _reply(self, text):
        sample = self.which[self._seeds[self._position]]
        self._position += 1
        answer = self.samples.get(text, [ANSWERS[text]] * 9)[sample]
        probabilities = self.probabilities.get(text, [None] * 9)[sample]
        if answer == "?":
            return Generation("I am not sure.", 12, 5, "stop", 0.01, cached_prompt_tokens=8,
                              label_probabilities=probabilities)
        return Generation(f"Hmm.\nFinal Answer: {answer}", 12, 7 + sample, "stop", 0.01, cached_prompt_tokens=8,
                          label_probabilities=probabilities)


def records_by_text(files):
    return {record["text"]: record for _, record in iter_jsonl(files.sidecar)}


def uniform_except(label, p):
    rest = (1 - p) / (len(TASK.labels) - 1)
    return {name: (p if name == label else rest) for name in TASK.labels}


@pytest.fixture
def config(tmp_path):
    write_input(tmp_path / "in.txt")
    return make_config(tmp_path, num_samples=3)


def test_every_sentence_keeps_its_samples_votes_majority_and_agreement(config):
    engine = VotingEngine(samples={"Guten Tag": ["de", "en", "de"], "Hola amigo": ["fr", "es", "es"]},
                          probabilities={"Guten Tag": [uniform_except("de", 0.6), uniform_except("en", 0.5),
                                                       uniform_except("de", 0.7)]})
    summary = run_labeling(config, TASK, lambda: engine, progress=False)
    files = RunFiles.for_output(config.output_file)
    records = records_by_text(files)
    assert len(records) == 6 and sorted(engine.seen) == sorted((text, j) for text in TEXTS for j in range(3))

    guten = records["Guten Tag"]
    assert guten["label"] == "de" and guten["status"] == "labelled"
    assert guten["votes"] == {"de": 2, "en": 1} and guten["agreement"] == pytest.approx(2 / 3)
    assert [sample["label"] for sample in guten["samples"]] == ["de", "en", "de"]
    assert [sample["completion_tokens"] for sample in guten["samples"]] == [7, 8, 9]
    assert guten["label_probabilities"]["de"] == pytest.approx((0.6 + 0.7 + (1 - 0.5) / (len(TASK.labels) - 1)) / 3)
    assert records["Hola amigo"]["label"] == "es" and records["Hola amigo"]["output"] == "Hmm.\nFinal Answer: es"
    assert records["Hola amigo"]["label_probabilities"] is None  # its samples were not scored
    assert records["Hello there"]["agreement"] == 1.0 and records["Hello there"]["votes"] == {"en": 3}

    lines = {line["messages"][0]["content"]: line for _, line in iter_jsonl(files.training)}
    assert lines["Guten Tag"]["messages"][1]["content"] == "de"
    assert lines["Guten Tag"]["teacher"]["source"] == "votes"
    assert lines["Guten Tag"]["teacher"]["distribution"]["en"] == pytest.approx(1 / 3)
    assert lines["Guten Tag"]["teacher"]["confidence"] == pytest.approx(2 / 3)

    # K answers per sentence are counted: tokens, finish reasons, and the agreement
    assert len(summary.completion_tokens) == 18 and sum(summary.finish_reasons.values()) == 18
    text = format_summary(summary)
    assert "3 answers each" in text
    assert "mean 0.889, unanimous 4 of 6; the majority differs from the first sample in 1" in text


def test_a_tie_goes_to_the_higher_mean_probability_then_to_label_order(tmp_path):
    write_input(tmp_path / "in.txt")
    engine = VotingEngine(k=2, samples={"Guten Tag": ["en", "de"], "Hola amigo": ["fr", "es"]},
                          probabilities={"Guten Tag": [uniform_except("en", 0.4), uniform_except("de", 0.9)]})
    run_labeling(make_config(tmp_path, num_samples=2), TASK, lambda: engine, progress=False)
    records = records_by_text(RunFiles.for_output(tmp_path / "out" / "data.jsonl"))
    assert records["Guten Tag"]["votes"] == {"de": 1, "en": 1} and records["Guten Tag"]["label"] == "de"
    earlier = min(("fr", "es"), key=TASK.labels.index)  # no probabilities: the task's earlier label
    assert records["Hola amigo"]["label"] == earlier and records["Hola amigo"]["agreement"] == 0.5


def test_each_sample_has_its_own_seed_and_sample_0_samples_as_a_single_answer_would(config):
    engine = VotingEngine()
    run_labeling(config, TASK, lambda: engine, progress=False)
    (seeds,) = [params.request_seeds for _, params in engine.calls]
    assert len(set(seeds)) == 18
    assert seeds[:3] == (sentence_seed(0, 0), sample_seed(0, 0, 1), sample_seed(0, 0, 2))  # a sentence's samples
    # side by side


def test_an_unreadable_sample_is_retried_then_votes_for_nothing(config):
    engine = VotingEngine(samples={"Guten Tag": ["de", "?", "de"], "Привет": ["?", "?", "?"]})
    summary = run_labeling(config, TASK, lambda: engine, progress=False)
    records = records_by_text(RunFiles.for_output(config.output_file))
    guten = records["Guten Tag"]
    assert guten["label"] == "de" and guten["votes"] == {"de": 2} and guten["agreement"] == pytest.approx(2 / 3)
    assert [sample["label"] for sample in guten["samples"]] == ["de", UNPARSEABLE, "de"]
    assert [sample["attempts"] for sample in guten["samples"]] == [1, 3, 1]  # max_retries 2: three attempts
    assert records["Привет"]["status"] == "unparseable" and records["Привет"]["label"] == UNPARSEABLE
    assert records["Привет"]["votes"] == {} and records["Привет"]["agreement"] == 0.0
    assert summary.retried_now == 2 and summary.unparseable_now == 1 and summary.labelled_now == 5


@pytest.mark.parametrize("crash_after_batches, finished", [
    (2, {"Привет"}), (5, {"Hola amigo", "Merhaba dünya", "Привет"})])
def test_a_kill_mid_sentence_keeps_only_whole_sentences_and_the_resume_redoes_the_rest(config, crash_after_batches,
                                                                                        finished):
    """Batches of 2 requests and 3 samples per sentence: a kill falls between the samples of a sentence. Nothing
    of an unfinished sentence is on disk; the resume labels exactly those, with all their samples, each once."""
    first = VotingEngine(crash_after_batches=crash_after_batches)
    with pytest.raises(KeyboardInterrupt):
        run_labeling(config, TASK, lambda: first, progress=False)
    files = RunFiles.for_output(config.output_file)
    done = [record["text"] for _, record in iter_jsonl(files.sidecar)]
    assert set(done) == finished and all(len(record["samples"]) == 3 for _, record in iter_jsonl(files.sidecar))
    assert {text for text, _ in first.reported} - finished  # a sentence had samples in when the kill came

    second = VotingEngine()
    summary = run_labeling(config, TASK, lambda: second, progress=False)
    assert summary.resumed == len(done)
    assert sorted(second.seen) == sorted((text, j) for text in TEXTS if text not in done for j in range(3))
    records = [record for _, record in iter_jsonl(files.sidecar)]
    assert sorted(record["text"] for record in records) == sorted(TEXTS)  # each sentence once
    assert all(len(record["samples"]) == 3 and record["votes"] for record in records)
    assert [line["messages"][0]["content"] for _, line in iter_jsonl(files.training)] == TEXTS


def test_a_resume_or_retry_with_another_number_of_samples_is_refused(config, tmp_path):
    run_labeling(make_config(tmp_path, num_samples=3, max_samples=2), TASK, lambda: VotingEngine(), progress=False)
    with pytest.raises(OutputMismatchError, match=r"num_samples \(--num_samples\): on disk 3, now 1"):
        run_labeling(make_config(tmp_path), TASK, lambda: VotingEngine(), progress=False)
    with pytest.raises(OutputMismatchError, match=r"num_samples \(--num_samples\): on disk 3, now 5"):
        run_labeling(make_config(tmp_path, num_samples=5, retry_unparseable=True), TASK, lambda: VotingEngine(),
                     progress=False)


def test_an_output_from_before_num_samples_counts_as_one_sample(tmp_path):
    write_input(tmp_path / "in.txt")
    run_labeling(make_config(tmp_path, max_samples=2), TASK, lambda: ScriptedEngine(), progress=False)
    files = RunFiles.for_output(tmp_path / "out" / "data.jsonl")
    header = json.loads(files.header.read_text())
    for session in header["sessions"]:
        del session["num_samples"]  # as an older version wrote it
    files.header.write_text(json.dumps(header))
    with pytest.raises(OutputMismatchError, match=r"on disk 1, now 3"):
        run_labeling(make_config(tmp_path, num_samples=3), TASK, lambda: VotingEngine(), progress=False)
    run_labeling(make_config(tmp_path, num_samples=1), TASK, lambda: ScriptedEngine(), progress=False)  # resumes


def test_one_sample_writes_exactly_what_a_run_without_the_setting_writes(tmp_path):
    """--num_samples 1 (the default) is the single-answer labelling as before: the same requests and seeds, and
    the same bytes in both files (no samples, votes or agreement)."""
    outputs = []
    for name, overrides in (("default", {}), ("one", {"num_samples": 1})):
        folder = tmp_path / name
        folder.mkdir()
        write_input(folder / "in.txt")
        engine = ScriptedEngine(failures={"Guten Tag": 1, "Привет": 99})
        config = make_config(folder, input_file=str(tmp_path / "default" / "in.txt"), **overrides)
        run_labeling(config, TASK, lambda engine=engine: engine, progress=False)
        files = RunFiles.for_output(config.output_file)
        outputs.append((files.sidecar.read_bytes(), files.training.read_bytes(),
                        [(texts, params) for texts, params in engine.calls]))
    assert outputs[0] == outputs[1]
    for _, record in iter_jsonl(tmp_path / "one" / "out" / "data.meta.jsonl"):
        assert not {"samples", "votes", "agreement"} & set(record)
        assert record["attempts"] in (1, 2, 3)
