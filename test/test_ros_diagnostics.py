"""What an operator sees on /diagnostics while the live node runs with a problem, and once it is fixed.

The camera, `vdepth-node` and a /diagnostics subscriber (rqt_runtime_monitor, a fleet monitor) in separate
processes: the node's WARN about a cause is logged once, but whoever looks later sees only /diagnostics,
so the cause must be there, at WARN, for as long as it holds, and go when it is fixed.
"""

from __future__ import annotations

import itertools
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
from test_ros_process import _await_subscribers, _fields, _info, run_node, run_nodes_at_once

from vdepth_ros.ros import conversions as conv
from vdepth_ros.ros.diagnostics import EVENT_HOLD_S, STALE

pytestmark = [pytest.mark.ros, pytest.mark.filterwarnings("ignore::DeprecationWarning:rclpy.event_handler")]

REMAPS = ["--ros-args", "-r", "image:=/cam/image", "-r", "camera_info:=/cam/camera_info"]


def _status(diags: list[DiagnosticArray]) -> tuple[bytes, str, dict[str, str]] | None:
    """The last depth stream status: (level, message, values)."""
    for arr in reversed(diags):
        for st in arr.status:
            if st.name.endswith("depth stream"):
                return st.level, st.message, {kv.key: kv.value for kv in st.values}
    return None


#: One phase of `_camera`'s camera: (camera_info stamp for an image stamp, or None: no camera_info; stop when
#: true; at most these seconds; optionally the images' (H, W), None: no image at all, the camera stopped).
Phase = (
    tuple[Callable[[int], int | None], Callable[[], bool], float]
    | tuple[Callable[[int], int | None], Callable[[], bool], float, tuple[int, int] | None]
)


def _spin_until_frame(ex: SingleThreadedExecutor, start: float, k: int) -> None:
    """Spin until frame `k` is due on a 10 Hz schedule from `start` (time.monotonic()): a test camera's stamps
    then stay its send times (one sleeping 0.1 s after each frame fell seconds behind its stamps in a 40 s phase
    on a loaded machine, which the node rightly names another clock)."""
    ex.spin_once(timeout_sec=0.0)
    while time.monotonic() < start + k * 0.1:
        ex.spin_once(timeout_sec=0.01)


def _camera(
    diags: list[DiagnosticArray], phases: list[Phase], image_pubs: int = 1, clock_offset_s: float = 0.0
) -> Callable[[Node, SingleThreadedExecutor], None]:
    """before_feed: a 10 Hz camera on /cam/image + /cam/camera_info, stamped on the ROS clock as it sends (less
    `clock_offset_s`: a driver stamping with its own device clock), its camera_info stamped
    `info_stamp(image stamp)` in each phase (None: no camera_info) until `until()` or the phase's seconds;
    /diagnostics kept, /depth subscribed. `image_pubs` > 1: that many publishers on /cam/image taking turns
    (two camera drivers on one topic)."""

    def feed(peer: Node, ex: SingleThreadedExecutor) -> None:
        peer.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        peer.create_subscription(Image, "/depth", lambda m: None, 10)  # (a viewer: the node takes the images)
        rel = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        image_pubs_ = [peer.create_publisher(Image, "/cam/image", rel) for _ in range(image_pubs)]
        info_pub = peer.create_publisher(CameraInfo, "/cam/camera_info", rel)
        _await_subscribers(ex, *image_pubs_, info_pub)
        rng, k, t0 = np.random.default_rng(0), 0, peer.get_clock().now().nanoseconds  # (stamped by ROS time)
        t0, start = t0 - round(clock_offset_s * 1e9), time.monotonic()
        for info_stamp, until, seconds, *size in phases:
            h_w = size[0] if size else (120, 160)
            end = time.monotonic() + seconds
            while time.monotonic() < end and not until():
                stamp = t0 + k * 100_000_000
                h = Header(stamp=conv.ns_to_stamp(stamp), frame_id="cam_optical")
                info_ns = info_stamp(stamp)
                if h_w is not None:
                    image = rng.integers(0, 255, (*h_w, 3), dtype=np.uint8)
                    image_pubs_[k % len(image_pubs_)].publish(conv.image_msg(image, "rgb8", h))
                    if info_ns is not None:
                        ih = Header(stamp=conv.ns_to_stamp(info_ns), frame_id="cam_optical")
                        info_pub.publish(CameraInfo(**{**_fields(_info(160, 120)), "header": ih}))
                k += 1
                _spin_until_frame(ex, start, k)

    return feed


