"""`vdepth-flicker`: how steady is a depth video in a bag? Ground-truth free, any depth topic.

Reads the colour images and one or more depth topics from one or more bags (e.g. the output of
`vdepth-bag` together with its input, or a depth camera's recording), pairs each depth image with
the colour image of the same header stamp (within `--slop`), and reports per depth topic the flow
warping error (`vdepth_ros.consistency`): the mean relative change of depth along the optical flow
between consecutive frames. Lower is steadier; only numbers on the same video compare.

    vdepth-flicker out_bag in_bag --image-topic /image --depth-topic /depth
    vdepth-flicker rec.mcap --image-topic /cam/color/image_raw --depth-topic /depth \\
        --depth-topic /cam/aligned_depth_to_color/image_raw

Streaming: memory holds a few dozen frames whatever the bag's length. A gap of more than
`--max-gap` seconds (or time going backwards, or an image of another size) restarts the chain of pairs, as
the node restarts.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import itertools
import json
import logging
import sys
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vdepth_ros.camera_info import camera_from_info
from vdepth_ros.consistency import FlowWarpingError, pair_tae
from vdepth_ros.errors import InputError, VdepthError
from vdepth_ros.inputs.assembly import DEFAULT_MAX_INPUT_PIXELS
from vdepth_ros.inputs.decode import NODE_SETTINGS, SampleBitDepth, SettingWords, check_input_size
from vdepth_ros.inputs.sync import stamp_to_ns
from vdepth_ros.offline.bag_messages import (
    KIND_PEEK_MESSAGES,
    decode_color_msg,
    decode_depth_msg,
    deserialize_or_skip,
    grey_camera_hint,
    guarded_messages,
    image_topics_by_kind,
    nearest_stamp,
    open_reader,
)
from vdepth_ros.offline.bag_types import (
    CAMERA_INFO,
    IMAGE_TYPES,
    POSE_STAMPED,
    TYPESTORE_NAMES,
    require_bag_library,
    restamp,
    video_stream_error,
)
from vdepth_ros.offline.errors import BagReadError, MissingTopicError, OfflineError, UnsupportedEncodingError
from vdepth_ros.offline.runner import (
    add_image_reading_options,
    cli_errors,
    image_reading_options,
    setup_logging,
    sigterm_as_interrupt,
    stdout_for_results,
)
from vdepth_ros.offline.skipped import SkippedMessages
from vdepth_ros.paths import expand_home
from vdepth_ros.triangulate import PoseBuffer, pose_from_msg

if TYPE_CHECKING:
    from vdepth_ros.stream.cloud import CameraModel

log = logging.getLogger(__name__)
PROG = "vdepth-flicker"
#: The narrowest flow image `--max-width` may ask for (OpenCV's DIS flow needs 12 pixels; some margin).
MIN_FLOW_WIDTH = 16
_HELD = 32  # unmatched images / depth images kept per stream (stamps already passed are dropped)
SETTING = "--max-input-pixels"  # (the node's max_input_pixels)


@dataclass
class TopicFlicker:
    """The result for one depth topic.

    Attributes:
        topic: the depth topic.
        frames: depth images paired with a colour image.
        pairs: consecutive pairs scored (each gives one error).
        unmatched: depth images without a colour image within the slop.
        restarts: chains restarted by a gap, a backwards jump or a change of image size.
        errors: the per-pair errors, in order.
        tae_terms: with camera poses, each pair's TAE x100 (`consistency.pair_tae`), in order.
        tae_note: why no TAE was computed for this topic, if it was asked for.
        skipped: depth messages of this topic skipped (undecodable, above `max_input_pixels`, not
            deserializable), by cause (`skipped.SkippedMessages.by_cause`).
        skipped_images: colour images skipped, by cause (the same for every depth topic: their depth went
            unmatched).
        skipped_other: with poses, the pose and camera_info messages skipped ("on TOPIC: cause" -> count).
    """

    topic: str
    frames: int = 0
    pairs: int = 0
    unmatched: int = 0
    restarts: int = 0
    errors: list[float] = field(default_factory=list)
    tae_terms: list[float] = field(default_factory=list)
    tae_note: str = ""
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_images: dict[str, int] = field(default_factory=dict)
    skipped_other: dict[str, int] = field(default_factory=dict)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.errors)) if self.errors else None

    def to_dict(self) -> dict[str, Any]:
        e = np.asarray(self.errors)
        return {
            "topic": self.topic,
            "flow_warping_error": self.mean,
            "median": float(np.median(e)) if e.size else None,
            "p90": float(np.percentile(e, 90)) if e.size else None,
            "frames": self.frames,
            "pairs": self.pairs,
            "unmatched_depth": self.unmatched,
            "restarts": self.restarts,
            "tae_x100": float(np.mean(self.tae_terms)) if self.tae_terms else None,
            "tae_pairs": len(self.tae_terms),
            "tae_note": self.tae_note or None,
            "skipped_depth": sum(self.skipped.values()),
            "skipped_images": sum(self.skipped_images.values()),
            "skipped": [
                {"cause": c, "count": n}
                for c, n in {**self.skipped, **self.skipped_images, **self.skipped_other}.items()
            ],
        }


#: paired frames a chain holds to measure them in stamp order: a publisher's threads or a recorder's queues
#: log a frame or two out of order, and each was a restart (two pairs lost); further back is a time jump
REORDER_FRAMES = 4
#: with `--pose-topic`, the latest poses kept (by stamp): 40 s of 100 Hz odometry, some 1 MB, for any length of bag
POSE_WINDOW = 4096
#: frames held for reordering are measured once a pose stamped this long after them is read, so that their poses are
#: still among the `POSE_WINDOW` latest (for odometry up to 2 kHz)
POSE_HORIZON_NS = 1_000_000_000
#: measured frames held for a pose stamped at or after them before their TAE is taken with the poses there are
MAX_POSE_WAIT = 30


def _without_arrival(item: tuple[int, int, np.ndarray, np.ndarray]) -> tuple[int, np.ndarray, np.ndarray]:
    return item[0], item[2], item[3]


class _Chain:
    """One depth topic's chain of paired frames, in stamp order."""

    def __init__(self, topic: str, max_gap_ns: int, max_width: int, geometry: _Geometry | None = None) -> None:
        self.result = TopicFlicker(topic)
        self.meter = FlowWarpingError(max_width=max_width)
        self.max_gap_ns = max_gap_ns
        self.geometry = geometry
        self.last: int | None = None
        self.shape: tuple[int, ...] | None = None
        self.prev: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # depth, pose, K (TAE)
        # measured frames waiting for a pose at or after their stamp (TAE), with whether the chain restarted there
        self._tae_wait: deque[tuple[int, np.ndarray, bool]] = deque()
        self.pending: OrderedDict[int, np.ndarray] = OrderedDict()
        self._held: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # heap of paired frames by stamp
        self._arrivals = itertools.count()

    def add(self, stamp: int, rgb: np.ndarray, depth: np.ndarray) -> None:
        """A paired frame, measured once `REORDER_FRAMES` later ones are in (or at `finish`), in stamp order."""
        heapq.heappush(self._held, (stamp, next(self._arrivals), rgb, depth))
        if len(self._held) > REORDER_FRAMES:
            self._measure(*_without_arrival(heapq.heappop(self._held)))

    def finish(self) -> None:
        """Measure the frames still held (the end of the bags)."""
        self.measure_before(None)
        self.add_tae(final=True)

    def measure_before(self, stamp: int | None) -> None:
        """Measure the frames held stamped before `stamp` (None: all): odometry gone `POSE_HORIZON_NS` past them
        (the camera stopped, the poses go on) would leave their poses out of `POSE_WINDOW` by the end."""
        while self._held and (stamp is None or self._held[0][0] < stamp):
            self._measure(*_without_arrival(heapq.heappop(self._held)))

    def add_tae(self, final: bool = False) -> None:
        """The TAE of the measured frames whose pose the poses read so far decide (one stamped at or after theirs:
        odometry lagging its image), in order; all of them at the end of the bags (`final`), or when more than
        `MAX_POSE_WAIT` wait (poses stopped: the nearest within the slop, as at the end)."""
        geometry = self.geometry
        while self._tae_wait and geometry is not None:
            stamp, depth, restarted = self._tae_wait[0]
            if not (final or len(self._tae_wait) > MAX_POSE_WAIT or geometry.poses.covers(stamp)):
                return
            self._tae_wait.popleft()
            if restarted:
                self.prev = None
            here = geometry.at(stamp, depth.shape)
            if here is not None and self.prev is not None:
                d0, pose0, K0 = self.prev
                self.result.tae_terms.append(pair_tae(d0, depth, pose0, here[0], K0, here[1]))
            self.prev = None if here is None else (depth, *here)

    def _measure(self, stamp: int, rgb: np.ndarray, depth: np.ndarray) -> None:
        # a gap, time going back, or an image of another size (no flow across it): a new chain, counted
        resized = self.shape is not None and rgb.shape != self.shape
        restarted = self.last is not None and (stamp <= self.last or stamp - self.last > self.max_gap_ns or resized)
        if restarted:
            self.meter.reset()
            self.result.restarts += 1
        self.last, self.shape = stamp, rgb.shape
        self.result.frames += 1
        err = self.meter.add(rgb, depth)
        if err is not None:
            self.result.pairs += 1
            self.result.errors.append(err)
        if self.geometry is not None:
            self._tae_wait.append((stamp, depth, restarted))
            self.add_tae()


