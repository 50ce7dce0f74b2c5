"""Per-window spatial corrections on top of the graph affines, on the development data (issue #26).

The model's errors within a window are smooth fields over the image, and in the frames two windows
share the *difference* of their fields is observable. This experiment fits, per window, a smooth
multiplicative field `exp(g(x, y))` (basis `tilt`: x, y; `quad`: x, y, xy, x², y²; `grid3`: a 3x3
bilinear grid; all zero-mean over the image, so the window's scale stays the affine's) on top of
the graph's scale and shift, and stitches the windows with it:

* `stream+F` (causal): each new window's field is fitted on the frames it shares with the previous
  two windows, against their corrected and aligned output (robust least squares of the log ratio on
  the basis, after a fit of the affine), shrunk towards 0 by a ridge `lam` (relative to the edge
  weight, so independent per-window fields average out instead of window 0's being inherited);
  the graph aligner then fits the corrected window (`CausalGraphAligner`, lag 8);
* `offline+F`: the fixed-lag smoother (`OFFLINE_LAG`) on the corrected windows, the fields solved
  jointly over all windows (`g_j - g_i = G_ij` on every pair of windows sharing frames, plus the
  ridge), two rounds;
* `gt_fit`, `gt_fit+F` (not methods: they read the GT): each window's affine, and its affine and
  field, fitted to the GT: what per-window correction could reach.

Every estimator stitches the same recorded model windows (`offline_estimators.record`; cached in
`--cache`), scored with the papers' protocol. Development set only (HoloLens and 16 held-out renders;
7-Scenes never)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/spatial_corrections.py --json out/spatial.json

(`--no-gt` skips the GT fits, the slow part; `--debias` adds the offline solve with the mean pair
difference per window distance removed.) `--synthetic` runs the same estimators on
`stream_drift.py`'s structured errors instead (fields constant over a window's frames: the case
the corrections model). Not kept: it helps there and hurts on the model's windows
(docs/alignment.md, "Why the offline solve is not better on every sequence").
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

from vdepth_ros.eval.metrics import evaluate_sequence
from vdepth_ros.stream.align import FitOptions, align_scale_shift
from vdepth_ros.stream.graph import OFFLINE_LAG, CausalGraphAligner, frame_samples

sys.path.insert(0, str(Path(__file__).resolve().parent))
from offline_estimators import gt_affines, record, stitch, stream_affines


# -- basis ------------------------------------------------------------------------------------
def basis(kind: str, h: int, w: int, idx: np.ndarray | None = None) -> np.ndarray:
    """`(P, m)` zero-mean (over the whole image) basis at flat pixel indices `idx` (all: None)."""
    yy, xx = np.mgrid[0:h, 0:w]
    x = (xx.ravel() / max(w - 1, 1)) * 2 - 1
    y = (yy.ravel() / max(h - 1, 1)) * 2 - 1
    if kind == "tilt":
        cols = [x, y]
    elif kind == "quad":
        cols = [x, y, x * y, x * x, y * y]
    elif kind == "grid3":
        cols = []
        for cy in (-1.0, 0.0, 1.0):
            for cx in (-1.0, 0.0, 1.0):
                cols.append(np.maximum(0, 1 - np.abs(x - cx)) * np.maximum(0, 1 - np.abs(y - cy)))
        cols = cols[:-1]  # the tents sum to 1: drop one, the constant is the affine's
    else:
        raise ValueError(kind)
    b = np.stack(cols, 1)
    b -= b.mean(0)
    return b if idx is None else b[idx]


def sample_index(h: int, w: int, per_frame: int) -> np.ndarray:
    """The flat pixel indices `frame_samples` keeps."""
    n = h * w
    step = -(-n // per_frame) if per_frame and n > per_frame else 1
    return np.arange(0, n, step)


def fit_field(cur: np.ndarray, ref: np.ndarray, B: np.ndarray, options: FitOptions, rounds: int = 2):
    """`ref ≈ A cur exp(B g) + C` on samples `(k, P)` of k shared frames: returns (g, weight)."""
    k = cur.shape[0]
    Bk = np.tile(B, (k, 1))
    c, r = cur.ravel().astype(np.float64), ref.ravel().astype(np.float64)
    g = np.zeros(B.shape[1])
    fit = None
    for _ in range(rounds):
        corr = c * np.exp(Bk @ g)
        fit = align_scale_shift(corr.reshape(cur.shape), ref, options=options)
        if fit.degenerate or fit.scale <= 0:
            return np.zeros(B.shape[1]), 0.0
        num, den = r - fit.shift, fit.scale * c
        ok = np.isfinite(num) & np.isfinite(den) & (num > 0) & (den > 0)
        if ok.sum() < 64:
            return np.zeros(B.shape[1]), 0.0
        z = np.log(num[ok] / den[ok])
        X = np.concatenate([Bk[ok], np.ones((ok.sum(), 1))], 1)
        wts = np.ones(ok.sum())
        for _ in range(3):  # Tukey IRLS on the log ratio
            sw = np.sqrt(wts)
            beta = np.linalg.lstsq(X * sw[:, None], z * sw, rcond=None)[0]
            res = z - X @ beta
            sig = 1.4826 * np.median(np.abs(res)) + 1e-9
            u = res / (4.685 * sig)
            wts = np.where(np.abs(u) < 1, (1 - u * u) ** 2, 0.0)
        g = beta[:-1]
    se = fit.scale_se / max(fit.scale, 1e-12)
    return g, 1.0 / max(se, 1e-6) ** 2


# -- estimators -------------------------------------------------------------------------------
OUTPUT_ONLY = True  # fit fields on frames both windows output (not the anchor / older context slots)


def shared_frames(prev, win) -> list[tuple[int, int]]:
    """(slot in prev, slot in win) of the frames the two windows share."""
    ppos = {f: p for p, f in reversed(list(enumerate(prev.slots))) if not OUTPUT_ONLY or p >= prev.n_context}
    pos = {f: p for p, f in reversed(list(enumerate(win.slots))) if not OUTPUT_ONLY or p >= win.n_context}
    return [(ppos[f], pos[f]) for f in ppos if f in pos]


def apply_field(disp: np.ndarray, g: np.ndarray, kind: str) -> np.ndarray:
    h, w = disp.shape[1:]
    return disp * np.exp(basis(kind, h, w) @ g).reshape(1, h, w).astype(np.float32)


def stream_field(windows, options: FitOptions, kind: str, lam: float):
    """Causal: each window's field against the previous two windows' corrected aligned output."""
    aligner = CausalGraphAligner(options, lag=8)
    per = options.max_points // 8 if options.max_points else 0
    h, w = windows[0][1].shape[1:]
    B = basis(kind, h, w, sample_index(h, w, per))
    recent: list[tuple] = []  # (window, aligned corrected samples)
    affines, fields, corrected = [], [], []
    for win, d in windows:
        s_raw = frame_samples(d, per)
        gs, ws = [], []
        for prev, ps in recent[-2:]:
            shared = shared_frames(prev, win)
            if shared:
                g, wt = fit_field(s_raw[[q for _, q in shared]], ps[[p for p, _ in shared]], B, options)
                gs.append(g)
                ws.append(wt)
        g = np.zeros(B.shape[1])
        if ws and sum(ws) > 0:
            # ridge relative to the mean edge weight: g = sum(w g_e) / (sum(w) + lam * mean(w))
            wsum = float(sum(ws))
            g = sum(wi * gi for wi, gi in zip(ws, gs, strict=True)) / (wsum + lam * wsum / len(ws))
        dc = apply_field(d, g, kind)
        fit = aligner.add(win, dc)
        sc = frame_samples(dc, per).astype(np.float64) * fit.scale + fit.shift
        recent.append((win, sc))
        recent = recent[-2:]
        affines.append((fit.scale, fit.shift))
        fields.append(g)
        corrected.append((win, dc))
    return affines, corrected


def offline_field(windows, options: FitOptions, kind: str, lam: float, rounds: int = 2, debias: bool = False):
    """Fixed-lag smoother on corrected windows; fields solved jointly over all windows.

    `debias`: the mean pairwise difference per window distance (j - i) is removed first: only the
    part of the fields that differs from window to window is corrected, not a systematic
    difference between a frame's reading late in one window and early in the next."""
    per = options.max_points // 8 if options.max_points else 0
    n = len(windows)
    h, w = windows[0][1].shape[1:]
    B = basis(kind, h, w, sample_index(h, w, per))
    m = B.shape[1]
    samples = [frame_samples(d, per).astype(np.float64) for _, d in windows]
    G = np.zeros((n, m))
    corrected = list(windows)
    affines = None
    for _ in range(rounds + 1):
        corrected = [(win, apply_field(d, G[k], kind)) for k, (win, d) in enumerate(windows)]
        aligner = CausalGraphAligner(options, lag=OFFLINE_LAG, keep_history=True)
        for win, dc in corrected:
            aligner.add(win, dc)
        affines = [(f.scale, f.shift) for f in aligner.smoothed()]
        if _ == rounds:
            break
        # pairwise field differences on the raw windows mapped by their affines (fields removed)
        A = np.zeros((n, n))
        rhs = np.zeros((n, m))
        pairs = []
        for j in range(n):
            wj, sj = windows[j][0], samples[j] * np.exp(B @ G[j])[None]
            for i in range(max(0, j - 2), j):
                wi, si = windows[i][0], samples[i] * np.exp(B @ G[i])[None]
                shared = shared_frames(wi, wj)
                if not shared:
                    continue
                ref = si[[p for p, _ in shared]] * affines[i][0] + affines[i][1]
                cur = sj[[q for _, q in shared]] * affines[j][0] + affines[j][1]
                dg, wt = fit_field(cur, ref, B, options)  # g_j(new) - g_j(old) relative to i
                if wt <= 0:
                    continue
                # (G_j + dG_j) - G_i = dg + G_j - G_i
                pairs.append((i, j, dg + G[j] - G[i], wt))
        if debias:
            for lagk in (1, 2):
                ys = [(y, wt) for i, j, y, wt in pairs if j - i == lagk]
                if ys:
                    mean = sum(wt * y for y, wt in ys) / sum(wt for _, wt in ys)
                    pairs = [(i, j, y - mean if j - i == lagk else y, wt) for i, j, y, wt in pairs]
        for i, j, y, wt in pairs:
            A[j, j] += wt
            A[i, i] += wt
            A[i, j] -= wt
            A[j, i] -= wt
            rhs[j] += wt * y
            rhs[i] -= wt * y
        ridge = lam * float(np.mean([wt for *_, wt in pairs])) if pairs else 1.0
        G = np.linalg.solve(A + ridge * np.eye(n), rhs)
    return affines, corrected


