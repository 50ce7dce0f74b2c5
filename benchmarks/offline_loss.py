"""Where the offline pass loses to the causal stream, frame by frame (issue #26, docs/alignment.md).

`run_offline` is at least as good as the stream on the means of the 17 development sequences but
worse in AbsRel or δ1 on 7 of them. This analysis takes the recorded windows of
`offline_estimators.py` (`--cache`; the model is not re-run when the cache holds them), stitches
them three ways and scores every frame after each output's own least-squares disparity affine (the
papers' protocol, `evaluate_sequence`):

* `stream`: the causal graph alignment, each frame as first published;
* `offline`: `run_offline`'s smoother affines with its crossfade (`offline_estimators` `smoother`);
* `stream_xfade`: the stream's affines with the offline crossfade, which splits offline − stream
  into the affines' part (offline − stream_xfade) and the output representation's part
  (stream_xfade − stream);
* the affines' part in three steps (`STEPS`, each crossfaded as `run_offline`): `checked` the
  stream's estimator with the offline context check, `checked_future` the same with each window's
  affine taken once `OFFLINE_LAG` later windows were added (still lag 8 into the past), and
  `offline`, whose shorter lag freezes the windows before the one estimated.

Per sequence it prints the δ1 / AbsRel difference offline − stream and where in time it is: in
the frames of the first window, the frames two windows output (overlap, blended offline), the
frames one later window outputs, the last window's frames; the three windows that lose most; and,
per window, the error of its globally aligned output against the GT at its median (`err`, log of
the GT-fitted affine's value over the identity at the window's median disparity: how far the
window's affine is from the GT's, in the global frame each output is scored in). Then, over the
losing sequences against the others, the mean change of |err| (offline − stream) by window
position, and the correlation between a window's affine change (offline against the stream, in GT
space) and its δ1 change. The per-frame-fit scores (`evaluate_per_frame_fit`: one affine per frame,
so no inter-window scale error is left) say whether a loss is in the affines or in the frames'
values. Development data only (7-Scenes never). 471-683 s from a warm cache at load average 4-20
(most of it rendering the 16 clips)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/offline_loss.py --cache /tmp/windows --json out/offline_loss.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from vdepth_ros.eval.metrics import (
    aligned_depth,
    evaluate_per_frame_fit,
    fit_disparity_affine,
    frame_metrics,
    valid_mask,
)
from vdepth_ros.pipeline_offline import OFFLINE_CROSSFADE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alignment_dev import bundled_engine, development_sequences  # the same development set
from offline_estimators import (
    checked_stream_affines,
    delayed_affines,
    recorded,
    smoother_affines,
    stitch,
    stream_affines,
)

from vdepth_ros.stream.graph import OFFLINE_CONTEXT_CHECK, OFFLINE_LAG

#: The steps from the stream's affines to `run_offline`'s, each crossfaded as `run_offline` does:
#: the context check, then `OFFLINE_LAG` future windows (still lag 8 into the past), then the
#: smoother's own lag (windows before the one estimated frozen).
STEPS = ("stream_xfade", "checked", "checked_future", "offline")

#: Frame roles, in the order they are reported.
ROLES = ("first_window", "overlap", "single", "last_window")


def per_frame_scores(disp: np.ndarray, seq) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Per frame (AbsRel, δ1) after the sequence's one disparity affine (NaN where no GT), and it."""
    valid = valid_mask(seq.depth, seq.max_depth)
    pred = np.nan_to_num(disp, nan=1e-3, posinf=1e-3, neginf=1e-3)
    s, t = fit_disparity_affine(pred, seq.depth, valid)
    depth = aligned_depth(pred, s, t, seq.max_depth)
    rel, d1 = np.full(len(disp), np.nan), np.full(len(disp), np.nan)
    for k in range(len(disp)):
        m = frame_metrics(depth[k], seq.depth[k], valid[k])
        if m is not None:
            rel[k], d1[k] = m
    return rel, d1, (s, t)


