"""The printed evaluation report: live per-sample lines, confusion matrix, per-label table, problems, summary.

Pure formatting: every function takes numbers from ``prompt_distill.evaluation.metrics`` and returns text, so the layout is
tested without a model.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..task import UNPARSEABLE
from .metrics import UNPARSEABLE_COLUMN, ConfusionMatrix, Fidelity, LabelStats, Scores

WIDE_RULE = "=" * 80
NARROW_RULE = "=" * 60
GOOD_AT = 90.0  # per-label accuracy (%) at or above which a label is marked ✓
FAIR_AT = 50.0  # ... at or above which it is ⚠️; below it is ✗
EXAMPLE_CHARS = 50
LINE_TEXT_CHARS = 100


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _shown(label: str) -> str:
    return UNPARSEABLE_COLUMN if label == UNPARSEABLE else label


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def marker(accuracy_percent: float) -> str:
    """✓, ⚠️ or ✗ followed by the spacing that lines the labels up (⚠️ is two code points, drawn narrow)."""
    if accuracy_percent >= GOOD_AT:
        return "✓ "
    if accuracy_percent >= FAIR_AT:
        return "⚠️  "
    return "✗ "


def sample_line(
    position: int,
    total: int,
    predicted: str,
    reference: str,
    matches_so_far: int,
    text: str,
    reference_name: str = "GT",
    score_name: str = "Acc",
    label_width: int = 2,
) -> str:
    """``✓ [  3/176] Pred: de | GT: de | Acc: 3/3 (100.0%) | text``; position counts from 1."""
    mark = "✓" if predicted == reference else "✗"
    width = len(str(total))
    rate = _percent(matches_so_far, position)
    return (
        f"{mark} [{position:>{width}}/{total}] Pred: {_shown(predicted):<{label_width}} | "
        f"{reference_name}: {reference:<{label_width}} | {score_name}: {matches_so_far}/{position} ({rate:5.1f}%) | "
        f"{_shorten(text, LINE_TEXT_CHARS)}"
    )


def section(title: str, rule: str = WIDE_RULE) -> str:
    return f"{rule}\n{title}\n{rule}"


def confusion_table(matrix: ConfusionMatrix, row_name: str = "gold") -> str:
    """Rows: reference labels; columns: predicted labels then ``?`` (unparseable); zeros drawn as ``.``."""
    totals = {row: matrix.row_total(row) for row in matrix.rows}
    largest = max([*totals.values(), 0])
    cell = max(3, len(str(largest))) + 1
    head = max(len(row) for row in matrix.rows)
    header = " " * (head + 2) + "".join(f"{column:>{cell}}" for column in matrix.columns) + "  | Total"
    lines = [
        section(f"CONFUSION MATRIX (rows: {row_name} label, columns: prediction, {UNPARSEABLE_COLUMN}: unparseable)"),
        "",
        header,
        " " * (head + 1) + "-" * (len(header) - head - 1),
    ]
    for row in matrix.rows:
        cells = "".join(
            f"{(matrix.counts[row][column] or '.'):>{cell}}" for column in matrix.columns
        )
        lines.append(f"{row:<{head}} |{cells}  | {totals[row]:>{cell}}")
    return "\n".join(lines)


def label_line(entry: LabelStats, head: int) -> str:
    accuracy = 100.0 * entry.accuracy
    return (
        f"{marker(accuracy)}{entry.label:>{head}}: {accuracy:5.1f}% ({entry.correct:>4}/{entry.support:>4})   "
        f"precision {entry.precision:.2f}  recall {entry.recall:.2f}  F1 {entry.f1:.2f}"
    )


def per_label_table(scores: Scores) -> str:
    ranked = scores.worst_first()
    head = max(len(entry.label) for entry in scores.per_label)
    lines = [
        section(f"PER-LABEL ACCURACY (worst first; ✓ >= {GOOD_AT:.0f}%, ⚠️ >= {FAIR_AT:.0f}%, ✗ below)"),
        *(label_line(entry, head) for entry in ranked),
        f"Macro-F1: {scores.macro_f1:.4f}",
    ]
    absent = [entry.label for entry in scores.per_label if not entry.support]
    if absent:
        lines.append(f"No examples of: {', '.join(absent)} (not in the evaluated sentences; left out of the table)")
    return "\n".join(lines)


def _error_line(example: dict) -> str:
    text = _shorten(example["text"], EXAMPLE_CHARS)
    if example["predicted"] == UNPARSEABLE:
        raw = _shorten(str(example.get("raw", "")), 30)
        return f"     - Unparseable answer {raw!r} (should be {example['reference']}): {text}"
    return f"     - Predicted {example['predicted']} (should be {example['reference']}): {text}"


def problem_labels(
    scores: Scores,
    examples: dict[str, list[dict]],
    label_names: dict[str, str] | None = None,
    top: int = 5,
    per_label: int = 3,
) -> str:
    """The ``top`` labels with the lowest accuracy that have errors, each with up to ``per_label`` errors."""
    names = label_names or {}
    faulty = [entry for entry in scores.worst_first() if entry.correct < entry.support][:top]
    lines = [section(f"MOST PROBLEMATIC LABELS (Top {top})")]
    if not faulty:
        lines.append("\nNo errors: every evaluated sentence was classified correctly.")
    for rank, entry in enumerate(faulty, start=1):
        name = f" ({names[entry.label]})" if entry.label in names else ""
        lines += [
            "",
            f"{rank}. Label: {entry.label}{name} - Accuracy: {100.0 * entry.accuracy:.1f}% "
            f"({entry.correct}/{entry.support})",
            "   Error examples:",
            *(_error_line(example) for example in examples.get(entry.label, [])[:per_label]),
        ]
    return "\n".join(lines)


def summary_block(
    context: Sequence[tuple[str, str]],
    scores: Scores,
    graded_against: str,
    samples_per_second: float | None = None,
    seconds: float | None = None,
) -> str:
    """``context``: (name, value) lines shown above the numbers: model, adapter, backend, data, split."""
    lines = [section("EVALUATION SUMMARY", NARROW_RULE)]
    lines += [f"{name}: {value}" for name, value in context]
    lines += [
        "",
        "Performance:",
        f"  Total samples: {scores.total}",
        f"  Successfully parsed: {scores.parsed}",
        f"  Unparseable responses: {scores.unparseable}",
        f"  Parse rate: {100.0 * scores.parse_rate:.2f}%",
        "",
        f"  Overall {graded_against}: {100.0 * scores.accuracy:.2f}%",
        f"  Correct: {scores.correct}/{scores.total}",
        f"  Macro-F1: {scores.macro_f1:.4f}",
    ]
    if samples_per_second is not None and seconds is not None:
        lines.append(f"  Speed: {samples_per_second:.2f} samples/s ({seconds:.1f} s for {scores.total} samples)")
    return "\n".join(lines)


def _agreement_line(name: str, value) -> str:
    return f"  {name:<30} {100.0 * value.rate:6.2f}% ({value.matches}/{value.total})"


def fidelity_block(result: Fidelity, teacher_file: str) -> str:
    lines = [
        section("TEACHER FIDELITY (student, teacher and gold on the same sentences)", NARROW_RULE),
        f"Teacher labels: {teacher_file}",
        f"  {result.with_teacher} of {result.evaluated} evaluated sentences have a teacher label"
        + ("" if result.with_teacher == result.evaluated else "; the rest are left out of this block"),
        _agreement_line("Student vs teacher agreement:", result.student_vs_teacher),
    ]
    if not result.with_teacher:
        lines.append("  No evaluated sentence has a teacher label: was the teacher file made from this test file?")
        return "\n".join(lines)
    if result.teacher_vs_gold is None:
        lines.append("  No gold labels: teacher-vs-gold and student-vs-gold accuracy cannot be computed.")
    else:
        lines += [
            _agreement_line("Teacher vs gold accuracy:", result.teacher_vs_gold),
            _agreement_line("Student vs gold accuracy:", result.student_vs_gold),
        ]
    return "\n".join(lines)


def _tokens(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def _points(difference: dict) -> str:
    low, high = difference["interval"]["low"], difference["interval"]["high"]
    return f"{100.0 * difference['points']:+.1f} points, 95% CI [{100.0 * low:+.1f}, {100.0 * high:+.1f}]"


def distillation_block(block: dict) -> str:
    """Base (no prompt), teacher (prompt) and student (no prompt) on the same held-out gold sentences."""
    rows = (
        ("base", "Base model, no prompt"),
        ("teacher", "Teacher, with the prompt"),
        ("student", "Student, no prompt"),
    )
    lines = [
        section(f"DISTILLATION (gold labels, {block['sentences']} sentences of split {block.get('split', '?')}, "
                "the same for all three)", NARROW_RULE),
        f"Base: {block['baseline_file']}   Teacher: {block['teacher_file']}",
        f"  {'':<26}{'accuracy':>9}  {'95% CI':<15}{'tokens/request':>15}",
    ]
    for name, title in rows:
        entry = block["labellers"][name]
        low, high = entry["interval"]["low"], entry["interval"]["high"]
        lines.append(
            f"  {title:<26}{100.0 * entry['accuracy']:8.1f}%  [{100.0 * low:4.1f}, {100.0 * high:4.1f}]"
            f"{_tokens(entry['tokens_per_request']):>16}"
        )
    gain = block["gain_kept"]
    ratio = block["token_ratio_teacher_to_student"]
    lines += [
        f"  Teacher - base: {_points(block['teacher_minus_base'])}",
        f"  Student - base: {_points(block['student_minus_base'])}",
        f"  Student - teacher: {_points(block['student_minus_teacher'])}",
        "  Gain kept, (student - base) / (teacher - base): "
        + ("n/a (the teacher is not better than the base)" if gain is None else f"{gain:.2f}"),
        "  Tokens per request, teacher / student: " + ("n/a" if ratio is None else f"{ratio:.1f}x"),
        f"  95% intervals: {block['bootstrap']['resamples']:,} paired bootstrap resamples of the sentences "
        f"(seed {block['bootstrap']['seed']}, percentiles).",
        *(f"  Note: {note}" for note in block.get("notes", [])),
    ]
    return "\n".join(lines)


def confidence_block(confidence: dict, score_name: str = "accuracy") -> str:
    """``calibration.confidence_summary``'s numbers: the coverage table, then the calibration error."""
    total = confidence["sentences"]
    lines = [
        section(f"CONFIDENCE (the student's probability of its label, {total} sentences)", NARROW_RULE),
        "  Answering only the most confident share (ties at the cut count their expected share):",
        f"  {'coverage':>8}  {'answered':>9}  {score_name:>9}  lowest probability answered",
    ]
    for row in confidence["coverage"]:
        answered = f"{row['answered']}/{row['total']}"
        lines.append(f"  {row['percent']:>7}%  {answered:>9}  {100.0 * row['accuracy']:>8.1f}%  "
                     f"{row['lowest_confidence']:.4f}")
    gap = round(100.0 * (confidence["mean_confidence"] - confidence["accuracy"]), 1)  # as printed
    leaning = f"overconfident by {gap:.1f} points" if gap > 0 else \
        f"underconfident by {-gap:.1f} points" if gap < 0 else "the same on average"
    lines += [
        f"  Expected calibration error ({confidence['ece_bins']} equal-width bins): {confidence['ece']:.4f}",
        f"  Mean confidence {100.0 * confidence['mean_confidence']:.1f}% vs {score_name} "
        f"{100.0 * confidence['accuracy']:.1f}%: {leaning}",
    ]
    return "\n".join(lines)


