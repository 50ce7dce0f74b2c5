"""Stitcher (causal), crossfade, provisional/final semantics, offline graph solve."""

from __future__ import annotations

import numpy as np
import pytest

from vdepth_ros.errors import ConfigError
from vdepth_ros.pipeline_offline import OFFLINE_CROSSFADE
from vdepth_ros.stream.align import IDENTITY, AffineFit, FitOptions
from vdepth_ros.stream.graph import (
    OFFLINE_LAG,
    CausalGraphAligner,
    GlobalAligner,
    PairEdge,
    offline_aligner,
    solve_global_affine,
)
from vdepth_ros.stream.stitch import Stitcher, blend, blend_weights, crossfade_weights
from vdepth_ros.stream.windows import WindowScheduler, anchor_keyframes

VDA_KF = (0, 12, 24, 25, 26, 27, 28, 29, 30, 31)


def _video(n, h=24, w=32, seed=0):
    """Smooth moving disparity in ~[0.3, 1.1]."""
    v, u = np.mgrid[0:h, 0:w] / w
    return np.stack([0.7 + 0.3 * np.sin(4 * u + 0.1 * k) * np.cos(3 * v - 0.05 * k) + 0.1 * v for k in range(n)])


def _run(sched, stitcher, gt, affines, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    events = []
    for w in sched.plan(len(gt)):
        s, t = affines(w.index)
        x = gt[list(w.slots)]
        out = (s * x * (1 + noise * rng.standard_normal(x.shape)) + t).astype(np.float32)
        events += stitcher.add(w, out)
    events += stitcher.finish()
    return events


def _final(events, n):
    final = {e.index: e.disparity for e in events if e.status == "final"}
    assert sorted(final) == list(range(n))
    return np.stack([final[i] for i in range(n)])


def test_crossfade_weights_formula():
    w = crossfade_weights(9)
    assert w[0] == 0.0 and w[-1] == 1.0  # first overlap frame 100 % old, last 100 % new
    np.testing.assert_allclose(w, np.arange(9) / 8)
    np.testing.assert_allclose(crossfade_weights(8), np.arange(8) / 7)  # VDA: i/7
    # the offline rule: the same ramp half a frame off its ends, so every overlap frame is a blend
    np.testing.assert_allclose(blend_weights(2), [0.25, 0.75])
    np.testing.assert_allclose(blend_weights(8), (np.arange(8) + 0.5) / 8)
    np.testing.assert_allclose(blend_weights(1), [0.5])
    old = np.array([[1.0, np.nan, 2.0]], np.float32)
    new = np.array([[3.0, 5.0, np.nan]], np.float32)
    np.testing.assert_allclose(blend(old, new, 0.25), [[1.5, 5.0, 2.0]])


@pytest.mark.parametrize(
    "sched",
    [
        lambda: WindowScheduler(9, 3),
        lambda: WindowScheduler(13, 4, frames_rule="4n+1"),
        lambda: WindowScheduler(16, 6, schedule="keyframe", keyframes=(0, 6, 12, 13, 14, 15)),
    ],
)
def test_noiseless_windows_stitch_exactly_to_the_first_windows_scale(sched):
    gt = _video(57)
    rng = np.random.default_rng(11)
    affs = [(rng.uniform(0.5, 2), rng.uniform(-0.2, 0.2)) for _ in range(40)]
    s = sched()
    alignment = "keyframe" if s.schedule == "keyframe" else "chain_ls"
    events = _run(s, Stitcher(alignment), gt, lambda k: affs[k])
    out = _final(events, len(gt))
    s0, t0 = affs[0]
    np.testing.assert_allclose(out, s0 * gt + t0, rtol=1e-5, atol=1e-5)


def test_each_frame_final_once_provisional_at_most_once_and_in_order():
    gt = _video(40)
    s = WindowScheduler(9, 3)
    events = _run(s, Stitcher("chain_ls"), gt, lambda k: (1.0 + 0.1 * k, 0.01 * k))
    finals = [e.index for e in events if e.status == "final"]
    provs = [e.index for e in events if e.status == "provisional"]
    assert sorted(finals) == list(range(40)) and len(set(finals)) == 40
    assert len(set(provs)) == len(provs)
    # provisional frames are exactly the last O frames of each non-last window
    assert provs == [f for k in range(6) for f in range(6 * k + 6, 6 * k + 9)]
    first_seen = []
    for e in events:
        if e.index not in first_seen:
            first_seen.append(e.index)
    assert first_seen == list(range(40))


def test_overlap_is_crossfaded_between_old_and_new_values():
    gt = np.ones((12, 2, 2))
    s = WindowScheduler(8, 4)
    st = Stitcher("none")  # no fit: check the blend alone
    w0, w1 = s.plan(12)
    st.add(w0, gt[list(w0.slots)] * 1.0)
    ev = st.add(w1, gt[list(w1.slots)] * 2.0)
    blended = [e.disparity[0, 0] for e in ev if e.index in range(4, 8)]
    np.testing.assert_allclose(blended, 1.0 + np.arange(4) / 3)


def test_chain_robust_symmetric_fit_does_not_drift_where_ols_does():
    gt = _video(400, 32, 40)
    rng = np.random.default_rng(11)
    affs = [(rng.uniform(0.5, 2), rng.uniform(-0.2, 0.2)) for _ in range(100)]

    def drift(options):
        out = _final(_run(WindowScheduler(12, 4), Stitcher("chain_ls", options), gt, lambda k: affs[k], 0.05, 3), 400)
        ratio = [np.median(out[i] / (affs[0][0] * gt[i] + affs[0][1])) for i in (0, 399)]
        return ratio[1] / ratio[0]

    assert abs(drift(FitOptions()) - 1) < 0.02
    assert abs(drift(FitOptions(method="ols", robust="none")) - 1) > 0.05


def test_keyframe_anchor_refresh_on_content_change():
    n = 120
    gt = _video(n)
    gt[60:] = _video(60, seed=1)[:, ::-1, ::-1] * 0.3 + 0.9 + 0.4 * np.random.default_rng(0).random((60, 24, 32))
    s = WindowScheduler(16, 6, schedule="keyframe", keyframes=(0, 6, 12, 13, 14, 15))
    st = Stitcher("keyframe", anchor_refresh=True, anchor_min_inliers=0.5)
    rng = np.random.default_rng(11)
    refreshed = []
    for _ in range(n):
        s.add_frame()
        while (w := s.next_window()) is not None:
            # frame 0's content predicted inconsistently once the scene changed (new context)
            x = gt[list(w.slots)].copy()
            if w.slots[-1] >= 60 and w.slots[0] < 60:
                x[0] = rng.random(x[0].shape)
            st.add(w, x * rng.uniform(0.5, 2))
            if st.anchor != s.anchor:
                s.set_anchor(st.anchor)
                refreshed.append((w.index, w.slots[0], w.slots[-1], st.anchor))
    assert st.anchor_refreshes == 1, refreshed
    assert refreshed[0][3] >= 60  # the new anchor shows the new scene
    st2 = Stitcher("keyframe")  # the papers: frame 0 forever
    assert st2.anchor_refresh is False


def test_degenerate_fit_is_counted_and_reported():
    s = WindowScheduler(6, 2)
    st = Stitcher("chain_ls")
    w0, w1 = s.plan(10)
    st.add(w0, np.full((6, 4, 4), 0.5))
    ev = st.add(w1, np.full((6, 4, 4), 0.7))
    assert st.degenerate_fits == 1
    assert ev[-1].fit.degenerate and ev[-1].fit.scale == 1.0 and "variance" in ev[-1].fit.reason


def test_global_solve_exact_on_chain_and_consistent_cycle():
    true = [(1.0, 0.0), (2.0, 0.1), (0.5, -0.2), (1.5, 0.3)]

    def edge(i, j):
        (si, ti), (sj, tj) = true[i], true[j]
        # d_i ≈ a d_j + b with canonical c = s d + t: d_i = (s_j d_j + t_j - t_i) / s_i
        return PairEdge(i, j, AffineFit(scale=sj / si, shift=(tj - ti) / si, scale_se=1e-3, shift_se=1e-3))

    edges = [edge(0, 1), edge(1, 2), edge(2, 3), edge(1, 3)]
    scales, shifts, reached = solve_global_affine(4, edges, anchor=0)
    assert reached.all()
    np.testing.assert_allclose(scales, [s for s, _ in true], rtol=1e-9)
    np.testing.assert_allclose(shifts, [t for _, t in true], atol=1e-9)
    # a disconnected window is reported, left at (1, 0)
    _, _, reached = solve_global_affine(5, edges, anchor=0)
    assert not reached[4]


def test_global_solve_averages_redundant_noisy_edges():
    # two measurements with equal relative errors -> the geometric mean of the scales
    e1 = PairEdge(0, 1, AffineFit(scale=1.1, shift=0.0, scale_se=0.011, shift_se=0.01))
    e2 = PairEdge(0, 1, AffineFit(scale=0.9, shift=0.0, scale_se=0.009, shift_se=0.01))
    scales, _, _ = solve_global_affine(2, [e1, e2])
    assert scales[1] == pytest.approx(np.sqrt(1.1 * 0.9), rel=1e-6)


@pytest.mark.parametrize("keyframe", [False, True])
def test_offline_aligner_recovers_truth_up_to_one_affine(keyframe):
    gt = _video(90)
    rng = np.random.default_rng(11)
    if keyframe:
        s = WindowScheduler(16, 6, schedule="keyframe", keyframes=(0, 6, 12, 13, 14, 15))
    else:
        s = WindowScheduler(13, 4, frames_rule="4n+1")
    windows = s.plan(90)
    raw = []
    aligner = GlobalAligner()
    for w in windows:
        a, b = rng.uniform(0.5, 2), rng.uniform(-0.2, 0.2)
        d = (a * gt[list(w.slots)] * (1 + 0.01 * rng.standard_normal((len(w.slots), 24, 32))) + b).astype(np.float32)
        raw.append((d, a, b))
        aligner.add(w, d)
    fits = aligner.solve()
    a0, b0 = raw[0][1], raw[0][2]
    for fit, (_, a, b) in zip(fits, raw, strict=True):
        # window k maps onto window 0's affine frame: s_k * a_k = a_0
        assert fit.scale * a == pytest.approx(a0, rel=0.01)
        assert fit.scale * b + fit.shift == pytest.approx(b0, abs=0.01)
    if keyframe:  # every window shares the anchor frame 0 with window 0
        assert any(e.earlier == 0 and e.later > 2 for e in aligner.edges)
    st = Stitcher("keyframe" if keyframe else "chain_ls")
    events = []
    for w, (d, _, _), fit in zip(windows, raw, fits, strict=True):
        events += st.add(w, d, affine=fit)
    events += st.finish()
    out = _final(events, 90)
    np.testing.assert_allclose(out, a0 * gt + b0, rtol=0.05, atol=0.02)


def test_inplace_aligns_the_callers_array_and_gives_the_same_result():
    gt = _video(20)
    s = WindowScheduler(9, 3)
    windows = s.plan(20)
    raw = [(1.5 * gt[list(w.slots)] + 0.1 * w.index).astype(np.float32) for w in windows]
    copy_events, inplace_events = [], []
    a, b = Stitcher("chain_ls"), Stitcher("chain_ls")
    for w, d in zip(windows, raw, strict=True):
        copy_events += a.add(w, d)
        kept = d.copy()
        inplace_events += b.add(w, d, inplace=True)
        if w.index > 0:
            assert not np.array_equal(d, kept)  # the caller's array was reused
    for x, y in zip(copy_events, inplace_events, strict=True):
        np.testing.assert_array_equal(x.disparity, y.disparity)


def _noisy_windows(windows, gt, rng, noise=0.01):
    raw = []
    for w in windows:
        a, b = rng.uniform(0.5, 2), rng.uniform(-0.2, 0.2)
        x = gt[list(w.slots)]
        raw.append(((a * x * (1 + noise * rng.standard_normal(x.shape)) + b).astype(np.float32), a, b))
    return raw


def test_global_solve_holds_fixed_windows():
    true = [(1.0, 0.0), (2.0, 0.1), (0.5, -0.2)]
    edges = [
        PairEdge(i, j, AffineFit(scale=true[j][0] / true[i][0], shift=(true[j][1] - true[i][1]) / true[i][0]))
        for i, j in [(0, 1), (1, 2)]
    ]
    scales, shifts, reached = solve_global_affine(3, edges, fixed={1: (4.0, 0.2)})
    # window 1 held at (4, 0.2): the others follow it through the same edges
    np.testing.assert_allclose(scales, [2.0, 4.0, 1.0], rtol=1e-9)
    np.testing.assert_allclose(shifts, [0.0, 0.2, -0.4], atol=1e-9)
    assert reached.all()
    with pytest.raises(ConfigError, match="fixed"):
        solve_global_affine(3, edges, fixed={5: (1.0, 0.0)})
    with pytest.raises(ConfigError, match="fixed"):
        solve_global_affine(3, edges, fixed={0: (0.0, 0.0)})


@pytest.mark.parametrize("keyframe", [False, True])
def test_causal_graph_recovers_truth_up_to_one_affine(keyframe):
    gt = _video(90)
    if keyframe:
        s = WindowScheduler(16, 6, schedule="keyframe", keyframes=(0, 6, 12, 13, 14, 15))
    else:
        s = WindowScheduler(13, 4, frames_rule="4n+1")
    windows = s.plan(90)
    raw = _noisy_windows(windows, gt, np.random.default_rng(6))
    aligner, st, events = CausalGraphAligner(lag=2), Stitcher("graph"), []
    a0, b0 = raw[0][1], raw[0][2]
    for w, (d, a, b) in zip(windows, raw, strict=True):
        fit = aligner.add(w, d)
        assert not fit.degenerate
        assert fit.scale * a == pytest.approx(a0, rel=0.01)  # onto window 0's frame
        assert fit.scale * b + fit.shift == pytest.approx(b0, abs=0.01)
        events += st.add(w, d, affine=fit)
    events += st.finish()
    np.testing.assert_allclose(_final(events, 90), a0 * gt + b0, rtol=0.05, atol=0.02)


def test_causal_graph_with_unbounded_lag_is_the_offline_solve_of_the_windows_so_far():
    gt = _video(80)
    windows = WindowScheduler(16, 6, schedule="keyframe", keyframes=(0, 6, 12, 13, 14, 15)).plan(80)
    raw = _noisy_windows(windows, gt, np.random.default_rng(7), noise=0.05)
    causal, edges = CausalGraphAligner(lag=1000), CausalGraphAligner(keep_history=True)
    for w, (d, _, _) in zip(windows, raw, strict=True):
        fit = causal.add(w, d)
        edges.add(w, d)
        scales, shifts, _ = solve_global_affine(edges.n_windows, edges.edges)
        assert fit.scale == pytest.approx(scales[w.index], rel=1e-6)
        assert fit.shift == pytest.approx(shifts[w.index], abs=1e-6)


def test_offline_smoothing_takes_each_window_as_it_leaves_the_lag():
    gt = _video(80)
    windows = WindowScheduler(16, 6, schedule="keyframe", keyframes=(0, 6, 12, 13, 14, 15)).plan(80)
    raw = _noisy_windows(windows, gt, np.random.default_rng(5), noise=0.05)
    smoother, history = CausalGraphAligner(lag=2, keep_history=True), []
    for w, (d, _, _) in zip(windows, raw, strict=True):
        smoother.add(w, d)
        history.append(dict(smoother._estimates))
    final = smoother.smoothed()
    assert len(final) == len(windows)
    for k in range(1, len(windows) - 2):  # frozen once two more windows were seen
        assert (final[k].scale, final[k].shift) == history[k + 2][k]
        assert history[k][k] != history[k + 2][k]  # and the future did move it


def test_anchor_edges_fit_the_consensus_of_earlier_windows():
    """The anchor edge's reference is the mean of every earlier window's anchor output in the
    canonical scale: one window's own error in it no longer sets every later window's scale."""
    gt = _video(80)
    windows = WindowScheduler(16, 6, schedule="keyframe", keyframes=(0, 6, 12, 13, 14, 15)).plan(80)
    aligner = CausalGraphAligner(keep_history=True)
    for w in windows:
        d = (2.0 * gt[list(w.slots)] + 0.1).astype(np.float32)
        if w.index == 0:
            d[0] *= 1.3  # window 0 got the anchor frame 30 % too far away
        aligner.add(w, d)
    anchor_edges = [e for e in aligner.edges if e.earlier == 0 and e.later > 2]
    assert len(anchor_edges) == len(windows) - 3
    # each later anchor edge's error shrinks as the consensus outweighs window 0
    errors = [abs(np.log(e.fit.scale)) for e in anchor_edges]
    assert errors[-1] < errors[0] / 2


def test_causal_graph_state_is_bounded_by_the_lag():
    gt = _video(12, h=8, w=12)
    s = WindowScheduler(6, 3, schedule="keyframe", keyframes=(0, 2, 3))
    aligner, rng = CausalGraphAligner(lag=3), np.random.default_rng(8)
    sizes = []
    for w in s.plan(600):
        x = gt[[f % 12 for f in w.slots]]
        aligner.add(w, (rng.uniform(0.5, 2) * x + rng.uniform(-0.2, 0.2)).astype(np.float32))
        sizes.append(aligner.state_size)
    assert len(sizes) > 150
    assert max(sizes[20:]) == max(sizes[-20:])  # no growth with the stream length
    edges, estimates = max(sizes)
    assert edges <= 3 * (3 + 1) and estimates <= 1 + (3 + 1) + 2  # lag windows' edges; window 0 + lag + history
    assert not aligner.edges and not aligner._final  # the history is kept offline only


def test_causal_graph_keeps_the_last_scale_for_a_window_without_valid_fits():
    gt = _video(40)
    windows = WindowScheduler(8, 3).plan(40)
    aligner, fits = CausalGraphAligner(lag=2), []
    for w in windows:
        d = (1.5 * gt[list(w.slots)] + 0.1).astype(np.float32)
        if w.index == 3:
            d = np.full_like(d, 0.7)  # no variance: every fit with it is degenerate
        fits.append(aligner.add(w, d))
    assert fits[3].degenerate and "earlier window" in fits[3].reason
    assert (fits[3].scale, fits[3].shift) == (fits[2].scale, fits[2].shift)
    # window 4's only fit is to window 3 (degenerate); window 5 fits window 4 and follows it
    assert fits[4].degenerate and not fits[5].degenerate and not fits[-1].degenerate
    for f in fits[4:]:
        assert (f.scale, f.shift) == pytest.approx((fits[2].scale, fits[2].shift))
    with pytest.raises(ConfigError, match="lag"):
        CausalGraphAligner(lag=0)


def test_graph_stitcher_fits_with_its_own_causal_graph_unless_given_the_affine():
    gt = _video(60)
    windows = WindowScheduler(16, 6, schedule="keyframe", keyframes=(0, 6, 12, 13, 14, 15)).plan(60)
    raw = _noisy_windows(windows, gt, np.random.default_rng(9))
    own, given, aligner = Stitcher("graph", graph_lag=2), Stitcher("graph"), CausalGraphAligner(lag=2)
    assert own.graph is not None and own.graph.lag == 2
    for w, (d, _, _) in zip(windows, raw, strict=True):
        fit = aligner.add(w, d)
        # in place: the stitcher's graph must have copied the raw output before it was aligned
        mine = own.add(w, d.copy(), inplace=True)
        theirs = given.add(w, d, affine=AffineFit(scale=2 * fit.scale, shift=fit.shift))
        assert (own.last_fit.scale, own.last_fit.shift) == pytest.approx((fit.scale, fit.shift), rel=1e-9)
        assert given.last_fit.scale == pytest.approx(2 * fit.scale)  # a given affine is used as is
        assert [f.index for f in mine] == [f.index for f in theirs]
    assert given.graph is not None and given.graph.state_size == (0, 0)  # never fed: offline mode
    own.reset()
    assert own.graph.state_size == (0, 0)


# -- structured per-window errors (issue #26), one case per schedule -----------------------------
STRUCTURED_SCHEDULES = {
    "vda_32_10": {"window": 32, "overlap": 10, "keyframes": VDA_KF},
    "dvd_45_9": {"window": 45, "overlap": 9, "frames_rule": "4n+1"},
    "depthcrafter_110_25": {"window": 110, "overlap": 25},
    "default_8_4": {"window": 8, "overlap": 4, "keyframes": (0, 3, 6, 7)},
}


def _structured_field(rng, h, w):
    """A window's smooth multiplicative error: ±10 % bias from a 3x4 grid, a tilt, a wrong part."""
    v, u = np.mgrid[0:h, 0:w] / np.array([h - 1, w - 1])[:, None, None] - 0.5
    grid = rng.uniform(-0.1, 0.1, (3, 4))
    bias = np.stack([np.interp(np.linspace(0, 3, w), np.arange(4), g) for g in grid])
    bias = np.stack([np.interp(np.linspace(0, 2, h), np.arange(3), bias[:, j]) for j in range(w)], axis=1)
    tilt = 1 + rng.uniform(-0.1, 0.1) * u + rng.uniform(-0.1, 0.1) * v
    part = 1 + np.where(u + 0.5 * v > rng.uniform(-0.3, 0.3), rng.uniform(-0.1, 0.1), 0.0)
    return (1 + bias) * tilt * part


def _drift(stream, gt):
    """AbsRel (depth) after one least-squares affine over all frames minus the same over the
    first third: the benchmark's drift (`benchmarks/stream_drift.py`), the papers' protocol."""
    from vdepth_ros.eval.metrics import aligned_depth, fit_disparity_affine

    def absrel(pred, g):
        s, t = fit_disparity_affine(pred, 1.0 / g, np.ones(pred.shape, bool))
        depth, truth = aligned_depth(pred, s, t, 1e9).astype(np.float64), 1.0 / g
        return np.mean(np.mean(np.abs(depth - truth) / truth, axis=(1, 2)))  # `frame_metrics`, every frame at once

    third = len(gt) // 3
    return float(absrel(stream, gt) - absrel(stream[:third], gt[:third]))


def _structured_case(name: str, seed: int, h: int = 24, w: int = 32) -> tuple[float, float, float]:
    """Drift above the floor of (graph stream, offline, papers' chained OLS) on 16 windows with
    structured per-window errors: random affine, smooth bias field, tilt, wrong part, 1 % noise."""
    cfg = STRUCTURED_SCHEDULES[name]
    window, rule = cfg["window"], cfg.get("frames_rule", "any")
    keyframes = cfg.get("keyframes") or anchor_keyframes(window, cfg["overlap"])
    sched = WindowScheduler(window, len(keyframes), schedule="keyframe", keyframes=keyframes, frames_rule=rule)
    n = window + 15 * sched.stride
    gt = _video(n, h=h, w=w) + 0.2
    rng = np.random.default_rng(seed)
    errors, outputs = {}, {}

    def output(win, affine=True):
        if (win.slots, affine) in outputs:  # the same window's output for every stitcher (read-only: none writes it)
            return outputs[win.slots, affine]
        if win.slots not in errors:
            errors[win.slots] = (rng.uniform(0.5, 2), rng.uniform(-0.2, 0.2), _structured_field(rng, h, w))
        a, b, field = errors[win.slots]
        noise = np.random.default_rng([seed, len(errors)]).standard_normal((len(win.slots), h, w))
        x = gt[list(win.slots)] * field * (1 + 0.01 * noise)
        out = outputs[win.slots, affine] = (a * x + b if affine else x).astype(np.float32)
        out.flags.writeable = False
        return out

    windows = sched.plan(n)
    graph = _final(_run_windows(Stitcher("graph"), windows, output), n)
    floor = _final(_run_windows(Stitcher("graph"), windows, lambda win: output(win, affine=False), IDENTITY), n)
    aligner = offline_aligner()  # as `DepthPipeline.run_offline`
    for win in windows:
        aligner.add(win, output(win))
    offline = _final(
        _run_windows(Stitcher("graph", crossfade=OFFLINE_CROSSFADE), windows, output, aligner.smoothed()), n
    )
    released = WindowScheduler(window, cfg["overlap"], frames_rule=rule).plan(n)
    plain = FitOptions(method="ols", robust="none", max_points=0, min_correlation=0.0)
    chain = _final(_run_windows(Stitcher("chain_ls", plain), released, output), n)
    base = _drift(floor, gt)
    return _drift(graph, gt) - base, _drift(offline, gt) - base, _drift(chain, gt) - base


@pytest.mark.parametrize("name", list(STRUCTURED_SCHEDULES))
def test_structured_window_errors_stay_near_the_floor_per_schedule(name):
    """With anchor slots on every layout the graph stream and the offline solve keep the drift of
    perfect stitching (the floor) on average over three sequences; chained least squares on the
    released layout accumulates the per-window errors. (The benchmark's goals, on 3000 frames at
    128x96: `benchmarks/stream_drift.py`; 16 windows at 24x32 are noisier, hence the margins and
    eight sequences: with three, the chain's mean drift on the DVD layout was half its 8-seed mean.)"""
    graph, offline, chain = np.mean([_structured_case(name, seed) for seed in range(8)], axis=0)
    assert graph <= 0.006 and offline <= 0.006
    assert chain > max(graph, offline) + 0.01


def _run_windows(stitcher, windows, output, affines=None):
    events = []
    for k, w in enumerate(windows):
        affine = affines if affines is None or isinstance(affines, AffineFit) else affines[k]
        events += stitcher.add(w, output(w), affine=affine)
    return events + stitcher.finish()


def test_an_outlier_burst_stays_out_of_the_anchor_consensus():
    gt = _video(80)
    windows = WindowScheduler(16, 6, schedule="keyframe", keyframes=(0, 6, 12, 13, 14, 15)).plan(80)
    aligner, rng = CausalGraphAligner(), np.random.default_rng(3)
    for w in windows:
        x = gt[list(w.slots)]
        d = (2.0 * x * (1 + 0.01 * rng.standard_normal(x.shape)) + 0.1).astype(np.float32)
        if w.index == 3:
            d[:, :8, :8] = 5.0  # a burst over every frame of one window, anchor slot included
        aligner.add(w, d)
    consensus = aligner._consensus().reshape(24, 32)  # window 0's scale: 2 gt + 0.1
    np.testing.assert_allclose(consensus[:8, :8], 2.0 * gt[0, :8, :8] + 0.1, rtol=0.03)


def test_a_windows_one_reading_of_the_anchor_frame_counts_once():
    """On VDA's layout a window shares only the anchor frame with the window two before it, so two
    edges (to that window and to the anchor consensus) fit the same reading of it. A reading off by
    the window's own error must pull the window's scale as hard as one edge does (`history=1`: the
    consensus edge alone), not twice as hard (it was 40 % more here)."""
    gt = _video(200) + 0.2
    windows = WindowScheduler(32, 10, schedule="keyframe", keyframes=VDA_KF).plan(200)

    def scale_error(history: int) -> float:
        rng, aligner, a0 = np.random.default_rng(0), CausalGraphAligner(history=history), 1.0
        for w in windows:
            a, b = rng.uniform(0.5, 2), rng.uniform(-0.2, 0.2)
            x = gt[list(w.slots)].copy()
            if w.index == 3:
                x[0] *= 1.15  # this window reads the anchor frame 15 % too near
            fit = aligner.add(w, (a * x + b).astype(np.float32))
            a0 = a if w.index == 0 else a0  # the canonical scale is window 0's
            if w.index == 3:
                return float(np.log(fit.scale * a / a0))
        raise AssertionError("window 3 not reached")

    once, both = scale_error(history=1), scale_error(history=2)
    assert once < -0.03  # the reading does pull the scale
    assert abs(both) <= 1.1 * abs(once)


def _context_biased_windows(seed: int, n: int = 120):
    """The bundled 8/4 layout; every later window reads its context slots (the anchor and the
    older frame) 20-40 % nearer than its output frames, as the bundled model does on some
    sequences (docs/alignment.md, `context_bias`), plus a random affine and 1 % noise."""
    gt = _video(n) + 0.2
    windows = WindowScheduler(8, 4, schedule="keyframe", keyframes=(0, 3, 6, 7)).plan(n)
    rng, raw = np.random.default_rng(seed), []
    for w in windows:
        a, b = rng.uniform(0.5, 2), rng.uniform(-0.2, 0.2)
        x = gt[list(w.slots)] * (1 + 0.01 * rng.standard_normal((len(w.slots), *gt.shape[1:])))
        if w.index:
            x[: w.n_context] *= rng.uniform(1.2, 1.4)
        raw.append(((a * x + b).astype(np.float32), a, b))
    return windows, raw


def _output_scale_error(aligner: CausalGraphAligner, windows, raw) -> float:
    """Mean |log| error of the windows' scales (their output frames' affine, relative to window 0)."""
    for w, (d, _, _) in zip(windows, raw, strict=True):
        aligner.add(w, d)
    a0 = raw[0][1]
    return float(np.mean([abs(np.log(f.scale * a / a0)) for f, (_, a, _) in zip(aligner.smoothed(), raw, strict=True)]))


def test_offline_pairs_leave_out_context_frames_that_disagree_with_the_output_frames():
    """Offline, a pair whose context frames and output frames disagree is fitted on its output
    frames only (`OFFLINE_CONTEXT_CHECK`): its windows' scales follow their output frames. Without
    the check the older frame's biased reading pulls every pair edge."""
    errors = []
    for seed in range(3):
        windows, raw = _context_biased_windows(seed)
        without = _output_scale_error(CausalGraphAligner(lag=OFFLINE_LAG, keep_history=True), windows, raw)
        checked = offline_aligner()
        errors.append((without, _output_scale_error(checked, windows, raw)))
        assert checked._pairs.context_checked > 0
    without, with_check = np.mean(errors, axis=0)
    assert with_check < 0.7 * without, (without, with_check)  # measured: 0.29 -> 0.16 (3 seeds)


def test_offline_context_check_keeps_consistent_windows_as_they_were():
    """Where context and output frames agree (one affine per window) the check changes no edge."""
    gt = _video(80) + 0.2
    windows = WindowScheduler(8, 4, schedule="keyframe", keyframes=(0, 3, 6, 7)).plan(80)
    raw = _noisy_windows(windows, gt, np.random.default_rng(4))
    plain, checked = CausalGraphAligner(lag=OFFLINE_LAG, keep_history=True), offline_aligner()
    for w, (d, _, _) in zip(windows, raw, strict=True):
        plain.add(w, d)
        checked.add(w, d)
    assert checked._pairs.context_checked <= 1
    for a, b in zip(plain.smoothed(), checked.smoothed(), strict=True):
        assert b.scale == pytest.approx(a.scale, rel=0.01)


# The papers' layouts as the pipeline schedules them (stream_drift.SCHEDULES; chain families with
# the anchor slots of `alignment: graph`, and released), with a length whose last window is short.
OFFLINE_LAYOUTS = {
    "default_8_4": dict(window=8, overlap=4, schedule="keyframe", keyframes=(0, 3, 6, 7)),
    "vda_32_10": dict(window=32, overlap=10, schedule="keyframe", keyframes=VDA_KF),
    "dvd_45_9": dict(window=45, overlap=9, schedule="keyframe", keyframes=anchor_keyframes(45, 9), frames_rule="4n+1"),
    "dvd_45_9_released": dict(window=45, overlap=9, frames_rule="4n+1"),
    "depthcrafter_110_25": dict(window=110, overlap=25, schedule="keyframe", keyframes=anchor_keyframes(110, 25)),
    "depthcrafter_110_25_released": dict(window=110, overlap=25),
    "anchor_w6_o3": dict(window=6, overlap=3, schedule="keyframe", keyframes=anchor_keyframes(6, 3)),
}


@pytest.mark.parametrize("layout", sorted(OFFLINE_LAYOUTS))
def test_offline_crossfade_blends_every_overlap_frame(layout):
    """`run_offline`'s crossfade (`OFFLINE_CROSSFADE`) gives every frame two windows output a value
    strictly between their readings, rising with the frame: the papers' `linspace(0, 1, n)` hands
    the first overlap frame wholly to the old window and the last wholly to the new one (on the
    bundled 8/4 layout both of its two overlap frames: a switch of window, not a blend)."""
    sched = WindowScheduler(**OFFLINE_LAYOUTS[layout])
    n_frames = 3 * sched.window - 7
    stitcher = Stitcher("graph", crossfade=OFFLINE_CROSSFADE)
    emitted: dict[int, list[int]] = {}  # frame -> the windows that output it (provisional, then final)
    final: dict[int, float] = {}
    for w in sched.plan(n_frames):
        value = float(2**w.index)  # window k reads every frame as 2^k: a frame's value says whose it is
        events = stitcher.add(w, np.full((len(w.slots) + w.pad, 2, 2), value, np.float32), affine=IDENTITY)
        for e in events:
            if e.window == w.index:
                emitted.setdefault(e.index, []).append(w.index)
        final |= {e.index: float(e.disparity[0, 0]) for e in events if e.status == "final"}
    final |= {e.index: float(e.disparity[0, 0]) for e in stitcher.finish()}
    assert sorted(final) == list(range(n_frames))
    overlaps: dict[tuple[float, float], list[float]] = {}
    for f, windows in emitted.items():
        if len(windows) > 1:
            old, new = 2.0 ** windows[-2], 2.0 ** windows[-1]
            overlaps.setdefault((old, new), []).append((final[f] - old) / (new - old))
    assert overlaps, f"{layout}: no frame output by two windows"
    for (old, new), shares in overlaps.items():
        assert all(0.0 < s < 1.0 for s in shares), f"{layout}: windows {old}->{new}: new window's shares {shares}"
        assert shares == sorted(shares)
