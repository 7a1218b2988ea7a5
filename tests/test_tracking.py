"""prompt_distill.tracking: groups, artifact names, and a wandb that fails without failing the stage. Real offline
wandb runs in tmp folders, read back with tests/wandb_offline.py."""

import logging

import pytest

from prompt_distill.tracking import (
    JOB_LABEL,
    JOB_TRAIN,
    PipelineRun,
    Throttle,
    dataset_artifact_name,
    dataset_files,
    model_artifact_name,
    run_group,
    start_run,
)
from tests.wandb_offline import offline_runs


def test_group_is_the_flag_else_the_environment_else_the_data_files_name(monkeypatch):
    monkeypatch.delenv("WANDB_RUN_GROUP", raising=False)
    assert run_group("mine", "data/x.jsonl") == "mine"
    assert run_group(None, "data/prompt_distillation_lang.jsonl") == "prompt_distillation_lang"
    # a shard's file belongs to the final output's group
    assert run_group(None, "data/prompt_distillation_lang.shard-1-of-2.jsonl") == "prompt_distillation_lang"
    monkeypatch.setenv("WANDB_RUN_GROUP", "from-env")
    assert run_group(None, "data/x.jsonl") == "from-env"
    assert run_group("mine", "data/x.jsonl") == "mine"


def test_artifact_names_come_from_the_files():
    assert dataset_artifact_name("data/prompt_distillation_lang.jsonl") == "data-prompt_distillation_lang"
    assert dataset_artifact_name("d/x.shard-0-of-2.jsonl") == "data-x"
    assert model_artifact_name("models/prompt distillation trl/") == "adapter-prompt-distillation-trl"


def test_report_to_none_starts_nothing(offline):
    assert start_run("none", JOB_LABEL, "n", "g", {}) is None
    assert start_run([], JOB_LABEL, "n", "g", {}) is None
    assert not offline.exists()


def test_a_run_has_its_group_job_type_config_metrics_and_the_dataset_lineage(offline, tmp_path):
    data = tmp_path / "labels.jsonl"
    data.write_text('{"messages": []}\n')
    (tmp_path / "labels.run.json").write_text("{}")
    producer = start_run("wandb", JOB_LABEL, "labels", "g1", {"task": {"labels": ["a"]}})
    producer.log({"label/parse_rate": 1.0})
    producer.summary({"labelled": 1})
    logged = producer.log_artifact(dataset_files(data), dataset_artifact_name(data), "dataset", {"rows": 1})
    producer.finish()
    consumer = start_run("wandb", JOB_TRAIN, "adapter", "g1", {"x": 2})
    consumer.use_artifact(dataset_artifact_name(data), "dataset", dataset_files(data))
    consumer.finish()

    label, train = offline_runs(offline)
    assert (label.group, label.job_type, label.name) == ("g1", "label", "labels")
    assert label.project == "prompt-distillation"
    assert label.config["task"] == {"labels": ["a"]}
    assert label.metric("label/parse_rate") == [1.0] and label.summary["labelled"] == 1
    (artifact,) = label.logged()
    assert (artifact["name"], artifact["type"]) == ("data-labels", "dataset")
    assert sorted(entry["path"] for entry in artifact["manifest"]["contents"]) == ["labels.jsonl", "labels.run.json"]
    (used,) = train.used()
    assert (train.group, train.job_type) == ("g1", "train")
    assert (used["name"], used["digest"]) == ("data-labels", logged.digest)
    assert train.metric("x") == [] and train.exit_code == 0


def test_wandb_project_is_honoured(offline, monkeypatch):
    monkeypatch.setenv("WANDB_PROJECT", "my-project")
    start_run("wandb", JOB_LABEL, "n", "g", {}).finish()
    (run,) = offline_runs(offline)
    assert run.project == "my-project"


@pytest.fixture
def warnings_of(caplog):
    """The project's WARNING lines (the ``prompt_distill`` logger does not propagate once a script set it up)."""
    logger = logging.getLogger("prompt_distill")
    logger.addHandler(caplog.handler)
    yield lambda: [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    logger.removeHandler(caplog.handler)


def test_an_unwritable_wandb_dir_is_one_warning_and_no_run(offline, tmp_path, monkeypatch, warnings_of):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setenv("WANDB_DIR", str(not_a_folder / "wandb-here"))  # unwritable, even for root
    assert start_run("wandb", JOB_LABEL, "n", "g", {}) is None
    (warning,) = warnings_of()
    assert warning.startswith("wandb: could not start the label run")


class BrokenRun:
    """A wandb run whose every call raises, as a run does once its service or disk is gone."""

    dir = None

    def __getattr__(self, name):
        raise OSError(f"wandb is gone ({name})")


def test_a_failing_input_link_warns_and_the_run_goes_on_logging(offline, warnings_of):
    run = start_run("wandb", JOB_TRAIN, "t", "g", {})
    run.use_artifact("data-x", "dataset")  # offline, by name only: wandb cannot link it
    run.use_artifact("data-x", "dataset", ["/nonexistent/x.jsonl"], metadata=object())  # a failing wandb call
    run.log({"after": 1})
    run.finish()
    assert len(warnings_of()) == 2
    (train,) = offline_runs(offline)
    assert train.metric("after") == [1] and train.config["inputs/dataset"] == "data-x"


def test_a_failing_run_warns_once_disables_itself_and_never_raises(warnings_of, tmp_path):
    run = PipelineRun(BrokenRun())
    run.use_artifact("data-x", "dataset")  # warns, the run stays on
    run.log({"a": 1})
    run.summary({"b": 2})
    run.update_config({"c": 3})
    assert run.use_artifact("data-x", "dataset") is None
    assert run.log_artifact([tmp_path], "data-x", "dataset") is None
    run.finish()
    assert run.disabled
    use, log = warnings_of()
    assert use.startswith("wandb: use_artifact data-x failed (OSError") and log.startswith("wandb: log failed (OSError")


def test_throttle_fires_first_then_at_most_once_per_period():
    throttle = Throttle(3600)
    assert throttle.due() and not throttle.due()
    assert Throttle(0).due() and Throttle(0).due()


def test_every_stage_has_the_same_report_to_default_and_a_run_group_flag():
    from prompt_distill.benchmark.config import BenchmarkConfig
    from prompt_distill.cli import parse_config
    from prompt_distill.evaluation.config import EvaluationConfig
    from prompt_distill.labeling.config import CreateDataConfig
    from prompt_distill.training.config import parse_job

    for config_class in (CreateDataConfig, EvaluationConfig, BenchmarkConfig):
        config = parse_config(config_class, [])
        assert (config.report_to, config.run_group) == ("wandb", None), config_class
        assert parse_config(config_class, ["--report_to", "none", "--run_group", "g"]).run_group == "g"
    job = parse_job([])
    assert job.sft.report_to == ["wandb"] and job.script.run_group is None and job.script.log_model_artifact
    assert parse_job(["--log_model_artifact", "false"]).script.log_model_artifact is False