def gt_field(windows, seq, kind: str, rounds: int = 3):
    """Each window's affine and field fitted to the GT (reads the GT: not a method)."""
    h, w = seq.gt_size
    out = []
    for win, disp in windows:
        dh, dw = disp.shape[1:]
        Bf = basis(kind, dh, dw)
        braw = np.stack(
            [cv2.resize(Bf[:, c].reshape(dh, dw).astype(np.float32), (w, h)) for c in range(Bf.shape[1])], -1
        )
        g = np.zeros(Bf.shape[1])
        for _ in range(rounds):
            dc = disp * np.exp(Bf @ g).reshape(1, dh, dw)
            xs, ts, bs = [], [], []
            for p, f in enumerate(win.slots):
                gt = seq.depth[f]
                ok = np.isfinite(gt) & (gt > 1e-3) & (gt < seq.max_depth)
                up = cv2.resize(dc[p].astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
                xs.append(up[ok])
                ts.append(1.0 / gt[ok])
                bs.append(braw[ok])
            x, t, bb = np.concatenate(xs), np.concatenate(ts), np.concatenate(bs)
            a, b = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), t, rcond=None)[0]
            ok = (t - b > 0) & (a * x > 0)
            z = np.log((t[ok] - b) / (a * x[ok]))
            X = np.concatenate([bb[ok], np.ones((ok.sum(), 1))], 1)
            g = g + np.linalg.lstsq(X, z, rcond=None)[0][:-1]
        out.append((win, (disp * np.exp(Bf @ g).reshape(1, dh, dw)).astype(np.float32)))
    return out


