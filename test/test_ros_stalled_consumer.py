"""A frozen consumer must not slow the node for everybody else (docs/node.md, Topics and QoS).

A camera, `vdepth-node`, RViz-like reliable viewers that are then frozen (SIGSTOP: a paused RViz,
a process stopped in a debugger, a crashed one not yet timed out by DDS) and a healthy viewer run
as separate processes at 640x480. A reliable publisher whose subscriber stops acknowledging blocks
in `publish()`; before the outputs were published from their own threads the worker waited there:
with frozen viewers of /points and /depth the node dropped 31 of 225 images from its input queue
and the healthy viewer of /depth got 190 depth images (on a more loaded machine: 67-82 of ~220, ~120
dropped). Now it gets every one, and what a frozen topic could not send is counted and named.
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
from fakes import write_tiny_onnx
from test_ros_deployed import PEERS, SUMMARY, interrupt, start, wait_for

pytestmark = pytest.mark.ros

SECONDS, RATE = 15.0, 15.0


@pytest.mark.slow
def test_a_frozen_reliable_consumer_does_not_slow_the_others(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "vdepth-node"
    if not script.is_file():
        pytest.skip("vdepth-node console script not installed (pip install -e .)")
    model = write_tiny_onnx(tmp_path, frames=8)
    params = tmp_path / "params.yaml"
    params.write_text(
        f"/**:\n  ros__parameters:\n    model: {str(model)!r}\n    backend: onnxruntime\n    scale_source: range\n"
        "    input_qos: reliable\n    max_gap: 30.0\n"
    )
    procs: list[subprocess.Popen] = []
    logs = []

    def launch(name: str, cmd: list[str]) -> subprocess.Popen:
        proc, log = start(cmd, tmp_path / f"{name}.log")
        procs.append(proc)
        logs.append(log)
        return proc

    node = launch("node", [str(script), "--ros-args", "--params-file", str(params)])
    viewer = [sys.executable, str(PEERS), "viewer"]
    frozen = {
        "frozen_points": launch("frozen_points", [*viewer, "--topics", "/points"]),
        "frozen_depth": launch("frozen_depth", [*viewer, "--topics", "/depth"]),
    }
    healthy = launch("healthy", [*viewer, "--topics", "/depth", "/depth/camera_info"])
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
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
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
    # every image the node took in became a depth image for the healthy viewer (the last window's
    # frames and the first window's start-up aside), with its camera_info
    assert len(got["/depth"]) >= received - 16, (received, len(got["/depth"]), out)
    assert got["/depth/camera_info"] == got["/depth"]
    assert got["/depth"] == sorted(set(got["/depth"]))
    assert int(summary["dropped"]) == 0, out  # the input queue did not overflow behind a blocked publish
    # what did not reach the frozen viewers' topics is counted, and named in a WARN
    published = {topic: int(n) for topic, n in re.findall(r"(/[\w/]+) (\d+)", summary["out"])}
    held = re.search(r"; (\d+) outputs dropped for subscribers that did not take them \((.*?)\); published", out)
    dropped = {topic: int(n) for topic, n in re.findall(r"(/[\w/]+) (\d+)", held[2])} if held else {}
    assert published["/points"] + dropped.get("/points", 0) == published["/depth"] + dropped.get("/depth", 0), out
    for topic in dropped:
        assert re.search(rf"\[WARN\].*a subscriber of {topic} does not take its messages", out), out
    assert "Traceback" not in out, out
