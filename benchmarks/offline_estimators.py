"""Offline estimators against the causal stream on the development data, and the headroom (issue #26).

Issue #26 asks for an offline solve at least as accurate as the causal stream on every development
sequence. This benchmark runs the bundled model once per development sequence (HoloLens and the
16 held-out renders of `alignment_dev.py`; 7-Scenes never), keeps every window's raw output, then
stitches the same windows with the per-window affines of each estimator and scores them with the
papers' protocol (`vdepth_ros.eval.metrics.evaluate_sequence`):

* `stream`: the causal graph alignment (`CausalGraphAligner`, lag 8), each frame as first published;
* `offline`: `DepthPipeline.run_offline` itself (the fixed-lag smoother, `OFFLINE_LAG`), scored
  from the pipeline's own output;
* `delay1`, `delay2`: the stream's estimator (lag 8) with each window's affine taken once 1 or 2
  later windows have added their edges;
* `consensus`: every frame seen by several windows gets the mean of their aligned outputs and every
  window is refitted to those means (5 rounds from the stream's affines: all windows' views of
  every shared frame, not only the anchor's);
* with `--methods` (issue #26 candidates, docs/alignment.md): `smoother` (`offline_aligner` stitched
  here with `OFFLINE_CROSSFADE`: `run_offline`'s estimator and crossfade, to check it reproduces
  `offline`; the other candidates crossfade as the stream, the papers' `linspace(0, 1, n)`), `twoway_stream` /
  `twoway_smoother` (the estimator forward and over the reversed windows, combined), `newslots` /
  `newslots_ctx3` (the experiment behind `OFFLINE_CONTEXT_CHECK`: with it wired,
  `newslots` is `smoother`), `ctxbias` / `ctxbias_stream` (the context slots corrected by a context
  bias read from the data), `stream_checked` (the stream with the context check), `stream_xfade`
  (the stream's own affines crossfaded as `run_offline` does: what the output representation alone
  changes), `gated` / `gated_first` (the stream's affines, the smoother's only where they differ by
  more than 2 standard errors of the later windows' edges; crossfaded / each frame as first output),
  `smoother_first` (the smoother's affines, each frame as first output), `heldout` (per sequence the
  stream's or the smoother's affines, whichever fits held-out consecutive-pair overlaps better, no
  GT), `perframe` (the context check per context frame), and how the smoother's aligned readings
  of a frame are combined (`combine`: `ramp` blends both overlap frames with shares 1/3 and 2/3 on
  the 8/4 layout, where the crossfade's 0 and 1 switch windows; `mean_out` the plain mean of a
  frame's output readings, `mean_all` of every reading, context slots too; `invres_out` the output
  readings weighted by their window's inverse squared disagreement with the other windows);
  `linear` (the smoother's affines under the papers' crossfade `linspace(0, 1, n)`, `run_offline`'s
  rule before `OFFLINE_CROSSFADE`, 2026-12-07; on 8/4 weights 0 and 1);
  `--tae` also scores flicker (TAE, GT poses); `--cache DIR`
  records the model's windows (and `offline`'s output: a cache from older code has the old one)
  once for later runs;
* `gt_fit` (not a method: it reads the ground truth): each window's affine fitted to the GT
  disparity of its frames, then stitched the same way: what per-window alignment could reach.

A diagnostic of the model, from the GT: `context_bias` is, per window, the log ratio of the
disparity the window's GT fit gives (at its median) on its context slots (the anchor and the older
frame) over the same on its other slots; its mean and spread over the windows say how far one
window's error is from a single affine (the two fits see different frames, so the slot's role and
the frames' content both enter it). The graph reads every window's affine from the frames it shares.

For each estimator: mean AbsRel / δ1 over the 17 sequences and on how many it is worse than the
stream in AbsRel or δ1. ~4 min on 2 cores::

    .venv/bin/python benchmarks/offline_estimators.py --json out/offline_estimators.json
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import pickle
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from vdepth_ros.eval.datasets import EvalSequence
from vdepth_ros.eval.metrics import evaluate_sequence
from vdepth_ros.eval.runs import make_pipeline, run_offline
from vdepth_ros.pipeline_offline import OFFLINE_CROSSFADE
from vdepth_ros.stream.align import AffineFit, FitOptions, align_scale_shift
from vdepth_ros.stream.graph import (
    OFFLINE_CONTEXT_CHECK,
    OFFLINE_LAG,
    CausalGraphAligner,
    GlobalAligner,
    PairEdge,
    frame_samples,
    offline_aligner,
)
from vdepth_ros.stream.stitch import Stitcher, crossfade_weights
from vdepth_ros.stream.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alignment_dev import bundled_engine, development_sequences  # the same development set

Affines = list[tuple[float, float]]


class RecordingEngine:
    """The engine, keeping every window's output (the offline pass runs each window once)."""

    def __init__(self, engine) -> None:
        self.engine, self.outputs = engine, []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def infer(self, frames: np.ndarray, **kwargs) -> np.ndarray:
        out = np.asarray(self.engine.infer(frames, **kwargs), np.float32)
        self.outputs.append(out.copy())
        return out


