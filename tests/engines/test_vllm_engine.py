"""The vLLM engine against the real vllm 0.33 package, without a GPU.

Real classes throughout: ``LLM.__init__`` runs for real and only ``LLMEngine.from_engine_args`` (where the GPU
work starts) is replaced, to capture the ``EngineArgs``; ``SamplingParams``, ``StructuredOutputsParams``,
``LoRARequest``, ``RequestOutput`` and ``CompletionOutput`` are built with their real constructors. In the
``generate`` tests the ``LLM`` object is replaced by a stand-in whose ``chat`` checks its call against the real
``LLM.chat`` signature and returns real ``RequestOutput`` objects.
"""

from __future__ import annotations

import inspect
import math
import re

import pytest

vllm = pytest.importorskip("vllm")

from vllm.config.lora import LoRAConfig  # noqa: E402
from vllm.engine.arg_utils import EngineArgs  # noqa: E402
from vllm.logprobs import Logprob  # noqa: E402
from vllm.outputs import CompletionOutput, RequestOutput  # noqa: E402
from vllm.reasoning import ReasoningParserManager  # noqa: E402
from vllm.sampling_params import SamplingParams  # noqa: E402
from vllm.v1.engine.llm_engine import LLMEngine  # noqa: E402
from vllm.v1.structured_output.backend_xgrammar import validate_xgrammar_grammar  # noqa: E402

from prompt_distill.engines.base import GenerationParams  # noqa: E402
from prompt_distill.engines.vllm_engine import (  # noqa: E402
    VLLMEngine,
    answer_regex,
    build_llm_kwargs,
    build_sampling_params,
    count_chat_tokens,
    prompt_opens_thought,
    render_prompt,
    split_thought,
    to_generation,
)
from prompt_distill.engines.vllm_lora import AdapterNotServable  # noqa: E402
from prompt_distill.task import UNPARSEABLE, language_task  # noqa: E402
from tests.vllm_tiny_models import (  # noqa: E402
    CHATML,
    CHATML_THINKING,
    EngineArgsCaptured,
    build_tiny_qwen3_moe,
    build_tokenizer,
    save_project_adapter,
    stop_at_engine_construction,
)

# The GPU decisions; the CPU backend's own are tested with cpu_platform (and for real in tests/vllm_cpu/).
pytestmark = [pytest.mark.vllm, pytest.mark.usefixtures("gpu_platform")]

TEACHER = language_task()
LABELS = TEACHER.labels


# -- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def attention_adapter_dir(tiny_moe_dir, tmp_path_factory):
    return save_project_adapter(tiny_moe_dir, tmp_path_factory.mktemp("adapter-attn"), r=16, expert_r=0)


@pytest.fixture
def engine_args_of(monkeypatch):
    """Build a real VLLMEngine; stop where LLM.__init__ hands its EngineArgs to the engine and return them."""
    stop_at_engine_construction(monkeypatch)

    def run(**kwargs) -> EngineArgs:
        with pytest.raises(EngineArgsCaptured) as caught:
            VLLMEngine(**kwargs)
        return caught.value.engine_args

    return run


def request_output(text, *, completion_tokens=5, prompt_tokens=120, finish_reason="stop", cached=None,
                   request_id="0"):
    completion = CompletionOutput(
        index=0,
        text=text,
        token_ids=list(range(completion_tokens)),
        cumulative_logprob=None,
        logprobs=None,
        finish_reason=finish_reason,
        stop_reason=None,
    )
    return RequestOutput(
        request_id=request_id,
        prompt=None,
        prompt_token_ids=list(range(prompt_tokens)),
        prompt_logprobs=None,
        outputs=[completion],
        finished=True,
        num_cached_tokens=cached,
    )


