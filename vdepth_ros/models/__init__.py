"""Model families (PyTorch only; no ROS, no windowing policy).

`build_model(family, **config)` constructs a family by registry name; `load_model(dir)` rebuilds
a saved model from `config.json` + `model.safetensors`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from vdepth_ros.errors import ConfigError, ModelLoadError
from vdepth_ros.models.base import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    ExportSignature,
    InputConstraints,
    VideoDepthModel,
    load_state_dict_file,
    read_config,
    register_to_config,
)

# registry name -> "module:Class"; modules import lazily so a family's heavy deps load on demand.
MODEL_FAMILIES: dict[str, str] = {
    "vda": "vdepth_ros.models.vda:VideoDepthAnything",
    "vda_lite": "vdepth_ros.models.vda_lite:VideoDepthAnythingLite",
    "gemdepth": "vdepth_ros.models.gemdepth:GemDepth",
    "depthcrafter": "vdepth_ros.models.depthcrafter:DepthCrafter",
    "onestep": "vdepth_ros.models.onestep:OneStepDepth",
    "dvd": "vdepth_ros.models.dvd:DVD",
    "fiffdepth": "vdepth_ros.models.fiffdepth:FiffDepth",
}


def family_class(family: str) -> type[VideoDepthModel]:
    try:
        target = MODEL_FAMILIES[family]
    except KeyError:
        raise ConfigError(f"unknown model family {family!r}; known: {sorted(MODEL_FAMILIES)}") from None
    module_name, cls_name = target.split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def build_model(family: str, **config: Any) -> VideoDepthModel:
    return family_class(family)(**config)


def load_model(directory: str | Path, *, strict: bool = True) -> VideoDepthModel:
    """Rebuild a model saved by `VideoDepthModel.save_pretrained`."""
    from safetensors.torch import load_model as load_into

    directory = Path(directory)
    cfg = read_config(directory)
    family = cfg.pop("_family", None)
    cfg.pop("_class_name", None)
    if family is None:
        raise ModelLoadError(f"{directory / CONFIG_NAME} has no _family entry")
    model = build_model(family, **cfg)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelLoadError(f"{weights} not found")
    missing, unexpected = load_into(model, str(weights), strict=False)
    if strict and (missing or unexpected):
        raise ModelLoadError(f"{weights}: missing keys {missing[:10]}, unexpected keys {unexpected[:10]}")
    return model.eval()


__all__ = [
    "CONFIG_NAME",
    "MODEL_FAMILIES",
    "WEIGHTS_NAME",
    "ExportSignature",
    "InputConstraints",
    "VideoDepthModel",
    "build_model",
    "family_class",
    "load_model",
    "load_state_dict_file",
    "read_config",
    "register_to_config",
]
