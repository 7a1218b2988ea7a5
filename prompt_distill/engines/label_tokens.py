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
