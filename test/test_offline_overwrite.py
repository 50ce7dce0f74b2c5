"""--overwrite replaces an earlier output of the same tool, never a folder of the user's other files."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import LuminanceEngine

from vdepth_ros.offline.bag import process_bag
from vdepth_ros.offline.errors import OutputExistsError
from vdepth_ros.offline.synth import synthetic_frames, write_image_bag
from vdepth_ros.offline.video import process_video

PARAMS = {"scale_source": "range", "near": 0.5, "far": 5.0, "max_depth": 3.0}


def _engine() -> LuminanceEngine:
    return LuminanceEngine(height=48, width=64, frames=8, overlap=3)


def _users_folder(path: Path) -> Path:
    path.mkdir()
    (path / "thesis.tex").write_text("years of work")
    return path


def test_bag_overwrite_refuses_a_folder_that_is_not_a_bag(tmp_path: Path) -> None:
    """`-o ~/data --overwrite` (a slip for ~/data/run3) deleted the whole folder once the run was done."""
    src = tmp_path / "in"
    write_image_bag(src, synthetic_frames(10, 36, 52))
    mine = _users_folder(tmp_path / "data")
    with pytest.raises(OutputExistsError, match="not a bag"):
        process_bag(src, mine, params=PARAMS, engine=_engine(), overwrite=True)
    assert (mine / "thesis.tex").read_text() == "years of work"
    process_bag(src, tmp_path / "out", params=PARAMS, engine=_engine())
    process_bag(src, tmp_path / "out", params=PARAMS, engine=_engine(), overwrite=True)  # an earlier output: fine


def test_video_overwrite_refuses_a_folder_that_is_not_a_vdepth_video_output(tmp_path: Path) -> None:
    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    for i, rgb in enumerate(synthetic_frames(10, 36, 52)):
        cv2.imwrite(str(frames / f"{i:03d}.png"), rgb[..., ::-1])
    mine = _users_folder(tmp_path / "data")
    kw = {"params": PARAMS, "engine": _engine(), "preview": False, "formats": ("npy",)}
    with pytest.raises(OutputExistsError, match="not a vdepth-video output"):
        process_video(frames, mine, overwrite=True, **kw)
    assert (mine / "thesis.tex").read_text() == "years of work"
    process_video(frames, tmp_path / "out", **kw)
    process_video(frames, tmp_path / "out", overwrite=True, **{**kw, "engine": _engine()})
