"""Graph alignment: pairwise window fits and one weighted least-squares solve of all affines.

`GlobalAligner` collects pairwise symmetric robust fits between windows that share frames, and
`solve_global_affine` is one weighted least-squares solve of all windows' (log s, t) on that graph,
anchored on one window, so no fit's error is only ever passed down a chain.

`CausalGraphAligner` runs that estimator causally ("graph" alignment; `Stitcher("graph")` fits
with its own): each new window adds its pairwise fits to the graph and the same weighted
least-squares solve runs over the windows seen so far, with windows older than `lag` frozen at
their last estimate (fixed-lag smoothing, so cost and memory stay bounded). The offline pass
(`DepthPipeline.run_offline`) runs the same aligner keeping every edge and takes each window's
estimate once `OFFLINE_LAG` later windows have added their edges (`smoothed`, a fixed-lag smoother),
and its pair fits leave out context frames that disagree with the output frames
(`OFFLINE_CONTEXT_CHECK`; `offline_aligner`): stream and offline differ in the edges the near
future adds and in that check.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass

import numpy as np

from vdepth_ros.errors import ConfigError
from vdepth_ros.stream.align import (
    DEFAULT_FIT_OPTIONS,
    IDENTITY,
    INVERTED,
    AffineFit,
    FitOptions,
    align_scale_shift,
)
from vdepth_ros.stream.windows import Window


# -- offline: global solve --------------------------------------------------------------------
@dataclass(frozen=True)
class PairEdge:
    """Relation between two windows on their shared frames: `d_earlier ≈ a * d_later + b`."""

    earlier: int
    later: int
    fit: AffineFit


#: Future windows the offline pass lets re-estimate a window (see `CausalGraphAligner`).
OFFLINE_LAG = 2
#: Offline: a pair's context frames and its output frames disagree beyond this many standard
#: errors -> the pair's edge is the fit on its output frames only (`GlobalAligner`).
OFFLINE_CONTEXT_CHECK = 2.0
_MAD_TO_SIGMA = 1.4826
_CONSENSUS_K = 3.0  # a window's anchor pixel enters the consensus within 3 sigma of it


class GlobalAligner:
    """Collects pairwise fits between windows that share frames (offline pass 1).

    Memory and copying are bounded: each window keeps only a fixed subsample of its frames' pixels
    (`frame_samples`: the same pixels in every frame, so shared frames pair up pixel for pixel),
    for the last `history` windows and for the first window's slot-0 frame (the persistent
    anchor of the keyframe layout).

    Context check (offline): the model reads a window's context slots (the anchor, the older
    frame) at a scale of their own, not the one of the frames it outputs (docs/alignment.md,
    `context_bias`), and a pair fit mixes both. With `context_check` > 0, a pair that shares
    context frames (a context slot in either window) and output frames (in neither) is also fitted
    on each part alone; where the two parts' values at the window's median differ by more than
    `context_check` of their combined standard error, the pair's edge is the fit on the output
    frames only, which are the frames the window's affine is for. Off (0) in the stream.

    Args:
        options: fit options for the pairwise fits (symmetric by default, so no side is "truth").
        history: how many previous windows to compare each window with.
        context_check: standard errors beyond which a pair's context frames are left out (0: off).
    """

    def __init__(self, options: FitOptions = DEFAULT_FIT_OPTIONS, history: int = 2, context_check: float = 0.0) -> None:
        self.options = options
        self.context_check = float(context_check)
        self.context_checked = 0  # pair edges refitted on their output frames only
        self._recent: deque[tuple[Window, np.ndarray]] = deque(maxlen=max(1, history))
        self._anchor: tuple[int, int, np.ndarray] | None = None  # (frame, window, samples)
        self.anchor_samples: np.ndarray | None = None
        self.edges: list[PairEdge] = []
        self.n_windows = 0

    def add(self, window: Window, disparity: np.ndarray, anchor_reference: np.ndarray | None = None) -> list[PairEdge]:
        """Record one window's raw output `(len(slots)[+pad], H, W)`; windows in order.

        Args:
            window, disparity: the window and its raw model output.
            anchor_reference: samples of the anchor frame in the canonical scale (window 0's) to
                fit the anchor edge to, e.g. `CausalGraphAligner`'s consensus of many windows;
                default: window 0's own output of it.

        Returns the edges this window added (also appended to `edges`); `anchor_samples` is this
        window's output of the anchor frame (None when the window does not hold it)."""
        n = len(window.slots)
        first_new = len(self.edges)
        # an eighth of a fit's points per frame: plenty for a smooth map, and fits stay cheap
        per_frame = self.options.max_points // 8 if self.options.max_points else 0
        samples = frame_samples(np.asarray(disparity)[:n], per_frame)
        pos = {f: p for p, f in reversed(list(enumerate(window.slots)))}
        compared = set()
        anchor_frame = None if self._anchor is None else self._anchor[0]
        on_anchor_only = []  # edges that read this window's anchor slot and nothing else
        for prev, prev_samples in self._recent:
            prev_pos = {f: p for p, f in reversed(list(enumerate(prev.slots)))}
            shared = [f for f in prev_pos if f in pos]
            if shared:
                cur, ref = samples[[pos[f] for f in shared]], prev_samples[[prev_pos[f] for f in shared]]
                fit = align_scale_shift(cur, ref, options=self.options)
                if self.context_check > 0:
                    context = set(window.slots[: window.n_context]) | set(prev.slots[: prev.n_context])
                    fit = self._output_frames_fit(fit, shared, context, samples, pos, prev_samples, prev_pos)
                self.edges.append(PairEdge(prev.index, window.index, fit))
                compared.add(prev.index)
                if shared == [anchor_frame]:
                    on_anchor_only.append(len(self.edges) - 1)
        if self._anchor is None and window.index == 0:
            self._anchor = (window.slots[0], 0, samples[0])
        self.anchor_samples = None
        if self._anchor is not None:
            frame, w_idx, anchor = self._anchor
            self.anchor_samples = samples[pos[frame]] if frame in pos else None
            if w_idx not in compared and frame in pos and window.index != w_idx:
                ref = anchor if anchor_reference is None else anchor_reference
                fit = align_scale_shift(samples[pos[frame]], ref, options=self.options)
                self.edges.append(PairEdge(w_idx, window.index, fit))
                if on_anchor_only:
                    self._share_one_reading([*on_anchor_only, len(self.edges) - 1])
        self._recent.append((window, samples))
        self.n_windows = max(self.n_windows, window.index + 1)
        return self.edges[first_new:]

    def _output_frames_fit(
        self,
        fit: AffineFit,
        shared: list[int],
        context: set[int],
        samples: np.ndarray,
        pos: dict[int, int],
        prev_samples: np.ndarray,
        prev_pos: dict[int, int],
    ) -> AffineFit:
        """`fit` (all shared frames), or the fit on the output frames alone where it and the fit on
        the context frames alone disagree by more than `context_check` standard errors."""
        output = [f for f in shared if f not in context]
        parts = (output, [f for f in shared if f in context])
        if not parts[0] or not parts[1]:
            return fit
        cur = [samples[[pos[f] for f in part]] for part in parts]
        fits = [
            align_scale_shift(c, prev_samples[[prev_pos[f] for f in part]], options=self.options)
            for c, part in zip(cur, parts, strict=True)
        ]
        if any(f.degenerate for f in fits):
            return fit
        median = float(np.nanmedian(cur[0]))
        values = [f.scale * median + f.shift for f in fits]
        if min(values) <= 0:
            return fit
        log_se = [float(np.hypot(f.scale_se * median, f.shift_se)) / v for f, v in zip(fits, values, strict=True)]
        if abs(np.log(values[0] / values[1])) <= self.context_check * float(np.hypot(*log_se)):
            return fit
        self.context_checked += 1
        return fits[0]

    def _share_one_reading(self, indices: list[int]) -> None:
        """Edges in `indices` all fit this window's one reading of the anchor frame (to different
        references): its own error in that reading is common to them, so together they count as one
        edge, each with weight 1/len (standard errors times sqrt(len)). Counted separately, a window
        whose anchor reading is off by its smooth error would be pulled twice as hard towards it."""
        inflate = float(np.sqrt(len(indices)))
        for i in indices:
            fit = self.edges[i].fit
            scaled = dataclasses.replace(fit, scale_se=fit.scale_se * inflate, shift_se=fit.shift_se * inflate)
            self.edges[i] = dataclasses.replace(self.edges[i], fit=scaled)

    def solve(self, anchor: int = 0) -> list[AffineFit]:
        """Per-window affines (window -> canonical scale of `anchor`) from all edges."""
        scales, shifts, _ = solve_global_affine(self.n_windows, self.edges, anchor)
        fitted = fitted_windows(self.edges)
        inliers = edge_inliers(self.edges)
        return [
            AffineFit(scale=float(s), shift=float(t), inlier_fraction=inliers.get(k, 1.0))
            if k == anchor or k in fitted
            else AffineFit(scale=float(s), shift=float(t), inlier_fraction=0.0, degenerate=True, reason=NO_FIT)
            for k, (s, t) in enumerate(zip(scales, shifts, strict=True))
        ]


def frame_samples(disparity: np.ndarray, per_frame: int) -> np.ndarray:
    """`(n, P)` float32 copy of every `step`-th pixel of each frame, `P <= per_frame` (0 = all).

    The same pixels in every frame (a fixed stride over the flattened image covers every row),
    so two windows' samples of a shared frame are compared pixel for pixel.
    """
    flat = disparity.reshape(disparity.shape[0], -1)
    if per_frame and flat.shape[1] > per_frame:
        flat = flat[:, :: -(-flat.shape[1] // per_frame)]
    return np.array(flat, dtype=np.float32)


NO_FIT = "no valid fit to an earlier window; continues in the scale of the window before"


def edge_inliers(edges: list[PairEdge]) -> dict[int, float]:
    """Per later window: the inlier fraction of its valid pairwise fits, weighted by their points."""
    num: dict[int, float] = {}
    den: dict[int, float] = {}
    for e in edges:
        if not e.fit.degenerate and e.fit.n_points:
            num[e.later] = num.get(e.later, 0.0) + e.fit.inlier_fraction * e.fit.n_points
            den[e.later] = den.get(e.later, 0.0) + e.fit.n_points
    return {k: num[k] / den[k] for k in num}


def fitted_windows(edges: list[PairEdge]) -> set[int]:
    """Windows with at least one valid fit to an earlier window (the others are degenerate)."""
    return {e.later for e in edges if not e.fit.degenerate and e.fit.scale > 0}


def _graph_lsq(
    n: int, i: np.ndarray, j: np.ndarray, y: np.ndarray, w: np.ndarray, fixed: dict[int, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted LS of `x[j] - x[i] = y` with `x[f] = fixed[f]`: tree start, then CG on the normal eqs.

    Returns (x, reached). The tree start (breadth-first from the fixed nodes, strongest edges
    first) is the exact solution on a chain; CG only spreads the redundant edges' information
    (cycles). Nodes not connected to a fixed node keep x = 0.
    """
    x = np.zeros(n)
    reached = np.zeros(n, bool)
    for f, value in fixed.items():
        x[f], reached[f] = value, True
    adj: list[list[tuple[int, int, float]]] = [[] for _ in range(n)]
    for e, (a, b) in enumerate(zip(i.tolist(), j.tolist(), strict=True)):
        adj[a].append((b, e, 1.0))
        adj[b].append((a, e, -1.0))
    queue = deque(sorted(fixed))
    while queue:
        a = queue.popleft()
        for b, e, sign in sorted(adj[a], key=lambda t: -w[t[1]]):
            if not reached[b]:
                reached[b] = True
                x[b] = x[a] + sign * y[e]
                queue.append(b)
    free = reached.copy()
    free[list(fixed)] = False
    use = reached[i] & reached[j]
    i, j, y, w = i[use], j[use], y[use], w[use]
    if not free.any() or i.size == 0:
        return x, reached

    def normal(v: np.ndarray) -> np.ndarray:
        d = w * (v[j] - v[i])
        out = np.bincount(j, d, n) - np.bincount(i, d, n)
        out[~free] = 0.0
        return out

    rhs = np.bincount(j, w * y, n) - np.bincount(i, w * y, n)
    rhs[~free] = 0.0
    diag = np.bincount(i, w, n) + np.bincount(j, w, n)
    diag[~free] = 1.0
    r = rhs - normal(x)
    z = r / diag
    p = z.copy()
    rz = float(r @ z)
    tol = 1e-28 * max(float(rhs @ rhs), float(r @ r), 1e-300)
    for _ in range(4 * n + 50):
        if float(r @ r) <= tol:
            break
        ap = normal(p)
        alpha = rz / float(p @ ap)
        x += alpha * p
        r -= alpha * ap
        z = r / diag
        rz_new = float(r @ z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x, reached


def solve_global_affine(
    n_windows: int,
    edges: list[PairEdge],
    anchor: int = 0,
    fixed: dict[int, tuple[float, float]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-window (scale, shift) mapping each window to the anchor window's scale.

    Edge `d_i ≈ a d_j + b` (i earlier, j later) means `s_j = s_i a` and `t_j = t_i + s_i b`. Stage 1
    solves `log s_j - log s_i = log a` (weights from the fit's standard error), stage 2
    `t_j - t_i = s_i b` given the scales; both weighted least squares over all edges.

    Args:
        n_windows: windows are 0 .. n_windows - 1.
        edges: pairwise fits; degenerate ones and non-positive scales are ignored.
        anchor: the window held at (1, 0) when `fixed` is None.
        fixed: windows held at given (scale, shift) instead of the anchor (the causal solve
            freezes windows that left its lag).

    Returns:
        scales `(n,)`, shifts `(n,)`, reached `(n,)` bool (False: no valid edge path to a fixed
        window; such a window, and what hangs off it, continues in the scale of the window before
        it).
    """
    if n_windows == 0:
        return np.ones(0), np.zeros(0), np.zeros(0, bool)
    if fixed is None:
        if not 0 <= anchor < n_windows:
            raise ConfigError(f"anchor window {anchor} out of range [0, {n_windows})")
        fixed = {anchor: (1.0, 0.0)}
    if not fixed or any(not 0 <= f < n_windows or s <= 0 for f, (s, _) in fixed.items()):
        raise ConfigError(f"fixed windows need indices in [0, {n_windows}) and scales > 0, got {fixed}")
    good = [e for e in edges if not e.fit.degenerate and e.fit.scale > 0]
    ei = np.array([e.earlier for e in good], dtype=np.int64)
    ej = np.array([e.later for e in good], dtype=np.int64)
    a = np.array([e.fit.scale for e in good], dtype=np.float64)
    b = np.array([e.fit.shift for e in good], dtype=np.float64)
    floor = 1e-12
    w_log = 1.0 / np.maximum(np.array([e.fit.scale_se for e in good]) / np.maximum(a, floor), floor) ** 2
    se_t = np.array([e.fit.shift_se for e in good])
    has_edge = np.zeros(n_windows, bool)
    has_edge[ei], has_edge[ej] = True, True
    pinned = dict(fixed)
    connected = None
    while True:
        log_pins = {f: float(np.log(s)) for f, (s, _) in pinned.items()}
        logs, reached = _graph_lsq(n_windows, ei, ej, np.log(np.maximum(a, floor)), w_log, log_pins)
        scales = np.exp(logs)
        si = scales[ei] if ei.size else np.zeros(0)
        w_t = 1.0 / np.maximum(si * se_t, floor) ** 2
        shifts, _ = _graph_lsq(n_windows, ei, ej, si * b, w_t, {f: float(t) for f, (_, t) in pinned.items()})
        connected = reached.copy() if connected is None else connected
        # A part of the graph with no path to a fixed window (every fit of some window failed)
        # continues in the scale of the window before it instead of falling back to raw output:
        # its first window is pinned there and the graph solved again (one pass per such part);
        # windows without any valid edge just copy their predecessor.
        pinned_one = False
        for u in np.flatnonzero(~reached).tolist():
            scales[u], shifts[u] = (scales[u - 1], shifts[u - 1]) if u > 0 else (1.0, 0.0)
            if has_edge[u]:
                pinned[u] = (float(scales[u]), float(shifts[u]))
                pinned_one = True
                break
        if not pinned_one:
            return scales, shifts, connected


class CausalGraphAligner:
    """Graph alignment: the weighted least-squares graph solve, run causally over a fixed lag.

    Each window adds its pairwise fits (`GlobalAligner`: the previous `history` windows and the
    first window's slot-0 frame) and gets the affine of the weighted least-squares solve over all
    edges seen so far, in which the new window and the `lag` before it are free and older ones are
    frozen at the estimate they had when they left the lag (window 0 is the canonical scale,
    (1, 0)). Frozen windows matter only through edges to free ones, so older edges and estimates
    are dropped: cost and memory per window are bounded by `lag` and `history`, not the stream
    length.

    Multi-window consensus: the anchor edge of a window is fitted not to window 0's output of the
    anchor frame but to the mean of every earlier window's output of it, each mapped to the
    canonical scale by its estimate. Each window's own smooth error then averages out of the
    reference, instead of window 0's error being inherited by every later window.

    Offline (`DepthPipeline.run_offline`) runs the same estimator with `OFFLINE_LAG` and takes each
    window's estimate when it leaves the lag (`smoothed`): a fixed-lag smoother that sees two
    windows of the future. Chosen on the development data (`benchmarks/alignment_dev.py`): the
    joint solve of all edges was less accurate than the causal stream there (mean AbsRel / δ1 over
    HoloLens and 16 held-out renders: joint 0.1884 / 0.7306, stream 0.1879 / 0.7345; smoothing
    over 1, 2, 3, 4 future windows: 0.1883 / 0.7354, 0.1877 / 0.7351, 0.1876 / 0.7346,
    0.1877 / 0.7338): windows far in the future pull a window's scale with errors of their own.

    Why: on the development data (HoloLens and held-out renders) this stream stays much closer to
    the offline solve, sequence by sequence, than keyframe alignment does; see docs/alignment.md.

    Args:
        options: fit options of the pairwise fits.
        history: previous windows each window is compared with.
        lag: earlier windows re-estimated together with each new one (>= 1).
        keep_history: keep every edge (`edges`) and every window's latest affine (`smoothed`), as
            the offline pass does; memory then grows with the windows (the stream keeps neither).
        context_check: `GlobalAligner`'s context check (0: off, the stream; offline:
            `OFFLINE_CONTEXT_CHECK`, see `offline_aligner`).
    """

    def __init__(
        self,
        options: FitOptions = DEFAULT_FIT_OPTIONS,
        history: int = 2,
        lag: int = 8,
        keep_history: bool = False,
        context_check: float = 0.0,
    ) -> None:
        if lag < 1:
            raise ConfigError(f"graph lag must be >= 1 window, got {lag}")
        self.options, self.history, self.lag, self.keep_history = options, int(history), int(lag), keep_history
        self.context_check = float(context_check)
        self.reset()

    def reset(self) -> None:
        """Forget all windows (stream restart)."""
        self._pairs = GlobalAligner(self.options, self.history, self.context_check)
        self._edges: list[PairEdge] = []
        self._estimates: dict[int, tuple[float, float]] = {}
        self._consensus_sum: np.ndarray | None = None  # canonical anchor samples, summed over windows
        self._consensus_count: np.ndarray | None = None
        self.edges: list[PairEdge] = []  # all of them, with keep_history
        self._final: dict[int, AffineFit] = {}  # latest estimate per window (`smoothed`)
        self.n_windows = 0

    def _consensus(self) -> np.ndarray | None:
        if self._consensus_sum is None or self._consensus_count is None:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self._consensus_sum / self._consensus_count).astype(np.float32)

    def _add_to_consensus(self, scale: float, shift: float) -> None:
        samples = self._pairs.anchor_samples
        if samples is None:
            return
        canonical = samples.astype(np.float64) * scale + shift
        ok = np.isfinite(canonical)
        if self._consensus_sum is None or self._consensus_count is None:
            self._consensus_sum, self._consensus_count = np.zeros(samples.shape), np.zeros(samples.shape)
        else:  # pixels far off the consensus (an outlier burst in this window) stay out of it
            with np.errstate(invalid="ignore", divide="ignore"):
                off = np.abs(canonical - self._consensus_sum / self._consensus_count)
            known = np.isfinite(off) & ok
            if known.any():
                sigma = _MAD_TO_SIGMA * float(np.median(off[known][:: max(1, int(known.sum()) // 8192)]))
                ok &= ~known | (off <= _CONSENSUS_K * max(sigma, 1e-12))
        self._consensus_sum += np.where(ok, canonical, 0.0)
        self._consensus_count += ok

    @property
    def state_size(self) -> tuple[int, int]:
        """(edges, estimates) held for the solve: bounded by the lag, whatever the stream length."""
        return len(self._edges), len(self._estimates)

    def smoothed(self) -> list[AffineFit]:
        """`keep_history`: every window's affine as it left the lag (the last `lag`: their latest)."""
        if not self.keep_history:
            raise ConfigError("smoothed() needs keep_history=True (the stream keeps no history)")
        return [self._final[k] for k in range(self.n_windows)]

    def add(self, window: Window, disparity: np.ndarray) -> AffineFit:
        """Record one window's raw output (windows in order) and return its affine.

        A window with no valid fit to an earlier window gets the previous window's affine
        (`solve_global_affine`) and is marked degenerate: the stream continues in the last known
        scale, and later windows fitted to it follow it.
        """
        k = window.index
        new = self._pairs.add(window, disparity, anchor_reference=self._consensus())
        self._pairs.edges.clear()  # the edges live here, pruned by the lag
        self.n_windows = max(self.n_windows, k + 1)
        if self.keep_history:
            self.edges += new
        if k == 0 or not self._estimates:
            self._edges, self._estimates = [], {k: (1.0, 0.0)}
            self._add_to_consensus(1.0, 0.0)
            if self.keep_history:
                self._final[k] = IDENTITY
            return IDENTITY
        first_free = max(1, k - self.lag)  # window 0 is the canonical scale
        self._edges = [e for e in self._edges + new if e.later >= first_free]
        nodes = sorted({n for e in self._edges for n in (e.earlier, e.later)} | set(self._estimates) | {k})
        local = {n: idx for idx, n in enumerate(nodes)}
        fixed = {local[n]: self._estimates[n] for n in nodes if n < first_free}
        edges = [PairEdge(local[e.earlier], local[e.later], e.fit) for e in self._edges]
        scales, shifts, _ = solve_global_affine(len(nodes), edges, fixed=fixed)
        for n in range(first_free, k + 1):
            self._estimates[n] = (float(scales[local[n]]), float(shifts[local[n]]))
        keep = {0, *range(first_free, k + 1), *(e.earlier for e in self._edges)}
        self._estimates = {n: v for n, v in self._estimates.items() if n in keep}
        scale, shift = self._estimates[k]
        self._add_to_consensus(scale, shift)
        if k not in fitted_windows(new):
            inverted = [e.fit.reason for e in new if e.later == k and e.fit.reason.startswith(INVERTED)]
            reason = f"{NO_FIT}: {inverted[0]}" if inverted else NO_FIT  # (the stitcher drops an inverted window)
            fit = AffineFit(scale=scale, shift=shift, inlier_fraction=0.0, degenerate=True, reason=reason)
        else:
            fit = AffineFit(scale=scale, shift=shift, inlier_fraction=edge_inliers(new)[k])
        if self.keep_history:
            self._final[k] = fit
            for n in range(first_free, k):  # re-estimated earlier windows: their latest affine
                est = self._estimates[n]
                self._final[n] = dataclasses.replace(self._final[n], scale=est[0], shift=est[1])
        return fit


def offline_aligner(options: FitOptions = DEFAULT_FIT_OPTIONS) -> CausalGraphAligner:
    """The offline pass's estimator (`DepthPipeline.run_offline`): the graph estimator as a fixed-lag
    smoother (`OFFLINE_LAG` future windows, every edge kept, `smoothed`) with the context check
    (`OFFLINE_CONTEXT_CHECK`). Chosen on the development data (docs/alignment.md): without the
    check the offline pass was worse than the stream on 10 of 17 sequences, with it on 7."""
    return CausalGraphAligner(options, lag=OFFLINE_LAG, keep_history=True, context_check=OFFLINE_CONTEXT_CHECK)
