"""Evaluation loaders on the real data in ../shared/evaldata (skipped with a reason when absent)."""

from __future__ import annotations

import numpy as np
import pytest

from vdepth_ros.eval.datasets import load_dataset, read_depth_png
from vdepth_ros.eval.metrics import constant_prediction, evaluate_sequence, row_ramp_prediction


def test_depth_png_scale_and_invalid_values(tmp_path) -> None:
    import cv2

    raw = np.array([[0, 1000, 65535], [2560, 500, 1]], np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), raw)
    mm = read_depth_png(tmp_path / "d.png", 1000.0, (0, 65535))
    np.testing.assert_allclose(mm, [[0, 1.0, 0], [2.56, 0.5, 0.001]], rtol=1e-6)
    kitti = read_depth_png(tmp_path / "d.png", 256.0)
    assert kitti[1, 0] == pytest.approx(10.0)


def test_7scenes_loader(evaldata) -> None:
    [seq] = load_dataset("7scenes", evaldata, frames=4, stride=2)
    assert seq.rgb.shape == (4, 480, 640, 3)
    assert seq.depth.shape == (4, 240, 320)
    assert seq.intrinsics[0, 0] == pytest.approx(292.5)
    assert seq.intrinsics[0, 2] == pytest.approx(160.0)
    valid = seq.depth > 0
    assert 0.8 < valid.mean() < 0.95
    assert 0.4 < np.median(seq.depth[valid]) < 4.0
    np.testing.assert_allclose(seq.poses[:, 3], np.tile([0, 0, 0, 1.0], (4, 1)))


def test_hololens_loader(evaldata) -> None:
    [seq] = load_dataset("hololens", evaldata, frames=3)
    assert seq.rgb.shape == (3, 360, 540, 3)
    assert seq.depth.shape == (3, 360, 540)
    assert seq.intrinsics[0, 0] == pytest.approx(495.568, abs=1e-3)
    assert seq.poses.shape == (3, 4, 4)
    # consecutive handheld frames: a few cm apart
    assert np.linalg.norm(seq.poses[1, :3, 3] - seq.poses[0, :3, 3]) < 0.1


def test_kitti_and_nyu_single_frames(evaldata) -> None:
    kitti = load_dataset("kitti", evaldata)
    nyu = load_dataset("nyu", evaldata)
    assert len(kitti) == 3
    assert len(nyu) == 3
    assert kitti[0].max_depth == 80.0
    assert kitti[0].depth.max() > 20.0  # /256 -> tens of metres
    assert nyu[0].depth.max() < 10.0  # /1000 -> metres
    assert nyu[0].mask is not None
    assert not nyu[0].mask[0].any()  # Eigen crop


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "frames", "const", "ramp"),
    [("7scenes", 300, (0.281, 0.361), (0.213, 0.580)), ("hololens", 120, (0.327, 0.381), (0.329, 0.352))],
)
def test_trivial_baselines_reproduce_the_calibration(evaldata, name, frames, const, ramp) -> None:
    """The issue's calibration of the trivial baselines under this protocol (3 decimals)."""
    [seq] = load_dataset(name, evaldata, frames=frames, stride=2 if name == "7scenes" else 1)
    c = evaluate_sequence(constant_prediction(seq.depth.shape), seq.depth, seq.max_depth)
    r = evaluate_sequence(row_ramp_prediction(seq.depth.shape), seq.depth, seq.max_depth)
    assert (round(c.abs_rel, 3), round(c.delta1, 3)) == const
    assert (round(r.abs_rel, 3), round(r.delta1, 3)) == ramp


def test_a_jpeg_cut_short_is_damaged_not_a_half_grey_picture(tmp_path) -> None:
    """`cv2.imread` decodes a JPEG cut short (7-Scenes' colour frames are JPEGs) with its missing rows grey, saying
    so only on standard error: the evaluation scored that grey as the frame. Now it is a damaged file."""
    import cv2

    from vdepth_ros.eval.datasets import EvalDataError, read_rgb

    rng = np.random.default_rng(0)
    picture = cv2.GaussianBlur(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), (5, 5), 2)
    path = tmp_path / "frame-000010.color.jpg"
    cv2.imwrite(str(path), picture)
    assert read_rgb(path).shape == (96, 128, 3)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    assert cv2.imread(str(path)) is not None  # what the loader used to take
    with pytest.raises(EvalDataError, match="damaged"):
        read_rgb(path)


def test_a_damaged_single_frame_is_left_out_of_its_dataset(tmp_path) -> None:
    """KITTI/NYU frames are one-frame sequences: a damaged one stopped the loading of the whole dataset. Now it is
    left out and named, as a video's damaged frame is; none readable is still an error."""
    import json

    import cv2

    from vdepth_ros.eval.datasets import EvalDataError, load_kitti_demo

    folder = tmp_path / "data" / "kitti_demo"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = []
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
        cv2.imwrite(str(folder / f"{i}_d.png"), rng.integers(500, 4000, (12, 16), dtype=np.uint16))
        files.append({"rgb": f"data/kitti_demo/{i}.png", "depth": f"data/kitti_demo/{i}_d.png",
                      "cam_in": [10.0, 10.0, 8.0, 6.0], "depth_scale": 256.0})  # fmt: skip
    (folder / "test_annotations.json").write_text(json.dumps({"files": files}))
    (folder / "1.png").write_bytes((folder / "1.png").read_bytes()[:40])
    seqs = load_kitti_demo(tmp_path)
    assert [s.name for s in seqs] == ["kitti/0", "kitti/2"]
    assert len(seqs[0].skipped) == 1 and "1.png" in seqs[0].skipped[0] and not seqs[1].skipped
    for i in (0, 2):
        (folder / f"{i}_d.png").unlink()
    with pytest.raises(EvalDataError, match="kitti: none of its 3 frames can be read"):
        load_kitti_demo(tmp_path)


def test_an_8bit_depth_png_is_a_damaged_frame_not_a_traceback(tmp_path) -> None:
    """A depth file that decodes but is not 16-bit (overwritten by a viewer's export) raised a bare ValueError,
    a traceback out of vdepth-eval; now it is an `EvalDataError`, so its frame is left out and named."""
    import cv2

    from vdepth_ros.eval.datasets import EvalDataError

    cv2.imwrite(str(tmp_path / "d.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(EvalDataError, match="not a uint16 PNG"):
        read_depth_png(tmp_path / "d.png", 1000.0)
