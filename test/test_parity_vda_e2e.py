"""Video Depth Anything end to end in the `reference` inference mode against the authors' code.

The authors' `VideoDepthAnything.infer_video_depth` (`reference-code/video-depth-anything`, imported
from its folder) and `DepthPipeline` (torch engine, `inference: auto` = "reference" for the `vda`
family) run the same random vits weights (saved as the released `.pth` and imported) on 80 real
HoloLens frames (four 32-frame windows, three stitches). `input_size` / `working_short_side` 112
keeps it CPU-cheap; the rule (keep aspect, lower bound, multiple of 14, INTER_CUBIC) is the same
at 518. Every frame's disparity at the input resolution must agree to <= 1e-4 relative.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from reference_code import randomize_, reference_import

from vdepth_ros.models.vda import VideoDepthAnything
from vdepth_ros.paths import evaldata_dir
from vdepth_ros.pipeline import DepthPipeline, FrameInput, PipelineConfig
from vdepth_ros.runtime import create_engine

FRAMES = 80  # windows start at 0, 22, 44, 66: three stitches
INPUT_SIZE = 112
TOL = 1e-4


def _hololens_frames(n: int) -> np.ndarray:
    import cv2

    root = evaldata_dir()
    folder = None if root is None else root / "dvmvs_hololens_000/sample-data/hololens-dataset/000/images"
    if folder is None or not folder.is_dir():
        pytest.skip("HoloLens frames (../shared/evaldata/dvmvs_hololens_000) are not here (set VDEPTH_EVALDATA)")
    files = sorted(folder.glob("*.png"))[:n]
    assert len(files) == n
    return np.stack([cv2.cvtColor(cv2.imread(str(f), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for f in files])


def per_frame_relative(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """max |ours - theirs| / max |theirs| per frame."""
    diff = np.abs(ours.astype(np.float64) - theirs).reshape(len(theirs), -1).max(axis=1)
    return diff / np.abs(theirs).reshape(len(theirs), -1).max(axis=1)


@pytest.mark.slow
def test_reference_mode_equals_infer_video_depth_on_real_frames(tmp_path: Path) -> None:
    frames = _hololens_frames(FRAMES)
    with reference_import("video-depth-anything"):
        from video_depth_anything.video_depth import VideoDepthAnything as Authors

        authors = randomize_(Authors(encoder="vits", features=64, out_channels=[48, 96, 192, 384]).eval(), seed=0)
        ckpt = tmp_path / "video_depth_anything_vits.pth"
        torch.save(authors.state_dict(), ckpt)
        with torch.no_grad():
            theirs, _ = authors.infer_video_depth(frames, 30, input_size=INPUT_SIZE, device="cpu", fp32=True)
    VideoDepthAnything.from_released(ckpt, encoder="vits").save_pretrained(tmp_path / "model")
    engine = create_engine(str(tmp_path / "model"), backend="torch")
    config = PipelineConfig(working_short_side=INPUT_SIZE, publish="final", scale_source="none")
    pipe = DepthPipeline(config, engine=engine)
    assert pipe.config.inference == "reference" and pipe.config.fit_pixels == "all"
    out = [f for i, rgb in enumerate(frames) for f in pipe.push(FrameInput(rgb=rgb, stamp_ns=i))] + pipe.flush()
    assert [f.index for f in out] == list(range(FRAMES))
    assert pipe.stats.windows == 4
    ours = np.stack([f.disparity for f in out])
    assert ours.shape == theirs.shape == frames.shape[:3]
    assert float(theirs.std()) > 1e-3 * float(np.abs(theirs).max())  # a non-trivial output
    errors = per_frame_relative(ours, theirs)
    print(f"per-frame relative error: max {errors.max():.2e}, first window {errors[:32].max():.2e}")
    assert errors.max() <= TOL, {i: float(e) for i, e in enumerate(errors) if e > TOL}
