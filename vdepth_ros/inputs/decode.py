"""An image message to pixels, the same live and offline: `decode_color_image` (the colour input, as
`(H, W, 3)` uint8 RGB) and `decode_depth_image` (a depth image, as float32 metres), over the
`encodings` table, on the fields rclpy's and rosbags' messages share.

Before decoding, an image above `max_input_pixels` is refused from its header (`check_input_size`,
`compressed_size`: a 97 KB PNG can hold 10000x10000); a 16-bit camera's samples are read with their
significant bits (`SampleBitDepth`, the `image_bit_depth` parameter); a raw image's bytes may be read as
another encoding than the one it names (the `image_encoding` parameter: a driver that cannot be changed publishing
IR as 16UC1 or frames without channel order as 8UC3); a depth camera's compressedDepth
stream where the colour image is read is named as such (`is_compressed_depth`, `DEPTH_STREAM_FIX`). The fixes these
name are in the words of the user's tool (`SettingWords`: the node's parameter, or a tool's flag).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from vdepth_ros.encodings import (
    BRIGHTEST_IGNORED,
    COLOR_INPUT_ENCODINGS,
    DEPTH_ALIASES,
    compressed_depth_size,
    compressed_depth_to_metres,
    compressed_millimetres_to_metres,
    decode_compressed,
    depth_from_image,
    get_encoding,
    image_array_from_fields,
    png_size,
    rgb_from_image,
    significant_bits,
    to_8bit,
)
from vdepth_ros.errors import InputError
from vdepth_ros.inputs.resets import StreamResets
from vdepth_ros.inputs.sync import stamp_to_ns


class UnsupportedImageError(InputError):
    """The image's encoding is not a colour or mono one (a depth image on the colour input...)."""


class SettingWords:
    """How the user of a tool sets the node's image reading parameters (`image_encoding`, `image_bit_depth`), in
    the fixes the decoding names: the node's parameters (`NODE_SETTINGS`; also `vdepth-bag`'s and `vdepth-video`'s
    params file), or a tool's flags (`vdepth-flicker --image-encoding mono16`: a fix naming "the image_encoding
    parameter" sent its user looking for a params file the tool does not read)."""

    def __init__(self, flags: dict[str, str] | None = None) -> None:
        self.flags = dict(flags or {})  # parameter name -> the flag that sets it

    def name(self, param: str) -> str:
        """The setting as the user names it: `--image-encoding`, or `image_encoding`."""
        return self.flags.get(param, param)

    def written(self, param: str, value: object) -> str:
        """The setting with `value`, as the user writes it: `--image-encoding mono16`, or `image_encoding: mono16`."""
        flag = self.flags.get(param)
        return f"{flag} {value}" if flag else f"{param}: {value}"

    def setting(self, param: str, value: object) -> str:
        """`written`, introduced as a fix: `--image-encoding mono16`, or the node's
        `the image_encoding parameter: image_encoding: mono16`."""
        return (
            self.written(param, value)
            if param in self.flags
            else f"the {param} parameter: {self.written(param, value)}"
        )


#: The node's words (and a params file's): `image_encoding: mono16`.
NODE_SETTINGS = SettingWords()


def is_compressed(msg: Any) -> bool:
    """True for a `sensor_msgs/CompressedImage` (rclpy or rosbags)."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


#: how the node's user picks the colour camera's stream: the fix the shared causes name by default
#: (each tool passes its own words: `vdepth-bag` names `--image-topic`)
NODE_CHOOSE_IMAGE = "remap image to the colour camera's topic (e.g. .../color/image_raw)"


def depth_stream_cause(choose_image: str = NODE_CHOOSE_IMAGE) -> str:
    """A depth camera's compressedDepth stream given where the colour image is read, and the fix."""
    return (
        f"it is a depth stream (compressed_depth_image_transport's compressedDepth), not a colour image: {choose_image}"
    )


#: the fix for a depth camera's stream given where the colour image is read (the node's words)
DEPTH_STREAM_FIX = depth_stream_cause()

#: The ROS encoding a camera's bytes most likely are, for encodings that do not say it (OpenCV's types, which
#: cv_bridge's `cv2_to_imgmsg(frame)` publishes without a channel order; an IR camera's 16UC1, as kinect2_bridge's
#: `sd/image_ir`): what the `image_encoding` parameter reads them as (`read_as_hint`).
READ_AS = {"8UC3": "bgr8", "8UC4": "bgra8", "16UC3": "bgr16", "16UC4": "bgra16", "16UC1": "mono16"}


