"""vdepth_ros.consistency: the ground-truth-free flow warping error of a depth video."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vdepth_ros.consistency import FlowWarpingError, flow_warping_error

H, W, T = 96, 128, 8


def _texture(seed: int = 0) -> np.ndarray:
    """A textured RGB scene larger than the frame (flow needs texture to lock on)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (H // 4, (W + 8 * T) // 4, 3), dtype=np.uint8)
    return cv2.resize(small, ((W + 8 * T), H), interpolation=cv2.INTER_CUBIC)


def _depth_ramp() -> np.ndarray:
    """Depth that varies across the scene (1 m at the left to 3 m at the right)."""
    return np.tile(np.linspace(1.0, 3.0, W + 8 * T, dtype=np.float32), (H, 1))


def panning(depth_moves_with_image: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A camera panning 3 px per frame over a static scene: frames and their depth."""
    tex, ramp = _texture(), _depth_ramp()
    rgb = np.stack([tex[:, 3 * t : 3 * t + W] for t in range(T)])
    depth = np.stack([ramp[:, 3 * t : 3 * t + W] if depth_moves_with_image else ramp[:, :W] for t in range(T)])
    return rgb, depth


def test_a_static_scene_seen_by_a_panning_camera_is_steady() -> None:
    rgb, depth = panning()
    steady = flow_warping_error(rgb, depth)
    assert steady is not None and steady < 0.005
    # depth that does not follow the image (stuck to the screen) is what the metric must catch
    stuck = flow_warping_error(*panning(depth_moves_with_image=False))
    assert stuck is not None and stuck > 3 * steady and stuck > 0.004


def test_flicker_of_ten_percent_reads_as_its_relative_change() -> None:
    rgb, depth = panning()
    flicker = depth * np.where(np.arange(T) % 2 == 0, 1.0, 1.1).astype(np.float32)[:, None, None]
    value = flow_warping_error(rgb, flicker)
    # every pair differs by a factor 1.1: |1 - 1.1| / 1.05 = 0.0952, plus the steady floor above
    assert value == pytest.approx(0.1 / 1.05, abs=0.006)


def test_unit_and_scale_do_not_matter_and_resolution_is_matched() -> None:
    rgb, depth = panning()
    depth = depth * np.linspace(1.0, 1.2, T, dtype=np.float32)[:, None, None]  # a slow drift
    a = flow_warping_error(rgb, depth)
    assert a == pytest.approx(flow_warping_error(rgb, 1000.0 * depth), rel=1e-5)  # metres or millimetres
    half = np.stack([cv2.resize(d, (W // 2, H // 2), interpolation=cv2.INTER_NEAREST) for d in depth])
    assert flow_warping_error(rgb, half) == pytest.approx(a, abs=0.003)  # depth at another resolution


def test_invalid_depth_is_ignored_and_reset_breaks_the_chain() -> None:
    rgb, depth = panning()
    meter = FlowWarpingError()
    assert meter.add(rgb[0], depth[0]) is None  # no previous frame
    holes = depth[1].copy()
    holes[:, : W // 2] = np.nan
    holes[:5] = 0.0  # 0 is invalid too (REP 118)
    assert meter.add(rgb[1], holes) is not None
    assert meter.add(rgb[2], np.full((H, W), np.nan, np.float32)) is None  # nothing valid to compare
    assert meter.add(rgb[3], depth[3]) is None  # its previous frame had no valid depth
    meter.reset()
    assert meter.add(rgb[4], depth[4]) is None
    assert meter.add(rgb[5], depth[5]) is not None
    assert len(meter.errors) == 2 and meter.mean == pytest.approx(np.mean(meter.errors))
    assert FlowWarpingError().mean is None


def test_flicker_monitor_measures_one_consecutive_pair_per_period() -> None:
    from vdepth_ros.consistency import FlickerMonitor

    rgb, depth = panning()
    flicker = depth * np.where(np.arange(T) % 2 == 0, 1.0, 1.1).astype(np.float32)[:, None, None]
    mon = FlickerMonitor(period=1.0)
    for t in range(T):
        mon.add_image(1000 + t, rgb[t])
    # outputs arrive later (a window after their images), 0.4 s apart on the monitor's clock
    got = [mon.add_depth(1000 + t, t, flicker[t], now=0.4 * t) for t in range(T)]
    measured = [t for t, e in enumerate(got) if e is not None]
    assert measured == [1, 4, 7]  # the first pair, then one pair per second
    assert mon.mean == pytest.approx(0.1 / 1.05, abs=0.006)
    assert len(mon._meter.errors) == 0  # bounded: only `values` (maxlen) keeps history

    # a gap in the output indices (a skipped frame) is not a consecutive pair; reset forgets all
    mon2 = FlickerMonitor(period=0.001)
    for t in range(4):
        mon2.add_image(t, rgb[t])
    assert mon2.add_depth(0, 0, depth[0], now=0.0) is None
    assert mon2.add_depth(2, 2, depth[2], now=1.0) is None  # frame 1 never came out
    assert mon2.add_depth(3, 3, depth[3], now=2.0) == pytest.approx(0.0, abs=1e-6)
    mon2.reset()
    assert mon2.add_depth(3, 4, depth[3], now=3.0) is None  # its image was forgotten
    off = FlickerMonitor(period=0.0)
    off.add_image(0, rgb[0])
    assert not off.enabled and off.add_depth(0, 0, depth[0], now=0.0) is None and off.mean is None