def _seen(
    diags: list[DiagnosticArray], ok: Callable[[tuple[bytes, str, dict[str, str]]], bool], into: list
) -> Callable[[], bool]:
    """A phase's `until`: the last status passes `ok`; it is kept in `into`."""

    def check() -> bool:
        st = _status(diags)
        if st is not None and ok(st):
            into.append(st)
            return True
        return False

    return check


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


def _deferred(node_args: list[str], cameras: dict, outputs: dict, **kwargs: Any) -> dict[str, Any]:
    """`run_node`'s arguments but its folder, for a node run made side by side with others (`side_by_side`)."""
    return {"node_args": node_args, "cameras": cameras, "outputs": outputs, **kwargs}


#: The tests whose node runs are made side by side (`side_by_side`), by name: each one's run and check of its output.
#: Each waits on the node's statuses for a cause to show and to go (an event's hold of 10 s, a status period of 15
#: s): one after the other, the four longest tests of this file.
SIDE_BY_SIDE: dict[str, Callable[[], tuple[dict[str, Any], Callable[[str], None]]]] = {}


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The node runs of `SIDE_BY_SIDE`, made at once, each in its own ROS domain (`run_nodes_at_once`): name ->
    (its result, its check)."""
    runs = {name: make() for name, make in SIDE_BY_SIDE.items()}
    results = run_nodes_at_once(tmp_path_factory.mktemp("side_by_side"), {n: r for n, (r, _) in runs.items()})
    return {name: (results[name], check) for name, (_, check) in runs.items()}


def _checked(side_by_side: dict[str, Any], name: str) -> None:
    """The check of the run `name` of `side_by_side` on its output (the run's exception raised if it failed)."""
    result, check = side_by_side[name]
    if isinstance(result, BaseException):
        raise result
    check(result[1])


def _problems(st: tuple[bytes, str, dict[str, str]]) -> str:
    return st[2].get("problems", "")


def _aspect_ratio_run() -> tuple[dict[str, Any], Callable[[str], None]]:
    """The node run of the test below (`SIDE_BY_SIDE`), and its check of the output."""
    diags: list[DiagnosticArray] = []
    seen: list[tuple[bytes, str, dict[str, str]]] = []
    unfit, restart = "does not fit the frames", "stream restarted (resolution)"
    feed = _camera(
        diags,
        [
            (lambda s: s, _seen(diags, lambda st: st[1] == "ok", seen), 40.0),
            (  # the driver switched mode, its camera_info for it not there: the last one is for the old size
                lambda s: None,
                _seen(diags, lambda st: unfit in _problems(st) and restart in _problems(st), seen),
                30.0,
                (120, 120),
            ),
            (lambda s: s, _seen(diags, lambda st: _problems(st) == "none", seen), 40.0),
        ],
    )
    run = _deferred(REMAPS, {}, {}, before_feed=feed, done=lambda got: True)

    def check(out: str) -> None:
        assert len(seen) == 3, ({(st.level, st.message) for a in diags for st in a.status}, out)
        level, message, values = seen[1]
        assert level == DiagnosticStatus.WARN and unfit in message and restart in message, (message, values)
        after = seen[2][2]
        assert "restart 2" in after["events"] and after["last event"] == restart, after  # there and back
        assert float(after["last event age [s]"]) >= 10.0, after
        said = [line for line in out.splitlines() if "does not fit this frame" in line]
        assert len(said) == 1 and "WARN" in said[0], out  # once, not every 5 s: /diagnostics says it while it lasts

    return run, check


SIDE_BY_SIDE["aspect_ratio"] = _aspect_ratio_run


def test_a_camera_that_changes_to_another_aspect_ratio_is_on_diagnostics_until_it_changes_back(
    side_by_side: dict[str, Any],
) -> None:
    """A camera switched to another aspect ratio (its camera_info for the new mode not there): no /points, a WARN
    in the log every 5 s and a stream-restart WARN, while /diagnostics stayed OK. Now the camera_info that does
    not fit is a current problem until frames fit it again, and the restart an event: WARN naming it for a while,
    then counted ("events") with the last one and its age; "problems" is "none" once both have gone."""
    _checked(side_by_side, "aspect_ratio")


@pytest.fixture(scope="module")
def stopped_camera_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One node run that two tests read, each for its own cause (one start-up and stop less in the suite): a camera
    without camera_info, until /diagnostics names its frames without intrinsics, then stopped, until it says "no
    input images"; the node started with a mistyped parameter (`widnow`). {"seen": the two statuses that ended the
    phases, "diags": every status, "out": the node's output}."""
    diags: list[DiagnosticArray] = []
    seen: list[tuple[bytes, str, dict[str, str]]] = []
    feed = _camera(
        diags,
        [
            (lambda s: None, _seen(diags, lambda st: NO_INTRINSICS in _problems(st), seen), 40.0),
            (lambda s: None, _seen(diags, lambda st: "no input images" in st[1], seen), 30.0, None),
        ],
    )
    tmp_path = tmp_path_factory.mktemp("stopped_camera")
    _, out = run_node(tmp_path, [*REMAPS, "-p", "widnow:=8"], {}, {}, before_feed=feed, done=lambda got: True)
    return {"seen": seen, "diags": diags, "out": out}


#: /diagnostics' problem of frames published without intrinsics
NO_INTRINSICS = "frames go out without the camera's intrinsics"


def test_a_start_up_warning_is_on_diagnostics_while_the_node_runs(stopped_camera_run: dict[str, Any]) -> None:
    """A mistyped parameter (`widnow`) is ignored with one WARN at start-up, and /diagnostics said OK for as long
    as the node ran, so an operator who only watches the robot monitor never saw the configuration was off."""
    out, diags = stopped_camera_run["out"], stopped_camera_run["diags"]
    running = [st for st in map(_status, ([a] for a in diags)) if st and st[2].get("output rate [Hz]", "0") != "0"]
    assert running, out
    level, message, values = running[0]
    assert level == DiagnosticStatus.WARN and "widnow" in message and "widnow" in values["problems"], (message, out)


def test_a_cause_found_on_the_images_is_marked_stale_once_the_camera_stops(stopped_camera_run: dict[str, Any]) -> None:
    """Frames without intrinsics were named on /diagnostics as holding now long after the camera had stopped
    (the worker, which found it, sees no more frames); now it is marked as of the last image while the input
    is stopped."""
    seen, out = stopped_camera_run["seen"], stopped_camera_run["out"]
    assert len(seen) == 2, out
    assert STALE not in _problems(seen[0]), seen[0]
    assert f"{NO_INTRINSICS}" in _problems(seen[1]) and STALE in _problems(seen[1]), seen[1]


def _turns_one_left_run() -> tuple[dict[str, Any], Callable[[str], None]]:
    """The node run of the test below (`SIDE_BY_SIDE`), and its check of the output."""
    diags: list[DiagnosticArray] = []
    seen: list[tuple[bytes, str, dict[str, str]]] = []
    turns = "publishers sending images in turn"

    def feed(peer: Node, ex: SingleThreadedExecutor) -> None:
        peer.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        peer.create_subscription(Image, "/depth", lambda m: None, 10)
        rel = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        first, second = (peer.create_publisher(Image, "/cam/image", rel) for _ in range(2))
        info_pub = peer.create_publisher(CameraInfo, "/cam/camera_info", rel)
        _await_subscribers(ex, first, second, info_pub)
        until = _seen(diags, lambda st: turns in _problems(st), seen)
        rng, t0, deadline = np.random.default_rng(0), peer.get_clock().now().nanoseconds, time.monotonic() + 60
        start = time.monotonic()
        for k in range(1000):
            if time.monotonic() > deadline or until():
                return
            if k == 10:  # (after a second of both taking turns, before the first status check)
                peer.destroy_publisher(second)
            h = Header(stamp=conv.ns_to_stamp(t0 + k * 100_000_000), frame_id="cam_optical")
            pub = second if k < 10 and k % 2 else first
            pub.publish(conv.image_msg(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), "rgb8", h))
            info_pub.publish(CameraInfo(**{**_fields(_info(160, 120)), "header": h}))
            _spin_until_frame(ex, start, k + 1)

    # the first status check 15 s after activation: long after the second publisher has gone
    run = _deferred([*REMAPS, "-p", "diagnostics_period:=15.0"], {}, {}, before_feed=feed, done=lambda got: True)

    def check(out: str) -> None:
        assert seen, out
        level, message, values = seen[0]
        assert level == DiagnosticStatus.WARN and turns in message and "left since" in message, (message, values)
        assert "image-publishers 1" in values["events"], values
        # (a period this long shows the node STALE in a diagnostic_aggregator between two statuses: said at start-up)
        assert "diagnostics_period is 15 s" in values["problems"] and "STALE" in values["problems"], values
        said = [line for line in out.splitlines() if turns in line and "WARN" in line]
        assert len(said) == 1, out

    return run, check


