"""How good are the metric points of `sparse_depth: pose`? `PoseTriangulator` against GT depth.

Runs `vdepth_ros.triangulate.PoseTriangulator` over real RGB-D video with its GT camera poses
(HoloLens and 7-Scenes from `../shared/evaldata`, when present) and over held-out renders of our
generator (seeds 990001.., which include moving objects), and reports per sequence the points per
frame, their relative depth error against the GT at the same pixel (median and 90th percentile) and
the CPU time per frame. No model is involved: this is the input the metric fit gets.

    .venv/bin/python benchmarks/triangulation_accuracy.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from vdepth_ros.eval.datasets import EvalSequence, load_dataset
from vdepth_ros.paths import evaldata_dir
from vdepth_ros.triangulate import PoseTriangulator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alignment_dev import render_sequences


def score(seq: EvalSequence) -> dict:
    """Points per frame, relative error at the GT grid, ms per frame for one sequence."""
    tri = PoseTriangulator()
    counts, errors = [], []
    t0 = time.process_time()
    for t in range(seq.num_frames):
        z = tri.push(seq.rgb[t], seq.poses[t], seq.rgb_intrinsics)
        ys, xs = np.nonzero(np.isfinite(z))
        counts.append(len(ys))
        gh, gw = seq.depth.shape[1:]
        gt = seq.depth[t][ys * gh // z.shape[0], xs * gw // z.shape[1]]  # the GT cell holding the pixel
        ok = np.isfinite(gt) & (gt > 0)
        errors.append(np.abs(z[ys, xs][ok] - gt[ok]) / gt[ok])
    ms = 1000 * (time.process_time() - t0) / seq.num_frames
    err = np.concatenate(errors) if errors else np.zeros(0)
    return {
        "sequence": seq.name,
        "size": list(seq.rgb.shape[1:3]),
        "points_per_frame_median": float(np.median(counts)),
        "frames_with_points": int(sum(c > 0 for c in counts)),
        "frames": seq.num_frames,
        "rel_error_median": float(np.median(err)) if err.size else None,
        "rel_error_p90": float(np.percentile(err, 90)) if err.size else None,
        "ms_per_frame": ms,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--renders", type=int, default=8)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    seqs: list[EvalSequence] = []
    root = evaldata_dir()
    if root is None:
        print("evaldata not found: real sequences skipped", file=sys.stderr)
    else:
        seqs += load_dataset("hololens", root) + load_dataset("7scenes", root, frames=300, stride=2)
    seqs += render_sequences(args.renders, 96, 240, 320, "rich")
    rows = [score(s) for s in seqs]
    print("sequence             size      points/frame  frames with points  rel. error median / p90   ms/frame")
    for r in rows:
        med = "-" if r["rel_error_median"] is None else f"{r['rel_error_median']:.3f} / {r['rel_error_p90']:.3f}"
        print(
            f"{r['sequence']:20s} {r['size'][1]}x{r['size'][0]:<5d} {r['points_per_frame_median']:10.0f}"
            f"  {r['frames_with_points']:5d} of {r['frames']:<5d}       {med:17s}  {r['ms_per_frame']:8.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
