"""What a labelling run reports: the counts it keeps while it runs, and the end-of-run summary it prints."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .run_files import RunFiles
from .votes import Agreement


@dataclass
class Scoring:
    """The label probabilities of this session's answers (every attempt) and what they cost beyond the answers
    (the engines' ``Generation.scoring_*``: nothing where the pass that chose the label gave them)."""

    answers: int = 0
    scored: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    seconds: float = 0.0  # summed over answers: each answer's wait for its scoring (rows of a batch share a pass)

    def add(self, generation) -> None:
        self.answers += 1
        self.scored += generation.label_probabilities is not None
        self.requests += generation.scoring_requests
        self.prompt_tokens += generation.scoring_prompt_tokens
        self.cached_tokens += generation.scoring_cached_tokens
        self.seconds += generation.scoring_s

    def describe(self) -> str:
        line = f"{self.scored} of {self.answers} answers scored; "
        if not self.scored:
            return line + "the engine gave none"
        if not self.requests:
            return line + "no extra cost (from the pass that chose the label)"
        return (line + f"extra cost {self.requests} scoring requests over {self.prompt_tokens:,} tokens "
                f"({self.cached_tokens:,} from the prefix cache), {self.seconds / self.answers:.3f} s per answer")


@dataclass
class LabelingSummary:
    files: RunFiles
    selected: int
    blank_lines: int
    resumed: int  # already finished when this session started
    repeats: int = 0  # selected lines that repeat an earlier sentence: they reuse its label, no record of their own
    labelled_now: int = 0
    unparseable_now: int = 0
    too_long_now: int = 0  # prompts that do not fit the teacher's context: recorded, never generated
    retried_now: int = 0  # finished sentences that needed more than one attempt
    generations_now: int = 0  # engine replies this session, every attempt counted
    cut_thoughts_now: int = 0  # of those, replies cut by max_tokens inside the thought
    cut_thought_sampling: object = None  # labeling.Sampling of their retries (None: the run's own sampling)
    finish_reasons: Counter = field(default_factory=Counter)
    prompt_tokens: list[int] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)
    cached_tokens: list[int] = field(default_factory=list)
    generation_s: float = 0.0
    label_counts: Counter = field(default_factory=Counter)  # the whole training file
    unparseable: list[dict] = field(default_factory=list)  # the whole sidecar
    too_long: list[dict] = field(default_factory=list)  # the whole sidecar
    notes: list[str] = field(default_factory=list)
    num_samples: int = 1  # answers per sentence (--num_samples)
    agreement: Agreement = field(default_factory=Agreement)  # this session's sentences with K > 1 samples
    agreement_total: Agreement = field(default_factory=Agreement)  # the whole sidecar's
    scoring: Scoring = field(default_factory=Scoring)  # this session's label probabilities and their cost

    @property
    def finished_now(self) -> int:
        return self.labelled_now + self.unparseable_now + self.too_long_now

    @property
    def labelled_total(self) -> int:
        return sum(self.label_counts.values())


def _mean(values: list[int]) -> str:
    return f"{sum(values) / len(values):.1f}" if values else "n/a"


def format_summary(summary: LabelingSummary) -> str:
    files = summary.files
    total = summary.labelled_total + len(summary.unparseable)
    repeats = (f"; {summary.repeats} repeat an earlier sentence and reuse its label" if summary.repeats else "")
    lines = [
        "=" * 72,
        "LABELLING SUMMARY",
        "=" * 72,
        f"Selected sentences:   {summary.selected}  (blank input lines skipped: {summary.blank_lines}{repeats})",
        f"Already done:         {summary.resumed}  (resumed from {files.sidecar})" if summary.resumed else None,
        f"This session:         {summary.finished_now} finished: {summary.labelled_now} labelled, "
        f"{summary.unparseable_now} unparseable, {summary.retried_now} needed a retry"
        + (f", {summary.too_long_now} too long for the context" if summary.too_long_now else ""),
    ]
    if summary.finished_now > summary.too_long_now:
        generated = summary.finished_now - summary.too_long_now
        rate = generated / summary.generation_s if summary.generation_s else float("nan")
        reasons = ", ".join(f"{reason} {count}" for reason, count in summary.finish_reasons.most_common())
        # With K samples a sentence is K answers: the speed counts sentences, the tokens every answer.
        unit, per = ("sentences/s", "answer:   ") if summary.num_samples > 1 else ("samples/s", "sample:   ")
        answers = f", {summary.num_samples} answers each" if summary.num_samples > 1 else ""
        lines += [
            f"Speed:                {rate:.2f} {unit}{answers} ({summary.generation_s:.1f} s, model loading excluded)",
            f"Tokens per {per} prompt {_mean(summary.prompt_tokens)}, completion "
            f"{_mean(summary.completion_tokens)}, prompt tokens from cache {_mean(summary.cached_tokens)}",
            f"Finish reasons:       {reasons}",
            _cut_thoughts_line(summary),
            f"Label probabilities:  {summary.scoring.describe()}" if summary.scoring.answers else None,
        ]
    if summary.agreement.sentences:
        lines.append(f"Agreement of samples: {summary.agreement.describe()} (this session)")
    parse_rate = f"{100 * summary.labelled_total / total:.1f}%" if total else "n/a"
    lines += [
        f"Whole output:         {summary.labelled_total} labelled, {len(summary.unparseable)} unparseable "
        f"(parse rate {parse_rate})" + (f", {len(summary.too_long)} too long" if summary.too_long else ""),
        "Label distribution:   "
        + (", ".join(f"{label} {count}" for label, count in sorted(summary.label_counts.items())) or "none"),
    ]
    if summary.agreement_total.sentences:
        lines.append(f"Agreement (output):   {summary.agreement_total.describe()}")
    if summary.unparseable:
        lines.append(f"Unparseable (not in the training file; raw outputs in {files.sidecar}; "
                     "--retry_unparseable redoes them):")
        lines += _listed(summary.unparseable, lambda record: _shorten(record["text"]))
    if summary.too_long:
        lines.append("Too long for the teacher's context (not generated, not in the training file):")
        lines += _listed(summary.too_long, lambda record: (
            f"{record['prompt_tokens']:,} prompt tokens + {record['reply_room']:,} for the reply > context "
            f"{record['context_tokens']:,}: {_shorten(record['text'], 40)}"))
    lines += summary.notes
    lines += [
        f"Training file:        {files.training}",
        f"Per-sample metadata:  {files.sidecar}",
        f"Run header:           {files.header}",
    ]
    return "\n".join(line for line in lines if line is not None)


def _listed(records: list[dict], describe, most: int = 20) -> list[str]:
    lines = [f"  line {record['line']}: {describe(record)}" for record in records[:most]]
    if len(records) > most:
        lines.append(f"  ... and {len(records) - most} more")
    return lines


def _cut_thoughts_line(summary: LabelingSummary) -> str:
    cut, total = summary.cut_thoughts_now, summary.generations_now
    line = f"Cut by max_tokens:    {cut} of {total} generations ({100 * cut / total if total else 0:.1f}%) stopped inside the thought"
    if cut:
        retried_with = summary.cut_thought_sampling.describe() if summary.cut_thought_sampling else "the run's sampling"
        line += f"; their retries used {retried_with}"
    return line


def _shorten(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