# Realistic Qwen3-30B-A3B-Thinking-2507 replies: the template already wrote "<think>\n" into the prompt.
THOUGHT_DE = (
    'Okay, let\'s see. The user wants me to classify "Wie spät ist es?". "Wie" and "spät" with the umlaut are '
    "German; the rules say German is de, so that is clear.\n"
)
COMPLETE_DE = THOUGHT_DE + "</think>\n\nFinal Answer: de"
# Cut by max_tokens while weighing options: a label appears, but no answer was committed.
TRUNCATED = (
    'Hmm, "Bom dia" could be Portuguese, which is not in the list, so maybe ot. But wait, rule 4 says a '
    "Romance language close to Spanish... Final Answer: es would be wrong if it is Portuguese. Let me re-read"
)
# The thought drafts one answer and then revises it; only the one after </think> counts.
REVISED = (
    "First guess: Final Answer: es. But 'obrigado' is Portuguese, not Spanish, and Portuguese is not in the "
    "label list, so the rules say ot.\n</think>\n\nFinal Answer: ot"
)


# -- engine construction: the captured EngineArgs ----------------------------------------------------------
def test_teacher_engine_args(tiny_moe_dir, engine_args_of):
    args = engine_args_of(
        model=str(tiny_moe_dir),
        tensor_parallel_size=4,
        seed=7,
        reasoning_parser="qwen3",
        max_model_len=3072,
        gpu_memory_utilization=0.85,
    )
    assert isinstance(args, EngineArgs)
    assert (args.model, args.tensor_parallel_size, args.seed) == (str(tiny_moe_dir), 4, 7)
    assert (args.max_model_len, args.gpu_memory_utilization) == (3072, 0.85)
    assert args.reasoning_parser == "qwen3"
    # Where vLLM reads it: the structured-output config decides when a constraint starts binding.
    assert args.create_structured_outputs_config().reasoning_parser == "qwen3"
    assert ReasoningParserManager.get_reasoning_parser("qwen3") is not None
    assert args.enable_lora is False
    # Prefix caching is not touched, and vLLM's default for this model is "on".
    assert args.enable_prefix_caching is None
    model_config = args.create_model_config()
    assert model_config.is_prefix_caching_supported
    assert model_config.max_model_len == 3072


def test_misspelled_engine_argument_fails(tiny_moe_dir, engine_args_of):
    with pytest.raises(TypeError, match="enable_prefix_cachin"):
        engine_args_of(model=str(tiny_moe_dir), enable_prefix_cachin=True)


def test_capture_catches_a_misspelled_key_from_build_llm_kwargs(tiny_moe_dir, monkeypatch):
    """The harness itself: a wrong key produced by build_llm_kwargs reaches EngineArgs and fails there."""
    from vllm.v1.engine.llm_engine import LLMEngine

    monkeypatch.setattr(LLMEngine, "from_engine_args", staticmethod(lambda **_: pytest.fail("not reached")))
    kwargs = build_llm_kwargs(str(tiny_moe_dir), reasoning_parser="qwen3")
    kwargs["reasoning_parsr"] = kwargs.pop("reasoning_parser")
    with pytest.raises(TypeError, match="reasoning_parsr"):
        vllm.LLM(**kwargs)


def test_moe_student_engine_args(tiny_moe_dir, moe_adapter_dir, engine_args_of):
    args = engine_args_of(model=str(tiny_moe_dir), adapter_path=str(moe_adapter_dir), max_model_len=256)
    assert args.enable_lora is True
    assert args.max_lora_rank == 32  # attention r=32, experts r=8
    assert args.max_loras == 1
    assert args.enable_mixed_moe_lora_format is True
    assert not args.reasoning_parser
    # vLLM's own LoRA config checks for this model: the rank is allowed and Qwen3-MoE supports LoRA.
    lora_config = LoRAConfig(
        max_lora_rank=args.max_lora_rank,
        max_loras=args.max_loras,
        enable_mixed_moe_lora_format=args.enable_mixed_moe_lora_format,
    )
    lora_config.verify_with_model_config(args.create_model_config())


