"""The topics `vdepth-bag` reads and writes, on `rosbags`.

`resolve_topics` names them as the node would in its namespace (`BagTopics`: inputs, outputs and
provisional outputs; explicit topic options play the role of remappings).

`InputConnections` picks the connections of an open bag that `BagFrameSource` streams: the image
topic (or the bag's only colour image topic when the default one is absent), its camera_info (the
topic named, else the image topic's own, else the bag's only one), and the sparse depth or camera pose
topic the user named, each checked for its message type, with a note for every fallback taken. A
missing or mistyped topic the user named fails here, naming the bag's topics, before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vdepth_ros.node_params import ros_param_values
from vdepth_ros.offline.bag_messages import grey_camera_hint, image_topics_by_kind
from vdepth_ros.offline.bag_types import (
    CAMERA_INFO,
    COMPRESSED,
    IMAGE,
    IMAGE_TYPES,
    POINTCLOUD2,
    POSE_STAMPED,
    video_stream_error,
)
from vdepth_ros.offline.bag_writer import OutputTopics
from vdepth_ros.offline.errors import EmptyBagError, MissingTopicError, OfflineError, UnsupportedEncodingError

if TYPE_CHECKING:
    from pathlib import Path

    from rosbags.highlevel import AnyReader
    from rosbags.interfaces import Connection

#: how vdepth-bag reads an IR camera's 16UC1 as a camera: the node's parameter, in its --params file
GREY_CAMERA_FIX = "image_encoding: mono16 in the --params file"


@dataclass(frozen=True)
class BagTopics:
    """Input and output topic names: the node's (relative, resolved in `namespace`) unless given."""

    image: str
    camera_info: str | None
    sparse_depth: str | None
    camera_pose: str | None
    outputs: OutputTopics
    provisional: OutputTopics


def resolve_topics(
    params: dict[str, Any],
    *,
    namespace: str = "/",
    image_topic: str | None = None,
    camera_info_topic: str | None = None,
    sparse_depth_topic: str | None = None,
    camera_pose_topic: str | None = None,
) -> BagTopics:
    """The topics the node would use in `namespace` (its names are relative and remapped, not parameters).

    Inputs `image`, `camera_info`, `sparse_depth` (only when the node's `sparse_depth` parameter is
    `image` or `pointcloud`; the bag's message type decides which), `camera_pose` (only when it is
    `pose`); outputs `depth`, `disparity`, `points`, `depth/camera_info` and `provisional/...`.
    Explicit topic arguments play the role of remappings.
    """
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    sparse_mode = ros_param_values(params)["sparse_depth"]
    sparse = sparse_depth_topic or (f"{ns}/sparse_depth" if sparse_mode in ("image", "pointcloud") else None)
    pose = camera_pose_topic or (f"{ns}/camera_pose" if sparse_mode == "pose" and not sparse_depth_topic else None)
    if sparse and pose:
        raise OfflineError("one metric scale input at a time: --sparse-depth-topic or --camera-pose-topic")
    return BagTopics(
        image=image_topic or f"{ns}/image",
        camera_info=camera_info_topic or f"{ns}/camera_info",
        sparse_depth=sparse,
        camera_pose=pose,
        outputs=OutputTopics.under(ns),
        provisional=OutputTopics.under(ns, "provisional/"),
    )


