"""What a robot overlays and a person reads: registered geometry at both output resolutions, REP 118
values, previews and the files vdepth-video writes (docs/outputs.md)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from fakes import AffineCorruptingEngine, LuminanceEngine, PastSummingEngine, luminance_disparity

from vdepth_ros.config import PipelineConfig
from vdepth_ros.offline.synth import synthetic_frames
from vdepth_ros.offline.video import process_video
from vdepth_ros.offline.videoio import PNG_TOO_CLOSE, PNG_TOO_FAR, depth_from_png, read_ply
from vdepth_ros.pipeline import DepthPipeline, FrameInput
from vdepth_ros.rectify import load_camera_info
from vdepth_ros.resize import registered_size
from vdepth_ros.runtime.engine import DepthEngine
from vdepth_ros.runtime.spec import InputSpec
from vdepth_ros.stream.cloud import CameraModel

CAM = CameraModel(110.0, 104.0, 78.0, 61.5, 160, 120)  # 4:3 camera, non-square pixels, off-centre
NORMAL, OFFSET = np.array([0.25, -0.4, 1.0]), 2.0  # the plane n . P = d seen by CAM


class PlaneEngine(DepthEngine):
    """A metric model that sees the plane: depth of each working pixel through CAM scaled to the
    working resolution (the camera of the resized image)."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__(InputSpec("fake", 4, height, width, window=4, overlap=1, output_kind="depth"))
        cam = CAM.scaled(width, height)
        v, u = np.mgrid[0:height, 0:width].astype(np.float64)
        rays = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], axis=-1)
        self.depth = (OFFSET / (rays @ NORMAL)).astype(np.float32)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.depth, (1, batch.shape[1], *self.depth.shape)).copy()


def _run(pipe: DepthPipeline, frames: list[FrameInput]) -> list:
    out = [f for fr in frames for f in pipe.push(fr)]
    return out + pipe.flush()


def _texture(n: int, h: int, w: int) -> list[FrameInput]:
    cam = CAM.scaled(w, h)
    return [FrameInput(rgb=f, stamp_ns=i, camera=cam) for i, f in enumerate(synthetic_frames(n, h, w))]


@pytest.mark.parametrize("output_resolution", ["input", "model"])
@pytest.mark.parametrize("working", [(48, 64), (48, 80)])  # 4:3 like the camera, and a 5:3 export
def test_a_plane_back_projects_to_itself_through_the_published_camera(
    output_resolution: str, working: tuple[int, int]
) -> None:
    pipe = DepthPipeline(PipelineConfig(output_resolution=output_resolution, publish="final"), PlaneEngine(*working))
    f = _run(pipe, _texture(6, 120, 160))[-1]
    h, w = f.depth.shape
    if output_resolution == "input":
        assert (h, w) == (120, 160) and f.camera == CAM  # depth/camera_info = the camera's own
    else:
        assert (h, w) == registered_size(120, 160, pixels=working[0] * working[1])
        assert (f.camera.fx / f.camera.fy) == pytest.approx(CAM.fx / CAM.fy, rel=1.0 / min(h, w))  # aspect kept
    assert f.rgb.shape == (h, w, 3) and f.points.shape == (h, w, 3)
    inner = f.points[2:-2, 2:-2].reshape(-1, 3)  # (the outermost pixels extrapolate: interpolation clamps)
    assert np.isfinite(inner).all()
    np.testing.assert_allclose(inner @ NORMAL, OFFSET, rtol=2e-4)