class _Geometry:
    """Camera poses (the latest `POSE_WINDOW`, read with the frames) and intrinsics (the recording's, read in a
    first pass: small) for TAE."""

    def __init__(self, poses: PoseBuffer, cameras: list[tuple[int, CameraModel | None]], slop_ns: int) -> None:
        self.poses, self.slop_ns = poses, slop_ns
        self.info_stamps = [s for s, _ in cameras]
        self.cameras = [c for _, c in cameras]

    def at(self, stamp: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray] | None:
        """(camera-to-world pose, K at the depth's resolution) at `stamp`, or None."""
        pose = self.poses.at(stamp)
        i = bisect.bisect_right(self.info_stamps, stamp + self.slop_ns) - 1  # the latest camera_info
        if pose is None or i < 0:
            return None
        camera = self.cameras[i]
        if camera is None:
            return None
        h, w = shape[:2]
        return pose, camera.scaled(w, h).matrix


def _read_geometry(
    reader: Any,
    topics: dict[str, str],
    pose_topic: str,
    info_topic: str | None,
    depth_topics: Sequence[str],
    path: Path,
    slop_ns: int,
    skipped: SkippedMessages,
    log_time_stamps: bool = False,
) -> tuple[dict[str, _Geometry | None], dict[str, str]]:
    """First pass: the camera_info of each depth topic (found or named), and an empty buffer for the poses, which
    the second pass reads with the frames; a message that cannot be deserialized is skipped (counted in
    `skipped`)."""
    if topics.get(pose_topic) != POSE_STAMPED:
        raise MissingTopicError(
            f"pose topic {pose_topic!r} is {topics.get(pose_topic, 'not in the bags')}, expected {POSE_STAMPED}"
        )
    if info_topic is not None and topics.get(info_topic) != CAMERA_INFO:
        raise MissingTopicError(f"camera_info topic {info_topic!r} is {topics.get(info_topic, 'not in the bags')}")
    info_of: dict[str, str | None] = {}
    for t in depth_topics:
        candidates = [info_topic] if info_topic else [f"{t}/camera_info", f"{t.rsplit('/', 1)[0]}/camera_info"]
        info_of[t] = next((c for c in candidates if topics.get(c) == CAMERA_INFO), None)
    wanted = {*(c for c in info_of.values() if c)}
    conns = [c for c in reader.connections if c.topic in wanted]
    # the poses are read with the frames (`add_pose`), the latest POSE_WINDOW kept: all of them, read here first, took
    # ~270 B a pose (100 MB for 100 Hz odometry over 4 hours)
    poses = PoseBuffer(slop_ns, capacity=POSE_WINDOW)
    # (stamp, camera) where a topic's camera changes: a camera_info per frame, all kept as messages, took 1.9 KB a
    # frame (200 MB an hour at 30 Hz); the latest one at a stamp is the same camera either way
    infos: dict[str, list[tuple[int, CameraModel | None]]] = {c: [] for c in wanted}
    for conn, t, raw in guarded_messages(reader, conns, path) if conns else ():  # (none: rosbags reads them all)
        msg = deserialize_or_skip(reader, raw, conn, t, skipped)
        if msg is None:
            continue
        if log_time_stamps:
            restamp(msg, t)
        _add_camera(infos[conn.topic], stamp_to_ns(msg.header.stamp), camera_from_info(msg))
    geometry: dict[str, _Geometry | None] = {}
    notes: dict[str, str] = {}
    for t, c in info_of.items():
        if c is None:
            geometry[t] = None
            notes[t] = (
                f"no camera_info for {t} (tried {t}/camera_info and its sibling; name one with --camera-info-topic)"
            )
        else:
            geometry[t] = _Geometry(poses, sorted(infos[c], key=lambda si: si[0]), slop_ns)
    return geometry, notes


