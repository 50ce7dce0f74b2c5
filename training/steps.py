"""The step loop of one stage (`StepLoop`, a part of `trainer.Trainer`): its batches, the loss, the check
that it is finite on every rank, the update, the held-out validation and the step's metrics line.

Data: one deterministic batch stream per stage segment; rank r of W takes batch
`position + micro * W + r` (`data.stream`), the position being the batches the ranks took before the
step (`TrainingProgress.stream_batches`: `step * grad_accum * W` for a run on one launch), so the ranks
partition one stream and W ranks with `grad_accum` a equal one rank with `grad_accum` a·W, up to float
summation order; a run resumed on another number of ranks or micro-batches reads on from the position
its checkpoint recorded. The loss-noise generator of a micro-batch is seeded by its batch index, not by
the rank. Logged losses
and metrics are means over the ranks; only the main process writes.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from vdepth_training.checkpoints import TrainingProgress, latest_checkpoint
from vdepth_training.data.dataset import SKIPPED_KEY
from vdepth_training.data.stream import rank_loader
from vdepth_training.ranks import TrainingFailedError
from vdepth_training.recipes import Recipe
from vdepth_training.running_stats import RankRunningStats
from vdepth_training.stages import Stage, stage_lr

from vdepth_ros.errors import ConfigError

log = logging.getLogger("vdepth_training")


def _next_batch(loader: Iterator[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The loader's next batch; a data mistake (ConfigError) raised in a loader worker process is
    re-raised with its own one-line message, not the worker's traceback that torch wraps around it."""
    try:
        return next(loader)
    except ConfigError as err:
        text = str(err)
        if text.startswith("Caught ConfigError") and ": " in text.rstrip().splitlines()[-1]:
            raise ConfigError(text.rstrip().splitlines()[-1].split(": ", 1)[1]) from None
        raise


def unwrapped(acc: Any, wrapped: nn.Module) -> nn.Module:
    """The module `acc.prepare` wrapped (DDP's `module`; under DeepSpeed its engine's, through accelerate).
    Only a DeepSpeed run asks accelerate's `unwrap_model`: it imports DeepSpeed wherever DeepSpeed is
    installed (to know its engine), which cost each rank of every other run that import at its first step."""
    from accelerate.utils import DistributedType

    if acc.distributed_type == DistributedType.DEEPSPEED:
        return acc.unwrap_model(wrapped)
    return wrapped.module if isinstance(wrapped, nn.parallel.DistributedDataParallel) else wrapped


def take_skipped(batch: dict[str, torch.Tensor]) -> int:
    """Remove the counts of clips skipped for a damaged file (`dataset.SKIPPED_KEY`, also under a
    paired stream's prefix) from `batch`; returns their sum."""
    keys = [k for k in batch if k == SKIPPED_KEY or k.endswith(f"/{SKIPPED_KEY}")]
    return sum(int(batch.pop(k).sum()) for k in keys)


