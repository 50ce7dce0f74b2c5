"""`python -m vdepth_ros.demo`: the README's first command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from fakes import LuminanceEngine
from rosbags.highlevel import AnyReader

from vdepth_ros import demo
from vdepth_ros.offline.errors import OutputExistsError
from vdepth_ros.offline.synth import synthetic_frames


def make_clip(path: Path, n: int = 10) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for rgb in synthetic_frames(n, 48, 64):
        vw.write(np.ascontiguousarray(rgb[..., ::-1]))
    vw.release()
    return path


def test_demo_end_to_end_with_injected_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = make_clip(tmp_path / "clip.mp4")
    out = tmp_path / "demo"
    result = demo.run_demo(out, sample=clip, engine=LuminanceEngine(48, 64, 8, 3))
    assert len(list((out / "video" / "depth").glob("*.png"))) == 10
    assert len(list((out / "video" / "depth").glob("*.npz"))) == 10
    assert (out / "video" / "preview.mp4").stat().st_size > 0
    still = cv2.imread(str(out / "video" / "preview.png"))  # the middle frame: image | depth, colour bar below
    assert still.shape[1] == 2 * 64 and still.shape[0] > 48
    assert (out / "summary.json").is_file()
    with AnyReader([out / "depth_bag"]) as r:
        counts = {c.topic: c.msgcount for c in r.connections}
    assert counts == {"/depth": 10, "/disparity": 10, "/points": 10, "/depth/camera_info": 10}
    assert result["bag"]["frames_out"] == 10 and result["video"]["frames_out"] == 10
    text = demo.format_result(result)
    assert "depth_bag" in text and "preview.mp4" in text
    assert result["flicker"]["pairs"] == 9 and "flicker of /depth" in text  # vdepth-flicker on the two bags
    # a second run replaces the demo's own outputs
    demo.run_demo(out, sample=clip, engine=LuminanceEngine(48, 64, 8, 3), max_frames=6)
    assert len(list((out / "video" / "depth").glob("*.png"))) == 6


def test_ctrl_c_during_a_demo_step_stops_the_demo(tmp_path: Path) -> None:
    """Ctrl-C ends a tool's input where it is and keeps the frames done (docs/offline.md); the demo,
    which calls the tools in turn, went on to its next steps as if the user had not asked to stop."""
    import signal

    class CtrlC(LuminanceEngine):
        def _run(self, batch: np.ndarray) -> np.ndarray:
            if self.calls == 1:
                os.kill(os.getpid(), signal.SIGINT)
            return super()._run(batch)

    clip = make_clip(tmp_path / "clip.mp4", n=40)
    with pytest.raises(KeyboardInterrupt, match="at step 1 of 4 after"):
        demo.run_demo(tmp_path / "demo", sample=clip, engine=CtrlC(48, 64, 8, 3))
    assert (tmp_path / "demo" / "video" / "meta.json").is_file()  # the frames done
    assert not (tmp_path / "demo" / "input_bag").exists() and not (tmp_path / "demo" / "summary.json").exists()


def test_demo_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(OutputExistsError, match="not written by the demo"):
        demo.run_demo(tmp_path / "mine", sample=make_clip(tmp_path / "c.mp4"), engine=LuminanceEngine(48, 64, 8, 3))
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize("name", ["input_bag", "depth_bag", "video", "summary.json"])
def test_demo_overwrite_never_replaces_a_users_file_or_folder_it_would_write(tmp_path: Path, name: str) -> None:
    """`--out ~/data --overwrite`: the demo wrote its input_bag/ and summary.json over the user's own
    (and found the user's video/ or depth_bag/ only after minutes of work)."""
    mine = tmp_path / "data" / name
    if name.endswith(".json"):
        mine.parent.mkdir()
        mine.write_text('{"my": "results"}')
    else:
        mine.mkdir(parents=True)
        (mine / "thesis.tex").write_text("precious")
    before = {p: p.read_bytes() for p in sorted((tmp_path / "data").rglob("*")) if p.is_file()}
    clip = make_clip(tmp_path / "c.mp4")
    with pytest.raises(OutputExistsError, match=f"{name} exists and is not"):
        demo.run_demo(tmp_path / "data", sample=clip, engine=LuminanceEngine(48, 64, 8, 3), overwrite=True)
    assert {p: p.read_bytes() for p in sorted((tmp_path / "data").rglob("*")) if p.is_file()} == before


def test_demo_names_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "model").mkdir()
    monkeypatch.setenv("VDEPTH_DEFAULT_MODEL", str(tmp_path / "model"))
    monkeypatch.setenv("VDEPTH_SAMPLE", str(tmp_path / "nope.mp4"))
    assert demo.main(["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "default model is missing" in err and "config.json" in err
    assert "sample clip is missing" in err and "nope.mp4" in err
    assert not (tmp_path / "out").exists()


def test_demo_reads_a_tilde_the_shell_did_not_expand_as_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--out=~/demo` (bash expands no `~` after `=`), a quoted path or one from a script: the demo, like
    every console tool, writes into the home folder, not into a folder literally named `~` here."""
    home = tmp_path / "home"
    home.mkdir()
    make_clip(home / "clip.mp4", 6)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    run = demo.run_demo  # the bundled model is not needed: the same run with a test engine
    monkeypatch.setattr(demo, "run_demo", lambda *a, **k: run(*a, **k, engine=LuminanceEngine(48, 64, 8, 3)))
    assert demo.main(["--out=~/demo", "--input=~/clip.mp4"]) == 0
    assert (home / "demo" / "summary.json").is_file()
    assert not (tmp_path / "~").exists()
    assert str(home / "demo") in capsys.readouterr().out


def _have_default() -> bool:
    from vdepth_ros.paths import default_model_dir

    return (default_model_dir() / "config.json").is_file() and demo.find_sample() is not None


@pytest.mark.slow
@pytest.mark.skipif(not _have_default(), reason="the bundled default model / sample clip are not in models/default yet")
def test_readme_demo_command(tmp_path: Path, repo_root: Path) -> None:
    out = tmp_path / "demo"
    res = subprocess.run(
        [sys.executable, "-m", "vdepth_ros.demo", "--out", str(out)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    assert res.returncode == 0, res.stderr
    assert "output_bag" in res.stdout and (out / "depth_bag" / "metadata.yaml").is_file()
    assert "flicker of /depth (flow warping error" in res.stdout
    assert list((out / "video" / "depth").glob("*.png"))
    # README's picture is this still (docs/outputs.md, "Previews"): a change of the preview's layout, the
    # bundled model or the sample leaves it showing what the demo no longer writes. Not bit-exact: ONNX
    # Runtime's threads reorder sums (its mean difference to a run on another install was 1.0 of 255).
    still = cv2.imread(str(out / "video" / "preview.png")).astype(int)
    shown = cv2.imread(str(repo_root / "docs" / "img" / "preview.png")).astype(int)
    assert still.shape == shown.shape, (still.shape, shown.shape)
    assert np.abs(still - shown).mean() < 4.0, "regenerate docs/img/preview.png from the demo (docs/outputs.md)"