def _add_pose(msg: Any, chains: dict[str, _Chain]) -> None:
    """A pose read with the frames into the chains' (shared) buffer, and the TAE of the frames it decides."""
    geometries = [c.geometry for c in chains.values() if c.geometry is not None]
    if not geometries:
        return
    stamp = stamp_to_ns(msg.header.stamp)
    try:
        geometries[0].poses.add(stamp, pose_from_msg(msg))
    except InputError:
        return  # an invalid pose: that stamp gets its neighbours' interpolation
    for chain in chains.values():
        chain.measure_before(stamp - POSE_HORIZON_NS)
        chain.add_tae()


def _add_camera(cameras: list[tuple[int, CameraModel | None]], stamp: int, camera: CameraModel | None) -> None:
    """Append a camera_info's camera at `stamp` unless it repeats the camera before it (a later stamp of the same
    camera answers `_Geometry.at` as its first does); one stamped before it is kept to be sorted in."""
    if cameras and stamp >= cameras[-1][0] and cameras[-1][1] == camera:
        return
    cameras.append((stamp, camera))


def _each_bag_once(paths: list[Path]) -> list[Path]:
    """`paths` with a bag named twice read once (`vdepth-flicker B B`, for a bag holding both the
    images and the depth): read twice, every message came twice, each depth frame paired with itself
    as its own successor (180 pairs and 90 restarts for 90 frames). Said in one line."""
    seen: dict[Path, Path] = {}
    for path in paths:
        seen.setdefault(path.expanduser().resolve(), path)
    if len(seen) < len(paths):
        log.warning("a bag was given more than once: read once (%s)", ", ".join(str(p) for p in seen.values()))
    return list(seen.values())


