"""vdepth-eval end to end: pipeline runs (offline, causal, per-frame), goals, report files."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from vdepth_ros.eval import cli, report, runs
from vdepth_ros.eval.datasets import EvalSequence


@pytest.fixture(scope="module")
def synthetic_sequence() -> EvalSequence:
    pytest.importorskip("embreex")
    from vdepth_training.data.synthetic import render_clip

    clip = render_clip(21, frames=14, height=60, width=80, kind="room")
    return EvalSequence(
        name="synthetic/21",
        rgb=clip.rgb,
        depth=clip.depth,
        intrinsics=clip.intrinsics,
        rgb_intrinsics=clip.intrinsics,
        poses=clip.poses,
        max_depth=10.0,
    )


def test_offline_stream_and_per_frame_runs_cover_every_frame(synthetic_sequence) -> None:
    from fakes import AffineCorruptingEngine, LuminanceEngine

    seq = synthetic_sequence
    off = runs.run_offline(LuminanceEngine(height=42, width=56, frames=8, overlap=3), seq)
    st = runs.run_stream(LuminanceEngine(height=42, width=56, frames=8, overlap=3), seq)
    pf = runs.run_per_frame(LuminanceEngine(height=42, width=56, frames=8, overlap=3), seq)
    for d in (off, st, pf):
        assert d.shape == seq.depth.shape
        assert np.isfinite(d).all()
        assert (d > 0).mean() > 0.99
    # the luminance "model" has no per-window affine: stitching keeps it as is
    m_off = cli.evaluate_sequence(off, seq.depth, 10.0)
    m_pf = cli.evaluate_sequence(pf, seq.depth, 10.0)
    assert m_off.abs_rel == pytest.approx(m_pf.abs_rel, rel=0.02)
    # a model whose every window has a random affine: the per-frame runs keep it, the pipeline aligns it away
    eng = AffineCorruptingEngine(height=42, width=56, frames=8, overlap=3, seed=3)
    pf_bad = cli.evaluate_sequence(runs.run_per_frame(eng, seq), seq.depth, 10.0)
    eng = AffineCorruptingEngine(height=42, width=56, frames=8, overlap=3, seed=3)
    off_good = cli.evaluate_sequence(runs.run_offline(eng, seq), seq.depth, 10.0)
    assert off_good.abs_rel < pf_bad.abs_rel


def test_goals_and_markdown() -> None:
    methods = {
        "constant": {"abs_rel": 0.3, "delta1": 0.4, "tae": 0.2},
        "row ramp": {"abs_rel": 0.2, "delta1": 0.6, "tae": 0.3},
        "model offline": {"abs_rel": 0.13, "delta1": 0.8, "tae": 1.0},
        "model stream": {"abs_rel": 0.131, "delta1": 0.797, "tae": 1.1},
        "model per-frame (T=1)": {"abs_rel": 0.16, "delta1": 0.7, "tae": 2.0},
    }
    g = cli.goals(methods)
    assert g["abs_rel_30pct_below_best_trivial"]["pass"]  # 0.13 <= 0.7 * 0.2
    assert g["abs_rel_30pct_below_best_trivial"]["reduction"] == pytest.approx(0.35)
    assert g["tae_windowed_below_per_frame"]["pass"]
    assert g["stream_offline_delta1_gap"]["pass"]
    methods["model stream"]["delta1"] = 0.79
    assert not cli.goals(methods)["stream_offline_delta1_gap"]["pass"]
    md = report.markdown({"datasets": {"x": {"frames": 5, "methods": methods, "goals": g}}, "meta": {}})
    assert "| x | 5 | model offline | 0.130 | 0.800 | 1.000 |" in md
    assert "PASS" in md
    assert "alignment" not in md  # no pipeline recorded (baselines only): no line about it
    pipe = {"alignment": "graph", "schedule": "keyframe", "window": 8, "overlap": 4}
    meta = {"pipeline": pipe, "params_file": "/x/config/depth.yaml"}
    md = report.markdown({"datasets": {"x": {"frames": 5, "methods": methods, "goals": g}}, "meta": meta})
    assert "- offline and stream runs: alignment graph, keyframe windows 8/4" in md and "depth.yaml" in md


def test_cli_baselines_only_writes_reports(evaldata, tmp_path, capsys) -> None:
    rc = cli.main(["--datasets", "hololens", "--frames", "6", "--baselines-only", "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "results.json").read_text())
    methods = res["datasets"]["hololens"]["methods"]
    assert set(methods) == {"constant", "row ramp"}
    assert 0.1 < methods["constant"]["abs_rel"] < 0.6
    assert "| hololens | 6 | row ramp |" in capsys.readouterr().out


def test_cli_refuses_missing_evaldata(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--evaldata", str(tmp_path / "nope"), "--baselines-only"])
    assert done.value.code == 2
    err = capsys.readouterr().err.splitlines()  # one line as vdepth-bag/-video give theirs, no usage first
    assert len(err) == 1 and err[0].startswith("vdepth-eval: error: evaluation data not found: pass --evaldata"), err


@pytest.fixture
def tiny_evaldata(tmp_path):
    """An evaluation data folder with a 4-frame, 16x12 HoloLens-layout sequence (no research data needed)."""
    import cv2

    seq = tmp_path / "evaldata" / "dvmvs_hololens_000"
    (seq / "images").mkdir(parents=True)
    (seq / "depth").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(seq / "images" / f"{i:05d}.png"), rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
        cv2.imwrite(str(seq / "depth" / f"{i:05d}.png"), rng.integers(500, 4000, (12, 16), dtype=np.uint16))
    np.savetxt(seq / "K.txt", [[10.0, 0, 8], [0, 10.0, 6], [0, 0, 1]])
    np.savetxt(seq / "poses.txt", np.tile(np.eye(4).reshape(1, 16), (4, 1)))
    return tmp_path / "evaldata"


def _eval(evaldata, out, *extra):
    return cli.main(
        ["--evaldata", str(evaldata), "--datasets", "hololens", "--baselines-only", "--out", str(out), *extra]
    )


def test_cli_applies_the_params_files_blas_threads(tiny_evaldata, tmp_path, monkeypatch, capsys) -> None:
    """`vdepth-eval --params` sets numpy's OpenBLAS threads from the node's `blas_threads`, by the
    rule of vdepth-bag, vdepth-video and the node (0 = leave as is); before, it always set 1."""
    from vdepth_ros.blas import blas_threads, set_blas_threads

    if not blas_threads():
        pytest.skip("numpy is not linked against OpenBLAS here")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    params = tmp_path / "params.yaml"
    before = set_blas_threads(1)
    try:
        for n, expect in ((2, 2), (0, 2), (1, 1)):
            params.write_text(f"/**:\n  ros__parameters:\n    blas_threads: {n}\n")
            assert _eval(tiny_evaldata, tmp_path / f"out{n}", "--params", str(params)) == 0
            assert set(blas_threads().values()) == {expect}, n
    finally:
        for k in set(before.values()):
            set_blas_threads(k)
    capsys.readouterr()


def test_cli_keeps_existing_results_unless_overwrite(tiny_evaldata, tmp_path, capsys) -> None:
    """docs/offline.md: an existing output is kept unless --overwrite (the results used to be replaced silently)."""
    out = tmp_path / "out"
    assert _eval(tiny_evaldata, out, "--frames", "3") == 0
    first = (out / "results.json").read_text()
    mine = out / "notes.txt"
    mine.write_text("the user's own file")
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        _eval(tiny_evaldata, out, "--frames", "4")
    assert done.value.code == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "results.json").read_text() == first
    assert _eval(tiny_evaldata, out, "--frames", "4", "--overwrite") == 0
    assert json.loads((out / "results.json").read_text())["datasets"]["hololens"]["frames"] == 4
    assert "| hololens | 4 |" in (out / "results.md").read_text()
    assert mine.read_text() == "the user's own file"  # --overwrite replaces the two reports, nothing else
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "results.json", "results.md"]


def test_cli_overwrite_never_replaces_a_folder_named_like_a_report(tiny_evaldata, tmp_path, capsys) -> None:
    """--overwrite replaces the reports `vdepth-eval` wrote, not a folder of the user's that has their name."""
    out = tmp_path / "out"
    (out / "results.json").mkdir(parents=True)
    (out / "results.json" / "mine.txt").write_text("the user's own file")
    with pytest.raises(SystemExit) as done:
        _eval(tiny_evaldata, out, "--frames", "3", "--overwrite")
    assert done.value.code == 2
    assert "is a folder, not a report" in capsys.readouterr().err
    assert (out / "results.json" / "mine.txt").read_text() == "the user's own file"
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]  # no results.md, no staging left


