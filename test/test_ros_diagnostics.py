"""What an operator sees on /diagnostics while the live node runs with a problem, and once it is fixed.

The camera, `vdepth-node` and a /diagnostics subscriber (rqt_runtime_monitor, a fleet monitor) in separate
processes: the node's WARN about a cause is logged once, but whoever looks later sees only /diagnostics,
so the cause must be there, at WARN, for as long as it holds, and go when it is fixed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud
from std_msgs.msg import Header
from test_ros_process import _await_subscribers, _fields, _info, run_node

from vdepth_ros.ros import conversions as conv

pytestmark = [pytest.mark.ros, pytest.mark.filterwarnings("ignore::DeprecationWarning:rclpy.event_handler")]

REMAPS = ["--ros-args", "-r", "image:=/cam/image", "-r", "camera_info:=/cam/camera_info"]


def _status(diags: list[DiagnosticArray]) -> tuple[bytes, str, dict[str, str]] | None:
    """The last depth stream status: (level, message, values)."""
    for arr in reversed(diags):
        for st in arr.status:
            if st.name.endswith("depth stream"):
                return st.level, st.message, {kv.key: kv.value for kv in st.values}
    return None


def _camera(
    diags: list[DiagnosticArray], phases: list[tuple[Callable[[int], int | None], Callable[[], bool], float]]
) -> Callable[[Node, SingleThreadedExecutor], None]:
    """before_feed: a 10 Hz camera on /cam/image + /cam/camera_info, its camera_info stamped
    `info_stamp(image stamp)` in each phase (None: no camera_info) until `until()` or the phase's seconds;
    /diagnostics kept, /depth subscribed."""

    def feed(peer: Node, ex: SingleThreadedExecutor) -> None:
        peer.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        peer.create_subscription(Image, "/depth", lambda m: None, 10)  # (a viewer: the node takes the images)
        rel = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        image_pub = peer.create_publisher(Image, "/cam/image", rel)
        info_pub = peer.create_publisher(CameraInfo, "/cam/camera_info", rel)
        _await_subscribers(ex, image_pub, info_pub)
        rng, k, t0 = np.random.default_rng(0), 0, peer.get_clock().now().nanoseconds  # (stamped by ROS time)
        for info_stamp, until, seconds in phases:
            end = time.monotonic() + seconds
            while time.monotonic() < end and not until():
                stamp = t0 + k * 100_000_000
                h = Header(stamp=conv.ns_to_stamp(stamp), frame_id="cam_optical")
                image_pub.publish(conv.image_msg(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), "rgb8", h))
                info_ns = info_stamp(stamp)
                if info_ns is not None:
                    ih = Header(stamp=conv.ns_to_stamp(info_ns), frame_id="cam_optical")
                    info_pub.publish(CameraInfo(**{**_fields(_info(160, 120)), "header": ih}))
                k += 1
                step_end = time.monotonic() + 0.1
                while time.monotonic() < step_end:
                    ex.spin_once(timeout_sec=0.01)

    return feed


def test_a_camera_info_never_paired_by_stamp_is_on_diagnostics_until_it_pairs_again(tmp_path: Path) -> None:
    """A driver that leaves camera_info's stamp 0: the node named the cause in one WARN, and /diagnostics
    showed only a growing 'cached' counter at level OK, so an operator who connected later (or a fleet
    dashboard) never learnt the images were not paired by stamp. Now the status is WARN naming the cause
    (message and "problems") while it lasts, and OK with "problems: none" once the driver stamps them."""
    diags: list[DiagnosticArray] = []

    def named() -> bool:
        st = _status(diags)
        return st is not None and "header.stamp is 0" in st[2].get("problems", "")

    def cleared() -> bool:
        st = _status(diags)
        return st is not None and st[2].get("problems") == "none"

    seen: list[tuple[bytes, str, dict[str, str]] | None] = []

    def mark(ok: Callable[[], bool]) -> Callable[[], bool]:
        def check() -> bool:
            if ok():
                seen.append(_status(diags))
                return True
            return False

        return check

    feed = _camera(diags, [(lambda s: 0, mark(named), 40.0), (lambda s: s, mark(cleared), 30.0)])
    _, out = run_node(tmp_path, REMAPS, {}, {}, before_feed=feed, done=lambda got: True)
    assert len(seen) == 2, out
    (level, message, values), after = seen[0], seen[1]
    assert level == DiagnosticStatus.WARN and "header.stamp is 0" in message, (message, values)
    assert after is not None and "camera_info" not in after[1] and "sync_slop" not in after[1], after
    said = [line for line in out.splitlines() if "stamped within sync_slop" in line]
    assert len(said) == 1 and "WARN" in said[0], out  # the log still says it once


def test_frames_without_intrinsics_are_on_diagnostics_until_a_camera_info_arrives(tmp_path: Path) -> None:
    """A driver started without its camera_info (or camera_info not remapped): no /points, one WARN, and
    /diagnostics OK. Now WARN naming it until camera_info comes, then the cause is gone from it."""
    diags: list[DiagnosticArray] = []
    seen: list[tuple[bytes, str, dict[str, str]] | None] = []

    def problems(text: str | None) -> Callable[[], bool]:
        def check() -> bool:
            st = _status(diags)
            ok = st is not None and (st[2].get("problems") == "none" if text is None else text in st[1])
            if ok:
                seen.append(st)
            return ok

        return check

    named = "frames go out without the camera's intrinsics"
    feed = _camera(diags, [(lambda s: None, problems(named), 40.0), (lambda s: s, problems(None), 30.0)])
    _, out = run_node(tmp_path, REMAPS, {}, {}, before_feed=feed, done=lambda got: True)
    assert len(seen) == 2, out
    assert seen[0][0] == DiagnosticStatus.WARN and "no camera_info has arrived" in seen[0][1], seen[0]
    assert named not in seen[1][1], seen[1]


@pytest.mark.parametrize(
    ("subscribe", "named"),
    [
        (
            lambda peer: peer.create_subscription(PointCloud, "/points", lambda m: None, 10),
            "sensor_msgs/msg/PointCloud",
        ),
        (  # a late joiner asking for a latched /depth: incompatible QoS
            lambda peer: peer.create_subscription(
                Image, "/depth", lambda m: None, QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
            ),
            "incompatible QoS on publisher '/depth' (DURABILITY",
        ),
    ],
    ids=["another-type", "incompatible-qos"],
)
def test_a_subscriber_that_gets_nothing_is_on_diagnostics_while_it_is_there(
    tmp_path: Path, subscribe: Callable[[Node], object], named: str
) -> None:
    """A tool subscribing /points as the old sensor_msgs/PointCloud, or /depth transient_local, gets nothing:
    one WARN in the log, and /diagnostics said nothing of it (a "qos incompatible events" count at OK). Now
    it is WARN naming it while that subscriber is there, and the cause goes from /diagnostics once it is
    gone."""
    diags: list[DiagnosticArray] = []
    state: dict[str, Any] = {}

    def problems() -> str:
        st = _status(diags)
        return "" if st is None else st[2].get("problems", "")

    def found() -> bool:
        if "sub" not in state:
            state["sub"] = subscribe(state["peer"])
        if named in problems():
            state["named"] = _status(diags)
            state["peer"].destroy_subscription(state["sub"])
            return True
        return False

    def cleared() -> bool:
        if problems() == "none":
            state["cleared"] = _status(diags)
            return True
        return False

    camera = _camera(diags, [(lambda s: s, found, 40.0), (lambda s: s, cleared, 30.0)])

    def feed(peer: Node, ex: SingleThreadedExecutor) -> None:
        state["peer"] = peer
        camera(peer, ex)

    _, out = run_node(tmp_path, REMAPS, {}, {}, before_feed=feed, done=lambda got: True)
    assert "named" in state and "cleared" in state, out
    level, message, _ = state["named"]
    assert level == DiagnosticStatus.WARN and named in message, message
    assert named not in state["cleared"][1], state["cleared"]