def record(engine, seq: EvalSequence) -> tuple[np.ndarray, list[tuple[Window, np.ndarray]], FitOptions]:
    """The package's offline output on the GT grid, and its windows with their raw outputs."""
    rec = RecordingEngine(engine)
    offline = run_offline(rec, seq)
    pipe = make_pipeline(engine)
    windows = pipe.scheduler.plan(seq.num_frames)
    if len(windows) != len(rec.outputs):  # a scene cut restarted the schedule
        raise SystemExit(f"{seq.name}: {len(rec.outputs)} windows run, {len(windows)} planned")
    return offline, [(w, o[: len(w.slots)]) for w, o in zip(windows, rec.outputs, strict=True)], pipe.fit_options


def stitch(
    windows: list[tuple[Window, np.ndarray]],
    affines: Affines,
    size: tuple[int, int],
    first: bool,
    crossfade=crossfade_weights,
) -> np.ndarray:
    """Stitched disparity on the GT grid `(T, h, w)`: each frame as first output, or settled;
    `crossfade` the overlap weights (`Stitcher`)."""
    h, w = size
    n = max(max(win.slots) for win, _ in windows) + 1
    out = np.zeros((n, h, w), np.float32)
    seen = np.zeros(n, bool)
    stitcher = Stitcher("graph", crossfade=crossfade)

    def put(frames) -> None:
        for sf in frames:
            if (first and seen[sf.index]) or (not first and sf.status != "final"):
                continue
            disp = cv2.resize(np.nan_to_num(sf.disparity, nan=0.0), (w, h), interpolation=cv2.INTER_LINEAR)
            out[sf.index] = np.maximum(disp, 0.0)  # as the pipeline's relative output: clamped once upsampled
            seen[sf.index] = True

    for (win, disp), (s, t) in zip(windows, affines, strict=True):
        put(stitcher.add(win, disp.copy(), affine=AffineFit(scale=s, shift=t)))
    put(stitcher.finish())
    return out


def readings(windows: list[tuple[Window, np.ndarray]]) -> dict[int, list[tuple[int, int, float | None]]]:
    """Every reading of each frame: `(window, slot, overlap weight)`, in window order. The weight is
    set on a window's output slots that an earlier window also output (the crossfade's overlap,
    the window's share at overlap position `i` of `n`: `(i + 1) / (n + 1)`, a ramp that blends both
    overlap frames, where `Stitcher`'s `linspace(0, 1, n)` gives 0 and 1 for `n = 2`); None on
    single output readings; context slots get `nan` (not an output reading)."""
    out: dict[int, list[tuple[int, int, float | None]]] = {}
    output_seen: set[int] = set()
    for k, (win, _) in enumerate(windows):
        for p in range(win.n_context):
            out.setdefault(win.slots[p], []).append((k, p, float("nan")))
        overlap = [p for p in range(win.n_context, len(win.slots)) if win.slots[p] in output_seen]
        for p in range(win.n_context, len(win.slots)):
            f = win.slots[p]
            w = (overlap.index(p) + 1) / (len(overlap) + 1) if p in overlap else None
            out.setdefault(f, []).append((k, p, w))
        output_seen.update(win.slots[win.n_context :])
    return out


def window_disagreement(windows, affines: Affines, options: FitOptions) -> np.ndarray:
    """Per window, the robust disagreement of its aligned output readings with every other window's
    aligned output readings of the same frames: RMS over those frames of the median |log ratio|
    (pixel subsample as the fits'); a window that shares none gets the median of the others."""
    per = options.max_points // 8 if options.max_points else 0
    samples = [frame_samples(d[: len(w.slots)], per) * s + t for (w, d), (s, t) in zip(windows, affines, strict=True)]
    sq: list[list[float]] = [[] for _ in windows]
    for reads in readings(windows).values():
        outs = [(k, p) for k, p, w in reads if not (w is not None and np.isnan(w))]
        for (ka, pa), (kb, pb) in itertools.combinations(outs, 2):
            a, b = samples[ka][pa], samples[kb][pb]
            ok = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
            if ok.any():
                r = float(np.median(np.abs(np.log(a[ok] / b[ok])))) ** 2
                sq[ka].append(r)
                sq[kb].append(r)
    sigma = np.array([np.sqrt(np.mean(v)) if v else np.nan for v in sq])
    fill = np.nanmedian(sigma) if np.isfinite(sigma).any() else 1.0
    return np.where(np.isfinite(sigma) & (sigma > 0), sigma, fill)


