"""The two stream benchmarks run (small sizes) and measure what they claim."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest


def _load(repo_root: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, repo_root / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_drift_benchmark_synthetic_runs_and_robust_stitching_beats_chained_ols(repo_root, tmp_path, capsys):
    bench = _load(repo_root, "stream_drift")
    out = tmp_path / "drift.json"
    bench.main(
        [
            "--frames",
            "600",
            "--size",
            "40x30",
            "--sequences",
            "synthetic",
            "--schedules",
            "vda_32_10",
            "--json",
            str(out),
        ]
    )
    rows = json.loads(out.read_text())["rows"]
    assert {r["method"] for r in rows} == {"causal", "graph", "offline", "chain_ols"}
    assert len(rows) == 8  # 4 methods x bursts on/off
    for r in rows:
        assert set(r) >= {"absrel@100", "absrel@600", "drift", "windows"}
    ours = [abs(r["drift"]) for r in rows if r["method"] != "chain_ols"]
    ols = [r["drift"] for r in rows if r["method"] == "chain_ols" and not r["bursts"]]
    assert max(ours) < 0.003
    assert ols[0] > max(0.002, 5 * max(ours))  # the errors-in-variables drift of plain chaining
    assert "max drift" in capsys.readouterr().out


def test_drift_benchmark_corruption_and_metric():
    bench = sys.modules.get("stream_drift") or _load(Path(__file__).resolve().parent.parent, "stream_drift")
    gt = np.linspace(0.5, 1.0, 2 * 6 * 8).reshape(2, 6, 8).astype(np.float32)
    assert bench.absrel_after_global_fit(3 * gt + 1, gt, np.zeros(gt.shape, bool)) == pytest.approx(0.0, abs=1e-6)
    order = bench._ping_pong(4, 10)
    assert order.tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]


@pytest.mark.evaldata
def test_drift_on_7scenes_short(evaldata, repo_root):
    bench = sys.modules.get("stream_drift") or _load(repo_root, "stream_drift")
    seq = bench.load_sequences((64, 48), ["7scenes"])[0]
    assert seq.disparity.shape == (300, 48, 64)
    causal = bench.run_case(seq, "dvd_45_9", "causal", True, 600, 0)
    assert abs(causal["drift"]) < 0.003 and causal["degenerate_fits"] == 0


def test_speed_benchmark_core_equals_reference_and_reports(repo_root, tmp_path):
    bench = _load(repo_root, "stream_speed")
    out = tmp_path / "speed.json"
    bench.main(["--size", "96x72", "--windows", "2", "--repeat", "1", "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["schedule"] for r in rows] == ["dvd_45_9", "vda_32_10", "default_8_4"]
    assert all(r["core_ms_per_frame"] > 0 and r["speedup"] > 0 and r["graph_core_ms_per_frame"] > 0 for r in rows)
    # On noiseless windows the fast core and the plain reference compute the same depth.
    sched = bench.WindowScheduler(9, 3)
    windows = sched.plan(15)
    video = bench.make_video(15, 24, 32) + 0.5  # no clamping at 0: the plain lstsq would fit clamped pixels
    outs = bench.window_outputs(video, windows, noise=0.0)
    cam = bench.CameraModel(30.0, 30.0, 15.5, 11.5, 32, 24)
    rgb = np.zeros((24, 32, 3), np.uint8)
    _, n_core, d_core = bench.run_core(windows, [o.copy() for o in outs], "chain_ls", cam, rgb)
    _, n_ref, d_ref = bench.run_reference(windows, outs, cam, rgb, keyframe=False)
    assert n_core == n_ref == 15
    np.testing.assert_allclose(d_core, d_ref, rtol=1e-4)


def test_alignment_dev_benchmark_scores_offline_and_each_stream_alignment(repo_root, tmp_path, capsys):
    pytest.importorskip("embreex")  # renders come from the training extra's generator
    bench = _load(repo_root, "alignment_dev")
    out = tmp_path / "dev.json"
    args = ["--renders", "1", "--frames", "28", "--size", "96x128", "--no-hololens", "--json", str(out)]
    assert bench.main(args) == 0
    res = json.loads(out.read_text())
    (row,) = res["rows"]
    assert row["sequence"] == "render/990001" and row["set"] == "render"
    for method in ("offline", "graph", "keyframe"):
        assert 0 < row[method]["abs_rel"] < 1 and 0 < row[method]["delta1"] <= 1 and row[method]["tae"] > 0
    # the two streams really are stitched differently, and the gap is measured against offline
    assert row["graph"] != row["keyframe"]
    assert row["graph"]["gap"] == pytest.approx(row["graph"]["delta1"] - row["offline"]["delta1"])
    assert res["summary"]["all"]["keyframe"]["mean_abs_gap"] == pytest.approx(abs(row["keyframe"]["gap"]))
    assert "mean |δ1 gap to offline|" in capsys.readouterr().out


def test_triangulation_benchmark_scores_points_against_the_gt(repo_root):
    pytest.importorskip("embreex")
    from vdepth_training.data.synthetic import render_clip

    from vdepth_ros.eval.datasets import EvalSequence

    bench = _load(repo_root, "triangulation_accuracy")
    clip = render_clip(3, frames=24, height=180, width=240, kind="room", style="rich")
    seq = EvalSequence("render/3", clip.rgb, clip.depth, clip.intrinsics, clip.intrinsics, clip.poses, 10.0)
    row = bench.score(seq)
    assert row["frames"] == 24 and 10 < row["frames_with_points"] <= 22  # none in the first two frames
    assert row["points_per_frame_median"] > 10 and row["rel_error_median"] < 0.05
    assert row["rel_error_p90"] >= row["rel_error_median"] and row["ms_per_frame"] > 0
    # the same frames with the depth of a wrong unit: the benchmark sees the error
    wrong = EvalSequence("render/3", clip.rgb, clip.depth * 2, clip.intrinsics, clip.intrinsics, clip.poses, 20.0)
    assert bench.score(wrong)["rel_error_median"] == pytest.approx(0.5, abs=0.05)
