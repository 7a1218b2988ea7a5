"""One policy for repeated sentences in the three stages (issue 12 item 7): labelled once with its label reused,
trained once (copies that disagree are refused with both lines), evaluated once; each stage says how many repeats.
"""

import json

import pytest
from eval_helpers import write_teacher_file

import create_data
import evaluate
import train_sft_trl
from prompt_distill.data import DataError, iter_jsonl, read_gold, read_training_file
from prompt_distill.duplicates import distinct_examples, distinct_sentences, first_occurrences, repeats_dropped_note
from prompt_distill.labeling.run import format_summary, run_labeling
from prompt_distill.labeling.run_files import RunFiles
from prompt_distill.labeling.shards import merge_shards, shard_output_path
from tests.labeling.test_create_data_cli import SHORT_PROMPT
from tests.labeling.test_labeling import ANSWERS, TASK, ScriptedEngine, make_config, training_pairs, write_input
from tests.test_user_files import one_error_line

# Line 4 repeats line 1 (with surrounding spaces), line 6 repeats line 2; lines 5 and 6 fall in the other shard
# of two than their first copies (index 3 = line 4 is shard 1; its first copy, index 0, is shard 0).
REPEATED = ["Hello there", "Guten Tag", "Hola amigo", "  Hello there ", "Привет", "Guten Tag"]


def test_first_occurrences_and_distinct_sentences():
    assert first_occurrences(REPEATED) == [0, 1, 2, 0, 4, 1]
    kept, notes = distinct_sentences(REPEATED, "t.txt")
    assert kept == ["Hello there", "Guten Tag", "Hola amigo", "Привет"]
    assert notes == ["t.txt: 2 lines repeat an earlier sentence (2 sentences occur more than once); each sentence "
                     "is evaluated once."]


def test_a_repeated_sentence_is_labelled_once_and_its_label_reused(tmp_path):
    write_input(tmp_path / "in.txt", REPEATED)
    engine = ScriptedEngine()
    summary = run_labeling(make_config(tmp_path), TASK, lambda: engine, progress=False)
    assert sorted(text for texts, _ in engine.calls for text in texts) == sorted(set(map(str.strip, REPEATED)))
    files = RunFiles.for_output(make_config(tmp_path).output_file)
    assert training_pairs(files.training) == [(text, ANSWERS[text]) for text in ("Hello there", "Guten Tag",
                                                                                 "Hola amigo", "Привет")]
    assert sorted(record["index"] for _, record in iter_jsonl(files.sidecar)) == [0, 1, 2, 4]  # first copies only
    assert (summary.selected, summary.repeats, summary.labelled_now) == (6, 2, 4)
    assert "2 repeat an earlier sentence and reuse its label" in format_summary(summary)

    def no_engine():
        raise AssertionError("every distinct sentence is labelled: nothing to do")

    assert run_labeling(make_config(tmp_path), TASK, no_engine, progress=False).resumed == 4


def test_shards_label_a_repeat_once_and_merge_like_a_single_run(tmp_path):
    write_input(tmp_path / "in.txt", REPEATED)
    for k in range(2):
        output = shard_output_path(tmp_path / "out" / "data.jsonl", k, 2)
        run_labeling(make_config(tmp_path, output_file=str(output), shard_index=k, num_shards=2), TASK,
                     lambda: ScriptedEngine(), progress=False)
    result = merge_shards(tmp_path / "out" / "data.jsonl", 2)
    assert (result.labelled, result.unparseable) == (4, 0)
    single = make_config(tmp_path, output_file=str(tmp_path / "single" / "data.jsonl"))
    run_labeling(single, TASK, lambda: ScriptedEngine(), progress=False)
    assert result.output_file.read_bytes() == RunFiles.for_output(single.output_file).training.read_bytes()


def test_a_sidecar_from_a_version_that_labelled_every_copy_is_read_once(tmp_path):
    write_input(tmp_path / "in.txt", REPEATED)
    config = make_config(tmp_path)
    run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)
    files = RunFiles.for_output(config.output_file)
    first = next(record for _, record in iter_jsonl(files.sidecar) if record["index"] == 0)
    with files.sidecar.open("a", encoding="utf-8") as handle:  # what the older version wrote for line 4
        handle.write(json.dumps({**first, "index": 3, "line": 4}) + "\n")
    summary = run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)
    assert len(training_pairs(files.training)) == 4
    assert any("ignored 1 records of repeated sentences" in note for note in summary.notes)


def test_training_keeps_one_example_per_sentence_and_refuses_copies_that_disagree(tmp_path):
    agreeing = write_teacher_file(tmp_path / "t.jsonl", [("Hallo Welt", "de"), ("Merci", "fr"), (" Hallo Welt", "de")])
    assert read_training_file(agreeing, TASK) == [("Hallo Welt", "de"), ("Merci", "fr")]
    clash = write_teacher_file(tmp_path / "c.jsonl", [("Hallo Welt", "de"), ("Merci", "fr"), ("Hallo Welt", "en")])
    with pytest.raises(DataError, match=rf"^{clash}:3: .*'Hallo Welt' has two teacher labels, 'de' and 'en' \(first at "
                       rf"{clash}:1\)"):
        read_training_file(clash, TASK)


def test_training_refuses_contradictory_copies_before_loading_a_model(tmp_path, capsys):
    clash = write_teacher_file(tmp_path / "c.jsonl", [("Hallo Welt", "de"), ("Merci", "fr"), ("Hallo Welt", "en")])
    code = train_sft_trl.main(["--model_name", "nobody/absent-model", "--data_file", str(clash),
                               "--output_dir", str(tmp_path / "out"), "--report_to", "none"])
    assert code == 2
    assert one_error_line(capsys).startswith(f"error: {clash}:3: the sentence 'Hallo Welt' has two teacher labels, "
                                             f"'de' and 'en' (first at {clash}:1)")


