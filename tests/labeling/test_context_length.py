"""create_data.py sizes vLLM's context from its data (the longest templated prompt + max_tokens), instead of leaving
vLLM to take the model's whole context (262,144 tokens for the Qwen3 teacher), which one 80 GB GPU cannot hold."""

from types import SimpleNamespace

import pytest

import create_data
from prompt_distill import engines
from prompt_distill.data import iter_jsonl
from prompt_distill.engines import BackendChoice
from prompt_distill.engines.base import Generation
from prompt_distill.labeling import teacher_run
from prompt_distill.labeling.context_length import (
    ANSWER_ROOM,
    CONTEXT_MARGIN,
    THOUGHT_ROOM,
    ContextLength,
    ContextLengthError,
    PromptCheck,
    check_prompts,
    context_length_for,
    count_chat_tokens,
    model_context_limit,
    reply_room,
)
from prompt_distill.labeling.run import format_summary, run_labeling
from prompt_distill.labeling.run_files import RunFiles
from prompt_distill.task import TEACHER_USER_PREFIX, Task, language_task
from tests.labeling.test_labeling import ANSWERS, ScriptedEngine, make_config, training_pairs, write_input

TASK = language_task()
# Few characters but many tokens (Devanagari, CJK, emoji) next to long ASCII: the character count misleads.
TEXTS = ["Hello there", "नमस्ते, आप कैसे हैं? मैं ठीक हूँ।", "你好，今天天气怎么样？🙂🙂🙂", "Good morning to everyone in the room today",
         "Bonjour à tous"]


def exact_longest(tokenizer, texts):
    return max(count_chat_tokens(tokenizer, TASK.teacher_messages(text)) for text in texts)


def test_the_context_is_the_longest_templated_prompt_plus_max_tokens(smollm2_tokenizer):
    plan = context_length_for(smollm2_tokenizer, TASK, TEXTS, 4096)
    assert plan.prompt_tokens == exact_longest(smollm2_tokenizer, TEXTS)
    assert plan.max_model_len == plan.prompt_tokens + 4096 + CONTEXT_MARGIN
    assert plan.prompt_tokens > len(smollm2_tokenizer.encode(TASK.system_prompt))  # the whole prompt is counted
    assert "max_tokens 4,096" in plan.describe() and f"{plan.max_model_len:,}" in plan.describe()


def test_only_a_few_candidates_are_templated_yet_the_longest_is_found(smollm2_tokenizer):
    texts = [f"Sentence number {i}." for i in range(40)] + [TEXTS[1]]
    plan = context_length_for(smollm2_tokenizer, TASK, texts, 16, candidates=2)
    assert plan.prompt_tokens == exact_longest(smollm2_tokenizer, texts)
    assert plan.longest_index == 40


def run_create_data(tmp_path, monkeypatch, capsys, model_dir, *flags):
    (tmp_path / "in.txt").write_text("\n".join(ANSWERS) + "\n", encoding="utf-8")
    built = {}

    def make_engine(backend, model, **options):  # records what create_data would give vLLM
        built.update(options, backend=backend, model=model)
        return ScriptedEngine()

    monkeypatch.setattr(teacher_run, "choose_backend", lambda name, tensor_parallel_size: BackendChoice("vllm", "test"))
    monkeypatch.setattr(engines, "make_engine", make_engine)
    code = create_data.main(["--input_file", str(tmp_path / "in.txt"), "--output_file", str(tmp_path / "out.jsonl"),
                             "--model_name", str(model_dir), *flags])
    assert code == 0, capsys.readouterr().err
    return built, capsys.readouterr().out


def test_create_data_on_vllm_defaults_max_model_len_to_what_the_run_needs(tmp_path, monkeypatch, capsys, smollm2_dir,
                                                                           smollm2_tokenizer):
    built, out = run_create_data(tmp_path, monkeypatch, capsys, smollm2_dir, "--max_tokens", "1024")
    expected = context_length_for(smollm2_tokenizer, TASK, list(ANSWERS), 1024)
    assert built["max_model_len"] == expected.max_model_len < 8192  # not the model's whole context
    assert f"vLLM max_model_len {expected.max_model_len:,} = longest prompt" in out


def test_the_default_max_tokens_on_a_small_context_model_gets_the_models_context(tmp_path, monkeypatch, capsys,
                                                                                  smollm2_dir):
    built, out = run_create_data(tmp_path, monkeypatch, capsys, smollm2_dir)  # 4,096 tokens: more than SmolLM2 has
    assert built["max_model_len"] == 8192
    assert "vLLM max_model_len 8,192: the model's context" in out