def frame_mean(windows, affines, size: tuple[int, int]) -> np.ndarray:
    """Each frame the plain mean of every window's aligned output of it (output slots only):
    every view weighs the same, instead of the crossfade's ramp."""
    h, w = size
    n = max(max(win.slots) for win, _ in windows) + 1
    acc, cnt = np.zeros((n, h, w)), np.zeros(n)
    for (win, d), (a, b) in zip(windows, affines, strict=True):
        for p in range(win.n_context, len(win.slots)):
            up = cv2.resize(np.nan_to_num(d[p] * a + b, nan=0.0).astype(np.float32), (w, h))
            acc[win.slots[p]] += up
            cnt[win.slots[p]] += 1
    return np.maximum(acc / np.maximum(cnt, 1)[:, None, None], 0.0).astype(np.float32)


# -- driver -----------------------------------------------------------------------------------
def light(seq) -> SimpleNamespace:
    """What scoring needs of a sequence (the cache keeps no images)."""
    return SimpleNamespace(name=seq.name, depth=seq.depth, max_depth=seq.max_depth, gt_size=seq.gt_size)


def load(cache: Path, renders: int, hololens: bool = True):
    """Every development sequence's recorded windows (cached per sequence in `cache`)."""
    from alignment_dev import bundled_engine, development_sequences

    cache.mkdir(parents=True, exist_ok=True)
    engine, items = None, []
    for seq in development_sequences(renders, hololens=hololens):
        path = cache / (seq.name.replace("/", "_") + ".pkl")
        if not path.exists():
            engine = engine or bundled_engine()
            offline, windows, options = record(engine, seq)
            path.write_bytes(pickle.dumps((light(seq), offline, windows, options)))
            print(f"recorded {seq.name}", flush=True)
        items.append(pickle.loads(path.read_bytes()))
    return items


