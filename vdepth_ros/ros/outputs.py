"""The node's output publishers and what it publishes for one `DepthFrame`.

A window's frames are ready at once. With `output_pacing` (`pace`) they leave spread at the camera's
rate, since a subscriber's own short history (RViz's default depth 5, taken once per rendered frame)
loses the rest of a burst whatever the publisher does; without it, or when a worker catches up, they
leave in one burst (a few ms apart). A reliable publisher keeps at most its
history depth of unacknowledged messages, so with a depth smaller than the burst a reliable
subscriber in another process (RViz) loses frames: with depth 2, 83 of 100 `/depth` arrived across
processes. `output_qos_depth: 0` (the default) therefore sizes the history to two of the largest
bursts the schedule produces (`auto_depth`), and a depth below one burst (also through
`qos_overrides.<topic>.publisher.depth`) is warned about at start-up.

A topic one of whose subscribers sits in a stopped process (a frozen RViz, a process stopped in a
debugger) is slow to publish until that process's Fast DDS lease expires (20 s by default, 5 s with the
bundled profile): Fast DDS re-creates a shared-memory port for every 64 KB fragment it sends there,
~10 ms per 640x480 depth image, ~40 ms per cloud (`transport.py`; docs/node.md). So the worker
never publishes itself: each output has its own thread (`_Sender`) with a drop-oldest queue of two
bursts (`auto_depth`); a stuck subscriber costs its own topic's oldest pending messages (counted, one
rate-limited WARN naming the topic and its subscribers), and nothing waits for it. (The time Fast DDS
spends there is CPU and holds rclpy's GIL, so a frozen viewer of large topics still slows the process.)
"""

from __future__ import annotations

import copy
import functools
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from vdepth_ros.colormap import units_label
from vdepth_ros.node_params import auto_depth, runtime_set_advice
from vdepth_ros.ros import conversions as conv
from vdepth_ros.ros.qos import (
    IncompatibleQosReporter,
    endpoint_name,
    output_overrides,
    override_error,
    qos_profile,
)
from vdepth_ros.ros.transport import PROFILE_VARIABLE, bundled_profile
from vdepth_ros.ros.worker import DropOldestQueue, RateLimitedLog, SupervisedWorker

#: `pace`: a window's frames leave this share of the camera's frame period apart (so the last has left before
#: the next window's first is due), at most `PACE_MAX_S` apart (a slow camera's frames need not wait for long).
PACE_SHARE, PACE_MAX_S = 0.9, 0.25


def pace(frames: int, camera_period_s: float | None) -> float:
    """Seconds between two frames of a window published together (0: no pacing): RViz takes a topic's messages
    once per rendered frame (`spin_some` at its 30 Hz Frame Rate) into a history of 5 (its default
    `rclcpp::QoS(5)`), so of a window of 8 frames published back to back it kept the newest 5; spread at the
    camera's rate every frame arrives, and viewers show the stream as smoothly as the camera sent it."""
    if frames < 2 or not camera_period_s or camera_period_s <= 0:
        return 0.0
    return min(camera_period_s * PACE_SHARE, PACE_MAX_S)


#: The output topics of one frame status, relative to the node (`provisional/` prefixes the early ones).
#: `depth/image_rect` is the depth image again, beside `depth/camera_info` (`output_topic`).
MAIN_TOPICS = ("depth", "disparity", "points", "depth/camera_info", "depth/image_rect")
#: Every output topic a node may publish on (`publish: both` adds the provisional ones; the colormap).
OUTPUT_TOPICS = (*MAIN_TOPICS, *(f"provisional/{t}" for t in MAIN_TOPICS), "~/depth_colormap")


