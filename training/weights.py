"""Fine-tuning starts: another run's weights into a model that may have grown since.

Weights are read with `vdepth_ros.models.load_state_dict_file` (a model folder, a checkpoint
folder of the trainer, DeepSpeed shards, a `checkpoint.pt`, released files), the package's one
reader; `STEP_PREFIX` is what `recipes.TrainingStep` puts before the model's parameters.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch
from torch import nn

from vdepth_ros.errors import ConfigError

log = logging.getLogger("vdepth_training")

#: prefix of the model's parameters in a checkpoint (`recipes.TrainingStep.model`)
STEP_PREFIX = "model."


def load_init_weights(model: nn.Module, state: dict[str, torch.Tensor], new_modules: Sequence[str] = ()) -> None:
    """Fine-tuning start: `state` into `model`, strictly, except that parameters of the modules in
    `new_modules` (added to the architecture since `state` was saved) may be absent and then keep
    their initialisation (zero-initialised outputs, so the model starts as the old one did).

    Raises:
        ConfigError: missing keys outside `new_modules`, or unexpected keys.
    """
    missing, unexpected = model.load_state_dict(state, strict=False)
    prefixes = tuple(f"{m}." for m in new_modules)
    bad = [k for k in missing if not (prefixes and k.startswith(prefixes))]
    if bad or unexpected:
        raise ConfigError(
            f"training.init does not fit the model: missing {bad[:5]}{'...' if len(bad) > 5 else ''}, "
            f"unexpected {list(unexpected)[:5]}{'...' if len(unexpected) > 5 else ''} "
            "(list modules new since that checkpoint in training.init_new_modules)"
        )
    if missing and int(os.environ.get("RANK", "0")) == 0:  # every rank loads the same file: said once
        log.info("new modules start from their initialisation: %s", sorted({k.split(".")[0] for k in missing}))


__all__ = ["STEP_PREFIX", "load_init_weights"]