def _threshold(value: float) -> str:
    return "above every probability" if value > 1.0 else f"{value:.6g}"


def cascade_line(cascade: dict) -> str:
    """The cascade in one line: its accuracy, the share deferred, and its cost against either model alone."""
    tokens = cascade["tokens_per_request"]
    return (
        f"Cascade at P = {_threshold(cascade['threshold'])}: {100.0 * cascade['accuracy']:.1f}% "
        f"({cascade['correct']}/{cascade['sentences']}) with {100.0 * cascade['deferred_share']:.1f}% deferred to "
        f"the teacher; tokens/request {_tokens(tokens['cascade'])} vs student alone {_tokens(tokens['student_only'])}"
        f", teacher alone {_tokens(tokens['teacher_only'])}"
    )


def cascade_block(cascade: dict) -> str:
    """Below P the teacher's label replaces the student's; what that buys in accuracy and costs in tokens."""
    tokens = cascade["tokens_per_request"]
    score_name = "accuracy" if cascade["reference"] == "gold" else "agreement with the teacher"
    lines = [
        section("CASCADE TO THE TEACHER (student probability below P: the teacher's label is used)", NARROW_RULE),
        f"Teacher labels: {cascade['teacher_file']}",
        f"  {cascade_line(cascade)}",
    ]
    if cascade.get("target_accuracy") is not None:
        target = f"--target_accuracy {cascade['target_accuracy']:g}"
        if cascade["target_reached"]:
            lines.append(f"  P = {_threshold(cascade['threshold'])} was picked by {target} on the same sentences "
                         "it is reported on: this accuracy is optimistic (pick P on other sentences to measure it).")
        else:
            lines.append(f"  {target} is not reached on these sentences, even deferring every sentence with a teacher "
                         f"label; shown: the cascade with the highest {score_name}, P = "
                         f"{_threshold(cascade['threshold'])}, picked on these same sentences (optimistic).")
    lines.append(f"  Deferred to the teacher: {cascade['deferred']} of {cascade['sentences']} "
                 f"({100.0 * cascade['deferred_share']:.1f}%)")
    if cascade["below_without_teacher"]:
        lines.append(f"  Below P without a teacher label: {cascade['below_without_teacher']} (cannot be deferred: "
                     "they keep the student's answer and are graded as such)")
    teacher = ("n/a (no sentence has a teacher label)" if cascade["teacher_accuracy"] is None else
               f"{100.0 * cascade['teacher_accuracy']:.1f}% (on the {cascade['with_teacher']} with a teacher label)")
    lines.append(f"  {score_name.capitalize()}: cascade {100.0 * cascade['accuracy']:.1f}%, student alone "
                 f"{100.0 * cascade['student_accuracy']:.1f}%, teacher alone {teacher}")
    lines.append(f"  Tokens per request (prompt + answer): cascade {_tokens(tokens['cascade'])}, student alone "
                 f"{_tokens(tokens['student_only'])}, teacher alone {_tokens(tokens['teacher_only'])}")
    if not cascade["teacher_sidecar_found"]:
        lines.append(f"  The teacher's tokens are unknown: {cascade['teacher_sidecar']} (create_data.py's "
                     "sidecar) was not found.")
    elif cascade["teacher_tokens_known"] < cascade["sentences"]:
        lines.append(f"  Teacher alone: the mean over the {cascade['teacher_tokens_known']} of {cascade['sentences']}"
                     " sentences whose request is in the sidecar.")
    if cascade["reference"] == "teacher":
        lines.append("  Graded against the teacher's labels (no gold): a deferred sentence agrees by construction.")
    return "\n".join(lines)
