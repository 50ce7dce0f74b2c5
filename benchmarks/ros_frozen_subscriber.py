"""What a frozen viewer costs the other subscribers of the node's outputs (docs/node.md, Threads, queue, drops, faults).

Separate processes: `vdepth-node` (tiny 8-frame model, its bundled Fast DDS profile), a reliable 640x480
camera, a healthy reliable viewer and a healthy best-effort viewer of the topics, and a reliable viewer of
the same topics that is SIGSTOPped `--freeze-wait` seconds before the camera starts (a paused RViz, a
process stopped in a debugger). Per setting: images the camera sent, images the healthy viewers received
per topic, and images lost before the node. Settings: no frozen viewer; a viewer whose process stops
spinning (a stuck callback) instead of being stopped; a frozen viewer on Fast DDS's defaults (20 s lease);
a frozen viewer on `config/fastdds_large_images.xml` (5 s lease). The test
`test/test_ros_stalled_consumer.py::test_a_viewer_frozen_on_the_bundled_profile_stops_slowing_the_others_within_seconds`
runs the same processes (`healthy_rates`).

    .venv/bin/python benchmarks/ros_frozen_subscriber.py                      # 30 Hz, 7 s frozen, ~5 min
    .venv/bin/python benchmarks/ros_frozen_subscriber.py --freeze-wait 0 --rate 15
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))  # the test's processes (test_ros_stalled_consumer.healthy_rates)

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", "81")
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="vdepth-roslog-"))

from test_ros_deployed import stop_summaries  # noqa: E402
from test_ros_stalled_consumer import PROFILE_ENV, healthy_rates  # noqa: E402

#: name -> (the frozen viewer's environment (None: no frozen viewer), SIGSTOPped (else it stops spinning))
SETTINGS: dict[str, tuple[dict[str, str] | None, bool]] = {
    "no frozen viewer": (None, True),
    "viewer not spinning, Fast DDS defaults": ({}, False),
    "frozen viewer, Fast DDS defaults": ({}, True),
    "frozen viewer, bundled profile": (PROFILE_ENV, True),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--seconds", type=float, default=6.0, help="camera run")
    p.add_argument("--freeze-wait", type=float, default=7.0, help="seconds between SIGSTOP and the camera")
    p.add_argument("--topics", nargs="+", action="append", help="one set per use (default: /depth; /depth /points)")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args()
    topic_sets = [tuple(t) for t in args.topics] if args.topics else [("/depth",), ("/depth", "/points")]
    rows = []
    print(f"640x480 at {args.rate:g} Hz for {args.seconds:g} s; frozen {args.freeze_wait:g} s before the camera")
    print("| topics | setting | sent | healthy reliable | healthy best effort | lost before the node |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="vdepth-frozen-") as tmp:
        for k, topics in enumerate(topic_sets):
            for j, (name, (env, stop)) in enumerate(SETTINGS.items()):
                timing = {"rate": args.rate, "seconds": args.seconds, "freeze_wait": args.freeze_wait}
                got = healthy_rates(Path(tmp) / f"{k}-{j}", env, topics, stop=stop, **timing)
                summaries = stop_summaries(got["node"])
                lost = summaries[0].lost if summaries else None
                row = {"topics": topics, "setting": name, "sent": got["sent"], "lost_before_node": lost}
                row |= {v: got[v] for v in ("healthy", "healthy_best_effort")}
                rows.append(row)
                cells = [", ".join(f"{t} {n}" for t, n in got[v].items()) for v in ("healthy", "healthy_best_effort")]
                print(f"| {' '.join(topics)} | {name} | {got['sent']} | {cells[0]} | {cells[1]} | {lost} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
