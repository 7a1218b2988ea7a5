"""Generation.label_probabilities on the transformers engine (embedded SmolLM2), against plain forward passes.

The constrained answer takes its probabilities from the pass that chose it; a free answer (or the answer after a
thought) has its labels scored at the answer position once ``score_labels`` asks for it.
"""

import math
from dataclasses import replace

import pytest
import torch

from prompt_distill.engines.base import GenerationParams
from prompt_distill.engines.hf import HFEngine, _Prompt, _Reply
from prompt_distill.engines.label_tokens import answer_label_tokens, answer_lead, lead_ids
from prompt_distill.models import load_tokenizer
from prompt_distill.task import Task

SYSTEM = ("You identify the language of a text. Reply with one line 'Final Answer: <code>' where the code is en, de, "
          "fr, es or zh-Hant. ") * 2
TEXTS = ["Hallo Welt, wie geht es dir heute?", "ok", "Je pense donc je suis, et toi, qu'en penses-tu ?"]
LABELS = ("en", "de", "fr", "es", "zh-Hant")  # the last one takes several tokens
PREFIX = "Final Answer: "
# A few-shot chat: the model answers "Final Answer: <code>" by itself, so the answer is free (not constrained).
SHOTS = [("Good morning, how are you?", "en"), ("Guten Morgen, wie geht's?", "de"), ("Bonjour, ça va ?", "fr")]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def engine(smollm2_dir):
    return HFEngine(str(smollm2_dir), batch_size=4)


def teacher_chat(text):
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


def few_shot_chat(text):
    chat = [{"role": "system", "content": SYSTEM}]
    for shot, label in SHOTS:
        chat += [{"role": "user", "content": shot}, {"role": "assistant", "content": PREFIX + label}]
    return chat + [{"role": "user", "content": text}]


def prompt_ids(engine, chat):
    text = engine.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    return engine.tokenizer(text, add_special_tokens=False)["input_ids"]


def naive_probabilities(engine, context_ids, added, labels, *, end):
    """P(added + label [+ end of turn] | context) per label from one plain forward each, renormalised."""
    logprobs = []
    for label in labels:
        continuation = engine.tokenizer(added + label, add_special_tokens=False)["input_ids"]
        continuation += [engine.end_token] if end else []
        with torch.no_grad():
            logits = engine.model(torch.tensor([context_ids + continuation])).logits.float()
        table = torch.log_softmax(logits[0], dim=-1)
        logprobs.append(sum(table[len(context_ids) + k - 1, token].item() for k, token in enumerate(continuation)))
    total = sum(math.exp(value) for value in logprobs)
    return {label: math.exp(value) / total for label, value in zip(labels, logprobs, strict=True)}


def assert_close(probabilities, expected, tolerance=1e-4):
    assert list(probabilities) == list(expected)
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-9)
    for label, value in expected.items():
        assert probabilities[label] == pytest.approx(value, abs=tolerance), label


def test_the_constrained_answer_carries_the_probabilities_of_the_pass_that_chose_it(engine):
    chats = [teacher_chat(text) for text in TEXTS]
    params = GenerationParams(max_tokens=0, answer_labels=LABELS, answer_prefix=PREFIX)
    generations = engine.generate(chats, params)
    scores = engine.label_logprobs(chats, params)  # the engine's own scoring of the same prompt + prefix
    for chat, generation, row in zip(chats, generations, scores, strict=True):
        assert generation.finish_reason == "constrained"
        probabilities = generation.label_probabilities
        assert_close(probabilities, naive_probabilities(engine, prompt_ids(engine, chat), PREFIX, LABELS, end=True))
        top = max(row.values())
        total = sum(math.exp(value - top) for value in row.values())
        assert_close(probabilities, {label: math.exp(row[label] - top) / total for label in LABELS}, 1e-9)
        assert generation.text == PREFIX + max(probabilities, key=probabilities.get)  # the label is the argmax
        # From the same pass: nothing more was run for them.
        assert (generation.scoring_requests, generation.scoring_prompt_tokens, generation.scoring_s) == (0, 0, 0.0)
    assert len({max(g.label_probabilities.values()) for g in generations}) == len(generations)


def test_a_cut_reply_is_answered_from_the_same_pass_as_its_probabilities(engine):
    params = GenerationParams(max_tokens=3, answer_labels=LABELS, answer_prefix=PREFIX)
    for chat, generation in zip([teacher_chat(t) for t in TEXTS], engine.generate([teacher_chat(t) for t in TEXTS],
                                                                                   params), strict=True):
        assert generation.finish_reason == "constrained"
        reply, label = generation.text.rsplit(PREFIX, 1)
        probabilities = generation.label_probabilities
        assert label == max(probabilities, key=probabilities.get)
        reply_ids = engine.tokenizer(reply, add_special_tokens=False)["input_ids"]
        expected = naive_probabilities(engine, prompt_ids(engine, chat) + reply_ids[:-1], "\n" + PREFIX, LABELS,
                                       end=True)
        assert_close(probabilities, expected, 1e-3)  # the reply re-encoded: its last token merges with "\n"