def measure_flicker(
    paths: Sequence[str | Path],
    image_topic: str | None = None,
    depth_topics: Sequence[str] | None = None,
    *,
    slop: float = 0.02,
    max_gap: float = 1.0,
    max_width: int = 320,
    typestore: str = "kilted",
    pose_topic: str | None = None,
    camera_info_topic: str | None = None,
    log_time_stamps: bool = False,
    max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS,
    tell_skipped: bool = True,
    image_bit_depth: int = 0,
    image_encoding: str = "auto",
    setting_words: SettingWords = NODE_SETTINGS,
) -> list[TopicFlicker]:
    """The flow warping error of each depth topic against `image_topic` (module docstring).

    With `pose_topic` (PoseStamped of the camera's optical frame, e.g. a robot's odometry) the
    papers' TAE is computed too, on the depth as published: each pair warped with the poses and the
    depth's camera_info (`camera_info_topic`, else `<depth topic>/camera_info` or a sibling
    `camera_info`, scaled to the depth's size). TAE only means something for metric depth.
    `log_time_stamps`: pair by the bags' receive times, not the header stamps (`vdepth-bag
    --log-time-stamps` output read with its input).

    `image_topic` None: `/image`, else the bags' only colour image topic; `depth_topics` None:
    `/depth`, else their only depth image topic not named `*disparity` (`default_topics`; a
    `vdepth-bag --namespace` output read with a recording of the robot's camera topics).

    `max_input_pixels` (0: no limit; the node's default): a larger image is not decoded (a corrupt
    compressedDepth header, or a few hundred bytes of PNG or RVL, can claim 100 MP and more). Such a message,
    and one that cannot be decoded or deserialized (a truncated JPEG, a corrupt compressedDepth header), is
    skipped (`skipped.SkippedMessages`: one warning per topic and kind naming the stamp and the cause, counted
    in each result's `skipped`/`skipped_images`): a colour image's depth goes unmatched, a depth image is not
    measured (the chain goes on over it, as over a dropped frame). `tell_skipped` False: counted, not logged
    (`vdepth-bag --flicker`, whose run told them already).

    `image_bit_depth`, `image_encoding`: the colour images are read as the node reads them with these parameters
    (`bag_messages.decode_color_msg`): an IR camera's 16UC1 read as mono16, a 12-bit camera's samples; the fixes
    named in `setting_words` (the node's parameters, or this tool's flags: `runner.image_reading_options`).

    Raises:
        FileNotFoundError, BagReadError, MissingTopicError, UnsupportedEncodingError (a topic whose
        encoding is not a colour or depth one).
    """
    # 1. Check the arguments and the bags' topics.
    paths = _each_bag_once([Path(p) for p in paths])
    _check_arguments(paths, depth_topics)
    if max_width < MIN_FLOW_WIDTH:  # OpenCV's DIS flow raises on images under 12 pixels
        raise OfflineError(f"--max-width must be at least {MIN_FLOW_WIDTH} pixels, got {max_width}")
    reader = open_reader(paths, typestore)
    try:
        image_topic, depth_topics = default_topics(reader, image_topic, depth_topics, image_encoding)
        grey_fix = setting_words.written("image_encoding", "mono16")
        topics = _checked_topics(reader, image_topic, depth_topics, image_encoding, grey_fix)
        # 2. One chain of consecutive pairs per depth topic, with the geometry for TAE when poses are given.
        slop_ns = round(slop * 1e9)
        geometry: dict[str, _Geometry | None] = dict.fromkeys(depth_topics)
        notes: dict[str, str] = {}
        bad = _BadMessages(max_input_pixels, tell_skipped)
        if pose_topic is not None:
            geometry, notes = _read_geometry(
                reader,
                topics,
                pose_topic,
                camera_info_topic,
                depth_topics,
                paths[0],
                slop_ns,
                bad.skipped,
                log_time_stamps,
            )
        chains = {t: _Chain(t, round(max_gap * 1e9), max_width, geometry[t]) for t in depth_topics}
        for t, note in notes.items():
            chains[t].result.tae_note = note
        # 3. Stream the bag: match each depth image to the colour image nearest in stamp.
        images: OrderedDict[int, np.ndarray] = OrderedDict()
        # a 12-bit camera's mono16 read as the node reads it, its bit depth found anew where the node's would be
        bit_depth = SampleBitDepth(image_bit_depth, setting_words, max_gap)
        wanted = [c for c in reader.connections if c.topic in (image_topic, pose_topic) or c.topic in chains]
        for conn, t, raw in guarded_messages(reader, wanted, paths[0]):
            msg = deserialize_or_skip(reader, raw, conn, t, bad.skipped)
            if msg is None:
                continue
            if log_time_stamps:
                restamp(msg, t)
            if conn.topic == pose_topic:
                _add_pose(msg, chains)
            elif conn.topic == image_topic:
                _add_image(
                    images,
                    chains,
                    msg,
                    conn.msgtype,
                    image_topic,
                    slop_ns,
                    (bit_depth, image_encoding, setting_words),
                    bad,
                )
            else:
                _add_depth(images, chains[conn.topic], msg, conn.topic, slop_ns, bad)
        # 4. Depth images still waiting for a colour image are unmatched; the messages skipped, per topic.
        for chain in chains.values():
            chain.finish()
            chain.result.unmatched += len(chain.pending)
            chain.result.skipped = bad.skipped.by_cause(chain.result.topic)
            if pose_topic is not None:  # the poses' and camera_infos' (TAE), named by topic
                chain.result.skipped_other = dict(
                    (f"on {topic}: {cause}", n)
                    for topic, cause, n in bad.skipped.rows()
                    if topic != image_topic and topic not in chains
                )
            chain.result.skipped_images = bad.skipped.by_cause(image_topic)
        return [c.result for c in chains.values()]
    finally:
        reader.close()