def frame_roles(windows) -> tuple[list[str], list[int]]:
    """Per frame its role (`ROLES`) and the window that first output it."""
    n = max(max(w.slots) for w, _ in windows) + 1
    outputs: dict[int, list[int]] = {}
    for k, (w, _) in enumerate(windows):
        for f in w.slots[w.n_context :]:
            outputs.setdefault(f, []).append(k)
    last = len(windows) - 1
    roles, first = [], []
    for f in range(n):
        ks = outputs.get(f, [0])
        first.append(ks[0])
        if ks[0] == 0 and len(ks) == 1:
            roles.append("first_window")
        elif last in ks and len(windows) > 1:
            roles.append("last_window")
        elif len(ks) > 1:
            roles.append("overlap")
        else:
            roles.append("single")
    return roles, first


def window_errors(windows, affines, global_fit: tuple[float, float], seq) -> np.ndarray:
    """Per window: log of (global affine ∘ window affine) applied to its output frames, against the
    GT disparity, as one least-squares affine's value at the window's median over the median itself
    (0: the window sits where the GT says)."""
    import cv2

    S, T = global_fit
    h, w = seq.gt_size
    out = []
    for (win, disp), (s, t) in zip(windows, affines, strict=True):
        x, y = [], []
        for p in range(win.n_context, len(win.slots)):
            f = win.slots[p]
            gt = seq.depth[f]
            ok = np.isfinite(gt) & (gt > 1e-3) & (gt < seq.max_depth)
            v = S * (s * cv2.resize(disp[p], (w, h), interpolation=cv2.INTER_LINEAR) + t) + T
            ok &= np.isfinite(v)
            x.append(v[ok])
            y.append(1.0 / gt[ok])
        xs, ys = np.concatenate(x), np.concatenate(y)
        m = float(np.median(xs))
        a, b = np.linalg.lstsq(np.stack([xs, np.ones_like(xs)], 1), ys, rcond=None)[0]
        out.append(np.log(max(a * m + b, 1e-9) / max(m, 1e-9)))
    return np.asarray(out)


def window_values(windows, affines, global_fit: tuple[float, float]) -> np.ndarray:
    """Per window, its output's value at the window's raw median, in the scored (global) frame."""
    S, T = global_fit
    return np.asarray(
        [
            S * (s * float(np.nanmedian(d[w.n_context : len(w.slots)])) + t) + T
            for (w, d), (s, t) in zip(windows, affines, strict=True)
        ]
    )


