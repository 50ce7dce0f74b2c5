"""The working resolution follows the camera's aspect: engine variants (ONNX files per shape, torch
at any multiple of the stride, shared handles) and the pipeline's choice per stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fakes import LuminanceEngine, write_tiny_onnx
from test_runtime_tinynet import TinyVideoNet, tiny_registry  # noqa: F401 - pytest fixture

from vdepth_ros.config import PipelineConfig
from vdepth_ros.errors import ConfigError
from vdepth_ros.pipeline import DepthPipeline, FrameInput
from vdepth_ros.runtime import create_engine
from vdepth_ros.runtime.shared import EnginePool
from vdepth_ros.runtime.spec import InputSpec, spec_path_for, variant_files, variant_path
from vdepth_ros.stream.cloud import CameraModel


def _variant_folder(tmp_path: Path) -> Path:
    """`model.onnx` at 48x64 (4:3) and its 16:9 variant `model.36x64.onnx`."""
    write_tiny_onnx(tmp_path, frames=4, height=48, width=64)
    other = tmp_path / "v"
    other.mkdir()
    write_tiny_onnx(other, frames=4, height=36, width=64)
    target = variant_path(tmp_path / "model.onnx", 36, 64)
    (other / "model.onnx").rename(target)
    (other / "model.onnx.json").rename(spec_path_for(target))
    return tmp_path


def _frames(n: int, h: int, w: int) -> list[FrameInput]:
    rng = np.random.default_rng(0)
    return [FrameInput(rgb=rng.integers(0, 255, (h, w, 3), dtype=np.uint8), stamp_ns=i) for i in range(n)]


def test_onnx_variants_are_found_and_opened_once(tmp_path: Path) -> None:
    folder = _variant_folder(tmp_path)
    assert variant_files(folder / "model.onnx") == {(36, 64): folder / "model.36x64.onnx"}
    with create_engine(folder, backend="onnxruntime", threads=1) as eng:
        assert eng.resolutions() == [(48, 64), (36, 64)]
        wide = eng.at_resolution(36, 64)
        assert wide is eng.at_resolution(36, 64) and eng.at_resolution(48, 64) is eng
        assert wide.infer(np.zeros((4, 36, 64, 3), np.uint8)).shape == (4, 36, 64)
        with pytest.raises(ConfigError, match="48x64 only"):
            eng.at_resolution(40, 64)


def test_a_variant_of_another_model_is_refused(tmp_path: Path) -> None:
    folder = _variant_folder(tmp_path)
    spec = InputSpec.load(spec_path_for(folder / "model.36x64.onnx"))
    InputSpec.from_dict({**spec.to_dict(), "window": 3, "overlap": 1}).save(spec_path_for(folder / "model.36x64.onnx"))
    with create_engine(folder, backend="onnxruntime") as eng:  # not offered to a camera (a warning names it)
        assert (36, 64) not in eng.resolutions()
        with pytest.raises(ConfigError, match="not 36x64"):
            eng.at_resolution(36, 64)


def test_pipeline_picks_the_variant_closest_in_aspect_per_stream(tmp_path: Path) -> None:
    folder = _variant_folder(tmp_path)
    pool = EnginePool()
    handle = pool.get(str(folder), backend="onnxruntime", threads=1)
    # noise frames are all scene cuts to the detector: off, so the windows are the schedule's
    pipe = DepthPipeline(PipelineConfig(scale_source="none", publish="final", scene_cut_threshold=0.0), handle)
    out = [f for fr in _frames(6, 72, 128) for f in pipe.push(fr)] + pipe.flush()  # 16:9 camera
    assert (pipe.height, pipe.width) == (36, 64) and out[0].disparity.shape == (72, 128)
    assert handle.calls == 2  # a variant's windows count on the handle the node holds
    out = [f for fr in _frames(6, 60, 80) for f in pipe.push(fr)] + pipe.flush()  # 4:3: a new stream
    assert (pipe.height, pipe.width) == (48, 64) and out[0].disparity.shape == (60, 80)
    assert pipe.engine is handle


@pytest.mark.usefixtures("tiny_registry")
def test_torch_engine_runs_any_multiple_keeping_the_aspect(tmp_path: Path) -> None:
    model = TinyVideoNet(channels=4, multiple_of=4, window=6).eval()
    with create_engine(model, frames=6, height=16, width=20) as eng:
        assert eng.resolutions() is None
        other = eng.at_resolution(24, 32)
        assert other.input_spec.height == 24
        assert next(other.module.parameters()) is next(eng.module.parameters())  # weights shared, not copied
        with pytest.raises(ConfigError, match="multiple of 4"):
            eng.at_resolution(25, 32)
        pipe = DepthPipeline(PipelineConfig(scale_source="none", window=6, overlap=2), eng)
        pipe.push(_frames(1, 90, 160)[0])
        assert (pipe.height, pipe.width) == (16, 28)  # short side 16 (the default's), 16:9 -> 28.4 -> 28
        sized = DepthPipeline(PipelineConfig(scale_source="none", window=6, overlap=2, working_short_side=32), eng)
        sized.push(_frames(1, 90, 160)[0])
        assert (sized.height, sized.width) == (32, 56)


def test_working_short_side_needs_an_engine_that_runs_any_size() -> None:
    with pytest.raises(ConfigError, match="working_short_side"):
        DepthPipeline(PipelineConfig(working_short_side=96), LuminanceEngine())


@pytest.mark.usefixtures("tiny_registry")
def test_a_variant_left_from_earlier_weights_is_refused_not_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A folder re-exported with new weights (a longer training run, same family and shapes) kept its
    16:9 variant from the old weights: a 16:9 camera silently ran the old model. Exports now record
    their weights, and such a variant is never offered to a camera: one warning gives the command
    that re-exports it."""
    import torch
    from vdepth_export.export_onnx import export_onnx

    folder = tmp_path / "m"
    torch.manual_seed(0)
    old = TinyVideoNet(channels=4).eval()
    export_onnx(old, folder, frames=2, height=16, width=16, parity=False)
    export_onnx(folder, folder, frames=2, height=16, width=24, parity=False, variant=True)  # as the CLI does
    with create_engine(folder, backend="onnxruntime", threads=1) as eng:
        assert eng.at_resolution(16, 24).input_spec.width == 24  # the same weights: a variant
    torch.manual_seed(1)
    export_onnx(TinyVideoNet(channels=4).eval(), folder, frames=2, height=16, width=16, parity=False, overwrite=True)
    with create_engine(folder, backend="onnxruntime", threads=1) as eng:
        assert (16, 24) not in eng.resolutions()
        with pytest.raises(ConfigError, match="not 16x24"):
            eng.at_resolution(16, 24)
    named = [r.getMessage() for r in caplog.records if "model.16x24.onnx is not used" in r.getMessage()]
    assert len(named) == 1 and "exported from other weights" in named[0] and "--variant" in named[0], named