SIDE_BY_SIDE["turns_one_left"] = _turns_one_left_run


def test_two_cameras_taking_turns_are_named_even_when_one_left_before_the_status_check(
    side_by_side: dict[str, Any],
) -> None:
    """Two drivers publishing on one topic for a second, one gone before the node's next status check: the
    check found fewer than two publishers and said nothing, although a second of windows had both views
    interleaved. Now it is logged and on /diagnostics as an event, with the one that left named as such."""
    _checked(side_by_side, "turns_one_left")


def test_two_cameras_taking_turns_clear_once_one_stops_sending_though_it_stays(tmp_path: Path) -> None:
    """Two drivers taking turns on one topic, then one stops sending but stays in the graph (paused, hung, its
    camera unplugged): "has 2 publishers sending images in turn" stayed in "problems" for as long as both were
    in the graph, though the images came from one camera again. Now it clears a few seconds after the last turn
    (`PublisherSequences.TURN_GONE_S`); that they took turns stays counted as an event."""
    diags: list[DiagnosticArray] = []
    seen: list[tuple[bytes, str, dict[str, str]]] = []
    turns = "' has 2 publishers sending images in turn"

    def feed(peer: Node, ex: SingleThreadedExecutor) -> None:
        peer.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        peer.create_subscription(Image, "/depth", lambda m: None, 10)
        rel = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        first, second = (peer.create_publisher(Image, "/cam/image", rel) for _ in range(2))
        info_pub = peer.create_publisher(CameraInfo, "/cam/camera_info", rel)
        _await_subscribers(ex, first, second, info_pub)
        phases = [  # (both take turns, until, at most these seconds)
            (True, _seen(diags, lambda st: turns in _problems(st), seen), 40.0),
            (False, _seen(diags, lambda st: turns not in _problems(st), seen), 30.0),
        ]
        rng, t0, k = np.random.default_rng(0), peer.get_clock().now().nanoseconds, 0
        start = time.monotonic()
        for in_turn, until, seconds in phases:
            end = time.monotonic() + seconds
            while time.monotonic() < end and not until():
                h = Header(stamp=conv.ns_to_stamp(t0 + k * 100_000_000), frame_id="cam_optical")
                pub = second if in_turn and k % 2 else first  # (second stays in the graph, silent)
                pub.publish(conv.image_msg(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), "rgb8", h))
                info_pub.publish(CameraInfo(**{**_fields(_info(160, 120)), "header": h}))
                k += 1
                _spin_until_frame(ex, start, k)
        seen.append(("graph", peer.count_publishers("/cam/image")))  # type: ignore[arg-type]

    _, out = run_node(tmp_path, REMAPS, {}, {}, before_feed=feed, done=lambda got: True)
    assert len(seen) == 3, ([_problems(st) for st in map(_status, [[a] for a in diags]) if st][-3:], out)
    assert seen[2] == ("graph", 2), seen  # both publishers still in the graph throughout
    values = seen[1][2]
    assert "image-publishers 1" in values["events"], values  # (that they took turns: an event, counted)
    said = [line for line in out.splitlines() if "publishers sending images in turn" in line and "WARN" in line]
    assert len(said) == 1, out


