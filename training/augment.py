"""Augmentation of the default model's synthetic clips: random zoom, heavy photometric changes and
optional camera effects (motion blur, JPEG), each a pure function of a seeded generator, so the
batch of index `b` is augmented identically wherever and whenever it is drawn."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

#: the keys of a recipe's `augment:` section (`photometric`; the zoom is `data.zoom`) and their types:
#: a probability or an amplitude is a number, a range [lo, hi] a list of numbers
AUGMENT_TYPES: dict[str, type] = {
    **dict.fromkeys(("grayscale_p", "vignette_p", "blur_p", "noise_p", "motion_blur_p", "jpeg_p"), float),
    **dict.fromkeys(("white_balance", "hue_shift", "flicker", "motion_blur_px"), float),
    **dict.fromkeys(("saturation", "contrast", "brightness", "gamma", "blur_sigma", "noise_std"), list[float]),
    "jpeg_quality": list[float],
}
AUGMENT_KEYS = frozenset(AUGMENT_TYPES)


def _u(g: torch.Generator, lo: float, hi: float) -> float:
    return float(lo + (hi - lo) * torch.rand((), generator=g))


def zoom_crop(
    frames: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, factor: float, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random zoom-in by `factor` (crop 1/factor of each side at a random place, resize back).

    `frames` (T, 3, H, W) bilinear; `target`/`valid` (T, H, W) nearest, so no depth is invented.
    """
    if factor <= 1.0:
        return frames, target, valid
    _, _, h, w = frames.shape
    ch, cw = max(2, round(h / factor)), max(2, round(w / factor))
    top = int(torch.randint(0, h - ch + 1, (), generator=g))
    left = int(torch.randint(0, w - cw + 1, (), generator=g))
    fr = F.interpolate(
        frames[:, :, top : top + ch, left : left + cw], size=(h, w), mode="bilinear", align_corners=False
    )
    tv = torch.stack([target, valid.float()], 1)[:, :, top : top + ch, left : left + cw]
    tv = F.interpolate(tv, size=(h, w), mode="nearest")
    return fr, tv[:, 0], tv[:, 1] > 0.5


def _gauss_kernel(sigma: float) -> torch.Tensor:
    r = max(1, math.ceil(2.5 * sigma))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def photometric(frames: torch.Tensor, aug: dict[str, Any], g: torch.Generator) -> torch.Tensor:
    """Heavy colour/brightness/blur/noise augmentation of one clip `(T, 3, H, W)` in [0, 1].

    One draw per clip (so the video stays a video) plus a small per-frame brightness flicker
    (auto-exposure), as real handheld cameras do.
    """
    t = frames.shape[0]
    x = frames
    if torch.rand((), generator=g) < aug.get("grayscale_p", 0.0):
        x = x.mean(1, keepdim=True).expand_as(x)
    # white balance / tint, saturation, hue rotation (approximate, in RGB)
    wb = 1 + aug["white_balance"] * (2 * torch.rand(3, generator=g) - 1)
    x = x * wb.view(1, 3, 1, 1)
    gray = x.mean(1, keepdim=True)
    x = gray + (x - gray) * _u(g, *aug["saturation"])
    ang = _u(g, -1, 1) * aug["hue_shift"] * 2 * math.pi
    c, s = math.cos(ang), math.sin(ang)
    k = 1 / 3
    sq = math.sqrt(k)
    rot = torch.tensor(
        [
            [c + (1 - c) * k, k * (1 - c) - sq * s, k * (1 - c) + sq * s],
            [k * (1 - c) + sq * s, c + k * (1 - c), k * (1 - c) - sq * s],
            [k * (1 - c) - sq * s, k * (1 - c) + sq * s, c + k * (1 - c)],
        ]
    )
    x = torch.einsum("ij,tjhw->tihw", rot, x)
    # contrast, brightness (+ per-frame flicker), gamma
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = mean + (x - mean) * _u(g, *aug["contrast"])
    flick = 1 + aug["flicker"] * (2 * torch.rand(t, generator=g) - 1)
    x = x * (_u(g, *aug["brightness"]) * flick).view(t, 1, 1, 1)
    x = x.clamp(0, 1) ** _u(g, *aug["gamma"])
    if torch.rand((), generator=g) < aug["vignette_p"]:
        h, w = x.shape[-2:]
        yy = torch.linspace(-1, 1, h).view(h, 1)
        xx = torch.linspace(-1, 1, w).view(1, w)
        x = x * (1 - _u(g, 0.1, 0.5) * (xx**2 + yy**2) / 2)
    if torch.rand((), generator=g) < aug["blur_p"]:
        kern = _gauss_kernel(_u(g, *aug["blur_sigma"]))
        r = len(kern) // 2
        n = x.shape[0] * 3
        y = x.reshape(n, 1, *x.shape[-2:])
        y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), kern.view(1, 1, 1, -1))
        y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), kern.view(1, 1, -1, 1))
        x = y.reshape_as(x)
    if torch.rand((), generator=g) < aug["noise_p"]:
        std = _u(g, *aug["noise_std"])
        x = x + std * torch.randn(x.shape, generator=g)
    x = x.clamp(0, 1)
    # Camera effects of real video that renders lack; drawn only when enabled, so recipes without
    # them keep their random stream (and their runs) unchanged.
    if aug.get("motion_blur_p", 0.0) > 0 and torch.rand((), generator=g) < aug["motion_blur_p"]:
        x = motion_blur(x, _u(g, 0.0, math.pi), _u(g, 0.0, 1.0) * float(aug["motion_blur_px"]), g)
    if aug.get("jpeg_p", 0.0) > 0 and torch.rand((), generator=g) < aug["jpeg_p"]:
        x = jpeg_roundtrip(x, round(_u(g, *aug["jpeg_quality"])))
    return x


