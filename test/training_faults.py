"""Run under torchrun by `test_training_rank_faults.py`: `python -m vdepth_training.train` with one
fault on one rank, as a multi-GPU job meets it (`FAULT=<kind>:<rank>:<step>`):

- `raise`: a RuntimeError in that rank's forward (CUDA out of memory) at that step;
- `nan`: that rank's loss is NaN at that step;
- `kill`: that rank SIGKILLs itself at that step (the OOM killer);
- `stall`: that rank's next batch takes 600 s (a data loader that hangs on a network disk);
- `hang`: that rank's forward at that step takes 600 s (a stuck kernel or lock, not its data);
- `long_step`: that rank's forward at that step lasts until its launcher's SIGTERM (at most 60 s; a long step
  that sees nothing of another node's loss, which its launcher sees first); it writes `$FAULT_READY` as it begins;
- `save`: that rank's checkpoint save at that step fails with ENOSPC (the disk is full);
- `slow_save`: that rank's checkpoint saves from that step on take 3 s longer (a large model on a slow disk);
- `validate`: that rank's validation at that step raises (a held-out file it cannot read);
- `diverge`: after that step that rank's weights change (a rank-dependent computation).
- `sigterm`: that rank gets a SIGTERM as that step begins (`sigterm_group`: the launcher and every rank get one, as
  SLURM signals every process of a job step at its time limit or a preemption); step `end`: as the ranks compare
  their final parameters, after the last step and final/;
- `start_raise`: that rank fails building its model (out of memory), after the process group started;
- `start_kill`: that rank is SIGKILLed as the ranks compare their data, their first exchange (step: 0).
- `start_hold`: that rank, ignoring SIGTERM, never joins the ranks comparing their data (a node whose disk
  hangs), while the others wait for it in that exchange; they write `$FAULT_READY` as they enter it (step: 0).

    FAULT=raise:1:3 python -m torch.distributed.run --nproc_per_node 2 test/training_faults.py --config ...
"""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path
from typing import Any

import accelerate.checkpointing
import psutil
import torch
from vdepth_training import steps as steps_module
from vdepth_training.recipes.base import TrainingStep
from vdepth_training.trainer import Trainer

KIND, RANK, STEP = os.environ["FAULT"].split(":")
AT = -1 if STEP == "end" else int(STEP)  # the global step of the fault
MINE = int(os.environ.get("RANK", "0")) == int(RANK)
_at = {"step": 0}

_step = steps_module.StepLoop._step


def _counted_step(self: Any, acc: Any, wrapped: Any, optimizer: Any, loader: Any, *args: Any) -> Any:
    _at["step"] = args[-1] + 1  # the global step this call makes
    if MINE and KIND == "kill" and _at["step"] == AT:
        os.kill(os.getpid(), signal.SIGKILL)
    if MINE and KIND in ("sigterm", "sigterm_group") and _at["step"] == AT:
        _sigterm()
    record = _step(self, acc, wrapped, optimizer, loader, *args)
    if MINE and KIND == "diverge" and _at["step"] == AT:
        with torch.no_grad():
            next(acc.unwrap_model(wrapped).parameters()).add_(1e-3)
    return record


def _sigterm() -> None:
    """SIGTERM to this rank (`sigterm`) or to its launcher and every rank (`sigterm_group`)."""
    launcher = psutil.Process().parent()
    group = [launcher, *launcher.children(recursive=True)] if KIND == "sigterm_group" else []
    for proc in [p for p in group if p.pid != os.getpid()]:
        proc.send_signal(signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)


_next_batch = steps_module._next_batch


def _stalled_next_batch(loader: Any) -> Any:
    if MINE and KIND == "stall" and _at["step"] == AT:
        time.sleep(600)
    return _next_batch(loader)


_forward = TrainingStep.forward


def _until_sigterm(seconds: float) -> None:
    """Wait for this rank's SIGTERM, at most `seconds`; the rank's own handler (a stop after this step) gets it too."""
    handler, got = signal.getsignal(signal.SIGTERM), []

    def noted(signum: int, frame: Any) -> None:
        got.append(signum)
        if callable(handler):
            handler(signum, frame)

    signal.signal(signal.SIGTERM, noted)
    Path(os.environ["FAULT_READY"]).write_text(str(os.getpid()))
    deadline = time.monotonic() + seconds
    try:
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        signal.signal(signal.SIGTERM, handler)


def _faulty_forward(self: TrainingStep, batch: Any, generator: Any) -> Any:
    loss, terms = _forward(self, batch, generator)
    if MINE and _at["step"] == AT and KIND == "raise":
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
    if MINE and _at["step"] == AT and KIND == "hang":
        time.sleep(600)
    if MINE and _at["step"] == AT and KIND == "long_step":
        _until_sigterm(60.0)
    if MINE and _at["step"] == AT and KIND == "nan":
        loss = loss * torch.tensor(float("nan"))
    return loss, terms


_save = accelerate.checkpointing.save


def _full_disk(obj: Any, f: Any, *args: Any, **kwargs: Any) -> Any:
    if MINE and KIND == "save" and _at["step"] == AT:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
    if MINE and KIND == "slow_save" and _at["step"] >= AT and str(f).endswith("model.safetensors"):
        time.sleep(3.0)
    return _save(obj, f, *args, **kwargs)


_validate = steps_module.StepLoop._validate


def _faulty_validate(self: Any, *args: Any) -> Any:
    if MINE and KIND == "validate" and _at["step"] == AT:
        raise OSError(errno.EIO, "Input/output error (injected)", "held-out/000001.npy")
    return _validate(self, *args)


_build_model = Trainer._build_model


def _faulty_build_model(self: Any, **kwargs: Any) -> Any:
    if MINE and KIND == "start_raise":
        raise RuntimeError("CUDA out of memory. Tried to allocate 8.00 GiB (injected)")
    return _build_model(self, **kwargs)


_check_ranks_see_same_run = Trainer._check_ranks_see_same_run


def _killed_comparing_data(self: Any, acc: Any) -> Any:
    if MINE and KIND == "start_kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if KIND == "start_hold" and MINE:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(600)
    elif KIND == "start_hold":
        Path(os.environ["FAULT_READY"]).write_text(str(os.getpid()))
    return _check_ranks_see_same_run(self, acc)


_check_ranks_agree = Trainer._check_ranks_agree


def _sigterm_at_the_end(acc: Any, model: Any) -> Any:
    if MINE and KIND in ("sigterm", "sigterm_group") and STEP == "end":
        _sigterm()
        time.sleep(0.5)  # (the signal lands while this rank is in the check, not after it)
    return _check_ranks_agree(acc, model)


Trainer._build_model = _faulty_build_model
Trainer._check_ranks_agree = staticmethod(_sigterm_at_the_end)
Trainer._check_ranks_see_same_run = _killed_comparing_data
steps_module.StepLoop._step = _counted_step
steps_module._next_batch = _stalled_next_batch
steps_module.StepLoop._validate = _faulty_validate
TrainingStep.forward = _faulty_forward
accelerate.checkpointing.save = _full_disk

if __name__ == "__main__":
    from vdepth_training.train import _exit_without_finalizing, main

    _exit_without_finalizing(main())
