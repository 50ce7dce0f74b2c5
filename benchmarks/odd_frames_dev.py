"""Single wrong frames in a window (`stream.odd_frames`) on the development data: how many clean frames
the check names (false alarms), and what it does to accuracy when one frame of some windows is wrong.

Runs the causal `DepthPipeline` (bundled model, ONNX Runtime, its default `graph` alignment) on HoloLens
and held-out renders (`alignment_dev.development_sequences`; 7-Scenes never), with the check and
without it (`odd_frames` replaced by one that names nothing), on the model's own output ("clean") and
with one frame of every `--every`-th window made wrong ("injected": that frame's disparity times 1.8
plus its median, a flash the model got wrong alone; the window's last frame, which the next window
re-runs, fits to and blends), and reports per case the frames injected and named, and mean AbsRel and δ1
(the papers' protocol) over the frames not injected (what a wrong frame does to the rest of the stream;
the protocol would score a NaN frame as the worst estimate) and over the injected ones::

    .venv/bin/python benchmarks/odd_frames_dev.py --json out/odd_frames_dev.json

(~4 min on 2 shared cores with `--renders 4`.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alignment_dev import bundled_engine, development_sequences

from vdepth_ros import pipeline_windows
from vdepth_ros.eval.metrics import evaluate_sequence
from vdepth_ros.eval.runs import run_stream


class _Injecting:
    """The engine, with the last frame of every `every`-th window made wrong (`frames`: their indices)."""

    def __init__(self, engine, every: int) -> None:
        self.engine, self.every, self.calls, self.frames = engine, every, 0, set()

    def __getattr__(self, name):
        return getattr(self.engine, name)

    supports_reuse = True  # so the pipeline gives each window's frame ids (passed on where the engine reuses)

    def infer(self, frames, frame_ids=None):
        inner = self.engine
        reuse = getattr(inner, "supports_reuse", False) or getattr(inner, "streams", False)
        out = np.array(inner.infer(frames, frame_ids=frame_ids) if reuse else inner.infer(frames), dtype=np.float32)
        self.calls += 1
        if self.every and self.calls % self.every == 0:
            p = len(out) - 1
            out[p] = 1.8 * out[p] + float(np.nanmedian(out[p]))
            self.frames.add(frame_ids[p])
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renders", type=int, default=4)
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--every", type=int, default=5, help="injected: one wrong frame in every N-th window")
    parser.add_argument("--cases", default="clean,injected", help="clean (false alarms), injected, or both")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    engine = bundled_engine()
    seqs = development_sequences(args.renders, args.frames)
    check = pipeline_windows.odd_frames
    named: list[int] = []

    def counting(disparity, slots):
        found = check(disparity, slots)
        named.append(len(found))
        return found

    results: dict = {}
    cases = [(c, {"clean": 0, "injected": args.every}[c]) for c in args.cases.split(",")]
    for case, every in cases:
        for detector in ("on", "off"):
            pipeline_windows.odd_frames = counting if detector == "on" else lambda d, s: []
            rows = []
            for seq in seqs:
                named.clear()
                engine_run = _Injecting(engine, every)
                disp = run_stream(engine_run, seq)
                wrong = np.isin(np.arange(len(disp)), sorted(engine_run.frames))[:, None, None]
                m = evaluate_sequence(disp, np.where(wrong, 0.0, seq.depth), seq.max_depth)  # 0: not scored
                row = {"sequence": seq.name, "abs_rel": m.abs_rel, "delta1": m.delta1, "named": sum(named)}
                if wrong.any():
                    m = evaluate_sequence(np.nan_to_num(disp, nan=0.0), np.where(wrong, seq.depth, 0.0), seq.max_depth)
                    row |= {"injected_abs_rel": m.abs_rel, "injected_delta1": m.delta1}
                rows.append({**row, "injected": len(engine_run.frames)})
            pipeline_windows.odd_frames = check
            summary = {
                "abs_rel": float(np.mean([r["abs_rel"] for r in rows])),
                "delta1": float(np.mean([r["delta1"] for r in rows])),
                "frames_named": int(sum(r["named"] for r in rows)),
                "frames_injected": int(sum(r["injected"] for r in rows)),
                "injected_abs_rel": float(np.mean([r.get("injected_abs_rel", np.nan) for r in rows])),
                "injected_delta1": float(np.mean([r.get("injected_delta1", np.nan) for r in rows])),
                "rows": rows,
            }
            results[f"{case}/{detector}"] = summary
            print(
                f"{case:8s} check {detector:3s}: AbsRel {summary['abs_rel']:.4f} δ1 {summary['delta1']:.4f} (injected "
                f"frames: {summary['injected_abs_rel']:.4f} / {summary['injected_delta1']:.4f})  "
                f"frames injected {summary['frames_injected']}, named {summary['frames_named']} "
                f"(per sequence: {[r['named'] for r in rows]})",
                flush=True,
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
