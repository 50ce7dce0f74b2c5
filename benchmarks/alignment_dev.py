"""Stream alignment strategies on the development data: accuracy and distance to the offline pass.

Runs the real `DepthPipeline` (bundled default model unless `--model`) on the development set only:
HoloLens (`../shared/evaldata`, when present) and held-out renders of our generator (seeds
990001.., outside every training range; `vdepth_training` must be installed). For each sequence it
scores, with the papers' protocol (`vdepth_ros.eval.metrics.evaluate_sequence`), the offline pass
and the causal stream under each `--alignments` value, and reports per set the mean AbsRel, δ1,
TAE (flicker, with the GT poses) and the mean per-sequence |δ1(stream) - δ1(offline)|. 7-Scenes, the acceptance set, is
deliberately not offered: choose here, then report with `vdepth-eval`.

This is the comparison behind the bundled model's "graph" default (docs/alignment.md)::

    .venv/bin/python benchmarks/alignment_dev.py --json out/alignment_dev.json

(~5 min on 2 cores: 16 renders of 96 frames at 240x320, style "rich", plus HoloLens 120 frames.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from vdepth_ros.eval.datasets import EvalSequence, load_dataset
from vdepth_ros.eval.metrics import evaluate_sequence
from vdepth_ros.eval.runs import run_offline, run_stream
from vdepth_ros.paths import default_model_dir, evaldata_dir

FIRST_SEED = 990_001  # held out: training renders use seeds < 10 000
RENDER_MAX_DEPTH = 10.0  # the indoor cap of the protocol (renders include some yards beyond it)


def render_sequences(count: int, frames: int, height: int, width: int, style: str) -> list[EvalSequence]:
    """`count` held-out renders as evaluation sequences (GT depth 0 where the ray hit nothing)."""
    try:
        from vdepth_training.data.synthetic import render_clip
    except ImportError as err:  # the training extra is not installed
        raise SystemExit(f"renders need vdepth_training (pip install -e '.[train]'): {err}") from err
    out = []
    for k in range(count):
        clip = render_clip(FIRST_SEED + k, frames=frames, height=height, width=width, style=style)
        depth = np.where(np.isfinite(clip.depth), clip.depth, 0.0).astype(np.float32)
        name, K = f"render/{FIRST_SEED + k}", clip.intrinsics
        out.append(EvalSequence(name, clip.rgb, depth, K, K, clip.poses, RENDER_MAX_DEPTH))
    return out


def development_sequences(renders: int, frames: int = 96, hololens: bool = True) -> list[EvalSequence]:
    """HoloLens (where the evaluation data is, unless `hololens` is False), then `renders` held-out
    240x320 renders of `frames` frames: the development set of the stitching benchmarks."""
    root = evaldata_dir()
    seqs = load_dataset("hololens", root) if root is not None and hololens else []
    return seqs + render_sequences(renders, frames, 240, 320, "rich")


def bundled_engine():
    """The bundled model on ONNX Runtime, BLAS threads limited as the tools do."""
    from vdepth_ros.blas import limit_blas_threads_for_tool
    from vdepth_ros.runtime import create_engine

    limit_blas_threads_for_tool()
    return create_engine(str(default_model_dir()), backend="onnxruntime")


def observed_stream(engine, seq: EvalSequence, setup=None, **run_stream_kwargs) -> tuple[np.ndarray, Any, list]:
    """`eval.runs.run_stream`'s output, with the pipeline it ran and every frame that pipeline
    output (for its stats and fit health); `setup(pipe)` runs on the pipeline before the first frame."""
    from vdepth_ros.eval import runs

    make, seen = runs.make_pipeline, {}

    def observed(*args, **kwargs):
        pipe = seen["pipe"] = make(*args, **kwargs)
        if setup is not None:
            setup(pipe)
        frames, push, flush = seen.setdefault("frames", []), pipe.push, pipe.flush
        pipe.push = lambda fi: frames.extend(out := push(fi)) or out
        pipe.flush = lambda: frames.extend(out := flush()) or out
        return pipe

    runs.make_pipeline = observed
    try:
        disp = runs.run_stream(engine, seq, **run_stream_kwargs)
    finally:
        runs.make_pipeline = make
    return disp, seen["pipe"], seen["frames"]


def compare(engine, seqs: list[EvalSequence], alignments: list[str]) -> list[dict]:
    """One row per sequence: offline and each stream alignment, AbsRel and δ1."""
    rows = []
    for seq in seqs:
        row: dict = {"sequence": seq.name, "set": seq.name.split("/")[0]}
        kw = {"intrinsics": seq.intrinsics, "poses": seq.poses}
        m = evaluate_sequence(run_offline(engine, seq), seq.depth, seq.max_depth, **kw)
        row["offline"] = {"abs_rel": m.abs_rel, "delta1": m.delta1, "tae": m.tae}
        for al in alignments:
            m = evaluate_sequence(run_stream(engine, seq, {"alignment": al}), seq.depth, seq.max_depth, **kw)
            gap = m.delta1 - row["offline"]["delta1"]
            row[al] = {"abs_rel": m.abs_rel, "delta1": m.delta1, "tae": m.tae, "gap": gap}
        rows.append(row)
        print(
            f"{seq.name:18s} offline {row['offline']['abs_rel']:.4f}/{row['offline']['delta1']:.4f}  "
            + "  ".join(f"{al} {row[al]['abs_rel']:.4f}/{row[al]['delta1']:.4f}" for al in alignments),
            flush=True,
        )
    return rows


def summarise(rows: list[dict], alignments: list[str]) -> dict:
    """Per set and overall: mean AbsRel, δ1, TAE and |δ1 gap to offline| of each method."""
    out: dict = {}
    for name in [*sorted({r["set"] for r in rows}), "all"]:
        sel = [r for r in rows if name in ("all", r["set"])]
        out[name] = {"sequences": len(sel)}
        for method in ["offline", *alignments]:
            out[name][method] = {
                "abs_rel": float(np.mean([r[method]["abs_rel"] for r in sel])),
                "delta1": float(np.mean([r[method]["delta1"] for r in sel])),
                "tae": float(np.mean([r[method]["tae"] for r in sel])),
            }
            if method != "offline":
                out[name][method]["mean_abs_gap"] = float(np.mean([abs(r[method]["gap"]) for r in sel]))
    return out


def offline_goal(rows: list[dict], stream: str, tol: float = 0.0) -> dict:
    """Issue #26: offline at least as accurate as the causal stream on every sequence (AbsRel and δ1)."""
    worse = []
    for r in rows:
        d_absrel = r["offline"]["abs_rel"] - r[stream]["abs_rel"]  # > 0: offline worse
        d_delta1 = r["offline"]["delta1"] - r[stream]["delta1"]  # < 0: offline worse
        if d_absrel > tol or d_delta1 < -tol:
            worse.append((r["sequence"], d_absrel, d_delta1))
    return {"stream": stream, "sequences": len(rows), "worse": worse, "pass": not worse}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model folder (default: the bundled default model)")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--alignments", default="graph,keyframe")
    ap.add_argument("--renders", type=int, default=16)
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--size", default="240x320", help="render size HxW")
    ap.add_argument("--style", default="rich")
    ap.add_argument("--no-hololens", action="store_true")
    ap.add_argument(
        "--report-7scenes",
        action="store_true",
        help="also score the acceptance set (7-Scenes), printed apart: for reporting only, never for choosing",
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from vdepth_ros.blas import limit_blas_threads_for_tool
    from vdepth_ros.runtime import create_engine

    limit_blas_threads_for_tool()
    alignments = args.alignments.split(",")
    h, w = (int(v) for v in args.size.lower().split("x"))
    engine = create_engine(str(args.model or default_model_dir()), backend=args.backend)
    t0 = time.perf_counter()
    seqs: list[EvalSequence] = []
    root = evaldata_dir()
    if not args.no_hololens:
        if root is None:
            print("evaldata not found: HoloLens skipped", file=sys.stderr)
        else:
            seqs += load_dataset("hololens", root)
    seqs += render_sequences(args.renders, args.frames, h, w, args.style)
    rows = compare(engine, seqs, alignments)
    summary = summarise(rows, alignments)
    print("\nset        method     AbsRel   δ1      TAE x100  mean |δ1 gap to offline|")
    for name, res in summary.items():
        for method in ["offline", *alignments]:
            r = res[method]
            gap = f"{r['mean_abs_gap']:.4f}" if "mean_abs_gap" in r else "-"
            print(f"{name:10s} {method:10s} {r['abs_rel']:.4f}   {r['delta1']:.4f}  {r['tae']:8.3f}  {gap}")
    goal = offline_goal(rows, alignments[0])
    print(
        f"goal: offline >= stream ({alignments[0]}) on AbsRel and δ1 on every development sequence: "
        f"{'PASS' if goal['pass'] else 'FAIL'} ({goal['sequences'] - len(goal['worse'])}/{goal['sequences']})"
    )
    for name, d_absrel, d_delta1 in goal["worse"]:
        print(f"  offline worse on {name}: AbsRel {d_absrel:+.4f}, δ1 {d_delta1:+.4f}")
    acceptance: list[dict] = []
    if args.report_7scenes and root is not None:
        print("\nacceptance set (7-Scenes): reported only, nothing above was chosen by it")
        acceptance = compare(engine, load_dataset("7scenes", root), alignments)
    print(f"({time.perf_counter() - t0:.0f} s, load average {os.getloadavg()})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = vars(args) | {"json": str(args.json)}
        meta["loadavg"] = os.getloadavg()
        out = {"args": meta, "rows": rows, "summary": summary, "goal": goal, "acceptance_report_only": acceptance}
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
