"""HFEngine.classify against a brute-force reference: one plain forward pass per label over prompt + label."""

import math

import pytest
import torch

from prompt_distill.engines.base import GenerationParams
from prompt_distill.engines.hf import HFEngine
from prompt_distill.engines.label_tokens import label_tokens
from prompt_distill.task import language_task
from tests.tiny_models import qwen3_instruct_2507_template, save_model_dir, tiny_qwen3_moe, tokenizer_with_template

# "zh" is a token prefix of "zh-Hant" (so it needs its end-of-turn token); the three zh-* share two tokens and the
# two zh-Ha* a third, so the trie has two sibling inner nodes ("Lat", "H"): listed first, "Lat" comes first in the
# pass, and a mask that let "H" see it (a causal mask over the label tokens) would change P(ant | H) vs P(ans | H).
TRIE_LABELS = ("zh", "zh-Latn", "zh-Hant", "zh-Hans", "en", "ab", "a")
# What the tiny model is trained towards for TEXTS, a few steps, so that its labels are far from uniform and
# depend on the trie's inner nodes (an untrained one puts ~1/3 on each one-token label and ~0 on the zh-*: a mask
# leak then moved the probabilities by less than the 1e-4 tolerance).
TINY_TARGETS = ("zh-Hant", "zh-Hans", "zh-Latn", "ab")
TEXTS = [
    "Hallo Welt, wie geht es dir heute?",
    "ok",
    "Je pense donc je suis, et toi, qu'en penses-tu de tout cela, mon ami ? C'est une longue phrase.",
    "Hola amigo",
]


def student_chat(text):
    return [{"role": "system", "content": ""}, {"role": "user", "content": text}]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def smollm2_engine(smollm2_dir):
    return HFEngine(str(smollm2_dir), batch_size=4)


def trained_tiny_qwen3(tokenizer, steps=20):
    """The tiny random Qwen3-MoE after a few Adam steps on TEXTS -> TINY_TARGETS (each answer through the chat
    template, loss on the answer only): every sentence gets its own, far from uniform, label distribution."""
    model = tiny_qwen3_moe(len(tokenizer), seed=3)
    tokenizer = tokenizer_with_template(tokenizer, qwen3_instruct_2507_template())
    examples = []
    for text, label in zip(TEXTS, TINY_TARGETS, strict=True):
        chat = student_chat(text)
        prompt = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)
        full = tokenizer.apply_chat_template(chat + [{"role": "assistant", "content": label}], tokenize=True,
                                             return_dict=True)["input_ids"]
        targets = torch.tensor([[-100] * len(prompt["input_ids"]) + list(full[len(prompt["input_ids"]):])])
        examples.append((torch.tensor([list(full)]), targets))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        for input_ids, targets in examples:
            loss = model(input_ids=input_ids, labels=targets).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def tiny_engine(smollm2_tokenizer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_qwen3")
    save_model_dir(trained_tiny_qwen3(smollm2_tokenizer), smollm2_tokenizer, folder, qwen3_instruct_2507_template())
    return HFEngine(str(folder), batch_size=4, dtype=torch.float32)


def brute_force(engine, chat, labels):
    """Each label's answer tokens (chat template, cut at the end of turn, kept where a label is a token prefix of
    another) scored by its own forward pass over prompt + answer, then renormalised."""
    tokenizer, end = engine.tokenizer, engine.eos_ids
    prompt = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)
    prompt = list(prompt["input_ids"])
    answers = []
    for label in labels:
        full = tokenizer.apply_chat_template(chat + [{"role": "assistant", "content": label}], tokenize=True,
                                             return_dict=True)["input_ids"]
        answer = list(full[len(prompt):])
        cut = min(i for i, token in enumerate(answer) if token in end)
        answers.append((answer[:cut], answer[cut]))
    logprobs = []
    for body, end_token in answers:
        sequence = body + ([end_token] if any(o != body and o[: len(body)] == body for o, _ in answers) else [])
        with torch.no_grad():
            logits = engine.model(torch.tensor([prompt + sequence])).logits.float()
        steps = torch.log_softmax(logits[0], dim=-1)
        logprobs.append(sum(steps[len(prompt) + i - 1, t].item() for i, t in enumerate(sequence)))
    top = max(logprobs)
    total = sum(math.exp(value - top) for value in logprobs)
    return {label: math.exp(value - top) / total for label, value in zip(labels, logprobs, strict=True)}


def assert_close(scores, expected, tolerance=1e-4):
    assert list(scores.probabilities) == list(expected)
    for label, probability in expected.items():
        assert scores.probabilities[label] == pytest.approx(probability, abs=tolerance), label