@pytest.mark.parametrize("flags", [("--max_samples", "2"), ("--num_shards", "2", "--shard_index", "1")])
def test_the_context_is_sized_for_the_sentences_this_process_labels(tmp_path, monkeypatch, capsys, smollm2_dir,
                                                                     smollm2_tokenizer, flags):
    built, _ = run_create_data(tmp_path, monkeypatch, capsys, smollm2_dir, "--max_tokens", "100", *flags)
    texts = list(ANSWERS)
    selected = texts[:2] if flags[0] == "--max_samples" else texts[1::2]
    assert built["max_model_len"] == context_length_for(smollm2_tokenizer, TASK, selected, 100).max_model_len


def test_an_explicit_max_model_len_is_passed_unchanged(tmp_path, monkeypatch, capsys, smollm2_dir):
    built, out = run_create_data(tmp_path, monkeypatch, capsys, smollm2_dir, "--max_model_len", "12345")
    assert built["max_model_len"] == 12345
    assert "max_model_len 12,345 (--max_model_len)" in out


def test_a_run_that_needs_more_than_the_models_context_gets_the_models_context(smollm2_tokenizer, smollm2_dir):
    from transformers import AutoConfig

    limit = model_context_limit(AutoConfig.from_pretrained(smollm2_dir))
    assert limit == 8192  # SmolLM2: the 5,900-token prompt + 4,096 do not fit
    plan = context_length_for(smollm2_tokenizer, TASK, TEXTS, 4096, model_limit=limit)
    assert plan.max_model_len == 8192 and plan.needed > 8192
    assert "the model's context" in plan.describe()
    with pytest.raises(ValueError, match="no sentence's prompt fits the model's context of 1,000 tokens"):
        context_length_for(smollm2_tokenizer, TASK, TEXTS, 16, model_limit=1000)


def test_a_prompt_longer_than_the_models_context_is_left_out_of_the_sizing(smollm2_tokenizer):
    # 20,000 characters: a prompt of about 10,900 tokens, more than SmolLM2's 8,192 (issue 12 item 6).
    texts = TEXTS + ["word " * 4000]
    plan = context_length_for(smollm2_tokenizer, TASK, texts, 100, model_limit=8192)
    assert plan.too_long == 1 and plan.longest_index != len(texts) - 1
    assert plan.max_model_len == exact_longest(smollm2_tokenizer, TEXTS) + 100 + CONTEXT_MARGIN
    assert "1 longer prompts leave less than 100 tokens of the model's context" in plan.describe()


def test_the_reply_room_is_a_short_thought_or_the_answer():
    assert reply_room(4096) == THOUGHT_ROOM  # a thinking teacher: its thought comes before the answer
    assert reply_room(200) == 200
    assert reply_room(0) == ANSWER_ROOM  # scoring appends the answer prefix and a label to the prompt


class ContextEngine(ScriptedEngine):
    """The scripted engine with a context: a prompt counts one token per character of the user turn."""

    def __init__(self, max_context_tokens, **kwargs):
        super().__init__(**kwargs)
        self.max_context_tokens = max_context_tokens
        self.counted = []

    def count_prompt_tokens(self, chat, params):
        self.counted.append(chat[-1]["content"])
        return super().count_prompt_tokens(chat, params)


def long_input(tmp_path):
    long = "Привет " * 30  # 210 characters: over a 100-token context
    ANSWERS[long.strip()] = "ru"
    write_input(tmp_path / "in.txt", ["Hello there", long, "Guten Tag"])
    return long.strip()


def test_a_sentence_too_long_for_the_context_is_recorded_counted_and_never_generated(tmp_path):
    long = long_input(tmp_path)
    config = make_config(tmp_path, max_tokens=0)
    engine = ContextEngine(100)
    try:
        summary = run_labeling(config, TASK, lambda: engine, progress=False)
    finally:
        del ANSWERS[long]
    assert sorted(text for texts, _ in engine.calls for text in texts) == ["Guten Tag", "Hello there"]
    files = RunFiles.for_output(config.output_file)
    assert [text for text, _ in training_pairs(files.training)] == ["Hello there", "Guten Tag"]
    (record,) = [r for _, r in iter_jsonl(files.sidecar) if r["status"] == "too_long"]
    prefix_tokens = len(TEACHER_USER_PREFIX)
    assert (record["line"], record["prompt_tokens"]) == (2, prefix_tokens + len(long))
    assert (record["context_tokens"], record["reply_room"]) == (100, ANSWER_ROOM)
    assert summary.too_long_now == 1 and len(summary.too_long) == 1
    text = format_summary(summary)
    assert "1 too long for the context" in text and "Too long for the teacher's context" in text
    assert f"line 2: {record['prompt_tokens']} prompt tokens + 16 for the reply > context 100" in text
    # The short sentences are not counted exactly: a prompt's tokens are bounded by its bytes.
    assert engine.counted == [TEACHER_USER_PREFIX, TEACHER_USER_PREFIX + long]

    def no_engine():
        raise AssertionError("a too_long sentence is finished: a resume has nothing to do")

    resumed = run_labeling(config, TASK, no_engine, progress=False, context_tokens=lambda: 100)
    assert resumed.resumed == 3 and len(resumed.too_long) == 1


