"""Streaming rosbag2 input for `vdepth-bag`, on `rosbags` (no ROS install needed).

`BagFrameSource` reads a bag (directory, or a bare `.mcap`/`.db3` file) message by message and yields
`FrameInput`s with their camera model and optional sparse depth matched by header stamp; it holds at
most a few messages besides the pipeline's window, so memory does not grow with the bag length.
Which of the bag's topics are the inputs is decided by `bag_topics`; single-message helpers (open,
iterate, decode) are in `bag_messages`; the writer is `bag_writer`.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vdepth_ros.camera_info import info_signature
from vdepth_ros.errors import InputError
from vdepth_ros.inputs.assembly import DEFAULT_MAX_INPUT_PIXELS, FrameAssembler
from vdepth_ros.inputs.calibration import camera_missing, info_image_size
from vdepth_ros.inputs.decode import NODE_SETTINGS, SettingWords, image_size
from vdepth_ros.inputs.samples import TimedSamples
from vdepth_ros.inputs.sync import REPEATED_STAMP, UNSET_STAMP, ApproximateTimeSync, InputRate, stamp_to_ns
from vdepth_ros.offline.bag_messages import (
    CHOOSE_IMAGE,
    KIND_PEEK_MESSAGES,
    bag_path,
    decode_color_msg,
    deserialize_or_skip,
    guarded_messages,
    open_reader,
    storage_error,
)
from vdepth_ros.offline.bag_topics import InputConnections
from vdepth_ros.offline.bag_types import TYPESTORE_NAMES, BagFrameMeta, connection_key, restamp
from vdepth_ros.offline.errors import OfflineError, UnsupportedEncodingError
from vdepth_ros.offline.skipped import SkippedMessages, cause_kind
from vdepth_ros.triangulate import pose_from_msg

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from rosbags.highlevel import AnyReader
    from rosbags.interfaces import Connection
    from rosbags.typesys.store import Typestore

    from vdepth_ros.pipeline import FrameInput

log = logging.getLogger(__name__)


@dataclass
class SourceStats:
    """Counters of a `BagFrameSource` run."""

    images: int = 0
    # images dropped (malformed, above max_input_pixels, not deserializable, a repeated stamp), by topic and cause,
    # and the other input messages skipped (a camera_info, sparse depth or pose that cannot be deserialized)
    drops: SkippedMessages = field(default_factory=lambda: SkippedMessages("dropping a frame"))
    skipped: SkippedMessages = field(default_factory=SkippedMessages)
    camera_info_seen: bool = False
    sparse_depth_frames: int = 0
    sparse_depth_ignored: dict[str, int] = field(default_factory=dict)  # reason -> frames (the frame is kept)
    # frames that found no sparse depth sample within the slop, and the newest sample's stamp minus such a
    # frame's (the last one): a sensor on another clock
    sparse_depth_unmatched: int = 0
    sparse_depth_unmatched_gap_ns: int | None = None
    posed_frames: int = 0
    bad_poses: int = 0
    refused_camera_infos: int = 0
    refused_camera_infos_before_good: int = 0  # of those, frames before any good camera_info: nothing stood in
    #: why frames had no intrinsics from a camera_info that came (uncalibrated, another aspect ratio), if any did
    no_camera: str | None = None
    #: what a calibrated camera_info without its size was taken as (`calibration.SIZELESS_NOTE`), if one came
    sizeless_camera_info: str | None = None
    thinned: int = 0  # images left out by max_input_rate, as the live node leaves them out
    # why camera_info paired with no image by stamp (`ApproximateTimeSync.unpaired`), the first time it did not
    camera_info_unpaired: str | None = None

    @property
    def dropped(self) -> int:
        return self.drops.total

    @property
    def drop_reasons(self) -> dict[str, int]:
        """Why images were dropped (the first cause of each kind, `skipped.cause_kind`) -> images."""
        return self.drops.by_cause()


class BagFrameSource:
    """Read colour frames (+ camera_info, + sparse depth) from a rosbag2 bag, streaming.

    Args:
        path: bag folder, or a bare `.mcap` / `.db3` file.
        image_topic: `sensor_msgs/Image` or `CompressedImage` topic. If `image_topic_explicit` is
            false and the topic is absent, the bag's only colour image topic is used instead (its depth
            image topics, a depth camera's or vdepth-bag's outputs, are not candidates).
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
        sync_*, sparse_depth_slop_ns: the node's pairing parameters (`vdepth_ros/node_params.py`).
        rectify: undistort each image with its camera_info first (the node's `rectify`).
        max_input_pixels: larger images are dropped before decoding (the node's parameter).
        image_bit_depth: significant bits of 16-bit images, 0 = auto (the node's parameter).
        max_gap_s: the node's `max_gap`: a longer gap starts the images' bit depth anew, as the node's (auto).
        image_encoding: read each raw image's bytes as this encoding, "auto" = its own (the node's parameter).
        setting_words: how the user sets those two, in the fixes named (the params file's; a tool's flags).
        log_time_stamps: stamp every input message with the time the bag received it instead of
            its header stamp (cameras whose drivers do not stamp their images).
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
        image_bit_depth: int = 0,
        max_gap_s: float = 0.0,
        image_encoding: str = "auto",
        setting_words: SettingWords = NODE_SETTINGS,
        log_time_stamps: bool = False,
        max_input_rate: float = 0.0,
    ) -> None:
        self.path = bag_path(path)
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
            image_bit_depth=image_bit_depth,
            max_gap_s=max_gap_s,
            image_encoding=image_encoding,
            setting_words=setting_words,
            report=self._report,
            choose_info="choose this camera's with --camera-info-topic",
            choose_image=CHOOSE_IMAGE,
            choose_sparse="choose the depth registered to this camera with --sparse-depth-topic",
            # the images before the bag's first camera_info (a driver publishing it late), or a topic without any
            no_info_fix="the bag has no camera_info for it (before the first one on the topic read, or none there): "
            "--camera-info-file CALIB.yaml rectifies every frame with the camera's calibration, --camera-info-topic "
            "chooses another topic, or run without --rectify",
        )
        self._frame_lacks_pose = False
        self._fixed_info = camera_info  # from a calibration file: used for every frame
        if camera_info is not None:
            self.camera_info_topic = None  # the bag's own camera_info is not read
        self._warned_no_pose = False
        self.image_topic_explicit = image_topic_explicit
        self.camera_info_topic_explicit = camera_info_topic_explicit
        if typestore not in TYPESTORE_NAMES:
            raise OfflineError(f"unknown typestore {typestore!r}; choose one of {', '.join(TYPESTORE_NAMES)}")
        self.typestore_name = typestore
        self.stats = SourceStats()
        self._sparse_kinds: dict[str, str] = {}  # `cause_kind` -> its first reason (`stats.sparse_depth_ignored`)
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
        self.log_time_stamps = log_time_stamps
        self.max_input_rate = float(max_input_rate)
        self.unpack_dir: Path | None = None

    # -- open / close ------------------------------------------------------------------------
    def unpacking_in(self, folder: Path) -> BagFrameSource:
        """Unpack a bag recorded with `compression_mode: file` into `folder` when opened (a scratch
        folder beside the tool's output), not the system temp folder; returns self (`with`)."""
        self.unpack_dir = folder
        return self

    def open(self) -> BagFrameSource:
        if not self.path.exists():
            raise FileNotFoundError(f"input bag {self.path} does not exist")
        self._reader = open_reader([self.path], self.typestore_name, self.notes, self.unpack_dir)
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
    def camera_info_recorded(self) -> bool:
        """Whether the bag has a camera_info topic of the images to read (not where --camera-info-file replaces it)."""
        return bool(self._info_conns)

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

    def _select_connections(self) -> None:
        """The input topics' connections (`bag_topics.InputConnections`), the first image decoded once
        its topic is known, before the others are looked for."""
        chosen = InputConnections(
            self.reader,
            self.path,
            image_topic=self.image_topic,
            camera_info_topic=self.camera_info_topic,
            sparse_depth_topic=self.sparse_depth_topic,
            camera_pose_topic=self.camera_pose_topic,
            image_topic_explicit=self.image_topic_explicit,
            camera_info_topic_explicit=self.camera_info_topic_explicit,
            notes=self.notes,
            image_encoding=self._assembler.image_encoding,
        )
        self._image_conns = chosen.choose_image()
        self.image_topic = chosen.image_topic
        self._assembler.image_topic = self.image_topic  # (`--rectify` on a topic named rectified is named)
        self._check_first_image()
        chosen.choose_samples()
        self.camera_info_topic = chosen.camera_info_topic
        self._info_conns, self._depth_conns, self._pose_conns = chosen.info_conns, chosen.depth_conns, chosen.pose_conns

    def _check_first_image(self) -> None:
        """Decode the first images now, so a wrong topic type or encoding fails before any model loads.
        The first that decodes settles it: a bad message (cut short, malformed, an encoding left unset
        by a driver's glitch) is passed over here, and the streaming pass skips, tells and counts it,
        as any other. Only a topic none of whose first `KIND_PEEK_MESSAGES` images decodes, and one of
        them for its encoding, is an error."""
        unsupported: UnsupportedEncodingError | None = None
        messages = self.reader.messages(connections=self._image_conns)
        try:
            for conn, _, raw in islice(messages, KIND_PEEK_MESSAGES):
                try:
                    self.decode_rgb(self.reader.deserialize(raw, conn.msgtype), conn.msgtype)
                    return
                except UnsupportedEncodingError as err:
                    unsupported = unsupported or err
                except Exception:
                    continue
        except Exception as err:
            raise storage_error(self.path, err) from err
        finally:
            messages.close()  # release the storage cursor before the streaming pass opens its own
        if unsupported is not None:
            raise unsupported

    # -- messages ----------------------------------------------------------------------------
    def decode_rgb(self, msg: Any, msgtype: str) -> np.ndarray:
        """`(H, W, 3)` uint8 RGB of an Image/CompressedImage message of the image topic
        (`decode_color_msg`)."""
        return decode_color_msg(
            msg,
            msgtype,
            self.image_topic,
            image_encoding=self._assembler.image_encoding,
            words=self._assembler.setting_words,
        )

    def _drop(self, stamp_ns: int, reason: str, received: bool = False) -> None:
        """Drop an image (counted, told once per kind of reason with its topic and stamp)."""
        self.stats.drops.skip(self.image_topic, stamp_ns, reason, received)

    def frames(self, on_message: Callable[[Connection, int, bytes], None] | None = None) -> Iterator[FrameInput]:
        """Yield `FrameInput`s in bag order, streaming.

        Images are paired with camera_info by the live node's `ApproximateTimeSync` (nearest stamp
        within `sync_slop_ns`, else the cached last one), so clouds match the node's. Sparse depth and
        camera poses follow the node's rule (`vdepth_ros.inputs.samples`) with the bag's log times as
        the arrival times: an image waits until a sample at or after its stamp was logged, or
        `sparse_depth_slop_ns` of log time. Malformed images, and images of an encoding that cannot be
        read amid the stream's (`_check_first_image` refuses a topic of one), are dropped and counted in
        `stats`.

        Args:
            on_message: called with every message of the bag (all topics), e.g. to copy them.

        Raises:
            BagReadError.
        """
        # 1. What to read: the input topics, or every message (`[]`) when the caller takes them all.
        wanted: list[Connection] = []
        if on_message is None:
            wanted = self._image_conns + self._info_conns + self._depth_conns + self._pose_conns
        # 2. The node's matching rules, with the bag's log times as the arrival times.
        matcher = _BagMatcher(self, depth=bool(self._depth_conns), pose=bool(self._pose_conns))
        kinds = self._connection_kinds()
        # 3. Route each input message; release the pairs whose sparse depth and pose are decided.
        t = 0
        for conn, t, raw in guarded_messages(self.reader, wanted, self.path):
            if on_message is not None:
                on_message(conn, t, raw)
            kind = kinds.get(connection_key(conn))
            if kind is not None:
                yield from self._release(matcher, self._take(matcher, kind, conn, t, raw), t)
        # 4. End of the bag: release every pair still waiting.
        yield from self._release(matcher, matcher.sync.flush(), t, final=True)

    def _connection_kinds(self) -> dict[tuple[int, int], str]:
        """`connection_key` -> "image" | "info" | "pose" | "depth" (in that precedence)."""
        kinds: dict[int, str] = {}
        for kind, conns in (
            ("depth", self._depth_conns),
            ("pose", self._pose_conns),
            ("info", self._info_conns),
            ("image", self._image_conns),
        ):
            kinds.update((connection_key(c), kind) for c in conns)
        return kinds

    def _take(self, matcher: _BagMatcher, kind: str, conn: Connection, t: int, raw: bytes) -> list[Any]:
        """Hand one input message of `kind` to `matcher`; returns the image/info pairs it completed. A message
        that cannot be deserialized is skipped (counted; an image is dropped)."""
        skipped = self.stats.drops if kind == "image" else self.stats.skipped
        msg = deserialize_or_skip(self.reader, raw, conn, t, skipped)
        if msg is None:
            return []
        if self.log_time_stamps:  # the bag's receive time as the capture time (the outputs copy it)
            restamp(msg, t)
        if kind == "image":
            return self._take_image(matcher, msg, conn.msgtype, t)
        if kind == "info":
            self.stats.camera_info_seen = True
            return matcher.sync.add_info(stamp_to_ns(msg.header.stamp), msg, info_image_size(msg))
        if kind == "pose":
            try:
                matcher.samples.add(stamp_to_ns(msg.header.stamp), t, pose_from_msg(msg))
            except InputError as err:
                self._drop_pose(str(err))
        else:
            matcher.samples.add(stamp_to_ns(msg.header.stamp), t, msg)
        return []

    def _take_image(self, matcher: _BagMatcher, msg: Any, msgtype: str, t: int) -> list[Any]:
        """An image, by the live node's intake rules (`ros/intake.py`): a stamp going back (a bag loop,
        a clock reset) forgets the camera_infos and images waiting to pair; an image whose stamp
        repeats the previous image's, or is slightly out of order, is dropped (counted), as the node
        refuses it."""
        stamp = stamp_to_ns(msg.header.stamp)
        if not matcher.sync.admit_image(stamp, matcher.last_image_stamp):
            why = UNSET_STAMP if stamp == 0 and matcher.last_image_stamp else REPEATED_STAMP  # one amid stamped ones
            self._drop(stamp, f"{why}; --log-time-stamps uses the times the bag received them")
            return []
        matcher.last_image_stamp = stamp
        if not matcher.input_rate.take(stamp):  # max_input_rate, as the node thins a fast camera
            self.stats.thinned += 1
            return []
        pairs = matcher.sync.add_image(stamp, (msg, msgtype, t), image_size(msg))
        unpaired = None if self.stats.camera_info_unpaired else matcher.sync.unpaired()
        if unpaired is not None:  # named once, as the live node does
            self.stats.camera_info_unpaired = unpaired.cause(self.sync_slop_ns)[1]
            log.warning(
                "camera_info is stamped within sync_slop of no image: %s; each image gets the last one received, as "
                "the live node does",
                self.stats.camera_info_unpaired,
            )
        return pairs

    def _release(self, matcher: _BagMatcher, pairs: list[Any], now: float, final: bool = False) -> Iterator[FrameInput]:
        """The `FrameInput`s of the pairs `matcher` releases at bag time `now` (all with `final`)."""
        for pair in matcher.ready(pairs, now, final):
            msg, msgtype, t = pair.image
            sparse = matcher.sparse_for(pair)
            if matcher.depth and sparse is None:
                newest = matcher.samples.newest_stamp_ns()
                self.stats.sparse_depth_unmatched += 1
                self.stats.sparse_depth_unmatched_gap_ns = None if newest is None else newest - pair.stamp_ns
            frame = self._frame(msg, msgtype, t, pair.info, sparse, matcher.pose_for(pair))
            if frame is not None:
                yield frame

    def _report(self, kind: str, message: str) -> None:
        """What the frame assembler reports: counted, and logged once per kind (the frame is kept)."""
        if kind == "sparse":
            ignored = self.stats.sparse_depth_ignored
            # one count and one line per kind of reason (a thousand corrupt messages of a thousand sizes: one)
            message = self._sparse_kinds.setdefault(cause_kind(message), message)
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
        elif kind in ("camera_info_frame", "image_frame", "rectified_twice", "principal_point"):
            log.warning("%s", message)  # once (per pair of frames) by the assembler
        elif kind == "distorted_raw":
            log.warning("%s", message.replace("set rectify:=true", "pass --rectify (or set rectify: true)"))
        elif kind == "sizeless_info":  # once, by the assembler
            self.stats.sizeless_camera_info = message
            log.warning("%s: %s", self.camera_info_topic or "--camera-info-file", message)
        elif kind == "camera_info":
            self.stats.refused_camera_infos += 1
            self.stats.refused_camera_infos_before_good += self._assembler.info is None
            if self.stats.refused_camera_infos == 1:  # (named by topic, as the skipped messages are)
                where = self.camera_info_topic or "--camera-info-file"
                log.warning("%s: %s (further ones are counted, not logged)", where, message)
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
        key = stamp_to_ns(msg.header.stamp)
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
        except InputError as err:  # an encoding amid the stream's (`_check_first_image`) is a bad message too
            self._drop(key, str(err))
            return None
        if frame.camera is None and not self._warned_no_info:
            self._warned_no_info = True
            info = self._assembler.info
            if self._fixed_info is not None:
                where = "from --camera-info-file"
            else:
                where = f"on {self.camera_info_topic!r}" if self.camera_info_topic else "(no camera_info topic)"
            why = camera_missing(info, where, self._assembler.refused_infos)
            if info is not None:  # (none, or none usable, have their own notes)
                self.stats.no_camera = why
            if self._fixed_info is None and not self.camera_info_recorded:  # none will ever arrive
                why = f"{self.path} has no CameraInfo topic ({self.camera_info_topic!r} or another)"
            log.warning(
                "%s for the frame at %d ns: depth and disparity are written, point clouds are skipped, and so is "
                "depth/camera_info %s (warned once)",
                why,
                key,
                "until a camera_info arrives"
                if info is None and self.camera_info_recorded
                else "(give the camera's calibration with --camera-info-file)",
            )
        if sparse is not None and frame.sparse_depth is not None:
            self.stats.sparse_depth_frames += 1
        if self._assembler.triangulator is not None and not self._frame_lacks_pose:
            self.stats.posed_frames += 1
        self.stats.images += 1
        frame.meta = BagFrameMeta(header=msg.header, log_time_ns=t, camera_info=self._assembler.info)
        return frame


