"""`image_rotation`: a camera mounted upside down or on its side. The model sees its images turned
upright; depth, points and the camera stay the camera's own (registered pixel for pixel)."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from fakes import LuminanceEngine

from vdepth_ros.config import PipelineConfig
from vdepth_ros.errors import ConfigError
from vdepth_ros.inputs.assembly import camera_info_problem
from vdepth_ros.pipeline import DepthPipeline, FrameInput
from vdepth_ros.stream.cloud import CameraModel

H, W = 61, 97  # odd: no size is a multiple of the model's, a cloud stride or 2
CAM = CameraModel(90.0, 70.0, 40.3, 33.1, W, H)  # non-square pixels, principal point off centre


class UprightPriorEngine(LuminanceEngine):
    """Luminance plus a "nearer at the bottom" prior, as real models learn from upright scenes: its
    output depends on which way up the images are."""

    def _run(self, batch: np.ndarray) -> np.ndarray:
        rows = np.linspace(0.0, 0.5, batch.shape[-2], dtype=np.float32)[:, None]
        return super()._run(batch) + rows


def _turned_camera(cam: CameraModel, k: int) -> CameraModel:
    """The camera_info of `np.rot90(image, k)` (k counter-clockwise quarter turns, pixel-centre indices):
    what a driver publishes for a camera rolled by `k` quarter turns about its optical axis."""
    for _ in range(k % 4):  # (u, v) -> (v, W - 1 - u)
        cam = CameraModel(cam.fy, cam.fx, cam.cy, cam.width - 1 - cam.cx, cam.height, cam.width)
    return cam


def _frames(k: int, n: int = 14) -> list[FrameInput]:
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 255, (H, 2 * W, 3)).astype(np.float32), (0, 0), 3)
    base = (base - base.min()) / np.ptp(base) * 255
    cam = _turned_camera(CAM, k)
    out = []
    for i in range(n):
        upright = np.roll(base, 2 * i, axis=1)[:, :W].clip(0, 255).astype(np.uint8)
        valid = np.ones((H, W), bool)
        valid[:4, :9] = False  # a rectified image's black corner: NaN there, wherever it ends up
        # sparse metric points of a scene whose inverse depth is 2 x the engine's upright disparity + 0.1
        lum = upright.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
        rows = np.linspace(0.0, 0.5, H, dtype=np.float32)[:, None]
        depth = np.full((H, W), np.nan, np.float32)
        depth[::4, ::4] = (1.0 / (2.0 * (0.1 + lum + rows) + 0.1))[::4, ::4]
        turn = lambda a: np.ascontiguousarray(np.rot90(a, k))  # noqa: E731
        out.append(FrameInput(turn(upright), 1000 * i, cam, sparse_depth=turn(depth), valid=turn(valid)))
    return out


def _run(k: int, rotation: int, **kw) -> list:
    config = PipelineConfig(scale_source="sparse", sparse_min_points=20, image_rotation=rotation, **kw)
    pipe = DepthPipeline(config, UprightPriorEngine(frames=6, overlap=2))
    out = []
    for f in _frames(k):
        out += pipe.push(f)
    out += pipe.flush()
    latest = {f.index: f for f in out}
    return [latest[i] for i in sorted(latest)]


@pytest.mark.parametrize(("k", "rotation"), [(2, 180), (1, 90), (3, 270)])
def test_a_turned_camera_gets_the_upright_estimate_in_its_own_pixels_and_frame(k: int, rotation: int) -> None:
    """A camera mounted upside down (or on its side) used to hand the model upside-down scenes (the default
    model's AbsRel on 7-Scenes: 0.127 upright, 0.249 upside down, 0.233 on its side). With image_rotation the
    outputs equal the upright camera's, turned back: depth registered to the camera's pixels, its
    camera_info the camera's own, and each point the upright camera's point rolled about the optical axis."""
    upright = _run(0, 0)
    turned = _run(k, rotation)
    plain = _run(k, 0)
    assert len(turned) == len(upright) == 14
    cam = _turned_camera(CAM, k)
    roll = {1: lambda x, y: (y, -x), 2: lambda x, y: (-x, -y), 3: lambda x, y: (-y, x)}[k]
    for u, t in zip(upright, turned, strict=True):
        assert t.camera == cam and t.depth.shape == (cam.height, cam.width)
        assert t.fit.metric_scale == pytest.approx(u.fit.metric_scale, rel=1e-5)  # the sparse points turned too
        np.testing.assert_allclose(t.disparity, np.rot90(u.disparity, k), rtol=1e-5, equal_nan=True)
        np.testing.assert_allclose(t.depth, np.rot90(u.depth, k), rtol=1e-5, equal_nan=True)
        assert np.isnan(np.rot90(t.depth, -k)[:4, :9]).all()  # the invalid corner, turned with the image
        np.testing.assert_array_equal(t.rgb, np.rot90(u.rgb, k))
        # the cloud is the camera's back-projection of its depth (K math, its own pixels) ...
        z = t.depth
        vv, uu = np.mgrid[0 : cam.height, 0 : cam.width]
        ok = np.isfinite(z)
        np.testing.assert_allclose(t.points[..., 0][ok], ((uu - cam.cx) * z / cam.fx)[ok], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(t.points[..., 1][ok], ((vv - cam.cy) * z / cam.fy)[ok], rtol=1e-4, atol=1e-5)
        # ... and the upright camera's points rolled with the camera
        p = np.rot90(u.points, k)
        x, y = roll(p[..., 0], p[..., 1])
        np.testing.assert_allclose(t.points[..., 0], x, rtol=1e-4, atol=1e-5, equal_nan=True)
        np.testing.assert_allclose(t.points[..., 1], y, rtol=1e-4, atol=1e-5, equal_nan=True)
    # without it the model sees the scene turned, and its prior puts the near side at the wrong edge
    err = np.nanmedian(np.abs(plain[5].disparity - turned[5].disparity))
    assert err > 0.05


def test_the_output_size_and_its_camera_are_the_cameras_orientation() -> None:
    """`output_resolution: model` and `max_output_width` size the output the camera's way up: the width
    cap is on the published image's width, not on the upright frames' one."""
    cam = _turned_camera(CAM, 1)  # 61 wide, 97 tall
    out = _run(1, 90, output_resolution="model", max_output_width=40)
    f = out[3]
    h, w = f.depth.shape
    assert w == 40 and h > w and f.rgb.shape[:2] == (h, w)
    assert f.camera == cam.scaled(w, h)


@pytest.mark.parametrize("value", [45, -90, 360])
def test_image_rotation_takes_quarter_turns_only(value: int) -> None:
    with pytest.raises(ConfigError, match="image_rotation"):
        PipelineConfig(image_rotation=value)


def test_a_camera_info_for_the_unturned_image_names_the_turn_and_image_rotation() -> None:
    """An image turned by 90 degrees (a driver's rotate option, an image_rotate node) with the camera's
    calibration: the refusal said "cropped without setting roi?", which sent the user the wrong way."""
    info = SimpleNamespace(width=640, height=480, k=[500.0, 0, 319.5, 0, 500.0, 239.5, 0, 0, 1], p=[0.0] * 12)
    for size in ((640, 480), (320, 240)):  # (H, W): turned, and turned and resized
        problem = camera_info_problem(info, size)
        assert problem is not None and "turned by 90 degrees" in problem and "image_rotation" in problem
    cropped = camera_info_problem(info, (480, 480))
    assert cropped is not None and "cropped without setting roi" in cropped and "image_rotation" not in cropped