def combine(
    windows: list[tuple[Window, np.ndarray]], affines: Affines, size: tuple[int, int], how: str, options: FitOptions
) -> np.ndarray:
    """Stitched disparity on the GT grid `(T, h, w)`, each frame a weighted mean of its aligned readings:
    `ramp` the overlap ramp of `readings` (the second reading's share), `mean_out` the plain mean of
    the output readings, `mean_all` of every reading (context slots too), `invres_out` the output
    readings weighted by 1 / `window_disagreement`^2. As `stitch`: NaN-aware, clamped at 0 once
    upsampled."""
    h, w = size
    sigma = window_disagreement(windows, affines, options) if how == "invres_out" else None
    reads = readings(windows)
    out = np.zeros((max(reads) + 1, h, w), np.float32)
    for f, rs in reads.items():
        parts: list[tuple[float, int, int]] = []
        outs = [(k, p, wt) for k, p, wt in rs if not (wt is not None and np.isnan(wt))]
        if how == "ramp":
            if len(outs) == 1:
                parts = [(1.0, outs[0][0], outs[0][1])]
            else:
                (ka, pa, _), (kb, pb, wb) = outs[-2], outs[-1]  # the last two output readings
                parts = [(1.0 - wb, ka, pa), (wb, kb, pb)]
        elif how == "mean_out":
            parts = [(1.0, k, p) for k, p, _ in outs]
        elif how == "mean_all":
            parts = [(1.0, k, p) for k, p, _ in rs]
        elif how == "invres_out":
            parts = [(1.0 / sigma[k] ** 2, k, p) for k, p, _ in outs]
        else:
            raise ValueError(how)
        num = np.zeros(windows[0][1].shape[1:], np.float64)
        den = np.zeros_like(num)
        for wt, k, p in parts:
            s, t = affines[k]
            v = windows[k][1][p].astype(np.float64) * s + t
            ok = np.isfinite(v)
            num[ok] += wt * v[ok]
            den[ok] += wt
        disp = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0).astype(np.float32)
        out[f] = np.maximum(cv2.resize(disp, (w, h), interpolation=cv2.INTER_LINEAR), 0.0)
    return out


def stream_affines(windows, options: FitOptions) -> Affines:
    aligner = CausalGraphAligner(options, lag=8)
    return [(f.scale, f.shift) for f in (aligner.add(w, d) for w, d in windows)]


def delayed_affines(windows, options: FitOptions, delay: int, context_check: float = 0.0) -> Affines:
    """The stream's estimator (lag 8, `context_check` as `GlobalAligner`'s); each window's affine
    once `delay` later windows were added."""
    aligner = CausalGraphAligner(options, lag=8, keep_history=True, context_check=context_check)
    taken: dict[int, tuple[float, float]] = {}
    for w, d in windows:
        aligner.add(w, d)
        if w.index >= delay:
            fit = aligner.smoothed()[w.index - delay]
            taken[w.index - delay] = (fit.scale, fit.shift)
    latest = [(f.scale, f.shift) for f in aligner.smoothed()]
    return [taken.get(k, latest[k]) for k in range(len(windows))]


def smoother_affines(windows, options: FitOptions) -> Affines:
    """`run_offline`'s estimator on the recorded windows (`offline_aligner`)."""
    aligner = offline_aligner(options)
    for w, d in windows:
        aligner.add(w, d)
    return [(f.scale, f.shift) for f in aligner.smoothed()]


def checked_stream_affines(windows, options: FitOptions) -> Affines:
    """The stream's estimator (lag 8) with the offline pass's context check (information only)."""
    aligner = CausalGraphAligner(options, lag=8, context_check=OFFLINE_CONTEXT_CHECK)
    return [(f.scale, f.shift) for f in (aligner.add(w, d) for w, d in windows)]


def reversed_windows(windows):
    """The same windows in reverse order (index K-1-k); slot order kept, so slot 0 is still the anchor."""
    n = len(windows)
    return [(dataclasses.replace(w, index=n - 1 - w.index), d) for w, d in reversed(windows)]


def two_direction_affines(windows, estimator) -> Affines:
    """`estimator` run forward and over the reversed windows; the backward affines mapped into the
    forward canonical frame by one affine fitted on every window's canonical values (5 quantiles of
    its raw output), then per window the geometric mean of the scales and the mean of the shifts."""
    fwd = estimator(windows)
    bwd = list(reversed(estimator(reversed_windows(windows))))
    xs = [np.nanpercentile(d[: len(w.slots)], (10, 30, 50, 70, 90)) for w, d in windows]
    yf = np.concatenate([s * x + t for (s, t), x in zip(fwd, xs, strict=True)])
    yb = np.concatenate([s * x + t for (s, t), x in zip(bwd, xs, strict=True)])
    A, B = np.linalg.lstsq(np.stack([yb, np.ones_like(yb)], 1), yf, rcond=None)[0]
    return [
        (float(np.sqrt(sf * A * sb)), float(0.5 * (tf + A * tb + B)))
        for (sf, tf), (sb, tb) in zip(fwd, bwd, strict=True)
    ]


