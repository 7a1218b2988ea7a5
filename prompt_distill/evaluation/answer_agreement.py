"""Does scoring the labels answer what the student says when it generates freely? (scripts/scored_vs_generated.py)

For every held-out sentence the student's label is read two ways on one engine: the most probable label of one
scoring pass (``classify``), and greedy free generation parsed by the task's parser. Agreement is counted only
where free generation yields a label; a reply no label can be read from is counted apart (scoring always gives a
label, so it has nothing to agree with there). Every disagreement is listed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..task import UNPARSEABLE


@dataclass
class Compared:
    text: str
    scored: str
    probability: float
    generated_text: str
    generated: str  # the parsed label, or UNPARSEABLE

    @property
    def comparable(self) -> bool:
        return self.generated != UNPARSEABLE


@dataclass
class Agreement:
    rows: list[Compared]

    @property
    def comparable(self) -> list[Compared]:
        return [row for row in self.rows if row.comparable]

    @property
    def agreeing(self) -> int:
        return sum(row.scored == row.generated for row in self.comparable)

    @property
    def rate(self) -> float | None:
        return self.agreeing / len(self.comparable) if self.comparable else None

    def disagreements(self) -> list[Compared]:
        return [row for row in self.comparable if row.scored != row.generated]

    def to_json(self) -> dict:
        return {"sentences": len(self.rows), "generated_a_label": len(self.comparable),
                "scored_equals_generated": self.agreeing, "agreement": self.rate,
                "rows": [asdict(row) for row in self.rows]}


def compare(engine, chats: list[list[dict]], texts: list[str], task, labels: tuple[str, ...], params) -> Agreement:
    scores = engine.classify(chats, labels)
    generations = engine.generate(chats, params)
    return Agreement([
        Compared(text, score.label, score.probability, generation.text, task.parse(generation.text))
        for text, score, generation in zip(texts, scores, generations, strict=True)
    ])


def format_agreement(agreement: Agreement) -> str:
    comparable, rows = agreement.comparable, agreement.rows
    lines = []
    if agreement.rate is None:
        lines.append(f"Free generation yielded no label on any of the {len(rows)} sentences: nothing to compare.")
    else:
        lines.append(f"scored label = greedy free generation on {agreement.agreeing} of {len(comparable)} sentences "
                     f"where free generation yields a label ({100 * agreement.rate:.1f}%); "
                     f"{len(rows) - len(comparable)} of {len(rows)} sentences gave no label.")
    disagreements = agreement.disagreements()
    if disagreements:
        lines.append(f"Disagreements ({len(disagreements)}):")
        lines += [f"  scored {row.scored} ({row.probability:.3f}), generated {row.generated} "
                  f"({row.generated_text.strip()[:40]!r}): {row.text[:100]}" for row in disagreements]
    return "\n".join(lines)