def test_a_too_long_sentence_is_redone_when_the_context_grew(tmp_path):
    long = long_input(tmp_path)
    config = make_config(tmp_path, max_tokens=0)
    try:
        run_labeling(config, TASK, lambda: ContextEngine(100), progress=False)
        bigger = ContextEngine(1000)
        summary = run_labeling(config, TASK, lambda: bigger, progress=False, context_tokens=lambda: 1000)
    finally:
        del ANSWERS[long]
    assert [texts for texts, _ in bigger.calls] == [[long]]
    assert summary.labelled_now == 1 and not summary.too_long
    files = RunFiles.for_output(config.output_file)
    assert [text for text, _ in training_pairs(files.training)] == ["Hello there", long, "Guten Tag"]


# A short teacher prompt, so that prompts of about 100 tokens can be built and counted with a real tokenizer.
SHORT_TASK = Task(labels=("en", "de"), system_prompt="Name the language.")
# SmolLM2 splits digits one token each, so this prompt has exactly as many tokens as the byte bound allows: a
# check that skips it on the bound without the reply room would never count it.
FITS_EXACTLY = "1" * 61  # 84 tokens: 84 + 16 for the reply = 100, the whole context
ONE_OVER = "1" * 62  # 85 tokens: 85 + 16 = 101
NINETY_FIVE = " ".join(["word"] * 72)  # 95 tokens: fits the context, but leaves 5 for the reply, not 16


class TokenizerEngine(ScriptedEngine):
    """Counts a prompt as the vLLM engine does (count_chat_tokens on a real tokenizer), with a 100-token context."""

    max_context_tokens = 100

    def __init__(self, tokenizer, **kwargs):
        super().__init__(**kwargs)
        self.tokenizer = tokenizer

    def count_prompt_tokens(self, chat, params):
        return count_chat_tokens(self.tokenizer, chat)

    def _reply(self, text):
        return Generation("Final Answer: en", 84, 4, "stop", 0.01)


def test_a_prompt_must_leave_room_for_the_reply_in_the_context(smollm2_tokenizer):
    """Issue 25 gap 2: a 95-token prompt in a 100-token context is too_long (max_tokens 0: 16 tokens of reply)."""
    engine = TokenizerEngine(smollm2_tokenizer)
    tokens = [count_chat_tokens(smollm2_tokenizer, SHORT_TASK.teacher_messages(text))
              for text in (FITS_EXACTLY, ONE_OVER, NINETY_FIVE)]
    assert tokens == [84, 85, 95]
    check = check_prompts(engine, SHORT_TASK, {0: FITS_EXACTLY, 1: ONE_OVER, 2: NINETY_FIVE}, None, max_tokens=0)
    assert (check.context_tokens, check.reply_room) == (100, ANSWER_ROOM)
    assert check.too_long == {1: 85, 2: 95}
    # The vLLM sizing leaves the same two out.
    plan = context_length_for(smollm2_tokenizer, SHORT_TASK, [FITS_EXACTLY, ONE_OVER, NINETY_FIVE], 0, model_limit=100)
    assert (plan.too_long, plan.longest_index, plan.prompt_tokens) == (2, 0, 84)


def test_the_run_labels_the_prompt_that_fits_exactly_and_records_the_others_too_long(tmp_path, smollm2_tokenizer):
    write_input(tmp_path / "in.txt", [FITS_EXACTLY, ONE_OVER, NINETY_FIVE])
    config = make_config(tmp_path, max_tokens=0)
    engine = TokenizerEngine(smollm2_tokenizer)
    summary = run_labeling(config, SHORT_TASK, lambda: engine, progress=False)
    assert [texts for texts, _ in engine.calls] == [[FITS_EXACTLY]]  # the too_long prompts are never generated
    files = RunFiles.for_output(config.output_file)
    assert training_pairs(files.training) == [(FITS_EXACTLY, "en")]
    records = sorted((r["line"], r["status"], r["prompt_tokens"]) for _, r in iter_jsonl(files.sidecar))
    assert records == [(1, "labelled", 84), (2, "too_long", 85), (3, "too_long", 95)]
    assert summary.too_long_now == 2


# -- tests added for surviving mutants (docs/testing.md, `make mutation`) -------------------------------------------


class CharTokenizer:
    """A sentence's own tokens are its words; a templated chat's tokens are its characters (the template's
    keyword arguments add their names)."""

    def __call__(self, texts, add_special_tokens=True):
        return {"input_ids": [text.split() for text in texts]}

    def apply_chat_template(self, chat, tokenize=True, add_generation_prompt=False, **kwargs):
        assert tokenize is False and add_generation_prompt is True
        return "".join(message["content"] for message in chat) + "".join(kwargs)

    def encode(self, text, add_special_tokens=True):
        return list(text)


