import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from prompt_distill.data import (
    DataError,
    JsonlAppender,
    gold_path_for,
    in_split,
    iter_jsonl,
    read_gold,
    read_sentences,
    read_training_file,
    repair_truncated_tail,
    split_of,
    training_record,
)
from prompt_distill.task import language_task

TASK = language_task()
EXAMPLE = Path(__file__).resolve().parents[1] / "example-data" / "multilingual.txt"


def test_example_data_is_labelled_aligned_and_covers_every_label():
    sentences = read_sentences(EXAMPLE)
    gold = read_gold(EXAMPLE, TASK)
    assert gold is not None
    assert len(sentences.texts) >= 650
    assert sentences.blank_lines == 0
    assert set(sentences.texts) == set(gold)
    assert len(set(sentences.texts)) == len(sentences.texts), "duplicate sentences"
    counts = Counter(gold[text] for text in sentences.texts)
    assert set(counts) == set(TASK.labels)
    assert min(counts.values()) >= 50, counts


def test_gold_misalignment_is_an_error(tmp_path):
    (tmp_path / "s.txt").write_text("Hello there\nHola amigo\n")
    (tmp_path / "s.gold.tsv").write_text("en\tHello there\nes\tBonjour\n")
    with pytest.raises(DataError, match=r"s\.gold\.tsv:2: .*misaligned"):
        read_gold(tmp_path / "s.txt", TASK)


def test_gold_unknown_label_and_length_mismatch(tmp_path):
    (tmp_path / "s.txt").write_text("Hello there\n")
    (tmp_path / "s.gold.tsv").write_text("english\tHello there\n")
    with pytest.raises(DataError, match=r":1: unknown label 'english'"):
        read_gold(tmp_path / "s.txt", TASK)
    (tmp_path / "s.gold.tsv").write_text("en\tHello there\nen\tExtra\n")
    with pytest.raises(DataError, match="must align"):
        read_gold(tmp_path / "s.txt", TASK)


def test_no_gold_file_means_none(tmp_path):
    (tmp_path / "s.txt").write_text("Hello\n")
    assert gold_path_for(tmp_path / "s.txt").name == "s.gold.tsv"
    assert read_gold(tmp_path / "s.txt", TASK) is None


def test_read_sentences_skips_blanks_and_refuses_missing_or_empty(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("one\n\n  \ntwo\n")
    result = read_sentences(path)
    assert result.texts == ["one", "two"] and result.blank_lines == 2
    path.write_text("\n\n")
    with pytest.raises(DataError, match="no sentences"):
        read_sentences(path)
    with pytest.raises(DataError, match="not found"):
        read_sentences(tmp_path / "missing.txt")


@pytest.mark.parametrize(
    "line,message",
    [
        ("{not json", r"data\.jsonl:2: not valid JSON"),
        ('{"messages": []}', r":2: expected a non-empty 'messages'"),
        ('{"messages": [{"role": "user"}]}', r":2: every message needs"),
        ('{"messages": [{"role": "assistant", "content": "en"}, {"role": "user", "content": "x"}]}', r":2: expected roles"),
        ('{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": " "}]}', r":2: the assistant answer is empty"),
        ('{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "ja"}]}', r":2: answer 'ja' is not a label"),
    ],
)
def test_training_file_errors_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(training_record("Hallo Welt", "de")) + "\n" + line + "\n")
    with pytest.raises(DataError, match=message):
        read_training_file(path, TASK)


def test_training_file_round_trip_and_missing(tmp_path):
    path = tmp_path / "data.jsonl"
    with JsonlAppender(path) as writer:
        writer.write([training_record("Hallo Welt", "de"), training_record("Merci", "fr")])
    assert read_training_file(path, TASK) == [("Hallo Welt", "de"), ("Merci", "fr")]
    with pytest.raises(DataError, match="not found"):
        read_training_file(tmp_path / "nope.jsonl", TASK)


def test_repair_truncated_tail(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}')  # a record without its newline is kept
    assert repair_truncated_tail(path) is False
    assert [r for _, r in iter_jsonl(path)] == [{"a": 1}, {"a": 2}]
    path.write_text('{"a": 1}\n{"a": ')  # a half-written record is dropped
    assert repair_truncated_tail(path) is True
    assert path.read_text() == '{"a": 1}\n'


