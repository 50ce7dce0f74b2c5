"""What registered, full-resolution output costs: the live node and vdepth-bag at the camera's resolution
("input", the default) vs about the model's ("model"), for 640x480 and 1280x720, with the default model.

One process, one run, so the ratios compare like with like on a loaded machine:

* node: the real `DepthNode` in process (`benchmarks/node_latency.py`'s harness: camera + camera_info
  at `--rate` Hz, a reliable subscriber on depth and points), p95 latency, output rate, drops, and the
  pipeline's post-processing time per frame (upsampling, depth, cloud; `PipelineStats.post_seconds`);
* bag: `vdepth-bag` causal on a `--frames` bag (`benchmarks/bag_throughput.py`'s writer), frames/s.

Each "input" row has its ratio to the "model" row of the same size. The goal: at 640x480 the node
keeps up with 15 Hz with "input" output (no drops, output rate ~ input rate).

    .venv/bin/python benchmarks/output_resolution_cost.py --json out/output_resolution_cost.json   # ~6 min
    .venv/bin/python benchmarks/output_resolution_cost.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bag_throughput import run_once, write_bag
from node_latency import Bench, make_engine


def node_run(engine: Any, size: tuple[int, int], output: str, rate: float, frames: int) -> dict[str, Any]:
    bench = Bench(engine, 32, size=size, extra_params={"output_resolution": output})
    try:
        stats = bench.node.pipeline.stats
        bench.run(rate, 2 * bench.node.pipeline.schedule["window"], drain_s=10.0)  # warm-up
        post0, out0 = stats.post_seconds, stats.frames_out
        r = bench.run(rate, frames)
        r["post_ms_per_frame"] = round(1000 * (stats.post_seconds - post0) / max(stats.frames_out - out0, 1), 2)
        r["working_resolution"] = [bench.node.pipeline.height, bench.node.pipeline.width]
    finally:
        bench.close()
    keys = (
        "input_rate_hz", "frames_published", "outputs_received", "output_rate_hz", "dropped",
        "latency_median_s", "latency_p95_s", "post_ms_per_frame", "working_resolution",
    )  # fmt: skip
    return {k: r[k] for k in keys}


def bag_run(tmp: Path, size: tuple[int, int], output: str, frames: int, rate: float) -> dict[str, Any]:
    bag = tmp / f"bag_{size[0]}x{size[1]}"
    if not bag.exists():
        write_bag(bag, frames, size[0], size[1], rate, "rgb8", "mcap")
    r = run_once(bag, tmp / f"out_{size[0]}_{output}", "causal", "default", {"output_resolution": output})
    return {"frames": r["frames"], "seconds": r["seconds"], "fps": r["fps"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["640x480", "1280x720"])
    ap.add_argument("--rate", type=float, default=15.0, help="camera rate of the node runs (Hz)")
    ap.add_argument("--node-frames", type=int, default=150)
    ap.add_argument("--bag-frames", type=int, default=120)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--quick", action="store_true", help="60 node frames, 48 bag frames")
    ap.add_argument("--json", help="also write the report here")
    args = ap.parse_args(argv)
    if args.quick:
        args.node_frames, args.bag_frames = 60, 48
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    engine, note = make_engine("default", args.threads)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vdepth-outres-") as tmpdir:
        for text in args.sizes:
            size = tuple(int(v) for v in text.split("x"))
            for output in ("model", "input"):
                row = {"size": text, "output_resolution": output}
                row["node"] = node_run(engine, size, output, args.rate, args.node_frames)
                row["bag"] = bag_run(Path(tmpdir), size, output, args.bag_frames, 30.0)
                print(json.dumps(row), file=sys.stderr, flush=True)
                rows.append(row)
    for row in rows:
        if row["output_resolution"] == "input":
            base = next(r for r in rows if r["size"] == row["size"] and r["output_resolution"] == "model")
            n, b = row["node"], base["node"]
            row["ratio_to_model"] = {
                "node_latency_p95": round(n["latency_p95_s"] / b["latency_p95_s"], 3)
                if n["latency_p95_s"] and b["latency_p95_s"]
                else None,
                "node_post_ms": round(n["post_ms_per_frame"] / max(b["post_ms_per_frame"], 1e-6), 2),
                "bag_fps": round(row["bag"]["fps"] / base["bag"]["fps"], 3),
            }
    first = next((r for r in rows if r["size"] == "640x480" and r["output_resolution"] == "input"), None)
    report = {
        "engine": note,
        "rows": rows,
        "goal_640x480_input_keeps_up_15hz": None
        if first is None
        else first["node"]["dropped"] == 0 and first["node"]["output_rate_hz"] >= 0.9 * args.rate,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "seconds": round(time.perf_counter() - t0, 1),
        "command": "benchmarks/output_resolution_cost.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
