"""depth_node with real rclpy: isolated contexts, in-process executors, injected test engines."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from fakes import LuminanceEngine
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

from vdepth_ros.errors import ConfigError
from vdepth_ros.inputs.decode import SampleBitDepth
from vdepth_ros.pipeline import DepthPipeline, FrameInput
from vdepth_ros.rectify import Rectifier
from vdepth_ros.ros import conversions as conv
from vdepth_ros.ros.node import DepthNode
from vdepth_ros.ros.qos import qos_profile
from vdepth_ros.stream.cloud import CameraModel

pytestmark = [pytest.mark.ros, pytest.mark.filterwarnings("ignore::DeprecationWarning:rclpy.event_handler")]
H, W = 480, 640
K = [500.0, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0]
PERIOD_NS = 66_666_667  # 15 Hz
RANGE = {"scale_source": "range", "near": 0.5, "far": 8.0}


class HoleEngine(LuminanceEngine):
    """Luminance disparity, NaN (invalid) where the pixel is pure black."""

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = super()._run(batch)
        out[batch.max(axis=2) == 0] = np.nan
        return out


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    """Smoothly moving textured frames with a black (invalid) corner."""
    rng = np.random.default_rng(seed)
    base = rng.integers(20, 236, (H // 8, W // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    out = []
    for k in range(n):
        f = np.roll(base, 3 * k, axis=1).copy()
        f[:60, :80] = 0
        out.append(f)
    return out


def stamp(k: int, t0: int = 1_000_000_000) -> int:
    return t0 + k * PERIOD_NS


def header(k: int, frame_id: str = "cam_optical", t0: int = 1_000_000_000) -> Header:
    return Header(stamp=conv.ns_to_stamp(stamp(k, t0)), frame_id=frame_id)


def encode(rgb: np.ndarray, encoding: str) -> np.ndarray:
    return np.ascontiguousarray(
        {
            "rgb8": rgb,
            "bgr8": rgb[..., ::-1],
            "mono8": rgb[..., 1],
            "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]),
        }[encoding]
    )


class LogRecorder:
    """Stands in for the node's rclpy logger in its `RateLimitedLog`: records what was logged."""

    def __init__(self, errors: list[str]) -> None:
        self.errors, self.warnings, self.infos = errors, [], []

    def error(self, text: str) -> None:
        self.errors.append(text)

    def warning(self, text: str) -> None:
        self.warnings.append(text)

    def info(self, text: str) -> None:
        self.infos.append(text)


class Harness:
    """A DepthNode and a peer node (publishers + recording subscribers) on one executor."""

    def __init__(
        self,
        params: dict[str, Any] | None = None,
        *,
        engine: Any = None,
        start_worker: bool = False,
        sub_qos: Any = None,
        pub_qos: Any = None,
        topics: tuple[str, ...] = ("depth", "disparity", "points", "depth/camera_info"),
        node_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
        self.engine = engine if engine is not None else HoleEngine()
        # (no worker here unless asked: the test takes the queue with process_pending, so a backlog is its own)
        params = {"queue_drain_after": 0.0, **(params or {})}
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        self.node = DepthNode(
            context=self.ctx,
            engine=self.engine,
            start_worker=start_worker,
            parameter_overrides=overrides,
            **(node_kwargs or {}),
        )
        self.errors: list[str] = []  # the node's rate-limited errors, as logged
        self.warnings: list[str] = []  # incompatible-QoS warnings
        self.log = LogRecorder(self.errors)
        self.node.log.logger = self.log
        self.node.qos_reporter._warn = self.warnings.append
        self.peer = Node("peer", context=self.ctx)
        self.got: dict[str, list[Any]] = {t: [] for t in topics}
        types = {"points": PointCloud2, "depth/camera_info": CameraInfo, "provisional/points": PointCloud2}
        for t in topics:
            self.peer.create_subscription(types.get(t, Image), t, self.got[t].append, sub_qos or 50)
        self.pub_image = self.peer.create_publisher(Image, "image", pub_qos or 50)
        self.pub_info = self.peer.create_publisher(CameraInfo, "camera_info", pub_qos or 50)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.ex.add_node(self.peer)
        self.spin(0.2)

    def spin(self, seconds: float = 0.05) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.ex.spin_once(timeout_sec=0.005)

    def spin_until(self, cond: Any, timeout: float = 20.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            self.ex.spin_once(timeout_sec=0.01)
        return cond()

    def send(
        self,
        img: np.ndarray,
        encoding: str,
        h: Header,
        info: bool = True,
        k: list[float] = K,
        info_fields: dict[str, Any] | None = None,
    ) -> None:
        """Publish one frame, wait until the node has taken it (paired, skipped or pending), process it."""
        node = self.node
        received, queued = node.intake.rate.total, node.queue.put_count + node.intake.skipped
        self.pub_image.publish(conv.image_msg(img, encoding, h))
        if info:
            fields = info_fields or {}
            self.pub_info.publish(CameraInfo(header=h, width=img.shape[1], height=img.shape[0], k=k, **fields))
            assert self.spin_until(
                lambda: (
                    node.queue.put_count + node.intake.skipped > queued
                    or (node.intake.skipped > 0 and node.intake.rate.total > received)
                ),
                timeout=20,
            )
        else:
            assert self.spin_until(lambda: node.intake.rate.total > received, timeout=20)
        node.process_pending()

    def close(self) -> None:
        self.ex.shutdown()
        self.node.close()
        self.peer.destroy_node()
        rclpy.shutdown(context=self.ctx)


@pytest.fixture
def harness() -> Iterator[Any]:
    made: list[Harness] = []

    def make(*args: Any, **kw: Any) -> Harness:
        made.append(Harness(*args, **kw))
        return made[-1]

    yield make
    for h in made:
        h.close()


def reference(rgbs: list[np.ndarray], params: dict[str, Any]) -> list[Any]:
    """The same frames straight through a DepthPipeline (what the node must publish)."""
    pipe = DepthPipeline.from_dict(params, engine=HoleEngine())
    cam = CameraModel.from_matrix(K, W, H)
    out = []
    for k, rgb in enumerate(rgbs):
        out += pipe.push(FrameInput(rgb=rgb, stamp_ns=stamp(k), camera=cam))
    return out


def decoded(msg: Image) -> np.ndarray:
    return conv.image_array(msg)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "rgba8"])
def test_outputs_equal_pipeline_bit_for_bit(harness: Any, encoding: str) -> None:
    h = harness(RANGE)
    rgbs = frames(14)
    if encoding == "mono8":
        rgbs = [np.repeat(f[..., 1:2], 3, axis=2) for f in rgbs]
    for k, rgb in enumerate(rgbs):
        h.send(encode(rgb, encoding), encoding, header(k))
    ref = reference(rgbs, RANGE)
    assert len(ref) >= 8
    assert h.spin_until(lambda: all(len(v) >= len(ref) for v in h.got.values()))
    h.spin(0.1)
    assert [len(v) for v in h.got.values()] == [len(ref)] * 4
    for f, d, disp, pts, info in zip(
        ref, h.got["depth"], h.got["disparity"], h.got["points"], h.got["depth/camera_info"], strict=True
    ):
        for msg in (d, disp, pts, info):
            assert conv.stamp_to_ns(msg.header.stamp) == f.stamp_ns
            assert msg.header.frame_id == "cam_optical"
        assert d.encoding == "32FC1"
        np.testing.assert_array_equal(decoded(d), f.depth)  # bit for bit, NaNs in the same places
        np.testing.assert_array_equal(decoded(disp), f.disparity)
        assert np.isnan(f.depth).any() and np.isfinite(f.depth).any()
        # organized cloud: H x W points, NaN exactly where depth is not finite (NaN, REP 118's +-Inf)
        assert (pts.height, pts.width, pts.is_dense) == (*f.depth.shape, False)
        xyz = np.frombuffer(pts.data, np.float32).reshape(pts.height, pts.width, -1)[..., :3]
        ok = np.isfinite(f.depth)
        np.testing.assert_array_equal(np.isnan(xyz).all(axis=2), ~ok)
        np.testing.assert_array_equal(xyz[..., 2][ok], f.depth[ok])
        assert (info.width, info.height) == (f.depth.shape[1], f.depth.shape[0])
        assert conv.camera_from_info(info) == f.camera