def test_a_models_fallback_at_start_up_is_on_diagnostics_while_the_node_runs(tmp_path: Path) -> None:
    """precision fp16 asked of a graph ONNX Runtime's CPU EP runs as exported (fp32): one WARN from the runtime
    while the model loads, then /diagnostics OK for as long as the node ran. Now it is a start-up warning
    there: WARN naming it while the configuration stands."""
    diags: list[DiagnosticArray] = []
    seen: list[tuple[bytes, str, dict[str, str]]] = []
    running = _seen(diags, lambda st: st[2].get("output rate [Hz]", "0") != "0", seen)
    _, out = run_node(
        tmp_path,
        [*REMAPS, "-p", "precision:=fp16"],
        {},
        {},
        before_feed=_camera(diags, [(lambda s: s, running, 40.0)]),
        done=lambda got: True,
    )
    assert seen and "precision fp16 is not applied" in out, out
    level, message, values = seen[0]
    assert level == DiagnosticStatus.WARN and "precision fp16 is not applied" in values["problems"], (message, out)


def _stretched_run() -> tuple[dict[str, Any], Callable[[str], None]]:
    """The node run of the test below (`SIDE_BY_SIDE`), and its check of the output."""
    diags: list[DiagnosticArray] = []
    seen: list[tuple[bytes, str, dict[str, str]]] = []
    stretched = "frames stretched 1.33x"
    named_since: list[float] = []

    def held_past_an_events_hold(st: tuple[bytes, str, dict[str, str]]) -> bool:
        if stretched not in _problems(st):
            named_since.clear()
            return False
        named_since[:] = named_since or [time.monotonic()]
        return time.monotonic() - named_since[0] > 1.5 * EVENT_HOLD_S

    info = lambda s: s  # noqa: E731 (camera_info for 160x120 frames; the square frames go without: it would not fit)
    feed = _camera(
        diags,
        [
            (info, _seen(diags, lambda st: st[2].get("output rate [Hz]", "0") != "0", seen), 40.0),
            (lambda s: None, _seen(diags, held_past_an_events_hold, seen), 50.0, (120, 120)),
            (info, _seen(diags, lambda st: stretched not in _problems(st), seen), 40.0),
        ],
    )
    run = _deferred(REMAPS, {}, {}, before_feed=feed, done=lambda got: True)

    def check(out: str) -> None:
        assert len(seen) == 3, ([_problems(st) for st in map(_status, [[a] for a in diags]) if st], out)
        level, message, values = seen[1]
        assert level == DiagnosticStatus.WARN and stretched in message and "120x120" in message, (message, values)
        said = [line for line in out.splitlines() if "have another shape" in line]
        assert len(said) == 1 and "WARN" in said[0], out  # logged once: /diagnostics says it while it lasts
        assert "stretched" not in seen[1][2]["last event"], seen[1][2]  # a condition, not an event

    return run, check


