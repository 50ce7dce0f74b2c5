"""Clip sampling and geometric augmentation shared by every recipe (numpy, seeded by the caller).

- `sample_clip_indices`: a contiguous clip with a length drawn uniformly from a stage's range
  (DepthCrafter T in [1, 25] / [1, 110] / 45; DVD 45; GemDepth N = 32), optionally strided.
- `random_hflip`: one horizontal flip decision per clip (all frames flipped together).
- `resize_and_crop`: resize so the frame covers the output size, then crop; intrinsics follow.
- `GEMDEPTH_ASPECTS`: GemDepth's multi-aspect crops (App. A.2): width 518 and heights
  518, 392, 336, 294, 252, 168 (all multiples of 14).
"""

from __future__ import annotations

import cv2
import numpy as np
from vdepth_training.data.sequence import Sequence

GEMDEPTH_ASPECTS: tuple[tuple[int, int], ...] = ((518, 518), (392, 518), (336, 518), (294, 518), (252, 518), (168, 518))


def sample_clip_indices(
    num_frames: int,
    length_range: tuple[int, int],
    rng: np.random.Generator,
    *,
    stride: int = 1,
) -> np.ndarray:
    """A contiguous clip of `L ~ U{lo..hi}` frames (capped by what the sequence holds).

    Args:
        num_frames: frames in the source sequence (>= 1).
        length_range: inclusive (lo, hi) clip length.
        rng: numpy generator.
        stride: frame step inside the clip.

    Returns:
        (L,) int64 frame indices, increasing.
    """
    lo, hi = int(length_range[0]), int(length_range[1])
    if lo < 1 or hi < lo:
        raise ValueError(f"clip length range must satisfy 1 <= lo <= hi, got {length_range}")
    length = int(rng.integers(lo, hi + 1))
    max_len = (num_frames - 1) // stride + 1
    length = min(length, max_len)
    span = (length - 1) * stride + 1
    start = int(rng.integers(0, num_frames - span + 1))
    return start + stride * np.arange(length, dtype=np.int64)


def hflip(seq: Sequence) -> Sequence:
    """Mirror every frame left-right.

    Pixel u maps to W - 1 - u (pixel-centre coordinates), so cx -> W - 1 - cx; the mirrored camera
    is the original conjugated by diag(-1, 1, 1), so camera-to-world poses become F @ P @ F.
    """
    w = seq.size[1]
    intr = None
    if seq.intrinsics is not None:
        intr = seq.intrinsics.copy()
        intr[:, 0, 2] = (w - 1) - intr[:, 0, 2]
    poses = None
    if seq.poses is not None:
        flip = np.diag([-1.0, 1.0, 1.0, 1.0])
        poses = flip @ seq.poses @ flip
    return Sequence(
        rgb=np.ascontiguousarray(seq.rgb[:, :, ::-1]),
        target=np.ascontiguousarray(seq.target[:, :, ::-1]),
        valid=np.ascontiguousarray(seq.valid[:, :, ::-1]),
        target_kind=seq.target_kind,
        intrinsics=intr,
        poses=poses,
        metric=seq.metric,
        name=seq.name,
        source=seq.source,
        extra=dict(seq.extra),
    )


def random_hflip(seq: Sequence, rng: np.random.Generator, p: float = 0.5) -> Sequence:
    """Flip the whole clip with probability `p` (one decision for all frames)."""
    return hflip(seq) if p > 0 and rng.random() < p else seq


def resize_and_crop(
    seq: Sequence,
    size: tuple[int, int],
    rng: np.random.Generator | None = None,
) -> Sequence:
    """Resize so the frames cover `size` = (H, W) keeping the aspect ratio, then crop to it.

    RGB uses area/linear interpolation; target and mask use nearest so no depth is invented at
    edges. The crop is centred when `rng` is None, else uniformly random. Intrinsics are scaled and
    shifted to the output pixels (pixel-centre convention).
    """
    out_h, out_w = int(size[0]), int(size[1])
    h, w = seq.size
    scale = max(out_h / h, out_w / w)
    rh, rw = max(out_h, round(h * scale)), max(out_w, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    top = (rh - out_h) // 2 if rng is None else int(rng.integers(0, rh - out_h + 1))
    left = (rw - out_w) // 2 if rng is None else int(rng.integers(0, rw - out_w + 1))
    rgb, target, valid = [], [], []
    for i in range(seq.num_frames):
        rgb.append(cv2.resize(seq.rgb[i], (rw, rh), interpolation=interp)[top : top + out_h, left : left + out_w])
        t = cv2.resize(seq.target[i], (rw, rh), interpolation=cv2.INTER_NEAREST)
        v = cv2.resize(seq.valid[i].astype(np.uint8), (rw, rh), interpolation=cv2.INTER_NEAREST)
        target.append(t[top : top + out_h, left : left + out_w])
        valid.append(v[top : top + out_h, left : left + out_w] > 0)
    intr = None
    if seq.intrinsics is not None:
        intr = seq.intrinsics.copy()
        sx, sy = rw / w, rh / h
        intr[:, 0, 0] *= sx
        intr[:, 1, 1] *= sy
        intr[:, 0, 2] = (intr[:, 0, 2] + 0.5) * sx - 0.5 - left
        intr[:, 1, 2] = (intr[:, 1, 2] + 0.5) * sy - 0.5 - top
    return Sequence(
        rgb=np.stack(rgb),
        target=np.stack(target),
        valid=np.stack(valid),
        target_kind=seq.target_kind,
        intrinsics=intr,
        poses=seq.poses,
        metric=seq.metric,
        name=seq.name,
        source=seq.source,
        extra=dict(seq.extra),
    )


def pick_aspect(
    aspects: tuple[tuple[int, int], ...], rng: np.random.Generator, portrait: bool = False
) -> tuple[int, int]:
    """One (H, W) from `aspects` uniformly; transposed for portrait sources."""
    h, w = aspects[int(rng.integers(0, len(aspects)))]
    return (w, h) if portrait else (h, w)


__all__ = ["GEMDEPTH_ASPECTS", "hflip", "pick_aspect", "random_hflip", "resize_and_crop", "sample_clip_indices"]
