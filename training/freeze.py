"""Parameter freezing by layer kind (spatial vs temporal), as the stage schedules need it.

DepthCrafter Supp. A.2: "temporal layers" are the temporal transformers and temporal resnet blocks;
everything else in the UNet is "spatial". Stage 2 trains temporal layers only, stage 3 spatial layers
only; the one-step student (003 §4.1) trains spatial layers only.

A parameter is temporal when a dotted component of its name matches one of `TEMPORAL_MARKERS`
(diffusers SVD UNet: `temporal_transformer_blocks`, `temporal_res_block`, `time_pos_embed`,
`time_mixer`; VDA/GemDepth heads: `motion_modules`/`temporal`; GemDepth ASTT: `time_blocks`). A
model may override the table with a `temporal_parameter_markers` attribute. Note that the UNet's
diffusion-timestep embedding (`time_embedding`, `time_proj`) is *not* temporal: it conditions on σ.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from torch import nn

LayerKind = Literal["spatial", "temporal"]
Selection = Literal["all", "none", "spatial", "temporal"]

TEMPORAL_MARKERS: tuple[str, ...] = (
    "temporal_transformer_blocks",
    "temporal_res_block",
    "time_pos_embed",
    "time_mixer",
    "motion_modules",
    "motion_module",
    "time_blocks",
    "temporal",
)


def layer_kind(name: str, markers: Iterable[str] = TEMPORAL_MARKERS) -> LayerKind:
    """ "temporal" if a dotted component of `name` contains a marker, else "spatial"."""
    parts = name.split(".")
    for marker in markers:
        if any(marker in part for part in parts):
            return "temporal"
    return "spatial"


def _markers(model: nn.Module) -> tuple[str, ...]:
    return tuple(getattr(model, "temporal_parameter_markers", TEMPORAL_MARKERS))


def set_trainable(
    model: nn.Module,
    select: Selection,
    *,
    within: str | None = None,
    include: str | None = None,
    exclude: str | None = None,
) -> list[str]:
    """Set `requires_grad` per parameter by layer kind; returns the names left trainable.

    Args:
        model: any module.
        select: "all", "none", "spatial" (temporal frozen) or "temporal" (spatial frozen).
        within: only parameters under this submodule prefix (e.g. "unet") may be trainable;
            everything else (VAE, CLIP) is frozen.
        include: regex; parameters matching it are trainable regardless of `select` (e.g. LoRA
            adapters "lora_", a new head).
        exclude: regex; parameters matching it are frozen regardless of the rest.
    """
    if select not in ("all", "none", "spatial", "temporal"):
        raise ValueError(f"select must be all|none|spatial|temporal, got {select!r}")
    markers = _markers(model)
    inc = re.compile(include) if include else None
    exc = re.compile(exclude) if exclude else None
    prefix = None if not within else within.rstrip(".") + "."
    trainable = []
    for name, p in model.named_parameters():
        inside = prefix is None or name.startswith(prefix)
        on = inside and (select == "all" or (select != "none" and layer_kind(name, markers) == select))
        if inc is not None and inc.search(name):
            on = True
        if exc is not None and exc.search(name):
            on = False
        p.requires_grad_(on)
        if on:
            trainable.append(name)
    return trainable


def count_by_kind(model: nn.Module) -> dict[str, int]:
    """Number of scalar parameters per layer kind (for logs and tests)."""
    markers = _markers(model)
    out = {"spatial": 0, "temporal": 0}
    for name, p in model.named_parameters():
        out[layer_kind(name, markers)] += p.numel()
    return out


__all__ = ["TEMPORAL_MARKERS", "LayerKind", "Selection", "count_by_kind", "layer_kind", "set_trainable"]
