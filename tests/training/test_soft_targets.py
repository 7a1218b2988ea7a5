"""--distillation_target soft: the student's label distribution trained towards the teacher's (the training file's
"teacher" key), through TRL's compute_loss_func; --min_teacher_confidence; hard training unchanged."""

import hashlib
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from prompt_distill.data import training_record
from prompt_distill.errors import PromptDistillError
from prompt_distill.student.classifier import Student
from prompt_distill.training.config import ScriptArguments, parser
from prompt_distill.training.run import build_trainer, prepare_data, run_training
from tests.tiny_models import fast_config, gold_rows, save_model_dir, tiny_llama, write_fixture_jsonl

LABELS = ("en", "de", "fr")
TARGET = {"en": 0.5, "de": 0.3, "fr": 0.2}


def teacher_file(path, rows, target=TARGET, confidences=None, without_teacher=()):
    """A training file in the data contract's shape: "messages" plus, where given, "teacher"."""
    with path.open("w", encoding="utf-8") as handle:
        for number, (text, label) in enumerate(rows):
            record = training_record(text, label)
            if number not in without_teacher:
                confidence = confidences[number] if confidences else target[label]
                record["teacher"] = {"distribution": dict(target), "confidence": confidence,
                                     "source": "probabilities"}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def english_rows(count):
    return [(f"{text} ({number})", "en") for number, (text, _) in enumerate(gold_rows(count))]


@pytest.fixture
def tiny_base(tmp_path, smollm2_tokenizer):
    return save_model_dir(tiny_llama(len(smollm2_tokenizer)), smollm2_tokenizer, tmp_path / "base")


@pytest.fixture
def wide_logits_base(tmp_path, smollm2_tokenizer):
    """The tiny llama with its (tied) embeddings scaled up: at the initial scale (std 0.02 x 32 dimensions) its
    logits span well under one nat, so no adapter could make it sure of a label."""
    model = tiny_llama(len(smollm2_tokenizer))
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(100)
    return save_model_dir(model, smollm2_tokenizer, tmp_path / "wide")


def student_distribution(folder, texts) -> dict[str, float]:
    """The mean of what Student.classify reads (the label probabilities after the assistant turn opens)."""
    predictions = Student.load(folder, backend="transformers").classify(texts)
    return {label: sum(p.probabilities[label] for p in predictions) / len(predictions) for label in LABELS}


def kl(target, student):
    return sum(p * math.log(p / student[label]) for label, p in target.items() if p > 0)


def train(tiny_base, data_file, out, steps=40, **flags):
    script_args = ScriptArguments(base_model=str(tiny_base), data_file=str(data_file), split="all", lora_r=8,
                                  labels=",".join(LABELS), **flags)
    return run_training(script_args, fast_config(out, max_steps=steps, learning_rate=3e-2,
                                                 per_device_train_batch_size=4))


def test_soft_targets_move_the_students_label_probabilities_to_the_teachers(wide_logits_base, tmp_path):
    tiny_base = wide_logits_base
    rows = english_rows(8)
    data_file = teacher_file(tmp_path / "train.jsonl", rows)
    texts = [text for text, _ in rows]
    soft = train(tiny_base, data_file, tmp_path / "soft", distillation_target="soft", hard_label_weight=0.0)
    train(tiny_base, data_file, tmp_path / "hard")
    after_soft = student_distribution(tmp_path / "soft", texts)
    after_hard = student_distribution(tmp_path / "hard", texts)
    # hard training pushes the student to the one label, soft training to the teacher's distribution
    assert after_hard["en"] > 0.9, after_hard
    assert all(abs(after_soft[label] - TARGET[label]) < 0.08 for label in LABELS), after_soft
    assert kl(TARGET, after_soft) < 0.1 * kl(TARGET, after_hard), (after_soft, after_hard)
    record = soft.record["distillation"]
    assert record["target"] == "soft" and record["examples_with_teacher"] == 8
    assert record["hard_fallback"] == 0 and record["left_out_low_confidence"] == 0