SIDE_BY_SIDE["stretched"] = _stretched_run


def test_frames_the_model_sees_stretched_are_on_diagnostics_while_they_arrive(side_by_side: dict[str, Any]) -> None:
    """A 1:1 camera on the 4:3 model: the frames are stretched for as long as the camera sends that shape, but
    the pipeline's WARNING reached /diagnostics as an event, named for 10 s and then only as "last event",
    while the stretched frames kept coming. Now it is a condition: named while such frames arrive (well past an
    event's hold), gone once frames of the model's shape do."""
    _checked(side_by_side, "stretched")


def _covered_lens_run() -> tuple[dict[str, Any], Callable[[str], None]]:
    """The node run of the test below (`SIDE_BY_SIDE`), and its check of the output."""
    diags: list[DiagnosticArray] = []
    seen: list[tuple[bytes, str, dict[str, str]]] = []
    covered = "alignment f"  # (falls back: the condition; fell back: the logged line)
    named_since: list[float] = []
    texts: set[str] = set()

    def held_past_an_events_hold(st: tuple[bytes, str, dict[str, str]]) -> bool:
        if covered not in _problems(st):
            named_since.clear()
            return False
        texts.add(st[1])
        named_since[:] = named_since or [time.monotonic()]
        return time.monotonic() - named_since[0] > 1.5 * EVENT_HOLD_S

    def feed(peer: Node, ex: SingleThreadedExecutor) -> None:
        peer.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        peer.create_subscription(Image, "/depth", lambda m: None, 10)
        rel = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        image_pub = peer.create_publisher(Image, "/cam/image", rel)
        info_pub = peer.create_publisher(CameraInfo, "/cam/camera_info", rel)
        _await_subscribers(ex, image_pub, info_pub)
        rng = np.random.default_rng(0)
        base = rng.integers(20, 236, (15, 20, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)  # 120x160, textured
        phases = [  # (lens covered, until, at most these seconds)
            (True, _seen(diags, held_past_an_events_hold, seen), 60.0),
            (False, _seen(diags, lambda st: covered not in _problems(st), seen), 40.0),
        ]
        t0, k, start = peer.get_clock().now().nanoseconds, 0, time.monotonic()
        for black, until, seconds in phases:
            end = time.monotonic() + seconds
            while time.monotonic() < end and not until():
                h = Header(stamp=conv.ns_to_stamp(t0 + k * 100_000_000), frame_id="cam_optical")
                image = np.zeros_like(base) if black else np.roll(base, 2 * k, axis=1)
                image_pub.publish(conv.image_msg(image, "rgb8", h))
                info_pub.publish(CameraInfo(**{**_fields(_info(160, 120)), "header": h}))
                k += 1
                _spin_until_frame(ex, start, k)

    run = _deferred(REMAPS, {}, {}, before_feed=feed, done=lambda got: True)

    def check(out: str) -> None:
        assert len(seen) == 2, ([_problems(st) for st in map(_status, [[a] for a in diags]) if st][-3:], out)
        level, message, values = seen[0]
        assert len(texts) == 1, texts  # one cause, one text while it lasts
        assert level == DiagnosticStatus.WARN and "alignment falls back" in message, (message, values)
        assert "alignment" not in values["last event"], values  # a condition, not an event
        said = [line for line in out.splitlines() if "alignment fell back" in line]
        assert said and "WARN" in said[0], out  # the logged line, with the reason

    return run, check


SIDE_BY_SIDE["covered_lens"] = _covered_lens_run


def test_a_covered_lens_is_on_diagnostics_while_its_windows_fall_back(side_by_side: dict[str, Any]) -> None:
    """A lens covered for longer than an event's hold: every window's alignment falls back, and the pipeline's
    WARNING reached /diagnostics as an event, one every 5 s (its rate limit), each with another window index and
    count ("window 177: alignment fell back to (1, 0): ... (15 more since ...)"): a message that changed with every
    line, which a monitor takes for a new WARN each time. Now it is a condition: one text while the windows fall
    back, gone once the lens is uncovered."""
    _checked(side_by_side, "covered_lens")


def test_frames_stretched_before_a_deactivation_are_not_named_after_the_reactivation(tmp_path: Path) -> None:
    """A managed node cycled by a bring-up manager in another process (deactivate, activate) after square frames
    on the 4:3 model: the status named the last session's stretched frames again, "as of the last image", until a
    new frame started a stream. The new session has seen no frame: it names none."""
    from lifecycle_msgs.msg import State, Transition
    from test_ros_process import LifecycleClient

    diags: list[DiagnosticArray] = []
    seen: list[tuple[bytes, str, dict[str, str]]] = []
    after: list[str] = []
    stretched = "frames stretched 1.33x"

    def feed(peer: Node, ex: SingleThreadedExecutor) -> None:
        lifecycle = LifecycleClient(peer, ex)
        lifecycle.go(Transition.TRANSITION_CONFIGURE, State.PRIMARY_STATE_INACTIVE)
        lifecycle.go(Transition.TRANSITION_ACTIVATE, State.PRIMARY_STATE_ACTIVE)
        _camera(diags, [(lambda s: None, _seen(diags, lambda st: stretched in _problems(st), seen), 40.0, (120, 120))])(
            peer, ex
        )
        lifecycle.go(Transition.TRANSITION_DEACTIVATE, State.PRIMARY_STATE_INACTIVE)
        lifecycle.go(Transition.TRANSITION_ACTIVATE, State.PRIMARY_STATE_ACTIVE)
        end = time.monotonic() + 1.0  # (what was sent before the deactivation has arrived)
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.01)
        diags.clear()
        end = time.monotonic() + 4.0  # statuses of the new session, before any frame
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.01)
        after.extend(_problems(st) for st in map(_status, [[a] for a in diags]) if st)

    _, out = run_node(tmp_path, ["--managed", *REMAPS], {}, {}, before_feed=feed, done=lambda got: True)
    assert seen and after, (seen, after, out)
    assert not [p for p in after if "stretched" in p], after