def batch_generator(seed: int, origin: int, batch_index: int) -> torch.Generator:
    """The loss-noise generator of global batch `batch_index` of the segment starting at step
    `origin` (a pure function of the batch's position in the stream, the same on any rank)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + origin * 1009 + batch_index) % (2**63))


class StepLoop:
    """The steps of a stage, for `trainer.Trainer` (which sets these attributes and saves checkpoints)."""

    cfg: dict[str, Any]
    train_cfg: dict[str, Any]
    recipe: Recipe
    output_dir: Path
    history: list[dict[str, Any]]
    interrupted: bool
    _stop_requested: bool
    _doing: str
    _waiting: tuple[float, str] | None
    _step_seconds: float

    def _save(self, acc: Any, progress: TrainingProgress) -> None:
        raise NotImplementedError  # `Trainer._save`

    def _run_stage(
        self, acc: Any, wrapped: nn.Module, optimizer: Any, stage: Stage, progress: TrainingProgress, stop: int
    ) -> None:
        """Steps of `stage` from `progress` until the stage ends or the run reaches `stop`."""
        if progress.stage_step >= stage.steps:
            return
        self._doing = f"preparing the data of stage {stage.name}"
        self.recipe.prepare_data(stage, acc.process_index, acc.num_processes)
        acc.wait_for_everyone()
        self.recipe.start_stage(stage)
        loader = iter(rank_loader(self.recipe.batches(stage), start=progress.stream_batches, rank=acc.process_index,
                                  world=acc.num_processes, num_workers=int(self.train_cfg["num_workers"])))  # fmt: skip
        trainable = [p for p in unwrapped(acc, wrapped).parameters() if p.requires_grad]
        wrapped.train()
        running_stats = RankRunningStats(wrapped)
        every = int(self.train_cfg.get("checkpoint_every") or 0)
        validate_every = int(self.train_cfg.get("validate_every") or 0)
        held_out = self.recipe.validation_stage(stage) if validate_every else None
        if held_out is not None:
            self.recipe.prepare_data(held_out, acc.process_index, acc.num_processes)
            acc.wait_for_everyone()
            held_out_batches = self.recipe.batches(held_out)
        while progress.stage_step < stage.steps and progress.global_step < stop:
            self._doing = f"step {progress.global_step + 1}"
            record = self._step(acc, wrapped, optimizer, loader, trainable, running_stats, stage,
                                progress.stream_batches, progress.global_step)  # fmt: skip
            self._step_seconds = float(record["seconds"])
            progress.stage_step += 1
            progress.global_step += 1
            progress.stream_batches += int(self.train_cfg["grad_accum"]) * acc.num_processes
            if held_out is not None and progress.global_step % validate_every == 0:
                self._doing = f"validation after step {progress.global_step}"
                record["val/loss"] = self._validate(acc, wrapped, held_out_batches)
            self._log(acc, {"step": progress.global_step, "stage": stage.name, "stage_step": progress.stage_step,
                            **record})  # fmt: skip
            if every and progress.global_step % every == 0:
                self._save(acc, progress)
            if self.interrupted:
                break

    def _validate(self, acc: Any, wrapped: nn.Module, batches: Any) -> float:
        """The recipe's loss on the first `validate_batches` batches of the held-out stream (the
        same batches at every validation), without gradients; rank r takes batches r, r + W, ....

        The unwrapped module runs (DDP's forward would sync buffers, a collective that ranks with
        unequal numbers of batches would leave waiting); one sum over the ranks follows, which every
        rank joins whatever the number of batches and ranks."""
        module = unwrapped(acc, wrapped)
        module.eval()
        total, count, seed = 0.0, 0, int(self.train_cfg["seed"])
        with torch.no_grad(), acc.autocast():
            for b in range(acc.process_index, int(self.train_cfg["validate_batches"]), acc.num_processes):
                batch = batches[b]
                take_skipped(batch)
                batch = {k: v.to(acc.device) for k, v in batch.items()}
                loss, _ = module(batch, batch_generator(seed, -1, b))
                total, count = total + float(loss), count + 1
        module.train()
        sums = acc.reduce(torch.tensor([total, count], dtype=torch.float64, device=acc.device), "sum").cpu().tolist()
        return sums[0] / max(sums[1], 1.0)

    def _step(
        self,
        acc: Any,
        wrapped: nn.Module,
        optimizer: Any,
        loader: Any,
        trainable: list,
        running_stats: RankRunningStats,
        stage: Stage,
        position: int,
        step: int,
    ) -> dict[str, Any]:
        """One optimizer step of `grad_accum` micro-batches, the batches of the segment's stream from `position`
        on; returns the rank-averaged terms. BatchNorm running statistics are merged across the ranks after
        each forward (`running_stats`)."""
        t0 = time.perf_counter()
        base = stage_lr(stage, step)
        for group in optimizer.param_groups:  # the lr is a pure function of the step (stages.stage_lr)
            group["lr"] = base * self.recipe.lr_scale(stage, group["role"])
        accum, seed, clip = (
            int(self.train_cfg["grad_accum"]),
            int(self.train_cfg["seed"]),
            self.cfg["optimizer"]["grad_clip"],
        )
        sums: dict[str, float] = {}
        skipped = 0
        for micro in range(accum):
            self._waiting = (time.monotonic(), f"the batch of step {step + 1}")
            batch = _next_batch(loader)
            self._waiting = None
            skipped += take_skipped(batch)
            batch = {k: v.to(acc.device) for k, v in batch.items()}
            first = position + micro * acc.num_processes  # rank 0's batch of this micro-step
            with acc.accumulate(wrapped):
                running_stats.before_forward(acc)
                loss, terms = wrapped(batch, batch_generator(seed, stage.origin, first + acc.process_index))
                self._check_finite(acc, loss, step, first)
                acc.backward(loss)
                running_stats.merge(acc)  # after backward: the forward's graph holds the statistics it updated
                if acc.sync_gradients and clip:
                    acc.clip_grad_norm_(trainable, float(clip))
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            for k, v in {"loss": loss, **{f"loss/{n}": t for n, t in terms.items()}}.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / accum
        names = sorted(sums)
        values = [sums[k] for k in names] + [float(skipped), float(self._stop_requested)]  # a stop on one stops all
        means = acc.reduce(torch.tensor(values, dtype=torch.float64, device=acc.device), "mean").cpu().tolist()
        self.interrupted = self.interrupted or means.pop() > 0
        skipped_by_all = round(means.pop() * acc.num_processes)
        record = dict(zip(names, means, strict=True))
        if skipped_by_all:  # clips drawn again for a damaged file, on every rank together (`dataset.SKIPPED_KEY`)
            record["data/skipped"] = skipped_by_all
        return {**record, "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}

    def _check_finite(self, acc: Any, loss: torch.Tensor, step: int, first_index: int) -> None:
        """Stop every rank at the same micro-batch, before the update, when the loss is NaN or infinite
        on any of them: the ranks compare their losses first (one small gather), so they raise the same
        TrainingFailedError naming the step and the ranks, instead of one rank raising alone while the
        others wait in the gradient reduction (or stepping on with weights the failing rank never got)."""
        mine = loss.detach().float().reshape(1)
        losses = (acc.gather(mine) if acc.num_processes > 1 else mine).cpu().tolist()
        bad = [(r, v) for r, v in enumerate(losses) if not math.isfinite(v)]
        if not bad:
            return
        where = ", ".join(f"rank {r}: {v} (batch {first_index + r})" for r, v in bad)
        if acc.num_processes == 1:
            where = f"{bad[0][1]}, batch {first_index}"
        last = latest_checkpoint(self.output_dir)
        raise TrainingFailedError(
            f"non-finite loss in step {step + 1} ({where}): stopped before the update"
            + (" on every rank" if acc.num_processes > 1 else "")
            + (f"; {last.name} is the last good checkpoint" if last else "")
            + "; a resumed run meets the same batches: check their data, or lower optimizer.lr or set "
            "optimizer.grad_clip (--resume --allow-config-change)"
        )

    def _log(self, acc: Any, record: dict[str, Any]) -> None:
        self.history.append(record)
        if not acc.is_main_process:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with (self.output_dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.train_cfg.get("log_with"):
            acc.log({k: v for k, v in record.items() if isinstance(v, int | float)}, step=record["step"])
        if record["step"] % int(self.train_cfg.get("log_every") or 1) == 0:
            terms = " ".join(f"{k}={v:.4g}" for k, v in record.items() if k.startswith(("loss", "val/")))
            log.info("step %d [%s] %s", record["step"], record["stage"], terms)


__all__ = ["StepLoop", "batch_generator", "take_skipped"]