class _BagMatcher:
    """The node's input rules (`vdepth_ros.inputs`) over bag time: images paired with camera_info by
    `ApproximateTimeSync`, then each pair held until its sparse depth or pose is decided
    (`TimedSamples`), in arrival order."""

    def __init__(self, source: BagFrameSource, *, depth: bool, pose: bool) -> None:
        self.sync: ApproximateTimeSync[tuple[Any, str, int], Any] = ApproximateTimeSync(
            source.sync_slop_ns, queue_size=source.sync_queue_size, info_timeout_ns=source.sync_info_timeout_ns
        )
        self.samples: TimedSamples[Any] = TimedSamples(source.sparse_depth_slop_ns, capacity=512 if pose else 32)
        self.depth = depth
        self.pose = pose
        self._waiting: deque[Any] = deque()  # synced pairs waiting for their sparse depth or pose
        self.last_image_stamp: int | None = None  # the previous image's header stamp (the node's intake rules)
        self.input_rate = InputRate(source.max_input_rate)

    def ready(self, pairs: list[Any], now: float, final: bool) -> Iterator[Any]:
        """Queue `pairs`; yield the waiting pairs, oldest first, whose samples are decided at `now`."""
        self._waiting.extend(pairs)
        matching = self.depth or self.pose
        while self._waiting and (
            final or not matching or self.samples.ready(self._waiting[0].stamp_ns, self._waiting[0].image[2], now)
        ):
            yield self._waiting.popleft()

    def sparse_for(self, pair: Any) -> Any:
        """The sparse depth message matched to `pair`'s image, or None."""
        return self.samples.nearest(pair.stamp_ns, pair.image[2]) if self.depth else None

    def pose_for(self, pair: Any) -> Any:
        """The camera pose at `pair`'s image stamp, or None."""
        return self.samples.pose_at(pair.stamp_ns, pair.image[2]) if self.pose else None
