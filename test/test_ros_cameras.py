"""Several cameras in one process (`vdepth-node --cameras ...`): own streams, one loaded model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from fakes import write_tiny_onnx
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from test_ros_deployed import PEERS, interrupt, lifecycle_up, node_command, start, wait_for

from vdepth_ros.errors import ConfigError
from vdepth_ros.pipeline import DepthPipeline, FrameInput
from vdepth_ros.ros import conversions as conv
from vdepth_ros.ros.cameras import build_nodes, camera_namespaces
from vdepth_ros.runtime import create_engine
from vdepth_ros.stream.cloud import CameraModel

pytestmark = [pytest.mark.ros, pytest.mark.filterwarnings("ignore::DeprecationWarning:rclpy.event_handler")]
H, W = 120, 160
K = [100.0, 0.0, 79.5, 0.0, 100.0, 59.5, 0.0, 0.0, 1.0]


def camera_frames(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(20, 236, (H // 8, W // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    return [np.roll(base, 2 * k, axis=1).copy() for k in range(n)]


def stamp(k: int) -> int:
    return 1_000_000_000 + k * 66_666_667


def init_context(args: list[str]) -> Any:
    ctx = rclpy.Context()
    rclpy.init(args=["vdepth-node", "--ros-args", *args], context=ctx, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    return ctx


def params_file(tmp_path: Path, model: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n"
        f"    model: {str(model)!r}\n    backend: onnxruntime\n    scale_source: range\n    near: 0.5\n    far: 8.0\n"
        "/rear/depth_node:\n  ros__parameters:\n    far: 4.0\n"
    )
    return path


def reference(model: Path, rgbs: list[np.ndarray], far: float) -> list[Any]:
    params = {"model": str(model), "backend": "onnxruntime", "scale_source": "range", "near": 0.5, "far": far}
    pipe = DepthPipeline.from_dict(params, engine=create_engine(str(model), backend="onnxruntime"))
    cam = CameraModel.from_matrix(K, W, H)
    out: list[Any] = []
    for k, rgb in enumerate(rgbs):
        out += pipe.push(FrameInput(rgb=rgb, stamp_ns=stamp(k), camera=cam))
    return out


def test_two_cameras_share_one_engine_and_publish_their_own_streams(tmp_path: Path) -> None:
    model = write_tiny_onnx(tmp_path)
    ctx = init_context(["--params-file", str(params_file(tmp_path, model)), "-r", "/rear/image:=/cam_rear/image_rect"])
    nodes, pool = build_nodes(["front", "rear"], context=ctx, start_worker=False)
    peer = Node("peer", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    try:
        assert pool is not None and len(pool) == 1  # one model loaded for both cameras
        front, rear = nodes
        assert front.pipeline.engine.inner is rear.pipeline.engine.inner
        assert (front.get_fully_qualified_name(), rear.get_fully_qualified_name()) == (
            "/front/depth_node",
            "/rear/depth_node",
        )
        assert (front.pipeline.config.far, rear.pipeline.config.far) == (8.0, 4.0)  # per-camera section
        got: dict[str, list[Image]] = {"front": [], "rear": []}
        for cam in got:
            peer.create_subscription(Image, f"/{cam}/depth", got[cam].append, 50)
        image_topics = {"front": "/front/image", "rear": "/cam_rear/image_rect"}  # rear's image remapped
        pubs = {
            cam: (peer.create_publisher(Image, topic, 50), peer.create_publisher(CameraInfo, f"/{cam}/camera_info", 50))
            for cam, topic in image_topics.items()
        }
        for node in (*nodes, peer):
            ex.add_node(node)
        rgbs = {"front": camera_frames(9, seed=1), "rear": camera_frames(9, seed=2)}

        def spin_until(cond: Any, timeout: float = 20.0) -> bool:
            end = time.monotonic() + timeout
            while not cond() and time.monotonic() < end:
                ex.spin_once(timeout_sec=0.01)
            return cond()

        def reliable(node: Any) -> bool:  # input_qos auto has followed the peer's reliable image publisher
            sub = next(s for s in node.intake.subscriptions if s.topic_name == node.intake.image_topic)
            return sub.qos_profile.reliability == ReliabilityPolicy.RELIABLE

        assert spin_until(lambda: all(reliable(node) for node in nodes))  # (an image sent meanwhile is lost)

        for k in range(9):
            for cam, node in zip(("front", "rear"), nodes, strict=True):
                h = Header(stamp=conv.ns_to_stamp(stamp(k)), frame_id=f"{cam}_optical")
                queued = node.queue.put_count
                pubs[cam][0].publish(conv.image_msg(rgbs[cam][k], "rgb8", h))
                pubs[cam][1].publish(CameraInfo(header=h, width=W, height=H, k=K))
                assert spin_until(lambda node=node, queued=queued: node.queue.put_count > queued)
            for node in nodes:
                node.process_pending()
        refs = {"front": reference(model, rgbs["front"], 8.0), "rear": reference(model, rgbs["rear"], 4.0)}
        assert spin_until(lambda: all(len(got[c]) >= len(refs[c]) for c in got))
        for cam in got:
            assert len(refs[cam]) >= 5 and len(got[cam]) == len(refs[cam])
            for msg, ref in zip(got[cam], refs[cam], strict=True):
                assert msg.header.frame_id == f"{cam}_optical"
                np.testing.assert_array_equal(conv.image_array(msg), ref.depth)  # bit for bit, per camera
        assert not np.array_equal(conv.image_array(got["front"][0]), conv.image_array(got["rear"][0]))
        values = front.diagnostics_values()
        assert values["engine shared by (cameras)"] == 2
        assert front.pipeline.engine.calls >= 2 and rear.pipeline.engine.calls >= 2
    finally:
        ex.shutdown()
        for node in nodes:
            node.close()
        pool.close()
        peer.destroy_node()
        rclpy.shutdown(context=ctx)


def test_a_camera_with_another_backend_or_thread_count_gets_its_own_engine(tmp_path: Path) -> None:
    model = write_tiny_onnx(tmp_path)
    params = params_file(tmp_path, model)
    params.write_text(
        params.read_text()
        + "/side/depth_node:\n  ros__parameters:\n    backend: auto\n"
        + "/aux/depth_node:\n  ros__parameters:\n    engine_threads: 1\n"
    )
    ctx = init_context(["--params-file", str(params)])
    nodes, pool = build_nodes(["front", "rear", "side", "aux"], context=ctx, start_worker=False)
    try:
        assert pool is not None and len(pool) == 3
        assert pool.users(nodes[0].pipeline.engine) == 2 and pool.users(nodes[2].pipeline.engine) == 1
        aux = nodes[3].pipeline.engine.inner
        assert aux.session.get_session_options().intra_op_num_threads == 1 and pool.users(nodes[3].pipeline.engine) == 1
    finally:
        for node in nodes:
            node.close()
        pool.close()
        rclpy.shutdown(context=ctx)


def test_a_namespace_remap_that_merges_the_cameras_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = write_tiny_onnx(tmp_path)
    ctx = init_context(["--params-file", str(params_file(tmp_path, model)), "-r", "__ns:=/robot7"])
    try:
        for cameras in (["front", "rear"], ["robot7/front"]):  # even one camera would not be where it was named
            with pytest.raises(ConfigError, match=r"__ns.*--cameras robot1/front"):
                build_nodes(cameras, context=ctx, start_worker=False)
        # refused before any model is loaded (it used to load the model, log "publishing" and then refuse)
        monkeypatch.setattr("vdepth_ros.ros.cameras.EnginePool", lambda: pytest.fail("a model pool was made"))
        with pytest.raises(ConfigError, match="__ns"):
            build_nodes(["front"], context=ctx, start_worker=False)
    finally:
        rclpy.shutdown(context=ctx)


def test_camera_names_must_be_namespaces() -> None:
    assert camera_namespaces(["front", "/robot1/rear/", "_aux2"]) == ["/front", "/robot1/rear", "/_aux2"]
    for bad in (["1cam"], ["front cam"], ["a//b"], ["front", "/front"], ["caméra"], [""]):
        with pytest.raises(ConfigError):
            camera_namespaces(bad)


def test_managed_cameras_load_the_shared_model_at_configure(tmp_path: Path) -> None:
    from rclpy.lifecycle import TransitionCallbackReturn

    model = write_tiny_onnx(tmp_path)
    ctx = init_context(["--params-file", str(params_file(tmp_path, model))])
    nodes, pool = build_nodes(["front", "rear"], managed=True, context=ctx, start_worker=False)
    try:
        assert pool is not None and len(pool) == 0  # unconfigured: nothing loaded yet
        front, rear = nodes
        front.hold_lasting_warning("test", "a params-file section matches no node")  # (before any status)
        assert all(n.trigger_configure() == TransitionCallbackReturn.SUCCESS for n in nodes)
        assert "a params-file section matches no node" in front.log.problems.current()
        assert len(pool) == 1 and pool.users(front.pipeline.engine) == 2
        shared = rear.pipeline.engine
        assert front.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert pool.users(shared) == 1 and len(pool) == 1  # still loaded for the rear camera
        assert front.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert front.pipeline.engine.inner is shared.inner and pool.users(shared) == 2
        assert "a params-file section matches no node" in front.log.problems.current()  # through a configure
    finally:
        for node in nodes:
            node.close()
        pool.close()
        rclpy.shutdown(context=ctx)


def test_a_camera_that_fails_configure_gives_its_engine_share_back(tmp_path: Path) -> None:
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    model = write_tiny_onnx(tmp_path)
    ctx = init_context(["--params-file", str(params_file(tmp_path, model))])
    nodes, pool = build_nodes(["front"], managed=True, context=ctx, start_worker=False)
    (front,) = nodes
    try:
        assert front.set_parameters([Parameter("window", value=40)])[0].successful  # the graph has 4 frames
        assert front.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert pool is not None and len(pool) == 0  # loaded for the attempt, released and closed after it
        assert front.set_parameters([Parameter("window", value=0)])[0].successful
        assert front.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert pool.users(front.pipeline.engine) == 1
    finally:
        front.close()
        pool.close()
        rclpy.shutdown(context=ctx)


def test_a_configure_failing_after_the_model_loaded_releases_it_and_its_publishers(tmp_path: Path) -> None:
    """A camera's configure that fails once the shared model is loaded (a bad `qos_overrides` value, found as
    its publishers are created) kept its share of the model and the publishers made so far: the model stayed
    loaded for a camera that never ran, and each retry added publishers."""
    from rclpy.lifecycle import TransitionCallbackReturn

    model = write_tiny_onnx(tmp_path)
    bad = "qos_overrides./front/points.publisher.reliability:=relaible"
    ctx = init_context(["--params-file", str(params_file(tmp_path, model)), "-p", bad])
    nodes, pool = build_nodes(["front"], managed=True, context=ctx, start_worker=False)
    (front,) = nodes
    own = {pub.topic_name for pub in front.publishers}  # /rosout, /parameter_events, the lifecycle's
    try:
        for _ in range(2):
            assert front.trigger_configure() == TransitionCallbackReturn.FAILURE
            assert pool is not None and len(pool) == 0
            assert {pub.topic_name for pub in front.publishers} == own
    finally:
        front.close()
        pool.close()
        rclpy.shutdown(context=ctx)


# -- as deployed: the node, each camera and the listeners in processes of their own ------------------


def _camera_process(namespace: str, *args: str) -> subprocess.CompletedProcess:
    """`deployed_peers.py camera` for one camera (its own process, as its own driver)."""
    return subprocess.run(
        [sys.executable, str(PEERS), "camera", "--namespaces", namespace, *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def test_each_cameras_pipeline_lines_name_it_and_reach_rosout(tmp_path: Path) -> None:
    """The pipeline logs with Python's logging (it knows nothing of ROS). With two cameras its lines
    (a stretched model, a scene cut, a covered lens's alignment fallback) came out as
    `[vdepth_ros.pipeline]`, naming no camera, and never reached /rosout (only a node's loggers do).
    The rear camera here is 16:9 on the 4:3 model: its stretch warning names it, on the console and
    on /rosout, and the front camera's lines name the front camera. Reliable input: the default best-effort
    subscription lost every one of a camera's 15 large images from another process at load 11-14 (docs/node.md,
    Across processes), and the lines come with a camera's first frame."""
    from rcl_interfaces.msg import Log

    reliable = "    input_qos: reliable\n"
    node, node_log = start(node_command(tmp_path, ("--cameras", "front", "rear"), reliable), tmp_path / "node.log")
    ctx = init_context([])
    listener = Node("rosout_listener", context=ctx)
    got: list[tuple[str, str]] = []
    listener.create_subscription(Log, "/rosout", lambda m: got.append((m.name, m.msg)), 200)
    depth = [listener.create_subscription(Image, f"/{cam}/depth", lambda m: None, 10) for cam in ("front", "rear")]
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(listener)
    try:
        wait_for(tmp_path / "node.log", "share 1 loaded model", 60, node)
        end = time.monotonic() + 30  # the node skips frames nobody subscribes to
        while time.monotonic() < end and not all(sub.get_publisher_count() for sub in depth):
            ex.spin_once(timeout_sec=0.1)
        for namespace, size in (("/front", "640x480"), ("/rear", "640x360")):
            camera = _camera_process(namespace, "--seconds", "1", "--rate", "15", "--size", size, "--reliable")
            assert camera.returncode == 0, camera.stderr
        end = time.monotonic() + 60  # the rear camera's first frame processed and its line on /rosout
        while time.monotonic() < end and not any("another shape" in m for _, m in got):
            ex.spin_once(timeout_sec=0.1)
        assert interrupt(node) == 0
    finally:
        if node.poll() is None:
            node.kill()
        ex.shutdown()
        listener.destroy_node()
        rclpy.shutdown(context=ctx)
    node_log.close()
    out = (tmp_path / "node.log").read_text()
    stretched = [line for line in out.splitlines() if "have another shape" in line]
    assert len(stretched) == 1 and "[WARN] " in stretched[0], out
    assert "[rear.depth_node.vdepth_ros.pipeline]" in stretched[0], out
    front = [line for line in out.splitlines() if "stream of 640x480 frames" in line]
    assert front and all("[front.depth_node.vdepth_ros.pipeline]" in line for line in front), out
    assert ("rear.depth_node.vdepth_ros.pipeline", stretched[0].split("]: ", 1)[1]) in got, got


def test_sigint_publishes_every_cameras_last_images_also_those_waiting_for_their_camera_info(tmp_path: Path) -> None:
    """A driver publishes each image, then its camera_info; the node pairs them. At SIGINT an image whose
    camera_info had not come yet was thrown away with the pairing buffer (every camera lost its last
    frame whenever the signal fell between the two messages), although the node promises to publish
    every frame it received, as at the end of a bag (which pairs them with the last camera_info).
    Both cameras, in processes of their own, end with an image alone; SIGINT; every image is published."""
    frames = 12
    reliable = "    input_qos: reliable\n"  # no frame lost on the way: each one is counted
    node, node_log = start(node_command(tmp_path, ("--cameras", "front", "rear"), reliable), tmp_path / "node.log")
    topics = ["/front/depth", "/rear/depth"]
    viewer, viewer_log = start([sys.executable, str(PEERS), "viewer", "--topics", *topics], tmp_path / "viewer.log")
    try:
        wait_for(tmp_path / "viewer.log", "matched", 90, viewer)
        for namespace in ("/front", "/rear"):
            camera = _camera_process(namespace, "--seconds", str(frames / 10), "--rate", "10", "--reliable",
                                     "--size", "320x240", "--last-image-alone")  # fmt: skip
            assert camera.returncode == 0, camera.stderr
        wait_for(tmp_path / "node.log", "rear.depth_node]: first output", 30, node)
        time.sleep(1.0)
        assert interrupt(node) == 0
    finally:
        if node.poll() is None:
            node.kill()
        assert interrupt(viewer) == 0
    node_log.close()
    viewer_log.close()
    out = (tmp_path / "node.log").read_text()
    got = json.loads((tmp_path / "viewer.log").read_text().strip().splitlines()[-1])
    for topic in topics:
        assert len(set(got[topic])) == frames, (topic, len(got[topic]), out)
        assert f"published {topic} {frames}" in out, out
    assert "[ERROR]" not in out and "Traceback" not in out, out


@pytest.mark.parametrize(
    ("rear_section", "reason"),
    [
        ("far: -2.0", "need 0 < near < far"),  # a value the pipeline refuses
        ("input_qos: fast", "input_qos='fast'"),  # a node setting
        ("model: /nonexistent/model.onnx", "/nonexistent/model.onnx"),  # its own model, missing
    ],
)
def test_a_cameras_bad_value_names_the_camera(tmp_path: Path, rear_section: str, reason: str) -> None:
    """`vdepth-node --cameras front rear` with a bad value in the rear camera's `/rear/depth_node:`
    section exited 2 with `invalid configuration: need 0 < near < far ..., got far=-2.0`: which of
    the file's sections? The error now names the camera and its node (the section to look at)."""
    cmd = node_command(tmp_path, ("--cameras", "front", "rear"))
    Path(cmd[-1]).write_text(Path(cmd[-1]).read_text() + f"/rear/depth_node:\n  ros__parameters:\n    {rear_section}\n")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith(("invalid configuration:", "cannot start:"))]
    assert "camera /rear (/rear/depth_node): " in line and reason in line, line
    assert "Traceback" not in done.stderr, done.stderr