@pytest.mark.parametrize("name", ["results.json", "results.md"])
def test_cli_overwrite_never_replaces_a_file_of_the_users_named_like_a_report(
    tiny_evaldata, tmp_path, capsys, name
) -> None:
    """`--out ~/data --overwrite` (a slip) replaced the user's own results.json / results.md there."""
    out = tmp_path / "data"
    out.mkdir()
    (out / name).write_text("my own results, not vdepth-eval's")
    with pytest.raises(SystemExit) as done:
        _eval(tiny_evaldata, out, "--frames", "3", "--overwrite")
    assert done.value.code == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
    assert str(out / name) in line and "not a vdepth-eval report" in line, line
    assert (out / name).read_text() == "my own results, not vdepth-eval's"
    assert sorted(p.name for p in out.iterdir()) == [name]


@pytest.mark.parametrize("kind", ["file", "under_file"])
def test_cli_unusable_out_is_one_line_before_any_work(tiny_evaldata, tmp_path, capsys, monkeypatch, kind) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine")
    out = afile if kind == "file" else afile / "sub"
    monkeypatch.setattr(cli, "evaluate", lambda *a, **k: pytest.fail("ran before checking --out"))
    with pytest.raises(SystemExit) as done:
        _eval(tiny_evaldata, out)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(out) in err.splitlines()[-1]
    assert afile.read_text() == "mine"


