"""Scale drift of window stitching on long sequences (issue #11).

A ground-truth disparity video (7-Scenes, HoloLens, or a synthetic scene) is looped back and forth
into a long sequence and cut into windows by `stream.WindowScheduler`. Every window's "model
output" is the GT of its slots times a random affine (scale 0.5-2, shift ±0.2) with 2 %
multiplicative pixel noise; with `--bursts`, 10 % of the windows also get a burst of outlier
pixels (a rectangle over ~16 % of every frame, random values). The windows are stitched and the
stitched stream is compared with the GT after **one** global least-squares (s, t) over the first
100 / 1000 / N frames:

    AbsRel@N = AbsRel of depth 1 / (s * stitched + t) against GT depth, mean over frames, with
               (s, t) one disparity-space least-squares fit over frames [0, N) (the papers'
               protocol, `vdepth_ros.eval.metrics`); burst pixels are excluded: they measure the
               fit, not the corrupted pixels themselves
    drift    = AbsRel@N - AbsRel@100

for the settled stream (every frame's final value) and, for `causal`, also for the stream as
first published with `publish="provisional"` (`drift_provisional`).

Methods: `causal` (Stitcher, symmetric robust fit), `graph` (Stitcher("graph"): the global solve
run causally over the last 8 windows), `offline` (GlobalAligner + global solve),
`chain_ols` (the papers' plain chained least squares: OLS, no robust weights, all pixels;
design-note calibration on 7-Scenes: about +0.041 drift, +0.26 with bursts), and for the VDA
schedule `keyframe_ols` (VDA's own recipe).

Usage:
    .venv/bin/python benchmarks/stream_drift.py [--frames 3000] [--size 128x96] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vdepth_ros.eval.metrics import aligned_depth, fit_disparity_affine, frame_metrics, valid_mask
from vdepth_ros.paths import evaldata_dir
from vdepth_ros.stream import (
    FitOptions,
    GlobalAligner,
    Stitcher,
    WindowScheduler,
)

VDA_KEYFRAMES = (0, 12, 24, 25, 26, 27, 28, 29, 30, 31)  # VDA / GemDepth infer_video_depth
SCHEDULES = {
    # DVD paper/eval: 45 frames, overlap 9, windows 4n+1, chained LS over the overlap.
    "dvd_45_9": {"window": 45, "overlap": 9, "schedule": "chain", "frames_rule": "4n+1"},
    # VDA/GemDepth: 32 frames, keyframes [0,12,24..31] (overlap 10, 8 blended frames).
    "vda_32_10": {"window": 32, "overlap": 10, "schedule": "keyframe", "keyframes": VDA_KEYFRAMES},
}
CHECKPOINTS = (100, 1000)
NO_MAX_DEPTH = 1e9  # GT is normalised disparity (relative units): no depth cap


@dataclass
class Sequence:
    name: str
    disparity: np.ndarray  # (N, H, W) float32, NaN invalid, normalised so its 99th percentile is 1


def _load_depth_pngs(paths: list[Path], invalid: set[int], size: tuple[int, int]) -> np.ndarray:
    import cv2

    out = []
    for p in paths:
        raw = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise FileNotFoundError(p)
        bad = np.isin(raw, list(invalid))
        depth = raw.astype(np.float32) / 1000.0
        depth[bad] = np.nan
        out.append(cv2.resize(depth, size, interpolation=cv2.INTER_NEAREST))
    return np.stack(out)


def _ping_pong(n_src: int, n: int) -> np.ndarray:
    """Frame order 0..n-1, n-2..1, 0.. (loop mirrored so there is no jump)."""
    period = np.r_[np.arange(n_src), np.arange(n_src - 2, 0, -1)]
    return np.resize(period, n)


def _normalise(depth: np.ndarray, name: str) -> Sequence:
    with np.errstate(divide="ignore", invalid="ignore"):
        disp = np.where(depth > 0, 1.0 / depth, np.nan).astype(np.float32)
    disp /= np.nanpercentile(disp, 99)
    return Sequence(name, disp)


def load_sequences(size: tuple[int, int], which: list[str]) -> list[Sequence]:
    root = evaldata_dir()
    seqs = []
    if "7scenes" in which and root is not None:
        paths = sorted((root / "7scenes_tsdf_fusion" / "data").glob("frame-*.depth.png"))
        seqs.append(_normalise(_load_depth_pngs(paths, {65535, 0}, size), "7scenes"))
    if "hololens" in which and root is not None:
        paths = sorted(
            (root / "dvmvs_hololens_000" / "sample-data" / "hololens-dataset" / "000" / "depth").glob("*.png")
        )
        seqs.append(_normalise(_load_depth_pngs(paths, {0}, size), "hololens"))
    if "synthetic" in which:
        seqs.append(_normalise(synthetic_depth(240, size), "synthetic"))
    if root is None and ("7scenes" in which or "hololens" in which):
        print("evaldata not found: real sequences skipped", file=sys.stderr)
    return seqs


def synthetic_depth(n: int, size: tuple[int, int]) -> np.ndarray:
    """A camera panning over a slanted floor with two moving spheres, metres `(n, H, W)`."""
    w, h = size
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    x, y = (u - w / 2) / (0.8 * w), (v - h / 2) / (0.8 * w)
    out = np.empty((n, h, w), np.float32)
    for i in range(n):
        ph = 2 * np.pi * i / n
        floor = np.where(y > -0.05, 1.2 / np.maximum(y + 0.25 + 0.05 * np.sin(ph), 0.05), 8.0)
        depth = np.minimum(floor, 6.0 + 2.0 * np.sin(3 * x + ph))
        for cx, cz, r in ((0.3 * np.sin(ph), 2.5, 0.5), (-0.4, 3.5 + np.cos(2 * ph), 0.7)):
            d2 = (x - cx / cz) ** 2 + (y / 1.0) ** 2
            inside = d2 < (r / cz) ** 2
            depth = np.where(inside, np.minimum(depth, cz - np.sqrt(np.maximum(r**2 - d2 * cz**2, 0))), depth)
        out[i] = depth
    return out


# -- corruption ---------------------------------------------------------------------------------
class Corruptor:
    """Window output = affine(GT of the slots) with noise and optional outlier bursts."""

    def __init__(
        self, gt: np.ndarray, order: np.ndarray, seed: int, bursts: bool, noise: float = 0.02, burst_rate: float = 0.1
    ) -> None:
        self.gt, self.order, self.bursts = gt, order, bursts
        self.noise, self.burst_rate = noise, burst_rate
        self.rng = np.random.default_rng(seed)
        self.burst_mask = np.zeros((len(order), *gt.shape[1:]), bool)  # per output frame

    def window(self, slots: tuple[int, ...], pad: int) -> np.ndarray:
        rng = self.rng
        a, b = rng.uniform(0.5, 2.0), rng.uniform(-0.2, 0.2)
        x = self.gt[self.order[list(slots)]]
        out = (a * x * (1.0 + self.noise * rng.standard_normal(x.shape, dtype=np.float32)) + b).astype(np.float32)
        if self.bursts and rng.random() < self.burst_rate:
            h, w = x.shape[1:]
            bh, bw = int(0.4 * h), int(0.4 * w)
            y0, x0 = rng.integers(0, h - bh), rng.integers(0, w - bw)
            out[:, y0 : y0 + bh, x0 : x0 + bw] = rng.uniform(0.0, 3.0, (len(slots), bh, bw)) * a + b
            for f in slots:
                self.burst_mask[f, y0 : y0 + bh, x0 : x0 + bw] = True
        if pad:
            out = np.concatenate([out, np.repeat(out[-1:], pad, axis=0)])
        return out


# -- stitching drivers ---------------------------------------------------------------------------
def make_scheduler(cfg: dict) -> WindowScheduler:
    return WindowScheduler(
        cfg["window"],
        cfg["overlap"],
        schedule=cfg["schedule"],
        keyframes=cfg.get("keyframes"),
        frames_rule=cfg.get("frames_rule", "any"),
    )


def stitch_causal(
    cfg: dict,
    n: int,
    corrupt: Corruptor,
    alignment: str,
    options: FitOptions,
    out: np.ndarray,
    first: np.ndarray | None = None,
) -> tuple[int, int]:
    """Returns (windows, degenerate fits); fills `out` with each frame's last (final) value and
    `first` (optional) with the value published first (publish="provisional")."""
    sched = make_scheduler(cfg)
    stitcher = Stitcher(alignment, options)  # type: ignore[arg-type]
    windows = 0
    seen = -1

    def run(w) -> None:
        nonlocal seen
        raw = corrupt.window(w.slots, w.pad)
        for sf in stitcher.add(w, raw):
            out[sf.index] = sf.disparity
            if first is not None and sf.index > seen:
                first[sf.index] = sf.disparity
                seen = sf.index
        if stitcher.anchor is not None and stitcher.anchor != sched.anchor:
            sched.set_anchor(stitcher.anchor)

    for _ in range(n):
        sched.add_frame()
        while (w := sched.next_window()) is not None:
            run(w)
            windows += 1
    while (w := sched.next_window(final=True)) is not None:
        run(w)
        windows += 1
    for sf in stitcher.finish():
        out[sf.index] = sf.disparity
        if first is not None and sf.index > seen:
            first[sf.index], seen = sf.disparity, sf.index
    return windows, stitcher.degenerate_fits


def stitch_offline(cfg: dict, n: int, corrupt: Corruptor, options: FitOptions, out: np.ndarray) -> tuple[int, int]:
    """Global solve; window outputs are kept in RAM here (the pipeline spills them to disk)."""
    windows = make_scheduler(cfg).plan(n)
    aligner = GlobalAligner(options)
    raw = []
    for w in windows:
        d = corrupt.window(w.slots, w.pad)
        aligner.add(w, d)
        raw.append(d)
    fits = aligner.solve()
    stitcher = Stitcher("keyframe" if cfg["schedule"] == "keyframe" else "chain_ls", options)
    for w, d, fit in zip(windows, raw, fits, strict=True):
        for sf in stitcher.add(w, d, affine=fit):
            out[sf.index] = sf.disparity
    for sf in stitcher.finish():
        out[sf.index] = sf.disparity
    return len(windows), sum(e.fit.degenerate for e in aligner.edges)


def absrel_after_global_fit(pred: np.ndarray, gt: np.ndarray, exclude: np.ndarray) -> float:
    """AbsRel (depth, mean over frames) after one disparity-space LS (s, t) over all frames.

    The papers' protocol, from `vdepth_ros.eval.metrics`; `gt` is GT *disparity*, `exclude`
    marks pixels left out (outlier bursts).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        gt_depth = np.where(gt > 0, 1.0 / gt, np.nan)
    valid = valid_mask(gt_depth, NO_MAX_DEPTH) & np.isfinite(pred) & ~exclude
    scale, shift = fit_disparity_affine(pred, gt_depth, valid)
    per_frame = []
    for k in range(len(pred)):
        m = frame_metrics(aligned_depth(pred[k], scale, shift, NO_MAX_DEPTH), gt_depth[k], valid[k])
        if m is not None:
            per_frame.append(m[0])
    return float(np.mean(per_frame))


