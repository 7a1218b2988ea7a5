"""The transformers engine against plain transformers calls on the embedded SmolLM2."""

import pytest
import torch

from prompt_distill.engines.base import GenerationParams
from prompt_distill.engines.hf import HFEngine, _Prompt, _Reply
from prompt_distill.task import UNPARSEABLE, Task

SYSTEM = (
    "You identify the language of a text. Think about the script and the function words, then reply with "
    "one line 'Final Answer: <code>' where the code is en, de, fr, es or ot. " * 2
)
# Different lengths, so that the batch needs padding between the shared prefix and each suffix.
TEXTS = [
    "Hallo Welt, wie geht es dir heute?",
    "ok",
    "Je pense donc je suis, et toi, qu'en penses-tu de tout cela, mon ami ?",
    "Hola amigo",
]
LABELS = ("en", "de", "fr", "es", "ot", "zh-Hant")  # the last one takes several tokens


def teacher_chat(text):
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def engine(smollm2_dir):
    return HFEngine(str(smollm2_dir), batch_size=4)


def prompt_ids(engine, chat):
    text = engine.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    return engine.tokenizer(text, add_special_tokens=False)["input_ids"]


def naive_greedy(model, ids, max_new_tokens):
    """One request alone: no padding, no cache reuse."""
    tensor = torch.tensor([ids])
    output = model.generate(
        tensor, attention_mask=torch.ones_like(tensor), max_new_tokens=max_new_tokens, do_sample=False
    )
    return output[0, len(ids) :].tolist()


def naive_label_logprob(model, ids, continuation):
    """log p(continuation | ids) from one plain forward over the whole sequence."""
    with torch.no_grad():
        logits = model(torch.tensor([ids + continuation])).logits.float()
    logprobs = torch.log_softmax(logits[0], dim=-1)
    return sum(logprobs[len(ids) + i - 1, token].item() for i, token in enumerate(continuation))


def test_prefix_reuse_gives_the_same_greedy_tokens_as_naive_generate(engine):
    chats = [teacher_chat(text) for text in TEXTS]
    generations = engine.generate(chats, GenerationParams(max_tokens=10))

    all_ids = [prompt_ids(engine, chat) for chat in chats]
    shared = 0
    while all(len(ids) > shared + 1 and ids[shared] == all_ids[0][shared] for ids in all_ids):
        shared += 1
    assert shared > 80  # the system prompt really is shared and reused
    for ids, generation in zip(all_ids, generations, strict=True):
        expected = naive_greedy(engine.model, ids, 10)
        eos_free = [token for token in expected if token not in engine.eos_ids]
        assert generation.text == engine.tokenizer.decode(eos_free)
        assert generation.prompt_tokens == len(ids)
        assert generation.cached_prompt_tokens == shared
        assert generation.finish_reason == ("stop" if len(eos_free) < len(expected) else "length")
        assert generation.completion_tokens == len(expected)


def test_label_scores_on_the_prefix_cache_equal_a_plain_forward(engine):
    chats = [teacher_chat(text) for text in TEXTS[:2]]
    params = GenerationParams(max_tokens=0, answer_labels=LABELS, answer_prefix="Final Answer: ")
    scores = engine.label_logprobs(chats, params)
    end = engine.tokenizer.eos_token_id
    for chat, row in zip(chats, scores, strict=True):
        ids = prompt_ids(engine, chat)
        naive = {
            label: naive_label_logprob(
                engine.model, ids, engine.tokenizer("Final Answer: " + label, add_special_tokens=False)["input_ids"] + [end]
            )
            for label in LABELS
        }
        # The engine leaves out the tokens all labels share ("Final Answer:"), the same constant for every label.
        for label in LABELS:
            assert row[label] - row["en"] == pytest.approx(naive[label] - naive["en"], abs=2e-3)
        assert len(set(row.values())) == len(LABELS)


def test_constrained_answer_always_yields_a_label(engine):
    task = Task(labels=LABELS[:5], system_prompt=SYSTEM)
    student = GenerationParams(max_tokens=0, answer_labels=task.labels, answer_prefix="")
    for generation in engine.generate([[{"role": "user", "content": text}] for text in TEXTS], student):
        assert generation.text in task.labels
        assert generation.finish_reason == "constrained"
        assert generation.completion_tokens == 0

    teacher = GenerationParams(max_tokens=6, answer_labels=task.labels, answer_parser=task.parse)
    for generation in engine.generate([teacher_chat(text) for text in TEXTS], teacher):
        assert task.parse(generation.text) in task.labels
        if generation.finish_reason == "constrained":
            assert "\nFinal Answer: " in generation.text or generation.text.startswith("Final Answer: ")


