"""What ``engines.openai_classify`` reads from a vLLM server's answer, and the student flags that point at a server
(the default lane: no server; the real server is tests/student/test_served_student.py on the vLLM CPU lane)."""

from __future__ import annotations

import pytest

import predict
from prompt_distill.engines.openai_classify import ServerError, as_request_output, position_logprobs
from prompt_distill.engines.vllm_classify import requested_logprobs


def test_the_asked_token_ids_are_read_from_vllms_token_id_keys():
    top = {"token_id:3133": -4.09, "token_id:300": -13.6, "token_id:301": -14.7}
    assert position_logprobs(top, [301, 300], "http://x/v1") == {301: -14.7, 300: -13.6}
    # In the shape vllm_classify reads an in-process RequestOutput in.
    assert requested_logprobs(as_request_output({301: -14.7}), [301]) == {301: -14.7}


@pytest.mark.parametrize("top", [None, {}, {" en": -1.0, "token_id:300": -2.0}])
def test_a_server_that_does_not_return_the_asked_ids_is_named(top):
    with pytest.raises(ServerError, match=r"http://x/v1 returned no log-probability for token ids \[301\]"):
        position_logprobs(top, [300, 301] if top and "token_id:300" in top else [301], "http://x/v1")


def error_line(capsys, tmp_path, *argv) -> str:
    (tmp_path / "in.txt").write_text("hello\n", "utf-8")
    capsys.readouterr()
    assert predict.main(["--input_file", str(tmp_path / "in.txt"), *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_loading_flags_with_a_served_student_are_refused_by_name(tmp_path, capsys):
    line = error_line(capsys, tmp_path, "--model_path", str(tmp_path), "--base_url", "http://127.0.0.1:9/v1", "--dtype",
                      "float32", "--gpu_memory_utilization", "0.5")
    assert "--dtype, --gpu_memory_utilization apply to a model loaded in this process" in line
    assert "http://127.0.0.1:9/v1" in line


def test_a_served_name_without_a_server_is_refused(tmp_path, capsys):
    assert "--served_model_name names the student on a server: it needs --base_url" in error_line(
        capsys, tmp_path, "--model_path", str(tmp_path), "--served_model_name", "triage")
