"""The user's own RGB-D recordings -> training sequences, as the docs' commands run them: a rosbag2
bag with colour + depth (`python -m vdepth_training.data.layouts rosbag BAG --out DIR --depth-topic T`)
or a folder of rgb/ + depth/ frames (`layout: rgbd`)."""

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
    # another aspect ratio: a depth camera's own stream (one registered at another resolution is used, sample by sample)
    bag = _bag(tmp_path / "rec", 4, [np.ones((H // 2, W), np.float32)] * 4)
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


def test_the_depth_cameras_other_depth_topics_do_not_hide_the_colour_topic(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A RealSense recording has the raw depth beside the aligned one: the colour topic was no longer
    "the only image topic besides the depth", and the conversion asked for --image-topic."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    from vdepth_ros.offline.bag_writer import new_bag_writer

    ts = get_typestore(Stores.ROS2_KILTED)
    src = _bag(tmp_path / "src", 4, _mm(4))
    bag = tmp_path / "rec"
    with Reader(src) as r, new_bag_writer(bag, "mcap", version=9) as w:
        conns = {c.id: w.add_connection(c.topic, c.msgtype, typestore=ts) for c in r.connections}
        raw_depth = w.add_connection("/cam/depth/image_rect_raw", "sensor_msgs/msg/Image", typestore=ts)
        for c, t, raw in r.messages():
            w.write(conns[c.id], t, raw)
            if c.topic == "/cam/aligned_depth_to_color/image_raw":
                w.write(raw_depth, t, raw)
    rc = layouts_main(["rosbag", str(bag), "--out", str(tmp_path / "mine"),
                       "--depth-topic", "/cam/aligned_depth_to_color/image_raw"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert [len(SequenceReader(p)) for p in find_sequences(tmp_path / "mine")] == [4]


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


def _rgbd_folder(root: Path, n: int, depth: list[np.ndarray], suffix: str = ".png") -> Path:
    import cv2

    for sub in ("rgb", "depth"):
        (root / "run1" / sub).mkdir(parents=True, exist_ok=True)
    for i, rgb in enumerate(synthetic_frames(n, H, W)):
        cv2.imwrite(str(root / "run1" / "rgb" / f"{i:06d}.jpg"), rgb[..., ::-1])
        if suffix == ".npy":
            np.save(root / "run1" / "depth" / f"{i:06d}.npy", depth[i])
        else:
            cv2.imwrite(str(root / "run1" / "depth" / f"{i:06d}{suffix}"), depth[i])
    return root


def test_rgbd_frame_folder_units_and_pairing_are_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A user's own frames (rgb/ + depth/, as RGB-D cameras' recorders export them) in a training config
    or through the converter: 16-bit depth needs its units, a file without its partner is named."""
    raw = _rgbd_folder(tmp_path / "raw", 4, _mm(4))
    with pytest.raises(ConfigError, match=r"depth_scale.*1000 for millimetres"):
        load_layout("rgbd", raw)  # integer depth: the unit is not guessed
    with pytest.raises(ConfigError, match="millimetres"):
        load_layout("rgbd", raw, depth_scale=1.0)  # 1000-1300 "m": the wrong unit
    (seq,) = load_layout("rgbd", raw, depth_scale=1000)
    clip = seq.read()
    np.testing.assert_allclose(clip.target[2, 5:], 1.2, rtol=1e-6)
    assert not clip.valid[:, :3].any() and clip.valid[:, 3:].all()
    out = tmp_path / "mine"
    assert layouts_main(["rgbd", str(raw), "--out", str(out), "--depth-scale", "1000"]) == 0
    assert [len(SequenceReader(p)) for p in find_sequences(out)] == [4]
    metres = _rgbd_folder(tmp_path / "m", 3, [np.full((H, W), 1.5, np.float32)] * 3, ".npy")
    assert load_layout("rgbd", metres)[0].read().target.max() == pytest.approx(1.5)  # floats are metres
    (raw / "run1" / "depth" / "000002.png").unlink()
    with pytest.raises(ConfigError, match=r"4 colour images in rgb/ and 3 depth files.*without depth \['000002'\]"):
        load_layout("rgbd", raw, depth_scale=1000)


def test_a_dropped_depth_frame_is_not_paired_with_its_neighbours(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The node's scale-source slop (0.1 s) gave a frame whose depth the camera dropped its
    neighbour's depth map (33 ms away at 30 fps): in a moving scene a wrong target. Training pairs
    are held to 20 ms (`--max-stamp-gap`), so the frame is left out and the recording split there."""
    depth: list[np.ndarray | None] = list(_mm(6))
    depth[3] = None
    bag = tmp_path / "rec"
    write_image_bag(bag, synthetic_frames(6, H, W), image_topic="/cam/color/image_raw", sparse_depth=depth,
                    camera_info_topic="/cam/color/camera_info", sparse_depth_topic="/cam/depth")  # fmt: skip
    args = ["rosbag", str(bag), "--out", str(tmp_path / "mine"), "--depth-topic", "/cam/depth"]
    assert layouts_main(args) == 0
    assert [len(SequenceReader(p)) for p in find_sequences(tmp_path / "mine")] == [3, 2]
    capsys.readouterr()
    assert (
        layouts_main([*args[:3], str(tmp_path / "loose"), *args[4:], "--max-stamp-gap", "0.1"]) == 0
    )  # the user's call
    assert [len(SequenceReader(p)) for p in find_sequences(tmp_path / "loose")] == [6]


def test_a_relative_data_root_not_found_names_the_folder_it_searched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`root: data/mine` is read from the current folder: a run started elsewhere (another terminal,
    a launcher) said only "no sequence sequences found under data/mine". Now it names the absolute
    folder it searched and that it does not exist."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_layout("sequence", "data/mine")
    assert str(tmp_path / "data" / "mine") in str(info.value)
    for layout in ("rgbd", "tartanair"):
        with pytest.raises(ConfigError, match=f"no {layout} sequences found under data/mine"):
            load_layout(layout, "data/mine")


def test_an_ir_cameras_16uc1_bag_is_read_as_the_node_reads_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """kinect2_bridge's IR (16UC1, 12-bit samples) with a registered depth: every frame was refused as a depth image
    on the colour input, no sequence written. `--image-encoding mono16` reads it as the node's image_encoding does
    (image_bit_depth auto: the mono8 bag's picture); a value the node refuses is refused in its words."""
    common = ["--depth-topic", "/cam/aligned_depth_to_color/image_raw", "--image-topic", "/cam/color/image_raw"]
    rgb = []
    for enc, reading in (("mono8", []), ("16UC1", ["--image-encoding", "mono16"])):
        bag = _bag(tmp_path / f"rec_{enc}", 3, _mm(3), encoding=enc)
        assert layouts_main(["rosbag", str(bag), "--out", str(tmp_path / enc), *common, *reading]) == 0
        rgb.append(SequenceReader(find_sequences(tmp_path / enc)[0]).read().rgb)
    np.testing.assert_array_equal(rgb[0], rgb[1])
    capsys.readouterr()
    bag = tmp_path / "rec_16UC1"
    assert layouts_main(["rosbag", str(bag), "--out", str(tmp_path / "x"), *common, "--image-encoding", "16UC1"]) == 2
    assert "--image-encoding '16UC1' is not one of auto" in capsys.readouterr().err  # (the flag typed, by its name)