def optimum(loss, labels, targets, steps=1500):
    """The label distribution a free set of logits reaches under ``loss`` (Adam on the logits alone)."""
    logits = torch.zeros(1, labels.size(1), 12, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.1)
    for _ in range(steps):
        optimizer.zero_grad()
        loss({"logits": logits}, labels, None, teacher_targets=targets).backward()
        optimizer.step()
    return logits.detach()


@pytest.mark.parametrize("weight, expected", [(0.0, [0.5, 0.3, 0.2]), (0.5, [0.75, 0.15, 0.1])])
def test_the_loss_optimum_is_the_teachers_distribution_mixed_with_the_hard_label(weight, expected):
    from prompt_distill.engines.label_tokens import LabelTokens
    from prompt_distill.training.losses import LabelDistillationLoss

    loss = LabelDistillationLoss(LabelTokens((), ((3,), (4,), (5,))), hard_label_weight=weight)
    labels = torch.tensor([[-100, -100, 3, 7, 8]])  # prompt, prompt, label 3, end of turn, newline
    logits = optimum(loss, labels, torch.tensor([[0.5, 0.3, 0.2]]))
    reached = logits[0, 1, 3:6].softmax(-1).tolist()  # read where the label is predicted, renormalised
    assert reached == pytest.approx(expected, abs=2e-3)


def test_multi_token_labels_branch_where_their_tokens_differ():
    """zh-Hant / zh-Hans / en as tokens (9, 5), (9, 6), (4,): two branch points on the path of zh-Hans."""
    from prompt_distill.engines.label_tokens import LabelTokens
    from prompt_distill.training.losses import LabelDistillationLoss

    loss = LabelDistillationLoss(LabelTokens((), ((9, 5), (9, 6), (4,))))
    labels = torch.tensor([[-100, -100, 9, 6, 7]])
    logits = optimum(loss, labels, torch.tensor([[0.2, 0.6, 0.2]]))
    first = logits[0, 1, [9, 4]].softmax(-1).tolist()  # zh-* vs en
    second = logits[0, 2, [5, 6]].softmax(-1).tolist()  # Hant vs Hans, given zh
    assert first == pytest.approx([0.8, 0.2], abs=2e-3)
    assert second == pytest.approx([0.25, 0.75], abs=2e-3)
    assert [point[:2] for point in loss.branch_points([9, 6, 7], [0.2, 0.6, 0.2])] == [(0, [9, 4]), (1, [5, 6])]


def test_the_hard_label_weight_moves_the_student_between_soft_and_hard(wide_logits_base, tmp_path):
    tiny_base = wide_logits_base
    rows = english_rows(8)
    data_file = teacher_file(tmp_path / "train.jsonl", rows)
    texts = [text for text, _ in rows]
    en = {}
    for weight in (0.0, 0.5):
        train(tiny_base, data_file, tmp_path / str(weight), distillation_target="soft", hard_label_weight=weight)
        en[weight] = student_distribution(tmp_path / str(weight), texts)["en"]
    assert en[0.0] + 0.1 < en[0.5], en


def test_low_confidence_examples_are_left_out_and_counted(tiny_base, tmp_path, capsys):
    rows = english_rows(6)
    data_file = teacher_file(tmp_path / "train.jsonl", rows, confidences=[0.9, 0.2, 0.9, 0.3, 0.9, 0.9],
                             without_teacher=(5,))
    result = train(tiny_base, data_file, tmp_path / "out", steps=1, distillation_target="soft",
                   min_teacher_confidence=0.5)
    record = result.record
    assert record["distillation"]["left_out_low_confidence"] == 2
    assert record["distillation"]["hard_fallback"] == 1  # the record without a teacher: kept, its hard label
    assert record["split"]["examples_trained"] == 4
    from prompt_distill.training.record import format_summary

    summary = format_summary(record, tmp_path / "out")
    assert "2 left out" in summary and "teacher confidence below 0.5" in summary


