"""``evaluate.py --predictions_file``: recompute every number of a saved results JSON without loading a model.

A results file is re-scored only when every prediction and the counts it states are sound; an error names the
file and the prediction's position (``results.json: predictions[3]: 'raw' missing``). Saved probabilities
(``--answer_mode scored``) give back the answer (the most probable label), the confidence block and the cascade;
a file written before probabilities were saved, or by ``--answer_mode generate``, is re-scored without them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace

from ..data import DataError
from ..engines.base import LabelScores
from ..task import Task
from .config import EvaluationConfig
from .outputs import read_json
from .results import (
    META_KEYS,
    RESULTS_FORMAT,
    EvaluationError,
    Prediction,
    build_results,
    finish,
    read_answer,
    read_teacher_labels,
)

logger = logging.getLogger(__name__)

# What each saved prediction must hold (key: allowed types, None meaning JSON null), in the order checked.
PREDICTION_FIELDS = {
    "text": (str,),
    "gold": (str, type(None)),
    "teacher": (str, type(None)),
    "raw": (str,),
    "predicted": (str, type(None)),
    "finish_reason": (str, type(None)),
    "prompt_tokens": (int, type(None)),
    "completion_tokens": (int, type(None)),
    "probability": (float, int, type(None)),
    "probabilities": (dict, type(None)),
}
REQUIRED_PREDICTION_KEYS = ("text", "gold", "teacher", "raw")
JSON_TYPE_NAMES = {str: "a string", int: "an integer", type(None): "null", dict: "an object", list: "a list",
                   float: "a number", bool: "true/false"}
PROBABILITY_SUM_TOLERANCE = 1e-6  # float32 scores renormalised in float64 sum to 1 well within this


def _json_type(value) -> str:
    return JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def check_saved_results(saved: dict, path) -> None:
    predictions = saved["predictions"]
    if not predictions:
        raise EvaluationError(f"{path}: 'predictions' is empty: there is nothing to re-score.")
    task_info = saved.get("task")
    if not isinstance(task_info, dict) or not isinstance(task_info.get("labels"), list) \
            or not all(isinstance(label, str) for label in task_info["labels"]):
        raise EvaluationError(f"{path}: 'task' must be an object whose 'labels' is a list of label codes.")
    if saved.get("reference") not in ("gold", "teacher"):
        raise EvaluationError(f"{path}: 'reference' must be 'gold' or 'teacher', not {saved.get('reference')!r}.")
    for name in ("split", "generation"):
        if not isinstance(saved.get(name), dict):
            raise EvaluationError(f"{path}: '{name}' must be an object, not {_json_type(saved.get(name))}.")
    for index, prediction in enumerate(predictions):
        where = f"{path}: predictions[{index}]"
        if not isinstance(prediction, dict):
            raise EvaluationError(f"{where}: expected an object, not {_json_type(prediction)}.")
        for key in REQUIRED_PREDICTION_KEYS:
            if key not in prediction:
                raise EvaluationError(f"{where}: '{key}' missing.")
        for key, types in PREDICTION_FIELDS.items():
            value = prediction.get(key)
            if isinstance(value, bool) or not isinstance(value, types):
                named = [t for t in types if not (t is int and float in types)]  # an integer is a number
                wanted = " or ".join(JSON_TYPE_NAMES[t] for t in named)
                raise EvaluationError(f"{where}: '{key}' must be {wanted}, not {_json_type(value)}.")


def check_saved_probabilities(saved: dict, labels: tuple[str, ...], path) -> bool:
    """True when every prediction holds the student's label probabilities, False when none does; a file with
    some only, or with probabilities that are not a distribution over the labels, is an error."""
    predictions = saved["predictions"]
    has = [prediction.get("probabilities") is not None for prediction in predictions]
    if not any(has):
        return False
    if not all(has):
        index = has.index(False)
        raise EvaluationError(f"{path}: predictions[{index}]: 'probabilities' missing while predictions[{has.index(True)}] "
                              "has them (one run saves them for every sentence or for none).")
    for index, prediction in enumerate(predictions):
        where = f"{path}: predictions[{index}]"
        probabilities = prediction["probabilities"]
        if sorted(probabilities) != sorted(labels):
            raise EvaluationError(f"{where}: 'probabilities' must have one entry per label ({','.join(labels)}), "
                                  f"not {','.join(probabilities)}.")
        values = list(probabilities.values())
        if any(isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0
               for value in values):
            raise EvaluationError(f"{where}: 'probabilities' must be numbers in [0, 1].")
        if abs(math.fsum(values) - 1.0) > PROBABILITY_SUM_TOLERANCE:
            raise EvaluationError(f"{where}: 'probabilities' sum to {math.fsum(values)!r}, not 1.")
        best = max(values)
        if prediction.get("probability") != best:
            raise EvaluationError(f"{where}: 'probability' is {prediction.get('probability')!r} but the most probable "
                                  f"label has {best!r}.")
    return True


def check_saved_labels_and_counts(saved: dict, task: Task, path) -> None:
    """Gold and teacher labels must be labels of the task (the file's own labels were compared already), and the
    counts the file states must be those of its predictions."""
    predictions = saved["predictions"]
    for index, prediction in enumerate(predictions):
        for key in ("gold", "teacher"):
            value = prediction[key]
            if value is not None and value not in task.labels:
                raise EvaluationError(f"{path}: predictions[{index}]: '{key}' {value!r} is not one of the labels "
                                      f"({','.join(task.labels)}).")
    summary = saved.get("summary") if isinstance(saved.get("summary"), dict) else {}
    stated = {"split.evaluated": saved["split"].get("evaluated"), "summary.total": summary.get("total")}
    for name, count in stated.items():
        if count is not None and count != len(predictions):
            raise EvaluationError(f"{path}: {name} is {count!r} but the file holds {len(predictions)} predictions.")


def _prediction(saved: dict, labels: tuple[str, ...]) -> Prediction:
    probabilities = saved.get("probabilities")
    if probabilities is not None:  # in the task's label order, as the engine returned them
        probabilities = {label: probabilities[label] for label in labels}
    return Prediction(saved["text"], saved["gold"], saved["teacher"], saved["raw"],
                      finish_reason=saved.get("finish_reason"), prompt_tokens=saved.get("prompt_tokens"),
                      completion_tokens=saved.get("completion_tokens"), probability=saved.get("probability"),
                      probabilities=probabilities)


def _cascade_settings(config: EvaluationConfig, saved: dict) -> EvaluationConfig:
    """The cascade flags given now, else the ones the saved run used, so that a re-scoring reproduces its block."""
    if getattr(config, "defer_below", None) is not None or getattr(config, "target_accuracy", None) is not None:
        return config
    previous = saved.get("cascade") if isinstance(saved.get("cascade"), dict) else {}
    return replace(config, defer_below=previous.get("defer_below"), target_accuracy=previous.get("target_accuracy"))


def rescore(config: EvaluationConfig, task: Task) -> dict:
    """Recompute every number from a saved results JSON; with the same parser the numbers are identical."""
    try:
        saved = read_json(config.predictions_file)
    except DataError as error:  # read_json_object: a missing file or one that is not a JSON object
        raise EvaluationError(str(error)) from None
    if saved.get("format") != RESULTS_FORMAT or not isinstance(saved.get("predictions"), list):
        raise EvaluationError(f"{config.predictions_file}: not a results file written by evaluate.py ({RESULTS_FORMAT}).")
    check_saved_results(saved, config.predictions_file)
    if saved["task"]["labels"] != list(task.labels):
        raise EvaluationError(
            f"{config.predictions_file} was scored with labels {','.join(saved['task']['labels'])}; "
            f"pass the same --labels to re-score it (now: {','.join(task.labels)})."
        )
    check_saved_labels_and_counts(saved, task, config.predictions_file)
    check_saved_probabilities(saved, task.labels, config.predictions_file)  # without any, the report says so once
    predictions = [_prediction(p, task.labels) for p in saved["predictions"]]
    teacher_file = saved.get("teacher_file")
    if config.teacher_file:
        teacher = read_teacher_labels(config.teacher_file, task)
        for p in predictions:
            p.teacher = teacher.get(p.text.strip())
        teacher_file = config.teacher_file
    for p in predictions:
        if p.probabilities is not None:  # the answer is the most probable label, as the engine chose it
            p.predicted = LabelScores(p.probabilities, 0, 0.0).label
        else:  # parsed again: a fixed parser re-reads old answers
            p.predicted = read_answer(task, p.raw, p.finish_reason)
    changed = sum(p.predicted != old.get("predicted") for p, old in zip(predictions, saved["predictions"], strict=True))
    logger.info(f"[evaluate] Re-scoring {len(predictions)} saved predictions from {config.predictions_file} (no model loaded).")
    if changed:
        logger.info(f"[evaluate] The parser now reads {changed} saved answers differently than when they were scored.")
    meta = {key: saved.get(key) for key in META_KEYS} | {"teacher_file": teacher_file}
    results, scores, fidelity_result = build_results(predictions, task, saved["reference"], meta)
    return finish(results, scores, fidelity_result, task, _cascade_settings(config, saved))