def _check_arguments(paths: list[Path], depth_topics: Sequence[str] | None) -> None:
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"bag {p} does not exist")
    if depth_topics is not None and not depth_topics:
        raise MissingTopicError("give at least one --depth-topic")


def default_topics(
    reader: Any, image_topic: str | None, depth_topics: Sequence[str] | None, image_encoding: str = "auto"
) -> tuple[str, list[str]]:
    """The colour and depth topics to read: those given, else `/image` and `/depth` when the bags
    have them, else their only colour image topic and their only depth image topic not named
    `*disparity` (`bag_messages.image_topics_by_kind`, the rule `vdepth-bag` chooses its input by),
    those named `<namespace>/depth` first (`vdepth-bag --namespace`'s output read with a depth
    camera's recording), each choice logged. Several candidates are an error naming them and the option. With
    `image_encoding` set, the raw topics whose images it reads are colour ones (an IR camera's 16UC1)."""
    have = {c.topic for c in reader.connections}
    named_absent = image_topic is not None and image_topic not in have
    lacking = (image_topic or "/image") not in have or (depth_topics is None and "/depth" not in have)
    kinds = (
        image_topics_by_kind(reader, image_encoding) if lacking else {"colour": [], "depth": []}
    )  # peeks at each image topic
    transports = [t for t in kinds["colour"] if t.rsplit("/", 1)[0] == image_topic]
    if named_absent and len(transports) == 1:  # a camera's base topic named: its one image_transport, as vdepth-bag
        log.info("%s not in the bags; reading its image_transport topic %s", image_topic, transports[0])
        image_topic = transports[0]
    if image_topic is None:
        colour = kinds["colour"] if depth_topics is None else _same_camera(depth_topics[0], kinds["colour"])
        what = "colour image" + (f" (of {depth_topics[0]}'s camera)" if colour != kinds["colour"] else "")
        image_topic = _default_topic(have, "/image", colour, what, "--image-topic")
    if depth_topics is None:
        depth = [t for t in kinds["depth"] if not t.endswith("disparity") and t != image_topic]
        named = [t for t in depth if t.rsplit("/", 1)[-1] == "depth"]  # the node's output in a namespace
        beside = _same_camera(image_topic, named or depth)
        what = "depth image" + (f" (of {image_topic}'s camera)" if beside != (named or depth) else "")
        depth_topics = [_default_topic(have, "/depth", beside, what, "--depth-topic (repeat to compare)")]
    return image_topic, list(depth_topics)


