"""Streaming rosbag2 input and output for `vdepth-bag`, on `rosbags` (no ROS install needed).

`BagFrameSource` reads a bag (directory, or a bare `.mcap`/`.db3` file) message by message and yields
`FrameInput`s with their camera model and optional sparse depth matched by header stamp; it holds at
most a few messages besides the pipeline's window, so memory does not grow with the bag length.
`DepthBagWriter` writes the pipeline's `DepthFrame`s as the live node's messages into a new bag.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import Connection
from rosbags.rosbag2 import ReaderError, StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore

from vdepth_ros.encodings import (
    COLOR_INPUT_ENCODINGS,
    depth_from_image,
    get_encoding,
    image_array_from_fields,
    image_fields_from_array,
    info_signature,
    pointcloud2_layout,
)
from vdepth_ros.errors import InputError
from vdepth_ros.inputs.assembly import (
    DEFAULT_MAX_INPUT_PIXELS,
    FrameAssembler,
    UnsupportedImageError,
    decode_color_image,
)
from vdepth_ros.offline.errors import (
    BagReadError,
    EmptyBagError,
    MissingTopicError,
    OfflineError,
    UnsupportedEncodingError,
)
from vdepth_ros.triangulate import pose_from_msg

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from rosbags.typesys.store import Typestore

    from vdepth_ros.pipeline import DepthFrame, FrameInput
    from vdepth_ros.stream.cloud import CameraModel

log = logging.getLogger(__name__)

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
IMAGE_TYPES = (IMAGE, COMPRESSED)

#: `--typestore` choices: the ROS 2 distributions whose message definitions are used when a bag
#: carries none (older sqlite3 bags) and for the output bag's type hashes.
TYPESTORES: dict[str, Stores] = {
    "humble": Stores.ROS2_HUMBLE,
    "iron": Stores.ROS2_IRON,
    "jazzy": Stores.ROS2_JAZZY,
    "kilted": Stores.ROS2_KILTED,
}
STORAGES: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def stamp_ns(header: Any) -> int:
    """`std_msgs/Header.stamp` in integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


@dataclass
class BagFrameMeta:
    """`FrameInput.meta` of a bag frame: what the writer needs to stamp the outputs like the node.

    Attributes:
        header: the input image's `std_msgs/Header` (stamp and frame_id are copied to every output).
        log_time_ns: the bag receive time of the image; outputs are logged at the same time.
        camera_info: the `CameraInfo` matched to the image, or None. Consecutive equal ones (same
            `info_signature`) share one object, since offline mode keeps every frame's meta; so
            its header is not necessarily this frame's.
    """

    header: Any
    log_time_ns: int
    camera_info: Any = None


@dataclass
class SourceStats:
    """Counters of a `BagFrameSource` run."""

    images: int = 0
    dropped: int = 0
    drop_reasons: dict[str, int] = field(default_factory=dict)
    camera_info_seen: bool = False
    sparse_depth_frames: int = 0
    sparse_depth_ignored: dict[str, int] = field(default_factory=dict)  # reason -> frames (the frame is kept)
    posed_frames: int = 0
    bad_poses: int = 0
    refused_camera_infos: int = 0


#: What a damaged or unreadable bag raises from inside rosbags (sqlite/mcap/yaml internals included).
_READ_ERRORS = (AnyReaderError, ReaderError, OSError, ValueError, KeyError, IndexError, EOFError)


def storage_error(path: Path, err: Exception) -> BagReadError:
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


