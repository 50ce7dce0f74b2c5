"""Run under torchrun by `test_training_preemption.py`: `python -m vdepth_training.train` whose
rank 0, halfway through writing the model file of its `KILL_AT_SAVE`-th checkpoint, SIGKILLs the
launcher and every rank (a node lost, the OOM killer, SLURM's SIGKILL after its grace time).

    KILL_AT_SAVE=4 python -m torch.distributed.run --nproc_per_node 2 test/training_killed_in_save.py --config ...
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import accelerate.checkpointing
import psutil

_save = accelerate.checkpointing.save
_model_saves = 0


def _save_then_die(obj: Any, f: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
    global _model_saves
    if Path(f).name.startswith("model") and os.environ.get("RANK", "0") == "0":
        _model_saves += 1
        if _model_saves == int(os.environ["KILL_AT_SAVE"]):
            _save(obj, f, *args, **kwargs)
            data = Path(f).read_bytes()
            Path(f).write_bytes(data[: len(data) // 2])  # the write was cut off
            launcher = psutil.Process().parent()
            for proc in [launcher, *launcher.children(recursive=True)]:
                if proc.pid != os.getpid():
                    proc.send_signal(signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
    return _save(obj, f, *args, **kwargs)


accelerate.checkpointing.save = _save_then_die

if __name__ == "__main__":
    from vdepth_training.train import _exit_without_finalizing, main

    _exit_without_finalizing(main())