def _same_camera(topic: str, candidates: list[str]) -> list[str]:
    """Those of `candidates` sharing the deepest namespace with `topic`, its camera's (`/front/image_raw` and
    `/front/depth` of `vdepth-bag --namespace front`, `/camera/color/image_raw` and `/camera/depth/image_rect_raw`),
    or all of them where none shares one: with two cameras in the bags, naming one camera's topic was an error
    asking for the other topic too, although only one of its candidates belongs to that camera."""

    def shared(candidate: str) -> int:
        a, b = topic.strip("/").split("/")[:-1], candidate.strip("/").split("/")[:-1]
        return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))

    deepest = max(map(shared, candidates), default=0)
    return [t for t in candidates if shared(t) == deepest] if deepest else candidates


def _default_topic(have: set[str], default: str, candidates: list[str], what: str, option: str) -> str:
    """`default` if the bags have it, else the only one of `candidates` (logged); else the default, whose
    absence `_checked_topics` names, or an error naming the candidates."""
    if default in have:
        return default
    if len(candidates) == 1:
        log.info("%s not in the bags; using their only %s topic %s", default, what, candidates[0])
        return candidates[0]
    if candidates:
        raise MissingTopicError(
            f"topic {default!r} not found and the bags hold several {what} topics: {', '.join(candidates)} "
            f"(choose with {option})"
        )
    return default


def _checked_topics(
    reader: Any, image_topic: str, depth_topics: Sequence[str], image_encoding: str, grey_fix: str
) -> dict[str, str]:
    """The bags' topic -> message type, after checking the colour and depth topics are there and typed right; a
    colour topic not found names the bags' IR camera topics, read with `grey_fix` (`grey_camera_hint`)."""
    if image_topic in depth_topics:
        raise MissingTopicError(f"{image_topic!r} is given as both the colour and a depth topic")
    topics = {c.topic: c.msgtype for c in reader.connections}
    listed = ", ".join(f"{t} [{m}]" for t, m in sorted(topics.items())) or "(none)"
    # a depth topic: an Image, or a CompressedImage of image_transport's compressedDepth plugin
    for topic, allowed in [(image_topic, IMAGE_TYPES), *[(t, IMAGE_TYPES) for t in depth_topics]]:
        video = video_stream_error(topics if topic not in topics else {topic: topics[topic]})
        if topic not in topics:
            option = "--image-topic" if topic == image_topic else "--depth-topic"
            if video and not any(m in IMAGE_TYPES for m in topics.values()):
                raise MissingTopicError(f"the bags have no image topic; {video}")
            grey = grey_camera_hint(reader, image_encoding, grey_fix) if topic == image_topic else ""
            raise MissingTopicError(f"topic {topic!r} not found; the bags hold: {listed} (choose with {option}){grey}")
        if topics[topic] not in allowed:
            raise MissingTopicError(video or f"topic {topic!r} is {topics[topic]}, expected {' or '.join(allowed)}")
    return topics


#: a message stamped 0 is skipped (`_BadMessages.unstamped`): it pairs with nothing, and as a stamp it would
#: restart the chain twice (back to 0, then decades forward)
UNSET_STAMP_FIX = (
    "its header.stamp is 0 (not set by its publisher); --log-time-stamps pairs by the times the bag received them"
)
_OUTCOME = {"an image": "skipped, its depth goes unmatched"}


