"""The node's outputs as downstream tools take them, each in its own process (docs/node.md, Topics and QoS).

A camera driver, `vdepth-node` and consumers subscribed as RViz, depth_image_proc or an ExactTime
`message_filters` sync of depth and its camera_info are (reliable, volatile; best effort as RViz's
DepthCloud display; depth 16, as docs/node.md asks of RViz) run as separate processes at 640x480: every frame the node
publishes reaches every consumer on every output it subscribes, and every depth image has its
`depth/camera_info` with the same stamp.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
from test_ros_deployed import PEERS, interrupt, node_command, start, stop_summary, wait_for, wait_until_published

from vdepth_ros.encodings import pointcloud2_fields_array
from vdepth_ros.ros import transport

pytestmark = pytest.mark.ros

SECONDS, RATE = 6.0, 15.0
REPO = Path(__file__).resolve().parents[1]
CONSUMED = ("/depth", "/depth/camera_info", "/points", "/disparity")


def run_with_consumers(
    tmp_path: Path, consumers: dict[str, list[str]], params: str = "", ros_args: tuple[str, ...] = ()
) -> tuple:
    """Node (with the extra `params` lines, indented YAML, and `ros_args` after its params file: remaps),
    consumers (name -> `deployed_peers.py viewer` arguments) and a reliable 640x480 camera, each in its own
    process; (published per topic, {consumer: received stamps per topic}, node log)."""
    command = [*node_command(tmp_path, params="    input_qos: reliable\n    queue_size: 200\n" + params), *ros_args]
    node, node_log = start(command, tmp_path / "node.log")
    viewers = {
        name: start([sys.executable, str(PEERS), "viewer", *args], tmp_path / f"{name}.log")
        for name, args in consumers.items()
    }
    ran = False
    try:
        for name, (proc, _) in viewers.items():
            try:
                wait_for(tmp_path / f"{name}.log", "matched", 90, proc)
            except AssertionError as err:  # a viewer waits for the node's publishers: say how the node is
                node_state = "running" if node.poll() is None else f"exited {node.returncode}"
                raise AssertionError(f"{err}\nnode ({node_state}):\n{(tmp_path / 'node.log').read_text()}") from None
        camera, camera_log = start(
            [sys.executable, str(PEERS), "camera", "--seconds", str(SECONDS), "--rate", str(RATE), "--reliable"],
            tmp_path / "camera.log",
        )
        assert camera.wait(timeout=SECONDS + 60) == 0, (tmp_path / "camera.log").read_text()
        camera_log.close()
        wait_until_published(tmp_path / "node.log", node, 3.0)
        assert interrupt(node) == 0, (tmp_path / "node.log").read_text()
        ran = True
    finally:
        if node.poll() is None:
            node.kill()
        for proc, _ in viewers.values() if not ran else ():  # a failed run leaves no viewer running
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    got = {}
    for name, (proc, log) in viewers.items():
        assert interrupt(proc) == 0
        log.close()
        got[name] = json.loads((tmp_path / f"{name}.log").read_text().strip().splitlines()[-1])
    node_log.close()
    out = (tmp_path / "node.log").read_text()
    published = stop_summary(out).published
    return published, got, out


#: The share of frames a best-effort consumer must get: about half before the profile (docstring below).
BEST_EFFORT_SHARE = 0.9


@pytest.mark.slow
def test_every_published_frame_reaches_reliable_and_best_effort_consumers_of_all_outputs(tmp_path: Path) -> None:
    """RViz showing depth, cloud and disparity, or depth_image_proc pairing depth with its camera_info
    (ExactTime), in another process. Fast DDS's default 512 KiB shared-memory segment cannot hold a
    window's burst of 640x480 depth images and clouds: a reliable subscriber lost 1-26 % of the frames
    on each topic (the node's history had moved on before the repair), some depth images without
    their camera_info, and a best-effort one (RViz's DepthCloud display by default; depth 16 as the
    docs ask of RViz) got about half the depth images and a third of the clouds. The node's process now uses the bundled
    large-segment profile, which is what counts for its outputs (the publisher's side). Best effort
    may still drop a few images of a burst (`BEST_EFFORT_SHARE`); the reliable consumer gets all."""
    consumers = {
        "reliable": ["--topics", *CONSUMED],
        "best_effort": ["--best-effort", "--topics", "/depth", "/depth/camera_info", "/points"],
    }
    published, got, out = run_with_consumers(tmp_path, consumers)
    assert published["/depth"] > 0.3 * SECONDS * RATE, out
    for name, received in got.items():
        for topic, stamps in received.items():
            assert published[topic] == published["/depth"], published
            assert stamps == sorted(set(stamps))
            if name == "reliable":
                assert len(stamps) == published[topic], (name, topic, published, len(stamps))
            else:  # best effort may drop (4 of 88 depth images in one burst of a fresh-clone run), not half
                assert len(stamps) >= BEST_EFFORT_SHARE * published[topic], (name, topic, published, len(stamps))
        # ExactTime: each depth image received has its camera_info (exactly the same stamps when reliable; best
        # effort may drop either of a pair: 2 camera_infos of 88 at load average 9)
        paired = set(received["/depth"]) & set(received["/depth/camera_info"])
        assert len(paired) >= BEST_EFFORT_SHARE * len(received["/depth"]), name
        assert name != "reliable" or received["/depth/camera_info"] == received["/depth"]
    assert "[ERROR]" not in out and "Traceback" not in out, out
    assert len(re.findall(r"\[INFO\].*Fast DDS: this process uses .*fastdds_large_images.xml", out)) == 1, out


@pytest.mark.parametrize(
    ("setting", "uses_profile"),
    [
        ({}, True),
        ({"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}, True),
        ({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}, False),
        ({"FASTDDS_DEFAULT_PROFILES_FILE": "/robot/my_profile.xml"}, False),
        ({"FASTRTPS_DEFAULT_PROFILES_FILE": "/robot/old_profile.xml"}, False),
        ({"FASTDDS_BUILTIN_TRANSPORTS": "DEFAULT"}, False),
        ({"SKIP_DEFAULT_XML": "1"}, False),
        ({"cwd file": "DEFAULT_FASTDDS_PROFILES.xml"}, False),
    ],
    ids=["unset", "fastrtps", "cyclone", "own_profile", "legacy_profile", "builtin_transports", "skip_xml", "cwd_xml"],
)
def test_the_process_takes_the_profile_only_where_the_user_configured_nothing(
    tmp_path: Path, setting: dict[str, str], uses_profile: bool
) -> None:
    """The user's Fast DDS configuration (a variable, a profile Fast DDS reads from the working
    directory) or another middleware is never overridden; the user's values stay as they were."""
    profile = tmp_path / "fastdds_large_images.xml"
    profile.write_text("<dds/>")
    environ = {k: v for k, v in setting.items() if k != "cwd file"}
    if "cwd file" in setting:
        (tmp_path / setting["cwd file"]).write_text("<dds/>")
    before = dict(environ)
    line = transport.use_large_segment_profile(environ, tmp_path, profile, shm=tmp_path)
    if uses_profile:
        assert environ == {**before, "FASTDDS_DEFAULT_PROFILES_FILE": str(profile)} and str(profile) in line
    else:
        assert environ == before and line is None


def test_a_small_dev_shm_keeps_the_default_segment_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Docker's 64 MB /dev/shm: the 32 MiB segment might not fit beside the camera's; Fast DDS's
    default stays, and one line names the consequence and the fix."""
    profile = tmp_path / "fastdds_large_images.xml"
    profile.write_text("<dds/>")
    monkeypatch.setattr(transport, "_free_bytes", lambda path: 40 * 2**20)
    environ: dict[str, str] = {}
    line = transport.use_large_segment_profile(environ, tmp_path, profile, shm=tmp_path)
    assert environ == {} and "40 MiB free" in line and "--shm-size" in line


def test_the_installed_profile_is_found() -> None:
    environ: dict[str, str] = {}
    transport.use_large_segment_profile(environ, Path("/nonexistent"))
    assert Path(environ["FASTDDS_DEFAULT_PROFILES_FILE"]).name == "fastdds_large_images.xml"
    assert Path(environ["FASTDDS_DEFAULT_PROFILES_FILE"]).is_file()


def _stopped(proc: subprocess.Popen, log: IO) -> int:
    """SIGINT `proc` unless it has ended, close its log; its exit code."""
    code = interrupt(proc) if proc.poll() is None else proc.returncode
    log.close()
    return code


def test_depth_camera_info_follows_a_remapped_depth(tmp_path: Path) -> None:
    """`vdepth-node --ros-args -r depth:=/front_cam/depth` (or a launch file of one's own, or a second camera's node
    remapping its outputs) moved the depth image but left its intrinsics on /depth/camera_info, where depth_image_proc
    or RViz looking beside the depth found nothing (and two such nodes published on one camera_info topic); only
    depth.launch.py moved both. The node now puts `depth/camera_info` under wherever `depth` resolves (the provisional
    ones likewise), unless `depth/camera_info` itself is remapped, and each depth image has its camera_info there."""
    remaps = {
        "depth": "/front_cam/depth",  # camera_info follows
        "provisional/depth": "/front_cam/early/depth",
        "provisional/depth/camera_info": "/front_cam/early/camera_info",  # remapped itself: stays where put
    }
    command = node_command(tmp_path, params="    input_qos: reliable\n    publish: both\n")
    command += [arg for topic, name in remaps.items() for arg in ("-r", f"{topic}:={name}")]
    node, node_log = start(command, tmp_path / "node.log")
    topics = ["/front_cam/depth", "/front_cam/depth/camera_info"]
    topics += ["/front_cam/early/depth", "/front_cam/early/camera_info"]
    viewer, viewer_log = start([sys.executable, str(PEERS), "viewer", "--topics", *topics], tmp_path / "viewer.log")
    try:
        wait_for(tmp_path / "viewer.log", "matched", 90, viewer)
        wait_for(tmp_path / "node.log", "publishing", 30, node)
        camera, camera_log = start(
            [sys.executable, str(PEERS), "camera", "--seconds", "2", "--rate", "10", "--reliable", "--size", "160x120"],
            tmp_path / "camera.log",
        )
        assert camera.wait(timeout=60) == 0, (tmp_path / "camera.log").read_text()
        camera_log.close()
        wait_until_published(tmp_path / "node.log", node, 2.0)
    finally:
        code, viewed = _stopped(node, node_log), _stopped(viewer, viewer_log)  # none left on a failure
    assert viewed == 0
    out = (tmp_path / "node.log").read_text()
    assert code == 0, out
    got = json.loads((tmp_path / "viewer.log").read_text().strip().splitlines()[-1])
    assert got["/front_cam/depth"] and got["/front_cam/depth/camera_info"] == got["/front_cam/depth"], got
    assert got["/front_cam/early/camera_info"] == got["/front_cam/early/depth"], got
    assert "/front_cam/depth/camera_info" in out and "/depth/camera_info" not in out.replace("/front_cam/", ""), out


def _image_geometry_intrinsics(info: Any) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of a `CameraInfo` as image_geometry's `PinholeCameraModel` reads it for the images (what
    depth_image_proc back-projects with): `P` (else `K`), the principal point shifted by the roi's offset, then focal
    lengths and principal point divided by the binning."""
    p, k = np.asarray(info.p, float).reshape(3, 4), np.asarray(info.k, float).reshape(3, 3)
    m = p[:, :3] if p[0, 0] > 0 else k
    bx, by = max(1, info.binning_x), max(1, info.binning_y)
    return m[0, 0] / bx, m[1, 1] / by, (m[0, 2] - info.roi.x_offset) / bx, (m[1, 2] - info.roi.y_offset) / by


def _point_cloud_xyz(depth: Any, info: Any) -> np.ndarray:
    """depth_image_proc's point_cloud_xyz of a 32FC1 depth image: (h, w, 3), NaN where the depth is not finite."""
    z = np.frombuffer(bytes(depth.data), "<f4").reshape(depth.height, depth.width).astype(np.float64)
    z = np.where(np.isfinite(z), z, np.nan)
    fx, fy, cx, cy = _image_geometry_intrinsics(info)
    v, u = np.mgrid[0 : depth.height, 0 : depth.width]
    return np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], axis=-1)