def synthetic(args) -> int:
    """The same estimators on `stream_drift.py`'s structured errors (per-window fields constant over
    the window's frames, the case the corrections model): its first segment (HoloLens GT with the
    camera stopping), the bundled 8/4 schedule, AbsRel after one global fit, per seed."""
    import stream_drift as sd

    w, h = (int(v) for v in args.size.lower().split("x"))
    a, b = sd.load_sequences((w, h), ["hololens", "synthetic"])[:2]
    schedule = sd.SCHEDULES[args.schedule]
    options = FitOptions()
    results: dict[str, list[float]] = {}
    for seed in range(args.seeds):
        world = sd.World(a, b, args.frames, args.errors, seed)
        n = world.bounds[1]
        pipe = sd.DepthPipeline.from_dict(
            sd.method_params("causal", bool(schedule["keyframes"])), sd.BenchEngine(world, schedule)
        )
        windows = []
        for win in pipe.scheduler.plan(n):
            idx = np.array(list(win.slots) + [win.slots[-1]] * win.pad)
            windows.append((win, world.window(idx)[: len(win.slots)]))
        gt, size = world.gt[:n], world.gt.shape[1:]
        exclude = np.zeros(gt.shape, bool)
        fits = []
        for win, d in windows:
            x, y = d.ravel().astype(np.float64), gt[list(win.slots)].ravel()
            ok = np.isfinite(x) & np.isfinite(y) & (y > 0)
            x, y = x[ok], y[ok]
            fits.append(tuple(np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), y, rcond=None)[0]))
        runs = {
            "stream": stitch(windows, stream_affines(windows, options), size, first=True),
            "offline": stitch(*offline_field(windows, options, "tilt", 1.0, rounds=0)[::-1], size, first=False),
            "best_affines": stitch(windows, fits, size, first=False),
        }
        for kind in args.kinds.split(","):
            for lam in map(float, args.lams.split(",")):
                aff, cw = stream_field(windows, options, kind, lam)
                runs[f"stream+{kind}@{lam:g}"] = stitch(cw, aff, size, first=True)
                aff, cw = offline_field(windows, options, kind, lam)
                runs[f"offline+{kind}@{lam:g}"] = stitch(cw, aff, size, first=False)
        line = []
        for name, pred in runs.items():
            v = sd.absrel_after_global_fit(pred, gt, exclude)
            results.setdefault(name, []).append(v)
            line.append(f"{name} {v:.4f}")
        print(f"seed {seed}: " + "  ".join(line), flush=True)
    print(
        f"\n{args.schedule}, {args.errors}, {args.frames} frames at {args.size}, first segment; AbsRel: mean over seeds"
    )
    for name, v in results.items():
        print(f"{name:22s} {np.mean(v):.4f}  (per seed: {' '.join(f'{x:.4f}' for x in v)})")
    return 0


