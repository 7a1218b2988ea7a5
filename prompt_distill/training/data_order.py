"""The order in which training examples reach the processes, the same for one process and for N.

Under ``accelerate launch --num_processes N`` each process takes every N-th batch of one shared order. Two things
in the stock path break "each example once per epoch, in the single-process order":

* the Trainer's ``RandomSampler`` is replaced by accelerate's ``SeedableRandomSampler`` only in some setups, and
* accelerate's ``even_batches`` (on by default) completes the last round of batches with examples from the start
  of the epoch, so up to ``N x batch - 1`` examples are trained twice per epoch.

``EpochPermutation`` yields one seeded permutation of the real examples per epoch (the same on every process and in
a single-process run), then *filler* rows up to a whole round of ``N x per-device batch``. A filler row has no
trainable token (every label is -100), so it adds nothing to the loss, to the token count the loss is averaged
over, or to the gradients: the last optimizer step of an epoch sees exactly the examples that a single process
would put in it. ``SeenExamples`` records which rows each process actually collated, so the run record can show it.
"""

from __future__ import annotations

import hashlib
import json
from itertools import zip_longest

import torch
from torch.utils.data import Sampler

EXAMPLE_INDEX = "example_index"
IGNORED_LABEL = -100
FILLER_TOKENS = 2


class EpochPermutation(Sampler[int]):
    """A permutation of ``range(num_examples)`` seeded by ``seed + epoch``, padded with ``filler_index`` to a
    multiple of ``round_size`` (world size x per-device batch)."""

    def __init__(self, num_examples: int, filler_index: int, round_size: int, seed: int):
        if num_examples < 1 or round_size < 1:
            raise ValueError(f"need examples and a round size, got {num_examples} and {round_size}")
        self.num_examples = num_examples
        self.filler_index = filler_index
        self.round_size = round_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer at the start of every epoch (through accelerate's DataLoaderShard)."""
        self.epoch = epoch

    def real_order(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.num_examples, generator=generator).tolist()

    def fillers(self) -> int:
        return -self.num_examples % self.round_size

    def __iter__(self):
        yield from self.real_order() + [self.filler_index] * self.fillers()

    def __len__(self) -> int:
        return self.num_examples + self.fillers()


def add_index_and_filler(dataset):
    """The tokenized training set with an ``example_index`` column and one filler row at index ``len(dataset)``.

    The filler is the first row cut to two tokens with every label ignored: real token ids, no trainable token.
    """
    count = len(dataset)
    indexed = dataset.add_column(EXAMPLE_INDEX, list(range(count)))
    filler = {}
    for key, value in indexed[0].items():
        if key == EXAMPLE_INDEX:
            filler[key] = count
        elif key == "labels":
            filler[key] = [IGNORED_LABEL] * FILLER_TOKENS
        elif isinstance(value, list):
            filler[key] = value[:FILLER_TOKENS]
        else:
            filler[key] = value
    if "labels" not in filler:
        raise ValueError(f"the tokenized dataset has no labels column (columns: {indexed.column_names})")
    return indexed.add_item(filler)


class SeenExamples:
    """Wraps the data collator: removes ``example_index`` from each row and remembers ``(epoch, indices)`` per batch
    (rows without the column, such as ``trainer.train_dataset[i]``, pass through unrecorded).

    Runs in the training process only when ``dataloader_num_workers`` is 0 (workers collate in other processes).
    """

    def __init__(self, collator, current_epoch):
        self.collator = collator
        self.current_epoch = current_epoch
        self.batches: list[tuple[int, list[int]]] = []

    def __call__(self, features):
        if not features or EXAMPLE_INDEX not in features[0]:  # rows of the plain train_dataset
            return self.collator(features)
        rows = [dict(feature) for feature in features]
        indices = [row.pop(EXAMPLE_INDEX) for row in rows]
        self.batches.append((self.current_epoch(), indices))
        return self.collator(rows)


def summarize_order(batches_per_process: list[list[tuple[int, list[int]]]], filler_index: int) -> dict:
    """What the processes trained on, per epoch: real examples seen, distinct ones, fillers, and a digest of the
    global order (process p's m-th batch is batch ``m x N + p`` of the shared order, so interleaving the processes
    round by round rebuilds it; a single-process run of the same data and seed has the same digest)."""
    epochs = sorted({epoch for batches in batches_per_process for epoch, _ in batches})
    seen, distinct, fillers, orders = [], [], [], []
    for epoch in epochs:
        per_process = [[indices for batch_epoch, indices in batches if batch_epoch == epoch]
                       for batches in batches_per_process]
        global_order = [index for round_ in zip_longest(*per_process, fillvalue=[]) for batch in round_
                        for index in batch]
        real = [index for index in global_order if index != filler_index]
        seen.append(len(real))
        distinct.append(len(set(real)))
        fillers.append(len(global_order) - len(real))
        orders.append(real)
    digest = hashlib.sha256(json.dumps(orders).encode()).hexdigest()
    return {"epochs": epochs, "examples_seen_per_epoch": seen, "distinct_examples_per_epoch": distinct,
            "filler_rows_per_epoch": fillers, "order_sha256": digest}
