"""Pre-flight checks: flag values refused before anything is loaded, each in one line that names the flag, the
value and what to pass.

Every script runs these (and then ``engines.choose_backend``, which checks the backend and the GPU count) before
its first tokenizer, config or model load, so a wrong flag costs nothing and leaves no file behind. The checks read
the flags a config has (``getattr``): create_data.py, benchmark.py, evaluate.py and predict.py share them.
"""

from __future__ import annotations


class PreflightError(ValueError):
    """A flag value (or the backend or GPUs it needs) that cannot work; the message says what to pass instead."""