def output_topic(node: Node, topic: str) -> str:
    """The resolved name of the node's `topic` (an output's: one of `OUTPUT_TOPICS`).

    `depth/camera_info` (and `provisional/depth/camera_info`) goes under wherever its depth image
    resolves, unless it is remapped itself: `-r depth:=/front_cam/depth` puts the intrinsics on
    `/front_cam/depth/camera_info`, next to the image that depth_image_proc and RViz pair them with (a
    remap rule matches one name only, so before they stayed on `/depth/camera_info`).

    `depth/image_rect` (and its provisional one) goes beside wherever `depth/camera_info` resolves, unless it is
    remapped itself: the pair image_transport finds from the image (its `getCameraInfoTopic`, camera_common.cpp, used
    by every CameraSubscriber: RViz's Camera and DepthCloud displays, depth_image_proc: the image's parent namespace's
    `camera_info`). `/depth` is no such pair (its rule's camera_info is `/camera_info`, the node's input, whose size and
    intrinsics are the camera's, not those of depth with `output_resolution: model` or `max_output_width`)."""
    resolved = node.resolve_topic_name(topic)
    if resolved != node.resolve_topic_name(topic, only_expand=True):
        return resolved  # remapped itself
    parent, _, leaf = topic.rpartition("/")
    if not parent.endswith("depth"):
        return resolved
    if leaf == "camera_info":
        return node.resolve_topic_name(parent).rstrip("/") + "/camera_info"
    if leaf == "image_rect":  # beside the camera_info; beside depth if that has no camera_info name
        info = output_topic(node, f"{parent}/camera_info")
        if not info.endswith("/camera_info"):
            info = node.resolve_topic_name(parent).rstrip("/") + "/camera_info"
        return info.rpartition("/")[0] + "/image_rect"
    return resolved


def pair_is_needed(node: Node, prefix: str = "") -> bool:
    """Whether `depth/image_rect` goes on a topic of its own: not when `depth` already resolves there (`-r
    depth:=/cam/depth/image_rect -r depth/camera_info:=/cam/depth/camera_info`), so no topic carries the depth
    image twice."""
    return output_topic(node, f"{prefix}depth/image_rect") != output_topic(node, f"{prefix}depth")


#: image_transport's transports other than raw: a viewer set to one subscribes `<image topic>/<transport>`.
IMAGE_TRANSPORTS = ("compressed", "compressedDepth", "theora", "zstd", "ffmpeg")


def _other_type_hint(topic: str, wanted: str, other: str) -> str:
    """The fix for a subscriber of output `topic` that asks for message type `other` instead of `wanted`."""
    if other == "stereo_msgs/msg/DisparityImage":
        return (
            f"{topic} is relative (affine-invariant) disparity as a 32FC1 Image, not a stereo DisparityImage, which "
            "needs a focal length and baseline it does not have; use depth for metric depth (docs/node.md, Topics)"
        )
    return f"subscribe {wanted} (docs/node.md, Topics)"


def _stopped_fix() -> str:
    """What the held-up and slow WARNs advise: the profile by its installed path and how a process takes it (it
    said `config/fastdds_large_images.xml`, a path relative to nothing the user runs from, and not how)."""
    return (
        "resume or close that subscriber's process (DDS stops sending to a stopped process when its lease expires: "
        "20 s on Fast DDS's defaults, 5 s where that process was started with "
        f"{PROFILE_VARIABLE}={bundled_profile()}, as RViz should be; docs/node.md, Threads, queue, drops, faults)"
    )


def _publisher(node: Node, msg_type: type, topic: str, qos: QoSProfile, reporter: IncompatibleQosReporter) -> Any:
    """An output's publisher on `topic` (one of `OUTPUT_TOPICS`) with its `qos_overrides.*` and incompatible-QoS
    reporting.

    Raises:
        ConfigError: a `qos_overrides.<topic>.publisher.<policy>` value rclpy does not know (`qos.override_error`).
    """
    resolved = output_topic(node, topic)  # depth/camera_info follows depth
    try:
        return node.create_publisher(
            msg_type,
            topic if resolved == node.resolve_topic_name(topic) else resolved,
            copy.copy(qos),  # rclpy applies a topic's qos_overrides to the profile object in place
            event_callbacks=reporter.publisher(resolved),
            qos_overriding_options=output_overrides(),
        )
    except RuntimeError as err:  # rclpy: "Unexpected QoS override for policy `reliability`: `reliabel`"
        raise override_error(node, resolved, err) from None


