"""QoS profiles by name, ROS-standard QoS overrides for the outputs, and incompatible-QoS reporting.

Input default is SensorData (best effort): a reliable subscription never matches a best-effort
camera. Output default is reliable: RViz and `ros2 topic echo` default to reliable and a reliable
publisher matches both reliable and best-effort subscribers. The named presets are rclpy's
`QoSPresetProfiles` with the configured history depth; on top of them every output publisher
accepts the standard `qos_overrides.<topic>.publisher.{history,depth,reliability,durability}` parameters
(`QoSOverridingOptions`, as depth_image_proc's publishers do): `durability: transient_local` serves
late joiners (a tool that subscribes transient_local, as to a latched topic, matches no volatile
publisher and gets nothing).
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from rclpy.event_handler import (
    PublisherEventCallbacks,
    QoSOfferedIncompatibleQoSInfo,
    QoSRequestedIncompatibleQoSInfo,
    SubscriptionEventCallbacks,
)
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    QoSCompatibility,
    QoSPolicyKind,
    QoSPresetProfiles,
    QoSProfile,
    qos_check_compatible,
    qos_policy_name_from_kind,
)
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


def endpoint_name(info: Any) -> str:
    """The full name of a topic endpoint's node (`/ns/rviz`), from `get_{publishers,subscriptions}_info_by_topic`."""
    return f"{info.node_namespace.rstrip('/')}/{info.node_name}"


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


#: The policies of an output publisher that `qos_overrides.<topic>.publisher.<policy>` sets.
OVERRIDABLE = (QoSPolicyKind.HISTORY, QoSPolicyKind.DEPTH, QoSPolicyKind.RELIABILITY, QoSPolicyKind.DURABILITY)
#: Their values, for the error on a wrong one (rclpy's own says only which value it did not expect).
OVERRIDE_VALUES = {
    "history": "keep_last or keep_all",
    "depth": "an integer >= 1",
    "reliability": "reliable or best_effort",
    "durability": "volatile or transient_local",
}
#: rclpy's refusal of a `qos_overrides` value (`rclpy.qos_overriding_options`).
_BAD_OVERRIDE = re.compile(r"Unexpected QoS override for policy `(?P<policy>\w+)`: `(?P<value>.*)`")


def override_error(node: Node, topic: str, err: Exception) -> ConfigError:
    """The error for rclpy's refusal `err` of a `qos_overrides.<topic>.publisher.*` value ("Unexpected QoS
    override for policy `reliability`: `relaible`", rcl's for a depth it cannot take): the parameter, its
    value and what it takes, and that a publisher's QoS is read once, when it is created."""
    found = _BAD_OVERRIDE.search(str(err))
    policy = found["policy"] if found else "depth" if "depth" in str(err) else None
    if policy not in OVERRIDE_VALUES:
        values = "; ".join(f"{name}: {takes}" for name, takes in OVERRIDE_VALUES.items())
        return ConfigError(f"qos_overrides.{topic}.publisher: {err}; the values: {values}")
    name = f"qos_overrides.{topic}.publisher.{policy}"
    value = node.get_parameter(name).value if node.has_parameter(name) else (found["value"] if found else "?")
    return ConfigError(
        f"{name} is {value!r}, but it must be {OVERRIDE_VALUES[policy]}; correct it where it is set (the params "
        "file or -p) and start the node again (a publisher's QoS is read once, when it is created)"
    )


def output_overrides() -> QoSOverridingOptions:
    """`qos_overrides.<topic>.publisher.{history,depth,reliability,durability}` for an output publisher."""
    return QoSOverridingOptions(OVERRIDABLE)


def _fix_hint(policy: str, side: str, topic: str) -> str:
    """The fix for an incompatible `policy` on this node's `side` ("publisher": one of its outputs) of `topic`."""
    override = f"qos_overrides.{topic}.publisher"
    if policy == "RELIABILITY" and side == "subscription":
        return (
            "the publisher is best effort and this subscription is reliable: set input_qos:=auto (follows the "
            "publishers' reliability) or sensor_data"
        )
    if side == "subscription":  # (the node's subscriptions ask for nothing else a publisher can lack)
        return f"align the {policy} policy of both sides"
    if policy == "RELIABILITY":
        return (
            f"a subscriber asks for reliable but this node publishes best effort: set output_qos:=reliable (and no "
            f"{override}.reliability: best_effort), or make the subscriber best effort (RViz: Topic > Reliability "
            "Policy > Best Effort)"
        )
    if policy == "DURABILITY":
        return (
            "a subscriber asks for transient_local durability (a late joiner, as of a latched topic) and this node "
            f"publishes volatile: set {override}.durability: transient_local in the params file (a late joiner then "
            "gets the last history-depth messages; volatile subscribers are served as before), or make the "
            "subscriber volatile (docs/node.md, QoS)"
        )
    return (  # DEADLINE, LIVELINESS, LIVELINESS_LEASE_DURATION: what no output offers
        f"a subscriber asks for a {policy} this node does not offer (its outputs publish with ROS's defaults: no "
        f"deadline, automatic liveliness, no lease duration): leave the subscriber's {policy} at its default"
    )


