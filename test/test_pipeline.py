"""DepthPipeline end to end with the fake engines of test/fakes.py."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from fakes import AffineCorruptingEngine, LuminanceEngine, luminance_disparity

from vdepth_ros.config import PipelineConfig
from vdepth_ros.errors import ConfigError, InputError
from vdepth_ros.pipeline import DepthPipeline, FrameInput
from vdepth_ros.stream.cloud import CameraModel

H_IN, W_IN = 60, 80  # input camera resolution; the fake engines work at 48x64
CAM = CameraModel(70.0, 70.0, 39.5, 29.5, W_IN, H_IN)


def _config(**kw) -> PipelineConfig:
    """Output at the working resolution (48x64, the input's 4:3), so stitching is compared with the
    engine's own output; the output resolution has its own tests (test_pipeline_output.py)."""
    return PipelineConfig(**{"output_resolution": "model", **kw})


def _frames(n: int, seed: int = 0) -> list[FrameInput]:
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 255, (H_IN, 3 * W_IN, 3)).astype(np.float32), (0, 0), 3)
    base = (base - base.min()) / np.ptp(base) * 255
    out = []
    for i in range(n):
        img = np.roll(base, 2 * i, axis=1)[:, :W_IN] * (0.7 + 0.3 * np.sin(i / 5))
        out.append(FrameInput(rgb=img.clip(0, 255).astype(np.uint8), stamp_ns=1000 * i, camera=CAM, meta=("m", i)))
    return out


