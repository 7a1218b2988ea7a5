"""``--help`` of every top-level script offers what it offered before the stage subpackages (issue 15) and before
the flags became dataclass fields (issue 20): the same flags, choices, defaults and help sentences. Layout may
change (groups, order, line breaks, the ``--flag-name`` spelling and ``--config`` that TRL's parser adds).

The golden files were written by the scripts with ``COLUMNS=100``; regenerate one only for a deliberate change of
a flag: ``COLUMNS=100 python create_data.py --help > tests/golden_help/create_data.txt``.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden_help"
SCRIPTS = ["create_data", "train_sft_trl", "evaluate", "benchmark", "predict"]
OPTION = re.compile(r"^  (-{1,2}[\w-]+)")
# Options the parser itself adds: argparse's --help, TRL's --config.
PARSER_OWN = {"-h", "--config"}


def options(help_text: str) -> dict[str, str]:
    """Each option's first spelling -> its choices and help, whitespace and line breaks normalised."""
    found, current = {}, None
    body = help_text.split("\n\n", 2)[-1] if "options:" in help_text else help_text
    for line in body[body.index("options:"):].splitlines():
        start = OPTION.match(line)
        if start:
            current = start.group(1)
            header, _, help_part = line.strip().partition("  ")
            choices = re.findall(r"\{[^}]*\}", header)
            found[current] = " ".join([*choices[:1], help_part.strip()])
        elif current and line.startswith("    "):
            found[current] = f"{found[current]} {line.strip()}"
        elif not line.strip() or not line.startswith(" "):
            current = None  # a group heading or a blank line ends an option
    # An off switch's "(default: False)" is layout: whether it is printed depends on how the switch is declared.
    return {name: " ".join(text.replace("(default: False)", "").split()) for name, text in found.items()
            if name not in PARSER_OWN}


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_offers_what_the_golden_file_offers(script):
    env = {**os.environ, "COLUMNS": "100"}
    shown = subprocess.run([sys.executable, f"{script}.py", "--help"], cwd=ROOT, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert options(shown) == options((GOLDEN / f"{script}.txt").read_text()), f"{script}.py --help changed"


def test_the_comparison_sees_a_changed_default_and_a_missing_flag():
    golden = (GOLDEN / "create_data.txt").read_text()
    assert options(golden)["--temperature"].endswith("(default: 0.15)")
    assert options(golden.replace("(default: 0.15)", "(default: 0.2)")) != options(golden)
    assert "--temperature" not in options(golden.replace("  --temperature TEMPERATURE", "  --sampling TEMPERATURE"))
