"""`depth_node`: camera stream in, temporally consistent depth / disparity / organized cloud out.

Thin by design: callbacks pair image + camera_info (`sync.py`) and enqueue; one worker thread
converts messages (`conversions.py`), pushes `FrameInput`s into the shared `DepthPipeline` and
publishes the `DepthFrame`s it returns. All windowing, stitching, scale and clouds live in the
pipeline, exactly as for `vdepth-bag`.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterUninitializedException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

from vdepth_ros.blas import set_blas_threads
from vdepth_ros.consistency import FlickerMonitor
from vdepth_ros.errors import ConfigError, InputError, VdepthError
from vdepth_ros.rectify import Rectifier, has_distortion, pinhole_input, sparse_depth_input
from vdepth_ros.ros import conversions as conv
from vdepth_ros.ros.diagnostics import LatencyStats, RateMeter, level_for, make_array, make_status
from vdepth_ros.ros.params import ParamSpec, node_param_specs, runtime_change_error, validate_ros_params
from vdepth_ros.ros.qos import IncompatibleQosReporter, qos_profile
from vdepth_ros.inputs.resets import StreamResets
from vdepth_ros.inputs.sync import ApproximateTimeSync, Pair
from vdepth_ros.ros.worker import DropOldestQueue, ThrottledLog
from vdepth_ros.runtime.shared import EnginePool, SharedEngine
from vdepth_ros.triangulate import PoseBuffer, PoseTriangulator

NODE_NAME = "depth_node"
_CLOSE_JOIN_S = 10.0  # at process exit, wait this long for a window in progress
_NAME_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # one part of a ROS 2 namespace


@dataclass
class _Item:
    """One synchronised input waiting for the worker."""

    stamp_ns: int
    image: Image | CompressedImage
    info: CameraInfo | None
    info_source: str
    sparse: Image | PointCloud2 | None
    received: float  # time.monotonic() at arrival


class _Outputs:
    """The publishers of one frame status (main topics, or `provisional/...`)."""

    def __init__(self, node: Node, prefix: str, qos: Any, reporter: IncompatibleQosReporter) -> None:
        def pub(msg_type: type, name: str) -> Any:
            topic = prefix + name
            return node.create_publisher(
                msg_type, topic, qos, event_callbacks=reporter.publisher(node.resolve_topic_name(topic))
            )

        self.depth = pub(Image, "depth")
        self.disparity = pub(Image, "disparity")
        self.points = pub(PointCloud2, "points")
        self.camera_info = pub(CameraInfo, "depth/camera_info")

    def all(self) -> list[Any]:
        return [self.depth, self.disparity, self.points, self.camera_info]


class _DepthNodeCore:
    """What the plain and the managed (lifecycle) node share, as steps a lifecycle can call apart:
    `_declare_params` (construction), `_configure` (validate, load the model, create publishers),
    `_activate` (subscriptions, diagnostics timer, worker), `_deactivate`, `_cleanup`. Mixed into
    `rclpy.node.Node` (`DepthNode`, every step at once) or `rclpy.lifecycle.LifecycleNode`
    (`ManagedDepthNode`, one step per transition)."""

    _configured = False
    _active = False

    # -- construction --------------------------------------------------------------------------
    def _declare_params(self) -> None:
        self._specs: dict[str, ParamSpec] = {s.name: s for s in node_param_specs()}
        for spec in self._specs.values():
            try:
                self.declare_parameter(spec.name, spec.declare_value(), spec.descriptor())
            except Exception as err:  # rclpy's range/type exceptions: re-raise with our message
                raise ConfigError(f"parameter {spec.name}: {err}") from err

    def _param_values(self) -> dict[str, Any]:
        values = {}
        for spec in self._specs.values():
            try:
                value = self.get_parameter(spec.name).value
            except ParameterUninitializedException:  # declared by type only (an empty list default)
                value = None
            if isinstance(spec.default, list):
                value = [] if value is None else list(value)
            values[spec.name] = value
        return values

    # -- configure: parameters, model, publishers ---------------------------------------------
    def _configure(self, engine: Any = None, engine_pool: EnginePool | None = None) -> None:
        from vdepth_ros.config import PipelineConfig  # heavy imports after rclpy is up
        from vdepth_ros.pipeline import DepthPipeline

        # 1. parameters: validate, build the pipeline from the pipeline keys
        values = self._param_values()
        ros_values = {k: v for k, v in values.items() if self._specs[k].group == "ros"}
        validate_ros_params(ros_values)
        self.p = dict(ros_values)
        if self.p["blas_threads"] > 0:  # before any pipeline work: see vdepth_ros/blas.py
            before = set_blas_threads(self.p["blas_threads"])
            if any(n != self.p["blas_threads"] for n in before.values()):
                self.get_logger().info(f"OpenBLAS threads {before} -> {self.p['blas_threads']} (blas_threads)")
        self.pipeline_params = {k: v for k, v in values.items() if self._specs[k].group == "pipeline"}
        self.engine_pool = engine_pool
        pooled = None
        try:
            if engine is None and engine_pool is not None:
                config, _ = PipelineConfig.from_params(self.pipeline_params)
                engine = pooled = engine_pool.get(
                    config.resolved_model(), config.backend, config.precision, **config.engine_options()
                )
            self.pipeline = DepthPipeline.from_dict(self.pipeline_params, engine=engine)
        except Exception as err:
            if pooled is not None and engine_pool is not None:
                engine_pool.release(pooled)  # this camera does not use it after all
            if isinstance(err, (TypeError, ValueError)) and not isinstance(err, VdepthError):
                raise ConfigError(f"invalid pipeline parameters: {err}") from err
            raise
        self._owns_engine = engine is None  # built here from `model`: closed by `_cleanup`
        self.publish_policy = self.pipeline.config.publish
        scale_source = self.pipeline.config.scale_source
        if (scale_source == "sparse") != (self.p["sparse_depth"] != "none"):
            self.get_logger().warning(
                f"scale_source is {scale_source!r} but sparse_depth is {self.p['sparse_depth']!r}: set both "
                "(scale_source:=sparse sparse_depth:=image|pointcloud|pose) to get metric depth from sparse depth "
                "or camera poses"
            )

        # 2. logging, counters
        self.qos_reporter = IncompatibleQosReporter(self.get_logger().warning)
        self.input_errors = ThrottledLog(self.get_logger().error)
        self.warn_throttled = ThrottledLog(self.get_logger().warning)
        self.input_rate, self.output_rate = RateMeter(), RateMeter()
        self.latency = LatencyStats()
        self.window_latency = LatencyStats()
        self.skipped = 0
        self.resets: dict[str, int] = {}
        self._last_fit: Any = None
        self._lock = threading.Lock()
        self._pose_arrived = threading.Condition(self._lock)  # sparse_depth: pose (see _pose_for)

        # 3. publishers (outputs are relative names, remappable)
        out_qos = qos_profile(self.p["output_qos"], self.p["output_qos_depth"])
        self.outputs = _Outputs(self, "", out_qos, self.qos_reporter)
        self.provisional_outputs = (
            _Outputs(self, "provisional/", out_qos, self.qos_reporter) if self.publish_policy == "both" else None
        )
        self.colormap_pub = self.create_publisher(
            Image,
            "~/depth_colormap",
            out_qos,
            event_callbacks=self.qos_reporter.publisher(self.resolve_topic_name("~/depth_colormap")),
        )
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        # 4. input state: synchronisation, queue, metric-scale helpers
        self.sync: ApproximateTimeSync[Image | CompressedImage, CameraInfo] = ApproximateTimeSync(
            int(self.p["sync_slop"] * 1e9), self.p["sync_queue_size"], int(self.p["camera_info_timeout"] * 1e9)
        )
        self._sparse: deque[tuple[int, Any]] = deque(maxlen=8)
        self._last_image_stamp: int | None = None
        # sparse_depth: pose -> metric points triangulated from the images with the camera's poses,
        # each image's pose interpolated at its stamp when the worker takes it (odometry may lag)
        self.triangulator = PoseTriangulator() if self.p["sparse_depth"] == "pose" else None
        self.poses = PoseBuffer(int(self.p["sparse_depth_slop"] * 1e9))
        self.rectifier = Rectifier() if self.p["rectify"] else None
        self.flicker = FlickerMonitor(self.p["flicker_period"])
        self._distortion_noted = False
        self._state = StreamResets(int(self.p["max_gap"] * 1e9))
        self.image_sub = self.info_sub = self.sparse_sub = self.diag_timer = None
        self._configured = True

    # -- activate: inputs and the worker ------------------------------------------------------
    def _activate(self, start_worker: bool = True) -> None:
        in_qos = qos_profile(self.p["input_qos"], self.p["input_qos_depth"])
        image_topic = self.resolve_topic_name("image")
        transport = self.p["image_transport"]
        compressed = transport == "compressed" or (transport == "auto" and image_topic.endswith("/compressed"))
        self.image_sub = self.create_subscription(
            CompressedImage if compressed else Image,
            "image",
            self._on_image,
            in_qos,
            event_callbacks=self.qos_reporter.subscription(image_topic),
        )
        self.info_sub = self.create_subscription(
            CameraInfo,
            "camera_info",
            self._on_info,
            in_qos,
            event_callbacks=self.qos_reporter.subscription(self.resolve_topic_name("camera_info")),
        )
        self.sparse_sub = None
        if self.p["sparse_depth"] != "none":
            mode = self.p["sparse_depth"]
            sparse_type = {"image": Image, "pointcloud": PointCloud2, "pose": PoseStamped}[mode]
            topic = "camera_pose" if mode == "pose" else "sparse_depth"
            self.sparse_sub = self.create_subscription(
                sparse_type,
                topic,
                self._on_sparse,
                in_qos,
                event_callbacks=self.qos_reporter.subscription(self.resolve_topic_name(topic)),
            )
        self.diag_timer = self.create_timer(self.p["diagnostics_period"], self.publish_diagnostics)
        # Each activation gets its own stop event and queue, so a worker can never take the next
        # activation's frames; `_deactivate` waits for the worker, so two never share the pipeline.
        self._stop = threading.Event()
        self.queue: DropOldestQueue[_Item] = DropOldestQueue(self.p["queue_size"])
        self._drops_reported = 0
        self._worker: threading.Thread | None = None
        if start_worker:
            self._worker = threading.Thread(
                target=self._run_worker, args=(self._stop, self.queue), name="vdepth-worker", daemon=True
            )
            self._worker.start()
        self._active = True
        self.get_logger().info(
            f"subscribed to {image_topic} ({'compressed' if compressed else 'raw'}, {self.p['input_qos']}) and "
            f"{self.resolve_topic_name('camera_info')}; publishing {self.publish_policy} frames on "
            f"{', '.join(self.resolve_topic_name(t) for t in ('depth', 'disparity', 'points', 'depth/camera_info'))} "
            f"({self.p['output_qos']})"
        )

    def _deactivate(self, restart_stream: bool = True, join_timeout: float | None = None) -> None:
        """Stop taking input: subscriptions and timer gone, worker stopped (what is queued is
        discarded; a window in progress is finished first, waiting at most `join_timeout`, None =
        as long as it takes) and, with `restart_stream`, the stream restarted so a later
        activation starts clean."""
        self._active = False
        self._stop.set()
        self.queue.close()
        if self._worker is not None:
            self._worker.join(timeout=join_timeout)
            if self._worker.is_alive():
                self.get_logger().warning(f"the worker is still inside a window after {join_timeout} s")
            self._worker = None
        for entity, destroy in (
            (self.image_sub, self.destroy_subscription),
            (self.info_sub, self.destroy_subscription),
            (self.sparse_sub, self.destroy_subscription),
            (self.diag_timer, self.destroy_timer),
        ):
            if entity is not None:
                destroy(entity)
        self.image_sub = self.info_sub = self.sparse_sub = self.diag_timer = None
        with self._lock:
            self.sync.clear()
            self._sparse.clear()
            self.poses.clear()
            self._last_image_stamp = None
        if not restart_stream:
            return
        self._state = StreamResets(int(self.p["max_gap"] * 1e9))
        self.pipeline.reset("deactivated")
        if self.triangulator is not None:
            self.triangulator.reset()
        self.flicker.reset()

    def _cleanup(self) -> None:
        """Back to unconfigured: publishers destroyed, the model released (closed if this node
        loaded it)."""
        for pub in [*self.outputs.all(), *(self.provisional_outputs.all() if self.provisional_outputs else [])]:
            self.destroy_publisher(pub)
        self.destroy_publisher(self.colormap_pub)
        self.destroy_publisher(self.diag_pub)
        if self._owns_engine:
            self.pipeline.engine.close()
        elif self.engine_pool is not None and isinstance(self.pipeline.engine, SharedEngine):
            self.engine_pool.release(self.pipeline.engine)
        self.pipeline = None
        self._configured = False

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        if not self._configured:  # a managed node before configure: anything valid, read at configure
            for param in params:
                spec = self._specs.get(param.name)
                reason = spec.validate(param.value) if spec is not None else None
                if reason:
                    return SetParametersResult(successful=False, reason=reason)
            return SetParametersResult(successful=True)
        for param in params:
            old = self.p.get(param.name, self.pipeline_params.get(param.name))
            reason = runtime_change_error(param.name, old, param.value, self._specs)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        for param in params:
            if param.name in self.p:
                self.p[param.name] = param.value
            if param.name == "flicker_period":
                self.flicker.period = float(param.value)
        return SetParametersResult(successful=True)

    # -- callbacks (executor thread): never block, never raise -------------------------------
    def _on_image(self, msg: Image | CompressedImage) -> None:
        try:
            stamp = conv.stamp_to_ns(msg.header.stamp)
            self.input_rate.tick()
            if self.p["skip_when_unsubscribed"] and not self.has_subscribers():
                self.skipped += 1
                return
            with self._lock:
                if self._last_image_stamp is not None and stamp < self._last_image_stamp:
                    self.sync.clear()  # bag loop / clock reset: old camera_infos would mis-pair
                self._last_image_stamp = stamp
                pairs = self.sync.add_image(stamp, msg)
            self._enqueue(pairs)
        except Exception as err:  # a callback must never raise
            self.input_errors("image-cb", f"image callback failed: {err!r}")

    def _on_info(self, msg: CameraInfo) -> None:
        try:
            with self._lock:
                pairs = self.sync.add_info(conv.stamp_to_ns(msg.header.stamp), msg)
            self._enqueue(pairs)
        except Exception as err:
            self.input_errors("info-cb", f"camera_info callback failed: {err!r}")

    def _on_sparse(self, msg: Image | PointCloud2 | PoseStamped) -> None:
        stamp = conv.stamp_to_ns(msg.header.stamp)
        if isinstance(msg, PoseStamped):
            try:
                pose = conv.pose_from_msg(msg)
            except InputError as err:
                self.input_errors("pose-msg", f"ignoring a camera_pose message: {err}")
                return
            with self._pose_arrived:
                self.poses.add(stamp, pose)
                self._pose_arrived.notify_all()
            return
        with self._lock:
            self._sparse.append((stamp, msg))

    def _enqueue(self, pairs: list[Pair]) -> None:
        now = time.monotonic()
        for pair in pairs:
            item = _Item(pair.stamp_ns, pair.image, pair.info, pair.source, self._nearest_sparse(pair.stamp_ns), now)
            if self.queue.put(item):
                self.warn_throttled(
                    "drop",
                    f"input queue full ({self.queue.maxsize}): dropped the oldest frame; "
                    f"{self.queue.dropped} dropped so far (inference slower than input)",
                )

    def _nearest_sparse(self, stamp: int) -> Any:
        if self.sparse_sub is None:
            return None
        slop = int(self.p["sparse_depth_slop"] * 1e9)
        with self._lock:
            best = min(self._sparse, key=lambda s: abs(s[0] - stamp), default=None)
        return best[1] if best is not None and abs(best[0] - stamp) <= slop else None

    def has_subscribers(self) -> bool:
        """True if anything listens to an output (skip inference otherwise, when configured)."""
        pubs = self.outputs.all() + (self.provisional_outputs.all() if self.provisional_outputs else [])
        pubs.append(self.colormap_pub)
        return any(p.get_subscription_count() > 0 for p in pubs)

    # -- worker thread -----------------------------------------------------------------------
    def _run_worker(self, stop: threading.Event, queue: DropOldestQueue[_Item]) -> None:
        while not stop.is_set():
            item = queue.get(timeout=0.1)
            if item is not None:
                self.process(item)

    def process_pending(self) -> int:
        """Process everything queued in the calling thread (tests without the worker)."""
        n = 0
        while (item := self.queue.get(timeout=0)) is not None:
            self.process(item)
            n += 1
        return n

    def process(self, item: _Item) -> None:
        """Convert one input, run it through the pipeline and publish what comes out. Never raises."""
        try:
            frame = self._frame_input(item)
        except InputError as err:
            self.input_errors(
                f"input:{type(item.image).__name__}:{getattr(item.image, 'encoding', '')}",
                f"dropping input frame: {err}",
            )
            return
        except Exception as err:
            self.input_errors("input-unexpected", f"dropping input frame: {err!r}")
            return
        try:
            self._check_resets(item, frame)
            t0 = time.monotonic()
            frames = self.pipeline.push(frame)
            if frames:
                self.window_latency.add(time.monotonic() - t0)
            for out in frames:
                self._publish(out)
        except Exception as err:  # keep running; the pipeline resets
            self.input_errors("pipeline", f"depth pipeline failed on frame {item.stamp_ns}: {err!r}; resetting")
            self._reset("pipeline error")

    def _frame_input(self, item: _Item) -> Any:
        from vdepth_ros.pipeline import FrameInput

        rgb = conv.rgb_from_msg(item.image)
        h, w = rgb.shape[:2]
        rgb, camera, view = pinhole_input(rgb, item.info, self.rectifier)
        self.flicker.add_image(item.stamp_ns, rgb)
        if view is None and not self._distortion_noted and item.info is not None and has_distortion(item.info):
            self._distortion_noted = True
            self.get_logger().info(
                "camera_info has lens distortion (D); the image is taken as rectified (image_rect), as "
                "depth_image_proc does. If 'image' is a raw, distorted image, set rectify:=true."
            )
        sparse = None
        if self.triangulator is not None:
            pose = self._pose_for(item)
            sparse = self._triangulated_depth(pose if view is None else view.pose(pose), rgb, camera)
        elif item.sparse is not None:
            try:
                depth = item.sparse if isinstance(item.sparse, PointCloud2) else conv.depth_from_msg(item.sparse)
                sparse = sparse_depth_input(depth, camera, (h, w), view)
            except InputError as err:
                self.input_errors("sparse", f"ignoring sparse_depth: {err}")
        header = conv.copy_header(item.image.header)
        return FrameInput(rgb=rgb, stamp_ns=item.stamp_ns, camera=camera, sparse_depth=sparse, meta=header)

    def _pose_for(self, item: _Item) -> Any:
        """The camera pose at the image's stamp. Odometry often arrives after its image (a VIO's
        processing time), and an idle worker takes a frame at once, so it waits for a pose at or after
        the stamp until `sparse_depth_slop` after the image's arrival, then interpolates."""
        deadline = item.received + float(self.p["sparse_depth_slop"])
        with self._pose_arrived:
            self._pose_arrived.wait_for(
                lambda: self.poses.covers(item.stamp_ns), timeout=max(0.0, deadline - time.monotonic())
            )
            return self.poses.at(item.stamp_ns)

    def _triangulated_depth(self, pose: Any, rgb: Any, camera: Any) -> Any:
        """Sparse depth of this frame from the tracked points and the camera's poses, or None
        (no pose or camera_info: `PoseTriangulator.push` restarts the tracks; reported here)."""
        assert self.triangulator is not None
        try:
            return self.triangulator.push(rgb, pose, None if camera is None else camera.matrix)
        except InputError as err:
            self.input_errors(
                "pose",
                f"no metric points for this frame: {err} (camera_pose is looked up within "
                f"sparse_depth_slop = {self.p['sparse_depth_slop']} s of the image; camera_info is needed too)",
            )
            return None

    # -- resets ------------------------------------------------------------------------------
    def _check_resets(self, item: _Item, frame: Any) -> None:
        """Restart the stream on a time jump, a long gap or new intrinsics (the pipeline itself
        restarts on a resolution change; we only log that one)."""
        reason = self._state.update(
            frame.rgb.shape[:2], item.stamp_ns, conv.info_signature(item.info) if item.info is not None else None
        )
        if reason:
            self._reset(reason, flush=True, pipeline=not reason.startswith("resolution"))

    def _reset(self, reason: str, *, flush: bool = False, pipeline: bool = True) -> None:
        """Log once, publish what the old stream still holds (`flush`), then reset the pipeline."""
        kind = reason.split(":")[0]
        self.resets[kind] = self.resets.get(kind, 0) + 1
        self.get_logger().warning(f"restarting the depth stream: {reason}")
        if self.triangulator is not None:
            self.triangulator.reset()  # its tracks belong to the old stream
        self.flicker.reset()
        if not pipeline:
            return
        try:
            if flush:
                for out in self.pipeline.flush():
                    self._publish(out)
            self.pipeline.reset(reason)
        except Exception as err:
            self.input_errors("reset", f"flushing the old stream failed: {err!r}")
            self.pipeline.reset(reason)

    # -- publishing --------------------------------------------------------------------------
    def _publish(self, f: Any) -> None:
        # "provisional"/"final": the pipeline already chose one emission per frame -> main topics.
        # "both": final frames on the main topics, early (provisional) ones on provisional/...
        outputs = self.outputs
        values = f.depth if f.depth is not None else f.disparity  # what the colormap and flicker look at
        if self.publish_policy == "both" and f.status == "provisional":
            outputs = self.provisional_outputs
        header: Header = f.meta if isinstance(f.meta, Header) else Header(stamp=conv.ns_to_stamp(f.stamp_ns))
        if f.depth is not None and outputs.depth.get_subscription_count() > 0:
            outputs.depth.publish(conv.image_msg(f.depth, "32FC1", header))
        if outputs.disparity.get_subscription_count() > 0:
            outputs.disparity.publish(conv.image_msg(f.disparity, "32FC1", header))
        if f.points is not None and outputs.points.get_subscription_count() > 0:
            outputs.points.publish(conv.cloud_msg(f.points, f.colors, header))
        if f.camera is not None and outputs.camera_info.get_subscription_count() > 0:
            outputs.camera_info.publish(conv.info_msg(f.camera, header))
        if self.p["publish_colormap"] and outputs is self.outputs and self.colormap_pub.get_subscription_count() > 0:
            is_depth = f.depth is not None
            self.colormap_pub.publish(
                conv.colormap_msg(
                    values, header, self.p["colormap_min"], self.p["colormap_max"], near_is_high=not is_depth
                )
            )
        self._last_fit = f.fit
        if outputs is self.outputs:
            self.flicker.add_depth(f.stamp_ns, f.index, values, time.monotonic())
            self.output_rate.tick()
            now_ns = self.get_clock().now().nanoseconds
            self.latency.add((now_ns - f.stamp_ns) / 1e9)

    # -- diagnostics -------------------------------------------------------------------------
    def diagnostics_values(self) -> dict[str, Any]:
        """The numbers reported on /diagnostics (also used by the benchmark)."""
        lat, win = self.latency.summary(), self.window_latency.summary()
        fit = self._last_fit
        stats = getattr(self.pipeline, "stats", None)
        values: dict[str, Any] = {
            "input rate [Hz]": self.input_rate.rate(),
            "output rate [Hz]": self.output_rate.rate(),
            "latency median [s]": lat["median"],
            "latency p95 [s]": lat["p95"],
            "window latency median [s]": win["median"],
            "window latency max [s]": win["max"],
            "queued": len(self.queue),
            "dropped (queue full)": self.queue.dropped,
            "skipped (no subscribers)": self.skipped,
            "input errors": self.input_errors.count,
            "camera_info synced/cached/none": "/".join(str(self.sync.counts[k]) for k in ("synced", "cached", "none")),
            "resets": ", ".join(f"{k}={v}" for k, v in sorted(self.resets.items())) or "0",
            "qos incompatible events": self.qos_reporter.events,
            "publish": self.publish_policy,
            "flicker (flow warping error)": "off"
            if not self.flicker.enabled
            else ("no measurement yet" if self.flicker.mean is None else round(self.flicker.mean, 5)),
        }
        engine = getattr(self.pipeline, "engine", None)
        if self.engine_pool is not None and isinstance(engine, SharedEngine):
            values["engine shared by (cameras)"] = self.engine_pool.users(engine)
            values["engine wait [s]"] = round(engine.wait_s, 3)
        if fit is not None:
            for key in ("scale_source", "scale", "shift", "residual", "inlier_fraction", "degenerate"):
                if hasattr(fit, key):
                    values[f"fit {key}"] = getattr(fit, key)
        if stats is not None:
            for key, val in vars(stats).items() if hasattr(stats, "__dict__") else []:
                if isinstance(val, (int, float, str, bool)):
                    values[f"pipeline {key}"] = val
        return values

    def publish_diagnostics(self) -> None:
        try:
            values = self.diagnostics_values()
            drops = self.queue.dropped - self._drops_reported
            self._drops_reported = self.queue.dropped
            level, message = level_for(
                values["input rate [Hz]"],
                values["output rate [Hz]"],
                drops,
                bool(getattr(self._last_fit, "degenerate", False)),
                self.input_rate.rate() > 0,
            )
            fqn = self.get_fully_qualified_name()
            status = make_status(f"{fqn}: depth stream", fqn, level, message, values)
            self.diag_pub.publish(make_array(self.get_clock().now().to_msg(), [status]))
        except Exception as err:
            self.input_errors("diag", f"diagnostics failed: {err!r}")


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
        self._declare_params()
        self._configure(engine, engine_pool)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._activate(start_worker)

    def close(self) -> None:
        """Stop the worker (the pending queue is discarded) and destroy the node."""
        if self._active:
            self._deactivate(restart_stream=False, join_timeout=_CLOSE_JOIN_S)
        self.destroy_node()


