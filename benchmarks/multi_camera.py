"""Two cameras: one `vdepth-node --cameras cam0 cam1` process against two single-camera processes.

A third layout, one process whose cameras each load their own engine (cam1's params section names
the backend explicitly, which makes another engine key), tells apart what the shared model saves
or costs from what one shared Python process does.

Both layouts run the bundled default model through the installed `vdepth-node` console script with
`config/depth.yaml`, in the same run, on the same input: this process publishes two 640x480 rgb8
streams (+ camera_info) at `--rate` Hz each, reliable, for `--seconds`, and subscribes to both
`/camN/depth` topics. Reported per layout: frames out per camera, latency (stamp -> arrival)
median / p95 over both cameras, and the summed peak RSS (VmHWM) of the node processes; then the
ratios one-process / two-processes.

    ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST .venv/bin/python benchmarks/multi_camera.py
    .venv/bin/python benchmarks/multi_camera.py --rate 5 --seconds 30 --json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

W, H = 640, 480
K = [525.0, 0.0, 319.5, 0.0, 525.0, 239.5, 0.0, 0.0, 1.0]
CAMERAS = ("cam0", "cam1")
REPO = Path(__file__).resolve().parent.parent


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of process `pid` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def start_nodes(layout: str, params: Path) -> list[subprocess.Popen]:
    script = Path(sys.executable).parent / "vdepth-node"
    env = {**os.environ}
    if layout == "one process, own engines":
        own = Path(os.environ.get("TMPDIR", "/tmp")) / f"vdepth-multi-camera-{os.getpid()}.yaml"
        own.write_text(params.read_text() + '/cam1/depth_node:\n  ros__parameters:\n    backend: "onnxruntime"\n')
        params = own
    common = ["--ros-args", "--params-file", str(params), "-p", "input_qos:=reliable"]
    if layout.startswith("one process"):
        cmds = [[str(script), "--cameras", *CAMERAS, *common]]
    else:
        cmds = [[str(script), *common, "-r", f"__ns:=/{cam}"] for cam in CAMERAS]
    return [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for cmd in cmds]


def stop(procs: list[subprocess.Popen]) -> list[str]:
    outs = []
    for p in procs:
        p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            out, _ = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        outs.append(out)
    return outs


def run_layout(layout: str, rate: float, seconds: float, warmup: float) -> dict[str, Any]:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header

    from vdepth_ros.ros import conversions as conv
    from vdepth_ros.ros.qos import qos_profile

    procs = start_nodes(layout, REPO / "config" / "depth.yaml")
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=int(os.environ.get("ROS_DOMAIN_ID", "0")))
    peer = Node("multi_camera_bench", context=ctx)
    rel = qos_profile("reliable", 10)
    lock = threading.Lock()
    latencies: dict[str, list[float]] = {c: [] for c in CAMERAS}
    counting = threading.Event()
    since_ns = [0]  # outputs of frames published from here on are measured

    def on_depth(cam: str) -> Any:
        def cb(msg: Any) -> None:
            stamp = conv.stamp_to_ns(msg.header.stamp)
            if counting.is_set() and stamp >= since_ns[0]:
                with lock:
                    latencies[cam].append((time.time_ns() - stamp) / 1e9)

        return cb

    pubs = {}
    for cam in CAMERAS:
        peer.create_subscription(Image, f"/{cam}/depth", on_depth(cam), rel)
        pubs[cam] = (
            peer.create_publisher(Image, f"/{cam}/image", rel),
            peer.create_publisher(CameraInfo, f"/{cam}/camera_info", rel),
        )
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(peer)
    spinner = threading.Thread(target=ex.spin, daemon=True)
    spinner.start()
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (H // 4, W // 4 + 64, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    frames = [np.ascontiguousarray(base[:, 4 * k : 4 * k + W]) for k in range(64)]
    published = 0
    try:
        t0 = time.monotonic()
        k = 0
        while time.monotonic() - t0 < warmup + seconds:
            if time.monotonic() - t0 >= warmup and not counting.is_set():
                since_ns[0] = time.time_ns()
                counting.set()  # model loaded and windows flowing: measure from here
                published = 0
            target = t0 + k / rate
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for n, cam in enumerate(CAMERAS):
                h = Header(stamp=conv.ns_to_stamp(time.time_ns()), frame_id=f"{cam}_optical")
                img_pub, info_pub = pubs[cam]
                img_pub.publish(conv.image_msg(frames[(k + 7 * n) % len(frames)], "rgb8", h))
                info_pub.publish(CameraInfo(header=h, width=W, height=H, k=K))
            published += 1
            k += 1
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"vdepth-node exited early ({layout}):\n{p.stdout.read()}")
        time.sleep(3.0)  # let the last windows arrive
        counting.clear()
        rss = sum(peak_rss_mb(p.pid) for p in procs)
    finally:
        outs = stop(procs)
        ex.shutdown()
        spinner.join(timeout=10)  # a spin thread still inside rclpy at interpreter exit aborts the process
        peer.destroy_node()
        rclpy.shutdown(context=ctx)
    all_lat = np.array([v for c in CAMERAS for v in latencies[c]]) if any(latencies.values()) else np.array([np.nan])
    return {
        "layout": layout,
        "processes": len(procs),
        "published per camera": published,
        "out per camera": {c: len(latencies[c]) for c in CAMERAS},
        "latency median [s]": float(np.median(all_lat)),
        "latency p95 [s]": float(np.percentile(all_lat, 95)),
        "peak RSS sum [MiB]": round(rss, 1),
        "startup lines": [line for out in outs for line in out.splitlines() if "share" in line][:2],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=5.0, help="Hz per camera (default 5; 10 overloads a 2-core CPU)")
    ap.add_argument("--seconds", type=float, default=30.0, help="measured seconds per layout (default 30)")
    ap.add_argument("--warmup", type=float, default=8.0, help="seconds before measuring (model load, first windows)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    layouts = ("two processes", "one process", "one process, own engines")
    results = [run_layout(layout, args.rate, args.seconds, args.warmup) for layout in layouts]
    base, shared, own = results
    ratios = {
        "peak RSS (one / two)": round(shared["peak RSS sum [MiB]"] / base["peak RSS sum [MiB]"], 3),
        "latency p95 (one / two)": round(shared["latency p95 [s]"] / base["latency p95 [s]"], 3),
        "frames out (one / two)": round(
            sum(shared["out per camera"].values()) / max(1, sum(base["out per camera"].values())), 3
        ),
        "peak RSS (one process, own engines / two)": round(own["peak RSS sum [MiB]"] / base["peak RSS sum [MiB]"], 3),
        "latency p95 (one process, own engines / two)": round(own["latency p95 [s]"] / base["latency p95 [s]"], 3),
    }
    if args.json:
        print(json.dumps({"rate": args.rate, "seconds": args.seconds, "results": results, "ratios": ratios}, indent=1))
        return 0
    print(f"two cameras, 640x480 rgb8 at {args.rate:g} Hz each, {args.seconds:g} s measured, default model")
    for r in results:
        print(
            f"  {r['layout']:<24} processes {r['processes']}  published/camera {r['published per camera']}  "
            f"out/camera {r['out per camera']}  latency median {r['latency median [s]']:.3f} s  "
            f"p95 {r['latency p95 [s]']:.3f} s  peak RSS sum {r['peak RSS sum [MiB]']:.0f} MiB"
        )
    for k, v in ratios.items():
        print(f"  ratio {k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
