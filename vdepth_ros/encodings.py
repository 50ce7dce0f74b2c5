"""Image encodings as numpy, without ROS.

The one table of `sensor_msgs` encodings (dtype, channels, unit scale) shared by the live node
(`vdepth_ros.ros.conversions`) and the offline tools (`vdepth_ros.offline`), so both read and
write messages the same way: decoding raw and compressed images to RGB or metres, and laying out an
image message. Everything here works on plain message *fields* (height, width, step, data
bytes...) so it applies equally to rclpy messages and to rosbags' deserialized ones. The other two
messages' layouts have their own modules: `pointcloud2` (clouds) and `camera_info` (intrinsics).

Depth conventions follow REP 118 / depth_image_proc's `depth_traits.hpp`: `32FC1` is metres,
`16UC1` is millimetres (`* 0.001`), 0 / non-finite is invalid and becomes NaN, and so does the largest value
of the samples' type (16UC1's 65535: some drivers mark pixels without a measurement so).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

# The cloud and camera_info helpers once lived here; tests and user code import these from here still.
from vdepth_ros.camera_info import camera_from_info as camera_from_info
from vdepth_ros.camera_info import info_signature as info_signature
from vdepth_ros.errors import InputError
from vdepth_ros.pointcloud2 import POINTFIELD_FLOAT32 as POINTFIELD_FLOAT32
from vdepth_ros.pointcloud2 import pack_rgb_float as pack_rgb_float
from vdepth_ros.pointcloud2 import pointcloud2_fields_array as pointcloud2_fields_array
from vdepth_ros.pointcloud2 import pointcloud2_layout as pointcloud2_layout
from vdepth_ros.pointcloud2 import unpack_rgb_float as unpack_rgb_float

EncodingKind = Literal["color", "mono", "depth"]


@dataclass(frozen=True)
class Encoding:
    """One `sensor_msgs/Image` encoding.

    Attributes:
        name: the ROS encoding string (`rgb8`, `16UC1`, ...).
        dtype: element type in little-endian byte order.
        channels: samples per pixel.
        kind: "color" (usable as the RGB input), "mono" (grey, usable as input), "depth" (metric range).
        unit_scale: metres per stored unit for depth encodings, else None.
        order: how a colour encoding stores colour: channel order ("rgb", "bgr", "rgba", "bgra"),
            packed YUV 4:2:2 ("uyvy", "yuyv"; two bytes per pixel, as `(H, W, 2)`), semi-planar
            YUV 4:2:0 ("nv12", "nv21": a luma plane of `H` rows, then `H / 2` rows of interleaved
            chroma, as `(3H / 2, W)`), semi-planar YUV 4:4:4 ("nv24": a luma plane, then `H` rows of
            interleaved chroma twice as long, as `(3H, W)`; for all three a decoder's luma plane padded to
            16, 32 or 64 rows is read too: `_padded_luma_rows`) or a Bayer mosaic named by its top-left 2x2 block
            ("bayer_rggb", ...; one sample per pixel).
        height_scaling: rows of data per image row (sensor_msgs' `getHeightScaling`: 1.5 for the
            4:2:0 planes; 3 for nv24's, whose chroma rows are twice as long as its luma's).
    """

    name: str
    dtype: np.dtype
    channels: int
    kind: EncodingKind
    unit_scale: float | None = None
    order: str | None = None
    height_scaling: float = 1.0

    @property
    def bytes_per_pixel(self) -> int:
        return self.dtype.itemsize * self.channels


def _enc(
    name: str,
    dtype: str,
    channels: int,
    kind: EncodingKind,
    unit_scale: float | None = None,
    order: str | None = None,
    height_scaling: float = 1.0,
) -> Encoding:
    return Encoding(name, np.dtype(dtype).newbyteorder("<"), channels, kind, unit_scale, order, height_scaling)


#: Bayer patterns by their top-left 2x2 block, row by row.
_BAYER = ("rggb", "bggr", "gbrg", "grbg")

#: The encodings vdepth_ros reads and writes. Anything else is rejected with a clear error.
ENCODINGS: dict[str, Encoding] = {
    e.name: e
    for e in (
        _enc("rgb8", "u1", 3, "color", order="rgb"),
        _enc("bgr8", "u1", 3, "color", order="bgr"),
        _enc("rgba8", "u1", 4, "color", order="rgba"),
        _enc("bgra8", "u1", 4, "color", order="bgra"),
        # 16 bits per channel (machine-vision cameras): `significant_bits` of them hold the samples
        _enc("rgb16", "u2", 3, "color", order="rgb"),
        _enc("bgr16", "u2", 3, "color", order="bgr"),
        _enc("rgba16", "u2", 4, "color", order="rgba"),
        _enc("bgra16", "u2", 4, "color", order="bgra"),
        # packed YUV 4:2:2, the native format of most USB cameras (v4l2_camera, usb_cam can publish it
        # unconverted). sensor_msgs image_encodings names each twice: "uyvy" (= the deprecated
        # "yuv422") and "yuyv" (= the deprecated "yuv422_yuy2"); drivers publish either name
        _enc("yuv422", "u1", 2, "color", order="uyvy"),
        _enc("yuv422_yuy2", "u1", 2, "color", order="yuyv"),
        _enc("uyvy", "u1", 2, "color", order="uyvy"),
        _enc("yuyv", "u1", 2, "color", order="yuyv"),
        # semi-planar YUV 4:2:0, what camera ISPs (Jetson, Rockchip, Raspberry Pi) and GStreamer
        # bridges give: 12 bits per pixel, 1.5 rows of data per image row
        _enc("nv12", "u1", 1, "color", order="nv12", height_scaling=1.5),
        _enc("nv21", "u1", 1, "color", order="nv21", height_scaling=1.5),
        # semi-planar YUV 4:4:4 (sensor_msgs' nv24; V4L2 and GStreamer lay it out): `height` luma rows of `step`
        # bytes, then `height` rows of U V pairs (`2 * step` bytes each from V4L2, 4-byte aligned from GStreamer)
        _enc("nv24", "u1", 1, "color", order="nv24", height_scaling=3.0),
        # raw Bayer mosaics of machine-vision cameras, demosaiced here (image_proc's debayer)
        *(
            _enc(f"bayer_{p}{bits}", dt, 1, "color", order=f"bayer_{p}")
            for p in _BAYER
            for bits, dt in ((8, "u1"), (16, "u2"))
        ),
        _enc("mono8", "u1", 1, "mono"),
        _enc("8UC1", "u1", 1, "mono"),
        _enc("mono16", "u2", 1, "mono"),
        _enc("16UC1", "u2", 1, "depth", unit_scale=0.001),
        _enc("32FC1", "f4", 1, "depth", unit_scale=1.0),
    )
}

#: Depth unit scale per encoding (metres per stored unit), as in depth_image_proc's depth_traits.
DEPTH_UNIT_SCALE: dict[str, float] = {n: e.unit_scale for n, e in ENCODINGS.items() if e.unit_scale is not None}

#: Encodings a depth image also comes in, and the depth encoding it is read as: depth_image_proc reads a mono16
#: depth image as 16UC1 millimetres (some depth cameras publish their depth so).
DEPTH_ALIASES: dict[str, str] = {"mono16": "16UC1"}

#: Encodings accepted as the colour input of the pipeline.
COLOR_INPUT_ENCODINGS: tuple[str, ...] = tuple(n for n, e in ENCODINGS.items() if e.kind in ("color", "mono"))


#: Names other software gives a ROS encoding (FFmpeg's and GStreamer's pixel formats, V4L2's, shorthands), for the
#: error on an image that carries one (`encoding_hint`).
OTHER_NAMES: dict[str, str] = {
    **dict.fromkeys(("rgb", "rgb24", "RGB"), "rgb8"),
    **dict.fromkeys(("bgr", "bgr24", "BGR", "BGR3"), "bgr8"),
    **dict.fromkeys(("rgba", "RGBA", "RGBx"), "rgba8"),
    **dict.fromkeys(("bgra", "BGRA", "BGRx"), "bgra8"),
    **dict.fromkeys(("gray", "gray8", "grey", "mono", "y8", "Y8", "GRAY8", "GREY"), "mono8"),
    **dict.fromkeys(("gray16", "gray16le", "y16", "Y16", "GRAY16_LE"), "mono16"),
    **dict.fromkeys(("yuyv422", "yuy2", "YUY2", "YUYV"), "yuyv"),
    **dict.fromkeys(("uyvy422", "UYVY"), "uyvy"),
    **dict.fromkeys(("NV12",), "nv12"),
    **dict.fromkeys(("NV21",), "nv21"),
}
#: Compressed frames put in a raw `sensor_msgs/Image` (an MJPEG USB camera's frames passed on as they come).
_COMPRESSED_NAMES = ("jpeg", "jpg", "mjpeg", "mjpg", "png", "h264", "h265", "hevc")
#: Planar YUV 4:2:0 (three planes), which no ROS encoding names.
_PLANAR_420_NAMES = ("i420", "yuv420", "yuv420p", "iyuv", "yv12")


def encoding_hint(encoding: str) -> str:
    """What a publisher most likely meant by an encoding this package does not read, or "": another software's
    name for a ROS encoding, the right name in another case or with spaces, compressed frames or planar YUV 4:2:0
    in a raw image."""
    name = str(encoding)
    meant = OTHER_NAMES.get(name) or OTHER_NAMES.get(name.strip().lower())
    if meant is None:
        meant = next((n for n in ENCODINGS if n.lower() == name.strip().lower()), None)
    if meant is not None:
        return (
            f"the ROS encoding for it is '{meant}' (ROS's names, sensor_msgs/image_encodings.hpp, are exact: "
            "cv_bridge, image_proc and RViz refuse this one too): have the publisher set encoding to it"
        )
    if name.strip().lower() in _COMPRESSED_NAMES:
        return (
            f"'{name}' is compressed data in a raw sensor_msgs/Image: publish it as sensor_msgs/CompressedImage "
            "(format 'jpeg' or 'png') on '<image topic>/compressed', as image_transport's compressed transport "
            "does, and set image_transport:=compressed, or publish the decoded frame as rgb8/bgr8"
        )
    if name.strip().lower() in _PLANAR_420_NAMES:
        return (
            "planar YUV 4:2:0 has no ROS encoding: have the publisher convert to nv12 (semi-planar, e.g. GStreamer's "
            "videoconvert ! video/x-raw,format=NV12) or to rgb8/bgr8"
        )
    return ""


def get_encoding(encoding: str, supported: tuple[str, ...] = ()) -> Encoding:
    """The table entry for `encoding`.

    Args:
        supported: the encodings the caller's input takes, listed in the error (default: all of `ENCODINGS`; the
            colour input passes `COLOR_INPUT_ENCODINGS`, so its refusal does not offer depth encodings).

    Raises:
        InputError: the encoding is not supported; the message lists the supported ones.
    """
    try:
        return ENCODINGS[encoding]
    except KeyError:
        hint = ""
        named = {"8UC3": "bgr8", "8UC4": "bgra8", "16UC3": "bgr16", "16UC4": "bgra16"}.get(encoding)
        if named:  # cv_bridge's cv2_to_imgmsg(frame) without an encoding ("passthrough")
            hint = (
                f"; {encoding} does not say the channel order (image_proc refuses it too): have the publisher name it, "
                f"e.g. cv_bridge's cv2_to_imgmsg(frame, '{named}') for an OpenCV frame"
            )
        other = encoding_hint(encoding)
        hint = hint or (f"; {other}" if other else "")
        listed = ", ".join(supported or ENCODINGS)
        raise InputError(f"unsupported image encoding {encoding!r}{hint}; supported: {listed}") from None


def image_array_from_fields(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data: bytes | bytearray | memoryview,
    is_bigendian: bool | int = False,
) -> np.ndarray:
    """View the bytes of a `sensor_msgs/Image` as an array, zero-copy when possible.

    Args:
        encoding: ROS encoding string.
        height, width: image size in pixels.
        step: bytes per row (may include padding).
        data: the message's data buffer (`bytes`, `array.array`, memoryview...).
        is_bigendian: byte order of multi-byte samples.

    Returns:
        `(H, W)` for one channel or `(H, W, C)`, in the encoding's dtype with native byte order
        (`(3H / 2, W)` for the 4:2:0 planes of nv12 / nv21, `(3H, W)` for nv24's: each chroma row as two).
        The result may be a read-only view of `data`; copy it before writing.

    Raises:
        InputError: unknown encoding, non-positive size, `step` too small, or a buffer shorter or longer
            than `step` x rows (fields that do not describe the data; a semi-planar image may be longer by
            a decoder's padded luma rows, when its size says how many: `_padded_luma_rows`).
    """
    enc = get_encoding(encoding)
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise InputError(f"{encoding} image has invalid size {width}x{height}")
    size = f"{encoding} image {width}x{height}"
    if enc.height_scaling != 1.0:
        if enc.height_scaling == 1.5 and (height % 2 or width % 2):
            raise InputError(f"{size}: 4:2:0 chroma needs an even width and height")
        height = int(height * enc.height_scaling)  # the rows of all the planes
    row_bytes = width * enc.bytes_per_pixel
    if step < row_bytes:
        raise InputError(f"{size}: step {step} < width * {enc.bytes_per_pixel} = {row_bytes}")
    buf = np.frombuffer(data, dtype=np.uint8)
    if enc.order == "nv24":
        return _nv24_rows(buf, height // 3, width, step, size)
    need = step * (height - 1) + row_bytes
    if buf.size < need:
        raise InputError(f"{size} step {step}: data has {buf.size} bytes, needs {need}")
    planes = _padded_420_planes(buf, height * 2 // 3, width, step) if enc.height_scaling == 1.5 else None
    if planes is not None:
        return planes
    if buf.size > step * height:  # more data than rows: the fields are not the image's (cv_bridge refuses it too)
        rows = f"{buf.size / step:g}"
        raise InputError(
            f"{size} step {step}: data has {buf.size} bytes, but step x rows is {step * height}: the data holds "
            f"{rows} rows of {step} bytes, so its height, width or step are not the image's (a publisher that "
            "resized or reconfigured the image without updating them?); set them from the frame it sends "
            "(cv_bridge's cv2_to_imgmsg does)" + (_PADDED_LUMA_HINT if enc.height_scaling != 1.0 else "")
        )
    dtype = enc.dtype.newbyteorder(">" if is_bigendian else "<")
    if step == row_bytes:
        arr = buf[: height * row_bytes].view(dtype)
    else:  # padded rows: copy the useful bytes once
        rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes), strides=(step, 1))
        arr = np.ascontiguousarray(rows).reshape(-1).view(dtype)
    shape = (height, width) if enc.channels == 1 else (height, width, enc.channels)
    arr = arr.reshape(shape)
    if dtype.itemsize > 1 and not dtype.isnative:
        arr = arr.astype(dtype.newbyteorder("="))
    return arr


#: Row counts a hardware decoder pads a semi-planar frame's luma plane to (Jetson's NvBuffer, Rockchip's MPP,
#: GStreamer's v4l2 decoders): the chroma plane of a 1080-row frame starts after 1088 rows of luma.
_LUMA_ROW_ALIGNMENTS = (16, 32, 64)

_PADDED_LUMA_HINT = (
    " (a luma plane padded to a multiple of 16, 32 or 64 rows, as hardware decoders lay it out, is read when the "
    "data's size says which; this size fits no such layout, or more than one)"
)


def _fits_rows(size: int, rows: int, step: int, width: int) -> bool:
    """Whether `size` bytes are `rows` rows of `step` bytes (the last one's padding may be left out)."""
    return rows > 0 and step * (rows - 1) + width <= size <= step * rows


def _padded_luma_rows(size: int, height: int, step: int, chroma_fits: Callable[[int, int], bool]) -> int | None:
    """The rows of a semi-planar image's luma plane when a decoder padded it, from the data's `size`: the one
    `height` rounded up to a multiple of `_LUMA_ROW_ALIGNMENTS` (more rows than `height`) after which the rest
    of the data is a chroma plane (`chroma_fits(bytes, padded_rows)`: of the image's rows or of the padded
    ones), or None when no such height, or several, fit."""
    fits = {rows for a in _LUMA_ROW_ALIGNMENTS if (rows := -(-height // a) * a) > height}
    fits = {rows for rows in fits if chroma_fits(size - rows * step, rows)}
    return fits.pop() if len(fits) == 1 else None


def _padded_420_planes(buf: np.ndarray, height: int, width: int, step: int) -> np.ndarray | None:
    """The `(3H / 2, W)` planes of an nv12 / nv21 image whose data is longer than its rows because a decoder
    padded its luma plane (`_padded_luma_rows`: the chroma plane of the image's rows or the padded ones starts
    after it), or None when the data is not so laid out."""
    if buf.size <= step * height * 3 // 2:
        return None

    def chroma_fits(chroma: int, rows: int) -> bool:
        return _fits_rows(chroma, height // 2, step, width) or _fits_rows(chroma, rows // 2, step, width)

    luma_rows = _padded_luma_rows(buf.size, height, step, chroma_fits)
    if luma_rows is None:
        return None
    luma = np.lib.stride_tricks.as_strided(buf, shape=(height, width), strides=(step, 1))
    chroma = np.lib.stride_tricks.as_strided(buf[luma_rows * step :], shape=(height // 2, width), strides=(step, 1))
    return np.vstack([luma, chroma])


def _nv24_chroma_step(chroma: int, rows: int, width: int, step: int) -> int | None:
    """The bytes from one chroma row of an nv24 image to the next, from the chroma plane's size in bytes
    (`chroma`, `rows` rows), or None when no layout fits: `step` gives only the luma rows'. V4L2 makes them
    `2 * step` (the last one's padding may be left out); GStreamer pads each plane on its own to 4 bytes
    (`GST_ROUND_UP_4(2 * width)`), which is less than `2 * step` for a width of 1 or 2 mod 4 (642: luma rows
    of 644 bytes, chroma rows of 1284, not 1288)."""
    if chroma > 2 * step * rows:
        return None
    if chroma >= 2 * step * (rows - 1) + 2 * width:
        return 2 * step
    for full, tail in ((rows, 0), (rows - 1, 2 * width)):  # all rows padded, or all but the last
        if full and (chroma - tail) % full == 0 and (chroma - tail) // full >= 2 * width:
            return (chroma - tail) // full
    return None


def _nv24_rows(buf: np.ndarray, height: int, width: int, step: int, size: str) -> np.ndarray:
    """The `(3H, W)` bytes of an nv24 image: its luma rows (`step` apart), then its chroma rows (`2 * width`
    bytes of U V pairs, as far apart as the data's size says: `_nv24_chroma_step`), each as two rows of `width`;
    the chroma plane after `height` luma rows, or after a decoder's padded plane (`_padded_luma_rows`)."""
    luma_rows, chroma_step = height, _nv24_chroma_step(buf.size - height * step, height, width, step)
    if chroma_step is None and buf.size > 3 * height * step:  # a hardware decoder's luma plane padded?

        def chroma_steps(chroma: int, rows: int) -> set[int]:  # (a plane of the image's rows or the padded ones)
            return {_nv24_chroma_step(chroma, n, width, step) for n in (height, rows)} - {None}

        padded = _padded_luma_rows(buf.size, height, step, lambda chroma, rows: len(chroma_steps(chroma, rows)) == 1)
        if padded is not None:
            luma_rows, chroma_step = padded, chroma_steps(buf.size - padded * step, padded).pop()
    if chroma_step is None:
        raise InputError(
            f"{size} step {step}: data has {buf.size} bytes, which is not {height} rows of luma ({step} bytes "
            f"each) and {height} rows of U V pairs ({2 * width} bytes or more each, as V4L2's {2 * step} or "
            f"GStreamer's 4-byte aligned rows): its height, width or step are not the image's{_PADDED_LUMA_HINT}"
        )
    if step == width and chroma_step == 2 * width and luma_rows == height:  # unpadded: the bytes as they are
        return buf[: 3 * height * width].reshape(3 * height, width)
    luma = np.lib.stride_tricks.as_strided(buf, shape=(height, width), strides=(step, 1))
    chroma = np.lib.stride_tricks.as_strided(
        buf[luma_rows * step :], shape=(height, 2 * width), strides=(chroma_step, 1)
    )
    return np.vstack([luma, chroma.reshape(2 * height, width)])


def _rgb_from_nv24(planes: np.ndarray) -> np.ndarray:
    """`(H, W, 3)` RGB of nv24's `(3H, W)` planes, with OpenCV's nv12 conversion (one colour convention for every
    YUV format, BT.601): nv12 of the image doubled in size has exactly nv24's chroma plane, one U V pair per 2x2
    block, so every second pixel of its RGB is the image's."""
    import cv2

    h = planes.shape[0] // 3
    luma = cv2.resize(planes[:h], None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)  # (2.5x np.repeat's speed)
    rgb = cv2.cvtColor(np.vstack([luma, planes[h:].reshape(h, -1)]), cv2.COLOR_YUV2RGB_NV12)
    return np.ascontiguousarray(rgb[::2, ::2])


def image_fields_from_array(arr: np.ndarray, encoding: str) -> tuple[int, bytes]:
    """`(step, data)` for an `Image` message holding `arr` (little-endian, unpadded rows).

    Raises:
        InputError: `arr`'s dtype or channel count does not match `encoding`.
    """
    enc = get_encoding(encoding)
    arr = np.asarray(arr)
    channels = 1 if arr.ndim == 2 else (arr.shape[2] if arr.ndim == 3 else -1)
    if channels != enc.channels or arr.dtype.kind != enc.dtype.kind or arr.dtype.itemsize != enc.dtype.itemsize:
        raise InputError(
            f"array {arr.dtype}{tuple(arr.shape)} does not match encoding {encoding} "
            f"({enc.dtype.name} x {enc.channels})"
        )
    arr = np.ascontiguousarray(arr, dtype=enc.dtype)
    return arr.shape[1] * enc.bytes_per_pixel, arr.tobytes()


def rgb_from_image(
    arr: np.ndarray,
    encoding: str,
    bit_depth: int = 16,
    choose_image: str = "remap 'image' to the colour stream, and depth to 'sparse_depth'",
) -> np.ndarray:
    """Convert a decoded colour/mono image to `(H, W, 3)` uint8 RGB.

    Accepts rgb8, bgr8, rgba8, bgra8, their 16-bit forms (rgb16...), mono8/8UC1 and mono16, packed
    YUV 4:2:2 (uyvy = yuv422, yuyv = yuv422_yuy2; BT.601, as cv_bridge converts them), semi-planar
    YUV 4:2:0 (nv12, nv21; BT.601 as OpenCV), semi-planar YUV 4:4:4 (nv24, as nv12) and Bayer
    mosaics (bayer_rggb8 ... bayer_grbg16; bilinear demosaicing). Returns `arr` itself (no copy) for rgb8.

    Args:
        arr: the image as `image_array_from_fields` gives it.
        encoding: its ROS encoding.
        bit_depth: 16-bit encodings only: how many low bits hold the samples (8-16; a 12-bit camera
            publishing mono16 has values 0-4095); the top 8 of them are kept, larger values saturate.
            16 (cv_bridge's rule: the top 8 bits) unless the caller knows (`significant_bits`).
        choose_image: the fix a depth image names: how the user of the tool picks the colour stream.

    Raises:
        InputError: a depth or unsupported encoding was given as the colour image.
    """
    enc = get_encoding(encoding)
    if enc.kind == "depth":
        hint = ""
        if encoding == "16UC1":  # cv_bridge's cv2_to_imgmsg(frame) of a uint16 grey frame, without an encoding
            hint = (
                "; if it is a 16-bit grey camera image, not depth, have the publisher name it mono16 (e.g. "
                "cv_bridge's cv2_to_imgmsg(frame, 'mono16'))"
            )
        raise InputError(
            f"encoding {encoding} is a depth image, not a colour image; the colour image input needs one of "
            f"{', '.join(COLOR_INPUT_ENCODINGS)} ({choose_image}){hint}"
        )
    if enc.order in _CHANNELS:
        rgb = arr[..., _CHANNELS[enc.order]]
        if rgb.dtype != np.uint8:
            return to_8bit(rgb, bit_depth)
        return arr if enc.order == "rgb" else np.ascontiguousarray(rgb)
    if enc.order == "nv24":
        return _rgb_from_nv24(arr)
    if enc.order in _CV2_COLOR_CODES:
        import cv2  # only for these encodings

        if enc.order in ("uyvy", "yuyv") and arr.shape[1] % 2:
            raise InputError(f"{encoding} image has odd width {arr.shape[1]}; 4:2:2 pairs of pixels share chroma")
        if enc.order.startswith("bayer") and (arr.shape[0] < 2 or arr.shape[1] < 2):
            raise InputError(f"{encoding} image {arr.shape[1]}x{arr.shape[0]} is smaller than one 2x2 Bayer block")
        rgb = cv2.cvtColor(np.ascontiguousarray(arr), getattr(cv2, _CV2_COLOR_CODES[enc.order]))
        return rgb if rgb.dtype == np.uint8 else to_8bit(rgb, bit_depth)
    grey = arr if arr.dtype == np.uint8 else to_8bit(arr, bit_depth)
    return np.repeat(grey[..., None], 3, axis=2)


#: The significant bits a 16-bit camera's samples can have (its ADC), as `significant_bits` rounds them.
SAMPLE_BIT_DEPTHS: tuple[int, ...] = (8, 10, 12, 14, 16)


def to_8bit(samples: np.ndarray, bit_depth: int = 16) -> np.ndarray:
    """uint8 of 16-bit `samples` whose low `bit_depth` bits hold the value: the top 8 of those bits,
    saturating above `2**bit_depth - 1`."""
    shift = max(0, min(int(bit_depth), 16) - 8)
    out = samples >> shift if shift else samples
    if shift < 8:
        out = np.minimum(out, 255)
    return out.astype(np.uint8)


#: the share of an image's brightest samples `significant_bits` passes over: a hot or saturated pixel, a glint
#: in an IR image (65535 in a 12-bit camera's mono16) is not the camera's range
BRIGHTEST_IGNORED = 0.001

#: at most this many samples (a strided subset) tell an image's bit depth: the percentile stays cheap per frame
_BIT_DEPTH_SAMPLES = 1 << 16


def significant_bits(arr: np.ndarray, encoding: str) -> tuple[int, int] | None:
    """`(bits, brightest sample)` of one 16-bit image: how many low bits its samples use, rounded up to
    a sensor's bit depth (`SAMPLE_BIT_DEPTHS`), or None when the image cannot tell (all zero: a
    covered lens, a dark first frame).

    Many machine-vision and thermal cameras publish 10-, 12- or 14-bit samples as mono16, bayer_*16
    or rgb16 in the *low* bits (values 0-4095 for 12 bits); others (and cv_bridge) put them in the
    *top* bits. Samples reaching bit 13 whose two lowest bits (or more) are never set while at least
    four above them vary are taken as top-aligned: 16 (a dark frame of a top-aligned camera is not
    brightened); below bit 13 such samples are a 10-bit sensor in a 12-bit container, say, and read
    by their largest. A colour encoding's alpha channel is not a sample. The brightest
    `BRIGHTEST_IGNORED` of the samples are passed over (the brightest one kept is returned): one saturated
    pixel of an IR camera's 16UC1/mono16 made the whole picture be read as 16-bit, nearly black.
    """
    enc = get_encoding(encoding)
    samples = (arr[..., :3] if enc.channels == 4 else arr).reshape(-1)
    stride = max(1, samples.size // _BIT_DEPTH_SAMPLES)
    stride += (5 - stride % 6) % 4 if stride > 1 else 0  # 1 or 5 mod 6: every channel and Bayer phase is read
    samples = samples[::stride]
    rank = int((samples.size - 1) * (1 - BRIGHTEST_IGNORED))
    brightest = int(np.partition(samples, rank)[rank])
    used = int(np.bitwise_or.reduce(samples[samples <= brightest], axis=None))
    if used == 0:
        return None
    low_zeros = (used & -used).bit_length() - 1  # trailing zero bits of every sample
    if low_zeros >= 2 and used.bit_length() - low_zeros >= 4 and used.bit_length() >= 14:
        return 16, brightest
    return next(b for b in SAMPLE_BIT_DEPTHS if used.bit_length() <= b), brightest


def grey_at_most(image: np.ndarray, max_width: int) -> np.ndarray:
    """uint8 grey copy of an RGB (or grey) image, shrunk (INTER_AREA) to at most `max_width`
    pixels wide: what optical flow and corner tracking run on (`consistency`, `triangulate`)."""
    import cv2

    grey = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    if w > max_width:
        size = (int(max_width), max(1, round(h * max_width / w)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return grey


#: Where R, G, B sit in a channel-ordered encoding.
_CHANNELS: dict[str, slice] = {
    "rgb": slice(0, 3),
    "bgr": slice(None, None, -1),
    "rgba": slice(0, 3),
    "bgra": slice(2, None, -1),
}

#: OpenCV conversion per storage order. OpenCV's older Bayer names are shifted by one pixel
#: (cv_bridge maps bayer_rggb8 to COLOR_BayerBG2BGR); these are its pattern-named aliases, whose
#: names match the ROS encodings (the test demosaics a mosaic built from a known image).
_CV2_COLOR_CODES: dict[str, str] = {
    "uyvy": "COLOR_YUV2RGB_UYVY",
    "yuyv": "COLOR_YUV2RGB_YUYV",
    "nv12": "COLOR_YUV2RGB_NV12",
    "nv21": "COLOR_YUV2RGB_NV21",
    **{f"bayer_{p}": f"COLOR_Bayer{p.upper()}2RGB" for p in _BAYER},
}


def depth_from_image(arr: np.ndarray, encoding: str) -> np.ndarray:
    """Convert a `16UC1` (mm) or `32FC1` (m) depth image to float32 metres, NaN where invalid.

    Zero, negative and non-finite values are invalid (depth_image_proc's depth_traits), and so is the
    largest value the samples' type holds (`_no_return_value`): a 16UC1 sensor that marks pixels without
    a measurement 65535 instead of REP 118's 0 (or saturates there) would otherwise give them 65.535 m.

    Raises:
        InputError: `encoding` is not a depth encoding.
    """
    enc = get_encoding(encoding)
    if enc.unit_scale is None:
        raise InputError(f"encoding {encoding} is not a depth encoding; expected one of {', '.join(DEPTH_UNIT_SCALE)}")
    depth = arr.astype(np.float32) * np.float32(enc.unit_scale)
    depth[~(np.isfinite(depth) & (depth > 0)) | (arr == _no_return_value(arr.dtype))] = np.nan
    problem = depth_units_problem(depth, enc.name)
    if problem:
        raise InputError(problem)
    return depth


def _no_return_value(dtype: np.dtype) -> int | float:
    """The largest value a depth sample of `dtype` can hold, which no sensor measures: drivers that do not
    follow REP 118's 0 for "no measurement" in 16UC1 write 65535 there (out of range, no return, or
    saturated), as the largest finite float is in 32FC1. Read as invalid, like 0 and NaN."""
    dtype = np.dtype(dtype)
    return int(np.iinfo(dtype).max) if dtype.kind in "ui" else float(np.finfo(dtype).max)


#: A depth image whose samples' median lies outside these metres is in other units than its encoding
#: says (no depth camera or LiDAR projection sees a median nearer than 3 cm or farther than 250 m)...
_DEPTH_MEDIAN_RANGE_M = (0.03, 250.0)
#: ...judged from this many valid samples at least (fewer are left to the metric fit's own checks).
_DEPTH_UNITS_MIN_SAMPLES = 20


def depth_units_problem(depth: np.ndarray, encoding: str) -> str | None:
    """What is wrong with the units of a depth image in metres (NaN invalid) read as `encoding`, or
    None: a 32FC1 of millimetres (a 16UC1 image cast to float without dividing, a common slip) is
    kilometres away, a 16UC1 of metres rounded to integers is millimetres away."""
    valid = depth[np.isfinite(depth)]
    if valid.size < _DEPTH_UNITS_MIN_SAMPLES:
        return None
    median = float(np.median(valid[:: max(1, valid.size // 4096)]))  # (a subsample: a few thousand)
    low, high = _DEPTH_MEDIAN_RANGE_M
    if encoding == "32FC1" and median > high:
        return (
            f"32FC1 depth is metres (REP 118), but its samples' median is {median:g}: millimetres? Publish them as "
            "16UC1, or divide by 1000 (cv_bridge: cv2_to_imgmsg(depth_mm.astype(np.float32) / 1000, '32FC1'))"
        )
    if encoding == "16UC1" and median < low:
        return (
            f"16UC1 depth is millimetres (REP 118), but its samples' median is {median * 1000:g} mm: metres? Publish "
            "metres as 32FC1, or millimetres as 16UC1 (np.round(depth_m * 1000).astype(np.uint16))"
        )
    return None


#: PNG's file signature (a compressedDepth payload starts with it, after its 12-byte header)
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

#: compressed_depth_image_transport's header before the image: int32 format, float32 depthQuantA, depthQuantB
_DEPTH_HEADER = 12

#: The most pixels an RVL image may claim (its header's size is checked against its runs before
#: anything that size is allocated; this bounds what a corrupt header can ask for): 16x a 4K frame.
_RVL_MAX_PIXELS = 1 << 27

#: The most nibbles an RVL value may take: a count of `_RVL_MAX_PIXELS` pixels takes 9, a difference of 16-bit
#: samples 6; more is corrupt data (read as it is, a longer one could wrap round to a plausible count).
_RVL_MAX_NIBBLES = 16


def _rvl_values(data: bytes) -> np.ndarray:
    """The variable-length values of an RVL stream, in order (uint32, or uint64 when one is over 8 nibbles).

    RVL (Wilson, "Fast Lossless Depth Image Compression", 2017) writes 32-bit little-endian words,
    each holding 8 nibbles from its most significant one down; a value is a run of nibbles of 3
    payload bits each, least significant group first, bit 3 set on every nibble but the value's
    last. The padding nibbles of the last word (zeros) read as values 0, never used.

    Raises:
        InputError: a value of more than `_RVL_MAX_NIBBLES` nibbles.
    """
    top_first = np.frombuffer(data, "<u4", count=len(data) // 4).byteswap().view(np.uint8)
    nibbles = np.empty(2 * top_first.size, np.uint8)
    nibbles[0::2], nibbles[1::2] = top_first >> 4, top_first & 0xF
    more = nibbles >= 8  # a nibble that is not its value's last
    if more.all():
        return np.zeros(0, np.uint32)
    size = more.size - int(np.argmin(more[::-1]))  # up to the last value's end (an unfinished one is no value)
    nibbles, more = nibbles[:size], more[:size]
    first = np.empty_like(more)
    first[0], first[1:] = True, ~more[:-1]
    starts = np.flatnonzero(first)
    # every nibble's payload with those of the next w - 1 nibbles of its value above it, for w doubling until
    # no value is longer: then each value is the one at its first nibble. (Contiguous passes over the nibbles,
    # in arrays a few times the data's size: temporaries of the values' size cost page faults, see below.)
    window, w = (nibbles & 7).astype(np.uint32), 1
    while w < size and more[:-w].any():  # `more` here: nibbles i .. i + w - 1 all continue their value
        if w >= _RVL_MAX_NIBBLES:
            raise InputError(f"corrupt RVL data: a value of over {w} nibbles (a count or a difference has at most 9)")
        if 6 * w > 32 and window.dtype == np.uint32:
            window = window.astype(np.uint64)
        above = window[w:] << window.dtype.type(3 * w)
        above *= more[:-w]
        window[:-w] |= above
        more[:-w] &= more[w:]
        more[-w:] = False
        w *= 2
    return window[starts]


def rvl_decode(data: bytes | bytearray | memoryview, num_pixels: int) -> np.ndarray:
    """`(num_pixels,)` uint16 of an RVL stream (compressed_depth_image_transport's `rvl` format).

    The stream alternates a count of zero pixels, a count of non-zero ones and, for each non-zero
    pixel, its difference from the previous non-zero pixel (zigzag-coded: 2d for d >= 0, -2d - 1
    below; the first is taken from 0). Everything per nibble, value or pixel is numpy; only finding the
    runs' heads steps in Python, once per run (each head's count of non-zero pixels gives the next head), ~70 ns
    a run: ~1 ms of a 640x480 frame with 5 % speckle holes (14k runs), ~5 ms with 40 % (71k runs), of 5-11 ms
    in all (`benchmarks/rvl_decode.py`, docs/performance.md).

    Raises:
        InputError: a stream that ends before `num_pixels`, or runs that add up to more.
    """
    if not 0 < num_pixels <= _RVL_MAX_PIXELS:
        raise InputError(f"an RVL image of {num_pixels} pixels (corrupt size in its header)")
    values = _rvl_values(bytes(data))
    n = len(values)
    # the runs' heads (a count of zeros, then of non-zero pixels and their values), each from the one before,
    # as bare a Python step as can be (~70 ns): a trailing head with no count of non-zero pixels after it (a
    # stream that ends in zeros) counts 0 of them
    after = np.arange(2, n + 1, dtype=np.int64)  # the head after one at i: i + 2 + its count of non-zero pixels
    after += values[1:].astype(np.int64)  # (uint64 values: at most 48 bits)
    following, heads, i = memoryview(after), [], 0
    add = heads.append
    try:
        while True:
            add(i)
            i = following[i]
    except IndexError:  # past the last value: a head at n - 1 is the trailing one, one past n - 1 no head
        if heads[-1] >= n:
            heads.pop()
    head = np.array(heads, np.int64)
    zeros = np.minimum(values[head], num_pixels + 1).astype(np.int64)  # (a corrupt count cannot overflow the sums)
    nonzeros = np.minimum(values[np.minimum(head + 1, n - 1)], num_pixels + 1).astype(np.int64)
    if len(heads) and heads[-1] == n - 1:
        nonzeros[-1] = 0
    ends = np.cumsum(zeros + nonzeros)  # pixels done after each run
    last = int(np.searchsorted(ends, num_pixels))  # the run that reaches num_pixels
    if last == len(heads):
        done = int(ends[-1]) if len(heads) else 0
        raise InputError(f"corrupt RVL data: it ends after {done} of the {num_pixels} pixels its header gives")
    before = int(ends[last - 1]) if last else 0
    if before + int(zeros[last]) >= num_pixels:  # it ends in the run of zeros: no non-zero pixels after them
        nonzeros[last], ends[last] = 0, before + zeros[last]
    runs_end = int(ends[last])
    if runs_end != num_pixels:
        raise InputError(f"corrupt RVL data: its runs give {runs_end} pixels, its header {num_pixels}")
    stop = int(head[last]) + 2 + int(nonzeros[last])  # after the last value used
    if stop > n:
        raise InputError(f"corrupt RVL data: it ends inside its last run of the {num_pixels} pixels")
    is_pixel = np.ones(stop, bool)  # the values that are pixels: all but the runs' two counts
    is_pixel[head[: last + 1]] = is_pixel[head[: last + 1] + 1] = False
    coded = values[:stop][is_pixel]
    deltas = ((coded >> 1) ^ -(coded & 1)).astype(np.uint16)  # (mod 2^16, as the sums below)
    # the non-zero pixels: +1 where each run of them starts, -1 where it ends, summed along the image
    some = nonzeros[: last + 1] > 0  # (another encoder may write runs of none: their starts could repeat)
    edges = np.zeros(num_pixels + 1, np.int8)
    edges[(ends[: last + 1] - nonzeros[: last + 1])[some]] += 1
    edges[ends[: last + 1][some]] -= 1  # (after the +1s: where one run ends as the next starts, nets 0)
    out = np.zeros(num_pixels, np.uint16)
    out[np.cumsum(edges[:-1], dtype=np.int8).view(bool)] = np.cumsum(deltas, dtype=np.uint16)
    return out


def _compressed_depth_samples(codec: str, buf: bytes, fmt: str) -> tuple[np.ndarray, bool]:
    """`((H, W) uint16, has_header)` of a compressedDepth payload with `codec` ("png" or "rvl"):
    PNG after the 12-byte header (or without it, as some writers leave it out), or RVL after the
    header and the uint32 width and height."""
    import cv2  # lazy: only compressed inputs need OpenCV here

    if codec == "rvl":
        if len(buf) < _DEPTH_HEADER + 8:
            raise InputError(f"cannot decode a compressedDepth image ({len(buf)} bytes, format {fmt!r})")
        width, height = struct.unpack("<II", buf[_DEPTH_HEADER : _DEPTH_HEADER + 8])
        try:
            samples = rvl_decode(memoryview(buf)[_DEPTH_HEADER + 8 :], width * height)
        except InputError as err:
            raise InputError(f"cannot decode a compressedDepth image {width}x{height} ({fmt!r}): {err}") from None
        return samples.reshape(height, width), True
    header = buf[_DEPTH_HEADER : _DEPTH_HEADER + 8] == _PNG_MAGIC
    start = _DEPTH_HEADER if header else 0 if buf[:8] == _PNG_MAGIC else -1
    img = cv2.imdecode(np.frombuffer(buf[start:], np.uint8), cv2.IMREAD_UNCHANGED) if start >= 0 else None
    if img is None or img.dtype != np.uint16 or img.ndim != 2:
        raise InputError(f"cannot decode a compressedDepth image ({len(buf)} bytes, format {fmt!r})")
    return img, header


def _depth_format(fmt: str) -> tuple[str, str]:
    """`(encoding, codec)` of a compressedDepth message's `format` ("16UC1; compressedDepth rvl"; png when no codec
    is named, as older versions write it; mono16 read as 16UC1, which the plugin takes too)."""
    encoding, _, rest = str(fmt).partition(";")
    encoding, codec = encoding.strip(), rest.replace("compressedDepth", "").strip() or "png"
    return DEPTH_ALIASES.get(encoding, encoding), codec


def png_size(data: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """`(width, height)` from a PNG's header (its IHDR chunk, PNG spec 11.2.2), or None when `data` is no PNG."""
    head = bytes(memoryview(data)[:24])
    if head[:8] != _PNG_MAGIC or len(head) < 24:
        return None
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def compressed_depth_size(fmt: str, data: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """`(width, height)` a compressedDepth payload (`compressed_depth_to_metres`) decodes to, from its headers
    alone (RVL's width and height, or the PNG's), or None when they cannot be read: what an image size limit is
    checked against before decoding (10000x10000 of zeros is a 200 KB PNG and a few bytes of RVL)."""
    head = bytes(memoryview(data)[: _DEPTH_HEADER + 24])
    if _depth_format(fmt)[1] == "rvl":
        if len(head) < _DEPTH_HEADER + 8:
            return None
        width, height = struct.unpack("<II", head[_DEPTH_HEADER : _DEPTH_HEADER + 8])
        return int(width), int(height)
    return png_size(head[_DEPTH_HEADER:]) or png_size(head)  # (after the header, or without it)


def compressed_depth_to_metres(fmt: str, data: bytes | bytearray | memoryview) -> np.ndarray:
    """`(H, W)` float32 metres (NaN invalid) of a compressed_depth_image_transport `CompressedImage`
    (`format` "16UC1; compressedDepth png", "32FC1; compressedDepth rvl", or without the codec, png,
    as older versions write it): a 12-byte header (int32 format, float32 depthQuantA, depthQuantB),
    then a 16-bit PNG, or an RVL stream after its uint32 width and height (`rvl_decode`), of
    millimetres for 16UC1 and of quantized inverse depth for 32FC1
    (`depth = depthQuantA / (v - depthQuantB)`, 0 = no depth), as its `decodeCompressedDepthImage`.

    Raises:
        InputError: another codec, an encoding other than 16UC1/32FC1, or undecodable data.
    """
    encoding, codec = _depth_format(fmt)
    if codec not in ("png", "rvl"):
        raise InputError(
            f"compressedDepth {codec!r} is not supported, only png and rvl: record the depth raw or with the "
            "compressedDepth plugin's png or rvl format (its format parameter)"
        )
    if encoding not in ("16UC1", "32FC1"):
        raise InputError(f"compressedDepth of encoding {encoding!r}: expected 16UC1, mono16 or 32FC1 (format {fmt!r})")
    buf = bytes(data)
    img, header = _compressed_depth_samples(codec, buf, fmt)
    if encoding == "16UC1":
        return depth_from_image(img, "16UC1")
    quant_a, quant_b = struct.unpack("<ff", buf[4:12]) if header else (0.0, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.float32(quant_a) / (img.astype(np.float32) - np.float32(quant_b))
    depth[img == 0] = np.nan
    return depth_from_image(depth, "32FC1")


def compressed_millimetres_to_metres(fmt: str, data: bytes | bytearray | memoryview) -> np.ndarray:
    """`(H, W)` float32 metres (NaN invalid) of a 16UC1 `CompressedImage` of image_transport's compressed plugin
    (`format` "16UC1; png compressed": a 16-bit PNG of millimetres without compressedDepth's header), or of a driver
    that compresses depth itself as TIFF (kinect2_bridge's "16UC1; tiff compressed", its default); one without
    the header, a PNG written as compressedDepth's older versions did, is read too (`compressed_depth_to_metres`).

    Raises:
        InputError: the bytes are not one 16-bit channel OpenCV decodes (naming the format).
    """
    import cv2  # lazy: only compressed inputs need OpenCV here

    buf = bytes(data)
    if buf[_DEPTH_HEADER : _DEPTH_HEADER + 8] == _PNG_MAGIC:  # compressedDepth's header before the PNG
        return compressed_depth_to_metres("16UC1; compressedDepth png", buf)
    img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_UNCHANGED) if buf else None
    if img is None or img.dtype != np.uint16 or img.ndim != 2:
        got = "undecodable" if img is None else f"{img.dtype} with {1 if img.ndim == 2 else img.shape[2]} channel(s)"
        raise InputError(
            f"cannot decode a 16UC1 depth image ({len(buf)} bytes, format {fmt!r}): {got}, not one 16-bit channel"
        )
    return depth_from_image(img, "16UC1")


def read_image_file(path: str | os.PathLike[str], flags: int) -> np.ndarray | None:
    """An image file decoded as a message's bytes are (`cv2.imdecode` with `flags`), or None when it is missing,
    unreadable or does not decode. Not `cv2.imread`: it decodes a JPEG cut short (a copy interrupted) with the
    missing rows grey, saying so only on standard error, so a damaged frame was used as a picture of grey."""
    import cv2  # lazy: as decode_compressed

    try:
        buf = np.fromfile(os.fspath(path), dtype=np.uint8)
    except OSError:
        return None
    return cv2.imdecode(buf, flags) if buf.size else None


def decode_compressed(data: bytes | bytearray | memoryview, fmt: str = "", keep_16bit: bool = False) -> np.ndarray:
    """Decode a `sensor_msgs/CompressedImage` payload (jpeg/png) to `(H, W, 3)` RGB.

    Args:
        data: the compressed bytes.
        fmt: the message's `format` field; only used in error messages (OpenCV sniffs the codec).
        keep_16bit: a 16-bit PNG (image_transport's compressed mono16/bgr16) stays uint16, for the
            caller to read with its significant bits (`to_8bit`); else every image is uint8 (the top
            8 bits of 16).

    Raises:
        InputError: the bytes cannot be decoded.
    """
    import cv2  # lazy: only compressed inputs need OpenCV here

    buf = np.frombuffer(data, dtype=np.uint8)
    # the pixels as stored, as image_transport's compressed subscriber decodes them (IMREAD_UNCHANGED): OpenCV's
    # colour read turns a JPEG by its EXIF orientation, away from the grid its camera_info calibrates
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION | (cv2.IMREAD_ANYDEPTH if keep_16bit else 0)
    img = cv2.imdecode(buf, flags) if buf.size else None
    if img is not None and img.dtype not in (np.uint8, np.uint16):  # another depth: as 8 bits
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise InputError(f"cannot decode compressed image ({buf.size} bytes, format {fmt!r}); expected jpeg or png")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
