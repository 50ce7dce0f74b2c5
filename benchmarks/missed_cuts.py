"""What a scene cut costs when the detector misses it: the real model across joined development clips.

The scene-cut detector uses image statistics only (docs/alignment.md "Scene cuts"); on the
development clips it misses 8 of 182 joins between different clips (`benchmarks/scene_cuts.py`).
This measures what such a miss costs with the bundled model: two development sequences with ground
truth are joined (held-out renders of `alignment_dev.py`, and HoloLens resized to the renders'
240x320 where `../shared/evaldata` is there; 7-Scenes, the acceptance set, is not used), and the
causal pipeline runs over the join twice: with the detector (the default) and with
`scene_cut_threshold: 0` (the cut missed: the stream's alignment, anchor frame and windows carry on
across it). The second clip's frames are scored on their own with the papers' protocol (one affine
for those frames), and compared with the second clip run alone. For the missed cut it also prints
whether the fit health saw it: the largest `residual` of the windows within one window length of
the join against the largest of the earlier windows.

    .venv/bin/python benchmarks/missed_cuts.py --json out/missed_cuts.json   # ~6 min on 2 cores
    .venv/bin/python benchmarks/missed_cuts.py --renders 2 --frames 24       # quick
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from vdepth_ros.eval.datasets import EvalSequence, load_dataset
from vdepth_ros.eval.metrics import evaluate_sequence
from vdepth_ros.eval.runs import run_stream
from vdepth_ros.paths import evaldata_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alignment_dev import (  # the same development set
    RENDER_MAX_DEPTH,
    bundled_engine,
    observed_stream,
    render_sequences,
)

SIZE = (240, 320)  # the renders' (h, w); HoloLens is resized to it


def _resized(seq: EvalSequence, frames: int) -> EvalSequence:
    """`seq`'s first `frames` frames at `SIZE` (nearest for the depth, area for the images)."""
    h, w = SIZE
    rgb = np.stack([cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA) for x in seq.rgb[:frames]])
    depth = np.stack([cv2.resize(d, (w, h), interpolation=cv2.INTER_NEAREST) for d in seq.depth[:frames]])
    return EvalSequence(seq.name, rgb, depth, seq.intrinsics, seq.intrinsics, None, RENDER_MAX_DEPTH)


def joined(a: EvalSequence, b: EvalSequence) -> EvalSequence:
    """`a` then `b` as one sequence (a's intrinsics; the protocol used here does not read them)."""
    rgb, depth = np.concatenate([a.rgb, b.rgb]), np.concatenate([a.depth, b.depth])
    return EvalSequence(f"{a.name}+{b.name}", rgb, depth, a.intrinsics, a.intrinsics, None, RENDER_MAX_DEPTH)


def join_residual(pipe, frames: list, join: int) -> tuple[float, float]:
    """With the cut missed, the fit-health residual (`FitInfo.residual`): the largest of the windows
    whose output starts within one window length of the join, and the largest of the earlier ones
    (the first clip alone; the stream's first window has none)."""
    first: dict[int, tuple[int, float]] = {}  # window -> (its first output frame, its residual)
    for f in frames:
        first.setdefault(f.fit.window, (f.index, f.fit.residual))
    near = [r for i, r in first.values() if abs(i - join) < pipe.window]
    before = [r for w, (i, r) in first.items() if w > 0 and i <= join - pipe.window]
    return max(near, default=float("nan")), max(before, default=float("nan"))


def score_join(engine, a: EvalSequence, b: EvalSequence) -> dict:
    """The second clip's AbsRel / δ1 with the detector, with the cut missed, and run alone."""
    seq, n = joined(a, b), a.num_frames
    row: dict = {"join": seq.name}
    for name, params in (("detected", {}), ("missed", {"scene_cut_threshold": 0.0})):
        disp, pipe, frames = observed_stream(engine, seq, params=params)
        m = evaluate_sequence(disp[n:], b.depth, b.max_depth)
        row[name] = [m.abs_rel, m.delta1]
        if name == "detected":
            row["cuts_detected"] = pipe.stats.scene_cuts
        else:
            row["residual_at_join"], row["residual_max_before"] = join_residual(pipe, frames, n)
    m = evaluate_sequence(run_stream(engine, b), b.depth, b.max_depth)
    row["alone"] = [m.abs_rel, m.delta1]
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--renders", type=int, default=6, help="renders, joined in pairs (both orders)")
    ap.add_argument("--frames", type=int, default=64, help="frames per clip")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    engine = bundled_engine()
    t0, load0 = time.perf_counter(), os.getloadavg()
    renders = render_sequences(args.renders, args.frames, *SIZE, "rich")
    pairs = [(renders[k], renders[k + 1]) for k in range(0, len(renders) - 1, 2)]
    root = evaldata_dir()
    if root is not None:
        pairs.append((_resized(load_dataset("hololens", root)[0], args.frames), renders[0]))
    pairs += [(b, a) for a, b in pairs]
    rows = []
    for a, b in pairs:
        row = score_join(engine, a, b)
        rows.append(row)
        print(
            f"{row['join']:34s} cuts detected {row['cuts_detected']}  second clip AbsRel/δ1: "
            + "  ".join(f"{k} {row[k][0]:.4f}/{row[k][1]:.4f}" for k in ("detected", "missed", "alone"))
            + f"  missed: residual near the join {row['residual_at_join']:.3f}"
            + f", largest before {row['residual_max_before']:.3f}",
            flush=True,
        )
    d = np.array([[r["missed"][0] - r["detected"][0], r["missed"][1] - r["detected"][1]] for r in rows])
    print(
        f"\nmissed - detected, second clip: AbsRel {d[:, 0].mean():+.4f} mean ({d[:, 0].min():+.4f} .. "
        f"{d[:, 0].max():+.4f}), δ1 {d[:, 1].mean():+.4f} mean ({d[:, 1].min():+.4f} .. {d[:, 1].max():+.4f}); "
        f"missed worse in δ1 on {int(np.sum(d[:, 1] < 0))} of {len(rows)} joins"
    )
    above = sum(r["residual_at_join"] > r["residual_max_before"] for r in rows)
    print(f"missed cut: fit-health residual near the join above every earlier window's on {above} of {len(rows)}")
    print(f"({time.perf_counter() - t0:.0f} s, load average {load0} -> {os.getloadavg()})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"renders": args.renders, "frames": args.frames, "loadavg": [load0, os.getloadavg()]}
        args.json.write_text(json.dumps({"args": meta, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