def read_as_hint(encoding: str, words: SettingWords = NODE_SETTINGS) -> str:
    """The `image_encoding` fix for images of `encoding` whose driver cannot be changed, or "" (`READ_AS`), in the
    user's `words`."""
    meant = READ_AS.get(str(encoding))
    if meant is None:
        return ""
    if encoding == "16UC1":
        return (
            "; if they are a 16-bit grey or IR camera's images (kinect2_bridge's image_ir) and its driver cannot be "
            f"changed, have them read as such with {words.setting('image_encoding', 'mono16')}"
        )
    return (
        f"; where the publisher cannot be changed, name the channel order with "
        f"{words.setting('image_encoding', meant)} (OpenCV's order; {meant.replace('bgr', 'rgb')} if red and blue "
        "come out swapped)"
    )


def read_as(msg: Any, encoding: str, words: SettingWords = NODE_SETTINGS) -> str:
    """The encoding a raw image's bytes are read as: `encoding` (the `image_encoding` parameter), or the message's
    own for "auto" (or "").

    Raises:
        UnsupportedImageError: `encoding` does not fit the message's layout (its bytes per pixel, by its width and
            step): the setting, not one message, is wrong (a tool refuses the topic, as for an unreadable encoding).
    """
    if encoding in ("", "auto") or encoding == msg.encoding:
        return str(msg.encoding)
    try:
        image_array_from_fields(encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)
    except InputError as err:
        name = words.name("image_encoding")
        raise UnsupportedImageError(
            f"{name} is {encoding}, but these {msg.encoding} images do not hold {encoding} pixels ({err}): "
            f"set {name} to the encoding of the bytes the camera sends, or to auto to read each image as its "
            "encoding says"
        ) from None
    return encoding


def is_depth_png(msg: Any, image_encoding: str = "auto") -> bool:
    """A CompressedImage of the compressed plugin holding depth: its format names the encoding first,
    "16UC1; png compressed" (a depth camera's `/compressed`; mono16 is a grey camera's), or "16UC1; tiff compressed"
    (kinect2_bridge's, TIFF by default). Not a 16UC1 one read as mono16 (`image_encoding`, as its raw images are:
    kinect2_bridge's IR, `sd/image_ir/compressed`)."""
    named = str(msg.format).partition(";")[0].strip() if is_compressed(msg) else ""
    return named == "32FC1" or (named == "16UC1" and image_encoding != "mono16")


def compressed_codec(fmt: str) -> str:
    """The codec a compressed plugin's `format` names ("16UC1; tiff compressed" -> "tiff"; "png" when it names none)."""
    words = str(fmt).partition(";")[2].split()
    return words[0] if words else "png"


def is_depth_stream_name(topic: str) -> bool:
    """Does `topic` name a depth image's compressed stream (compressed_depth_image_transport's
    `<base>/compressedDepth`, also under a transport suffix such as `.../compressedDepth/compressed`)?"""
    return "compresseddepth" in [part.lower() for part in topic.split("/")]


def is_compressed_depth(msg: Any) -> bool:
    """True for a CompressedImage of compressed_depth_image_transport (format "16UC1; compressedDepth
    png"): a depth image, whatever the topic is called."""
    return is_compressed(msg) and "compresseddepth" in str(msg.format).lower()