def test_cli_out_inside_the_evaluation_data_is_one_line_before_any_work(
    tiny_evaldata, tmp_path, capsys, monkeypatch
) -> None:
    """`--out` inside the evaluation data (a slip of the path: `--out $VDEPTH_EVALDATA/dvmvs_hololens_000/out`)
    wrote results.json and results.md into the dataset's folder, which is the user's data, not an output."""
    monkeypatch.setattr(cli, "evaluate", lambda *a, **k: pytest.fail("ran before checking --out"))
    before = sorted(p.relative_to(tiny_evaldata) for p in tiny_evaldata.rglob("*"))
    for out in (tiny_evaldata / "dvmvs_hololens_000" / "out", tiny_evaldata):
        with pytest.raises(SystemExit) as done:
            _eval(tiny_evaldata, out)
        assert done.value.code == 2
        err = capsys.readouterr().err
        assert f"overlaps the input {tiny_evaldata}" in err and len(err.splitlines()) == 1, err
    assert sorted(p.relative_to(tiny_evaldata) for p in tiny_evaldata.rglob("*")) == before


def test_cli_missing_dataset_is_one_line_before_any_work(tiny_evaldata, tmp_path, capsys, monkeypatch) -> None:
    """A dataset missing from --evaldata used to raise FileNotFoundError, after the datasets before it had run."""
    monkeypatch.setattr(cli, "evaluate", lambda *a, **k: pytest.fail("ran before checking the data"))
    out = tmp_path / "new" / "out"
    with pytest.raises(SystemExit) as done:
        cli.main(["--evaldata", str(tiny_evaldata), "--datasets", "hololens", "7scenes", "--out", str(out)])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "dataset 7scenes: no folder" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "new").exists()  # the output folders it would have created are not left behind


