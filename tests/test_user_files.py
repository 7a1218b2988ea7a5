"""Every user text file is read by one reader: a Latin-1 or binary file is one `file:line:` error, a BOM and CRLF
line endings read cleanly (issue 12 item 3)."""

import json

import pytest

import create_data
import evaluate
import train_sft_trl
from prompt_distill import data
from prompt_distill.data import DataError, iter_jsonl, read_gold, read_json_object, read_sentences
from prompt_distill.task import TaskError, language_task, load_task

LATIN1 = "Hello\ncafé au lait\n".encode("latin-1")  # 0xe9 is byte 4 of line 2
NOT_UTF8 = "not UTF-8 (byte 0xe9 at column 4)"


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, captured.err
    return errors[0]


def test_the_reader_names_file_line_and_column(tmp_path):
    path = write(tmp_path / "in.txt", LATIN1)
    with pytest.raises(DataError) as error:
        data.read_text(path)
    assert str(error.value) == f"{path}:2: {NOT_UTF8}"


def test_a_nul_byte_is_a_binary_file(tmp_path):
    path = write(tmp_path / "in.txt", b"one\ntwo\x00\x01\x02\n")
    with pytest.raises(DataError, match=rf"^{path}:2: .*NUL byte.*binary"):
        read_sentences(path)


def test_bom_and_crlf_read_cleanly(tmp_path):
    path = write(tmp_path / "in.txt", "\ufeffHello there\r\nBonjour\r\n\r\nHola\rCiao\n".encode())
    sentences = read_sentences(path)
    assert sentences.texts == ["Hello there", "Bonjour", "Hola", "Ciao"]
    assert sentences.line_numbers == [1, 2, 4, 5] and sentences.blank_lines == 1
    gold = "\ufeffen\tHello there\r\nfr\tBonjour\r\n\r\nes\tHola\r\not\tCiao\r\n".encode()
    write(tmp_path / "in.gold.tsv", gold)
    assert read_gold(path, language_task()) == {"Hello there": "en", "Bonjour": "fr", "Hola": "es", "Ciao": "ot"}


def test_a_line_separator_inside_a_sentence_does_not_split_it(tmp_path):
    # U+2028 is a line break for str.splitlines but not for a text file: the gold file must still align.
    path = write(tmp_path / "in.txt", "one\u2028still one\ntwo\n".encode())
    write(tmp_path / "in.gold.tsv", "en\tone\u2028still one\nen\ttwo\n".encode())
    assert read_sentences(path).texts == ["one\u2028still one", "two"]
    assert read_gold(path, language_task()) == {"one\u2028still one": "en", "two": "en"}


def test_jsonl_and_json_with_bom_and_crlf(tmp_path):
    record = {"messages": [{"role": "user", "content": "a\u2028b"}, {"role": "assistant", "content": "en"}]}
    path = write(tmp_path / "t.jsonl", ("\ufeff" + json.dumps(record, ensure_ascii=False) + "\r\n").encode())
    assert list(iter_jsonl(path)) == [(1, record)]
    obj = write(tmp_path / "r.json", b'\xef\xbb\xbf{\r\n "a": 1\r\n}\r\n')
    assert read_json_object(obj) == {"a": 1}
    bad = write(tmp_path / "bad.jsonl", json.dumps(record).encode() + b"\n" + LATIN1)
    with pytest.raises(DataError, match=rf"^{bad}:3: not UTF-8 \(byte 0xe9 at column 4\)$"):
        list(iter_jsonl(bad))


