"""What a subscriber in another process sees, against what the node reports: camera driver, `vdepth-node`
and this script (the subscriber) in three processes, as deployed.

The camera (`test/deployed_peers.py camera --ros-time`, 640x480 rgb8, reliable) stamps each frame with the
ROS clock at its capture time; this process subscribes `/depth` and `/points` (reliable, depth 16) and
`/diagnostics`, and takes each message's latency as its arrival on the system clock (the ROS clock without
`use_sim_time`) less its header stamp: what any subscriber can measure. The node's own figure is the
`/diagnostics` "latency median [s]" / "latency p95 [s]" (its last 300 frames), compared with the
subscriber's `/depth` latencies over the same frames (those received before that status).

Goal (set before the runs): the node's median and p95 within 50 ms of the subscriber's (`/depth`), and
/points within 50 ms of /depth. Each run also prints the load average before and after, the frames sent,
received by the node, published, dropped from its queue, and min / median / p95 / max latency.

    ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST .venv/bin/python benchmarks/subscriber_latency.py
    ... --rates 30 --seconds 12 --load 4     # 4 busy processes for the middle third of the run
    ... --rates 30 --max-input-rate 5        # a camera faster than the node, thinned to 5 Hz
    ... --json                               # one JSON document

`--load N` starts N processes spinning on the CPU from a third to two thirds of the run (a burst of
load from other programs) and prints the subscriber's latency in each third.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "test" / "deployed_peers.py"
TOLERANCE_S = 0.05


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "min": None, "median": None, "p95": None, "max": None}
    a = np.asarray(values)
    return {
        "n": int(a.size),
        "min": round(float(a.min()), 4),
        "median": round(float(np.median(a)), 4),
        "p95": round(float(np.percentile(a, 95)), 4),
        "max": round(float(a.max()), 4),
    }


def _spin_cpu(seconds: float) -> subprocess.Popen:
    """A process keeping one core busy for `seconds` (a burst of load from another program)."""
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def _start_node(args: argparse.Namespace, folder: Path, rate: float, env: dict[str, str]) -> tuple[Any, Any]:
    """`vdepth-node` on the bundled model, reliable input, the run's `max_input_rate` and `queue_size`; (process,
    its open log file)."""
    params = folder / "params.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n    input_qos: reliable\n"
        + (f"    max_input_rate: {float(args.max_input_rate)}\n" if args.max_input_rate else "")
        + (f"    queue_size: {int(args.queue_size)}\n" if args.queue_size else "")
        + (f"    queue_drain_after: {float(args.queue_drain_after)}\n" if args.queue_drain_after is not None else "")
    )
    log = (folder / f"node_{rate:g}.log").open("w")
    script = str(Path(sys.executable).parent / "vdepth-node")
    cmd = [script, "--ros-args", "--params-file", str(params)]
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log


def _subscribe(sub: Any, got: dict[str, list[tuple[int, int]]], statuses: list[tuple[int, dict[str, str]]]) -> None:
    """`/depth` and `/points` as (stamp, arrival) into `got`, the node's status as (arrival, values) into
    `statuses` (arrivals on the system clock, ns)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, PointCloud2

    def keep(topic: str) -> Any:
        def on(msg: Any) -> None:
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            got[topic].append((stamp, time.time_ns()))

        return on

    def on_diag(msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.name.endswith("depth stream"):
                statuses.append((time.time_ns(), {kv.key: kv.value for kv in st.values}))

    qos = QoSProfile(depth=16, reliability=ReliabilityPolicy.RELIABLE)
    sub.create_subscription(Image, "/depth", keep("/depth"), qos)
    sub.create_subscription(PointCloud2, "/points", keep("/points"), qos)
    sub.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)