def analyse(seq, windows, options) -> dict:
    """The per-frame comparison of one sequence from its recorded windows (`offline_estimators.record`)."""
    aff = {
        "stream": stream_affines(windows, options),
        "checked": checked_stream_affines(windows, options),
        "checked_future": delayed_affines(windows, options, OFFLINE_LAG, OFFLINE_CONTEXT_CHECK),
        "offline": smoother_affines(windows, options),
    }
    disp = {"stream": stitch(windows, aff["stream"], seq.gt_size, first=True)}
    for step in STEPS:
        affines = aff["stream" if step == "stream_xfade" else step]
        disp[step] = stitch(windows, affines, seq.gt_size, first=False, crossfade=OFFLINE_CROSSFADE)
    scores = {k: per_frame_scores(v, seq) for k, v in disp.items()}
    roles, first = frame_roles(windows)
    ok = np.isfinite(scores["stream"][1])
    n = int(ok.sum())

    def diff(a: str, b: str, i: int) -> np.ndarray:
        return np.where(ok, scores[a][i] - scores[b][i], 0.0)

    d_rel, d_d1 = diff("offline", "stream", 0), diff("offline", "stream", 1)
    aff_d1, rep_d1 = diff("offline", "stream_xfade", 1), diff("stream_xfade", "stream", 1)
    by_role = {r: float(sum(d_d1[f] for f in range(len(roles)) if roles[f] == r) / n) for r in ROLES}
    by_role_rel = {r: float(sum(d_rel[f] for f in range(len(roles)) if roles[f] == r) / n) for r in ROLES}
    per_window_d1 = np.zeros(len(windows))
    for f, k in enumerate(first):
        per_window_d1[k] += d_d1[f] / n
    err = {k: window_errors(windows, aff[k], scores[k][2], seq) for k in ("stream", "offline")}
    value = {k: window_values(windows, aff[k], scores[k][2]) for k in ("stream", "offline")}
    per_frame_fit = {k: evaluate_per_frame_fit(disp[k], seq.depth, seq.max_depth) for k in ("stream", "offline")}
    return {
        "sequence": seq.name,
        "windows": len(windows),
        "abs_rel": {k: float(np.nanmean(v[0])) for k, v in scores.items()},
        "delta1": {k: float(np.nanmean(v[1])) for k, v in scores.items()},
        "global_fit": {k: list(v[2]) for k, v in scores.items()},
        "d_delta1": float(d_d1.sum() / n),
        "d_abs_rel": float(d_rel.sum() / n),
        "d_delta1_affines": float(aff_d1.sum() / n),
        "d_delta1_representation": float(rep_d1.sum() / n),
        "d_delta1_steps": {b: float(diff(b, a, 1).sum() / n) for a, b in itertools.pairwise(("stream", *STEPS))},
        "d_abs_rel_steps": {b: float(diff(b, a, 0).sum() / n) for a, b in itertools.pairwise(("stream", *STEPS))},
        "d_delta1_by_role": by_role,
        "d_abs_rel_by_role": by_role_rel,
        "frames_by_role": {r: roles.count(r) for r in ROLES},
        "d_delta1_per_window": per_window_d1.tolist(),
        "window_err": {k: v.tolist() for k, v in err.items()},
        "err_sd": {k: float(np.std(v)) for k, v in err.items()},
        # > 0: offline moves a window the way the GT says the stream's window is off (a correction)
        "change_vs_stream_err": float(np.corrcoef(np.log(value["offline"] / value["stream"]), err["stream"])[0, 1]),
        "err_trend": {k: float(np.polyfit(np.arange(len(v)), v, 1)[0] * (len(v) - 1)) for k, v in err.items()},
        "window_log_change": np.log(np.maximum(value["offline"], 1e-9) / np.maximum(value["stream"], 1e-9)).tolist(),
        "per_frame_fit": {k: [m.abs_rel, m.delta1] for k, m in per_frame_fit.items()},
        "d_delta1_per_frame": d_d1.tolist(),
    }


