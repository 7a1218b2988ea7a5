"""benchmark.py checks the adapter against its run record: with no task flags both sides run the adapter's task
(the teacher with its prompt), and --labels/--prompt_file that differ are refused naming both."""

import json

import pytest

import benchmark as benchmark_cli
from prompt_distill.task_source import task_entry
from tests.eval_helpers import make_adapter
from tests.task_runs import TRIAGE, triage_task
from tests.test_user_files import one_error_line
from tests.tiny_models import save_model_dir, tiny_llama


@pytest.fixture(scope="module")
def tiny_triage_adapter(tmp_path_factory, smollm2_tokenizer):
    folder = tmp_path_factory.mktemp("tiny")
    base = save_model_dir(tiny_llama(len(smollm2_tokenizer)), smollm2_tokenizer, folder / "base")
    return base, make_adapter(folder / "adapter", base, base_model=str(base), task=task_entry(triage_task()))


def arguments(base, adapter, *extra):
    return ["--backend", "transformers", "--teacher_model", str(base), "--model_path", str(adapter),
            "--test_file", str(TRIAGE / "sentences.txt"), "--thinking_tokens", "2", "--num_samples", "2",
            "--batch_size", "2", "--rounds", "1", *extra]


def test_without_task_flags_both_sides_run_the_adapters_task(tiny_triage_adapter, tmp_path, capsys):
    base, adapter = tiny_triage_adapter
    output = tmp_path / "bench.json"
    assert benchmark_cli.main(arguments(base, adapter, "--output_file", str(output))) == 0
    results = json.loads(output.read_text("utf-8"))
    assert all(request["answer"] in {"K", "M", "T"} for request in results["requests"]["teacher"])


def test_other_labels_are_refused_naming_both(tiny_triage_adapter, capsys):
    base, adapter = tiny_triage_adapter
    code = benchmark_cli.main(arguments(base, adapter, "--labels", "en,fr", "--output_file", "none"))
    line = one_error_line(capsys)
    assert code == 2 and "en,fr" in line and "K,M,T" in line
