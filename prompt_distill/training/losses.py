"""The student's training losses, by name: where a new loss goes (docs/architecture.md, "How to add ...").

A loss is a function with the signature of TRL's ``compute_loss_func`` (``SFTTrainer(compute_loss_func=...)``, from
transformers' Trainer): ``(outputs, labels, num_items_in_batch) -> loss``. ``None`` keeps TRL's own loss, the
negative log-likelihood of the completion tokens (the label and the end of turn; the prompt is masked). The
trainer (training/run.py ``build_trainer``) takes the function named by ``ScriptArguments.loss``, DEFAULT_LOSS while
there is one loss; a second loss adds its entry here and a ``loss`` field (choices: these names) to ScriptArguments
in training/config.py.

``--distillation_target soft`` uses ``LabelDistillationLoss`` (built per task: it needs the labels' answer tokens),
registered as ``SOFT_LOSS``. Its per-example targets travel beside the batch, never into ``model.forward``:

* the dataset carries a ``teacher_distribution`` column (training/examples.py ``to_dataset``), kept by the
  trainer's signature columns;
* ``TeacherTargetsCollator`` takes it out of every row before TRL's collator runs and adds one tensor,
  ``teacher_targets`` (one row per example with a trainable token, in batch order; NaN where an example has no
  teacher entry);
* the trainer's ``compute_loss`` (training/run.py) pops that tensor from the inputs and hands it to this loss as a
  keyword, then TRL's ``SFTTrainer.compute_loss`` runs unchanged: ``model(**inputs)`` without the key, then
  ``compute_loss_func(outputs, labels, num_items_in_batch)``.

The loss, per example: the completion's tokens are walked down the trie of the labels' answer tokens
(``engines.label_tokens``, what ``classify`` scores). At every token where the labels branch (for one-token labels:
the first answer token only) the student's distribution over the branches, renormalised over them as ``classify``
renormalises, is pulled towards the teacher's (its label probabilities summed per branch) by
``T^2 KL(teacher_T || student_T)``, weighted by the teacher's mass on that branch point, and mixed with
``hard_label_weight`` x the hard label's NLL at that token. The NLL is over the whole vocabulary, so it also trains
the student's total probability on the labels; the KL alone does not (``classify`` renormalises, so a pure soft
student classifies the same, but a student that *generates* its answer needs ``hard_label_weight`` above 0, or the
base model's own habit of answering with a label). Every other completion
token (a shared prefix, the end of turn) keeps its NLL, and examples without a teacher entry keep the NLL on every
token. Sum over tokens / ``num_items_in_batch``, as TRL's NLL (so gradient accumulation scales the same).

For one-token labels (the triage task's K/M/T, the language codes) the branch point is the one position
``classify`` reads, and the KL is the exact KL between the teacher's and the student's label distributions. For
labels that share leading tokens (``zh-Hant``/``zh-Hans``) only the branch points on the trained label's own path
are in the sequence: the KL of the first branch point is exact, deeper ones are counted on the trained label's path
only (a branch the teacher visits but the hard label does not is not trained).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..errors import PromptDistillError

LossFunction = Callable[..., object]

# name -> compute_loss_func (None: TRL's completion-only NLL)
LOSSES: dict[str, LossFunction | None] = {
    "completion_nll": None,
}
DEFAULT_LOSS = "completion_nll"
SOFT_LOSS = "label_distillation"  # --distillation_target soft: LabelDistillationLoss, built per task
TEACHER_TARGETS = "teacher_targets"  # the batch key (popped before model.forward)
IGNORED = -100


class UnknownLossError(PromptDistillError, ValueError):
    """A loss name that is not in LOSSES."""


class DistillationTargetError(PromptDistillError, ValueError):
    """Soft targets that cannot be trained as asked (a flag out of range, a batch whose answers are not labels)."""


def loss_function(name: str) -> LossFunction | None:
    """The ``compute_loss_func`` the trainer gets for ``name``."""
    if name not in LOSSES:
        raise UnknownLossError(f"unknown training loss {name!r}; known: {', '.join(LOSSES)}.")
    return LOSSES[name]


def check_distillation_flags(temperature: float, hard_label_weight: float, min_confidence: float) -> None:
    if not (temperature > 0 and math.isfinite(temperature)):
        raise DistillationTargetError(f"--distillation_temperature must be above 0 (1 = the distributions as they "
                                      f"are), got {temperature}.")
    if not 0 <= hard_label_weight <= 1:
        raise DistillationTargetError(f"--hard_label_weight must be in [0, 1] (0 = pure soft), got "
                                      f"{hard_label_weight}.")
    if not 0 <= min_confidence <= 1:
        raise DistillationTargetError(f"--min_teacher_confidence must be in [0, 1], got {min_confidence}.")


class TeacherTargetsCollator:
    """Wraps the trainer's collator: the ``teacher_distribution`` column leaves the rows and comes back as one
    ``teacher_targets`` tensor with a row per example that has a trainable token (filler rows have none)."""

    def __init__(self, collator, num_labels: int, column: str):
        self.collator, self.num_labels, self.column = collator, num_labels, column

    def __call__(self, features):
        import torch

        rows, targets = [], []
        for feature in features:
            row = dict(feature)
            distribution = row.pop(self.column, None)
            if any(label != IGNORED for label in row.get("labels", row.get("input_ids", ()))):
                usable = distribution is not None and len(distribution) == self.num_labels
                targets.append(list(distribution) if usable else [math.nan] * self.num_labels)
            rows.append(row)
        batch = self.collator(rows)
        batch[TEACHER_TARGETS] = torch.tensor(targets, dtype=torch.float32).reshape(len(targets), self.num_labels)
        return batch


class LabelDistillationLoss:
    """``compute_loss_func`` for soft targets (see the module docstring); ``teacher_targets`` comes as a keyword."""

    def __init__(self, answer, temperature: float = 1.0, hard_label_weight: float = 0.0):
        from ..engines.label_tokens import Trie

        self.shared = len(answer.shared)
        self.trie = Trie.of([list(continuation) for continuation in answer.continuations])
        self.num_labels = len(answer.continuations)
        self.temperature, self.hard_label_weight = temperature, hard_label_weight
        self.children: dict[int, list[int]] = {}
        for node, parent in enumerate(self.trie.parents):
            self.children.setdefault(parent, []).append(node)
        # labels under each node: under[node] = the label indices whose answer passes through it
        self.under = [[] for _ in self.trie.tokens]
        for label, end in enumerate(self.trie.ends):
            for node in self.trie.ancestry(end):
                self.under[node].append(label)

    def __call__(self, outputs, labels, num_items_in_batch=None, teacher_targets=None):
        import torch
        import torch.nn.functional as F

        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        shift_logits, shift_labels = logits[:, :-1, :], labels[:, 1:]
        nll = F.cross_entropy(shift_logits.float().reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
                              ignore_index=IGNORED, reduction="none").reshape(shift_labels.shape)
        runs = completion_runs(labels)
        if teacher_targets is None or len(teacher_targets) != len(runs):
            raise DistillationTargetError(
                f"soft targets: the batch has {len(runs)} completions and "
                f"{'no' if teacher_targets is None else len(teacher_targets)} teacher target rows.")
        weights = torch.ones_like(nll)  # of each token's NLL
        soft_terms = []
        for (row, start, end), target in zip(runs, teacher_targets.tolist(), strict=True):
            if any(math.isnan(value) for value in target):
                continue  # no teacher entry: the hard label
            for position, kids, teacher, mass in self.branch_points(labels[row, start:end].tolist(), target):
                # the token at start + position is predicted by the logits at start + position - 1, which is
                # index start + position - 1 of the shifted tensors
                index = start + position - 1
                # the student's distribution over the branches, renormalised over them (what classify reads)
                log_q = torch.log_softmax(shift_logits[row, index, kids].float() / self.temperature, dim=-1)
                p = torch.tensor(teacher, dtype=log_q.dtype, device=log_q.device)
                kl = (torch.special.xlogy(p, p) - p * log_q).sum()
                soft_terms.append((1 - self.hard_label_weight) * mass * self.temperature ** 2 * kl)
                weights[row, index] = self.hard_label_weight
        total = (nll * weights).sum()
        if soft_terms:
            total = total + torch.stack(soft_terms).sum()
        count = num_items_in_batch if num_items_in_batch is not None else (shift_labels != IGNORED).sum()
        return total / torch.as_tensor(count, device=total.device).clamp(min=1)

    def branch_points(self, completion: list[int], target: list[float]):
        """``(position in the completion, child tokens, teacher's distribution over them, teacher's mass here)`` for
        every point where the labels branch on the path of ``completion``'s answer."""
        sharpened = [value ** (1 / self.temperature) for value in target]
        total = sum(sharpened)
        teacher = [value / total for value in sharpened] if total > 0 else target
        node, position = -1, self.shared
        while node in self.children:
            kids = self.children[node]
            if position >= len(completion):
                raise DistillationTargetError("soft targets: a completion ends inside a label's answer tokens.")
            token = completion[position]
            chosen = next((kid for kid in kids if self.trie.tokens[kid] == token), None)
            if chosen is None:
                raise DistillationTargetError(
                    f"soft targets: the completion's token {token} at answer position {position} starts no label "
                    "(the answer tokens differ from the ones the labels were tokenized to).")
            if len(kids) > 1:
                masses = [sum(teacher[label] for label in self.under[kid]) for kid in kids]
                here = sum(masses)
                if here > 0:
                    yield position, [self.trie.tokens[kid] for kid in kids], [m / here for m in masses], here
            node, position = chosen, position + 1


def completion_runs(labels) -> list[tuple[int, int, int]]:
    """``(row, start, end)`` of every run of trainable labels, in order: one per example (padding-free rows hold
    several examples, each completion preceded by its own prompt)."""
    runs = []
    for row, values in enumerate(labels.tolist()):
        start = None
        for index, value in enumerate([*values, IGNORED]):
            if value != IGNORED and start is None:
                start = index
            elif value == IGNORED and start is not None:
                runs.append((row, start, index))
                start = None
    return runs
