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
from rclpy.node import Node
from rclpy.subscription import MessageInfo
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from vdepth_ros.errors import InputError
from vdepth_ros.inputs.assembly import check_input_size, is_depth_stream_name
from vdepth_ros.inputs.calibration import info_image_size
from vdepth_ros.inputs.decode import image_size
from vdepth_ros.inputs.loss import InputLossMeter, PublisherSequences
from vdepth_ros.inputs.resets import PAUSE_MIN_S, PauseRule, ReplaySpeed
from vdepth_ros.inputs.samples import TimedSamples
from vdepth_ros.inputs.sync import REPEATED_STAMP, UNSET_STAMP, ApproximateTimeSync, InputRate, Pair
from vdepth_ros.ros import conversions as conv
from vdepth_ros.ros.diagnostics import RateMeter, StampClock, Watchdog, WorkerThroughput
from vdepth_ros.ros.input_checks import InputGraphChecks
from vdepth_ros.ros.input_loss import InputLossCounting
from vdepth_ros.ros.input_qos import INPUT_QOS_CHECK_S, InputQosFollowing
from vdepth_ros.ros.input_samples import SparseSamples
from vdepth_ros.ros.input_topics import image_subscription, reliability_name
from vdepth_ros.ros.qos import IncompatibleQosReporter, qos_profile
from vdepth_ros.ros.worker import DropOldestQueue, RateLimitedLog

#: A `PauseRule.stretch` this large (images arriving 1.5x slower than their stamps: no camera's
#: jitter) is a slow-motion replay, named once in the log.
REPLAY_STRETCH_NOTED = 1.5
#: `InputSide.ended`: how often (steady seconds) the graph is asked whether the input's publishers are gone
ENDED_CHECK_S = 0.5


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
    skipped: int = 0  # images skipped just before it while no output had a subscriber (`skip_when_unsubscribed`)


