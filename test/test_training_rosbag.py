"""The user's own RGB-D recording (a rosbag2 bag with colour + depth) -> training sequences, as the
docs' command runs it (`python -m vdepth_training.data.layouts rosbag BAG --out DIR --depth-topic T`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from vdepth_training.data.layouts import load_layout
from vdepth_training.data.layouts import main as layouts_main
from vdepth_training.data.sequence import SequenceReader, find_sequences

from vdepth_ros.errors import ConfigError
from vdepth_ros.offline.synth import default_intrinsics, synthetic_frames, write_image_bag

H, W = 24, 32


def _bag(path: Path, n: int, depth: list[np.ndarray], **kw: object) -> Path:
    write_image_bag(path, synthetic_frames(n, H, W), image_topic="/cam/color/image_raw",
                    camera_info_topic="/cam/color/camera_info", sparse_depth=depth,
                    sparse_depth_topic="/cam/aligned_depth_to_color/image_raw", **kw)  # fmt: skip
    return path


def _mm(n: int) -> list[np.ndarray]:
    out = []
    for i in range(n):
        d = np.full((H, W), 1000 + 100 * i, np.uint16)  # 1.0 m, 1.1 m, ... in millimetres
        d[:3] = 0  # no return: invalid
        out.append(d)
    return out


def test_rgbd_bag_in_millimetres_becomes_metric_sequences(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bag = _bag(tmp_path / "rec", 10, _mm(10))
    out = tmp_path / "mine"
    rc = layouts_main(["rosbag", str(bag), "--out", str(out), "--frames-per-sequence", "4",
                       "--depth-topic", "/cam/aligned_depth_to_color/image_raw"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert "3 sequences" in capsys.readouterr().out
    readers = [SequenceReader(p) for p in find_sequences(out)]
    assert [len(r) for r in readers] == [4, 4, 2]
    seq = readers[1].read()
    assert seq.target_kind == "depth" and seq.metric
    np.testing.assert_allclose(seq.target[0, 5:], 1.4, rtol=1e-6)  # frame 4: 1400 mm -> metres
    assert not seq.valid[:, :3].any() and seq.valid[:, 3:].all()  # zero depth is invalid
    assert seq.rgb.shape == (4, H, W, 3)
    fx, fy, cx, cy = default_intrinsics(W, H)
    np.testing.assert_allclose(seq.intrinsics[0], [[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    assert len(load_layout("sequence", out)) == 3  # what `layout: sequence, root: DIR` reads
    rc = layouts_main(["rosbag", str(bag), "--out", str(out), "--depth-topic", "/cam/aligned_depth_to_color/image_raw"])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err  # the first conversion is not replaced


def test_depth_of_another_size_is_one_error_naming_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bag = _bag(tmp_path / "rec", 4, [np.ones((H // 2, W // 2), np.float32)] * 4)
    rc = layouts_main(["rosbag", str(bag), "--out", str(tmp_path / "mine"),
                       "--depth-topic", "/cam/aligned_depth_to_color/image_raw"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "does not match the image" in err and "aligned_depth_to_color" in err
    assert not (tmp_path / "mine").exists()


def test_bag_mistakes_name_the_option(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bag = _bag(tmp_path / "rec", 3, _mm(3))
    assert layouts_main(["rosbag", str(bag), "--out", str(tmp_path / "a")]) == 2
    assert "--depth-topic" in capsys.readouterr().err
    assert layouts_main(["rosbag", str(bag), "--out", str(tmp_path / "a"), "--depth-topic", "/nope"]) == 2
    err = capsys.readouterr().err
    assert "/nope" in err and "/cam/aligned_depth_to_color/image_raw" in err  # lists what the bag has
    with pytest.raises(ConfigError, match="layout: sequence"):  # a bag named in a training config
        load_layout("rosbag", bag)


def test_frames_without_depth_split_the_recording_and_are_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    depth = [np.full((H, W), 2.0, np.float32) for _ in range(10)]
    depth[5][:] = 0.0  # the depth camera dropped a frame: no usable depth
    bag = _bag(tmp_path / "rec", 10, depth)
    rc = layouts_main(["rosbag", str(bag), "--out", str(tmp_path / "mine"),
                       "--depth-topic", "/cam/aligned_depth_to_color/image_raw"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert [len(SequenceReader(p)) for p in find_sequences(tmp_path / "mine")] == [5, 4]
    assert "1 of 10 frames had no usable depth" in caplog.text