def test_depth_image_as_input_is_rejected_rate_limited_and_node_recovers(harness: Any) -> None:
    h = harness(RANGE)
    for k in range(10):
        h.send(np.full((H, W), 1000, np.uint16), "16UC1", header(k))
    assert h.node.log.errors == 10
    assert len(h.errors) == 1  # rate limited
    assert "16UC1 is a depth image" in h.errors[0] and "remap image to the colour camera's topic" in h.errors[0]
    assert h.engine.calls == 0
    for k, rgb in enumerate(frames(12), start=10):
        h.send(rgb, "rgb8", header(k))
    assert h.spin_until(lambda: len(h.got["depth"]) > 0)  # still alive and producing


@pytest.mark.parametrize(
    ("encoding", "said"),
    [
        ("RGB8", "the ROS encoding for it is 'rgb8'"),
        ("rgb24", "the ROS encoding for it is 'rgb8'"),
        ("GRAY8", "the ROS encoding for it is 'mono8'"),
        ("jpeg", "'jpeg' is compressed data in a raw sensor_msgs/Image: publish it as sensor_msgs/CompressedImage"),
        ("i420", "planar YUV 4:2:0 has no ROS encoding: have the publisher convert to nv12"),
    ],
)
def test_an_encoding_named_as_other_software_names_it_is_refused_with_the_ros_name(
    harness: Any, encoding: str, said: str
) -> None:
    """A driver built on FFmpeg or GStreamer, or written by hand, names its pixel format its own way ('rgb24',
    'GRAY8', 'RGB8') or passes MJPEG or I420 frames on in a raw Image: the error listed the supported encodings
    only, and the user had to find which one was theirs. It now names the ROS encoding meant (or the compressed
    transport, or nv12); the node goes on with the next good image."""
    h = harness(RANGE)
    rgb = frames(1)[0]
    msg = conv.image_msg(rgb, "rgb8", header(0))
    msg.encoding = encoding
    h.pub_image.publish(msg)
    h.pub_info.publish(CameraInfo(header=header(0), width=W, height=H, k=K))
    assert h.spin_until(lambda: h.node.queue.put_count >= 1)
    h.node.process_pending()
    assert len(h.errors) == 1 and f"unsupported image encoding '{encoding}'; {said}" in h.errors[0], h.errors
    for k, good in enumerate(frames(12), start=1):
        h.send(good, "rgb8", header(k))
    assert h.spin_until(lambda: len(h.got["depth"]) > 0)  # still alive and producing


def test_each_bit_depth_the_node_chooses_is_told_even_seconds_apart(harness: Any) -> None:
    """A 12-bit mono16 camera whose first frame is dark (lens cap, night): auto reads it as 8-bit,
    and the brighter frames after it (`RAISE_AFTER_FRAMES` in a row: one flash raises nothing) raise it to 12.
    Each choice changes the picture the model sees, so each is one INFO line; the second one used to fall in
    the first one's rate-limit period."""
    h = harness(RANGE)
    rgb = frames(1 + SampleBitDepth.RAISE_AFTER_FRAMES)
    h.send(rgb[0][..., 1].astype(np.uint16) >> 2, "mono16", header(0))  # dark: below 2**8
    for k in range(1, len(rgb)):
        h.send(rgb[k][..., 1].astype(np.uint16) << 4 | 7, "mono16", header(k))
    told = [line for line in h.log.infos if "mono16 samples" in line]
    assert len(told) == 2 and "use 8 bits" in told[0] and "exceed 8 bits" in told[1], h.log.infos
    assert "read as 12-bit" in told[1]


def test_best_effort_camera_feeds_default_subscription(harness: Any) -> None:
    h = harness(RANGE, pub_qos=qos_profile_sensor_data, start_worker=True)
    for k, rgb in enumerate(frames(12)):
        h.pub_image.publish(conv.image_msg(rgb, "rgb8", header(k)))
        h.pub_info.publish(CameraInfo(header=header(k), width=W, height=H, k=K))
        h.spin(0.03)
    assert h.spin_until(lambda: len(h.got["depth"]) >= 1)
    assert h.warnings == []


def test_input_qos_auto_follows_the_image_publishers_reliability(harness: Any) -> None:
    """Most camera drivers publish reliable (usb_cam, RealSense, ZED), and across processes a best-effort
    subscription gets few of their images (test_ros_deployed.py). By default
    (`input_qos: auto`) the image subscription follows its publishers: reliable while every one is (the harness's
    camera, discovered after the node subscribed), best effort as soon as a best-effort one joins (which a reliable
    subscription would get nothing from), each change one INFO line and no incompatible-QoS WARN."""
    h = harness({**RANGE, "input_qos": "auto"})

    def image_reliability() -> Any:
        return next(s for s in h.node.intake.subscriptions if s.topic_name == "/image").qos_profile.reliability

    assert h.spin_until(lambda: image_reliability() == ReliabilityPolicy.RELIABLE, timeout=5)
    best_effort = h.peer.create_publisher(Image, "image", qos_profile_sensor_data)
    assert h.spin_until(lambda: image_reliability() == ReliabilityPolicy.BEST_EFFORT, timeout=5)
    received = h.node.intake.rate.total
    best_effort.publish(conv.image_msg(frames(1)[0], "rgb8", header(0)))
    assert h.spin_until(lambda: h.node.intake.rate.total > received, timeout=5)  # the best-effort camera's image
    told = [line for line in h.log.infos if "'/image' is published" in line]
    assert len(told) == 2 and "published reliable (by /peer): subscribed reliable" in told[0], told
    assert "published best effort (by /peer): subscribed best effort" in told[1], told
    h.spin(0.5)
    assert h.warnings == []


def test_input_qos_auto_follows_the_sparse_depth_publishers_too(harness: Any) -> None:
    """A depth camera's aligned depth (a RealSense's, reliable by default) is as large as the images: its
    subscription follows its publishers as the image's does; camera_info stays best effort (matches any)."""
    h = harness({**RANGE, "input_qos": "auto", "sparse_depth": "image", "scale_source": "sparse"})
    h.peer.create_publisher(Image, "sparse_depth", 10)  # reliable

    def reliability(topic: str) -> Any:
        return next(s for s in h.node.intake.subscriptions if s.topic_name == topic).qos_profile.reliability

    assert h.spin_until(lambda: reliability("/sparse_depth") == ReliabilityPolicy.RELIABLE, timeout=5)
    assert reliability("/camera_info") == ReliabilityPolicy.BEST_EFFORT


def test_an_image_in_a_body_frame_is_warned_about_once(harness: Any) -> None:
    """A simulator's camera in its link frame (x forward): the outputs, in the optical convention and the image's
    frame, show up turned by 90 degrees in RViz; one WARN says why, and the frames are still published in it."""
    h = harness(RANGE)
    for k, rgb in enumerate(frames(10)):
        h.send(rgb, "rgb8", header(k, frame_id="camera_link"))
    assert h.spin_until(lambda: len(h.got["depth"]) > 0)
    told = [w for w in h.log.warnings if "names a body frame" in w]
    assert len(told) == 1 and "'camera_link'" in told[0] and "optical" in told[0], h.log.warnings
    assert h.got["points"][0].header.frame_id == "camera_link"


