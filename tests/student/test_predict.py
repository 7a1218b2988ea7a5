"""predict.py and the Python API behind it (prompt_distill.Student): the adapter's own labels, input order, one
error line per refusal, and the same probabilities as the engine's one-pass scoring (HFEngine.classify)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import predict
from prompt_distill import Prediction, Student
from prompt_distill.task import load_task
from tests.eval_helpers import ROOT, make_adapter, write_teacher_file

TRIAGE = ROOT / "example-data" / "feedback_triage"
TRIAGE_LABELS = ["K", "M", "T"]
FRESH = str(TRIAGE / "fresh.txt")  # sentences of the triage task, one per line
SENTENCES = [
    "How do I export the thermostat's schedule?",
    "The delivery came broken and I'm fed up with waiting for a new one.",
    "Cheap feeling plastic and a wobbly stand, disappointed.",
    "Bonjour tout le monde, je voudrais un remboursement.",
    "Which Wi-Fi frequencies does the lamp support?",
]


def triage_pairs() -> list[tuple[str, str]]:
    pairs = []
    for line in (TRIAGE / "sentences.gold.tsv").read_text("utf-8").splitlines():
        label, _, text = line.partition("\t")
        pairs.append((text.strip(), label))
    return pairs


def triage_record() -> dict:
    task = load_task(str(TRIAGE / "prompt.md"), str(TRIAGE / "labels.txt"))
    return {"name": task.name, "fingerprint": task.fingerprint(), "labels": list(task.labels)}


def run_cli(*argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "predict.py"), *argv], cwd=ROOT, input=stdin,
                          capture_output=True, timeout=600)


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    """predict.main in this process: exit code, stdout, stderr (earlier output, e.g. a fixture's, set aside)."""
    capsys.readouterr()
    code = predict.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.fixture(scope="module")
def triage_adapter(tmp_path_factory, smollm2_dir) -> Path:
    """A LoRA adapter of the embedded SmolLM2 whose run record names the triage task (labels K, M, T)."""
    return make_adapter(tmp_path_factory.mktemp("predict") / "adapter", smollm2_dir, task=triage_record())


# -- refusals: one line, exit 2, before any model loads --------------------------------------------------------
def test_a_missing_adapter_folder_is_one_error_line(tmp_path, capsys):
    code, out, err = run_main(capsys, "--model_path", str(tmp_path / "absent"), "--input_file", FRESH)
    line = one_error_line(err)
    assert code == 2 and "does not exist" in line and "train_sft_trl.py" in line
    assert out == ""


def test_a_folder_without_adapter_config_is_refused(tmp_path, capsys):
    (tmp_path / "run_record.json").write_text("{}", "utf-8")
    code, _, err = run_main(capsys, "--model_path", str(tmp_path), "--input_file", FRESH)
    assert code == 2 and "adapter_config.json is missing" in one_error_line(err)


def test_an_adapter_without_run_record_is_refused_unless_labels_are_named(tmp_path, smollm2_dir, capsys):
    adapter = make_adapter(tmp_path / "adapter", smollm2_dir)
    (adapter / "run_record.json").unlink()
    output = tmp_path / "out.jsonl"
    output.write_text("kept\n", "utf-8")
    code, _, err = run_main(capsys, "--model_path", str(adapter), "--input_file", FRESH, "--output_file", str(output))
    line = one_error_line(err)
    assert code == 2 and "run_record.json not found" in line and "--labels" in line
    assert output.read_text("utf-8") == "kept\n", "a refused adapter leaves the output file alone"



def test_labels_named_for_an_adapter_without_run_record_are_used(tmp_path, smollm2_dir):
    adapter = make_adapter(tmp_path / "adapter", smollm2_dir)
    (adapter / "run_record.json").unlink()
    student = Student.load(adapter, backend="transformers", labels=TRIAGE_LABELS)
    [prediction] = student.classify([SENTENCES[0]])
    assert student.labels == tuple(TRIAGE_LABELS) and set(prediction.probabilities) == set(TRIAGE_LABELS)

def test_labels_other_than_the_run_records_are_refused(triage_adapter, capsys):
    code, _, err = run_main(capsys, "--model_path", str(triage_adapter), "--input_file", FRESH, "--labels", "en,fr")
    line = one_error_line(err)
    assert code == 2 and "trained for the labels K,M,T" in line and "drop --labels" in line


def test_input_that_is_not_utf8_names_the_file_and_line(triage_adapter, tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("first line\ncaf\u00e9 cr\u00e8me\n".encode("latin-1"))
    code, _, err = run_main(capsys, "--model_path", str(triage_adapter), "--input_file", str(bad))
    line = one_error_line(err)
    assert code == 2 and f"{bad}:2: not UTF-8" in line


def test_stdin_that_is_not_utf8_is_named_stdin(triage_adapter):
    run = run_cli("--model_path", str(triage_adapter), stdin="ok\nna\u00efve\n".encode("latin-1"))
    line = one_error_line(run.stderr.decode())
    assert run.returncode == 2 and line.startswith("error: <stdin>:2: not UTF-8")
    assert run.stdout == b""


def test_the_output_file_may_not_be_the_input(triage_adapter, tmp_path, capsys):
    sentences = tmp_path / "s.txt"
    sentences.write_text("hello\n", "utf-8")
    code, _, err = run_main(capsys, "--model_path", str(triage_adapter), "--input_file", str(sentences),
                            "--output_file", str(sentences))
    assert code == 2 and "is the input file" in one_error_line(err)
    assert sentences.read_text("utf-8") == "hello\n"


def test_input_without_sentences_is_refused(triage_adapter):
    run = run_cli("--model_path", str(triage_adapter), stdin=b"\n  \n")
    assert run.returncode == 2 and "<stdin>: the file has no sentences" in one_error_line(run.stderr.decode())


# -- the writer and the API's own checks -----------------------------------------------------------------------
def test_results_leave_in_input_order_as_soon_as_every_earlier_one_is_done(tmp_path):
    def prediction(index):
        return Prediction(f"s{index}", "K", 0.5, {"K": 0.5, "M": 0.5})

    with open(tmp_path / "out.jsonl", "w", encoding="utf-8") as stream:
        writer = predict.InputOrderWriter(stream, 5, all_probabilities=False)
        writer([2, 3], [prediction(2), prediction(3)])
        assert (tmp_path / "out.jsonl").read_text("utf-8") == "", "0 and 1 are not done yet"
        writer([0, 1], [prediction(0), prediction(1)])
        assert [r["text"] for r in records((tmp_path / "out.jsonl").read_text("utf-8"))] == ["s0", "s1", "s2", "s3"]
        writer([1, 4], [prediction(1), prediction(4)])  # an engine may report a text again
        writer.close()
    written = records((tmp_path / "out.jsonl").read_text("utf-8"))
    assert [r["text"] for r in written] == ["s0", "s1", "s2", "s3", "s4"]
    assert written[0] == {"text": "s0", "label": "K", "probability": 0.5}



@pytest.mark.parametrize(("total", "terminal", "shown"), [(500, True, True), (99, True, False), (500, False, False)])
def test_the_progress_bar_is_for_long_input_on_a_terminal(monkeypatch, tmp_path, total, terminal, shown):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    with open(tmp_path / "out.jsonl", "w", encoding="utf-8") as stream:
        writer = predict.InputOrderWriter(stream, total, all_probabilities=False)
        assert writer.bar.disable is not shown
        writer.close()

def test_classify_refuses_blank_texts_and_a_bare_string(triage_adapter):
    from prompt_distill.student.classifier import resolve_adapter

    student = Student(resolve_adapter(triage_adapter), engine=None, labels=tuple(TRIAGE_LABELS), description="")
    with pytest.raises(ValueError, match="1 blank text.*position.*1"):
        student.classify(["fine", "   "])
    with pytest.raises(TypeError, match=r"pass \[text\]"):
        student.classify("a sentence")
    assert student.classify([]) == []


# -- end to end on the embedded model --------------------------------------------------------------------------
def engine_scores(adapter: Path, texts: list[str], batch_size: int):
    """What the transformers engine's one-pass scoring gives, called directly (the reference for the CLI)."""
    from prompt_distill.engines import make_engine
    from prompt_distill.student.classifier import resolve_adapter

    setup = resolve_adapter(adapter)
    engine = make_engine("transformers", setup.base_model, adapter_path=setup.adapter_path, batch_size=batch_size)
    return engine.classify([setup.messages(text) for text in texts], tuple(TRIAGE_LABELS))


def test_cli_from_stdin_and_from_a_file_agrees_with_the_engine_and_the_api(triage_adapter, tmp_path):
    stdin = ("\n".join(SENTENCES[:2]) + "\n\n" + "\n".join(SENTENCES[2:]) + "\n").encode("utf-8")
    piped = run_cli("--model_path", str(triage_adapter), "--backend", "transformers", "--batch_size", "2",
                    "--all_probabilities", stdin=stdin)
    assert piped.returncode == 0, piped.stderr.decode()[-3000:]
    assert "Skipped 1 blank line" in piped.stderr.decode()
    from_stdin = records(piped.stdout.decode("utf-8"))

    sentences = tmp_path / "sentences.txt"
    sentences.write_bytes(stdin)
    output = tmp_path / "labels.jsonl"
    run = run_cli("--model_path", str(triage_adapter), "--backend", "transformers", "--batch_size", "2",
                  "--all_probabilities", "--input_file", str(sentences), "--output_file", str(output))
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    assert run.stdout == b"", "with --output_file nothing else goes to stdout"
    from_file = records(output.read_text("utf-8"))
    assert from_file == from_stdin

    assert [r["text"] for r in from_file] == SENTENCES, "one line per sentence, in input order"
    expected = engine_scores(triage_adapter, SENTENCES, batch_size=2)
    for record, scores in zip(from_file, expected, strict=True):
        assert set(record["probabilities"]) == set(TRIAGE_LABELS), "the run record's labels"
        assert record["probabilities"] == pytest.approx(scores.probabilities, abs=1e-6)
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert record["label"] == max(record["probabilities"], key=record["probabilities"].get)
        assert record["probability"] == record["probabilities"][record["label"]]

    # Same batches in the same order, one thread: the API computes exactly what the CLI printed.
    api = Student.load(triage_adapter, backend="transformers", batch_size=2).classify(SENTENCES)
    assert [prediction.to_record(all_probabilities=True) for prediction in api] == from_file


@pytest.mark.slow
def test_a_student_trained_on_the_triage_task_answers_with_its_labels(tmp_path_factory):
    """Trained by train_sft_trl.py for a few steps: predict.py reads K,M,T from the run record, with no flag."""
    folder = tmp_path_factory.mktemp("trained")
    pairs = triage_pairs()
    chosen = [pair for label in TRIAGE_LABELS for pair in [p for p in pairs if p[1] == label][:16]]
    data = write_teacher_file(folder / "triage.jsonl", chosen)
    training = subprocess.run(
        [sys.executable, str(ROOT / "train_sft_trl.py"), "--model_name", "smollm2-135m-instruct", "--data_file",
         str(data), "--output_dir", str(folder / "adapter"), "--prompt_file", str(TRIAGE / "prompt.md"),
         "--labels", str(TRIAGE / "labels.txt"), "--split", "all", "--max_steps", "12", "--learning_rate", "2e-3",
         "--warmup_steps", "0", "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1",
         "--save_strategy", "no", "--report_to", "none", "--gradient_checkpointing", "false"],
        cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert training.returncode == 0, training.stderr[-3000:]
    texts = [text for text, _ in chosen]
    run = run_cli("--model_path", str(folder / "adapter"), "--backend", "transformers",
                  stdin=("\n".join(texts) + "\n").encode("utf-8"))
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    answers = records(run.stdout.decode("utf-8"))
    assert [r["text"] for r in answers] == texts
    assert {r["label"] for r in answers} <= set(TRIAGE_LABELS)
    correct = sum(r["label"] == label for r, (_, label) in zip(answers, chosen, strict=True))
    # Chance is a third; this run labels 32 of 48 as trained (deterministic on CPU): half leaves room for a library
    # update without passing an adapter that learned nothing.
    assert correct >= len(chosen) // 2, f"{correct}/{len(chosen)} training sentences labelled as trained"
