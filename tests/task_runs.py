"""A custom task's files as the stages write them, for the tests of "labels and prompt given once" (not a test
module): the data of the feedback-triage example labelled through create_data's real labelling loop (a teacher
that answers from the gold file), so that its run header is the one create_data.py writes."""

from __future__ import annotations

from pathlib import Path

from prompt_distill.engines.base import Generation
from prompt_distill.labeling.run import LabelingConfig, run_labeling
from prompt_distill.labeling.run_files import RunFiles
from prompt_distill.task import TEACHER_USER_PREFIX, load_task

ROOT = Path(__file__).resolve().parents[1]
TRIAGE = ROOT / "example-data" / "feedback_triage"
TRIAGE_PROMPT = str(TRIAGE / "prompt.md")
TRIAGE_LABELS = str(TRIAGE / "labels.txt")


def triage_task():
    return load_task(TRIAGE_PROMPT, TRIAGE_LABELS)


def triage_gold(count: int | None = None) -> list[tuple[str, str]]:
    pairs = []
    for line in (TRIAGE / "sentences.gold.tsv").read_text("utf-8").splitlines():
        label, _, text = line.partition("\t")
        pairs.append((text.strip(), label))
    return pairs[:count] if count else pairs


class GoldTeacher:
    """A teacher that answers every sentence with its gold label, in the asked format."""

    name = "gold"

    def __init__(self, pairs):
        self.answers = dict(pairs)

    def count_prompt_tokens(self, chat, params):
        return len(chat[-1]["content"])

    def generate(self, chats, params, on_batch=None):
        results = [Generation(f"Final Answer: {self.answers[chat[-1]['content'].removeprefix(TEACHER_USER_PREFIX)]}",
                              10, 3, "stop", 0.01) for chat in chats]
        if on_batch is not None:
            on_batch(list(range(len(chats))), results)
        return results


def label_triage_data(folder, count: int = 40, task=None) -> RunFiles:
    """``folder/triage.jsonl`` and its sidecar and run header, as create_data.py writes them for the triage task."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pairs = triage_gold(count)
    sentences = folder / "sentences.txt"
    sentences.write_text("".join(text + "\n" for text, _ in pairs), "utf-8")
    config = LabelingConfig(input_file=str(sentences), output_file=str(folder / "triage.jsonl"), model_name="teacher",
                            backend="gold", max_tokens=16, max_retries=0)
    run_labeling(config, task or triage_task(), lambda: GoldTeacher(pairs), progress=False)
    return RunFiles.for_output(folder / "triage.jsonl")
