"""Run under torchrun (or `accelerate launch`) by `test_training_distributed.py`: every recipe's tiny
config, straight through and stopped-then-resumed, with the same public `Trainer` API the CLI
uses; each rank saves its final parameters (`rank<r>.safetensors`) so the test can compare ranks.

    python -m torch.distributed.run --standalone --nproc_per_node 2 test/training_ranks.py OUT vda dvd ...
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_support import CONFIGS

#: recipe -> (stage steps, global step to stop at before resuming); multi-stage stops cross boundaries
SCHEDULES: dict[str, tuple[list[int], int]] = {
    "vda": ([3], 2),  # three steps: checkpoint rotation, and a kill after the first checkpoint
    "gemdepth": ([1, 2], 2),  # resumes inside stage 2 (GEM frozen)
    "dvd": ([2], 1),
    "fiffdepth": ([2], 1),
    "depthcrafter": ([1, 1, 1], 1),  # resumes at the stage-1/2 boundary
    "onestep": ([2], 1),
    "onestep_decoder": ([2], 1),
    "default": ([1, 1], 1),  # a continue stage: the optimizer carries over the boundary
}


def tiny_config(name: str, root: Path, **training: Any) -> dict[str, Any]:
    """The recipe's tiny config, shortened to `SCHEDULES`, on 4 clips so that ranks see different ones."""
    from vdepth_training.config import load_config

    steps, _ = SCHEDULES[name]
    if name == "default":
        path = root / "default_tiny.yaml"
        if not path.is_file():  # both ranks may get here: each writes its own file, then renames
            part = path.with_suffix(f".{os.getpid()}.part")
            part.write_text(yaml.safe_dump(default_tiny(root)))
            os.replace(part, path)  # atomic: the other rank never reads a half-written file
        cfg = load_config(path, overrides={"training": training} if training else None)
    else:
        cfg = load_config(CONFIGS / f"{name}.yaml", tiny=True,
                          overrides={"training": training, "data": {"num_samples": 4}})  # fmt: skip
        cfg["data"]["sources"] = [{**s, "count": 2} for s in cfg["data"]["sources"]]
    cfg["stages"] = [{**st, "steps": n} for st, n in zip(cfg["stages"], steps, strict=True)]
    cfg["training"].update(checkpoint_every=1, keep_checkpoints=2, log_every=1)
    return cfg


def default_tiny(root: Path) -> dict[str, Any]:
    """The shipped default recipe (its `vda_lite` family) on a tiny head and two tiny renders (rendered by
    the ranks), with the encoder's BatchNorm statistics trained (`frozen_bn: false`): the ranks must
    agree on them, and with one process, as on every parameter (`running_stats`)."""
    from vdepth_training.config import DEFAULT_RECIPE

    from vdepth_ros.models.vda_lite import VideoDepthAnythingLite

    cfg = yaml.safe_load(DEFAULT_RECIPE.read_text())
    cfg["model"] = {"family": "vda_lite", "config": {**VideoDepthAnythingLite.tiny_config(), "frozen_bn": False}}
    cfg["data"].update(seeds=[0, 2], frames=6, render_size=[64, 80], clip_length=[2, 3], size=[32, 64],
                       root=str(root / "default_data"), render_workers=1)  # fmt: skip
    cfg["training"].pop("export_weights_dtype")
    cfg["training"].update(threads=1)
    cfg["stages"] = [
        {"name": "s1", "steps": 1, "lr": 3e-4, "warmup_steps": 1},
        {"name": "s2", "steps": 1, "lr": 2e-4, "restart": False, "loss": {"w_frame_level": 2.0}},
    ]
    return cfg


def save_rank_state(trainer: Any, folder: Path) -> None:
    from accelerate import PartialState
    from safetensors.torch import save_file

    rank = PartialState().process_index
    state = {k: v.detach().float().cpu().contiguous().clone() for k, v in trainer.model.state_dict().items()}
    save_file(state, str(folder / f"rank{rank}.safetensors"))


def run(name: str, out: Path, **training: Any) -> None:
    from vdepth_training.trainer import Trainer

    _, stop = SCHEDULES[name]
    straight = Trainer(tiny_config(name, out, **training), out / name / "straight")
    straight.fit()
    save_rank_state(straight, out / name / "straight")
    Trainer(tiny_config(name, out, **training), out / name / "resumed").fit(max_steps=stop)
    resumed = Trainer(tiny_config(name, out, **training), out / name / "resumed")
    resumed.fit(resume=True)
    save_rank_state(resumed, out / name / "resumed")


def _without_deepspeeds_cpu_allreduce_op() -> None:
    """Under `accelerate launch` with DeepSpeed on CPU ranks, DeepSpeed builds a C++ shared-memory allreduce
    (`deepspeed_shm_comm`) at its first start: about a minute on 2 cores, in every fresh CI checkout. Marked
    incompatible, DeepSpeed takes torch.distributed's (gloo) allreduce, as every other test here; ZeRO-2's
    partitioning, checkpoints and export, what the test checks, do not change. GPU ranks never build it."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() != "true":
        return
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def main(argv: list[str]) -> int:
    from accelerate import PartialState

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    _without_deepspeeds_cpu_allreduce_op()
    torch.set_num_threads(1)
    out, names = Path(argv[0]), argv[1:]
    training = json.loads(names.pop(0)[len("--training=") :]) if names and names[0].startswith("--training=") else {}
    failed = 0
    for name in names:
        try:
            run(name, out, **training)
        except Exception:  # report every recipe, fail at the end
            failed += 1
            (out / name).mkdir(parents=True, exist_ok=True)
            rank = PartialState().process_index
            (out / name / f"error{rank}.txt").write_text(traceback.format_exc())
            traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
