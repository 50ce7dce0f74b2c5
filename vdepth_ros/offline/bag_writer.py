"""Streaming rosbag2 output for `vdepth-bag`, on `rosbags` (no ROS install needed).

`DepthBagWriter` writes the pipeline's `DepthFrame`s as the live node's messages into a new bag;
`cloud_message` builds a `PointCloud2` as the node does (also used by the synthetic-bag writer).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vdepth_ros.camera_info import camera_info_fields
from vdepth_ros.encodings import image_fields_from_array
from vdepth_ros.offline.bag_types import (
    BAG_VERSION,
    CAMERA_INFO,
    IMAGE,
    POINTCLOUD2,
    STORAGE_NAMES,
    TYPESTORE_NAMES,
    BagFrameMeta,
    connection_key,
)
from vdepth_ros.offline.errors import OfflineError
from vdepth_ros.pointcloud2 import pointcloud2_layout

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from rosbags.interfaces import Connection
    from rosbags.rosbag2 import Writer

    from vdepth_ros.pipeline import DepthFrame
    from vdepth_ros.stream.cloud import CameraModel

log = logging.getLogger(__name__)


def _rihs01(conn: Connection) -> str:
    """The RIHS01 type hash of the message definition a connection carries (MSG or IDL text)."""
    from rosbags.interfaces import MessageDefinitionFormat
    from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

    store = get_typestore(Stores.EMPTY)
    data = conn.msgdef.data
    if conn.msgdef.format == MessageDefinitionFormat.MSG:
        store.register(get_types_from_msg(data, conn.msgtype))
    else:
        sep = "=" * 80 + "\n"
        for part in data.split(sep)[1:] if data.startswith(f"{sep}IDL: ") else [data]:
            store.register(get_types_from_idl(part.split("\n", 1)[1] if part.startswith("IDL: ") else part))
    return store.hash_rihs01(conn.msgtype)


#: rmw's RMW_DURATION_INFINITE as rosbag2 writes it: the deadline, lifespan and lease of a publisher that sets none
_INFINITE = (9223372036, 854775807)
#: rmw's RMW_QOS_DEADLINE_BEST_AVAILABLE and RMW_QOS_LIVELINESS_LEASE_DURATION_BEST_AVAILABLE (Iron and later)
_BEST_AVAILABLE_TIME = (9223372036, 854775806)
#: The policy values (rosbags' names, rmw's numbers) with which every distro's `ros2 bag play` creates a publisher:
#: Humble's player casts each recorded number to rmw's enum (`rosbag2_transport/src/qos.cpp`), and Humble's rmw
#: refuses any other value: Fast DDS "Unknown QoS reliability policy" (`rmw_fastrtps_shared_cpp/src/qos.cpp`), so the
#: player fails creating it; Cyclone DDS `unreachable()` (`rmw_cyclonedds_cpp/src/rmw_node.cpp`: abort) or nullptr.
#: Iron added best_available (reliability, durability 4; liveliness 5), which Humble's rmw does not have.
PLAYABLE_POLICIES = {
    "history": ("SYSTEM_DEFAULT", "KEEP_LAST", "KEEP_ALL"),
    "reliability": ("SYSTEM_DEFAULT", "RELIABLE", "BEST_EFFORT"),
    "durability": ("SYSTEM_DEFAULT", "TRANSIENT_LOCAL", "VOLATILE"),
    "liveliness": ("SYSTEM_DEFAULT", "AUTOMATIC", "MANUAL_BY_TOPIC"),
}
#: What a publisher offering best_available offers (rmw_dds_common `qos_profile_get_best_available_for_publisher`,
#: Iron and later, before any subscription with a deadline, lease or manual liveliness is found): what Jazzy's player
#: offers for such a recorded profile, and what Humble's can
_BEST_AVAILABLE_FOR_PUBLISHER = {"reliability": "RELIABLE", "durability": "TRANSIENT_LOCAL", "liveliness": "AUTOMATIC"}


def playable_qos(qos: Any) -> tuple[Any, list[str]]:
    """rosbags' `Qos` profile `qos` as every distro's `ros2 bag play` can offer it (`PLAYABLE_POLICIES`), and what
    was changed (`["reliability best_available as reliable"]`). best_available (a Jazzy or later recording's, or a
    `qos_overrides` value) becomes what a publisher offering it offers (`_BEST_AVAILABLE_FOR_PUBLISHER`; its deadline
    and lease the defaults), so Humble's player offers what Jazzy's does; a value no rmw knows (`unknown`: a
    recorder that could not tell) becomes `system_default`, the middleware's own choice."""
    from rosbags.interfaces import QosTime

    changes: dict[str, Any] = {}
    said: list[str] = []
    for policy, playable in PLAYABLE_POLICIES.items():
        value = getattr(qos, policy)
        if value.name not in playable:
            name = _BEST_AVAILABLE_FOR_PUBLISHER[policy] if value.name == "BEST_AVAILABLE" else "SYSTEM_DEFAULT"
            changes[policy] = type(value)[name]
            said.append(f"{policy} {value.name.lower()} as {name.lower()}")
    for policy in ("deadline", "liveliness_lease_duration"):
        if (getattr(qos, policy).sec, getattr(qos, policy).nsec) == _BEST_AVAILABLE_TIME:
            changes[policy] = QosTime(0, 0)  # rmw's default: none
            said.append(f"{policy} best_available as the default")
    return qos._replace(**changes), said


