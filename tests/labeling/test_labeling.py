"""The labelling run: output files, retries, resume, reconciliation and refusal (fast, with a scripted engine).

The engine here is a scripted stand-in for the Engine protocol (our own interface), so that failures, crashes and
retries can be produced on demand; the real engines are tested in test_engines_hf.py and the vLLM lane, and the
whole script with the real model in test_create_data_cli.py.
"""

import json
from dataclasses import replace

import pytest

from prompt_distill.data import DataError, iter_jsonl
from prompt_distill.engines.base import Generation
from prompt_distill.labeling.run import LabelingConfig, format_summary, run_labeling
from prompt_distill.labeling.run_files import (
    OutputLock,
    OutputMismatchError,
    RunFiles,
    write_json_atomic,
    write_sidecar,
)
from prompt_distill.task import TEACHER_USER_PREFIX, UNPARSEABLE, Task, language_task

TASK = language_task()
SENTENCES = ["Hello there", "Guten Tag", "", "Bonjour à tous", "Hola amigo", "   ", "Merhaba dünya", "Привет"]
ANSWERS = {
    "Hello there": "en",
    "Guten Tag": "de",
    "Bonjour à tous": "fr",
    "Hola amigo": "es",
    "Merhaba dünya": "tr",
    "Привет": "ru",
}


class ScriptedEngine:
    """Answers from a table; ``failures[text] = n`` makes the first n attempts unreadable."""

    name = "scripted"

    def __init__(self, failures=None, batch_size=2, report=True):
        self.failures = dict(failures or {})
        self.batch_size = batch_size
        self.report = report
        self.calls = []  # (texts, params) per generate call

    def count_prompt_tokens(self, chat, params):
        return len(chat[-1]["content"])

    def generate(self, chats, params, on_batch=None):
        texts = [chat[-1]["content"].removeprefix(TEACHER_USER_PREFIX) for chat in chats]
        self.calls.append((texts, params))
        results = [self._reply(text) for text in texts]
        # Report batches last-first: the run must not depend on completion order.
        starts = list(range(0, len(chats), self.batch_size))[::-1]
        for start in starts:
            indices = list(range(start, min(start + self.batch_size, len(chats))))
            if self.report and on_batch is not None:
                on_batch(indices, [results[i] for i in indices])
        return results

    def _reply(self, text):
        if self.failures.get(text, 0) > 0:
            self.failures[text] -= 1
            return Generation("I am not sure.", 12, 5, "stop", 0.01, cached_prompt_tokens=8)
        return Generation(f"Looks like it.\nFinal Answer: {ANSWERS[text]}", 12, 9, "stop", 0.01, cached_prompt_tokens=8)


def write_input(path, lines=SENTENCES):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_config(tmp_path, **overrides):
    options = {
        "input_file": str(tmp_path / "in.txt"),
        "output_file": str(tmp_path / "out" / "data.jsonl"),
        "model_name": "teacher-a",
        "backend": "scripted",
        "max_tokens": 64,
        "max_retries": 2,
    }
    options.update(overrides)
    return LabelingConfig(**options)


def training_pairs(path):
    return [(r["messages"][0]["content"], r["messages"][1]["content"]) for _, r in iter_jsonl(path)]


def sidecar_records(files):
    return [record for _, record in iter_jsonl(files.sidecar)]


@pytest.fixture
def config(tmp_path):
    write_input(tmp_path / "in.txt")
    return make_config(tmp_path)


