"""Fault injection against the running node: for each bad input or fault the node stays alive, logs
one clear rate-limited message (the fault is injected several times), and publishes again on the
next good frames.

In-process with real rclpy and the worker thread running as deployed; start-up faults (bad params,
model and config files) run `vdepth-node`'s entry point and expect one `cannot start:` line and
exit status 2. The process-level runs (three processes, SIGINT) are in test_ros_deployed.py.
"""

from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rclpy
from fakes import MODEL_FAULTS, LuminanceEngine, RecordingLogger, broken_model, run_node_main
from geometry_msgs.msg import PoseStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

from vdepth_ros.ros import conversions as conv
from vdepth_ros.ros.node import DepthNode
from vdepth_ros.ros.qos import qos_profile

pytestmark = [pytest.mark.ros, pytest.mark.filterwarnings("ignore::DeprecationWarning:rclpy.event_handler")]
H, W = 48, 64
K = [60.0, 0.0, 31.5, 0.0, 60.0, 23.5, 0.0, 0.0, 1.0]
PERIOD = 66_666_667
T0 = 1_000_000_000


class Received:
    """Outputs received by the test's subscriber: how many, and the last few messages."""

    def __init__(self, keep: int = 4) -> None:
        self.count = 0
        self.last: deque[Image] = deque(maxlen=keep)

    def append(self, msg: Image) -> None:
        self.count += 1
        self.last.append(msg)

    def __len__(self) -> int:
        return self.count


