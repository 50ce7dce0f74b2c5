"""Where the time from `vdepth-node` to the first `/depth` goes, as a user starts it.

Starts the `vdepth-node` console script (its own process, the bundled default model unless
`--model`), publishes 640x480 rgb8 + camera_info at 15 Hz from this process (reliable), subscribes
to `/depth` (reliable, as RViz) and times, from the spawn to the first `/depth` message, the steps
the node logs at start-up:

* imports: interpreter, rclpy and the node's modules, before `main` runs;
* rclpy init, pipeline imports, model load (file checks + engine), warm-up inference (one window);
* discovery: activation to the first image (DDS matching, and this camera's start);
* first window: first image to first output (the window fills at 15 Hz, then one inference);
* total: spawn to the first `/depth` received here.

    .venv/bin/python benchmarks/node_startup.py --quick        # one start
    .venv/bin/python benchmarks/node_startup.py --repeats 5    # min / median / max of 5 starts

The machine is shared: the load average is printed with the results. Exit status 1 if a start failed.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

W, H = 640, 480
K = [525.0, 0.0, 319.5, 0.0, 525.0, 239.5, 0.0, 0.0, 1.0]
STEPS = re.compile(r"start-up: (?P<steps>.*); ready (?P<ready>[\d.]+) s after")
FIRST_IMAGE = re.compile(r"first image (?P<s>[\d.]+) s after activation")
FIRST_OUTPUT = re.compile(r"first output (?P<s>[\d.]+) s after the first image")


def one_start(model: str | None, timeout: float) -> dict[str, float]:
    """Start the node once; returns the seconds of each step (and `total`)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from vdepth_ros.ros import conversions as conv

    script = Path(sys.executable).parent / "vdepth-node"
    params = Path(tempfile.mkdtemp()) / "params.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n    input_qos: reliable\n" + (f"    model: {model!r}\n" if model else "")
    )
    log = params.with_name("node.log")
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    peer = Node("startup_bench", context=ctx)
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    first: list[float] = []
    peer.create_subscription(Image, "/depth", lambda m: first or first.append(time.monotonic()), qos)
    pub, info_pub = peer.create_publisher(Image, "/image", qos), peer.create_publisher(CameraInfo, "/camera_info", qos)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(peer)
    rgb = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    t_spawn = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(script), "--ros-args", "--params-file", str(params)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        k, t_next = 0, time.monotonic()
        while not first and time.monotonic() - t_spawn < timeout and proc.poll() is None:
            if time.monotonic() >= t_next:
                h = conv.copy_header(Image().header)
                h.stamp = conv.ns_to_stamp(1_000_000_000 + k * 66_666_667)
                pub.publish(conv.image_msg(rgb, "rgb8", h))
                info_pub.publish(CameraInfo(header=h, width=W, height=H, k=K))
                k, t_next = k + 1, t_next + 1 / 15
            ex.spin_once(timeout_sec=0.005)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        ex.shutdown()
        peer.destroy_node()
        rclpy.shutdown(context=ctx)
    text = log.read_text()
    if not first:
        raise RuntimeError(f"no /depth within {timeout} s (exit {proc.returncode}):\n{text}")
    steps = STEPS.search(text)
    assert steps is not None, text
    out: dict[str, float] = {}
    for part in steps["steps"].split(", "):
        name, seconds = part.rsplit(" ", 2)[0], float(part.rsplit(" ", 2)[1])
        out[name] = seconds
    out["discovery"] = float(FIRST_IMAGE.search(text)["s"])  # type: ignore[index]
    out["first window"] = float(FIRST_OUTPUT.search(text)["s"])  # type: ignore[index]
    out["total"] = first[0] - t_spawn
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one start")
    ap.add_argument("--model", default=None, help="model folder or file (default: the bundled model)")
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    repeats = 1 if args.quick else args.repeats
    runs = []
    for i in range(repeats):
        runs.append(one_start(args.model, args.timeout))
        print(f"start {i + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in runs[-1].items()), flush=True)
    print(f"\nload average {tuple(round(v, 2) for v in os.getloadavg())} on {os.cpu_count()} cores; {repeats} starts")
    print(f"{'step':<20} {'min':>7} {'median':>7} {'max':>7}")
    for key in runs[0]:
        values = np.array([r.get(key, np.nan) for r in runs])
        print(f"{key:<20} {np.min(values):7.2f} {np.median(values):7.2f} {np.max(values):7.2f}")
    print("(total: spawn to the first /depth here; the steps overlap nothing but do not add up to it exactly:")
    print(" process spawn, publisher matching and the time between steps are in total only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
