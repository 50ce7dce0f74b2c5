"""Reading and decoding single rosbag2 messages, on `rosbags`: what `BagFrameSource` and
`vdepth-flicker` share (open a bag, iterate it with the bag's own failures named, decode colour and
depth images as the node does, match a stamp).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2 import ReaderError
from rosbags.typesys import get_typestore

from vdepth_ros.encodings import COLOR_INPUT_ENCODINGS, depth_from_image, get_encoding, image_array_from_fields
from vdepth_ros.errors import InputError
from vdepth_ros.inputs.assembly import decode_color_image
from vdepth_ros.offline.atomic import disk_full_error
from vdepth_ros.offline.bag_types import COMPRESSED, STORAGES, TYPESTORES
from vdepth_ros.offline.errors import BagReadError, UnsupportedEncodingError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from rosbags.interfaces import Connection

#: rosbags unpacks a bag recorded with `compression_mode: file` whole into the system temp folder
TEMP_FULL_FIX = (
    "a bag recorded with compression_mode: file is unpacked there whole before reading; set TMPDIR to a "
    "folder on a disk with room for the uncompressed bag"
)

#: What a damaged or unreadable bag raises from inside rosbags (sqlite/mcap/yaml internals included).
_READ_ERRORS = (AnyReaderError, ReaderError, OSError, ValueError, KeyError, IndexError, EOFError)


def storage_error(path: Path, err: Exception) -> BagReadError:
    full = disk_full_error(err, Path(tempfile.gettempdir()), TEMP_FULL_FIX)
    if full is not None:  # not the bag's fault: it was being unpacked (compression_mode: file)
        return BagReadError(f"{path}: {full}")
    text = " ".join(str(a) for a in err.args) or type(err).__name__
    low = text.lower()
    if "storage" in low and ("not supported" in low or "unrecognized" in low or "unknown" in low):
        return BagReadError(f"{path}: unknown bag storage ({text}); supported: {', '.join(STORAGES)}")
    return BagReadError(f"{path}: cannot read the bag, it looks truncated or corrupt ({text})")


def open_reader(paths: list[Path], typestore: str) -> AnyReader:
    """An open rosbags `AnyReader` over `paths` (read together, in time order).

    Raises:
        BagReadError: unknown storage, or a damaged bag (`storage_error`).
    """
    try:
        reader = AnyReader(paths, default_typestore=get_typestore(TYPESTORES[typestore]))
        reader.open()
    except Exception as err:  # AnyReaderError/ReaderError, or sqlite/mcap/yaml internals on damaged files
        raise storage_error(paths[0], err) from err
    return reader


def guarded_messages(
    reader: AnyReader, connections: list[Connection], path: Path
) -> Iterator[tuple[Connection, int, bytes]]:
    """`reader.messages(connections)`, where only the reader's own failures become "truncated or
    corrupt" (an error in the caller's frame code must surface as itself, not blame the bag)."""
    try:
        it = iter(reader.messages(connections=connections))
    except _READ_ERRORS as err:
        raise storage_error(path, err) from err
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except _READ_ERRORS as err:
            raise storage_error(path, err) from err
        yield item


def decode_color_msg(msg: Any, msgtype: str, topic: str) -> np.ndarray:
    """`(H, W, 3)` uint8 RGB of an Image/CompressedImage message read from `topic`
    (`inputs.assembly.decode_color_image`, as the node decodes it).

    Raises:
        UnsupportedEncodingError: the encoding is not a colour/mono one (names the topic).
        InputError: the message is malformed (size, buffer, undecodable bytes).
    """
    if msgtype != COMPRESSED:
        try:
            enc = get_encoding(msg.encoding)
        except InputError as err:
            raise UnsupportedEncodingError(f"topic {topic!r}: {err}") from None
        if msg.encoding not in COLOR_INPUT_ENCODINGS:
            raise UnsupportedEncodingError(
                f"topic {topic!r}: encoding {msg.encoding!r} is a {enc.kind} "
                f"image, not a colour one; supported: {', '.join(COLOR_INPUT_ENCODINGS)}"
            )
    return decode_color_image(msg)


def decode_depth_msg(msg: Any, label: str) -> np.ndarray:
    """`(H, W)` float32 metres of a `16UC1`/`32FC1` Image message (NaN invalid); `label` names
    where it came from in errors (e.g. "depth topic '/x'").

    Raises:
        UnsupportedEncodingError: not a depth encoding, or a malformed message.
    """
    try:
        if get_encoding(msg.encoding).unit_scale is None:
            raise InputError(f"encoding {msg.encoding!r} is not a depth image (16UC1 or 32FC1)")
        arr = image_array_from_fields(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)
    except InputError as err:
        raise UnsupportedEncodingError(f"{label}: {err}") from None
    return depth_from_image(arr, msg.encoding)


def nearest_stamp(store: Mapping[int, Any], stamp: int, slop_ns: int) -> int | None:
    """The key of `store` nearest to `stamp` within `slop_ns`, or None."""
    best = min(store, key=lambda s: abs(s - stamp), default=None)
    return best if best is not None and abs(best - stamp) <= slop_ns else None
