"""One deterministic stream of training batches, partitioned across ranks.

A *batch stream* maps a global batch index `b` to a batch (a dict of tensors) as a pure function
of `b`; from the stream position `p` (the batches taken so far, `checkpoints.TrainingProgress`) the
trainer draws its `m`-th batch from there on rank `r` of `W` as batch `b = p + m * W + r`. So every rank
reads a disjoint part of one stream, the union over ranks of an optimizer step's micro-batches does
not depend on how many ranks share it (2 ranks x 1 micro-batch = 1 rank x 2 accumulated
micro-batches), and a resumed run continues at the exact batch it stopped at, also on another number
of ranks or micro-batches (a position that is not a multiple of `W`). The map-style stream is loaded
by a `DataLoader` with `batch_size=None`, so loader workers prepare batches in parallel without
changing the order.
"""

from __future__ import annotations

import itertools
import signal
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from vdepth_training.data.dataset import ClipDataset, collate_clips

Batch = dict[str, torch.Tensor]


class ClipBatches(Dataset):
    """Batch `b` of a `ClipDataset`: its items `b * batch_size ... (b + 1) * batch_size - 1`, collated."""

    def __init__(self, dataset: ClipDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset) // self.dataset.batch_size

    def __getitem__(self, b: int) -> Batch:
        bs = self.dataset.batch_size
        return collate_clips([self.dataset[b * bs + i] for i in range(bs)])


class PairedBatches(Dataset):
    """Batch `b` of `main` plus batch `b` of `extra` under `prefix` (FiffDepth: each batch is half
    synthetic clips with GT, half real images with pseudo-labels, `pseudo/frames` ...)."""

    def __init__(self, main: Dataset, extra: Dataset, prefix: str) -> None:
        self.main, self.extra, self.prefix = main, extra, prefix

    def __len__(self) -> int:
        return len(self.main)  # type: ignore[arg-type]

    def __getitem__(self, b: int) -> Batch:
        return {**self.main[b], **{f"{self.prefix}/{k}": v for k, v in self.extra[b].items()}}


class MappedBatches(Dataset):
    """`fn(b, batches[b])`: a deterministic per-batch transform (e.g. augmentation seeded by `b`)."""

    def __init__(self, batches: Dataset, fn: Callable[[int, Batch], Batch]) -> None:
        self.batches, self.fn = batches, fn

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __getitem__(self, b: int) -> Batch:
        return self.fn(b, self.batches[b])


class RankSampler(Sampler[int]):
    """Global batch indices of one rank from stream position `start`: `start + m * world + rank`, m = 0, 1, ...."""

    def __init__(self, start: int, rank: int, world: int) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} not in [0, {world})")
        self.start, self.rank, self.world = int(start), int(rank), int(world)

    def __iter__(self) -> Iterator[int]:
        return (self.start + m * self.world + self.rank for m in itertools.count())


def _leave_stop_signals_to_the_rank(worker_id: int) -> None:
    """Loader workers ignore SIGINT and SIGTERM: torchrun forwards them to the rank's whole process
    group and SLURM sends SIGTERM to every process, and a worker that died of one ended its rank
    with "DataLoader worker ... is killed by signal" instead of the step and checkpoint the rank
    finishes (`Trainer`). The workers end with the loader or the rank, as always."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def rank_loader(batches: Dataset, *, start: int, rank: int, world: int, num_workers: int = 0) -> DataLoader:
    """An endless loader of this rank's batches from stream position `start` on (see module docstring)."""
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs = {"prefetch_factor": 2, "persistent_workers": False, "worker_init_fn": _leave_stop_signals_to_the_rank}
    return DataLoader(
        batches, batch_size=None, sampler=RankSampler(start, rank, world), num_workers=num_workers, **kwargs
    )


__all__ = ["Batch", "ClipBatches", "MappedBatches", "PairedBatches", "RankSampler", "rank_loader"]