BARE = Task(labels=("en", "de"), system_prompt="S", name="bare")


def bare_tokens(text):
    return count_chat_tokens(CharTokenizer(), BARE.teacher_messages(text))


def test_context_length_for_with_a_stand_in_tokenizer():
    tokenizer = CharTokenizer()
    with pytest.raises(ContextLengthError, match=r"^no sentences to size the context for\.$"):
        context_length_for(tokenizer, BARE, [], 16)
    # Equal word counts: the longer text is templated first, so one candidate finds it.
    plan = context_length_for(tokenizer, BARE, ["a b", "aaaa bbbb"], 16, candidates=1, margin=5)
    assert (plan.longest_index, plan.prompt_tokens, plan.margin, plan.needed) == (1, bare_tokens("aaaa bbbb"), 5,
                                                                                 bare_tokens("aaaa bbbb") + 16 + 5)
    # One candidate: only the sentence with most words is templated, though another has a longer prompt.
    assert context_length_for(tokenizer, BARE, ["a b c", "xxxxxxxxxx yy"], 16, candidates=1).longest_index == 0
    # Equal prompts: the first one is named.
    assert context_length_for(tokenizer, BARE, ["ab", "ba"], 16).longest_index == 0
    # The template's keyword arguments are counted.
    with_kwargs = context_length_for(tokenizer, BARE, ["ab"], 16, chat_template_kwargs={"enable_thinking": False})
    assert with_kwargs.prompt_tokens == bare_tokens("ab") + len("enable_thinking")


def test_a_run_that_needs_exactly_the_models_context_gets_what_it_needs():
    tokenizer = CharTokenizer()
    needed = bare_tokens("ab") + 16 + 4
    plan = context_length_for(tokenizer, BARE, ["ab"], 16, margin=4, model_limit=needed)
    assert (plan.max_model_len, plan.model_context) == (needed, None)


def test_no_prompt_that_fits_is_an_error_saying_what_to_change():
    with pytest.raises(ContextLengthError, match=r"Use a shorter --prompt_file or a model with a longer context\.$"):
        context_length_for(CharTokenizer(), BARE, ["abcdef"], 16, model_limit=10)


@pytest.mark.parametrize("key", ["max_position_embeddings", "n_positions", "max_seq_len", "seq_length",
                                 "max_sequence_length"])
def test_model_context_limit_reads_each_known_key(key):
    assert model_context_limit(SimpleNamespace(**{key: 512})) == 512


def test_model_context_limit_reads_the_text_config_and_skips_unusable_values():
    class Multimodal:
        max_position_embeddings = 99

        def get_text_config(self):
            return SimpleNamespace(max_position_embeddings=None, n_positions=0, max_seq_len=4096)

    assert model_context_limit(Multimodal()) == 4096
    assert model_context_limit(SimpleNamespace(max_position_embeddings=1)) == 1
    assert model_context_limit(SimpleNamespace()) is None


def test_describe_names_the_line_and_the_too_long_prompts():
    plan = ContextLength(1000, 400, 3, 512, 88, too_long=2)
    assert plan.describe(7) == (
        "vLLM max_model_len 1,000 = longest prompt 400 tokens (input line 7) + max_tokens 512 + margin 88; 2 longer "
        "prompts leave less than 512 tokens of the model's context and are not generated (too_long in the sidecar) "
        "(--max_model_len overrides)")
    assert ContextLength(1000, 400, 3, 512, 88).describe() == (
        "vLLM max_model_len 1,000 = longest prompt 400 tokens + max_tokens 512 + margin 88 (--max_model_len overrides)")


class ParamsEngine:
    """Counts a prompt's characters, and records the params each count was asked with."""

    def __init__(self, limit):
        self.max_context_tokens = limit
        self.params = []

    def count_prompt_tokens(self, chat, params):
        self.params.append(params)
        return len("".join(message["content"] for message in chat))


def test_check_prompts_counts_with_the_run_params_and_reports_an_unknown_context():
    params = object()
    assert check_prompts(ParamsEngine(None), BARE, {0: "ab"}, params, 16) == PromptCheck(None, ANSWER_ROOM, {})
    assert check_prompts(ParamsEngine(100), BARE, {}, params, 16) == PromptCheck(100, ANSWER_ROOM, {})
    prefix = len(TEACHER_USER_PREFIX)
    engine = ParamsEngine(prefix + ANSWER_ROOM + 5)
    check = check_prompts(engine, BARE, {0: "ab", 1: "abcdefghijklmnop"}, params, 16)
    assert check.too_long == {1: 1 + prefix + 16}  # the system prompt "S", the prefix, the sentence
    assert engine.params and all(seen is params for seen in engine.params)
