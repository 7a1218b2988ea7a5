"""score() against numbers saved from the hand-written metrics, before they moved onto scikit-learn.

Each file in golden_metrics/ holds one set of predictions (hand-made edge cases, and seeded random sets large
enough that a different order of float operations would show in the last digit) and what score() returned for it
then: the summary, the confusion matrix and every per-label entry. The comparison is exact: JSON keeps a float's
shortest repr, which reads back to the same double, so "equal" here means the JSON results file and every
printed number are unchanged. Regenerate only on purpose: ``python -m tests.evaluation.test_metrics_golden``.
"""

import json
import random
from pathlib import Path

import pytest

from prompt_distill.evaluation.metrics import score
from prompt_distill.task import UNPARSEABLE

GOLDEN = Path(__file__).parent / "golden_metrics"
U = UNPARSEABLE


def _random_case(seed: int, labels: tuple[str, ...], size: int, wrong: float, unreadable: float) -> dict:
    """References skewed towards the first labels; some predictions wrong, some unparseable."""
    rng = random.Random(seed)
    weights = [len(labels) - index for index in range(len(labels))]
    references = rng.choices(labels, weights=weights, k=size)
    predictions = []
    for reference in references:
        draw = rng.random()
        if draw < unreadable:
            predictions.append(U)
        elif draw < unreadable + wrong:
            predictions.append(rng.choice(labels))
        else:
            predictions.append(reference)
    return {"labels": list(labels), "references": references, "predictions": predictions}


def cases() -> dict[str, dict]:
    three = ["a", "b", "c"]
    return {
        "by_hand": {"labels": three, "references": ["a", "a", "a", "b", "b", "c"],
                    "predictions": ["a", "a", "b", "b", U, "a"]},
        "empty": {"labels": three, "references": [], "predictions": []},
        "all_unparseable": {"labels": three, "references": ["a", "b", "b"], "predictions": [U, U, U]},
        "perfect": {"labels": three, "references": ["c", "a", "b", "a"], "predictions": ["c", "a", "b", "a"]},
        # d: in neither list (left out of macro-F1); c: predicted but never a reference (F1 0, counted)
        "absent_and_unreferenced_labels": {"labels": [*three, "d"], "references": ["a", "b", "a", "b"],
                                           "predictions": ["a", "c", "c", "b"]},
        "random_triage_3": _random_case(1, ("urgent", "normal", "spam"), 113, wrong=0.25, unreadable=0.05),
        "random_7_labels": _random_case(0, tuple("abcdefg"), 997, wrong=0.3, unreadable=0.1),
        "random_12_labels": _random_case(2, tuple(f"label_{i}" for i in range(12)), 2503, wrong=0.45,
                                         unreadable=0.02),
    }


def record(case: dict) -> dict:
    scores = score(case["references"], case["predictions"], case["labels"])
    return {
        "summary": scores.summary(),
        "confusion": {"rows": list(scores.confusion.rows), "columns": list(scores.confusion.columns),
                      "counts": scores.confusion.counts, "array": scores.confusion.as_array()},
        "per_label": [entry.to_dict() for entry in scores.per_label],
        "worst_first": [entry.label for entry in scores.worst_first()],
    }


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.json")), ids=lambda path: path.stem)
def test_score_equals_the_saved_numbers_exactly(path):
    saved = json.loads(path.read_text("utf-8"))
    assert json.loads(json.dumps(record(saved["case"]))) == saved["expected"]


def test_every_case_has_its_golden_file():
    assert {path.stem for path in GOLDEN.glob("*.json")} == set(cases())


if __name__ == "__main__":
    GOLDEN.mkdir(exist_ok=True)
    for name, case in cases().items():
        text = json.dumps({"case": case, "expected": record(case)}, indent=1)
        (GOLDEN / f"{name}.json").write_text(text + "\n", "utf-8")
