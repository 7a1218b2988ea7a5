"""Shard selection and the deterministic merge (CPU, scripted engine: see test_labeling.py)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prompt_distill.data import DataError
from prompt_distill.labeling.run import run_labeling
from prompt_distill.labeling.run_files import RunFiles
from prompt_distill.labeling.shards import main as merge_main
from prompt_distill.labeling.shards import merge_shards, select_shard, shard_output_path
from tests.labeling.test_labeling import TASK, ScriptedEngine, make_config, write_input
from tests.signals import default_sigint

REPO = Path(__file__).resolve().parents[2]


@given(total=st.integers(0, 60), num_shards=st.integers(1, 6))
def test_shards_cover_every_sentence_exactly_once(total, num_shards):
    seen = [index for k in range(num_shards) for index in select_shard(range(total), k, num_shards)]
    assert sorted(seen) == list(range(total))
    sizes = [len(select_shard(range(total), k, num_shards)) for k in range(num_shards)]
    assert max(sizes) - min(sizes) <= 1


def test_shard_arguments_are_checked_and_paths_named():
    with pytest.raises(ValueError, match="shard_index"):
        select_shard(range(4), 2, 2)
    with pytest.raises(ValueError, match="num_shards"):
        select_shard(range(4), 0, 0)
    assert shard_output_path("data/x.jsonl", 1, 2) == Path("data/x.shard-1-of-2.jsonl")
    assert shard_output_path("data/x.jsonl", 0, 1) == Path("data/x.jsonl")


def label_shards(tmp_path, num_shards=2, **overrides):
    for k in range(num_shards):
        output = shard_output_path(tmp_path / "out" / "data.jsonl", k, num_shards)
        config = make_config(tmp_path, output_file=str(output), shard_index=k, num_shards=num_shards, **overrides)
        run_labeling(config, TASK, lambda: ScriptedEngine(failures={"Привет": 99}), progress=False)


def test_merged_shards_equal_a_single_process_run_byte_for_byte(tmp_path):
    write_input(tmp_path / "in.txt")
    label_shards(tmp_path)
    result = merge_shards(tmp_path / "out" / "data.jsonl", 2)
    merged = RunFiles.for_output(result.output_file)
    assert (result.labelled, result.unparseable) == (5, 1)

    single = make_config(tmp_path, output_file=str(tmp_path / "single" / "data.jsonl"))
    run_labeling(single, TASK, lambda: ScriptedEngine(failures={"Привет": 99}), progress=False)
    single_files = RunFiles.for_output(single.output_file)
    assert merged.training.read_bytes() == single_files.training.read_bytes()
    strip = [{k: v for k, v in json.loads(line).items() if k != "latency_s"} for line in merged.sidecar.read_text().splitlines()]
    expected = [{k: v for k, v in json.loads(line).items() if k != "latency_s"} for line in single_files.sidecar.read_text().splitlines()]
    assert strip == sorted(expected, key=lambda r: r["index"])

    first = [path.read_bytes() for path in (merged.training, merged.sidecar, merged.header)]
    merge_shards(tmp_path / "out" / "data.jsonl", 2)
    assert [path.read_bytes() for path in (merged.training, merged.sidecar, merged.header)] == first

    def no_engine():
        raise AssertionError("the merged output is complete")

    resumed = run_labeling(make_config(tmp_path), TASK, no_engine, progress=False)
    assert resumed.resumed == 6


def test_an_incomplete_missing_or_foreign_shard_is_refused(tmp_path):
    write_input(tmp_path / "in.txt")
    with pytest.raises(DataError, match="shard 0 has not run"):
        merge_shards(tmp_path / "out" / "data.jsonl", 2)
    output = shard_output_path(tmp_path / "out" / "data.jsonl", 0, 2)
    run_labeling(make_config(tmp_path, output_file=str(output), shard_index=0, num_shards=2, max_samples=3), TASK,
                 lambda: ScriptedEngine(), progress=False)
    run_labeling(make_config(tmp_path, output_file=str(shard_output_path(tmp_path / "out" / "data.jsonl", 1, 2)),
                             shard_index=1, num_shards=2, model_name="teacher-b"), TASK, lambda: ScriptedEngine(), progress=False)
    with pytest.raises(DataError, match="different runs"):
        merge_shards(tmp_path / "out" / "data.jsonl", 2)


def test_a_shard_that_stopped_early_must_be_resumed_before_the_merge(tmp_path):
    write_input(tmp_path / "in.txt")
    label_shards(tmp_path)
    shard = RunFiles.for_output(shard_output_path(tmp_path / "out" / "data.jsonl", 1, 2))
    lines = shard.sidecar.read_text().splitlines(keepends=True)
    shard.sidecar.write_text("".join(lines[:-1]))
    with pytest.raises(DataError, match="shard 1 is incomplete"):
        merge_shards(tmp_path / "out" / "data.jsonl", 2)
    assert merge_main(["--output_file", str(tmp_path / "out" / "data.jsonl"), "--num_shards", "2"]) == 2


# Each call waits (up to 10 s) until both shards have logged theirs, so that a shard told to fail cannot stop
# the other before it has started: the test then always sees both calls.
STUB = """#!/usr/bin/env bash
echo "$$ $CUDA_VISIBLE_DEVICES $*" >> "{calls}"
for _ in $(seq 200); do [ "$(wc -l < "{calls}")" -ge 2 ] && break; sleep 0.05; done
case "$*" in
  *"--shard_index 0"*) sleep "${{STUB_SLEEP0:-0}}"; exit "${{STUB_EXIT0:-0}}" ;;
  *"--shard_index 1"*) sleep "${{STUB_SLEEP1:-0}}"; exit "${{STUB_EXIT1:-0}}" ;;