def compressed_size(data: bytes | bytearray | memoryview, *, oriented: bool = False) -> tuple[int, int] | None:
    """`(width, height)` from a PNG, JPEG or TIFF header without decoding, or None (other formats).

    Hand-written because OpenCV has no header-only read and Pillow is not a dependency; PNG's IHDR,
    JPEG's start-of-frame segment and TIFF's first IFD are fixed layouts (PNG spec 11.2.2, ITU T.81 B.2.2,
    TIFF 6.0 section 2). A TIFF is read whole: its IFD may follow the pixels (libtiff, so OpenCV, writes it last).
    `oriented`: the size OpenCV's `imread`/`imdecode` give, which turn a JPEG by its EXIF orientation (a phone's
    photo taken upright is stored landscape with orientation 6: its header's size is the other way round).
    """
    if bytes(memoryview(data)[:4]) in TIFF_MAGICS:  # kinect2_bridge's "16UC1; tiff compressed"
        tags = _tiff_tags(memoryview(data), (_TIFF_WIDTH, _TIFF_HEIGHT))
        return (tags[_TIFF_WIDTH], tags[_TIFF_HEIGHT]) if len(tags) == 2 else None
    buf = bytes(memoryview(data)[:65536])
    png = png_size(buf)
    if png is not None:
        return png
    if buf[:2] != b"\xff\xd8":
        return None
    i, turned = 2, False
    while i + 9 <= len(buf) and buf[i] == 0xFF:
        marker, length = buf[i + 1], struct.unpack(">H", buf[i + 2 : i + 4])[0]
        if marker == 0xE1 and oriented:  # APP1: EXIF, before the frame
            turned = _exif_orientation(buf[i + 4 : i + 2 + length]) in (5, 6, 7, 8)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame segment
            height, width = struct.unpack(">HH", buf[i + 5 : i + 9])
            return (int(height), int(width)) if turned else (int(width), int(height))
        i += 2 + length
    return None


#: A TIFF's first 4 bytes, little- and big-endian (TIFF 6.0 section 2)
TIFF_MAGICS = (b"II*\x00", b"MM\x00*")
#: TIFF tags (TIFF 6.0): ImageWidth, ImageLength, and EXIF's Orientation
_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_ORIENTATION = 0x0100, 0x0101, 0x0112


