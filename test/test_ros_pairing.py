"""How the live node pairs each image with its camera_info, as camera drivers publish them.

A camera in this process (publishing in real time, at the rate its stamps say) feeds `vdepth-node` in
another; this process also subscribes the node's depth/camera_info, whose size and intrinsics tell
which camera_info each image was paired with.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from test_ros_process import _await_subscribers, _fields, _info, run_node

from vdepth_ros.ros import conversions as conv
from vdepth_ros.ros.input_topics import image_camera_info_topic

pytestmark = pytest.mark.ros

T0 = 1_000_000_000
REMAPS = ["--ros-args", "-r", "image:=/cam/image", "-r", "camera_info:=/cam/camera_info"]


def driver(
    sizes: list[tuple[int, int]],
    rate: float,
    *,
    info_offset_ns: int = 0,
    info_first: bool = False,
    info_every: int = 1,
    info_qos: QoSProfile | None = None,
    last_image_alone: bool = False,
    info_k: Callable[[int, int], list[float]] | None = None,
    settle: Callable[[], bool] = lambda: True,
    seconds: float = 30.0,
) -> Callable[[Node, SingleThreadedExecutor], None]:
    """before_feed: a camera on /cam/image + /cam/camera_info publishing one image of each `sizes`
    (width, height) at `rate` Hz in real time, stamped `T0 + k / rate`, and with every `info_every`-th
    its camera_info (`_info` of its size) stamped `info_offset_ns` off the image's (-1: stamped 0),
    published right after the image (before it with `info_first`; none with the last image with
    `last_image_alone`; K `info_k(width, height)` if given), then spinning until `settle()` or
    `seconds`."""

    def publish(peer: Node, ex: SingleThreadedExecutor) -> None:
        rel = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        image_pub = peer.create_publisher(Image, "/cam/image", rel)
        info_pub = peer.create_publisher(CameraInfo, "/cam/camera_info", info_qos or rel)
        _await_subscribers(ex, image_pub)
        end = time.monotonic() + 3.0  # (a camera_info subscription of incompatible QoS never matches)
        while time.monotonic() < end and not info_pub.get_subscription_count():
            ex.spin_once(timeout_sec=0.05)
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.05)
        rng = np.random.default_rng(0)
        period = 1e9 / rate
        start = time.monotonic()
        for k, (width, height) in enumerate(sizes):
            stamp = T0 + round(k * period)
            h = Header(stamp=conv.ns_to_stamp(stamp), frame_id="cam_optical")
            image = conv.image_msg(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), "rgb8", h)
            info = None
            if k % info_every == 0 and not (last_image_alone and k == len(sizes) - 1):
                info_stamp = 0 if info_offset_ns == -1 else stamp + info_offset_ns
                ih = Header(stamp=conv.ns_to_stamp(info_stamp), frame_id="cam_optical")
                info = CameraInfo(**{**_fields(_info(width, height)), "header": ih})
                if info_k is not None:
                    info.k = info_k(width, height)
            if info is not None and info_first:
                info_pub.publish(info)
            image_pub.publish(image)
            if info is not None and not info_first:
                info_pub.publish(info)
            while time.monotonic() < start + (k + 1) / rate:
                ex.spin_once(timeout_sec=max(0.0, min(0.002, start + (k + 1) / rate - time.monotonic())))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not settle():
            ex.spin_once(timeout_sec=0.05)

    return publish


def run_camera(
    tmp_path: Path, sizes: list[tuple[int, int]], rate: float, node_args: list[str] = (), **kw: Any
) -> tuple[list[CameraInfo], str]:
    """The node fed by `driver(sizes, rate, **kw)`: (the depth/camera_info it published, its log)."""
    infos: list[CameraInfo] = []
    wanted = len(sizes) - 16  # the last window may still be in the pipeline

    def feed(peer: Node, ex: SingleThreadedExecutor) -> None:
        peer.create_subscription(CameraInfo, "/depth/camera_info", infos.append, QoSProfile(depth=200))
        driver(sizes, rate, settle=lambda: len(infos) >= wanted, **kw)(peer, ex)

    _, out = run_node(tmp_path, [*REMAPS, *node_args], {}, {}, before_feed=feed, done=lambda got: True)
    return infos, out


def restarts(out: str) -> list[str]:
    return re.findall(r"restarting the depth stream: (.*)", out)


@pytest.mark.parametrize(
    ("rate", "info_offset_ns", "info_first"),
    [(50.0, 0, False), (100.0, -4_000_000, False), (100.0, 4_000_000, True), (30.0, -1, False)],
    ids=["50hz", "100hz-stamped-4ms-before", "100hz-published-first-stamped-4ms-after", "30hz-stamped-0"],
)
def test_a_fast_camera_changing_resolution_pairs_each_image_with_its_own_camera_info(
    tmp_path: Path, rate: float, info_offset_ns: int, info_first: bool
) -> None:
    """A 50-100 Hz camera reconfigured from 160x120 to 160x90, publishing each camera_info right after
    its image (image_transport's CameraPublisher), or before it, stamped as the image or a few ms off:
    the first image of the new size was paired with the previous frame's camera_info, a frame period
    away and so within `sync_slop` (0.02 s), which made a wrong 'does not fit' ERROR, a frame without
    intrinsics and a second restart when its own camera_info came with the next frame. The same with a
    driver that leaves camera_info's stamp 0 (the last one received is used)."""
    sizes = [(160, 120)] * 40 + [(160, 90)] * 40
    infos, out = run_camera(tmp_path, sizes, rate, info_offset_ns=info_offset_ns, info_first=info_first)
    assert [i.height for i in infos].count(90) >= 12, out
    assert "it is for 160x120 images, but the image is 160x90" not in out, out
    assert restarts(out) == ["resolution: 160x120 -> 160x90"], out


def test_a_best_effort_camera_info_next_to_reliable_images_is_taken(tmp_path: Path) -> None:
    """A driver publishing its images reliable (image_transport's default) and its camera_info best effort
    (SensorDataQoS), with input_qos:=reliable as docs/node.md asks for a reliable camera: the camera_info
    subscription, reliable too, matched no publisher, so no frame had intrinsics (no points, no
    depth/camera_info), and the fix named (input_qos:=sensor_data) made the images best effort, lost
    between processes. A best-effort camera_info subscription matches every driver."""
    infos, out = run_camera(tmp_path, [(160, 120)] * 60, 30.0, info_qos=qos_profile_sensor_data, seconds=20)
    assert len(infos) >= 40, out
    assert "incompatible QoS" not in out and "no camera_info has arrived" not in out, out
    assert "stamped within sync_slop" not in out, out  # each paired by its stamp


@pytest.mark.parametrize(
    ("info_offset_ns", "cause"),
    [
        (-1, "camera_info's header.stamp is 0"),
        (1_700_000_000 * 10**9, "s after the images, by another clock"),
        (50_000_000, "a constant 50 ms"),
        (-250_000_000, "a constant 50 ms"),  # (from the nearest image: 2.5 frames before its own)
    ],
    ids=["stamped-0", "another-clock", "50ms-offset", "250ms-before"],
)
def test_a_camera_info_stamped_apart_from_its_images_is_named_and_its_intrinsics_used(
    tmp_path: Path, info_offset_ns: int, cause: str
) -> None:
    """A 10 Hz camera changing resolution whose camera_info comes with every image but is never stamped
    within sync_slop of one (stamp left 0, system time against the images' sim time, a constant 50 ms
    after or 250 ms before): every image got the last camera_info received (the one 250 ms before held
    each image until a later camera_info had come) and nothing but the 'cached' counter on /diagnostics
    said so. One WARN names the cause and the fix; each image still gets its size's
    camera_info (the last received, of its size)."""
    sizes = [(160, 120)] * 30 + [(160, 90)] * 30
    infos, out = run_camera(tmp_path, sizes, 10.0, info_offset_ns=info_offset_ns)
    said = [line for line in out.splitlines() if "stamped within sync_slop" in line]
    assert len(said) == 1 and "WARN" in said[0] and cause in said[0] and "header.stamp" in said[0], out
    assert [i.height for i in infos].count(90) >= 12 and "does not fit" not in out and "refusing" not in out, out


def test_a_camera_info_stamped_half_a_frame_apart_refused_at_a_size_change_names_the_stamps(tmp_path: Path) -> None:
    """A 30 Hz camera whose driver stamps camera_info 50 ms before its image, changing resolution: each
    camera_info is 17 ms from the image before its own, within sync_slop, so that image is paired with the
    next frame's camera_info, and at the change it is for the new size. The ERROR refusing it blamed a crop
    ("cropped without setting roi?"); it now says the camera_info is stamped apart from the image, so
    likely another frame's, and the fix."""
    sizes = [(160, 120)] * 30 + [(160, 90)] * 30
    _, out = run_camera(tmp_path, sizes, 30.0, info_offset_ns=-50_000_000)
    refused = [line for line in out.splitlines() if "refusing a camera_info" in line]
    assert refused and all("0.017 s from this image: another frame's" in line for line in refused), out
    assert all("header.stamp" in line for line in refused), out


def test_an_image_whose_camera_info_never_comes_is_published_when_the_camera_pauses(tmp_path: Path) -> None:
    """A 50 Hz camera that stops after an image whose camera_info never comes (lost, best effort, or the
    driver stopped between the two): that image waited in the node for a camera_info until the camera
    resumed, and so did the frames the stream held for the next window, then all came out late with their
    old stamps. Once the camera has paused (`pause_flush`) it goes on with the nearest camera_info and the
    stream's frames are published, the camera still paused."""
    sizes = [(160, 120)] * 30
    depths: list[Image] = []
    last = T0 + round(29 * 1e9 / 50)

    def feed(peer: Node, ex: SingleThreadedExecutor) -> None:
        peer.create_subscription(Image, "/depth", depths.append, QoSProfile(depth=200))
        driver(sizes, 50.0, last_image_alone=True, seconds=8, settle=lambda: any(stamp(d) == last for d in depths))(
            peer, ex
        )

    _, out = run_node(tmp_path, REMAPS, {}, {}, before_feed=feed, done=lambda got: True)
    assert any(stamp(d) == last for d in depths), out  # (published before the node was stopped)
    assert "no camera_info" not in out, out


def stamp(msg: Any) -> int:
    return conv.stamp_to_ns(msg.header.stamp)


def test_a_camera_info_of_another_cameras_namespace_is_named_with_the_remap(tmp_path: Path) -> None:
    """Two cameras of one model, /front and /rear (their drivers launched with the same frame_id), and the
    node remapped to /front's images but /rear's camera_info: the rear camera's intrinsics were used for the
    front camera's images without a word (the frame_id check sees one frame). image_transport pairs an image
    with the camera_info in its namespace; when that one is published and the node reads another, it says
    so once, with the remap."""
    rel = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

    def feed(peer: Node, ex: SingleThreadedExecutor) -> None:
        image_pub = peer.create_publisher(Image, "/front/image", rel)
        infos = [peer.create_publisher(CameraInfo, f"/{ns}/camera_info", rel) for ns in ("front", "rear")]
        _await_subscribers(ex, image_pub)
        rgb = np.zeros((120, 160, 3), dtype=np.uint8)
        for k in range(40):
            h = Header(stamp=conv.ns_to_stamp(T0 + k * 50_000_000), frame_id="camera_optical")
            image_pub.publish(conv.image_msg(rgb, "rgb8", h))
            for pub in infos:
                pub.publish(CameraInfo(**{**_fields(_info(160, 120)), "header": h}))
            end = time.monotonic() + 0.05
            while time.monotonic() < end:
                ex.spin_once(timeout_sec=0.01)

    args = ["--ros-args", "-r", "image:=/front/image", "-r", "camera_info:=/rear/camera_info"]
    _, out = run_node(tmp_path, args, {}, {}, before_feed=feed, done=lambda got: True)
    said = [line for line in out.splitlines() if "'/front/camera_info'" in line]
    assert len(said) == 1 and "camera_info:=/front/camera_info" in said[0], out


def test_the_camera_info_next_to_an_image_is_image_transports() -> None:
    assert image_camera_info_topic("/cam/color/image_raw") == "/cam/color/camera_info"
    assert image_camera_info_topic("/cam/color/image_raw/compressed") == "/cam/color/camera_info"
    assert image_camera_info_topic("/image") == "/camera_info"


@pytest.mark.parametrize(
    ("info_k", "cause"),
    [
        (lambda w, h: _info(3 * w // 2, 3 * h // 2).k.tolist(), "K calibrated at another resolution (about 240x180"),
        (lambda w, h: [0.8 * w, 0.0, 0.0, 0.0, 0.8 * w, 0.0, 0.0, 0.0, 1.0], "its publisher leaves cx and cy 0"),
        (lambda w, h: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], "K is the identity, a placeholder"),
    ],
    ids=["K-of-1.5-times-the-size", "cx-cy-left-0", "identity-K"],
)
def test_a_camera_info_whose_principal_point_no_lens_has_is_named_once(
    tmp_path: Path, info_k: Callable[[int, int], list[float]], cause: str
) -> None:
    """A driver publishing 160x120 images with a camera_info of their width and height whose K was calibrated at
    240x180 (its principal point (119.5, 89.5), 25% off the centre in x and y alike: the 1920x1080 calibration of
    a 1280x720 stream; 320x240's corner is named too: test_inputs_assembly.py), whose cx, cy it leaves 0, or an
    identity K (a placeholder): every check passed
    (a principal point inside the image), and the cloud and depth/camera_info came out skewed without a word. One
    WARN now names the principal point, the likely cause and the fix; the intrinsics are still used (no frame lost)."""
    infos, out = run_camera(tmp_path, [(160, 120)] * 40, 30.0, info_k=info_k)
    said = [line for line in out.splitlines() if "principal point at" in line]
    assert len(said) == 1 and "[WARN]" in said[0] and cause in said[0], out
    assert "of this resolution" in said[0] and len(infos) >= 24, out