def test_a_run_writes_training_file_sidecar_and_header(config):
    engine = ScriptedEngine()
    summary = run_labeling(config, TASK, lambda: engine, progress=False)
    files = RunFiles.for_output(config.output_file)

    texts = [s for s in SENTENCES if s.strip()]
    assert training_pairs(files.training) == [(t, ANSWERS[t]) for t in texts]  # input order, labels only
    for _, record in iter_jsonl(files.training):
        assert list(record) == ["messages"]
    records = sorted(sidecar_records(files), key=lambda r: r["index"])
    assert [r["line"] for r in records] == [1, 2, 4, 5, 7, 8]
    assert records[0]["output"].endswith("Final Answer: en")
    assert {r["status"] for r in records} == {"labelled"}
    for key in ("prompt_tokens", "completion_tokens", "cached_prompt_tokens", "attempts", "finish_reason", "latency_s"):
        assert key in records[0]
    header = json.loads(files.header.read_text())
    assert header["model"] == "teacher-a" and header["task_fingerprint"] == TASK.fingerprint()
    assert len(header["input_sha256"]) == 64 and header["sessions"][0]["max_tokens"] == 64

    assert (summary.selected, summary.blank_lines, summary.labelled_now, summary.resumed) == (6, 2, 6, 0)
    text = format_summary(summary)
    assert "parse rate 100.0%" in text and "blank input lines skipped: 2" in text and "de 1" in text


def test_only_failed_sentences_are_retried_and_the_hopeless_ones_are_listed(config):
    engine = ScriptedEngine(failures={"Guten Tag": 1, "Привет": 99})
    summary = run_labeling(config, TASK, lambda: engine, progress=False)
    files = RunFiles.for_output(config.output_file)

    assert [sorted(texts) for texts, _ in engine.calls[1:]] == [["Guten Tag", "Привет"], ["Привет"]]
    assert [params.seed for _, params in engine.calls] == [0, 1, 2]  # every retry samples differently
    assert ("Привет", "ru") not in training_pairs(files.training)
    assert ("Guten Tag", "de") in training_pairs(files.training)
    by_text = {r["text"]: r for r in sidecar_records(files)}
    assert by_text["Привет"]["status"] == "unparseable" and by_text["Привет"]["label"] == UNPARSEABLE
    assert by_text["Привет"]["attempts"] == 3 and by_text["Guten Tag"]["attempts"] == 2
    assert summary.unparseable_now == 1 and summary.retried_now == 2
    assert "line 8: Привет" in format_summary(summary)


def test_resuming_skips_finished_sentences_and_builds_no_engine_when_done(config, tmp_path):
    first = ScriptedEngine()
    run_labeling(make_config(tmp_path, max_samples=3), TASK, lambda: first, progress=False)
    assert sorted(first.calls[0][0]) == ["Bonjour à tous", "Guten Tag", "Hello there"]

    second = ScriptedEngine()
    summary = run_labeling(config, TASK, lambda: second, progress=False)
    assert sorted(second.calls[0][0]) == ["Hola amigo", "Merhaba dünya", "Привет"]
    assert summary.resumed == 3
    files = RunFiles.for_output(config.output_file)
    assert len(training_pairs(files.training)) == len(sidecar_records(files)) == 6

    def no_engine():
        raise AssertionError("nothing is left to do, so no model should be loaded")

    assert run_labeling(config, TASK, no_engine, progress=False).resumed == 6
    assert len(json.loads(files.header.read_text())["sessions"]) == 3


def test_a_kill_between_or_inside_writes_loses_and_duplicates_nothing(config):
    run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)
    files = RunFiles.for_output(config.output_file)
    # As after a kill: the training file lost its last two lines (written after the sidecar) and holds a stray
    # one, and the sidecar's last record was cut in the middle.
    lines = files.training.read_text().splitlines(keepends=True)
    files.training.write_text("".join(lines[:-2]) + lines[0])
    sidecar = files.sidecar.read_bytes().splitlines(keepends=True)
    cut_text = json.loads(sidecar[-1])["text"]
    files.sidecar.write_bytes(b"".join(sidecar[:-1]) + sidecar[-1][:25])

    engine = ScriptedEngine()
    summary = run_labeling(config, TASK, lambda: engine, progress=False)
    assert [texts for texts, _ in engine.calls] == [[cut_text]]  # only the cut record is redone
    texts = [s for s in SENTENCES if s.strip()]
    assert training_pairs(files.training) == [(t, ANSWERS[t]) for t in texts]
    assert sorted(r["index"] for r in sidecar_records(files)) == list(range(6))
    assert any("cut off by a crash" in note for note in summary.notes)