def test_cli_incomplete_dataset_is_one_line(tmp_path, capsys) -> None:
    (tmp_path / "evaldata" / "7scenes_tsdf_fusion").mkdir(parents=True)
    with pytest.raises(SystemExit) as done:
        cli.main(["--evaldata", str(tmp_path / "evaldata"), "--datasets", "7scenes", "--baselines-only",
                  "--out", str(tmp_path / "out")])  # fmt: skip
    assert done.value.code == 2
    assert "no frame-*.color.jpg under" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args", [["--frames", "0"], ["--frames", "-3"], ["--threads", "0"], ["--sparse-points", "-1"], ["--frames", "x"]]
)
def test_cli_rejects_counts_out_of_range(tiny_evaldata, tmp_path, capsys, args) -> None:
    """`--frames -3` used to evaluate all but the last 3 frames, `--frames 0` the default count."""
    with pytest.raises(SystemExit) as done:
        _eval(tiny_evaldata, tmp_path / "out", *args)
    assert done.value.code == 2
    assert f"argument {args[0]}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_size_and_per_frame_fit_options(evaldata, tmp_path, capsys) -> None:
    pytest.importorskip("torch")
    base = ["--datasets", "hololens", "--frames", "8", "--no-stream", "--no-per-frame"]
    rc = cli.main([*base, "--backend", "torch", "--size", "96", "128", "--per-frame-fit", "--out", str(tmp_path / "a")])
    assert rc == 0
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    methods = res["datasets"]["hololens"]["methods"]
    # the diagnostic row scores the same offline run with one affine per frame (a least-squares fit
    # in disparity space, so not a strict bound on AbsRel, but far below the sequence fit in practice)
    assert methods["model offline, affine per frame"]["abs_rel"] <= methods["model offline"]["abs_rel"]
    assert methods["model offline, affine per frame"]["tae"] is None
    meta = res["meta"]
    assert (meta["spec"]["height"], meta["spec"]["width"]) == (96, 128)
    assert meta["backend"] == "torch"
    with pytest.raises(SystemExit):  # an exported graph has a fixed size: refused, not ignored
        cli.main([*base, "--backend", "onnxruntime", "--size", "96", "128", "--out", str(tmp_path / "b")])
    assert "torch backend" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the Lite encoder needs multiples of 32: a clear error, no traceback
        cli.main([*base, "--backend", "torch", "--size", "90", "128", "--out", str(tmp_path / "c")])


def test_sparse_gt_samples_pick_ground_truth_at_rgb_pixels(synthetic_sequence) -> None:
    seq = synthetic_sequence
    a = runs.sparse_gt_samples(seq, 3, 40)
    assert a.shape == seq.rgb.shape[1:3]
    got = np.isfinite(a)
    assert got.sum() == 40
    np.testing.assert_array_equal(a[got], seq.depth[3][got])  # same grid here: the GT itself
    np.testing.assert_array_equal(runs.sparse_gt_samples(seq, 3, 40), a)  # seeded by the frame
    assert not np.array_equal(np.isfinite(runs.sparse_gt_samples(seq, 4, 40)), got)
    # a GT grid subsampled by 2 (as 7-Scenes is evaluated): samples land on the RGB pixel they came from
    half = EvalSequence(
        name="half", rgb=seq.rgb, depth=seq.depth[:, ::2, ::2], intrinsics=seq.intrinsics,
        rgb_intrinsics=seq.rgb_intrinsics, poses=None, max_depth=10.0,
    )  # fmt: skip
    b = runs.sparse_gt_samples(half, 3, 30)
    got = np.isfinite(b)
    assert got.sum() == 30
    np.testing.assert_array_equal(b[got], seq.depth[3][got])