def test_qos_mismatch_is_logged_once_with_the_fix(harness: Any) -> None:
    h = harness(
        {"input_qos": "reliable", "output_qos": "best_effort"},
        pub_qos=qos_profile_sensor_data,
        sub_qos=qos_profile("reliable", 5),
    )
    assert h.spin_until(lambda: len(h.warnings) >= 3, timeout=5)
    h.spin(0.3)
    text = "\n".join(h.warnings)
    assert "subscription '/image'" in text and "input_qos:=auto" in text
    assert "publisher '/depth'" in text and "output_qos:=reliable" in text
    assert len(h.warnings) == len(set(h.warnings))  # once per topic and side


def test_params_file_with_namespaced_node(harness: Any, tmp_path: Path) -> None:
    yaml = tmp_path / "p.yaml"
    yaml.write_text(
        "/**:\n  ros__parameters:\n    queue_size: 7\n    window: 6\n    overlap: 2\n"
        "/**/depth_node:\n  ros__parameters:\n    window: 5\n    publish_colormap: true\n"
    )
    h = harness(node_kwargs={"namespace": "robot1", "cli_args": ["--ros-args", "--params-file", str(yaml)]})
    assert h.node.get_fully_qualified_name() == "/robot1/depth_node"
    assert h.node.queue.maxsize == 7
    assert h.node.p["publish_colormap"] is True
    assert h.node.pipeline.schedule["window"] == 5 and h.node.pipeline.schedule["overlap"] == 2


def test_bundled_config_is_loadable(harness: Any, repo_root: Path) -> None:
    yaml = repo_root / "config" / "depth.yaml"
    h = harness(node_kwargs={"cli_args": ["--ros-args", "--params-file", str(yaml)]})
    assert h.node.p["output_qos"] == "reliable"


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"queue_size": 0}, "queue_size"),
        ({"input_qos": "fast"}, "input_qos"),
        ({"output_qos_depth": 2.5}, "output_qos_depth"),
        ({"window": 4, "overlap": 5}, "overlap must be < window"),
        ({"publish": "sometimes"}, "publish"),
        ({"min_depth": 5.0, "max_depth": 1.0}, "min_depth"),
        ({"image_bit_depth": 4}, "image_bit_depth=4: a 16-bit image holds 8 to 16 significant bits"),
    ],
)
def test_invalid_parameters_are_rejected(params: dict[str, Any], match: str) -> None:
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    try:
        with pytest.raises(ConfigError, match=match):
            DepthNode(
                context=ctx,
                engine=HoleEngine(),
                start_worker=False,
                parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
            )
    finally:
        rclpy.shutdown(context=ctx)


def test_runtime_parameter_changes(harness: Any) -> None:
    node = harness().node
    res = node.set_parameters([Parameter("model", value="/other/model")])[0]
    assert not res.successful and "restart required" in res.reason
    res = node.set_parameters([Parameter("backend", value="torch")])[0]
    assert not res.successful and "restart required" in res.reason
    res = node.set_parameters([Parameter("input_qos", value="reliable")])[0]
    assert not res.successful and "restart required" in res.reason
    assert node.set_parameters([Parameter("publish_colormap", value=True)])[0].successful
    assert node.p["publish_colormap"] is True
    assert node.get_parameter("model").value == "default"


def test_resets_are_logged_once_each(harness: Any) -> None:
    h = harness({**RANGE, "max_gap": 0.5})
    rgbs = frames(40)
    for k in range(12):
        h.send(rgbs[k], "rgb8", header(k))
    h.send(rgbs[12], "rgb8", header(2))  # bag loop: stamp goes back
    assert h.node.processor.resets == {"time jump": 1}
    for k in range(3, 8):
        h.send(rgbs[k + 10], "rgb8", header(k))
    time.sleep(0.1)  # (a gap takes time to arrive: stamps jumping between images on time are a clock step)
    h.send(rgbs[20], "rgb8", header(30))  # 1.5 s gap
    assert h.node.processor.resets == {"time jump": 1, "gap": 1}
    k2 = [600.0, 0, 319.5, 0, 600.0, 239.5, 0, 0, 1]
    h.send(rgbs[21], "rgb8", header(31), k=k2)
    assert h.node.processor.resets == {"time jump": 1, "gap": 1, "camera_info": 1}
    small = np.ascontiguousarray(rgbs[22][::2, ::2])
    h.send(small, "rgb8", header(32), k=k2)
    assert h.node.processor.resets["resolution"] == 1
    assert h.node.pipeline.stats.resets == 4
    assert h.node.log.errors == 0
    h.send(rgbs[23], "rgb8", header(32), info=False)  # a repeated stamp: refused on arrival
    short = Image(header=header(33), height=H, width=W, encoding="rgb8", step=3 * W, data=bytes(3 * W))
    received = h.node.intake.rate.total
    h.pub_image.publish(short)  # its data one row long: refused by the worker
    h.pub_info.publish(CameraInfo(header=header(33), width=W, height=H, k=k2))
    assert h.spin_until(lambda: h.node.queue.put_count and h.node.intake.rate.total > received)
    h.node.process_pending()
    assert_every_fate_counted(h.node, refused=2)


def assert_every_fate_counted(node: Any, **expected: int) -> None:
    """Each image received has one fate in the stop summary (`frame_fates`): their sum is the images received, and
    `expected` (fate's first word -> count) holds."""
    fates = node.frame_fates()
    assert sum(fates.values()) == node.intake.loss.received, fates
    for word, n in expected.items():
        assert [v for k, v in fates.items() if k.split()[0] == word] == [n], fates


def test_stopping_publishes_the_queued_frames_and_every_frame_the_stream_holds(harness: Any) -> None:
    """A node behind its camera when it is stopped (SIGINT, deactivate) used to discard the frames
    still queued and the ones waiting for a window: 11 frames in (a window of 8, overlap 3), none
    processed yet; stopping publishes all 11, in order, and says so in one line."""
    h = harness(RANGE)  # no worker thread: the frames stay queued
    lines: list[str] = []
    h.node.get_logger = lambda: type("L", (), {"info": lines.append, "warning": lines.append})()
    for k, rgb in enumerate(frames(11)):
        h.pub_image.publish(conv.image_msg(rgb, "rgb8", header(k)))
        h.pub_info.publish(CameraInfo(header=header(k), width=W, height=H, k=K))
        h.spin(0.03)
    assert h.spin_until(lambda: h.node.queue.put_count == 11)
    h.node.stop_input()
    h.node._deactivate(restart_stream=False, join_timeout=30)
    assert h.node.outputs.sent["/depth"] == 11
    assert_every_fate_counted(h.node, frames=11)
    said = [line for line in lines if line.startswith("input stopped")]
    assert len(said) == 1 and said[0].startswith(
        "input stopped: processed the 11 queued frame(s), then published the 3 frame(s) the stream still held"
    )


@pytest.mark.parametrize("end", ["stop", "restart", "input ended"])
def test_a_failure_publishing_the_frames_the_stream_held_is_one_error_in_the_node_log(harness: Any, end: str) -> None:
    """The stream's held frames are published when the input stops (SIGINT, deactivate), when the stream
    restarts and when the input ends; a failure doing so is one rate-limited error in the node's log.
    At a stop it used to escape to the worker's last resort instead: printed on stderr only (not on
    /rosout), as "the depth worker failed between frames ... (logging failed: ...)"."""
    h = harness(RANGE)
    for k, rgb in enumerate(frames(5)):  # fewer than a window: all held
        h.send(rgb, "rgb8", header(k))
    node = h.node
    assert node.pipeline.held == 5 and h.errors == []

    def broken(frame: Any, due: float = 0.0) -> bool:
        raise RuntimeError("publisher gone")

    node.outputs.publish = broken
    if end == "stop":
        node.stop_input()
        node._deactivate(restart_stream=False, join_timeout=30)
    elif end == "restart":
        node.processor.restart("camera_info: changed", flush=True)
    else:
        node.processor._input_ended("no publisher on /image any more")
    what = "the old stream" if end == "restart" else "the stream at its end"
    assert h.errors == [f"flushing {what} failed (RuntimeError: publisher gone)"]
    assert_every_fate_counted(node, lost=5)  # (the first frame failed to publish, the rest with it)
    assert node.worker is None or node.worker.errors == 0