def test_depth_image_proc_on_depth_gives_the_published_cloud_for_a_binned_window(tmp_path: Path) -> None:
    """A machine-vision camera streaming a 2x2-binned region of its sensor publishes its full-resolution calibration
    with `roi` and `binning` set. depth_image_proc's point_cloud_xyz on /depth (image_geometry reads that camera_info:
    principal point minus the roi's offset, divided by the binning) must give the node's /points, with the camera's
    own camera_info (docs/outputs.md: "the geometry is the camera's") and with /depth/camera_info alike. The node
    read the binning about pixel centres ((cx - x0 + 0.5) / 2 - 0.5), a quarter pixel from image_geometry's
    (cx - x0) / 2: its cloud and depth/camera_info disagreed with every ROS consumer of the same camera."""
    topics = ["/camera_info", "/depth", "/depth/camera_info", "/points"]
    keep = tmp_path / "kept.pkl"
    node, node_log = start(node_command(tmp_path, params="    input_qos: reliable\n"), tmp_path / "node.log")
    viewer, viewer_log = start(
        [sys.executable, str(PEERS), "viewer", "--keep", str(keep), "--topics", *topics], tmp_path / "viewer.log"
    )
    try:
        wait_for(tmp_path / "node.log", "publishing", 90, node)
        camera, camera_log = start(
            [sys.executable, str(PEERS), "camera", "--seconds", "1.6", "--rate", "10", "--reliable"]
            + ["--size", "160x120", "--binning", "2", "--info-readers", "2"],
            tmp_path / "camera.log",
        )
        wait_for(tmp_path / "viewer.log", "matched", 90, viewer)  # /camera_info has a publisher now
        assert camera.wait(timeout=60) == 0, (tmp_path / "camera.log").read_text()
        camera_log.close()
        wait_until_published(tmp_path / "node.log", node, 2.0)
    finally:
        code, viewed = _stopped(node, node_log), _stopped(viewer, viewer_log)  # none left on a failure
    assert viewed == 0
    assert code == 0, (tmp_path / "node.log").read_text()
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    kinds = dict(zip(topics, (CameraInfo, Image, CameraInfo, PointCloud2), strict=True))
    kept = pickle.loads(keep.read_bytes())
    got = {t: {s: deserialize_message(b, kinds[t]) for s, b in kept[t].items()} for t in topics}
    assert got["/points"] and set(got["/points"]) == set(got["/depth"]) == set(got["/depth/camera_info"])
    both = set(got["/points"]) & set(got["/camera_info"])
    assert len(both) >= 8, {t: len(m) for t, m in got.items()}  # (of 16: the viewer may miss the camera's first)
    for stamp in sorted(both):
        cloud = got["/points"][stamp]
        depth, out_info = got["/depth"][stamp], got["/depth/camera_info"][stamp]
        camera_info = got["/camera_info"][stamp]
        assert (depth.width, depth.height) == (out_info.width, out_info.height) == (cloud.width, cloud.height)
        assert depth.header.frame_id == cloud.header.frame_id == out_info.header.frame_id == "camera_optical"
        xyz = pointcloud2_fields_array(
            [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields],
            cloud.point_step, cloud.height, cloud.width, cloud.row_step, bytes(cloud.data),
        )  # fmt: skip
        np.testing.assert_allclose(_image_geometry_intrinsics(out_info), _image_geometry_intrinsics(camera_info))
        for info in (out_info, camera_info):
            np.testing.assert_allclose(xyz, _point_cloud_xyz(depth, info), rtol=1e-5, atol=1e-6)