class _NewSlotPairs(GlobalAligner):
    """Pairwise fits as `GlobalAligner`, but where a pair's context frames (context slots in either
    window: the anchor, the older frame) and its other shared frames disagree by more than `z` of
    their combined standard error (at the median of the window's values there), the pair's edge
    is the fit on the other frames only, and this window's edges that read only its context
    (the anchor edge, the pair two back) get their standard errors times `ctx_inflate`."""

    def __init__(self, options: FitOptions, history: int, z: float, ctx_inflate: float) -> None:
        super().__init__(options, history)
        self.z, self.ctx_inflate, self.switched = z, ctx_inflate, 0

    def add(self, window, disparity, anchor_reference=None):
        recent = list(self._recent)
        first_new = len(self.edges)
        super().add(window, disparity, anchor_reference)
        cur = self._recent[-1][1]
        pos = {f: p for p, f in reversed(list(enumerate(window.slots)))}
        ctx_cur = set(window.slots[: window.n_context])
        disagree = False
        for prev, prev_samples in recent:
            prev_pos = {f: p for p, f in reversed(list(enumerate(prev.slots)))}
            shared = [f for f in prev_pos if f in pos]
            ctx = set(prev.slots[: prev.n_context]) | ctx_cur
            other = [f for f in shared if f not in ctx]
            context = [f for f in shared if f in ctx]
            if not other or not context:
                continue
            fo = self._other_if_disagreeing(cur, pos, prev_samples, prev_pos, other, context)
            if fo is not None:
                for i in range(first_new, len(self.edges)):
                    if self.edges[i].earlier == prev.index and self.edges[i].later == window.index:
                        self.edges[i] = PairEdge(prev.index, window.index, fo)
                disagree = True
        if disagree:
            self.switched += 1
            if self.ctx_inflate != 1.0:
                for i in range(first_new, len(self.edges)):
                    e = self.edges[i]
                    if e.later != window.index or e.fit.degenerate:
                        continue
                    prev_ctx = self._context_only(e.earlier, window, recent)
                    if prev_ctx:
                        f = e.fit
                        self.edges[i] = dataclasses.replace(
                            e,
                            fit=dataclasses.replace(
                                f, scale_se=f.scale_se * self.ctx_inflate, shift_se=f.shift_se * self.ctx_inflate
                            ),
                        )
        return self.edges[first_new:]

    def _other_if_disagreeing(self, cur, pos, prev_samples, prev_pos, other, context) -> AffineFit | None:
        """The fit on the `other` frames where it disagrees with the fit on the `context` frames."""
        fits = []
        for part in (other, context):
            c = cur[[pos[f] for f in part]]
            r = prev_samples[[prev_pos[f] for f in part]]
            fits.append((align_scale_shift(c, r, options=self.options), c))
        (fo, co), (fc, _) = fits
        if fo.degenerate or fc.degenerate:
            return None
        m = float(np.nanmedian(co))
        vo, vc = fo.scale * m + fo.shift, fc.scale * m + fc.shift
        if vo <= 0 or vc <= 0:
            return None
        se_o = np.hypot(fo.scale_se * m, fo.shift_se) / vo
        se_c = np.hypot(fc.scale_se * m, fc.shift_se) / vc
        return fo if abs(np.log(vo / vc)) > self.z * np.hypot(se_o, se_c) else None

    @staticmethod
    def _context_only(earlier: int, window, recent) -> bool:
        """The edge to `earlier` reads only this window's context slots (anchor edge or pair two back)."""
        ctx = set(window.slots[: window.n_context])
        for prev, _ in recent:
            if prev.index == earlier:
                return all(f in ctx for f in prev.slots if f in set(window.slots))
        return True  # the anchor edge (window 0 left the recent pairs)


def new_slot_affines(windows, options: FitOptions, z: float, ctx_inflate: float, lag: int) -> Affines:
    """The offline smoother (`lag`, as `run_offline` with OFFLINE_LAG) on `_NewSlotPairs` edges."""
    aligner = CausalGraphAligner(options, lag=lag, keep_history=True)
    aligner._pairs = _NewSlotPairs(options, aligner.history, z, ctx_inflate)
    for w, d in windows:
        aligner.add(w, d)
    return [(f.scale, f.shift) for f in aligner.smoothed()]


def _smoother_with_edges(windows, options: FitOptions, aligner=None) -> tuple[Affines, list[PairEdge]]:
    """`run_offline`'s estimator (`offline_aligner`, or `aligner`): affines and every edge it kept."""
    aligner = offline_aligner(options) if aligner is None else aligner
    for w, d in windows:
        aligner.add(w, d)
    return [(f.scale, f.shift) for f in aligner.smoothed()], aligner.edges


def _window_median(win: Window, disp: np.ndarray) -> float:
    """Median raw value of the frames a window outputs (its slots after the context)."""
    return float(np.nanmedian(disp[win.n_context : len(win.slots)]))