def estimator_runs(args, seq, offline, windows, options) -> dict[str, np.ndarray]:
    """Every estimator's stitched output of one recorded sequence, on its GT grid."""
    size = seq.gt_size
    kinds = [k for k in args.kinds.split(",") if k]
    stream = stream_affines(windows, options)
    runs = {"stream": stitch(windows, stream, size, first=True), "offline": offline}
    for kind in kinds:
        for lam in map(float, args.lams.split(",")):
            aff, cw = stream_field(windows, options, kind, lam)
            runs[f"stream+{kind}@{lam:g}"] = stitch(cw, aff, size, first=True)
            aff, cw = offline_field(windows, options, kind, lam)
            runs[f"offline+{kind}@{lam:g}"] = stitch(cw, aff, size, first=False)
            if args.debias:
                aff, cw = offline_field(windows, options, kind, lam, debias=True)
                runs[f"offline+{kind}@{lam:g}-db"] = stitch(cw, aff, size, first=False)
    if args.frame_mean:
        runs["offline_mean"] = frame_mean(windows, offline_field(windows, options, "tilt", 1.0, rounds=0)[0], size)
    if not args.no_gt:
        runs["gt_fit"] = stitch(windows, gt_affines(windows, seq), size, first=False)
        for kind in kinds:
            gw = gt_field(windows, seq, kind)
            runs[f"gt_fit+{kind}"] = stitch(gw, gt_affines(gw, seq), size, first=False)
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--renders", type=int, default=16)
    ap.add_argument("--cache", type=Path, default=Path("out/spatial_cache"))
    ap.add_argument("--kinds", default="tilt,quad,grid3")
    ap.add_argument("--lams", default="0.1,1")
    ap.add_argument("--no-gt", action="store_true")
    ap.add_argument("--renders-only", action="store_true", help="leave HoloLens out (the slowest sequence)")
    ap.add_argument(
        "--frame-mean", action="store_true", help="also offline with every view of a frame weighed the same"
    )
    ap.add_argument("--debias", action="store_true", help="also offline with the mean pair difference removed")
    ap.add_argument("--all-shared", action="store_true", help="fit fields on context slots too")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--synthetic", action="store_true", help="stream_drift.py's errors instead of the model's")
    ap.add_argument("--schedule", default="default_8_4", help="--synthetic: a stream_drift.py schedule")
    ap.add_argument("--errors", default="structured", help="--synthetic: a stream_drift.py error kind")
    ap.add_argument("--frames", type=int, default=600, help="--synthetic: frames (the first half is scored)")
    ap.add_argument("--size", default="64x48", help="--synthetic: WxH")
    ap.add_argument("--seeds", type=int, default=3, help="--synthetic: seeds 0..N-1")
    args = ap.parse_args(argv)
    global OUTPUT_ONLY
    OUTPUT_ONLY = not args.all_shared
    if args.synthetic:
        return synthetic(args)
    t0, load0 = time.perf_counter(), os.getloadavg()
    items = load(args.cache, args.renders, hololens=not args.renders_only)
    rows = []
    for seq, offline, windows, options in items:
        runs = estimator_runs(args, seq, offline, windows, options)
        res = {}
        for name, pred in runs.items():
            m = evaluate_sequence(pred, seq.depth, seq.max_depth)
            res[name] = (m.abs_rel, m.delta1)
        rows.append({"sequence": seq.name} | {k: list(v) for k, v in res.items()})
        print(seq.name, "  ".join(f"{k} {a:.4f}/{d:.4f}" for k, (a, d) in res.items()), flush=True)
    names = [k for k in rows[0] if k != "sequence"]
    print(f"\nmethod                 AbsRel   δ1      worse than stream / than offline (AbsRel or δ1), of {len(rows)}")
    summary = {}
    for k in names:

        def worse(base: str, k=k) -> int:
            return sum(r[k][0] > r[base][0] or r[k][1] < r[base][1] for r in rows)

        summary[k] = {
            "abs_rel": float(np.mean([r[k][0] for r in rows])),
            "delta1": float(np.mean([r[k][1] for r in rows])),
            "worse_than_stream": worse("stream"),
            "worse_than_offline": worse("offline"),
        }
        s = summary[k]
        print(
            f"{k:22s} {s['abs_rel']:.4f}  {s['delta1']:.4f}  {s['worse_than_stream']:2d} / {s['worse_than_offline']:2d}"
        )
    print(f"({time.perf_counter() - t0:.0f} s, load average {load0} -> {os.getloadavg()})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