@pytest.mark.parametrize("damage", ["last_two_lost", "last_two_lost_and_a_stray_line"])
def test_a_kill_after_the_last_sidecar_write_is_repaired_though_nothing_is_left_to_label(config, damage):
    """The kill lands after the sidecar's last record but before the training file caught up: nothing is pending,
    so only the rebuild at the start of the run (not the one after labelling) can restore the training file."""
    run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)
    files = RunFiles.for_output(config.output_file)
    lines = files.training.read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(lines) == 6
    kept = lines[:-2] + ([lines[0]] if damage == "last_two_lost_and_a_stray_line" else [])
    files.training.write_text("".join(kept), encoding="utf-8")
    sidecar_before = files.sidecar.read_bytes()

    def no_engine():
        raise AssertionError("the sidecar is complete: nothing to label, no model to load")

    summary = run_labeling(config, TASK, no_engine, progress=False)
    texts = [s for s in SENTENCES if s.strip()]
    assert training_pairs(files.training) == [(t, ANSWERS[t]) for t in texts]  # all 6 lines, in input order
    assert files.training.read_text(encoding="utf-8").splitlines(keepends=True) == lines
    assert files.sidecar.read_bytes() == sidecar_before
    assert (summary.resumed, summary.labelled_now) == (6, 0)


def test_an_output_from_another_input_model_or_prompt_is_refused(config, tmp_path):
    run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)
    with pytest.raises(OutputMismatchError, match=r"(?s)model .*--teacher_model.*--overwrite"):
        run_labeling(make_config(tmp_path, model_name="teacher-b"), TASK, lambda: ScriptedEngine(), progress=False)
    other_task = language_task().__class__(labels=("en", "de"), system_prompt="Say Final Answer: en or de.")
    with pytest.raises(OutputMismatchError, match="task_fingerprint"):
        run_labeling(config, other_task, lambda: ScriptedEngine(), progress=False)
    with pytest.raises(OutputMismatchError, match="shard"):
        run_labeling(make_config(tmp_path, num_shards=2), TASK, lambda: ScriptedEngine(), progress=False)
    write_input(tmp_path / "in.txt", SENTENCES + ["Xin chào"])
    with pytest.raises(OutputMismatchError, match="input_sha256"):
        run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)

    ANSWERS["Xin chào"] = "vi"
    try:
        engine = ScriptedEngine()
        summary = run_labeling(make_config(tmp_path, overwrite=True), TASK, lambda: engine, progress=False)
    finally:
        del ANSWERS["Xin chào"]
    assert summary.resumed == 0 and len(engine.calls[0][0]) == 7


def test_an_output_without_header_is_refused(config):
    files = RunFiles.for_output(config.output_file)
    files.training.parent.mkdir(parents=True)
    files.training.write_text('{"messages": []}\n')
    with pytest.raises(OutputMismatchError, match="no run header"):
        run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)


def test_missing_or_empty_input_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        run_labeling(make_config(tmp_path), TASK, lambda: ScriptedEngine(), progress=False)
    write_input(tmp_path / "in.txt", ["", "  "])
    with pytest.raises(DataError, match="no sentences"):
        run_labeling(make_config(tmp_path), TASK, lambda: ScriptedEngine(), progress=False)


def test_an_edited_sidecar_is_an_error_naming_file_and_line(config):
    run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)
    files = RunFiles.for_output(config.output_file)
    records = sidecar_records(files)
    records[1]["text"] = "edited"
    files.sidecar.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(DataError, match=r"data\.meta\.jsonl:2: the sentence differs"):
        run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)


def test_results_returned_without_on_batch_are_still_recorded(config):
    run_labeling(config, TASK, lambda: ScriptedEngine(report=False), progress=False)
    assert len(training_pairs(RunFiles.for_output(config.output_file).training)) == 6


