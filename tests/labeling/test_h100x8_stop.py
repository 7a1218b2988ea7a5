"""create_data_h100x8.sh stops whole shards: every process of a shard's group, not only its main process.

vLLM runs its workers as child processes of create_data.py. The stand-in for python below does the same: it starts
a "worker" that ignores SIGTERM for a while (as a worker busy on the GPU would) and then sleeps. When the script
returns, that worker must be gone too, or it would still hold GPU memory that the next run needs.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.signals import default_sigint

REPO = Path(__file__).resolve().parents[2]

# $1.. are create_data.py's arguments. The worker ignores TERM for WORKER_TERM_IGNORED_S seconds after TERM comes;
# the main process dies on TERM at once (the default action).
STUB = """#!/usr/bin/env bash
case "$*" in *prompt_distill.labeling.shards*) exit 0 ;; esac
bash -c 'trap "sleep {ignored}; exit 0" TERM; echo $$ >> "{workers}"; while true; do sleep 0.1; done' &
echo "$$" >> "{mains}"
wait
"""


def start(tmp_path, ignored_s=2):
    stub = tmp_path / "python-stub"
    stub.write_text(STUB.format(ignored=ignored_s, workers=tmp_path / "workers", mains=tmp_path / "mains"))
    stub.chmod(0o755)
    # Two shards of 4 GPUs, whatever GPUs this machine has (or lacks).
    env = dict(os.environ, PYTHON=str(stub), STOP_GRACE_S="10", TP="4", GPU_GROUPS="0,1,2,3 4,5,6,7")
    process = subprocess.Popen(
        ["bash", str(REPO / "create_data_h100x8.sh"), "--output_file", str(tmp_path / "out.jsonl")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # both shards and both workers are up
        if all(len(pids(tmp_path / name)) == 2 for name in ("workers", "mains")):
            return process
        time.sleep(0.1)
    process.kill()
    raise AssertionError("the stand-in shards did not start: " + process.communicate()[0])


def pids(path):
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(sys.platform != "linux", reason="process groups as on the GPU servers")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_waits_for_every_process_of_each_shard(tmp_path, sig):
    process = start(tmp_path)
    process.send_signal(sig)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 130, output
    assert "Interrupted" in output
    workers = pids(tmp_path / "workers")
    assert not [pid for pid in workers if alive(pid)], f"workers still running after the script returned: {output}"


@pytest.mark.skipif(sys.platform != "linux", reason="process groups as on the GPU servers")
def test_a_worker_that_ignores_term_is_killed_after_the_grace_period(tmp_path):
    process = start(tmp_path, ignored_s=60)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 130, output
    assert 9 <= time.monotonic() - started < 25  # STOP_GRACE_S=10, then KILL
    assert not [pid for pid in pids(tmp_path / "workers") if alive(pid)], output