@pytest.mark.parametrize("publish", ["provisional", "final"])
def test_a_paused_camera_gets_its_held_frames_published_during_the_pause(harness: Any, publish: str) -> None:
    """A camera that pauses (a driver stall, an exposure change) left the frames waiting for the next
    window unpublished until it resumed, and then they came out late with their old stamps. Now,
    `pause_flush` (auto: 4 of the camera's frame periods) after the last image they are published
    (the stream goes on: no restart, each frame once); frames the "final" policy still holds go out
    when the pause reaches max_gap, as the stream ends, and the camera's next image after that is
    not counted as a second restart. Time here is the node's clock, set by hand."""
    h = harness({**RANGE, "publish": publish, "max_gap": 3.0})
    node, proc = h.node, h.node.processor
    rgbs = frames(30)
    for k in range(15):  # windows at frames 8 and 13 (8 frames, overlap 3): frames 13 and 14 wait
        h.send(rgbs[k], "rgb8", header(k))
    before = node.pipeline.held
    assert before >= 2 and h.spin_until(lambda: len(h.got["depth"]) == 15 - before)
    last, pause = node.intake.pauses.last_ns, node.intake.pauses.pause_after_s()
    assert 0.2 <= pause <= 3.0  # 4 periods of the images' arrival here, within its bounds
    for idle_s in (0.1, pause - 0.01):
        proc._now_ns = lambda idle_s=idle_s: last + int(idle_s * 1e9)
        proc.on_idle()
        h.spin(0.2)
        assert len(h.got["depth"]) == 15 - before  # not paused yet
    proc._now_ns = lambda: last + int((pause + 0.01) * 1e9)
    proc.on_idle()
    proc.on_idle()  # once per pause
    held = node.pipeline.held
    assert h.spin_until(lambda: len(h.got["depth"]) == 15 - held)
    stamps = [conv.stamp_to_ns(m.header.stamp) for m in h.got["depth"]]
    assert stamps == [stamp(k) for k in range(15 - held)]  # each frame once, with its own stamp
    assert publish == "final" or held == 0
    assert node.diagnostics_values()["pause flushes"] == 1 and proc.resets == {}
    if publish == "final":  # the provisional frames wait for the next window, or for max_gap
        assert held == 3
        # max_gap (3 s of stamps) on the node's clock: longer where the images arrived slower than their
        # stamps say (a loaded machine; `PauseRule.ends_after_s`)
        ends = node.intake.pauses.ends_after_s()
        assert ends >= 3.0
        proc._now_ns = lambda: last + int((ends + 0.05) * 1e9)
        proc.on_idle()
        assert h.spin_until(lambda: len(h.got["depth"]) == 15) and proc.resets == {"pause": 1}
        resume = 15 + 60  # the camera comes back 4 s later: the stream restarted already
    else:
        resume = 15  # the camera comes back: the same stream goes on
    proc._now_ns = lambda: node.get_clock().now().nanoseconds
    for k in range(15, 30):
        h.send(rgbs[k], "rgb8", header(k + resume - 15))
    assert proc.resets == ({"pause": 1} if publish == "final" else {})
    assert node.pipeline.stats.resets == len(proc.resets)
    stamps = [conv.stamp_to_ns(m.header.stamp) for m in h.got["depth"]]
    assert len(stamps) == len(set(stamps)) and stamps == sorted(stamps)


def test_a_first_image_whose_camera_info_was_lost_waits_for_the_next_through_a_stall(harness: Any) -> None:
    """The stream's first image whose camera_info was lost (best effort: a node busy at start-up on a loaded
    machine took no message for half a second, so its history of input_qos_depth was overwritten) waited for
    the next camera_info only until the stall looked like the camera's pause (`pause_flush`, 0.5 s before the
    camera's rate is known), then went out without intrinsics: one frame without /points (a fresh clone's
    test_ros_metric.py). Before any camera_info it now waits `camera_info_timeout` on the node's clock too, as
    the pairing has it wait in stamp time, and gets the next frame's; with none by then it goes on without."""
    h = harness({**RANGE, "camera_info_timeout": 1.0})
    node, proc = h.node, h.node.processor
    rgbs = frames(2)
    h.send(rgbs[0], "rgb8", header(0), info=False)  # its camera_info lost
    last, pause = node.intake.pauses.last_ns, node.intake.pauses.pause_after_s()
    assert pause < 1.0 and node.intake.sync.pending == 1
    proc._now_ns = lambda: last + int((pause + 0.05) * 1e9)  # a pause by the images, within camera_info_timeout
    proc.on_idle()
    assert node.intake.sync.pending == 1, node.intake.sync.counts  # it still waits
    h.send(rgbs[1], "rgb8", header(1))
    assert h.spin_until(lambda: node.intake.sync.counts["synced"] == 1), node.intake.sync.counts
    assert node.intake.sync.counts == {"synced": 1, "cached": 1, "none": 0}  # the next frame's camera_info

    h = harness({**RANGE, "camera_info_timeout": 1.0})  # no camera_info at all (camera_info not remapped)
    node, proc = h.node, h.node.processor
    h.send(rgbs[0], "rgb8", header(0), info=False)
    last = node.intake.pauses.last_ns
    proc._now_ns = lambda: last + int(1.05 * 1e9)
    proc.on_idle()
    assert node.intake.sync.pending == 0 and node.intake.sync.counts["none"] == 1  # it goes on without


def test_publish_both_uses_separate_topics(harness: Any) -> None:
    h = harness({**RANGE, "publish": "both"}, topics=("depth", "provisional/depth"))
    for k, rgb in enumerate(frames(20)):
        h.send(rgb, "rgb8", header(k))
    assert h.spin_until(lambda: h.got["provisional/depth"] and h.got["depth"])
    prov = {conv.stamp_to_ns(m.header.stamp) for m in h.got["provisional/depth"]}
    final = {conv.stamp_to_ns(m.header.stamp) for m in h.got["depth"]}
    assert prov & final  # revised frames appear on both


def test_no_subscriber_skips_inference(harness: Any) -> None:
    h = harness(RANGE, topics=())
    for k, rgb in enumerate(frames(12)):
        h.send(rgb, "rgb8", header(k))
    assert h.node.intake.skipped == 12
    assert h.engine.calls == 0


def test_queue_drops_oldest_and_counts(harness: Any) -> None:
    h = harness({**RANGE, "queue_size": 3})
    for k, rgb in enumerate(frames(10)):
        h.pub_image.publish(conv.image_msg(rgb, "rgb8", header(k)))
        h.pub_info.publish(CameraInfo(header=header(k), width=W, height=H, k=K))
        h.spin(0.02)
    assert h.spin_until(lambda: h.node.queue.put_count == 10)
    assert h.node.queue.dropped == 7
    assert len(h.node.queue) == 3
    assert [i.stamp_ns for i in list(h.node.queue._items)] == [stamp(k) for k in (7, 8, 9)]