def test_soft_needs_a_positive_temperature_and_a_weight_in_0_1(tiny_base, tmp_path):
    data_file = teacher_file(tmp_path / "train.jsonl", english_rows(4))
    with pytest.raises(PromptDistillError, match="--distillation_temperature"):
        train(tiny_base, data_file, tmp_path / "a", steps=1, distillation_target="soft", distillation_temperature=0)
    with pytest.raises(PromptDistillError, match="--hard_label_weight"):
        train(tiny_base, data_file, tmp_path / "b", steps=1, distillation_target="soft", hard_label_weight=1.5)


def test_the_teacher_key_never_reaches_the_model_forward(tiny_base, tmp_path, smollm2_tokenizer):
    data_file = teacher_file(tmp_path / "train.jsonl", english_rows(4))
    script_args = ScriptArguments(base_model=str(tiny_base), data_file=str(data_file), split="all", lora_r=4,
                                  labels=",".join(LABELS), distillation_target="soft")
    config = fast_config(tmp_path / "out", max_steps=2)
    data = prepare_data(script_args, config, smollm2_tokenizer)
    model = tiny_llama(len(smollm2_tokenizer))
    seen = []
    model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(set(kwargs)), with_kwargs=True)
    trainer = build_trainer(script_args, config, smollm2_tokenizer, data, model=model)
    trainer.train()
    assert seen and not any(any("teacher" in key for key in keys) for keys in seen), seen


# -- hard targets: bit for bit what main trained ------------------------------------------------------------------
def adapter_digest(folder) -> str:
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].to(torch.float32).numpy().tobytes())
    return digest.hexdigest()


# Recorded with main's code (commit c0dab4d, before --distillation_target existed) on this test's run.
MAIN_LOSSES = [10.722432136535645, 10.649746894836426, 10.477692604064941]
MAIN_ADAPTER_SHA256 = "d71b5b0f16dc24a16d9a6dd2097d08bf3aff5088a1e40fd4025d2ba74ce6f586"


def hard_run(tiny_base, data_file, out, **flags):
    """Three steps on one thread (the thread count changes the float sums, so the digest is recorded on one)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        script_args = ScriptArguments(base_model=str(tiny_base), data_file=str(data_file), split="all", lora_r=4,
                                      **flags)
        return run_training(script_args, fast_config(out, max_steps=3, per_device_train_batch_size=2))
    finally:
        torch.set_num_threads(threads)


def test_hard_training_is_bit_for_bit_main_whatever_the_teacher_key(tiny_base, tmp_path):
    plain = write_fixture_jsonl(tmp_path / "plain.jsonl", 6)
    with_teacher = tmp_path / "teacher.jsonl"
    with with_teacher.open("w", encoding="utf-8") as handle:
        for line in plain.read_text("utf-8").splitlines():
            record = json.loads(line)
            label = record["messages"][1]["content"]
            record["teacher"] = {"distribution": {label: 0.6, "ot": 0.4}, "confidence": 0.6, "source": "probabilities"}
            handle.write(json.dumps(record) + "\n")
    first = hard_run(tiny_base, plain, tmp_path / "plain")
    second = hard_run(tiny_base, with_teacher, tmp_path / "teacher", distillation_target="hard")
    assert first.trainer.compute_loss_func is None  # TRL's own loss, as on main
    losses = first.record["results"]["loss_history"]
    assert second.record["results"]["loss_history"] == losses
    assert adapter_digest(tmp_path / "teacher") == adapter_digest(tmp_path / "plain")
    assert (losses, adapter_digest(tmp_path / "plain")) == (MAIN_LOSSES, MAIN_ADAPTER_SHA256)


def test_flags_parse_with_trl_style_names():
    script_args, _ = parser().parse_args_and_config([
        "--distillation_target", "soft", "--distillation_temperature", "2", "--hard_label_weight", "0.25",
        "--min_teacher_confidence", "0.6"])
    assert (script_args.distillation_target, script_args.distillation_temperature) == ("soft", 2.0)
    assert (script_args.hard_label_weight, script_args.min_teacher_confidence) == (0.25, 0.6)
    defaults, _ = parser().parse_args_and_config([])
    assert (defaults.distillation_target, defaults.min_teacher_confidence) == ("hard", 0.0)
