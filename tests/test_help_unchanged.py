"""``--help`` of every top-level script is byte for byte what it was before the stage subpackages (issue 15).

The golden files were written by the scripts at the commit before any module moved, with ``COLUMNS=100``;
regenerate one only for a deliberate change of a flag:
``COLUMNS=100 python create_data.py --help > tests/golden_help/create_data.txt``.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden_help"
SCRIPTS = ["create_data", "train_sft_trl", "evaluate", "benchmark", "predict"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_is_identical_to_the_golden_file(script):
    env = {**os.environ, "COLUMNS": "100"}
    shown = subprocess.run([sys.executable, f"{script}.py", "--help"], cwd=ROOT, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert shown == (GOLDEN / f"{script}.txt").read_text(), f"{script}.py --help changed"
