"""The tokens a student is trained to answer each label with, as every classifying engine scores them.

TRL tokenizes a prompt/completion example by applying the chat template to prompt + assistant message and
training on what follows the prompt's ids (``student_framing.chat_ids``); the same call here gives, per label, exactly
the tokens training taught after the prompt: for SmolLM2 ``en`` -> ``en <|im_end|> \\n``. What scoring keeps:

* the tokens every label's completion starts with (a thinking template's empty ``<think></think>``, or a first
  token all labels share) become context: a common factor, gone once the probabilities are renormalised;
* the label's own tokens, up to the end-of-turn token;
* the end-of-turn token only for a label whose tokens are a prefix of another label's (``a`` vs ``ab``): there
  P(a) alone would include P(ab). Elsewhere it is left out, which is what lets one-token labels be read from the
  prompt's last position alone (no extra position in the pass).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


@dataclass(frozen=True)
class LabelTokens:
    shared: tuple[int, ...]  # tokens every label's answer starts with: appended to the prompt as context
    continuations: tuple[tuple[int, ...], ...]  # per label, in order: what is scored after the context

    @property
    def single_tokens(self) -> bool:
        """Every label is one distinct token: its probability is read at the prompt's last position."""
        return all(len(continuation) == 1 for continuation in self.continuations)


def label_tokens(tokenizer, chat: list[dict], labels: tuple[str, ...], end_ids) -> LabelTokens:
    """The label token sequences after ``chat``'s prompt (see the module docstring); ``end_ids``: end of turn."""
    from ..student_framing import chat_ids  # the call TRL makes, shared with training.examples

    prompt = chat_ids(tokenizer, chat, add_generation_prompt=True)
    bodies, ends = [], []
    for label in labels:
        full = chat_ids(tokenizer, chat + [{"role": "assistant", "content": label}], add_generation_prompt=False)
        if full[: len(prompt)] != prompt:
            raise ValueError(f"label_tokens: with this chat template the prompt is not a prefix of the prompt + "
                             f"answer {label!r}, so the tokens training teaches after the prompt are undefined.")
        completion = full[len(prompt):]
        cut = next((i for i, token in enumerate(completion) if token in end_ids), len(completion))
        bodies.append(completion[:cut])
        ends.append(completion[cut : cut + 1])
    sequences = []
    for body, end in zip(bodies, ends, strict=True):
        is_prefix = any(other != body and other[: len(body)] == body for other in bodies)
        sequences.append(body + end if is_prefix or not body else body)
    if len(set(map(tuple, sequences))) != len(sequences):
        raise ValueError(f"label_tokens: two of the labels {', '.join(labels)} have the same answer tokens.")
    shared = _common_prefix(sequences)
    shared = min(shared, min(len(sequence) for sequence in sequences) - 1)  # each label keeps a token to score
    return LabelTokens(tuple(sequences[0][:shared]), tuple(tuple(s[shared:]) for s in sequences))


def answer_label_tokens(tokenizer, added: str, labels: tuple[str, ...], end_id: int, *,
                        always_end: bool) -> LabelTokens:
    """The teacher's answer tokens: per label, ``added + label`` encoded together (so the boundary tokenizes as the
    model writes it: ": K" -> ":", " K"); the tokens all labels start with ("Final Answer:") become context.

    ``always_end``: every label then the end-of-turn token, as transformers chooses a constrained answer (the
    reply must end with it). Otherwise the end-of-turn token only where a label's tokens are a prefix of another
    label's, as ``label_tokens`` does: the probability the label's tokens were written (sampled, or chosen by a
    structured-output grammar token by token) with, whatever follows them.
    """
    bodies = [tokenizer(added + label, add_special_tokens=False)["input_ids"] for label in labels]
    sequences = []
    for body in bodies:
        is_prefix = any(other != body and other[: len(body)] == body for other in bodies)
        sequences.append(body + [end_id] if always_end or is_prefix else body)
    if len(set(map(tuple, sequences))) != len(sequences):
        raise ValueError(f"answer_label_tokens: two of the labels {', '.join(labels)} have the same answer tokens.")
    shared = min(_common_prefix(sequences), min(len(sequence) for sequence in sequences) - 1)
    return LabelTokens(tuple(sequences[0][:shared]), tuple(tuple(s[shared:]) for s in sequences))