def test_an_answered_reply_is_kept_and_an_unanswered_one_is_not(engine):
    task = Task(labels=("en", "de"), system_prompt=SYSTEM, label_names={"en": "English"})
    with_parser = GenerationParams(max_tokens=4, answer_labels=task.labels, answer_parser=task.parse)
    assert engine._answered("Thinking...</think>\n\n**Final Answer:** English", with_parser)
    assert not engine._answered("Final Answer: Spanish", with_parser)
    without_parser = GenerationParams(max_tokens=4, answer_labels=task.labels)
    assert engine._answered("...</think>\nFinal Answer: de", without_parser)
    assert not engine._answered("Final Answer: German", without_parser)
    bare = GenerationParams(max_tokens=4, answer_labels=task.labels, answer_prefix="")
    assert engine._answered(" en\n", bare) and not engine._answered("Armenian", bare)
    assert task.parse("x") == UNPARSEABLE


def test_a_thought_cut_by_max_tokens_is_closed_before_the_answer(engine):
    params = GenerationParams(max_tokens=4, answer_labels=("en", "de"))
    open_prompt = _Prompt(ids=[1, 2, 3], opens_thought=True)
    cut = engine._answer_plan(open_prompt, _Reply([5, 6], 2, "length", "The text uses"), params)
    assert cut.added_text == "\n</think>\n\nFinal Answer: "
    closed = engine._answer_plan(open_prompt, _Reply([5], 1, "stop", "ok</think>\n\nmaybe"), params)
    assert closed.added_text == "\nFinal Answer: "
    assert closed.context[:4] == [1, 2, 3, 5]

    # The template opened the thought, so a reply cut inside it is written as an unfinished thought, whose
    # tentative answer the task parser does not take (as with the vLLM engine).
    task = Task(labels=("en", "de"), system_prompt=SYSTEM)
    tokens = engine.tokenizer("So maybe Final Answer: en, but wait", add_special_tokens=False)["input_ids"]
    cut_reply = engine._reply(tokens, open_prompt)
    assert cut_reply.text.startswith("<think>\n") and cut_reply.finish_reason == "length"
    assert task.parse(cut_reply.text) == UNPARSEABLE
    assert task.parse(engine._reply(tokens, _Prompt([1], opens_thought=False)).text) == "en"


def test_min_tokens_forces_the_length_and_max_tokens_is_reported(engine):
    chats = [teacher_chat(text) for text in TEXTS[:2]]
    for generation in engine.generate(chats, GenerationParams(max_tokens=7, min_tokens=7)):
        assert generation.completion_tokens == 7
        assert generation.finish_reason == "length"
    with pytest.raises(ValueError, match="min_tokens"):
        engine.generate(chats, GenerationParams(max_tokens=2, min_tokens=3))


def test_the_prefix_cache_serves_later_calls_and_can_be_turned_off(engine):
    chats = [teacher_chat(text) for text in TEXTS[:2]]
    first = engine.generate(chats, GenerationParams(max_tokens=1))
    alone = engine.generate([teacher_chat("Merci beaucoup")], GenerationParams(max_tokens=1))
    assert alone[0].cached_prompt_tokens == first[0].cached_prompt_tokens > 0
    engine.reuse_prefix = False
    try:
        plain = engine.generate(chats, GenerationParams(max_tokens=1))
    finally:
        engine.reuse_prefix = True
    assert [g.cached_prompt_tokens for g in plain] == [0, 0]
    assert [g.text for g in plain] == [g.text for g in first]


def test_seeded_sampling_is_reproducible(engine):
    chats = [teacher_chat(text) for text in TEXTS[:2]]
    params = GenerationParams(max_tokens=8, temperature=1.0, seed=3)
    assert [g.text for g in engine.generate(chats, params)] == [g.text for g in engine.generate(chats, params)]


def test_a_lora_adapter_is_applied(engine, smollm2_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    from prompt_distill.models import load_causal_lm

    # init_lora_weights=False: random A and B, so the adapter visibly changes the outputs.
    lora = get_peft_model(
        load_causal_lm(str(smollm2_dir), device="cpu"),
        LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    lora.save_pretrained(tmp_path / "adapter")
    adapted = HFEngine(str(smollm2_dir), adapter_path=tmp_path / "adapter", batch_size=2)

    chats = [[{"role": "user", "content": text}] for text in TEXTS[:2]]
    params = GenerationParams(max_tokens=0, answer_labels=LABELS[:3], answer_prefix="")
    base_scores = engine.label_logprobs(chats, params)
    adapted_scores = adapted.label_logprobs(chats, params)
    end = engine.tokenizer.eos_token_id
    for chat, base_row, adapted_row in zip(chats, base_scores, adapted_scores, strict=True):
        ids = prompt_ids(engine, chat)
        for label in LABELS[:3]:
            continuation = engine.tokenizer(label, add_special_tokens=False)["input_ids"] + [end]
            assert adapted_row[label] == pytest.approx(naive_label_logprob(lora.eval(), ids, continuation), abs=2e-3)
        assert adapted_row != pytest.approx(base_row, abs=1e-2)
    with pytest.raises(FileNotFoundError):
        HFEngine(str(smollm2_dir), adapter_path=tmp_path / "missing")
