"""Scoring label continuations with one forward pass of a transformers model: a token trie per row.

Each row of a batch is a context (prompt, and for the teacher the reply and answer prefix) followed by a trie of
the continuations to score. A continuation's log-probability is the sum, over its tokens, of the log-probability
of the token at its parent's position (the context's last token for the first one). Only the trie's inner nodes
(tokens some other token continues) are run through the model: a leaf's own logits are never read, so the labels
``en``/``de``/``fr`` that are one token each cost nothing beyond the prompt, and ``zh-Hant``/``zh-Hans`` share
their common tokens. Rows are left-padded; each inner node sits at the position its depth gives after the
context, and a 4D mask lets it see the context and its own ancestors only.
"""

from __future__ import annotations

import torch

from .label_tokens import Trie


def score_continuations(model, contexts: list[list[int]], continuations: list[list[list[int]]], *, shared: int,
                        cache_for, pad_id: int, device) -> list[list[float]]:
    """Summed log-probability of every continuation after its row's context, in one forward pass.

    ``shared`` leading context tokens of every row are already in the KV cache that ``cache_for(batch_size,
    room)`` returns (0: no cache). Without padding and without inner nodes (one prompt, one-token labels) the pass
    is exactly the model's plain causal forward over the prompt, keeping one position's logits.
    """
    tries = [Trie.of(row) for row in continuations]
    inners = [trie.inner() for trie in tries]
    rows = [context[shared:] + [trie.tokens[node] for node in inner]
            for context, trie, inner in zip(contexts, tries, inners, strict=True)]
    width = max(len(row) for row in rows)
    keep = max(len(inner) for inner in inners) + 1  # the context's last token, then the inner nodes
    input_ids = torch.tensor([[pad_id] * (width - len(row)) + row for row in rows], device=device)
    plain = all(len(row) == width for row in rows) and keep == 1
    extra = {"past_key_values": cache_for(len(rows), width)} if shared else {}
    if not plain:
        positions = []
        for context, trie, inner in zip(contexts, tries, inners, strict=True):
            row_positions = list(range(shared, len(context))) + [len(context) - 1 + trie.depth(n) for n in inner]
            positions.append([0] * (width - len(row_positions)) + row_positions)
        extra["position_ids"] = torch.tensor(positions, device=device)
        extra["attention_mask"] = _trie_mask(model, contexts, tries, inners, shared, width, device)
    logits = model(input_ids=input_ids, use_cache=bool(shared), logits_to_keep=keep, **extra).logits
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    # Where each node's token is predicted, as an index into the kept positions: its parent's.
    batch_index, position_index, token_index = [], [], []
    for r, (trie, inner) in enumerate(zip(tries, inners, strict=True)):
        slot = {node: keep - len(inner) + k for k, node in enumerate(inner)}
        last_context = keep - len(inner) - 1
        for token, parent in zip(trie.tokens, trie.parents, strict=True):
            batch_index.append(r)
            position_index.append(last_context if parent == -1 else slot[parent])
            token_index.append(token)
    node_logprobs = logprobs[batch_index, position_index, token_index].tolist()
    scores, start = [], 0
    for trie in tries:
        mine = node_logprobs[start : start + len(trie.tokens)]
        scores.append([sum(mine[node] for node in trie.ancestry(end)) for end in trie.ends])
        start += len(trie.tokens)
    return scores


def _trie_mask(model, contexts, tries, inners, shared: int, width: int, device) -> torch.Tensor:
    """Additive 4D mask (batch, 1, query, shared + query): the minimum of the dtype where a query must not look."""
    visible = torch.zeros((len(contexts), width, width), dtype=torch.bool)
    for r, (context, trie, inner) in enumerate(zip(contexts, tries, inners, strict=True)):
        length = len(context) - shared
        start = width - length - len(inner)  # left padding
        visible[r, range(start), range(start)] = True  # a pad sees itself (no row of the softmax is empty)
        end = start + length
        visible[r, start:end, start:end] = torch.ones((length, length), dtype=torch.bool).tril()
        visible[r, end:, start:end] = True
        slot = {node: end + k for k, node in enumerate(inner)}
        for node in inner:
            visible[r, slot[node], [slot[a] for a in trie.ancestry(node)]] = True
    visible = torch.cat([visible.new_ones((len(contexts), width, shared)), visible], dim=-1)
    dtype = next(model.parameters()).dtype
    additive = torch.zeros(visible.shape, dtype=dtype)
    additive.masked_fill_(~visible, torch.finfo(dtype).min)
    return additive[:, None].to(device)