def test_a_standing_backlog_of_a_camera_a_little_faster_than_inference_is_named_as_such(harness: Any) -> None:
    """A camera a little faster than inference (5 Hz taken, 4 kept up with: a few frames a second behind) never
    fills the queue: every queue_drain_after its backlog is dropped first. That WARN said "inference keeps pace with
    the camera but not with a backlog (left by a burst of load)" at every drain, 5 s apart, with no value to set
    (seen in every hand run on this loaded machine, max_input_rate 5 set). It now says inference is slower than the
    images taken, with max_input_rate's value; a worker as fast as the camera is still told of a burst of load."""
    h = harness({**RANGE, "max_input_rate": 5.0})
    intake = h.node.intake
    intake.taken.rate = lambda: 5.0
    for _ in range(3):  # three windows of 8 frames, 2 s of work each: 4 Hz
        for k in range(8):
            intake.throughput.add(0.25, window_ended=k == 7)
    said = intake._queue_drained_message(9)
    assert "keeps pace" not in said and "slower than the 5.0 Hz of images taken (max_input_rate 5)" in said, said
    assert "set max_input_rate below the output rate on /diagnostics (e.g. 3.2, 80% of the 4.0 Hz" in said, said
    intake.taken.rate = lambda: 4.0  # as fast as the camera: a backlog left by a burst of load
    assert "Inference keeps pace with the camera but not with a backlog" in intake._queue_drained_message(9)


def test_compressed_input_by_topic_name(harness: Any) -> None:
    import cv2

    h = harness(RANGE, node_kwargs={"cli_args": ["--ros-args", "-r", "image:=cam/image/compressed"]})
    pub = h.peer.create_publisher(CompressedImage, "cam/image/compressed", 50)
    h.spin(0.2)
    for k, rgb in enumerate(frames(12)):
        msg = CompressedImage(header=header(k), format="png")
        msg.data = cv2.imencode(".png", rgb[..., ::-1])[1].tobytes()
        pub.publish(msg)
        h.pub_info.publish(CameraInfo(header=header(k), width=W, height=H, k=K))
        h.spin(0.02)
        h.node.process_pending()
    assert h.spin_until(lambda: len(h.got["depth"]) > 0)
    ref = reference(frames(12), RANGE)
    np.testing.assert_array_equal(decoded(h.got["depth"][0]), ref[0].depth)  # png is lossless


def test_camera_info_missing_gives_depth_without_cloud(harness: Any) -> None:
    h = harness({**RANGE, "camera_info_timeout": 0.2})
    for k, rgb in enumerate(frames(14)):
        h.send(rgb, "rgb8", header(k), info=False)
    assert h.spin_until(lambda: len(h.got["depth"]) > 0)
    assert h.got["points"] == []
    assert h.node.intake.sync.counts["none"] > 0
    # each frame published has a fate, and the summary says why none had a /points
    assert_every_fate_counted(h.node)
    assert h.node.processor.published_without_camera == h.node.processor.published > 0


def test_camera_infos_lost_in_transport_are_counted_and_named_once(harness: Any) -> None:
    """camera_infos whose publisher's DDS sequence numbers skip (sent, never received: a driver on Fast DDS's default
    shared-memory segment publishing each one just before its image, test_ros_replay.py) are counted on /diagnostics,
    and past a stray one named in one WARN with the fix; a second publisher (a restarted driver) is no loss."""
    h = harness(RANGE)
    intake, gid = h.node.intake, {"data": bytes(range(16))}

    def info(k: int, sequence: int, publisher: dict[str, Any] = gid) -> None:
        msg = CameraInfo(header=header(k), width=64, height=48, k=K)
        intake._on_info(msg, {"publisher_gid": publisher, "publication_sequence_number": sequence})

    for k, sequence in enumerate([1, 2, 3, 5]):  # one lost: a stray one, not named
        info(k, sequence)
    assert intake.infos_lost == 1 and not [w for w in h.log.warnings if "camera_infos" in w]
    info(4, 1, {"data": bytes(16)})  # a restarted driver: a new publisher, numbered from 1 again
    info(5, 8)  # (the first publisher again: 2 lost, 3 in all: a stall's few, not named)
    assert intake.infos_lost == 3 and not [w for w in h.log.warnings if "camera_infos" in w]
    info(6, 11)  # 2 more: 5 of 12
    named = [w for w in h.log.warnings if "camera_infos sent on '/camera_info' were lost before this node" in w]
    assert intake.infos_lost == 5 and len(named) == 1, h.log.warnings
    assert named[0].startswith("5 of 12 camera_infos") and "FASTDDS_DEFAULT_PROFILES_FILE=" in named[0], named
    info(7, 20)
    assert len([w for w in h.log.warnings if "were lost before this node" in w]) == 1, h.log.warnings
    assert h.node.status.values()["camera_info lost in transport"] == 13


def test_a_live_camera_whose_second_frame_is_late_is_no_slow_replay(harness: Any) -> None:
    """A 15 Hz camera whose second frame arrives 0.15 s after its first (a driver slow to publish its first frames,
    or DDS to deliver them to a subscription just created), then every 1/15 s as stamped: from that one step the node
    logged "the images arrive 2.2x slower than their stamps say (a recording replayed at 0.44x ...)". The speed of a
    replay is now named only once measured over a span of steps; this camera's is real time, not named."""
    h = harness({**RANGE, "skip_when_unsubscribed": False})
    start = time.monotonic()
    for k, rgb in enumerate(frames(10)):
        due = start + (0.0 if k == 0 else 0.15 + (k - 1) * PERIOD_NS / 1e9)
        while time.monotonic() < due:
            h.spin(0.005)
        h.send(rgb, "rgb8", header(k, t0=1_000_000_000), info=True)
    assert not [i for i in h.log.infos if "slower than their stamps say" in i], h.log.infos


DISTORTED = {
    "distortion_model": "plumb_bob",
    "d": [-0.25, 0.07, 0.001, 0.0, 0.0],
    "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
    "p": [450.0, 0.0, 322.0, 0.0, 0.0, 452.0, 236.0, 0.0, 0.0, 0.0, 1.0, 0.0],
}


def test_rectify_undistorts_raw_images_before_the_pipeline(harness: Any) -> None:
    h = harness({**RANGE, "rectify": True})
    rgbs = frames(14)
    for k, rgb in enumerate(rgbs):
        h.send(rgb, "rgb8", header(k), info_fields=DISTORTED)
    # what the node must publish: each image undistorted with that camera_info, then the pipeline
    # with the rectified camera P (no estimate outside the lens's view)
    view = Rectifier().view(CameraInfo(width=W, height=H, k=K, **DISTORTED), W, H)
    assert (view.camera.fx, view.camera.cx) == (450.0, 322.0)
    pipe = DepthPipeline.from_dict(RANGE, engine=HoleEngine())
    ref = []
    for k, rgb in enumerate(rgbs):
        ref += pipe.push(FrameInput(rgb=view.image(rgb), stamp_ns=stamp(k), camera=view.camera, valid=view.valid))
    assert len(ref) >= 8
    assert h.spin_until(lambda: len(h.got["depth"]) >= len(ref) and len(h.got["depth/camera_info"]) >= len(ref))
    for f, d, info in zip(ref, h.got["depth"], h.got["depth/camera_info"], strict=False):
        np.testing.assert_array_equal(decoded(d), f.depth)
        # published intrinsics: the rectified P at the output's resolution
        assert conv.camera_from_info(info) == f.camera == view.camera.scaled(f.camera.width, f.camera.height)
        assert not any(info.d)
    unrectified = reference(rgbs, RANGE)
    assert not np.array_equal(unrectified[0].depth, ref[0].depth, equal_nan=True)  # the test can fail
    assert h.errors == []


def test_rectify_without_camera_info_drops_frames_with_a_rate_limited_error(harness: Any) -> None:
    h = harness({**RANGE, "rectify": True, "camera_info_timeout": 0.2})
    for k, rgb in enumerate(frames(10)):
        h.send(rgb, "rgb8", header(k), info=False)
    assert h.engine.calls == 0 and h.got["depth"] == []
    assert len(h.errors) == 1 and "no camera_info to undistort" in h.errors[0]
    for k, rgb in enumerate(frames(12), start=10):  # camera_info arrives: the node carries on
        h.send(rgb, "rgb8", header(k), info_fields=DISTORTED)
    assert h.spin_until(lambda: len(h.got["depth"]) > 0)


