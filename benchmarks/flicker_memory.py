#!/usr/bin/env python3
"""vdepth-flicker on long recordings: peak RSS against bag length, with `--pose-topic` (TAE), whose first pass
reads the camera_infos of the recording before the images (one camera per change kept), and whose poses are read
with the images (the latest `flicker.POSE_WINDOW` kept).

    .venv/bin/python benchmarks/flicker_memory.py [--frames 1000 10000] [--poses-per-frame 7] [--json]

For each length it writes a bag (a temp dir) of 64x48 JPEG colour images, a 32FC1 depth image and a
camera_info per frame, and `--poses-per-frame` PoseStamped per frame (7: 200 Hz odometry beside a 30 Hz camera),
then runs `vdepth-flicker --pose-topic` in a fresh process and reports its peak RSS (`VmHWM`) and heap
(`RssAnon`) peak, and the growth per 1000 frames between the lengths.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import numpy as np  # noqa: E402

HEIGHT, WIDTH, RATE = 48, 64, 30.0
START = 1_700_000_000_000_000_000


def write_bag(path: Path, frames: int, poses_per_frame: int) -> None:
    """Colour, depth and camera_info per frame, and odometry `poses_per_frame` times as often, all stamped alike."""
    from rosbags.typesys import get_typestore

    from vdepth_ros.offline.bag_types import CAMERA_INFO, IMAGE, POSE_STAMPED, TYPESTORES
    from vdepth_ros.offline.bag_writer import image_message, new_bag_writer
    from vdepth_ros.offline.synth import _camera_info, _image_raw, synthetic_frames
    from vdepth_ros.offline.videoio import default_intrinsics

    ts = get_typestore(TYPESTORES["kilted"])
    T = ts.types
    period = round(1e9 / RATE)

    def header(t: int, frame_id: str) -> object:
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9),
                                        frame_id=frame_id)  # fmt: skip

    with new_bag_writer(path, "mcap", version=9) as w:
        image = w.add_connection("/image/compressed", "sensor_msgs/msg/CompressedImage", typestore=ts)
        depth = w.add_connection("/depth", IMAGE, typestore=ts)
        info = w.add_connection("/camera_info", CAMERA_INFO, typestore=ts)
        pose = w.add_connection("/odom_pose", POSE_STAMPED, typestore=ts)
        clip = list(synthetic_frames(60, HEIGHT, WIDTH))  # looped: the content does not matter here
        for k in range(frames):
            t = START + k * period
            rgb = clip[k % len(clip)]
            w.write(image, t, _image_raw(ts, rgb, "jpeg", header(t, "cam"), k))
            metres = (1.0 + rgb.mean(axis=2) / 255.0).astype(np.float32)
            w.write(depth, t, ts.serialize_cdr(image_message(ts, header(t, "cam"), metres, "32FC1"), IMAGE))
            intrinsics = default_intrinsics(WIDTH, HEIGHT)
            w.write(info, t, ts.serialize_cdr(_camera_info(T, header(t, "cam"), WIDTH, HEIGHT, intrinsics, None),
                                              CAMERA_INFO))  # fmt: skip
            for j in range(poses_per_frame):
                tp = t + j * period // poses_per_frame
                where = T["geometry_msgs/msg/Pose"](
                    position=T["geometry_msgs/msg/Point"](x=0.001 * k, y=0.0, z=0.0),
                    orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
                )
                msg = T[POSE_STAMPED](header=header(tp, "world"), pose=where)
                w.write(pose, tp, ts.serialize_cdr(msg, POSE_STAMPED))


def child(bag: str) -> None:
    """Run vdepth-flicker's measurement with TAE in this (fresh) process; print one JSON line."""
    from bag_throughput import RssSampler, peak_rss_mb

    from vdepth_ros.offline.flicker import measure_flicker

    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    [result] = measure_flicker([bag], "/image/compressed", ["/depth"], pose_topic="/odom_pose")
    seconds = time.perf_counter() - t0
    peaks = sampler.stop()
    report = result.to_dict()
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), **peaks, "seconds": round(seconds, 1),
                      "pairs": report.get("pairs"), "tae_pairs": report.get("tae_pairs")}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, nargs=2, default=[1000, 10000])
    ap.add_argument("--poses-per-frame", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.frames:
            bag = Path(tmp) / f"bag{n}"
            write_bag(bag, n, args.poses_per_frame)
            res = subprocess.run([sys.executable, __file__, "--child", str(bag)], capture_output=True, text=True,
                                 check=True)  # fmt: skip
            rows.append({"frames": n, **json.loads(res.stdout.strip().splitlines()[-1])})
    (a, b) = rows
    growth = {k: round((b[k] - a[k]) * 1000 / (b["frames"] - a["frames"]), 2) for k in ("peak_rss_mb", "peak_anon_mb")}
    report = {"rows": rows, "growth_mb_per_1000_frames": growth, "poses_per_frame": args.poses_per_frame}
    if args.json:
        print(json.dumps(report))
        return
    for r in rows:
        print(f"{r['frames']:6d} frames: peak RSS {r['peak_rss_mb']:.0f} MB (heap {r['peak_anon_mb']:.0f} MB), "
              f"{r['seconds']} s, {r['pairs']} pairs, {r['tae_pairs']} TAE pairs")  # fmt: skip
    print(f"growth per 1000 frames: {growth['peak_rss_mb']} MB RSS, {growth['peak_anon_mb']} MB heap")


if __name__ == "__main__":
    main()
