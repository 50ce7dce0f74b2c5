"""On-disk cache of frozen-encoder and teacher latents, keyed by clip identity.

The papers never run the frozen parts during training: DepthCrafter caches the VAE latents of video
and depth (Supp. A.1, "latent caching"); the one-step student is distilled from cached 5-step
teacher latents (003 §3.2.1, no decoding during training). `ClipDataset` gives every clip a key
a content hash of its frames and target (`dataset.clip_key`), so every rank and every stage that
draws the same clip finds the same entry; with `data.fixed_clips: true` the same clips recur every
epoch, so after the first pass (or after `python -m vdepth_training.train ... --cache-only`, which
fills the cache for every stage, split across the ranks) every lookup hits.

Files: `<root>/<name>@<producer>/<key hex>.safetensors` holding one tensor `"value"` per clip; a
write goes to a temporary file renamed into place, so ranks that compute the same entry never see a
torn file. `<producer>` fingerprints what computed the entries (`cached(..., producers=...)`: the
frozen VAE, the teacher, the pseudo-labelling model folder): a cache shared by runs with other
weights (another labeller, teacher or base checkpoint) keeps their entries apart instead of handing
one run the other's latents.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

#: frozen modules' weight fingerprints, hashed once per process (they do not change while cached)
_MODULE_PRINTS: weakref.WeakKeyDictionary[torch.nn.Module, str] = weakref.WeakKeyDictionary()


def producer_fingerprint(producers: Sequence[Any]) -> str:
    """12 hex digits naming what computes a cache entry: modules by their weights
    (`vdepth_ros.models.state_fingerprint`, once per module and process), model folders by
    `folder_fingerprint`, anything else by its text."""
    from vdepth_ros.models import state_fingerprint

    h = hashlib.sha256()
    for producer in producers:
        if isinstance(producer, torch.nn.Module):
            if (printed := _MODULE_PRINTS.get(producer)) is None:
                printed = _MODULE_PRINTS[producer] = state_fingerprint(producer)
            h.update(printed.encode())
        elif isinstance(producer, Path):
            h.update(folder_fingerprint(producer).encode())
        else:
            h.update(repr(producer).encode())
        h.update(b"|")
    return h.hexdigest()[:12]


def folder_fingerprint(folder: Path) -> str:
    """A model folder's identity without reading its weights: its path, `config.json` and each
    weight file's size and modification time (another model, or the same folder pulled again)."""
    from vdepth_ros.paths import CONFIG_NAME, WEIGHT_SUFFIXES

    parts = [str(folder.resolve())]
    try:
        parts.append((folder / CONFIG_NAME).read_text())
        parts += [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(folder.iterdir())
                  if p.suffix in WEIGHT_SUFFIXES]  # fmt: skip
    except OSError:
        pass
    return "\n".join(parts)


class LatentCache:
    """Per-clip tensors on disk.

    Args:
        root: cache folder (created on demand).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def path(self, name: str, key: torch.Tensor) -> Path:
        """The file of entry `name` for one clip key (`dataset.clip_key`, any int64 vector)."""
        return self.root / name / ("".join(f"{int(v):016x}" for v in key.tolist()) + ".safetensors")

    def get_or_compute(self, name: str, keys: torch.Tensor, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """`compute()` -> (B, ...) for the batch, unless every item of `keys` (B, 3) is cached.

        Cached values are returned on CPU in their stored dtype (`cached` moves them).
        """
        from safetensors.torch import load_file, save_file

        paths = [self.path(name, k) for k in keys]
        if all(p.is_file() for p in paths):
            self.hits += 1
            return torch.stack([load_file(str(p))["value"] for p in paths])
        self.misses += 1
        value = compute()
        for p, v in zip(paths, value, strict=True):
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(f"{p.stem}.{os.getpid()}.tmp")  # one per process: ranks may race
            try:
                save_file({"value": v.detach().to("cpu").contiguous()}, str(tmp))
                tmp.replace(p)  # atomic: a crash never leaves a truncated entry
            finally:  # a failed write (a full disk, Ctrl-C) leaves no partial file behind
                tmp.unlink(missing_ok=True)
        return value


def cached(
    cache: LatentCache | None,
    name: str,
    keys: torch.Tensor | None,
    compute: Callable[[], torch.Tensor],
    like: torch.Tensor,
    producers: Sequence[Any] = (),
) -> torch.Tensor:
    """`compute()` through `cache` when both exist, returned on `like`'s device, contiguous.

    `producers`: what `compute` depends on besides the clip (frozen modules, a model folder as a
    `Path`): entries of other producers are kept apart (`producer_fingerprint` in the entry name).

    Contiguous matters: VAE encoders can return channels-last latents, and on CPU torch's
    channels-last GroupNorm backward crashes (SIGSEGV, torch 2.13) when the norm's affine
    parameters are frozen, as in DepthCrafter's temporal-only stage.
    """
    if cache is None or keys is None:
        return compute().contiguous()
    if producers:
        name = f"{name}@{producer_fingerprint(producers)}"
    return cache.get_or_compute(name, keys, compute).to(like.device).contiguous()


__all__ = ["LatentCache", "cached", "folder_fingerprint", "producer_fingerprint"]