class BagFrameSource:
    """Read colour frames (+ camera_info, + sparse depth) from a rosbag2 bag, streaming.

    Args:
        path: bag folder, or a bare `.mcap` / `.db3` file.
        image_topic: `sensor_msgs/Image` or `CompressedImage` topic. If `image_topic_explicit` is
            false and the topic is absent, the bag's only image topic is used instead.
        camera_info_topic: `CameraInfo` topic; when absent from the bag (and not explicit) no camera
            model is attached and a warning is logged once (depth is still produced, clouds are not).
        sparse_depth_topic: optional `16UC1`/`32FC1` depth topic matched by header stamp.
        camera_pose_topic: optional `PoseStamped` topic of the camera optical frame; each image's
            pose is interpolated at its header stamp (`inputs.samples`: the node's rule, with the
            bag's log times as arrival times), and the frames carry points
            triangulated with those poses (`triangulate.PoseTriangulator`, as the node's
            `sparse_depth: pose`).
        typestore: ROS 2 distribution (`TYPESTORES` key) for bags without embedded definitions.
        image_topic_explicit, camera_info_topic_explicit: the user named these topics, so a
            missing one is an error rather than a fallback.
        sync_*, sparse_depth_slop_ns: the node's pairing parameters (`vdepth_ros/ros/params.py`).
        rectify: undistort each image with its camera_info first (the node's `rectify`).
        max_input_pixels: larger images are dropped before decoding (the node's parameter).
        camera_info: a camera_info for every frame (`rectify.load_camera_info` of a calibration
            file), for bags recorded without one; the bag's camera_info topic is then not read.

    Raises (on `open`):
        FileNotFoundError, BagReadError, EmptyBagError, MissingTopicError, UnsupportedEncodingError.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        image_topic: str,
        camera_info_topic: str | None = None,
        sparse_depth_topic: str | None = None,
        camera_pose_topic: str | None = None,
        typestore: str = "kilted",
        image_topic_explicit: bool = True,
        camera_info_topic_explicit: bool = True,
        sync_slop_ns: int = 20_000_000,
        sync_queue_size: int = 10,
        sync_info_timeout_ns: int = 1_000_000_000,
        sparse_depth_slop_ns: int = 100_000_000,
        rectify: bool = False,
        camera_info: Any = None,
        max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS,
    ) -> None:
        self.path = Path(path)
        self.image_topic = image_topic
        self.camera_info_topic: str | None = camera_info_topic
        if sparse_depth_topic and camera_pose_topic:
            raise OfflineError("one metric scale input at a time: sparse depth or camera poses, not both")
        self.sparse_depth_topic = sparse_depth_topic
        self.camera_pose_topic = camera_pose_topic
        self._assembler = FrameAssembler(
            rectify=rectify,
            sparse_depth="pose" if camera_pose_topic else ("image" if sparse_depth_topic else "none"),
            max_input_pixels=max_input_pixels,
            report=self._report,
        )
        self._frame_lacks_pose = False
        self._fixed_info = camera_info  # from a calibration file: used for every frame
        if camera_info is not None:
            self.camera_info_topic = None  # the bag's own camera_info is not read
        self._warned_no_pose = False
        self.image_topic_explicit = image_topic_explicit
        self.camera_info_topic_explicit = camera_info_topic_explicit
        if typestore not in TYPESTORES:
            raise OfflineError(f"unknown typestore {typestore!r}; choose one of {', '.join(TYPESTORES)}")
        self.typestore_name = typestore
        self.stats = SourceStats()
        self._reader: AnyReader | None = None
        self._image_conns: list[Connection] = []
        self._info_conns: list[Connection] = []
        self._depth_conns: list[Connection] = []
        self._pose_conns: list[Connection] = []
        self.notes: list[str] = []
        self.sync_slop_ns, self.sync_queue_size = int(sync_slop_ns), int(sync_queue_size)
        self.sync_info_timeout_ns = int(sync_info_timeout_ns)
        self._warned_no_info = False
        self._last_info: Any = None
        self._last_info_sig: tuple | None = None
        self.sparse_depth_slop_ns = int(sparse_depth_slop_ns)

    # -- open / close ------------------------------------------------------------------------
    def open(self) -> BagFrameSource:
        if not self.path.exists():
            raise FileNotFoundError(f"input bag {self.path} does not exist")
        self._reader = open_reader([self.path], self.typestore_name)
        try:
            self._select_connections()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def __enter__(self) -> BagFrameSource:
        return self.open()

    def __exit__(self, *exc: object) -> bool:
        self.close()
        return False

    # -- metadata ----------------------------------------------------------------------------
    @property
    def reader(self) -> AnyReader:
        if self._reader is None:
            raise OfflineError("BagFrameSource is not open")
        return self._reader

    @property
    def connections(self) -> list[Connection]:
        """All connections of the input bag."""
        return list(self.reader.connections)

    @property
    def topics(self) -> dict[str, str]:
        """Topic name -> message type of every topic in the bag."""
        return {c.topic: c.msgtype for c in self.reader.connections}

    @property
    def frame_count(self) -> int:
        """Number of image messages on the selected topic (from the bag's index)."""
        return sum(c.msgcount for c in self._image_conns)

    @property
    def typestore(self) -> Typestore:
        return self.reader.typestore

    def _topic_list(self) -> str:
        items = sorted(self.topics.items())
        return ", ".join(f"{t} [{m}]" for t, m in items) if items else "(none)"

    def _conns(self, topic: str) -> list[Connection]:
        return [c for c in self.reader.connections if c.topic == topic]

    def _select_connections(self) -> None:
        if not self.reader.connections or self.reader.message_count == 0:
            raise EmptyBagError(f"{self.path}: the bag holds no messages (topics: {self._topic_list()})")
        image_conns = self._conns(self.image_topic)
        if not image_conns:
            candidates = sorted({c.topic for c in self.reader.connections if c.msgtype in IMAGE_TYPES})
            if not self.image_topic_explicit and len(candidates) == 1:
                self.notes.append(
                    f"image topic {self.image_topic!r} not in the bag; using its only image topic {candidates[0]!r}"
                )
                self.image_topic = candidates[0]
                image_conns = self._conns(self.image_topic)
            else:
                raise MissingTopicError(
                    f"{self.path}: image topic {self.image_topic!r} not found; the bag has: "
                    f"{self._topic_list()} (choose one with --image-topic)"
                )
        bad = {c.msgtype for c in image_conns if c.msgtype not in IMAGE_TYPES}
        if bad:
            raise UnsupportedEncodingError(
                f"topic {self.image_topic!r} has type {', '.join(sorted(bad))}; expected {IMAGE} or {COMPRESSED}"
            )
        if sum(c.msgcount for c in image_conns) == 0:
            raise EmptyBagError(f"{self.path}: image topic {self.image_topic!r} holds no messages")
        self._image_conns = image_conns
        self._check_first_image()

        if self.camera_info_topic:
            info = self._conns(self.camera_info_topic)
            candidates = sorted({c.topic for c in self.reader.connections if c.msgtype == CAMERA_INFO})
            if not info and not self.camera_info_topic_explicit and len(candidates) == 1:
                self.notes.append(
                    f"camera_info topic {self.camera_info_topic!r} not in the bag; using its only "
                    f"CameraInfo topic {candidates[0]!r}"
                )
                self.camera_info_topic = candidates[0]
                info = self._conns(self.camera_info_topic)
            if not info and self.camera_info_topic_explicit:
                raise MissingTopicError(
                    f"{self.path}: camera_info topic {self.camera_info_topic!r} not found; "
                    f"the bag has: {self._topic_list()}"
                )
            if any(c.msgtype != CAMERA_INFO for c in info):
                raise MissingTopicError(
                    f"topic {self.camera_info_topic!r} is not {CAMERA_INFO}: "
                    f"{', '.join(sorted({c.msgtype for c in info}))}"
                )
            self._info_conns = [c for c in info if c.msgcount > 0]
        if self.sparse_depth_topic:
            self._depth_conns = self._typed_conns(self.sparse_depth_topic, "sparse depth", (IMAGE, POINTCLOUD2))
        if self.camera_pose_topic:
            self._pose_conns = self._typed_conns(self.camera_pose_topic, "camera pose", POSE_STAMPED)

    def _typed_conns(self, topic: str, what: str, msgtypes: str | tuple[str, ...]) -> list[Connection]:
        """The connections of a topic the user asked for, which must exist and carry one of `msgtypes`."""
        conns = self._conns(topic)
        if not conns:
            raise MissingTopicError(f"{self.path}: {what} topic {topic!r} not found; the bag has: {self._topic_list()}")
        allowed = (msgtypes,) if isinstance(msgtypes, str) else msgtypes
        if any(c.msgtype not in allowed for c in conns):
            found = ", ".join(sorted({c.msgtype for c in conns}))
            raise UnsupportedEncodingError(f"{what} topic {topic!r} must be {' or '.join(allowed)}, not {found}")
        return conns

    def _check_first_image(self) -> None:
        """Decode the first image now, so a wrong topic type or encoding fails before any model loads."""
        messages = self.reader.messages(connections=self._image_conns)
        try:
            conn, _, raw = next(messages)
        except StopIteration:
            raise EmptyBagError(f"{self.path}: image topic {self.image_topic!r} holds no messages") from None
        except Exception as err:
            raise storage_error(self.path, err) from err
        finally:
            messages.close()  # release the storage cursor before the streaming pass opens its own
        msg = self._deserialize(raw, conn.msgtype)
        try:
            self.decode_rgb(msg, conn.msgtype)
        except UnsupportedEncodingError:
            raise
        except InputError as err:
            log.warning("the first image on %s is malformed (%s); such frames are dropped", self.image_topic, err)

    # -- messages ----------------------------------------------------------------------------
    def _deserialize(self, raw: bytes, msgtype: str) -> Any:
        try:
            return self.reader.deserialize(raw, msgtype)
        except Exception as err:
            raise BagReadError(f"{self.path}: cannot deserialize a {msgtype} message ({err})") from err

    def decode_rgb(self, msg: Any, msgtype: str) -> np.ndarray:
        """`(H, W, 3)` uint8 RGB of an Image/CompressedImage message of the image topic
        (`decode_color_msg`)."""
        return decode_color_msg(msg, msgtype, self.image_topic)

    def _drop(self, reason: str) -> None:
        self.stats.dropped += 1
        self.stats.drop_reasons[reason] = self.stats.drop_reasons.get(reason, 0) + 1
        if self.stats.drop_reasons[reason] == 1:
            log.warning("dropping a frame: %s (further drops for this reason are counted, not logged)", reason)

    def frames(self, on_message: Callable[[Connection, int, bytes], None] | None = None) -> Iterator[FrameInput]:
        """Yield `FrameInput`s in bag order, streaming.

        Images are paired with camera_info by the live node's `ApproximateTimeSync` (nearest stamp
        within `sync_slop_ns`, else the cached last one), so clouds match the node's. Sparse depth and
        camera poses follow the node's rule (`vdepth_ros.inputs.samples`) with the bag's log times as
        the arrival times: an image waits until a sample at or after its stamp was logged, or
        `sparse_depth_slop_ns` of log time. Malformed images are dropped and counted in `stats`; an
        unsupported encoding raises.

        Args:
            on_message: called with every message of the bag (all topics), e.g. to copy them.

        Raises:
            UnsupportedEncodingError, BagReadError.
        """
        from vdepth_ros.inputs.samples import TimedSamples
        from vdepth_ros.inputs.sync import ApproximateTimeSync

        image_ids = {c.id for c in self._image_conns}
        info_ids = {c.id for c in self._info_conns}
        depth_ids = {c.id for c in self._depth_conns}
        pose_ids = {c.id for c in self._pose_conns}
        wanted = [] if on_message is not None else self._image_conns + self._info_conns + self._depth_conns
        wanted += [] if on_message is not None else self._pose_conns
        samples: TimedSamples[Any] = TimedSamples(self.sparse_depth_slop_ns, capacity=512 if pose_ids else 32)
        matching = bool(pose_ids or depth_ids)
        sync: ApproximateTimeSync[tuple[Any, str, int], Any] = ApproximateTimeSync(
            self.sync_slop_ns, queue_size=self.sync_queue_size, info_timeout_ns=self.sync_info_timeout_ns
        )
        waiting: deque[Any] = deque()  # synced pairs waiting for their sparse depth or pose

        def release(pair: Any) -> FrameInput | None:
            msg, msgtype, t = pair.image
            sparse = samples.nearest(pair.stamp_ns, t) if depth_ids else None
            pose = samples.pose_at(pair.stamp_ns, t) if pose_ids else None
            return self._frame(msg, msgtype, t, pair.info, sparse, pose)

        def drain(pairs: list[Any], now: float, final: bool = False) -> Iterator[FrameInput]:
            waiting.extend(pairs)
            while waiting and (final or not matching or samples.ready(waiting[0].stamp_ns, waiting[0].image[2], now)):
                frame = release(waiting.popleft())
                if frame is not None:
                    yield frame

        t = 0
        for conn, t, raw in guarded_messages(self.reader, wanted, self.path):
            if on_message is not None:
                on_message(conn, t, raw)
            if conn.id in image_ids:
                msg = self._deserialize(raw, conn.msgtype)
                yield from drain(sync.add_image(stamp_ns(msg.header), (msg, conn.msgtype, t)), t)
            elif conn.id in info_ids:
                info = self._deserialize(raw, conn.msgtype)
                self.stats.camera_info_seen = True
                yield from drain(sync.add_info(stamp_ns(info.header), info), t)
            elif conn.id in pose_ids:
                pmsg = self._deserialize(raw, conn.msgtype)
                try:
                    samples.add(stamp_ns(pmsg.header), t, pose_from_msg(pmsg))
                except InputError as err:
                    self._drop_pose(str(err))
                yield from drain([], t)
            elif conn.id in depth_ids:
                dmsg = self._deserialize(raw, conn.msgtype)
                samples.add(stamp_ns(dmsg.header), t, dmsg)
                yield from drain([], t)
        yield from drain(sync.flush(), t, final=True)

    def _report(self, kind: str, message: str) -> None:
        """What the frame assembler reports: counted, and logged once per kind (the frame is kept)."""
        if kind == "sparse":
            ignored = self.stats.sparse_depth_ignored
            ignored[message] = ignored.get(message, 0) + 1
            if ignored[message] == 1:
                log.warning(
                    "ignoring the sparse depth on %r: %s (the frame is kept without it; further ones are counted)",
                    self.sparse_depth_topic,
                    message,
                )
        elif kind == "pose":
            self._frame_lacks_pose = True
            if not self._warned_no_pose:
                self._warned_no_pose = True
                log.warning(
                    "a frame has no metric points: %s (poses from %r) (warned once)", message, self.camera_pose_topic
                )
        elif kind == "camera_info":
            self.stats.refused_camera_infos += 1
            if self.stats.refused_camera_infos == 1:
                log.warning("%s (further ones are counted, not logged)", message)
        else:
            log.info("%s", message.replace("set rectify:=true", "pass --rectify (or set rectify: true)"))

    def _drop_pose(self, reason: str) -> None:
        self.stats.bad_poses += 1
        if self.stats.bad_poses == 1:
            log.warning("ignoring a camera pose message: %s (further ones are counted, not logged)", reason)

    def _frame(
        self, msg: Any, msgtype: str, t: int, info: Any, sparse: Any = None, pose: Any = None
    ) -> FrameInput | None:
        """One `FrameInput` from a synced image message (`FrameAssembler`, as the node), or None
        (dropped, counted)."""
        key = stamp_ns(msg.header)
        if self._fixed_info is not None:
            info = self._fixed_info
        if info is not None:  # consecutive equal camera_infos share one object (offline keeps every meta)
            sig = info_signature(info)
            if sig == self._last_info_sig:
                info = self._last_info
            else:
                self._last_info, self._last_info_sig = info, sig
        self._frame_lacks_pose = False
        try:
            frame = self._assembler.assemble(msg, key, info, sparse=sparse, pose=pose)
        except UnsupportedImageError as err:
            raise UnsupportedEncodingError(f"topic {self.image_topic!r}: {err}") from None
        except InputError as err:
            self._drop(str(err))
            return None
        if frame.camera is None and not self._warned_no_info:
            self._warned_no_info = True
            what = f"no camera_info on {self.camera_info_topic!r}" if self.camera_info_topic else "no camera_info topic"
            log.warning(
                "%s for the frame at %d ns: depth and disparity are written, point clouds are skipped "
                "until a camera_info arrives (warned once)",
                what,
                key,
            )
        if sparse is not None and frame.sparse_depth is not None:
            self.stats.sparse_depth_frames += 1
        if self._assembler.triangulator is not None and not self._frame_lacks_pose:
            self.stats.posed_frames += 1
        self.stats.images += 1
        frame.meta = BagFrameMeta(header=msg.header, log_time_ns=t, camera_info=self._assembler.info)
        return frame


def cloud_message(
    ts: Any, header: Any, points: np.ndarray, colors: np.ndarray | None = None, *, is_dense: bool = False
) -> Any:
    """A rosbags `PointCloud2` of `(H, W, 3)` xyz points (`H` = 1: unorganized) in typestore `ts`.
    Organized output clouds keep `is_dense=False` (NaN where depth is invalid), as the node's."""
    fields, point_step, row_step, data = pointcloud2_layout(points, colors)
    pf = ts.types["sensor_msgs/msg/PointField"]
    return ts.types[POINTCLOUD2](
        header=header,
        height=points.shape[0],
        width=points.shape[1],
        fields=[pf(name=n, offset=o, datatype=d, count=c) for n, o, d, c in fields],
        is_bigendian=False,
        point_step=point_step,
        row_step=row_step,
        data=np.frombuffer(data, np.uint8),
        is_dense=is_dense,
    )


def nearest_stamp(store: Mapping[int, Any], stamp: int, slop_ns: int) -> int | None:
    """The key of `store` nearest to `stamp` within `slop_ns`, or None."""
    best = min(store, key=lambda s: abs(s - stamp), default=None)
    return best if best is not None and abs(best - stamp) <= slop_ns else None


@dataclass(frozen=True)
class OutputTopics:
    """Output topic names of one frame status, as the node resolves them (None disables one)."""

    depth: str | None
    disparity: str | None
    points: str | None
    camera_info: str | None

    @classmethod
    def under(cls, namespace: str, prefix: str = "") -> OutputTopics:
        """The node's relative output names (`depth`, `disparity`, `points`, `depth/camera_info`,
        with `prefix` such as `provisional/`) resolved in `namespace`."""
        ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
        return cls(*(f"{ns}/{prefix}{name}" for name in ("depth", "disparity", "points", "depth/camera_info")))


PUBLISH_POLICIES = ("final", "provisional", "both")


class DepthBagWriter:
    """Write `DepthFrame`s as the live node's messages into a new rosbag2 bag.

    Exactly what the node publishes: depth `32FC1` metres (NaN invalid, REP 118), disparity `32FC1`,
    points an organized `PointCloud2` (xyz or xyzrgb, `is_dense=False`) and camera_info for the output
    resolution. With the `publish` policy `both`, provisional frames go to `provisional_topics` and
    final ones to `topics`; otherwise every frame the pipeline returns goes to `topics`.
    Every output copies the input image's header (stamp, frame_id) and is logged at the input image's
    bag receive time.

    Args:
        path: new bag folder (must not exist).
        topics: main output topic names.
        storage: "mcap" or "sqlite3".
        typestore: ROS 2 distribution for the message definitions/hashes written.
        publish: "final" | "provisional" | "both" (the pipeline's `publish` parameter).
        provisional_topics: topics for provisional frames with `publish="both"`.
    """

    def __init__(
        self,
        path: str | Path,
        topics: OutputTopics,
        *,
        storage: str = "mcap",
        typestore: str = "kilted",
        publish: str = "final",
        provisional_topics: OutputTopics | None = None,
    ) -> None:
        if storage not in STORAGES:
            raise OfflineError(f"unknown storage {storage!r}; choose one of {', '.join(STORAGES)}")
        if typestore not in TYPESTORES:
            raise OfflineError(f"unknown typestore {typestore!r}; choose one of {', '.join(TYPESTORES)}")
        if publish not in PUBLISH_POLICIES:
            raise OfflineError(f"publish policy must be one of {', '.join(PUBLISH_POLICIES)}, got {publish!r}")
        if publish == "both" and provisional_topics is None:
            raise OfflineError("publish='both' needs provisional_topics")
        self.path = Path(path)
        self.topics = topics
        self.provisional_topics = provisional_topics
        self.publish = publish
        self.storage = storage
        self.ts = get_typestore(TYPESTORES[typestore])
        self._writer: Writer | None = None
        self._conns: dict[str, Connection] = {}
        self._copied: dict[int, Connection] = {}
        self.counts: dict[str, int] = {}
        self.clouds_skipped = 0
        self.frames_written = 0

    def open(self) -> DepthBagWriter:
        writer = Writer(self.path, version=9, storage_plugin=STORAGES[self.storage])
        try:
            writer.open()
        except WriterError as err:
            raise OfflineError(f"cannot create bag {self.path}: {err}") from err
        self._writer = writer
        return self

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def abort(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.abort()

    def __enter__(self) -> DepthBagWriter:
        return self.open()

    def __exit__(self, exc_type: object, *exc: object) -> bool:
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    @property
    def writer(self) -> Writer:
        if self._writer is None:
            raise OfflineError("DepthBagWriter is not open")
        return self._writer

    def _conn(self, topic: str, msgtype: str) -> Connection:
        conn = self._conns.get(topic)
        if conn is None:
            taken = {c.topic for c in self._copied.values()}
            if topic in taken:
                raise OfflineError(
                    f"output topic {topic!r} already exists in the input bag; with "
                    f"--copy-input-topics the outputs need other names"
                )
            conn = self.writer.add_connection(topic, msgtype, typestore=self.ts)
            self._conns[topic] = conn
        return conn

    def _write(self, topic: str | None, msgtype: str, msg: Any, t: int) -> None:
        if not topic:
            return
        self.writer.write(self._conn(topic, msgtype), t, self.ts.serialize_cdr(msg, msgtype))
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def copy_message(self, conn: Connection, t: int, raw: bytes) -> None:
        """Copy one raw input message (same topic, type, definition and QoS) into the output bag."""
        out = self._copied.get(conn.id)
        if out is None:
            if conn.topic in self._conns:
                raise OfflineError(f"input topic {conn.topic!r} collides with an output topic")
            ext = conn.ext
            qos = list(getattr(ext, "offered_qos_profiles", []) or [])
            fmt = getattr(ext, "serialization_format", "cdr")
            msgdef = conn.msgdef.data if conn.msgdef.data and conn.digest else None
            out = self.writer.add_connection(
                conn.topic,
                conn.msgtype,
                typestore=self.ts if msgdef is None else None,
                msgdef=msgdef,
                rihs01=conn.digest if msgdef else None,
                serialization_format=fmt,
                offered_qos_profiles=qos,
            )
            self._copied[conn.id] = out
        self.writer.write(out, t, raw)

    # -- message builders ---------------------------------------------------------------------
    def _image(self, header: Any, arr: np.ndarray, encoding: str) -> Any:
        step, data = image_fields_from_array(arr, encoding)
        return self.ts.types[IMAGE](
            header=header,
            height=arr.shape[0],
            width=arr.shape[1],
            encoding=encoding,
            is_bigendian=0,
            step=step,
            data=np.frombuffer(data, np.uint8),
        )

    def _camera_info(self, header: Any, camera: CameraModel) -> Any:
        """As the node's `info_msg`: rectified pinhole at the output resolution, no distortion."""
        T = self.ts.types
        k = np.array([camera.fx, 0, camera.cx, 0, camera.fy, camera.cy, 0, 0, 1], np.float64)
        p = np.array([camera.fx, 0, camera.cx, 0, 0, camera.fy, camera.cy, 0, 0, 0, 1, 0], np.float64)
        return T[CAMERA_INFO](
            header=header,
            height=int(camera.height),
            width=int(camera.width),
            distortion_model="plumb_bob",
            d=np.zeros(5, np.float64),
            k=k,
            r=np.eye(3, dtype=np.float64).reshape(-1),
            p=p,
            binning_x=0,
            binning_y=0,
            roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
        )

    def route(self, status: str) -> OutputTopics | None:
        """The topics a frame of `status` goes to (None: not published).

        The pipeline already applies the policy (`DepthPipeline._select`: each frame once for
        "provisional"/"final"), so every frame it returns is published; only "both" splits them.
        """
        if self.publish == "both":
            return self.topics if status == "final" else self.provisional_topics
        return self.topics

    def write_frame(self, frame: DepthFrame) -> bool:
        """Write one frame's outputs at its input's bag time, if the publish policy publishes it.

        Returns:
            True if the frame was written to the main (not provisional) topics.
        """
        meta = frame.meta
        if not isinstance(meta, BagFrameMeta):
            raise OfflineError("DepthBagWriter.write_frame needs frames read by BagFrameSource (meta)")
        topics = self.route(frame.status)
        if topics is None:
            return False
        header, t = meta.header, meta.log_time_ns
        if frame.depth is not None:
            self._write(
                topics.depth, IMAGE, self._image(header, np.ascontiguousarray(frame.depth, np.float32), "32FC1"), t
            )
        self._write(
            topics.disparity, IMAGE, self._image(header, np.ascontiguousarray(frame.disparity, np.float32), "32FC1"), t
        )
        if frame.points is not None:
            self._write(topics.points, POINTCLOUD2, cloud_message(self.ts, header, frame.points, frame.colors), t)
        elif frame.depth is not None and topics is self.topics:  # depth but no camera model
            self.clouds_skipped += 1
        if frame.camera is not None:
            self._write(topics.camera_info, CAMERA_INFO, self._camera_info(header, frame.camera), t)
        if topics is self.topics:
            self.frames_written += 1
        return topics is self.topics
