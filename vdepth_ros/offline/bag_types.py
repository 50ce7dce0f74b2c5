"""Shared names of the rosbag2 reader and writer of `vdepth-bag`: message types, typestores, storages.

`BagFrameMeta` is the contract between them: the reader puts it on each `FrameInput.meta`, the
writer stamps the outputs from it.

No module of the bag tools imports `rosbags` (the `bag` extra) when it is imported, only where it reads or
writes a bag: the tools' `--help` and argument errors need no extra, and a tool checks for it
(`require_bag_library`) once its arguments are parsed, before it touches a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vdepth_ros.inputs.assembly import VIDEO_STREAM_TYPES

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
IMAGE_TYPES = (IMAGE, COMPRESSED)


def video_stream_error(topics: dict[str, str]) -> str | None:
    """The sentence for image topics that are video streams (`topics`: topic -> message type), or None when none
    is: what the user can do instead of a list of types the tools do not read."""
    video = sorted(t for t, m in topics.items() if m in VIDEO_STREAM_TYPES)
    if not video:
        return None
    return (
        f"{', '.join(f'{t} [{topics[t]}]' for t in video)} "
        f"{'is a video stream' if len(video) == 1 else 'are video streams'} (H.264/H.265 packets, each frame "
        "depending on earlier ones), which the bag tools do not decode: record the camera's raw or `compressed` "
        "(JPEG/PNG) image_transport topic, or export the stream to a video file and run vdepth-video on it"
    )


#: `--typestore` choices: the ROS 2 distributions whose message definitions are used when a bag
#: carries none (older sqlite3 bags) and for the output bag's type hashes (`TYPESTORES`: rosbags' `Stores`).
TYPESTORE_NAMES = ("humble", "iron", "jazzy", "kilted")
#: `--storage` choices (`STORAGES`: rosbags' `StoragePlugin`).
STORAGE_NAMES = ("mcap", "sqlite3")
#: rosbag2 metadata version of every bag the tools write. 8 (Iron's), not the newest, 9 (Jazzy's): rosbag2 before
#: Jazzy reads each topic's `offered_qos_profiles` as a YAML string of policies as numbers, and version 9 writes a
#: list of policies by name, so Humble's `ros2 bag play` and `ros2 bag info` refused our bags ("Exception on
#: parsing info file: yaml-cpp: bad conversion"); Jazzy and later read version 8 as they read Iron's bags.
BAG_VERSION = 8


def require_bag_library() -> None:
    """Import rosbags: ModuleNotFoundError (`rosbags`) without the `bag` extra, which the tools' entry turns into
    one line naming it (`entry.run_tool`). Called once a tool's arguments are parsed, before any file is touched."""
    import rosbags  # noqa: F401


def __getattr__(name: str) -> Any:
    """`TYPESTORES` and `STORAGES` (name -> rosbags' enum), built on first use (PEP 562), so that importing this
    module needs no rosbags."""
    if name == "TYPESTORES":
        from rosbags.typesys import Stores

        return {n: Stores[f"ROS2_{n.upper()}"] for n in TYPESTORE_NAMES}
    if name == "STORAGES":
        from rosbags.rosbag2 import StoragePlugin

        return {n: StoragePlugin[n.upper()] for n in STORAGE_NAMES}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def connection_key(conn: Any) -> tuple[int, int]:
    """A key unique among every connection an `AnyReader` reads: `Connection.id` is unique only
    within one bag or storage file, and several files are read together (split bags read directly)."""
    return id(conn.owner), int(conn.id)


def restamp(msg: Any, t: int) -> Any:
    """`msg` with its header stamped `t` ns: a bag's receive time standing in for the capture time of a
    camera driver that does not stamp its images (`--log-time-stamps`)."""
    msg.header.stamp = type(msg.header.stamp)(sec=t // 1_000_000_000, nanosec=t % 1_000_000_000)
    return msg


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
