"""`DepthPipeline`'s way in: a `FrameInput` checked, turned upright (`image_rotation`), the working and
output resolution chosen when a stream starts (the camera's aspect ratio, its pixels' shape, the
engine's shapes), and each frame recorded at those sizes (`_Record`) until its window and output.

A mixin of `DepthPipeline` (`pipeline.py`, which sets the attributes these steps read: `config`,
`engine`, `reference`, `_turns`, `_default_size`, `_stretch_noted`, `stretched`, `_periodic_log`, the working
`height` and `width`).
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from vdepth_ros.errors import InputError
from vdepth_ros.pipeline_types import FrameInput, _Record, valid_at
from vdepth_ros.resize import registered_size, resize_frame, vda_working_size, working_size
from vdepth_ros.stream.cloud import CameraModel
from vdepth_ros.stream.scale import resample_sparse_depth

log = logging.getLogger("vdepth_ros.pipeline")  # the pipeline's lines, under its one logger name

#: A working resolution whose aspect ratio differs from the camera's by more than this factor is
#: named at stream start (a portrait camera on a landscape export: 1.87x; 3:2 on 7:5 is 1.07x).
MAX_STRETCH = 1.25

#: A log record's attribute (`logging`'s `extra`) set on a WARNING about a state of the current stream that the
#: pipeline keeps (one of `HELD_STATES`): a node reports that state as a condition while it holds (`ros.status`),
#: so the record is no event of its own.
HELD_AS_STATE = "vdepth_held_as_state"

#: `DepthPipeline`'s attributes that hold such a state, each a line for the status or None: `stretched` (the
#: model sees the current stream's frames stretched) and `fallback` (the last window's alignment fell back: a
#: covered lens, a blank wall), `sparse_span` (the metric fit in use extrapolates much of the scene's depth) and
#: `no_depth` (the last window's model output carried values of no depth: NaN/Inf, a constant frame).
#: They are of the frames that came; a node forgets them when it is deactivated.
HELD_STATES = ("stretched", "fallback", "sparse_span", "no_depth")


def _pixel_aspect(camera: CameraModel | None, quarter_turns: int = 0) -> float:
    """Width over height of one pixel of `camera` (`fy / fx`), turned by `quarter_turns` (`image_rotation`);
    1.0 without a camera or within 2 % of square (calibrations differ by a few tenths of a percent)."""
    if camera is None:
        return 1.0
    aspect = camera.fy / camera.fx if quarter_turns % 2 == 0 else camera.fx / camera.fy
    return 1.0 if abs(aspect - 1.0) <= 0.02 else aspect


def _turned(a: np.ndarray | None, quarter_turns: int) -> np.ndarray | None:
    """`a` (`(H, W, ...)`) turned `quarter_turns` x 90 degrees clockwise (negative: counter-clockwise),
    contiguous; None stays None. `image_rotation` turns the camera's images upright with it and the
    outputs back to the camera's pixels."""
    if a is None or quarter_turns % 4 == 0:
        return a
    return np.ascontiguousarray(np.rot90(a, -quarter_turns, axes=(0, 1)))