def test_an_image_transport_camera_subscriber_gets_intrinsics_of_the_depths_own_size(tmp_path: Path) -> None:
    """RViz's Camera and DepthCloud displays, depth_image_proc and every other image_transport `CameraSubscriber`
    take the camera_info beside the image (its parent namespace's `camera_info`): on `/depth` that is `/camera_info`,
    the node's input, whose size and focal lengths are the camera's. With `max_output_width` (or `output_resolution:
    model`) the depth is smaller, and such a viewer built a wrong cloud without any error. The node now also publishes
    the depth image on `depth/image_rect`, beside `depth/camera_info` (the provisional ones likewise), as
    depth_image_proc's `depth_registered/image_rect` and `depth_registered/camera_info`; `/depth` stays. A consumer
    pushed into namespace /depth (`-r __ns:=/depth`, subscribing `image_rect`, as depth_image_proc's
    point_cloud_xyz) and one given the absolute provisional topic (as RViz) pair every image with intrinsics of its
    size."""
    params = "    input_qos: reliable\n    max_output_width: 160\n    publish: both\n"
    node, node_log = start(node_command(tmp_path, params=params), tmp_path / "node.log")
    images = ["image_rect", "/provisional/depth/image_rect"]
    consumer, consumer_log = start(
        [sys.executable, str(PEERS), "camera-subscriber", "--namespace", "/depth", "--images", *images],
        tmp_path / "consumer.log",
    )
    try:
        wait_for(tmp_path / "consumer.log", "matched", 90, consumer)
        camera, camera_log = start(
            [sys.executable, str(PEERS), "camera", "--seconds", "2.4", "--rate", "10", "--reliable"]
            + ["--size", "320x240"],
            tmp_path / "camera.log",
        )
        assert camera.wait(timeout=60) == 0, (tmp_path / "camera.log").read_text()
        camera_log.close()
        wait_until_published(tmp_path / "node.log", node, 2.0)
    finally:
        code, consumed = _stopped(node, node_log), _stopped(consumer, consumer_log)  # none left on a failure
    out = (tmp_path / "node.log").read_text()
    assert code == 0 and consumed == 0, out
    got = json.loads((tmp_path / "consumer.log").read_text().strip().splitlines()[-1])
    assert {t: g["info"] for t, g in got.items()} == {
        "/depth/image_rect": "/depth/camera_info",
        "/provisional/depth/image_rect": "/provisional/depth/camera_info",
    }
    published = stop_summary(out).published
    for topic, g in got.items():
        info = g["info"]  # every image published was taken, each with its camera_info
        assert g["pairs"] and len(g["pairs"]) == g["images"] == published[topic] == published[info], (topic, g, out)
        for _stamp, width, height, info_width, info_height, fx, fy in g["pairs"]:
            # the camera's 320x240 at fx = fy = 250 (deployed_peers.K, scaled), scaled to 160 px wide
            assert (width, height) == (info_width, info_height) == (160, 120), g["pairs"][0]
            assert fx == pytest.approx(125.0) and fy == pytest.approx(125.0), g["pairs"][0]


