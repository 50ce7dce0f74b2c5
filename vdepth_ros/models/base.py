"""The interface every model family implements, and its save/load format.

A family is an `nn.Module` subclass of `VideoDepthModel`. Its constructor arguments are its
config (typed, with defaults, JSON-serialisable); `save_pretrained(dir)` writes them to
`config.json` next to `model.safetensors`, and `load_model(dir)` rebuilds the module from them.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from vdepth_ros.errors import ModelLoadError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

Alignment = Literal["chain_ls", "keyframe", "graph", "none"]


@dataclass(frozen=True)
class InputConstraints:
    """What a family needs from its input windows.

    Attributes:
        multiple_of: H and W must be multiples of this (14 for DINOv2, 16 for Wan, 64 for SVD).
        window: default window length in frames.
        overlap: default overlap between consecutive windows, in frames.
        frames_rule: "any", or "4n+1" (Wan VAE: window padded by repeating the last frame).
        keyframes: window slots used for keyframe alignment (VDA/GemDepth), or None.
        alignment: default stitching strategy for this family.
        value_range: range of the input pixels `predict` expects (RGB, float).
        output_kind: "disparity" (relative, affine-ambiguous) or "depth" (metric, metres).
        max_window: largest window the architecture supports (temporal position table), or None.
    """

    multiple_of: int = 1
    window: int = 32
    overlap: int = 10
    frames_rule: Literal["any", "4n+1"] = "any"
    keyframes: tuple[int, ...] | None = None
    alignment: Alignment = "chain_ls"
    value_range: tuple[float, float] = (0.0, 1.0)
    output_kind: Literal["disparity", "depth"] = "disparity"
    max_window: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExportSignature:
    """The fixed-shape graph an exporter traces.

    `module.forward(frames)` takes `frames` of shape `(1, T, 3, H, W)`, float32 RGB in
    `value_range`, and returns `(1, T, H, W)` float32 (disparity or depth, per `output_kind`).
    Per-model constants (time embeddings, empty text context, normalisation) are folded in.
    """

    module: nn.Module
    frames: int
    height: int
    width: int
    input_names: tuple[str, ...] = ("frames",)
    output_names: tuple[str, ...] = ("disparity",)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, int, int, int, int]:
        return (1, self.frames, 3, self.height, self.width)


class VideoDepthModel(nn.Module):
    """Base class of every family: `predict` a window of frames to per-frame disparity.

    Subclasses set `family` (registry name), decorate `__init__` with `@register_to_config`, call
    `super().__init__()` first, and accept only JSON-serialisable keyword arguments with defaults;
    those arguments are recorded as the config (a subclass whose `__init__` lacks the decorator is
    refused when it is defined).
    """

    family: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_registers_config", False):
            raise TypeError(
                f"{cls.__name__}.__init__ must be decorated with @register_to_config "
                "(vdepth_ros.models.base): its arguments are the model's config.json"
            )

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments of this instance (a copy)."""
        return json.loads(json.dumps(getattr(self, "_vdepth_config", {})))

    @property
    def input_constraints(self) -> InputConstraints:
        raise NotImplementedError

    def predict(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames `(T, 3, H, W)` RGB in `value_range` -> `(T, H, W)` non-negative disparity."""
        raise NotImplementedError

    def export_signature(self, frames: int, height: int, width: int) -> ExportSignature:
        """The fixed-shape traceable graph for `(1, frames, 3, height, width)` input."""
        raise NotImplementedError

    # -- persistence -------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, weights_dtype: torch.dtype | None = None) -> Path:
        """Write `config.json` + `model.safetensors` to `directory`.

        `weights_dtype` (e.g. `torch.float16`) stores floating-point tensors in that type to halve
        the file; `load_model` casts them back into the module's own (float32) parameters.
        """
        from safetensors.torch import save_file, save_model

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"_family": self.family, "_class_name": type(self).__name__, **self.config}
        (out / CONFIG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if weights_dtype is None:
            save_model(self, str(out / WEIGHTS_NAME))
        else:
            state = {
                k: (v.to(weights_dtype) if v.is_floating_point() else v).contiguous()
                for k, v in self.state_dict().items()
            }
            save_file(state, str(out / WEIGHTS_NAME))
        # safetensors writes its file owner-only (0600); give it config.json's ordinary mode, so a node
        # running as another user (a container, a service account) can read the weights it is given.
        os.chmod(out / WEIGHTS_NAME, stat.S_IMODE((out / CONFIG_NAME).stat().st_mode))
        return out


def register_to_config(init: Callable[..., None]) -> Callable[..., None]:
    """Decorator for a family's `__init__`: its arguments, defaults applied and made JSON types
    (tuples -> lists), become the model's `config` and so its `config.json`.

    The most-derived class's arguments are the config (its `__init__` runs first; a parent's
    decorated `__init__`, called through `super().__init__(...)`, records nothing more).
    After diffusers' `register_to_config`; diffusers' `ConfigMixin` itself does not fit: its
    decorator lets a parent's `__init__` overwrite the child's values, stores a
    `_use_default_values` key, keeps tuples as tuples in `config`, and brings a second way to
    save and load (`save_config` / `from_config`) beside `save_pretrained` / `load_model`.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def recording_init(self: VideoDepthModel, *args: Any, **kwargs: Any) -> None:
        if not hasattr(self, "_vdepth_config"):
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            config = {k: v for k, v in bound.arguments.items() if k != "self"}
            object.__setattr__(self, "_vdepth_config", _jsonable(config))
        init(self, *args, **kwargs)

    recording_init.__signature__ = signature  # type: ignore[attr-defined]  # as before: read by callers
    recording_init._registers_config = True  # type: ignore[attr-defined]
    return recording_init


def _jsonable(cfg: dict[str, Any]) -> dict[str, Any]:
    def conv(v: Any) -> Any:
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        if isinstance(v, list):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        if v is None or isinstance(v, bool | int | float | str):
            return v
        raise TypeError(f"model config value {v!r} ({type(v).__name__}) is not JSON-serialisable")

    return {k: conv(v) for k, v in cfg.items()}


def read_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise ModelLoadError(f"{path} not found: expected a model folder with {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"{path} does not hold a JSON object")
    return cfg


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint safely: safetensors first, else `torch.load(weights_only=True)`."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"checkpoint {path} not found")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except SafetensorError as err:
            raise ModelLoadError(f"{path} is not a readable safetensors file ({err})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle payloads that are not plain tensors are refused
        raise ModelLoadError(f"cannot load {path} with weights_only=True: {err}") from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path} does not hold a state dict")
    return state