def gated_affines(windows, options: FitOptions, z: float = 2.0, fired: list[bool] | None = None) -> Affines:
    """The stream's affines, each replaced by the smoother's only where the two differ (log of their
    values at the window's median) by more than `z` standard errors of the information the future
    windows add about it (the edges from it to later windows); a fixed-interval smoother that keeps
    the stream's estimate where the backward information is not significant."""
    stream = stream_affines(windows, options)
    smooth, edges = _smoother_with_edges(windows, options)
    info = np.zeros(len(windows))
    for e in edges:
        if not e.fit.degenerate and e.fit.scale > 0 and e.fit.scale_se > 0:
            info[e.earlier] += (e.fit.scale / e.fit.scale_se) ** 2
    out = []
    for k, ((win, disp), (s, t), (S, T)) in enumerate(zip(windows, stream, smooth, strict=True)):
        m = _window_median(win, disp)
        v, V = s * m + t, S * m + T
        significant = info[k] > 0 and v > 0 and V > 0 and abs(np.log(V / v)) > z / np.sqrt(info[k])
        out.append((S, T) if significant else (s, t))
        if fired is not None:
            fired.append(bool(significant))
    return out


class _HeldOutPairs(GlobalAligner):
    """`GlobalAligner` whose edges between consecutive windows (k-1, k) with k % 3 == `fold` (k >= 2,
    so every window keeps a valid edge) are left out of the solve (marked degenerate)."""

    def __init__(self, options: FitOptions, history: int, context_check: float, fold: int) -> None:
        super().__init__(options, history, context_check)
        self.fold = fold

    def add(self, window, disparity, anchor_reference=None):
        first_new = len(self.edges)
        super().add(window, disparity, anchor_reference)
        k = window.index
        for i in range(first_new, len(self.edges)):
            e = self.edges[i]
            if k >= 2 and k % 3 == self.fold and e.earlier == k - 1:
                self.edges[i] = dataclasses.replace(e, fit=dataclasses.replace(e.fit, degenerate=True))
        return self.edges[first_new:]


def held_out_residual(windows, options: FitOptions, estimator: str) -> float:
    """Self-consistency without the GT: `estimator` ("stream" or "smoother") refitted three times
    with a third of the consecutive-pair edges held out (`_HeldOutPairs`); per held-out pair the
    median |log ratio| of the two windows' aligned values on the frames both output; the mean."""
    per = options.max_points // 8 if options.max_points else 0
    samples = [frame_samples(d[: len(w.slots)], per) for w, d in windows]
    scores = []
    for fold in range(3):
        if estimator == "stream":
            aligner = CausalGraphAligner(options, lag=8)
            aligner._pairs = _HeldOutPairs(options, aligner.history, 0.0, fold)
            affines = [(f.scale, f.shift) for f in (aligner.add(w, d) for w, d in windows)]
        else:
            aligner = offline_aligner(options)
            aligner._pairs = _HeldOutPairs(options, aligner.history, OFFLINE_CONTEXT_CHECK, fold)
            affines, _ = _smoother_with_edges(windows, options, aligner)
        for k in range(max(2, fold), len(windows)):
            if k % 3 != fold:
                continue
            (prev, _), (win, _) = windows[k - 1], windows[k]
            context = set(prev.slots[: prev.n_context]) | set(win.slots[: win.n_context])
            prev_pos = {f: p for p, f in reversed(list(enumerate(prev.slots)))}
            pos = {f: p for p, f in reversed(list(enumerate(win.slots)))}
            both = [f for f in pos if f in prev_pos and f not in context]
            if not both:
                continue
            (sa, ta), (sb, tb) = affines[k - 1], affines[k]
            a = samples[k - 1][[prev_pos[f] for f in both]] * sa + ta
            b = samples[k][[pos[f] for f in both]] * sb + tb
            ok = (a > 0) & (b > 0)
            if ok.any():
                scores.append(float(np.median(np.abs(np.log(a[ok] / b[ok])))))
    return float(np.mean(scores)) if scores else 0.0


class _PerFrameCheck(GlobalAligner):
    """`GlobalAligner` with the context check made per frame: each shared context frame is fitted
    alone against the fit on the pair's output frames, and only the context frames that disagree
    by more than `context_check` of their combined standard error are left out of the pair's edge
    (`run_offline`'s check leaves out all of them when their joint fit disagrees)."""

    def _output_frames_fit(self, fit, shared, context, samples, pos, prev_samples, prev_pos):
        output = [f for f in shared if f not in context]
        ctx = [f for f in shared if f in context]
        if not output or not ctx:
            return fit

        def part_fit(part):
            c = samples[[pos[f] for f in part]]
            return align_scale_shift(c, prev_samples[[prev_pos[f] for f in part]], options=self.options), c

        fo, co = part_fit(output)
        if fo.degenerate:
            return fit
        median = float(np.nanmedian(co))
        vo = fo.scale * median + fo.shift
        if vo <= 0:
            return fit
        se_o = float(np.hypot(fo.scale_se * median, fo.shift_se)) / vo
        keep = []
        for f in ctx:
            fc, _ = part_fit([f])
            vc = fc.scale * median + fc.shift
            if fc.degenerate or vc <= 0:
                keep.append(f)
                continue
            se_c = float(np.hypot(fc.scale_se * median, fc.shift_se)) / vc
            if abs(np.log(vo / vc)) <= self.context_check * float(np.hypot(se_o, se_c)):
                keep.append(f)
        if len(keep) == len(ctx):
            return fit
        self.context_checked += 1
        return fo if not keep else part_fit(output + keep)[0]


