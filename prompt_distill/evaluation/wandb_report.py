"""What an evaluation shows in wandb, built from the results dict alone (so it is tested without a run), and the
call that logs it through ``prompt_distill.tracking``.

- ``scalars``: every number of every block, flattened to ``eval/<block>/<key>`` (the summary's as ``eval/<key>``):
  accuracy and the summary, fidelity, confidence (ECE, accuracy at each coverage), cascade, distillation.
- ``per_label_rows``, ``prediction_rows``, ``reliability_rows``: the columns and rows of the ``wandb.Table`` s.
- ``confusion_inputs``: class names and index lists for ``wandb.plot.confusion_matrix`` (the interactive chart; an
  unparseable answer is the ``?`` column, as in the printed matrix and the PNG).
- ``payload``: the dict given to ``run.log`` (tables, chart, images, scalars); needs wandb, not a run.
- ``log_evaluation``: the evaluation's run (job type "evaluate", the pipeline's group), the adapter's model artifact
  as its input, the payload; a wandb failure is a warning, never a lost results file.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

from .metrics import UNPARSEABLE_COLUMN

logger = logging.getLogger(__name__)

PREFIX = "eval"
PER_LABEL_COLUMNS = ("label", "precision", "recall", "f1", "support", "predicted", "correct")
PREDICTION_COLUMNS = ("text", "gold", "teacher", "student", "probability", "correct")
RELIABILITY_COLUMNS = ("lower", "upper", "count", "mean_confidence", "accuracy")
# Keys of the results blocks that are not numbers to chart: file names, notes, the per-bin data (a table of its own).
SKIPPED_KEYS = frozenset({"reliability", "notes", "bootstrap", "teacher_file", "teacher_sidecar", "baseline_file",
                          "reference", "split"})


def _number(value) -> float | int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return value
    return None


def flatten(block, prefix: str) -> dict[str, float | int]:
    """The numbers of a nested dict as ``prefix/key/subkey``; strings, None and lists are left out, except the
    coverage list, whose points become ``prefix/coverage_<percent>pct/<key>``."""
    found: dict[str, float | int] = {}
    if not isinstance(block, dict):
        return found
    for key, value in block.items():
        if key in SKIPPED_KEYS:
            continue
        name = f"{prefix}/{key}"
        if isinstance(value, dict):
            found.update(flatten(value, name))
        elif key == "coverage" and isinstance(value, list):
            for point in value:
                if isinstance(point, dict) and "percent" in point:
                    found.update(flatten({k: v for k, v in point.items() if k != "percent"},
                                         f"{prefix}/coverage_{point['percent']}pct"))
        elif (number := _number(value)) is not None:
            found[name] = number
    return found


def scalars(results: dict) -> dict[str, float | int]:
    """The summary as ``eval/<key>`` (accuracy, macro_f1, parse_rate ...), then each block under its name."""
    logged = flatten(results.get("summary") or {}, PREFIX)
    for block in ("fidelity", "confidence", "cascade", "distillation"):
        logged.update(flatten(results.get(block) or {}, f"{PREFIX}/{block}"))
    timing = results.get("timing") or {}
    logged.update(flatten({key: timing.get(key) for key in ("seconds", "samples_per_second")}, f"{PREFIX}/timing"))
    return logged


def per_label_rows(results: dict) -> tuple[list[str], list[list]]:
    """One row per label, in the task's order: precision, recall, F1, support (and predicted / correct counts)."""
    by_label = {entry["label"]: entry for entry in results["per_label"]}
    rows = [[label, *(by_label[label][key] for key in PER_LABEL_COLUMNS[1:])]
            for label in results["task"]["labels"] if label in by_label]
    return list(PER_LABEL_COLUMNS), rows


def prediction_rows(results: dict) -> tuple[list[str], list[list]]:
    """One row per evaluated sentence: its text, gold and teacher labels, the student's answer, the probability of
    that answer (None in generate mode) and whether it matched the reference the run was graded against."""
    rows = [[p["text"], p.get("gold"), p.get("teacher"), p.get("predicted"), p.get("probability"),
             bool(p.get("correct"))] for p in results["predictions"]]
    return list(PREDICTION_COLUMNS), rows


def reliability_rows(results: dict) -> tuple[list[str], list[list]] | None:
    """The reliability diagram's bins, or None without label probabilities."""
    confidence = results.get("confidence")
    if not confidence:
        return None
    return list(RELIABILITY_COLUMNS), [[entry[key] for key in RELIABILITY_COLUMNS]
                                       for entry in confidence["reliability"]]


def confusion_inputs(results: dict) -> tuple[list[str], list[int], list[int]]:
    """``(class_names, y_true, preds)`` for ``wandb.plot.confusion_matrix``: indices into the task's labels and
    ``?`` (the answers that are no label), graded against the run's reference (gold, else the teacher)."""
    labels = list(results["task"]["labels"])
    names = [*labels, UNPARSEABLE_COLUMN]
    index = {label: position for position, label in enumerate(labels)}
    truth_key = "gold" if results["reference"] == "gold" else "teacher"
    truths, predicted = [], []
    for p in results["predictions"]:
        truths.append(index[p[truth_key]])
        predicted.append(index.get(p.get("predicted"), len(labels)))
    return names, truths, predicted


