"""vdepth-flicker: the flow warping error of depth topics in bags (vdepth-bag's output, a camera's)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fakes import LuminanceEngine, rvl_encode, rvl_pack
from test_consistency import T, panning

from vdepth_ros.offline import flicker
from vdepth_ros.offline.bag import process_bag
from vdepth_ros.offline.bag_messages import open_reader
from vdepth_ros.offline.errors import MissingTopicError
from vdepth_ros.offline.synth import write_image_bag

START = 1_700_000_000_000_000_000


def _recording(path: Path, depth_scale: np.ndarray | None = None, **kw: object) -> Path:
    """Images of a panning camera with its depth on /sparse_depth (optionally flickering)."""
    rgb, depth = panning()
    if depth_scale is not None:
        depth = depth * depth_scale[:, None, None]
    write_image_bag(path, list(rgb), start_ns=START, sparse_depth=list(depth), sparse_depth_topic="/cam/depth", **kw)
    return path


def test_steady_and_flickering_depth_topics_are_told_apart(tmp_path: Path) -> None:
    steady = _recording(tmp_path / "steady")
    flick = np.where(np.arange(T) % 2 == 0, 1.0, 1.1).astype(np.float32)
    flickering = _recording(tmp_path / "flickering", depth_scale=flick)
    (a,) = flicker.measure_flicker([steady], "/image", ["/cam/depth"])
    (b,) = flicker.measure_flicker([flickering], "/image", ["/cam/depth"])
    assert (a.frames, a.pairs, a.unmatched, a.restarts) == (T, T - 1, 0, 0)
    assert a.mean < 0.005
    assert b.mean == pytest.approx(0.1 / 1.05, abs=0.006)


def test_vdepth_bag_output_read_together_with_its_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The usual use: `vdepth-flicker OUT IN` (the output bag has depth, the input the images)."""
    src = _recording(tmp_path / "in")
    params = {"scale_source": "range", "near": 0.5, "far": 5.0}
    process_bag(src, tmp_path / "out", params=params, engine=LuminanceEngine(height=48, width=64, frames=4, overlap=2))
    rc = flicker.main(
        [str(tmp_path / "out"), str(src), "--depth-topic", "/depth", "--depth-topic", "/cam/depth", "--json"]
    )
    assert rc == 0
    rows = {r["topic"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["/depth"]["pairs"] == T - 1 and rows["/cam/depth"]["pairs"] == T - 1
    assert all(np.isfinite(r["flow_warping_error"]) for r in rows.values())
    assert flicker.main([str(tmp_path / "out"), str(src), "--depth-topic", "/depth"]) == 0
    assert "/depth: 0." in capsys.readouterr().out


def test_one_bag_named_twice_is_read_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`vdepth-flicker B B` (a bag with both the images and the depth, named as output and input):
    every message was read twice, each depth frame paired with its own copy (180 pairs, 90 restarts
    for 90 frames)."""
    src = _recording(tmp_path / "both")
    (once,) = flicker.measure_flicker([src], "/image", ["/cam/depth"])
    with caplog.at_level("WARNING"):
        (twice,) = flicker.measure_flicker([src, tmp_path / "." / "both"], "/image", ["/cam/depth"])
    assert (twice.frames, twice.pairs, twice.restarts) == (once.frames, once.pairs, once.restarts) == (T, T - 1, 0)
    assert twice.mean == once.mean
    assert "given more than once" in caplog.text


def test_a_gap_restarts_the_chain(tmp_path: Path) -> None:
    stamps = [START + k * 33_000_000 for k in range(T)]
    stamps[4:] = [s + 5_000_000_000 for s in stamps[4:]]  # 5 s gap after frame 3
    (r,) = flicker.measure_flicker([_recording(tmp_path / "gap", stamps_ns=stamps)], "/image", ["/cam/depth"])
    assert (r.frames, r.pairs, r.restarts) == (T, T - 2, 1)
    # the node's outputs carry their image's stamp: they pair even with zero slop
    (r2,) = flicker.measure_flicker([_recording(tmp_path / "exact")], "/image", ["/cam/depth"], slop=0.0)
    assert (r2.frames, r2.unmatched) == (T, 0)


def test_cli_errors_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _recording(tmp_path / "in")
    assert flicker.main([str(src), "--depth-topic", "/nope"]) == 2
    err = capsys.readouterr().err
    assert "'/nope' not found" in err and "/cam/depth [sensor_msgs/msg/Image]" in err
    assert flicker.main([str(src), "--depth-topic", "/image"]) == 2
    assert "both the colour and a depth topic" in capsys.readouterr().err
    other = tmp_path / "other"
    write_image_bag(other, list(panning()[0]), start_ns=START, image_topic="/cam/color", camera_info_topic=None)
    assert flicker.main([str(src), str(other), "--depth-topic", "/cam/color"]) == 2  # colour read as depth
    assert "'/cam/color': encoding 'rgb8' is not a depth image" in capsys.readouterr().err
    assert flicker.main([str(tmp_path / "missing"), "--depth-topic", "/cam/depth"]) == 2
    assert "does not exist" in capsys.readouterr().err
    third = tmp_path / "third"  # a second depth topic, so the first can be (wrongly) named as colour
    rgb, depth = panning()
    write_image_bag(
        third, list(rgb), start_ns=START, image_topic="/img2", sparse_depth=list(depth), sparse_depth_topic="/d2"
    )
    assert flicker.main([str(src), str(third), "--image-topic", "/cam/depth", "--depth-topic", "/d2"]) == 2
    assert "'/cam/depth': encoding 32FC1 is a depth image, not a colour image" in capsys.readouterr().err


def test_with_camera_poses_the_papers_tae_is_reported_too(tmp_path: Path) -> None:
    """`--pose-topic`: TAE on the bag's own poses equals `consistency.temporal_alignment_error`."""
    pytest.importorskip("embreex")
    from vdepth_training.data.synthetic import render_clip

    from vdepth_ros.consistency import temporal_alignment_error

    clip = render_clip(990001, frames=10, height=96, width=128, kind="room", style="rich")  # static room
    gt = np.where(np.isfinite(clip.depth), clip.depth, 0.0).astype(np.float32)
    flick = gt * np.where(np.arange(len(gt)) % 2 == 0, 1.0, 1.1).astype(np.float32)[:, None, None]
    K = clip.intrinsics
    for name, depth in (("gt", gt), ("flicker", flick)):
        path = tmp_path / name
        write_image_bag(
            path,
            list(clip.rgb),
            start_ns=START,
            intrinsics=(K[0, 0], K[1, 1], K[0, 2], K[1, 2]),
            sparse_depth=list(depth),
            sparse_depth_topic="/cam/depth",
            camera_poses=list(clip.poses),
        )
        (r,) = flicker.measure_flicker(
            [path], "/image", ["/cam/depth"], pose_topic="/camera_pose", camera_info_topic="/camera_info"
        )
        d = r.to_dict()
        assert d["tae_pairs"] == len(gt) - 1
        assert d["tae_x100"] == pytest.approx(temporal_alignment_error(depth, K, clip.poses), rel=1e-6)
        if name == "gt":
            assert d["tae_x100"] < 2.0
        else:
            assert d["tae_x100"] > 5.0  # 10 % flicker reads as ~9.5
    # without a camera_info to find, the topic gets a note instead of a TAE
    (r,) = flicker.measure_flicker([tmp_path / "gt"], "/image", ["/cam/depth"], pose_topic="/camera_pose")
    assert r.to_dict()["tae_x100"] is None and "no camera_info for /cam/depth" in r.tae_note
    with pytest.raises(flicker.MissingTopicError, match="pose topic '/odom'"):
        flicker.measure_flicker([tmp_path / "gt"], "/image", ["/cam/depth"], pose_topic="/odom")


@pytest.mark.parametrize("width", ["0", "8"])
def test_a_too_narrow_flow_width_is_a_clear_error(
    tmp_path: Path, width: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--max-width 0 died in cv2.resize, 8 in OpenCV's DIS flow (tracebacks); now one error line."""
    bag = _recording(tmp_path / "rec")
    assert flicker.main([str(bag), "--depth-topic", "/cam/depth", "--max-width", width]) == 2
    err = capsys.readouterr().err
    assert "--max-width must be at least 16" in err and "Traceback" not in err


def test_the_robots_own_topic_names_are_found_without_options(tmp_path: Path) -> None:
    """A robot's recording: a compressed colour camera and a depth camera's 16UC1 topic, none named
    /image or /depth. `vdepth-bag` refused the recording (two image topics, the depth camera's counted
    as a candidate), and `vdepth-flicker OUT IN`, the documented next step, refused its output read
    with the recording (no /image; the depth is /front/depth after --namespace front)."""
    import subprocess
    import sys

    rgb, depth = panning()
    rec = tmp_path / "rec"
    write_image_bag(rec, list(rgb), start_ns=START, encoding="jpeg", image_topic="/cam/image_raw/compressed",
                    camera_info_topic="/cam/camera_info", sparse_depth=[np.uint16(d * 1000) for d in depth],
                    sparse_depth_topic="/cam/depth/image_raw")  # fmt: skip
    engine = LuminanceEngine(height=48, width=64, frames=4, overlap=2)
    params = {"scale_source": "range", "near": 0.5, "far": 5.0}
    s = process_bag(rec, tmp_path / "out", params=params, engine=engine, namespace="front")
    assert s.frames_out == T and any("'/cam/image_raw/compressed'" in n for n in s.notes), s.notes
    script = Path(sys.executable).parent / "vdepth-flicker"
    proc = subprocess.run(
        [str(script), str(tmp_path / "out"), str(rec), "--json"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["topic"] == "/front/depth" and row["pairs"] == T - 1
    assert "/cam/image_raw/compressed" in proc.stderr and "/front/depth" in proc.stderr  # the choices are said
    # the recording alone: its only depth topic is the depth camera's
    proc = subprocess.run([str(script), str(rec), "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [r["topic"] for r in json.loads(proc.stdout)] == ["/cam/depth/image_raw"]


def test_several_depth_outputs_are_an_error_naming_them_and_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _recording(tmp_path / "in")
    params = {"scale_source": "range", "near": 0.5, "far": 5.0}
    for ns in ("front", "rear"):
        engine = LuminanceEngine(height=48, width=64, frames=4, overlap=2)
        process_bag(src, tmp_path / ns, params=params, engine=engine, namespace=ns, image_topic="/image")
    assert flicker.main([str(tmp_path / "front"), str(tmp_path / "rear"), str(src)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "/front/depth, /rear/depth" in line and "--depth-topic" in line, line


def test_naming_one_cameras_topic_finds_its_other_topic_beside_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two cameras' colour and depth in the bags (`vdepth-bag --namespace front`, then `rear`): `--image-topic
    /rear/image_raw` was an error listing both depth topics, and `--depth-topic /front/depth` one listing both
    colour topics; each camera's other topic is the one in its namespace."""
    rgb, depth = panning()
    for camera in ("front", "rear"):
        write_image_bag(tmp_path / camera, list(rgb), start_ns=START, image_topic=f"/{camera}/image_raw",
                        sparse_depth=list(depth), sparse_depth_topic=f"/{camera}/depth")  # fmt: skip
    caplog.set_level("INFO", logger=flicker.log.name)
    reader = open_reader([tmp_path / "front", tmp_path / "rear"], "kilted")
    try:
        assert flicker.default_topics(reader, "/rear/image_raw", None) == ("/rear/image_raw", ["/rear/depth"])
        assert flicker.default_topics(reader, None, ["/front/depth"]) == ("/front/image_raw", ["/front/depth"])
        assert "their only depth image (of /rear/image_raw's camera) topic /rear/depth" in caplog.text  # not "only"
        with pytest.raises(MissingTopicError, match="/front/image_raw, /rear/image_raw"):
            flicker.default_topics(reader, None, None)  # (no camera named: which one is the user's to say)
    finally:
        reader.close()


def _compressed_depth_recording(path: Path, depth_size: dict[int, tuple[int, int]]) -> Path:
    """Colour images of a panning camera with its depth as a depth camera's compressedDepth rvl stream; frame `k`
    of `depth_size` claims that `(width, height)` instead: a corrupt header, or a bag of a far larger camera (a
    run of zeros of any length is a few bytes of RVL)."""
    import struct

    from rosbags.typesys import get_typestore

    from vdepth_ros.offline.bag_types import COMPRESSED, TYPESTORES
    from vdepth_ros.offline.bag_writer import new_bag_writer
    from vdepth_ros.offline.synth import _image_raw

    ts = get_typestore(TYPESTORES["kilted"])
    rgb, depth = panning()
    with new_bag_writer(path, "mcap", version=9) as w:
        image = w.add_connection("/image", "sensor_msgs/msg/Image", typestore=ts)
        depth_conn = w.add_connection("/cam/depth/compressedDepth", COMPRESSED, typestore=ts)
        for k in range(T):
            t = START + k * 33_000_000
            stamp = ts.types["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9)
            header = ts.types["std_msgs/msg/Header"](stamp=stamp, frame_id="cam")
            w.write(image, t, _image_raw(ts, rgb[k], "rgb8", header, k))
            mm = np.round(depth[k] * 1000).astype(np.uint16)
            width, height = depth_size.get(k, (mm.shape[1], mm.shape[0]))
            coded = rvl_encode(mm) if (width, height) == mm.shape[::-1] else rvl_pack([width * height, 0])
            data = struct.pack("<iff", 0, 0.0, 0.0) + struct.pack("<II", width, height) + coded
            msg = ts.types[COMPRESSED](
                header=header, format="16UC1; compressedDepth rvl", data=np.frombuffer(data, np.uint8)
            )
            w.write(depth_conn, t, ts.serialize_cdr(msg, COMPRESSED))
    return path


def test_a_huge_or_corrupt_depth_message_is_refused_before_decoding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A depth camera's compressedDepth in a bag, one message claiming 17 MP (a corrupt header; a few bytes of RVL or
    a 200 KB PNG of zeros can claim 100 MP and more, ~1 GB decoded, and 32 of them are held waiting for their
    colour image): vdepth-flicker decoded whatever a message claimed (no max_input_pixels as the node and vdepth-bag
    have) and counted the frame as measured. Now it is refused before decoding and skipped, naming the size and the
    option, counted; a colour image above the limit is skipped with one warning, as the node drops it."""
    bag = _compressed_depth_recording(tmp_path / "rec", {3: (4200, 4100)})
    args = [str(bag), "--image-topic", "/image", "--depth-topic", "/cam/depth/compressedDepth"]
    with caplog.at_level("WARNING"):
        assert flicker.main(args) == 0
    out = capsys.readouterr().out
    assert f"{T - 2} pairs of {T - 1} paired frames" in out and "skipped 1 depth message(s): a depth image" in out
    assert (
        "a depth image 4200x4100 (17.2 MP) is larger than" in caplog.text
        and "/cam/depth/compressedDepth" in caplog.text
    )
    assert "raise --max-input-pixels" in caplog.text
    caplog.clear()
    (r,) = flicker.measure_flicker([bag], "/image", ["/cam/depth/compressedDepth"], max_input_pixels=0)  # no limit
    assert r.frames == T  # (read; the pairs with the all-zero frame, no depth, measure nothing)
    assert flicker.main([*args, "--max-input-pixels", str(4200 * 4100)]) == 0
    capsys.readouterr()
    # the colour images over the limit: skipped (their depth unmatched), told once
    rgb, depth = panning()
    small = tmp_path / "small"  # depth at half the colour's size, within the limit
    write_image_bag(small, list(rgb), start_ns=START, sparse_depth=list(depth[:, ::2, ::2]), sparse_depth_topic="/d")
    with caplog.at_level("WARNING"):
        (r,) = flicker.measure_flicker([small], "/image", ["/d"], max_input_pixels=depth[0, ::2, ::2].size)
    assert (r.frames, r.unmatched) == (0, T)
    assert caplog.text.count("an image 128x96 (0.0 MP) is larger than --max-input-pixels") == 1


def test_frames_logged_a_little_out_of_stamp_order_are_measured_in_order(tmp_path: Path) -> None:
    """A publisher's threads (or a recorder's queues) logged a frame now and then after the next one: each such
    swap restarted the chain ("N restarts", two pairs lost, no cause given), though the stamps say the order.
    Now the chain holds a few frames to measure them in stamp order: the same pairs as the bag in order."""
    rgb, depth = panning()
    period = 33_333_333
    order = list(range(T))
    for k in range(3, T - 1, 7):
        order[k], order[k + 1] = order[k + 1], order[k]
    swapped = tmp_path / "swapped"
    write_image_bag(
        swapped,
        [rgb[k] for k in order],
        sparse_depth=[depth[k] for k in order],
        sparse_depth_topic="/cam/depth",
        stamps_ns=[START + i * period + 1_000_000 for i in range(T)],  # logged in arrival order
        header_stamps_ns=[START + k * period for k in order],  # stamped at capture
    )
    (got,) = flicker.measure_flicker([swapped], "/image", ["/cam/depth"])
    (want,) = flicker.measure_flicker([_recording(tmp_path / "in_order")], "/image", ["/cam/depth"])
    assert order != list(range(T))
    assert (got.frames, got.pairs, got.restarts) == (T, T - 1, 0)
    assert got.mean == pytest.approx(want.mean, rel=1e-6)


def test_tae_keeps_one_camera_per_change_not_every_camera_info(tmp_path: Path) -> None:
    """`--pose-topic`'s first pass kept every camera_info message of the recording (1.9 KB each: 200 MB an hour of
    a 30 Hz camera, `benchmarks/flicker_memory.py`); now one camera per change of the camera, each stamp still
    answered with the latest camera_info's camera."""
    from vdepth_ros.camera_info import camera_from_info
    from vdepth_ros.offline.bag_messages import open_reader
    from vdepth_ros.offline.skipped import SkippedMessages

    rgb, depth = panning()
    write_image_bag(tmp_path / "rec", list(rgb), start_ns=START, sparse_depth=list(depth),
                    sparse_depth_topic="/cam/depth", camera_poses=[np.eye(4)] * len(rgb))  # fmt: skip
    path = tmp_path / "rec"
    reader = open_reader([path], "kilted")
    try:
        topics = {c.topic: c.msgtype for c in reader.connections}
        geometry, _ = flicker._read_geometry(
            reader, topics, "/camera_pose", "/camera_info", ["/cam/depth"], path, 10_000_000, SkippedMessages()
        )
        [info_conn] = [c for c in reader.connections if c.topic == "/camera_info"]
        first = next(reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages([info_conn]))
    finally:
        reader.close()
    g = geometry["/cam/depth"]
    assert len(g.cameras) == 1 and g.cameras[0] == camera_from_info(first)
    for k in range(len(rgb)):  # (the poses are read with the frames: `test_pose_memory_is_bounded`)
        g.poses.add(START + round(k * 1e9 / 30), np.eye(4))
    assert g.at(START + 5 * 33_333_333, depth.shape[1:]) is not None
    assert g.at(START - 10**9, depth.shape[1:]) is None  # before the first camera_info: none


def test_a_cameras_base_topic_reads_its_only_image_transport(tmp_path: Path) -> None:
    """`--image-topic /cam/image_raw` on a recording of only `/cam/image_raw/compressed` was "not found"; now its
    transport is read, as vdepth-bag reads it."""
    rgb, depth = panning()
    write_image_bag(tmp_path / "rec", list(rgb), start_ns=START, encoding="jpeg",
                    image_topic="/cam/image_raw/compressed", sparse_depth=list(depth),
                    sparse_depth_topic="/cam/depth")  # fmt: skip
    (r,) = flicker.measure_flicker([tmp_path / "rec"], "/cam/image_raw", ["/cam/depth"])
    assert r.to_dict()["pairs"] == len(rgb) - 1


def _odometry_bag(path: Path, count: int, rate: float = 1000.0) -> Path:
    """`count` PoseStamped on /camera_pose at `rate` Hz from START (the camera still): a robot's odometry."""
    from rosbags.typesys import get_typestore

    from vdepth_ros.offline.bag_types import POSE_STAMPED, TYPESTORES
    from vdepth_ros.offline.bag_writer import new_bag_writer

    ts = get_typestore(TYPESTORES["kilted"])
    T = ts.types
    with new_bag_writer(path, "mcap", version=9) as writer:
        conn = writer.add_connection("/camera_pose", POSE_STAMPED, typestore=ts)
        pose = T["geometry_msgs/msg/Pose"](
            position=T["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
            orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
        )
        for k in range(count):
            t = START + round(k * 1e9 / rate)
            stamp = T["builtin_interfaces/msg/Time"](sec=t // 1_000_000_000, nanosec=t % 1_000_000_000)
            msg = T[POSE_STAMPED](header=T["std_msgs/msg/Header"](stamp=stamp, frame_id="odom"), pose=pose)
            writer.write(conn, t, ts.serialize_cdr(msg, POSE_STAMPED))
    return path


def test_pose_memory_is_bounded(tmp_path: Path) -> None:
    """`--pose-topic` read every pose of the recording into memory before the frames (~270 B a pose: 100 MB for
    100 Hz odometry over 4 hours). The poses are read with the frames now, the latest `POSE_WINDOW` kept: the peak
    is the same for 4 and 40 s of 1 kHz odometry, and the TAE too."""
    import tracemalloc

    rgb, depth = panning()
    write_image_bag(tmp_path / "rec", list(rgb), start_ns=START, sparse_depth=list(depth), sparse_depth_topic="/d")
    peaks, taes = [], []
    for count in (4_000, 40_000):
        odometry = _odometry_bag(tmp_path / f"odom_{count}", count)
        tracemalloc.start()
        try:
            (r,) = flicker.measure_flicker([tmp_path / "rec", odometry], "/image", ["/d"], pose_topic="/camera_pose")
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        taes.append(r.to_dict()["tae_x100"])
        assert r.to_dict()["tae_pairs"] == T - 1, r.to_dict()
    assert taes[0] == taes[1], taes
    assert peaks[1] - peaks[0] < 2_000_000, peaks  # 36000 more poses: ~9.7 MB when each was kept