def test_flicker_on_diagnostics_when_enabled(harness: Any) -> None:
    key = "flicker (flow warping error)"
    h = harness({**RANGE, "flicker_period": 0.001})
    assert h.node.diagnostics_values()[key] == "no measurement yet"
    for k, rgb in enumerate(frames(16)):
        h.send(rgb, "rgb8", header(k))
    assert h.spin_until(lambda: len(h.got["depth"]) >= 8)
    value = h.node.diagnostics_values()[key]
    assert isinstance(value, float) and 0.0 <= value < 0.5
    assert len(h.node.processor.flicker.values) >= 3
    assert h.node.set_parameters([Parameter("flicker_period", value=0.0)])[0].successful  # dynamic
    assert h.node.diagnostics_values()[key] == "off"
    assert harness(RANGE).node.diagnostics_values()[key] == "off"  # off by default


def test_diagnostics_published(harness: Any) -> None:
    """/diagnostics comes with its values, and a start is no slow output: every start (an activation too) said
    "output rate below half the input rate" until its second window's outputs came, so a fleet monitor saw a
    WARN at each (the rates are over 5 s: the output is compared once the images have come for that long)."""
    h = harness({**RANGE, "diagnostics_period": 0.1}, start_worker=True)
    diags: list[DiagnosticArray] = []
    h.peer.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    for k, rgb in enumerate(frames(12)):
        h.pub_image.publish(conv.image_msg(rgb, "rgb8", header(k)))
        h.pub_info.publish(CameraInfo(header=header(k), width=W, height=H, k=K))
        h.spin(0.03)
    assert h.spin_until(lambda: h.node.processor.output_rate.total > 0 and len(diags) > 2)
    h.spin(0.3)
    keys = {kv.key: kv.value for kv in diags[-1].status[0].values}
    for key in (
        "input rate [Hz]",
        "output rate [Hz]",
        "window latency median [s]",
        "dropped (queue full)",
        "fit inlier_fraction",
        "fit scale_source",
    ):
        assert key in keys
    assert keys["fit scale_source"] == "range"
    # the first window's outputs were on their way: no "output rate below half the input rate" at the start
    messages = {status.message for array in diags for status in array.status}
    assert not [m for m in messages if "output rate below half" in m], messages


@pytest.mark.parametrize("kind", ["image", "pointcloud"])
def test_sparse_depth_gives_metric_scale(harness: Any, kind: str) -> None:
    params = {"scale_source": "sparse", "sparse_depth": kind, "sparse_min_points": 20}
    h = harness(params)
    sparse_type = Image if kind == "image" else PointCloud2
    pub = h.peer.create_publisher(sparse_type, "sparse_depth", 50)
    h.spin(0.2)
    cam = CameraModel.from_matrix(K, W, H)
    rgbs = frames(14)
    sparses = []
    for k, rgb in enumerate(rgbs):
        # LiDAR-like samples consistent with the engine: metric inverse depth = 2 * disparity
        lum = (rgb.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])) / 255
        sparse = np.full((H, W), np.nan, np.float32)
        sparse[100:400:20, 100:600:20] = (1 / (2 * (0.1 + lum)))[100:400:20, 100:600:20]
        sparses.append(sparse)
        v, u = np.nonzero(np.isfinite(sparse))
        z = sparse[v, u]
        xyz = np.stack([(u - cam.cx) * z / cam.fx, (v - cam.cy) * z / cam.fy, z], axis=-1)[None].astype(np.float32)
        msg = conv.image_msg(sparse, "32FC1", header(k)) if kind == "image" else conv.cloud_msg(xyz, None, header(k))
        pub.publish(msg)
        # topics are not ordered across DDS readers: on a loaded machine the sample could come after the
        # image and past sparse_depth_slop, and the image would (rightly) go without it
        assert h.spin_until(lambda k=k: len(h.node.intake.samples) >= k + 1)
        h.send(rgb, "rgb8", header(k))
    pipe = DepthPipeline.from_dict(params, engine=HoleEngine())
    ref = []
    for k, rgb in enumerate(rgbs):
        ref += pipe.push(FrameInput(rgb=rgb, stamp_ns=stamp(k), camera=cam, sparse_depth=sparses[k]))
    assert h.spin_until(lambda: len(h.got["depth"]) >= len(ref) > 0)
    assert h.node.log.errors == 0
    assert ref[0].fit.scale_source == "sparse"
    assert ref[0].fit.metric_scale is not None and ref[0].fit.metric_scale > 0
    assert len(h.got["depth"]) == len(ref)
    for msg, f in zip(h.got["depth"], ref, strict=True):
        np.testing.assert_array_equal(decoded(msg), f.depth)


def test_camera_poses_give_metric_scale(harness: Any) -> None:
    """`sparse_depth: pose`: points tracked in the images and triangulated with the poses on
    `camera_pose` feed the metric fit; the node publishes what the pipeline does with them. The
    odometry here runs at twice the camera rate, off the camera's ticks, and each image's later pose
    arrives only after the image was queued (as a VIO's does): the node interpolates at the image stamp
    when it takes the frame."""
    from geometry_msgs.msg import PoseStamped

    from vdepth_ros.triangulate import PoseBuffer, PoseTriangulator, interpolate_pose, quaternion_from_matrix

    synthetic = pytest.importorskip("vdepth_training.data.synthetic", reason="renders need the train extra")
    clip = synthetic.render_clip(3, frames=24, height=180, width=240, kind="room", style="rich")
    n, quarter = len(clip.rgb), PERIOD_NS // 4
    odometry = []  # (stamp, pose) a quarter frame before and after every image
    for k in range(n):
        before = interpolate_pose(clip.poses[max(k - 1, 0)], clip.poses[k], 0.75)
        after = interpolate_pose(clip.poses[k], clip.poses[min(k + 1, n - 1)], 0.25)
        odometry += [(stamp(k) - quarter, before), (stamp(k) + quarter, after)]

    def pose_msg(t: int, m: np.ndarray) -> PoseStamped:
        msg = PoseStamped(header=Header(stamp=conv.ns_to_stamp(t), frame_id="world"))
        (msg.pose.position.x, msg.pose.position.y, msg.pose.position.z) = (float(v) for v in m[:3, 3])
        q = [float(v) for v in quaternion_from_matrix(m[:3, :3])]
        (msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z, msg.pose.orientation.w) = q
        return msg

    k_list = [float(v) for v in clip.intrinsics.ravel()]
    # a long slop: the later pose must count however slowly this busy machine delivers it
    params = {"scale_source": "sparse", "sparse_depth": "pose", "sparse_min_points": 20, "sparse_depth_slop": 1.0}
    h = harness(params)
    node = h.node
    pub = h.peer.create_publisher(PoseStamped, "camera_pose", 50)
    h.spin(0.2)
    for k in range(n):
        pub.publish(pose_msg(*odometry[2 * k]))
        assert h.spin_until(lambda k=k: len(node.intake.samples) >= 2 * k + 1)
        queued = node.queue.put_count
        h.pub_image.publish(conv.image_msg(clip.rgb[k], "rgb8", header(k)))
        h.pub_info.publish(CameraInfo(header=header(k), width=240, height=180, k=k_list))
        assert h.spin_until(lambda q=queued: node.queue.put_count > q)
        pub.publish(pose_msg(*odometry[2 * k + 1]))  # the later pose arrives after the image
        assert h.spin_until(lambda k=k: len(node.intake.samples) >= 2 * k + 2)
        node.process_pending()
    buf = PoseBuffer(int(0.1 * 1e9))
    for t, m in odometry:
        buf.add(t, conv.pose_from_msg(pose_msg(t, m)))  # the same message round trip as the node's
    cam = CameraModel.from_matrix(clip.intrinsics, 240, 180)
    pipe, tri, ref = DepthPipeline.from_dict(params, engine=HoleEngine()), PoseTriangulator(), []
    for k, rgb in enumerate(clip.rgb):
        # interpolated at the image stamp (~1e-4 off the true pose here; the nearest pose is ~4e-3 off)
        if 0 < k < n - 1:  # (the clip's ends have no motion beyond them to interpolate)
            np.testing.assert_allclose(buf.at(stamp(k)), clip.poses[k], atol=5e-4)
        sparse = tri.push(rgb, buf.at(stamp(k)), cam.matrix)
        ref += pipe.push(FrameInput(rgb=rgb, stamp_ns=stamp(k), camera=cam, sparse_depth=sparse))
    ref = [f for f in ref if f.depth is not None]
    assert ref and ref[-1].fit.scale_source == "sparse" and ref[-1].fit.metric_scale > 0
    assert h.spin_until(lambda: len(h.got["depth"]) >= len(ref))
    assert node.log.errors == 0
    for msg, f in zip(h.got["depth"], ref, strict=True):
        np.testing.assert_array_equal(decoded(msg), f.depth)


