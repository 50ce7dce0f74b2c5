"""The node's inputs: subscriptions and their callbacks, which pair, count and enqueue, never block
and never raise.

Every received image is counted (rate, frames lost before the node, the watchdog) before anything
can refuse it. Images are paired with camera_info (`inputs.sync`) and queued for the worker with
their arrival time and the stamp of the image received before them, so the worker measures gaps
between *input* stamps (`inputs.resets`) and matches sparse depth or poses by the shared rule
(`inputs.samples`), whatever it dropped or however late it takes the frame.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from geometry_msgs.msg import PoseStamped
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.subscription import MessageInfo
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from vdepth_ros.errors import InputError
from vdepth_ros.inputs.assembly import (
    DEPTH_STREAM_FIX,
    check_input_size,
    is_depth_stream_name,
)
from vdepth_ros.inputs.calibration import info_image_size
from vdepth_ros.inputs.decode import image_size
from vdepth_ros.inputs.loss import InputLossMeter, PublisherSequences
from vdepth_ros.inputs.resets import PAUSE_MIN_S, PauseRule, ReplaySpeed, clock_step_ns
from vdepth_ros.inputs.samples import TimedSamples
from vdepth_ros.inputs.sync import REPEATED_STAMP, UNSET_STAMP, ApproximateTimeSync, InputRate, Pair
from vdepth_ros.paths import config_dir
from vdepth_ros.ros import conversions as conv
from vdepth_ros.ros.diagnostics import RateMeter, StampClock, Watchdog
from vdepth_ros.ros.qos import IncompatibleQosReporter, endpoint_name, qos_profile
from vdepth_ros.ros.transport import PROFILE_NAME, PROFILE_VARIABLE
from vdepth_ros.ros.worker import DropOldestQueue, RateLimitedLog

#: The problem named while the image stamps keep no steady frame period (`InputLossMeter.measurable`).
UNMEASURABLE_LOSS = {
    "stamps": (
        "cannot measure loss: no steady frame period in the image stamps (a driver stalling and catching up)",
        "cannot measure the frames lost before this node: the image stamps keep no steady frame period (most of "
        "the time goes to stalls and to frames sent in bursts after them: a driver that stamps each frame as it "
        "publishes it, on a loaded machine or behind a slow grab). Until they do, no loss is counted from them "
        "(/diagnostics: 'lost before the node' says so; frames the publisher sent and never arrived are still "
        "counted by their DDS sequence numbers). Stamp frames with their capture time (the camera's hardware "
        "clock, or the time the driver grabbed them) and keep the driver from stalling (docs/node.md#qos).",
    )
}
#: `unmatched_sample_reason`: no sparse_depth message for this long (steady seconds) after some came is a sensor
#: that stopped publishing (dropped out), not one stamping with another clock (which keeps sending them)
SAMPLES_STOPPED_S = 2.0
#: Where the input-loss warning sends the user (docs section written from measurements).
ACROSS_PROCESSES = "docs/node.md#across-processes"

#: camera_infos sent and never received (`InputSide._count_info_loss`) before a WARN, and their least share of those
#: sent: more than a driver's stall now and then loses (3 of 66 in test_ros_stream_ends.py), which costs nothing
INFO_LOSS_WARN_AFTER = 5
INFO_LOSS_WARN_SHARE = 0.05

#: A `PauseRule.stretch` this large (images arriving 1.5x slower than their stamps: no camera's
#: jitter) is a slow-motion replay, named once in the log.
REPLAY_STRETCH_NOTED = 1.5
#: `InputSide.ended`: how often (steady seconds) the graph is asked whether the input's publishers are gone
ENDED_CHECK_S = 0.5
#: `input_qos: auto`: how often (steady seconds) the input topics' publishers are looked up (`check_input_qos`)
INPUT_QOS_CHECK_S = 0.1
#: `endpoint_name` of an endpoint whose node DDS has not named yet (rmw's placeholders)
UNKNOWN_NODE = "_NODE_NAMESPACE_UNKNOWN_/_NODE_NAME_UNKNOWN_"


def _queued_ns(info: MessageInfo | None) -> int:
    """How long an image waited in its subscription before its callback ran (rmw's reception time; 0 where
    the middleware gives none). Its arrival is when DDS received it: an executor busy elsewhere (a loaded
    machine) takes several at once, and on the callback's clock a replay at 0.2x looked like real time
    (the pause rule then restarted the stream between its frames) and a steady camera like bursts."""
    received = info.get("received_timestamp") if info else None
    if not received:
        return 0
    age = time.time_ns() - int(received)
    return age if 0 <= age < 10_000_000_000 else 0  # (another clock's value, or none: no correction)


def image_camera_info_topic(image_topic: str) -> str:
    """The camera_info topic of an image topic by image_transport's convention (`getCameraInfoTopic`):
    `camera_info` in the namespace of the image's base topic (`/cam/color/image_raw` and its
    `/cam/color/image_raw/compressed` -> `/cam/color/camera_info`)."""
    base = image_topic.rstrip("/").removesuffix("/compressed")
    return base.rsplit("/", 1)[0] + "/camera_info"


def image_subscription(image_topic: str, transport: str) -> tuple[str, bool]:
    """(topic, compressed) the node subscribes for the resolved `image` topic and `image_transport`.

    image_transport's convention: with the compressed transport, base topic `/cam/image_raw` is
    read from `/cam/image_raw/compressed`; a base topic that already names the compressed stream
    (ends in `/compressed`) is taken as it is, so both ways of writing it work. `auto` picks
    compressed for a topic ending in `/compressed`, else raw.
    """
    named_compressed = image_topic.endswith("/compressed")
    if transport == "compressed":
        return (image_topic if named_compressed else image_topic.rstrip("/") + "/compressed"), True
    return image_topic, transport == "auto" and named_compressed


def _reliability_name(reliability: ReliabilityPolicy) -> str:
    return "reliable" if reliability == ReliabilityPolicy.RELIABLE else "best effort"


def _type_hint(is_image: bool, wanted: str, published: str, topic: str = "") -> str:
    """What to change when `topic` carries `published` and this node wants `wanted` there."""
    if is_image and is_depth_stream_name(topic):  # no transport makes a depth image a colour one
        return DEPTH_STREAM_FIX
    if is_image and wanted.endswith("/CompressedImage") and published.endswith("/Image"):
        return "remap image to the camera's base topic (compressed reads <base>/compressed), or image_transport:=raw"
    if is_image and wanted.endswith("/Image") and published.endswith("/CompressedImage"):
        return "set image_transport:=compressed, or remap image to the raw stream"
    if not is_image and wanted.endswith("/Image") and published.endswith("/CompressedImage"):
        return (
            "a depth camera's compressed stream is read by its image_transport name, <base>/compressedDepth (or "
            "<base>/compressed): remap sparse_depth to it (e.g. /camera/aligned_depth_to_color/image_raw/"
            "compressedDepth), or to the raw depth topic"
        )
    return "check the remapping of this topic (and the sparse_depth parameter for sparse_depth / camera_pose)"


@dataclass
class InputItem:
    """One synchronised input waiting for the worker."""

    stamp_ns: int
    image: Image | CompressedImage
    info: CameraInfo | None
    info_source: str
    arrival_ns: int  # time.monotonic_ns() when the image arrived
    previous_input_ns: int | None  # stamp of the image received before it (None after a pause)
    clock_step_ns: int = 0  # how far the stamps' clock stepped forward before it (`inputs.resets.clock_step_ns`)


def loss_count(loss: InputLossMeter) -> str:
    """The frames lost before the node as /diagnostics and the shutdown summary say it: the count, and where the
    stamps kept no steady frame period for some images (`InputLossMeter.measurable`), that its loss is unknown."""
    text = f"{loss.lost} lost before the node"
    notes = [f"{loss.in_transport} of them sent and never taken"] if loss.in_transport else []
    if not loss.measurable:
        text = f"cannot measure loss: no steady frame period in the image stamps ({loss.lost} counted before)"
    elif loss.unmeasured:
        notes.append(f"not measurable for {loss.unmeasured} images: no steady frame period in their stamps")
    return text + (f" ({'; '.join(notes)})" if notes else "")


class InputSide:
    """Subscriptions, pairing and the input queue of one camera stream.

    Args:
        node: the node that owns the subscriptions.
        params: the node's ROS parameters.
        log: the node's rate-limited log.
        reporter: incompatible-QoS reporting.
        wants_frames: False while no output has a subscriber (`skip_when_unsubscribed`).
        watchdog: told about every image that is not skipped.
    """

    def __init__(
        self,
        node: Node,
        params: dict[str, Any],
        log: RateLimitedLog,
        reporter: IncompatibleQosReporter,
        wants_frames: Callable[[], bool],
        watchdog: Watchdog,
    ) -> None:
        self._node, self.p, self.log, self._reporter = node, params, log, reporter
        self._wants_frames, self._watchdog = wants_frames, watchdog
        self._lock = threading.Lock()
        self._sample_arrived = threading.Condition(self._lock)
        self.sync: ApproximateTimeSync[tuple[Any, int, int | None], CameraInfo] = ApproximateTimeSync(
            int(params["sync_slop"] * 1e9), params["sync_queue_size"], int(params["camera_info_timeout"] * 1e9)
        )
        mode = params["sparse_depth"]
        slop_ns = int(params["sparse_depth_slop"] * 1e9)
        self.samples: TimedSamples[Any] = TimedSamples(slop_ns, 512 if mode == "pose" else 32)
        self.loss = InputLossMeter(int(params["max_gap"] * 1e9))
        self.sequences = PublisherSequences()
        # camera_infos by their publisher's sequence numbers: those sent that never arrived (`_count_info_loss`)
        self.info_sequences = PublisherSequences()
        self.infos_received = 0
        self.infos_lost = 0
        self._info_loss_warned = False
        self.rate = RateMeter()  # every image received
        self.taken = RateMeter()  # the images the stream takes (not refused, not thinned by max_input_rate)
        self._first_taken_s: float | None = None  # time.monotonic() of the first image taken
        self._drops = RateMeter()  # frames dropped from the full queue
        self.skipped = 0
        self.thinned = 0  # images left out by max_input_rate
        self.samples_received = 0  # sparse_depth / camera_pose messages
        self.sample_arrived_s = 0.0  # time.monotonic() of the last one
        self.subscriptions: list[Any] = []
        #: `input_qos: auto`: subscription -> (message type, topic name, callback) of those that follow their
        #: publishers' reliability (`check_input_qos`)
        self._following: dict[Any, tuple[type, str, Callable[[Any], None]]] = {}
        self._qos_timer: Any = None
        self.image_topic = ""  # the topic the images are read from (`subscribe`)
        self.queue: DropOldestQueue[InputItem] = self._new_queue()
        self.on_first_image: Callable[[], None] | None = None
        self._loss_warned = False
        self._loss_measurable = True  # (`InputLossMeter.measurable` as last reported to "problems")
        self._last_arrival: tuple[int, int] | None = None  # (stamp, steady arrival) of the last image (`_clock_step`)
        self._replay_noted = False
        self._info_arrived = False
        self._latched_info: Any = None  # the transient_local camera_info subscription, once one is needed
        self._unpaired_checked_ns = 0  # time.monotonic_ns() of its last check
        self._ended_checked = 0.0  # time.monotonic() of the last `ended` graph query
        self._restart_stream_state()

    def _restart_stream_state(self) -> None:
        self._last_stamp: int | None = None
        self._paused = True  # nothing received yet: the first image has no previous input
        # the images taken, as they arrive on the node's clock: when the camera has paused
        self.pauses = PauseRule(self.p["pause_flush"], self.p["max_gap"])
        # the same on the steady clock the sparse samples wait by (slower under use_sim_time's slow replay)
        self.arrival_speed = ReplaySpeed()
        self.input_rate = InputRate(self.p["max_input_rate"])
        # how far the stamps are from the node's clock on arrival: the latency means something only on one clock
        self.stamp_clock = StampClock()

    # -- subscriptions -----------------------------------------------------------------------
    def _new_queue(self) -> DropOldestQueue[InputItem]:
        """The input queue; a standing backlog is drained down to a window's new frames (the schedule's stride:
        what a worker keeping pace holds at most between two windows)."""
        pipeline = getattr(self._node, "pipeline", None)
        stride = int(pipeline.schedule["stride"]) if pipeline is not None else 1
        return DropOldestQueue(self.p["queue_size"], self.p.get("queue_drain_after", 0.0), stride)

    def subscribe(self) -> str:
        """Create the subscriptions (a new queue); returns a description for the start-up log."""
        node, p = self._node, self.p
        image_topic, compressed = image_subscription(node.resolve_topic_name("image"), p["image_transport"])
        self.image_topic = image_topic
        topics: list[tuple[type, str, Callable[[Any], None]]] = [
            (CompressedImage if compressed else Image, image_topic, self._on_image_with_info),
            (CameraInfo, "camera_info", self._on_info_with_info),
        ]
        # camera_info best effort, which matches every driver's: a reliable subscription matched no best-effort
        # camera_info next to reliable images (a driver's SensorDataQoS), and a lost one is paired around
        qos_of = {"camera_info": qos_profile("best_effort", p["input_qos_depth"])}
        if p["sparse_depth"] != "none":
            mode = p["sparse_depth"]
            sparse_type = {"image": Image, "pointcloud": PointCloud2, "pose": PoseStamped}[mode]
            sparse_topic = node.resolve_topic_name("sparse_depth")
            if mode == "image" and (is_depth_stream_name(sparse_topic) or sparse_topic.endswith("/compressed")):
                sparse_type = CompressedImage  # a depth camera's compressedDepth (png, rvl) or compressed (png) stream
            topics.append((sparse_type, "camera_pose" if mode == "pose" else "sparse_depth", self._on_sparse))
        self.queue = self._new_queue()
        self._info_arrived = False
        self._latched_info = None
        self.subscriptions, self._following = [], {}
        for msg_type, topic, cb in topics:
            if topic in qos_of:
                sub = self._subscription(msg_type, topic, cb, qos_of[topic])
            elif p["input_qos"] == "auto":
                reliability = self._publishers_reliability(node.resolve_topic_name(topic), msg_type)[0]
                sub = self._subscription(msg_type, topic, cb, self._auto_profile(reliability), following=True)
                self._following[sub] = (msg_type, topic, cb)
            else:
                sub = self._subscription(msg_type, topic, cb, qos_profile(p["input_qos"], p["input_qos_depth"]))
            self.subscriptions.append(sub)
        if self._following:
            # its own steady timer: a driver started after the node is followed within a second, whatever
            # diagnostics_period, and under use_sim_time without a /clock too
            steady = Clock(clock_type=ClockType.STEADY_TIME)
            self._qos_timer = node.create_timer(INPUT_QOS_CHECK_S, self.check_input_qos, clock=steady)
        self.check_camera_info()  # a latched camera_info already discovered: take it now
        qos = p["input_qos"]
        if qos == "auto":
            first = _reliability_name(self.subscriptions[0].qos_profile.reliability)
            qos = f"auto: {first}, following its publishers"
        kind = "compressed" if compressed else "raw"
        return f"{image_topic} ({kind}, {qos}) and {node.resolve_topic_name('camera_info')}"

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
                f"'{topic}' is published {_reliability_name(reliability)}"
                + (f" (by {', '.join(publishers)})" if publishers else "")
                + f": subscribed "
                f"{_reliability_name(reliability)} ({why}; input_qos auto)",
            )

    def ended(self) -> str | None:
        """Why the input has ended for good while the node runs, or None: the images' topic has no publisher
        any more (the camera driver or the bag player exited), or, under use_sim_time, /clock has none (the
        player that drove the node's clock exited, while a republish node may still publish the images): no
        pause on the node's clock will come then. Asked once no image came for `PAUSE_MIN_S` of the steady
        clock (the last ones in flight are taken first), at most every `ENDED_CHECK_S`."""
        last, now = self.rate.last, time.monotonic()
        if last is None or now - last < PAUSE_MIN_S or now - self._ended_checked < ENDED_CHECK_S:
            return None
        self._ended_checked = now
        node = self._node
        if self.image_topic and node.count_publishers(self.image_topic) == 0:
            return f"{self.image_topic} has no publisher any more"
        if node.get_clock().ros_time_is_active and node.count_publishers("/clock") == 0:
            return "/clock has no publisher any more (use_sim_time: this node's clock stopped with it)"
        return None

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
                    f"messages arrive: {_type_hint(topic == self.image_topic, wanted, other, topic)}",
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

    def unsubscribe(self) -> None:
        """Stop taking input: subscriptions destroyed; the images still waiting for their camera_info
        queued with the last one (as at the end of a bag: a stop between a driver's image and its
        camera_info lost that image); the queue closed, buffers cleared."""
        for sub in self.subscriptions:
            self._node.destroy_subscription(sub)
        self.subscriptions, self._following = [], {}
        if self._qos_timer is not None:
            self._node.destroy_timer(self._qos_timer)
            self._qos_timer = None
        self.release_waiting()
        self.queue.close()
        with self._lock:
            self.sync.clear()
            self.samples.clear()
            self.loss.reset()
            self.sequences.reset()  # (a new subscription: what was sent meanwhile is not loss)
            self.info_sequences.reset()
            self._restart_stream_state()

    def release_waiting(self) -> int:
        """The camera paused (`FrameProcessor.on_idle`): the images still waiting for their camera_info
        are queued now with the nearest one (`ApproximateTimeSync.flush`), as at a stop, rather than
        when the camera resumes (their camera_info lost, or the driver stalled between an image and its
        camera_info). Returns how many."""
        with self._lock:
            pending = [] if self.queue.closed else self.sync.flush()
        self._enqueue(pending)
        return len(pending)

    # -- callbacks (executor thread) ---------------------------------------------------------
    def _on_image_with_info(self, msg: Image | CompressedImage, info: MessageInfo) -> None:
        """The image subscription's callback: with rmw's message info (its publisher's sequence number)."""
        self._on_image(msg, info)

    def _on_image(self, msg: Image | CompressedImage, info: MessageInfo | None = None) -> None:
        try:
            self._take_image(msg, info)
        except Exception as err:  # a callback must never raise
            self.log.error(
                "image-callback",
                f"image callback failed: {err!r}",
                summary=f"the image callback failed ({type(err).__name__})",
            )

    def _take_image(self, msg: Image | CompressedImage, info: MessageInfo | None) -> None:
        stamp, now = conv.stamp_to_ns(msg.header.stamp), time.monotonic_ns()
        # the replay speed and pauses by when DDS received it (the samples' rule keeps the callbacks' clock,
        # which the samples' arrivals are noted on)
        queued = _queued_ns(info)
        self.rate.tick()
        if self.rate.total == 1 and self.on_first_image is not None:
            self.on_first_image()
        clock_step = self._clock_step(stamp, now - queued)
        self._count_loss(stamp, info, clock_step)
        if self.p["skip_when_unsubscribed"] and not self._wants_frames():
            self.skipped += 1
            self._paused = True  # the stream restarts by its own gap rule when output is wanted again
            return
        clock = self._node.get_clock()
        sim_time = getattr(clock, "ros_time_is_active", False)  # (/clock's time in the queue is not the wall's)
        clock_ns = clock.now().nanoseconds
        if not (sim_time and clock_ns == 0):  # (under sim time before a /clock its time is unknown, not 0:
            # noted at 0 and then at the player's clock, the first step read as a replay 16x slower)
            self.pauses.note(clock_ns - (0 if sim_time else queued), stamp)
            if stamp:  # (an unset stamp is named as such)
                self.stamp_clock.note(clock_ns - (0 if sim_time else queued), stamp)
        self.arrival_speed.note(now - queued, stamp)
        self._note_replay_speed()
        with self._lock:
            last = self._last_stamp
            previous, self._paused = (None if self._paused else last), False
            admitted = self.sync.admit_image(stamp, last)
            if admitted:
                self._last_stamp = stamp  # (a thinned image too: gaps are measured between images received)
            thinned = admitted and not self.input_rate.take(stamp)
        if thinned:  # max_input_rate: not this one (no input for the watchdog: no output is due for it)
            self.thinned += 1
            return
        self._watchdog.input()
        if not admitted:
            why = UNSET_STAMP if stamp == 0 else REPEATED_STAMP
            self.log.error(
                "duplicate-stamp", f"dropping the image stamped {stamp}: {why}", summary=f"dropping images: {why}"
            )
            return
        self.taken.tick()
        if self._first_taken_s is None:
            self._first_taken_s = time.monotonic()
        try:
            check_input_size(msg, self.p["max_input_pixels"])
        except InputError as err:
            self.log.error(
                "too-large",
                f"dropping input frame {stamp}: {err}",
                summary="dropping input frames over max_input_pixels",
            )
            return
        with self._lock:
            pairs = self.sync.add_image(stamp, (msg, now, previous, clock_step), image_size(msg), now - queued)
        self._enqueue(pairs)
        if now - self._unpaired_checked_ns > 1_000_000_000:
            self._unpaired_checked_ns = now
            self.check_camera_info_stamps()

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

    def _note_replay_speed(self) -> None:
        """INFO once when the images arrive slower than their stamps say (a recording replayed in slow
        motion, a simulator slower than real time, without use_sim_time): the pause rules then stretch
        their bounds (`PauseRule.stretch`)."""
        stretch = self.pauses.stretch
        # (not from a step or two: a live camera's late second frame read as "a recording replayed at 0.66x")
        if self._replay_noted or stretch < REPLAY_STRETCH_NOTED or not self.pauses.speed.measured:
            return
        self._replay_noted = True
        ends = self.pauses.ends_after_s()
        self.log.info(
            "replay-speed",
            f"the images arrive {stretch:.1f}x slower than their stamps say (a recording replayed at "
            f"{1 / stretch:.2g}x, or a simulator slower than real time, without use_sim_time?): pause_flush and "
            "max_gap are taken in the stamps' time, so its slow frames are no pauses"
            + (f" (the stream ends after {ends:.1f} s without an image on this node's clock)" if ends else ""),
        )

    def receiving(self, now: float | None = None) -> bool:
        """Whether images are arriving: the last came within the rate's window (5 s) or two of the
        images' steps on the steady clock (`ReplaySpeed.step_ns`), so a slow camera or a replay at
        0.02x is not "no input" between two images."""
        last = self.rate.last
        if last is None:
            return False
        step_s = (self.arrival_speed.step_ns or 0) / 1e9
        return (time.monotonic() if now is None else now) - last <= max(self.rate.window_s, 2 * step_s)

    def _sent(self, info: MessageInfo | None, sequences: PublisherSequences | None = None) -> int | None:
        """Messages the publisher sent since its last one that arrived (`inputs.loss.PublisherSequences`): of
        the images, or of `sequences`' topic."""
        if not info:
            return None
        gid = info.get("publisher_gid")
        publisher = bytes(gid["data"]) if isinstance(gid, dict) and gid.get("data") is not None else None
        return (self.sequences if sequences is None else sequences).add(
            publisher, info.get("publication_sequence_number")
        )

    def _clock_step(self, stamp: int, arrival: int) -> int:
        """How far the stamps' clock stepped forward before this image (`inputs.resets.clock_step_ns`); WARNs
        (rate-limited) when it did: a camera driver's clock set mid-stream."""
        last, self._last_arrival = self._last_arrival, (stamp, arrival)
        if last is None or stamp <= last[0]:
            return 0
        step = clock_step_ns(stamp - last[0], arrival - last[1], self.arrival_speed.step_ns)
        if step:
            self.log.warning(
                "clock-step",
                f"the image stamps jumped {step / 1e9:.3f} s forward between two images that arrived "
                f"{(arrival - last[1]) / 1e9:.3f} s apart: the camera driver's clock was set mid-stream (NTP, "
                "chrony's makestep, a PTP re-lock). The images across it are neither a gap nor lost frames"
                + ("; the depth stream restarts there (longer than max_gap)" if step > self.loss.max_gap_ns > 0 else "")
                + ", and the outputs' stamps jump with the images'. Have the driver stamp with a clock that is "
                "slewed, not stepped (chrony: makestep only at boot), or with its hardware clock.",
            )
        return step

    def _count_loss(self, stamp: int, info: MessageInfo | None = None, clock_step: int = 0) -> None:
        sent = self._sent(info)
        # (no step across a driver's restart, or its clock's step: the frames its span would hold were never due)
        new_timeline = (bool(info) and self.sequences.switched) or clock_step > 0
        missing = self.loss.add(stamp, sent, new_publisher=new_timeline)
        if self.loss.measurable != self._loss_measurable:
            self._loss_measurable = self.loss.measurable
            self.log.problems.report("input-loss-unmeasurable", None if self._loss_measurable else UNMEASURABLE_LOSS)
        if missing and not self._loss_warned and self.loss.confirmed >= 10 and self.loss.fraction > 0.02:
            self._loss_warned = True
            period = self.loss.period_ns or 1
            self.log.warning(
                "input-loss",
                f"{self.loss.lost} of {self.loss.received + self.loss.lost} camera frames never reached this node "
                f"(gaps in the image stamps at the camera's {1e9 / period:.1f} Hz; {self.loss.in_transport} of them "
                "sent by its publisher and never taken, by their DDS sequence numbers: lost in transport, or "
                "overwritten in a history of input_qos_depth while the node was busy). Across processes "
                f"best-effort images are lost in transport: {self._loss_fix()} (" + ACROSS_PROCESSES + "). "
                "Counted on /diagnostics as 'lost before the node'; this warning is shown once.",
                summary="",  # (the status's rule for frames lost before the node)
            )

    def _loss_fix(self) -> str:
        """What the input-loss WARN advises, by the image subscription's reliability and `input_qos`."""
        image = next((sub for sub in self.subscriptions if sub.topic_name == self.image_topic), None)
        if image is not None and image.qos_profile.reliability == ReliabilityPolicy.RELIABLE:
            return "raise the DDS receive buffer or use shared-memory transport"
        if self.p["input_qos"] == "auto":
            return (
                "the camera publishes best effort: raise the DDS receive buffer or use shared-memory transport, or "
                "have its driver publish reliable (its QoS parameter; input_qos auto follows it)"
            )
        return (
            "for a reliable camera driver set input_qos:=auto or reliable; otherwise raise the DDS receive buffer or "
            "use shared-memory transport"
        )

    def _on_info_with_info(self, msg: CameraInfo, info: MessageInfo) -> None:
        """The camera_info subscriptions' callback: with rmw's message info (when DDS received it)."""
        self._on_info(msg, info)

    def _on_info(self, msg: CameraInfo, info: MessageInfo | None = None) -> None:
        self._info_arrived = True
        try:
            self._count_info_loss(info)
            # (when DDS received it, as an image's arrival: the image it came with, `ApproximateTimeSync.stamp_offset`)
            arrival = time.monotonic_ns() - _queued_ns(info)
            with self._lock:
                pairs = self.sync.add_info(conv.stamp_to_ns(msg.header.stamp), msg, info_image_size(msg), arrival)
            self._enqueue(pairs)
        except Exception as err:
            self.log.error(
                "info-callback",
                f"camera_info callback failed: {err!r}",
                summary=f"the camera_info callback failed ({type(err).__name__})",
            )

    def _count_info_loss(self, info: MessageInfo | None) -> None:
        """Count the camera_infos their publisher sent that never arrived (gaps in its sequence numbers), and WARN
        once where they are more than a stray one: each image without its own camera_info then gets a neighbouring
        frame's or the last one (right only while the calibration is fixed), and nothing else says why."""
        sent = self._sent(info, self.info_sequences)
        self.infos_received += 1
        self.infos_lost += max(0, (sent or 1) - 1)
        lost, total = self.infos_lost, self.infos_received + self.infos_lost
        if self._info_loss_warned or lost < INFO_LOSS_WARN_AFTER or lost <= INFO_LOSS_WARN_SHARE * total:
            return
        self._info_loss_warned = True
        self.log.warning(
            "camera-info-loss",
            f"{lost} of {total} camera_infos sent on '{self._node.resolve_topic_name('camera_info')}' were lost "
            "before this node (gaps in their publisher's DDS sequence numbers): in transport, or overwritten in this "
            "node's history of input_qos_depth while it was busy. Fast DDS on its defaults "
            "hands a message to another process through a 512 KiB shared-memory segment of the publishing process, "
            "and an image published right after a camera_info reuses its buffer before this node has read it (a "
            "driver publishing each camera_info just before its image loses many). Start the camera driver with "
            f"{PROFILE_VARIABLE}={config_dir() / PROFILE_NAME} (" + ACROSS_PROCESSES + "), or have it publish each "
            "image before its camera_info, as image_transport's CameraPublisher does. Meanwhile an image whose "
            "camera_info was lost gets a neighbouring frame's (right while the calibration does not change; 'cached' "
            "on /diagnostics). Counted on /diagnostics as 'camera_info lost in transport'; this warning is shown once.",
            summary="",
        )

    def _on_sparse(self, msg: Image | CompressedImage | PointCloud2 | PoseStamped) -> None:
        try:
            sample: Any = msg
            if isinstance(msg, PoseStamped):
                sample = conv.pose_from_msg(msg)
            with self._sample_arrived:
                self.samples_received += 1
                self.sample_arrived_s = time.monotonic()
                self.samples.add(conv.stamp_to_ns(msg.header.stamp), time.monotonic_ns(), sample)
                self._sample_arrived.notify_all()
        except InputError as err:
            self.log.error(
                "sparse-message",
                f"ignoring a {type(msg).__name__} message: {err}",
                summary=f"ignoring {type(msg).__name__} sparse input messages",
            )
        except Exception as err:
            self.log.error(
                "sparse-callback",
                f"sparse input callback failed: {err!r}",
                summary=f"the sparse input callback failed ({type(err).__name__})",
            )

    def unmatched_sample_reason(self, stamp_ns: int) -> str:
        """Why an image stamped `stamp_ns` got no sparse_depth sample, with the fix: none arrived
        (nothing publishes the topic, or its messages do not reach this node), they stopped arriving
        (the sensor dropped out), or those that do are stamped too far from the images (another
        clock, or a sensor slower than `sparse_depth_slop`)."""
        node = self._node
        topic = node.resolve_topic_name("sparse_depth")
        with self._lock:
            received, newest = self.samples_received, self.samples.newest_stamp_ns()
            silent_s = time.monotonic() - self.sample_arrived_s
        if not received:
            publishers = node.count_publishers(topic)
            if not publishers:
                own = node.resolve_topic_name("sparse_depth", only_expand=True)
                return (
                    f"no message has arrived on '{topic}': nothing publishes it; remap sparse_depth to the depth "
                    f"registered to the camera (-r {own}:=/camera/aligned_depth_to_color/image_raw) or, with "
                    "sparse_depth:=pointcloud, to a cloud in its optical frame"
                )
            qos = (
                "input_qos reliable, which matches no best-effort sensor"
                if self.p["input_qos"] == "reliable"
                else f"large best-effort messages between processes, needing the Fast DDS profile ({ACROSS_PROCESSES})"
            )
            return (
                f"no message has arrived on '{topic}', which has {publishers} publisher(s): another message type "
                f"(named in a WARN), or {qos}"
            )
        gap = ((newest or 0) - stamp_ns) / 1e9
        if silent_s > SAMPLES_STOPPED_S:  # they came, then stopped: not a clock, which would still send them
            return (
                f"{received} arrived on '{topic}', the last {silent_s:.0f} s ago: the depth sensor stopped publishing "
                "(it dropped out, or its driver stalled or was stopped); check the sensor and its driver"
            )
        return (
            f"{received} arrived on '{topic}', none stamped within sparse_depth_slop ({self.p['sparse_depth_slop']:g} "
            f"s) of an image (the newest is stamped {abs(gap):.3f} s {'after' if gap >= 0 else 'before'} this one): "
            "the sensor stamps with another clock than the camera (have both stamp with ROS time), or publishes "
            "slower than that (raise sparse_depth_slop to about its period)"
        )

    def _enqueue(self, pairs: list[Pair]) -> None:
        for pair in pairs:
            msg, arrival, previous, clock_step = pair.image
            item = InputItem(pair.stamp_ns, msg, pair.info, pair.source, arrival, previous, clock_step)
            drained = self.queue.drained
            if self.queue.put(item):
                self._drops.tick()
                if self.queue.drained > drained:
                    self.log.warning(
                        "queue-drained", self._queue_drained_message(self.queue.drained - drained), summary=""
                    )
                else:
                    self.log.warning("queue-full", self._queue_full_message(), summary="")  # (the status's drops rule)

    def _queue_drained_message(self, count: int) -> str:
        """The WARN for a standing backlog dropped (`DropOldestQueue.drained`)."""
        q = self.queue
        return (
            f"input queue held more than {q.drain_to} frames (a window's new ones) for {q.drain_after_s:g} s "
            f"(queue_drain_after): dropped its {count} oldest so that later frames stop waiting behind them; "
            f"{q.drained} dropped so far this way. Inference keeps pace with the camera but not with a backlog (left "
            "by a burst of load, or a camera faster than inference): set max_input_rate below the output rate on "
            "/diagnostics for evenly spaced frames, or queue_drain_after 0 to keep every frame (a replay)"
        )

    def _queue_full_message(self) -> str:
        """The queue-full WARN: what it costs and the fix (`max_input_rate`, with a value: the rate the
        worker keeps up with, the images taken less those dropped over the last 5 s once a queue's worth
        were dropped; before that, as the first WARN is (later ones are rate-limited), the frames the
        worker took since the first image over that time, its first window's wait included: a low bound)."""
        taken, dropped = self.taken.rate(), self._drops.rate()
        if self.queue.dropped >= self.queue.maxsize:
            kept = taken - dropped
        else:
            since = time.monotonic() - (self._first_taken_s or time.monotonic())
            kept = self.queue.got_count / since if since > 0 else 0.0
        value = (
            f" (e.g. {max(0.5, 0.8 * kept):.2g}, 80% of what it kept up with)"
            if kept > 0
            else " (no value to suggest: none taken yet by the worker, still on its first window; read the output "
            "rate there once it publishes)"
        )
        limit = self.p["max_input_rate"]
        return (
            f"input queue full ({self.queue.maxsize}): dropped the oldest frame; {self.queue.dropped} dropped so far: "
            f"inference is slower than the {taken:.1f} Hz of images taken"
            + (f" (max_input_rate {limit:g})" if limit > 0 else "")
            + f", so each frame waits behind up to {self.queue.maxsize} others and windows get uneven frame steps; "
            f"set max_input_rate below the output rate on /diagnostics{value} for evenly spaced frames at low "
            "latency, or lower the camera's frame rate"
        )

    # -- worker side -------------------------------------------------------------------------
    def sample_for(self, item: InputItem, stop: threading.Event) -> tuple[Any, Any]:
        """`(sparse message, pose)` of a frame by the shared rule (`inputs.samples`); waits until
        it is decided (at most `sparse_depth_slop` after the image arrived, of stamp time: a
        slow-motion replay's samples arrive slower too), or `stop`."""
        mode = self.p["sparse_depth"]
        if mode == "none":
            return None, None
        stretch = self.arrival_speed.stretch  # (one value for the whole decision)
        with self._sample_arrived:
            while not stop.is_set():
                wait_ns = self.samples.decided_at(item.stamp_ns, item.arrival_ns, stretch) - time.monotonic_ns()
                if wait_ns <= 0:
                    break
                self._sample_arrived.wait(timeout=min(wait_ns / 1e9, 0.1))
            if mode == "pose":
                return None, self.samples.pose_at(item.stamp_ns, item.arrival_ns, stretch)
            return self.samples.nearest(item.stamp_ns, item.arrival_ns, stretch), None
