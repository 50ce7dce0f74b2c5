"""`input_qos: auto`: the input subscriptions follow their publishers' reliability.

A mixin of `intake.InputSide`, which sets the attributes these steps read: `_node`, `p`, `log`,
`_reporter`, `subscriptions` and `_following` (subscription -> (message type, topic name, callback) of
those that follow their publishers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import QoSProfile, ReliabilityPolicy

from vdepth_ros.ros import conversions as conv
from vdepth_ros.ros.input_topics import reliability_name
from vdepth_ros.ros.qos import endpoint_name, qos_profile

#: `input_qos: auto`: how often (steady seconds) the input topics' publishers are looked up (`check_input_qos`)
INPUT_QOS_CHECK_S = 0.1
#: `endpoint_name` of an endpoint whose node DDS has not named yet (rmw's placeholders)
UNKNOWN_NODE = "_NODE_NAMESPACE_UNKNOWN_/_NODE_NAME_UNKNOWN_"


class InputQosFollowing:
    """Mixed into `intake.InputSide`: its subscriptions made, and under `input_qos: auto` made again when
    their publishers' reliability changes."""

    def _subscription(
        self, msg_type: type, topic: str, cb: Callable[[Any], None], qos: QoSProfile, following: bool = False
    ) -> Any:
        node = self._node
        events = self._reporter.subscription(node.resolve_topic_name(topic))
        if following:  # a best-effort publisher joining a reliable one is followed within INPUT_QOS_CHECK_S: no fault
            events = SubscriptionEventCallbacks(incompatible_qos=lambda _: None)
        return node.create_subscription(msg_type, topic, cb, qos, event_callbacks=events)

    def _auto_profile(self, reliability: ReliabilityPolicy | None) -> QoSProfile:
        """`input_qos: auto`'s profile: reliable for reliable publishers, else (none seen yet, or one best effort)
        SensorData's best effort, which matches any."""
        preset = "reliable" if reliability == ReliabilityPolicy.RELIABLE else "sensor_data"
        return qos_profile(preset, self.p["input_qos_depth"])

    def _publishers_reliability(self, topic: str, msg_type: type) -> tuple[ReliabilityPolicy | None, list[str]]:
        """(RELIABLE if every publisher of `msg_type` on `topic` is reliable, BEST_EFFORT if one is not, None if
        there is none; their node names)."""
        infos = [i for i in self._node.get_publishers_info_by_topic(topic) if i.topic_type == conv.type_name(msg_type)]
        if not infos:
            return None, []
        reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
        names = sorted({endpoint_name(i) for i in infos} - {UNKNOWN_NODE})  # (a node's name comes after its endpoints)
        return (ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT), names

    def check_input_qos(self) -> None:
        """`input_qos: auto`: subscribe each input topic again when its publishers' reliability changed.

        Across processes a best-effort subscription gets few of a reliable publisher's large images (a
        best-effort reader loses a whole image for any fragment it misses, and nothing resends it: 2-3 % of
        a reliable 640x480 camera's, docs/node.md, Across processes), and a reliable one gets nothing from a
        best-effort publisher. So each follows its publishers: reliable while every one is, best effort
        (which matches any) as soon as one is not. A topic without publishers keeps its subscription (a
        driver restarting). From a steady timer (`INPUT_QOS_CHECK_S`); one INFO line per change."""
        for k, sub in enumerate(list(self.subscriptions)):
            following = self._following.get(sub)
            if following is None:
                continue
            msg_type, name, cb = following
            topic = sub.topic_name
            reliability, publishers = self._publishers_reliability(topic, msg_type)
            if reliability is None or reliability == sub.qos_profile.reliability:
                continue
            self._node.destroy_subscription(sub)
            del self._following[sub]
            new = self._subscription(msg_type, name, cb, self._auto_profile(reliability), following=True)
            self.subscriptions[k] = new
            self._following[new] = following
            why = (
                "as they are: across processes a best-effort subscription gets few of a reliable publisher's large "
                "images"
                if reliability == ReliabilityPolicy.RELIABLE
                else "best effort matches every publisher (a reliable subscription gets nothing from a best-effort one)"
            )
            self.log.info(
                f"input-qos:{topic}:{reliability}",
                f"'{topic}' is published {reliability_name(reliability)}"
                + (f" (by {', '.join(publishers)})" if publishers else "")
                + f": subscribed "
                f"{reliability_name(reliability)} ({why}; input_qos auto)",
            )