def test_the_stamp_is_the_nodes_clock_and_never_0_before_a_clock_arrives(tmp_path: Path) -> None:
    """Under use_sim_time the DiagnosticArray was stamped 0 until a /clock arrived (a bag played without --clock),
    which a diagnostic_aggregator takes for no stamp set. diagnostic_updater (ROS 2) stamps with the node's clock
    (sim time) and never publishes before a /clock; this node does (on the steady clock, to say there is none):
    the system time then, the sim time once /clock has arrived."""
    from rosgraph_msgs.msg import Clock as ClockMsg

    diags: list[DiagnosticArray] = []
    sim_s = 1234

    def feed(peer: Node, ex: SingleThreadedExecutor) -> None:
        peer.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        clock = peer.create_publisher(ClockMsg, "/clock", 10)
        end = time.monotonic() + 40
        while time.monotonic() < end and not diags:  # before any /clock
            ex.spin_once(timeout_sec=0.1)
        before = len(diags)
        end = time.monotonic() + 40
        while time.monotonic() < end and not any(a.header.stamp.sec < 2 * sim_s for a in diags[before:]):
            clock.publish(ClockMsg(clock=conv.ns_to_stamp(sim_s * 1_000_000_000 + time.monotonic_ns() % 10**9)))
            ex.spin_once(timeout_sec=0.1)

    _, out = run_node(tmp_path, [*REMAPS, "-p", "use_sim_time:=true"], {}, {}, before_feed=feed, done=lambda got: True)
    stamps = [a.header.stamp.sec for a in diags]
    assert stamps and stamps[0] > time.time() - 600, (stamps, out)  # the system time before the first /clock
    assert any(sim_s <= s < 2 * sim_s for s in stamps), (stamps, out)  # then the node's clock: sim time


