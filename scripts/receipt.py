#!/usr/bin/env python
"""Run a command and save what it prints as a receipt: docs/results/NAME.txt.

    python scripts/receipt.py demo_feedback_triage -- make demo
    python scripts/receipt.py memory_budget -- .venv/bin/python scripts/memory_budget.py

The receipt's first lines say what printed it and where:

    # command: make demo
    # date: 2026-12-06 23:10 UTC
    # machine: AMD EPYC 7B13, 2 cores, 7.8 GiB RAM, no GPU (load average 1.20 at start)
    # commit: 6aa3499 (+dirty when tracked code differs from it; docs, tests and *.md do not count)

then the command's standard output (its standard error goes to the terminal only: progress bars and logs), and
last `# wall time: 6 min 55 s (415.2 s)`. The docs quote a receipt under a marker line
`<!-- receipt: docs/results/NAME.txt -->`; tests/test_receipts.py checks every number they quote against it.
The receipt is written only if the command succeeds (a failed run leaves the old receipt in place).
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
HEADER_KEYS = ("command", "date", "machine", "commit")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 ** 2:.1f} GiB RAM"
    except OSError:
        pass
    return "unknown RAM"


def gpus() -> str:
    if shutil.which("nvidia-smi") is None:
        return "no GPU"
    run = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                         capture_output=True, text=True)
    names = [line.strip() for line in run.stdout.splitlines() if line.strip()]
    return f"{len(names)} GPU ({', '.join(names)})" if run.returncode == 0 and names else "no GPU"


def machine() -> str:
    load = f" (load average {os.getloadavg()[0]:.2f} at start)" if hasattr(os, "getloadavg") else ""
    return f"{cpu_model()}, {os.cpu_count()} cores, {memory_gib()}, {gpus()}{load}"


def commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs", ":!tests", ":!*.md"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return head.stdout.strip() + ("+dirty" if dirty else "")


def wall_time(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    human = f"{minutes} min {rest} s" if minutes else f"{rest} s"
    return f"{human} ({seconds:.1f} s)"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        print("error: usage: receipt.py NAME [--results_dir DIR] -- COMMAND ...", file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="The receipt's name: docs/results/NAME.txt.")
    parser.add_argument("--results_dir", default=str(RESULTS), help="Where receipts go (default docs/results).")
    args = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    if not command:
        parser.error("no command after --")
    if "/" in args.name or args.name.endswith(".txt"):
        parser.error("NAME is a bare name: docs/results/NAME.txt")

    # One line, whatever the command holds (a make recipe can pass a quoted backslash-newline through).
    header = {"command": re.sub(r"\s*\\?\n\s*", " ", shlex.join(command)),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": machine(), "commit": commit()}
    out_dir = Path(args.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{args.name}.txt"
    partial = out_dir / f".{args.name}.{os.getpid()}.partial"  # two runs of one receipt never share a file
    start = time.monotonic()
    with open(partial, "w") as out:
        out.writelines(f"# {key}: {header[key]}\n" for key in HEADER_KEYS)
        out.flush()
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, bufsize=1)
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            out.write(line)
        code = process.wait()
        out.write(f"# wall time: {wall_time(time.monotonic() - start)}\n")
    if code != 0:
        print(f"error: {header['command']} exited {code}; receipt not saved (partial output: {partial})",
              file=sys.stderr)
        return code
    partial.replace(target)
    print(f"receipt saved: {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
