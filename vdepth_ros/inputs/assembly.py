"""One synchronised camera input -> the pipeline's `FrameInput`: the same steps live and offline.

`FrameAssembler.assemble` is what the node's worker and `vdepth-bag`'s reader both call with an
image message, its camera_info (paired by `inputs.sync`), and the sparse depth message or camera
pose that `inputs.samples` gave it:

1. refuse an image above `max_input_pixels` before decoding it (a 97 KB PNG can hold 10000x10000);
2. decode it to RGB (`encodings`: raw encodings, YUV 4:2:2, Bayer, jpeg/png);
3. check the camera_info (`camera_info_problem`): a bad one is refused and the last good one used;
4. undistort with `rectify: true`, else note once that the camera_info has distortion
   (`rectify.pinhole_input`);
5. sparse depth: triangulate tracked points with the pose (`triangulate.PoseTriangulator`), or
   decode/project the depth image or cloud (`rectify.sparse_depth_input`); a unusable one is
   reported and the frame goes on without it.

Messages are duck-typed on the fields rclpy's and rosbags' share, so this module imports neither.
Problems that do not drop the frame go to the caller's `report(kind, message)`: the node logs them
rate-limited, the bag counts them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from vdepth_ros.camera_info import camera_from_info, image_window
from vdepth_ros.encodings import (
    compressed_depth_to_metres,
    decode_compressed,
    depth_from_image,
    get_encoding,
    image_array_from_fields,
    rgb_from_image,
    significant_bits,
    to_8bit,
)
from vdepth_ros.errors import InputError
from vdepth_ros.pipeline import FrameInput
from vdepth_ros.rectify import Rectifier, has_distortion, pinhole_input, sparse_depth_input
from vdepth_ros.triangulate import PoseTriangulator

#: Default `max_input_pixels`: 4096 x 4096 (16.8 MP: 4K UHD and most machine-vision cameras fit).
DEFAULT_MAX_INPUT_PIXELS = 4096 * 4096

#: Kinds passed to `report`: what was wrong, and the frame was kept.
REPORT_KINDS = (
    "bit_depth",
    "camera_info",
    "camera_info_frame",
    "image_frame",
    "distortion",
    "scaled_info",
    "sparse",
    "sparse_frame",
    "pose",
)


class UnsupportedImageError(InputError):
    """The image's encoding is not a colour or mono one (a depth image on the colour input...)."""