def test_a_late_joiner_gets_the_last_depth_camera_info_with_the_durability_override(tmp_path: Path) -> None:
    """A tool that needs the intrinsics once subscribes `depth/camera_info` transient_local, as to a latched topic,
    and starts after the camera (a late joiner): it matches no volatile publisher and got nothing, and
    `qos_overrides./depth/camera_info.publisher.durability: transient_local` was ignored ("this node does not have"
    it). The outputs now take that override: the late joiner gets the last camera_infos published, and a volatile
    subscriber during the run still gets every one."""
    params = "    input_qos: reliable\n    qos_overrides./depth/camera_info.publisher.durability: transient_local\n"
    node, node_log = start(node_command(tmp_path, params=params), tmp_path / "node.log")
    viewer, viewer_log = start(
        [sys.executable, str(PEERS), "viewer", "--topics", "/depth", "/depth/camera_info"], tmp_path / "viewer.log"
    )
    late, late_log = None, None
    try:
        wait_for(tmp_path / "viewer.log", "matched", 90, viewer)
        camera, camera_log = start(
            [sys.executable, str(PEERS), "camera", "--seconds", "2", "--rate", "10", "--reliable", "--size", "160x120"],
            tmp_path / "camera.log",
        )
        assert camera.wait(timeout=60) == 0, (tmp_path / "camera.log").read_text()
        camera_log.close()
        wait_until_published(tmp_path / "node.log", node, 2.0)
        late, late_log = start(
            [sys.executable, str(PEERS), "viewer", "--transient-local", "--topics", "/depth/camera_info"],
            tmp_path / "late.log",
        )
        wait_for(tmp_path / "late.log", "matched", 60, late)
        time.sleep(1.5)
    finally:
        code, viewed = _stopped(node, node_log), _stopped(viewer, viewer_log)  # none left on a failure
        joined = _stopped(late, late_log) if late is not None and late_log is not None else None
    out = (tmp_path / "node.log").read_text()
    assert code == 0 and viewed == 0 and joined == 0, out
    during = json.loads((tmp_path / "viewer.log").read_text().strip().splitlines()[-1])
    after = json.loads((tmp_path / "late.log").read_text().strip().splitlines()[-1])["/depth/camera_info"]
    assert during["/depth"] and during["/depth/camera_info"] == during["/depth"], during
    assert after and set(after) <= set(during["/depth/camera_info"]), (after, during)
    assert after[-1] == during["/depth/camera_info"][-1]  # the latest one
    assert "ignoring" not in out and "incompatible QoS" not in out, out