class InputSteps:
    """Frames in: `_check`, `_start_stream` (a new stream's sizes), `_record` (module docstring)."""

    def _check(self, frame: FrameInput) -> np.ndarray:
        rgb = np.asarray(frame.rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise InputError(f"FrameInput.rgb must be (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
        if frame.sparse_depth is not None and np.shape(frame.sparse_depth) != rgb.shape[:2]:
            raise InputError(f"sparse_depth is {np.shape(frame.sparse_depth)}, rgb is {rgb.shape[:2]}")
        if frame.valid is not None and np.shape(frame.valid) != rgb.shape[:2]:
            raise InputError(f"valid is {np.shape(frame.valid)}, rgb is {rgb.shape[:2]}")
        if frame.camera is not None and (frame.camera.width, frame.camera.height) != (rgb.shape[1], rgb.shape[0]):
            raise InputError(
                f"camera is {frame.camera.width}x{frame.camera.height}, rgb is {rgb.shape[1]}x{rgb.shape[0]}"
            )
        return _turned(rgb, self._turns)  # upright for the model (`image_rotation`)

    def _start_stream(self, input_size: tuple[int, int], camera: CameraModel | None = None) -> None:
        """Working and output resolution of a new stream of `input_size` (H, W) frames (upright), taken by
        `camera` (the first frame's, the camera's way up; None: square pixels)."""
        h, w = input_size
        # the scene's shape: a camera with non-square pixels (2x1 binning, an anamorphic lens, DV's 0.9)
        # has images of another shape than the scene, and the model must see the scene
        square_w = w * _pixel_aspect(camera, self._turns)
        fixed = self.engine.resolutions()
        if fixed is None and self.reference is not None and self.reference.get("working_size") == "vda":
            work = vda_working_size(h, round(square_w), self.config.working_short_side or min(self._default_size))
        else:
            work = working_size(
                h,
                round(square_w),
                fixed=fixed,
                default=self._default_size,
                multiple=self.engine.input_spec.multiple_of,
                short_side=self.config.working_short_side,
            )
        if work != (self.height, self.width) or self._engine is not self.engine:
            self._engine = self.engine.at_resolution(*work)
            self.height, self.width = work
        pixels = None if self.config.output_resolution == "input" else self.height * self.width
        side = self._turns % 2 == 1  # upright frames of a camera on its side: the output's width is their height
        out = registered_size(*((w, h) if side else (h, w)), pixels=pixels, max_width=self.config.max_output_width)
        self._output_size = (out[1], out[0]) if side else out
        self._input_size = (h, w)
        # each size's own line: a camera alternating resolutions starts a stream at every frame
        more = self._periodic_log.admit(f"stream of {w}x{h}")
        if more is not None:
            log.info(
                "stream of %dx%d frames%s%s: working resolution %dx%d, output %dx%d%s",
                w, h, f" (turned upright: image_rotation {self.config.image_rotation})" if self._turns else "",
                f" (non-square pixels, a {round(square_w)}x{h} scene: fx/fy)" if square_w != w else "",
                self.width, self.height, out[1], out[0], more,  # the output the camera's way up
            )  # fmt: skip
        stretch = (self.width / self.height) / (square_w / h)
        shapes = (h, w, self.height, self.width)
        stretched = max(stretch, 1.0 / stretch) > MAX_STRETCH
        direction = "horizontally" if stretch > 1.0 else "vertically"
        # while this stream lasts (a node's /diagnostics names it until frames of another shape start one)
        self.stretched = (
            f"the model sees the camera's {w}x{h} frames stretched {max(stretch, 1.0 / stretch):.2f}x {direction} "
            f"(it runs at {self.width}x{self.height}): export one of the camera's shape or use the torch backend"
            if stretched
            else None
        )
        if stretched and shapes not in self._stretch_noted:
            self._stretch_noted.add(shapes)  # once per camera and model shape, not at every stream restart
            # the model's shape turned: what a portrait camera on a landscape export wants
            turned = (self.height / self.width) / (square_w / h)
            sideways = max(turned, 1 / turned) < MAX_STRETCH
            scene = f" (a {round(square_w)}x{h} scene: non-square pixels)" if square_w != w else ""
            height, width = (self.width, self.height) if sideways else ("H", "W")
            # a causal model's stream-step graph has its own variants: `vdepth-export onnx` refuses the model
            command = "stream" if getattr(self.engine, "streams", False) else "onnx"
            export = f"vdepth-export {command} FOLDER --height {height} --width {width} --variant, docs/outputs.md"
            log.warning(
                "the model runs at %dx%d, the camera's %dx%d frames%s have another shape: the model sees them "
                "stretched %.2fx %s (depth stays registered to the image, but a model sees distorted scenes "
                "less well); export one of the camera's shape (%s) or use the torch backend, which runs any size%s",
                self.width, self.height, w, h, scene, max(stretch, 1.0 / stretch), direction, export,
                "; if the camera is mounted on its side (the scene turned in its images), set image_rotation "
                "(90 or 270) instead: the model then sees the scene upright, at its own shape"
                if sideways and not self._turns else "",
                extra={HELD_AS_STATE: True},
            )  # fmt: skip

    def _record(self, frame: FrameInput, rgb: np.ndarray) -> _Record:
        value_range = self.engine.input_spec.value_range
        work = resize_frame(rgb, self.height, self.width, self.config.resize_method, value_range)
        sparse = None
        if frame.sparse_depth is not None:
            sparse = resample_sparse_depth(_turned(frame.sparse_depth, self._turns), self.width, self.height)
        assert self._output_size is not None
        oh, ow = self._output_size
        out = rgb if rgb.shape[:2] == (oh, ow) else cv2.resize(rgb, (ow, oh), interpolation=cv2.INTER_AREA)
        fit_size = (oh, ow) if self._stitch_output else (self.height, self.width)
        valid = _turned(frame.valid, self._turns)
        valid_out, valid_fit = valid_at(valid, oh, ow), valid_at(valid, *fit_size)
        return _Record(frame.stamp_ns, frame.meta, frame.camera, rgb.shape[:2], work, out, sparse, valid_out, valid_fit)