def test_a_process_wide_setting_in_one_cameras_section_is_named(tmp_path: Path) -> None:
    """`blas_threads` is one value for the process (numpy's OpenBLAS). Set in `/rear/depth_node:` it
    silently applied to the front camera too (the front camera's own log line had said 1): one WARN
    at start-up now says the cameras ask for different values and where to set it."""
    cmd = node_command(tmp_path, ("--cameras", "front", "rear"))
    Path(cmd[-1]).write_text(Path(cmd[-1]).read_text() + "/rear/depth_node:\n  ros__parameters:\n    blas_threads: 2\n")
    node, log = start(cmd, tmp_path / "node.log")
    try:
        wait_for(tmp_path / "node.log", "share 1 loaded model", 60, node)
        assert interrupt(node) == 0
    finally:
        if node.poll() is None:
            node.kill()
    log.close()
    out = (tmp_path / "node.log").read_text()
    (line,) = [x for x in out.splitlines() if "blas_threads is process-wide" in x]
    assert "[WARN]" in line and "/front 1, /rear 2" in line and "/**" in line, out


@pytest.mark.parametrize("managed", [False, True])
def test_a_process_wide_warning_is_on_every_cameras_diagnostics(tmp_path: Path, managed: bool) -> None:
    """Warnings about the whole process (a `depth_node:` section that matches neither `/front/depth_node` nor
    `/rear/depth_node`, cameras that ask for different `blas_threads`) were on the first camera's /diagnostics
    only (an operator watching the rear camera's status never saw them), and with --managed on none: they came
    before any configure, when no status existed. Now every camera's status names them once it runs."""
    cmd = node_command(tmp_path, ("--managed",) * managed + ("--cameras", "front", "rear"))
    sections = (
        "/rear/depth_node:\n  ros__parameters:\n    blas_threads: 2\ndepth_node:\n  ros__parameters:\n    far: 4.0\n"
    )
    Path(cmd[-1]).write_text(Path(cmd[-1]).read_text() + sections)
    node, log = start(cmd, tmp_path / "node.log")
    ctx = init_context([])
    monitor = Node("robot_monitor", context=ctx)
    problems: dict[str, str] = {}  # the last status's "problems" by node

    def keep(array: DiagnosticArray) -> None:
        for st in array.status:
            problems[st.hardware_id] = next((kv.value for kv in st.values if kv.key == "problems"), "")

    monitor.create_subscription(DiagnosticArray, "/diagnostics", keep, 10)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(monitor)
    wanted = ("blas_threads is process-wide", "section(s) /depth_node apply to no node")

    def named_on_both() -> bool:
        return all(w in problems.get(f"/{cam}/depth_node", "") for cam in ("front", "rear") for w in wanted)

    try:
        wait_for(tmp_path / "node.log", "managed cameras" if managed else "share 1 loaded model", 60, node)
        for camera in ("front", "rear") if managed else ():
            lifecycle_up(f"/{camera}/depth_node")
        end = time.monotonic() + 30
        while time.monotonic() < end and not named_on_both():
            ex.spin_once(timeout_sec=0.1)
        assert interrupt(node) == 0
    finally:
        if node.poll() is None:
            node.kill()
        ex.shutdown()
        monitor.destroy_node()
        rclpy.shutdown(context=ctx)
    log.close()
    out = (tmp_path / "node.log").read_text()
    assert named_on_both(), (problems, out)
    assert len([x for x in out.splitlines() if "blas_threads is process-wide" in x]) == 1, out  # logged once
