"""The engine flags every script that builds an engine shares (create_data.py, evaluate.py, benchmark.py,
predict.py): a stage's config inherits ``EngineFlags``, and ``engine_flag_settings`` checks them against the chosen
backend and turns them into ``EngineSettings`` fields, before anything loads.

``--vllm_engine_kwargs '{"cpu_offload_gb": 8}'`` passes any other vLLM engine argument through. Its keys are checked
against ``vllm.engine.arg_utils.EngineArgs`` (an unknown key names the closest valid ones); a key that has a flag of
its own is refused, naming the flag, so that one setting is never given twice.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import sys
from dataclasses import dataclass

from ..cli import flag, given_flags, misplaced_flags_line
from ..preflight import PreflightError

DTYPES = ("auto", "bfloat16", "float16", "float32")
VLLM = "vllm"
# Engine arguments the project sets from other inputs than a flag of the same name.
SET_BY_THE_PROJECT = {"model": "the model flag (--teacher_model / --base_model / --model_path)",
                      "tokenizer": "the model flag (the model's own tokenizer)",
                      "enable_lora": "the adapter (--model_path)", "max_lora_rank": "the adapter (--model_path)",
                      "max_loras": "the adapter (--model_path)"}
# Flags that only vLLM reads; given with another backend they are refused.
VLLM_ONLY = ("gpu_memory_utilization", "max_model_len", "quantization", "enforce_eager", "vllm_engine_kwargs")
# The backend of a model behind an OpenAI-compatible server, and the flags only it reads.
SERVED = "openai"
SERVED_ONLY = ("base_url", "api_key", "max_concurrent_requests")
API_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_MAX_CONCURRENT_REQUESTS = 16


@dataclass(frozen=True)
class EngineFlags:
    """Model-loading flags of the engine (vLLM first; --dtype and --trust_remote_code apply to transformers too)."""

    dtype: str = flag(
        "auto", "Weights dtype of the engine: auto = the project's choice (vLLM: the model's own, float32 on vLLM's "
                "CPU backend; transformers: bfloat16 on GPUs that support it, else float32).", group="engine",
        choices=list(DTYPES))
    quantization: str | None = flag(
        None, "vLLM: quantization method of the weights (e.g. fp8, awq, gptq, bitsandbytes); default: what the "
              "model's config names, else none.", group="engine")
    enforce_eager: bool = flag(
        False, "vLLM: run the model eagerly, without CUDA graphs or torch.compile (starts faster, uses less memory, "
               "generates slower; always on vLLM's CPU backend).", group="engine")
    trust_remote_code: bool = flag(
        False, "Run the Python code of the model's repository (models transformers does not know yet).",
        group="engine")
    gpu_memory_utilization: float = flag(0.9, "vLLM share of GPU memory.", group="engine")
    max_model_len: int | None = flag(
        None, "vLLM context length (default: the student's training --max_length from its run record).",
        group="engine")
    vllm_engine_kwargs: dict | str | None = flag(
        None, "More vLLM engine arguments, as a JSON object, e.g. '{\"cpu_offload_gb\": 8, \"kv_cache_dtype\": "
              "\"fp8\"}' (a mapping under --config). Checked against vLLM's EngineArgs before anything loads; a "
              "key that has its own flag (--dtype, --max_model_len ...) is refused.", group="engine")


class ApiKey(str):
    """An API key that does not show: its text is a placeholder (so ``str``, ``repr``, ``dataclasses.asdict``, JSON
    and wandb's config write that), ``.secret`` is the key. Copies are the same object, and it does not pickle."""

    PLACEHOLDER = "<hidden>"

    def __new__(cls, secret: str):
        key = super().__new__(cls, cls.PLACEHOLDER)
        key._secret = secret.secret if isinstance(secret, ApiKey) else str(secret)
        return key

    @property
    def secret(self) -> str:
        return self._secret

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        raise TypeError("an API key is not pickled")

    def __reduce_ex__(self, protocol):
        raise TypeError("an API key is not pickled")


def hide_in_argv(flag_names: tuple[str, ...], argv: list[str] | None = None) -> None:
    """Replace the value of each of ``flag_names`` (``--api_key KEY``, ``--api-key=KEY``) in ``argv`` (default
    ``sys.argv``) by the placeholder, in place: wandb records the command line of a run."""
    argv = sys.argv if argv is None else argv
    spellings = {spelling for name in flag_names for spelling in (f"--{name}", f"--{name.replace('_', '-')}")}
    for position, item in enumerate(argv):
        if item in spellings and position + 1 < len(argv):
            argv[position + 1] = ApiKey.PLACEHOLDER
        elif "=" in item and item.split("=", 1)[0] in spellings:
            argv[position] = f"{item.split('=', 1)[0]}={ApiKey.PLACEHOLDER}"


@dataclass(frozen=True)
class ServerFlags:
    """A model behind an OpenAI-compatible server (``--backend openai``): where it is, its key, how many requests
    run at once. A script whose config inherits these can label or classify through ``vllm serve`` or a hosted
    API."""

    base_url: str | None = flag(
        None, "--backend openai: the server's OpenAI-compatible URL, e.g. http://127.0.0.1:8000/v1 (`vllm serve`) "
              "or a hosted API's.", group="engine")
    api_key: str | None = flag(
        None, f"--backend openai: the server's API key (default: the {API_KEY_ENV} environment variable; a server "
              "that checks none takes any). Never written to a file, a log, a run record or wandb.", group="engine")
    max_concurrent_requests: int = flag(
        DEFAULT_MAX_CONCURRENT_REQUESTS, "--backend openai: most requests in flight at once (the server batches "
                                         "them).", group="engine")

    def __post_init__(self):
        if self.api_key is not None and not isinstance(self.api_key, ApiKey):
            object.__setattr__(self, "api_key", ApiKey(self.api_key))
            hide_in_argv(("api_key",))
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()


def resolve_api_key(given) -> ApiKey | None:
    """--api_key, else $OPENAI_API_KEY, as an ``ApiKey`` (None when neither is set)."""
    if given is not None:
        return given if isinstance(given, ApiKey) else ApiKey(given)
    from_env = os.environ.get(API_KEY_ENV)
    return ApiKey(from_env) if from_env else None


def server_settings(config, backend: str) -> dict:
    """The ``EngineSettings`` fields of ``ServerFlags`` for ``backend``: --base_url is required by the served
    backend, and the three flags are refused with another one (a ``PreflightError``, one line)."""
    served = isinstance(config, ServerFlags)
    if backend != SERVED:
        given = given_flags(config) if served else frozenset()
        wrong = [name for name in SERVED_ONLY if name in given]
        if wrong:
            raise PreflightError(misplaced_flags_line(
                wrong, f"--backend {SERVED} only (a model behind a server); the backend is {backend}",
                f"pass --backend {SERVED}"))
        return {}
    if not served:
        raise PreflightError(f"--backend {SERVED} is not available here: this script has no --base_url.")
    if not config.base_url:
        raise PreflightError(f"--backend {SERVED} needs --base_url, the server's URL (e.g. http://127.0.0.1:8000/v1 "
                             "for `vllm serve`).")
    if config.max_concurrent_requests < 1:
        raise PreflightError(f"--max_concurrent_requests must be at least 1, got {config.max_concurrent_requests}.")
    return {"base_url": config.base_url, "api_key": resolve_api_key(config.api_key),
            "max_concurrent_requests": config.max_concurrent_requests}


def engine_kwargs_dict(value) -> dict:
    """--vllm_engine_kwargs as a dict: a mapping as it is (from --config), a JSON object string, or nothing."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return dict(value)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise PreflightError(f"--vllm_engine_kwargs must be a JSON object such as '{{\"cpu_offload_gb\": 8}}'; "
                             f"{value!r} is not JSON ({error.msg}).") from None
    if not isinstance(parsed, dict):
        raise PreflightError(f"--vllm_engine_kwargs must be a JSON object such as '{{\"cpu_offload_gb\": 8}}', got "
                             f"{value!r}.")
    return parsed


def vllm_engine_arg_names() -> set[str]:
    """The fields of vLLM's ``EngineArgs`` (what ``vllm.LLM(**kwargs)`` accepts); vLLM must be importable."""
    from vllm.engine.arg_utils import EngineArgs

    return {field.name for field in dataclasses.fields(EngineArgs)}


def check_vllm_engine_kwargs(kwargs: dict, config) -> None:
    """Each key a field of vLLM's EngineArgs, and none a setting that has its own flag here."""
    known = vllm_engine_arg_names()
    flags = {field.name for field in dataclasses.fields(config)} if dataclasses.is_dataclass(config) else set()
    for key in kwargs:
        if key in SET_BY_THE_PROJECT:
            raise PreflightError(f"--vllm_engine_kwargs: {key!r} is set by {SET_BY_THE_PROJECT[key]}; drop it.")
        if key not in known:
            closest = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
            hint = f"; closest: {', '.join(closest)}" if closest else ""
            raise PreflightError(f"--vllm_engine_kwargs: vLLM's EngineArgs has no {key!r}{hint}.")
        if key in flags:
            raise PreflightError(f"--vllm_engine_kwargs: {key!r} has its own flag; pass --{key} instead.")


def engine_flag_settings(config, backend: str) -> dict:
    """``EngineSettings`` fields from ``config``'s engine flags, checked for ``backend`` first (a ``PreflightError``,
    one line): vLLM-only flags with another backend are refused, --vllm_engine_kwargs is checked against vLLM; the
    ``ServerFlags`` of a config that has them are checked and passed on too (``server_settings``)."""
    served = server_settings(config, backend)
    if not isinstance(config, EngineFlags):
        return served
    kwargs = engine_kwargs_dict(config.vllm_engine_kwargs)
    if backend != VLLM:
        given = given_flags(config)
        wrong = [name for name in VLLM_ONLY if name in given and (name != "vllm_engine_kwargs" or kwargs)]
        if wrong:
            raise PreflightError(misplaced_flags_line(wrong, f"the vLLM backend only; the backend is {backend}",
                                                      "pass --backend vllm"))
    elif kwargs:
        check_vllm_engine_kwargs(kwargs, config)
    return {"dtype": None if config.dtype == "auto" else config.dtype, "quantization": config.quantization,
            "enforce_eager": config.enforce_eager, "trust_remote_code": config.trust_remote_code,
            "engine_kwargs": kwargs, **served}


def student_engine_options(config, backend: str) -> dict:
    """What ``student.engine.build_student_engine`` takes from the engine flags of evaluate.py or predict.py: the
    loading flags (checked as ``engine_flag_settings`` checks them), the memory share and the context length."""
    options = engine_flag_settings(config, backend)
    if isinstance(config, EngineFlags):
        options["gpu_memory_utilization"] = config.gpu_memory_utilization
        if config.max_model_len is not None:
            options["max_model_len"] = config.max_model_len
    return options