class ManagedDepthNode(_DepthNodeCore, LifecycleNode):
    """The depth node as a ROS 2 managed (lifecycle) node (`vdepth-node --managed`), for bring-up
    managers such as Nav2's lifecycle_manager:

    * unconfigured: parameters declared (settable), nothing loaded;
    * configure: parameters validated, the model loaded, publishers created (a bad parameter or
      model fails the transition with the reason logged; fix it and configure again);
    * activate: subscriptions, worker and /diagnostics start; deactivate stops them (queued input
      is discarded, the stream restarts on the next activation);
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
        self._engine_arg, self._engine_pool_arg, self._start_worker = engine, engine_pool, start_worker
        self._declare_params()
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _transition(self, name: str, step: Callable[[], object]) -> TransitionCallbackReturn:
        """Run one step; any error fails the transition with its reason in the log (rclpy would
        turn an escaping exception into ERROR without logging it)."""
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
        return self._transition("configure", lambda: self._configure(self._engine_arg, self._engine_pool_arg))

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
        """Release everything, then destroy the node."""
        self._release(join_timeout=_CLOSE_JOIN_S)
        self.destroy_node()


USAGE = """usage: vdepth-node [--managed] [--cameras NAME [NAME ...]]
                   [--ros-args [--params-file FILE] [-p NAME:=VALUE] [-r FROM:=TO] ...]