def test_a_second_process_on_the_same_output_is_refused(config):
    with OutputLock(RunFiles.for_output(config.output_file)), pytest.raises(OutputMismatchError, match="Another"):
        run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)


def test_chunks_bound_what_one_engine_call_holds(tmp_path):
    write_input(tmp_path / "in.txt")
    engine = ScriptedEngine()
    run_labeling(make_config(tmp_path, chunk_size=4), TASK, lambda: engine, progress=False)
    assert [len(texts) for texts, _ in engine.calls] == [4, 2]


def test_each_sentence_has_its_own_seed_whatever_its_shard_or_batch(tmp_path):
    write_input(tmp_path / "in.txt")
    whole = ScriptedEngine()
    run_labeling(make_config(tmp_path, seed=5), TASK, lambda: whole, progress=False)
    seeds = {text: seed for texts, params in whole.calls for text, seed in zip(texts, params.request_seeds,
                                                                                 strict=True)}
    assert len(set(seeds.values())) == len(seeds) == 6  # no two sentences sample alike
    for shard in (0, 1):
        engine = ScriptedEngine()
        config = make_config(tmp_path, seed=5, num_shards=2, shard_index=shard, chunk_size=1,
                             output_file=str(tmp_path / f"shard{shard}.jsonl"))
        run_labeling(config, TASK, lambda engine=engine: engine, progress=False)
        for texts, params in engine.calls:
            assert [seeds[text] for text in texts] == list(params.request_seeds)
    other = ScriptedEngine()
    run_labeling(make_config(tmp_path, seed=6, output_file=str(tmp_path / "seed6.jsonl")), TASK, lambda: other,
                 progress=False)
    assert not set(other.calls[0][1].request_seeds) & set(seeds.values())


def test_every_output_file_gets_the_mode_a_plain_open_gives(tmp_path):
    import os
    import stat

    write_input(tmp_path / "in.txt")
    config = make_config(tmp_path)
    previous = os.umask(0o022)
    try:
        run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)
    finally:
        os.umask(previous)
    files = RunFiles.for_output(config.output_file)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in (files.training, files.sidecar, files.header)}
    assert set(modes.values()) == {0o644}, modes


def test_a_teacher_that_fails_to_load_leaves_nothing_to_block_the_corrected_rerun(tmp_path):
    write_input(tmp_path / "in.txt")
    config = make_config(tmp_path, model_name="Qwen/Qwen3-30B-A3B-Thinking-2507")

    def cannot_load():
        raise OSError("We couldn't connect to the hub to load this model")

    with pytest.raises(OSError):
        run_labeling(config, TASK, cannot_load, progress=False)
    files = RunFiles.for_output(config.output_file)
    assert not [path for path in (files.training, files.sidecar, files.header) if path.exists()]
    # Files left by an older version (header written, nothing finished) do not block a rerun with another model.
    files.training.touch()
    files.sidecar.touch()
    files.header.write_text(json.dumps({"model_name": "Qwen/Qwen3-30B-A3B-Thinking-2507"}), "utf-8")
    summary = run_labeling(make_config(tmp_path, model_name="smollm2-135m-instruct"), TASK, lambda: ScriptedEngine(),
                           progress=False)
    assert summary.labelled_now == 6


def test_resuming_with_other_sampling_settings_is_refused_with_the_differences(config):
    run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)
    for changed in ({"temperature": 0.6}, {"max_tokens": 128}, {"constrained_answer": True}, {"seed": 3}):
        with pytest.raises(OutputMismatchError) as refused:
            run_labeling(replace(config, **changed), TASK, lambda: ScriptedEngine(), progress=False)
        (key,) = changed
        assert f"{key} (--{key}): on disk" in str(refused.value) and "--overwrite" in str(refused.value)
    # The same settings resume; a new --max_samples only selects more or fewer sentences, so it is fine too.
    run_labeling(replace(config, max_samples=3), TASK, lambda: ScriptedEngine(), progress=False)


