"""Scene-cut detector: cuts between scenes flagged, pans, exposure changes and static frames not."""

from __future__ import annotations

import numpy as np
import pytest

from vdepth_ros.errors import ConfigError
from vdepth_ros.stream.cuts import SceneCutDetector, cut_score, frame_signature


def _scene(seed: int, h: int = 120, w: int = 400) -> np.ndarray:
    """A wide smooth random colour texture to pan over (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (6, 20, 3))
    yy = np.linspace(0, 5, h)[:, None]
    xx = np.linspace(0, 19, w)[None, :]
    y0, x0 = np.floor(yy).astype(int).clip(0, 4), np.floor(xx).astype(int).clip(0, 18)
    fy, fx = (yy - y0)[..., None], (xx - x0)[..., None]
    img = (
        coarse[y0, x0] * (1 - fy) * (1 - fx)
        + coarse[y0 + 1, x0] * fy * (1 - fx)
        + coarse[y0, x0 + 1] * (1 - fy) * fx
        + coarse[y0 + 1, x0 + 1] * fy * fx
    )
    return img.clip(0, 255).astype(np.uint8)


def _pan(scene: np.ndarray, n: int, step: int = 3, width: int = 128) -> list[np.ndarray]:
    return [scene[:96, k * step : k * step + width] for k in range(n)]


def test_cut_between_scenes_is_flagged_once_and_pans_are_not():
    a, b = _pan(_scene(0), 40), _pan(_scene(1), 40)
    det = SceneCutDetector()
    flags = [det.update(f) for f in a + b]
    assert flags.index(True) == 40 and sum(flags) == 1
    assert det.last_score < 0.2  # back to the new scene's own statistics


def test_exposure_change_and_static_camera_are_not_cuts():
    frames = _pan(_scene(2), 36)
    det = SceneCutDetector()
    assert not any(det.update(f) for f in frames[:30])
    brighter = [np.clip(f.astype(np.int16) + 40, 0, 255).astype(np.uint8) for f in frames[30:]]
    assert not any(det.update(f) for f in brighter)  # the colours jump, the structure does not
    assert not any(det.update(frames[-1]) for _ in range(20))  # the camera stops
    assert cut_score(frame_signature(frames[0]), frame_signature(frames[0])) == pytest.approx(0.0, abs=1e-6)


def test_moving_fast_again_after_a_stop_is_not_a_cut():
    frames = _pan(_scene(6, w=5000), 60, step=64)  # scores ~0.23, up to 0.52
    det = SceneCutDetector()
    stopped = frames[:20] + [frames[19]] * 40 + frames[20:]  # fast pan, 40 frames at rest, fast pan
    assert sum(det.update(f) for f in stopped) == 0


def test_running_median_absorbs_a_shaky_camera():
    """Scores that are high all the time (fast motion) raise the baseline instead of cutting."""
    scene = _scene(3, w=2000)
    frames = _pan(scene, 60, step=28)  # a fast pan: a large part of the view changes every frame
    det = SceneCutDetector()
    assert sum(det.update(f) for f in frames) == 0


def test_gray_and_float_frames_and_bad_settings():
    gray = _scene(4)[..., 1]
    sig = frame_signature(gray)
    assert sig[0].shape == (12, 16, 3) and sig[1].sum() == pytest.approx(1.0)
    as_float = frame_signature(_scene(4).astype(np.float32) / 255.0)
    assert as_float[1].shape == (512,)
    with pytest.raises(ValueError, match="smaller"):
        frame_signature(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ConfigError, match="threshold"):
        SceneCutDetector(threshold=0.0)
