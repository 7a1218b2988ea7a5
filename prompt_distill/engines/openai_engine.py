"""The served engine (``--backend openai``): the model runs behind an OpenAI-compatible server (``vllm serve``, a hosted
API) and every chat is one ``/v1/chat/completions`` request through the official ``openai`` client.

* The client retries a 429, a 5xx or a lost connection itself (``max_retries``, exponential backoff); a request that
  still fails ends the run with one line (``ServerError``). Requests run ``max_concurrent_requests`` at a time on
  threads; each result reaches ``on_batch`` on the caller's thread as it arrives, so create_data writes it to disk
  at once and a server that dies mid-run loses only what was in flight (a rerun resumes).
* Per-request ``seed`` (``GenerationParams.request_seeds``), ``temperature``, ``top_p``, ``max_tokens``; ``top_k``,
  ``min_tokens`` and ``structured_outputs`` are vLLM's extensions and are sent only to a vLLM server (its
  ``/v1/models`` entries say ``owned_by: vllm``).
* Thinking models: the server's own split (vLLM ``--reasoning-parser``: ``message.reasoning``; other servers
  ``reasoning_content``) when it gives one, and ``Generation.text`` is then rebuilt as ``<think>`` thought
  ``</think>`` answer, the form the task's parser reads; without it the reply is taken as written and the project's
  ``</think>`` split (``task.strip_thinking``) applies.
* The constrained answer: vLLM's structured-output choice (``structured_outputs={"choice": [prefix + label ...]}``,
  vllm/entrypoints/openai/chat_completion/protocol.py), which vLLM applies after the thought when the server runs a
  reasoning parser. Another server has no such choice: a constrained answer is refused there.
* Label probabilities: from the ``top_logprobs`` (``TOP_LOGPROBS`` per token) at the label's first token after the
  answer prefix. Each label takes the probability of the listed token that starts it; a label whose token is not
  among the top ``TOP_LOGPROBS`` counts as 0 before the renormalisation over the labels, and a token that starts
  several labels (``e`` of ``en`` and ``es``) counts for none of them; when the answered label's own token does not
  tell it apart (it starts several labels), or the server returns no logprobs, the probabilities are None.
* Token counts from ``usage`` (cached prompt tokens from ``prompt_tokens_details`` where the server reports them);
  the context from ``/v1/models``' ``max_model_len`` (vLLM), prompt tokens counted by vLLM's ``/tokenize``. A server
  that gives neither: the context is unknown and prompts are not checked against it.

The API key is an ``engines.flags.ApiKey``: its ``.secret`` goes to the client and nowhere else.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import math
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from .base import (
    BatchCallback,
    EngineSettings,
    Generation,
    GenerationParams,
    LabelScores,
    ScoresCallback,
    ServerError,
)

logger = logging.getLogger(__name__)

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
# Alternatives per generated token asked for the label probabilities (OpenAI's API allows at most 20; vLLM's
# default --max-logprobs is 20).
TOP_LOGPROBS = 20
# What the client does on a 429, a 5xx or a lost connection (openai's own retry with exponential backoff).
MAX_RETRIES = 3
REQUEST_TIMEOUT_S = 600.0
# Sent as the key when none is given: the client needs one, and a server started without --api-key takes any.
NO_KEY = "EMPTY"


def _secret(api_key) -> str:
    if api_key is None:
        return NO_KEY
    return getattr(api_key, "secret", api_key)


def _root_url(base_url: str) -> str:
    """The server's root (``http://host:port``) from an OpenAI base URL ending in ``/v1``."""
    base = base_url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def _extra(obj, name: str):
    """A field the openai types do not declare (vLLM's ``reasoning``, ``max_model_len``): pydantic keeps it as an
    extra."""
    value = getattr(obj, name, None)
    if value is None:
        value = (getattr(obj, "model_extra", None) or {}).get(name)
    return value


def _error_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"