def rosbag2_qos(qos: Mapping[str, Any]) -> Any:
    """rosbags' `Qos` of an offered profile `{"history", "depth", "reliability", "durability"}` (as
    `node_params.output_qos` gives it), the other policies as a publisher that sets none offers them (no deadline
    or lifespan, automatic liveliness, infinite lease), as a recorder writes them; as every distro plays it
    (`playable_qos`: a `qos_overrides` best_available is what a publisher offering it offers)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    infinite = QosTime(*_INFINITE)
    return playable_qos(
        Qos(
            history=QosHistory[qos["history"].upper()],
            depth=int(qos["depth"]),
            reliability=QosReliability[qos["reliability"].upper()],
            durability=QosDurability[qos["durability"].upper()],
            deadline=infinite,
            lifespan=infinite,
            liveliness=QosLiveliness.AUTOMATIC,
            liveliness_lease_duration=infinite,
            avoid_ros_namespace_conventions=False,
        )
    )[0]


def new_bag_writer(
    path: str | Path, storage: str = "mcap", *, single_file: bool = False, version: int = BAG_VERSION
) -> Writer:
    """A rosbags `Writer` of a new bag at `path` whose storage file is named as `ros2 bag record -o PATH` names
    it: `PATH/PATH_0.mcap` beside `PATH/metadata.yaml` (rosbags alone names it `PATH/PATH.mcap`, which `ros2 bag
    reindex` does not find and which no recording has, so fixtures made so were bags no robot records). Every bag
    the package writes (vdepth-bag's output, the demo's, the tests' and benchmarks' recordings) is made here.

    The bag is written in a hidden folder beside `path` and moved there when closed, so `path` appears only
    complete, its metadata.yaml and the metadata inside its storage file naming the same file; `abort()` (or an
    exception in a `with` block) removes it. `single_file`: `path` is one storage file (`out.mcap`, its
    metadata.yaml dropped: the file holds it). Use it as rosbags' `Writer` (`with new_bag_writer(p) as w:`,
    `add_connection`, `write`, `set_custom_data`, `set_compression`)."""
    from vdepth_ros.offline.bag_types import STORAGES

    if storage not in STORAGE_NAMES:
        raise OfflineError(f"unknown storage {storage!r}; choose one of {', '.join(STORAGE_NAMES)}")
    return _recorded_writer_class()(Path(path), single_file, version=version, storage_plugin=STORAGES[storage])


@functools.cache
def _recorded_writer_class() -> type[Writer]:
    """rosbags' `Writer`, writing its folder as `new_bag_writer` says, its MCAP storage's chunks ending where frames
    end (`bag_file_writer`; classes made on first use: importing this module needs no rosbags)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.rosbag2.storage_mcap import McapWriter
    from rosbags.rosbag2.storage_sqlite3 import Sqlite3Writer

    from vdepth_ros.offline.bag_file_writer import FrameChunkedMcap, FrameCommittedSqlite, RecordedBag

    mcap = type("FrameChunkedMcapWriter", (FrameChunkedMcap, McapWriter), {})
    sqlite = type("FrameCommittedSqliteWriter", (FrameCommittedSqlite, Sqlite3Writer), {})
    plugins = {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: mcap, StoragePlugin.SQLITE3: sqlite}
    return type("RecordedBagWriter", (RecordedBag, Writer), {"STORAGE_PLUGINS": plugins})


def image_message(ts: Any, header: Any, arr: np.ndarray, encoding: str) -> Any:
    """A rosbags `sensor_msgs/Image` of the `(H, W[, C])` array `arr` in `encoding` (its rows packed as
    `encodings.image_fields_from_array` lays them out) in typestore `ts`."""
    step, data = image_fields_from_array(arr, encoding)
    return ts.types[IMAGE](
        header=header,
        height=arr.shape[0],
        width=arr.shape[1],
        encoding=encoding,
        is_bigendian=0,
        step=step,
        data=np.frombuffer(data, np.uint8),
    )


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


