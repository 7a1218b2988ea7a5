"""Labelling in wandb: live metrics while the teacher labels, the summary at the end, the labelled dataset as an
artifact. Built on ``prompt_distill.tracking``: a wandb failure is one warning and the labelling goes on.

``LabelingTracker(start, interval_s)`` (``start`` starts the wandb run, or returns None) is the observer ``run.run_labeling`` calls: ``started(header)`` once the run
file is written (its task and data fingerprint go into the run config), ``progress(summary, finished)`` after every
batch written to disk (metrics at most once every ``interval_s`` seconds, so logging never slows the labelling),
``generation_started()`` once the engine is loaded, ``finished(summary, files)`` at the end (the last metrics, the summary, the dataset artifact).

Metrics (prefix ``label/``): finished, labelled, unparseable, too_long, retried, cut_thoughts, generations (this
session's counts), parse_rate, sentences_per_s, prompt/cached/generated tokens (totals and means),
``count/<label>`` (this session's labels), and ``generated_tokens`` as a histogram (tokens per answer, the
thought included: the engines report no separate thinking count). With ``--num_samples K`` > 1 every answer of the K
is counted in the tokens, and ``agreement_mean`` (the majority's share of the K, averaged over sentences),
``unanimous`` and ``majority_changed`` (sentences whose majority differs from their first sample) join them. The
label probabilities: ``scored_answers`` and their cost beyond the answers (``scoring_requests``,
``scoring_prompt_tokens``, ``scoring_s``: summed per answer).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from ..tracking import PipelineRun, Throttle, _artifact_name, dataset_artifact_name, dataset_files
from .run_files import LABELLED, RunFiles

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 30.0


def artifact_name_for(output_file) -> str:
    """``data-<stem>`` for the final output; a shard's own output keeps its shard suffix (``data-NAME.shard-0-of-2``),
    so the final dataset's name is the merged one's, the one training uses."""
    name = Path(str(output_file)).name.removesuffix(".jsonl")
    return dataset_artifact_name(output_file) if ".shard-" not in name else _artifact_name("data", name)


class LabelingTracker:
    def __init__(self, start: PipelineRun | Callable[[], PipelineRun | None],
                 interval_s: float = DEFAULT_INTERVAL_S):
        """``start``: a run, or what starts one; called when the engine is loaded (or at the end when nothing needed
        labelling), so that a labelling refused before that leaves no wandb run."""
        self.run: PipelineRun | None = start if isinstance(start, PipelineRun) else None
        self._start = None if self.run else start
        self._header: dict | None = None
        self.throttle = Throttle(interval_s)
        self.labels: Counter = Counter()
        self.started_at: float | None = None
        self.failed = False

    def _ensure_run(self) -> None:
        if self._start is None:
            return
        start, self._start = self._start, None
        self.run = start()
        if self.run is not None and self._header is not None:
            self._guard(self._started, self._header)

    def _guard(self, action, *args) -> None:
        """Our own metric code must not stop the labelling either."""
        if self.failed or self.run is None or self.run.disabled:
            return
        try:
            action(*args)
        except Exception as error:  # noqa: BLE001
            self.failed = True
            logger.warning(f"wandb: labelling metrics stopped ({type(error).__name__}: {error}); labelling goes on.")

    def started(self, header: dict) -> None:
        self._header = header
        self._guard(self._started, header)

    def generation_started(self) -> None:
        """The engine is loaded: sentences per second count from here (model loading excluded, as in the summary)."""
        self._ensure_run()
        self.started_at = time.perf_counter()
        self.throttle.due()  # the first metrics come one interval in, not before any sentence

    def progress(self, summary, finished: list[dict]) -> None:
        for record in finished:
            if record.get("status") == LABELLED:
                self.labels[record["label"]] += 1
        if self.throttle.due():
            self._guard(self._log, summary)

    def finished(self, summary, files: RunFiles) -> None:
        self._ensure_run()
        self._guard(self._finished, summary, files)

    def _started(self, header: dict) -> None:
        self.run.update_config({"run_file": {key: value for key, value in header.items() if key != "sessions"}})

    def metrics(self, summary) -> dict:
        answered = summary.labelled_now + summary.unparseable_now
        generated = sum(summary.completion_tokens)
        elapsed = time.perf_counter() - self.started_at if self.started_at is not None else 0.0
        metrics = {
            "label/finished": summary.finished_now,
            "label/labelled": summary.labelled_now,
            "label/unparseable": summary.unparseable_now,
            "label/too_long": summary.too_long_now,
            "label/retried": summary.retried_now,
            "label/cut_thoughts": summary.cut_thoughts_now,
            "label/generations": summary.generations_now,
            "label/parse_rate": summary.labelled_now / answered if answered else None,
            "label/sentences_per_s": answered / elapsed if elapsed > 0 else None,
            "label/prompt_tokens": sum(summary.prompt_tokens),
            "label/cached_prompt_tokens": sum(summary.cached_tokens),
            "label/generated_tokens_total": generated,
            "label/prompt_tokens_mean": _mean(summary.prompt_tokens),
            "label/generated_tokens_mean": _mean(summary.completion_tokens),
            **{f"label/count/{label}": count for label, count in sorted(self.labels.items())},
        }
        if summary.scoring.answers:  # the teacher's label probabilities, and what scoring them cost
            metrics.update({"label/scored_answers": summary.scoring.scored,
                            "label/scoring_requests": summary.scoring.requests,
                            "label/scoring_prompt_tokens": summary.scoring.prompt_tokens,
                            "label/scoring_s": summary.scoring.seconds})
        if summary.agreement.sentences:
            metrics.update({"label/agreement_mean": summary.agreement.mean,
                            "label/unanimous": summary.agreement.unanimous,
                            "label/majority_changed": summary.agreement.changed})
        return {key: value for key, value in metrics.items() if value is not None}

    def _log(self, summary) -> None:
        metrics = self.metrics(summary)
        if summary.completion_tokens:
            import wandb

            metrics["label/generated_tokens"] = wandb.Histogram(summary.completion_tokens)
        self.run.log(metrics)

    def _finished(self, summary, files: RunFiles) -> None:
        if summary.finished_now:
            self._log(summary)
        total = summary.labelled_total + len(summary.unparseable)
        self.run.summary({
            "label/selected": summary.selected,
            "label/resumed": summary.resumed,
            "label/repeats": summary.repeats,
            "label/labelled_total": summary.labelled_total,
            "label/unparseable_total": len(summary.unparseable),
            "label/too_long_total": len(summary.too_long),
            "label/parse_rate_total": summary.labelled_total / total if total else None,
            "label/generation_s": round(summary.generation_s, 3),
            "label/distribution": dict(sorted(summary.label_counts.items())),
            "label/finish_reasons": dict(summary.finish_reasons),
            "label/num_samples": summary.num_samples,
            **({"label/agreement_mean_total": summary.agreement_total.mean,
                "label/unanimous_total": summary.agreement_total.unanimous,
                "label/majority_changed_total": summary.agreement_total.changed}
               if summary.agreement_total.sentences else {}),
        })
        self.run.log_artifact(dataset_files(files.training), artifact_name_for(files.training), "dataset",
                              metadata={"labelled": summary.labelled_total, "unparseable": len(summary.unparseable),
                                        "too_long": len(summary.too_long),
                                        "distribution": dict(sorted(summary.label_counts.items()))})


def _mean(values: list[int]) -> float | None:
    return sum(values) / len(values) if values else None

