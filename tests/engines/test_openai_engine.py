"""The served engine's pure pieces (no server, no openai package needed): a reply with and without the server's
reasoning split, and the labels' probabilities read from per-token top_logprobs (issue 24)."""

import math
from types import SimpleNamespace as Token

import pytest

from prompt_distill.engines.openai_engine import label_probabilities_from_logprobs, reply_text
from prompt_distill.task import language_task, strip_thinking

LABELS = ("en", "es", "fr")


def token(text, logprob, alternatives=()):
    return Token(token=text, logprob=logprob,
                 top_logprobs=[Token(token=t, logprob=lp) for t, lp in alternatives] or [Token(token=text,
                                                                                                  logprob=logprob)])


def answer(alternatives, chosen=" en"):
    """'Final Answer: en' as a server tokenizes it: the label's token carries the prefix's space."""
    return [token("Final", -0.1), token(" Answer", -0.1), token(":", -0.1),
            token(chosen, dict(alternatives).get(chosen, -0.5), alternatives), token("<|im_end|>", -0.01)]


def test_probabilities_from_the_label_token_renormalised_over_the_labels():
    tokens = answer([(" en", math.log(0.6)), (" fr", math.log(0.2)), (" the", math.log(0.1))])
    probabilities = label_probabilities_from_logprobs(tokens, "Final Answer: ", LABELS)
    assert probabilities == pytest.approx({"en": 0.75, "es": 0.0, "fr": 0.25})  # es not in the top-k: 0


def test_a_token_that_starts_several_labels_counts_for_none_and_an_ambiguous_answer_is_not_scored():
    tokens = answer([(" en", math.log(0.5)), (" e", math.log(0.3)), (" fr", math.log(0.2))])
    assert label_probabilities_from_logprobs(tokens, "Final Answer: ", LABELS) == pytest.approx(
        {"en": 0.5 / 0.7, "es": 0.0, "fr": 0.2 / 0.7})
    ambiguous = answer([(" e", math.log(0.9)), (" fr", math.log(0.1))], chosen=" e")
    assert label_probabilities_from_logprobs(ambiguous, "Final Answer: ", LABELS) is None


def test_no_answer_prefix_or_no_logprobs_is_not_scored():
    assert label_probabilities_from_logprobs([], "Final Answer: ", LABELS) is None
    assert label_probabilities_from_logprobs([token("I think", -0.1)], "Final Answer: ", LABELS) is None


def test_the_last_answer_counts_after_a_thought_that_mentions_one():
    thought = [token("Final Answer: fr?", -0.1), token(" no.", -0.1), token("</think>", -0.1)]
    tokens = thought + answer([(" en", math.log(0.9)), (" es", math.log(0.1))])
    assert label_probabilities_from_logprobs(tokens, "Final Answer: ", LABELS) == pytest.approx(
        {"en": 0.9, "es": 0.1, "fr": 0.0})


def test_reply_with_the_servers_reasoning_reads_as_the_in_process_engines_reply():
    task = language_task()
    text, reasoning = reply_text("Final Answer: de", "Looks German.")
    assert text.startswith("<think>\nLooks German.\n</think>") and reasoning == "Looks German."
    assert task.parse(text) == "de"
    cut, thought = reply_text(None, "Still thinking about Final Answer: fr")  # cut inside the thought
    assert strip_thinking(cut) is None and thought.startswith("Still")
    assert task.parse(cut) != "fr"


def test_reply_without_the_servers_split_uses_the_think_tags():
    assert reply_text("Final Answer: en", None) == ("Final Answer: en", None)
    text, reasoning = reply_text("hmm, English.</think>\n\nFinal Answer: en", None)  # the prompt opened <think>
    assert text.startswith("<think>\n") and reasoning == "hmm, English."
    assert language_task().parse(text) == "en"