Live video depth: subscribes to image (+ camera_info, optional sparse_depth), publishes depth,
disparity, points, depth/camera_info and /diagnostics. Parameters and topics: docs/node.md;
defaults: config/depth.yaml (share/vdepth_ros/config/depth.yaml when installed).

--cameras front rear   one depth_node per camera, in namespaces /front and /rear (topics
                       /front/image -> /front/depth, ...), sharing one loaded model; remap with
                       full names (-r /front/image:=/cam_front/image_rect); per-camera parameters
                       go in /front/depth_node: sections of the params file (docs/node.md).
--managed              a ROS 2 managed (lifecycle) node: starts unconfigured and waits for the
                       configure / activate transitions (e.g. from Nav2's lifecycle_manager).
"""


def camera_namespaces(names: list[str]) -> list[str]:
    """`--cameras` names as absolute namespaces ("front" -> "/front", "robot1/front" -> "/robot1/front").

    Raises:
        ConfigError: a name is not a valid ROS namespace, or two name the same camera.
    """
    out: list[str] = []
    for name in names:
        tokens = name.strip("/").split("/")
        if not all(_NAME_TOKEN.fullmatch(t) for t in tokens):
            raise ConfigError(
                f"--cameras {name!r}: a camera name must be a ROS namespace (ASCII letters, digits, '_' and '/', "
                "each part starting with a letter or '_')"
            )
        ns = "/" + "/".join(tokens)
        if ns in out:
            raise ConfigError(f"--cameras names {ns} twice")
        out.append(ns)
    return out


def build_nodes(
    cameras: list[str], *, managed: bool = False, **kwargs: Any
) -> tuple[list[DepthNode | ManagedDepthNode], EnginePool | None]:
    """The process's depth nodes: one, or one per `--cameras` namespace sharing an `EnginePool`;
    `ManagedDepthNode`s (unconfigured) with `managed`, else running `DepthNode`s.

    `kwargs` go to every node (tests pass `context`, `parameter_overrides`...). On an error the
    nodes built so far are closed before it propagates.

    Raises:
        ConfigError: a camera name is invalid, or a `__ns` remap puts every camera in one namespace.
    """
    node_cls: type[DepthNode | ManagedDepthNode] = ManagedDepthNode if managed else DepthNode
    namespaces = camera_namespaces(cameras)
    if not namespaces:
        return [node_cls(**kwargs)], None
    pool = EnginePool()
    nodes: list[DepthNode | ManagedDepthNode] = []
    try:
        for ns in namespaces:
            node = node_cls(namespace=ns, engine_pool=pool, **kwargs)
            nodes.append(node)
            if node.get_namespace() != ns:  # a global `-r __ns:=...` overrides every node's namespace
                raise ConfigError(
                    f"camera {ns} was put in namespace {node.get_namespace()} by a '__ns' remap, which applies to "
                    "every node of the process; name the cameras with their full namespaces instead "
                    "(--cameras robot1/front robot1/rear)"
                )
    except BaseException:
        for node in nodes:
            node.close()
        pool.close()
        raise
    if managed:
        nodes[0].get_logger().info(f"{len(nodes)} managed cameras ({', '.join(namespaces)}), unconfigured")
    else:
        nodes[0].get_logger().info(f"{len(nodes)} cameras ({', '.join(namespaces)}) share {len(pool)} loaded model(s)")
    return nodes, pool


def main(args: list[str] | None = None) -> int:
    """Console entry point: `vdepth-node [--managed] [--cameras ...] --ros-args --params-file config/depth.yaml ...`."""
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv if args is None else args)
    extra = remove_ros_args(args=argv)[1:]
    if extra in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    managed = "--managed" in extra
    extra = [a for a in extra if a != "--managed"]
    cameras: list[str] = []
    if extra[:1] == ["--cameras"]:
        cameras, extra = extra[1:], []
        if not cameras:
            print(f"{USAGE}\nvdepth-node: --cameras needs at least one name", file=sys.stderr)
            return 2
    if extra:
        print(
            f"{USAGE}\nvdepth-node: unrecognized arguments {extra} (ROS arguments go after --ros-args)", file=sys.stderr
        )
        return 2
    rclpy.init(args=argv)
    nodes: list[DepthNode | ManagedDepthNode] = []
    pool = None
    try:
        nodes, pool = build_nodes(cameras, managed=managed)
        executor = SingleThreadedExecutor()  # callbacks only enqueue; each node's worker thread does the work
        for node in nodes:
            executor.add_node(node)
        executor.spin()
    except ConfigError as err:
        print(f"depth_node: invalid configuration: {err}", file=sys.stderr)
        return 2
    except VdepthError as err:  # model cannot be loaded, backend missing...
        print(f"depth_node: cannot start: {err}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for node in nodes:
            node.close()
        if pool is not None:
            pool.close()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
