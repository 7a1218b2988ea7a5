#!/usr/bin/env python
"""Label sentences with the trained student: one JSON line per sentence, in input order.

    python predict.py --model_path models/demo_trl --input_file sentences.txt > labels.jsonl
    echo "Bonjour tout le monde" | python predict.py --model_path models/demo_trl
    python predict.py --model_path models/demo_trl --backend vllm --input_file big.txt --output_file labels.jsonl

Each line is {"text", "label", "probability"} (with --all_probabilities, every label's probability too). The labels
and chat framing are the adapter's own, read from its run_record.json. Blank input lines are skipped and counted on
stderr. The Python API behind this script is ``prompt_distill.Student`` (prompt_distill/student/classifier.py).
"""

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

from prompt_distill.cli_help import DefaultsOnceFormatter
from prompt_distill.data import DataError, Sentences, read_sentences
from prompt_distill.engines import BACKENDS
from prompt_distill.models import ModelNotFoundError
from prompt_distill.preflight import PreflightError
from prompt_distill.student.check import StudentError
from prompt_distill.student.classifier import DEFAULT_BATCH_SIZE, Student
from prompt_distill.task import TaskError, parse_labels_flag

# Below this many sentences the answers come back in seconds and a bar would only flicker.
PROGRESS_MIN_SENTENCES = 100
STDIN_NAME = "<stdin>"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Label sentences with a trained student (LoRA adapter): one JSON line per sentence with its "
        "most probable label and that label's probability, in input order.",
        formatter_class=DefaultsOnceFormatter,
    )
    parser.add_argument("--model_path", required=True,
                        help="Adapter folder written by train_sft_trl.py (its run_record.json gives the labels).")
    parser.add_argument("--input_file", default=None,
                        help="Sentences, one per line, UTF-8; blank lines are skipped. Default: stdin.")
    parser.add_argument("--output_file", default=None, help="Where the JSON lines go. Default: stdout.")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="auto: vLLM when importable and a CUDA GPU is present, else transformers.")
    parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE,
                        help="Sentences per forward pass (transformers).")
    parser.add_argument("--base_model", default=None,
                        help="Base model; default: the one in the adapter's run record. Only to point at a local "
                             "copy of it.")
    parser.add_argument("--labels", default=None,
                        help="Only for an adapter without run_record.json: the labels it was trained with "
                             "(comma-separated or a file). Refused when the run record names them.")
    parser.add_argument("--all_probabilities", action="store_true",
                        help="Add every label's probability to each line (\"probabilities\").")
    return parser


def read_input(input_file: str | None) -> Sentences:
    """The sentences of a file, or of stdin, read by the same reader (UTF-8 errors name the line)."""
    if input_file is not None:
        return read_sentences(input_file)
    stream = getattr(sys.stdin, "buffer", None)
    data = stream.read() if stream is not None else sys.stdin.read().encode("utf-8")
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "stdin.txt"  # the reader takes a path; errors name stdin, not this copy
        copy.write_bytes(data)
        try:
            return read_sentences(copy)
        except DataError as error:
            raise DataError(str(error).replace(str(copy), STDIN_NAME, 1)) from None


class InputOrderWriter:
    """Writes each prediction as soon as every earlier one is written: the output is in input order, and each
    finished batch leaves at once (an engine may finish batches out of order, or report a text twice)."""

    def __init__(self, stream, total: int, all_probabilities: bool):
        from tqdm import tqdm

        self.stream, self.all_probabilities = stream, all_probabilities
        self.waiting: dict = {}
        self.written = 0
        show = total >= PROGRESS_MIN_SENTENCES and sys.stderr.isatty()
        self.bar = tqdm(total=total, unit="sentence", desc="Predicting", file=sys.stderr, dynamic_ncols=True,
                        disable=not show)

    def __call__(self, indices, predictions) -> None:
        new = 0
        for index, prediction in zip(indices, predictions, strict=True):
            if index >= self.written and index not in self.waiting:
                self.waiting[index] = prediction
                new += 1
        while self.written in self.waiting:
            record = self.waiting.pop(self.written).to_record(self.all_probabilities)
            self.stream.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.written += 1
        self.stream.flush()
        self.bar.update(new)

    def close(self) -> None:
        self.bar.close()


def check_output_file(output_file: str | None, input_file: str | None) -> None:
    """Before the model loads (minutes on a big one): the output can be written and is not the input."""
    if output_file is None:
        return
    path = Path(output_file)
    if input_file is not None and path.resolve() == Path(input_file).resolve():
        raise DataError(f"--output_file {output_file} is the input file; name another file.")
    if path.is_dir():
        raise DataError(f"--output_file {output_file} is a folder; name a file.")
    if not path.parent.is_dir():
        raise DataError(f"--output_file {output_file}: folder {path.parent} does not exist.")


def open_results(output_file: str | None, stdout):
    if output_file is None:
        return contextlib.nullcontext(stdout)
    try:
        # Opened only once the student is loaded, so that a refused adapter leaves an existing file as it was.
        return open(output_file, "w", encoding="utf-8", newline="\n")
    except OSError as error:
        raise DataError(f"--output_file {output_file}: {error.strerror}.") from None


def predict(args, stdout) -> None:
    check_output_file(args.output_file, args.input_file)
    sentences = read_input(args.input_file)
    if sentences.blank_lines:
        print(f"[predict] Skipped {sentences.blank_lines} blank line(s); each JSON line carries its sentence.",
              file=sys.stderr)
    labels = parse_labels_flag(args.labels) if args.labels is not None else None
    student = Student.load(args.model_path, backend=args.backend, batch_size=args.batch_size,
                           base_model=args.base_model, labels=labels)
    print(f"[predict] {student.description}; labels {','.join(student.labels)}", file=sys.stderr)
    with open_results(args.output_file, stdout) as results:
        writer = InputOrderWriter(results, len(sentences.texts), args.all_probabilities)
        try:
            predictions = student.classify(sentences.texts, on_batch=writer)
            writer(range(len(predictions)), predictions)  # any the engine did not report through on_batch
        finally:
            writer.close()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # vLLM logs to stdout unless told otherwise (it is imported only when the engine is made, and its engine
    # process inherits this): stdout is for results only.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    stdout = sys.stdout
    try:
        # Anything a library prints goes to stderr while the model loads and runs: stdout carries JSON only.
        with contextlib.redirect_stdout(sys.stderr):
            predict(args, stdout)
    except (StudentError, PreflightError, DataError, TaskError, ModelNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader stopped early (`| head`): end quietly as other command-line tools do, and keep Python from
        # reporting the same broken pipe again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
