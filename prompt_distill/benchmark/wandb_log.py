"""benchmark.py's numbers in wandb: a run of job type "benchmark" in the pipeline's group, with the table it prints
(one row per side) and every number of it as a scalar. A wandb failure is a warning; the results JSON is written."""

from __future__ import annotations

import logging
from pathlib import Path

from ..evaluation.wandb_report import disabled_mode, flatten, pipeline_group

logger = logging.getLogger(__name__)

PREFIX = "benchmark"
SIDE_COLUMNS = ("prompt_tokens", "cached_prompt_tokens", "completion_tokens", "tokens_per_request",
                "latency_median_s", "latency_p90_s", "throughput_samples_per_s")


def side_rows(results: dict) -> tuple[list[str], list[list]] | None:
    """Teacher and student, one row each, the columns of the printed table; None for --student_latency."""
    summary = results.get("summary") or {}
    if not {"teacher", "student"} <= set(summary):
        return None
    return ["side", *SIDE_COLUMNS], [[side, *(summary[side].get(key) for key in SIDE_COLUMNS)]
                                     for side in ("teacher", "student")]


def scalars(results: dict) -> dict[str, float | int]:
    """``benchmark/<side>/<number>``, ``benchmark/ratios/<number>``, and the rest of the file's numbers (the
    latency mode's medians, the batch size, rounds ...); per-request lists are left out."""
    return flatten({key: value for key, value in results.items() if key not in ("requests", "batch_seconds")},
                   PREFIX)


def log_benchmark(config, results: dict) -> str | None:
    """The run, when ``--report_to wandb``; the line to print, or None."""
    if getattr(config, "report_to", "none") != "wandb":
        return None
    from ..tracking import JOB_BENCHMARK, start_run

    adapter = None if config.no_adapter else config.model_path
    group = pipeline_group(getattr(config, "run_group", None), {"adapter": adapter, "test_file": config.test_file})
    name = Path(config.results_file).stem if config.results_file else PREFIX
    pipeline = start_run(config.report_to, JOB_BENCHMARK, name, group,
                         {key: results.get(key) for key in ("machine", "backend", "samples", "rounds", "loading",
                                                            "test_file", "split", "thinking", "setups", "batch_size")})
    if pipeline is None:
        return None
    if disabled_mode(pipeline):  # WANDB_MODE=disabled: wandb's no-op run
        pipeline.finish()
        return None
    logged: dict = dict(scalars(results))
    rows = side_rows(results)
    if rows:
        try:
            import wandb

            logged[f"{PREFIX}/table"] = wandb.Table(columns=rows[0], data=rows[1])
        except Exception as error:  # noqa: BLE001 - the numbers are logged without the table
            logger.warning(f"wandb: could not build the benchmark table ({type(error).__name__}: {error}).")
    pipeline.log(logged)
    folder = pipeline.folder
    pipeline.finish()
    return None if pipeline.warned or folder is None else f"wandb: benchmark logged to {folder}"