def test_attention_only_adapter_gets_no_moe_flags(tiny_moe_dir, attention_adapter_dir, engine_args_of):
    args = engine_args_of(model=str(tiny_moe_dir), adapter_path=str(attention_adapter_dir), max_model_len=256)
    assert args.enable_lora is True
    assert args.max_lora_rank == 16
    assert args.enable_mixed_moe_lora_format is False


def test_engine_kwargs_override_and_pass_through():
    kwargs = build_llm_kwargs("m", max_model_len=None, enforce_eager=True, gpu_memory_utilization=0.5)
    assert kwargs == {"model": "m", "tensor_parallel_size": 1, "seed": 0, "gpu_memory_utilization": 0.5,
                      "enforce_eager": True}  # fmt: skip


# -- vLLM's CPU backend (the vllm-cpu build) ------------------------------------------------------------------
def test_on_cpu_the_engine_runs_eager_unchunked_with_a_bounded_kv_cache(tiny_moe_dir, engine_args_of, cpu_platform):
    args = engine_args_of(model=str(tiny_moe_dir), max_model_len=6000)
    assert args.enforce_eager is True
    assert args.max_num_batched_tokens == 6000  # a 6,000-token prompt is prefilled in one step, never chunked
    assert args.enable_chunked_prefill is False  # nor is a second prompt split to fill the step
    assert args.kv_cache_memory_bytes == 4 * 2**30
    assert args.dtype == "float32"  # as the transformers engine on a CPU
    # Without max_model_len the model's context bounds the prompt; a setting given by the caller wins.
    args = engine_args_of(model=str(tiny_moe_dir), enforce_eager=False)
    assert (args.max_num_batched_tokens, args.enforce_eager) == (4096, False)


def test_on_gpu_no_cpu_defaults_are_added(tiny_moe_dir, engine_args_of):
    args = engine_args_of(model=str(tiny_moe_dir), max_model_len=6000)
    assert (args.enforce_eager, args.kv_cache_memory_bytes) == (False, None)


def test_on_cpu_an_adapter_on_a_moe_model_is_refused_before_loading(tiny_moe_dir, attention_adapter_dir,
                                                                    engine_args_of, cpu_platform):
    # Even an attention-only adapter: enabling LoRA wraps the experts, and MoE LoRA needs the Triton kernel.
    with pytest.raises(AdapterNotServable, match="Triton"):
        engine_args_of(model=str(tiny_moe_dir), adapter_path=str(attention_adapter_dir))


def test_the_embedded_alias_is_served_from_its_local_folder(engine_args_of):
    from prompt_distill.models import materialize_embedded

    args = engine_args_of(model="smollm2-135m-instruct", max_model_len=512)
    assert args.model == str(materialize_embedded("smollm2-135m-instruct"))


def test_a_model_without_think_tokens_gets_no_reasoning_parser(tiny_moe_dir, tmp_path, engine_args_of):
    # The qwen3 parser would wait for a </think> that this vocabulary cannot write, and the constrained answer
    # (applied after it) would never bind: create_data's default parser is dropped for such a model.
    thinking = engine_args_of(model=str(tiny_moe_dir), reasoning_parser="qwen3")
    assert thinking.reasoning_parser == "qwen3"
    plain = tmp_path / "plain"
    build_tiny_qwen3_moe(plain)
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(["<|im_start|>", "<|im_end|>", "[UNK]", "hello"])}
    PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]")),
                            unk_token="[UNK]", eos_token="<|im_end|>").save_pretrained(plain)
    assert not engine_args_of(model=str(plain), reasoning_parser="qwen3").reasoning_parser