def reply_text(content: str | None, reasoning: str | None) -> tuple[str, str | None]:
    """``(text, reasoning)`` of one reply: with the server's split, the thought closed by ``</think>`` before the
    answer (``<think>`` alone when the thought was cut and no answer came); without it the content as written, and
    the thought read from its ``</think>`` (a content that closes a thought the prompt opened gets its ``<think>``
    back, as the vLLM engine does)."""
    content = content or ""
    if reasoning is not None:
        if not content and reasoning:  # cut inside the thought: no answer followed
            return f"{THINK_OPEN}\n{reasoning}", reasoning.strip()
        return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n{content}", reasoning.strip()
    if THINK_CLOSE in content:
        thought = content.rsplit(THINK_CLOSE, 1)[0]
        body = thought.split(THINK_OPEN, 1)[1] if THINK_OPEN in thought else thought
        text = content if THINK_OPEN in content else f"{THINK_OPEN}\n{content}"
        return text, body.strip()
    return content, None


def label_probabilities_from_logprobs(tokens: Sequence, answer_prefix: str,
                                      labels: Sequence[str]) -> dict[str, float] | None:
    """The labels' probabilities at the answer from a reply's per-token logprobs (``ChatCompletionTokenLogprob``:
    ``.token``, ``.logprob``, ``.top_logprobs``); None when they cannot be read (see the module's docstring)."""
    if not tokens or not labels:
        return None
    texts = [entry.token for entry in tokens]
    joined = "".join(texts)
    start = joined.rfind(answer_prefix) if answer_prefix else 0
    if start < 0:
        return None
    label_at = start + len(answer_prefix)
    position, offset = None, 0
    for index, text in enumerate(texts):
        if offset <= label_at < offset + len(text):
            position = index
            break
        offset += len(text)
    if position is None:
        return None
    chosen = tokens[position]
    # The listed alternatives at that position (the chosen token is among them on vLLM; added when it is not).
    listed = {alt.token: alt.logprob for alt in (chosen.top_logprobs or [])}
    listed.setdefault(chosen.token, chosen.logprob)
    # The label part of each alternative: what it adds after the answer prefix's characters it covers.
    covered = label_at - offset  # characters of the chosen token that belong to the prefix (its leading space)
    lead = chosen.token[:covered]
    found: dict[str, float] = {}
    owner: dict[str, str] = {}
    for token, logprob in listed.items():
        if not token.startswith(lead):
            continue
        piece = token[len(lead):]
        if not piece:
            continue
        matching = [label for label in labels if label.startswith(piece)]
        if len(matching) != 1:
            continue  # a token that starts no label, or several (it does not tell them apart): not counted
        label = matching[0]
        if label in owner and len(token) <= len(owner[label]):
            continue  # two tokens start the same label (a shorter and a longer piece): the longer one counts
        owner[label] = token
        found[label] = math.exp(logprob) if logprob is not None and logprob > -9999 else 0.0
    answered = chosen.token[len(lead):]
    answered_label = [label for label in labels if label.startswith(answered) and answered]
    if len(answered_label) != 1 or answered_label[0] not in found:
        return None
    total = sum(found.values())
    if total <= 0:
        return None
    return {label: found.get(label, 0.0) / total for label in labels}


