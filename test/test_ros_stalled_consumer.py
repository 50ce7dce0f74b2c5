"""A frozen consumer must not slow the node for everybody else (docs/node.md, Threads, queue, drops, faults).

A camera, `vdepth-node`, RViz-like reliable viewers that are then frozen (SIGSTOP: a paused RViz,
a process stopped in a debugger, a crashed one not yet timed out by DDS) and a healthy viewer run
as separate processes at 640x480. A reliable publisher whose reader stops acknowledging can block in
`publish()` (plain rclpy, Fast DDS default transports: 300 publishes of a 640x480 cloud in 8 s, not
1 s). Before the outputs had their own threads the worker waited there: one run here dropped 31 of
225 images from the input queue and a healthy /depth viewer got 190 (another helper saw 67-82 of
~220 on a loaded machine). How much a frozen reader blocks varies from run to run (other runs before
the fix lost 0-5 images), so this test guards the separate-process behaviour and the SIGINT shutdown
with frozen peers; `test_ros_node.py::test_a_subscriber_that_holds_up_one_output_holds_up_nothing_else`
blocks a publisher outright and fails before the fix every time.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_ros_deployed import PEERS, SUMMARY, interrupt, node_command, start, wait_for

pytestmark = pytest.mark.ros

SECONDS, RATE = 15.0, 15.0


@pytest.mark.slow
def test_a_frozen_reliable_consumer_does_not_slow_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frozen reliable viewers of /points and /depth; a healthy one counts /depth/camera_info (small: what
    it gets is what the node publishes). The node runs on Fast DDS's default transports (UDP for large
    messages, as with RViz on another machine), where a frozen reader blocks a publish most."""
    command = node_command(tmp_path, params="    input_qos: reliable\n")
    procs: list[subprocess.Popen] = []
    logs = []

    def launch(name: str, cmd: list[str]) -> subprocess.Popen:
        proc, log = start(cmd, tmp_path / f"{name}.log")
        procs.append(proc)
        logs.append(log)
        return proc

    monkeypatch.setenv("FASTDDS_BUILTIN_TRANSPORTS", "DEFAULT")  # the node only (docs/node.md, Across processes)
    node = launch("node", command)
    monkeypatch.delenv("FASTDDS_BUILTIN_TRANSPORTS")
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
        for proc in frozen.values():
            proc.send_signal(signal.SIGSTOP)
        camera = launch(
            "camera",
            [sys.executable, str(PEERS), "camera", "--seconds", str(SECONDS), "--rate", str(RATE), "--reliable"],
        )
        assert camera.wait(timeout=SECONDS + 60) == 0, (tmp_path / "camera.log").read_text()
        time.sleep(3.0)  # the node publishes what it holds
        assert interrupt(node) == 0, (tmp_path / "node.log").read_text()
        assert interrupt(healthy) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:  # resumed and stopped with SIGINT: a SIGKILLed DDS participant leaves
                proc.send_signal(signal.SIGCONT)  # its shared-memory ports locked in /dev/shm, which can
                proc.send_signal(signal.SIGINT)  # keep later processes on this domain from discovering
                try:  # each other
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for log in logs:
            log.close()
    out = (tmp_path / "node.log").read_text()
    summary = SUMMARY.search(out)
    assert summary, out
    received = int(summary["received"])
    assert received > 0.5 * SECONDS * RATE, out
    got = json.loads((tmp_path / "healthy.log").read_text().strip().splitlines()[-1])
    # the node kept up with its input: (nearly) every image became an output for the healthy viewer (the
    # last window's frames aside; the margin is for a loaded machine)
    infos = got["/depth/camera_info"]
    assert len(infos) >= 0.8 * received - 16, (received, len(infos), out)
    assert infos == sorted(set(infos))
    # what did not reach the frozen viewers' topics is counted, and named in a WARN
    held = re.search(r"; (\d+) outputs dropped for subscribers that did not take them \((.*?)\); published", out)
    for topic in re.findall(r"(/[\w/]+) \d+", held[2]) if held else []:
        assert re.search(rf"\[WARN\].*a subscriber of {topic} does not take its messages", out), out
    assert "Traceback" not in out, out