class _BadMessages:
    """The messages skipped (`skipped.SkippedMessages`, as vdepth-bag skips them): above `max_input_pixels`
    before decoding (`inputs.decode.check_input_size`, as the node and vdepth-bag check it), undecodable, or not
    deserializable."""

    def __init__(self, max_pixels: int, told: bool = True) -> None:
        self.max_pixels = int(max_pixels)
        self.skipped = SkippedMessages(told=told)
        self._decoded: set[str] = set()  # topics with a message decoded
        self._unreadable: dict[str, int] = {}  # topic -> messages of an encoding it cannot read, none decoded yet

    def decoded(self, topic: str) -> None:
        self._decoded.add(topic)

    def unsupported(self, topic: str, stamp: int, err: UnsupportedEncodingError, outcome: str | None = None) -> None:
        """A message of an encoding that cannot be read (a driver's glitch leaving it unset, a depth frame on
        the colour topic) is a bad message, skipped and counted, as vdepth-bag drops it; a topic whose first
        `KIND_PEEK_MESSAGES` messages are all such is of the wrong kind: raises `err`, naming it."""
        if topic not in self._decoded:
            self._unreadable[topic] = self._unreadable.get(topic, 0) + 1
            if self._unreadable[topic] >= KIND_PEEK_MESSAGES:
                raise err
        self.skipped.skip(topic, stamp, str(err), outcome=outcome)

    def unstamped(self, stamp: int, topic: str) -> bool:
        """Whether a message is stamped 0 (its header.stamp not set: it pairs with nothing; skipped, counted)."""
        if stamp == 0:
            self.skipped.skip(topic, 0, UNSET_STAMP_FIX)
        return stamp == 0

    def too_large(self, msg: Any, topic: str, what: str) -> bool:
        """Whether `msg` claims more than `max_input_pixels` (skipped, counted)."""
        try:
            check_input_size(msg, self.max_pixels, what, "not decoded", SETTING)
        except InputError as err:
            self.skipped.skip(topic, stamp_to_ns(msg.header.stamp), str(err), outcome=_OUTCOME.get(what))
            return True
        return False


def _add_image(
    images: OrderedDict[int, np.ndarray],
    chains: dict[str, _Chain],
    msg: Any,
    msgtype: str,
    image_topic: str,
    slop_ns: int,
    reading: tuple[SampleBitDepth, str, SettingWords],
    bad: _BadMessages,
) -> None:
    """Hold a colour image (the last `_HELD`), read by `reading` (its bit depth, `image_encoding` and the user's
    words for them), and pair it with the depth images that arrived before it."""
    stamp = stamp_to_ns(msg.header.stamp)
    if bad.unstamped(stamp, image_topic) or bad.too_large(msg, image_topic, "an image"):
        return  # its depth goes unmatched
    try:
        images[stamp] = decode_color_msg(msg, msgtype, image_topic, *reading)
    except UnsupportedEncodingError as err:
        bad.unsupported(image_topic, stamp, err, outcome=_OUTCOME["an image"])
        return
    except InputError as err:  # a malformed image: its depth goes unmatched
        bad.skipped.skip(image_topic, stamp, str(err), outcome=_OUTCOME["an image"])
        return
    bad.decoded(image_topic)
    while len(images) > _HELD:
        images.popitem(last=False)
    for chain in chains.values():  # depth images that arrived before their colour image
        for ds in [s for s in chain.pending if abs(s - stamp) <= slop_ns]:
            chain.add(ds, images[stamp], chain.pending.pop(ds))


def _add_depth(
    images: OrderedDict[int, np.ndarray], chain: _Chain, msg: Any, topic: str, slop_ns: int, bad: _BadMessages
) -> None:
    """Pair a depth image with its colour image, or hold it (the last `_HELD`) until that arrives; a bad one is
    skipped (counted), the chain goes on over it."""
    stamp = stamp_to_ns(msg.header.stamp)
    if bad.unstamped(stamp, topic) or bad.too_large(msg, topic, "a depth image"):
        return
    try:
        depth = decode_depth_msg(msg, f"depth topic {topic!r}")
    except UnsupportedEncodingError as err:
        bad.unsupported(topic, stamp, err)
        return
    except InputError as err:
        bad.skipped.skip(topic, stamp, str(err))
        return
    bad.decoded(topic)
    key = nearest_stamp(images, stamp, slop_ns)
    if key is not None:
        chain.add(stamp, images[key], depth)
        return
    chain.pending[stamp] = depth
    while len(chain.pending) > _HELD:
        chain.pending.popitem(last=False)
        chain.result.unmatched += 1


