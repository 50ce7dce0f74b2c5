"""BatchNorm running statistics on several ranks: the values one process with the same global batch has.

Each rank's forward updates its own BatchNorm running mean and variance from its own batch, and DDP
then broadcasts rank 0's buffers at the next synchronised forward: the ranks' other batches never
reach them (a model with BatchNorm in training mode, e.g. `vda_lite` with `frozen_bn: false`, evaluated
and deployed with statistics of 1/W of its data). `RankRunningStats.merge`, after every micro-step's
forward, gives every rank the statistics that one process taking the ranks' batches in the stream's
order (rank 0's, then rank 1's, ...: `data.stream`) would have: each update is affine in the running
value, so rank r's change from the common starting value is its batches' contribution, composed in
rank order (`compose`). One all-gather of those buffers per micro-step; none for a model without
BatchNorm in training mode (frozen or absent), and none on one process.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def compose(
    start: torch.Tensor, start_count: int, ends: list[torch.Tensor], counts: list[int], momentum: float | None
) -> torch.Tensor:
    """The running value after the ranks' updates in rank order, from each rank's own result.

    `start`: the value every rank began with (after `start_count` updates); `ends[r]`: rank r's after
    its `counts[r]` updates from `start`. BatchNorm's update is `x <- (1 - a) x + a s` with `a` the
    momentum, or `1 / n` at the n-th update without one (a cumulative mean)."""
    if momentum is None:  # a mean over every batch: each rank's sum of batch values, added up
        total = start * start_count
        for end, k in zip(ends, counts, strict=True):
            total = total + end * (start_count + k) - start * start_count
        return total / max(start_count + sum(counts), 1)
    value = start
    for end, k in zip(ends, counts, strict=True):
        keep = (1.0 - momentum) ** k
        value = keep * value + (end - keep * start)
    return value


class RankRunningStats:
    """The BatchNorm layers of `model` that update their running statistics in training, merged across
    the ranks after each forward (module docstring). Build it after `model.train()`."""

    def __init__(self, model: nn.Module) -> None:
        self.norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]
        self._start: list[tuple[torch.Tensor, torch.Tensor, int]] = []

    def before_forward(self, acc: Any) -> None:
        """Remember the (equal on every rank) statistics a micro-step starts from."""
        if acc.num_processes == 1 or not self.norms:
            return
        self._start = [
            (m.running_mean.detach().double().clone(), m.running_var.detach().double().clone(),
             int(m.num_batches_tracked))
            for m in self.norms
        ]  # fmt: skip

    def merge(self, acc: Any) -> None:
        """Give every rank the statistics of all the ranks' batches of this micro-step, in rank order (after the
        backward: BatchNorm's graph holds the buffers, and a checkpointed forward runs again in it)."""
        if acc.num_processes == 1 or not self.norms:
            return
        world = acc.num_processes
        mine = torch.cat(
            [torch.cat([m.running_mean.detach().double(), m.running_var.detach().double(),
                        torch.tensor([float(int(m.num_batches_tracked) - n0)], dtype=torch.float64,
                                     device=m.running_mean.device)])
             for m, (_, _, n0) in zip(self.norms, self._start, strict=True)]
        ).to(acc.device)  # fmt: skip
        every = acc.gather(mine.unsqueeze(0)).reshape(world, -1).cpu()
        at = 0
        for m, (mean0, var0, n0) in zip(self.norms, self._start, strict=True):
            c = m.num_features
            means = [every[r, at : at + c] for r in range(world)]
            variances = [every[r, at + c : at + 2 * c] for r in range(world)]
            counts = [round(float(every[r, at + 2 * c])) for r in range(world)]
            at += 2 * c + 1
            with torch.no_grad():
                m.running_mean.copy_(compose(mean0.cpu(), n0, means, counts, m.momentum))
                m.running_var.copy_(compose(var0.cpu(), n0, variances, counts, m.momentum))
                m.num_batches_tracked.fill_(n0 + sum(counts))


__all__ = ["RankRunningStats", "compose"]