def position_table(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Mean change of |window err| offline − stream by window position (first two, middle, last
    two), over the losing sequences and over the others."""
    out: dict[str, dict[str, float]] = {}
    for group, members in (
        ("losing", [r for r in rows if r["loses"]]),
        ("others", [r for r in rows if not r["loses"]]),
    ):
        cells: dict[str, list[float]] = {"first2": [], "middle": [], "last2": []}
        for r in members:
            change = np.abs(r["window_err"]["offline"]) - np.abs(r["window_err"]["stream"])
            k = len(change)
            for i, c in enumerate(change):
                cells["first2" if i < 2 else "last2" if i >= k - 2 else "middle"].append(float(c))
        out[group] = {pos: float(np.mean(v)) if v else float("nan") for pos, v in cells.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--renders", type=int, default=16)
    ap.add_argument("--cache", type=Path, default=None, help="the recorded windows (offline_estimators.py --cache)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    engine = bundled_engine()
    t0, load0 = time.perf_counter(), os.getloadavg()
    rows = []
    for seq in development_sequences(args.renders):
        _, windows, options = recorded(engine, seq, args.cache)
        r = analyse(seq, windows, options)
        r["loses"] = r["abs_rel"]["offline"] > r["abs_rel"]["stream"] or r["delta1"]["offline"] < r["delta1"]["stream"]
        rows.append(r)
        roles = "  ".join(f"{k} {v:+.4f}" for k, v in r["d_delta1_by_role"].items())
        worst = np.argsort(r["d_delta1_per_window"])[:3]
        tops = ", ".join(
            f"w{k} {r['d_delta1_per_window'][k]:+.4f} (err {r['window_err']['stream'][k]:+.3f} -> "
            f"{r['window_err']['offline'][k]:+.3f})"
            for k in worst
        )
        pff = r["per_frame_fit"]
        print(
            f"{r['sequence']:18s} {'LOSES' if r['loses'] else 'ok   '} δ1 {r['d_delta1']:+.4f} "
            f"(affines {r['d_delta1_affines']:+.4f}, representation {r['d_delta1_representation']:+.4f}) "
            f"AbsRel {r['d_abs_rel']:+.5f}\n    by role: {roles}\n    worst windows: {tops}\n"
            f"    steps δ1: "
            + "  ".join(f"{k} {v:+.4f}" for k, v in r["d_delta1_steps"].items())
            + "  AbsRel: "
            + "  ".join(f"{k} {v:+.5f}" for k, v in r["d_abs_rel_steps"].items())
            + "\n"
            f"    window err sd stream {r['err_sd']['stream']:.4f} offline {r['err_sd']['offline']:.4f}, "
            f"trend over the sequence stream {r['err_trend']['stream']:+.4f} offline {r['err_trend']['offline']:+.4f}, "
            f"correlation of the offline change with the stream's err {r['change_vs_stream_err']:+.2f}\n"
            f"    per-frame fit δ1 stream {pff['stream'][1]:.4f} offline {pff['offline'][1]:.4f}; "
            f"global fit scale stream {r['global_fit']['stream'][0]:.4f} offline {r['global_fit']['offline'][0]:.4f}",
            flush=True,
        )
    losing = [r for r in rows if r["loses"]]
    print(f"\n{len(losing)} of {len(rows)} sequences: offline worse than the stream in AbsRel or δ1")
    for group, members in (("losing", losing), ("others", [r for r in rows if not r["loses"]])):
        if not members:
            continue
        mean = {k: float(np.mean([r["d_delta1_by_role"][k] for r in members])) for k in ROLES}
        share = {
            k: float(np.mean([r["frames_by_role"][k] / sum(r["frames_by_role"].values()) for r in members]))
            for k in ROLES
        }
        print(
            f"{group:7s} mean δ1 change by role: "
            + "  ".join(f"{k} {mean[k]:+.4f} ({100 * share[k]:.0f} % of frames)" for k in ROLES)
            + f"; affines {np.mean([r['d_delta1_affines'] for r in members]):+.4f}, representation "
            f"{np.mean([r['d_delta1_representation'] for r in members]):+.4f}"
        )
    for group, members in (("losing", losing), ("others", [r for r in rows if not r["loses"]])):
        if members:
            print(
                f"{group:7s} mean steps, δ1 / AbsRel: "
                + "  ".join(
                    f"{k} {np.mean([r['d_delta1_steps'][k] for r in members]):+.4f} / "
                    f"{np.mean([r['d_abs_rel_steps'][k] for r in members]):+.5f}"
                    for k in STEPS
                )
            )
    print("stitched as offline (offline crossfade), against the stream: mean AbsRel / δ1, worse on")
    for k in STEPS:
        worse = [
            r["sequence"]
            for r in rows
            if r["abs_rel"][k] > r["abs_rel"]["stream"] or r["delta1"][k] < r["delta1"]["stream"]
        ]
        steps = np.array([r["d_delta1_steps"][k] for r in rows])
        print(
            f"  {k:15s} {np.mean([r['abs_rel'][k] for r in rows]):.4f} / "
            f"{np.mean([r['delta1'][k] for r in rows]):.4f}, "
            f"{len(worse)} of {len(rows)} ({', '.join(w.split('/')[-1] for w in worse)}); this step moves δ1 by "
            f"mean |{np.mean(np.abs(steps)):.4f}|, at most {np.abs(steps).max():.4f}, up on {int((steps > 0).sum())}"
        )
    positions = position_table(rows)
    for group, cells in positions.items():
        print(
            f"{group:7s} mean |err| change offline − stream by window: "
            + "  ".join(f"{k} {v:+.4f}" for k, v in cells.items())
        )
    changes = np.concatenate([np.abs(r["window_log_change"]) for r in rows])
    losses = np.concatenate([r["d_delta1_per_window"] for r in rows])
    print(f"correlation over all windows of |affine change| and δ1 change: {np.corrcoef(changes, losses)[0, 1]:+.3f}")
    print(f"({time.perf_counter() - t0:.0f} s, load average {load0} -> {os.getloadavg()})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "positions": positions}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