def test_camera_pose_mode_without_poses_reports_and_keeps_running(harness: Any) -> None:
    h = harness({"scale_source": "sparse", "sparse_depth": "pose"})
    for k, rgb in enumerate(frames(10)):
        h.send(rgb, "rgb8", header(k))
    assert any("camera_pose" in e for e in h.errors)  # rate-limited: one line, not one per frame
    assert len(h.errors) < 10
    assert h.spin_until(lambda: len(h.got["disparity"]) > 0)  # relative output goes on


def test_colormap_topic(harness: Any) -> None:
    h = harness({**RANGE, "publish_colormap": True}, topics=("depth", "depth_node/depth_colormap"))
    for k, rgb in enumerate(frames(14)):
        h.send(rgb, "rgb8", header(k))
    assert h.spin_until(lambda: len(h.got["depth_node/depth_colormap"]) > 0)
    msg = h.got["depth_node/depth_colormap"][0]
    assert msg.encoding == "bgr8" and msg.header.frame_id == "cam_optical"
    # the preview layout: the camera image and the depth side by side at the input's size, a colour bar below
    assert msg.width == 2 * W and msg.height > H
    img = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
    k = next(k for k in range(14) if stamp(k) == conv.stamp_to_ns(msg.header.stamp))
    np.testing.assert_array_equal(img[:H, :W], frames(14)[k][..., ::-1])
    assert img[H:].any()  # the bar and its labels


def test_node_sets_openblas_threads(harness: Any) -> None:
    """`blas_threads` (default 1) sets numpy's OpenBLAS pool at start-up; 0 leaves it alone."""
    from vdepth_ros.blas import blas_threads, set_blas_threads

    if not blas_threads():
        pytest.skip("numpy is not linked against OpenBLAS here")
    before = set_blas_threads(2)
    try:
        harness()
        assert set(blas_threads().values()) == {1}
        set_blas_threads(2)
        harness({"blas_threads": 0})
        assert set(blas_threads().values()) == {2}
        harness({"blas_threads": 3})
        assert set(blas_threads().values()) == {3}
    finally:
        for n in set(before.values()):
            set_blas_threads(n)


def test_output_history_is_two_windows_warns_when_short_and_takes_standard_overrides(harness: Any) -> None:
    from rclpy.qos import ReliabilityPolicy

    h = harness(RANGE)
    window = h.node.pipeline.schedule["window"]
    assert {p.qos_profile.depth for p in h.node.outputs.publishers()} == {2 * window}  # auto: two windows
    warned: list[str] = []
    h2 = harness(
        {**RANGE, "output_qos_depth": 3},
        node_kwargs={
            "cli_args": ["--ros-args", "-p", "qos_overrides./depth.publisher.depth:=30", "-p",
                         "qos_overrides./points.publisher.reliability:=best_effort"],
        },
    )  # fmt: skip
    outputs = h2.node.outputs
    assert outputs.main.depth.qos_profile.depth == 30 and outputs.main.disparity.qos_profile.depth == 3
    assert outputs.main.points.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    outputs._check_depth(warned.append)  # the start-up check, recorded
    assert len(warned) == 1 and "/disparity (3)" in warned[0] and "/depth (30)" not in warned[0]


def test_a_subscriber_that_holds_up_one_output_holds_up_nothing_else(harness: Any) -> None:
    """A reliable subscriber that stops acknowledging (a frozen RViz, a process stopped in a debugger)
    makes `publish()` block on its topic (Fast DDS: 50 ms and more per message, until DDS times the
    reader out). Here /points' publish blocks outright: depth, disparity and camera_info still get every
    frame in order with one stamp, /points loses its oldest pending clouds (counted on /diagnostics and
    named in a WARN), and the node still shuts down."""
    h = harness(RANGE, start_worker=True)
    points = h.node.outputs.main.points
    release, real = threading.Event(), points.publish
    points.publish = lambda msg: (release.wait(30), real(msg))
    diagnostics: list[Any] = []
    h.node.status.publisher.publish = diagnostics.append
    rgbs = frames(40)
    t0 = time.monotonic()
    try:
        for k, rgb in enumerate(rgbs):
            h.pub_image.publish(conv.image_msg(rgb, "rgb8", header(k)))
            h.pub_info.publish(CameraInfo(header=header(k), width=W, height=H, k=K))
            h.spin(0.03)
        n = len(rgbs)  # every frame: the last ones when the camera pauses after them (pause_flush)
        healthy = ("depth", "disparity", "depth/camera_info")
        assert h.spin_until(lambda: all(len(h.got[t]) >= n for t in healthy), timeout=30), len(h.got["depth"])
        h.spin(0.1)
        assert h.node.queue.dropped == 0
        stamps = [conv.stamp_to_ns(m.header.stamp) for m in h.got["depth"]]
        assert stamps == sorted(set(stamps)) and len(stamps) == n
        for topic in ("disparity", "depth/camera_info"):
            assert [conv.stamp_to_ns(m.header.stamp) for m in h.got[topic]] == stamps
        dropped = h.node.outputs.dropped[points.topic_name]
        assert dropped > 0
        assert h.node.diagnostics_values()["outputs dropped (subscriber not taking them)"] == dropped
        h.node.status.publish()  # /diagnostics' level says so too (was OK while outputs were dropped)
        levels = [(st.level, st.message) for array in diagnostics for st in array.status]
        assert any(lv == DiagnosticStatus.WARN and "outputs dropped" in msg for lv, msg in levels), levels
        held = [w for w in h.log.warnings if "a subscriber of /points does not take its messages" in w]
        # rate-limited: one per the log's period (on a machine at load 25 the frames took longer than one: 2 came)
        most = 1 + int((time.monotonic() - t0) / h.node.log.period)
        assert 1 <= len(held) <= most, (most, h.log.warnings)
    finally:
        release.set()
    h.spin_until(lambda: len(h.got["points"]) > 0, timeout=10)
    points_stamps = [conv.stamp_to_ns(m.header.stamp) for m in h.got["points"]]
    assert points_stamps == sorted(points_stamps) and set(points_stamps) <= set(stamps)


