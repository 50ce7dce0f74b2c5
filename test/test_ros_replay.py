"""The live node fed a recording replayed at another speed, as deployed: a bag player (an rclpy
process republishing recorded frames with their recorded stamps), `vdepth-node` and a viewer with
RViz's QoS in three processes (docs/node.md, "Replays at other speeds").

A replay is the same stream whatever its speed: every frame published once, in order, no restart
but where the stamps jump back (a loop), each deliberate act logged once. Before, a slow-motion
replay without use_sim_time restarted the stream at every frame: the pause rules measured the node's
clock against `max_gap`, which is a gap in stamps.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from deployed_peers import T0
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo
from test_ros_deployed import PEERS, wait_for
from test_ros_stream_ends import RATE, rig  # noqa: F401  (the fixture)

from vdepth_ros.paths import config_dir
from vdepth_ros.ros.input_loss import INFO_LOSS_WARN_AFTER, INFO_LOSS_WARN_SHARE
from vdepth_ros.ros.transport import PROFILE_NAME, PROFILE_VARIABLE

pytestmark = [pytest.mark.ros]

#: the pipeline's INFO line at each reset, with its wall-clock time (the node's log clock)
_RESET = re.compile(r"\[INFO\] \[(\d+\.\d+)\] \[[\w.]+\]: depth pipeline reset: (.*)")
_PAUSE_FLUSH = re.compile(r"\[INFO\] \[(\d+\.\d+)\] \[[\w.]+\]: no image for .* \(pause_flush\)")


def test_a_slow_motion_replay_in_a_loop_restarts_only_where_the_stamps_jump_back(rig: Any) -> None:  # noqa: F811
    """9 recorded frames (15 Hz) played twice at 0.2x without use_sim_time: 3 frames a second on the
    node's clock, each 0.33 s after the one before, while max_gap is 0.2 s of stamps. Before: a
    "pause" restart and an early window after nearly every frame (18 restarts, 16 early windows for
    18 frames). Now: one restart, where the loop starts over, no early window while the player
    plays, every frame published once, and one INFO line names the slow replay."""
    r = rig("    publish: final\n    max_gap: 0.2\n")
    played = r.camera(0.6, "--speed", "0.2", "--loops", "2")
    r.interrupt_node()
    got, log = r.received(), r.node_log.read_text()
    stamps = [s for s, _ in got]
    assert played["sent"] == 18 and len(stamps) == 18, log
    assert stamps[:9] == sorted(set(stamps[:9])) and stamps[9:] == stamps[:9], log  # each loop in order, once
    during = [reason for t, reason in _RESET.findall(log) if float(t) <= played["last_wall"]]
    assert len(during) == 1 and during[0].startswith("time jump"), (during, log)
    assert not [t for t in _PAUSE_FLUSH.findall(log) if float(t) <= played["last_wall"]], log
    assert len(re.findall(r"slower than their stamps say", log)) == 1, log
    assert "[ERROR]" not in log and "Traceback" not in log, log


#: The driver's process with the profile docs/node.md, "Across processes" gives it (a 32 MiB shared-memory segment)
LARGE_SEGMENT = {PROFILE_VARIABLE: str(config_dir() / PROFILE_NAME)}
_INFO_COUNTS = ("camera_info synced/cached/none", "camera_info lost in transport")


def test_a_loop_whose_camera_info_comes_before_its_image_pairs_each_with_its_own(rig: Any, tmp_path: Path) -> None:  # noqa: F811
    """A bag played twice whose camera_info was recorded just before each image (a driver publishing it first): the
    stamps going back forgot the loop's first camera_info, already received, so that image waited for the next
    frame and then got the old timeline's camera_info ("cached"). Every image is paired with its own now, where DDS
    delivers every camera_info: the driver with the large shared-memory segment (without it, the next test)."""
    r = rig("    publish: final\n    diagnostics_period: 0.2\n")
    played, statuses = _diagnostics_during(
        r, tmp_path, 1.0, "--loops", "2", "--info-first", values=_INFO_COUNTS, camera_env=LARGE_SEGMENT
    )
    r.interrupt_node()
    log = r.node_log.read_text()
    last = statuses[-1][2]
    assert played["sent"] == 30 and last[_INFO_COUNTS[0]] == "30/0/0", (statuses[-1], log)
    assert last[_INFO_COUNTS[1]] == "0" and "were lost before this node" not in log, log
    assert "[ERROR]" not in log and "Traceback" not in log, log


def test_camera_infos_lost_in_transport_are_named_with_the_fix(rig: Any, tmp_path: Path) -> None:  # noqa: F811
    """The same driver on Fast DDS's defaults (a 512 KiB shared-memory segment): the image published right after each
    camera_info reuses the camera_info's buffer before the node has read it, so many never arrive (8 to 16 of 30 in
    runs here; by hand, a reliable viewer of them got each lost one only at the driver's next heartbeat, ~3 s on, and
    nothing after it meanwhile). Before, nothing said so: /diagnostics showed half
    the images 'cached'. Now their DDS sequence numbers count them on /diagnostics and, past a stray one, one WARN
    names the cause and the fix (the profile in the driver's process); every image still gets intrinsics (a
    neighbouring frame's: the calibration is fixed) and every frame is published. (The first images wait for a
    first camera_info up to 30 images: with the first 11 lost (1 of 7 runs here) the eleventh image let the first
    go without one, 'none'.)"""
    r = rig("    publish: final\n    diagnostics_period: 0.2\n    sync_queue_size: 30\n    camera_info_timeout: 3.0\n")
    played, statuses = _diagnostics_during(r, tmp_path, 1.0, "--loops", "2", "--info-first", values=_INFO_COUNTS)
    r.interrupt_node()
    got, log = r.received(), r.node_log.read_text()
    last = statuses[-1][2]
    synced, cached, none = (int(v) for v in last[_INFO_COUNTS[0]].split("/"))
    lost = int(last[_INFO_COUNTS[1]])
    assert played["sent"] == 30 and len(got) == 30 and none == 0 and synced + cached == 30, (last, log)
    # each image whose camera_info was lost goes without its own (more: those lost before the first that arrived, or
    # after the last, leave no gap in the sequence numbers); each whose camera_info arrived gets its own, the next test
    assert lost <= cached, (last, log)
    named = re.findall(r"(\d+) of (\d+) camera_infos sent on '/camera_info' were lost before this node", log)
    assert len(named) == (1 if lost >= INFO_LOSS_WARN_AFTER and lost > INFO_LOSS_WARN_SHARE * 30 else 0), (lost, log)
    if named:
        assert f"{PROFILE_VARIABLE}={config_dir() / PROFILE_NAME}" in log, log
    assert "[ERROR]" not in log and "Traceback" not in log, log


def test_each_image_whose_camera_info_arrives_gets_its_own_however_many_are_lost(rig: Any, tmp_path: Path) -> None:  # noqa: F811
    """A zooming camera (each frame's focal length its own) that publishes each image before its camera_info, as
    image_transport's CameraPublisher, half of whose camera_infos never reach the node (a lossy link: sent by no one,
    so no sequence gap tells it). Before, the median step between the camera_infos that arrived made camera_info look
    two frames slow, and an image whose own came just after it went out at once with the previous frame's ('cached':
    a wrong focal length on /depth/camera_info and /points). Now each image whose camera_info was sent carries its
    own, and each of the others another frame's (the last received when it went out)."""
    kept = tmp_path / "kept.pkl"
    r = rig("    publish: final\n", viewer=("--topics", "/depth", "/depth/camera_info", "--keep", str(kept)))
    played = r.camera(4.0, "--zoom", "0.001", "--drop-infos", "0.5")
    r.published(played["sent"], settle=1.0)
    r.interrupt_node()
    r.received()
    log = r.node_log.read_text()
    infos = pickle.loads(kept.read_bytes())["/depth/camera_info"]
    frame = {T0 + round(k * 1e9 / RATE): k for k in range(played["sent"])}
    no_info = {frame[s] for s in played["no_info"]}
    # (the focal length of frame k is (1 + 0.001 k) times frame 0's, the same at the output's resolution)
    focal = {frame[s]: deserialize_message(b, CameraInfo).k[0] for s, b in infos.items()}
    f0 = next(f / (1 + 0.001 * k) for k, f in sorted(focal.items()) if k not in no_info)
    paired = {k: round((f / f0 - 1) / 0.001) for k, f in focal.items()}
    assert len(paired) == played["sent"] and 10 < len(no_info) < 50, (len(paired), sorted(no_info), log)
    wrong = {k: p for k, p in paired.items() if (p != k) != (k in no_info)}
    assert not wrong, (wrong, sorted(no_info), log)
    assert "[ERROR]" not in log and "Traceback" not in log, log