class FaultRig:
    """A running DepthNode (worker thread on), a camera publisher and a reliable subscriber."""

    def __init__(self, params: dict[str, Any] | None = None, engine: Any = None, record: bool = True) -> None:
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
        params = {"scale_source": "range", "max_gap": 1.0, **(params or {})}
        self.compressed = params.get("image_transport") == "compressed"
        self.node = DepthNode(
            context=self.ctx,
            engine=engine or LuminanceEngine(height=H, width=W),
            start_worker=True,
            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
        )
        self.log = RecordingLogger()
        if record:
            self.node.log.logger = self.log
        self.peer = Node("camera", context=self.ctx)
        rel = qos_profile("reliable", 50)
        # a count and the last few, not every output: at the camera's resolution a burst's outputs would
        # fill the memory the burst test measures
        self.got = Received()
        self.peer.create_subscription(Image, "disparity", self.got.append, rel)  # published with any scale source
        # image_transport's names: the compressed stream of base topic `image` is `image/compressed`
        image_topic = "image/compressed" if self.compressed else "image"
        self.pub_image = self.peer.create_publisher(CompressedImage if self.compressed else Image, image_topic, rel)
        self.pub_info = self.peer.create_publisher(CameraInfo, "camera_info", rel)
        sparse_type = {"image": Image, "pointcloud": PointCloud2, "pose": PoseStamped}.get(params.get("sparse_depth"))
        topic = "camera_pose" if params.get("sparse_depth") == "pose" else "sparse_depth"
        self.pub_sparse = self.peer.create_publisher(sparse_type, topic, rel) if sparse_type else None
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.ex.add_node(self.peer)
        self.k = 0
        self.rng = np.random.default_rng(0)
        base = self.rng.integers(20, 236, (H // 4, W // 4, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
        self.base = base
        self.spin(0.2)

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.ex.spin_once(timeout_sec=0.005)

    def spin_until(self, cond: Callable[[], bool], timeout: float = 20.0) -> bool:
        end = time.monotonic() + timeout
        while not cond() and time.monotonic() < end:
            self.ex.spin_once(timeout_sec=0.01)
        return cond()

    def header(self, k: int | None = None) -> Header:
        return Header(stamp=conv.ns_to_stamp(T0 + (self.k if k is None else k) * PERIOD), frame_id="cam")

    def rgb(self) -> np.ndarray:
        return np.roll(self.base, 2 * self.k, axis=1).copy()

    def image_msg(self, rgb: np.ndarray, h: Header) -> Any:
        if not self.compressed:
            return conv.image_msg(rgb, "rgb8", h)
        import cv2

        msg = CompressedImage(header=h, format="png")
        msg.data = cv2.imencode(".png", rgb[..., ::-1])[1].tobytes()
        return msg

    def frame(self, image: Any = None, info: Any = None, advance: bool = True) -> None:
        """One camera frame (a good one unless given), then its camera_info."""
        h = self.header()
        self.pub_image.publish(image if image is not None else self.image_msg(self.rgb(), h))
        self.pub_info.publish(info if info is not None else CameraInfo(header=h, width=W, height=H, k=K))
        self.k += advance
        self.spin(0.02)

    def good(self, n: int) -> None:
        for _ in range(n):
            self.frame()

    def settle(self) -> None:
        """Until the node has taken everything sent and the worker is idle."""
        self.spin(0.2)
        self.spin_until(lambda: len(self.node.queue) == 0 and not self.node.worker.busy.is_set())
        self.spin(0.1)

    def close(self) -> None:
        self.ex.shutdown()
        self.node.close()
        self.peer.destroy_node()
        rclpy.shutdown(context=self.ctx)


# -- the faults --------------------------------------------------------------------------------
def raw(rig: FaultRig, **fields: Any) -> Image:
    """A raw Image message with any (possibly inconsistent) fields."""
    rgb = rig.rgb()
    msg = Image(header=rig.header(), height=H, width=W, encoding="rgb8", step=W * 3)
    msg.data = rgb.tobytes()
    for key, value in fields.items():
        setattr(msg, key, value)
    return msg


def info(rig: FaultRig, **fields: Any) -> CameraInfo:
    msg = CameraInfo(header=rig.header(), width=W, height=H, k=K)
    for key, value in fields.items():
        setattr(msg, key, value)
    return msg


def compressed(rig: FaultRig, data: bytes) -> CompressedImage:
    msg = CompressedImage(header=rig.header(), format="png")
    msg.data = data
    return msg


def depth_png(rig: FaultRig) -> CompressedImage:
    """A depth camera's frame of the compressed plugin: a 16-bit png of millimetres."""
    import cv2

    msg = CompressedImage(header=rig.header(), format="16UC1; png compressed")
    msg.data = cv2.imencode(".png", np.full((H, W), 1500, np.uint16))[1].tobytes()
    return msg


PNG_BOMB = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", 10000, 10000) + b"\x08\x02\0\0\0"


def sparse_frame(rig: FaultRig, sparse: Any) -> None:
    sparse.header = rig.header()
    rig.pub_sparse.publish(sparse)
    rig.spin(0.01)
    rig.frame()


def sparse_in_frame(rig: FaultRig, frame_id: str, cloud: bool = False) -> None:
    """A usable sparse depth message, at the image's stamp but in another frame than the image's ("cam")."""
    h = Header(stamp=rig.header().stamp, frame_id=frame_id)
    if cloud:
        msg = conv.cloud_msg(np.array([[[0.1, 0.0, 2.0], [-0.1, 0.05, 3.0]]], np.float32), None, h)
    else:
        msg = conv.image_msg(np.full((H, W), 2.0, np.float32), "32FC1", h)
    rig.pub_sparse.publish(msg)
    rig.spin(0.01)
    rig.frame()


def bad_pose(rig: FaultRig) -> None:
    msg = PoseStamped(header=rig.header())
    msg.pose.orientation.w = float("nan")
    rig.pub_sparse.publish(msg)
    rig.frame()


def short_cloud(rig: FaultRig) -> None:
    cloud = conv.cloud_msg(np.ones((1, 10, 3), np.float32), None, rig.header())
    cloud.data = cloud.data[:20]
    sparse_frame(rig, cloud)


def alternate_resolution(rig: FaultRig) -> None:
    small = np.ascontiguousarray(rig.rgb()[::2, ::2])
    h = rig.header()
    rig.frame(conv.image_msg(small, "rgb8", h), CameraInfo(header=h, width=W // 2, height=H // 2, k=K))
    rig.frame()  # back to the full size


class Boom(LuminanceEngine):
    """Raises (or returns a wrong shape) on its third window, once: a model failing mid-stream."""

    def __init__(self, error: str) -> None:
        super().__init__(height=H, width=W)
        self.error = error

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self.calls == 2:
            self.calls += 1
            if self.error == "raise":
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            return np.zeros((1, 3, 5, 5), np.float32)
        return super()._run(batch)


class Overflowing(LuminanceEngine):
    """An fp16 engine overflowing: +Inf over a patch of every window from its third on."""

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = super()._run(batch)
        if self.calls >= 3:
            out[..., : H // 2, : W // 2] = np.inf
        return out


class Slow(LuminanceEngine):
    def _run(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(0.05)
        return super()._run(batch)


def burst(rig: FaultRig) -> None:
    for _ in range(12):
        h = rig.header()
        rig.pub_image.publish(rig.image_msg(rig.rgb(), h))
        rig.pub_info.publish(CameraInfo(header=h, width=W, height=H, k=K))
        rig.k += 1
    rig.spin(0.05)


def publish_fails_once(rig: FaultRig) -> None:
    """A bug in publishing (a conversion raising) inside the worker, on the next window only."""
    outputs = rig.node.outputs
    original = outputs.publish

    def broken(frame: Any, *_: Any) -> bool:  # (and its due time)
        outputs.publish = original  # type: ignore[method-assign]
        raise TypeError("'NoneType' object is not subscriptable")

    outputs.publish = broken  # type: ignore[method-assign]
    rig.good(6)


@dataclass
class Fault:
    inject: Callable[[FaultRig], None]
    expect: str  # in the one message logged for it
    level: str = "error"
    params: dict[str, Any] = field(default_factory=dict)
    engine: Callable[[], Any] | None = None
    repeats: int = 4


FAULTS: dict[str, Fault] = {
    "depth image on the colour input": Fault(
        lambda r: r.frame(conv.image_msg(np.full((H, W), 900, np.uint16), "16UC1", r.header())),
        "16UC1 is a depth image",
    ),
    "unknown encoding": Fault(lambda r: r.frame(raw(r, encoding="i420")), "unsupported image encoding 'i420'"),
    "truncated data": Fault(lambda r: r.frame(raw(r, data=bytes(100))), "data has 100 bytes"),
    "step shorter than a row": Fault(lambda r: r.frame(raw(r, step=W)), f"step {W} < width"),
    "zero size": Fault(lambda r: r.frame(raw(r, height=0)), "invalid size"),
    "odd-width YUV 4:2:2": Fault(
        lambda r: r.frame(raw(r, encoding="yuv422", width=W - 1, step=2 * (W - 1), data=bytes(2 * (W - 1) * H))),
        "odd width",
    ),
    "image larger than max_input_pixels": Fault(
        lambda r: r.frame(conv.image_msg(np.zeros((2 * H, 2 * W, 3), np.uint8), "rgb8", r.header())),
        "larger than max_input_pixels",
        params={"max_input_pixels": H * W},
    ),
    "garbage compressed bytes": Fault(
        lambda r: r.frame(compressed(r, b"\xff\xd8 not really a jpeg")),
        "cannot decode compressed image",
        params={"image_transport": "compressed"},
    ),
    "depth png amid compressed colour frames": Fault(  # was decoded as a grey frame and run
        lambda r: r.frame(depth_png(r)),
        "(a 16UC1 png), not a colour image: remap image to the colour camera's topic",
        params={"image_transport": "compressed"},
    ),
    "empty compressed image": Fault(
        lambda r: r.frame(compressed(r, b"")),
        "cannot decode compressed image (0 bytes",
        params={"image_transport": "compressed"},
    ),
    "PNG decompression bomb": Fault(
        lambda r: r.frame(compressed(r, PNG_BOMB)), "10000x10000", params={"image_transport": "compressed"}
    ),
    "NaN in camera_info K": Fault(lambda r: r.frame(info=info(r, k=[float("nan"), *K[1:]])), "K holds NaN"),
    "infinity in camera_info P": Fault(
        lambda r: r.frame(info=info(r, p=[float("inf")] + [0.0] * 11)), "P holds NaN or infinity"
    ),
    "negative focal length": Fault(
        lambda r: r.frame(info=info(r, k=[-60.0, *K[1:]])), "focal lengths must be positive"
    ),
    "K inconsistent with P": Fault(
        lambda r: r.frame(info=info(r, p=[600.0, 0, 31.5, 0, 0, 600.0, 23.5, 0, 0, 0, 1, 0])), "does not fit K"
    ),
    "camera_info for another image size": Fault(
        lambda r: r.frame(info=info(r, width=W, height=3 * H, k=[60.0, 0, 31.5, 0, 60.0, 70.0, 0, 0, 1])),
        "another aspect ratio",
    ),
    "camera_info of another frame": Fault(
        lambda r: r.frame(info=info(r, header=Header(stamp=r.header().stamp, frame_id="depth_optical"))),
        "the camera_info is in frame 'depth_optical', the image in 'cam'",
        "warning",
    ),
    # (taken at the image's size with one WARN since vdepth-bag and the node share that rule; it was refused)
    "calibrated camera_info without a size": Fault(
        lambda r: r.frame(info=info(r, width=0, height=0)), "taken as calibrated at the image's size", "warning"
    ),
    "alternating resolutions": Fault(alternate_resolution, "restarting the depth stream: resolution", "warning"),
    "stamp going backwards": Fault(
        lambda r: r.frame(conv.image_msg(r.rgb(), "rgb8", r.header(r.k - 5)), info(r), advance=False),
        "restarting the depth stream: time jump",
        "warning",
    ),
    "duplicated stamp": Fault(lambda r: (r.frame(advance=False), r.frame()), "repeats the previous image's"),
    # (a gap takes time to arrive too: stamps jumping between images that arrive on time are a driver's clock set
    # mid-stream, `inputs.resets.clock_step_ns`; the rig sends its frames about 3x faster than their stamps)
    "gap in the stamps": Fault(
        lambda r: (setattr(r, "k", r.k + 20), r.spin(0.3), r.frame()), "restarting the depth stream: gap", "warning"
    ),
    "camera slower than max_gap": Fault(
        lambda r: (setattr(r, "k", r.k + 20), r.spin(0.3), r.frame()),
        "the camera is slower than max_gap allows",
        "warning",
    ),
    "burst into a short queue": Fault(burst, "input queue full", "warning", params={"queue_size": 3}, engine=Slow),
    "sparse depth of another aspect ratio": Fault(
        lambda r: sparse_frame(r, conv.image_msg(np.ones((H // 2, W), np.float32), "32FC1", r.header())),
        "not registered to the image (a depth camera's own stream?): remap sparse_depth",
        params={"sparse_depth": "image", "scale_source": "sparse"},
    ),
    "32FC1 sparse depth in millimetres": Fault(
        lambda r: sparse_frame(r, conv.image_msg(np.full((H, W), 1500.0, np.float32), "32FC1", r.header())),
        "ignoring sparse_depth: 32FC1 depth is metres (REP 118), but its samples' median is 1500: millimetres?",
        params={"sparse_depth": "image", "scale_source": "sparse"},
    ),
    "colour image on sparse_depth": Fault(
        lambda r: sparse_frame(r, conv.image_msg(r.rgb(), "rgb8", r.header())),
        "is not a depth image",
        params={"sparse_depth": "image", "scale_source": "sparse"},
    ),
    "sparse depth image in another frame": Fault(
        lambda r: sparse_in_frame(r, "camera_depth_optical_frame"),
        "ignoring sparse_depth: the depth image is in frame 'camera_depth_optical_frame', the image in 'cam'",
        params={"sparse_depth": "image", "scale_source": "sparse"},
    ),
    "LiDAR cloud in its own frame": Fault(
        lambda r: sparse_in_frame(r, "velodyne", cloud=True),
        "ignoring sparse_depth: the point cloud is in frame 'velodyne'",
        params={"sparse_depth": "pointcloud", "scale_source": "sparse"},
    ),
    "truncated PointCloud2": Fault(
        short_cloud, "ignoring sparse_depth", params={"sparse_depth": "pointcloud", "scale_source": "sparse"}
    ),
    "NaN camera pose": Fault(
        bad_pose, "ignoring a PoseStamped message", params={"sparse_depth": "pose", "scale_source": "sparse"}
    ),
    "model raising mid-stream": Fault(
        lambda r: r.good(8), "depth pipeline failed on the frame", engine=lambda: Boom("raise"), repeats=1
    ),
    "model returning a wrong shape": Fault(
        lambda r: r.good(8),
        "the model output shape (1, 3, 5, 5), its input spec declares 8 frames of 48x64",
        engine=lambda: Boom("shape"),
        repeats=1,
    ),
    "a bug while publishing": Fault(publish_fails_once, "TypeError", repeats=1),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_is_reported_once_and_the_node_publishes_again(name: str) -> None:
    fault = FAULTS[name]
    rig = FaultRig(fault.params, engine=fault.engine() if fault.engine else None)
    try:
        rig.good(12)
        assert rig.spin_until(lambda: len(rig.got) > 0), "no output before the fault"
        rig.settle()
        before = len(rig.log.lines)
        for _ in range(fault.repeats):
            fault.inject(rig)
        rig.settle()
        new = rig.log.lines[before:]
        said = [text for level, text in new if level == fault.level and fault.expect in text]
        assert len(said) == 1, f"expected one {fault.level} with {fault.expect!r}, got {new}"
        assert rig.node.worker.is_alive()
        out = len(rig.got)
        rig.good(16)
        assert rig.spin_until(lambda: len(rig.got) > out), f"no output after {name}: {rig.log.lines[before:]}"
        if "camera_info" in name or "focal" in name or "K inconsistent" in name:
            assert "camera_info" not in rig.node.processor.resets  # a refused one never restarts the stream
    finally:
        rig.close()


def test_an_overflowing_model_publishes_no_estimate_there_and_diagnostics_names_the_cause() -> None:
    """+Inf from an fp16 engine reached /disparity as +Inf and /depth as -Inf, without a word."""
    rig = FaultRig(engine=Overflowing(height=H, width=W))
    try:
        rig.good(24)
        rig.settle()
        assert rig.spin_until(lambda: len(rig.got) >= 12)
        last = conv.image_array(rig.got.last[-1])
        assert np.isnan(last[: H // 2, : W // 2]).all() and np.isfinite(last[H // 2 :]).all()
        rig.node.status.publish()  # (a status tick: the condition is read from the stream's state)
        assert any("NaN or Inf values (an fp16 engine overflowing?" in p for p in rig.node.log.problems.current())
        assert rig.node.pipeline.stats.invalid_output_pixels > 0
    finally:
        rig.close()


def test_logger_severity_sequence_does_not_kill_the_worker(capfd: pytest.CaptureFixture[str]) -> None:
    """The issue's sequence on the node's real rclpy logger: a "queue full" warning, then an input
    error, then more good frames; an earlier helper raised 'Logger severity cannot be changed'."""
    rig = FaultRig({"queue_size": 3}, engine=Slow(height=H, width=W), record=False)
    try:
        rig.good(12)
        burst(rig)  # queue full: WARN
        rig.settle()
        rig.frame(conv.image_msg(np.full((H, W), 900, np.uint16), "16UC1", rig.header()))  # ERROR
        rig.settle()
        out = len(rig.got)
        rig.good(16)
        assert rig.spin_until(lambda: len(rig.got) > out)
        assert rig.node.worker.is_alive() and rig.node.worker.errors == 0
        err = capfd.readouterr().err
        assert "input queue full" in err and "16UC1 is a depth image" in err
        assert "severity cannot be changed" not in err
    finally:
        rig.close()


def test_invalid_runtime_parameter_changes_are_refused_and_the_node_goes_on() -> None:
    rig = FaultRig()
    try:
        rig.good(12)
        assert rig.spin_until(lambda: len(rig.got) > 0)
        for name, value, reason in (
            ("watchdog_timeout", -1.0, ""),  # out of range: refused by rclpy's descriptor
            ("flicker_period", "often", ""),  # wrong type
            ("window", 3, "restart required"),
            ("model", "/elsewhere", "restart required"),
        ):
            result = rig.node.set_parameters([Parameter(name, value=value)])[0]
            assert not result.successful and reason in result.reason, (name, result.reason)
        assert rig.node.get_parameter("watchdog_timeout").value == 5.0
        out = len(rig.got)
        rig.good(12)
        assert rig.spin_until(lambda: len(rig.got) > out)
    finally:
        rig.close()


def test_watchdog_errors_while_nothing_is_published_and_recovers() -> None:
    """/diagnostics goes ERROR when images arrive but nothing is published (every frame refused
    here), and back to OK when output resumes."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    rig = FaultRig({"watchdog_timeout": 0.5, "diagnostics_period": 0.1})
    diags: list[DiagnosticArray] = []
    rig.peer.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    try:
        rig.good(12)
        assert rig.spin_until(lambda: len(rig.got) > 0)
        for _ in range(15):  # 1 s of depth images on the colour input: nothing can be published
            rig.frame(conv.image_msg(np.full((H, W), 900, np.uint16), "16UC1", rig.header()))
            rig.spin(0.05)
        assert rig.spin_until(lambda: diags and diags[-1].status[0].level == DiagnosticStatus.ERROR, 5)
        assert "while images arrive" in diags[-1].status[0].message and "16UC1" in diags[-1].status[0].message
        rig.good(16)
        assert rig.spin_until(lambda: diags[-1].status[0].level != DiagnosticStatus.ERROR, 5)
    finally:
        rig.close()


@pytest.mark.slow
def test_100hz_burst_keeps_memory_bounded() -> None:
    """1500 frames of 640x480 at 100 Hz into a node that cannot keep up: the queue drops the oldest
    (counted), and memory stays bounded by the queue, not the burst."""
    big_h, big_w = 480, 640
    rig = FaultRig({"queue_size": 8}, engine=Slow(height=H, width=W))
    try:
        frames = [np.random.default_rng(k).integers(0, 255, (big_h, big_w, 3), dtype=np.uint8) for k in range(4)]
        k_big = [500.0, 0, 319.5, 0, 500.0, 239.5, 0, 0, 1]
        rss = []
        t_next = time.monotonic()
        for k in range(1500):
            h = rig.header(k)
            rig.pub_image.publish(conv.image_msg(frames[k % 4], "rgb8", h))
            rig.pub_info.publish(CameraInfo(header=h, width=big_w, height=big_h, k=k_big))
            t_next += 0.01
            while time.monotonic() < t_next:
                rig.ex.spin_once(timeout_sec=max(0.0, t_next - time.monotonic()))
            if k % 250 == 249:
                rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        rig.settle()
        assert rig.node.queue.dropped > 0 and rig.node.worker.is_alive()
        # peak RSS after the first quarter vs the end: a leak of one 0.9 MB frame per input would add 1 GB
        assert rss[-1] - rss[1] < 100, rss
        out = len(rig.got)
        rig.good(16)
        assert rig.spin_until(lambda: len(rig.got) > out)
    finally:
        rig.close()


# -- start-up faults: one line, exit status 2 ----------------------------------------------------
START_FAULTS = {
    "missing params file": ("params", "no such params file"),
    "params file that is not YAML": ("params:/**:\n  ros__parameters: [\n", "not valid YAML"),
    "params file without ros__parameters": ("params:/**:\n  window: 8\n", "has no 'ros__parameters:' mapping"),
    **{name: ("model", expect) for name, expect in MODEL_FAULTS.items()},
}


@pytest.mark.parametrize("name", list(START_FAULTS))
def test_start_up_fault_is_one_line_and_exit_2(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`vdepth-node`'s entry point in this process (the process-level run is below)."""
    kind, expect = START_FAULTS[name]
    params = tmp_path / "params.yaml"
    if kind == "model":
        params.write_text(f"/**:\n  ros__parameters:\n    model: {str(broken_model(tmp_path, name))!r}\n")
    elif kind.startswith("params:"):
        params.write_text(kind.split(":", 1)[1])
    code, err = run_node_main(params, monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("cannot start: ") and expect in lines[0], err
    assert str(params) in lines[0] or str(tmp_path / "model") in lines[0]  # names the file
    assert "Traceback" not in err


#: params files the node used to start with (rcl then refused them with its own words, or read them
#: wrongly) or refused with other words than the offline tools: one rule (`param_file.parse_param_file`)
PARAMS_FILE_FAULTS = {
    "values outside any ros__parameters": ("/**:\n  window: 8\n", "has no 'ros__parameters:' mapping"),
    "a list of two types": ("/**:\n  ros__parameters:\n    keyframes: [1, 2.0]\n", "a list must hold one type"),
    "a parameter without a value": ("/**:\n  ros__parameters:\n    window:\n", "window: no value"),
    "a key after ros__parameters": (
        "/**:\n  ros__parameters:\n    window: 8\n  publish: final\n",
        "keys after ros__parameters",
    ),
    "an invalid node name": ("/9node:\n  ros__parameters:\n    window: 8\n", "invalid node name"),
    "an empty file": ("# window: 8\n", "has no 'ros__parameters:' mapping"),
    "an empty section": (
        "/**:\n  ros__parameters:\n    window: 8\ndepth_node: {}\n",
        "section 'depth_node' has no 'ros__parameters:' mapping",
    ),
}


@pytest.mark.parametrize("name", list(PARAMS_FILE_FAULTS))
def test_a_bad_params_file_stops_the_node_with_the_reason_the_offline_tools_give(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The node checked a params file's structure with its own rules (fewer than rcl's), the offline
    tools with `load_params`'s: a file the node started with could be one `vdepth-bag --params` refuses,
    and rcl's refusal read `cannot start: ROS arguments '...': Couldn't parse params file ...`."""
    from vdepth_ros.config import load_params
    from vdepth_ros.errors import ConfigError

    text, expect = PARAMS_FILE_FAULTS[name]
    params = tmp_path / "params.yaml"
    params.write_text(text)
    with pytest.raises(ConfigError) as offline:
        load_params(params)
    assert expect in str(offline.value)
    code, err = run_node_main(params, monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert lines == [f"cannot start: {offline.value}"], err


@pytest.mark.slow
def test_start_up_faults_as_a_process(tmp_path: Path) -> None:
    """The console script itself: a missing params file (rcl would raise RCLInvalidROSArgsError) and a
    garbage model.onnx (onnxruntime would raise InvalidProtobuf): one line, exit 2."""
    script = Path(sys.executable).parent / "vdepth-node"
    if not script.is_file():
        pytest.skip("vdepth-node console script not installed")
    params = tmp_path / "params.yaml"
    params.write_text(f"/**:\n  ros__parameters:\n    model: {str(broken_model(tmp_path, 'garbage model.onnx'))!r}\n")
    for path, expect in ((tmp_path / "missing.yaml", "no such params file"), (params, "is not an ONNX model")):
        res = subprocess.run(
            [str(script), "--ros-args", "--params-file", str(path)], capture_output=True, text=True, timeout=120
        )
        assert res.returncode == 2, res.stderr
        own = [line for line in res.stderr.splitlines() if line.strip() and not line.startswith("[INFO]")]
        assert len(own) == 1 and own[0].startswith("cannot start: ") and expect in own[0], res.stderr
        assert "Traceback" not in res.stderr


def test_dropping_the_oldest_under_overload_makes_no_gap_restart() -> None:
    """Input stamps 10 ms apart into a node that keeps up with a fraction: the queue drops the oldest,
    so consecutive *processed* frames are far more than max_gap apart, but the input never paused."""

    class VerySlow(LuminanceEngine):
        def _run(self, batch: np.ndarray) -> np.ndarray:
            time.sleep(0.3)  # ~15 frames arrive during one window: most are dropped
            return super()._run(batch)

    rig = FaultRig({"queue_size": 2, "max_gap": 0.1}, engine=VerySlow(height=H, width=W))
    try:
        for k in range(150):
            h = Header(stamp=conv.ns_to_stamp(T0 + k * 10_000_000), frame_id="cam")
            rig.pub_image.publish(rig.image_msg(rig.rgb(), h))
            rig.pub_info.publish(CameraInfo(header=h, width=W, height=H, k=K))
            rig.spin(0.01)
        rig.settle()
        assert rig.node.queue.dropped > 20 and len(rig.got) > 0
        assert "gap" not in rig.node.processor.resets, rig.node.processor.resets
    finally:
        rig.close()
