"""`depth_node`: camera stream in, temporally consistent depth / disparity / organized cloud out.

Thin by design, and split by job: `intake.InputSide` (subscriptions: pair, count, enqueue; never
block or raise), `processing.FrameProcessor` (the worker: `inputs.assembly` -> `DepthPipeline.push`
-> `outputs.OutputPublishers`), run by `worker.SupervisedWorker` (no exception ends it), and
`status.StatusReporter` (/diagnostics, watchdog). All windowing, stitching, scale and clouds live
in the pipeline, exactly as for `vdepth-bag`. `vdepth-node` itself is `ros/cli.py`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from lifecycle_msgs.msg import Transition
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node

from vdepth_ros.blas import set_blas_threads
from vdepth_ros.errors import VdepthError
from vdepth_ros.node_params import largest_burst, unknown_parameters_warning, validate_ros_params
from vdepth_ros.pipeline_input import HELD_AS_STATE
from vdepth_ros.ros.diagnostics import AGGREGATOR_TIMEOUT_S, Watchdog
from vdepth_ros.ros.input_loss import loss_count
from vdepth_ros.ros.intake import InputSide
from vdepth_ros.ros.outputs import OutputPublishers
from vdepth_ros.ros.parameters import ParameterSide
from vdepth_ros.ros.processing import FrameProcessor
from vdepth_ros.ros.python_logs import logging_as
from vdepth_ros.ros.qos import IncompatibleQosReporter
from vdepth_ros.ros.startup import CLOCK, build_pipeline, params_file_of
from vdepth_ros.ros.status import StatusReporter, same_name_problem
from vdepth_ros.ros.worker import RateLimitedLog, SupervisedWorker
from vdepth_ros.runtime.shared import EnginePool, SharedEngine

NODE_NAME = "depth_node"
#: lifecycle_msgs' transition ids by the labels `ros2 lifecycle set` takes (its three shutdowns: "shutdown")
_TRANSITION_LABELS = {
    Transition.TRANSITION_CONFIGURE: "configure",
    Transition.TRANSITION_CLEANUP: "cleanup",
    Transition.TRANSITION_ACTIVATE: "activate",
    Transition.TRANSITION_DEACTIVATE: "deactivate",
    Transition.TRANSITION_UNCONFIGURED_SHUTDOWN: "shutdown",
    Transition.TRANSITION_INACTIVE_SHUTDOWN: "shutdown",
    Transition.TRANSITION_ACTIVE_SHUTDOWN: "shutdown",
}
_CLOSE_JOIN_S = 5.0  # at process exit, wait this long for the queued frames and the stream's last window
_DRAIN_S = 2.0  # then this long for the outputs still pending (a subscriber that holds one up: counted)
#: The fates the stop summary names even at 0 (the others only when they happened)
_FATES_ALWAYS_SAID = ("dropped (queue full)", "skipped (no subscribers)", "frames published")


def _in_node_log(step: Callable[..., Any]) -> Callable[..., Any]:
    """A node step whose pipeline/runtime log records go under the node's logger (`python_logs.logging_as`):
    with --cameras they name the camera."""

    @functools.wraps(step)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        with logging_as(self.get_logger(), functools.partial(self._python_warning, startup=True)):
            return step(self, *args, **kwargs)

    return run


class _DepthNodeCore(ParameterSide):
    """What the plain and the managed (lifecycle) node share, as steps a lifecycle can call apart:
    `_declare_params` (construction; it and the other parameter steps are `parameters.ParameterSide`'s),
    `_configure` (validate, load the model, create publishers), `_activate` (subscriptions, diagnostics
    timer, worker), `_deactivate`, `_cleanup`. Mixed into `rclpy.node.Node` (`DepthNode`, every step at
    once) or `rclpy.lifecycle.LifecycleNode` (`ManagedDepthNode`, one step per transition)."""

    _configured = False
    _active = False
    _queued_at_stop: int | None = None  # `stop_input`: frames queued when the input stopped
    #: a configure is loading the model: `vdepth-node`'s signal handler stops it at once (`cli.ShutdownRequest`)
    loading = False
    _abandoned: Any = threading.Thread()  # a worker left inside its window by a second signal (never started here)
    #: another node of this one's full name was named in the log (`status.same_name_problem`): once per process
    same_name_said = False
    _configures = 0  # successful configures so far (a managed node may be cleaned up and configured again)
    #: `vdepth-node --cameras` logs the start-up line once, when every camera is up (`build_nodes`),
    #: not each camera (the first one's "ready" would come before the others' models are loaded).
    _process_logs_startup = False
    lasting_warnings: dict[str, str]  # key -> summary (`hold_lasting_warning`)

    # -- configure: parameters, model, publishers ---------------------------------------------
    @_in_node_log
    def _configure(self, engine: Any = None, engine_pool: EnginePool | None = None) -> None:
        from vdepth_ros.pipeline import identity_line

        values = self._param_values()
        ros_values = {k: v for k, v in values.items() if self._specs[k].group == "ros"}
        validate_ros_params(ros_values)
        self.p = dict(ros_values)
        self.log = RateLimitedLog(self.get_logger())
        for key, summary in self.lasting_warnings.items():  # (warned before this configure, or before the last)
            self.log.problems.startup(key, summary)
        # an event is on /diagnostics for two of its statuses at least (`EVENT_HOLD_S` otherwise)
        self.log.problems.hold_s = max(self.log.problems.hold_s, 2 * self.p["diagnostics_period"])
        if self.p["diagnostics_period"] >= AGGREGATOR_TIMEOUT_S:
            self.warn_at_startup(
                "diagnostics_period",
                f"diagnostics_period is {self.p['diagnostics_period']:g} s: a diagnostic_aggregator "
                f"(rqt_robot_monitor) marks a status STALE after {AGGREGATOR_TIMEOUT_S:g} s without one (the "
                "default timeout of its analyzers), so this node shows as stale between its messages; set it below "
                "that (1 s, as diagnostic_updater)",
            )
        if self.p["blas_threads"] > 0:  # before any pipeline work: see vdepth_ros/blas.py
            before = set_blas_threads(self.p["blas_threads"])
            if any(n != self.p["blas_threads"] for n in before.values()):
                self.get_logger().info(f"OpenBLAS threads {before} -> {self.p['blas_threads']} (blas_threads)")
        self.pipeline_params = {k: v for k, v in values.items() if self._specs[k].group == "pipeline"}
        self.engine_pool = engine_pool
        before = dict(CLOCK.steps)
        model_file = params_file_of(self.get_fully_qualified_name(), "model", self.pipeline_params["model"])
        with self._rolled_back(self._release_engine):  # a failure on the way leaves nothing behind
            self.pipeline, self._owns_engine = build_pipeline(self.pipeline_params, engine, engine_pool, model_file)
            # which model this camera runs, once per configure (also on /diagnostics): two robots' logs tell apart
            built_from = self.pipeline.config.resolved_model() if engine is None else None
            self.model_identity = self.pipeline.model_identity(built_from)
            self.get_logger().info(f"model: {identity_line(self.model_identity)}")
            self._warn_scale_inputs()
            self.qos_reporter = IncompatibleQosReporter(self.get_logger().warning, self)
            self.watchdog = Watchdog(self.p["watchdog_timeout"], largest_burst(self.pipeline.schedule) - 1)
            self.outputs = OutputPublishers(
                self,
                self.p,
                self.pipeline.config.publish,
                largest_burst(self.pipeline.schedule),
                self.qos_reporter,
                self.get_logger().warning,
                self.log,
            )
            self.intake = InputSide(
                self, self.p, self.log, self.qos_reporter, self.outputs.has_subscribers, self.watchdog
            )
            self.processor = FrameProcessor(
                self.pipeline,
                self.p,
                self.intake,
                self.outputs,
                self.log,
                self.watchdog,
                lambda: self.get_clock().now().nanoseconds,
            )
            self.status = StatusReporter(self)
            unknown = unknown_parameters_warning(
                getattr(self, "_parameter_overrides", {}),
                self.has_parameter,
                qos_overrides=[f"qos_overrides.{name}" for name in self.get_parameters_by_prefix("qos_overrides")],
            )
            if unknown and not self._configures:  # after the publishers: their qos_overrides.* are declared by now
                self.get_logger().warning(unknown)
                self.hold_lasting_warning("unknown parameters", unknown)  # (the overrides stay: every configure)
            self.worker: SupervisedWorker | None = None
            self.diag_timer = None
            self.hurry = threading.Event()  # a second signal: stop waiting for anything
            self._mark_restart_only(True)
            self._configured = True
        loaded_here = self._owns_engine or engine_pool is not None
        if not self._configures:
            if self._owns_engine or (engine_pool is not None and not self._process_logs_startup):
                self.get_logger().info(CLOCK.line())
        elif loaded_here:  # a managed node configured again: this one's steps
            steps = {k: v - before.get(k, 0.0) for k, v in CLOCK.steps.items() if v != before.get(k, 0.0)}
            self.get_logger().info("configured: " + ", ".join(f"{k} {v:.2f} s" for k, v in steps.items()))
        self._configures += 1

    def hold_lasting_warning(self, key: str, summary: str) -> None:
        """A warning that holds for the node's life, not one configuration (logged once by the caller): parameters
        it does not know, a params-file section that matches no node, cameras that share a process-wide value
        (`cameras.warn_every_camera`). On this node's /diagnostics from its first configure on (a managed node
        warned while unconfigured has no status yet) and through every later configure."""
        self.lasting_warnings[key] = summary
        log = getattr(self, "log", None)
        if log is not None:
            log.problems.startup(key, summary)

    def warn_at_startup(self, key: str, message: str) -> None:
        """A start-up warning: logged, and on /diagnostics (`CurrentProblems.startup`) until the node is configured
        again, so that an operator who only watches the robot monitor sees that the configuration is off."""
        self.get_logger().warning(message)
        log = getattr(self, "log", None)
        if log is not None:
            log.problems.startup(key, message)

    def _python_warning(self, record: logging.LogRecord, startup: bool) -> None:
        """A pipeline/runtime WARNING (`python_logs.logging_as`) on /diagnostics: in a lifecycle step (the model's
        fallbacks, a parameter adjusted) a start-up warning; in the worker an event, unless it is about a state of the
        stream (`HELD_AS_STATE`: the frames stretched, the alignment falling back), which the status reports while it
        holds."""
        log = getattr(self, "log", None)
        if log is None or getattr(record, HELD_AS_STATE, False):
            return  # (a state of the stream, reported as a condition while it holds: `StatusReporter`)
        if startup:
            log.problems.startup(f"{record.pathname}:{record.lineno}", record.getMessage())
        else:
            log.problems.event(record.name.rsplit(".", 1)[-1], record.getMessage())

    def _warn_scale_inputs(self) -> None:
        scale_source = self.pipeline.config.scale_source
        if (scale_source == "sparse") != (self.p["sparse_depth"] != "none"):
            self.warn_at_startup(
                "scale inputs",
                f"scale_source is {scale_source!r} but sparse_depth is {self.p['sparse_depth']!r}: set both "
                "(scale_source:=sparse sparse_depth:=image|pointcloud|pose) to get metric depth from sparse depth "
                "or camera poses",
            )

    # -- activate: inputs and the worker ------------------------------------------------------
    @_in_node_log
    def _activate(self, start_worker: bool = True) -> None:
        with self._rolled_back(self._stop_worker):  # a failed activation leaves no subscription or worker
            self._start(start_worker)

    def _stop_worker(self) -> None:
        """Undo a failed activation: no input, no worker (a later one must never run beside it)."""
        self._active = False
        self.intake.unsubscribe()
        if self.worker is not None:
            self.worker.join(timeout=_CLOSE_JOIN_S)
            self.worker = None
        self.diag_timer = None  # (destroyed with the step's other timers)

    def _start(self, start_worker: bool) -> None:
        inputs = self.intake.subscribe()
        self.processor.activate()
        self.watchdog.restart()
        self.status.restart()
        self.worker = SupervisedWorker(
            self.intake.queue,
            self.processor.process,
            self.processor.on_error,
            on_idle=self.processor.on_idle,
            on_end=self.processor.end_stream,
            idle_s=0.05,  # a pause is noticed within this of `pause_flush`
            context=lambda: logging_as(self.get_logger(), functools.partial(self._python_warning, startup=False)),
        )
        if start_worker:
            self.worker.start()
        # on the steady clock, not the node's: under use_sim_time a paused bag, or one played without
        # --clock, stops ROS time, and a ROS-time timer with it: no /diagnostics, no watchdog
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.diag_timer = self.create_timer(self.p["diagnostics_period"], self.status.publish, clock=steady)
        self._active = True
        self.status.note_activation()
        names = ", ".join(pub.topic_name for pub in self.outputs.main.all())
        self.get_logger().info(
            f"subscribed to {inputs}; publishing {self.outputs.policy} frames on {names} ({self.p['output_qos']})"
        )

    def stop_input(self) -> None:
        """Stop taking input (shutdown's first step): subscriptions gone, the queue closed."""
        if self._active:
            self.intake.unsubscribe()  # (queues the images still waiting for their camera_info)
            self._queued_at_stop = len(self.intake.queue)  # the worker takes them from now on

    def hurry_up(self) -> None:
        """A second SIGINT/SIGTERM: stop at once; nothing more is published or waited for."""
        self.hurry.set()
        self.processor.stop.set()

    @_in_node_log
    def _deactivate(self, restart_stream: bool = True, join_timeout: float | None = None) -> None:
        """Stop taking input: subscriptions and timer gone, then the end of the stream: the worker
        processes what is queued and publishes every frame the stream holds (`FrameProcessor.end_stream`,
        as the end of a bag), for at most `_CLOSE_JOIN_S` or until `hurry_up`; what is left then is
        abandoned (one log line says which). The window in progress then ends unpublished, waited for
        at most `join_timeout` (None = as long as it takes: a lifecycle deactivate, so a later
        activation never runs two workers). With `restart_stream` the stream is restarted so a later
        activation starts clean."""
        self._active = False
        self.intake.unsubscribe()
        queued, self._queued_at_stop = self._queued_at_stop or len(self.intake.queue), None
        if self.worker is not None:
            t0 = time.monotonic()
            flush_s = _CLOSE_JOIN_S if join_timeout is None else min(join_timeout, _CLOSE_JOIN_S)
            finished = self.worker.finish(timeout=flush_s, hurry=self.hurry)
            if not finished:
                self.processor.stop.set()  # the window in progress is abandoned: nothing is published after this
                if join_timeout is None:
                    # as long as the window takes, but not past a second signal: the process is going down
                    # (it waited for the window, 30 s of a slow model, and a launch system's SIGKILL came first)
                    while not self.worker.join(timeout=0.05) and not self.hurry.is_set():
                        pass
            self._log_end(queued, finished, time.monotonic() - t0, flush_s)
            if self.worker.is_alive():  # still inside the window: it must keep its pipeline and engine
                self._abandoned = self.worker
            self.worker = None
        if not restart_stream:  # shutting down: what was published reaches reliable subscribers first
            self.processor.stop.set()
            drain = 0.0 if self.hurry.is_set() else _DRAIN_S
            self.outputs.stop(timeout_s=drain, hurry=self.hurry)  # what is pending goes out, or counted as dropped
            if not self.hurry.is_set():
                self.outputs.wait_for_acks(timeout_s=1.0, hurry=self.hurry)
        else:
            self.outputs.drain(timeout_s=_DRAIN_S)
        if self.diag_timer is not None:
            self.destroy_timer(self.diag_timer)
            self.diag_timer = None
        if restart_stream and not self._abandoned.is_alive():
            self.processor.new_stream()

    def _log_end(self, queued: int, finished: bool, seconds: float, timeout: float | None) -> None:
        """One line at the end of the input, when anything was queued or held: published, or abandoned."""
        if not finished:
            why = "a second signal" if self.hurry.is_set() else f"not done within {timeout} s"
            self.get_logger().warning(
                f"input stopped: abandoned the frames still queued and the ones the stream held for its next "
                f"window ({why}); {queued} were queued"
            )
            return
        held = self.processor.ended[0] if self.processor.ended else 0
        if queued or held:
            self.get_logger().info(
                f"input stopped: processed the {queued} queued frame(s), then published the {held} frame(s) the "
                f"stream still held, as at the end of a bag ({seconds:.2f} s)"
            )

    @_in_node_log
    def _cleanup(self) -> None:
        """Back to unconfigured: the summary line of this configuration's run logged (a lifecycle
        manager's cleanup or shutdown, as Nav2's does when it brings the robot down, before the process
        ends: that line was never logged then), publishers destroyed, the model released (closed if this
        node loaded it)."""
        self._log_summary()
        self.outputs.destroy()
        self.status.destroy()
        self._release_engine()
        self._configured = False
        self._mark_restart_only(False)

    def _release_engine(self) -> None:
        """Close the model if this node loaded it, or give its share back to the camera pool."""
        pipeline, self.pipeline = getattr(self, "pipeline", None), None
        if pipeline is None or self._abandoned.is_alive():  # (a window abandoned at exit still runs on it)
            return
        if self._owns_engine:
            pipeline.engine.close()
        elif self.engine_pool is not None and isinstance(pipeline.engine, SharedEngine):
            self.engine_pool.release(pipeline.engine)

    @contextlib.contextmanager
    def _rolled_back(self, undo: Callable[[], None]) -> Iterator[None]:
        """A step that leaves nothing behind when it fails: the publishers, subscriptions and timers
        it created on the node are destroyed again and `undo` runs. A managed node whose configure
        failed after the model loaded (a bad `qos_overrides` value, found as the publishers are
        created) kept the model loaded and the publishers made so far: each retry loaded the model
        again (on a GPU, another engine) and added another publisher on `/depth`."""
        before = {id(e) for e in (*self.publishers, *self.subscriptions, *self.timers)}
        try:
            yield
        except BaseException:
            try:
                undo()
            finally:
                for entities, destroy in (
                    (self.subscriptions, self.destroy_subscription),
                    (self.timers, self.destroy_timer),
                    (self.publishers, self.destroy_publisher),
                ):
                    for entity in [e for e in entities if id(e) not in before]:
                        destroy(entity)
            raise

    def _log_summary(self) -> None:
        """One INFO line at shutdown: what came in, what was lost where, what went out."""
        if not self._configured:
            return
        sent, loss = self.outputs.sent, self.intake.loss
        out = ", ".join(f"{topic} {n}" for topic, n in sent.items()) or "nothing"
        held = self.outputs.dropped
        held_up = (
            f"{sum(held.values())} outputs dropped for subscribers that did not take them ("
            + ", ".join(f"{topic} {n}" for topic, n in held.items())
            + "); "
            if held
            else ""
        )
        span = f" (stamps {loss.first / 1e9:.3f}..{loss.last / 1e9:.3f} s)" if loss.first and loss.last else ""
        fates = self.frame_fates()
        fates_text = ", ".join(f"{n} {fate}" for fate, n in fates.items() if n or fate in _FATES_ALWAYS_SAID)

        blind = self.processor.published_without_camera
        no_camera = f"{blind} frames published without intrinsics (no /points, no depth/camera_info); " if blind else ""
        self.get_logger().info(
            f"stopped: {loss.received} images received{span}, {loss_count(loss)}, {fates_text}; "
            f"{self.log.errors} input errors; {no_camera}{held_up}published {out}"
        )

    def frame_fates(self) -> dict[str, int]:
        """What became of each image received, each counted exactly once (their sum is the images received), as
        the stop summary says it. Frames still queued, in the worker's hand or held by the stream when the node
        stopped are "abandoned at stop"; frames lost to an error (the worker's, a window's: its stream's held
        frames go with it, a publish) "lost to errors". Published: the depth frames handed to the main outputs
        (whichever topics had subscribers: their messages are counted per topic after it)."""
        intake, processor, pipeline = self.intake, self.processor, self.pipeline
        stats = pipeline.stats
        return {
            "dropped (queue full)": intake.queue_dropped,
            "skipped (no subscribers)": intake.skipped,
            "thinned (max_input_rate)": intake.thinned,
            "refused (bad input)": intake.refused + processor.refused,
            "lost to errors": (
                processor.failed + stats.frames_discarded - processor.discarded_at_stop + processor.publish_failed
            ),
            "abandoned at stop": (
                intake.sync.pending
                + intake.queue_abandoned
                + processor.in_hand
                + pipeline.held
                + processor.unpublished
                + processor.discarded_at_stop
            ),
            "frames published": processor.published,
        }

    # -- tests and benchmarks ------------------------------------------------------------------
    @property
    def queue(self) -> Any:
        return self.intake.queue

    def process_pending(self) -> int:
        """Process everything queued in the calling thread (tests without the worker thread)."""
        assert self.worker is not None, "the node is not active"
        n = 0
        while (item := self.intake.queue.get(timeout=0)) is not None:
            self.worker.handle(item)
            n += 1
        self.outputs.drain(timeout_s=_DRAIN_S)  # published, as the worker thread's frames are by now
        return n

    def diagnostics_values(self) -> dict[str, Any]:
        """The numbers reported on /diagnostics (also used by the benchmark)."""
        return self.status.values()


class DepthNode(_DepthNodeCore, Node):
    """The live depth node: configured and active from construction (what `vdepth-node` runs).

    Args:
        engine: a `DepthEngine` to use instead of building one from the `model` parameter (tests,
            benchmarks).
        engine_pool: build the engine through this `EnginePool` instead, so that the cameras of one
            process (`vdepth-node --cameras ...`) with the same model, backend and precision share it.
        start_worker: start the worker thread (tests may drive `process_pending()` instead).
        **kwargs: forwarded to `rclpy.node.Node` (context, namespace, parameter_overrides, cli_args...).

    Raises:
        ConfigError: a parameter is invalid; the message names it and why.
    """

    _process_logs_startup = True  # with an engine_pool: build_nodes, once every camera is up

    def __init__(
        self,
        node_name: str = NODE_NAME,
        *,
        engine: Any = None,
        engine_pool: EnginePool | None = None,
        start_worker: bool = True,
        **kwargs: Any,
    ) -> None:
        Node.__init__(self, node_name, **kwargs)
        self.lasting_warnings = {}
        self._declare_params()
        self._configure(engine, engine_pool)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._activate(start_worker)

    def close(self) -> None:
        """Stop input, let the worker process what is queued and publish every frame the stream holds
        (or abandon it after a few seconds, or at `hurry_up`), and destroy the node."""
        if self._active:
            self._deactivate(restart_stream=False, join_timeout=_CLOSE_JOIN_S)
        self._log_summary()
        self.destroy_node()


def lifecycle_command(node: str, transitions: list[str]) -> str:
    """A shell command that sends `transitions` (of configure, activate, deactivate, cleanup) to the managed node
    `node` through its `change_state` service and prints each answer: `ros2 lifecycle set` where there is no
    `ros2` (ROS from pip wheels); run with the node's ROS_DOMAIN_ID."""
    from lifecycle_msgs.msg import Transition

    ids = ", ".join(f"('{t}', {getattr(Transition, 'TRANSITION_' + t.upper())})" for t in transitions)
    script = (
        "import rclpy; from lifecycle_msgs.msg import Transition; from lifecycle_msgs.srv import ChangeState; "
        "rclpy.init(); n = rclpy.create_node('lifecycle_set'); "
        f"c = n.create_client(ChangeState, '{node}/change_state'); ok = c.wait_for_service(timeout_sec=10.0) "
        # (half a second more: the server's reply writer may match this client's reader after it saw the service)
        "and not rclpy.spin_once(n, timeout_sec=0.5); "
        "[print(t, rclpy.spin_until_future_complete(n, f := c.call_async(ChangeState.Request("
        "transition=Transition(id=i))), timeout_sec=120.0) or (f.result() if f.done() else 'no answer')) "
        f"for t, i in ({ids},) if ok]; "
        f"ok or print('no answer from {node} (not running on this ROS_DOMAIN_ID?)')"
    )
    return f'{sys.executable} -c "{script}"'


class ManagedDepthNode(_DepthNodeCore, LifecycleNode):
    """The depth node as a ROS 2 managed (lifecycle) node (`vdepth-node --managed`), for bring-up
    managers such as Nav2's lifecycle_manager:

    * unconfigured: parameters declared (settable), nothing loaded;
    * configure: parameters validated, the model loaded, publishers created (a bad parameter or
      model fails the transition with the reason logged; fix it and configure again);
    * activate: subscriptions, worker and /diagnostics start; deactivate stops them (queued input
      is processed and every frame the stream holds published; the stream restarts on the next
      activation);
    * cleanup: publishers destroyed and the model released; shutdown from any state does what is
      needed of both.

    Args: as `DepthNode`'s (`start_worker` applies at each activation).
    """

    def __init__(
        self,
        node_name: str = NODE_NAME,
        *,
        engine: Any = None,
        engine_pool: EnginePool | None = None,
        start_worker: bool = True,
        **kwargs: Any,
    ) -> None:
        LifecycleNode.__init__(self, node_name, **kwargs)
        self.lasting_warnings = {}
        self._engine_arg, self._engine_pool_arg, self._start_worker = engine, engine_pool, start_worker
        self._declare_params()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._waiting: tuple[str, float, bool] = ("unconfigured", time.monotonic(), False)  # state, since, said
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._waiting_timer = self.create_timer(1.0, self._note_waiting, clock=steady)
        # rclpy's private service object (its answer is kept for every transition it has); an rclpy that stores it
        # otherwise keeps its own refusal rather than failing the node's start
        change_state = getattr(self, "_service_change_state", None)
        if callable(getattr(change_state, "callback", None)):
            change_state.callback = functools.partial(self._refuse_unavailable_transition, change_state.callback)

    def _refuse_unavailable_transition(self, answer: Callable[[Any, Any], Any], request: Any, response: Any) -> Any:
        """The change_state service (`ros2 lifecycle set`, a lifecycle manager): a transition the current state does
        not have (activate while unconfigured, configure twice) is refused in one WARN that names it, the state and
        the transitions there are; rclpy refused it with an ERROR in numbers ("Unable to start transition 3 from
        current state (1, 'unconfigured')", after rcl's WARN "No transition matching 3 found"). The others go to
        rclpy's own answer."""
        available = {label: tid for tid, label, *_ in self._state_machine.available_transitions}
        label, tid = request.transition.label, request.transition.id
        if (label in available) if label else (tid in available.values()):
            return answer(request, response)
        # (by id, as a manager sends it, the id too: each state has its own shutdown's)
        asked = repr(label) if label else f"{_TRANSITION_LABELS.get(tid, 'unknown')!r} (id {tid})"
        there = ", ".join(f"{name} (id {i})" if not label else name for name, i in available.items())
        self.get_logger().warning(  # (one per request: each is someone's command)
            f"lifecycle transition {asked} refused: {self.get_fully_qualified_name()} is "
            f"{self._state_machine.current_state[1]}, whose transitions are "
            f"{there or 'none (finalized: restart the process)'}"
        )
        response.success = False
        return response

    #: After this long unconfigured or inactive, the node says what it waits for, once per time in that state.
    WAITING_NOTE_S = 5.0

    def _note_waiting(self) -> None:
        """INFO once when the node has stayed `WAITING_NOTE_S` unconfigured since its start or inactive since its
        configure: it said nothing, so a node started with --managed and no lifecycle manager (or one that does
        not list it) looked hung. Names the transitions it waits for and how to send them where it runs (ROS from
        pip has no `ros2 lifecycle`). Not after a failed transition (its error is logged) nor in a state a
        manager chose (deactivated, cleaned up)."""
        state = self._state_machine.current_state[1]
        now = time.monotonic()
        if state == "unconfigured" and not self.same_name_said:  # (once configured, the status checks it)
            for _, message in same_name_problem(self).values():  # its lifecycle services clash most of all now
                self.get_logger().warning(message)
                self.same_name_said = True
        if state != self._waiting[0]:
            configured = state == "inactive" and self._waiting[0] in ("unconfigured", "configuring")
            self._waiting = (state, now, not configured)
        if (
            state not in ("unconfigured", "inactive")
            or self._waiting[2]
            or now - self._waiting[1] < self.WAITING_NOTE_S
        ):
            return
        self._waiting = (state, self._waiting[1], True)
        fqn = self.get_fully_qualified_name()
        transitions = ["configure", "activate"] if state == "unconfigured" else ["activate"]
        self.get_logger().info(
            f"{state} for {self.WAITING_NOTE_S:.0f} s: a managed node (--managed) waits for a lifecycle manager to "
            f"{' and '.join(transitions)} it (Nav2's lifecycle_manager with {self.get_name()} in its node_names); "
            f"by hand: {lifecycle_command(fqn, transitions)} (with a ROS distro install: "
            + "; ".join(f"ros2 lifecycle set {fqn} {t}" for t in transitions)
            + "); or start vdepth-node without --managed"
        )

    def _transition(self, name: str, step: Callable[[], object]) -> TransitionCallbackReturn:
        """Run one step; any error fails the transition with its reason in the log (rclpy would
        turn an escaping exception into ERROR without logging it)."""
        self._waiting = (*self._waiting[:2], True)  # a manager is there: nothing to say of the state it leaves
        try:
            step()
        except VdepthError as err:
            self.get_logger().error(f"{name} failed: {err}")
            return TransitionCallbackReturn.FAILURE
        except Exception as err:
            self.get_logger().error(f"{name} failed: {err!r}")
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.loading = True
        try:
            return self._transition("configure", lambda: self._configure(self._engine_arg, self._engine_pool_arg))
        finally:
            self.loading = False

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._transition("activate", lambda: self._activate(self._start_worker))
        return super().on_activate(state) if result == TransitionCallbackReturn.SUCCESS else result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._transition("deactivate", self._deactivate)
        return super().on_deactivate(state) if result == TransitionCallbackReturn.SUCCESS else result

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("cleanup", self._cleanup)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("shutdown", self._release)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("error recovery", self._release)  # back to unconfigured

    def _release(self, join_timeout: float | None = None) -> None:
        """Deactivate and clean up, as far as the current state needs."""
        if self._active:
            self._deactivate(join_timeout=join_timeout)
        if self._configured:
            self._cleanup()

    def close(self) -> None:
        """Release everything (the summary line with it), then destroy the node."""
        if self._active:
            self._deactivate(restart_stream=False, join_timeout=_CLOSE_JOIN_S)
        self._release(join_timeout=_CLOSE_JOIN_S)
        self.destroy_node()


def main(args: list[str] | None = None) -> int:
    """`python -m vdepth_ros.ros.node`; the console scripts start at `vdepth_ros.ros.entry`."""
    from vdepth_ros.ros.entry import main as entry

    return entry(args)


if __name__ == "__main__":
    sys.exit(main())
