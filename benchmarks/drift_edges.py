"""Which edges carry the stream's error under `stream_drift.py`'s per-window errors (issue #26).

Runs the causal stream (`alignment: graph`) of `stream_drift.py` on one schedule, error kind and
seed, records every pairwise edge the graph aligner adds in the first segment (before the first
cut), and compares each edge and each window's solved affine with the best per-window affines
(each window's raw output fitted to the GT by least squares: reads the GT, a reference, not a
method). An edge's error is read where it matters, at the window's median raw disparity `m`:
`log((a m + b) / (true a m + true b))`, with the true relation between two windows the one their
best affines imply; a window's error is its solved affine against its best affine at `m`, in
window 0's frame. Printed per edge kind (`anchor`: to the consensus of the anchor frame; `prevK`:
to the window K back), standard deviation and mean over the windows from the third on, and the
median relative standard error the solve weighs each kind with.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/drift_edges.py --schedule vda_32_10 --seeds 0,1,2,3,4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stream_drift as sd

from vdepth_ros.stream import graph


def record_edges(world: sd.World, schedule: dict) -> list[tuple]:
    """(segment, window, slots, edges ending at the window, solved affine) for every window."""
    rec: list[tuple] = []
    segment = [0]
    add, reset = graph.CausalGraphAligner.add, graph.CausalGraphAligner.reset

    def recording_add(self, window, disparity):
        fit = add(self, window, disparity)
        rec.append(
            (segment[0], window.index, tuple(window.slots), [e for e in self._edges if e.later == window.index], fit)
        )
        return fit

    def counting_reset(self):
        segment[0] += 1
        return reset(self)

    graph.CausalGraphAligner.add, graph.CausalGraphAligner.reset = recording_add, counting_reset
    try:
        sd.run_method(world, schedule, "causal")
    finally:
        graph.CausalGraphAligner.add, graph.CausalGraphAligner.reset = add, reset
    first = min(r[0] for r in rec)
    return [r for r in rec if r[0] == first]


def edge_errors(world: sd.World, rec: list[tuple]) -> dict[str, list[tuple[float, float]]]:
    """Per edge kind (and `solved`), (error at the window's median disparity, relative SE)."""
    best, median = {}, {}
    for _, k, slots, _, _ in rec:
        idx = np.array(slots)
        disp, gt = world.window(idx), world.gt[idx]
        ok = np.isfinite(disp) & (gt > 0)
        x = disp[ok].astype(np.float64)
        best[k] = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), gt[ok], rcond=None)[0]
        median[k] = float(np.nanmedian(disp))
    out: dict[str, list[tuple[float, float]]] = {}
    a0, b0 = best[0]
    for _, k, _, edges, fit in rec:
        if k < 2:
            continue
        m, (aj, bj) = median[k], best[k]
        for e in edges:
            ai, bi = best[e.earlier]
            value = e.fit.scale * m + e.fit.shift
            kind = "anchor" if e.earlier == 0 else f"prev{k - e.earlier}"
            out.setdefault(kind, []).append((np.log(value / ((aj * m + bj - bi) / ai)), e.fit.scale_se / e.fit.scale))
        solved = (fit.scale * m + fit.shift) * a0 + b0
        out.setdefault("solved", []).append((np.log(solved / (aj * m + bj)), np.nan))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--schedule", default="vda_32_10", choices=list(sd.SCHEDULES))
    ap.add_argument("--errors", default="structured", choices=list(sd.ERRORS))
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--size", default="128x96")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    seqs = sd.load_sequences((w, h), ["hololens", "synthetic"])
    if len(seqs) < 2:
        seqs = [sd._normalise(sd.synthetic_depth(240, (w, h), variant=1), "synthetic2"), *seqs]
    for seed in (int(s) for s in args.seeds.split(",")):
        world = sd.World(seqs[0], seqs[1], args.frames, args.errors, seed)
        errors = edge_errors(world, record_edges(world, sd.SCHEDULES[args.schedule]))
        parts = []
        for kind in sorted(errors, key=lambda k: (k == "solved", k)):
            v = np.array(errors[kind])
            se = "" if kind == "solved" else f", SE {np.median(v[:, 1]):.3f}"
            parts.append(f"{kind} sd {v[:, 0].std():.4f} mean {v[:, 0].mean():+.4f}{se}")
        print(f"{args.schedule} {args.errors} seed {seed}, first segment: " + "; ".join(parts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
