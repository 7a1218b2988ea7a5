"""The context length a labelling run needs, from its data: the longest templated prompt plus the generation budget.

Without ``max_model_len`` vLLM sizes the engine for the model's whole context (262,144 tokens for Qwen3-30B-A3B
thinking-2507) and refuses to start when one sequence of that length does not fit the KV cache (one 80 GB GPU:
about 24 GiB needed, about 11 GiB left after the weights). The run only needs its longest prompt plus
``max_tokens``.

The prompt is counted as the vLLM engine sends it: the tokenizer's chat template with the generation prompt,
rendered to text and encoded without special tokens (``vllm_engine.encode_chat``). Encoding every sentence inside
its 6,000-token prompt would cost seconds per thousand sentences, so only the sentences that are longest on their
own are templated and counted exactly; a sentence can merge with its neighbours at the joins by a token or two,
which the margin covers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import PromptDistillError


class ContextLengthError(PromptDistillError, ValueError):
    """The run's prompts cannot be labelled as asked (no sentence's prompt fits the teacher's context)."""


# Tokens on top of the longest prompt + max_tokens: token merges at the joins of the template, for sentences that
# were not templated one by one.
CONTEXT_MARGIN = 64
# How many of the longest sentences (by their own token count) are templated and counted exactly.
EXACT_CANDIDATES = 16

# The room a prompt must leave in the context for the reply. A sentence whose prompt leaves less is not generated:
# it is recorded as too_long (labeling/run.py), since a truncated prompt would lose the rules or the sentence, and the
# transformers backend would run past the positions the model was trained on. Why not all of max_tokens: vLLM's
# context is capped at the model's own when prompt + max_tokens do not fit (a reply then ends at the context's end),
# and a model that does not think answers in a few tokens, so asking for the whole budget would refuse sentences that
# label fine. Why more than the answer: a thinking teacher writes its thought first; a prompt that leaves it a few
# tokens is cut inside the thought on every attempt (max_retries + 1 generations of a huge prompt, then unparseable).
# THOUGHT_ROOM is a short thought: Qwen3 thinking models settle most sentences in a few hundred tokens.
ANSWER_ROOM = 16  # "Final Answer: " + a label + end of turn: what scoring appends when max_tokens is 0
THOUGHT_ROOM = 1024
# Tokens that joining a sentence to the template can add beyond the sentence's own (merges at the two joins).
JOIN_SLACK = 8


def reply_room(max_tokens: int) -> int:
    """Tokens of context a prompt must leave for the reply (see THOUGHT_ROOM)."""
    return max(ANSWER_ROOM, min(max_tokens, THOUGHT_ROOM))


@dataclass(frozen=True)
class ContextLength:
    max_model_len: int
    prompt_tokens: int  # the longest templated prompt among the run's sentences
    longest_index: int  # its sentence (index into the texts given)
    max_tokens: int
    margin: int
    model_context: int | None = None  # the model's own limit, when the run needs more (then max_model_len is it)
    too_long: int = 0  # sentences whose prompt does not leave reply_room of the model's context (not generated)

    @property
    def needed(self) -> int:
        return self.prompt_tokens + self.max_tokens + self.margin

    def describe(self, line: int | None = None) -> str:
        where = f" (input line {line})" if line is not None else ""
        sum_ = f"longest prompt {self.prompt_tokens:,} tokens{where} + max_tokens {self.max_tokens:,} + margin {self.margin}"
        if self.too_long:
            sum_ += (f"; {self.too_long} longer prompts leave less than {reply_room(self.max_tokens):,} tokens of the "
                     "model's context and are not generated (too_long in the sidecar)")
        if self.model_context is not None:
            return (f"vLLM max_model_len {self.max_model_len:,}: the model's context; the run would need {self.needed:,} "
                    f"({sum_}), so a reply stops at the context's end before max_tokens (--max_model_len overrides)")
        return f"vLLM max_model_len {self.max_model_len:,} = {sum_} (--max_model_len overrides)"


