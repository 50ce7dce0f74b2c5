"""Scene-cut detection from image statistics, so alignment restarts instead of fitting across a cut.

A window that spans a cut (or keeps an anchor frame from before it) holds two unrelated scenes
for which a video model has no common scale, and every fit across them is wrong; the stream has
to restart at the cut. Each frame is reduced to a 12x16 RGB thumbnail and a joint 8x8x8 colour
histogram; the cut score of a frame against the previous one is the geometric mean

    score = sqrt((1 - ncc(thumbnails)) * min(1, 2 * tv(histograms)))

(`ncc`: normalised cross-correlation, `tv`: total-variation distance): a cut changes both what is
where and which colours occur, while a fast pan mostly changes the first and an exposure change
the second. A frame is a cut when its score exceeds the median score of the last `history` frames
by `threshold`, so a shaky or fast camera, whose scores are high all the time, does not read as a
string of cuts; frames of a camera at rest (score ~0) do not lower that median, so moving again
after a stop is not a cut either. On the development clips (HoloLens, the DAVIS and Sora demo videos, the DeepV2D
NYU/ScanNet/KITTI/golf clips; 7-Scenes not used) the default 0.5 flagged none of ~400 consecutive
pairs and 98.9 % of the 182 joins between two different clips (`benchmarks/scene_cuts.py`).

Why not a library: OpenCV's histogram comparison or PySceneDetect would do the statistics, but
`stream/` is numpy only (the layer table), and the test needs only a few array operations.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from vdepth_ros.errors import ConfigError

_GRID = (12, 16)
_LEVELS = 8  # per channel: 512 joint colour bins
_SAMPLES = 4096  # histogram samples per frame
_STATIC = 0.02  # scores at most this (an unchanged view) do not enter the running median


Signature = tuple[np.ndarray, np.ndarray]


def frame_signature(image: np.ndarray) -> Signature:
    """(standardised 12x16x3 thumbnail, joint 8x8x8 colour histogram) of an image.

    Args:
        image: `(H, W, 3)` RGB uint8 (or float in [0, 1]), or `(H, W)` gray; H >= 12, W >= 16.
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[..., None].repeat(3, axis=2)
    if img.dtype != np.uint8:
        img = (np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    gh, gw = _GRID
    h, w = (img.shape[0] // gh) * gh, (img.shape[1] // gw) * gw
    if h == 0 or w == 0:
        raise ValueError(f"image {img.shape[:2]} is smaller than the {gh}x{gw} signature grid")
    # block sums one axis at a time (10x faster than one mean over two strided axes); the sums
    # are exact integers, so the float32 mean equals `mean(axis=(1, 3), dtype=float32)` bit for bit
    # (its float32 partial sums are exact too while a block sums below 2**24: images up to 4K)
    rows = img[:h, :w].reshape(gh, h // gh, w * 3).sum(axis=1, dtype=np.uint32)
    sums = rows.reshape(gh, gw, w // gw, 3).sum(axis=2)
    thumb = sums.astype(np.float32) / np.float32((h // gh) * (w // gw))
    thumb -= thumb.mean()
    norm = float(np.sqrt((thumb * thumb).sum()))
    thumb = thumb / norm if norm > 1e-3 else np.zeros_like(thumb)
    step = max(1, int(np.sqrt(img.shape[0] * img.shape[1] / _SAMPLES)))
    q = (img[::step, ::step] >> 5).reshape(-1, 3).astype(np.int64)  # 256 / 8 levels
    hist = np.bincount((q[:, 0] * _LEVELS + q[:, 1]) * _LEVELS + q[:, 2], minlength=_LEVELS**3)
    return thumb, hist / max(int(hist.sum()), 1)


def cut_score(a: Signature, b: Signature) -> float:
    """Geometric mean of `1 - ncc` and `2 * tv` of two `frame_signature`s, in [0, 1]."""
    ncc = float((a[0] * b[0]).sum()) if a[0].any() and b[0].any() else 0.0  # flat: no structure
    tv = 0.5 * float(np.abs(a[1] - b[1]).sum())
    return float(np.sqrt(min(max(1.0 - ncc, 0.0), 1.0) * min(2.0 * tv, 1.0)))


class SceneCutDetector:
    """Flags a frame as the first of a new scene (see the module docstring).

    Args:
        threshold: a frame is a cut when its score exceeds the median of the last `history`
            scores by at least this much (0 < threshold <= 1).
        history: frames whose scores make the running median.
    """

    def __init__(self, threshold: float = 0.5, history: int = 30) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"scene cut threshold must be in (0, 1], got {threshold}")
        self.threshold = float(threshold)
        self._scores: deque[float] = deque(maxlen=max(1, int(history)))
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame and the running scores (stream restart)."""
        self._prev: Signature | None = None
        self._scores.clear()
        self.last_score = 0.0

    def update(self, image: np.ndarray) -> bool:
        """Add the next frame; True when it starts a new scene. Its score is `last_score`."""
        sig = frame_signature(image)
        prev, self._prev = self._prev, sig
        if prev is None:
            self.last_score = 0.0
            return False
        score = cut_score(prev, sig)
        base = float(np.median(self._scores)) if self._scores else 0.0
        self.last_score = score
        if score - base >= self.threshold:
            self._scores.clear()  # the new scene starts its own statistics
            return True
        if score > _STATIC:  # a camera at rest says nothing about how fast it usually moves
            self._scores.append(score)
        return False