class _Topics:
    """The publishers of one frame status (main topics, or `provisional/...`)."""

    def __init__(self, node: Node, prefix: str, qos: QoSProfile, reporter: IncompatibleQosReporter) -> None:
        def pub(msg_type: type, name: str) -> Any:
            return _publisher(node, msg_type, prefix + name, qos, reporter)

        depth, disparity, points, camera_info, image_rect = MAIN_TOPICS
        self.depth = pub(Image, depth)
        self.disparity = pub(Image, disparity)
        self.points = pub(PointCloud2, points)
        self.camera_info = pub(CameraInfo, camera_info)
        #: the depth image beside its camera_info, as image_transport pairs them (None where `depth` is there)
        self.image_rect = pub(Image, image_rect) if pair_is_needed(node, prefix) else None

    def all(self) -> list[Any]:
        pair = [self.image_rect] if self.image_rect is not None else []
        return [self.depth, self.disparity, self.points, self.camera_info, *pair]


#: A topic whose `publish()` calls took more than this share of the last `SLOW_WINDOW_S` is slow to
#: publish (healthy: a 640x480 cloud at 30 Hz takes ~10 %; to a stopped subscriber process ~100 %).
SLOW_SHARE, SLOW_WINDOW_S = 0.5, 5.0


class _Sender:
    """One output's publishing thread: `put` never waits; the thread publishes in order, each message not
    before its due time (`time.monotonic()`; 0: at once) unless a whole burst more waits behind it
    (`catch_up`) or the outputs are being drained (`hurry`)."""

    def __init__(
        self, publisher: Any, maxsize: int, on_error: Callable[[Any, BaseException], None], catch_up: int
    ) -> None:
        self.publisher = publisher
        self.queue: DropOldestQueue[tuple[float, Any]] = DropOldestQueue(maxsize)
        self.catch_up = max(1, int(catch_up))
        self.wake = threading.Event()  # a due time is no longer waited for (`hurry`, a burst behind)
        self.hurry = False
        self.last_due = 0.0  # the latest due time queued
        self.sent = 0
        self.abandoned = 0  # still pending when the node stopped
        self._done = 0  # published or failed
        #: (share of the time in publish(), seconds per message, when) of the last full window above SLOW_SHARE
        self._slow: tuple[float, float, float] | None = None
        self._window = (time.monotonic(), 0.0, 0)  # start, seconds in publish(), messages
        self._worker = SupervisedWorker(
            self.queue, self._publish, on_error, name=f"vdepth-publish{publisher.topic_name}"
        )
        self._worker.start()

    def put(self, due: float, msg: Any) -> bool:
        """Queue `msg` for `due`; True if an older message was dropped to make room."""
        dropped = self.queue.put((due, msg))
        self.last_due = max(self.last_due, due)
        if len(self.queue) >= self.catch_up:
            self.wake.set()
        return dropped

    def _publish(self, item: tuple[float, Any]) -> None:
        due, msg = item
        while not self.hurry and len(self.queue) < self.catch_up and (left := due - time.monotonic()) > 0:
            self.wake.wait(left)
            self.wake.clear()
        t0 = time.monotonic()
        try:
            self.publisher.publish(msg)
            self.sent += 1
        finally:
            self._done += 1
            self._time(t0, time.monotonic())

    def _time(self, t0: float, t1: float) -> None:
        start, busy, n = self._window
        busy, n = busy + t1 - t0, n + 1
        if t1 - start < SLOW_WINDOW_S:
            self._window = (start, busy, n)
            return
        share = busy / (t1 - start)
        self._slow = (share, busy / n, t1) if share > SLOW_SHARE else None
        self._window = (t1, 0.0, 0)

    @property
    def slow(self) -> tuple[float, float] | None:
        """(share of the time in `publish()`, seconds per message) of the latest window, if it ended within the
        last window and the share was above `SLOW_SHARE`."""
        slow = self._slow
        if slow is None or time.monotonic() - slow[2] > SLOW_WINDOW_S:
            return None
        return slow[0], slow[1]

    @property
    def dropped(self) -> int:
        return self.queue.dropped + self.abandoned

    def idle(self) -> bool:
        return self._done + self.queue.dropped + self.abandoned >= self.queue.put_count

    def stop(self, timeout_s: float) -> None:
        """Count what is still pending as dropped and end the thread (after a publish in progress)."""
        self.hurry = True
        self.wake.set()
        self.abandoned += self.queue.clear()
        if self._worker.join(timeout=timeout_s):  # (one taken just as it stopped is counted too)
            self.abandoned += max(0, self.queue.put_count - self._done - self.queue.dropped - self.abandoned)