@pytest.mark.usefixtures("tiny_registry")
def test_a_camera_with_non_square_pixels_shows_the_model_the_scene_not_the_squashed_image(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A camera binned 2x1 (or an anamorphic lens: fx != fy) has images half as wide as its scene. The
    working resolution followed the image's pixel grid, so an engine that runs any size showed the model
    the scene squashed 2x (the default model's AbsRel on 7-Scenes went from 0.126 to 0.144), and a
    fixed-shape one was said to stretch the frames, with advice to export the squashed shape. The
    working resolution now follows the scene (fx/fy); the outputs stay on the image's pixel grid."""
    binned = CameraModel(250.0, 500.0, 39.5, 119.5, 80, 240)  # a 160x240 scene (2:3) on an 80x240 grid
    frames = [FrameInput(f.rgb, f.stamp_ns, camera=binned) for f in _frames(2, 240, 80)]
    model = TinyVideoNet(channels=4, multiple_of=4, window=6).eval()
    with create_engine(model, frames=6, height=16, width=20) as eng:
        pipe = DepthPipeline(PipelineConfig(scale_source="none", window=6, overlap=2), eng)
        pipe.push(frames[0])
        assert (pipe.height, pipe.width) == (24, 16)  # the scene's 2:3, not the image's 1:3 (48x16)
    # a fixed 48x64 (4:3) engine: the scene (2:3) would be stretched 2x, not the image (1:3) 4x
    for camera, stretch in ((binned, "2.00x"), (None, "4.00x")):
        caplog.clear()
        pipe = DepthPipeline(PipelineConfig(scale_source="none"), LuminanceEngine())
        out = [f for fr in frames for f in pipe.push(FrameInput(fr.rgb, fr.stamp_ns, camera=camera))] + pipe.flush()
        assert out[0].disparity.shape == (240, 80) and out[0].camera == camera  # registered to the image
        warnings = [r.getMessage() for r in caplog.records if "stretched" in r.getMessage()]
        assert len(warnings) == 1 and f"stretched {stretch}" in warnings[0], warnings
