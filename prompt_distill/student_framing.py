"""What the student's chat holds around the sentence: the fewest framing tokens its chat template allows.

The student has no instructions to read (the LoRA adapter carries the task), so every token around the sentence
is pure cost: it is computed for each sentence at inference and it makes up most of a short sentence's prompt.
The chat template's turn markers stay (the model was instruction-tuned on them and ``<|im_start|>assistant``
is where it answers; training and vLLM's chat API both go through the template). What can go is what a template
adds on its own: SmolLM2's inserts a default system turn ("You are a helpful AI assistant named SmolLM, trained
by Hugging Face", 15 tokens more) whenever the chat has no system message, so an empty system message is 16
tokens shorter there (a 5-token sentence: 35 -> 19 prompt tokens); Qwen3-Instruct's inserts nothing, and an
empty system message would add an empty system turn. Hence the rule: render a probe sentence both ways and keep
the empty system message only where it is strictly shorter. The difference comes from a fixed block, so one
probe decides for every sentence.

The choice is made once per tokenizer at training time and written to the adapter's run record
(``student_framing``); inference reads it from there, so the student always sees the framing it was trained
with. An adapter trained before the field existed was trained on the user turn alone (``USER_ONLY``).
"""

from __future__ import annotations

USER_ONLY = "user_only"  # [user: sentence]: what every adapter before the run record's field was trained with
EMPTY_SYSTEM = "empty_system"  # [system: "", user: sentence]: drops a default system turn the template injects
FRAMINGS = (USER_ONLY, EMPTY_SYSTEM)
_PROBE = "Probe sentence."


def framed_messages(text: str, framing: str = USER_ONLY) -> list[dict]:
    """The student's chat for one sentence under ``framing``."""
    if framing == USER_ONLY:
        return [{"role": "user", "content": text}]
    if framing == EMPTY_SYSTEM:
        return [{"role": "system", "content": ""}, {"role": "user", "content": text}]
    raise ValueError(f"student framing must be one of {', '.join(FRAMINGS)}; got {framing!r}.")


def chat_ids(tokenizer, messages: list[dict], add_generation_prompt: bool) -> list[int]:
    """Token ids of a chat: the same call TRL makes when it tokenizes a conversational prompt/completion example
    (training.examples measures lengths with it, engines.label_tokens finds each label's tokens with it)."""
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
    )
    return list(encoded["input_ids"])


def framing_tokens(tokenizer, framing: str) -> int:
    """Prompt tokens around the probe sentence (what the template adds), as the student's prompt is built."""
    ids = tokenizer.apply_chat_template(framed_messages(_PROBE, framing), add_generation_prompt=True, tokenize=True,
                                        return_dict=True)["input_ids"]
    return len(ids) - len(tokenizer(_PROBE, add_special_tokens=False)["input_ids"])


def choose_framing(tokenizer) -> str:
    """``EMPTY_SYSTEM`` when it gives fewer prompt tokens than the user turn alone, else ``USER_ONLY``."""
    try:
        with_empty_system = framing_tokens(tokenizer, EMPTY_SYSTEM)
    except Exception:  # a template that refuses a system message (it raises from Jinja): the user turn it is
        return USER_ONLY
    return EMPTY_SYSTEM if with_empty_system < framing_tokens(tokenizer, USER_ONLY) else USER_ONLY