def _rviz_advice(depth: np.ndarray, topics: str, colormap: str) -> str | None:
    """RViz's Image display (rviz_default_plugins' `ROSImageTexture`) with its default Normalize Range stretches each
    image from its smallest to its largest value, std::min/std::max over every pixel (the median of the last 5
    images'): one ±Inf (REP 118's beyond the far limit / nearer than `min_depth`) makes the range infinite and the
    whole image black. Its DepthCloud display takes finite depths only; the PointCloud2 display shows `points`."""
    infinite = np.isinf(depth)
    if not infinite.any():
        return None
    finite = depth[np.isfinite(depth)]
    nearest, farthest = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    low = "-Inf" if np.isneginf(depth).any() else f"{nearest:.2f}"
    high = "+Inf" if np.isposinf(depth).any() else f"{farthest:.2f}"
    return (
        f"RViz subscribes the depth image on {topics}: an Image display of it with the default Normalize Range "
        f"stretches each image from its smallest to its largest value, here {low}..{high} (REP 118: +Inf is beyond "
        f"the far limit, -Inf nearer than min_depth; {infinite.mean():.1%} of this image), so it shows the depth all "
        "black; in that display uncheck Normalize Range and set Min Value 0 and Max Value "
        f"{math.ceil(farthest) if farthest > 0 else 10} (m; the farthest finite depth here is {farthest:.2f} m), or "
        f"show {colormap}; its DepthCloud and PointCloud2 (points) displays are not affected"
    )


def _foxglove_advice(depth: np.ndarray, topics: str, colormap: str) -> str | None:
    """Foxglove's Image panel shows a 32FC1 image's 0..1 as black..white (value x 255, or its Min/Max value
    settings, 0 and 1 unless set): depth in metres is white beyond 1 m."""
    with np.errstate(invalid="ignore"):
        beyond = depth > 1.0
    if not beyond.any():
        return None
    finite = depth[np.isfinite(depth)]
    high = math.ceil(float(finite.max())) if finite.size and finite.max() > 0 else 10
    return (
        f"Foxglove (its bridge) subscribes the depth image on {topics}: its Image panel shows a 32FC1 image's 0..1 as "
        "black..white unless its Min/Max value are set, so depth in metres shows white beyond 1 m "
        f"({beyond.mean():.0%} of this image); in that panel set Max value {high} (m; the farthest finite depth here, "
        f"rounded up), or show {colormap}"
    )


#: Viewers that show the depth image unreadable with their defaults, by what their node's name contains (rviz2's node
#: is `rviz`, foxglove_bridge's `foxglove_bridge`) -> `advice(depth, "topic (nodes), ...", colormap)`: the INFO for a
#: depth image they would show so, or None (`colormap`: the colormap topic as resolved, and how to turn it on).
DEPTH_VIEWERS: dict[str, Callable[[np.ndarray, str, str], str | None]] = {
    "rviz": _rviz_advice,
    "foxglove": _foxglove_advice,
}