def test_retry_unparseable_redoes_only_those_and_the_last_record_counts(config):
    run_labeling(config, TASK, lambda: ScriptedEngine(failures={"Привет": 99}), progress=False)
    files = RunFiles.for_output(config.output_file)
    assert ("Привет", "ru") not in training_pairs(files.training)

    # Its thought was cut, say: the retry may give it more tokens and another temperature, not another answer kind.
    retry = replace(config, retry_unparseable=True, max_tokens=256, temperature=0.6)
    with pytest.raises(OutputMismatchError, match=r"(?s)constrained_answer .*may change the sampling flags, not these"):
        run_labeling(replace(retry, constrained_answer=True), TASK, lambda: ScriptedEngine(), progress=False)
    engine = ScriptedEngine()
    summary = run_labeling(retry, TASK, lambda: engine, progress=False)
    assert [texts for texts, _ in engine.calls] == [["Привет"]]
    assert engine.calls[0][1].seed == 3 and engine.calls[0][1].max_tokens == 256  # attempts 1-3 were used before
    assert summary.labelled_now == 1 and not summary.unparseable and summary.resumed == 6
    texts = [s for s in SENTENCES if s.strip()]
    assert training_pairs(files.training) == [(t, ANSWERS[t]) for t in texts]  # the sidecar's labels, input order
    history = [r for r in sidecar_records(files) if r["text"] == "Привет"]
    assert [r["status"] for r in history] == ["unparseable", "labelled"]  # appended: the first is kept as history
    assert history[-1]["attempts"] == 4 and history[-1]["session"] == 1 and history[-1]["max_tokens"] == 256
    header = json.loads(files.header.read_text())
    assert header["sessions"][1]["retry_unparseable"] and header["sessions"][1]["max_tokens"] == 256

    def no_engine():
        raise AssertionError("nothing is left to do")

    # A plain resume is still compared with the run's own settings, not the retry's.
    again = run_labeling(config, TASK, no_engine, progress=False)
    assert any("1 earlier records were redone later" in note for note in again.notes)
    assert run_labeling(retry, TASK, no_engine, progress=False).labelled_now == 0  # nothing unparseable is left


def test_retry_unparseable_leaves_unfinished_sentences_to_a_resume(tmp_path):
    write_input(tmp_path / "in.txt")
    run_labeling(make_config(tmp_path, max_samples=3), TASK, lambda: ScriptedEngine(failures={"Guten Tag": 99}),
                 progress=False)
    engine = ScriptedEngine()
    summary = run_labeling(make_config(tmp_path, retry_unparseable=True), TASK, lambda: engine, progress=False)
    assert [texts for texts, _ in engine.calls] == [["Guten Tag"]]
    assert any("3 selected sentences are not finished yet" in note for note in summary.notes)


# -- tests added for surviving mutants (docs/testing.md, `make mutation`) -------------------------------------------


class InterruptedEngine(ScriptedEngine):
    """Reports the first batch, then is killed (KeyboardInterrupt) before the second."""

    def generate(self, chats, params, on_batch=None):
        texts = [chat[-1]["content"].removeprefix(TEACHER_USER_PREFIX) for chat in chats]
        on_batch([0, 1], [self._reply(text) for text in texts[:2]])
        raise KeyboardInterrupt


def test_a_kill_mid_run_leaves_the_finished_lines_and_the_header_of_the_running_session(config):
    """Before the final rebuild: the training file holds what the sidecar finished, the header its session."""
    with pytest.raises(KeyboardInterrupt):
        run_labeling(config, TASK, lambda: InterruptedEngine(), progress=False)
    files = RunFiles.for_output(config.output_file)
    finished = sorted(sidecar_records(files), key=lambda r: r["index"])
    assert [r["text"] for r in finished] == ["Hello there", "Guten Tag"]
    assert training_pairs(files.training) == [("Hello there", "en"), ("Guten Tag", "de")]
    header = json.loads(files.header.read_text(encoding="utf-8"))
    assert header["sentences"] == 6 and len(header["sessions"]) == 1
    assert header["sessions"][0]["selected"] == 6 and "finished" not in header["sessions"][0]


