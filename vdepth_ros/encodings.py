"""Image encodings and PointCloud2 layouts as numpy, without ROS.

The one table of `sensor_msgs` encodings (dtype, channels, unit scale) shared by the live node
(`vdepth_ros.ros.conversions`) and the offline tools (`vdepth_ros.offline`), so both read and
write messages the same way. Everything here works on plain message *fields* (height, width,
step, data bytes...) so it applies equally to rclpy messages and to rosbags' deserialized ones.

Depth conventions follow REP 118 / depth_image_proc's `depth_traits.hpp`: `32FC1` is metres,
`16UC1` is millimetres (`* 0.001`), 0 / non-finite is invalid and becomes NaN.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from vdepth_ros.errors import InputError

if TYPE_CHECKING:
    from vdepth_ros.stream.cloud import CameraModel

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
            chroma, as `(3H / 2, W)`) or a Bayer mosaic named by its top-left 2x2 block
            ("bayer_rggb", ...; one sample per pixel).
        height_scaling: rows of data per image row (sensor_msgs' `getHeightScaling`: 1.5 for the
            4:2:0 planes).
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

#: Encodings accepted as the colour input of the pipeline.
COLOR_INPUT_ENCODINGS: tuple[str, ...] = tuple(n for n, e in ENCODINGS.items() if e.kind in ("color", "mono"))

# sensor_msgs/PointField datatype constants.
POINTFIELD_INT8, POINTFIELD_UINT8, POINTFIELD_INT16, POINTFIELD_UINT16 = 1, 2, 3, 4
POINTFIELD_INT32, POINTFIELD_UINT32, POINTFIELD_FLOAT32, POINTFIELD_FLOAT64 = 5, 6, 7, 8
POINTFIELD_DTYPES: dict[int, np.dtype] = {
    POINTFIELD_INT8: np.dtype("i1"),
    POINTFIELD_UINT8: np.dtype("u1"),
    POINTFIELD_INT16: np.dtype("<i2"),
    POINTFIELD_UINT16: np.dtype("<u2"),
    POINTFIELD_INT32: np.dtype("<i4"),
    POINTFIELD_UINT32: np.dtype("<u4"),
    POINTFIELD_FLOAT32: np.dtype("<f4"),
    POINTFIELD_FLOAT64: np.dtype("<f8"),
}

#: (name, offset, datatype, count) as in `sensor_msgs/PointField`.
FieldSpec = tuple[str, int, int, int]


def get_encoding(encoding: str) -> Encoding:
    """The table entry for `encoding`.

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
        raise InputError(f"unsupported image encoding {encoding!r}{hint}; supported: {', '.join(ENCODINGS)}") from None


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
        (`(3H / 2, W)` for the 4:2:0 planes of nv12 / nv21).
        The result may be a read-only view of `data`; copy it before writing.

    Raises:
        InputError: unknown encoding, non-positive size, `step` too small, or a buffer shorter or longer
            than `step` x rows (fields that do not describe the data).
    """
    enc = get_encoding(encoding)
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise InputError(f"{encoding} image has invalid size {width}x{height}")
    size = f"{encoding} image {width}x{height}"
    if enc.height_scaling != 1.0:
        if height % 2 or width % 2:
            raise InputError(f"{size}: 4:2:0 chroma needs an even width and height")
        height = int(height * enc.height_scaling)  # the rows of all the planes
    row_bytes = width * enc.bytes_per_pixel
    if step < row_bytes:
        raise InputError(f"{size}: step {step} < width * {enc.bytes_per_pixel} = {row_bytes}")
    buf = np.frombuffer(data, dtype=np.uint8)
    need = step * (height - 1) + row_bytes
    if buf.size < need:
        raise InputError(f"{size} step {step}: data has {buf.size} bytes, needs {need}")
    if buf.size > step * height:  # more data than rows: the fields are not the image's (cv_bridge refuses it too)
        rows = f"{buf.size / step:g}"
        raise InputError(
            f"{size} step {step}: data has {buf.size} bytes, but step x rows is {step * height}: the data holds "
            f"{rows} rows of {step} bytes, so its height, width or step are not the image's (a publisher that "
            "resized or reconfigured the image without updating them?); set them from the frame it sends "
            "(cv_bridge's cv2_to_imgmsg does)"
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


def rgb_from_image(arr: np.ndarray, encoding: str, bit_depth: int = 16) -> np.ndarray:
    """Convert a decoded colour/mono image to `(H, W, 3)` uint8 RGB.

    Accepts rgb8, bgr8, rgba8, bgra8, their 16-bit forms (rgb16...), mono8/8UC1 and mono16, packed
    YUV 4:2:2 (uyvy = yuv422, yuyv = yuv422_yuy2; BT.601, as cv_bridge converts them), semi-planar
    YUV 4:2:0 (nv12, nv21; BT.601 as OpenCV) and Bayer mosaics (bayer_rggb8 ... bayer_grbg16;
    bilinear demosaicing). Returns `arr` itself (no copy) for rgb8.

    Args:
        arr: the image as `image_array_from_fields` gives it.
        encoding: its ROS encoding.
        bit_depth: 16-bit encodings only: how many low bits hold the samples (8-16; a 12-bit camera
            publishing mono16 has values 0-4095); the top 8 of them are kept, larger values saturate.
            16 (cv_bridge's rule: the top 8 bits) unless the caller knows (`significant_bits`).

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
            f"encoding {encoding} is a depth image, not a colour image; the 'image' input needs one of "
            f"{', '.join(COLOR_INPUT_ENCODINGS)} (remap 'image' to the colour stream, and depth to "
            f"'sparse_depth'){hint}"
        )
    if enc.order in _CHANNELS:
        rgb = arr[..., _CHANNELS[enc.order]]
        if rgb.dtype != np.uint8:
            return to_8bit(rgb, bit_depth)
        return arr if enc.order == "rgb" else np.ascontiguousarray(rgb)
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