def test_each_incompatible_qos_of_an_output_is_named_with_its_fix(tmp_path: Path) -> None:
    """Two tools subscribe /depth with QoS the node does not offer: one transient_local (a late joiner), one asking
    for a 100 ms deadline (a monitor). Each gets nothing, and the node named only the first mismatch of the topic (the
    second tool stayed silent), with "make it volatile" as the durability's only fix. Each policy is now named once,
    the durability with the override that serves it."""
    node, node_log = start(node_command(tmp_path), tmp_path / "node.log")
    tools = [
        start([sys.executable, str(PEERS), "viewer", *args, "--topics", "/depth"], tmp_path / f"tool{k}.log")
        for k, args in enumerate((["--transient-local"], ["--deadline-ms", "100"]))
    ]
    try:
        wait_for(tmp_path / "node.log", "(DURABILITY", 90, node)
        wait_for(tmp_path / "node.log", "(DEADLINE", 30, node)
    finally:
        code = _stopped(node, node_log)
        for proc, log in tools:
            _stopped(proc, log)
    out = (tmp_path / "node.log").read_text()
    assert code == 0, out
    warns = [line for line in out.splitlines() if "incompatible QoS on publisher '/depth'" in line]
    assert len(warns) == 2, out
    durability = next(line for line in warns if "(DURABILITY" in line)
    assert "qos_overrides./depth.publisher.durability: transient_local" in durability, durability
    deadline = next(line for line in warns if "(DEADLINE" in line)
    assert "leave the subscriber's DEADLINE at its default" in deadline, deadline


