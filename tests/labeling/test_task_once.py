"""create_data.py is where the task is given: custom labels need their own prompt, and the run header records the
labels and the prompt for the later stages (issue 21, item 3)."""

import json

import create_data
from tests.task_runs import TRIAGE_PROMPT, label_triage_data, triage_task
from tests.test_user_files import one_error_line


def test_custom_labels_without_a_prompt_file_are_refused_before_anything_loads(tmp_path, capsys):
    code = create_data.main(["--backend", "transformers", "--model_name", "smollm2-135m-instruct", "--labels",
                             "pos,neg", "--input_file", str(tmp_path / "absent.txt"),
                             "--output_file", str(tmp_path / "out.jsonl")])
    line = one_error_line(capsys)
    assert code == 2
    assert "--labels pos,neg without --prompt_file" in line and "language codes" in line
    assert not (tmp_path / "out.jsonl").exists()


def test_the_run_header_records_the_labels_and_the_prompt(tmp_path):
    files = label_triage_data(tmp_path, count=6)
    header = json.loads(files.header.read_text("utf-8"))
    task = triage_task()
    assert header["task"] == {"name": "custom", "fingerprint": task.fingerprint(), "labels": ["K", "M", "T"],
                              "prompt_file": TRIAGE_PROMPT, "prompt": task.system_prompt}


def test_the_merge_of_shards_keeps_the_task(tmp_path):
    from prompt_distill.labeling.run import LabelingConfig, run_labeling
    from prompt_distill.labeling.run_files import RunFiles
    from prompt_distill.labeling.shards import merge_shards, shard_output_path
    from tests.task_runs import GoldTeacher, triage_gold

    pairs = triage_gold(6)
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("".join(text + "\n" for text, _ in pairs), "utf-8")
    output = tmp_path / "triage.jsonl"
    for shard in range(2):
        config = LabelingConfig(input_file=str(sentences), output_file=str(shard_output_path(output, shard, 2)),
                                model_name="teacher", backend="gold", max_tokens=16, max_retries=0,
                                shard_index=shard, num_shards=2)
        run_labeling(config, triage_task(), lambda: GoldTeacher(pairs), progress=False)
    merge_shards(output, 2)
    header = json.loads(RunFiles.for_output(output).header.read_text("utf-8"))
    assert header["task"]["labels"] == ["K", "M", "T"] and header["task"]["prompt"] == triage_task().system_prompt
