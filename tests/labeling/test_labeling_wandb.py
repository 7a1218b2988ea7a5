"""create_data.py in wandb (issue 22): the real script on the embedded teacher, its offline runs read back with
wandb's own reader (tests/wandb_offline.py): metrics, summary, run-file config and the dataset artifact; shards as
parts of one group; and a wandb that cannot start costs one warning, not a sentence."""

from pathlib import Path

import pytest

import create_data
from prompt_distill.labeling.run_files import RunFiles
from tests.wandb_offline import offline_runs

REPO = Path(__file__).resolve().parents[2]



def label(tmp_path, *flags, samples=3) -> Path:
    sentences = (REPO / "example-data" / "multilingual.txt").read_text("utf-8").splitlines()[:samples]
    (tmp_path / "in.txt").write_text("\n".join(sentences) + "\n", "utf-8")
    output = tmp_path / "data" / "labels.jsonl"
    code = create_data.main(["--backend", "transformers", "--teacher_model", "smollm2-135m-instruct", "--input_file",
                             str(tmp_path / "in.txt"), "--output_file", str(output), "--max_tokens", "0", *flags])
    assert code == 0
    return output


def test_labelling_logs_metrics_summary_task_and_the_dataset_artifact(offline, tmp_path, smollm2_dir):
    output = label(tmp_path)
    (run,) = offline_runs(offline)
    assert (run.group, run.job_type, run.name) == ("labels", "label", "labels")
    assert run.config["run_file"]["task"]["labels"] and run.config["run_file"]["input_sha256"]
    assert run.config["create_data"]["output_file"] == str(output)
    assert run.metric("label/finished") == [3] and run.metric("label/parse_rate") == [1.0]
    assert sum(value for key, value in run.history[-1].items() if key.startswith("label/count/")) == 3
    assert run.history[-1]["label/generated_tokens._type"] == "histogram"
    for key in ("label/sentences_per_s", "label/prompt_tokens", "label/cached_prompt_tokens",
                "label/too_long", "label/retried", "label/cut_thoughts"):
        assert key in run.history[-1], key
    assert run.summary["label/labelled_total"] == 3 and run.summary["label/parse_rate_total"] == 1.0
    (artifact,) = run.logged()
    assert (artifact["name"], artifact["type"]) == ("data-labels", "dataset")
    files = RunFiles.for_output(output)
    assert sorted(entry["path"] for entry in artifact["manifest"]["contents"]) == sorted(
        path.name for path in (files.training, files.sidecar, files.header))


@pytest.mark.slow  # two model loads
def test_the_shards_of_one_labelling_are_parts_of_the_final_outputs_group(offline, tmp_path, smollm2_dir):
    for shard in ("0", "1"):
        label(tmp_path, "--num_shards", "2", "--shard_index", shard, samples=2)
    runs = offline_runs(offline)
    assert {run.group for run in runs} == {"labels"} and {run.job_type for run in runs} == {"label"}
    assert sorted(run.name for run in runs) == ["labels.shard-0-of-2", "labels.shard-1-of-2"]
    assert sorted(run.logged()[0]["name"] for run in runs) == ["data-labels.shard-0-of-2", "data-labels.shard-1-of-2"]


def test_a_wandb_that_cannot_start_is_one_warning_and_every_sentence_is_written(offline, tmp_path, monkeypatch,
                                                                                  smollm2_dir, capsys):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setenv("WANDB_DIR", str(not_a_folder / "wandb"))  # cannot be created, even by root
    output = label(tmp_path, samples=4)
    out = capsys.readouterr().out
    assert out.count("wandb: could not start the label run") == 1
    assert len(output.read_text("utf-8").splitlines()) == 4
    assert len(RunFiles.for_output(output).sidecar.read_text("utf-8").splitlines()) == 4


def test_the_merge_logs_the_final_dataset_with_the_shards_as_its_inputs(offline, tmp_path):
    from prompt_distill.labeling.shards import main as merge_main
    from tests.labeling.test_labeling import write_input
    from tests.labeling.test_shards import label_shards

    write_input(tmp_path / "in.txt")
    label_shards(tmp_path)  # scripted engine, no wandb: run_labeling without an observer
    assert merge_main(["--output_file", str(tmp_path / "out" / "data.jsonl"), "--num_shards", "2"]) == 0
    (run,) = offline_runs(offline)
    assert (run.group, run.job_type, run.name) == ("data", "label", "data merge")
    assert sorted(used["name"] for used in run.used()) == ["data-data.shard-0-of-2", "data-data.shard-1-of-2"]
    (artifact,) = run.logged()
    assert (artifact["name"], artifact["type"]) == ("data-data", "dataset")
    assert run.config["run_file"]["merged_from"]


def test_metrics_are_logged_while_labelling_at_most_once_per_interval(offline, tmp_path):
    from prompt_distill.labeling.run import run_labeling
    from prompt_distill.labeling.tracking import LabelingTracker
    from prompt_distill.tracking import JOB_LABEL, start_run
    from tests.labeling.test_labeling import TASK, ScriptedEngine, make_config, write_input

    write_input(tmp_path / "in.txt")  # 6 sentences, 1 unreadable once: batches of 2 -> several batches on disk
    config = make_config(tmp_path)
    run = start_run("wandb", JOB_LABEL, "data", "g", {})
    run_labeling(config, TASK, lambda: ScriptedEngine(failures={"Привет": 1}), progress=False,
                 observer=LabelingTracker(run, interval_s=0))
    run.finish()
    seen = offline_runs(offline)[0].metric("label/finished")
    assert len(seen) >= 3 and seen == sorted(seen)  # one row per batch written (interval 0), then the final one

    hourly = start_run("wandb", JOB_LABEL, "data", "g", {})
    run_labeling(make_config(tmp_path, output_file=str(tmp_path / "again.jsonl")), TASK,
                 lambda: ScriptedEngine(), progress=False, observer=LabelingTracker(hourly, interval_s=3600))
    hourly.finish()
    assert len(offline_runs(offline)[1].metric("label/finished")) == 1  # the final row only