def test_trie_labels_on_tiny_qwen3_equal_brute_force_and_sum_to_one(tiny_engine):
    tokens = label_tokens(tiny_engine.tokenizer, student_chat("x"), TRIE_LABELS, tiny_engine.eos_ids)
    assert not tokens.single_tokens
    by_label = dict(zip(TRIE_LABELS, tokens.continuations, strict=True))
    assert by_label["zh"][-1] in tiny_engine.eos_ids  # "zh" needs its end of turn, "en" does not
    assert by_label["en"][-1] not in tiny_engine.eos_ids
    chats = [student_chat(text) for text in TEXTS]
    results = tiny_engine.classify(chats, TRIE_LABELS)
    # Far from uniform (1/7 each), the top label differs between sentences, and both answers after the inner node
    # "H" keep a real share (P(ant | H) vs P(ans | H) is what a leak into "H" would move).
    assert all(scores.probability > 0.45 for scores in results)
    assert len({scores.label for scores in results}) >= 3
    assert min(results[1].probabilities["zh-Hant"], results[1].probabilities["zh-Hans"]) > 0.1
    for chat, scores in zip(chats, results, strict=True):
        assert sum(scores.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
        assert_close(scores, brute_force(tiny_engine, chat, TRIE_LABELS))
        assert scores.prompt_tokens == tiny_engine.count_prompt_tokens(chat, GenerationParams(max_tokens=0))


def test_one_token_labels_on_smollm2_equal_brute_force(smollm2_engine):
    labels = language_task().labels
    tokens = label_tokens(smollm2_engine.tokenizer, student_chat("x"), labels, smollm2_engine.eos_ids)
    assert tokens.single_tokens  # the fast path: the pass is the prompt alone
    chats = [student_chat(text) for text in TEXTS]
    for chat, scores in zip(chats, smollm2_engine.classify(chats, labels), strict=True):
        assert sum(scores.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
        assert_close(scores, brute_force(smollm2_engine, chat, labels))
    assert smollm2_engine.classify([student_chat("Das ist ein Haus.")], labels)[0].label == "de"


def test_multi_token_labels_on_smollm2_equal_brute_force(smollm2_engine):
    chats = [student_chat(text) for text in TEXTS[:2]]
    for chat, scores in zip(chats, smollm2_engine.classify(chats, TRIE_LABELS), strict=True):
        assert_close(scores, brute_force(smollm2_engine, chat, TRIE_LABELS))


@pytest.mark.parametrize("labels", [TRIE_LABELS, ("en", "de", "fr", "es")])
def test_a_padded_batch_equals_one_at_a_time(tiny_engine, labels):
    chats = [student_chat(text) for text in TEXTS]  # lengths differ: the batch is left-padded
    batched = tiny_engine.classify(chats, labels)
    seen = []
    alone = [tiny_engine.classify([chat], labels, on_batch=lambda i, s: seen.append(i))[0] for chat in chats]
    assert seen == [[0]] * len(chats)
    for one, many in zip(alone, batched, strict=True):
        assert_close(many, one.probabilities, tolerance=1e-5)


def test_on_batch_reports_every_index_once(tiny_engine):
    engine = HFEngine(tiny_engine.model_name, batch_size=3, dtype=torch.float32)
    reported = []
    results = engine.classify([student_chat(t) for t in TEXTS], TRIE_LABELS,
                              on_batch=lambda indices, scores: reported.extend(zip(indices, scores, strict=True)))
    assert sorted(i for i, _ in reported) == list(range(len(TEXTS)))
    assert all(results[i] is scores for i, scores in reported)


def test_labels_must_be_distinct(tiny_engine):
    with pytest.raises(ValueError, match="distinct labels"):
        tiny_engine.classify([student_chat("a")], ("en", "en"))


def test_a_merged_adapter_scores_as_the_adapter_layers(smollm2_tokenizer, tmp_path):
    from peft import LoraConfig, get_peft_model

    base_dir = save_model_dir(tiny_qwen3_moe(len(smollm2_tokenizer), seed=5), smollm2_tokenizer, tmp_path / "base")
    base = HFEngine(str(base_dir), dtype=torch.float32).model
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(tmp_path / "adapter")
    layered = HFEngine(str(base_dir), adapter_path=str(tmp_path / "adapter"), dtype=torch.float32)
    merged = HFEngine(str(base_dir), adapter_path=str(tmp_path / "adapter"), dtype=torch.float32,
                      merge_adapter=True)
    assert merged.notes == [] and not hasattr(merged.model, "peft_config")
    plain = HFEngine(str(base_dir), dtype=torch.float32)
    chats = [student_chat(text) for text in TEXTS]
    for one, two, bare in zip(layered.classify(chats, TRIE_LABELS), merged.classify(chats, TRIE_LABELS),
                              plain.classify(chats, TRIE_LABELS), strict=True):
        assert_close(two, one.probabilities, tolerance=1e-5)
        assert max(abs(one.probabilities[k] - bare.probabilities[k]) for k in TRIE_LABELS) > 1e-4  # adapter works
