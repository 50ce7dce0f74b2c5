"""Model weights from whatever a run left behind: a model folder, a checkpoint, a legacy file."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from vdepth_ros.errors import ConfigError

log = logging.getLogger("vdepth_training")

#: prefix of the model's parameters in a checkpoint (`recipes.TrainingStep.model`)
STEP_PREFIX = "model."


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The model's state dict stored at `path`, which may be

    - a model folder (`save_pretrained`: `model.safetensors`) or a `.safetensors` file;
    - a checkpoint folder of the trainer (`checkpoints/checkpoint_<step>`: accelerate's
      `model.safetensors` of the training step, or DeepSpeed's `pytorch_model/` shards, read with
      DeepSpeed's own `get_fp32_state_dict_from_zero_checkpoint`);
    - a `checkpoint.pt` of the former `train_default` trainer (`{"model": state_dict, ...}`).

    Raises:
        ConfigError: nothing readable at `path`.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_file() and path.suffix == ".pt":
        state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    elif path.is_file():
        state = load_file(str(path))
    elif (path / "model.safetensors").is_file():
        state = load_file(str(path / "model.safetensors"))
    elif (path / "pytorch_model").is_dir():
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        state = get_fp32_state_dict_from_zero_checkpoint(str(path), tag="pytorch_model")
    else:
        raise ConfigError(f"no weights at {path} (a model folder, checkpoint folder, .safetensors or checkpoint.pt)")
    if any(k.startswith(STEP_PREFIX) for k in state):  # a training-step checkpoint
        state = {k[len(STEP_PREFIX) :]: v for k, v in state.items() if k.startswith(STEP_PREFIX)}
    return state


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
    if missing:
        log.info("new modules start from their initialisation: %s", sorted({k.split(".")[0] for k in missing}))


__all__ = ["STEP_PREFIX", "load_init_weights", "read_weights"]
