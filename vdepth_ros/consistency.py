"""Temporal consistency of a depth video: the optical-flow warping error (no ground truth needed)
and the papers' TAE (ground-truth camera poses).

Flicker is what users of video depth complain about most (anchors: FlashDepth #4/#11), and the
papers' temporal metric (TAE) needs ground-truth camera poses, which a robot's own recording
usually lacks. The flow warping error needs only the images: for each pair of consecutive
frames, dense optical flow of the images says where each pixel of frame t-1 went in frame t;
a temporally consistent depth video has about the same depth there. Per pair:

    OPW_t = mean over M_t of |D_{t-1}(x) - D_t(x + F(x))| / ((D_{t-1}(x) + D_t(x + F(x))) / 2)

with F the forward flow t-1 -> t and M_t the pixels whose flow passes the forward-backward check
(occlusions and flow failures excluded) and whose depths are valid in both frames. The video's
value is the mean over pairs.

After the OPW metric of NVDS (Wang et al., "Neural Video Depth Stabilizer", ICCV 2023), with
deliberate differences: OpenCV's DIS flow on a copy at most `max_width` pixels wide instead of RAFT
(CPU, ~ms per pair), and a symmetric relative difference instead of an absolute one, so the number
does not depend on the unit or scale of the depth (metric, `range` or a protocol fit). Like TAE
it does not separate flicker from true change: a camera moving along its axis changes the depth
of everything by its own motion (about 1 % per frame for 2 cm per frame at 2 m), a floor for every
method on the same video. Compare methods on the same video, not numbers across videos.

TAE (Depth Any Video; VDA `benchmark/eval/eval_tae.py`), used by `vdepth-eval` and by
`vdepth-flicker --pose-topic`, so it sits here, below both: the aligned predicted depth of frame k
is back-projected with the intrinsics, moved into frame k+1 with the camera poses, splatted to the
nearest pixel and compared (AbsRel) to the predicted depth of frame k+1; the same from k+1 back to
k; summed over all adjacent pairs and divided by 2 (T - 1); reported x100 as VDA does. Deviation:
when several points land on one pixel the nearest one is kept (a z-buffer) instead of whichever
was written last, which is order-dependent.
"""

from __future__ import annotations

from collections import OrderedDict, deque

import cv2
import numpy as np

from vdepth_ros.encodings import grey_at_most


class FlowWarpingError:
    """Streaming flow warping error (module docstring); state is one previous frame.

    Args:
        max_width: images (and depth) are compared on a copy at most this wide.
        max_fb_error_px: largest forward-backward flow disagreement of a kept pixel, in the
            pixels of that copy.
    """

    def __init__(self, max_width: int = 320, max_fb_error_px: float = 1.0) -> None:
        self.max_width = int(max_width)
        self.max_fb_error_px = float(max_fb_error_px)
        self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        self.errors: list[float] = []
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (a stream restart: the next frame starts a new pair chain)."""
        self._grey: np.ndarray | None = None
        self._depth: np.ndarray | None = None

    @property
    def mean(self) -> float | None:
        """Mean over the pairs so far, or None before the first scored pair."""
        return float(np.mean(self.errors)) if self.errors else None

    def add(self, rgb: np.ndarray, depth: np.ndarray) -> float | None:
        """Score the pair (previous frame, this frame); None for a first frame or no valid pixel.

        Args:
            rgb: `(H, W, 3)` uint8 RGB (or `(H, W)` grey) of the frame.
            depth: `(h, w)` depth (or disparity) of the frame, any resolution, NaN/<= 0 invalid.
        """
        grey = grey_at_most(rgb, self.max_width)
        size = (grey.shape[1], grey.shape[0])
        d = np.asarray(depth, dtype=np.float32)
        if d.shape != grey.shape:
            d = cv2.resize(d, size, interpolation=cv2.INTER_NEAREST)  # no blending across depth edges
        d = np.where(np.isfinite(d) & (d > 0), d, np.nan).astype(np.float32)
        prev_grey, prev_depth = self._grey, self._depth
        self._grey, self._depth = grey, d
        if prev_grey is None or prev_depth is None or prev_grey.shape != grey.shape:
            return None
        err = self._pair(prev_grey, prev_depth, grey, d)
        if err is not None:
            self.errors.append(err)
        return err

    def _pair(self, g0: np.ndarray, d0: np.ndarray, g1: np.ndarray, d1: np.ndarray) -> float | None:
        fwd = self._flow.calc(g0, g1, None)
        bwd = self._flow.calc(g1, g0, None)
        hh, ww = g0.shape
        ys, xs = np.mgrid[0:hh, 0:ww].astype(np.float32)
        mx, my = xs + fwd[..., 0], ys + fwd[..., 1]
        # where the forward flow lands, the backward flow must bring the pixel back
        back = cv2.remap(bwd, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(np.nan, np.nan))
        fb = np.hypot(fwd[..., 0] + back[..., 0], fwd[..., 1] + back[..., 1])
        warped = cv2.remap(d1, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan"))
        keep = (fb < self.max_fb_error_px) & np.isfinite(d0) & np.isfinite(warped)
        if not keep.any():
            return None
        a, b = d0[keep], warped[keep]
        return float(np.mean(np.abs(a - b) / (0.5 * (a + b))))


class FlickerMonitor:
    """Live flicker for `/diagnostics`: the flow warping error of one pair of consecutive output
    frames every `period` seconds (one pair costs ~9 ms of CPU at 640x480,
    `benchmarks/flicker_cost.py`; every frame would cost as much as corner tracking).

    The images arrive before their depth (a window later); `add_image` keeps a small grey copy per
    stamp until `add_depth` takes it, at most `held` of them.

    Args:
        period: seconds between measurements; 0 turns the monitor off.
        history: measurements averaged in `mean`.
        held: images kept while waiting for their depth.
    """

    def __init__(self, period: float, history: int = 30, held: int = 64) -> None:
        self.period = float(period)
        self.held = int(held)
        self.values: deque[float] = deque(maxlen=int(history))
        self._meter = FlowWarpingError()
        self.reset()

    @property
    def enabled(self) -> bool:
        """Measuring at all (`period` > 0)."""
        return self.period > 0

    def reset(self) -> None:
        """Forget pending images and the previous output (a stream restart)."""
        self._images: OrderedDict[int, np.ndarray] = OrderedDict()
        self._prev: tuple[int, np.ndarray, np.ndarray] | None = None  # (index, grey, depth)
        self._last_time: float | None = None

    def add_image(self, stamp_ns: int, rgb: np.ndarray) -> None:
        """Keep an input image (a small grey copy) until its depth arrives (`add_depth`); the oldest of
        more than `held` is forgotten."""
        if not self.enabled:
            return
        # the copy the meter would make anyway, made once and kept small
        self._images[stamp_ns] = grey_at_most(rgb, self._meter.max_width)
        while len(self._images) > self.held:
            self._images.popitem(last=False)

    def add_depth(self, stamp_ns: int, index: int, depth: np.ndarray, now: float) -> float | None:
        """The output frame `index` (consecutive within a stream) with its depth at time `now`
        (seconds, any clock); returns the pair's error when a measurement was due and possible."""
        if not self.enabled:
            return None
        grey = self._images.pop(stamp_ns, None)
        prev, self._prev = self._prev, (None if grey is None else (index, grey, depth))
        if grey is None or prev is None or prev[0] != index - 1:
            return None
        if self._last_time is not None and now - self._last_time < self.period:
            return None
        self._meter.reset()
        self._meter.add(prev[1], prev[2])
        err = self._meter.add(grey, depth)
        self._meter.errors.clear()  # the monitor keeps its own bounded history
        if err is not None:
            self._last_time = now
            self.values.append(err)
        return err

    @property
    def mean(self) -> float | None:
        """Mean of the last `history` measurements, or None before the first."""
        return float(np.mean(self.values)) if self.values else None