class FixedDisparityEngine(LuminanceEngine):
    """Disparity 1..2 with 1 % sky (0), 1 % very near (100) and 1 % NaN, at the input's 48x64."""

    def _run(self, batch: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(0)
        d = rng.uniform(1.0, 2.0, (48, 64)).astype(np.float32)
        flat = d.reshape(-1)
        idx = rng.permutation(flat.size)
        k = flat.size // 100
        flat[idx[:k]], flat[idx[k : 2 * k]], flat[idx[2 * k : 3 * k]] = 0.0, 100.0, np.nan
        return np.broadcast_to(d, (1, batch.shape[1], 48, 64)).copy()


def test_rep118_values_in_range_mode_and_clouds() -> None:
    """Range mode: finite depth lies in [min_depth, far]; what the affine puts beyond `far` (sky) is
    +Inf, closer than min_depth -Inf, no estimate NaN; the cloud has no point for any of them."""
    cfg = PipelineConfig(scale_source="range", near=0.5, far=6.0, min_depth=0.05, publish="final")
    f = _run(DepthPipeline(cfg, FixedDisparityEngine()), _texture(6, 48, 64))[-1]
    disp, depth = f.disparity, f.depth
    assert np.isnan(depth[np.isnan(disp)]).all()
    assert (depth[disp == 0.0] == np.inf).all() and (depth[disp == 100.0] == -np.inf).all()
    finite = depth[np.isfinite(depth)]
    assert finite.size > 0.9 * depth.size and finite.min() >= 0.05 and finite.max() <= 6.0
    assert np.isnan(f.points[~np.isfinite(depth)]).all() and np.isfinite(f.points[np.isfinite(depth)]).all()


def _preview_frame(path: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    ok, img = cap.read()
    cap.release()
    assert ok
    return img


def test_video_preview_shows_image_depth_and_colour_bar_without_intrinsics(tmp_path: Path) -> None:
    h, w = 72, 128  # 16:9 input, engine at 48x64: the preview keeps the input's aspect
    frames = list(synthetic_frames(8, h, w))
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, rgb in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.ascontiguousarray(rgb[..., ::-1]))
    engine = LuminanceEngine(height=48, width=64, frames=8, overlap=3)
    process_video(folder, tmp_path / "out", params={}, engine=engine, depth_range=(0.5, 4.0))
    img = _preview_frame(tmp_path / "out" / "preview.mp4")
    assert img.shape[1] == 2 * w and img.shape[0] > h
    left = img[:h, :w].astype(np.float32)
    assert np.abs(left - frames[0][..., ::-1]).mean() < 12  # the camera image (mp4v is lossy)
    depth_panel, bar = img[:h, w:], img[h:]
    assert depth_panel.std() > 5 and bar.any()
    ramp = bar[:, 8:-8].sum(axis=2).astype(np.float32)
    row = ramp[int(np.argmax(ramp.std(axis=1)))]  # the colour-bar row: the one that varies most
    assert row[: row.size // 4].mean() > 2 * row[-row.size // 4 :].mean()  # near (left) bright, far dark
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["preview_units"].startswith("depth [m]") and (meta["width"], meta["height"]) == (w, h)
    assert meta["camera"] is None  # no intrinsics given: none invented


def test_video_disparity_preview_says_relative(tmp_path: Path) -> None:
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, rgb in enumerate(synthetic_frames(8, 48, 64)):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.ascontiguousarray(rgb[..., ::-1]))
    process_video(folder, tmp_path / "out", params={}, engine=LuminanceEngine(frames=8, overlap=3))
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["kind"] == "disparity" and "relative" in meta["preview_units"]
    assert _preview_frame(tmp_path / "out" / "preview.mp4").shape[1] == 128


@pytest.mark.parametrize("output_resolution", ["input", "model"])
def test_meta_camera_file_png_and_ply_describe_the_written_depth(tmp_path: Path, output_resolution: str) -> None:
    h, w = 120, 160
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, rgb in enumerate(synthetic_frames(8, h, w)):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.ascontiguousarray(rgb[..., ::-1]))
    engine = LuminanceEngine(height=48, width=80, frames=8, overlap=3)  # 5:3 working, 4:3 camera
    K = (CAM.fx, CAM.fy, CAM.cx, CAM.cy)
    params = {"output_resolution": output_resolution, "cloud_stride": 1}
    out = tmp_path / "out"
    process_video(
        folder, out, params=params, engine=engine, intrinsics=K, depth_range=(0.5, 4.0), ply=True, formats=("png",)
    )
    meta = json.loads((out / "meta.json").read_text())
    png = cv2.imread(str(out / "depth" / "000003.png"), cv2.IMREAD_UNCHANGED)
    assert (meta["height"], meta["width"]) == png.shape
    if output_resolution == "input":
        assert png.shape == (h, w)
    expected = CAM.scaled(meta["width"], meta["height"])
    cam = meta["camera"]
    assert (cam["fx"], cam["fy"], cam["cx"], cam["cy"]) == pytest.approx(
        (expected.fx, expected.fy, expected.cx, expected.cy)
    )
    info = load_camera_info(out / "camera_info.yaml")
    assert (info.width, info.height) == (meta["width"], meta["height"])
    np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), expected.matrix)
    assert meta["input_size"] == [w, h] and meta["input_intrinsics"] == list(K)
    depth = depth_from_png(png)
    pts = read_ply(out / "clouds" / "000003.ply")
    assert len(pts) == np.isfinite(depth).sum()  # one point per written pixel with a depth
    assert b"property uchar red" in (out / "clouds" / "000003.ply").read_bytes()[:400]
    codes = set(np.unique(png).tolist()) & {0, PNG_TOO_CLOSE, PNG_TOO_FAR}
    assert codes <= {PNG_TOO_FAR}  # luminance depth: some pixels beyond far=4 m, none NaN or too close