# -- sampling parameters ---------------------------------------------------------------------------------
def test_teacher_sampling_params_are_explicit_and_constrain_after_the_thought():
    params = GenerationParams(max_tokens=6000, temperature=0.15, top_p=0.95, seed=3, answer_labels=LABELS)
    sampling = build_sampling_params(params, after_thought=True)
    assert isinstance(sampling, SamplingParams)
    assert (sampling.max_tokens, sampling.temperature, sampling.top_p, sampling.top_k, sampling.seed) == (
        6000, 0.15, 0.95, 0, 3)  # fmt: skip
    assert (sampling.min_tokens, sampling.ignore_eos) == (0, False)
    regex = sampling.structured_outputs.regex
    assert re.fullmatch(regex, "\n\nFinal Answer: de")
    assert re.fullmatch(regex, "Final Answer: ot")
    assert not re.fullmatch(regex, "Final Answer: pt")
    assert not re.fullmatch(regex, "Final Answer: de because")
    validate_xgrammar_grammar(sampling)  # vLLM's own check that xgrammar compiles the pattern


def test_student_sampling_params_greedy_label_only():
    params = GenerationParams(max_tokens=8, answer_labels=("en", "c++", "zh"), answer_prefix="")
    sampling = build_sampling_params(params, after_thought=False)
    assert sampling.temperature == 0.0 and sampling.max_tokens == 8
    regex = sampling.structured_outputs.regex
    assert re.fullmatch(regex, "c++") and not re.fullmatch(regex, "cc") and not re.fullmatch(regex, "\nen")
    validate_xgrammar_grammar(sampling)


def test_unconstrained_and_forced_length():
    sampling = build_sampling_params(GenerationParams(max_tokens=900, min_tokens=900), after_thought=False)
    assert sampling.structured_outputs is None
    assert (sampling.min_tokens, sampling.max_tokens, sampling.ignore_eos) == (900, 900, True)


def test_answer_regex_escapes_prefix_and_labels():
    assert answer_regex(["a.b"], "Label? ", after_thought=False) == r"Label\? (a\.b)"  # a space stays a space


# -- outputs -> Generation ---------------------------------------------------------------------------------
def test_complete_thought_without_opening_tag():
    generation = to_generation(
        request_output(COMPLETE_DE, completion_tokens=57, prompt_tokens=2300, cached=2288),
        prompt_opened_thought=True,
        latency_s=1.5,
    )
    assert generation.text == "<think>\n" + COMPLETE_DE
    assert generation.reasoning == THOUGHT_DE.strip()
    assert TEACHER.parse(generation.text) == "de"
    assert (generation.prompt_tokens, generation.completion_tokens, generation.cached_prompt_tokens) == (
        2300, 57, 2288)  # fmt: skip
    assert (generation.finish_reason, generation.latency_s) == ("stop", 1.5)


def test_thought_truncated_at_max_tokens_is_unparseable():
    generation = to_generation(
        request_output(TRUNCATED, finish_reason="length"), prompt_opened_thought=True, latency_s=0.1
    )
    assert generation.finish_reason == "length"
    assert generation.reasoning == TRUNCATED.strip()
    # The raw text alone would be read as "es" (a label the model was only considering).
    assert TEACHER.parse(TRUNCATED) == "es"
    assert TEACHER.parse(generation.text) == UNPARSEABLE


def test_answer_drafted_inside_the_thought_does_not_count():
    generation = to_generation(request_output(REVISED), prompt_opened_thought=True, latency_s=0.1)
    assert TEACHER.parse(generation.text) == "ot"
    assert "Final Answer: es" in generation.reasoning


def test_model_that_writes_its_own_opening_tag():
    raw = "<think>\nShort.\n</think>\n\nFinal Answer: en"
    text, reasoning = split_thought(raw, prompt_opened_thought=False)
    assert (text, reasoning) == (raw, "Short.")
    assert split_thought(raw, prompt_opened_thought=True) == (raw, "Short.")  # never a second <think>


