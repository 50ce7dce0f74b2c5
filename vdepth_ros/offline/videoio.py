"""Per-frame file outputs of `vdepth-video` (depth/disparity files, clouds, preview, camera YAML)
and the assumed pinhole of a clip without a calibration; its input is `video_source`.

One frame's files are written as it comes, so memory is bounded by the pipeline window, not by the
clip length.
"""

from __future__ import annotations

import csv
import errno
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from vdepth_ros.camera_info import camera_info_fields
from vdepth_ros.colormap import auto_range, preview_image, units_label
from vdepth_ros.offline.atomic import DISK_FULL_ERRNOS, file_size_limit
from vdepth_ros.offline.errors import OfflineError
from vdepth_ros.offline.video_source import VideoFrameMeta

if TYPE_CHECKING:
    from collections.abc import Sequence

    from vdepth_ros.pipeline import DepthFrame
    from vdepth_ros.stream.cloud import CameraModel

log = logging.getLogger(__name__)

FORMATS = ("png", "npy", "npz")
#: 16-bit depth PNG (millimetres): codes for what is not a distance (REP 118's NaN / -Inf / +Inf).
PNG_NO_ESTIMATE, PNG_TOO_CLOSE, PNG_TOO_FAR = 0, 1, 65535
PNG_CODES = {
    str(PNG_NO_ESTIMATE): "no estimate (NaN)",
    str(PNG_TOO_CLOSE): "closer than min_depth (-Inf)",
    str(PNG_TOO_FAR): "beyond the far limit (+Inf), or farther than 65.534 m",
}


def default_intrinsics(width: int, height: int, hfov_deg: float = 60.0) -> tuple[float, float, float, float]:
    """`(fx, fy, cx, cy)` of an assumed pinhole with horizontal FOV `hfov_deg` and square pixels."""
    fx = (width / 2.0) / float(np.tan(np.radians(hfov_deg) / 2.0))
    return fx, fx, (width - 1) / 2.0, (height - 1) / 2.0


def depth_png(depth: np.ndarray) -> np.ndarray:
    """Depth in metres (REP 118 float32) -> uint16 millimetres with `PNG_CODES` for NaN / -Inf / +Inf;
    distances are 2..65534 mm."""
    with np.errstate(invalid="ignore"):
        mm = np.clip(np.rint(np.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0) * 1000.0), 2, PNG_TOO_FAR)
    out = mm.astype(np.uint16)
    out[np.isnan(depth)] = PNG_NO_ESTIMATE
    out[depth == -np.inf] = PNG_TOO_CLOSE
    out[depth == np.inf] = PNG_TOO_FAR
    return out


def depth_from_png(png: np.ndarray) -> np.ndarray:
    """The inverse of `depth_png`: float32 metres with NaN / -Inf / +Inf for the codes."""
    out = png.astype(np.float32) / 1000.0
    out[png == PNG_NO_ESTIMATE] = np.nan
    out[png == PNG_TOO_CLOSE] = -np.inf
    out[png == PNG_TOO_FAR] = np.inf
    return out