def test_max_output_width_keeps_the_aspect_and_the_geometry() -> None:
    cfg = PipelineConfig(max_output_width=80, publish="final")
    f = _run(DepthPipeline(cfg, PlaneEngine(48, 64)), _texture(6, 120, 160))[-1]
    assert f.depth.shape == (60, 80) and f.camera == CAM.scaled(80, 60) and f.rgb.shape == (60, 80, 3)
    inner = f.points[2:-2, 2:-2].reshape(-1, 3)
    np.testing.assert_allclose(inner @ NORMAL, OFFSET, rtol=2e-4)


def _outside_the_raw_image(k: np.ndarray, d: list[float], p: np.ndarray, h: int, w: int) -> np.ndarray:
    """Rectified pixels whose ray (through P) lands outside the raw h x w image (plumb_bob through K),
    computed here without OpenCV."""
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    x, y = (u - p[0, 2]) / p[0, 0], (v - p[1, 2]) / p[1, 1]
    k1, k2, p1, p2, k3 = d
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    ru, rv = k[0, 0] * xd + k[0, 2], k[1, 1] * yd + k[1, 2]
    return (ru < 0) | (ru > w - 1) | (rv < 0) | (rv > h - 1)


@pytest.mark.parametrize("output_resolution", ["input", "model"])
def test_rectified_pixels_outside_the_lens_view_have_no_estimate(output_resolution: str) -> None:
    """`rectify: true` with a projection P wider than the lens shows (camera_calibration's alpha = 1,
    a fisheye's balance = 1) leaves a black border with no camera data in it. Depth, disparity and
    the cloud there used to be the model's guess for black pixels (a ring of made-up points around
    the cloud); they are NaN, REP 118's "no estimate", as for a pixel without a return."""
    from vdepth_ros.inputs.assembly import FrameAssembler

    h, w = 120, 160
    k = np.array([[110.0, 0.0, 79.5], [0.0, 104.0, 61.5], [0.0, 0.0, 1.0]])
    p = np.array([[90.0, 0.0, 81.0, 0.0], [0.0, 85.0, 58.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    d = [-0.12, 0.02, 0.001, -0.002, 0.0]
    info = SimpleNamespace(
        width=w, height=h, distortion_model="plumb_bob", d=d, k=k.ravel(), r=np.eye(3).ravel(), p=p.ravel()
    )
    assembler = FrameAssembler(rectify=True)
    frames = []
    for i, rgb in enumerate(synthetic_frames(6, h, w)):
        msg = SimpleNamespace(encoding="rgb8", height=h, width=w, step=3 * w, data=rgb.tobytes(), is_bigendian=0)
        frames.append(assembler.assemble(msg, i, info))
    cfg = PipelineConfig(output_resolution=output_resolution, publish="final")
    f = _run(DepthPipeline(cfg, PlaneEngine(48, 64)), frames)[-1]
    outside = _outside_the_raw_image(k, d, p[:, :3], h, w)
    assert 0.1 < outside.mean() < 0.5  # a real border
    oh, ow = f.depth.shape
    if (oh, ow) != (h, w):  # an output pixel is outside when most of the input pixels it averages are
        outside = cv2.resize(outside.astype(np.float32), (ow, oh), interpolation=cv2.INTER_AREA) > 0.5
    nan = np.isnan(f.depth)
    assert np.isnan(f.disparity[nan]).all() and np.isnan(f.points[nan]).all()
    assert (nan != outside).mean() < 0.01  # up to the boundary's rounding
    assert np.isfinite(f.depth[~outside & ~nan]).all() and (nan & ~outside).sum() <= 0.01 * nan.size


@pytest.mark.parametrize("mode", ["causal", "offline"])
def test_range_mode_scale_comes_from_the_scene_not_the_lens_border(mode: str) -> None:
    """Range mode puts the first window's 2nd disparity percentile at `far` (about 2 % of the scene
    beyond it, +Inf). With `rectify: true` and a wide P, the black lens border (a quarter of the image
    here, which this model makes the farthest content) used to set that percentile: nothing of the
    scene reached `far`, the whole stream's depth was compressed towards the camera."""
    from vdepth_ros.inputs.assembly import FrameAssembler

    h, w = 120, 160
    k = [110.0, 0.0, 79.5, 0.0, 104.0, 61.5, 0.0, 0.0, 1.0]
    p = [90.0, 0.0, 81.0, 0.0, 0.0, 85.0, 58.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    info = SimpleNamespace(
        width=w, height=h, distortion_model="plumb_bob", d=[-0.12, 0.02, 0.001, -0.002, 0.0], k=k, r=np.eye(3), p=p
    )
    assembler = FrameAssembler(rectify=True)
    frames = []
    for i, rgb in enumerate(synthetic_frames(8, h, w)):
        msg = SimpleNamespace(encoding="rgb8", height=h, width=w, step=3 * w, data=rgb.tobytes(), is_bigendian=0)
        frames.append(assembler.assemble(msg, i, info))
    cfg = PipelineConfig(scale_source="range", near=0.5, far=6.0, publish="final")
    pipe = DepthPipeline(cfg, LuminanceEngine(48, 64, frames=4, overlap=1))
    first = (_run(pipe, frames) if mode == "causal" else list(pipe.run_offline(frames)))[:4]
    depth = np.stack([f.depth for f in first])
    scene = depth[~np.isnan(depth)]
    assert 0.005 < np.isposinf(scene).mean() < 0.05  # ~2 % of the scene beyond far, by construction


def test_a_camera_the_fixed_shape_model_must_stretch_is_named(caplog: pytest.LogCaptureFixture) -> None:
    """A portrait camera on a landscape-only export: the frames are squeezed to the model's shape
    (1.78x here) without a word; the depth stays registered, the warning names the stretch and the fix."""
    pipe = DepthPipeline(PipelineConfig(publish="final"), LuminanceEngine(48, 64, frames=4, overlap=1))
    with caplog.at_level(logging.WARNING):
        _run(pipe, [FrameInput(rgb=f, stamp_ns=i) for i, f in enumerate(synthetic_frames(5, 64, 48))])
    warnings = [r.getMessage() for r in caplog.records if "stretched" in r.getMessage()]
    assert (
        len(warnings) == 1 and "1.78x horizontally" in warnings[0] and "--height 64 --width 48 --variant" in warnings[0]
    )
    pipe.reset("gap")
    _run(pipe, [FrameInput(rgb=f, stamp_ns=5 + i) for i, f in enumerate(synthetic_frames(5, 64, 48))])
    assert len([r for r in caplog.records if "stretched" in r.getMessage()]) == 1  # once, not per stream
    assert pipe.stretched and "48x64 frames stretched 1.78x horizontally" in pipe.stretched  # while the stream lasts
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # a 4:3 camera on the 4:3 export: nothing to say
        _run(pipe, [FrameInput(rgb=f, stamp_ns=10 + i) for i, f in enumerate(synthetic_frames(5, 96, 128))])
    assert not [r for r in caplog.records if "stretched" in r.getMessage()]
    assert pipe.stretched is None  # (a node's /diagnostics no longer names it)


def test_a_stream_graph_that_must_stretch_names_the_stream_export(caplog: pytest.LogCaptureFixture) -> None:
    """A causal model's stream-step graph gets its variants from `vdepth-export stream --variant` (`vdepth-export
    onnx` refuses a causal model): the stretch warning named `vdepth-export onnx ... --variant`, a command the user
    could not run, then `stream ... --overwrite`, which replaced the shape other cameras ran."""
    pipe = DepthPipeline(PipelineConfig(publish="final"), PastSummingEngine(48, 64, frames=2, overlap=1))
    with caplog.at_level(logging.WARNING):
        out = _run(pipe, [FrameInput(rgb=f, stamp_ns=i) for i, f in enumerate(synthetic_frames(3, 64, 48))])
    (warning,) = [r.getMessage() for r in caplog.records if "stretched" in r.getMessage()]
    assert "vdepth-export stream FOLDER --height 64 --width 48 --variant" in warning and "--overwrite" not in warning
    assert len(out) == 3  # the stream still publishes every frame, stretched


class _LensBorderEngine(AffineCorruptingEngine):
    """A relative model whose output in the black lens border is its own made-up value per window
    (one number for the whole border, unrelated to the window's affine), as a real model's guess
    for pixels it has no image of."""

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = super()._run(batch)
        out[batch.max(axis=2) == 0] = self._rng.uniform(0.2, 2.0)
        return out


@pytest.mark.parametrize(
    ("mode", "alignment"), [("causal", "graph"), ("causal", "keyframe"), ("causal", "chain_ls"), ("offline", "graph")]
)
def test_windows_are_aligned_on_the_scene_not_on_the_lens_border(mode: str, alignment: str) -> None:
    """A fisheye or wide-angle camera rectified with its whole view kept (balance / alpha 1) shows
    a black border over half the image or more. The model's values there follow no window's
    affine; once they were the majority of a fit's pixels, the robust fit aligned the windows on
    them and the stream was off by ~20 % AbsRel. The fits use the scene's pixels only."""
    h, w = 96, 128
    yy, xx = np.mgrid[0:h, 0:w]
    valid = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2)) < 0.75
    assert valid.mean() < 0.5  # most of the image is border
    frames = []
    for i, rgb in enumerate(synthetic_frames(40, h, w)):
        rgb = rgb.copy()
        rgb[~valid] = 0
        frames.append(FrameInput(rgb, i * 10**8, valid=valid))
    engine = _LensBorderEngine(48, 64, frames=8, overlap=4, keyframes=(0, 3, 6, 7), seed=1)
    cfg = PipelineConfig(alignment=alignment, publish="final", output_resolution="model")
    pipe = DepthPipeline(cfg, engine)
    out = _run(pipe, frames) if mode == "causal" else list(pipe.run_offline(frames))
    assert len(out) == len(frames)
    pred = np.stack([f.disparity for f in out])
    small = [cv2.resize(f.rgb, (64, 48), interpolation=cv2.INTER_AREA) for f in frames]
    truth = luminance_disparity(np.stack(small)[None].transpose(0, 1, 4, 2, 3) / 255.0)[0]
    scene = np.isfinite(pred)
    assert scene.mean() > 0.3  # the border is NaN in the output, the scene is not
    design = np.stack([pred[scene], np.ones(int(scene.sum()))], axis=1)
    coef, *_ = np.linalg.lstsq(design, truth[scene], rcond=None)
    assert np.abs(design @ coef - truth[scene]).max() < 1e-3  # one affine for the whole stream
    assert max(f.fit.residual for f in out) < 0.01  # the fit health reads the scene too


def test_offline_reference_mode_also_fits_the_scene_not_the_lens_border() -> None:
    """A released VDA model (reference mode: windows stitched at the output size) on a rectified
    wide-angle video, `vdepth-video`'s default offline mode: the lens-border masks were kept at the
    output size while the offline solve stitches at the working size, so they were dropped and the
    windows were aligned on the border (fit residual ~1, 3x the error); now both modes read the scene."""
    import dataclasses

    h, w = 96, 128
    yy, xx = np.mgrid[0:h, 0:w]
    valid = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2)) < 0.75
    frames = []
    for i, rgb in enumerate(synthetic_frames(40, h, w)):
        rgb = rgb.copy()
        rgb[~valid] = 0
        frames.append(FrameInput(rgb, i * 10**8, valid=valid))
    runs = {}
    for mode in ("causal", "offline"):
        engine = _LensBorderEngine(48, 64, frames=8, overlap=4, keyframes=(0, 3, 6, 7), seed=1)
        engine.input_spec = dataclasses.replace(engine.input_spec, family="vda")  # reference mode: VDA's
        pipe = DepthPipeline(PipelineConfig(publish="final", inference="reference"), engine)
        assert pipe.reference is not None and pipe.reference["stitch_resolution"] == "output"
        runs[mode] = _run(pipe, frames) if mode == "causal" else list(pipe.run_offline(frames))
    for mode, out in runs.items():
        assert len(out) == len(frames), mode
        assert max(f.fit.residual for f in out) < 0.01, mode  # aligned on the scene
    causal, offline = (np.stack([f.disparity for f in runs[m]]) for m in ("causal", "offline"))
    scene = np.isfinite(causal) & np.isfinite(offline) & (causal > 0)
    np.testing.assert_allclose(offline[scene], causal[scene], rtol=1e-3, atol=1e-3)
