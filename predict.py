#!/usr/bin/env python
"""Label sentences with the trained student: one JSON line per sentence, in input order.

    python predict.py --model_path models/demo_trl --input_file sentences.txt > labels.jsonl
    echo "Bonjour tout le monde" | python predict.py --model_path models/demo_trl
    python predict.py --model_path models/demo_trl --backend vllm --input_file big.txt --output_file labels.jsonl

Each line is {"text", "label", "probability"} (with --all_probabilities, every label's probability too). The labels
and chat framing are the adapter's own, read from its run_record.json. Blank input lines are skipped and counted on
stderr. The Python API behind this script is ``prompt_distill.Student`` (prompt_distill/student/classifier.py).
"""

import contextlib
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from prompt_distill.cli import make_parser, parse_config, report_error, setup_logging
from prompt_distill.data import DataError, Sentences, read_sentences
from prompt_distill.errors import PromptDistillError
from prompt_distill.student.classifier import Student
from prompt_distill.student.config import DESCRIPTION, PredictConfig
from prompt_distill.task import parse_labels_flag

# Below this many sentences the answers come back in seconds and a bar would only flicker.
PROGRESS_MIN_SENTENCES = 100
STDIN_NAME = "<stdin>"
logger = logging.getLogger("prompt_distill.predict")


def build_parser():
    return make_parser(PredictConfig, DESCRIPTION)


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


def predict(config: PredictConfig, stdout) -> None:
    check_output_file(config.output_file, config.input_file)
    sentences = read_input(config.input_file)
    if sentences.blank_lines:
        logger.info(f"[predict] Skipped {sentences.blank_lines} blank line(s); each JSON line carries its sentence.")
    labels = parse_labels_flag(config.labels) if config.labels is not None else None
    student = Student.load(config.model_path, backend=config.backend, batch_size=config.batch_size,
                           base_model=config.base_model, labels=labels, engine_flags=config)
    logger.info(f"[predict] {student.description}; labels {','.join(student.labels)}")
    with open_results(config.output_file, stdout) as results:
        writer = InputOrderWriter(results, len(sentences.texts), config.all_probabilities)
        try:
            predictions = student.classify(sentences.texts, on_batch=writer)
            writer(range(len(predictions)), predictions)  # any the engine did not report through on_batch
        finally:
            writer.close()


def main(argv=None) -> int:
    config = parse_config(PredictConfig, argv, DESCRIPTION)
    setup_logging()
    # vLLM logs to stdout unless told otherwise (it is imported only when the engine is made, and its engine
    # process inherits this): stdout is for results only.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    stdout = sys.stdout
    try:
        # Anything a library prints, and the log lines, go to stderr while the model loads and runs: stdout carries
        # JSON only.
        with contextlib.redirect_stdout(sys.stderr):
            predict(config, stdout)
    except PromptDistillError as error:
        return report_error(error)
    except BrokenPipeError:
        # The reader stopped early (`| head`): end quietly as other command-line tools do, and keep Python from
        # reporting the same broken pipe again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