class InputSide(InputQosFollowing, InputLossCounting, SparseSamples, InputGraphChecks):
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
        self.throughput = WorkerThroughput()  # the input rate the worker keeps up with (`_rate_advice`)
        self._full_drops = RateMeter()  # ... from the full queue only: the camera outpaces inference
        self.skipped = 0
        self.thinned = 0  # images left out by max_input_rate
        self.paired_in = 0  # images handed to the camera_info pairing (`sync`), whence each goes to the queue
        self.refused = 0  # images refused here with an error (an unset or repeated stamp, too large, a failed callback)
        # of the queues of earlier activations (`subscribe` makes a new one): dropped, and left in it unprocessed
        self._dropped_before = self._abandoned_before = 0
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
        self._skipped_run = 0  # images skipped since the last one taken (`InputItem.skipped`)
        # the images taken, as they arrive on the node's clock: when the camera has paused
        self.pauses = PauseRule(self.p["pause_flush"], self.p["max_gap"])
        # the same on the steady clock the sparse samples wait by (slower under use_sim_time's slow replay)
        self.arrival_speed = ReplaySpeed()
        self.input_rate = InputRate(self.p["max_input_rate"])
        # how far the stamps are from the node's clock on arrival: the latency means something only on one clock
        self.stamp_clock = StampClock()

    def clock_changed(self) -> None:
        """`use_sim_time` set at runtime (`ros2 param set`, to follow a bag played with --clock, or back): the
        images' arrivals noted on the node's clock are on the other clock, so the pauses and the stamps' offset
        start again on the new one. Switching back to the system time read the seconds since the last image
        noted on the bag's clock as a pause of the camera (its held frames run in an early window, the stream
        restarted), while the images went on."""
        with self._lock:
            self.pauses = PauseRule(self.p["pause_flush"], self.p["max_gap"])
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
        self._dropped_before += self.queue.dropped
        self._abandoned_before += len(self.queue)  # (a deactivation that abandoned them: `_deactivate`)
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
            first = reliability_name(self.subscriptions[0].qos_profile.reliability)
            qos = f"auto: {first}, following its publishers"
        kind = "compressed" if compressed else "raw"
        return f"{image_topic} ({kind}, {qos}) and {node.resolve_topic_name('camera_info')}"

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

    def _fates_counted(self) -> tuple[int, ...]:
        """(images received, and the counters of what became of them here), to tell whether one got a fate."""
        return self.loss.received, self.skipped, self.thinned, self.refused, self.paired_in

    @property
    def queue_dropped(self) -> int:
        """Frames dropped from the input queue (full, or a standing backlog drained), every activation's."""
        return self._dropped_before + self.queue.dropped

    @property
    def queue_abandoned(self) -> int:
        """Frames queued that the worker never took: left at a stop that abandoned them, every activation's."""
        return self._abandoned_before + len(self.queue)

    def _on_image(self, msg: Image | CompressedImage, info: MessageInfo | None = None) -> None:
        fates = self._fates_counted()
        try:
            self._take_image(msg, info)
        except Exception as err:  # a callback must never raise
            if self._fates_counted() == fates and self.loss.received > fates[0]:  # received, no fate yet: refused
                self.refused += 1
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
            self._skipped_run += 1  # (the stream restarts when output is wanted again: `InputItem.skipped`)
            self._paused = True
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
            self.refused += 1
            why = UNSET_STAMP if stamp == 0 else REPEATED_STAMP
            self.log.error(
                "duplicate-stamp", f"dropping the image stamped {stamp}: {why}", summary=f"dropping images: {why}"
            )
            return
        self.taken.tick()
        try:
            check_input_size(msg, self.p["max_input_pixels"])
        except InputError as err:
            self.refused += 1
            self.log.error(
                "too-large",
                f"dropping input frame {stamp}: {err}",
                summary="dropping input frames over max_input_pixels",
            )
            return
        with self._lock:
            skipped, self._skipped_run = self._skipped_run, 0  # (on the first image passed on, not one thinned)
            pairs = self.sync.add_image(stamp, (msg, now, previous, clock_step, skipped), image_size(msg), now - queued)
            self.paired_in += 1  # (the sync emits each image exactly once: to the queue)
        self._enqueue(pairs)
        if now - self._unpaired_checked_ns > 1_000_000_000:
            self._unpaired_checked_ns = now
            self.check_camera_info_stamps()

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

    def _on_info_with_info(self, msg: CameraInfo, info: MessageInfo) -> None:
        """The camera_info subscriptions' callback: with rmw's message info (when DDS received it)."""
        self._on_info(msg, info)

    def _on_info(self, msg: CameraInfo, info: MessageInfo | None = None) -> None:
        self._info_arrived = True
        try:
            lost = self._count_info_loss(info)
            # (when DDS received it, as an image's arrival: the image it came with, `ApproximateTimeSync.stamp_offset`)
            arrival = time.monotonic_ns() - _queued_ns(info)
            stamp, size = conv.stamp_to_ns(msg.header.stamp), info_image_size(msg)
            with self._lock:
                pairs = self.sync.add_info(stamp, msg, size, arrival, lost)
            self._enqueue(pairs)
        except Exception as err:
            self.log.error(
                "info-callback",
                f"camera_info callback failed: {err!r}",
                summary=f"the camera_info callback failed ({type(err).__name__})",
            )

    def _enqueue(self, pairs: list[Pair]) -> None:
        for pair in pairs:
            msg, arrival, previous, clock_step, skipped = pair.image
            item = InputItem(pair.stamp_ns, msg, pair.info, pair.source, arrival, previous, clock_step, skipped)
            drained = self.queue.drained
            if self.queue.put(item):
                if self.queue.drained == drained:
                    self._full_drops.tick()
                if self.queue.drained > drained:
                    # (a camera outpacing inference: one cause, one rate-limited WARN with the queue-full one)
                    key = "queue-full" if self._full_drops.rate() > 0 else "queue-drained"
                    self.log.warning(key, self._queue_drained_message(self.queue.drained - drained), summary="")
                else:
                    self.log.warning("queue-full", self._queue_full_message(), summary="")  # (the status's drops rule)

    def _queue_drained_message(self, count: int) -> str:
        """The WARN for a standing backlog dropped (`DropOldestQueue.drained`): left by a burst of load, or, where the
        queue also filled within the last 5 s, by a camera faster than inference (its fix then `max_input_rate`, as
        the queue-full WARN says: a 1280x720 camera at 30 Hz was told inference "keeps pace" at 12 Hz out)."""
        q = self.queue
        text = (
            f"input queue held more than {q.drain_to} frames (a window's new ones) for {q.drain_after_s:g} s "
            f"(queue_drain_after): dropped its {count} oldest so that later frames stop waiting behind them; "
            f"{q.drained} dropped so far this way. "
        )
        if self._full_drops.rate() > 0:
            return text + (
                f"The queue also fills: inference is slower than the {self.taken.rate():.1f} Hz of images taken; "
                f"{self._rate_advice()}"
            )
        if self._slower_than_taken():
            limit = self.p["max_input_rate"]
            return text + (
                f"Inference is slower than the {self.taken.rate():.1f} Hz of images taken"
                + (f" (max_input_rate {limit:g})" if limit > 0 else "")
                + f", by less than the queue fills in {q.drain_after_s:g} s; {self._rate_advice()}"
            )
        return text + (
            "Inference keeps pace with the camera but not with a backlog (left by a burst of load): set "
            "max_input_rate below the output rate on /diagnostics for evenly spaced frames, or queue_drain_after 0 "
            "to keep every frame (a replay)"
        )

    def _slower_than_taken(self) -> bool:
        """The rate the worker keeps up with (`throughput`, once its recent windows ran) below the images taken: a
        camera a little faster than inference, whose backlog the drain takes before the queue fills (the WARN said
        "inference keeps pace with the camera", at every drain, 5 s apart)."""
        meter = self.throughput
        kept = meter.rate()
        return meter.windows >= meter.recent and 0 < kept < 0.95 * self.taken.rate()

    def _rate_advice(self) -> str:
        """`max_input_rate`'s advice, with a value: 80% of the rate the worker keeps up with (`WorkerThroughput`),
        said to be provisional until a few windows have run."""
        meter = self.throughput
        kept, windows = meter.rate(), meter.windows
        if kept <= 0:
            value = (
                " (no value to suggest: the worker is still on its first window; read the output rate there once "
                "it publishes)"
            )
        elif windows < meter.recent:  # (a stream's first windows run slower: a low value, said to be one)
            value = (
                f" (e.g. {max(0.5, 0.8 * kept):.2g}, 80% of the {kept:.1f} Hz of its first {windows} window(s): "
                f"provisional, as a stream's first windows run slower; the next WARN gives the rate once "
                f"{meter.recent} have run)"
            )
        else:
            value = f" (e.g. {max(0.5, 0.8 * kept):.2g}, 80% of the {kept:.1f} Hz it keeps up with)"
        return (
            f"set max_input_rate below the output rate on /diagnostics{value} for evenly spaced frames at low "
            "latency, or lower the camera's frame rate"
        )

    def _queue_full_message(self) -> str:
        """The queue-full WARN: what it costs and the fix (`max_input_rate`, with a value: `_rate_advice`)."""
        limit = self.p["max_input_rate"]
        return (
            f"input queue full ({self.queue.maxsize}): dropped the oldest frame; {self.queue.dropped} dropped so far: "
            f"inference is slower than the {self.taken.rate():.1f} Hz of images taken"
            + (f" (max_input_rate {limit:g})" if limit > 0 else "")
            + f", so each frame waits behind up to {self.queue.maxsize} others and windows get uneven frame steps; "
            + self._rate_advice()
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