def test_a_gold_file_giving_one_sentence_two_labels_names_both_lines(tmp_path):
    (tmp_path / "t.txt").write_text("Hallo\nMerci\nHallo\n", "utf-8")
    gold = tmp_path / "t.gold.tsv"
    gold.write_text("de\tHallo\nfr\tMerci\nen\tHallo\n", "utf-8")
    with pytest.raises(DataError, match=rf"^{gold}:3: this sentence is labelled 'en' here but 'de' at {gold}:1"):
        read_gold(tmp_path / "t.txt", TASK)


@pytest.mark.slow
def test_a_file_with_repeats_through_the_three_stages(tmp_path, capsys, smollm2_dir):
    """create_data labels each sentence once, training trains each once, evaluation grades each once; all say so."""
    pairs = [("Hello there, how are you?", "en"), ("Guten Tag, wie geht es?", "de"), ("Bonjour à tous", "fr"),
             ("Hola amigo, ¿qué tal?", "es")]
    lines = [text for text, _ in pairs] + [" " + pairs[0][0], pairs[2][0]]
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("\n".join(lines) + "\n", "utf-8")
    (tmp_path / "sentences.gold.tsv").write_text(
        "".join(f"{dict(pairs)[line.strip()]}\t{line}\n" for line in lines), "utf-8")
    prompt = tmp_path / "prompt.md"
    prompt.write_text(SHORT_PROMPT, "utf-8")
    labels = tmp_path / "labels.jsonl"

    code = create_data.main(["--backend", "transformers", "--model_name", "smollm2-135m-instruct", "--max_tokens",
                             "0", "--input_file", str(sentences), "--output_file", str(labels),
                             "--prompt_file", str(prompt)])
    out = capsys.readouterr().out
    assert code == 0 and "2 repeat an earlier sentence and reuse its label" in out
    assert [text for text, _ in read_training_file(labels, TASK)] == [text for text, _ in pairs]

    # The training file a user assembled by hand, with the same repeats (create_data's own file has none).
    teacher = write_teacher_file(tmp_path / "teacher.jsonl", [(line.strip(), dict(pairs)[line.strip()]) for line in lines])
    code = train_sft_trl.main(["--model_name", "smollm2-135m-instruct", "--data_file", str(teacher), "--split", "all",
                               "--output_dir", str(tmp_path / "adapter"), "--max_steps", "1", "--report_to", "none",
                               "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1"])
    out = capsys.readouterr().out
    assert code == 0, out[-2000:]
    assert f"{teacher}: 2 lines repeat an earlier sentence with the same label; each sentence is used once." in out
    assert f"{teacher}: 4 examples, 4 in split 'all'" in out

    results = tmp_path / "results.json"
    code = evaluate.main(["--no_adapter", "--base_model", "smollm2-135m-instruct", "--test_file", str(sentences),
                          "--split", "all", "--output_file", str(results)])
    out = capsys.readouterr().out
    assert code == 0
    assert "2 lines repeat an earlier sentence (2 sentences occur more than once); each sentence is evaluated once" in out
    saved = json.loads(results.read_text("utf-8"))
    assert sorted(p["text"] for p in saved["predictions"]) == sorted(text for text, _ in pairs)


# -- tests added for surviving mutants (docs/testing.md, `make mutation`) -------------------------------------------


def test_distinct_examples_counts_the_dropped_repeats():
    rows = [(1, "Hello", "en"), (2, " Hello ", "en"), (3, "Hola", "es"), (4, "Hello", "en")]
    assert distinct_examples(rows, "t.jsonl") == ([0, 2], 2)


def test_repeats_dropped_note_only_when_some_were_dropped():
    assert repeats_dropped_note("t.jsonl", 0) is None
    assert repeats_dropped_note("t.jsonl", 2) == ("t.jsonl: 2 lines repeat an earlier sentence with the same label; "
                                                  "each sentence is used once.")


@pytest.mark.parametrize("length, shown", [(60, "x" * 60), (61, "x" * 57 + "...")])
def test_a_long_sentence_with_two_labels_is_shortened_in_the_error(length, shown):
    with pytest.raises(DataError) as refused:
        distinct_examples([(1, "x" * length, "en"), (2, "x" * length, "de")], "t.jsonl")
    assert f"the sentence {shown!r} has two teacher labels" in str(refused.value)


def test_records_of_repeats_in_the_middle_of_a_sidecar_are_skipped_and_the_rest_read(tmp_path):
    write_input(tmp_path / "in.txt", REPEATED)
    config = make_config(tmp_path)
    run_labeling(config, TASK, lambda: ScriptedEngine(), progress=False)
    files = RunFiles.for_output(config.output_file)
    records = [record for _, record in iter_jsonl(files.sidecar)]
    by_index = {record["index"]: record for record in records}
    older = [{**by_index[0], "index": 3, "line": 4}, {**by_index[1], "index": 5, "line": 6}]
    files.sidecar.write_text("".join(json.dumps(r) + "\n" for r in records[:1] + older + records[1:]),
                             encoding="utf-8")

    def no_engine():
        raise AssertionError("every distinct sentence has its record: nothing to label")

    summary = run_labeling(config, TASK, no_engine, progress=False)
    assert summary.resumed == 4 and len(training_pairs(files.training)) == 4
    assert any("ignored 2 records of repeated sentences" in note for note in summary.notes)