def test_a_free_answer_is_scored_at_its_answer_position_when_asked(engine):
    task = Task(labels=LABELS, system_prompt=SYSTEM)
    chats = [few_shot_chat(text) for text in TEXTS]
    free = GenerationParams(max_tokens=8, answer_labels=LABELS, answer_prefix=PREFIX, answer_parser=task.parse)
    unscored = engine.generate(chats, free)
    generations = engine.generate(chats, replace(free, score_labels=LABELS))
    answered = [(chat, g) for chat, g in zip(chats, generations, strict=True) if g.finish_reason != "constrained"]
    assert answered, [g.text for g in generations]  # the few shots make the model answer by itself
    for (chat, generation), before in zip(answered, unscored, strict=False):
        assert before.label_probabilities is None or before.finish_reason == "constrained"
        lead = answer_lead(generation.text, PREFIX, prompt_opened_thought=False)
        assert generation.text.startswith(lead + PREFIX)
        context = prompt_ids(engine, chat) + engine.tokenizer(lead, add_special_tokens=False)["input_ids"]
        # The labels' own tokens (no end of turn: none of them begins another), as the reply wrote one of them.
        assert_close(generation.label_probabilities, naive_probabilities(engine, context, PREFIX, LABELS, end=False))
        label = task.parse(generation.text)
        if len(engine.tokenizer(PREFIX + label, add_special_tokens=False)["input_ids"]) == 4:  # one label token
            # Greedy wrote the most probable token there, so the label it wrote is the most probable label.
            assert label == max(generation.label_probabilities, key=generation.label_probabilities.get)
        assert generation.scoring_requests == 1
        assert generation.scoring_prompt_tokens > generation.prompt_tokens
        assert generation.scoring_cached_tokens == generation.cached_prompt_tokens > 0
        assert generation.scoring_s > 0
    assert all(g.label_probabilities is None for g in unscored if g.finish_reason != "constrained")


def test_an_answer_after_a_thought_is_scored_once_the_thought_is_closed(engine):
    chat = teacher_chat(TEXTS[0])
    prompt = _Prompt(prompt_ids(engine, chat), opens_thought=True)
    thought = "The words Hallo and Welt are German.</think>\n\nFinal Answer: de"
    tokens = engine.tokenizer(thought, add_special_tokens=False)["input_ids"]
    reply = _Reply(tokens, len(tokens) + 1, "stop", "<think>\n" + thought)
    params = GenerationParams(max_tokens=0, score_labels=LABELS, answer_prefix=PREFIX)
    with torch.inference_mode():
        scored = engine._score_answers([prompt], [reply], None, params, skip={})
    lead = "The words Hallo and Welt are German.</think>\n\n"
    context = prompt.ids + engine.tokenizer(lead, add_special_tokens=False)["input_ids"]
    assert_close(scored[0].probabilities, naive_probabilities(engine, context, PREFIX, LABELS, end=False))
    # A thought cut by max_tokens has no answer position: nothing is scored.
    cut = _Reply(tokens[:5], 5, "length", "<think>\n" + engine.tokenizer.decode(tokens[:5]))
    with torch.inference_mode():
        assert engine._score_answers([prompt], [cut], None, params, skip={}) == {}


def test_the_answer_position(smollm2_dir):
    closed = "<think>\nIt is German, not Final Answer: en.</think>\n\nFinal answer: de"
    assert answer_lead(closed, PREFIX, prompt_opened_thought=False) == closed[: closed.index("Final answer")]
    assert answer_lead("mulling</think>\n\n**de**", PREFIX, prompt_opened_thought=True) == "mulling</think>\n\n"
    assert answer_lead("de", PREFIX, prompt_opened_thought=False) == ""
    assert answer_lead(" de", "", prompt_opened_thought=False) == " "
    assert answer_lead("still thinking about Final Answer: de", PREFIX, prompt_opened_thought=True) is None
    assert answer_lead("<think>still thinking", PREFIX, prompt_opened_thought=False) is None

    tokenizer = load_tokenizer(str(smollm2_dir))  # its own copy: a token is added
    tokenizer.add_special_tokens({"additional_special_tokens": ["</think>"]})
    close_id = tokenizer.convert_tokens_to_ids("</think>")
    generated = tokenizer("Hmm , German", add_special_tokens=False)["input_ids"] + [close_id] + \
        tokenizer("\n\nFinal Answer: de", add_special_tokens=False)["input_ids"]
    raw = tokenizer.decode(generated)
    lead = answer_lead(raw, PREFIX, prompt_opened_thought=True)
    ids = lead_ids(tokenizer, raw, generated, lead)
    through = generated.index(close_id) + 1
    assert ids[:through] == generated[:through]  # the generated thought, as a prefix cache holds it
    assert tokenizer.decode(ids) == lead


def test_the_end_of_turn_is_scored_where_a_label_begins_another(smollm2_tokenizer):
    end = smollm2_tokenizer.eos_token_id
    labels = ("zh", "zh-Hant", "en")
    free = answer_label_tokens(smollm2_tokenizer, PREFIX, labels, end, always_end=False)
    assert smollm2_tokenizer.decode(list(free.shared)) == "Final Answer:"
    assert [continuation[-1] == end for continuation in free.continuations] == [True, False, False]
    chosen = answer_label_tokens(smollm2_tokenizer, PREFIX, labels, end, always_end=True)
    assert all(continuation[-1] == end for continuation in chosen.continuations)