class OneLabelEngine(ScriptedEngine):
    """Answers "en" to every sentence (a label that occurs many times), or fails as ScriptedEngine does."""

    def _reply(self, text):
        if self.failures.get(text, 0) > 0:
            return super()._reply(text)
        return Generation("Final Answer: en", 12, 9, "stop", 0.01, cached_prompt_tokens=None)


def test_the_summary_counts_every_label_reason_and_unparseable_sentence(config):
    failures = {"Hello there": 9, "Hola amigo": 9}  # unparseable after every retry
    summary = run_labeling(config, TASK, lambda: OneLabelEngine(failures=failures), progress=False)
    assert summary.label_counts == {"en": 4}
    assert (summary.labelled_now, summary.unparseable_now) == (4, 2)
    assert summary.finish_reasons == {"stop": 6}
    assert summary.cached_tokens == [8, 8]  # only the failed replies reported cached tokens
    assert [record["index"] for record in summary.unparseable] == [0, 3]  # input order, not batch order
    assert 0 <= summary.generation_s < 60
    header = json.loads(RunFiles.for_output(config.output_file).header.read_text(encoding="utf-8"))
    assert header["sessions"][-1]["finished"] == {"labelled": 4, "unparseable": 2, "too_long": 0}


def test_the_progress_bar_is_on_by_default(config, capsys):
    run_labeling(config, TASK, lambda: ScriptedEngine())
    assert "Labelling" in capsys.readouterr().err


def test_the_output_files_keep_non_ascii_text_as_is(config):
    run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)
    files = RunFiles.for_output(config.output_file)
    run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)  # the start-of-run rebuild rewrites it
    assert "Привет" in files.training.read_text(encoding="utf-8")
    assert "Привет" in files.sidecar.read_text(encoding="utf-8")


def test_write_sidecar_writes_the_records_in_input_order_one_per_line(tmp_path):
    files = RunFiles.for_output(tmp_path / "out" / "data.jsonl")
    write_sidecar(files, {1: {"index": 1, "text": "Привет"}, 0: {"index": 0, "text": "Hello"}})
    assert files.sidecar.read_text(encoding="utf-8") == (
        '{"index": 0, "text": "Hello"}\n{"index": 1, "text": "Привет"}\n')


def test_the_header_keeps_non_ascii_paths_as_is(tmp_path):
    write_input(tmp_path / "entrée.txt")
    config = make_config(tmp_path, input_file=str(tmp_path / "entrée.txt"))
    run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)
    assert "entrée.txt" in RunFiles.for_output(config.output_file).header.read_text(encoding="utf-8")


def test_an_output_in_folders_that_do_not_exist_yet_is_created(tmp_path):
    write_input(tmp_path / "in.txt")
    config = make_config(tmp_path, output_file=str(tmp_path / "a" / "b" / "data.jsonl"))
    run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)
    assert len(training_pairs(RunFiles.for_output(config.output_file).training)) == 6


def test_the_temp_file_is_written_beside_the_output_not_in_the_temp_folder(config, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
    run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)
    assert len(training_pairs(RunFiles.for_output(config.output_file).training)) == 6


