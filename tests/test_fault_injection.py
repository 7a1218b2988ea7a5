"""scripts/fault_injection.py with a small count: SIGKILLs during labelling and after a training checkpoint."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_kills_during_labelling_and_training_lose_and_duplicate_nothing(tmp_path, smollm2_dir):
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "fault_injection.py"), "--kills", "3",
                          "--sentences", "24", "--max_delay_s", "10", "--train_kills", "1", "--work_dir",
                          str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert "duplicates 0, lost 0, training file equals the sidecar's labels: True" in run.stdout
    assert "resumed to global step 6 of 6" in run.stdout