def write_ply(path: Path, points: np.ndarray, colors: np.ndarray | None) -> int:
    """Write the finite points of an organized cloud as binary little-endian PLY; returns the count."""
    xyz = points.reshape(-1, 3)
    ok = np.isfinite(xyz).all(axis=1)
    props = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        props += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    rec = np.empty(int(ok.sum()), dtype=props)
    rec["x"], rec["y"], rec["z"] = xyz[ok, 0], xyz[ok, 1], xyz[ok, 2]
    if colors is not None:
        rgb = colors.reshape(-1, 3)[ok]
        rec["red"], rec["green"], rec["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    kinds = {"<f4": "float", "u1": "uchar"}
    header = "ply\nformat binary_little_endian 1.0\n" + f"element vertex {rec.size}\n"
    header += "".join(f"property {kinds[t]} {n}\n" for n, t in props) + "end_header\n"
    with path.open("wb") as f:
        f.write(header.encode("ascii"))
        f.write(rec.tobytes())
    return int(rec.size)


def write_png(path: Path, image: np.ndarray, params: Sequence[int] = ()) -> None:
    """`image` as a PNG file. Not `cv2.imwrite`: it reports success for a file the disk had no room
    for (cut short), where Python's write raises the OSError (a full disk is then one error)."""
    ok, buf = cv2.imencode(".png", image, list(params))
    if not ok:
        raise OfflineError(f"cannot encode {path.name} as PNG")
    path.write_bytes(buf.tobytes())


def read_ply(path: Path) -> np.ndarray:
    """`(N, 3)` float32 xyz of a PLY written by `write_ply` (for tests and quick checks)."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    head = data[:end].decode("ascii").splitlines()
    n = int(next(line.split()[2] for line in head if line.startswith("element vertex")))
    props = [line.split()[2] for line in head if line.startswith("property")]
    dt = [(p, "<f4") if p in "xyz" else (p, "u1") for p in props]
    rec = np.frombuffer(data, dtype=dt, count=n, offset=end)
    return np.stack([rec["x"], rec["y"], rec["z"]], axis=1)


#: what `VideoOutputWriter` writes in its folder (vdepth-video's `--overwrite` replaces nothing else):
#: files, and folders of one file per frame, named by its index
OUTPUT_FILES = frozenset({"meta.json", "camera_info.yaml", "frames.csv", "preview.mp4", "preview.png"})
FRAME_FOLDERS = frozenset({"depth", "disparity", "clouds"})
FRAME_FILE = re.compile(r"\d{6,}\.(png|npy|npz|ply)")


class VideoOutputWriter:
    """Per-frame files of a `vdepth-video` run, inside one output folder.

    Layout: `depth/` (metres; `png` = 16-bit millimetres with `PNG_CODES` for NaN / -Inf / +Inf) or
    `disparity/` when there is no scale source (relative; `png` = disparity * `png_scale` in 16 bits,
    0 = no estimate, see `meta.json`), `npy`/`npz` float32 (REP 118: NaN, +-Inf), `preview.mp4`
    (`colormap.preview_image`: the input image and the depth side by side, a colour bar with units
    below), `clouds/*.ply`, `frames.csv` (index, stamp, source, status, fit), `meta.json` (the written
    resolution and intrinsics) and `camera_info.yaml` (the written depth's camera, when known).

    Args:
        folder: output folder (created).
        formats: subset of `FORMATS`.
        fps: preview frame rate.
        preview: write `preview.mp4`, and `preview.png` (one still: frame `still_index`).
        ply: write clouds when the frame has points.
        still_index: input frame index of `preview.png` (None: no still).
        room: a file to fill with `room_bytes` at the start (beside the output, on its disk) and delete when a write
            does not fit (`atomic.DISK_FULL_ERRNOS`), so that the preview's index, `frames.csv` and `meta.json` fit.

    A write that does not fit ends the files with the frames before: the frame's files written so far are removed,
    later frames are not written (`write` returns False; `full` says why), and `preview.mp4` stops before it (it is
    checked to stay under the file size limit that `file_size_limit` finds, OpenCV writing past it without a word),
    so every file kept is complete, `preview.mp4` playable.
    """

    def __init__(
        self,
        folder: Path,
        *,
        formats: tuple[str, ...] = ("png",),
        fps: float = 30.0,
        preview: bool = True,
        ply: bool = False,
        still_index: int | None = 0,
        room: Path | None = None,
        room_bytes: int = 4 << 20,
    ) -> None:
        bad = [f for f in formats if f not in FORMATS]
        if bad:
            raise OfflineError(f"unknown output format(s) {bad}; choose from {', '.join(FORMATS)}")
        self.folder = folder
        self.formats = formats
        self.fps = fps
        self.preview = preview
        self.ply = ply
        self.still_index = still_index
        self.kind: str | None = None  # "depth" | "disparity", fixed by the first frame
        self.png_scale: float | None = None
        self.range: tuple[float, float] | None = None
        self.frames = 0
        self.clouds = 0
        self._video: Any = None
        self.size: tuple[int, int] | None = None  # written (H, W)
        self.camera: CameraModel | None = None  # intrinsics of the written depth
        self.label = ""
        self._csv: Any = None
        self._csv_file: Any = None
        self._video_frames = 0
        self.room, self.room_bytes = room, room_bytes
        #: the write that did not fit, or None
        self.full: OSError | None = None
        self._file_limit = file_size_limit(folder.parent)
        self._preview_step = 0  # the most one preview frame added to preview.mp4 so far

    def __enter__(self) -> VideoOutputWriter:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.room is not None:
            try:
                with self.room.open("wb") as f:
                    f.truncate(0)
                    f.write(bytes(self.room_bytes))  # (written, not sparse: the room is taken on the disk)
            except OSError:  # no room even for that: the first write will say so
                self.room.unlink(missing_ok=True)
        self._csv_file = (self.folder / "frames.csv").open("w", newline="")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(
            ["index", "stamp_ns", "source", "status", "kind", "scale", "shift", "residual", "scale_source"]
        )
        return self

    def __exit__(self, exc_type: object, *exc: object) -> bool:
        self.close(check=exc_type is None)
        return False

    def close(self, check: bool = True) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None
            if check:
                self._check_preview()
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = None

    def _start(self, frame: DepthFrame) -> None:
        self.kind = "depth" if frame.depth is not None else "disparity"
        values = frame.depth if frame.depth is not None else frame.disparity
        finite = values[np.isfinite(values)]
        self.range = auto_range(values)
        self.size, self.camera = values.shape, frame.camera
        self.label = units_label(self.kind == "depth", getattr(frame.fit, "scale_source", ""))
        if self.kind == "disparity":
            top = float(finite.max()) if finite.size else 1.0
            self.png_scale = 30000.0 / top if top > 0 else 1.0  # headroom x2 for later, larger disparities
        (self.folder / self.kind).mkdir(exist_ok=True)
        if self.kind == "disparity":
            log.warning(
                "no scale source: writing relative disparity, not metric depth (give a depth range or "
                "sparse depth for metres)"
            )
        if self.preview:
            h, w = self._preview(frame, values).shape[:2]
            self._video = cv2.VideoWriter(
                str(self.folder / "preview.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), float(self.fps), (w, h)
            )
            if not self._video.isOpened():
                raise OfflineError("cannot open an mp4v video writer for preview.mp4")

    def _check_preview(self) -> None:
        """OpenCV's video writer does not report a failed write: read preview.mp4's frame count back."""
        cap = cv2.VideoCapture(str(self.folder / "preview.mp4"))
        try:
            readable = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        finally:
            cap.release()
        if readable < self._video_frames:
            raise OfflineError(
                f"preview.mp4 was not written completely ({readable} of {self._video_frames} frames read back): "
                "is the disk full? Free space or choose another output path (-o); --no-preview leaves it out"
            )

    def write(self, frame: DepthFrame) -> bool:
        """Write one frame's files (all frames must agree on having depth or not); False when it was not written
        (a write that did not fit, now or before: `full`)."""
        if self.full is not None:
            return False
        meta = frame.meta
        index = meta.index if isinstance(meta, VideoFrameMeta) else frame.index
        try:
            if self._preview_past_limit():
                raise OSError(errno.EFBIG, "File too large")
            self._write(frame, index)
        except OSError as err:
            if err.errno not in DISK_FULL_ERRNOS:
                raise
            self.full = err
            for folder in (*FRAME_FOLDERS, "clouds"):  # the frame's files written before the one that did not fit
                for name in FORMATS + ("ply",):
                    (self.folder / folder / f"{index:06d}.{name}").unlink(missing_ok=True)
            if self.room is not None:
                self.room.unlink(missing_ok=True)
            log.warning("cannot write frame %d's files: %s; the output ends with the frames before", index, err)
            return False
        return True

    def _preview_past_limit(self) -> bool:
        """Whether another frame may take preview.mp4 past the file size limit (OpenCV's writer fails there without
        a word, and the file would be unplayable): its size, room for two of its largest frames and its index."""
        if self._video is None or self._file_limit is None:
            return False
        try:
            size = (self.folder / "preview.mp4").stat().st_size
        except OSError:
            return False
        index_bytes = 64 * (self._video_frames + 1) + (64 << 10)  # FFmpeg's buffer and the moov index
        return size + 2 * self._preview_step + index_bytes > self._file_limit

    def _write(self, frame: DepthFrame, index: int) -> None:
        if self.kind is None:
            self._start(frame)
        values = frame.depth if self.kind == "depth" else frame.disparity
        if values is None:
            raise OfflineError("frame without depth after frames with depth; the scale source changed mid-run")
        meta = frame.meta
        stem = self.folder / str(self.kind) / f"{index:06d}"
        if "png" in self.formats:
            if self.kind == "depth":
                q = depth_png(values)
            else:
                q = np.where(np.isfinite(values), np.rint(values * float(self.png_scale or 1.0)), 0)
                q = np.clip(q, 0, 65535).astype(np.uint16)
            write_png(stem.with_suffix(".png"), q)
        if "npy" in self.formats:
            np.save(stem.with_suffix(".npy"), values.astype(np.float32))
        if "npz" in self.formats:
            extra = {"depth": frame.depth} if frame.depth is not None else {}
            np.savez_compressed(
                stem.with_suffix(".npz"),
                disparity=frame.disparity.astype(np.float32),
                stamp_ns=np.int64(frame.stamp_ns),
                **extra,
            )
        if self._video is not None:
            img = self._preview(frame, values)
            before = _size(self.folder / "preview.mp4")
            self._video.write(img)
            self._video_frames += 1
            self._preview_step = max(self._preview_step, _size(self.folder / "preview.mp4") - before, img.nbytes // 16)
            if index == self.still_index:
                write_png(self.folder / "preview.png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if self.ply and frame.points is not None:
            (self.folder / "clouds").mkdir(exist_ok=True)
            write_ply(self.folder / "clouds" / f"{index:06d}.ply", frame.points, frame.colors)
            self.clouds += 1
        fit = frame.fit
        self._csv.writerow(
            [
                index,
                frame.stamp_ns,
                getattr(meta, "source", ""),
                frame.status,
                self.kind,
                getattr(fit, "scale", ""),
                getattr(fit, "shift", ""),
                getattr(fit, "residual", ""),
                getattr(fit, "scale_source", ""),
            ]
        )
        self.frames += 1

    def _preview(self, frame: DepthFrame, values: np.ndarray) -> np.ndarray:
        vmin, vmax = self.range or (0.0, 1.0)
        rgb = getattr(frame, "rgb", None)
        return preview_image(values, rgb, vmin, vmax, metric=self.kind == "depth", label=self.label)

    def write_meta(self, info: dict[str, Any]) -> None:
        """`meta.json`: units, encodings, the written resolution and intrinsics, and the run's settings,
        so the files can be read back correctly; `camera_info.yaml` with the written depth's camera."""
        units = {
            "depth": "metres; png: uint16 millimetres with png_codes; npy/npz: float32, NaN = no estimate, "
            "+Inf = beyond the far limit, -Inf = closer than min_depth (REP 118)",
            "disparity": "relative disparity (no scale source: NOT metric); png: uint16 = disparity * "
            "png_scale, 0 = no estimate; npy/npz: float32, NaN = no estimate",
        }
        cam = self.camera
        doc = {
            "kind": self.kind,
            "units": units.get(str(self.kind)),
            "png_scale": self.png_scale,
            "png_codes": PNG_CODES if self.kind == "depth" else {"0": "no estimate (NaN)"},
            "width": None if self.size is None else int(self.size[1]),
            "height": None if self.size is None else int(self.size[0]),
            "camera": None
            if cam is None
            else {"fx": cam.fx, "fy": cam.fy, "cx": cam.cx, "cy": cam.cy, "width": cam.width, "height": cam.height},
            "preview": "input image | depth side by side, colour bar with units below (near = bright)",
            "preview_units": self.label,
            "preview_range": self.range,
            "frames": self.frames,
            "clouds": self.clouds,
            "formats": self.formats,
            **info,
        }
        (self.folder / "meta.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
        if cam is not None:
            write_camera_yaml(self.folder / "camera_info.yaml", cam)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def write_camera_yaml(path: Path, camera: CameraModel) -> None:
    """The camera of the written depth as ROS camera_calibration YAML (rectified: no distortion,
    `camera_info.camera_info_fields` as the node's depth/camera_info), readable by
    `vdepth_ros.rectify.load_camera_info` and camera_info_manager."""
    f = camera_info_fields(camera)

    def mat(rows: int, cols: int, data: list[float]) -> str:
        return f"  rows: {rows}\n  cols: {cols}\n  data: [{', '.join(repr(float(v)) for v in data)}]\n"

    path.write_text(
        f"image_width: {f['width']}\nimage_height: {f['height']}\ncamera_name: vdepth_depth\n"
        f"camera_matrix:\n{mat(3, 3, f['k'])}distortion_model: {f['distortion_model']}\n"
        f"distortion_coefficients:\n{mat(1, 5, f['d'])}rectification_matrix:\n{mat(3, 3, f['r'])}"
        f"projection_matrix:\n{mat(3, 4, f['p'])}"
    )
