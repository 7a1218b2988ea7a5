"""benchmark.py in wandb: a run of job type "benchmark" with the printed table's numbers, read back offline."""

from __future__ import annotations

import pytest

from prompt_distill.benchmark.config import BenchmarkConfig
from prompt_distill.benchmark.wandb_log import SIDE_COLUMNS, log_benchmark, scalars, side_rows
from prompt_distill.cli import parse_config
from tests.wandb_offline import offline_runs


def _side(scale: float) -> dict:
    return {"prompt_tokens": 1500.0 * scale, "cached_prompt_tokens": None, "completion_tokens": 2.0,
            "tokens_per_request": 1500.0 * scale + 2, "latency_median_s": 0.5 * scale, "latency_p90_s": 0.7 * scale,
            "throughput_samples_per_s": 10.0 / scale}


RESULTS = {"format": "prompt-distill-benchmark/1", "machine": "CPU", "backend": "transformers", "samples": 4,
           "rounds": 2, "batch_size": 4, "warm_up_s": 1.5, "summary": {"teacher": _side(1.0), "student": _side(0.02)},
           "ratios": {"tokens_per_request": 49.0, "throughput": 50.0}, "requests": {"teacher": [{"latency_s": 1}]},
           "batch_seconds": {"teacher": [1.0]}}


def test_the_table_and_its_numbers():
    columns, rows = side_rows(RESULTS)
    assert columns == ["side", *SIDE_COLUMNS] and [row[0] for row in rows] == ["teacher", "student"]
    assert rows[1][1:] == [RESULTS["summary"]["student"][key] for key in SIDE_COLUMNS]
    logged = scalars(RESULTS)
    assert logged["benchmark/summary/teacher/latency_median_s"] == 0.5
    assert logged["benchmark/ratios/throughput"] == 50.0 and logged["benchmark/warm_up_s"] == 1.5
    assert not any("requests" in key or "batch_seconds" in key or "cached" in key for key in logged)
    assert side_rows({"format": "latency", "summary": {"generate": {}}}) is None


def test_a_benchmark_run_in_the_group(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_RUN_GROUP", raising=False)
    config = parse_config(BenchmarkConfig, ["--report_to", "wandb", "--run_group", "pipe", "--output_file",
                                            str(tmp_path / "bench_cpu.json")])
    assert log_benchmark(parse_config(BenchmarkConfig, ["--report_to", "none"]), RESULTS) is None
    assert "benchmark logged to" in log_benchmark(config, RESULTS)
    (run,) = offline_runs(tmp_path)
    assert (run.job_type, run.group, run.name) == ("benchmark", "pipe", "bench_cpu")
    assert run.summary.get("benchmark/table._type") == "table-file"
    for key, value in scalars(RESULTS).items():
        assert run.summary[key] == pytest.approx(value), key