def flow_warping_error(rgb: np.ndarray, depth: np.ndarray, max_width: int = 320) -> float | None:
    """The flow warping error of a whole video: `(T, H, W, 3)` uint8 frames and `(T, h, w)` depth."""
    meter = FlowWarpingError(max_width=max_width)
    for frame, d in zip(rgb, depth, strict=True):
        meter.add(frame, d)
    return meter.mean


def _warp_abs_rel(d1: np.ndarray, d2: np.ndarray, rel: np.ndarray, K: np.ndarray) -> float:
    """AbsRel between depth `d1` moved into frame 2 by `rel` (frame1 -> frame2) and `d2`; 0 if no overlap."""
    h, w = d1.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    z = d1.astype(np.float64)
    pts = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], -1).reshape(-1, 3)
    q = pts @ rel[:3, :3].T + rel[:3, 3]
    zq = q[:, 2]
    front = zq > 1e-6
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.round(q[:, 0] * K[0, 0] / zq + K[0, 2])
        y = np.round(q[:, 1] * K[1, 1] / zq + K[1, 2])
    ok = front & (x >= 0) & (x < w) & (y >= 0) & (y < h)
    if not ok.any():
        return 0.0
    flat = y[ok].astype(np.int64) * w + x[ok].astype(np.int64)
    proj = np.full(h * w, np.inf)
    np.minimum.at(proj, flat, zq[ok])  # z-buffer: nearest point per pixel
    proj = proj.reshape(h, w)
    m = np.isfinite(proj) & (proj > 0) & (d2 > 0)
    if not m.any():
        return 0.0
    return float(np.mean(np.abs(d2[m] - proj[m]) / d2[m]))


def pair_tae(
    d1: np.ndarray, d2: np.ndarray, pose1: np.ndarray, pose2: np.ndarray, K1: np.ndarray, K2: np.ndarray
) -> float:
    """One adjacent pair's TAE term x100: depth 1 warped into frame 2 and back, averaged.

    `pose1`, `pose2` are camera-to-world `(4, 4)`; `K1`, `K2` the `(3, 3)` intrinsics of each depth."""
    rel = np.linalg.inv(pose2) @ pose1  # frame 1 -> frame 2
    return 50.0 * (_warp_abs_rel(d1, d2, rel, K1) + _warp_abs_rel(d2, d1, np.linalg.inv(rel), K2))


def temporal_alignment_error(depth: np.ndarray, intrinsics: np.ndarray, poses: np.ndarray) -> float:
    """TAE x100 of an aligned depth video `(T, H, W)` with GT `K` `(3, 3)` or `(T, 3, 3)` and
    camera-to-world `poses` `(T, 4, 4)` (see the module docstring)."""
    t = depth.shape[0]
    if t < 2:
        return 0.0
    Ks = np.broadcast_to(np.asarray(intrinsics, np.float64), (t, 3, 3))
    terms = [pair_tae(depth[k], depth[k + 1], poses[k], poses[k + 1], Ks[k], Ks[k + 1]) for k in range(t - 1)]
    return float(np.mean(terms))


__all__ = ["FlickerMonitor", "FlowWarpingError", "flow_warping_error", "pair_tae", "temporal_alignment_error"]