#: how many of the last frames' stamps `DepthBagWriter` keeps: more than one chunk of the smallest frames holds
_STAMPS_KEPT = 4096

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
        path: new bag folder (must not exist), its storage file named as ros2 bag names it (`new_bag_writer`).
        topics: main output topic names.
        storage: "mcap" or "sqlite3".
        typestore: ROS 2 distribution for the message definitions/hashes written.
        publish: "final" | "provisional" | "both" (the pipeline's `publish` parameter).
        provisional_topics: topics for provisional frames with `publish="both"`.
        custom_data: written into the bag folder's metadata.yaml `custom_data` (strings; e.g. which
            model made the depth, `DepthPipeline.model_identity`).
        offered_qos: topic -> the QoS the live node offers there (`node_params.output_qos`), written as the
            topic's offered QoS profile (metadata.yaml, MCAP channel metadata), so that `ros2 bag play` offers
            what the node did (rosbag2's `adapt_offer_to_recorded_offers`: the recorded reliability, durability,
            deadline and liveliness, its own default history); None: none written.
        single_file: `path` is one storage file (`out.mcap`), not a bag folder.
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
        custom_data: dict[str, str] | None = None,
        offered_qos: Callable[[str], Mapping[str, Any]] | None = None,
        single_file: bool = False,
    ) -> None:
        if storage not in STORAGE_NAMES:
            raise OfflineError(f"unknown storage {storage!r}; choose one of {', '.join(STORAGE_NAMES)}")
        if typestore not in TYPESTORE_NAMES:
            raise OfflineError(f"unknown typestore {typestore!r}; choose one of {', '.join(TYPESTORE_NAMES)}")
        if publish not in PUBLISH_POLICIES:
            raise OfflineError(f"publish policy must be one of {', '.join(PUBLISH_POLICIES)}, got {publish!r}")
        if publish == "both" and provisional_topics is None:
            raise OfflineError("publish='both' needs provisional_topics")
        self.path = Path(path)
        self.topics = topics
        self.provisional_topics = provisional_topics
        self.publish = publish
        self.storage = storage
        self.single_file = single_file
        from rosbags.typesys import get_typestore

        from vdepth_ros.offline.bag_types import TYPESTORES

        self.ts = get_typestore(TYPESTORES[typestore])
        self.typestore_name = typestore
        self._writer: Writer | None = None
        self._conns: dict[str, Connection] = {}
        self._copied: dict[tuple[int, int], Connection] = {}  # connection_key of an input -> output
        self._copied_topics: dict[tuple[str, str], Connection] = {}  # (topic, type) -> output
        self.not_copied: dict[tuple[str, str], str] = {}  # (topic, type) -> why rosbags cannot write it
        self.qos_made_playable: dict[str, list[str]] = {}  # copied topic -> its recorded QoS changed (`playable_qos`)
        self.counts: dict[str, int] = {}
        self.bytes_written = 0  # the messages' (outputs and copies), for the room left on the disk
        self.clouds_skipped = 0
        self.frames_written = 0
        #: the stamps of the last main frames written (a write that did not fit drops the last of them)
        self.last_stamps: list[int] = []
        self.custom_data = dict(custom_data or {})
        self.offered_qos = offered_qos

    def open(self) -> DepthBagWriter:
        from rosbags.rosbag2 import WriterError

        try:
            writer = new_bag_writer(self.path, self.storage, single_file=self.single_file)
            writer.open()
        except WriterError as err:
            raise OfflineError(f"cannot create bag {self.path}: {err}") from err
        for key, value in self.custom_data.items():
            writer.set_custom_data(key, str(value))
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
            qos = [rosbag2_qos(self.offered_qos(topic))] if self.offered_qos is not None else []
            conn = self.writer.add_connection(topic, msgtype, typestore=self.ts, offered_qos_profiles=qos)
            self._conns[topic] = conn
        return conn

    def _write(self, topic: str | None, msgtype: str, msg: Any, t: int) -> None:
        if not topic:
            return
        raw = self.ts.serialize_cdr(msg, msgtype)
        self.writer.write(self._conn(topic, msgtype), t, raw)
        self.counts[topic] = self.counts.get(topic, 0) + 1
        self.bytes_written += len(raw)

    def copy_message(self, conn: Connection, t: int, raw: bytes) -> None:
        """Copy one raw input message (same topic, type, definition and QoS) into the output bag.

        The same topic and type read from several storage files (a split bag) go to one output
        topic. A bag with definitions but no type hashes (recorded before Iron, MCAP) gets the hash
        of the definition it carries. A type the bag does not define (sqlite3 bags recorded before
        Iron) and the typestore does not know, such as the robot's own messages, cannot be written
        by rosbags: it is left out, warned about once and listed in `not_copied` with why; so is a
        type whose definition in the bag rosbags cannot parse or hash (one lacking a type it uses).
        """
        key = connection_key(conn)
        out = self._copied.get(key)
        if out is None:
            out = self._copied_topics.get((conn.topic, conn.msgtype))
        if out is None:
            if (conn.topic, conn.msgtype) in self.not_copied:
                return
            out, why = self._copy_connection(conn)
            if out is None:
                self.not_copied[(conn.topic, conn.msgtype)] = why
                log.warning("not copying %s (%s): %s; it stays in the input", conn.topic, conn.msgtype, why)
                return
            self._copied_topics[(conn.topic, conn.msgtype)] = out
        self._copied[key] = out
        self.writer.write(out, t, raw)
        self.bytes_written += len(raw)

    def _copy_connection(self, conn: Connection) -> tuple[Connection | None, str]:
        """The output connection for a copied input connection, or None and why its type cannot be written."""
        if conn.topic in self._conns:
            raise OfflineError(f"input topic {conn.topic!r} collides with an output topic")
        ext = conn.ext
        profiles, said = [], []  # the recorded QoS, as every distro's player can offer it
        for recorded in getattr(ext, "offered_qos_profiles", []) or []:
            profile, changed = playable_qos(recorded)
            profiles.append(profile)
            said += [c for c in changed if c not in said]
        try:
            if conn.msgdef.data:
                definition: dict[str, Any] = {"msgdef": conn.msgdef.data, "rihs01": conn.digest or _rihs01(conn)}
            elif conn.msgtype in self.ts.types:
                definition = {"typestore": self.ts}
            else:
                return None, (
                    f"the bag carries no definition of the type and --typestore {self.typestore_name} does not know "
                    "it (a bag recorded before Iron with the robot's own messages)"
                )
            out = self.writer.add_connection(
                conn.topic,
                conn.msgtype,
                serialization_format=getattr(ext, "serialization_format", "cdr"),
                offered_qos_profiles=profiles,
                **definition,
            )
        except Exception as err:  # rosbags' parser and hasher raise KeyError, TypesysError, ...: any is this type's
            return None, f"rosbags cannot use the type's definition in the bag ({type(err).__name__}: {err})"
        if said:
            self.qos_made_playable[conn.topic] = said
        return out, ""

    # -- message builders ---------------------------------------------------------------------
    def _camera_info(self, header: Any, camera: CameraModel) -> Any:
        """As the node's `info_msg`: rectified pinhole at the output resolution, no distortion."""
        T = self.ts.types
        fields = camera_info_fields(camera)
        arrays = {name: np.asarray(fields.pop(name), np.float64) for name in ("d", "k", "r", "p")}
        return T[CAMERA_INFO](
            header=header,
            **fields,
            **arrays,
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
                topics.depth,
                IMAGE,
                image_message(self.ts, header, np.ascontiguousarray(frame.depth, np.float32), "32FC1"),
                t,
            )
        self._write(
            topics.disparity,
            IMAGE,
            image_message(self.ts, header, np.ascontiguousarray(frame.disparity, np.float32), "32FC1"),
            t,
        )
        if frame.points is not None:
            self._write(topics.points, POINTCLOUD2, cloud_message(self.ts, header, frame.points, frame.colors), t)
        elif frame.depth is not None and topics is self.topics:  # depth but no camera model
            self.clouds_skipped += 1
        if frame.camera is not None:
            self._write(topics.camera_info, CAMERA_INFO, self._camera_info(header, frame.camera), t)
        if topics is self.topics:
            self.frames_written += 1
            self.last_stamps.append(frame.stamp_ns)
            del self.last_stamps[:-_STAMPS_KEPT]
        self.writer.end_frame(topics is self.topics)
        return topics is self.topics

    @property
    def full(self) -> OSError | None:
        """The write that did not fit (a full disk, a file size limit: `DISK_FULL_ERRNOS`), or None: nothing is
        written after it, and `finish_data` closes the bag with the frames before it."""
        return self.writer.full

    def finish_data(self) -> int:
        """Write what is pending, before the bag is closed; after a write that did not fit, `counts` and
        `frames_written` count what the bag keeps. Returns the frames written that it does not keep."""
        dropped = self.writer.finish_data()
        if self.writer.full is not None:
            by_id = self.writer.counts
            self.counts = {topic: by_id.get(conn.id, 0) for topic, conn in self._conns.items() if by_id.get(conn.id)}
            self.frames_written -= dropped
            del self.last_stamps[max(0, len(self.last_stamps) - dropped) :]
        return dropped

    @property
    def last_stamp(self) -> int | None:
        """The stamp of the last main frame the bag keeps, or None (none; or more dropped than `_STAMPS_KEPT`)."""
        return self.last_stamps[-1] if self.last_stamps and self.frames_written else None