def answer_lead(raw: str, answer_prefix: str, *, prompt_opened_thought: bool) -> str | None:
    """The reply ``raw`` (as generated) up to its answer position: ``answer_prefix + label`` follows it there.

    The answer comes after the thought (through its ``</think>``). If the text after the thought holds the answer
    prefix ("Final Answer:", any case), the lead ends right before its last occurrence, so lead + prefix + label
    is what the model wrote; otherwise (a bare answer, "K") the lead is the thought and the blank that follows it,
    and the labels are scored as the prefixed answer there. None: the thought never closed (no answer position).
    """
    close = raw.rfind(THINK_CLOSE)
    if close == -1:
        if prompt_opened_thought or raw.lstrip().startswith(THINK_OPEN):
            return None
        head, tail = "", raw
    else:
        head, tail = raw[: close + len(THINK_CLOSE)], raw[close + len(THINK_CLOSE) :]
    key = answer_prefix.strip().lower()
    found = tail.lower().rfind(key) if key else -1
    if found != -1:
        return head + tail[:found]
    return head + tail[: len(tail) - len(tail.lstrip())]


def lead_ids(tokenizer, raw: str, token_ids: list[int], lead: str) -> list[int]:
    """Token ids of ``lead``, a prefix of the reply ``raw`` generated as ``token_ids``: the generated ids through the
    thought's ``</think>`` token (so a prefix cache holds them), then the rest of the lead encoded."""
    close = lead.rfind(THINK_CLOSE)
    close_id = tokenizer.convert_tokens_to_ids(THINK_CLOSE) if close != -1 else None
    if close_id is None or close_id == tokenizer.unk_token_id or close_id not in token_ids:
        return tokenizer(lead, add_special_tokens=False)["input_ids"] if lead else []
    through = len(token_ids) - token_ids[::-1].index(close_id)
    rest = lead[close + len(THINK_CLOSE) :]
    return list(token_ids[:through]) + (tokenizer(rest, add_special_tokens=False)["input_ids"] if rest else [])


def _common_prefix(sequences: list[list[int]]) -> int:
    length = min(len(sequence) for sequence in sequences)
    for position in range(length):
        if len({sequence[position] for sequence in sequences}) > 1:
            return position
    return length


def renormalised(labels: tuple[str, ...], logprobs: list[float]) -> dict[str, float]:
    """Label -> probability, the labels' log-probabilities renormalised over the labels (they sum to 1)."""
    top = max(logprobs)
    weights = [math.exp(value - top) for value in logprobs]
    total = sum(weights)
    return {label: weight / total for label, weight in zip(labels, weights, strict=True)}


@dataclass
class Trie:
    tokens: list[int]  # one per node; a parent always comes before its children
    parents: list[int]  # the parent node of each node; -1: a child of the context's last token
    ends: list[int]  # per continuation: the node of its last token

    @classmethod
    def of(cls, continuations: list[list[int]]) -> Trie:
        trie, nodes = cls([], [], []), {}
        for continuation in continuations:
            if not continuation:
                raise ValueError("hf_scoring.Trie: an empty continuation has no token to score.")
            parent = -1
            for token in continuation:
                key = (parent, token)
                if key not in nodes:
                    nodes[key] = len(trie.tokens)
                    trie.tokens.append(token)
                    trie.parents.append(parent)
                parent = nodes[key]
            trie.ends.append(parent)
        return trie

    def inner(self) -> list[int]:
        """Nodes that some node continues: the only ones the model has to run, in parent-first order."""
        continued = set(self.parents)
        return [node for node in range(len(self.tokens)) if node in continued]

    def depth(self, node: int) -> int:
        depth = 1
        while self.parents[node] != -1:
            node, depth = self.parents[node], depth + 1
        return depth

    def ancestry(self, node: int) -> list[int]:
        """The node and its ancestors."""
        chain = [node]
        while self.parents[chain[-1]] != -1:
            chain.append(self.parents[chain[-1]])
        return chain