esac
"""


def run_script(tmp_path, *args, signal_after=None, **env):
    """create_data_h100x8.sh with a stand-in for python that logs its arguments and sleeps or fails on demand."""
    calls = tmp_path / "calls.txt"
    stub = tmp_path / "python-stub"
    stub.write_text(STUB.format(calls=calls))
    stub.chmod(0o755)
    environment = dict(os.environ, PYTHON=str(stub), STOP_GRACE_S="3", **env)
    process = subprocess.Popen(
        ["bash", str(REPO / "create_data_h100x8.sh"), "--output_file", str(tmp_path / "out.jsonl"), *args],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=default_sigint,
    )
    if signal_after is not None:
        time.sleep(signal_after)
        process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    lines = calls.read_text().splitlines() if calls.exists() else []
    return process.returncode, output, [line.split(" ", 2) for line in lines]


def alive(pid):
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(sys.platform != "linux", reason="process groups as on the GPU servers")
def test_the_h100x8_script_runs_two_shards_on_four_gpus_each_then_merges(tmp_path):
    code, output, calls = run_script(tmp_path, "--model_name", "m", "--max_samples", "5", TP="4")
    assert code == 0, output
    shards = sorted(calls[:2], key=lambda call: call[1])
    assert [call[1] for call in shards] == ["0,1,2,3", "4,5,6,7"]
    for k, (_, _, args) in enumerate(shards):
        assert f"--shard_index {k} --num_shards 2" in args and "--tensor_parallel_size 4" in args
        assert "--model_name m" in args and args.endswith("--max_samples 5")
    assert calls[2][2] == f"-m prompt_distill.labeling.shards --output_file {tmp_path / 'out.jsonl'} --num_shards 2"


@pytest.mark.skipif(sys.platform != "linux", reason="process groups as on the GPU servers")
def test_a_failing_shard_or_ctrl_c_stops_every_shard(tmp_path):
    code, output, calls = run_script(tmp_path, STUB_SLEEP0="30", STUB_EXIT1="3")
    assert code == 3 and "A shard failed" in output
    assert len(calls) == 2 and not any(alive(call[0]) for call in calls)  # no merge, no shard left running

    (tmp_path / "calls.txt").unlink()
    code, output, calls = run_script(tmp_path, signal_after=1.5, STUB_SLEEP0="30", STUB_SLEEP1="30")
    assert code == 130 and "Interrupted" in output
    assert len(calls) == 2 and not any(alive(call[0]) for call in calls)


def test_a_shard_retried_with_retry_unparseable_merges_with_its_last_records(tmp_path):
    write_input(tmp_path / "in.txt")
    label_shards(tmp_path)  # "Привет" (sentence 5, shard 1) stays unparseable
    shard = shard_output_path(tmp_path / "out" / "data.jsonl", 1, 2)
    retry = make_config(tmp_path, output_file=str(shard), shard_index=1, num_shards=2, retry_unparseable=True)
    run_labeling(retry, TASK, lambda: ScriptedEngine(), progress=False)
    result = merge_shards(tmp_path / "out" / "data.jsonl", 2)
    assert (result.labelled, result.unparseable) == (6, 0)
    merged = RunFiles.for_output(result.output_file)
    records = [json.loads(line) for line in merged.sidecar.read_text().splitlines()]
    assert [record["index"] for record in records] == list(range(6))  # one record per sentence: the last one
    assert records[5]["status"] == "labelled"