def per_frame_check_affines(windows, options: FitOptions) -> Affines:
    """`run_offline`'s smoother with the context check made per frame (`_PerFrameCheck`)."""
    aligner = offline_aligner(options)
    aligner._pairs = _PerFrameCheck(options, aligner.history, OFFLINE_CONTEXT_CHECK)
    affines, _ = _smoother_with_edges(windows, options, aligner)
    return affines


def data_context_bias(windows, options: FitOptions) -> float:
    """The sequence's context bias read from the data alone (no GT): per window, the log ratio at
    the median of its values of the fit of its older frame (a context slot here, an output slot of
    the previous window) to the previous window over the fit of the frames both output; the median
    over the windows. Same sign and meaning as `context_bias`."""
    per = options.max_points // 8 if options.max_points else 0
    ratios = []
    for (prev, dp), (win, dw) in itertools.pairwise(windows):
        prev_pos = {f: p for p, f in reversed(list(enumerate(prev.slots)))}
        prev_ctx = set(prev.slots[: prev.n_context])
        older = [f for f in win.slots[1 : win.n_context] if f in prev_pos and f not in prev_ctx]
        outs = [f for f in win.slots[win.n_context :] if f in prev_pos and f not in prev_ctx]
        if not older or not outs:
            continue
        cur, ref = frame_samples(dw[: len(win.slots)], per), frame_samples(dp[: len(prev.slots)], per)
        pos = {f: p for p, f in reversed(list(enumerate(win.slots)))}
        fits = [
            align_scale_shift(cur[[pos[f] for f in part]], ref[[prev_pos[f] for f in part]], options=options)
            for part in (older, outs)
        ]
        if any(f.degenerate for f in fits):
            continue
        m = float(np.nanmedian(cur[[pos[f] for f in outs]]))
        vc, vo = (f.scale * m + f.shift for f in fits)
        if vc > 0 and vo > 0:
            ratios.append(np.log(vc / vo))
    return float(np.median(ratios)) if ratios else 0.0


def context_corrected(windows, beta: float):
    """Every later window's context slots times `exp(beta)` (the output slots untouched)."""
    out = [windows[0]]
    for w, d in windows[1:]:
        d = d.copy()
        d[: w.n_context] *= np.float32(np.exp(beta))
        out.append((w, d))
    return out


def consensus_affines(windows, options: FitOptions, start: Affines, rounds: int = 5) -> Affines:
    """Every shared frame's mean aligned output; every window (but the first) refitted to them."""
    per = options.max_points // 8 if options.max_points else 0
    samples = [(w, frame_samples(d, per)) for w, d in windows]
    count: dict[int, int] = {}
    for w, _ in samples:
        for f in set(w.slots):
            count[f] = count.get(f, 0) + 1
    affines = list(start)
    for _ in range(rounds):
        views: dict[int, list[np.ndarray]] = {}
        for (w, s), (a, b) in zip(samples, affines, strict=True):
            for f, p in {f: p for p, f in reversed(list(enumerate(w.slots)))}.items():
                if count[f] > 1:
                    views.setdefault(f, []).append(s[p] * a + b)
        mean = {f: np.mean(v, axis=0) for f, v in views.items()}
        refit = [affines[0]]
        for (w, s), old in zip(samples[1:], affines[1:], strict=True):
            pos = {f: p for p, f in reversed(list(enumerate(w.slots))) if count[f] > 1}
            fit = align_scale_shift(s[list(pos.values())], np.stack([mean[f] for f in pos]), options=options)
            refit.append(old if fit.degenerate else (fit.scale, fit.shift))
        affines = refit
    return affines


def gt_affines(windows, seq: EvalSequence) -> Affines:
    """Each window's least-squares affine to the GT disparity of its frames, relative to window 0's."""
    h, w = seq.gt_size
    fits = []
    for win, disp in windows:
        pred, target = [], []
        for p, f in enumerate(win.slots):
            gt = seq.depth[f]
            ok = np.isfinite(gt) & (gt > 1e-3) & (gt < seq.max_depth)
            pred.append(cv2.resize(disp[p], (w, h), interpolation=cv2.INTER_LINEAR)[ok])
            target.append(1.0 / gt[ok])
        x = np.concatenate(pred)
        a, b = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), np.concatenate(target), rcond=None)[0]
        fits.append((float(a), float(b)))
    a0, b0 = fits[0]
    return [(a / a0, (b - b0) / a0) for a, b in fits]


