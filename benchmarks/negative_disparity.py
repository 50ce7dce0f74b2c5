"""Far content below the canonical zero: clamping in the stitcher vs after the metric conversion.

A stream's canonical disparity frame is its first window's, whose 0 is not infinity, so content
farther than anything that window saw is aligned below 0. DVD and VDA clamp aligned disparity at 0
inside the stitching, before the crossfade; the package (outside `inference: reference`) stitches
the values as they are, converts them to metric depth (`depth_from_disparity`: metric inverse
depth <= 0 -> +Inf) and clamps only its relative `disparity` output (`vdepth_ros/pipeline_output.py`).

This runs the causal `DepthPipeline` (bundled model, ONNX Runtime, as `vdepth-eval`) on the
development set only (HoloLens and the held-out renders of `alignment_dev.py`; 7-Scenes, the
acceptance set, is not offered) with `scale_source: sparse` fed N GT depths per frame, as the
`vdepth-eval --sparse-points` row does, both ways ("package" and "stitch_clamp": the stitcher clamping
as the papers do, everything else equal), and prints per sequence:

* metric AbsRel / δ1 (`eval.metrics.evaluate_metric`: the published depth, no fit),
* AbsRel / δ1 after the papers' one affine per sequence, on the same output,
* `clamped`: the share of output pixels whose relative disparity is exactly 0 (clamped).

    .venv/bin/python benchmarks/negative_disparity.py --json out/negative_disparity.json   # ~6 min
    .venv/bin/python benchmarks/negative_disparity.py --renders 2                          # quick
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from vdepth_ros.eval.metrics import evaluate_metric, evaluate_sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alignment_dev import bundled_engine, development_sequences, observed_stream  # the same development set

WAYS = ("package", "stitch_clamp")


def run_way(engine, seq, way: str, sparse_points: int) -> tuple[np.ndarray, float]:
    """Metric inverse depth on the GT grid from the causal pipeline, and the clamped share."""

    def setup(pipe) -> None:
        assert not pipe.stitcher.clamp_negative, "the package's own path clamps after the conversion"
        pipe.stitcher.clamp_negative = way == "stitch_clamp"

    out, _, frames = observed_stream(engine, seq, setup, sparse_points=sparse_points)
    return out, float(np.mean([np.mean(f.disparity == 0) for f in frames])) if frames else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--renders", type=int, default=16)
    ap.add_argument("--frames", type=int, default=96, help="frames per render")
    ap.add_argument("--no-hololens", action="store_true", help="renders only")
    ap.add_argument("--sparse-points", type=int, default=200)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    engine = bundled_engine()
    t0, load0 = time.perf_counter(), os.getloadavg()
    seqs = development_sequences(args.renders, args.frames, hololens=not args.no_hololens)
    rows = []
    for seq in seqs:
        row: dict = {"sequence": seq.name}
        for way in WAYS:
            inv, share = run_way(engine, seq, way, args.sparse_points)
            m = evaluate_metric(inv, seq.depth, seq.max_depth)
            r = evaluate_sequence(inv, seq.depth, seq.max_depth)
            row[way] = {"metric": [m.abs_rel, m.delta1], "relative": [r.abs_rel, r.delta1], "clamped": share}
        rows.append(row)
        print(
            f"{seq.name:18s} "
            + "  ".join(
                f"{w}: metric {row[w]['metric'][0]:.4f}/{row[w]['metric'][1]:.4f} "
                f"relative {row[w]['relative'][0]:.4f}/{row[w]['relative'][1]:.4f} clamped {row[w]['clamped']:.2%}"
                for w in WAYS
            ),
            flush=True,
        )
    diff = np.array([r["package"]["metric"][0] - r["stitch_clamp"]["metric"][0] for r in rows])
    print(
        f"\nmetric AbsRel, package - stitch_clamp: lower on {int(np.sum(diff < -5e-5))}, equal (±0.00005) on "
        f"{int(np.sum(np.abs(diff) <= 5e-5))}, higher on {int(np.sum(diff > 5e-5))} of {len(rows)}; "
        f"min {diff.min():+.4f}, max {diff.max():+.4f}"
    )
    for w in WAYS:
        mean = np.mean([r[w]["metric"] for r in rows], axis=0)
        print(f"{w:13s} mean metric AbsRel {mean[0]:.4f}  δ1 {mean[1]:.4f}")
    print(f"({time.perf_counter() - t0:.0f} s, load average {load0} -> {os.getloadavg()})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"renders": args.renders, "sparse_points": args.sparse_points, "loadavg": [load0, os.getloadavg()]}
        args.json.write_text(json.dumps({"args": meta, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