def is_compressed(msg: Any) -> bool:
    """True for a `sensor_msgs/CompressedImage` (rclpy or rosbags)."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


#: the fix for a depth camera's stream given where the colour image is read
DEPTH_STREAM_FIX = (
    "it is a depth stream (compressed_depth_image_transport's compressedDepth), not a colour image: remap image "
    "to the colour camera's topic (e.g. .../color/image_raw)"
)


def is_depth_stream_name(topic: str) -> bool:
    """Does `topic` name a depth image's compressed stream (compressed_depth_image_transport's
    `<base>/compressedDepth`, also under a transport suffix such as `.../compressedDepth/compressed`)?"""
    return "compresseddepth" in [part.lower() for part in topic.split("/")]


def is_compressed_depth(msg: Any) -> bool:
    """True for a CompressedImage of compressed_depth_image_transport (format "16UC1; compressedDepth
    png"): a depth image, whatever the topic is called."""
    return is_compressed(msg) and "compresseddepth" in str(msg.format).lower()


def compressed_size(data: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """`(width, height)` from a PNG or JPEG header without decoding, or None (other formats).

    Hand-written because OpenCV has no header-only read and Pillow is not a dependency; PNG's IHDR
    and JPEG's start-of-frame segment are fixed layouts (PNG spec 11.2.2, ITU T.81 B.2.2).
    """
    buf = bytes(memoryview(data)[:65536])
    if buf[:8] == b"\x89PNG\r\n\x1a\n" and len(buf) >= 24:
        width, height = struct.unpack(">II", buf[16:24])
        return int(width), int(height)
    if buf[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(buf) and buf[i] == 0xFF:
        marker, length = buf[i + 1], struct.unpack(">H", buf[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame segment
            height, width = struct.unpack(">HH", buf[i + 5 : i + 9])
            return int(width), int(height)
        i += 2 + length
    return None


def check_input_size(msg: Any, max_pixels: int) -> None:
    """Refuse an image larger than `max_pixels` (0: no limit) before it is decoded.

    Raises:
        InputError: naming the size, the limit and the parameter.
    """
    if max_pixels <= 0:
        return
    size = compressed_size(msg.data) if is_compressed(msg) else (int(msg.width), int(msg.height))
    if size is not None and size[0] * size[1] > max_pixels:
        raise InputError(
            f"image {size[0]}x{size[1]} ({size[0] * size[1] / 1e6:.1f} MP) is larger than max_input_pixels "
            f"= {max_pixels} ({max_pixels / 1e6:.1f} MP); the frame is dropped (raise max_input_pixels if the "
            "camera really is this large)"
        )


class SampleBitDepth:
    """How many low bits of one camera's 16-bit samples hold the picture (the `image_bit_depth`
    parameter): a 12-bit camera publishing mono16 (bayer_*16, rgb16...) with values 0-4095, as many
    machine-vision and thermal drivers do, came out almost black when the top 8 of 16 bits were kept
    (cv_bridge's rule).

    Args:
        setting: 8-16 for a camera whose bit depth the user knows; 0 = auto: found from the images
            (`encodings.significant_bits`), only ever raised (a darker frame never lowers it, so the
            picture does not change brightness from frame to frame), each choice told once.
    """

    def __init__(self, setting: int = 0) -> None:
        self.setting = int(setting)
        self.bits: int | None = self.setting or None
        self._told = False
        self.note: str | None = None  # what was chosen, to be told once (taken by the caller)

    def bits_for(self, arr: np.ndarray, encoding: str, label: str | None = None) -> int:
        """The bit depth to read this 16-bit image (`arr` in `encoding`) with; sets `note` (one line for
        the user, naming the images `label`, default `encoding`) when it was chosen or raised."""
        label = label or encoding
        if self.setting:
            if not self._told:
                self._told = True
                self.note = f"{label} images are read as {self.setting}-bit (image_bit_depth)"
            return self.setting
        found = significant_bits(arr, encoding)
        if found is None or (self.bits is not None and found[0] <= self.bits):
            return self.bits or 16
        previous, (self.bits, largest) = self.bits, found
        if previous is not None:
            what = f"exceed {previous} bits (the largest is {largest})"
        elif self.bits == 16:
            what = "fill 16 bits (or their top bits)"
        else:
            what = f"use {self.bits} bits (the largest is {largest})"
        how = (
            "their top 8 bits are the image"
            if self.bits == 16
            else f"read as {self.bits}-bit: bits {self.bits - 1}..{self.bits - 8} are the image"
        )
        self.note = (
            f"{label} samples {what}: {how} (image_bit_depth: 0 = auto; set it to the camera's bit depth to fix it)"
        )
        return self.bits


def decode_color_image(msg: Any, max_pixels: int = 0, bit_depth: SampleBitDepth | None = None) -> np.ndarray:
    """`(H, W, 3)` uint8 RGB of a duck-typed `Image` or `CompressedImage`.

    Args:
        msg: the message.
        max_pixels: larger images are refused (0: no limit).
        bit_depth: how 16-bit samples are read (the camera's `SampleBitDepth`; None: their top 8 bits).

    Raises:
        UnsupportedImageError: a depth or unknown encoding.
        InputError: larger than `max_pixels`, or malformed (size, buffer, undecodable bytes).
    """
    check_input_size(msg, max_pixels)
    if is_compressed_depth(msg):
        raise UnsupportedImageError(f"format {msg.format!r}: {DEPTH_STREAM_FIX}")
    if is_compressed(msg):
        rgb = decode_compressed(msg.data, msg.format, keep_16bit=bit_depth is not None)
        if max_pixels > 0 and rgb.shape[0] * rgb.shape[1] > max_pixels:  # a format without a known header
            raise InputError(f"decoded image {rgb.shape[1]}x{rgb.shape[0]} is larger than max_input_pixels")
        if bit_depth is not None and rgb.dtype == np.uint16:  # a 16-bit PNG (compressed mono16, bgr16...)
            # image_transport's format names the encoding first: "mono16; png compressed mono16"
            label = str(msg.format).split(";")[0].strip() or "16-bit png"
            rgb = to_8bit(rgb, bit_depth.bits_for(rgb, "rgb16", label))
        return rgb
    try:
        kind = get_encoding(msg.encoding).kind
    except InputError as err:
        raise UnsupportedImageError(str(err)) from None
    arr = image_array_from_fields(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)
    bits = 16
    if bit_depth is not None and kind != "depth" and arr.dtype.itemsize == 2:
        bits = bit_depth.bits_for(arr, msg.encoding)
    try:
        return rgb_from_image(arr, msg.encoding, bits)
    except InputError as err:
        if kind == "depth":
            raise UnsupportedImageError(str(err)) from None
        raise


def decode_depth_image(msg: Any) -> np.ndarray:
    """`(H, W)` float32 metres (NaN invalid) of a duck-typed `16UC1`/`32FC1` `Image`, or of a
    compressedDepth `CompressedImage` (`encodings.compressed_depth_to_metres`: depth cameras
    recorded with image_transport's compressedDepth plugin).

    Raises:
        InputError: not a depth encoding, or malformed.
    """
    if is_compressed(msg):
        if not is_compressed_depth(msg):
            raise InputError(f"a CompressedImage of format {msg.format!r} is not a depth image (compressedDepth)")
        return compressed_depth_to_metres(msg.format, msg.data)
    if get_encoding(msg.encoding).unit_scale is None:
        raise InputError(f"encoding {msg.encoding!r} is not a depth image (16UC1 or 32FC1)")
    arr = image_array_from_fields(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)
    return depth_from_image(arr, msg.encoding)


def _projection_problem(name: str, m: np.ndarray, width: int, height: int) -> str | None:
    """What is wrong with a set (non-zero) K (3x3) or P (3x4), or None."""
    fx, fy, cx, cy = m[0, 0], m[1, 1], m[0, 2], m[1, 2]
    if not (fx > 0 and fy > 0):
        return f"{name} has fx={fx:g}, fy={fy:g}; focal lengths must be positive"
    if not np.allclose(m[2, :3], [0.0, 0.0, 1.0]) or m[1, 0] != 0:
        return f"{name}'s last row must be [0 0 1{' 0' if m.shape[1] == 4 else ''}] and {name}[1][0] zero"
    if not (0 <= cx <= width and 0 <= cy <= height):
        return f"{name}'s principal point ({cx:g}, {cy:g}) lies outside the {width}x{height} image"
    return None


def camera_info_problem(info: Any, image_size: tuple[int, int] | None = None) -> str | None:
    """What makes a `CameraInfo` unusable, or None. An all-zero (uncalibrated) one is usable: it
    gives no camera (depth without a cloud).

    Checks: K, P, R, D finite; a set K or P has positive fx, fy, the pinhole last row and its
    principal point inside the image; K and P agree (P's focal lengths within 4x of K's); a
    calibrated camera_info has a size, a region of interest inside it, and the image's aspect ratio
    (`image_size` `(H, W)`) for the part it says the image shows (its `roi`, binned: resizing keeps
    the ratio, an undeclared crop does not).
    """
    arrays = {name: np.asarray(getattr(info, name, ()), dtype=np.float64).ravel() for name in ("k", "p", "r", "d")}
    for name, values in arrays.items():
        if not np.isfinite(values).all():
            return f"{name.upper()} holds NaN or infinity"
    if arrays["k"].size != 9 or arrays["p"].size != 12:
        return f"K has {arrays['k'].size} and P {arrays['p'].size} values; expected 9 and 12"
    k, p = arrays["k"].reshape(3, 3), arrays["p"].reshape(3, 4)
    width, height = int(info.width), int(info.height)
    if not k.any() and not p.any():
        return None
    if width <= 0 or height <= 0:
        return (
            f"a calibrated camera_info needs its image size; width x height is {width}x{height} (its publisher must "
            "set width and height to the size of the image K was calibrated at)"
        )
    for name, m in (("K", k), ("P", p)):
        problem = _projection_problem(name, m, width, height) if m.any() else None
        if problem:
            return problem
    if k.any() and p.any() and not (0.25 <= p[0, 0] / k[0, 0] <= 4 and 0.25 <= p[1, 1] / k[1, 1] <= 4):
        return f"P (fx={p[0, 0]:g}, fy={p[1, 1]:g}) does not fit K (fx={k[0, 0]:g}, fy={k[1, 1]:g})"
    x0, y0, roi_w, roi_h, bx, by = image_window(info)
    if x0 < 0 or y0 < 0 or x0 + roi_w > width or y0 + roi_h > height:
        return f"its region of interest ({roi_w}x{roi_h} at {x0}, {y0}) is not inside the {width}x{height} image"
    if image_size is not None:
        shown_w, shown_h = roi_w / bx, roi_h / by
        sy, sx = image_size[0] / shown_h, image_size[1] / shown_w
        if abs(sx / sy - 1.0) > 0.02:
            shown = (
                f"{width}x{height} images"
                if (roi_w, roi_h, bx, by) == (width, height, 1, 1)
                else (f"{shown_w:g}x{shown_h:g} images (roi {roi_w}x{roi_h}, binning {bx}x{by})")
            )
            turned = abs((image_size[1] / shown_h) / (image_size[0] / shown_w) - 1.0) <= 0.02
            why = (
                "turned by 90 degrees, by the driver or an image_rotate node? Take the camera's own, unturned images "
                "with this camera_info and set image_rotation, which shows the model the scene upright, or give "
                "the turned images a camera_info of their own"
                if turned
                else "cropped without setting roi?"
            )
            return f"it is for {shown}, but the image is {image_size[1]}x{image_size[0]}: another aspect ratio ({why})"
    return None


def calibration_problem(info: Any, image_size: tuple[int, int] | None = None) -> str | None:
    """What makes a calibration the user names (a file, `--intrinsics`) unusable, or None:
    `camera_info_problem`, and also an uncalibrated (all-zero) camera, which a live camera_info may
    be (no cloud, named by `camera_missing`) but a calibration given on purpose may not. One rule for
    `vdepth-bag --camera-info-file` and `vdepth-video --camera-info/--intrinsics`."""
    problem = camera_info_problem(info, image_size)
    if problem is None and camera_from_info(info) is None:
        problem = "its camera matrix is all zero (an uncalibrated camera)"
    return problem


def camera_missing(info: Any, where: str, refused: int = 0) -> str:
    """Why a frame has no camera model (so no point cloud and no output camera_info), given the
    camera_info it was assembled with (`FrameAssembler.info`) and how many were refused
    (`FrameAssembler.refused_infos`): none arrived, only unusable ones did, an uncalibrated
    (all-zero) one did, as camera drivers publish without a calibration file, or the last good one
    is for another aspect ratio than the image (`FrameAssembler.unfit`). `where` names the topic
    ("on '/cam/camera_info'")."""
    if info is None and refused:
        return f"every camera_info {where} so far was refused (the error above says why)"
    if info is None:
        return f"no camera_info has arrived {where}"
    if camera_from_info(info) is not None:  # calibrated, but not for this image (`FrameAssembler.unfit`)
        return (
            f"the camera_info {where} is for {int(info.width)}x{int(info.height)} images, not the image's aspect "
            "ratio (the camera changed resolution?)"
        )
    return f"the camera_info {where} is uncalibrated (K and P are all zero)"


def _frame_id(msg: Any) -> str:
    """A message's `header.frame_id` without a leading '/' (ROS 1 style), '' when it has none."""
    header = getattr(msg, "header", None)
    return str(getattr(header, "frame_id", "") or "").lstrip("/")


class FrameAssembler:
    """Builds the `FrameInput` of one synchronised input (module docstring), for one camera stream.

    Args:
        rectify: undistort each image with its camera_info (the node's `rectify`).
        sparse_depth: "none", "image", "pointcloud" or "pose" (the node's `sparse_depth`).
        max_input_pixels: larger images are refused before decoding (0: no limit).
        image_bit_depth: significant bits of 16-bit samples, 0 = auto (`SampleBitDepth`).
        report: `report(kind, message)` for problems that keep the frame (`REPORT_KINDS`).
        choose_info: how the user picks this camera's camera_info, named when the one in use is
            another camera's (the node: a remap; `vdepth-bag`: `--camera-info-topic`).
    """

    def __init__(
        self,
        *,
        rectify: bool = False,
        sparse_depth: str = "none",
        max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS,
        image_bit_depth: int = 0,
        report: Callable[[str, str], None] | None = None,
        choose_info: str = "remap camera_info to this camera's",
    ) -> None:
        self.choose_info = choose_info
        self.rectifier = Rectifier() if rectify else None
        self.triangulator = PoseTriangulator() if sparse_depth == "pose" else None
        self.max_input_pixels = int(max_input_pixels)
        self.bit_depth = SampleBitDepth(image_bit_depth)
        self._report = report or (lambda kind, message: None)
        self.info: Any = None  # the camera_info the last frame used (the last good one)
        self.unfit: str | None = None  # why the last good camera_info did not fit the last frame, if not
        self._fits: tuple[Any, str | None] = (None, None)  # (image size, why `info` does not fit it)
        self.refused_infos = 0
        self._distortion_noted = False
        self._scaled_noted: set[tuple[int, int, int, int]] = set()  # (camera_info size, image size) named
        self._empty_frame_noted = False
        self._frames_noted: set[tuple[str, str, str]] = set()  # (kind, its frame, image frame) reported

    def reset(self) -> None:
        """A new stream: the tracked points belong to the old one."""
        if self.triangulator is not None:
            self.triangulator.reset()

    def assemble(
        self, image: Any, stamp_ns: int, info: Any, sparse: Any = None, pose: Any = None, meta: Any = None
    ) -> FrameInput:
        """One `FrameInput` (see the module docstring for the steps).

        Args:
            image: `Image` or `CompressedImage` message.
            stamp_ns: its stamp.
            info: the paired `CameraInfo`, or None.
            sparse: the matched sparse `Image` (16UC1/32FC1) or `PointCloud2`, or None.
            pose: `sparse_depth: pose`: the camera-to-world pose at the stamp, or None.
            meta: `FrameInput.meta` (the node: a copied header; the bag: its `BagFrameMeta`).

        Raises:
            UnsupportedImageError, InputError: the frame cannot be used (it is dropped).
        """
        rgb = decode_color_image(image, self.max_input_pixels, self.bit_depth)
        if self.bit_depth.note:
            self._report("bit_depth", self.bit_depth.note)
            self.bit_depth.note = None
        raw_size = rgb.shape[:2]
        self._check_image_frame(image)
        info = self._checked_info(info, raw_size)
        if info is not None:
            self._check_info_frame(info, image)
        elif self.unfit and self.rectifier is not None:
            raise InputError(f"rectify is on, but the camera_info does not fit the image: {self.unfit}")
        rgb, camera, view = pinhole_input(rgb, info, self.rectifier)
        if camera is not None:
            self._note_scaled(info, raw_size)
        if view is None and not self._distortion_noted and info is not None and has_distortion(info):
            self._distortion_noted = True
            self._report(
                "distortion",
                "camera_info has lens distortion (D); the image is taken as rectified (image_rect), as "
                "depth_image_proc does. If 'image' is a raw, distorted image, set rectify:=true.",
            )
        if self.triangulator is not None:
            sparse_depth = self._triangulated(rgb, pose if view is None else view.pose(pose), camera)
        else:
            if sparse is not None:
                self._check_sparse_frame(sparse, image)
            sparse_depth = self._sparse_depth(sparse, camera, raw_size, view)
        valid = None if view is None else view.valid
        return FrameInput(
            rgb=rgb, stamp_ns=int(stamp_ns), camera=camera, sparse_depth=sparse_depth, meta=meta, valid=valid
        )

    def _note_scaled(self, info: Any, size: tuple[int, int]) -> None:
        """Note once per pair of sizes (INFO) that a camera_info for another resolution of the image's
        aspect ratio is scaled to the image: right for a resized stream, wrong for a camera mode that crops
        its sensor to about the same aspect ratio (the cloud then comes out stretched), which only the
        user can tell apart."""
        _, _, roi_w, roi_h, bx, by = image_window(info)
        shown = (max(1, roi_w // bx), max(1, roi_h // by))
        key = (*shown, size[1], size[0])
        if shown == (size[1], size[0]) or key in self._scaled_noted:
            return
        self._scaled_noted.add(key)
        self._report(
            "scaled_info",
            f"the camera_info is for {shown[0]}x{shown[1]} images and the image is {size[1]}x{size[0]}: its "
            f"intrinsics are scaled by {size[1] / shown[0]:.3g} to the image (a resized stream). If the camera "
            "crops its sensor in this mode instead, give it a calibration of this mode (or set roi in its "
            "camera_info): scaled intrinsics would stretch the cloud.",
        )

    def _checked_info(self, info: Any, size: tuple[int, int]) -> Any:
        """`info` if usable for an image of `size` `(H, W)`, else the last good one if that fits the
        image, else None (the bad one is reported).

        The last good camera_info stands in for one that is refused or has not come yet (a camera_info
        slower than the images, `inputs.sync`), but only for an image it fits: after the camera changed
        its resolution to another aspect ratio (a driver reconfigured, a calibration file for another
        resolution) it would give the cloud and depth/camera_info intrinsics stretched to the new
        size. Such a frame has no camera model (`unfit` says why)."""
        self.unfit = None
        if info is None:
            return None
        refusal = None
        if info is not self.info:
            refusal = camera_info_problem(info, size)
            if refusal is None:
                self.info, self._fits = info, (size, None)
                return info
            self.refused_infos += 1
        if self.info is not None and self._fits[0] != size:
            self._fits = (size, camera_info_problem(self.info, size))
        self.unfit = None if self.info is None else self._fits[1]
        if refusal is not None:
            if self.info is None:
                keeps = "no camera_info until a good one arrives"
            elif self.unfit:
                keeps = (
                    "the last good one does not fit this image either, so the frame has no intrinsics (no points, "
                    "no depth/camera_info)"
                )
            else:
                keeps = "the last good one is used"
            self._report("camera_info", f"refusing a camera_info: {refusal}; {keeps}")
        return None if self.unfit else self.info

    def _check_image_frame(self, image: Any) -> None:
        """Report once an image whose header has an empty `frame_id`: the outputs carry the image's
        header, so depth, points and depth/camera_info would have no frame either, and RViz and TF
        cannot place them (RViz says only 'Frame [] does not exist'). And once one whose `frame_id`
        starts with '/' (ROS 1 style: an old driver, a converted ROS 1 bag), which tf2 refuses in ROS 2
        ("frame_ids cannot start with a '/'"), so RViz cannot place those outputs either."""
        header = getattr(image, "header", None)
        if self._empty_frame_noted or header is None:
            return
        frame = str(getattr(header, "frame_id", "") or "")
        if frame and not frame.startswith("/"):
            return
        self._empty_frame_noted = True
        if not frame.lstrip("/"):
            problem = "has no frame_id, so neither have the outputs (they keep its header)"
        else:
            problem = (
                f"frame_id {frame!r} starts with '/' (ROS 1 style), which tf2 refuses in ROS 2 (\"frame_ids cannot "
                "start with a '/'\"), and the outputs keep its header"
            )
        self._report(
            "image_frame",
            f"the image's header {problem}: RViz or TF cannot place the depth and the cloud; set the camera's "
            f"optical frame in the driver (e.g. its frame_id parameter{', without the /' if frame else ''})",
        )

    def _other_frame(self, kind: str, msg: Any, image: Any) -> tuple[str, str]:
        """`(msg's frame, image's frame)` the first time `msg` of `kind` has a frame_id other than the
        image's (both set), else `("", "")`."""
        theirs, ours = _frame_id(msg), _frame_id(image)
        if not theirs or not ours or theirs == ours or (kind, theirs, ours) in self._frames_noted:
            return "", ""
        self._frames_noted.add((kind, theirs, ours))
        return theirs, ours

    def _check_info_frame(self, info: Any, image: Any) -> None:
        """Report (once per pair of frames) a camera_info whose `frame_id` is not the image's: most
        likely another camera's (a remap to the depth camera's camera_info of the same size gives the
        cloud wrong intrinsics without a word). It is used; the outputs keep the image's frame."""
        theirs, ours = self._other_frame("camera_info", info, image)
        if theirs:
            self._report(
                "camera_info_frame",
                f"the camera_info is in frame {theirs!r}, the image in {ours!r}: its intrinsics are used for the image "
                f"(the outputs keep the image's frame); if it is another camera's camera_info, {self.choose_info}",
            )

    def _check_sparse_frame(self, sparse: Any, image: Any) -> None:
        """Report (once per pair of frames) a sparse depth message whose `frame_id` is not the image's:
        it is used as if registered to the image (a depth image) or given in its optical frame (a
        cloud), since nothing here looks up TF, so a LiDAR cloud in its own frame or a depth camera's
        unaligned image would give a wrong metric scale without a word."""
        theirs, ours = self._other_frame("sparse", sparse, image)
        if not theirs:
            return
        if hasattr(sparse, "point_step"):
            what, need = "point cloud", "given in the image's optical frame"
        else:
            what, need = (
                "depth image",
                "registered to the image pixel for pixel (e.g. a depth camera's aligned_depth_to_color)",
            )
        self._report(
            "sparse_frame",
            f"the sparse_depth {what} is in frame {theirs!r}, the image in {ours!r}: it is used as if it were {need} "
            "(there is no TF lookup); if it is not, the metric scale is wrong: publish it in the image's frame",
        )

    def _sparse_depth(self, sparse: Any, camera: Any, raw_size: tuple[int, int], view: Any) -> np.ndarray | None:
        if sparse is None:
            return None
        try:
            depth = sparse if hasattr(sparse, "point_step") else decode_depth_image(sparse)
            return sparse_depth_input(depth, camera, raw_size, view)
        except InputError as err:
            self._report("sparse", str(err))
            return None

    def _triangulated(self, rgb: np.ndarray, pose: Any, camera: Any) -> np.ndarray | None:
        """Sparse depth from the tracked points and the poses, or None (no pose or camera_info:
        `PoseTriangulator.push` restarts the tracks; reported)."""
        assert self.triangulator is not None
        try:
            return self.triangulator.push(rgb, pose, None if camera is None else camera.matrix)
        except InputError as err:
            self._report("pose", str(err))
            return None