def _diagnostics_during(
    r: Any,
    tmp_path: Path,
    seconds: float,
    *args: str,
    values: tuple[str, ...] = (),
    camera_env: dict[str, str] | None = None,
) -> tuple[dict[str, Any], list[list[Any]]]:
    """`r.camera(seconds, *args, env=camera_env)` with a /diagnostics viewer beside it: (its report, [[level,
    message]...]; with `values`, [[level, message, {key: value}]...])."""
    log_path = tmp_path / "diagnostics.log"
    with log_path.open("w") as out:
        diag = subprocess.Popen(
            [sys.executable, str(PEERS), "viewer", "--topics", "/diagnostics"]
            + (["--diag-values", *values] if values else []),
            stdout=out, stderr=subprocess.STDOUT,
            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        try:
            wait_for(log_path, "matched", 60, diag)
            played = r.camera(seconds, *args, env=camera_env)
        finally:
            diag.send_signal(signal.SIGINT)
            diag.wait(timeout=30)
    return played, json.loads(log_path.read_text().strip().splitlines()[-1])["/diagnostics"]


def test_a_slow_motion_replay_is_no_stall_on_diagnostics(rig: Any, tmp_path: Path) -> None:  # noqa: F811
    """15 recorded frames played at 0.1x (a frame every 0.67 s): each window's output needs 7 more
    frames, 4.7 s of this replay, and watchdog_timeout is 3 s. Before: /diagnostics went ERROR
    "nothing published for 3.x s while images arrive" between every two windows of a healthy replay
    (at 0.05x with the default 5 s, for 4 s of every 9), and WARN "output rate below half the input
    rate" most of the time. Now the silence counts once the next output's frames have arrived, and
    the rates are compared from two windows' frames in their 5 s: OK throughout, every frame published.
    (At 0.2x with 1.5 s, a node on a loaded machine took 1.6-2.1 s for a window once its frames were in:
    the watchdog's ERROR was right; 3 s leaves it room, and 4.7 s between outputs still trips the bug.)"""
    r = rig("    publish: final\n    watchdog_timeout: 3.0\n    diagnostics_period: 0.25\n")
    played, statuses = _diagnostics_during(r, tmp_path, 1.0, "--speed", "0.1")
    r.interrupt_node()
    got, log = r.received(), r.node_log.read_text()
    assert played["sent"] == 15 and len(got) == 15, log
    assert len(statuses) > 10 and not [m for level, m in statuses if level == 2], statuses
    # nor WARN "output rate below half the input rate" (its windows' bursts, 0 or 7 in the rates' 5 s); the
    # recorded stamps, played without their clock, are named (as in the log) for as long as they come
    named = [[p for p in m.split("; ") if not p.startswith("the image stamps are")] for _, m in statuses]
    other = {"; ".join(parts) or "ok" for parts in named}
    assert other <= {"ok", "no input images"}, statuses


def test_a_single_image_with_publish_final_comes_out_without_a_second(rig: Any) -> None:  # noqa: F811
    """One image (`ros2 topic pub --once`, a camera that stalled after its first frame) with
    `publish: final`: its stream's speed is unknown, so it ends only after 5 max_gap (a slow-motion
    replay's first step is no pause), but it does end: the frame is published then, while the node
    runs, not only when it is stopped. (The camera stays: one that exits ends the input at once.)
    (The viewer's frame is waited for: the log's "reset: pause" line comes as the frame is published, and a loaded
    machine's transport delivered it 4 ms after the test read that line.)"""
    r = rig("    publish: final\n")
    assert r.camera(0.07, stays=True)["sent"] == 1
    r.published(1, timeout=30)  # (before: only the SIGINT published it)
    stopped = time.monotonic()
    r.interrupt_node()
    got, log = r.received(), r.node_log.read_text()
    assert len(got) == 1 and got[0][1] < stopped, log
    assert len(re.findall("restarting the depth stream", log)) == 1, log


def test_a_slow_motion_replay_waits_for_its_lagging_poses_in_stamp_time(rig: Any) -> None:  # noqa: F811
    """`sparse_depth: pose` from an odometry that lags its images by 30 ms (each pose stamped as its
    image), `sparse_depth_slop` 0.05 s, the recording played at 0.1x: each pose arrives 0.3 s after
    its image. An image waits for its pose up to the slop after it arrived, which was measured on
    the node's clock, so before every frame went without one ("no metric points for this frame:
    no camera pose"); now the wait is the slop of stamp time (0.5 s here), as in real time, from
    the second image on (the first cannot tell the speed). (At 0.2x, 0.1 s of margin, a loaded machine's
    delivery jitter left a second frame without its pose.)"""
    r = rig("    sparse_depth: pose\n    sparse_depth_slop: 0.05\n")
    played = r.camera(0.6, "--speed", "0.1", "--pose-latency", "30")
    r.interrupt_node()
    got, log = r.received(), r.node_log.read_text()
    assert played["sent"] == 9 and len(got) == 9, log
    # the first image alone cannot tell the replay's speed: it waited 0.05 s (before: all 9 did)
    errors = int(re.search(r"(\d+) input errors", log).group(1))
    assert errors <= 1 and "Traceback" not in log, log


def test_a_very_slow_replay_is_not_no_input_between_its_images(rig: Any, tmp_path: Path) -> None:  # noqa: F811
    """4 recorded frames played at 0.02x: an image every 3.3 s (as a 0.3 Hz triggered camera). /diagnostics said
    "no input images" whenever fewer than two had come in its 5 s rate window, half the time between two images of a
    running replay; now images arrive while the last came within two of their steps (or 5 s). Its "input rate [Hz]"
    read 0 at those times too (and the output rate a window's burst over the seconds since it, tens of Hz): from the
    second image on it now reads about 0.3 Hz throughout."""
    r = rig("    diagnostics_period: 0.25\n")
    played, statuses = _diagnostics_during(r, tmp_path, 0.27, "--speed", "0.02", values=("input rate [Hz]",))
    r.interrupt_node()
    assert played["sent"] == 4, r.node_log.read_text()
    messages = [m for _, m, _ in statuses]
    first = next(i for i, m in enumerate(messages) if m != "no input images")  # (before the first image: right)
    assert "no input images" not in messages[first:], messages
    rates = [float(v["input rate [Hz]"]) for _, _, v in statuses]
    second = next(i for i, rate in enumerate(rates) if rate > 0)  # (one image alone has no rate)
    assert second > first and all(0.12 <= rate <= 0.6 for rate in rates[second:]), rates
