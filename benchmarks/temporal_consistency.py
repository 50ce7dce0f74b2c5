"""Does the ground-truth-free flicker metric (`vdepth-flicker`) rank methods as the papers' TAE does?

`vdepth_ros.consistency.flow_warping_error` needs only the images, so users can measure flicker on
their own recordings; TAE (the papers' temporal metric) needs GT camera poses. On real RGB-D video
with GT (7-Scenes, HoloLens from `../shared/evaldata`, when present) and held-out renders of our
generator (seeds 990001..), this runs the bundled model as offline pass, causal stream ("graph" and
"keyframe" alignment) and one frame at a time (T = 1), scores each with the papers' protocol, and
reports TAE and the flow warping error of the same aligned depth, plus the GT depth's own flow
warping error (the floor the camera's motion and the flow's errors leave). It chooses nothing.

    .venv/bin/python benchmarks/temporal_consistency.py [--renders 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from vdepth_ros.consistency import flow_warping_error
from vdepth_ros.eval.datasets import EvalSequence, load_dataset
from vdepth_ros.eval.metrics import aligned_depth, evaluate_sequence, valid_mask
from vdepth_ros.eval.runs import _single_frame_engine, run_offline, run_per_frame, run_stream
from vdepth_ros.paths import default_model_dir, evaldata_dir
from vdepth_ros.runtime import create_engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alignment_dev import render_sequences

METHODS = ("offline", "stream graph", "stream keyframe", "per-frame (T=1)")


def score(engine, single, seq: EvalSequence) -> dict:
    """TAE and flow warping error per method on one sequence (aligned by the protocol's fit)."""
    gt = np.where(valid_mask(seq.depth, seq.max_depth), seq.depth, np.nan)
    row = {"sequence": seq.name, "gt_flow_warping_error": flow_warping_error(seq.rgb, gt)}
    preds = {
        "offline": run_offline(engine, seq),
        "stream graph": run_stream(engine, seq, params={"alignment": "graph"}),
        "stream keyframe": run_stream(engine, seq, params={"alignment": "keyframe"}),
        "per-frame (T=1)": run_per_frame(single, seq),
    }
    for name, pred in preds.items():
        m = evaluate_sequence(pred, seq.depth, seq.max_depth, intrinsics=seq.intrinsics, poses=seq.poses)
        depth = aligned_depth(np.nan_to_num(pred), m.scale, m.shift, seq.max_depth)
        row[name] = {"abs_rel": m.abs_rel, "tae": m.tae, "flow_warping_error": flow_warping_error(seq.rgb, depth)}
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--renders", type=int, default=8)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    model = default_model_dir()
    engine = create_engine(model, backend="onnxruntime")
    single = _single_frame_engine(model, engine)
    seqs: list[EvalSequence] = []
    root = evaldata_dir()
    if root is None:
        print("evaldata not found: real sequences skipped", file=sys.stderr)
    else:
        seqs += load_dataset("7scenes", root, frames=300, stride=2) + load_dataset("hololens", root)
    seqs += render_sequences(args.renders, 96, 240, 320, "rich")
    rows = [score(engine, single, s) for s in seqs]
    print("flow warping error (FWE, no GT needed) and TAE x100 (GT poses) of the same aligned depth")
    print(f"{'sequence':24s} {'GT FWE':>7s}  " + "  ".join(f"{m:>24s}" for m in METHODS))
    print(f"{'':24s} {'':>7s}  " + "  ".join(f"{'FWE / TAE':>24s}" for _ in METHODS))
    for r in rows:
        cells = "  ".join(f"{r[m]['flow_warping_error']:>13.4f} / {r[m]['tae']:>8.3f}" for m in METHODS)
        print(f"{r['sequence']:24s} {r['gt_flow_warping_error']:7.4f}  {cells}")
    # agreement: for every sequence and pair of methods, do FWE and TAE order them the same way?
    agree = total = 0
    per_frame_worst = 0
    for r in rows:
        for i, a in enumerate(METHODS):
            for b in METHODS[i + 1 :]:
                da = r[a]["flow_warping_error"] - r[b]["flow_warping_error"]
                dt = r[a]["tae"] - r[b]["tae"]
                total += 1
                agree += int(np.sign(da) == np.sign(dt))
        per_frame_worst += int(max(METHODS, key=lambda m: r[m]["flow_warping_error"]) == "per-frame (T=1)")
    print(f"pairs of methods ordered alike by FWE and TAE: {agree} of {total}")
    print(f"sequences where FWE finds the per-frame run the most flickery: {per_frame_worst} of {len(rows)}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "agree": agree, "pairs": total}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