def _tiff_tags(tiff: bytes | memoryview, wanted: tuple[int, ...]) -> dict[int, int]:
    """The `wanted` tags of a TIFF's first IFD whose value is one SHORT or LONG (either byte order), {} when it is
    no TIFF or is malformed (cut short)."""
    head = bytes(tiff[:2])
    if head not in (b"II", b"MM"):
        return {}
    order, found = "<" if head == b"II" else ">", {}
    try:
        (ifd,) = struct.unpack(order + "I", tiff[4:8])
        (entries,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
        for k in range(entries):
            at = ifd + 2 + 12 * k
            tag, kind, count = struct.unpack(order + "HHI", tiff[at : at + 8])
            if tag in wanted and kind in (3, 4) and count == 1:  # SHORT, LONG
                found[tag] = int(
                    struct.unpack(order + ("H" if kind == 3 else "I"), tiff[at + 8 : at + 10 + 2 * (kind - 3)])[0]
                )
    except struct.error:
        return {}
    return found


def _exif_orientation(app1: bytes) -> int:
    """The orientation tag (0x0112) of an APP1 segment's EXIF (1 = as stored; 5-8 turn it a quarter), 1 when
    there is none or the segment is malformed (TIFF 6.0 IFD layout, either byte order)."""
    if app1[:6] != b"Exif\x00\x00":
        return 1
    return _tiff_tags(app1[6:], (_TIFF_ORIENTATION,)).get(_TIFF_ORIENTATION, 1)


def image_size(msg: Any) -> tuple[int, int] | None:
    """`(width, height)` of an `Image`, or of a PNG, JPEG or TIFF `CompressedImage` or a compressedDepth one (its
    headers), without decoding it; None for another compressed format."""
    if not is_compressed(msg):
        return int(msg.width), int(msg.height)
    if is_compressed_depth(msg):
        return compressed_depth_size(msg.format, msg.data)
    return compressed_size(msg.data)


def check_input_size(
    msg: Any,
    max_pixels: int,
    what: str = "image",
    outcome: str = "the frame is dropped",
    setting: str = "max_input_pixels",
) -> None:
    """Refuse an image larger than `max_pixels` (0: no limit) before it is decoded.

    Args:
        msg: the image message.
        max_pixels: the limit (`max_input_pixels`).
        what, outcome: what the message is and what happens to it, for the error ("depth image", "it is not used").
        setting: how the user sets the limit, named in the error (a tool's "--max-input-pixels").

    Raises:
        InputError: naming the size, the limit and the parameter.
    """
    if max_pixels <= 0:
        return
    size = image_size(msg)
    if size is not None and size[0] * size[1] > max_pixels:
        raise InputError(
            f"{what} {size[0]}x{size[1]} ({size[0] * size[1] / 1e6:.1f} MP) is larger than {setting} "
            f"= {max_pixels} ({max_pixels / 1e6:.1f} MP); {outcome} (raise {setting} if the camera really "
            "is this large)"
        )


#: the samples `significant_bits` reads a bit depth from, as the note names them (its brightest ones passed over)
PERCENT_KEPT = f"{100 * (1 - BRIGHTEST_IGNORED):g}%"


class SampleBitDepth:
    """How many low bits of one camera's 16-bit samples hold the picture (the `image_bit_depth`
    parameter): a 12-bit camera publishing mono16 (bayer_*16, rgb16...) with values 0-4095, as many
    machine-vision and thermal drivers do, came out almost black when the top 8 of 16 bits were kept
    (cv_bridge's rule).

    Args:
        setting: 8-16 for a camera whose bit depth the user knows; 0 = auto: found from the images
            (`encodings.significant_bits`, passing over their brightest 0.1%: a hot pixel or glint), raised
            only by `RAISE_AFTER_FRAMES` frames in a row that need more bits (a flash over more than 0.1% of one
            frame raised it for good: every later frame nearly black), lowered only by `LOWER_AFTER_FRAMES` frames
            in a row that need at least `LOWER_BY_BITS` fewer (read with the bits chosen, they are nearly black: a
            camera switched to fewer bits; a darker scene is not lowered, so the picture does not change brightness
            with the scene), and found anew when a new stream starts (`StreamResets`: a time jump, a gap longer than
            `max_gap_s`, another image size; or another encoding): a restarted driver or the next session of a bag
            was read with the bits of the one before, each choice told once.
        words: how the user sets image_bit_depth, in the notes.
        max_gap_s: the node's `max_gap` (0: a gap starts no new stream).
    """

    #: Frames in a row whose samples need more bits than the chosen depth before it is raised: a flash, a strobe or
    #: an IR emitter's burst lasts a frame or two (its frames saturate meanwhile, as a camera's own do), a brighter
    #: scene, or a camera of more bits, stays.
    RAISE_AFTER_FRAMES = 3
    #: Frames in a row that need `LOWER_BY_BITS` fewer bits than the chosen depth before it is lowered: a camera
    #: switched to fewer bits (a 16-bit mode to a 12-bit one) stays so, a dark moment passes.
    LOWER_AFTER_FRAMES = 15
    #: How many fewer bits lower the depth: read with 4 bits too many, a frame's brightest samples are below 1/16 of
    #: full scale (8-bit values under 16: nearly black, nothing of the picture to keep); a scene 4x darker (2 bits) is
    #: read as it is, so the picture does not follow the scene's brightness.
    LOWER_BY_BITS = 4

    def __init__(self, setting: int = 0, words: SettingWords = NODE_SETTINGS, max_gap_s: float = 0.0) -> None:
        self.setting = int(setting)
        self.words = words  # how the user sets image_bit_depth, in the notes
        self.bits: int | None = self.setting or None
        self._told = False
        self._brighter: list[tuple[int, int]] = []  # (bits, brightest) of the last frames in a row that need more bits
        self._darker: list[tuple[int, int]] = []  # ... that need `LOWER_BY_BITS` fewer
        self._stream = StreamResets(round(float(max_gap_s) * 1e9))  # the node's restart rule, on the frames read here
        self._encoding: str | None = None
        self._restarted: tuple[str, int] | None = None  # (why, the bits before) until the new stream's bits are chosen
        self.note: str | None = None  # what was chosen, to be told once (taken by the caller)

    def bits_for(
        self,
        arr: np.ndarray,
        encoding: str,
        label: str | None = None,
        stamp_ns: int | None = None,
        previous_input_ns: int | None = None,
    ) -> int:
        """The bit depth to read this 16-bit image (`arr` in `encoding`, stamped `stamp_ns`; None: no stamp, only
        its size and encoding tell a new stream) with; sets `note` (one line for the user, naming the images
        `label`, default `encoding`) when it was chosen, raised or lowered. `previous_input_ns`: the stamp of the
        image received before this one, read or not (`StreamResets.update`: images the node dropped make no gap)."""
        label = label or encoding
        if self.setting:
            if not self._told:
                self._told = True
                self.note = f"{label} images are read as {self.setting}-bit ({self.words.name('image_bit_depth')})"
            return self.setting
        self._start_over_at_new_stream(arr, encoding, stamp_ns, previous_input_ns)
        found = significant_bits(arr, encoding)
        if found is None or (self.bits is not None and self.bits - self.LOWER_BY_BITS < found[0] <= self.bits):
            self._brighter.clear()
            self._darker.clear()
            return self.bits or 16
        previous = self.bits
        if previous is not None:
            more = found[0] > previous
            run, other = (self._brighter, self._darker) if more else (self._darker, self._brighter)
            other.clear()
            run.append(found)
            if len(run) < (self.RAISE_AFTER_FRAMES if more else self.LOWER_AFTER_FRAMES):
                return previous
            found = min(run) if more else max(run)  # the bits every one of them needs
            run.clear()
        self.bits, largest = found
        if previous is not None and self.bits < previous:
            what = (
                f"need at most {self.bits} bits in {self.LOWER_AFTER_FRAMES} frames in a row ({PERCENT_KEPT} of them "
                f"at most {largest}), {previous - self.bits} fewer than the {previous} they were read with, which made "
                "them nearly black (the camera switched to fewer bits?)"
            )
        elif previous is not None:
            what = (
                f"exceed {previous} bits in {self.RAISE_AFTER_FRAMES} frames in a row ({PERCENT_KEPT} of them at "
                f"most {largest})"
            )
        elif self.bits == 16:
            what = "fill 16 bits (or their top bits)"
        else:
            what = f"use {self.bits} bits ({PERCENT_KEPT} of them at most {largest})"
        restarted, self._restarted = self._restarted, None
        if restarted is not None:
            if restarted[1] == self.bits:
                return self.bits  # (the new stream's bits are the old one's: nothing changed for the user)
            what += f" in a new stream ({restarted[0]}; they were read as {restarted[1]}-bit before)"
        how = (
            "their top 8 bits are the image"
            if self.bits == 16
            else f"read as {self.bits}-bit: bits {self.bits - 1}..{self.bits - 8} are the image"
        )
        self.note = (
            f"{label} samples {what}: {how} ({self.words.written('image_bit_depth', 0)} = auto; set it to the camera's "
            "bit depth to fix it)"
        )
        return self.bits

    def _start_over_at_new_stream(
        self, arr: np.ndarray, encoding: str, stamp_ns: int | None, previous_input_ns: int | None
    ) -> None:
        """Forget the chosen bits where the node starts a new stream (`StreamResets`, on the image's size and
        stamp) or the images change encoding: the next bits are the new stream's own, from its first frame on."""
        stamp = (self._stream.stamp or 0) if stamp_ns is None else int(stamp_ns)
        why = self._stream.update(tuple(arr.shape[:2]), stamp, None, previous_input_ns)
        if why is None and self._encoding not in (None, encoding):
            why = f"encoding: {self._encoding} -> {encoding}"
        self._encoding = encoding
        if why is not None and self.bits is not None:
            self._restarted = (why, self.bits) if self._restarted is None else self._restarted
            self.bits = None
            self._brighter.clear()
            self._darker.clear()


def decode_color_image(
    msg: Any,
    max_pixels: int = 0,
    bit_depth: SampleBitDepth | None = None,
    choose_image: str = NODE_CHOOSE_IMAGE,
    image_encoding: str = "",
    words: SettingWords = NODE_SETTINGS,
    stamp_ns: int | None = None,
    previous_input_ns: int | None = None,
) -> np.ndarray:
    """`(H, W, 3)` uint8 RGB of a duck-typed `Image` or `CompressedImage`.

    Args:
        msg: the message.
        max_pixels: larger images are refused (0: no limit).
        bit_depth: how 16-bit samples are read (the camera's `SampleBitDepth`; None: their top 8 bits).
        choose_image: how the user picks the colour camera's stream, named when a depth image came
            (the node: a remap; `vdepth-bag`: `--image-topic`).
        image_encoding: read a raw image's bytes as this encoding, not the one it names (`read_as`; "auto" or "":
            its own).
        words: how the user sets image_encoding, in the fixes the errors name (`SettingWords`).
        stamp_ns: the image's stamp, for `bit_depth`'s new-stream rule (None: its header's, if it has one).
        previous_input_ns: the stamp of the image received before it, for the same rule (`SampleBitDepth.bits_for`).

    Raises:
        UnsupportedImageError: a depth or unknown encoding (a depth camera's frame amid the colour
            ones, compressed too: a 16UC1 png is not decoded as a grey frame).
        InputError: larger than `max_pixels`, or malformed (size, buffer, undecodable bytes).
    """
    check_input_size(msg, max_pixels)
    if stamp_ns is None and getattr(msg, "header", None) is not None:
        stamp_ns = stamp_to_ns(msg.header.stamp)
    if is_compressed_depth(msg):
        raise UnsupportedImageError(f"format {msg.format!r}: {depth_stream_cause(choose_image)}")
    if is_depth_png(msg, image_encoding):  # OpenCV decodes it as a grey picture of millimetres
        named = str(msg.format).partition(";")[0].strip()
        raise UnsupportedImageError(
            f"format {msg.format!r} is a depth image (a {named} {compressed_codec(msg.format)}), not a colour image: "
            f"{choose_image}{read_as_hint(named, words)}"
        )
    if is_compressed(msg):
        rgb = decode_compressed(msg.data, msg.format, keep_16bit=bit_depth is not None)
        if max_pixels > 0 and rgb.shape[0] * rgb.shape[1] > max_pixels:  # a format without a known header
            raise InputError(f"decoded image {rgb.shape[1]}x{rgb.shape[0]} is larger than max_input_pixels")
        if bit_depth is not None and rgb.dtype == np.uint16:  # a 16-bit PNG (compressed mono16, bgr16...)
            # image_transport's format names the encoding first: "mono16; png compressed mono16"
            label = str(msg.format).split(";")[0].strip() or "16-bit png"
            rgb = to_8bit(rgb, bit_depth.bits_for(rgb, "rgb16", label, stamp_ns, previous_input_ns))
        return rgb
    encoding = read_as(msg, image_encoding, words)
    try:
        kind = get_encoding(encoding, COLOR_INPUT_ENCODINGS).kind
    except InputError as err:
        raise UnsupportedImageError(f"{err}{read_as_hint(encoding, words)}") from None
    arr = image_array_from_fields(encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)
    bits = 16
    if bit_depth is not None and kind != "depth" and arr.dtype.itemsize == 2:
        bits = bit_depth.bits_for(arr, encoding, None, stamp_ns, previous_input_ns)
    try:
        return rgb_from_image(arr, encoding, bits, choose_image=choose_image)
    except InputError as err:
        if kind == "depth":
            raise UnsupportedImageError(f"{err}{read_as_hint(encoding, words)}") from None
        raise


def decode_depth_image(msg: Any) -> np.ndarray:
    """`(H, W)` float32 metres (NaN invalid) of a duck-typed `16UC1`/`32FC1` `Image` (`mono16` as 16UC1, as
    depth_image_proc reads it: `encodings.DEPTH_ALIASES`), or of a
    compressedDepth `CompressedImage` (`encodings.compressed_depth_to_metres`: depth cameras
    recorded with image_transport's compressedDepth plugin), or of a 16UC1 one of its compressed
    plugin (format "16UC1; png compressed ...": a 16-bit PNG of millimetres; kinect2_bridge's "16UC1; tiff compressed").

    Raises:
        UnsupportedImageError: not a depth encoding (the stream is not a depth one).
        InputError: a malformed message (size, buffer, undecodable bytes, a corrupt compressedDepth header).
    """
    if is_compressed(msg):
        if is_compressed_depth(msg):
            return compressed_depth_to_metres(msg.format, msg.data)
        named = str(msg.format).partition(";")[0].strip()
        if DEPTH_ALIASES.get(named, named) == "16UC1":  # image_transport's compressed plugin: a png (or a tiff)
            return compressed_millimetres_to_metres(msg.format, msg.data)
        raise UnsupportedImageError(
            f"a CompressedImage of format {msg.format!r} is not a depth image: expected compressed_depth_image_"
            "transport's compressedDepth (png or rvl) or a 16UC1 (or mono16) png or tiff of the compressed plugin"
        )
    encoding = DEPTH_ALIASES.get(msg.encoding, msg.encoding)
    try:
        unit_scale = get_encoding(encoding).unit_scale
    except InputError as err:
        raise UnsupportedImageError(str(err)) from None
    if unit_scale is None:
        raise UnsupportedImageError(
            f"encoding {msg.encoding!r} is not a depth image (16UC1 millimetres, or mono16 read as such, or 32FC1 "
            "metres)"
        )
    arr = image_array_from_fields(encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)
    return depth_from_image(arr, encoding)
