"""The documented GPU commands, read from where users read them (not a test module).

README.md and docs/*.md: every ```bash block right after a ``<!-- gpu-dry-run: gpus=N -->`` line is a sequence of
commands for an N-GPU machine. The shell scripts (and the FSDP config): the example lines of their header comment, written
``#   COMMAND`` (three spaces), with ``\\`` continuations; a trailing ``# comment`` stays, bash ignores it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"<!-- gpu-dry-run: gpus=(\d+) -->")
# Files whose header comment documents GPU commands, with the machine the examples are written for.
HEADERS = {"train_trl.sh": 8, "create_data_h100x8.sh": 8, "create_data_slurm.sh": 8,
           "configs/accelerate_fsdp.yaml": 8}


@dataclass(frozen=True)
class Block:
    source: str  # file:line of the block's first command
    gpus: int
    commands: tuple[str, ...]


def join_lines(lines: list[str]) -> list[str]:
    """Commands from shell lines: comments and blank lines dropped, backslash continuations joined."""
    commands, current = [], ""
    for line in lines:
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        commands.append(current + stripped)
        current = ""
    assert not current, f"a continuation ends the block: {current!r}"
    return commands


def documented_blocks() -> list[Block]:
    """The marked blocks of README.md, then of every docs/ page."""
    return [block for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))] for block in readme_blocks(path)]


def readme_blocks(path: Path = REPO / "README.md") -> list[Block]:
    lines = path.read_text("utf-8").splitlines()
    name = path.relative_to(REPO).as_posix()
    blocks = []
    for number, line in enumerate(lines):
        found = MARKER.search(line)
        if not found:
            continue
        start = number + 1
        assert lines[start].strip() == "```bash", f"{name}:{start + 1}: the marker must precede a ```bash block"
        end = next(i for i in range(start + 1, len(lines)) if lines[i].strip() == "```")
        blocks.append(Block(f"{name}:{start + 2}", int(found.group(1)), tuple(join_lines(lines[start + 1:end]))))
    return blocks


def header_commands(name: str) -> Block:
    """The example commands of a file's leading comment block."""
    lines = (REPO / name).read_text("utf-8").splitlines()
    header = []
    for line in lines[1 if lines[0].startswith("#!") else 0:]:
        if not line.startswith("#"):
            break
        header.append(line)
    examples = [line[4:] for line in header if line.startswith("#   ") and not line[4:].lstrip().startswith("#")]
    return Block(f"{name} header", HEADERS[name], tuple(join_lines(examples)))