def test_stream_with_sparse_points_returns_metric_inverse_depth(synthetic_sequence) -> None:
    from fakes import AffineCorruptingEngine

    seq = synthetic_sequence
    # frames whose grey level is an affine of the true disparity, and a "model" that reads the grey level
    # and applies a random affine per window: a relative-disparity model without shape error
    disp = np.where(seq.depth > 0, 1.0 / np.maximum(seq.depth, 1e-3), 0.0)
    lo, hi = disp[seq.depth > 0].min(), disp.max()
    grey = np.clip((disp - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)
    coded = EvalSequence(
        name="coded", rgb=np.repeat(grey[..., None], 3, axis=-1), depth=seq.depth, intrinsics=seq.intrinsics,
        rgb_intrinsics=seq.rgb_intrinsics, poses=seq.poses, max_depth=10.0,
    )  # fmt: skip
    eng = AffineCorruptingEngine(height=42, width=56, frames=8, overlap=3, seed=5)
    inv = runs.run_stream(eng, coded, sparse_points=200)
    valid = (seq.depth > 0) & (inv > 0)
    ratio = (1.0 / inv[valid]) / seq.depth[valid]
    assert np.median(np.abs(ratio - 1.0)) < 0.05  # metric without any alignment to the GT
    rel = runs.run_stream(AffineCorruptingEngine(height=42, width=56, frames=8, overlap=3, seed=5), coded)
    ratio_rel = (1.0 / rel[valid]) / seq.depth[valid]
    assert np.median(np.abs(ratio_rel - 1.0)) > 0.2  # the relative output alone is not


def test_stream_with_pose_points_is_metric_from_the_first_frame() -> None:
    """`--pose-points`: depths triangulated from the video with the GT poses feed the sparse fit, so
    the output is metric with no alignment to the GT; frames before the first fit take that fit."""
    pytest.importorskip("embreex")
    from fakes import LuminanceEngine
    from vdepth_training.data.synthetic import render_clip

    clip = render_clip(3, frames=30, height=180, width=240, kind="room", style="rich")
    seq = EvalSequence("render/3", clip.rgb, clip.depth, clip.intrinsics, clip.intrinsics, clip.poses, 10.0)
    inv = runs.run_stream(LuminanceEngine(height=96, width=128, frames=8, overlap=3), seq, pose_points=True)
    assert all((inv[t] > 0).mean() > 0.9 for t in range(seq.num_frames))  # every frame, the first ones too
    valid = np.isfinite(seq.depth) & (seq.depth > 0) & (inv > 0)
    ratio = np.median((1.0 / inv[valid]) / seq.depth[valid])
    rel = runs.run_stream(LuminanceEngine(height=96, width=128, frames=8, overlap=3), seq)
    ratio_rel = np.median((1.0 / rel[valid]) / seq.depth[valid])
    # a grey-level "model" has the wrong shape, but its scale now comes from the poses
    assert abs(ratio - 1.0) < 0.25 and abs(ratio_rel - 1.0) > 0.5
    no_poses = EvalSequence("still", clip.rgb, clip.depth, clip.intrinsics, clip.intrinsics, None, 10.0)
    with pytest.raises(cli.ConfigError, match="poses"):
        runs.run_stream(LuminanceEngine(height=96, width=128, frames=8, overlap=3), no_poses, pose_points=True)


def test_node_params_reach_the_model_runs_and_eval_keys_stay_fixed(synthetic_sequence, tmp_path, monkeypatch) -> None:
    from fakes import AffineCorruptingEngine

    from vdepth_ros.config import load_params

    kf = (0, 3, 6, 7)
    eng = AffineCorruptingEngine(height=42, width=56, frames=8, overlap=4, keyframes=kf, alignment="graph")
    assert runs.make_pipeline(eng).alignment == "graph"  # bundled config/depth.yaml: alignment auto
    yaml = tmp_path / "p.yaml"
    yaml.write_text("/**:\n  ros__parameters:\n    alignment: keyframe\n    scale_source: range\n    cloud_stride: 2\n")
    node = load_params(yaml)
    pipe = runs.make_pipeline(eng, base=node)
    assert pipe.alignment == "keyframe"
    assert pipe.scale_source.kind == "none" and pipe.cloud is None  # the evaluation's own settings win
    # both model runs build their pipeline from those params
    seen = []
    real = runs.make_pipeline

    def spy(engine, params=None, base=None):
        pipe = real(engine, params, base)
        seen.append(pipe.alignment)
        return pipe

    monkeypatch.setattr(runs, "make_pipeline", spy)
    for run in (runs.run_stream, runs.run_offline):
        out = run(AffineCorruptingEngine(height=42, width=56, frames=8, keyframes=kf), synthetic_sequence, base=node)
        assert out.shape == synthetic_sequence.depth.shape
    assert seen == ["keyframe", "keyframe"]


def test_cli_params_file_must_exist(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--evaldata", str(tmp_path), "--baselines-only", "--params", str(tmp_path / "missing.yaml")])
    assert "not found" in capsys.readouterr().err


def test_a_sequence_without_a_metric_fit_is_noted_not_fatal(monkeypatch) -> None:
    """`--pose-points` on a camera that never moves: no point is triangulated, so that sequence has
    no pose row; the evaluation goes on, averages the other sequences and says so."""
    pytest.importorskip("embreex")
    from fakes import LuminanceEngine
    from vdepth_training.data.synthetic import render_clip

    clip = render_clip(3, frames=24, height=120, width=160, kind="room", style="rich")
    moving = EvalSequence("render/3", clip.rgb, clip.depth, clip.intrinsics, clip.intrinsics, clip.poses, 10.0)
    still_poses = np.repeat(clip.poses[:1], len(clip.poses), axis=0)
    still = EvalSequence("still", clip.rgb, clip.depth, clip.intrinsics, clip.intrinsics, still_poses, 10.0)
    engine = LuminanceEngine(height=96, width=128, frames=8, overlap=3)
    with pytest.raises(runs.NoMetricFitError, match="still: no metric fit"):
        runs.run_stream(engine, still, pose_points=True)

    from pathlib import Path

    import vdepth_ros.runtime as runtime

    monkeypatch.setattr(cli, "load_dataset", lambda name, root, **kw: [still, moving])
    monkeypatch.setattr(runtime, "create_engine", lambda *a, **kw: engine)
    monkeypatch.setattr(cli, "_single_frame_engine", lambda mdir, eng: eng)
    monkeypatch.setattr(cli, "measure_engine_fps", lambda eng: {"window_s": 0.1, "fps": 40.0})
    res = cli.evaluate(["hololens"], Path("."), pose_points=True, stream=False, per_frame=False)
    d = res["datasets"]["hololens"]
    assert len(d["notes"]) == 1 and "still" in d["notes"][0]
    assert cli.POSE_ROW in d["methods"] and "model offline" in d["methods"]  # from the moving sequence
    assert "- hololens · note: " in report.markdown(res)


def test_cli_help_names_where_the_data_comes_from(capsys) -> None:
    """The help said `../shared/evaldata`; the folder actually comes from $VDEPTH_EVALDATA first."""
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "VDEPTH_EVALDATA" in " ".join(capsys.readouterr().out.split())


def test_the_evaluators_one_frame_twin_of_a_model_with_a_fixed_clip_length_warns_nothing(tmp_path, caplog) -> None:
    """A trained model whose clips had one length (say 12 frames): `vdepth-eval` builds its one-frame
    twin for the per-frame baseline on purpose, and each run logged "running windows of 1 frames; this
    model was trained on clips of 12", which the user can do nothing about. A window the user asks for
    (`create_engine(frames=...)`) still gets the warning."""
    import logging

    from vdepth_ros.models import family_class
    from vdepth_ros.runtime import create_engine

    cls = family_class("vda_lite")
    model = cls(**cls.tiny_config())
    model.trained = {"sizes": [[64, 96]], "clip_length": [12, 12]}
    mdir = model.save_pretrained(tmp_path / "mine")
    engine = create_engine(str(mdir), backend="torch", height=64, width=96)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        single = runs._single_frame_engine(mdir, engine)
    assert single.input_spec.frames == 1
    assert not [r for r in caplog.records if "windows of 1 frames" in r.getMessage()], caplog.text
    with caplog.at_level(logging.WARNING):
        create_engine(str(mdir), backend="torch", frames=1, height=64, width=96)
    assert [r for r in caplog.records if "windows of 1 frames" in r.getMessage()], caplog.text


_KILLED_EVAL = """
import os, signal, sys
from vdepth_ros.eval import cli

def evaluate(*a, **kw):
    os.kill(os.getpid(), signal.SIGTERM)  # `timeout`, `kill`, a scheduler stopping the job
    raise AssertionError("not stopped")

cli.evaluate = evaluate
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_stopped_run_is_one_line_exit_130_and_leaves_no_folder(tiny_evaldata, tmp_path) -> None:
    """vdepth-eval stopped (Ctrl-C, or SIGTERM from `timeout` or `kill`) while it evaluates: SIGTERM killed
    it with no word and Ctrl-C printed a traceback, both leaving the empty --out folders it had created, as
    the offline tools do not. Now the tools' one line, exit status 130, and the folders it created gone."""
    import subprocess
    import sys

    out = tmp_path / "runs" / "eval"
    args = ["--evaldata", str(tiny_evaldata), "--datasets", "hololens", "--baselines-only", "--out", str(out)]
    proc = subprocess.run([sys.executable, "-c", _KILLED_EVAL, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip().splitlines()[-1]], proc.stderr[-2000:]
    assert proc.stderr.startswith("vdepth-eval: interrupted"), proc.stderr
    assert not (tmp_path / "runs").exists()


def _cut_short(path, keep: float = 0.5) -> None:
    """`path` as a copy interrupted part way leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_cli_leaves_out_a_damaged_frame_and_reports_it(tiny_evaldata, tmp_path, capsys, caplog) -> None:
    """A copy of the data with one image cut short and one depth file missing stopped at the first of them
    ("cannot read image ..."), after the work before it: now both frames are left out, the run scores the others,
    one warning names the files, results.json lists each one and results.md notes it."""
    seq = tiny_evaldata / "dvmvs_hololens_000"
    _cut_short(seq / "images" / "00001.png")
    (seq / "depth" / "00002.png").unlink()
    with caplog.at_level(logging.WARNING):
        assert _eval(tiny_evaldata, tmp_path / "out", "--frames", "4") == 0
    captured = capsys.readouterr()
    hololens = json.loads((tmp_path / "out" / "results.json").read_text())["datasets"]["hololens"]
    assert hololens["frames"] == 2 and hololens["methods"]["constant"]["frames"] == 2
    skipped = hololens["skipped_frames"]
    assert len(skipped) == 2 and "images/00001.png" in skipped[0] and "depth/00002.png" in skipped[1], skipped
    warning = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(warning) == 1 and "2 of 4 frames" in warning[0] and "00001.png" in warning[0], warning
    assert "2 frame(s) left out" in (tmp_path / "out" / "results.md").read_text()
    assert "hololens · note:" in captured.out


def test_cli_sequence_without_a_readable_frame_is_one_line(tiny_evaldata, tmp_path, capsys) -> None:
    for image in (tiny_evaldata / "dvmvs_hololens_000" / "images").iterdir():
        _cut_short(image, 0.2)
    with pytest.raises(SystemExit) as done:
        _eval(tiny_evaldata, tmp_path / "out")
    err = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 2 and len(err) == 1 and "none of its 4 frames can be read" in err[0], err
    assert not (tmp_path / "out").exists()


def test_cli_damaged_poses_file_is_one_line(tiny_evaldata, tmp_path, capsys) -> None:
    """A poses.txt cut short mid-line raised numpy's ValueError as a traceback."""
    poses = tiny_evaldata / "dvmvs_hololens_000" / "poses.txt"
    poses.write_text(poses.read_text()[:-40])
    with pytest.raises(SystemExit) as done:
        _eval(tiny_evaldata, tmp_path / "out")
    err = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 2 and len(err) == 1 and "poses.txt (missing, or damaged" in err[0], err
