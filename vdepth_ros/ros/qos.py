"""QoS profiles by name, ROS-standard QoS overrides for the outputs, and incompatible-QoS reporting.

Input default is SensorData (best effort): a reliable subscription never matches a best-effort
camera. Output default is reliable: RViz and `ros2 topic echo` default to reliable and a reliable
publisher matches both reliable and best-effort subscribers. The named presets are rclpy's
`QoSPresetProfiles` with the configured history depth; on top of them every output publisher
accepts the standard `qos_overrides.<topic>.publisher.{history,depth,reliability}` parameters
(`QoSOverridingOptions`, as depth_image_proc's publishers do).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable

from rclpy.event_handler import (
    PublisherEventCallbacks,
    QoSOfferedIncompatibleQoSInfo,
    QoSRequestedIncompatibleQoSInfo,
    SubscriptionEventCallbacks,
)
from rclpy.qos import QoSPresetProfiles, QoSProfile, qos_policy_name_from_kind
from rclpy.qos_overriding_options import QoSOverridingOptions

from vdepth_ros.errors import ConfigError
from vdepth_ros.node_params import QOS_PRESETS

_RCLPY_PRESETS = {
    "sensor_data": QoSPresetProfiles.SENSOR_DATA,
    "reliable": QoSPresetProfiles.DEFAULT,
    "best_effort": QoSPresetProfiles.SENSOR_DATA,
}
#: The accepted values of the `*_qos` parameters (`node_params.QOS_PRESETS`) and the rclpy preset
#: each starts from (`best_effort` is SensorData's profile: best effort, volatile); a name without
#: a preset here fails at import.
PRESETS: dict[str, QoSPresetProfiles] = {name: _RCLPY_PRESETS[name] for name in QOS_PRESETS}


def qos_profile(preset: str, depth: int) -> QoSProfile:
    """The rclpy preset profile named `preset` (KEEP_LAST, VOLATILE) with history `depth`.

    Args:
        preset: "sensor_data" / "best_effort" (BEST_EFFORT) or "reliable" (RELIABLE).
        depth: history depth (>= 1).

    Raises:
        ConfigError: unknown preset or depth < 1.
    """
    if preset not in PRESETS:
        raise ConfigError(f"QoS preset {preset!r} is not one of {', '.join(QOS_PRESETS)}")
    if int(depth) < 1:
        raise ConfigError(f"QoS depth must be >= 1, got {depth}")
    profile = copy.copy(PRESETS[preset].value)
    profile.depth = int(depth)
    return profile


def output_overrides() -> QoSOverridingOptions:
    """`qos_overrides.<topic>.publisher.{history,depth,reliability}` for an output publisher."""
    return QoSOverridingOptions.with_default_policies()


def _fix_hint(policy: str, side: str) -> str:
    if policy == "RELIABILITY" and side == "subscription":
        return (
            "the publisher is best effort and this subscription is reliable: set input_qos:=sensor_data "
            "(or best_effort)"
        )
    if policy == "RELIABILITY":
        return (
            "a subscriber asks for reliable but this node publishes best effort: set output_qos:=reliable, "
            "or make the subscriber best effort (RViz: Topic > Reliability Policy > Best Effort)"
        )
    if policy == "DURABILITY":
        return "a subscriber asks for transient_local durability; this node publishes volatile: make it volatile"
    return f"align the {policy} policy of both sides"


class IncompatibleQosReporter:
    """Builds event callbacks that log each incompatible-QoS topic once, with the fix.

    Args:
        warn: logging function (e.g. `node.get_logger().warning`).
    """

    def __init__(self, warn: Callable[[str], None]) -> None:
        self._warn = warn
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self.events = 0

    def _report(self, topic: str, side: str, policy_kind: int, count: int) -> None:
        with self._lock:
            self.events += 1
            key = (topic, side)
            if key in self._seen:
                return
            self._seen.add(key)
        policy = qos_policy_name_from_kind(policy_kind)
        self._warn(
            f"incompatible QoS on {side} '{topic}' ({policy}, {count} peer(s) not matched): {_fix_hint(policy, side)}"
        )

    def subscription(self, topic: str) -> SubscriptionEventCallbacks:
        """Event callbacks for a subscription on `topic`."""

        def cb(info: QoSRequestedIncompatibleQoSInfo) -> None:
            self._report(topic, "subscription", info.last_policy_kind, info.total_count)

        return SubscriptionEventCallbacks(incompatible_qos=cb)

    def publisher(self, topic: str) -> PublisherEventCallbacks:
        """Event callbacks for a publisher on `topic`."""

        def cb(info: QoSOfferedIncompatibleQoSInfo) -> None:
            self._report(topic, "publisher", info.last_policy_kind, info.total_count)

        return PublisherEventCallbacks(incompatible_qos=cb)
