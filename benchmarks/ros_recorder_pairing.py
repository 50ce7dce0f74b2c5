"""Whether a recorder of every output keeps each depth image's camera_info (docs/outputs.md, Recording).

Separate processes: `vdepth-node` (tiny 8-frame model, `output_pacing: false`: a window's frames leave at once;
`--pacing`: the default, spread at the camera's rate),
a reliable 640x480 camera at 15 Hz for 6 s (90 frames), and a recorder of the five main outputs as `ros2 bag record`
subscribes (reliable, history 10) that serializes every message it takes (`deployed_peers.py viewer --keep`).
Per run: the frames whose depth image (`/depth`, `/depth/image_rect`) the recorder kept without their
`/depth/camera_info` (an exact-stamp pairing, depth_image_proc's, loses those frames), and those lost altogether.
`--take-ms` makes the recorder slower than the stream, `--recorder-info-depth` gives its camera_info subscription
another history, `--info-depth` the node's camera_info publisher: the loss is in the recorder's own per-topic
history (docs/outputs.md, Recording the outputs). `--timing` also reports, per topic, from the recorder's MessageInfo:
the time from `publish()` to its reader, the wait there until taken, the most waiting at once, and the losses by the
gaps in the publication sequence; `--info-first` has the recorder subscribe camera_info before the other topics (a
recorder takes one message of each ready topic per round, in subscription order).

    .venv/bin/python benchmarks/ros_recorder_pairing.py --runs 3      # ~30 s a run
    .venv/bin/python benchmarks/ros_recorder_pairing.py --runs 3 --depth 16   # the node's own history
    .venv/bin/python benchmarks/ros_recorder_pairing.py --runs 2 --take-ms 15 --recorder-info-depth 100
    .venv/bin/python benchmarks/ros_recorder_pairing.py --runs 2 --take-ms 15 --info-depth 100
    .venv/bin/python benchmarks/ros_recorder_pairing.py --runs 2 --take-ms 15 --timing --info-first
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))  # the test's processes (test_ros_consumers.run_with_consumers)

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", "82")
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="vdepth-roslog-"))

from test_ros_consumers import run_with_consumers  # noqa: E402

#: The node's main outputs (`vdepth_ros.ros.outputs.MAIN_TOPICS`, resolved without remapping).
TOPICS = ("/depth", "/disparity", "/points", "/depth/camera_info", "/depth/image_rect")


def one_run(
    folder: Path,
    depth: int,
    info_depth: int = 0,
    take_ms: float = 0.0,
    recorder_info_depth: int = 0,
    pacing: bool = False,
    timing: bool = False,
    info_first: bool = False,
) -> dict[str, Any]:
    """{"info lost, depth kept": frame indices, "info lost, depth/image_rect kept": ..., "all lost": ...}; with
    `timing`, also "timing": `per_topic_timing` of each topic."""
    folder.mkdir(parents=True)
    # the recorder takes its ready topics in the order it subscribed them, one message each per wait
    topics = ("/depth/camera_info", *(t for t in TOPICS if t != "/depth/camera_info")) if info_first else TOPICS
    recorder = ["--depth", str(depth), "--keep", str(folder / "kept.pkl"), "--topics", *topics]
    recorder += ["--message-info"] if timing else []
    recorder += ["--take-ms", str(take_ms)]
    if recorder_info_depth:
        recorder += ["--topic-depth", f"/depth/camera_info={recorder_info_depth}"]
    params = f"    output_pacing: {str(pacing).lower()}\n"
    if info_depth:  # the node's camera_info publisher history, as a user overrides it
        params += f"    qos_overrides:\n      /depth/camera_info:\n        publisher:\n          depth: {info_depth}\n"
    published, got, _ = run_with_consumers(folder, {"recorder": recorder}, params=params)
    taken = got["recorder"]
    kept = {topic: {entry[0] if timing else entry for entry in entries} for topic, entries in taken.items()}
    frames = sorted(set().union(*kept.values()))
    info = kept["/depth/camera_info"]
    return {
        "info lost, depth kept": [k for k, s in enumerate(frames) if s in kept["/depth"] and s not in info],
        "info lost, depth/image_rect kept": [
            k for k, s in enumerate(frames) if s in kept["/depth/image_rect"] and s not in info
        ],
        "depth lost, info kept": [k for k, s in enumerate(frames) if s in info and s not in kept["/depth"]],
        "frames seen": [len(frames)],
        "node published": [published.get("/depth", 0)],  # fewer than 90: lost before the recorder
        **({"timing": {topic: per_topic_timing(entries) for topic, entries in taken.items()}} if timing else {}),
    }


def per_topic_timing(entries: list[list[int]]) -> dict[str, float]:
    """From the recorder's MessageInfo of one topic ([stamp, source, received, taken, sequence], ns): how long
    messages took from `publish()` to the recorder's reader (median and 90th percentile, ms), waited there until
    taken (median, ms), the most of them received and not yet taken at once (the history they needed; those
    lost are not counted, so it is a lower bound), and those lost by the gaps in their publication sequence."""
    rows = np.asarray(sorted(entries, key=lambda e: e[4]), dtype=np.int64)
    source, received, taken, sequence = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
    transit = (received - source) / 1e6
    waiting = [int(np.sum((received <= t) & (taken > t))) for t in received]
    return {
        "transit_ms_median": round(float(np.median(transit)), 1),
        "transit_ms_p90": round(float(np.percentile(transit, 90)), 1),
        "waited_ms_median": round(float(np.median((taken - received) / 1e6)), 1),
        "most_waiting": max(waiting),
        "lost_in_sequence": int(sequence[-1] - sequence[0] + 1 - len(sequence)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--depth", type=int, default=10, help="the recorder's history (ros2 bag record: 10)")
    parser.add_argument("--info-depth", type=int, default=0, help="the node's camera_info history (0: its own)")
    parser.add_argument("--take-ms", type=float, default=0.0, help="the recorder spends this long on each message")
    parser.add_argument("--recorder-info-depth", type=int, default=0, help="the recorder's camera_info history")
    parser.add_argument("--pacing", action="store_true", help="the node's default output_pacing: true")
    parser.add_argument("--timing", action="store_true", help="per topic: transit, wait and backlog in the recorder")
    parser.add_argument(
        "--info-first", action="store_true", help="the recorder subscribes /depth/camera_info first, not after /points"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vdepth-recorder-") as tmp:
        for run in range(args.runs):
            found = one_run(
                Path(tmp) / str(run),
                args.depth,
                args.info_depth,
                args.take_ms,
                args.recorder_info_depth,
                args.pacing,
                args.timing,
                args.info_first,
            )
            print(f"run {run + 1}: {found}", flush=True)


if __name__ == "__main__":
    main()