def context_bias(windows, seq: EvalSequence) -> tuple[float, float]:
    """(mean, std) over windows of log(GT-fit value on the context slots / on the others)."""
    h, w = seq.gt_size
    ratios = []
    for win, disp in windows[1:]:  # window 0's slots are all contiguous
        values = []
        for part in (range(win.n_context), range(win.n_context, len(win.slots))):
            pred, target = [], []
            for p in part:
                gt = seq.depth[win.slots[p]]
                ok = np.isfinite(gt) & (gt > 1e-3) & (gt < seq.max_depth)
                pred.append(cv2.resize(disp[p], (w, h), interpolation=cv2.INTER_LINEAR)[ok])
                target.append(1.0 / gt[ok])
            x = np.concatenate(pred)
            a, b = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), np.concatenate(target), rcond=None)[0]
            values.append((a, b, x))
        m = float(np.median(np.concatenate([v[2] for v in values])))
        (a1, b1, _), (a2, b2, _) = values
        ratios.append(np.log(max(a1 * m + b1, 1e-9) / max(a2 * m + b2, 1e-9)))
    return float(np.mean(ratios)), float(np.std(ratios))


METHODS = ("stream", "offline", "delay1", "delay2", "consensus", "gt_fit")
#: Estimators tried for issue #26 (docs/alignment.md, "Why the offline solve is not better"),
#: run with `--methods`; `smoother` is `run_offline`'s estimator stitched here (a check that it
#: reproduces `offline`).
EXTRA_METHODS = (
    "smoother",
    "twoway_stream",
    "twoway_smoother",
    "newslots",
    "newslots_ctx3",
    "ctxbias",
    "ctxbias_stream",
    "stream_checked",
    "stream_xfade",
    "gated",
    "heldout",
    "smoother_first",
    "gated_first",
    "perframe",
    "ramp",
    "mean_out",
    "mean_all",
    "invres_out",
    "linear",
)


def recorded(engine, seq: EvalSequence, cache: Path | None):
    """`record`, kept in `cache` (one pickle per sequence) so later runs skip the model."""
    path = None if cache is None else cache / (seq.name.replace("/", "_") + ".pkl")
    if path is not None and path.exists():
        return pickle.loads(path.read_bytes())
    out = record(engine, seq)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(out))
    return out