def motion_blur(frames: torch.Tensor, angle: float, length: float, g: torch.Generator) -> torch.Tensor:
    """Linear motion blur of a clip `(T, 3, H, W)`: one direction per clip (the camera's motion),
    a length per frame between half and all of `length` pixels (its speed varies)."""
    out = []
    for frame in frames:
        n = _u(g, 0.5, 1.0) * length
        r = math.ceil(n / 2)
        if r < 1:
            out.append(frame)
            continue
        t = torch.linspace(-n / 2, n / 2, 4 * r + 1)
        xs = torch.round(t * math.cos(angle)).long() + r
        ys = torch.round(t * math.sin(angle)).long() + r
        kern = torch.zeros(2 * r + 1, 2 * r + 1)
        kern[ys, xs] = 1.0
        kern = (kern / kern.sum()).expand(3, 1, -1, -1)
        y = F.conv2d(F.pad(frame[None], (r, r, r, r), mode="replicate"), kern, groups=3)
        out.append(y[0])
    return torch.stack(out)


def jpeg_roundtrip(frames: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode and decode every frame of a clip `(T, 3, H, W)` in [0, 1] as JPEG at `quality`
    (blocking and ringing, as in compressed camera streams). The RGB frame goes to OpenCV as if it
    were BGR, which swaps red and blue in JPEG's luma weights; harmless for an augmentation."""
    import cv2

    out = []
    for frame in frames:
        img = (frame.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        dec = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        out.append(torch.from_numpy(dec.astype(np.float32) / 255.0).permute(2, 0, 1))
    return torch.stack(out)


def augment_batch(
    batch: dict[str, torch.Tensor], seed: int, index: int, zoom: tuple[float, float], aug: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """Zoom + photometric augmentation of every clip of batch `index`, from a generator seeded with
    (`seed`, `index`); returns frames, target and valid."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(index))
    frames, target, valid = [], [], []
    for b in range(batch["frames"].shape[0]):
        fr, tg, va = zoom_crop(batch["frames"][b], batch["target"][b], batch["valid"][b], _u(g, *zoom), g)
        frames.append(photometric(fr, aug, g))
        target.append(tg)
        valid.append(va)
    return {"frames": torch.stack(frames), "target": torch.stack(target), "valid": torch.stack(valid)}


__all__ = [
    "AUGMENT_KEYS",
    "AUGMENT_TYPES",
    "augment_batch",
    "jpeg_roundtrip",
    "motion_blur",
    "photometric",
    "zoom_crop",
]