def test_a_misnamed_qos_override_is_told_the_name_of_the_topic(tmp_path: Path) -> None:
    """`qos_overrides.depth.publisher.depth` (without the topic's leading '/') and `qos_overrides./points...` for
    points remapped to /cam/points were ignored with "this node does not have" and no hint of the names rclpy
    declares (the topic as it resolves); a value rclpy does not know stopped the node with "Unexpected QoS override
    for policy `reliability`: `reliabel`". The warning now names the override meant and the node's output topics; the
    wrong value, the parameter and the values there are."""
    params = "    qos_overrides.depth.publisher.depth: 30\n    qos_overrides./points.publisher.depth: 30\n"
    command = node_command(tmp_path, params=params) + ["-r", "points:=/cam/points"]
    node, node_log = start(command, tmp_path / "node.log")
    try:
        wait_for(tmp_path / "node.log", "ignoring", 90, node)
    finally:
        code = _stopped(node, node_log)
    out = (tmp_path / "node.log").read_text()
    assert code == 0, out
    assert "qos_overrides.depth.publisher.depth (did you mean qos_overrides./depth.publisher.depth?)" in out, out
    assert "qos_overrides./points.publisher.depth (did you mean qos_overrides./cam/points.publisher.depth?)" in out
    bad = node_command(tmp_path, params="    qos_overrides./depth.publisher.reliability: reliabel\n")
    run = subprocess.run(bad, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    said = run.stdout + run.stderr
    assert run.returncode != 0 and "Traceback" not in said, said
    assert "qos_overrides./depth.publisher" in said and "reliable or best_effort" in said, said


#: The /diagnostics keys a monitor reads by name (`test_diagnostics_carry_the_same_keys_before_the_first_window`)
DIAGNOSTICS_KEYS = ["output rate [Hz]", "fit scale", "fit residual", "fit degenerate", "fit scale_source"]


@pytest.fixture(scope="module")
def no_camera_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One node without a camera (`diagnostics_period: 0.2`) and its subscribers, in their own processes: a monitor
    reading /diagnostics by key, a viewer subscribing /points as the old `sensor_msgs/PointCloud` and one whose image
    transport is `compressed`. The two tests that read it asserted different things about a node run each (one
    start-up and stop less in the suite). {"log": the node's output, "code": its exit status, "statuses": the
    monitor's [[level, message, values]...]}."""
    tmp_path = tmp_path_factory.mktemp("no_camera")
    node, node_log = start(node_command(tmp_path, params="    diagnostics_period: 0.2\n"), tmp_path / "node.log")
    monitor, monitor_log = start(
        [sys.executable, str(PEERS), "viewer", "--topics", "/diagnostics", "--diag-values", *DIAGNOSTICS_KEYS]
        + ["--progress"],
        tmp_path / "monitor.log",
    )
    viewers = [
        start(
            [
                sys.executable,
                str(PEERS),
                "viewer",
                "--topics",
                "/points",
                "--type",
                "/points=sensor_msgs/msg/PointCloud",
            ],
            tmp_path / "cloud_v1.log",
        ),
        start(
            [sys.executable, str(PEERS), "viewer", "--topics", "/depth/compressed"]
            + ["--type", "/depth/compressed=sensor_msgs/msg/CompressedImage"],
            tmp_path / "compressed.log",
        ),
    ]
    try:
        wait_for(tmp_path / "monitor.log", "matched", 90, monitor)
        wait_for(tmp_path / "monitor.log", "progress /diagnostics 2\n", 30, monitor)  # two statuses to compare
        wait_for(tmp_path / "node.log", "asks for sensor_msgs/msg/PointCloud,", 90, node)
        wait_for(tmp_path / "node.log", "/depth/compressed, image_transport's", 30, node)
        time.sleep(1.0)  # (no second WARN for either)
    finally:
        code, watched = _stopped(node, node_log), _stopped(monitor, monitor_log)
        for proc, log in viewers:
            _stopped(proc, log)
    assert watched == 0, (tmp_path / "monitor.log").read_text()
    return {
        "log": (tmp_path / "node.log").read_text(),
        "code": code,
        "statuses": json.loads((tmp_path / "monitor.log").read_text().strip().splitlines()[-1])["/diagnostics"],
    }


def test_diagnostics_carry_the_same_keys_before_the_first_window(no_camera_run: dict[str, Any]) -> None:
    """A monitor reading /diagnostics by key (PlotJuggler, a script watching "fit residual", rqt_runtime_monitor's
    table) found the window's "fit ..." keys missing until the first window was published (and, with a camera that
    never delivers, never): the key set changed between messages. Every status now has them ("no window yet")."""
    assert no_camera_run["code"] == 0, no_camera_run["log"]
    statuses = no_camera_run["statuses"]
    assert len(statuses) >= 2, statuses
    for _level, _message, values in statuses:
        assert sorted(values) == sorted(DIAGNOSTICS_KEYS), values
        assert values["fit scale"] == "no window yet", values


def test_a_subscriber_that_gets_nothing_from_an_output_is_named(no_camera_run: dict[str, Any]) -> None:
    """Two viewers that get nothing without an error anywhere: one subscribes /points as the old
    `sensor_msgs/PointCloud` (a type DDS does not match with PointCloud2), one is a viewer whose image transport is
    `compressed` (RViz's Transport Hint, rqt_image_view), subscribing /depth/compressed, which nothing publishes:
    the node publishes raw images only. The node said nothing of either; it now names each, with the fix."""
    out = no_camera_run["log"]
    assert no_camera_run["code"] == 0, out
    cloud = [line for line in out.splitlines() if "a subscriber of /points (/viewer) asks for" in line]
    assert len(cloud) == 1 and "subscribe sensor_msgs/msg/PointCloud2" in cloud[0], out
    compressed = [line for line in out.splitlines() if "/depth/compressed, image_transport's" in line]
    assert len(compressed) == 1 and "publishes raw images only" in compressed[0], out
    assert "set the viewer's transport to raw" in compressed[0], compressed


def _rviz_image_display() -> Any:
    """`benchmarks/rviz_image_display.image_display`: what RViz's Image display shows of 32FC1 images."""
    spec = importlib.util.spec_from_file_location("rviz_image_display", REPO / "benchmarks" / "rviz_image_display.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.image_display


@pytest.mark.slow
def test_rviz_and_foxglove_showing_depth_are_told_how_to_see_it(tmp_path: Path) -> None:
    """RViz's Image display on /depth, its defaults (Normalize Range on): it stretches each image from its smallest to
    its largest value, and REP 118's +Inf (beyond the far limit: about 2 % of the first window in range mode, by
    construction) and -Inf (nearer than min_depth) make that range infinite, so every pixel shows black. Foxglove's
    Image panel shows 0..1 as black..white unless set: metres are white beyond 1 m. The node said nothing; an RViz
    (node `rviz`) and a foxglove_bridge subscribing the depth now each get one INFO naming the settings that show it
    (RViz: Normalize Range off, Min Value 0, Max Value the depth's far end; Foxglove: Max value) or the colormap, by
    the topic a viewer subscribes and the command that turns it on, for the node as it runs: in a namespace, renamed
    (the advice said `~/depth_colormap (publish_colormap: true)`, no topic RViz can be given)."""
    kept = tmp_path / "rviz.pickle"
    consumers = {
        "rviz": ["--name", "rviz", "--depth", "5", "--keep", str(kept), "--topics", "/robot1/depth"],
        "foxglove": ["--name", "foxglove_bridge", "--topics", "/robot1/depth/image_rect"],
    }
    renamed = (
        "-r",
        "__ns:=/robot1",
        "-r",
        "__node:=front_depth",
        "-r",
        "image:=/image",
        "-r",
        "camera_info:=/camera_info",
    )
    published, _, out = run_with_consumers(tmp_path, consumers, ros_args=renamed)
    with open(kept, "rb") as f:
        messages = pickle.load(f)["/robot1/depth"]
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    images = []
    for _, data in sorted(messages.items()):
        msg = deserialize_message(data, Image)
        images.append(np.frombuffer(bytes(msg.data), "<f4").reshape(msg.height, msg.width))
    assert 0 < len(images) <= published["/robot1/depth"], (published, len(images))
    with_inf = sum(bool(np.isinf(image).any()) for image in images)
    rviz_image_display = _rviz_image_display()
    black = sum(not shown.any() for shown in rviz_image_display(images))
    assert with_inf and black, (with_inf, black, len(images))  # the rig shows the problem
    told = [line for line in out.splitlines() if "Normalize Range" in line]
    assert len(told) == 1 and "[INFO]" in told[0] and "/robot1/depth (/rviz)" in told[0], out
    colormap = "show /robot1/front_depth/depth_colormap ("
    turn_on = "restart with --ros-args -p publish_colormap:=true"  # what works where ROS has no `ros2` CLI
    assert colormap in told[0] and turn_on in told[0] and "~" not in told[0], told
    runtime = ("AsyncParameterClient(n, '/robot1/front_depth')", "ros2 param set /robot1/front_depth publish_colormap")
    assert all(way in told[0] for way in runtime), told
    far = float(re.search(r"Max Value (\d+(?:\.\d+)?)", told[0])[1])
    shown = rviz_image_display(images, normalize=False, lo=0.0, hi=far)
    assert all((s > 0).any() and (s < 255).any() for s in shown), far  # a picture, not black
    assert any((image[np.isfinite(image)] > 1.0).any() for image in images)  # white in Foxglove's default
    foxglove = [line for line in out.splitlines() if "Foxglove" in line]
    assert len(foxglove) == 1 and "/robot1/depth/image_rect (/foxglove_bridge)" in foxglove[0], out
    assert "set Max value" in foxglove[0] and colormap in foxglove[0] and turn_on in foxglove[0], foxglove


def test_rectified_depth_is_registered_to_the_rectified_image_with_its_camera(tmp_path: Path) -> None:
    """A raw image of a distorted lens (plumb_bob, k1 -0.25; P its rectified camera), `rectify: true`, the output at
    half the camera's width (`max_output_width`), camera, node and viewer in three processes. The viewer, as
    depth_image_proc would, takes /depth with /depth/camera_info: the same size, stamp and frame_id as /points and
    the image; the rectified camera (K = P scaled to the output, D zero, R identity); 32FC1 metres; back-projected,
    /points point for point; and /disparity lines up with the rectified image (the tiny model's disparity is the
    luminance), not with the raw one."""
    import cv2
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from vdepth_ros.camera_info import camera_from_info
    from vdepth_ros.ros import conversions as conv

    topics = ["/camera_info", "/depth", "/depth/camera_info", "/points", "/disparity"]
    keep = tmp_path / "kept.pkl"
    params = "    input_qos: reliable\n    rectify: true\n    max_output_width: 320\n"
    node, node_log = start(node_command(tmp_path, params=params), tmp_path / "node.log")
    viewer, viewer_log = start(
        [sys.executable, str(PEERS), "viewer", "--keep", str(keep), "--topics", *topics], tmp_path / "viewer.log"
    )
    distortion = [-0.25, 0.06, 0.001, -0.002, 0.0]
    try:
        wait_for(tmp_path / "node.log", "publishing", 90, node)
        camera, camera_log = start(
            [sys.executable, str(PEERS), "camera", "--seconds", "1.6", "--rate", "10", "--reliable"]
            + [f"--lens={','.join(map(str, distortion))}", "--info-readers", "2"],
            tmp_path / "camera.log",
        )
        wait_for(tmp_path / "viewer.log", "matched", 90, viewer)
        assert camera.wait(timeout=60) == 0, (tmp_path / "camera.log").read_text()
        camera_log.close()
        wait_until_published(tmp_path / "node.log", node, 2.0)
    finally:
        code, viewed = _stopped(node, node_log), _stopped(viewer, viewer_log)
    assert viewed == 0 and code == 0, (tmp_path / "node.log").read_text()
    kinds = dict(zip(topics, (CameraInfo, Image, CameraInfo, PointCloud2, Image), strict=True))
    kept = pickle.loads(keep.read_bytes())
    got = {t: {s: deserialize_message(b, kinds[t]) for s, b in kept[t].items()} for t in topics}
    assert len(got["/depth"]) >= 8 and set(got["/points"]) == set(got["/depth"]) == set(got["/depth/camera_info"])
    raw_info = next(iter(got["/camera_info"].values()))
    K = np.asarray(raw_info.k, float).reshape(3, 3)
    P = np.asarray(raw_info.p, float).reshape(3, 4)[:, :3]
    expected = camera_from_info(raw_info).scaled(320, 240)  # the rectified camera (P), at the output's size
    raw_frames = [conv.image_array(m) for m in _peer_images()]
    maps = cv2.initUndistortRectifyMap(K, np.asarray(distortion), np.eye(3), P, (640, 480), cv2.CV_32FC1)
    rectified = [cv2.remap(f, *maps, cv2.INTER_LINEAR) for f in raw_frames]  # what image_proc's image_rect shows
    better = []
    for stamp, depth in got["/depth"].items():
        info, cloud, disparity = got["/depth/camera_info"][stamp], got["/points"][stamp], got["/disparity"][stamp]
        for msg in (depth, info, cloud, disparity):  # the image's stamp and optical frame on every output
            assert msg.header.frame_id == "camera_optical" and msg.header.stamp == depth.header.stamp
        assert depth.encoding == "32FC1" and (depth.width, depth.height) == (info.width, info.height) == (320, 240)
        assert (cloud.width, cloud.height) == (320, 240)
        assert not np.any(info.d) and np.allclose(np.reshape(info.r, (3, 3)), np.eye(3)), (info.d, info.r)
        np.testing.assert_allclose(
            _image_geometry_intrinsics(info), (expected.fx, expected.fy, expected.cx, expected.cy), rtol=1e-6
        )
        np.testing.assert_allclose(np.reshape(info.k, (3, 3)), np.reshape(info.p, (3, 4))[:, :3])
        xyz = pointcloud2_fields_array(
            [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields],
            cloud.point_step, cloud.height, cloud.width, cloud.row_step, bytes(cloud.data),
        )  # fmt: skip
        np.testing.assert_allclose(xyz, _point_cloud_xyz(depth, info), rtol=1e-5, atol=1e-6)
        # registration: which of the two images the disparity is the luminance of
        k = round((stamp - 1_000_000_000) / 1e8) % len(raw_frames)
        d = conv.image_array(disparity)
        corr = []
        for image in (rectified[k], raw_frames[k]):
            lum = cv2.resize(image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32), (320, 240),
                             interpolation=cv2.INTER_AREA)  # fmt: skip
            ok = np.isfinite(d)
            corr.append(np.corrcoef(d[ok], lum[ok])[0, 1])
        better.append(corr)
    rect, raw = np.median(better, axis=0)
    print(f"/disparity against the luminance of the rectified image: r = {rect:.3f}; of the raw image: {raw:.3f}")
    assert rect > 0.5 and rect - raw > 0.1, better


def _peer_images() -> list[Any]:
    """The deployed camera's 8 raw frames (`deployed_peers._images`, 640x480 rgb8)."""
    import argparse

    import deployed_peers

    return deployed_peers._images(argparse.Namespace(encoding="rgb8"), deployed_peers.W, deployed_peers.H)