def run(rate: float, seconds: float, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """One run: node, camera at `rate` for `seconds`, this process as the subscriber."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    node, node_log = _start_node(args, folder, rate, env)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    sub = Node("latency_subscriber", context=ctx)
    got: dict[str, list[tuple[int, int]]] = {"/depth": [], "/points": []}
    statuses: list[tuple[int, dict[str, str]]] = []  # (arrival ns, values)

    _subscribe(sub, got, statuses)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(sub)
    load_before = os.getloadavg()[0]
    loaders: list[subprocess.Popen] = []
    try:
        deadline = time.monotonic() + 120
        while not any(i.node_name == "depth_node" for i in sub.get_publishers_info_by_topic("/depth")):
            assert node.poll() is None and time.monotonic() < deadline, (folder / f"node_{rate:g}.log").read_text()
            ex.spin_once(timeout_sec=0.1)
        camera = subprocess.Popen(
            [sys.executable, str(PEERS), "camera", "--ros-time", "--reliable", "--rate", str(rate),
             "--seconds", str(seconds)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        started = time.time_ns()
        thirds = [started + round(seconds * 1e9 / 3), started + round(2 * seconds * 1e9 / 3)]
        while camera.poll() is None:
            now = time.time_ns()
            if args.load and not loaders and now > thirds[0] + 1_000_000_000:  # (+1 s: the camera's start-up)
                loaders = [_spin_cpu(seconds / 3) for _ in range(args.load)]
            ex.spin_once(timeout_sec=0.05)
        camera_end = time.time_ns()
        camera_out = camera.stdout.read() if camera.stdout else ""
        sent = json.loads(camera_out.strip().splitlines()[-1])["sent"]
        end = time.monotonic() + 3.0  # the node finishes what it holds, one more status comes
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.05)
    finally:
        for p in loaders:
            p.kill()
        node.send_signal(2)
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
        node_log.close()
        ex.shutdown()
        sub.destroy_node()
        rclpy.shutdown(context=ctx)
    load_after = os.getloadavg()[0]
    result: dict[str, Any] = {"rate": rate, "seconds": seconds, "sent": sent, "load": [load_before, load_after]}
    result.update(compare(got, statuses, camera_end, thirds if args.load else None))
    log = (folder / f"node_{rate:g}.log").read_text()
    result["node summary"] = next((ln for ln in log.splitlines() if "]: stopped: " in ln), "")
    result["node warnings"] = sorted({ln.split("]: ", 1)[-1][:160] for ln in log.splitlines() if "[WARN]" in ln})
    return result


def compare(
    got: dict[str, list[tuple[int, int]]],
    statuses: list[tuple[int, dict[str, str]]],
    camera_end: int,
    thirds: list[int] | None,
) -> dict[str, Any]:
    """The subscriber's latencies (`got`: topic -> [(stamp, arrival)], ns) against the node's last /diagnostics
    status with a latency while the camera still sent (`statuses`: [(arrival, values)]; `camera_end`), and its
    output rate against the subscriber's /depth rate over the 5 s before it; with `thirds` (the load's start
    and end) the subscriber's /depth latency before, during and after the load."""
    lat = {t: [(arr - stamp) / 1e9 for stamp, arr in v] for t, v in got.items()}
    # the node's last status while it still had frames to report, against the subscriber's last 300 /depth
    # frames received before it (the node's LatencyStats keeps its last 300)
    measured = [(at, v) for at, v in statuses if v.get("latency median [s]", "nan") != "nan" and at <= camera_end]
    result: dict[str, Any] = {}
    result["subscriber /depth"], result["subscriber /points"] = _stats(lat["/depth"]), _stats(lat["/points"])
    if thirds:
        cut = [0, *thirds, math.inf]
        result["subscriber /depth by third (before, load, after)"] = [
            _stats([(a - s) / 1e9 for s, a in got["/depth"] if cut[i] <= a < cut[i + 1]]) for i in range(3)
        ]
    if measured:
        at, values = measured[-1]
        before = [(a - s) / 1e9 for s, a in got["/depth"] if a <= at][-300:]
        mine = _stats(before)
        node_median, node_p95 = float(values["latency median [s]"]), float(values["latency p95 [s]"])
        result["node"] = {
            "latency median": node_median,
            "latency p95": node_p95,
            "latency from": values.get("latency from"),
            "stamp to arrival median": values.get("stamp to arrival median [s]"),
            "input rate": values.get("input rate [Hz]"),
            "output rate": values.get("output rate [Hz]"),
            "dropped (queue full)": values.get("dropped (queue full)"),
            "dropped (of those, a standing backlog)": values.get("dropped (of those, a standing backlog)"),
            "thinned (max_input_rate)": values.get("thinned (max_input_rate)"),
        }
        result["subscriber /depth, the node's frames"] = mine
        recent = [a for _, a in got["/depth"] if at - 5_000_000_000 < a <= at]
        span = (recent[-1] - recent[0]) / 1e9 if len(recent) > 1 else 0.0
        result["subscriber /depth rate over the 5 s before [Hz]"] = round((len(recent) - 1) / span, 2) if span else None
        if mine["n"]:
            d_med, d_p95 = mine["median"] - node_median, mine["p95"] - node_p95
            result["subscriber - node"] = {"median": round(d_med, 4), "p95": round(d_p95, 4)}
            result["goal node within 50 ms"] = "PASS" if max(abs(d_med), abs(d_p95)) <= TOLERANCE_S else "FAIL"
    if lat["/points"] and lat["/depth"]:
        gap = float(np.median(lat["/points"]) - np.median(lat["/depth"]))
        result["/points - /depth median"] = round(gap, 4)
        result["goal /points within 50 ms of /depth"] = "PASS" if abs(gap) <= TOLERANCE_S else "FAIL"
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[15.0, 30.0])
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--load", type=int, default=0, help="busy processes in the middle third of each run")
    ap.add_argument("--max-input-rate", type=float, default=0.0)
    ap.add_argument("--queue-size", type=int, default=0, help="the node's queue_size (0: its default)")
    ap.add_argument("--queue-drain-after", type=float, default=None, help="the node's queue_drain_after (default: its)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("ROS_LOG_DIR", tmp)
        for rate in args.rates:
            results.append(run(rate, args.seconds, args, Path(tmp)))
            if not args.json:
                print(json.dumps(results[-1], indent=1), flush=True)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