def _truth(frames: list[FrameInput], h: int = 48, w: int = 64) -> np.ndarray:
    """Uncorrupted luminance disparity at the working resolution (same resize as the pipeline)."""
    rgb = np.stack([cv2.resize(f.rgb, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
    return luminance_disparity(rgb.transpose(0, 3, 1, 2)[None].astype(np.float32) / 255.0)[0]


def _global_affine_error(pred: np.ndarray, truth: np.ndarray) -> float:
    a = np.c_[pred.ravel(), np.ones(pred.size)]
    sol, *_ = np.linalg.lstsq(a, truth.ravel().astype(np.float64), rcond=None)
    return float(np.max(np.abs(a @ sol - truth.ravel())) / np.ptp(truth))


def _run(pipe: DepthPipeline, frames: list[FrameInput]) -> list:
    out = []
    for f in frames:
        out += pipe.push(f)
    return out + pipe.flush()


def _latest(out, n):
    last = {}
    for f in out:
        last[f.index] = f
    assert sorted(last) == list(range(n))
    return [last[i] for i in range(n)]


@pytest.mark.parametrize(
    "engine",
    [
        lambda: AffineCorruptingEngine(frames=8, overlap=3),
        lambda: AffineCorruptingEngine(frames=13, overlap=4, frames_rule="4n+1", seed=1),
        lambda: AffineCorruptingEngine(frames=16, overlap=6, keyframes=(0, 6, 12, 13, 14, 15), alignment="keyframe"),
        lambda: AffineCorruptingEngine(frames=16, overlap=6, keyframes=(0, 6, 12, 13, 14, 15), alignment="graph"),
        lambda: AffineCorruptingEngine(frames=8, overlap=3, alignment="graph", seed=3),  # no keyframes: chain windows
    ],
)
def test_causal_stitching_recovers_truth_up_to_one_global_affine(engine):
    frames = _frames(47)
    eng = engine()
    out = _run(DepthPipeline(_config(publish="final"), eng), frames)
    final = _latest(out, 47)
    assert all(f.status == "final" for f in out)
    pred = np.stack([f.disparity for f in final])
    assert pred.shape == (47, 48, 64)
    assert _global_affine_error(pred, _truth(frames)) < 1e-4
    assert len(eng.affines) > 3  # several windows, each with its own affine
    assert [f.stamp_ns for f in final] == [1000 * i for i in range(47)]
    assert final[5].meta == ("m", 5)


ENGINES = [
    lambda: AffineCorruptingEngine(frames=8, overlap=3),
    lambda: AffineCorruptingEngine(frames=13, overlap=4, frames_rule="4n+1", seed=1),
    lambda: AffineCorruptingEngine(frames=16, overlap=6, keyframes=(0, 6, 12, 13, 14, 15), alignment="keyframe"),
    lambda: AffineCorruptingEngine(frames=16, overlap=6, keyframes=(0, 6, 12, 13, 14, 15), alignment="graph"),
    lambda: AffineCorruptingEngine(frames=8, overlap=3, alignment="graph", seed=3),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("policy", ["provisional", "final", "both"])
def test_a_paused_camera_gets_its_held_frames_now_and_the_stream_goes_on(engine, policy):
    """A camera that pauses between windows (bursts of 1-13 frames, each followed by a pause): the
    early window publishes every frame the pause left waiting for a window ("provisional": all of
    them; "final"/"both": all but the ones the next window revises), and the stream goes on after
    it: no restart, every frame once (each policy's rule), alignment as good as without pauses."""
    frames = _frames(47)
    pipe = DepthPipeline(_config(publish=policy), engine())
    out, k = [], 0
    for burst in (3, 2, 9, 1, 6, 13, 2, 11):
        for f in frames[k : k + burst]:
            out += pipe.push(f)
        k += burst
        early = pipe.early_window()
        out += early
        main = [f.index for f in out if policy != "both" or f.status == "final"]
        if policy == "provisional":
            assert pipe.held == 0 and sorted(main) == list(range(k))  # nothing waits for the camera
        else:
            assert pipe.held <= pipe.scheduler.interp and set(range(k - pipe.held)) <= set(main)
        assert pipe.early_window() == []  # nothing new since: no second window
    out += pipe.flush()
    assert pipe.stats.resets == 0
    main = [f for f in out if policy != "both" or f.status == "final"]
    assert sorted(f.index for f in main) == list(range(47))  # each once on the main topics
    final = _latest(out, 47)
    pred = np.stack([f.disparity for f in final])
    assert _global_affine_error(pred, _truth(frames)) < 1e-4


def test_publish_policies():
    frames = _frames(30)
    results = {}
    for policy in ("provisional", "final", "both"):
        out = _run(DepthPipeline(_config(publish=policy), AffineCorruptingEngine()), frames)
        results[policy] = [(f.index, f.status) for f in out]
    prov = [i for i, _ in results["provisional"]]
    assert prov == list(range(30))  # each frame once, as early as possible, in order
    assert {s for _, s in results["provisional"]} == {"provisional", "final"}
    assert results["final"] == [(i, "final") for i in range(30)]
    both = results["both"]
    assert sorted(i for i, s in both if s == "final") == list(range(30))
    assert {i for i, s in both if s == "provisional"} == {i for i, s in results["provisional"] if s == "provisional"}


def test_provisional_frames_come_one_stride_earlier():
    frames = _frames(20)
    seen = {}
    for policy in ("provisional", "final"):
        pipe = DepthPipeline(_config(publish=policy), AffineCorruptingEngine(frames=8, overlap=3))
        for k, f in enumerate(frames):
            for d in pipe.push(f):
                seen.setdefault((policy, d.index), k)
    # frame 7 is in the first window's overlap: provisional at frame 7, final when window 2 is done
    assert seen[("provisional", 7)] == 7
    assert seen[("final", 7)] == 12
    assert pipe.schedule["lag_frames"] == 5 and pipe.schedule["startup_frames"] == 8


def test_causal_output_is_deterministic():
    frames = _frames(40)
    runs = [_run(DepthPipeline(_config(publish="both"), AffineCorruptingEngine(seed=3)), frames) for _ in range(2)]
    assert [(f.index, f.status) for f in runs[0]] == [(f.index, f.status) for f in runs[1]]
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a.disparity, b.disparity)


def test_offline_matches_truth_each_frame_once_and_spills_to_disk(tmp_path: Path):
    frames = _frames(50)
    pipe = DepthPipeline(_config(scale_source="range"), AffineCorruptingEngine(frames=8, overlap=3, seed=2))
    seen_files = []

    def gen():
        for f in frames:
            seen_files.extend(p.name for p in tmp_path.rglob("*.f32"))
            yield f

    out = list(pipe.run_offline(gen(), spill_dir=tmp_path))
    assert [f.index for f in out] == list(range(50))
    assert all(f.status == "final" for f in out)
    assert "disp.0.f32" in seen_files  # window disparities live on disk, not in RAM (in parts: pipeline_offline)
    assert not list(tmp_path.iterdir())  # cleaned up
    pred = np.stack([f.disparity for f in out])
    assert _global_affine_error(pred, _truth(frames)) < 1e-4
    assert out[10].depth is not None and out[10].points.shape == (48, 64, 3)


def test_offline_keyframe_schedule():
    frames = _frames(60)
    eng = AffineCorruptingEngine(frames=16, overlap=6, keyframes=(0, 6, 12, 13, 14, 15), alignment="keyframe")
    out = list(DepthPipeline(_config(), eng).run_offline(frames))
    assert [f.index for f in out] == list(range(60))
    assert _global_affine_error(np.stack([f.disparity for f in out]), _truth(frames)) < 1e-4


def test_depth_cloud_and_camera_at_model_and_input_resolution():
    frames = _frames(12)
    pipe = DepthPipeline(_config(scale_source="range", near=0.5, far=8.0, cloud_stride=2), LuminanceEngine())
    out = _run(pipe, frames)
    f = out[3]
    assert f.camera == CAM.scaled(64, 48)
    finite = f.depth[np.isfinite(f.depth)]
    assert f.depth.shape == (48, 64) and finite.min() >= 0.05 and finite.max() <= 8.0  # range mode: far limit
    assert f.points.shape == (24, 32, 3) and f.colors.shape == (24, 32, 3)
    z = f.depth[::2, ::2]
    ok = np.isfinite(z)
    np.testing.assert_allclose(f.points[..., 2][ok], z[ok], rtol=1e-6)
    assert np.isnan(f.points[~ok]).all()  # +-Inf depth: no point
    u = np.arange(0, 64, 2)
    np.testing.assert_allclose(f.points[0, :, 0][ok[0]], ((u - f.camera.cx) * z[0] / f.camera.fx)[ok[0]], rtol=1e-5)
    assert f.fit.scale_source == "range" and f.fit.metric_scale is not None
    with pytest.raises(ValueError, match="read-only"):
        f.depth[0, 0] = 1.0
    big = _run(DepthPipeline(_config(scale_source="range", output_resolution="input"), LuminanceEngine()), frames)
    g = big[3]
    assert g.disparity.shape == (H_IN, W_IN) and g.camera == CAM
    assert g.points.shape == (H_IN, W_IN, 3)
    np.testing.assert_array_equal(g.colors, frames[3].rgb)


def test_no_scale_source_gives_disparity_only():
    out = _run(DepthPipeline(_config(scale_source="none"), LuminanceEngine()), _frames(10))
    assert out[0].depth is None and out[0].points is None and out[0].fit.scale_source == "none"


def _with_sparse_depth(frames: list[FrameInput], true_depth: np.ndarray) -> list[FrameInput]:
    """`frames` with a sparse depth input: 5 % of the input pixels of `true_depth` (working grid), seeded."""
    rng = np.random.default_rng(0)
    fed = []
    for f, z in zip(frames, true_depth, strict=True):
        zin = cv2.resize(z, (W_IN, H_IN), interpolation=cv2.INTER_NEAREST)
        sparse = np.where(rng.random(zin.shape) < 0.05, zin, np.nan).astype(np.float32)
        fed.append(FrameInput(f.rgb, f.stamp_ns, f.camera, sparse))
    return fed


def test_sparse_metric_scale_end_to_end():
    frames = _frames(30)
    truth = _truth(frames)
    true_depth = 1.0 / (2.0 * truth + 0.1)  # metric inverse depth = 2 * luminance disparity + 0.1
    fed = _with_sparse_depth(frames, true_depth)
    cfg = _config(scale_source="sparse", sparse_min_points=20, publish="final", max_depth=50.0)
    out = _latest(_run(DepthPipeline(cfg, AffineCorruptingEngine()), fed), 30)
    depth = np.stack([f.depth for f in out])
    rel = np.nanmedian(np.abs(depth - true_depth) / true_depth)
    assert rel < 0.02
    assert out[-1].fit.scale_source == "sparse"


class _ShiftedEngine(LuminanceEngine):
    """Raw disparity = luminance disparity - 0.45: bright frames stay above 0, dark content below."""

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return super()._run(batch) - 0.45


def test_far_content_below_the_canonical_zero_keeps_its_metric_depth():
    """Content farther than anything the first window saw aligns below 0 in the stream's frame. It
    keeps its metric depth (the papers' clamp in the stitcher would collapse it to one depth: the
    check that this test can fail), while the relative disparity output is clamped at 0."""
    frames = []
    for f in _frames(30):
        img = (140 + f.rgb * (115 / 255)).astype(np.uint8)  # luminance >= 0.55: raw disparity > 0
        if f.meta[1] >= 12:
            img[:, : W_IN // 4] = 0  # a dark (far) region the first windows never saw: raw -0.35
        frames.append(FrameInput(img, f.stamp_ns, f.camera, meta=f.meta))
    truth = _truth(frames)
    true_depth = 1.0 / truth  # metric inverse depth = raw + 0.45 = luminance disparity
    fed = _with_sparse_depth(frames, true_depth)
    far = np.zeros((48, 64), bool)
    far[4:-4, 2 : 64 // 4 - 4] = True  # inside the dark region, away from its blurred border
    cfg = _config(scale_source="sparse", sparse_min_points=20, publish="final", max_depth=50.0)
    results = {}
    for clamp_in_stitcher in (False, True):
        pipe = DepthPipeline(cfg, _ShiftedEngine())
        assert pipe.stitcher.clamp_negative is False  # the package's default outside reference mode
        pipe.stitcher.clamp_negative = clamp_in_stitcher
        results[clamp_in_stitcher] = _latest(_run(pipe, fed), 30)
    out = results[False]
    for f in out[16:]:
        rel = np.abs(f.depth[far] - true_depth[f.index][far]) / true_depth[f.index][far]
        assert np.median(rel) < 0.02, f.index
        assert np.nanmin(f.disparity) >= 0 and np.all(f.disparity[far] == 0)
    clamped = np.concatenate([f.depth[far] for f in results[True][16:]])
    assert np.median(np.abs(clamped - true_depth[16][far].mean()) / true_depth[16][far].mean()) > 0.3


def test_metric_model_passes_depth_through():
    eng = LuminanceEngine(output_kind="depth")  # "depth" in metres = 0.1 + luminance
    frames = _frames(20)
    pipe = DepthPipeline(_config(publish="final", cloud_stride=0), eng)
    assert pipe.alignment == "none" and pipe.scale_source.kind == "metric"
    out = _latest(_run(pipe, frames), 20)
    np.testing.assert_allclose(np.stack([f.depth for f in out]), _truth(frames), rtol=1e-5)
    assert out[0].points is None
    with pytest.raises(ConfigError, match="metric"):
        DepthPipeline(_config(scale_source="metric"), LuminanceEngine())


def test_low_latency_start_first_output_sooner():
    def first_output(cfg):
        pipe = DepthPipeline(cfg, AffineCorruptingEngine(frames=16, overlap=4))
        for k, f in enumerate(_frames(40)):
            if pipe.push(f):
                return k
        return None

    assert first_output(_config()) == 15
    assert first_output(_config(low_latency_start=True)) == 9  # (16 + 4 + 1) // 2 frames


def test_reset_and_resolution_change_restart_indices():
    pipe = DepthPipeline(_config(publish="final"), LuminanceEngine())
    frames = _frames(10)
    for f in frames:
        pipe.push(f)
    pipe.reset("camera restarted")
    assert pipe.stats.resets == 1 and pipe.stats.last_reset_reason == "camera restarted"
    out = _run(pipe, frames[:9])
    assert [f.index for f in out] == list(range(9))
    for f in frames[:6]:
        pipe.push(f)
    small = FrameInput(np.zeros((30, 40, 3), np.uint8), 0)
    flushed = pipe.push(small)  # the old stream is flushed first
    assert [f.index for f in flushed] == list(range(6))
    assert pipe.stats.resets == 2


def test_bad_input_raises_input_error():
    pipe = DepthPipeline(_config(), LuminanceEngine())
    with pytest.raises(InputError, match="uint8"):
        pipe.push(FrameInput(np.zeros((10, 10, 3), np.float32), 0))
    with pytest.raises(InputError, match="camera"):
        pipe.push(FrameInput(np.zeros((10, 10, 3), np.uint8), 0, camera=CAM))


def test_window_larger_than_fixed_engine_is_rejected():
    with pytest.raises(ConfigError, match="window"):
        DepthPipeline(_config(window=20, overlap=4), LuminanceEngine(frames=8))


def test_engine_none_uses_create_engine(monkeypatch, tmp_path):
    import vdepth_ros.runtime as runtime

    calls = []

    def fake_create(model, backend="auto", precision="fp32", **kw):
        calls.append((model, backend, precision))
        return LuminanceEngine()

    monkeypatch.setattr(runtime, "create_engine", fake_create)
    model = str(tmp_path)  # an existing folder: a path that does not exist is refused by name first
    pipe = DepthPipeline.from_dict({"model": model, "backend": "onnxruntime", "image_topic": "/cam"})
    assert calls == [(model, "onnxruntime", "fp32")]
    assert pipe.window == 8


def test_stats_count_windows_and_frames():
    pipe = DepthPipeline(_config(), AffineCorruptingEngine())
    _run(pipe, _frames(20))
    assert pipe.stats.frames_in == 20 and pipe.stats.windows == 4 and pipe.stats.frames_out == 20
    assert pipe.stats.as_dict()["degenerate_fits"] == 0


def test_engine_failure_resets_the_stream():
    class Failing(AffineCorruptingEngine):
        fail = False

        def _run(self, batch):
            if self.fail:
                raise RuntimeError("device lost")
            return super()._run(batch)

    eng = Failing()
    pipe = DepthPipeline(_config(publish="final"), eng)
    frames = _frames(20)
    for f in frames[:12]:
        pipe.push(f)
    eng.fail = True
    with pytest.raises(RuntimeError, match="device lost"):
        pipe.push(frames[12])  # completes the window [5, 13)
    assert pipe.stats.resets == 1 and "device lost" in pipe.stats.last_reset_reason
    eng.fail = False
    out = _run(pipe, frames[:12])
    assert [f.index for f in out] == list(range(12))


def test_offline_empty_sequence_yields_nothing():
    assert list(DepthPipeline(_config(), LuminanceEngine()).run_offline([])) == []


def test_offline_abandoned_early_leaves_the_causal_api_usable():
    pipe = DepthPipeline(_config(publish="final"), AffineCorruptingEngine())
    frames = _frames(30)
    gen = pipe.run_offline(frames)
    assert next(gen).index == 0
    gen.close()
    assert [f.index for f in _run(pipe, frames[:10])] == list(range(10))


def test_anchor_refresh_end_to_end_after_a_scene_cut():
    """A model that no longer predicts the anchor consistently once the scene changed (what a
    persistent frame-0 anchor runs into on a long robot run): refreshing keeps the stream right."""

    class ForgetsOldAnchor(AffineCorruptingEngine):
        def _run(self, batch):
            out = super()._run(batch)
            lum = batch[0].mean(axis=(1, 2, 3))
            self.anchor_means.append(float(lum[0]))
            if abs(lum[0] - lum[-1]) > 0.2:  # slot 0 from another scene: garbage for it
                out[0, 0] = np.random.default_rng(len(self.anchor_means)).random(out.shape[2:])
            return out

    frames = _frames(80)
    for f in frames[40:]:  # scene cut at frame 40: a brighter, different view
        f.rgb = (255 - f.rgb[::-1, ::-1] // 3).astype(np.uint8)
    eng = ForgetsOldAnchor(frames=16, overlap=6, keyframes=(0, 6, 12, 13, 14, 15), alignment="keyframe")
    eng.anchor_means = []
    # scene_cut_threshold 0: a cut the detector misses (it restarts the stream when it sees one)
    pipe = DepthPipeline(_config(publish="final", anchor_refresh=True, scene_cut_threshold=0.0), eng)
    out = _latest(_run(pipe, frames), 80)
    assert pipe.stats.anchor_refreshes == 1
    assert eng.anchor_means[-1] > 0.5  # later windows are anchored in the new scene
    truth = _truth(frames)
    pred = np.stack([f.disparity for f in out])
    assert _global_affine_error(pred, truth) < 1e-4  # one scale across the cut
    assert out[-1].fit.inlier_fraction > 0.95
    # the papers' frame-0 anchor forever: half of every later fit's pixels are garbage (the
    # robust fit survives on the keyframe slot alone, with no margin left)
    eng2 = ForgetsOldAnchor(frames=16, overlap=6, keyframes=(0, 6, 12, 13, 14, 15), alignment="keyframe")
    eng2.anchor_means = []
    stale = _latest(_run(DepthPipeline(_config(publish="final", scene_cut_threshold=0.0), eng2), frames), 80)
    assert stale[-1].fit.inlier_fraction < 0.6


def test_graph_alignment_uses_the_keyframe_windows_and_stays_close_to_offline():
    frames = _frames(70)
    kf = (0, 6, 12, 13, 14, 15)
    eng = AffineCorruptingEngine(frames=16, overlap=6, keyframes=kf, alignment="graph")
    pipe = DepthPipeline(_config(), eng)
    assert pipe.alignment == "graph" and pipe.schedule["schedule"] == "keyframe"
    stream = np.stack([f.disparity for f in _latest(_run(pipe, frames), 70)])
    same = AffineCorruptingEngine(frames=16, overlap=6, keyframes=kf, alignment="graph")
    again = DepthPipeline(_config(), same)
    offline = np.stack([f.disparity for f in again.run_offline(frames)])  # same engine affines, same windows
    # exact model up to one affine per window: both land on window 0's scale
    np.testing.assert_allclose(stream, offline, rtol=1e-4, atol=1e-4)
    # keyframe alignment is still available for this model
    keyframe = DepthPipeline(
        _config(alignment="keyframe"),
        AffineCorruptingEngine(frames=16, overlap=6, keyframes=kf, alignment="graph"),
    )
    assert keyframe.alignment == "keyframe" and keyframe.stitcher.graph is None


def test_graph_alignment_state_restarts_with_the_stream():
    frames = _frames(40)
    eng = AffineCorruptingEngine(frames=8, overlap=3, alignment="graph", seed=5)
    pipe = DepthPipeline(_config(publish="final"), eng)
    first = np.stack([f.disparity for f in _latest(_run(pipe, frames), 40)])
    assert pipe.stitcher.graph is not None and pipe.stitcher.graph.state_size == (0, 0)  # flush cleared it
    second = np.stack([f.disparity for f in _latest(_run(pipe, frames), 40)])
    # a new stream is anchored on its own first window, whatever the engine's affines now are
    assert _global_affine_error(first, _truth(frames)) < 1e-4
    assert _global_affine_error(second, _truth(frames)) < 1e-4


def test_anchor_refresh_outside_keyframe_alignment_is_reported(caplog):
    eng = AffineCorruptingEngine(frames=16, overlap=6, keyframes=(0, 6, 12, 13, 14, 15), alignment="graph")
    with caplog.at_level("WARNING", logger="vdepth_ros.pipeline"):
        DepthPipeline(_config(anchor_refresh=True), eng)
    assert "anchor_refresh applies to keyframe alignment only" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="vdepth_ros.pipeline"):
        DepthPipeline(_config(anchor_refresh=True, alignment="keyframe"), eng)
    assert "anchor_refresh" not in caplog.text


@pytest.mark.parametrize("cfg", [{"low_latency_start": True}, {"publish": "both"}, {"graph_lag": 1}])
def test_graph_alignment_with_short_first_window_both_policies_and_shortest_lag(cfg):
    frames = _frames(61)
    eng = AffineCorruptingEngine(frames=16, overlap=6, keyframes=(0, 6, 12, 13, 14, 15), alignment="graph", seed=4)
    pipe = DepthPipeline(_config(**cfg), eng)
    out = _run(pipe, frames)
    assert pipe.alignment == "graph" and pipe.stats.degenerate_fits == 0
    if cfg.get("low_latency_start"):
        assert pipe.schedule["first_window"] < 16
    pred = np.stack([f.disparity for f in _latest(out, 61)])
    assert _global_affine_error(pred, _truth(frames)) < 1e-4


@pytest.mark.parametrize("fault", ["garbage model.onnx", "truncated safetensors beside a valid ONNX"])
def test_a_pipeline_built_as_a_library_checks_its_model_as_the_node_does(
    tmp_path: Path, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    """`DepthPipeline(PipelineConfig(model=...))` in a user's own Python skipped the start-up check the
    node and every tool make: a garbage graph ended in onnxruntime's "INVALID_PROTOBUF" traceback, a
    truncated model.safetensors beside a valid ONNX graph was never noticed; and a misspelled key given
    to `from_dict` (`max_ouput_width`) was dropped without a word. Now the same one line names the file
    and why, and the typo is named with the closest parameter."""
    from fakes import MODEL_FAULTS, broken_model, write_tiny_onnx

    from vdepth_ros.errors import ModelLoadError

    (tmp_path / "broken").mkdir()
    model = broken_model(tmp_path / "broken", fault)
    with pytest.raises(ModelLoadError) as err:
        DepthPipeline(PipelineConfig(model=str(model), backend="onnxruntime"))
    assert MODEL_FAULTS[fault] in str(err.value) and str(model) in str(err.value)
    good = tmp_path / "good"
    good.mkdir()
    write_tiny_onnx(good)
    with caplog.at_level("WARNING", logger="vdepth_ros.pipeline"):
        pipe = DepthPipeline.from_dict({"model": str(good), "backend": "onnxruntime", "max_ouput_width": 32,
                                        "input_qos": "reliable"})  # fmt: skip
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "max_ouput_width (did you mean max_output_width?)" in line and "input_qos" not in line, line
    assert pipe.config.max_output_width == 0


def test_a_camera_alternating_resolutions_logs_its_restarts_rate_limited(caplog):
    """Every change of resolution resets the stream and starts a new one, and each logged an INFO line:
    a camera alternating two sizes wrote two lines per frame (vdepth-bag's output, the node's log).
    Now each kind is logged once per period, the next line with how many were not; all are counted."""
    import logging

    pipe = DepthPipeline(_config(publish="final"), LuminanceEngine())
    big, small = _frames(1)[0].rgb, np.zeros((30, 40, 3), np.uint8)
    caplog.set_level(logging.INFO, logger="vdepth_ros.pipeline")
    for i in range(20):
        pipe.push(FrameInput(big if i % 2 == 0 else small, 1000 * i))
    resets = [r.getMessage() for r in caplog.records if r.getMessage().startswith("depth pipeline reset")]
    streams = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stream of")]
    assert pipe.stats.resets == 19 and len(resets) == 1 and len(streams) == 2  # each size's told once
    pipe._periodic_log.period = 0.0  # the period is over
    pipe.push(FrameInput(big, 1000 * 20))
    assert caplog.records[-2].getMessage().endswith("(18 more since the last report)")  # the reset
    assert caplog.records[-1].getMessage().endswith("(9 more since the last report)")  # the 80x60 stream's sizes


def test_the_frames_a_step_output_before_it_failed_are_the_callers_to_take() -> None:
    """A window whose third frame's output failed had output two frames (counted in `frames_out`) that went
    down with the exception; `take_output_before_failure` hands them over, once, so every frame pushed is
    output (and given to the caller), held or discarded."""
    pipe = DepthPipeline(_config(), engine=LuminanceEngine())
    made = pipe._depth_frame

    def fails_on_the_third(*args, **kwargs):
        if pipe.stats.frames_out == 2:
            raise MemoryError("output")
        return made(*args, **kwargs)

    pipe._depth_frame = fails_on_the_third
    frames = _frames(8)
    for f in frames[:7]:
        assert pipe.push(f) == [] and pipe.take_output_before_failure() == []
    with pytest.raises(MemoryError):
        pipe.push(frames[7])
    kept = pipe.take_output_before_failure()
    assert [f.index for f in kept] == [0, 1] and pipe.take_output_before_failure() == []
    stats = pipe.stats
    assert stats.frames_in == 8 and stats.frames_out == 2 and stats.frames_out + stats.frames_discarded == 8