class OpenAIEngine:
    """The Engine protocol on a model behind an OpenAI-compatible server; ``model`` is the server's model name."""

    name = "openai"
    tokenizer: object
    max_context_tokens: int | None
    notes: list[str]

    @classmethod
    def options(cls, settings: EngineSettings) -> dict:
        return {"base_url": settings.base_url, "api_key": settings.api_key,
                "max_concurrent_requests": settings.max_concurrent_requests,
                "reasoning_parser": settings.reasoning_parser}

    @classmethod
    def describe_loading(cls) -> str | None:
        return "an OpenAI-compatible server (nothing loads here)"

    def __init__(self, model: str, *, base_url: str | None = None, api_key=None, max_concurrent_requests: int = 16,
                 reasoning_parser: str | None = None, max_retries: int = MAX_RETRIES,
                 timeout_s: float = REQUEST_TIMEOUT_S):
        import openai

        if not base_url:
            raise ServerError("--backend openai needs --base_url, the server's URL (e.g. http://127.0.0.1:8000/v1).")
        self.model = model
        self.base_url = base_url
        self.max_concurrent_requests = max(1, int(max_concurrent_requests))
        self.reasoning_parser = reasoning_parser  # the server's own; recorded, not sent
        self.notes = []
        self.tokenizer = None
        self._api_key = api_key
        self.client = openai.OpenAI(base_url=base_url, api_key=_secret(api_key), max_retries=max_retries,
                                    timeout=timeout_s)
        entry = self._model_entry()
        self.is_vllm = _extra(entry, "owned_by") == "vllm" or getattr(entry, "owned_by", None) == "vllm"
        context = _extra(entry, "max_model_len")
        self.max_context_tokens = int(context) if context and self._can_tokenize() else None
        if context and self.max_context_tokens is None:
            self.notes.append("the server counts no prompt tokens (/tokenize): prompts are not checked against its "
                              f"context of {int(context):,} tokens")

    # -- the server -----------------------------------------------------------------------------------------------
    def _model_entry(self):
        """The server's /v1/models entry for ``model``; a ServerError (one line) when it is unreachable or serves
        other models."""
        import openai

        try:
            served = list(self.client.models.list())
        except openai.APIError as error:
            raise ServerError(f"the server at {self.base_url} did not list its models ({_error_line(error)}).") from None
        names = [entry.id for entry in served]
        for entry in served:
            if entry.id == self.model:
                return entry
        raise ServerError(f"the server at {self.base_url} does not serve {self.model!r}; it serves "
                          f"{', '.join(map(repr, names)) or 'no model'} (the teacher's is --teacher_model, a student's --served_model_name).")

    def _post_root(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            _root_url(self.base_url) + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {_secret(self._api_key)}"})
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - the user's own server URL
            return json.loads(response.read())

    def _can_tokenize(self) -> bool:
        try:
            self._post_root("/tokenize", {"model": self.model, "prompt": "a"})
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return True

    # -- the Engine protocol --------------------------------------------------------------------------------------
    def describe(self) -> str:
        return f"{self.model} served at {self.base_url}"

    def close(self) -> None:
        self.client.close()

    def count_prompt_tokens(self, chat: list[dict], params: GenerationParams) -> int:
        """The templated prompt's tokens as the server counts them (vLLM's /tokenize with the chat)."""
        try:
            answer = self._post_root("/tokenize", {"model": self.model, "messages": chat,
                                                   "add_generation_prompt": True,
                                                   **({"chat_template_kwargs": params.chat_template_kwargs}
                                                      if params.chat_template_kwargs else {})})
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise ServerError(f"the server at {self.base_url} did not count a prompt's tokens "
                              f"({_error_line(error)}).") from None
        return int(answer["count"])

    def request(self, chat: list[dict], params: GenerationParams, seed: int | None) -> dict:
        """The keyword arguments of one ``chat.completions.create`` call."""
        if params.answer_labels and not self.is_vllm:
            raise ServerError(f"a constrained answer needs vLLM's structured outputs; the server at {self.base_url} "
                              "is not vLLM. Pass --constrained_answer off.")
        kwargs: dict = {"model": self.model, "messages": chat, "max_tokens": params.max_tokens,
                        "temperature": params.temperature, "top_p": params.top_p,
                        "logprobs": True, "top_logprobs": TOP_LOGPROBS}
        if seed is not None:
            kwargs["seed"] = seed
        extra: dict = {}
        if self.is_vllm:
            extra["top_k"] = params.top_k if params.top_k > 0 else -1  # -1: off, not the model's generation_config
            if params.min_tokens:
                extra.update(min_tokens=params.min_tokens, ignore_eos=True)
            if params.answer_labels:
                extra["structured_outputs"] = {"choice": [params.answer_prefix + label
                                                          for label in params.answer_labels]}
            if params.chat_template_kwargs:
                extra["chat_template_kwargs"] = dict(params.chat_template_kwargs)
        elif params.top_k > 0:
            raise ServerError(f"--top_k is vLLM's; the server at {self.base_url} is not vLLM. Drop --top_k.")
        if extra:
            kwargs["extra_body"] = extra
        return kwargs

    def _one(self, chat: list[dict], params: GenerationParams, seed: int | None) -> Generation:
        started = time.perf_counter()
        response = self.client.chat.completions.create(**self.request(chat, params, seed))
        choice = response.choices[0]
        message = choice.message
        reasoning = _extra(message, "reasoning")
        if reasoning is None:
            reasoning = _extra(message, "reasoning_content")
        text, thought = reply_text(message.content, reasoning)
        usage = response.usage
        details = getattr(usage, "prompt_tokens_details", None) if usage else None
        probabilities = None
        labels = params.answer_labels or self._labels_of(params)
        if labels and choice.logprobs is not None and choice.logprobs.content:
            probabilities = label_probabilities_from_logprobs(choice.logprobs.content, params.answer_prefix, labels)
        return Generation(
            text=text,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            finish_reason=choice.finish_reason or "unfinished",
            latency_s=time.perf_counter() - started,
            reasoning=thought,
            cached_prompt_tokens=getattr(details, "cached_tokens", None) if details else None,
            label_probabilities=probabilities,
        )

    @staticmethod
    def _labels_of(params: GenerationParams) -> tuple[str, ...] | None:
        """The labels of a free answer, where the task's parser knows them (``Task.parse`` is a bound method)."""
        task = getattr(params.answer_parser, "__self__", None)
        labels = getattr(task, "labels", None)
        return tuple(labels) if labels else None

    def generate(self, chats: list[list[dict]], params: GenerationParams,
                 on_batch: BatchCallback | None = None) -> list[Generation]:
        """One request per chat, ``max_concurrent_requests`` in flight; ``on_batch([i], [g])`` as each finishes.
        A request that fails after the client's retries cancels the rest and raises ``ServerError``."""
        import openai

        if not chats:
            return []
        seeds = params.request_seeds
        if seeds is not None and len(seeds) != len(chats):
            raise ValueError(f"request_seeds has {len(seeds)} seeds for {len(chats)} chats.")
        for chat in chats[:1]:
            self.request(chat, params, None)  # refusals (a constraint on another server) before any request
        results: list[Generation | None] = [None] * len(chats)
        pool = concurrent.futures.ThreadPoolExecutor(self.max_concurrent_requests, thread_name_prefix="openai")
        futures = {}
        try:
            for index, chat in enumerate(chats):
                seed = seeds[index] if seeds is not None else params.seed
                futures[pool.submit(self._one, chat, params, seed)] = index
            pending = set(futures)
            while pending:
                done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in sorted(done, key=futures.__getitem__):
                    index = futures[future]
                    error = future.exception()
                    if error is not None:
                        finished = sum(result is not None for result in results)
                        if isinstance(error, openai.APIConnectionError):
                            why = "stopped answering"
                        elif isinstance(error, openai.APIStatusError):
                            why = f"refused a request with HTTP {error.status_code}"
                        else:
                            raise error
                        raise ServerError(
                            f"the server at {self.base_url} {why} ({_error_line(error)}) after {finished} of "
                            f"{len(chats)} requests of this pass had finished (the client retried "
                            f"{self.client.max_retries} times); what finished is saved.") from None
                    results[index] = future.result()
                    if on_batch is not None:
                        on_batch([index], [results[index]])
        finally:
            for future in futures:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
        return results

    def classify(self, chats: list[list[dict]], labels: tuple[str, ...],
                 on_batch: ScoresCallback | None = None) -> list[LabelScores]:
        """The served student as a classifier: ``engines.openai_classify`` (one pass per chat, the labels'
        log-probabilities through the server)."""
        from . import openai_classify

        return openai_classify.classify(self, chats, labels, on_batch)