def test_a_failed_replace_raises_its_own_error_and_leaves_no_temp_file(tmp_path, monkeypatch):
    import os

    from prompt_distill.labeling import run_files

    def refuse(*args):
        raise OSError("disk full")

    monkeypatch.setattr(run_files.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_json_atomic(tmp_path / "header.json", {"a": 1})
    assert os.listdir(tmp_path) == []


def test_overwrite_starts_from_empty_files_and_needs_no_header(config):
    run_labeling(replace(config, overwrite=True), TASK, lambda: ScriptedEngine(), progress=False)  # no header yet
    run_labeling(replace(config, overwrite=True, model_name="teacher-b"), TASK, lambda: ScriptedEngine(),
                 progress=False)
    files = RunFiles.for_output(config.output_file)
    assert len(sidecar_records(files)) == 6 and len(training_pairs(files.training)) == 6


@pytest.mark.parametrize("where", ["folder", "under_a_file", "not_writable"])
def test_an_output_path_that_cannot_be_written_is_refused_naming_the_flag(config, tmp_path, monkeypatch, where):
    import os

    if where == "folder":
        config = replace(config, output_file=str(tmp_path))
        message = r"--output_file .* is a folder; give the path of a file\."
    elif where == "under_a_file":
        config = replace(config, output_file=str(tmp_path / "in.txt" / "sub" / "data.jsonl"))
        message = r"--output_file .*: .*in\.txt is a file, so the folder for it cannot be created\."
    else:
        from prompt_distill.labeling import run_files

        monkeypatch.setattr(run_files.os, "access", lambda path, mode: not mode & os.W_OK)
        message = r"--output_file .*: .* is not writable\."
    with pytest.raises(DataError, match=message):
        run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)


def test_a_resume_refusal_names_the_value_on_disk_and_how_to_go_on(config):
    run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)
    with pytest.raises(OutputMismatchError) as refused:
        run_labeling(replace(config, model_name="teacher-b"), TASK, lambda: ScriptedEngine(), progress=False)
    assert "on disk 'teacher-a', now 'teacher-b'" in str(refused.value)
    assert str(refused.value).endswith("\nPass --overwrite to replace it, or choose another --output_file.")
    files = RunFiles.for_output(config.output_file)
    files.header.unlink()
    with pytest.raises(OutputMismatchError, match=r"no run header .*\. Pass --overwrite to replace it"):
        run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)


@pytest.mark.parametrize("text, message", [
    ("{", r"data\.run\.json:1: not valid JSON \("),
    ("[]", r"data\.run\.json: expected a JSON object\."),
])
def test_a_damaged_header_is_an_error_naming_it(config, text, message):
    run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)
    RunFiles.for_output(config.output_file).header.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)


@pytest.mark.parametrize("change, message", [
    ({"index": 6}, r"data\.meta\.jsonl:2: 'index' 6 is not a sentence of the input \(6 sentences\)\."),
    ({"index": "1"}, r"data\.meta\.jsonl:2: 'index' '1' is not a sentence of the input"),
    ({"status": "done"}, r"data\.meta\.jsonl:2: 'status' must be one of labelled, unparseable, too_long\."),
])
def test_a_sidecar_record_with_a_bad_index_or_status_is_an_error(config, change, message):
    run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)
    files = RunFiles.for_output(config.output_file)
    records = sidecar_records(files)
    records[1].update(change)
    files.sidecar.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(DataError, match=message):
        run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)


def test_a_sentence_redone_by_a_retry_is_noted_as_superseded_history(config):
    run_labeling(config, TASK, lambda: ScriptedEngine(failures={"Hello there": 9}), progress=False)
    run_labeling(replace(config, retry_unparseable=True), TASK, lambda: ScriptedEngine(), progress=False)
    summary = run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)
    assert any(": 1 earlier records were redone later" in note for note in summary.notes), summary.notes


def test_overwrite_leaves_nothing_of_the_old_files_to_repair(config):
    run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)
    summary = run_labeling(replace(config, overwrite=True), TASK, lambda: ScriptedEngine(), progress=False)
    assert summary.notes == [] and summary.labelled_now == 6


def test_a_resume_refusal_lists_each_difference_on_its_own_line(config):
    run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)
    other = Task(labels=TASK.labels, system_prompt=TASK.system_prompt + " Be brief.", name=TASK.name)
    with pytest.raises(OutputMismatchError) as refused:
        run_labeling(replace(config, model_name="teacher-b"), other, lambda: ScriptedEngine(), progress=False)
    lines = str(refused.value).splitlines()
    assert [line.split(" ")[2] for line in lines[1:-1]] == ["model", "task_fingerprint"]
    assert all(line.startswith("  ") for line in lines[1:-1])