def count_chat_tokens(tokenizer, chat: list[dict], chat_template_kwargs: dict | None = None) -> int:
    """Tokens of the chat as the vLLM engine sends it (template rendered to text, then encoded as is)."""
    text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True,
                                         **(chat_template_kwargs or {}))
    return len(tokenizer.encode(text, add_special_tokens=False))


def model_context_limit(config) -> int | None:
    """The longest context a transformers config declares (what vLLM takes when given no max_model_len)."""
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "max_sequence_length"):
        value = getattr(text_config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def context_length_for(tokenizer, task, texts: list[str], max_tokens: int, *, margin: int = CONTEXT_MARGIN,
                       candidates: int = EXACT_CANDIDATES, chat_template_kwargs: dict | None = None,
                       model_limit: int | None = None) -> ContextLength:
    """``max_model_len`` for labelling ``texts`` with ``task``'s teacher prompt and ``max_tokens`` per answer,
    at most ``model_limit`` (vLLM refuses a max_model_len above the model's context)."""
    if not texts:
        raise ContextLengthError("no sentences to size the context for.")
    own = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    longest_first = sorted(range(len(texts)), key=lambda i: (-len(own[i]), -len(texts[i]), i))
    room = reply_room(max_tokens)
    counted: dict[int, int] = {}
    too_long: dict[int, int] = {}
    for i in longest_first:  # the sentences that do not fit are skipped: labelling records them as too_long
        tokens = count_chat_tokens(tokenizer, task.teacher_messages(texts[i]), chat_template_kwargs)
        if model_limit is not None and tokens + room > model_limit:
            too_long[i] = tokens
            continue
        counted[i] = tokens
        if len(counted) >= candidates:
            break
    if not counted:
        shortest = min(too_long.values())
        raise ContextLengthError(f"no sentence's prompt fits the model's context of {model_limit:,} tokens: the "
                                 f"shortest has {shortest:,} tokens and a reply needs {room:,} more. Use a shorter "
                                 "--prompt_file or a model with a longer context.")
    longest = max(counted, key=lambda i: (counted[i], -i))
    prompt = counted[longest]
    needed = prompt + max_tokens + margin
    if model_limit is not None and needed > model_limit:
        return ContextLength(model_limit, prompt, longest, max_tokens, margin, model_context=model_limit,
                             too_long=len(too_long))
    return ContextLength(needed, prompt, longest, max_tokens, margin, too_long=len(too_long))


@dataclass(frozen=True)
class PromptCheck:
    context_tokens: int | None  # the engine's context (None: it does not say, and nothing is checked)
    reply_room: int
    too_long: dict[int, int]  # sentence index -> prompt tokens, for the prompts that leave less than reply_room


def check_prompts(engine, task, texts: dict[int, str], params, max_tokens: int) -> PromptCheck:
    """Which of ``texts`` (index -> sentence) have a prompt too long for ``engine``'s context (its
    ``max_context_tokens``), counted as the engine sends it (``count_prompt_tokens``).

    Templating every sentence inside a prompt of thousands of tokens costs seconds per thousand sentences, so a
    sentence is counted exactly only when a bound says it might not fit: a token covers at least one byte (byte-level
    BPE, or SentencePiece's byte fallback), so a prompt has at most the empty sentence's prompt + the sentence's UTF-8
    bytes + JOIN_SLACK tokens.
    """
    limit = getattr(engine, "max_context_tokens", None)
    room = reply_room(max_tokens)
    if not limit or not texts:
        return PromptCheck(limit, room, {})
    empty = engine.count_prompt_tokens(task.teacher_messages(""), params)
    too_long = {}
    for index, text in texts.items():
        if empty + len(text.encode("utf-8")) + JOIN_SLACK + room <= limit:
            continue
        tokens = engine.count_prompt_tokens(task.teacher_messages(text), params)
        if tokens + room > limit:
            too_long[index] = tokens
    return PromptCheck(limit, room, too_long)
