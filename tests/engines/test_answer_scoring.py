"""vllm_classify.AnswerScoring's refusals, in the default lane (the requests themselves run in the vllm_cpu lane:
tests/engines/test_label_probabilities_vllm_cpu.py)."""

import logging
from types import SimpleNamespace

from prompt_distill.engines.base import Generation, GenerationParams
from prompt_distill.engines.vllm_classify import MAX_IDS_PER_REQUEST, AnswerScoring
from prompt_distill.task import Task


def output(text, tokenizer):
    return SimpleNamespace(prompt_token_ids=[1, 2, 3],
                           outputs=[SimpleNamespace(text=text, token_ids=tokenizer(text)["input_ids"])])


def test_more_labels_than_one_request_may_ask_about_are_not_scored(smollm2_tokenizer, caplog):
    words = [token[1:] for token in sorted(smollm2_tokenizer.get_vocab())[:20000] if token.startswith("Ġ") and
             token[1:].isalpha() and len(smollm2_tokenizer(token.replace("Ġ", " "))["input_ids"]) == 1]
    labels = tuple(words[: MAX_IDS_PER_REQUEST + 10])
    params = GenerationParams(max_tokens=8, score_labels=labels)
    logger = logging.getLogger("prompt_distill.engines.vllm_classify")  # the project's logger does not propagate
    logger.addHandler(caplog.handler)
    try:
        scoring = AnswerScoring(smollm2_tokenizer, params, prompt_opened_thought=False, first_index=1)
    finally:
        logger.removeHandler(caplog.handler)
    assert "not scored" in caplog.text
    text = "Final Answer: " + labels[0]
    assert scoring.requests(0, output(text, smollm2_tokenizer), Generation(text, 3, 4, "stop", 0.1)) is None


def test_no_label_or_no_closed_thought_is_not_scored(smollm2_tokenizer):
    task = Task(labels=("en", "de"), system_prompt="Reply with Final Answer: <code>.")
    params = GenerationParams(max_tokens=8, score_labels=task.labels, answer_parser=task.parse)
    scoring = AnswerScoring(smollm2_tokenizer, params, prompt_opened_thought=True, first_index=1)
    for text in ("</think>\n\nFinal Answer: Spanish", "still thinking, Final Answer: en"):
        assert scoring.requests(0, output(text, smollm2_tokenizer), Generation(text, 3, 4, "stop", 0.1)) is None
    assert scoring.answers == {} and scoring.next_index == 1