def payload(results: dict, images: dict[str, Path] | None = None) -> dict:
    """What ``run.log`` gets: the scalars, the per-label / predictions / reliability tables, the interactive
    confusion matrix and the PNGs (``images``: name -> path) as ``wandb.Image``."""
    import wandb

    logged: dict = dict(scalars(results))
    columns, rows = per_label_rows(results)
    logged[f"{PREFIX}/per_label"] = wandb.Table(columns=columns, data=rows)
    columns, rows = prediction_rows(results)
    logged[f"{PREFIX}/predictions"] = wandb.Table(columns=columns, data=rows)
    reliability = reliability_rows(results)
    if reliability:
        logged[f"{PREFIX}/reliability"] = wandb.Table(columns=reliability[0], data=reliability[1])
    names, truths, predicted = confusion_inputs(results)
    if truths:
        graded = "gold" if results["reference"] == "gold" else "teacher"
        logged[f"{PREFIX}/confusion_matrix"] = wandb.plot.confusion_matrix(
            y_true=truths, preds=predicted, class_names=names,
            title=f"{Path(results.get('adapter') or results['model']).name}: {graded} (rows) vs student")
    for name, path in (images or {}).items():
        if path is not None:
            logged[f"{PREFIX}/{name}"] = wandb.Image(str(path))
    return logged


# -- the run ----------------------------------------------------------------------------------------------
def _active_run():
    """A wandb run the caller already started (a notebook, a sweep), without importing wandb when nobody did."""
    wandb = sys.modules.get("wandb")
    return getattr(wandb, "run", None) if wandb is not None else None


def pipeline_group(explicit: str | None, results: dict) -> str:
    """The wandb group of an evaluation or benchmark: ``--run_group``, else the group its adapter was trained in
    (``wandb_group`` in the run record, so a training run's ``--run_group`` carries over), else what
    ``tracking.run_group`` derives from the pipeline's data file."""
    from ..data import read_json_object
    from ..tracking import run_group
    from ..training.record import RUN_RECORD

    adapter = results.get("adapter")
    recorded = None
    if not explicit and adapter and (Path(adapter) / RUN_RECORD).is_file():
        try:
            recorded = read_json_object(Path(adapter) / RUN_RECORD).get("wandb_group")
        except Exception:  # noqa: BLE001 - the group is a convenience; the record was checked before the run
            recorded = None
    return run_group(explicit or recorded, pipeline_data_file(results))


def pipeline_data_file(results: dict) -> str | None:
    """The data file that names the pipeline's default group: the adapter's training data (its run record), else
    the teacher's labels, else the test file."""
    from ..data import read_json_object
    from ..training.record import RUN_RECORD

    adapter = results.get("adapter")
    if adapter and (Path(adapter) / RUN_RECORD).is_file():
        try:
            data_file = read_json_object(Path(adapter) / RUN_RECORD).get("data_file")
        except Exception:  # noqa: BLE001 - the group is a convenience; the record was checked before the run
            data_file = None
        if data_file:
            return str(data_file)
    return results.get("teacher_file") or results.get("test_file")


def run_name(results: dict, output_file: str | None) -> str:
    """The results file's name, else the adapter's folder, else the model's."""
    if output_file and output_file.lower() != "none":
        return Path(output_file).stem
    return Path(results.get("adapter") or results["model"]).name


def run_config(results: dict) -> dict:
    return {key: results.get(key) for key in ("model", "adapter", "backend", "test_file", "gold_file", "teacher_file",
                                               "baseline_file", "split", "generation", "reference", "task")}


def use_adapter(pipeline, adapter: str | None) -> None:
    """The adapter's model artifact (``adapter-<folder name>``, logged by training from the same files) as this run's
    input, so that the lineage reads data -> adapter -> evaluation. An adapter folder that is gone by now, or a
    link wandb refuses, is one warning (``tracking``'s); the run goes on logging."""
    if not adapter or pipeline.disabled:
        return
    from ..tracking import adapter_files, model_artifact_name

    files = adapter_files(adapter)
    if not files:
        logger.warning(f"wandb: the adapter folder {adapter} has no files to link as this run's input.")
        return
    pipeline.use_artifact(model_artifact_name(adapter), "model", files)


def disabled_mode(pipeline) -> bool:
    settings = getattr(pipeline, "settings", None)
    return getattr(settings, "mode", None) == "disabled" or bool(getattr(pipeline.run, "disabled", False))


def log_evaluation(results: dict, config, images: dict[str, Path] | None = None) -> str | None:
    """Log the evaluation to wandb: to a run the caller already started (left open), else, with
    ``--report_to wandb``, to a new run of job type "evaluate" in the pipeline's group. Returns the line to print,
    or None when nothing was logged. The results JSON is written before: a wandb failure is a warning."""
    active = _active_run()
    if active is None and config.report_to != "wandb":
        return None  # without importing wandb
    from ..tracking import JOB_EVALUATE, PipelineRun, reports_to_wandb, start_run

    if active is not None:
        pipeline, own = PipelineRun(active), False
    elif reports_to_wandb(config.report_to):
        group = pipeline_group(getattr(config, "run_group", None), results)
        pipeline = start_run(config.report_to, JOB_EVALUATE, run_name(results, config.output_file), group,
                             run_config(results))
        own = True
    else:
        return None
    if pipeline is None:
        return None  # start_run warned
    if disabled_mode(pipeline):  # WANDB_MODE=disabled: wandb's no-op run, nothing to build
        if own:
            pipeline.finish()
        return None
    if own:
        use_adapter(pipeline, results.get("adapter"))
    try:
        logged = payload(results, images)
    except Exception as error:  # noqa: BLE001 - the results file is written; wandb must not turn that into a crash
        logger.warning(f"wandb: could not build the evaluation's tables ({type(error).__name__}: {error}); "
                       "logging the numbers alone.")
        logged = scalars(results)
    pipeline.log(logged)
    folder = pipeline.folder
    if own:
        pipeline.finish()
    if pipeline.warned or folder is None:
        return None
    return f"wandb: evaluation logged to {folder}"