def significant_bits(arr: np.ndarray, encoding: str) -> tuple[int, int] | None:
    """`(bits, largest sample)` of one 16-bit image: how many low bits its samples use, rounded up to
    a sensor's bit depth (`SAMPLE_BIT_DEPTHS`), or None when the image cannot tell (all zero: a
    covered lens, a dark first frame).

    Many machine-vision and thermal cameras publish 10-, 12- or 14-bit samples as mono16, bayer_*16
    or rgb16 in the *low* bits (values 0-4095 for 12 bits); others (and cv_bridge) put them in the
    *top* bits. Samples reaching bit 13 whose two lowest bits (or more) are never set while at least
    four above them vary are taken as top-aligned: 16 (a dark frame of a top-aligned camera is not
    brightened); below bit 13 such samples are a 10-bit sensor in a 12-bit container, say, and read
    by their largest. A colour encoding's alpha channel is not a sample.
    """
    enc = get_encoding(encoding)
    samples = arr[..., :3] if enc.channels == 4 else arr
    used = int(np.bitwise_or.reduce(samples, axis=None))
    if used == 0:
        return None
    largest = int(samples.max())
    low_zeros = (used & -used).bit_length() - 1  # trailing zero bits of every sample
    if low_zeros >= 2 and used.bit_length() - low_zeros >= 4 and used.bit_length() >= 14:
        return 16, largest
    return next(b for b in SAMPLE_BIT_DEPTHS if used.bit_length() <= b), largest


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

    Zero, negative and non-finite values are invalid (depth_image_proc's depth_traits).

    Raises:
        InputError: `encoding` is not a depth encoding.
    """
    enc = get_encoding(encoding)
    if enc.unit_scale is None:
        raise InputError(f"encoding {encoding} is not a depth encoding; expected one of {', '.join(DEPTH_UNIT_SCALE)}")
    depth = arr.astype(np.float32) * np.float32(enc.unit_scale)
    depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
    return depth


#: PNG's file signature (a compressedDepth payload starts with it, after its 12-byte header)
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def compressed_depth_to_metres(fmt: str, data: bytes | bytearray | memoryview) -> np.ndarray:
    """`(H, W)` float32 metres (NaN invalid) of a compressed_depth_image_transport `CompressedImage`
    (`format` "16UC1; compressedDepth png", "32FC1; compressedDepth png", or without the codec, as
    older versions write it): a 12-byte header (int32 format, float32 depthQuantA, depthQuantB), then a
    16-bit PNG, of millimetres for 16UC1 and of quantized inverse depth for 32FC1
    (`depth = depthQuantA / (v - depthQuantB)`, 0 = no depth), as its `decodeCompressedDepthImage`.

    Raises:
        InputError: another codec (rvl), an encoding other than 16UC1/32FC1, or undecodable data.
    """
    import cv2  # lazy: only compressed inputs need OpenCV here

    encoding, _, rest = str(fmt).partition(";")
    encoding, codec = encoding.strip(), rest.replace("compressedDepth", "").strip() or "png"
    if codec != "png":
        raise InputError(
            f"compressedDepth {codec!r} is not supported, only png: record the depth raw or with the "
            "compressedDepth plugin's png format (its format parameter)"
        )
    if encoding not in ("16UC1", "32FC1"):
        raise InputError(f"compressedDepth of encoding {encoding!r}: expected 16UC1 or 32FC1 (format {fmt!r})")
    buf = bytes(data)
    start = 12 if buf[12:20] == _PNG_MAGIC else 0 if buf[:8] == _PNG_MAGIC else -1
    img = cv2.imdecode(np.frombuffer(buf[start:], np.uint8), cv2.IMREAD_UNCHANGED) if start >= 0 else None
    if img is None or img.dtype != np.uint16 or img.ndim != 2:
        raise InputError(f"cannot decode a compressedDepth image ({len(buf)} bytes, format {fmt!r})")
    if encoding == "16UC1":
        return depth_from_image(img, "16UC1")
    quant_a, quant_b = struct.unpack("<ff", buf[4:12]) if start == 12 else (0.0, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.float32(quant_a) / (img.astype(np.float32) - np.float32(quant_b))
    depth[img == 0] = np.nan
    return depth_from_image(depth, "32FC1")


def pack_rgb_float(colors: np.ndarray) -> np.ndarray:
    """Pack `(..., 3)` uint8 RGB into PCL's float `rgb` field (`0x00RRGGBB` bits viewed as float32)."""
    c = colors.astype(np.uint32)
    return ((c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]).view(np.float32)


def unpack_rgb_float(rgb: np.ndarray) -> np.ndarray:
    """Inverse of `pack_rgb_float`: float32 `rgb` -> `(..., 3)` uint8."""
    u = np.ascontiguousarray(rgb, dtype=np.float32).view(np.uint32)
    return np.stack([(u >> 16) & 0xFF, (u >> 8) & 0xFF, u & 0xFF], axis=-1).astype(np.uint8)


def pointcloud2_layout(points: np.ndarray, colors: np.ndarray | None = None) -> tuple[list[FieldSpec], int, int, bytes]:
    """Layout of an organized `PointCloud2` holding `points` (and packed `rgb`).

    See `pointcloud2_buffer`; this returns the data as `bytes`.
    """
    fields, point_step, row_step, buf = pointcloud2_buffer(points, colors)
    return fields, point_step, row_step, buf.tobytes()


def pointcloud2_buffer(
    points: np.ndarray, colors: np.ndarray | None = None
) -> tuple[list[FieldSpec], int, int, np.ndarray]:
    """Layout of an organized `PointCloud2` holding `points` (and packed `rgb`), data as an array.

    Fields are `x, y, z` float32 at offsets 0/4/8 and, with colours, PCL's packed float `rgb`
    at 12: `point_step` is 12 (xyz) or 16 (xyzrgb). The cloud keeps `points`' (h, w) layout, so
    the message is organized (`height=h`, `width=w`, `is_dense=False` when NaNs are present).

    Args:
        points: `(h, w, 3)` float32 xyz in metres, NaN invalid.
        colors: `(h, w, 3)` uint8 RGB matching `points`, or None.

    Returns:
        `(fields, point_step, row_step, buffer)` with fields as `(name, offset, datatype, count)`
        and `buffer` a C-contiguous little-endian float32 `(h, w, point_step // 4)` array.

    Raises:
        InputError: wrong shapes or dtypes.
    """
    points = np.asarray(points)
    if points.ndim != 3 or points.shape[2] != 3:
        raise InputError(f"points must be (h, w, 3), got {points.shape}")
    h, w, _ = points.shape
    fields: list[FieldSpec] = [
        ("x", 0, POINTFIELD_FLOAT32, 1),
        ("y", 4, POINTFIELD_FLOAT32, 1),
        ("z", 8, POINTFIELD_FLOAT32, 1),
    ]
    if colors is None:
        buf = np.ascontiguousarray(points, dtype=np.float32)
    else:
        colors = np.asarray(colors)
        if colors.shape != points.shape or colors.dtype != np.uint8:
            raise InputError(
                f"colors must be (h, w, 3) uint8 like points {points.shape}, got {colors.dtype}{colors.shape}"
            )
        buf = np.empty((h, w, 4), "<f4")
        buf[..., :3] = points
        # packed float rgb = 0x00RRGGBB little-endian: bytes B, G, R, 0 (faster than uint32 shifts)
        rgb_bytes = buf.view(np.uint8).reshape(h, w, 16)[..., 12:]
        rgb_bytes[..., :3] = colors[..., ::-1]
        rgb_bytes[..., 3] = 0
        fields.append(("rgb", 12, POINTFIELD_FLOAT32, 1))
    point_step = buf.shape[2] * 4
    return fields, point_step, point_step * w, buf.astype("<f4", copy=False)


def pointcloud2_fields_array(
    fields: list[FieldSpec],
    point_step: int,
    height: int,
    width: int,
    row_step: int,
    data: bytes | bytearray | memoryview,
    is_bigendian: bool | int = False,
    names: tuple[str, ...] = ("x", "y", "z"),
) -> np.ndarray:
    """Read named scalar fields of a `PointCloud2` into an `(height, width, len(names))` float32 array.

    Raises:
        InputError: a requested field is missing, has an unknown datatype, or the buffer is too short.
    """
    by_name = {f[0]: f for f in fields}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise InputError(f"PointCloud2 lacks field(s) {missing}; it has {sorted(by_name)}")
    height, width, point_step, row_step = int(height), int(width), int(point_step), int(row_step)
    buf = np.frombuffer(data, dtype=np.uint8)
    if height <= 0 or width <= 0:
        return np.zeros((max(height, 0), max(width, 0), len(names)), np.float32)
    if row_step < width * point_step or buf.size < row_step * (height - 1) + width * point_step:
        raise InputError(
            f"PointCloud2 {width}x{height} point_step {point_step} row_step {row_step}: data has {buf.size} bytes"
        )
    out = np.empty((height, width, len(names)), np.float32)
    for i, name in enumerate(names):
        _, offset, datatype, _ = by_name[name]
        if datatype not in POINTFIELD_DTYPES:
            raise InputError(f"PointCloud2 field {name!r} has unknown datatype {datatype}")
        dt = POINTFIELD_DTYPES[datatype].newbyteorder(">" if is_bigendian else "<")
        if offset + dt.itemsize > point_step:
            raise InputError(f"PointCloud2 field {name!r} at offset {offset} exceeds point_step {point_step}")
        col = np.ndarray((height, width), dtype=dt, buffer=buf, offset=offset, strides=(row_step, point_step))
        out[..., i] = col
    return out


def sparse_depth_from_cloud(msg: Any, camera: CameraModel, rotation: np.ndarray | None = None) -> np.ndarray:
    """Project a `PointCloud2` message (xyz in the camera's optical frame; an rclpy or a rosbags
    message, read by field name) to a `(H, W)` depth image, as the node's and vdepth-bag's
    `sparse_depth: pointcloud` input.

    Points behind the camera or outside the image are ignored; where several points land on one
    pixel the nearest wins. Pixels without a point are NaN. `rotation` (3x3) first turns the
    points into the frame `camera` projects from (a rectified camera's `R`, `vdepth_ros.rectify`).
    """
    fields = [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
    xyz = pointcloud2_fields_array(
        fields, msg.point_step, msg.height, msg.width, msg.row_step, msg.data, msg.is_bigendian
    ).reshape(-1, 3)
    if rotation is not None:
        xyz = xyz @ np.asarray(rotation, dtype=xyz.dtype).T
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    ok = np.isfinite(xyz).all(axis=1) & (z > 0)
    x, y, z = x[ok], y[ok], z[ok]
    u = np.floor(camera.fx * x / z + camera.cx + 0.5).astype(np.int64)
    v = np.floor(camera.fy * y / z + camera.cy + 0.5).astype(np.int64)
    inside = (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    u, v, z = u[inside], v[inside], z[inside]
    depth = np.full((camera.height, camera.width), np.inf, np.float32)
    np.minimum.at(depth, (v, u), z.astype(np.float32))
    depth[~np.isfinite(depth)] = np.nan
    return depth


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
    flags = cv2.IMREAD_COLOR | (cv2.IMREAD_ANYDEPTH if keep_16bit else 0)
    img = cv2.imdecode(buf, flags) if buf.size else None
    if img is not None and img.dtype not in (np.uint8, np.uint16):  # another depth: as 8 bits
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"cannot decode compressed image ({buf.size} bytes, format {fmt!r}); expected jpeg or png")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def image_window(info: Any) -> tuple[int, int, int, int, int, int]:
    """`(x_offset, y_offset, width, height, binning_x, binning_y)`: the part of the calibrated
    image (`info.width x info.height`) that the camera's images show, and how it was binned.

    As `sensor_msgs/CameraInfo` defines them (and image_geometry applies them): `roi` is given in
    full-resolution, unbinned pixels, an all-zero `roi` is the whole image, binning 0 is 1, and the
    image is `roi.width / binning_x` x `roi.height / binning_y` pixels. Messages without the fields
    (a calibration file) are the whole image, unbinned.
    """
    bx = max(1, int(getattr(info, "binning_x", 0) or 0))
    by = max(1, int(getattr(info, "binning_y", 0) or 0))
    roi = getattr(info, "roi", None)
    if roi is None or int(roi.width) <= 0 or int(roi.height) <= 0:
        return 0, 0, int(info.width), int(info.height), bx, by
    return int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height), bx, by


def camera_from_info(info: Any) -> CameraModel | None:
    """Pinhole intrinsics from a `sensor_msgs/CameraInfo` (rclpy or rosbags message), for the
    images the camera publishes.

    Uses the rectified projection `P` if set, else `K` (depth_image_proc / image_geometry); None
    for an uncalibrated (all-zero) or sizeless camera_info. A region of interest and binning
    are applied as image_geometry does (`windowed_matrix`), so a cropped or binned image gets its own
    principal point and focal lengths, the ones every image_geometry user of the camera sees.
    """
    from vdepth_ros.stream.cloud import CameraModel

    p = np.asarray(info.p, dtype=np.float64).reshape(3, 4)[:, :3]
    k = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    if p[0, 0] > 0 and p[1, 1] > 0:
        m = p
    elif k[0, 0] > 0 and k[1, 1] > 0:
        m = k
    else:
        return None
    if int(info.width) <= 0 or int(info.height) <= 0:
        return None
    m, width, height = windowed_matrix(m, info)
    return CameraModel(float(m[0, 0]), float(m[1, 1]), float(m[0, 2]), float(m[1, 2]), width, height)


def windowed_matrix(m: np.ndarray, info: Any) -> tuple[np.ndarray, int, int]:
    """A camera matrix of the calibrated image (`K`, or `P`'s 3x3 block) -> `(matrix, width, height)` of
    the images the camera publishes (`image_window`: its `roi`, binned), as image_geometry's
    `PinholeCameraModel` (and so depth_image_proc) has it: the principal point minus the roi's
    offset, then focal lengths and principal point divided by the binning (`(cx - x0) / bx`, not
    about pixel centres: the same camera as every ROS user of these images sees)."""
    x0, y0, width, height, bx, by = image_window(info)
    out = np.array(m, dtype=np.float64, copy=True)
    out[0, 2] -= x0
    out[1, 2] -= y0
    out[0, :3] /= bx
    out[1, :3] /= by
    return out, max(1, width // bx), max(1, height // by)


def camera_info_fields(camera: CameraModel) -> dict[str, Any]:
    """The `sensor_msgs/CameraInfo` fields of an output image: the rectified pinhole `camera` at its
    resolution, no distortion (`plumb_bob`, five zeros), `R` = I, `K` = `P`'s 3x3 block, `Tx` = 0 (the
    depth is in this camera's own frame). Float lists, for the node's message, `vdepth-bag`'s and
    `vdepth-video`'s `camera_info.yaml` alike; binning and ROI keep their defaults (none)."""
    return pinhole_fields(camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height)


def pinhole_fields(fx: float, fy: float, cx: float, cy: float, width: int, height: int) -> dict[str, Any]:
    """`camera_info_fields` of plain intrinsics, unchecked (`rectify.pinhole_info` builds the camera_info
    of a user's `--intrinsics` with it, to be judged as a camera_info is, zeros and all)."""
    fx, fy, cx, cy = float(fx), float(fy), float(cx), float(cy)
    return {
        "width": int(width),
        "height": int(height),
        "distortion_model": "plumb_bob",
        "d": [0.0] * 5,
        "k": [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0],
        "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        "p": [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
    }


def info_signature(info: Any) -> tuple:
    """What must stay constant in camera_info for a stream to continue (size and projection)."""
    return (
        int(info.width),
        int(info.height),
        tuple(np.round(np.asarray(info.p, float), 6)),
        tuple(np.round(np.asarray(info.k, float), 6)),
    )