def score_sequence(
    engine, seq: EvalSequence, methods: tuple[str, ...] = METHODS, cache: Path | None = None, tae: bool = False
) -> dict[str, tuple]:
    offline, windows, options = recorded(engine, seq, cache)
    stream = stream_affines(windows, options)
    estimators = {
        "stream": lambda: stitch(windows, stream, seq.gt_size, first=True),
        "offline": lambda: offline,
        "delay1": lambda: stitch(windows, delayed_affines(windows, options, 1), seq.gt_size, first=False),
        "delay2": lambda: stitch(windows, delayed_affines(windows, options, 2), seq.gt_size, first=False),
        "consensus": lambda: stitch(windows, consensus_affines(windows, options, stream), seq.gt_size, first=False),
        "gt_fit": lambda: stitch(windows, gt_affines(windows, seq), seq.gt_size, first=False),
        "smoother": lambda: stitch(
            windows, smoother_affines(windows, options), seq.gt_size, first=False, crossfade=OFFLINE_CROSSFADE
        ),
        "twoway_stream": lambda: stitch(
            windows, two_direction_affines(windows, lambda ws: stream_affines(ws, options)), seq.gt_size, first=False
        ),
        "twoway_smoother": lambda: stitch(
            windows, two_direction_affines(windows, lambda ws: smoother_affines(ws, options)), seq.gt_size, first=False
        ),
        "newslots": lambda: stitch(
            windows, new_slot_affines(windows, options, 2.0, 1.0, OFFLINE_LAG), seq.gt_size, first=False
        ),
        "newslots_ctx3": lambda: stitch(
            windows, new_slot_affines(windows, options, 2.0, 3.0, OFFLINE_LAG), seq.gt_size, first=False
        ),
        "ctxbias": lambda: stitch(
            windows, smoother_affines(context_corrected(windows, beta), options), seq.gt_size, first=False
        ),
        "stream_xfade": lambda: stitch(windows, stream, seq.gt_size, first=False),
        "gated": lambda: stitch(windows, gated_affines(windows, options, fired=gate), seq.gt_size, first=False),
        "smoother_first": lambda: stitch(windows, smoother_affines(windows, options), seq.gt_size, first=True),
        "gated_first": lambda: stitch(windows, gated_affines(windows, options), seq.gt_size, first=True),
        "perframe": lambda: stitch(windows, per_frame_check_affines(windows, options), seq.gt_size, first=False),
        "heldout": lambda: stitch(windows, held_out_choice(), seq.gt_size, first=False),
        **{
            how: (lambda how=how: combine(windows, smoother_affines(windows, options), seq.gt_size, how, options))
            for how in ("ramp", "mean_out", "mean_all", "invres_out")
        },
        "linear": lambda: stitch(windows, smoother_affines(windows, options), seq.gt_size, first=False),
        "stream_checked": lambda: stitch(windows, checked_stream_affines(windows, options), seq.gt_size, first=True),
        "ctxbias_stream": lambda: stitch(
            windows, stream_affines(context_corrected(windows, beta), options), seq.gt_size, first=True
        ),
    }
    held_out: dict[str, float] = {}
    gate: list[bool] = []  # `gated`: per window, whether it took the smoother's affine

    def held_out_choice() -> Affines:
        """The stream's or the smoother's affines, whichever is more self-consistent held out."""
        for name in ("stream", "smoother"):
            held_out[name] = held_out_residual(windows, options, name)
        return stream if held_out["stream"] < held_out["smoother"] else smoother_affines(windows, options)

    beta = data_context_bias(windows, options)
    camera = {"intrinsics": seq.intrinsics, "poses": seq.poses} if tae else {}
    out: dict = {}
    for name in ("stream", *[m for m in methods if m != "stream"]):
        m = evaluate_sequence(estimators[name](), seq.depth, seq.max_depth, **camera)
        out[name] = (m.abs_rel, m.delta1, m.tae)
    out["context_bias"] = context_bias(windows, seq)
    out["data_context_bias"] = (beta, 0.0)
    if held_out:
        out["heldout_residuals"] = (held_out["stream"], held_out["smoother"])
    if gate:
        out["gated_fired"] = (sum(gate), len(gate))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--renders", type=int, default=16)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--methods", default=",".join(METHODS), help=f"of {METHODS + EXTRA_METHODS}")
    ap.add_argument("--cache", type=Path, default=None, help="keep the recorded windows here (reruns skip the model)")
    ap.add_argument("--tae", action="store_true", help="also score TAE (flicker, with the GT poses) per method")
    args = ap.parse_args(argv)
    methods = tuple(m for m in args.methods.split(",") if m)
    unknown = set(methods) - set(METHODS + EXTRA_METHODS)
    if unknown:
        raise SystemExit(f"unknown --methods {sorted(unknown)}; known: {METHODS + EXTRA_METHODS}")
    engine = bundled_engine()
    t0, load0 = time.perf_counter(), os.getloadavg()
    seqs = development_sequences(args.renders)
    rows = []
    for seq in seqs:
        res = score_sequence(engine, seq, methods, args.cache, args.tae)
        rows.append({"sequence": seq.name} | {k: list(v) for k, v in res.items()})
        scored = [(k, v) for k, v in res.items() if k in methods or k == "stream"]
        line = "  ".join(
            f"{k} {v[0]:.4f}/{v[1]:.4f}" + (f"/TAE {v[2]:.3f}" if v[2] is not None else "") for k, v in scored
        )
        bias, data_bias = res["context_bias"], res["data_context_bias"][0]
        if "heldout_residuals" in res:
            line += "  held-out residual stream {:.4f} smoother {:.4f}".format(*res["heldout_residuals"])
        if "gated_fired" in res:
            line += "  gated: smoother's affine in {} of {} windows".format(*res["gated_fired"])
        print(
            f"{seq.name:18s} {line}  context_bias {bias[0]:+.3f} ± {bias[1]:.3f}, data {data_bias:+.3f}",
            flush=True,
        )
    print(f"\nmethod      AbsRel   δ1      TAE x100  worse than the stream (AbsRel or δ1), of {len(rows)}")
    summary = {}
    for k in ("stream", *[m for m in methods if m != "stream"]):
        worse = sum(r[k][0] > r["stream"][0] or r[k][1] < r["stream"][1] for r in rows)
        summary[k] = {
            "abs_rel": float(np.mean([r[k][0] for r in rows])),
            "delta1": float(np.mean([r[k][1] for r in rows])),
            "tae": float(np.mean([r[k][2] for r in rows])) if args.tae else None,
            "worse_than_stream": worse,
        }
        tae = f"{summary[k]['tae']:8.3f}" if args.tae else "       -"
        print(
            f"{k:10s}  {summary[k]['abs_rel']:.4f}  {summary[k]['delta1']:.4f}  {tae}  "
            f"{worse if k != 'stream' else '-'}"
        )
    print(f"({time.perf_counter() - t0:.0f} s, load average {load0} -> {os.getloadavg()})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"renders": args.renders, "loadavg": [load0, os.getloadavg()]}
        args.json.write_text(json.dumps({"args": meta, "rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