def test_prompt_and_labels_files(tmp_path):
    prompt = write(tmp_path / "p.md", "Réponds: Final Answer: <label>\n".encode("latin-1"))
    with pytest.raises(DataError, match=rf"^{prompt}:1: not UTF-8 \(byte 0xe9 at column 2\)$"):
        load_task(prompt_file=str(prompt))
    labels = write(tmp_path / "labels.txt", "en\nfr\né\n".encode("latin-1"))
    with pytest.raises(DataError, match=rf"^{labels}:3: not UTF-8"):
        load_task(labels=str(labels))
    ok = write(tmp_path / "ok.txt", b"\xef\xbb\xbfen\r\nfr\r\n")
    assert load_task(labels=str(ok)).labels == ("en", "fr")
    prompt_ok = write(tmp_path / "ok.md", b"\xef\xbb\xbfSay it.\r\nFinal Answer: <label>\r\n")
    assert load_task(prompt_file=str(prompt_ok)).system_prompt == "Say it.\nFinal Answer: <label>\n"
    with pytest.raises(TaskError):
        load_task(labels=",")


def test_create_data_with_a_latin1_input(tmp_path, capsys):
    path = write(tmp_path / "in.txt", LATIN1)
    code = create_data.main(["--backend", "transformers", "--model_name", "smollm2-135m-instruct",
                             "--input_file", str(path), "--output_file", str(tmp_path / "out.jsonl")])
    assert code == 2
    assert one_error_line(capsys) == f"error: {path}:2: {NOT_UTF8}"


def test_create_data_with_a_latin1_prompt_file(tmp_path, capsys):
    prompt = write(tmp_path / "p.md", "Final Answer: <label>\nDéjà\n".encode("latin-1"))
    code = create_data.main(["--backend", "transformers", "--prompt_file", str(prompt),
                             "--input_file", str(tmp_path / "in.txt"), "--output_file", str(tmp_path / "out.jsonl")])
    assert code == 2
    assert one_error_line(capsys) == f"error: {prompt}:2: not UTF-8 (byte 0xe9 at column 2)"


def test_evaluate_with_a_latin1_test_file(tmp_path, capsys):
    path = write(tmp_path / "in.txt", LATIN1)
    code = evaluate.main(["--no_adapter", "--base_model", "smollm2-135m-instruct", "--test_file", str(path),
                          "--split", "all", "--output_file", str(tmp_path / "r.json")])
    assert code == 2
    assert one_error_line(capsys) == f"error: {path}:2: {NOT_UTF8}"


def test_evaluate_with_a_latin1_gold_file(tmp_path, capsys):
    path = write(tmp_path / "in.txt", b"Hello\ncafe\n")
    gold = write(tmp_path / "in.gold.tsv", b"en\tHello\nfr\tcaf\xe9\n")
    code = evaluate.main(["--no_adapter", "--base_model", "smollm2-135m-instruct", "--test_file", str(path),
                          "--split", "all", "--output_file", str(tmp_path / "r.json")])
    assert code == 2
    assert one_error_line(capsys) == f"error: {gold}:2: not UTF-8 (byte 0xe9 at column 7)"


def test_evaluate_with_a_latin1_predictions_file(tmp_path, capsys):
    path = write(tmp_path / "r.json", b'{"format": "caf\xe9"}\n')
    assert evaluate.main(["--predictions_file", str(path)]) == 2
    assert one_error_line(capsys) == f"error: {path}:1: not UTF-8 (byte 0xe9 at column 16)"


def test_training_with_a_latin1_data_file(tmp_path, capsys):
    path = write(tmp_path / "t.jsonl", LATIN1)
    code = train_sft_trl.main(["--model_name", "smollm2-135m-instruct", "--data_file", str(path),
                               "--output_dir", str(tmp_path / "out"), "--report_to", "none"])
    assert code == 2
    assert one_error_line(capsys) == f"error: {path}:2: {NOT_UTF8}"


@pytest.mark.parametrize("encoding, bom", [("utf-16-le", "0xff 0xfe"), ("utf-16-be", "0xfe 0xff")])
def test_a_utf16_file_is_named_as_such(tmp_path, encoding, bom):
    # Windows Notepad's "Unicode": every other byte is NUL, which would otherwise read as "a binary file".
    path = write(tmp_path / "in.txt", "\ufeffHello\ncafé\n".encode(encoding))
    with pytest.raises(DataError, match=rf"^{path}:1: UTF-16 \(byte-order mark {bom}\), not UTF-8; save it as UTF-8"):
        read_sentences(path)
