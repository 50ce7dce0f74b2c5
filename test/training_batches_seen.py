"""Run by `test_training_preemption.py` alone or under torchrun: `python -m vdepth_training.train` whose
ranks append the content key of every batch they read (`key`, the clip's hash: its identity) to
`$BATCHES_SEEN/rank<r>.jsonl`, one line per batch, in the order the rank reads them.

    BATCHES_SEEN=DIR python -m torch.distributed.run --nproc_per_node 2 test/training_batches_seen.py --config ...
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vdepth_training import steps as steps_module

_next_batch = steps_module._next_batch


def _recorded_next_batch(loader: Any) -> Any:
    batch = _next_batch(loader)
    seen = Path(os.environ["BATCHES_SEEN"]) / f"rank{os.environ.get('RANK', '0')}.jsonl"
    with seen.open("a") as f:
        f.write(json.dumps(batch["key"].tolist()) + "\n")
    return batch


steps_module._next_batch = _recorded_next_batch

if __name__ == "__main__":
    from vdepth_training.train import _exit_without_finalizing, main

    _exit_without_finalizing(main())
