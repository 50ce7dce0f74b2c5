"""Scene cuts in the pipeline: the stream ends before the cut and alignment restarts after it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from fakes import AffineCorruptingEngine

from vdepth_ros.config import PipelineConfig
from vdepth_ros.pipeline import DepthPipeline, FrameInput

H, W = 48, 64


def _scene(seed: int, n: int) -> list[np.ndarray]:
    """A camera panning over a smooth random colour texture."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 255, (H, 4 * W, 3)).astype(np.float32), (0, 0), 4)
    base = (base - base.min()) / np.ptp(base) * 255
    return [base[:, 2 * i : 2 * i + W].astype(np.uint8) for i in range(n)]


def _frames(cut_at: int = 30, n: int = 70) -> list[FrameInput]:
    images = _scene(0, cut_at) + _scene(1, n - cut_at)
    return [FrameInput(rgb=img, stamp_ns=1000 * i, meta=i) for i, img in enumerate(images)]


class WindowLog(AffineCorruptingEngine):
    """Remembers the frames of every window (their stamps come back through a marker pixel)."""

    def __init__(self, **kw) -> None:
        super().__init__(height=H, width=W, frames=8, overlap=4, keyframes=(0, 3, 6, 7), alignment="graph", **kw)
        self.windows: list[np.ndarray] = []

    def infer(self, frames: np.ndarray) -> np.ndarray:
        self.windows.append(np.asarray(frames)[:, 0, 0, 0].copy())
        return super().infer(frames)


def _marked(frames: list[FrameInput]) -> list[FrameInput]:
    for i, f in enumerate(frames):  # the scene (0 / 1) in the red channel of pixel (0, 0)
        f.rgb = f.rgb.copy()
        f.rgb[0, 0, 0] = 0 if i < 30 else 255
    return frames


def _run(pipe: DepthPipeline, frames: list[FrameInput]) -> list:
    out = []
    for f in frames:
        out += pipe.push(f)
    return out + pipe.flush()


def _mixed(windows: list[np.ndarray]) -> int:
    return sum(1 for w in windows if w.min() == 0 and w.max() == 255)


@pytest.mark.parametrize("publish", ["final", "provisional"])
def test_cut_ends_the_stream_and_restarts_alignment(publish):
    eng = WindowLog()
    pipe = DepthPipeline(PipelineConfig(publish=publish, scale_source="none"), eng)
    out = _run(pipe, _marked(_frames()))
    assert pipe.stats.scene_cuts == 1 and pipe.stats.resets == 0
    assert [f.index for f in out] == list(range(70))  # indices keep counting across the cut
    assert [f.meta for f in out] == list(range(70))
    assert _mixed(eng.windows) == 0  # no window (nor keyframe anchor) holds both scenes
    after = [f for f in out if f.index >= 30]
    assert after[0].fit.window == 0 and after[0].fit.scale == 1.0  # a new stream: window 0, identity
    assert all(f.fit.residual < 1e-3 for f in out)  # noiseless windows agree with the stream


def test_without_detection_windows_straddle_the_cut():
    eng = WindowLog()
    pipe = DepthPipeline(PipelineConfig(publish="final", scale_source="none", scene_cut_threshold=0.0), eng)
    out = _run(pipe, _marked(_frames()))
    assert pipe.stats.scene_cuts == 0 and len(out) == 70
    assert _mixed(eng.windows) > 0  # the anchor frame of scene 0 stays in every later window


def test_offline_solves_each_segment_on_its_own():
    eng = WindowLog()
    pipe = DepthPipeline(PipelineConfig(publish="final", scale_source="none"), eng)
    out = list(pipe.run_offline(_marked(_frames())))
    assert [f.index for f in out] == list(range(70)) and pipe.stats.scene_cuts == 1
    assert _mixed(eng.windows) == 0
    causal = _run(DepthPipeline(PipelineConfig(publish="final", scale_source="none"), WindowLog()), _marked(_frames()))
    for a, b in zip(out, causal, strict=True):  # noiseless windows: both recover the same stream
        np.testing.assert_allclose(a.disparity, b.disparity, rtol=1e-4, atol=1e-5)