def run_case(
    seq: Sequence,
    sched_name: str,
    method: str,
    bursts: bool,
    n: int,
    seed: int,
    noise: float = 0.02,
    burst_rate: float = 0.1,
) -> dict:
    cfg = SCHEDULES[sched_name]
    order = _ping_pong(len(seq.disparity), n)
    corrupt = Corruptor(seq.disparity, order, seed, bursts, noise, burst_rate)
    out = np.full((n, *seq.disparity.shape[1:]), np.nan, np.float32)
    t0 = time.perf_counter()
    # The papers: closed-form OLS over all overlap pixels, fallback only when det == 0.
    plain = FitOptions(method="ols", robust="none", max_points=0, min_correlation=0.0)
    first = None
    if method == "causal":
        alignment = "keyframe" if cfg["schedule"] == "keyframe" else "chain_ls"
        first = np.full_like(out, np.nan)
        windows, degenerate = stitch_causal(cfg, n, corrupt, alignment, FitOptions(), out, first)
    elif method == "graph":  # the offline solve run causally (fixed lag), as the pipeline's "graph"
        first = np.full_like(out, np.nan)
        windows, degenerate = stitch_causal(cfg, n, corrupt, "graph", FitOptions(), out, first)
    elif method == "offline":
        windows, degenerate = stitch_offline(cfg, n, corrupt, FitOptions(), out)
    elif method == "chain_ols":
        chain_cfg = {k: v for k, v in cfg.items() if k != "keyframes"} | {"schedule": "chain"}
        windows, degenerate = stitch_causal(chain_cfg, n, corrupt, "chain_ls", plain, out)
    elif method == "keyframe_ols":
        windows, degenerate = stitch_causal(cfg, n, corrupt, "keyframe", plain, out)
    else:
        raise ValueError(method)
    seconds = time.perf_counter() - t0
    gt = seq.disparity[order]
    res = {"sequence": seq.name, "schedule": sched_name, "method": method, "bursts": bursts, "frames": n}
    for c in (*[c for c in CHECKPOINTS if c < n], n):
        res[f"absrel@{c}"] = absrel_after_global_fit(out[:c], gt[:c], corrupt.burst_mask[:c])
    res["drift"] = res[f"absrel@{n}"] - res["absrel@100"]
    if first is not None:  # the stream as published with publish="provisional"
        prov = [absrel_after_global_fit(first[:c], gt[:c], corrupt.burst_mask[:c]) for c in (100, n)]
        res["drift_provisional"] = prov[1] - prov[0]
    res.update(windows=windows, degenerate_fits=degenerate, seconds=round(seconds, 2))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--size", default="128x96", help="working resolution WxH of the GT (full: 640x480)")
    ap.add_argument("--sequences", default="7scenes,hololens,synthetic")
    ap.add_argument("--schedules", default=",".join(SCHEDULES))
    ap.add_argument("--methods", default="causal,graph,offline,chain_ols")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", type=float, default=0.02, help="multiplicative pixel noise (default 2 %%)")
    ap.add_argument("--burst-rate", type=float, default=0.1, help="fraction of windows with a burst (default 10 %%)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    seqs = load_sequences((w, h), args.sequences.split(","))
    rows = []
    for seq in seqs:
        for sched in args.schedules.split(","):
            for bursts in (False, True):
                for method in args.methods.split(","):
                    row = run_case(seq, sched, method, bursts, args.frames, args.seed, args.noise, args.burst_rate)
                    rows.append(row)
                    print(
                        f"{row['sequence']:10s} {sched:10s} {method:12s} bursts={int(bursts)} "
                        f"absrel@100={row['absrel@100']:.4f} absrel@{args.frames}={row[f'absrel@{args.frames}']:.4f} "
                        f"drift={row['drift']:+.4f} degenerate={row['degenerate_fits']} ({row['seconds']:.1f} s)"
                        + (
                            f" provisional-stream drift={row['drift_provisional']:+.4f}"
                            if "drift_provisional" in row
                            else ""
                        ),
                        flush=True,
                    )
    goals = {"causal": 0.005, "graph": 0.005, "offline": 0.002}
    print("\nmethod       max drift (goal)")
    summary = {}
    for method in args.methods.split(","):
        drifts = [r["drift"] for r in rows if r["method"] == method]
        drifts += [r["drift_provisional"] for r in rows if r["method"] == method and "drift_provisional" in r]
        if drifts:
            summary[method] = max(drifts)
            goal = goals.get(method)
            verdict = "" if goal is None else (" PASS" if max(drifts) <= goal else " FAIL")
            print(f"{method:12s} {max(drifts):+.4f} ({goal if goal else '-'}){verdict}")
    if "chain_ols" in summary:
        for bursts in (False, True):
            means = {
                m: np.mean([r["drift"] for r in rows if r["method"] == m and r["bursts"] == bursts]) for m in summary
            }
            print(f"mean drift, bursts={int(bursts)}: " + ", ".join(f"{m} {v:+.4f}" for m, v in means.items()))
    if args.json:
        args.json.write_text(
            json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows, "max_drift": summary}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