def format_report(results: list[TopicFlicker]) -> str:
    lines = ["flow warping error (mean relative depth change along the optical flow; lower is steadier)"]
    for r in results:
        d = r.to_dict()
        value = "-"
        if r.mean is not None:
            value = f"{d['flow_warping_error']:.4f} (median {d['median']:.4f}, p90 {d['p90']:.4f})"
        lines.append(
            f"  {r.topic}: {value} over {r.pairs} pairs of {r.frames} paired frames"
            + (f", {r.unmatched} depth images without a colour image" if r.unmatched else "")
            + (f", {r.restarts} restarts" if r.restarts else "")
        )
        lines += [f"    skipped {n} depth message(s): {cause}" for cause, n in r.skipped.items()]
        lines += [f"    skipped {n} message(s) {cause}" for cause, n in r.skipped_other.items()]
        lines += [
            f"    skipped {n} colour image(s), their depth unmatched: {cause}" for cause, n in r.skipped_images.items()
        ]
        if d["tae_x100"] is not None:
            lines.append(f"    TAE x100 with the bag's poses: {d['tae_x100']:.3f} over {d['tae_pairs']} pairs")
        elif r.tae_note:
            lines.append(f"    no TAE: {r.tae_note}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("bags", type=Path, nargs="+", help="bag folders or .mcap/.db3 files, read together in time order")
    p.add_argument(
        "--image-topic",
        help="colour Image/CompressedImage topic (default /image, else the bags' only colour image topic)",
    )
    p.add_argument(
        "--depth-topic",
        action="append",
        dest="depth_topics",
        help="depth Image topic (16UC1 mm / 32FC1 m); repeat to compare several (default /depth, else the "
        "bags' only depth image topic that is not a disparity)",
    )
    p.add_argument(
        "--pose-topic",
        help="PoseStamped of the camera optical frame (odometry): also report the papers' TAE (metric depth only)",
    )
    p.add_argument(
        "--camera-info-topic",
        help="intrinsics for TAE (default: <depth topic>/camera_info, or the depth topic's sibling camera_info)",
    )
    p.add_argument("--slop", type=float, default=0.02, help="largest image/depth stamp difference paired [s]")
    p.add_argument("--max-gap", type=float, default=1.0, help="a larger stamp gap restarts the chain [s]")
    p.add_argument(
        "--max-width",
        type=int,
        default=320,
        help=f"flow is computed on a copy at most this wide (default 320, at least {MIN_FLOW_WIDTH})",
    )
    p.add_argument(
        "--log-time-stamps",
        action="store_true",
        help="pair by the bags' receive times, not the header stamps (vdepth-bag --log-time-stamps output)",
    )
    p.add_argument(
        "--max-input-pixels",
        type=int,
        default=DEFAULT_MAX_INPUT_PIXELS,
        help=f"larger images (width x height) are not decoded but skipped and counted, as undecodable ones are (a "
        f"corrupt or tiny compressed message can claim 100 MP and more); 0 = no limit (default "
        f"{DEFAULT_MAX_INPUT_PIXELS}, the node's max_input_pixels)",
    )
    add_image_reading_options(p)
    p.add_argument("--typestore", choices=sorted(TYPESTORE_NAMES), default="kilted")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (`vdepth-flicker`)."""
    args = build_parser().parse_args(argv)
    require_bag_library()  # before any file is touched: one line naming the `bag` extra (entry.run_tool)
    expand_home(args)
    setup_logging(args.verbose)
    try:
        # refused in the node's words (image_encoding='16UC1' is not one of ...), before any bag is read
        reading = image_reading_options(args)
        with stdout_for_results(), sigterm_as_interrupt():  # stdout: the result alone; SIGTERM is Ctrl-C
            results = measure_flicker(
                args.bags,
                args.image_topic,
                args.depth_topics,
                slop=args.slop,
                max_gap=args.max_gap,
                max_width=args.max_width,
                typestore=args.typestore,
                log_time_stamps=args.log_time_stamps,
                pose_topic=args.pose_topic,
                camera_info_topic=args.camera_info_topic,
                max_input_pixels=args.max_input_pixels,
                **reading,
            )
        if not any(r.pairs for r in results):
            skipped = "; ".join(
                f"{n}x {cause}" for r in results for cause, n in {**r.skipped, **r.skipped_images}.items()
            )
            raise BagReadError(
                "no consecutive image/depth pairs matched: check the topics, and --slop against the stamps"
                + (f" (messages skipped: {skipped})" if skipped else "")
            )
    except (VdepthError, FileNotFoundError, KeyboardInterrupt) as exc:
        return cli_errors(PROG, exc)
    print(json.dumps([r.to_dict() for r in results], indent=2) if args.json else format_report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