def test_student_output_has_no_reasoning():
    generation = to_generation(request_output("de", completion_tokens=2), prompt_opened_thought=False, latency_s=0.1)
    assert (generation.text, generation.reasoning, generation.cached_prompt_tokens) == ("de", None, None)
    assert TEACHER.parse(generation.text) == "de"


def test_prompt_opens_thought_on_real_templates():
    chat = TEACHER.teacher_messages("hello world")
    params = GenerationParams(max_tokens=4)
    assert prompt_opens_thought(render_prompt(build_tokenizer(CHATML_THINKING), chat, params))
    assert not prompt_opens_thought(render_prompt(build_tokenizer(CHATML), chat, params))
    # Hybrid Qwen3 with enable_thinking=False writes an empty, closed thought into the prompt.
    assert not prompt_opens_thought("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_count_prompt_tokens_matches_the_template():
    tokenizer = build_tokenizer(CHATML)
    params = GenerationParams(max_tokens=4)
    # <|im_start|> user hello world <|im_end|> <|im_start|> assistant
    assert count_chat_tokens(tokenizer, [{"role": "user", "content": "hello world"}], params) == 7
    with_rules = [{"role": "system", "content": "rules"}, {"role": "user", "content": "hello world"}]
    assert count_chat_tokens(tokenizer, with_rules, params) == 11


# -- generate(): the step loop, callbacks, what reaches vLLM's engine ---------------------------------------
class ScriptedModelConfig:
    max_model_len = 2048

    def try_get_generation_config(self) -> dict:
        return {"eos_token_id": 1}


class ScriptedStepEngine:
    """Stands in for vllm's LLMEngine where the GPU would run; each call is checked against the real signature.

    ``lengths[i]``: how many steps request i runs before it finishes (a long thought runs many steps).
    """

    real = LLMEngine

    def __init__(self, replies, lengths=None):
        self.replies, self.lengths = replies, lengths
        self.model_config = ScriptedModelConfig()
        self.running: dict[str, int] = {}
        self.added: list[tuple[str, object, SamplingParams, object]] = []
        self.aborted: list[str] = []
        self.max_running = 0

    def add_request(self, request_id, prompt, params, *args, **kwargs):
        inspect.signature(self.real.add_request).bind(self, request_id, prompt, params, *args, **kwargs)
        index = int(request_id.rsplit("-", 1)[1])
        self.added.append((request_id, prompt, params, kwargs.get("lora_request")))
        self.running[request_id] = self.lengths[index] if self.lengths else 1
        self.max_running = max(self.max_running, len(self.running))
        return request_id

    def step(self):
        inspect.signature(self.real.step).bind(self)
        outputs = []
        for request_id in list(self.running):
            self.running[request_id] -= 1
            if self.running[request_id] == 0:
                del self.running[request_id]
                text = self.replies[int(request_id.rsplit("-", 1)[1])]
                outputs.append(request_output(text, request_id=request_id))
        return outputs

    def abort_request(self, request_ids, *args, **kwargs):
        inspect.signature(self.real.abort_request).bind(self, request_ids, *args, **kwargs)
        self.aborted += request_ids
        for request_id in request_ids:
            self.running.pop(request_id, None)


class ScriptedLLM:
    """Stands in for vllm.LLM: the engine keywords must build real EngineArgs; requests go to ScriptedStepEngine."""

    def __init__(self, replies, chat_template, lengths=None, **llm_kwargs):
        EngineArgs(**llm_kwargs)  # the same keywords must build real EngineArgs
        self.tokenizer = build_tokenizer(chat_template)
        self.llm_engine = ScriptedStepEngine(replies, lengths)

    def get_tokenizer(self):
        return self.tokenizer


@pytest.fixture
def scripted_llm(monkeypatch):
    def install(replies, chat_template, lengths=None):
        made = []

        def factory(**llm_kwargs):
            made.append(ScriptedLLM(replies, chat_template, lengths, **llm_kwargs))
            return made[-1]

        monkeypatch.setattr(vllm, "LLM", factory)
        return made

    return install


def test_teacher_generate_reports_each_request_as_it_finishes(tiny_moe_dir, scripted_llm):
    replies = [COMPLETE_DE, TRUNCATED, REVISED, COMPLETE_DE, REVISED]
    made = scripted_llm(replies, CHATML_THINKING, lengths=[5, 1, 1, 1, 1])
    engine = VLLMEngine(str(tiny_moe_dir), reasoning_parser="qwen3", max_in_flight=2)
    chats = [TEACHER.teacher_messages(f"sentence {i}") for i in range(5)]
    reported = []
    params = GenerationParams(max_tokens=4000, temperature=0.15, answer_labels=LABELS)
    generations = engine.generate(chats, params, on_batch=lambda idx, gens: reported.append((idx, gens)))
    # Request 0 thinks for 5 steps; the other slot is refilled after each step, so 1-4 all finish before it.
    assert [idx for idx, _ in reported] == [[1], [2], [3], [4], [0]]
    assert sorted((i, g) for idx, gens in reported for i, g in zip(idx, gens, strict=True)) == list(
        enumerate(generations))  # fmt: skip
    assert [TEACHER.parse(g.text) for g in generations] == ["de", UNPARSEABLE, "ot", "de", "ot"]
    step_engine = made[0].llm_engine
    assert step_engine.max_running == 2
    request_id, prompt, sampling, lora_request = step_engine.added[0]
    assert lora_request is None
    assert prompt["prompt_token_ids"] == engine.tokenizer.encode(
        render_prompt(engine.tokenizer, chats[0], params), add_special_tokens=False)  # fmt: skip
    assert sampling.structured_outputs.regex.startswith(r"\n{0,2}Final Answer:")
    assert sampling.output_kind.name == "FINAL_ONLY"


def test_without_refill_a_slice_waits_for_its_longest_request(tiny_moe_dir, scripted_llm):
    made = scripted_llm(["de"] * 4, CHATML, lengths=[5, 1, 1, 1])
    engine = VLLMEngine(str(tiny_moe_dir), max_in_flight=2)
    engine.refill = False
    reported = []
    engine.generate([TEACHER.student_messages(str(i)) for i in range(4)], GenerationParams(max_tokens=4),
                    on_batch=lambda idx, gens: reported.extend(idx))
    assert reported == [1, 0, 2, 3]
    assert made[0].llm_engine.max_running == 2


def test_request_seeds_give_each_request_its_own_seed(tiny_moe_dir, scripted_llm):
    made = scripted_llm(["de", "en", "fr"], CHATML)
    engine = VLLMEngine(str(tiny_moe_dir))
    params = GenerationParams(max_tokens=4, temperature=0.15, seed=7, request_seeds=(11, 12, 13))
    engine.generate([TEACHER.student_messages(str(i)) for i in range(3)], params)
    assert [sampling.seed for _, _, sampling, _ in made[0].llm_engine.added] == [11, 12, 13]
    with pytest.raises(ValueError, match="3 seeds for 2 chats"):
        engine.generate([TEACHER.student_messages("a")] * 2, params)


def test_an_interrupted_generate_aborts_what_is_in_flight(tiny_moe_dir, scripted_llm):
    made = scripted_llm(["de"] * 3, CHATML, lengths=[1, 9, 9])

    def stop(indices, generations):
        raise KeyboardInterrupt

    engine = VLLMEngine(str(tiny_moe_dir))
    with pytest.raises(KeyboardInterrupt):
        engine.generate([TEACHER.student_messages(str(i)) for i in range(3)], GenerationParams(max_tokens=4),
                        on_batch=stop)
    step_engine = made[0].llm_engine
    assert sorted(step_engine.aborted) == sorted(request_id for request_id, *_ in step_engine.added[1:])
    assert step_engine.running == {}


def test_student_generate_sends_the_3d_lora_request(tiny_moe_dir, moe_adapter_dir, scripted_llm):
    made = scripted_llm(["de", "en"], CHATML)
    engine = VLLMEngine(str(tiny_moe_dir), adapter_path=str(moe_adapter_dir))
    params = GenerationParams(max_tokens=4, answer_labels=LABELS, answer_prefix="")
    generations = engine.generate([TEACHER.student_messages("a"), TEACHER.student_messages("b")], params)
    assert [g.text for g in generations] == ["de", "en"]
    request = made[0].llm_engine.added[0][3]
    assert request.is_3d_lora_weight is True and request.lora_path == str(moe_adapter_dir.resolve())
    assert engine.llm_kwargs["enable_mixed_moe_lora_format"] is True


def test_constrained_answer_on_a_thinking_prompt_needs_the_reasoning_parser(tiny_moe_dir, scripted_llm):
    scripted_llm([COMPLETE_DE], CHATML_THINKING)
    engine = VLLMEngine(str(tiny_moe_dir))
    with pytest.raises(ValueError, match="reasoning_parser"):
        engine.generate([TEACHER.teacher_messages("x")], GenerationParams(max_tokens=9, answer_labels=LABELS))


class ScoringStepEngine(ScriptedStepEngine):
    """Answers one-token label requests: log p(token | prompt) from a fixed table, for the ids the request asks."""

    def step(self):
        inspect.signature(self.real.step).bind(self)
        outputs = []
        for request_id, prompt, params, _ in self.added:
            if request_id in self.running:
                del self.running[request_id]
                ids = prompt["prompt_token_ids"]
                answered = {token: Logprob(fake_logprob(ids, token)) for token in params.logprob_token_ids}
                output = request_output("", request_id=request_id)
                output.outputs[0].logprobs = [answered]
                outputs.append(output)
        return outputs


def fake_logprob(context, token) -> float:
    return -((sum(i * t for i, t in enumerate(context, 1)) * 31 + token * 7) % 50) / 10


def test_classify_asks_for_the_label_tokens_and_adds_up_the_trie(tiny_moe_dir, scripted_llm, monkeypatch):
    """Labels whose tokens branch (``en de`` / ``en fr``) and end where another goes on (``en``): one root
    request, one follow-up per inner node; each label's log-probability is the sum over its tokens."""
    scripted_llm([], CHATML)
    engine = VLLMEngine(str(tiny_moe_dir), max_in_flight=2)
    engine.llm.llm_engine = ScoringStepEngine([])
    labels = ("de", "en de", "en fr", "en", "fr")
    chats = [TEACHER.student_messages(text) for text in ("hello world", "wie")]
    reported = []
    results = engine.classify(chats, labels, on_batch=lambda indices, _: reported.extend(indices))
    assert sorted(reported) == [0, 1]
    tokenizer = engine.tokenizer
    requests = engine.llm.llm_engine.added
    # Per chat: the root (what follows the prompt), then "en" (its children: " de", " fr", end of turn).
    assert len(requests) == 4
    assert all(params.max_tokens == 1 and params.temperature == 0 for _, _, params, _ in requests)
    for chat, scores in zip(chats, results, strict=True):
        prompt = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)
        prompt = list(prompt["input_ids"])
        logprobs = []
        for label in labels:
            tokens = tokenizer(label, add_special_tokens=False)["input_ids"]
            tokens += [tokenizer.eos_token_id] if label == "en" else []  # "en" is a token prefix of "en de"
            logprobs.append(sum(fake_logprob(prompt + tokens[:k], t) for k, t in enumerate(tokens)))
        expected = [math.exp(v) / sum(math.exp(w) for w in logprobs) for v in logprobs]
        assert list(scores.probabilities) == list(labels)
        assert list(scores.probabilities.values()) == pytest.approx(expected, abs=1e-12)
        assert scores.prompt_tokens == len(prompt)