class InputConnections:
    """The input connections of the open bag `reader` (at `path`): `choose_image`, then `choose_samples`.

    Args:
        image_topic, camera_info_topic, sparse_depth_topic, camera_pose_topic: the topics asked for
            (`BagFrameSource`'s); `image_topic` and `camera_info_topic` become the topics chosen.
        image_topic_explicit, camera_info_topic_explicit: the user named these topics, so a missing one
            is an error rather than a fallback.
        notes: where each fallback taken is noted (the run's summary).
    """

    def __init__(
        self,
        reader: AnyReader,
        path: Path,
        *,
        image_topic: str,
        camera_info_topic: str | None,
        sparse_depth_topic: str | None,
        camera_pose_topic: str | None,
        image_topic_explicit: bool,
        camera_info_topic_explicit: bool,
        notes: list[str],
        image_encoding: str = "auto",
    ) -> None:
        self.reader, self.path, self.notes = reader, path, notes
        self.image_encoding = image_encoding  # the run's: the raw topics it reads count as colour images
        self.image_topic, self.camera_info_topic = image_topic, camera_info_topic
        self.sparse_depth_topic, self.camera_pose_topic = sparse_depth_topic, camera_pose_topic
        self.image_topic_explicit = image_topic_explicit
        self.camera_info_topic_explicit = camera_info_topic_explicit
        self.image_conns: list[Connection] = []
        self.info_conns: list[Connection] = []
        self.depth_conns: list[Connection] = []
        self.pose_conns: list[Connection] = []

    def _types(self) -> dict[str, str]:
        return {c.topic: c.msgtype for c in self.reader.connections}

    def _topic_list(self) -> str:
        items = sorted(self._types().items())
        return ", ".join(f"{t} [{m}]" for t, m in items) if items else "(none)"

    def _conns(self, topic: str) -> list[Connection]:
        return [c for c in self.reader.connections if c.topic == topic]

    def choose_image(self) -> list[Connection]:
        """The image topic's connections (the bag's only colour image topic when the default one is
        absent); `image_topic` is then the topic read."""
        if not self.reader.connections or self.reader.message_count == 0:
            raise EmptyBagError(f"{self.path}: the bag holds no messages (topics: {self._topic_list()})")
        image_conns = self._conns(self.image_topic)
        if not image_conns:
            # a depth camera's topics, or vdepth-bag's outputs, beside the camera do not make it ambiguous
            kinds = image_topics_by_kind(self.reader, self.image_encoding)
            candidates = kinds["colour"]
            transports = [c for c in candidates if c.rsplit("/", 1)[0] == self.image_topic]
            if len(transports) == 1:  # the camera's base topic named, as image_transport's subscribers name it
                self.notes.append(
                    f"image topic {self.image_topic!r} not in the bag: reading its image_transport topic "
                    f"{transports[0]!r}"
                )
                self.image_topic = transports[0]
                image_conns = self._conns(self.image_topic)
            elif not self.image_topic_explicit and len(candidates) == 1:
                same = sorted(c.topic for c in self.reader.connections if c.topic.startswith(candidates[0] + "/"))
                self.notes.append(
                    f"image topic {self.image_topic!r} not in the bag; using its only colour image topic "
                    f"{candidates[0]!r}" + (f" (the same camera as {', '.join(same)}, read raw)" if same else "")
                )
                self.image_topic = candidates[0]
                image_conns = self._conns(self.image_topic)
            elif not self.image_topic_explicit and candidates:
                # the candidates alone: in a robot's bag of tf, imu, lidar... the whole list buries them
                raise MissingTopicError(
                    f"{self.path}: image topic {self.image_topic!r} not found and the bag holds several colour "
                    f"image topics: {', '.join(candidates)} (choose one with --image-topic; one run per camera)"
                )
            elif not candidates and (video := video_stream_error(self._types())):
                raise MissingTopicError(f"{self.path}: the bag has no image topic; {video}")
            else:
                raise MissingTopicError(
                    f"{self.path}: image topic {self.image_topic!r} not found; the bag has: "
                    f"{self._topic_list()} (choose one with --image-topic)"
                    f"{grey_camera_hint(self.reader, self.image_encoding, GREY_CAMERA_FIX)}"
                )
        bad = {c.msgtype for c in image_conns if c.msgtype not in IMAGE_TYPES}
        if bad:
            video = video_stream_error({self.image_topic: next(iter(bad))})
            raise UnsupportedEncodingError(
                video
                or f"topic {self.image_topic!r} has type {', '.join(sorted(bad))}; expected {IMAGE} or {COMPRESSED}"
            )
        if sum(c.msgcount for c in image_conns) == 0:
            # a camera recorded through one transport only (bandwidth): name the one that holds its images
            held = sorted(
                {
                    c.topic
                    for c in self.reader.connections
                    if c.topic.startswith(self.image_topic + "/") and c.msgtype in IMAGE_TYPES and c.msgcount
                }
            )
            hint = f" (its transport {', '.join(held)} does: choose it with --image-topic)" if held else ""
            raise EmptyBagError(f"{self.path}: image topic {self.image_topic!r} holds no messages{hint}")
        self.image_conns = image_conns
        return image_conns

    def choose_samples(self) -> None:
        """The camera_info, sparse depth and camera pose connections (`info_conns`, `depth_conns`,
        `pose_conns`; `camera_info_topic` is then the topic read)."""
        if self.camera_info_topic:
            self.info_conns = self._select_camera_info()
        if self.sparse_depth_topic:
            self.depth_conns = self._typed_conns(
                self.sparse_depth_topic, "sparse depth", (IMAGE, POINTCLOUD2, COMPRESSED)
            )
        if self.camera_pose_topic:
            self.pose_conns = self._typed_conns(self.camera_pose_topic, "camera pose", POSE_STAMPED)

    def _select_camera_info(self) -> list[Connection]:
        """The camera_info connections of the images: the topic named, else the image topic's own, the
        default name, or the fallback (`_fallback_camera_info`)."""
        if not self.camera_info_topic_explicit:
            self._own_camera_info()
        info = self._conns(self.camera_info_topic)
        if not info and not self.camera_info_topic_explicit:
            info = self._fallback_camera_info()
        if not info and self.camera_info_topic_explicit:
            raise MissingTopicError(
                f"{self.path}: camera_info topic {self.camera_info_topic!r} not found; "
                f"the bag has: {self._topic_list()}"
            )
        if any(c.msgtype != CAMERA_INFO for c in info):
            raise MissingTopicError(
                f"topic {self.camera_info_topic!r} is not {CAMERA_INFO}: {', '.join(sorted({c.msgtype for c in info}))}"
            )
        return [c for c in info if c.msgcount > 0]

    def _camera_info_topics(self) -> list[str]:
        return sorted({c.topic for c in self.reader.connections if c.msgtype == CAMERA_INFO})

    def _sibling_camera_info(self) -> str:
        """The camera_info topic beside the image topic, as image_transport pairs them
        (`/cam/image_raw` and `/cam/image_raw/compressed` -> `/cam/camera_info`)."""
        base = self.image_topic
        if any(c.msgtype == COMPRESSED for c in self.image_conns) and base.count("/") > 1:
            base = base.rsplit("/", 1)[0]  # the transport's sub-topic
        return base.rsplit("/", 1)[0] + "/camera_info"

    def _own_camera_info(self) -> None:
        """The default camera_info topic, not named by the user, gives way to the image topic's own
        where the bag has both (a bag of several cameras, the one named by `--image-topic` not on
        the default names): each camera's images go with its own calibration, not another camera's."""
        sibling, topics = self._sibling_camera_info(), self._camera_info_topics()
        if sibling != self.camera_info_topic and sibling in topics and self.camera_info_topic in topics:
            self.notes.append(
                f"camera_info from {sibling!r}, beside the image topic {self.image_topic!r} (not "
                f"{self.camera_info_topic!r}, another camera's; choose with --camera-info-topic)"
            )
            self.camera_info_topic = sibling

    def _fallback_camera_info(self) -> list[Connection]:
        """The default camera_info topic is not in the bag: the image topic's own (`camera_info`
        beside it, as image_transport pairs them: `/cam/image_raw` and `/cam/image_raw/compressed`
        -> `/cam/camera_info`), else the bag's only CameraInfo topic; several others are an error."""
        candidates = self._camera_info_topics()
        sibling = self._sibling_camera_info()
        if sibling in candidates:
            chosen, why = sibling, f"using {sibling!r}, the image topic's own"
        elif len(candidates) == 1:
            chosen, why = candidates[0], f"using its only CameraInfo topic {candidates[0]!r}"
        elif candidates:
            raise MissingTopicError(
                f"{self.path}: camera_info topic {self.camera_info_topic!r} not found and none belongs to "
                f"{self.image_topic!r}; the bag has several: {', '.join(candidates)} (choose one with "
                "--camera-info-topic)"
            )
        else:
            return []
        self.notes.append(f"camera_info topic {self.camera_info_topic!r} not in the bag; {why}")
        self.camera_info_topic = chosen
        return self._conns(chosen)

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
