"""What one camera's node reports: the `/diagnostics` status (rates, latency, losses, fit, watchdog)
and the one-time start-up lines (first image, first output)."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.clock import Clock, ClockType

from vdepth_ros.errors import closest_name
from vdepth_ros.inputs.loss import PublisherSequences
from vdepth_ros.node_params import largest_burst
from vdepth_ros.pipeline_input import HELD_STATES
from vdepth_ros.pipeline_types import FitInfo
from vdepth_ros.ros.diagnostics import RecentRise, level_for, make_array, make_status
from vdepth_ros.ros.input_loss import ACROSS_PROCESSES, loss_count
from vdepth_ros.ros.qos import endpoint_name
from vdepth_ros.ros.startup import CLOCK
from vdepth_ros.runtime.shared import SharedEngine

#: The value of a window's keys ("fit scale"...) on /diagnostics before the first window.
NO_WINDOW_YET = "no window yet"


def same_name_problem(node: Any) -> dict[str, tuple[str, str]]:
    """{"same-name": (summary, WARN)} when another node of `node`'s full name is in the graph, else {}: this node
    started a second time by mistake (a second launch, a terminal left running), or a second camera's node started
    without a name of its own. ROS says nothing across processes (in one process only rcl's "Publisher already
    registered for provided node name"), and the shared-outputs WARN took it for a second camera. Two nodes of one
    name answer one set of parameter (and lifecycle) services, so a parameter set or get (or a lifecycle transition)
    reaches either of them, and both publish the same outputs. (A node killed before this one started is never
    seen here: only one that lived beside it, until DDS times it out.)"""
    fqn = node.get_fully_qualified_name()
    same = sum(
        1 for name, namespace in node.get_node_names_and_namespaces() if f"{namespace.rstrip('/')}/{name}" == fqn
    )
    found = {}
    if same > 1:
        domain = os.environ.get("ROS_DOMAIN_ID", "").strip() or "0"
        found["same-name"] = (
            f"another node named {fqn} is running: give one its own name (-r __ns:=/NS or -r __node:=NAME)",
            f"another node named {fqn} is running ({same} nodes of this full name on ROS_DOMAIN_ID {domain}): "
            "this node started twice (a second launch by mistake), or a second camera's node without a name of "
            f"its own. Nodes of one name clash: their parameter and lifecycle services share names, so a "
            f"parameter set or get for {fqn} (rqt_reconfigure, a parameter client) or a lifecycle transition "
            "reaches either of them, and "
            "both publish the same outputs, which every subscriber gets interleaved. Stop the second process, or "
            "give each node its own name: vdepth-node --ros-args -r __ns:=/rear (its topics move into /rear too) "
            "or -r __node:=depth_node_rear (the same topics: remap them too), or one process for several "
            "cameras: vdepth-node --cameras front rear",
        )
    return found


class StatusReporter:
    """/diagnostics of one `_DepthNodeCore` (its `intake`, `processor`, `outputs`, `watchdog`, `log`)."""

    #: After this long active without any image, the node says so once (a camera not remapped...).
    NO_IMAGE_WARN_S = 10.0

    def __init__(self, node: Any) -> None:
        self.node = node
        self.publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        node.intake.on_first_image = self._first_image
        node.processor.on_first_output = self._first_output
        self.restart()

    def restart(self) -> None:
        self._activated = time.monotonic()
        self._first_image_at: float | None = None
        self._receiving_since: float | None = None  # since when images arrive without a stop (`publish`)
        self._publisher_names: dict[Any, str] = {}  # image publishers' names by GID, as last seen in the graph
        self._turns_noted: tuple[Any, Any] | None = None  # the pair taking turns that was logged
        self.node.log.problems.restart()
        intake, outputs = self.node.intake, getattr(self.node, "outputs", None)
        # what rose in the last EVENT_HOLD_S: a cause on /diagnostics while it lasts, one WARN, not one per tick
        hold_s = self.node.log.problems.hold_s
        self._drops = RecentRise(intake.queue.dropped, hold_s)
        # (confirmed: what a change of the camera's rate explains is none)
        self._lost = RecentRise(intake.loss.confirmed, hold_s)
        self._hold_s = hold_s
        self._output_drops = {  # per output topic
            topic: RecentRise(count, hold_s)
            for topic, count in (outputs.dropped.items() if outputs is not None else ())
        }

    def destroy(self) -> None:
        self.node.destroy_publisher(self.publisher)

    def note_activation(self) -> None:
        self._activated = time.monotonic()

    def _first_image(self) -> None:
        self._first_image_at = time.monotonic()
        CLOCK.add("discovery", self._first_image_at - self._activated)
        self.node.get_logger().info(
            f"first image {self._first_image_at - self._activated:.2f} s after activation (discovery and camera); "
            f"{CLOCK.since_start():.2f} s after the process started"
        )

    def _first_output(self) -> None:
        first = self._first_image_at or self._activated
        self.node.get_logger().info(
            f"first output {time.monotonic() - first:.2f} s after the first image (one window of "
            f"{self.node.pipeline.schedule['first_window']} frames and its inference); "
            f"{CLOCK.since_start():.2f} s after the process started"
        )

    def _check_sim_clock(self) -> None:
        """WARN once when use_sim_time is on, images arrive and ROS time is still 0: nothing publishes
        /clock (a bag played without --clock), so the latencies are off (the stamps: system time); on
        /diagnostics until a /clock arrives."""
        node = self.node
        found = {}
        if (
            node.intake.rate.total
            and node.get_parameter("use_sim_time").value
            and node.get_clock().now().nanoseconds == 0
        ):
            found["no /clock"] = (
                "use_sim_time is true but no /clock has arrived: publish /clock (a bag played with --clock), or "
                "use_sim_time:=false",
                "use_sim_time is true but no /clock has arrived, so this node's ROS time is 0 (the latency on "
                "/diagnostics is meaningless): have the bag player or simulator publish /clock (ros2 bag play --clock "
                "with a ROS distro install), or restart with -p use_sim_time:=false for a live camera",
            )
        node.log.problems.report("sim-clock", found)

    def _check_stream_states(self) -> None:
        """The states of the stream the pipeline keeps (`HELD_STATES`), each a condition found on the images
        while it holds: the model sees the frames stretched (the camera's aspect ratio is not the model's: until
        frames of a shape the model runs start a stream), the windows' alignment falls back (until a window's
        does not), the metric fit rests on samples of only part of the scene's depth (until a window's does not).
        (Logged by the pipeline, `HELD_AS_STATE`.)"""
        for name in HELD_STATES:
            state = getattr(self.node.pipeline, name, None)
            self.node.log.problems.report(name, {name: (state, "")} if state else None, on_images=True)

    def _check_no_image(self) -> None:
        """WARN when no image has arrived `NO_IMAGE_WARN_S` after activation, naming the topic, its publishers
        and the fix: otherwise only /diagnostics says "no input images", and a camera left on its default topic
        (or, with --cameras, one camera of several) just stays silent. Looked at again at every check while no
        image comes, and a changed cause (a camera started after the WARN, under another name) is a new WARN:
        the first one said "no image topic is published at all", and /diagnostics kept saying it, while the
        camera the remap missed was publishing."""
        node = self.node
        if node.intake.rate.total or time.monotonic() - self._activated < self.NO_IMAGE_WARN_S:
            node.log.problems.report("no-image")
            return
        topic = node.intake.image_topic or node.resolve_topic_name("image")
        why, cause = self._no_image_cause(topic)
        node.log.problems.report(
            "no-image",
            {
                f"{topic}: {cause}": (
                    f"no image has arrived on '{topic}': {why}",
                    f"no image has arrived on '{topic}' in {self.NO_IMAGE_WARN_S:.0f} s: {why}; nothing is published "
                    "until one does",
                )
            },
        )

    def _no_image_cause(self, topic: str) -> tuple[str, str]:
        """(why no image arrives on `topic`, with the fix; what tells that cause from another: the graph it was
        found in, so a WARN is said again when that changes)."""
        node = self.node
        publishers = node.count_publishers(topic)
        other = self._other_transport(topic) if not publishers else None
        if other is not None:  # the camera is there, in the other transport (a compressed-only bag or robot)
            return other, "other transport"
        if publishers:
            return (
                f"it has {publishers} publisher(s) but none of their images arrived: input_qos reliable matches no "
                "best-effort camera (named in an incompatible-QoS WARN), and large best-effort images between "
                f"processes need the Fast DDS profile ({ACROSS_PROCESSES})"
            ), "published"
        # the rule to write is on the node's own name (rcl applies one rule per name)
        own = node.resolve_topic_name("image", only_expand=True)
        found, published = self._published_images(topic)
        target = found or "/camera/color/image_raw"
        why = f"nothing publishes it: remap image to the camera's image topic (-r {own}:={target})"
        if found and topic == node.get_namespace().rstrip("/") + found:
            why += (
                f": '{found}' is published, and '{topic}' is that name in this node's namespace "
                f"'{node.get_namespace()}' (a relative remap or name is resolved in the namespace; give the "
                "camera's topics with a leading '/', camera_info too)"
            )
        elif found:
            why += f": '{found}' is published (a misspelt remap?)"
        elif published:
            shown = ", ".join(f"'{t}'" for t in published[:4])
            why += f"; image topics published now: {shown}" + (
                f" and {len(published) - 4} more" if len(published) > 4 else ""
            )
        else:
            domain = os.environ.get("ROS_DOMAIN_ID", "").strip() or "0"
            why += (
                "; no image topic is published at all (the camera driver not running yet, or on another "
                f"ROS_DOMAIN_ID or ROS_AUTOMATIC_DISCOVERY_RANGE than this node's: {domain})"
            )
        if topic != own:  # the user's own rule sent it there: a second rule for the name would never apply
            why += "; correct the remap given for image, not add one (rcl applies the first rule for a name)"
        return why, f"found {found}" if found else f"published {published[:4]}"

    def _published_images(self, topic: str) -> tuple[str | None, list[str]]:
        """`(the image topic the user most likely meant, every image topic published)` when nothing publishes
        `topic`: those with a publisher other than a depth node of this name (the outputs of this package's nodes);
        the meant one is `topic` without its namespace prefix (a relative remap under a namespace: `/robot1/camera/
        image_raw` for `/camera/image_raw`) or a near spelling of it, else None."""
        node = self.node
        try:
            published = sorted(
                name
                for name, types in node.get_topic_names_and_types()
                if {"sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"} & set(types)
                and any(i.node_name != node.get_name() for i in node.get_publishers_info_by_topic(name))
            )
        except Exception:  # the graph is a help for the message, never a reason to lose it
            return None, []
        namespace = node.get_namespace().rstrip("/")
        if namespace and topic.startswith(namespace + "/") and topic[len(namespace) :] in published:
            return topic[len(namespace) :], published
        return closest_name(topic, published, cutoff=0.85), published

    def _other_transport(self, topic: str) -> str | None:
        """What to set when nothing publishes the image topic read but its other image_transport stream is
        published: the raw topic's `<topic>/compressed` (a robot streaming only compressed images over
        wifi, a bag recorded with only them), or the raw base of a `.../compressed` topic read. None if
        neither is."""
        node = self.node

        def published_as(name: str, msg_type: str) -> bool:
            return any(i.topic_type == msg_type for i in node.get_publishers_info_by_topic(name))

        if topic.endswith("/compressed"):
            base = topic[: -len("/compressed")]
            if base and published_as(base, "sensor_msgs/msg/Image"):
                return (
                    f"nothing publishes it, but its raw stream '{base}' is published: set image_transport:=raw "
                    f"(and remap image to {base})"
                )
            return None
        compressed = topic.rstrip("/") + "/compressed"
        if published_as(compressed, "sensor_msgs/msg/CompressedImage"):
            return (
                f"nothing publishes it, but its compressed stream '{compressed}' is (sensor_msgs/CompressedImage, "
                "image_transport's name for it): set image_transport:=compressed to read that one"
            )
        return None

    def _check_same_name(self) -> None:
        """`same_name_problem`, on /diagnostics while it holds; logged once per process (a managed node may have
        said it before its configure)."""
        node = self.node
        found = same_name_problem(node)
        if node.same_name_said:
            found = {key: (summary, "") for key, (summary, _) in found.items()}  # (said already)
        node.same_name_said = node.same_name_said or bool(found)
        node.log.problems.report("same-name", found)

    def _check_shared_outputs(self) -> None:
        """WARN once when another node publishes on this node's output topics (two cameras' nodes in
        separate processes, both in the root namespace): subscribers get both streams interleaved. On
        /diagnostics while it does. Publishers of a node of this node's own name are `_check_same_name`'s."""
        shared = self.node.outputs.shared_topics()
        if shared is None:
            return  # (not known yet)
        fqn = self.node.get_fully_qualified_name()
        shared = {topic: nodes for topic, nodes in shared.items() if any(name != fqn for name in nodes)}
        found = {}
        if shared:
            topics = ", ".join(f"{topic} ({', '.join(nodes)})" for topic, nodes in shared.items())
            found["shared"] = (
                f"another node publishes on this node's outputs too: {topics}; give each camera's node its own "
                "namespace",
                f"another node publishes on this node's outputs too: {topics}; every subscriber (RViz) gets both "
                "streams interleaved. Give each camera's node its own namespace (-r __ns:=/front, or one process: "
                "--cameras front rear), or remap the outputs. (Right after this node was restarted from a killed "
                "process, the old one's publishers linger until DDS times them out, seconds: then ignore this)",
            )
        self.node.log.problems.report("shared-outputs", found)

    def _check_image_publishers(self) -> None:
        """WARN when more than one publisher sends on the image topic read: two camera drivers
        started without their own namespaces (two usb_cam nodes on /image_raw), whose images this node
        would take as one camera's stream, their views alternating in every window, with no error.

        Judged by the publishers the images came from (their DDS GIDs, `PublisherSequences.interleaved`):
        two taking turns. The topic's publisher count said the same for a camera driver restarted from a
        killed process (a launch file's respawn), whose old publisher stays in the ROS graph until DDS
        times it out (seconds) though it sends nothing; that WARN was wrong. Where the middleware gives no
        GIDs, the count is all there is. Two taking turns are an event (logged, counted, WARN for
        `EVENT_HOLD_S`) even when one has left before this check (the images were interleaved all the same:
        it used to go unsaid), and a condition while both are in the graph and still take turns
        (`PublisherSequences.taking_turns`: one that stopped sending but stays in the graph, a driver paused
        or hung, cleared it only once it left)."""
        node = self.node
        topic = node.intake.image_topic
        if not topic:
            return
        infos = node.get_publishers_info_by_topic(topic)
        sequences = node.intake.sequences
        if sequences.identified:
            by_gid: dict[Any, str] = {bytes(info.endpoint_gid): endpoint_name(info) for info in infos}
            self._remember_names(by_gid)
            turns = sequences.interleaved
            if turns is None:
                node.log.problems.report("image-publishers")
                return
            if any("_UNKNOWN_" in by_gid.get(gid, "") for gid in turns):
                return  # (a name not known yet: next time)
            names = sorted(self._publisher_names.get(gid, "a publisher that has left since") for gid in turns)
            what = f"{len(names)} publishers sending images in turn ({', '.join(names)})"
            both = sum(gid in by_gid for gid in turns) == 2 and sequences.taking_turns()
            if turns != self._turns_noted:
                self._turns_noted = turns
                node.log.warning(
                    "image-publishers",
                    f"'{topic}' {'has' if both else 'had'} {what}: this node takes its images as one camera's "
                    "stream, so two cameras publishing there reach the model interleaved, their views alternating in "
                    "every window. Give each camera driver its own namespace or topic and remap image to one; a "
                    "second camera gets its own node (-r __ns:=/rear) or --cameras front rear.",
                    summary=f"'{topic}' had {what}: two cameras' images interleaved",
                )
            if not both:
                # one of them has gone or stopped sending: a pair taking turns again is named again
                sequences.interleaved = None
                node.log.problems.report("image-publishers")
                return
            node.log.problems.report(
                "image-publishers",
                {
                    " ".join(names): (
                        f"'{topic}' has {what}: two cameras' images interleaved; give each driver its own namespace",
                        "",  # (logged as the event above)
                    )
                },
            )
            return
        names = sorted(endpoint_name(info) for info in infos)
        if any("_UNKNOWN_" in n for n in names):  # (a name not known yet: next time)
            return
        if len(names) < 2:
            node.log.problems.report("image-publishers")
            return
        key = " ".join(names)
        if key in node.log.problems.found("image-publishers"):
            return
        what = f"{len(names)} publishers ({', '.join(names)})"
        node.log.problems.report(
            "image-publishers",
            {
                key: (
                    f"'{topic}' has {what}: two cameras' images interleaved; give each driver its own namespace",
                    f"'{topic}' has {what}: this node takes its images as one "
                    "camera's stream, so two cameras publishing there reach the model interleaved, their views "
                    "alternating in every window. Give each camera driver its own namespace or topic and remap image "
                    "to one; a second camera gets its own node (-r __ns:=/rear) or --cameras front rear. (Right after "
                    "a driver was restarted from a killed process, its old publisher lingers until DDS times it out, "
                    "seconds: then ignore this)",
                )
            },
        )

    def _remember_names(self, by_gid: dict[Any, str]) -> None:
        """Keep the image publishers' names by GID (one that has left by the next check is still named), the
        `PublisherSequences.MAX_PUBLISHERS` seen most recently (bounded: a driver respawned for days)."""
        names = self._publisher_names
        for gid, name in by_gid.items():
            if "_UNKNOWN_" not in name:
                names.pop(gid, None)
                names[gid] = name  # (the newest last)
        while len(names) > PublisherSequences.MAX_PUBLISHERS:
            names.pop(next(iter(names)))

    def values(self, problems: list[str] | None = None) -> dict[str, Any]:
        """The numbers reported on /diagnostics (also used by the benchmark); `problems`: what holds now
        (`CurrentProblems.current`, asked here if not given)."""
        node, intake, proc = self.node, self.node.intake, self.node.processor
        lat, win = proc.latency.summary(), proc.window_latency.summary()
        delay = intake.stamp_clock.delay_ns()
        values: dict[str, Any] = {
            "input rate [Hz]": intake.rate.rate(),
            "output rate [Hz]": proc.output_rate.rate(),
            "latency median [s]": lat["median"],
            "latency p95 [s]": lat["p95"],
            # (stamp to publish; from arrival where the stamps are on another clock: `StampClock`)
            "latency from": "arrival (stamps on another clock)"
            if intake.stamp_clock.offset_ns() is not None
            else "image stamp",
            "stamp to arrival median [s]": float("nan") if delay is None else delay / 1e9,
            "window latency median [s]": win["median"],
            "window latency max [s]": win["max"],
            "queued": len(intake.queue),
            "dropped (queue full)": intake.queue.dropped,
            "dropped (of those, a standing backlog)": intake.queue.drained,
            # (while the stamps keep no steady frame period, that they cannot tell it rather than a count)
            "lost before the node": intake.loss.lost if intake.loss.measurable else loss_count(intake.loss),
            "lost in transport (of those)": intake.loss.in_transport,
            "camera period [s]": (intake.loss.period_ns or 0) / 1e9,
            "skipped (no subscribers)": intake.skipped,
            "thinned (max_input_rate)": intake.thinned,
            "outputs dropped (subscriber not taking them)": sum(node.outputs.dropped.values()),
            "outputs slow to publish": ", ".join(f"{t} {share:.0%}" for t, share in node.outputs.slow.items())
            or "none",
            "input errors": node.log.errors,
            "worker errors": node.worker.errors if node.worker is not None else 0,
            "camera_info synced/cached/none": "/".join(str(intake.sync.counts[k]) for k in intake.sync.counts),
            "camera_info refused": proc.assembler.refused_infos,
            "camera_info lost in transport": intake.infos_lost,
            "resets": ", ".join(f"{k}={v}" for k, v in sorted(proc.resets.items())) or "0",
            "pause flushes": proc.pause_flushes,
            "qos incompatible events": node.qos_reporter.events,
            "publish": node.outputs.policy,
            # the causes named in a WARN that hold now (`CurrentProblems`): an operator who connects later sees them
            "problems": " | ".join(
                node.log.problems.current(input_stopped=not intake.receiving()) if problems is None else problems
            )
            or "none",
            **node.log.problems.event_values(),  # (counted by kind; the last one and its age)
            "flicker (flow warping error)": "off"
            if not proc.flicker.enabled
            else ("no measurement yet" if proc.flicker.mean is None else round(proc.flicker.mean, 5)),
        }
        values.update(getattr(node, "model_identity", {}))  # which model runs (the start-up "model:" line)
        engine = getattr(node.pipeline, "engine", None)
        if node.engine_pool is not None and isinstance(engine, SharedEngine):
            values["engine shared by (cameras)"] = node.engine_pool.users(engine)
            values["engine wait [s]"] = round(engine.wait_s, 3)
        # every FitInfo field, whatever it holds; before the first window too, so that a monitor reading a key
        # (PlotJuggler, rqt_runtime_monitor, a script) finds the same keys in every message
        fit = dataclasses.asdict(proc.last_fit) if dataclasses.is_dataclass(proc.last_fit) else {}
        for field in dataclasses.fields(FitInfo):
            val = fit.get(field.name, NO_WINDOW_YET)
            if val is None or isinstance(val, (int, float, str, bool)):
                values[f"fit {field.name}"] = val
        stats = getattr(node.pipeline, "stats", None)
        for key, val in vars(stats).items() if hasattr(stats, "__dict__") else []:
            if isinstance(val, (int, float, str, bool)):
                values[f"pipeline {key}"] = val
        return values

    def _stamp(self) -> Any:
        """The DiagnosticArray's stamp: the node's clock, as diagnostic_updater's `Updater` (ROS 2: sim time under
        use_sim_time). Its timer runs on that clock, so it never publishes before a /clock; this node's runs on the
        steady clock (it says there is none), and a stamp 0 is what a diagnostic_aggregator takes for none set
        ("No timestamp set for diagnostic message"): the system time then, until the first /clock."""
        now = self.node.get_clock().now()
        return (now if now.nanoseconds else Clock(clock_type=ClockType.SYSTEM_TIME).now()).to_msg()

    def publish(self) -> None:
        """Publish one DiagnosticArray; a failure is logged (rate-limited), never raised."""
        node = self.node
        try:
            node.intake.check_topic_types()
            node.intake.check_camera_info()
            node.intake.check_camera_info_topic()
            self._check_sim_clock()
            self._check_stream_states()
            self._check_no_image()
            self._check_same_name()
            self._check_shared_outputs()
            self._check_image_publishers()
            node.intake.check_camera_info_stamps()
            node.outputs.check_unserved_subscribers()
            node.outputs.note_depth_viewers()
            node.log.problems.report(
                "qos",
                node.qos_reporter.current(
                    [pub.topic_name for pub in node.outputs.publishers()], node.intake.subscriptions
                ),
            )
            receiving = node.intake.receiving()
            now = time.monotonic()
            self._receiving_since = (self._receiving_since or now) if receiving else None
            # the rates are measured over the last window_s: the output is compared with the input once the images
            # have come for that long, not while a start's (an activation's, a resumed input's) first windows are on
            # their way (every start said "output rate below half the input rate" until its second window's outputs)
            settled = receiving and now - self._receiving_since >= node.intake.taken.window_s
            problems = node.log.problems.current(input_stopped=not receiving)  # (one list: message and values)
            values = self.values(problems)
            stalled_s = node.watchdog.stalled_s()
            values["stalled for [s]"] = round(stalled_s or 0.0, 1)
            level, message = level_for(
                node.intake.taken.rate(),  # (output is compared with the images taken, not those thinned)
                values["output rate [Hz]"],
                self._drops.update(node.intake.queue.dropped),
                bool(getattr(node.processor.last_fit, "degenerate", False)),
                receiving,
                stalled_s=stalled_s,
                lost_recent=self._lost.update(node.intake.loss.confirmed),
                last_error=node.log.last_error,
                dropped_outputs=", ".join(
                    topic
                    for topic, count in node.outputs.dropped.items()
                    if self._output_drops.setdefault(topic, RecentRise(0, self._hold_s)).update(count)
                ),
                slow_outputs=", ".join(node.outputs.slow),  # (their shares, which change every tick, in the values)
                # two windows' bursts in the rates' window at least (2 x 8 frames in 5 s: 3.2 Hz)
                compare_from_hz=2 * largest_burst(node.pipeline.schedule) / node.intake.rate.window_s
                if settled
                else math.inf,
                problems=problems,
            )
            fqn = node.get_fully_qualified_name()
            status = make_status(f"{fqn}: depth stream", fqn, level, message, values)
            self.publisher.publish(make_array(self._stamp(), [status]))
        except Exception as err:
            node.log.error("diagnostics", f"diagnostics failed: {err!r}")
