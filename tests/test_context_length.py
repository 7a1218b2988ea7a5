"""create_data.py sizes vLLM's context from its data (the longest templated prompt + max_tokens), instead of leaving
vLLM to take the model's whole context (262,144 tokens for the Qwen3 teacher), which one 80 GB GPU cannot hold."""

import pytest

import create_data
from prompt_distill.context_length import CONTEXT_MARGIN, context_length_for, count_chat_tokens, model_context_limit
from prompt_distill.task import language_task
from tests.test_labeling import ANSWERS, ScriptedEngine

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

    monkeypatch.setattr(create_data, "select_backend", lambda name: "vllm")
    monkeypatch.setattr(create_data, "make_engine", make_engine)
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
    with pytest.raises(ValueError, match="longest prompt"):
        context_length_for(smollm2_tokenizer, TASK, TEXTS, 16, model_limit=1000)