class OutputPublishers:
    """Creates the outputs and publishes `DepthFrame`s on them.

    Args:
        node: the node that owns the publishers.
        params: the node's ROS parameters (`output_qos`, `output_qos_depth`, `publish_colormap`...).
        publish_policy: the pipeline's `publish` ("both": early frames go to `provisional/...`).
        burst: `largest_burst` of the pipeline's schedule.
        reporter: incompatible-QoS reporting.
        warn: `warn(message)` for the start-up QoS warning.
        log: the node's rate-limited log (a subscriber that holds up an output).
    """

    def __init__(
        self,
        node: Node,
        params: dict[str, Any],
        publish_policy: str,
        burst: int,
        reporter: IncompatibleQosReporter,
        warn: Callable[[str], None],
        log: RateLimitedLog,
    ) -> None:
        self._node, self.p, self.policy, self.burst = node, params, publish_policy, int(burst)
        self._log = log
        self._senders: dict[str, _Sender] = {}  # by resolved topic, started on the first message
        self._held_noted: dict[str, float] = {}  # WARN key -> when it was last due
        # as `node_params.output_qos`, which vdepth-bag records; rclpy applies a topic's qos_overrides at creation
        qos = qos_profile(params["output_qos"], params["output_qos_depth"] or auto_depth(self.burst))
        self.main = _Topics(node, "", qos, reporter)
        self.provisional = _Topics(node, "provisional/", qos, reporter) if publish_policy == "both" else None
        self.colormap = _publisher(node, Image, "~/depth_colormap", qos, reporter)
        self._check_depth(warn)
        #: `DEPTH_VIEWERS` kind -> depth image topic -> the nodes of that kind subscribing it (`note_depth_viewers`)
        self._depth_viewers: dict[str, dict[str, list[str]]] = {}
        self._viewers_told: set[str] = set()  # kinds told (`_tell_viewers`)
        self._viewers_looked = -1e9  # when `_tell_viewers` last looked at a depth image

    def publishers(self) -> list[Any]:
        return [*self.main.all(), *(self.provisional.all() if self.provisional else []), self.colormap]

    def _check_depth(self, warn: Callable[[str], None]) -> None:
        """WARN once when an output's history (after any QoS override) is shorter than a window's burst."""
        short = [
            (pub.topic_name, pub.qos_profile.depth)
            for pub in self.publishers()
            if pub.qos_profile.history == HistoryPolicy.KEEP_LAST and pub.qos_profile.depth < self.burst
        ]
        if short:
            names = ", ".join(f"{topic} ({depth})" for topic, depth in short)
            warn(
                f"output history depth below the {self.burst} frames one window publishes at once on {names}: a "
                "reliable subscriber in another process (RViz) can miss frames; set output_qos_depth to 0 (auto) "
                f"or >= {self.burst} (docs/node.md, QoS)"
            )

    def shared_topics(self) -> dict[str, list[str]] | None:
        """Output topics that another publisher also publishes -> the nodes publishing there (this
        node included). Each output has one publisher of this node, so a second one is another node:
        most often this node started again in another process for a second camera without its own
        namespace, whose frames then interleave with these on every subscriber. None while one of them is
        not known yet."""
        shared = {}
        for pub in self.publishers():
            infos = self._node.get_publishers_info_by_topic(pub.topic_name)
            if len(infos) > 1:
                shared[pub.topic_name] = sorted(endpoint_name(i) for i in infos)
        if any("_UNKNOWN_" in name for nodes in shared.values() for name in nodes):
            return None  # DDS has the endpoint but not yet its node's name (rmw's _NODE_NAME_UNKNOWN_): next time
        return shared

    def check_unserved_subscribers(self) -> None:
        """WARN, once per topic and type, for subscribers that get nothing from an output without an error anywhere:
        one asking for another message type on its topic (DDS matches none: `stereo_msgs/DisparityImage` on
        disparity, `PointCloud` on points), or a viewer set to an image_transport transport (`<output>/compressed`,
        `compressedDepth`...: RViz's Transport Hint, rqt_image_view) that nothing publishes, since this node
        publishes raw images only. On /diagnostics while such a subscriber is there. Called from the status timer."""
        node, problems = self._node, self._log.problems
        found: dict[str, tuple[str, str]] = {}
        held = problems.found("unserved-subscribers")

        def unserved(key: str, names: set[str], summary: str, message: str) -> None:
            if not any("_UNKNOWN_" in n for n in names):
                found[key] = (summary, message)
            elif key in held:  # (a name not known yet, of a subscriber named before: it is still there)
                found[key] = (summary, "")

        for pub in self.publishers():
            topic, wanted = pub.topic_name, conv.type_name(pub.msg_type)
            by_type: dict[str, set[str]] = {}
            for info in node.get_subscriptions_info_by_topic(topic):
                if info.topic_type != wanted:
                    by_type.setdefault(info.topic_type, set()).add(endpoint_name(info))
            for other, names in sorted(by_type.items()):
                unserved(
                    f"{topic} {other}",
                    names,
                    f"a subscriber of {topic} asks for {other}, not {wanted}: it gets nothing",
                    f"a subscriber of {topic} ({', '.join(sorted(names))}) asks for {other}, but this node "
                    f"publishes {wanted} there, so it gets nothing: {_other_type_hint(topic, wanted, other)}",
                )
            for transport in IMAGE_TRANSPORTS if pub.msg_type is Image else ():
                stream = f"{topic.rstrip('/')}/{transport}"
                names = {endpoint_name(i) for i in node.get_subscriptions_info_by_topic(stream)}
                if not names or node.get_publishers_info_by_topic(stream):
                    continue
                unserved(
                    f"{topic} {transport}",
                    names,
                    f"{stream} has subscribers but no publisher (this node publishes raw images only): set the "
                    "viewer's transport to raw",
                    f"{stream}, image_transport's '{transport}' stream of {topic}, has subscribers "
                    f"({', '.join(sorted(names))}) but no publisher: this node publishes raw images only, so they "
                    "get nothing; set the viewer's transport to raw (RViz: the display's Transport Hint; "
                    f"rqt_image_view: the topic {topic} itself), or republish it with image_transport's republish",
                )
        problems.report("unserved-subscribers", found)

    def note_depth_viewers(self) -> None:
        """Find the viewers of `DEPTH_VIEWERS` (by their node's name) among the subscribers of the depth images, so
        that `publish` tells each kind once how to see them (`_tell_viewers`). Called from the status timer (no
        graph query per message)."""
        found: dict[str, dict[str, list[str]]] = {}
        for topics in (self.main, self.provisional) if self.provisional is not None else (self.main,):
            for pub in (topics.depth, topics.image_rect):
                if pub is None:
                    continue
                infos = self._node.get_subscriptions_info_by_topic(pub.topic_name)
                for kind in DEPTH_VIEWERS.keys() - self._viewers_told:
                    names = sorted({endpoint_name(i) for i in infos if kind in i.node_name.lower()})
                    if names:
                        found.setdefault(kind, {})[pub.topic_name] = names
        self._depth_viewers = found

    def _colormap_hint(self) -> str:
        """The colormap topic as a viewer subscribes it (namespace and node name resolved: `~/depth_colormap` named
        no topic a user can type into RViz), and, while it is off, the command that turns it on at runtime."""
        topic = self.colormap.topic_name
        if self.p["publish_colormap"]:
            return f"{topic} (the depth in colour with its scale)"
        turn_on = runtime_set_advice(self._node.get_fully_qualified_name(), "publish_colormap", "true")
        return f"{topic} (the depth in colour with its scale; off now: to turn publish_colormap on, {turn_on})"

    def _tell_viewers(self, depth: np.ndarray) -> None:
        """One INFO per kind of viewer of `note_depth_viewers`, at the first depth image it would show unreadable
        (looked at once a second at most: a viewer that never sees one costs no pass over every image)."""
        now = time.monotonic()
        if now < self._viewers_looked + 1.0:
            return
        self._viewers_looked = now
        for kind, on in list(self._depth_viewers.items()):
            if kind in self._viewers_told:
                continue
            topics = ", ".join(f"{t} ({', '.join(names)})" for t, names in on.items())
            advice = DEPTH_VIEWERS[kind](depth, topics, self._colormap_hint())
            if advice:
                self._viewers_told.add(kind)
                self._node.get_logger().info(f"{advice} (docs/outputs.md, Viewers)")

    def has_subscribers(self) -> bool:
        """True if anything listens to an output."""
        return any(p.get_subscription_count() > 0 for p in self.publishers())

    def wait_for_acks(self, timeout_s: float, hurry: threading.Event | None = None) -> bool:
        """Shutdown: wait (bounded, or until `hurry` is set) until reliable subscribers acknowledged what
        was published, so the last window is not lost with the process; True if all were."""
        from rclpy.duration import Duration

        deadline = time.monotonic() + timeout_s
        for pub in self.publishers():
            if pub.get_subscription_count() == 0:
                continue
            # in slices, so a second signal is handled within one (the wait is a C call)
            while True:
                left = max(0.0, min(0.1, deadline - time.monotonic()))
                if pub.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9))):
                    break
                if time.monotonic() >= deadline or (hurry is not None and hurry.is_set()):
                    return False
        return True

    @property
    def sent(self) -> Counter[str]:
        """Messages published, by resolved topic."""
        return Counter({topic: s.sent for topic, s in list(self._senders.items()) if s.sent})

    @property
    def slow(self) -> dict[str, float]:
        """Topics whose `publish()` took more than `SLOW_SHARE` of the latest `SLOW_WINDOW_S` -> that share."""
        return {topic: slow[0] for topic, s in list(self._senders.items()) if (slow := s.slow) is not None}

    @property
    def dropped(self) -> Counter[str]:
        """Messages dropped unpublished because a subscriber held their topic up, by resolved topic."""
        return Counter({topic: s.dropped for topic, s in list(self._senders.items()) if s.dropped})

    def drain(self, timeout_s: float, hurry: threading.Event | None = None) -> bool:
        """Wait (bounded, or until `hurry` is set) until every pending message is published; True if all
        were. Paced messages keep their pace (a viewer's short history would lose a burst) unless the last
        is due too late for the bound: then they all go now."""
        deadline = time.monotonic() + timeout_s
        senders = list(self._senders.values())
        late = any(s.last_due > deadline - 0.2 for s in senders if not s.idle())
        for sender in senders if late or (hurry is not None and hurry.is_set()) else ():
            sender.hurry = True
            sender.wake.set()
        try:
            while not all(s.idle() for s in senders):
                if time.monotonic() >= deadline or (hurry is not None and hurry.is_set()):
                    return False
                time.sleep(0.005)
            return True
        finally:
            for sender in senders:
                sender.hurry = False

    def stop(self, timeout_s: float, hurry: threading.Event | None = None) -> None:
        """Shutdown: publish what is pending (for at most `timeout_s`, or until `hurry` is set), count
        the rest as dropped and end the publishing threads."""
        self.drain(timeout_s, hurry)
        for sender in list(self._senders.values()):
            sender.stop(timeout_s=0.0 if hurry is not None and hurry.is_set() else 1.0)

    def destroy(self) -> None:
        self.stop(timeout_s=0.0)
        for pub in self.publishers():
            self._node.destroy_publisher(pub)

    def is_main(self, f: Any) -> bool:
        """Whether the `DepthFrame` goes to the main topics (not a provisional one of "both", to `provisional/...`)."""
        return not (self.policy == "both" and f.status == "provisional" and self.provisional is not None)

    def publish(self, f: Any, due: float = 0.0) -> bool:
        """Publish one `DepthFrame` on the topics that have subscribers, not before `due` (`time.monotonic()`;
        0: at once; `pace` spreads a window's frames so); True if it went to the main topics ("both":
        provisional frames go to `provisional/...`)."""
        topics = self.main if self.is_main(f) else self.provisional
        assert topics is not None
        header: Header = f.meta if isinstance(f.meta, Header) else Header(stamp=conv.ns_to_stamp(f.stamp_ns))
        if f.depth is not None and self._depth_viewers:
            self._tell_viewers(f.depth)
        if f.depth is not None:  # one message for depth and its image_transport pair, built once
            depth = functools.cache(lambda: conv.image_msg(f.depth, "32FC1", header))
            self._send(topics.depth, depth, due)
            if topics.image_rect is not None:
                self._send(topics.image_rect, depth, due)
        self._send(topics.disparity, lambda: conv.image_msg(f.disparity, "32FC1", header), due)
        if f.points is not None:
            self._send(topics.points, lambda: conv.cloud_msg(f.points, f.colors, header), due)
        if f.camera is not None:
            self._send(topics.camera_info, lambda: conv.info_msg(f.camera, header), due)
        if topics is not self.main:
            return False
        if self.p["publish_colormap"]:
            values = f.depth if f.depth is not None else f.disparity
            lo, hi = self.p["colormap_min"], self.p["colormap_max"]
            label = units_label(f.depth is not None, f.fit.scale_source)
            self._send(
                self.colormap,
                # image | depth side by side above a colour bar with units, as vdepth-video's preview
                lambda: conv.colormap_msg(
                    values, header, lo, hi, near_is_high=f.depth is None, rgb=getattr(f, "rgb", None), label=label
                ),
                due,
            )
        return True

    def _send(self, publisher: Any, message: Callable[[], Any], due: float) -> None:
        """Build the message only for a topic somebody listens to and hand it to the topic's thread, to be
        published not before `due` (`time.monotonic()`; 0: at once)."""
        if publisher.get_subscription_count() == 0:
            return
        topic = publisher.topic_name
        sender = self._senders.get(topic)
        if sender is None:
            # two bursts, as the history (`auto_depth`): a worker catching up publishes two windows back to back
            depth = auto_depth(max(self.burst, 1))
            sender = _Sender(publisher, depth, lambda _msg, err: self._publish_failed(topic, err), self.burst)
            self._senders[topic] = sender
        if sender.put(due, message()):
            self._note_held_up(topic, sender)
        elif sender.slow is not None:
            self._note_slow(topic, sender.slow)

    def _due(self, key: str) -> bool:
        """Whether the WARN `key` is due (once per log period; no graph query per message)."""
        now = time.monotonic()
        if now - self._held_noted.get(key, -1e9) < self._log.period:
            return False
        self._held_noted[key] = now
        return True

    def _subscribers(self, topic: str) -> str:
        try:
            return ", ".join(sorted(endpoint_name(i) for i in self._node.get_subscriptions_info_by_topic(topic)))
        except Exception:
            return "unknown"

    def _note_held_up(self, topic: str, sender: _Sender) -> None:
        """WARN (rate-limited per topic) that a subscriber does not take `topic`'s messages."""
        if not self._due(f"held-up:{topic}"):
            return  # the message says how many so far
        self._log.warning(
            f"held-up:{topic}",
            f"a subscriber of {topic} does not take its messages (its subscribers: {self._subscribers(topic)}; a "
            "frozen or stopped RViz, a process paused in a debugger, or one that died and DDS has not timed out yet): "
            f"{sender.dropped} pending {topic} messages dropped so far, oldest first, so that the depth stream and "
            f"the other outputs go on; {_stopped_fix()}",
            summary="",  # (the status's rule for outputs dropped)
        )

    def _note_slow(self, topic: str, slow: tuple[float, float]) -> None:
        """WARN (rate-limited per topic) that publishing `topic` takes most of the time, before anything is dropped:
        DDS is still sending to a stopped subscriber process, and the node and the topic's other subscribers fall
        behind (its camera frames then show up as lost before the node)."""
        if not self._due(f"slow:{topic}"):
            return
        share, per_message = slow
        self._log.warning(
            f"slow:{topic}",
            f"publishing {topic} takes {per_message * 1e3:.0f} ms per message, {share:.0%} of the last "
            f"{SLOW_WINDOW_S:.0f} s: most likely a subscriber of it sits in a stopped process (its subscribers: "
            f"{self._subscribers(topic)}; a frozen RViz, a process paused in a debugger) or the network to one is "
            f"too slow for it, and this node and the other subscribers of {topic} fall behind meanwhile; "
            f"{_stopped_fix()}",
            summary="",  # (the status's rule for outputs slow to publish)
        )

    def _publish_failed(self, topic: str, err: BaseException) -> None:
        """A publishing thread's report: rate-limited; the thread goes on with the next message."""
        self._log.error(
            f"publish:{type(err).__name__}",
            f"publishing on {topic} failed ({type(err).__name__}: {err})",
            summary=f"publishing on {topic} failed ({type(err).__name__})",
        )
