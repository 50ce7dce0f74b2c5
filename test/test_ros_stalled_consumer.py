"""A frozen consumer must not slow the node for everybody else (docs/node.md, Threads, queue, drops, faults).

A camera, `vdepth-node`, RViz-like reliable viewers that are then frozen (SIGSTOP: a paused RViz,
a process stopped in a debugger, a crashed one not yet timed out by DDS) and a healthy viewer run
as separate processes at 640x480. A publisher one of whose readers sits in a stopped process is slow
in `publish()` until that process's lease expires (plain rclpy, Fast DDS default transports: 300
publishes of a 640x480 cloud in 8 s, not 1 s; Fast DDS re-creates a shared-memory port for every
fragment it sends there). Before the outputs had their own threads the worker waited there: one run here dropped 31 of
225 images from the input queue and a healthy /depth viewer got 190 (another helper saw 67-82 of
~220 on a loaded machine). How much a frozen reader blocks varies from run to run (other runs before
the fix lost 0-5 images), so this test guards the separate-process behaviour and the SIGINT shutdown
with frozen peers; `test_ros_node.py::test_a_subscriber_that_holds_up_one_output_holds_up_nothing_else`
blocks a publisher outright and fails before the fix every time. A stopped viewer costs the node until
its own Fast DDS lease expires; `healthy_rates` measures what the healthy viewers of the same topics get
(also `benchmarks/ros_frozen_subscriber.py`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_ros_deployed import PEERS, SUMMARY, interrupt, node_command, start, stop_peer, wait_for, wait_until_published

from vdepth_ros.ros import transport

pytestmark = pytest.mark.ros

SECONDS, RATE = 15.0, 15.0
#: The bundled profile, as docs/node.md asks viewers (RViz) to use it too.
PROFILE_ENV = {transport.PROFILE_VARIABLE: str(transport.bundled_profile())}


@pytest.mark.slow
def test_a_frozen_reliable_consumer_does_not_slow_the_others(tmp_path: Path) -> None:
    """Frozen reliable viewers of /points and /depth; a healthy one counts /depth/camera_info (small: what
    it gets is what the node publishes). The node runs on Fast DDS's default transports (UDP for large
    messages, as with RViz on another machine), where a frozen reader blocks a publish most."""
    received, infos, out = _frozen_viewers_run(tmp_path / "frozen", freeze=True)
    assert received > 0.5 * SECONDS * RATE, out
    # the node kept up with its input: (nearly) every image became an output for the healthy viewer (the
    # last window's frames aside)
    share, least = len(infos) / received, 0.8 - 16 / received
    if share < least:
        # A machine too busy for 15 Hz at 640x480 drops frames from the node's input queue, frozen viewers or
        # not (two test files at once at load 11-15: 126 of 217 and 89 of 160, the queue full for lack of
        # CPU): the same run with the viewers left running says what this machine keeps up with now. There
        # the frozen viewers still cost CPU: Fast DDS works for each publish to a stopped reader (in the
        # output threads, which hold no lock the worker needs) until its lease expires (20 s, the whole run),
        # and the node kept 0.61-0.64 of the baseline's share in three runs at load 13-15 (0.31/0.49,
        # 0.42/0.65, 0.375/0.61); a worker that waited on the frozen readers' publishes would fall far lower
        b_received, b_infos, _ = _frozen_viewers_run(tmp_path / "baseline", freeze=False)
        least = min(least, 0.5 * len(b_infos) / b_received)
    assert share >= least, (received, len(infos), least, out)
    assert infos == sorted(set(infos))
    # what did not reach the frozen viewers' topics is counted, and named in a WARN
    held = re.search(r"; (\d+) outputs dropped for subscribers that did not take them \((.*?)\); published", out)
    profile = re.escape(f"started with FASTDDS_DEFAULT_PROFILES_FILE={transport.bundled_profile()},")  # the lease's fix
    for topic in re.findall(r"(/[\w/]+) \d+", held[2]) if held else []:
        assert re.search(rf"\[WARN\].*a subscriber of {topic} does not take its messages.*{profile}", out), out
    assert "Traceback" not in out, out


def _frozen_viewers_run(tmp_path: Path, freeze: bool) -> tuple[int, list[int], str]:
    """The node (on Fast DDS's default transports), reliable viewers of /points and /depth, SIGSTOPped once
    matched (`freeze`), a healthy viewer of /depth/camera_info and a reliable camera at 640x480, `RATE` Hz for
    `SECONDS`; SIGINT ends the node and the healthy viewer (exit 0 asserted). (images the node received,
    the stamps the healthy viewer got, the node's log)."""
    tmp_path.mkdir(parents=True)
    command = node_command(tmp_path, params="    input_qos: reliable\n")
    procs: list[subprocess.Popen] = []
    logs = []

    def launch(name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        proc, log = start(cmd, tmp_path / f"{name}.log", env)
        procs.append(proc)
        logs.append(log)
        return proc

    node = launch("node", command, {"FASTDDS_BUILTIN_TRANSPORTS": "DEFAULT"})  # docs/node.md, Across processes
    viewer = [sys.executable, str(PEERS), "viewer"]
    frozen = {
        "frozen_points": launch("frozen_points", [*viewer, "--topics", "/points"]),
        "frozen_depth": launch("frozen_depth", [*viewer, "--topics", "/depth"]),
    }
    healthy = launch("healthy", [*viewer, "--topics", "/depth/camera_info"])
    try:
        for name, proc in [*frozen.items(), ("healthy", healthy)]:
            wait_for(tmp_path / f"{name}.log", "matched", 90, proc)
        time.sleep(2.0)  # the node has matched them too (a stopped process answers no discovery)
        for proc in frozen.values() if freeze else ():
            proc.send_signal(signal.SIGSTOP)
        camera = launch(
            "camera",
            [sys.executable, str(PEERS), "camera", "--seconds", str(SECONDS), "--rate", str(RATE), "--reliable"],
        )
        assert camera.wait(timeout=SECONDS + 60) == 0, (tmp_path / "camera.log").read_text()
        wait_until_published(tmp_path / "node.log", node, 3.0)
        assert interrupt(node) == 0, (tmp_path / "node.log").read_text()
        assert interrupt(healthy) == 0, (tmp_path / "healthy.log").read_text()[-3000:]
    finally:
        for proc in procs:
            stop_peer(proc)
        for log in logs:
            log.close()
    out = (tmp_path / "node.log").read_text()
    summary = SUMMARY.search(out)
    assert summary, out
    got = json.loads((tmp_path / "healthy.log").read_text().strip().splitlines()[-1])
    return int(summary["received"]), got["/depth/camera_info"], out


def healthy_rates(
    tmp_path: Path,
    frozen_env: dict[str, str] | None,
    topics: tuple[str, ...] = ("/depth", "/points"),
    rate: float = 30.0,
    seconds: float = 6.0,
    freeze_wait: float = 7.0,
    stop: bool = True,
) -> dict[str, Any]:
    """Node, a reliable camera (640x480, `rate` Hz for `seconds`), a healthy reliable viewer and a healthy
    best-effort one of `topics`, and (unless `frozen_env` is None) a reliable viewer of `topics` in the
    environment `frozen_env` that is SIGSTOPped (`stop`; else it stops spinning once matched) `freeze_wait`
    s before the camera starts, each in its own process. {"sent": images, "healthy": {topic: received},
    "healthy_best_effort": {...}, "node": log}."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    command = node_command(tmp_path, params="    input_qos: reliable\n    queue_size: 200\n")
    procs: list[subprocess.Popen] = []
    logs = []

    def launch(name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        proc, log = start(cmd, tmp_path / f"{name}.log", env)
        procs.append(proc)
        logs.append(log)
        return proc

    node = launch("node", command)
    viewer = [sys.executable, str(PEERS), "viewer", "--topics", *topics]
    viewers = {"healthy": launch("healthy", viewer)}
    viewers["healthy_best_effort"] = launch("healthy_best_effort", [*viewer, "--best-effort"])
    frozen = None if frozen_env is None else launch("frozen", viewer + ([] if stop else ["--no-spin"]), frozen_env)
    got: dict[str, Any] = {"sent": int(seconds * rate)}
    try:
        for name, proc in viewers.items():
            wait_for(tmp_path / f"{name}.log", "matched", 90, proc)
        if frozen is not None:
            wait_for(tmp_path / "frozen.log", "matched", 90, frozen)
            time.sleep(2.0)  # the node has matched it too (a stopped process answers no discovery)
            if stop:
                frozen.send_signal(signal.SIGSTOP)
            time.sleep(freeze_wait)
        camera_args = ["camera", "--seconds", str(seconds), "--rate", str(rate), "--reliable"]
        camera = launch("camera", [sys.executable, str(PEERS), *camera_args])
        assert camera.wait(timeout=seconds + 60) == 0, (tmp_path / "camera.log").read_text()
        wait_until_published(tmp_path / "node.log", node, 3.0)
        assert interrupt(node) == 0, (tmp_path / "node.log").read_text()
        for name, proc in viewers.items():
            assert interrupt(proc) == 0
            stamps = json.loads((tmp_path / f"{name}.log").read_text().strip().splitlines()[-1])
            got[name] = {topic: len(s) for topic, s in stamps.items()}
    finally:
        for proc in procs:
            stop_peer(proc)
        for log in logs:
            log.close()
    got["node"] = (tmp_path / "node.log").read_text()
    return got


@pytest.mark.slow
def test_a_viewer_frozen_on_the_bundled_profile_stops_slowing_the_others_within_seconds(tmp_path: Path) -> None:
    """RViz showing /depth and /points, frozen (SIGSTOP, a debugger, a hung GPU driver), with the bundled
    Fast DDS profile as docs/node.md asks of viewers: healthy reliable and best-effort viewers of the same
    topics get the node's full rate (640x480, 30 Hz) once the frozen one has been stopped for 7 s. Fast DDS
    keeps sending to a stopped process until its lease (announced by the stopped process itself) expires,
    re-creating a shared-memory port for every 64 KB fragment (~0.5 ms each: 10 ms per depth image, 40 ms
    per cloud); with Fast DDS's 20 s lease the healthy viewers got 50-75 % of the frames during that time
    and camera images were lost before the node; the profile's 5 s lease ends it after 5 s."""
    got = healthy_rates(tmp_path / "frozen", PROFILE_ENV)
    got["load"] = os.getloadavg()
    viewers = ("healthy", "healthy_best_effort")
    least = min(min(got[name].values()) for name in viewers)
    reference = got["sent"]
    runs = {"frozen": got}
    if least < 0.9 * reference:  # a machine too busy for 30 Hz: compare with the same run without the frozen viewer
        # (a run after this one: the machine's load may differ, so the message says both runs' load and counts)
        runs["baseline"] = baseline = healthy_rates(tmp_path / "baseline", None)
        baseline["load"] = os.getloadavg()
        reference = min(min(baseline[name].values()) for name in viewers)
    measured = json.dumps({run: _measured(r, viewers) for run, r in runs.items()}, indent=1)  # in full, untruncated
    assert least >= 0.85 * reference, f"healthy viewers got {least} of {reference}:\n{measured}"


def _measured(run: dict[str, Any], viewers: tuple[str, ...]) -> dict[str, Any]:
    """What a `healthy_rates` run measured, for a failure message: images sent, what each viewer got, the
    load average after it (1, 5, 15 min), the node's stop summary (received, lost, dropped) and log tail."""
    summary = SUMMARY.search(run["node"])
    return {
        "sent": run["sent"],
        **{name: run[name] for name in viewers},
        "load": run["load"],
        "node": summary[0] if summary else None,
        "node_log_tail": run["node"][-1500:],
    }