# The held-out split of example-data/multilingual.txt at the defaults (eval_fraction 0.2, split seed 0), pinned:
# training (train_sft_trl.py) and evaluation (evaluate.py) run in different processes, so a split that changed
# with the process (Python's salted hash(), PYTHONHASHSEED) would leak evaluation sentences into training.
PINNED_HELD_OUT = 189
PINNED_FIRST_HELD_OUT = [
    "Στο δεύτερο φανάρι στρίψε δεξιά και συνέχισε ευθεία μέχρι την πλατεία.",
    "¿Dónde está la estación de tren más cercana?",
    "가는 말이 고와야 오는 말이 곱다.",
    "Χρόνια πολλά!",
    "आपका ऑर्डर शिप हो गया है और 3-5 दिनों में पहुँच जाएगा।",
]
PINNED_HELD_OUT_SHA256 = "b004e72b7b531ca89ecf20969bafd7d28b9e8575d625b46b4fd9a8863a616062"  # all 189, one a line
SPLIT_PROBE = """
import hashlib, json, sys
from prompt_distill.data import DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED, in_split, read_sentences
texts = read_sentences(sys.argv[1]).texts
held_out = [t for t in texts if in_split(t, "eval", DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED)]
trained = [t for t in texts if in_split(t, "train", DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED)]
print(json.dumps({"sentences": len(texts), "held_out": len(held_out), "trained": len(trained),
                  "first": held_out[:5], "sha256": hashlib.sha256("\\n".join(held_out).encode()).hexdigest()}))
"""


def split_in_a_new_process(hash_seed: str) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    run = subprocess.run([sys.executable, "-c", SPLIT_PROBE, str(EXAMPLE)], cwd=EXAMPLE.parents[1], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)


def test_the_split_is_pinned_and_the_same_in_other_processes():
    """189 of the 882 example sentences are held out, the same ones in this process and in two others whose str
    hashes differ (PYTHONHASHSEED): the split comes from a stable hash, not the process."""
    texts = read_sentences(EXAMPLE).texts
    held_out = [t for t in texts if in_split(t, "eval", 0.2, 0)]
    here = {"sentences": len(texts), "held_out": len(held_out), "trained": len(texts) - len(held_out),
            "first": held_out[:5], "sha256": hashlib.sha256("\n".join(held_out).encode()).hexdigest()}
    assert here == {"sentences": 882, "held_out": PINNED_HELD_OUT, "trained": 882 - PINNED_HELD_OUT,
                    "first": PINNED_FIRST_HELD_OUT, "sha256": PINNED_HELD_OUT_SHA256}
    for hash_seed in ("1", "2"):
        assert split_in_a_new_process(hash_seed) == here, f"PYTHONHASHSEED={hash_seed}"


def test_split_is_deterministic_disjoint_and_near_the_fraction():
    texts = read_sentences(EXAMPLE).texts
    held_out = [t for t in texts if split_of(t, 0.2, 0) == "eval"]
    assert 0.14 < len(held_out) / len(texts) < 0.26
    assert held_out == [t for t in texts if in_split(t, "eval", 0.2, 0)]
    assert not any(in_split(t, "train", 0.2, 0) for t in held_out)
    assert all(in_split(t, "all", 0.2, 0) for t in texts)
    assert [split_of(t, 0.2, 1) for t in texts] != [split_of(t, 0.2, 0) for t in texts]
    assert split_of("  Hola  ", 0.5, 3) == split_of("Hola", 0.5, 3)


# -- tests added for surviving mutants (docs/testing.md, `make mutation`) -------------------------------------------


def test_in_split_uses_the_seed_and_names_a_bad_split():
    texts = [f"sentence {i}" for i in range(50)]
    for seed in (0, 1, 7):
        assert [in_split(t, "eval", 0.5, seed) for t in texts] == [split_of(t, 0.5, seed) == "eval" for t in texts]
    assert [in_split(t, "eval", 0.5, 1) for t in texts] != [in_split(t, "eval", 0.5, 0) for t in texts]
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'eval', 'all'\), got 'test'"):
        in_split("Hello", "test", 0.5, 0)
