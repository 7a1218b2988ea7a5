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

# Tokens on top of the longest prompt + max_tokens: token merges at the joins of the template, for sentences that
# were not templated one by one.
CONTEXT_MARGIN = 64
# How many of the longest sentences (by their own token count) are templated and counted exactly.
EXACT_CANDIDATES = 16


@dataclass(frozen=True)
class ContextLength:
    max_model_len: int
    prompt_tokens: int  # the longest templated prompt among the run's sentences
    longest_index: int  # its sentence (index into the texts given)
    max_tokens: int
    margin: int
    model_context: int | None = None  # the model's own limit, when the run needs more (then max_model_len is it)

    @property
    def needed(self) -> int:
        return self.prompt_tokens + self.max_tokens + self.margin

    def describe(self, line: int | None = None) -> str:
        where = f" (input line {line})" if line is not None else ""
        sum_ = f"longest prompt {self.prompt_tokens:,} tokens{where} + max_tokens {self.max_tokens:,} + margin {self.margin}"
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
        raise ValueError("no sentences to size the context for.")
    own = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    longest_first = sorted(range(len(texts)), key=lambda i: (-len(own[i]), -len(texts[i]), i))
    counted = {i: count_chat_tokens(tokenizer, task.teacher_messages(texts[i]), chat_template_kwargs)
               for i in longest_first[:candidates]}
    longest = max(counted, key=lambda i: (counted[i], -i))
    prompt = counted[longest]
    needed = prompt + max_tokens + margin
    if model_limit is not None and needed > model_limit:
        if prompt >= model_limit:
            raise ValueError(f"the longest prompt has {prompt:,} tokens, the model's context is {model_limit:,}.")
        return ContextLength(model_limit, prompt, longest, max_tokens, margin, model_context=model_limit)
    return ContextLength(needed, prompt, longest, max_tokens, margin)
