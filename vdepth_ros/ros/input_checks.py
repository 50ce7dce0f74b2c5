"""The checks of the input graph (from the status timer; the camera_info stamps also with the images),
each named on /diagnostics while it holds: a topic published with another message type, camera_info read
from another camera's namespace, a latched camera_info taken, camera_info stamped so that it pairs with no
image.

A mixin of `intake.InputSide`, which sets the attributes these steps read: `_node`, `p`, `log`, `sync`,
`_lock`, `subscriptions`, `image_topic`, `_info_arrived`, `_latched_info` and the camera_info callback
`_on_info_with_info`.
"""

from __future__ import annotations

from typing import Any

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import CameraInfo

from vdepth_ros.ros import conversions as conv
from vdepth_ros.ros.input_topics import image_camera_info_topic, topic_type_fix
from vdepth_ros.ros.qos import endpoint_name


class InputGraphChecks:
    """Mixed into `intake.InputSide`: the input topics checked against the graph."""

    def camera_info_topic(self) -> tuple[str, int]:
        """The resolved camera_info topic and how many nodes publish it."""
        topic = self._node.resolve_topic_name("camera_info")
        return topic, self._node.count_publishers(topic)

    def check_topic_types(self) -> None:
        """WARN once per topic and type when an input topic is published with another message type
        than this node subscribes there: DDS matches nothing and no message arrives, without an error
        anywhere: a raw stream remapped to `image` with `image_transport:=compressed` and a name
        ending in `/compressed`, a compressed one read as raw, or a sparse_depth that does not match
        the `sparse_depth` parameter. On /diagnostics while such a publisher is there. Called from the
        status timer."""
        found = {}
        for sub in self.subscriptions:
            topic, wanted = sub.topic_name, conv.type_name(sub.msg_type)
            published = {info.topic_type for info in self._node.get_publishers_info_by_topic(topic)}
            for other in sorted(published - {wanted}):
                found[f"{topic} {other}"] = (
                    f"'{topic}' is published as {other}, not {wanted}: none of those messages arrive",
                    f"'{topic}' is published as {other}, but this node subscribes {wanted} there, so none of those "
                    f"messages arrive: {topic_type_fix(topic == self.image_topic, wanted, other, topic)}",
                )
        self.log.problems.report("topic-type", found)

    def check_camera_info_topic(self) -> None:
        """WARN once when the camera_info next to the image (image_transport's pairing: `camera_info` in
        the image's namespace, `image_camera_info_topic`) has a publisher and this node reads another:
        most likely another camera's (a remap to the wrong namespace, or `camera_info` left unremapped),
        whose intrinsics would be used for these images without a word when both cameras' drivers use
        the same frame_id. On /diagnostics while that one has a publisher. Called from the status timer."""
        node = self._node
        if not self.image_topic:
            return
        topic, own = node.resolve_topic_name("camera_info"), image_camera_info_topic(self.image_topic)
        if topic == own:
            return
        me = (node.get_name(), node.get_namespace())
        publishers = sorted(
            endpoint_name(info)
            for info in node.get_publishers_info_by_topic(own)
            if info.topic_type == conv.type_name(CameraInfo) and (info.node_name, info.node_namespace) != me
        )
        found = {}
        if publishers:
            found[own] = (
                f"camera_info is read from '{topic}', not from the image's own '{own}': remap camera_info:={own}",
                f"camera_info is read from '{topic}', but the image '{self.image_topic}' has its own next to it, "
                f"'{own}' (published by {', '.join(publishers)}; image_transport pairs an image with the camera_info "
                f"of its namespace): if '{topic}' is another camera's, its intrinsics are wrong for these images; "
                f"remap camera_info:={own}",
            )
        self.log.problems.report("camera-info-topic", found)

    def _latched_info_publishers(self) -> list[Any]:
        """The transient_local (latched) CameraInfo publishers on the camera_info topic."""
        node = self._node
        return [
            info
            for info in node.get_publishers_info_by_topic(node.resolve_topic_name("camera_info"))
            if info.topic_type == conv.type_name(CameraInfo)
            and info.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
        ]

    def camera_info_latched(self) -> bool:
        """Whether a transient_local (latched) camera_info publisher is on the topic: its message is on
        its way through the subscription `check_camera_info` makes, so frames without one are no fault."""
        return self._latched_info is not None or bool(self._latched_info_publishers())

    def check_camera_info(self) -> None:
        """While no camera_info has arrived: take a latched one.

        A camera_info published once with transient_local durability (a static calibration
        publisher, a driver that latches it) is kept for late subscribers, but only for subscribers
        that ask for transient_local, and such a subscription would match no ordinary (volatile)
        camera driver. So once a transient_local publisher is seen on the topic, a second
        subscription with its durability and reliability takes its last message. (Frames that go out
        without any camera model are named by `FrameProcessor`, with the cause.) Called at
        subscription and from the status timer."""
        if self._info_arrived or not self.subscriptions or self._latched_info is not None:
            return
        latched = self._latched_info_publishers()
        if not latched:
            return
        node = self._node
        topic = node.resolve_topic_name("camera_info")
        qos = QoSProfile(
            depth=1, reliability=latched[0].qos_profile.reliability, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self._latched_info = node.create_subscription(
            CameraInfo,
            "camera_info",
            self._on_info_with_info,
            qos,
            # it cannot match the volatile publishers the other subscription takes: not a fault
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=lambda _: None),
        )
        self.subscriptions.append(self._latched_info)
        self.log.info(
            "latched-camera-info",
            f"'{topic}' is published transient_local (latched, e.g. once): also subscribed to its last message",
        )

    def check_camera_info_stamps(self) -> None:
        """WARN once per cause when camera_info keeps arriving but pairs with no image by its stamp
        (`ApproximateTimeSync.unpaired`): stamped 0, by another clock, a constant offset beyond
        `sync_slop`, or by a publisher of its own. Each image then gets the last one received, which
        only a counter on /diagnostics showed; now /diagnostics names the cause until a camera_info pairs
        again. Called with the images (at most once a second) and from the status timer."""
        with self._lock:
            unpaired, neighbour = self.sync.unpaired(), self.sync.neighbour_offset()
        found = {}
        if neighbour is not None:
            offset, step = neighbour
            topic = self._node.resolve_topic_name("camera_info")
            side = "after" if offset > 0 else "before"
            cause = (
                f"camera_info on '{topic}' is stamped a constant {abs(offset) / 1e6:.0f} ms ({abs(offset) / step:.1f} "
                f"frames) {side} the image it is published with, so each image is paired with a neighbouring "
                "frame's camera_info"
            )
            found["neighbour"] = (
                f"{cause}: have the driver stamp each camera_info with its image's header.stamp",
                f"{cause} (within sync_slop, {self.p['sync_slop']:g} s, of that frame's image): right while the "
                "calibration is fixed, wrong from the frame it changes (a zoom, a new image size). Have the driver "
                "stamp each camera_info with its image's header.stamp (image_transport's CameraPublisher); a "
                "sync_slop cannot fix it. Named in /diagnostics 'problems' while it holds; this warning is shown once.",
            )
        if unpaired is not None:
            kind, cause = unpaired.cause(self.sync.slop_ns)
            topic = self._node.resolve_topic_name("camera_info")
            found[kind] = (
                f"no camera_info on '{topic}' is stamped within sync_slop of an image, each image gets the last one "
                f"received: {cause}",
                f"none of the last {unpaired.infos} camera_infos on '{topic}' is stamped within sync_slop "
                f"({self.p['sync_slop']:g} s) of an image: {cause}. Meanwhile each image gets the last camera_info "
                "received, right while the calibration is fixed, but not paired by its stamp (counted on "
                "/diagnostics as 'cached', and named in its 'problems' until a camera_info pairs again); this "
                "warning is shown once.",
            )
        self.log.problems.report("camera-info-stamps", found)
