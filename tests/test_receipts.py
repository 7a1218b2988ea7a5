"""Every measured number the docs quote comes from a saved output (a receipt) and still matches it.

A receipt is docs/results/NAME.txt, written by scripts/receipt.py (`make results-*`): four header lines (command,
date, machine, commit), then what the command printed. In README.md and docs/*.md a marker line

    <!-- receipt: docs/results/NAME.txt -->            (or several, comma-separated)

quotes that receipt in the block right below it (the lines up to the next blank line; a fenced code block whole).
Every number of that block must appear in one of its receipts (thousands separators and signs ignored; numbers in
`code spans` are commands and flags, not results, and are skipped). A markdown table of measured numbers (cells
like 65.6%, 131.4 ms, 70.84 GiB, 118.2x) must sit under a marker, unless it is in NOT_MEASURED below.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
HEADER_KEYS = ("command", "date", "machine", "commit")
MARKER = re.compile(r"^<!-- receipt: (.+?) -->\s*$")
# A number (1,542.2 is 1542.2) and the letters glued to it: "118.2x" is a number, "135M" and "SmolLM2" are names.
NUMBER = re.compile(r"(?<![\w.])((?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?)([A-Za-z_]*)")
UNITS = {"", "x", "s", "ms", "min", "h", "GiB", "MiB"}
# A measured cell: a number with a unit of time, size, share or ratio.
MEASURED = re.compile(r"\d(?:\.\d+)?\s*(?:%|ms\b|s\b|x\b|GiB\b|/s\b|min\b)")
# Tables whose numbers are not measurements (defaults, settings, arithmetic of a formula): (file, first header cell).
NOT_MEASURED = {
    ("docs/evaluate.md", "flag"),     # flag defaults
    ("docs/training.md", "flag"),     # flag defaults
    # vLLM's LoRA buffers and what fits which GPU: hand arithmetic from model shapes, pinned number by number in
    # tests/benchmark/test_benchmark_memory.py (no GPU has run it).
    ("docs/benchmark.md", "student adapter"),
    ("docs/benchmark.md", "machine"),
}


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def numbers(text: str) -> list[str]:
    """The numbers of a text as written, without thousands separators or sign; code spans skipped."""
    text = re.sub(r"`[^`\n]*`", " ", text)
    return [number.replace(",", "") for number, glued in NUMBER.findall(text) if glued in UNITS]


def value(number: str) -> Decimal:
    """8.80 and 8.8 are one number; 0.131 and 0.1314 are two (quote what was printed, do not round)."""
    return Decimal(number).normalize()


def blocks(lines: list[str], start: int) -> list[str]:
    """The block that starts at lines[start]: a fenced code block whole, else the lines up to a blank one."""
    if start >= len(lines):
        return []
    if lines[start].startswith("```"):
        end = start + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        return lines[start:end + 1]
    end = start
    while end < len(lines) and lines[end].strip() and not MARKER.match(lines[end]):
        end += 1
    return lines[start:end]


def markers(path: Path):
    """(line number, receipt paths, quoted block) for every marker of a markdown file."""
    lines = path.read_text().splitlines()
    for index, line in enumerate(lines):
        match = MARKER.match(line)
        if match:
            receipts = [item.strip() for item in match.group(1).split(",")]
            yield index + 1, receipts, blocks(lines, index + 1)


def tables(path: Path):
    """(first line number, header line, lines) for every markdown table."""
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        if lines[index].startswith("|"):
            end = index
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            yield index + 1, lines[index], lines[index:end]
            index = end
        else:
            index += 1


def covered_lines(path: Path) -> set[int]:
    covered = set()
    for line_number, _, block in markers(path):
        covered.update(range(line_number + 1, line_number + 1 + len(block)))
    return covered


def receipt_numbers(receipt: Path) -> set[Decimal]:
    return {value(number) for number in numbers(receipt.read_text().replace("`", ""))}


def check_block(block: list[str], receipts: list[Path]) -> list[str]:
    """The numbers of a quoted block that none of its receipts printed."""
    printed = set().union(*(receipt_numbers(receipt) for receipt in receipts))
    return [number for number in numbers("\n".join(block)) if value(number) not in printed]


def check_header(receipt: Path) -> list[str]:
    head = receipt.read_text().splitlines()[:len(HEADER_KEYS)]
    return [key for position, key in enumerate(HEADER_KEYS)
            if position >= len(head) or not re.match(rf"# {key}: \S", head[position])]


def all_markers():
    return [(path, line, receipts, block) for path in doc_files() for line, receipts, block in markers(path)]


def test_the_docs_quote_receipts():
    assert all_markers(), "no receipt marker in README.md or docs/*.md"


@pytest.mark.parametrize("path, line, receipts, block",
                         [pytest.param(*item, id=f"{item[0].name}:{item[1]}") for item in all_markers()])
def test_every_quoted_number_is_in_its_receipt(path, line, receipts, block):
    files = [ROOT / receipt for receipt in receipts]
    missing = [receipt for receipt in receipts if not (ROOT / receipt).is_file()]
    assert not missing, f"{path.name}:{line} quotes receipts that do not exist: {missing}"
    assert block, f"{path.name}:{line}: nothing below the marker"
    absent = check_block(block, files)
    assert not absent, f"{path.name}:{line}: numbers not printed in {receipts}: {absent}"


@pytest.mark.parametrize("receipt", sorted(RESULTS.glob("*.txt")), ids=lambda path: path.name)
def test_every_receipt_says_what_printed_it(receipt):
    assert not check_header(receipt), f"{receipt.name} lacks the header lines {check_header(receipt)}"


def test_every_table_of_measurements_has_a_receipt():
    bare = []
    for path in doc_files():
        covered = covered_lines(path)
        for line, header, rows in tables(path):
            first_cell = header.strip("|").split("|")[0].strip()
            relative = str(path.relative_to(ROOT))
            if (relative, first_cell) in NOT_MEASURED or line in covered:
                continue
            if any(MEASURED.search(re.sub(r"`[^`]*`", "", row)) for row in rows[2:]):
                bare.append(f"{relative}:{line} {header[:60]}")
    assert not bare, "tables of measured numbers without a receipt marker:\n" + "\n".join(bare)


# The checker itself must be able to fail: a number changed in a copy of a quoted block, a receipt without its
# header, a measured table without a marker.

def test_a_changed_number_is_caught(tmp_path):
    receipt = tmp_path / "r.txt"
    receipt.write_text("# command: x\n# date: d\n# machine: m\n# commit: c\n"
                       "teacher 65.6% (61/93), tokens 1542.2, delta +19.4\n")
    assert check_block(["| teacher | 65.6% | 1,542.2 | +19.4 points |"], [receipt]) == []
    assert check_block(["| teacher | 65.7% | 1,542.2 |"], [receipt]) == ["65.7"]
    assert check_block(["teacher 1,542.3 tokens"], [receipt]) == ["1542.3"]
    assert check_block(["`--max_samples 50` printed 61 of 93"], [receipt]) == []
    assert check_block(["took 7 min"], [receipt]) == ["7"]
    assert check_block(["65.60% and 0.656"], [receipt]) == ["0.656"]


def test_a_receipt_without_its_header_is_caught(tmp_path):
    receipt = tmp_path / "r.txt"
    receipt.write_text("# command: x\n# date: d\naccuracy 65.6%\n")
    assert check_header(receipt) == ["machine", "commit"]


def test_numbers_are_read_as_whole_numbers():
    assert numbers("1,542.2 and 65.6% and 118.2x and SmolLM2-135M and r8 and 0.1314") == [
        "1542.2", "65.6", "118.2", "0.1314"]
    assert numbers("+19.4 (+6.5 to +32.3), 1/56.6") == ["19.4", "6.5", "32.3", "1", "56.6"]


def test_a_table_without_marker_is_caught(tmp_path, monkeypatch):
    doc = tmp_path / "docs" / "x.md"
    doc.parent.mkdir()
    doc.write_text("Intro.\n\n| a | b |\n|---|---|\n| teacher | 65.6% |\n")
    (tmp_path / "README.md").write_text("nothing\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    with pytest.raises(AssertionError, match="docs/x.md:3"):
        test_every_table_of_measurements_has_a_receipt()
    doc.write_text("Intro.\n\n<!-- receipt: docs/results/r.txt -->\n| a | b |\n|---|---|\n| teacher | 65.6% |\n")
    test_every_table_of_measurements_has_a_receipt()