def test_a_topic_slow_to_publish_is_named_before_anything_is_dropped(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscriber in a stopped process (a frozen RViz) makes every publish on its topics slow without
    blocking them: Fast DDS goes on sending to it until its lease expires, ~40 ms per 640x480 cloud. Nothing
    was dropped, so no WARN named the topic; the node fell behind and the only WARN was about camera
    frames lost before the node, pointing at the input transport. Now the slow topic is named, with its
    subscribers, and only that one."""
    from vdepth_ros.ros import outputs, transport

    monkeypatch.setattr(outputs, "SLOW_WINDOW_S", 0.5, raising=False)
    h = harness(RANGE, start_worker=True)
    points = h.node.outputs.main.points
    real = points.publish
    published = [0]

    def slow_publish(msg: Any) -> None:  # a stopped subscriber's publish (~40 ms a cloud), made longer than a
        time.sleep(0.2)  # window's inference on a loaded machine too, so that publishing is what takes the time
        real(msg)
        published[0] += 1

    points.publish = slow_publish
    diagnostics: list[Any] = []
    h.node.status.publisher.publish = diagnostics.append

    def reported() -> bool:  # in the log, and on /diagnostics (rqt_robot_monitor) while it lasts
        h.node.status.publish()
        on_diagnostics = any(
            st.level == DiagnosticStatus.WARN and "/points" in st.message for a in diagnostics for st in a.status
        )
        return on_diagnostics and any("publishing /points takes" in w for w in h.log.warnings)

    # Fed until it is said, paced by the /points messages published (never more ahead than the sender's queue
    # holds: nothing is dropped, and no input queue fills), not 40 frames at a fixed pace: on a loaded machine the
    # input queue overflowed, or the node finished the backlog before the WARN's next message (a flake at load 13).
    rgbs, k, deadline = frames(40), 0, time.monotonic() + 60
    ahead = 2 * h.node.outputs.burst  # the /points sender's queue (`auto_depth`)
    while not reported() and time.monotonic() < deadline:
        if k - published[0] < ahead:
            h.pub_image.publish(conv.image_msg(rgbs[k % len(rgbs)], "rgb8", header(k)))
            h.pub_info.publish(CameraInfo(header=header(k), width=W, height=H, k=K))
            k += 1
        h.spin(0.03)
    assert reported(), (h.log.warnings, [st.message for a in diagnostics for st in a.status])
    slow = [w for w in h.log.warnings if "publishing /" in w]
    assert all(w.startswith("publishing /points takes") for w in slow), slow
    assert "stopped process" in slow[0], slow[0]
    # the profile by the path to give and how (it said config/fastdds_large_images.xml, relative to nothing)
    assert f"started with FASTDDS_DEFAULT_PROFILES_FILE={transport.bundled_profile()}," in slow[0], slow[0]
    assert transport.bundled_profile().is_absolute() and transport.bundled_profile().is_file()


def test_a_slow_replay_taken_by_a_busy_executor_is_measured_by_when_its_images_arrived(harness: Any) -> None:
    """A recording replayed at 0.2x (images 0.33 s apart, stamped 0.067 s apart) while the node's executor
    was busy elsewhere (a loaded machine): it took the queued images back to back, and by its callbacks'
    clock the replay ran in real time, so the pause rule restarted the stream between the slow frames
    (seen once in the deployed replay test under load). The arrival is rmw's reception time now."""
    h = harness(RANGE)
    node, rgbs = h.node, frames(5)
    for k in range(5):  # published while nothing spins: the images wait in the subscription (depth 5)
        h.pub_image.publish(conv.image_msg(rgbs[k], "rgb8", Header(stamp=conv.ns_to_stamp(stamp(k, 10**9)))))
        time.sleep(1 / 3)
    assert h.spin_until(lambda: node.intake.rate.total == 5)
    # 0.33 s of arrival per 0.067 s of stamps: 5x (before: 1, the callbacks' back-to-back clock)
    assert 4.0 < node.intake.pauses.stretch < 6.0, node.intake.pauses.stretch
    assert 4.0 < node.intake.arrival_speed.stretch < 6.0, node.intake.arrival_speed.stretch


def test_an_image_before_the_first_clock_under_sim_time_is_no_replay_speed(harness: Any) -> None:
    """Under use_sim_time the node's clock reads 0 until its first /clock message; a loaded machine can take
    the first image before it. That image's arrival was noted at 0 and the next at the player's clock, so
    the first step read as a replay 16x slower than its stamps, and an early window followed ("no image for
    1.05 s", seen in the deployed paused-player test under load). Now an arrival before any /clock is not
    noted."""
    from rosgraph_msgs.msg import Clock

    h = harness({**RANGE, "use_sim_time": True})
    node, rgbs = h.node, frames(8)
    clock_pub = h.peer.create_publisher(Clock, "/clock", 10)
    h.spin(0.3)
    assert node.get_clock().now().nanoseconds == 0  # no /clock yet
    h.send(rgbs[0], "rgb8", header(0))
    stretches = []
    for k in range(1, 8):
        clock_pub.publish(Clock(clock=conv.ns_to_stamp(stamp(k))))
        assert h.spin_until(lambda k=k: node.get_clock().now().nanoseconds == stamp(k))
        h.send(rgbs[k], "rgb8", header(k))
        stretches.append(node.intake.pauses.stretch)
    assert max(stretches) < 1.5, stretches  # (before: 16 after the second image)


def test_frames_a_window_output_before_a_later_frame_failed_are_published(harness: Any) -> None:
    """A window whose output failed part way (here the cloud of its third frame) used to lose the frames it had
    already output: counted as output by the pipeline, never published and in no fate of the stop summary (the
    fates' sum came out short of the images received). They are published, the error is the worker's one
    rate-limited line and the frames after the failure are "lost to errors"; /diagnostics counts one pipeline
    reset (it counted two: the pipeline's own and the worker's restart, whose reason replaced the cause)."""
    h = harness(RANGE)
    node, built = h.node, []
    build = node.pipeline.cloud.build

    def fails_on_the_third(*args: Any, **kwargs: Any) -> Any:
        built.append(1)
        if len(built) == 3:
            raise MemoryError("cloud")
        return build(*args, **kwargs)

    node.pipeline.cloud.build = fails_on_the_third
    for k, rgb in enumerate(frames(8)):  # one window
        h.send(rgb, "rgb8", header(k))
    assert h.spin_until(lambda: len(h.got["depth"]) == 2), len(h.got["depth"])
    assert [e.split(" (")[0] for e in h.errors] == ["depth pipeline failed on the frame stamped 1466666669"], h.errors
    assert_every_fate_counted(node, frames=2, lost=6)
    values = node.diagnostics_values()  # one failure, one reset, its reason naming what failed
    assert values["pipeline frames_out"] == 2 and values["pipeline resets"] == 1, values
    assert values["resets"] == "pipeline error=1" and values["pipeline last_reset_reason"].endswith(
        "MemoryError: cloud"
    )


def test_use_sim_time_set_at_runtime_is_no_pause_of_the_camera(harness: Any) -> None:
    """`ros2 param set /depth_node use_sim_time true` to follow a bag played with --clock, and back to false:
    the images' arrivals noted on the bag's clock were then read on the system clock, a pause of the camera
    as long as the clocks are apart, so the frames held for the next window ran in an early window and the
    stream restarted ("pause: no image for ... s") while the images went on. The pauses are measured on the
    new clock from its first image."""
    from rosgraph_msgs.msg import Clock

    h = harness(RANGE)
    node, proc = h.node, h.node.processor
    clock = h.peer.create_publisher(Clock, "/clock", 10)
    rgbs = frames(14)
    for k in range(10):  # a window at frame 8: frames 8 and 9 are held
        h.send(rgbs[k], "rgb8", header(k))
    assert node.set_parameters([Parameter("use_sim_time", value=True)])[0].successful
    bag_time = conv.ns_to_stamp(stamp(10))
    assert h.spin_until(lambda: clock.publish(Clock(clock=bag_time)) or node.get_clock().now().nanoseconds > 0)
    for k in range(10, 14):
        h.send(rgbs[k], "rgb8", header(k))
        proc.on_idle()
    assert node.set_parameters([Parameter("use_sim_time", value=False)])[0].successful
    proc.on_idle()
    assert proc.pause_flushes == 0 and proc.resets == {}, (proc.pause_flushes, proc.resets)
