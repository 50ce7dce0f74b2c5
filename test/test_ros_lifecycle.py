"""`vdepth-node --managed`: the depth node as a ROS 2 lifecycle node, transition by transition."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rclpy
from fakes import LuminanceEngine, write_tiny_onnx
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from vdepth_ros.pipeline import DepthPipeline, FrameInput
from vdepth_ros.ros import conversions as conv
from vdepth_ros.ros.node import ManagedDepthNode
from vdepth_ros.runtime import create_engine
from vdepth_ros.stream.cloud import CameraModel

pytestmark = [pytest.mark.ros, pytest.mark.filterwarnings("ignore::DeprecationWarning:rclpy.event_handler")]
H, W = 120, 160
K = [100.0, 0.0, 79.5, 0.0, 100.0, 59.5, 0.0, 0.0, 1.0]
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


def stamp(k: int, t0: int) -> int:
    return t0 + k * 66_666_667


class Rig:
    """A ManagedDepthNode (worker driven by the test) and a peer that feeds it and records /depth."""

    def __init__(self, model: str, **node_kwargs: Any) -> None:
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
        params = {"model": model, "backend": "onnxruntime", "scale_source": "range", "near": 0.5, "far": 8.0}
        params.update(node_kwargs.pop("params", {}))
        self.node = ManagedDepthNode(
            context=self.ctx,
            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
            **{"start_worker": False, **node_kwargs},
        )
        self.peer = Node("peer", context=self.ctx)
        self.got: list[Image] = []
        self.peer.create_subscription(Image, "depth", self.got.append, 50)
        self.pub = self.peer.create_publisher(Image, "image", 50)
        self.ipub = self.peer.create_publisher(CameraInfo, "camera_info", 50)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.ex.add_node(self.peer)
        rng = np.random.default_rng(0)
        base = rng.integers(20, 236, (H // 8, W // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
        self.frames = [np.roll(base, 2 * k, axis=1).copy() for k in range(12)]

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.ex.spin_once(timeout_sec=0.01)

    def spin_until(self, cond: Any, timeout: float = 20.0) -> bool:
        end = time.monotonic() + timeout
        while not cond() and time.monotonic() < end:
            self.ex.spin_once(timeout_sec=0.01)
        return cond()

    def feed(self, t0: int) -> int:
        """Publish the frames; returns how many the node queued."""
        queue = getattr(self.node, "queue", None)
        before = queue.put_count if queue is not None else 0
        for k, rgb in enumerate(self.frames):
            h = Header(stamp=conv.ns_to_stamp(stamp(k, t0)), frame_id="cam_optical")
            self.pub.publish(conv.image_msg(rgb, "rgb8", h))
            self.ipub.publish(CameraInfo(header=h, width=W, height=H, k=K))
            self.spin(0.03)
        self.spin(0.3)
        queue = getattr(self.node, "queue", None)
        return (queue.put_count if queue is not None else 0) - before

    def close(self) -> None:
        self.ex.shutdown()
        self.node.close()
        self.peer.destroy_node()
        rclpy.shutdown(context=self.ctx)


@pytest.fixture
def rig(tmp_path: Path) -> Any:
    r = Rig(str(write_tiny_onnx(tmp_path)))
    yield r
    r.close()


def reference(model: str, frames: list[np.ndarray], far: float, t0: int) -> list[Any]:
    params = {"model": model, "backend": "onnxruntime", "scale_source": "range", "near": 0.5, "far": far}
    pipe = DepthPipeline.from_dict(params, engine=create_engine(model, backend="onnxruntime"))
    cam = CameraModel.from_matrix(K, W, H)
    out: list[Any] = []
    for k, rgb in enumerate(frames):
        out += pipe.push(FrameInput(rgb=rgb, stamp_ns=stamp(k, t0), camera=cam))
    return out


def test_unconfigured_until_configured_then_runs_only_while_active(rig: Rig) -> None:
    node = rig.node
    assert node.count_publishers("/depth") == 0 and node.count_subscribers("/image") == 0
    # parameters can change before configure (validated), and configure reads them
    assert node.set_parameters([Parameter("far", value=4.0)])[0].successful
    assert not node.set_parameters([Parameter("output_qos", value="fastest")])[0].successful
    assert rig.feed(1_000_000_000) == 0 and not rig.got  # nothing listens yet

    assert node.trigger_configure() == SUCCESS
    assert node.pipeline.config.far == 4.0 and node.count_publishers("/depth") == 1
    assert rig.feed(2_000_000_000) == 0  # configured, not active: still no input taken

    assert node.trigger_activate() == SUCCESS
    assert rig.feed(3_000_000_000) == len(rig.frames)
    node.process_pending()
    ref = reference(node.pipeline_params["model"], rig.frames, 4.0, 3_000_000_000)
    assert rig.spin_until(lambda: len(rig.got) >= len(ref))
    assert len(ref) >= 5 and len(rig.got) == len(ref)
    for msg, f in zip(rig.got, ref, strict=True):
        np.testing.assert_array_equal(conv.image_array(msg), f.depth)

    assert node.trigger_deactivate() == SUCCESS
    assert rig.feed(4_000_000_000) == 0  # inputs unsubscribed
    assert node.trigger_activate() == SUCCESS  # a clean stream again: the same output as a fresh pipeline
    rig.got.clear()
    assert rig.feed(5_000_000_000) == len(rig.frames)
    node.process_pending()
    ref = reference(node.pipeline_params["model"], rig.frames, 4.0, 5_000_000_000)
    assert rig.spin_until(lambda: len(rig.got) >= len(ref)) and len(rig.got) == len(ref)
    np.testing.assert_array_equal(conv.image_array(rig.got[-1]), ref[-1].depth)

    assert node.trigger_deactivate() == SUCCESS
    assert node.trigger_cleanup() == SUCCESS
    assert node.pipeline is None and node.count_publishers("/depth") == 0
    assert node.trigger_shutdown() == SUCCESS


def test_a_bad_model_fails_configure_and_a_fixed_one_configures(rig: Rig, tmp_path: Path) -> None:
    node = rig.node
    good = node.get_parameter("model").value
    errors: list[str] = []
    node.get_logger().error = errors.append  # type: ignore[method-assign]
    assert node.set_parameters([Parameter("model", value=str(tmp_path / "missing"))])[0].successful
    assert node.trigger_configure() == FAILURE
    assert any("configure failed" in e and "missing" in e for e in errors)
    assert node.set_parameters([Parameter("model", value=good)])[0].successful
    assert node.trigger_configure() == SUCCESS
    # once configured, engine parameters need a cleanup (restart) as for the plain node
    result = node.set_parameters([Parameter("engine_threads", value=1)])[0]
    assert not result.successful and "restart required" in result.reason


def test_shutdown_from_active_releases_everything(rig: Rig) -> None:
    node = rig.node
    assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
    assert node.trigger_shutdown() == SUCCESS
    assert node.pipeline is None and node.count_publishers("/depth") == 0
    assert rig.feed(1_000_000_000) == 0


def test_an_unexpected_error_fails_configure_with_its_reason_logged(rig: Rig, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"not an onnx graph")
    (broken / "model.onnx.json").write_text((tmp_path / "model.onnx.json").read_text())
    errors: list[str] = []
    rig.node.get_logger().error = errors.append  # type: ignore[method-assign]
    assert rig.node.set_parameters([Parameter("model", value=str(broken))])[0].successful
    assert rig.node.trigger_configure() == FAILURE  # not ERROR with nothing said (rclpy's default)
    assert len(errors) == 1 and errors[0].startswith("configure failed:") and len(errors[0]) > 20


def test_reactivation_restarts_the_drop_count_and_its_warning(rig: Rig) -> None:
    node = rig.node
    assert node.set_parameters([Parameter("queue_size", value=2)])[0].successful
    assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
    published: list[Any] = []
    node.status.publisher.publish = published.append  # type: ignore[method-assign]
    rig.feed(1_000_000_000)  # 12 frames into a queue of 2, nobody taking them
    assert node.queue.dropped == 10
    node.status.publish()
    assert node.trigger_deactivate() == SUCCESS and node.trigger_activate() == SUCCESS
    assert node.queue.dropped == 0
    rig.feed(2_000_000_000)
    node.status.publish()
    levels = [msg.status[0].level for msg in published]
    assert levels[-1] == levels[0] != b"\x00"  # WARN again: the new drops are not hidden by the old count


def _problems(node: ManagedDepthNode) -> str:
    """The "problems" value of the status the node publishes now."""
    published: list[Any] = []
    node.status.publisher.publish = published.append  # type: ignore[method-assign]
    node.status.publish()
    return {kv.key: kv.value for kv in published[-1].status[0].values}["problems"]


def test_frames_stretched_before_a_deactivation_are_not_named_after_the_reactivation(rig: Rig) -> None:
    """Square frames on the 4:3 model, then deactivate and activate: the status named the last session's stretched
    frames again, "as of the last image", until a new frame started a stream (the pipeline's stream state outlived
    the deactivation). A new session has seen no frame yet."""
    node = rig.node
    assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
    rig.frames = [f[:, :H].copy() for f in rig.frames]  # 120x120
    assert rig.feed(1_000_000_000) == len(rig.frames)
    node.process_pending()
    assert "frames stretched 1.33x" in _problems(node)
    assert node.trigger_deactivate() == SUCCESS and node.trigger_activate() == SUCCESS
    assert "stretched" not in _problems(node)


def test_a_covered_lens_is_named_while_its_windows_fall_back_not_as_an_event(rig: Rig) -> None:
    """A lens covered (black frames): every window's alignment falls back, and the pipeline's WARNING reached
    /diagnostics as an event (named for 10 s, with a window index and numbers that changed at every line) while
    the lens stayed covered. Now it is a condition: named while the windows fall back, gone once one does not."""
    node = rig.node
    assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
    textured, rig.frames = rig.frames, [np.zeros_like(f) for f in rig.frames]
    assert rig.feed(1_000_000_000) == len(rig.frames)
    node.process_pending()
    problems = _problems(node)
    assert "alignment falls back" in problems and "alignment fell back" not in problems, problems
    assert node.log.problems.event_values()["last event"] == "none"
    rig.frames = textured
    assert rig.feed(2_000_000_000) == len(rig.frames)
    node.process_pending()
    assert "alignment" not in _problems(node)


class SlowEngine(LuminanceEngine):
    def _run(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(0.3)
        return super()._run(batch)


def test_deactivate_waits_for_the_window_in_progress_and_one_worker_runs(tmp_path: Path) -> None:
    import threading

    rig = Rig(str(write_tiny_onnx(tmp_path)), engine=SlowEngine(height=48, width=64, frames=4, overlap=1),
              start_worker=True)  # fmt: skip
    try:
        node = rig.node
        assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
        rig.feed(1_000_000_000)  # windows are running in the worker now
        assert node.trigger_deactivate() == SUCCESS
        workers = [t for t in threading.enumerate() if t.name == "vdepth-worker"]
        assert workers == []  # finished, not left running beside the next activation's worker
        assert node.trigger_activate() == SUCCESS
        assert [t.name for t in threading.enumerate()].count("vdepth-worker") == 1
    finally:
        rig.close()


def test_deactivate_with_a_slow_model_and_a_full_queue_returns_in_bounded_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deactivate publishes what is queued and held, as SIGINT does, but a lifecycle manager waits
    for the transition: with a slow model and a full queue that could take many windows. Past the
    bound the rest is abandoned; the window in progress still ends before the transition returns."""
    import threading

    from vdepth_ros.ros import node as node_module

    class VerySlowEngine(LuminanceEngine):
        def _run(self, batch: np.ndarray) -> np.ndarray:
            time.sleep(1.5)
            return super()._run(batch)

    monkeypatch.setattr(node_module, "_CLOSE_JOIN_S", 1.0)
    rig = Rig(str(write_tiny_onnx(tmp_path)), engine=VerySlowEngine(height=48, width=64, frames=4, overlap=1),
              start_worker=True)  # fmt: skip
    try:
        node = rig.node
        assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
        assert rig.feed(1_000_000_000) >= 8  # several windows' worth queued behind a 1.5 s window
        t0 = time.monotonic()
        assert node.trigger_deactivate() == SUCCESS
        assert time.monotonic() - t0 < 1.0 + 1.5 + 1.5  # the bound, the window in progress, slack
        assert [t for t in threading.enumerate() if t.name == "vdepth-worker"] == []
    finally:
        rig.close()


def test_an_activate_that_fails_midway_leaves_no_input_and_a_retry_runs_once(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An activation failing after its subscriptions were made (here: the diagnostics timer cannot be created)
    kept them: the inactive node went on taking images into a queue no worker reads, and the next activation
    subscribed a second time, so each image was taken twice."""
    assert rig.node.trigger_configure() == SUCCESS
    node, real = rig.node, rig.node.create_timer

    def no_timer(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("timer refused")

    monkeypatch.setattr(node, "create_timer", no_timer)
    assert node.trigger_activate() == FAILURE
    assert list(node.subscriptions) == [] and node.worker is None and not node._active
    monkeypatch.setattr(node, "create_timer", real)
    assert node.trigger_activate() == SUCCESS
    assert rig.feed(3_000_000_000) == len(rig.frames)  # each image taken once