#: rmw's words for each policy in `qos_check_compatible`'s reasons ("ERROR: Volatile publisher and transient
#: local subscription;"), the more specific first.
_REASON_POLICIES = (
    ("lease duration", "LIVELINESS_LEASE_DURATION"),
    ("liveliness", "LIVELINESS"),
    ("deadline", "DEADLINE"),
    ("transient local", "DURABILITY"),
    ("reliable", "RELIABILITY"),
)


def incompatible_policies(offered: QoSProfile, requested: QoSProfile) -> list[str]:
    """The policies (`qos_policy_name_from_kind`'s names) for which a subscription asking for `requested` matches
    no publisher offering `offered`; empty when they match (or rmw cannot tell)."""
    compatibility, reason = qos_check_compatible(offered, requested)
    if compatibility != QoSCompatibility.ERROR:
        return []
    found = []
    for part in reason.lower().split(";"):
        policy = next((name for words, name in _REASON_POLICIES if words in part), None)
        if policy is not None and policy not in found:
            found.append(policy)
    return found


class IncompatibleQosReporter:
    """Builds event callbacks that log each incompatible policy of a topic once, with the fix.

    DDS reports one policy per event (the last peer's), and peers discovered together come in one event; so
    for an output the subscribers of the topic are checked against what this node offers, and every policy
    one of them asks for in vain is named, with those subscribers (a transient_local recorder and a monitor
    asking for a deadline, both on /depth: two WARNs).

    Args:
        warn: logging function (e.g. `node.get_logger().warning`).
        node: the node whose publishers are reported (their subscribers are looked up); None: the event's
            policy only.
    """

    def __init__(self, warn: Callable[[str], None], node: Any = None) -> None:
        self._warn = warn
        self._node = node
        self._seen: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()
        self.events = 0

    def _report(self, topic: str, side: str, policy_kind: int, count: int) -> None:
        with self._lock:
            self.events += 1
        peers = self._unmatched_subscribers(topic) if side == "publisher" else {}
        for policy, names in (peers or {qos_policy_name_from_kind(policy_kind): []}).items():
            with self._lock:
                key = (topic, side, policy)
                if key in self._seen:
                    continue
                self._seen.add(key)
            who = f"subscribers {', '.join(sorted(set(names)))}; " if names else ""
            self._warn(
                f"incompatible QoS on {side} '{topic}' ({policy}, {who}{count} peer(s) not matched): "
                f"{_fix_hint(policy, side, topic)}"
            )

    def _unmatched_subscribers(self, topic: str) -> dict[str, list[str]]:
        """Policy -> the subscribers of `topic` that ask for it in vain from this node's publisher there."""
        node = self._node
        if node is None:
            return {}
        try:
            offered = [
                i.qos_profile
                for i in node.get_publishers_info_by_topic(topic)
                if i.node_name == node.get_name() and i.node_namespace == node.get_namespace()
            ]
            found: dict[str, list[str]] = {}
            for sub in node.get_subscriptions_info_by_topic(topic) if offered else []:
                for policy in incompatible_policies(offered[0], sub.qos_profile):
                    found.setdefault(policy, []).append(endpoint_name(sub))
            return found
        except Exception:  # the graph is a help for the message, never a reason to lose it
            return {}

    def current(self, output_topics: Iterable[str], subscriptions: Iterable[Any]) -> dict[str, tuple[str, str]]:
        """The incompatible QoS that holds now, by the ROS graph, for /diagnostics (`CurrentProblems`): key ->
        (one line with the fix, "": its WARN comes with the event). For `output_topics`, each policy a subscriber
        asks for in vain; for this node's `subscriptions`, each policy a publisher of its topic lacks (not for
        a transient_local one: `InputSide`'s latched camera_info subscription matches no volatile publisher by
        design)."""
        node, found = self._node, {}
        if node is None:
            return found
        try:
            for topic in output_topics:
                for policy, names in self._unmatched_subscribers(topic).items():
                    who = ", ".join(sorted(set(names)))
                    found[f"publisher {topic} {policy}"] = (
                        f"incompatible QoS on publisher '{topic}' ({policy}, subscribers {who}): "
                        f"{_fix_hint(policy, 'publisher', topic)}",
                        "",
                    )
            for sub in subscriptions:
                requested = sub.qos_profile
                if requested.durability == DurabilityPolicy.TRANSIENT_LOCAL:
                    continue
                for info in node.get_publishers_info_by_topic(sub.topic_name):
                    for policy in incompatible_policies(info.qos_profile, requested):
                        found[f"subscription {sub.topic_name} {policy}"] = (
                            f"incompatible QoS on subscription '{sub.topic_name}' ({policy}, publisher "
                            f"{endpoint_name(info)}): {_fix_hint(policy, 'subscription', sub.topic_name)}",
                            "",
                        )
        except Exception:  # the graph is a help, never a reason to fail the status
            return found
        return found

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
