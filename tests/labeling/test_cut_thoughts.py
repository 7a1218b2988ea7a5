"""A thought cut by max_tokens is retried with the thinking model card's sampling, and the summary says how often
it happened. The engine is a small stand-in for the Engine protocol (our interface) that loops on its first try."""

import pytest
import torch

from prompt_distill.engines.base import Generation, GenerationParams
from prompt_distill.labeling.run import CUT_THOUGHT_SAMPLING, format_summary, run_labeling
from prompt_distill.task import TEACHER_USER_PREFIX
from tests.labeling.test_labeling import ANSWERS, TASK, make_config, sidecar_records, write_input

LOOPING = "<think>\nIt could be German. Or Dutch. Let me check again. It could be German. Or Dutch. Let me"
SENTENCES = ["Hello there", "Guten Tag", "Hola amigo", "Merhaba dünya"]


class LoopingEngine:
    """Loops until max_tokens for ``looping`` sentences at a near-greedy temperature (as a thinking model can) and
    for ``hopeless`` ones at any temperature, writes a finished but unreadable answer for ``confused`` ones once,
    and answers everything else."""

    name = "looping"

    def __init__(self, looping=(), confused=(), hopeless=()):
        self.looping, self.confused, self.hopeless = set(looping), set(confused), set(hopeless)
        self.calls = []  # (texts, params)

    def count_prompt_tokens(self, chat, params):
        return 10

    def generate(self, chats, params, on_batch=None):
        texts = [chat[-1]["content"].removeprefix(TEACHER_USER_PREFIX) for chat in chats]
        self.calls.append((texts, params))
        results = []
        for text in texts:
            if text in self.hopeless or (text in self.looping and params.temperature < 0.5):
                results.append(Generation(LOOPING, 10, params.max_tokens, "length", 0.01))
            elif text in self.confused:
                self.confused.discard(text)
                results.append(Generation("<think>\nhmm\n</think>\n\nNo idea.", 10, 7, "stop", 0.01))
            else:
                results.append(Generation(f"<think>\nok\n</think>\n\nFinal Answer: {ANSWERS[text]}", 10, 9, "stop", 0.01))
        if on_batch is not None:
            on_batch(list(range(len(chats))), results)
        return results


def test_a_thought_cut_by_max_tokens_is_retried_with_the_model_card_sampling(tmp_path):
    write_input(tmp_path / "in.txt", SENTENCES)
    config = make_config(tmp_path, temperature=0.15, top_p=1.0, max_retries=2)
    engine = LoopingEngine(looping={"Guten Tag"}, confused={"Hola amigo"})
    summary = run_labeling(config, TASK, lambda: engine, progress=False)

    first_texts, first = engine.calls[0]
    assert sorted(first_texts) == sorted(SENTENCES)
    assert (first.temperature, first.top_p, first.top_k) == (0.15, 1.0, 0)  # the reference default first
    retries = {tuple(texts): params for texts, params in engine.calls[1:]}
    # the cut thought gets the model card's sampling; the finished-but-unreadable answer keeps the run's own
    card = retries[("Guten Tag",)]
    assert (card.temperature, card.top_p, card.top_k) == (0.6, 0.95, 20)
    assert CUT_THOUGHT_SAMPLING.temperature == 0.6 and CUT_THOUGHT_SAMPLING.top_k == 20
    plain = retries[("Hola amigo",)]
    assert (plain.temperature, plain.top_p, plain.top_k) == (0.15, 1.0, 0)
    assert card.max_tokens == plain.max_tokens == config.max_tokens

    records = {record["text"]: record for record in sidecar_records(summary.files)}
    assert records["Guten Tag"]["label"] == "de" and records["Guten Tag"]["attempts"] == 2
    assert records["Guten Tag"]["sampling"] == {"temperature": 0.6, "top_p": 0.95, "top_k": 20}
    assert records["Hola amigo"]["sampling"] == {"temperature": 0.15, "top_p": 1.0, "top_k": 0}

    assert (summary.generations_now, summary.cut_thoughts_now) == (6, 1)
    text = format_summary(summary)
    assert "Cut by max_tokens:    1 of 6 generations (16.7%)" in text
    assert "temperature 0.6, top_p 0.95, top_k 20" in text


def test_a_thought_that_keeps_looping_stays_unparseable_and_is_counted_each_time(tmp_path):
    write_input(tmp_path / "in.txt", SENTENCES[:2])
    config = make_config(tmp_path, max_retries=1)
    engine = LoopingEngine(hopeless={"Guten Tag"})  # the card's sampling does not help either
    summary = run_labeling(config, TASK, lambda: engine, progress=False)
    assert [record["text"] for record in summary.unparseable] == ["Guten Tag"]
    assert (summary.generations_now, summary.cut_thoughts_now) == (3, 2)
    assert "2 of 3 generations (66.7%)" in format_summary(summary)


def test_the_option_off_retries_a_cut_thought_with_the_runs_own_sampling(tmp_path):
    write_input(tmp_path / "in.txt", SENTENCES[:2])
    config = make_config(tmp_path, max_retries=1, cut_thought_sampling=None)
    engine = LoopingEngine(looping={"Guten Tag"})
    summary = run_labeling(config, TASK, lambda: engine, progress=False)
    assert [params.temperature for _, params in engine.calls] == [0.15, 0.15]
    assert summary.cut_thoughts_now == 2


# -- the transformers engine honours top_k ------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_engine(smollm2_dir):
    from prompt_distill.engines.hf import HFEngine

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield HFEngine(str(smollm2_dir), batch_size=2)
    torch.set_num_threads(threads)


def test_hf_engine_samples_only_among_the_top_k_tokens(hf_engine):
    chats = [[{"role": "user", "content": "Name three colours."}], [{"role": "user", "content": "Count to five."}]]
    greedy = [g.text for g in hf_engine.generate(chats, GenerationParams(max_tokens=12))]
    # At temperature 50 every token is nearly equally likely; top_k=1 leaves only the most likely one: greedy.
    top_1 = [g.text for g in hf_engine.generate(chats, GenerationParams(max_tokens=12, temperature=50.0, top_k=1,
                                                                         seed=0))]
    assert top_1 == greedy
    free = [g.text for g in hf_engine.generate(chats, GenerationParams(max_tokens=12, temperature=50.0, seed=0))]
    assert free != greedy  # the same call without top_k does sample (the check above can fail)


@pytest.mark.vllm
def test_vllm_sampling_params_carry_top_k():
    pytest.importorskip("vllm")
    from prompt_distill.engines.vllm_engine import build_sampling_params

    card = build_sampling_params(GenerationParams(max_tokens=64, temperature=0.6, top_p=0.95, top_k=20, seed=1),
                                 after_thought=False)
    assert (card.temperature, card.top_p, card.top_k) == (0.6, 0.95, 20)
    default = build_sampling_params(GenerationParams(max_tokens=64, temperature=0.15), after_thought=False)
    assert default.top_k in (0, -1)  # off: a model's generation_config top_k must not leak in