@pytest.mark.parametrize("offset_s", [5.0, -5.0, 0.0])
def test_the_latency_of_a_camera_stamping_with_another_clock_is_taken_from_arrival(
    tmp_path: Path, offset_s: float
) -> None:
    """A driver stamping with its own device clock, seconds off the ROS clock: /diagnostics reported the clocks'
    offset as the latency (5 s behind: a latency of ~5.5 s; 5 s ahead: ~-4.5 s) without a word, as only stamps
    120 s off were named. The node compares each image's stamp with its arrival: stamps more than 1 s behind or
    0.1 s ahead are on another clock, named in one WARN with the offset, and the latency is taken from the
    images' arrival; on the node's clock it stays the latency from the stamp that a subscriber measures."""
    diags: list[DiagnosticArray] = []
    seen: list[tuple[bytes, str, dict[str, str]]] = []
    steps = itertools.count()

    def measured(st: tuple[bytes, str, dict[str, str]]) -> bool:
        # 4 s of images (more than the 31 the stamps' clock is judged on) and a latency from 2 windows out
        latency = float(st[2]["latency median [s]"])
        return next(steps) >= 40 and latency == latency and float(st[2]["output rate [Hz]"]) > 0

    feed = _camera(diags, [(lambda s: s, _seen(diags, measured, seen), 60.0)], clock_offset_s=offset_s)
    _, out = run_node(tmp_path, REMAPS, {}, {}, before_feed=feed, done=lambda got: True)
    assert seen, out
    values = seen[-1][2]
    latency = float(values["latency median [s]"])
    side = "behind" if offset_s > 0 else "ahead of"
    named = [line for line in out.splitlines() if f"s {side} this node's clock" in line]
    assert 0.0 < latency < 3.0, values  # (a window's frames and its inference, not the clocks' offset)
    if offset_s:
        assert values["latency from"] == "arrival (stamps on another clock)", values
        assert abs(float(values["stamp to arrival median [s]"]) - offset_s) < 1.0, values
        assert len(named) == 1 and "[WARN]" in named[0] and f"{abs(offset_s):.0f}." in named[0], out
        assert f"{side} this node's clock" in values["problems"], values
    else:
        assert values["latency from"] == "image stamp", values
        assert not named and "this node's clock" not in values["problems"], (values, out)
