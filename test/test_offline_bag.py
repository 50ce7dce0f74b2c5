"""vdepth-bag end to end: tiny bags in both storages -> pipeline -> a new bag read back with rosbags."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes import AffineCorruptingEngine, LuminanceEngine
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Reader

from vdepth_ros.config import PipelineConfig
from vdepth_ros.encodings import camera_from_info, image_array_from_fields, pointcloud2_fields_array
from vdepth_ros.errors import VdepthError
from vdepth_ros.offline import bag as bagcli
from vdepth_ros.offline.atomic import STAGING_PREFIX
from vdepth_ros.offline.bag import process_bag
from vdepth_ros.offline.errors import MissingTopicError, OfflineError
from vdepth_ros.offline.flicker import main as flicker_main
from vdepth_ros.offline.synth import default_intrinsics, synthetic_frames, write_image_bag
from vdepth_ros.pipeline import DepthPipeline, FrameInput

H, W, N = 36, 52, 14  # input size differs from the engine's 48x64: the pipeline resizes
PARAMS: dict[str, Any] = {"scale_source": "range", "near": 0.5, "far": 5.0, "max_depth": 3.0, "cloud_stride": 2}
FRAME_ID = "cam_optical"
START = 1_700_000_000_000_000_000


class HoleEngine(LuminanceEngine):
    """Luminance disparity with a band of invalid (NaN) disparity, so clouds must carry NaNs."""

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = super()._run(batch)
        out[..., :5, :] = np.nan
        return out


def make_engine() -> LuminanceEngine:
    return HoleEngine(height=48, width=64, frames=8, overlap=3)


def fitting_depth(n: int) -> list[np.ndarray]:
    """`n` frames' depth maps (metres) that the luminance "model" agrees with, up to an affine."""
    lum = [rgb @ np.array([0.299, 0.587, 0.114]) / 255.0 for rgb in synthetic_frames(n, H, W)]
    return [(1.0 / (0.6 * (0.1 + x) + 0.05)).astype(np.float32) for x in lum]


def make_bag(path: Path, storage: str = "mcap", n: int = N, **kw: Any) -> Path:
    kw.setdefault("frame_id", FRAME_ID)
    write_image_bag(path, synthetic_frames(n, H, W), storage=storage, start_ns=START, **kw)
    return path


def read_bag(path: Path) -> dict[str, list[tuple[int, Any]]]:
    out: dict[str, list[tuple[int, Any]]] = {}
    with AnyReader([path]) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, reader.deserialize(raw, conn.msgtype)))
    return out


def digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def img(msg: Any) -> np.ndarray:
    return image_array_from_fields(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)


def cloud(msg: Any) -> np.ndarray:
    fields = [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
    return pointcloud2_fields_array(fields, msg.point_step, msg.height, msg.width, msg.row_step, msg.data)


def stamp(msg: Any) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("mode", ["causal", "offline"])
def test_end_to_end(tmp_path: Path, storage: str, mode: str) -> None:
    src = make_bag(tmp_path / "in", storage)
    before = digest(src)
    summary = process_bag(src, tmp_path / "out", params=PARAMS, engine=make_engine(), mode=mode, storage=storage)
    assert digest(src) == before  # input untouched
    assert summary.frames_in == N and summary.dropped == 0
    assert summary.frames_out == N  # every frame published once on the main topics
    assert summary.scale_sources == {"range": N}

    with Reader(tmp_path / "out") as reader:  # metadata.yaml is valid and matches the storage
        assert reader.message_count == 4 * N
        assert {c.topic: c.msgcount for c in reader.connections} == {
            "/depth": N,
            "/disparity": N,
            "/points": N,
            "/depth/camera_info": N,
        }
    assert (tmp_path / "out" / f"out_0.{'mcap' if storage == 'mcap' else 'db3'}").is_file()

    msgs = read_bag(tmp_path / "out")
    in_times = [START + round(i * 1e9 / 30) for i in range(N)]
    for topic in ("/depth", "/disparity", "/points", "/depth/camera_info"):
        times = [t for t, _ in msgs[topic]]
        assert times == in_times, topic  # logged at the input's receive time, in order
        assert [stamp(m) for _, m in msgs[topic]] == in_times  # header stamp copied
        assert {m.header.frame_id for _, m in msgs[topic]} == {FRAME_ID}
    for (_, d), (_, disp), (_, pc), (_, ci) in zip(
        msgs["/depth"], msgs["/disparity"], msgs["/points"], msgs["/depth/camera_info"], strict=True
    ):
        assert d.encoding == "32FC1" and disp.encoding == "32FC1"
        assert (d.height, d.width) == (H, W) == (disp.height, disp.width)  # registered to the input image
        depth = img(d)
        finite = depth[np.isfinite(depth)]
        assert finite.size and finite.min() >= 0.05 and finite.max() <= 3.0 + 1e-6  # min_depth, max_depth
        # working rows 0-4 are NaN; input row r samples working rows around 1.33 r + 0.17: rows 0-3 touch them
        assert np.isnan(depth[:4]).all() and not np.isnan(depth[4:]).any()  # invalid disparity -> NaN depth
        assert not (depth == -np.inf).any() and (depth[4:] == np.inf).any()  # beyond max_depth: +Inf (REP 118)
        assert (ci.width, ci.height) == (W, H)
        fx, fy, cx, cy = default_intrinsics(W, H)
        cam = camera_from_info(ci)
        assert cam is not None and (cam.fx, cam.fy, cam.cx, cam.cy) == pytest.approx((fx, fy, cx, cy))  # the input's
        assert (pc.height, pc.width) == ((H + 1) // 2, (W + 1) // 2) and not pc.is_dense  # organized, stride 2
        assert [f.name for f in pc.fields][:3] == ["x", "y", "z"]
        xyz = cloud(pc)
        ok = np.isfinite(depth[::2, ::2])
        np.testing.assert_array_equal(np.isnan(xyz[..., 2]), ~ok)  # NaN wherever the depth is not finite
        np.testing.assert_allclose(xyz[..., 2][ok], depth[::2, ::2][ok], rtol=1e-6)


def _pipeline_frames(n: int = N) -> list[FrameInput]:
    from vdepth_ros.stream.cloud import CameraModel

    fx, fy, cx, cy = default_intrinsics(W, H)
    cam = CameraModel(fx=fx, fy=fy, cx=cx, cy=cy, width=W, height=H)
    return [
        FrameInput(rgb=rgb, stamp_ns=START + round(i * 1e9 / 30), camera=cam)
        for i, rgb in enumerate(synthetic_frames(n, H, W))
    ]


@pytest.mark.parametrize("publish", ["provisional", "final", "both"])
def test_causal_output_equals_pipeline_push_flush(tmp_path: Path, publish: str) -> None:
    params = {**PARAMS, "publish": publish}
    make_bag(tmp_path / "in", "mcap", n=23)
    process_bag(tmp_path / "in", tmp_path / "out", params=params, engine=make_engine(), mode="causal")
    msgs = read_bag(tmp_path / "out")

    pipe = DepthPipeline(PipelineConfig.from_params(params)[0], engine=make_engine())
    expected = []
    for f in _pipeline_frames(23):
        expected += pipe.push(f)
    expected += pipe.flush()
    main = [f for f in expected if publish != "both" or f.status == "final"]
    prov = [f for f in expected if publish == "both" and f.status == "provisional"]
    assert main
    for prefix, frames in (("", main), ("/provisional", prov)):
        got = msgs.get(f"{prefix}/depth", [])
        assert len(got) == len(frames)
        for (_, d), (_, disp), (_, pc), f in zip(
            got, msgs.get(f"{prefix}/disparity", []), msgs.get(f"{prefix}/points", []), frames, strict=True
        ):
            assert stamp(d) == f.stamp_ns
            np.testing.assert_array_equal(img(d), f.depth)  # bit for bit, NaNs in the same places
            np.testing.assert_array_equal(img(disp), f.disparity)
            np.testing.assert_array_equal(cloud(pc), f.points)


@pytest.mark.parametrize("publish", ["provisional", "final"])
def test_causal_mode_makes_the_windows_the_live_node_makes_when_the_camera_pauses(tmp_path: Path, publish: str) -> None:
    """The live node runs the frames it holds in a window when the camera pauses (`pause_flush`, auto:
    4 frame periods) and goes on with the same stream; so does the causal bag run, from the stamps:
    a 0.5 s pause after frame 11 (the stream goes on) and a 2 s gap after frame 19 (more than
    max_gap: the held frames' window, then the stream restarts). Bit for bit what the pipeline gives
    for those steps."""
    params = {**PARAMS, "publish": publish, "max_gap": 1.0}
    step = round(1e9 / 30)
    stamps = [START + i * step + (500_000_000 if i > 11 else 0) + (2_000_000_000 if i > 19 else 0) for i in range(26)]
    write_image_bag(tmp_path / "in", synthetic_frames(26, H, W), start_ns=START, frame_id=FRAME_ID, stamps_ns=stamps)
    engine = lambda: AffineCorruptingEngine(height=48, width=64, frames=8, overlap=3, seed=5)  # noqa: E731
    process_bag(tmp_path / "in", tmp_path / "out", params=params, engine=engine(), mode="causal")
    got = read_bag(tmp_path / "out")["/depth"]

    pipe = DepthPipeline(PipelineConfig.from_params(params)[0], engine=engine())  # each window its own affine
    expected = []
    for i, f in enumerate(_pipeline_frames(26)):
        if i == 12:
            expected += pipe.early_window()  # the pause: the stream goes on
        if i == 20:
            expected += pipe.early_window() + pipe.flush()  # the gap: held frames first, then a new stream
        expected += pipe.push(FrameInput(rgb=f.rgb, stamp_ns=stamps[i], camera=f.camera))
    expected += pipe.flush()
    assert pipe.stats.windows == 5 and len(got) == len(expected) == 26  # two of them early
    for (_, d), f in zip(got, expected, strict=True):
        assert stamp(d) == f.stamp_ns
        np.testing.assert_array_equal(img(d), f.depth)


def test_inputs_compressed_bgr_mono_and_humble(tmp_path: Path) -> None:
    for i, (enc, ts) in enumerate([("jpeg", "kilted"), ("bgr8", "humble"), ("mono8", "jazzy"), ("rgba8", "kilted")]):
        src = make_bag(tmp_path / f"in{i}", "sqlite3", n=5, encoding=enc, typestore=ts)
        s = process_bag(src, tmp_path / f"out{i}", params=PARAMS, engine=make_engine(), mode="offline", typestore=ts)
        assert s.frames_out == 5 and s.dropped == 0, enc


def test_bgr_equals_rgb_input(tmp_path: Path) -> None:
    outs = []
    for enc in ("rgb8", "bgr8"):
        make_bag(tmp_path / f"in_{enc}", n=6, encoding=enc)
        process_bag(
            tmp_path / f"in_{enc}", tmp_path / f"out_{enc}", params=PARAMS, engine=make_engine(), mode="offline"
        )
        outs.append([img(m) for _, m in read_bag(tmp_path / f"out_{enc}")["/depth"]])
    for a, b in zip(*outs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_bag_of_two_sessions_reads_each_with_its_own_bit_depth(tmp_path: Path) -> None:
    """A bag recorded from a 16-bit camera, then (its driver restarted 5 s later) in a 12-bit mode: the second
    session was read with the first one's 16 bits (auto only raised them), nearly black. vdepth-bag finds the bit
    depth anew where the node would (its stream restart rule), so its depth is the mono8 bag's throughout; its
    flicker measurement reads the images so too (vdepth-flicker's rule is the same: equal to the mono8 bag's)."""
    n = 12
    stamps = [START + round(i * 1e9 / 30) + (5 * 10**9 if i >= n // 2 else 0) for i in range(n)]
    outs, notes = [], []
    for enc in ("mono8", "mono16"):
        bits = [16] * (n // 2) + [12] * (n // 2) if enc == "mono16" else None
        make_bag(tmp_path / f"in_{enc}", n=n, encoding=enc, stamps_ns=stamps, sample_bits=bits)
        summary = process_bag(
            tmp_path / f"in_{enc}", tmp_path / f"out_{enc}", params=PARAMS, engine=make_engine(), flicker=True
        )
        outs.append([img(m) for _, m in read_bag(tmp_path / f"out_{enc}")["/depth"]])
        notes.append([note for note in summary.notes if note.startswith("flicker")])
    assert len(outs[0]) == len(outs[1]) == n
    for a, b in zip(*outs, strict=True):
        np.testing.assert_array_equal(a, b)
    assert notes[0] == notes[1] and "pairs" in notes[0][0], notes


def test_a_12_bit_mono16_bag_gives_the_depth_of_its_picture(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A bag of a 12-bit camera's mono16 (values 0-4095) gave the depth of an almost black picture;
    vdepth-bag reads it by the node's image_bit_depth rule (auto), so its depth is the mono8 bag's. So does a bag of
    an IR camera's 16UC1 (kinect2_bridge's image_ir: every frame was refused as depth) with the params file's
    `image_encoding: mono16`, as the node reads it. vdepth-flicker, which reads them by its flags, names its flags
    in the fix and in a refusal (it named "the image_encoding parameter", which it has none of)."""
    outs = []
    for enc in ("mono8", "mono16", "16UC1"):
        make_bag(tmp_path / f"in_{enc}", n=6, encoding=enc)
        params = {**PARAMS, "image_encoding": "mono16"} if enc == "16UC1" else PARAMS
        summary = process_bag(
            tmp_path / f"in_{enc}",
            tmp_path / f"out_{enc}",
            params=params,
            engine=make_engine(),
            mode="offline",
            flicker=enc == "16UC1",  # its input's images read by image_encoding there too (all were skipped)
        )
        outs.append([img(m) for _, m in read_bag(tmp_path / f"out_{enc}")["/depth"]])
    assert any(re.match(r"flicker of /depth .* over 5 pairs$", note) for note in summary.notes), summary.notes
    # vdepth-flicker on its own: the same reading by --image-encoding, refused in the node's words where wrong
    bags = [str(tmp_path / "out_16UC1"), str(tmp_path / "in_16UC1"), "--depth-topic", "/depth", "--json"]
    assert flicker_main([*bags, "--image-encoding", "mono16"]) == 0
    capsys.readouterr()
    assert flicker_main([*bags, "--image-encoding", "16UC1"]) == 2
    assert "error: --image-encoding '16UC1' is not one of auto" in capsys.readouterr().err
    assert flicker_main([*bags, "--image-bit-depth", "4"]) == 2
    assert "error: --image-bit-depth 4: a 16-bit image holds 8 to 16" in capsys.readouterr().err
    assert flicker_main(bags) == 2  # its 16UC1 images refused as depth, the fix in its flags
    err = capsys.readouterr().err
    assert "read as such with --image-encoding mono16" in err and "parameter" not in err, err
    assert len(outs[0]) == len(outs[1]) == len(outs[2]) == 6
    for a, b, c in zip(*outs, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_a_bag_whose_only_camera_is_an_ir_cameras_16uc1_is_found_with_image_encoding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """kinect2_bridge's IR alone (16UC1 on /kinect2/sd/image_ir): with the params file's `image_encoding: mono16` the
    run still said "image topic '/image' not found" (its only image topic counted as depth), and without it named
    only --image-topic, behind which the 16UC1 refusal came next. Now the topic the run reads as a camera is found
    (vdepth-flicker's too, by --image-encoding), and without image_encoding the error names both fixes at once."""
    ir = make_bag(tmp_path / "ir", n=4, encoding="16UC1", image_topic="/kinect2/sd/image_ir", camera_info_topic=None)
    with pytest.raises(MissingTopicError, match="read as a camera with image_encoding: mono16 in the --params file"):
        process_bag(ir, tmp_path / "refused", params=PARAMS, engine=make_engine())
    summary = process_bag(ir, tmp_path / "out", params={**PARAMS, "image_encoding": "mono16"}, engine=make_engine())
    assert "using its only colour image topic '/kinect2/sd/image_ir'" in " ".join(summary.notes), summary.notes
    assert len(read_bag(tmp_path / "out")["/depth"]) == 4
    bags = [str(tmp_path / "out"), str(ir), "--depth-topic", "/depth", "--json"]
    assert flicker_main([*bags, "--image-encoding", "mono16"]) == 0
    capsys.readouterr()
    assert flicker_main(bags) == 2  # without it: the same hint as vdepth-bag's, in its own flag (it had none)
    err = capsys.readouterr().err
    assert "/kinect2/sd/image_ir holds 16UC1 images" in err and "read as a camera with --image-encoding mono16" in err


def test_copy_input_topics(tmp_path: Path) -> None:
    src = make_bag(tmp_path / "in", "mcap", n=6)
    process_bag(src, tmp_path / "out", params=PARAMS, engine=make_engine(), copy_input_topics=True, storage="sqlite3")
    with AnyReader([src]) as a, AnyReader([tmp_path / "out"]) as b:
        raw_in = {(c.topic, t, bytes(r)) for c, t, r in a.messages()}
        raw_out = {(c.topic, t, bytes(r)) for c, t, r in b.messages() if c.topic in ("/image", "/camera_info")}
        assert raw_in == raw_out and len(raw_in) == 12
        assert {c.topic for c in b.connections} >= {"/image", "/camera_info", "/depth", "/points"}


def test_camera_info_stamped_by_another_clock_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A recording whose camera_info was stamped an hour off its images (system time against sim time): the
    run used the last camera_info for every frame without a word. It still does (the live node's rule), and
    the log and the summary name the cause."""
    src = make_bag(tmp_path / "in", n=12, info_stamp_offset_ns=3_600 * 10**9)
    with caplog.at_level(logging.WARNING):
        s = process_bag(src, tmp_path / "out", params=PARAMS, engine=make_engine(), mode="causal")
    assert len(read_bag(tmp_path / "out")["/points"]) == 12
    said = [r.getMessage() for r in caplog.records if "within sync_slop of no image" in r.getMessage()]
    assert len(said) == 1 and "3600 s after the images, by another clock" in said[0], said
    assert any("by another clock" in n and "'/camera_info'" in n for n in s.notes), s.notes


def test_camera_info_never_seen(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = make_bag(tmp_path / "in", n=8, camera_info_topic=None)
    with caplog.at_level(logging.WARNING):
        s = process_bag(src, tmp_path / "out", params=PARAMS, engine=make_engine(), mode="causal")
    msgs = read_bag(tmp_path / "out")
    assert len(msgs["/depth"]) == 8 and len(msgs["/disparity"]) == 8
    assert "/points" not in msgs and "/depth/camera_info" not in msgs
    warnings = [r for r in caplog.records if "point clouds are skipped" in r.getMessage()]
    assert len(warnings) == 1  # warned once
    assert s.clouds == 0 and s.clouds_skipped == 8
    assert any("no CameraInfo topic" in n for n in s.notes)


def test_a_bag_without_camera_info_names_the_calibration_file_option(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A bag recorded without any CameraInfo topic: the warning said clouds were skipped "until a camera_info
    arrives" (none ever would) and the summary "camera_info never seen", neither naming the fix. Now both say the
    bag has no camera_info topic and name --camera-info-file (docs/offline.md)."""
    src = make_bag(tmp_path / "in", n=8, camera_info_topic=None)
    with caplog.at_level(logging.WARNING):
        s = process_bag(src, tmp_path / "out", params=PARAMS, engine=make_engine(), mode="causal")
    (warning,) = [r.getMessage() for r in caplog.records if "point clouds are skipped" in r.getMessage()]
    assert "until a camera_info arrives" not in warning, warning
    assert "has no CameraInfo topic" in warning and "--camera-info-file" in warning, warning
    (note,) = [n for n in s.notes if "camera_info" in n and "point clouds" in n]
    assert "has no CameraInfo topic" in note and "--camera-info-file" in note, note


def test_an_uncalibrated_camera_info_is_named_as_such(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A driver without its calibration file publishes an all-zero camera_info: the clouds are
    skipped, and the warning says why (it used to say that no camera_info was on the topic)."""
    src = make_bag(tmp_path / "in", n=6, intrinsics=(0.0, 0.0, 0.0, 0.0))
    with caplog.at_level(logging.WARNING):
        s = process_bag(src, tmp_path / "out", params=PARAMS, engine=make_engine())
    warnings = [r.getMessage() for r in caplog.records if "point clouds are skipped" in r.getMessage()]
    assert len(warnings) == 1 and "is uncalibrated (K and P are all zero)" in warnings[0]
    assert "no camera_info" not in warnings[0] and s.clouds == 0 and s.clouds_skipped == 6


@pytest.mark.parametrize(
    ("calibration", "problem"),
    [
        ("camera_matrix: {rows: 3, cols: 3, data: [0, 0, 0, 0, 0, 0, 0, 0, 0]}", "all zero (an uncalibrated"),
        ("fx: 50.0\nfy: 50.0\ncx: 900.0\ncy: 20.0", "principal point"),
    ],
    ids=["uncalibrated", "principal_point_outside"],
)
def test_an_unusable_camera_info_file_is_refused_before_anything_is_written(
    tmp_path: Path, calibration: str, problem: str
) -> None:
    """The calibration the user names with --camera-info-file is checked up front, as vdepth-video's
    --camera-info is: an all-zero or impossible one used to run the whole bag (no clouds, a warning)."""
    src = make_bag(tmp_path / "in", n=4, camera_info_topic=None)
    cal = tmp_path / "cal.yaml"
    cal.write_text(f"image_width: {W}\nimage_height: {H}\nwidth: {W}\nheight: {H}\n{calibration}\n")
    with pytest.raises(OfflineError, match=f"--camera-info-file {cal}: .*{re.escape(problem)}"):
        process_bag(src, tmp_path / "out", params=PARAMS, engine=make_engine(), camera_info_file=cal)
    assert not (tmp_path / "out").exists()


def test_camera_info_after_image_is_paired(tmp_path: Path) -> None:
    src = make_bag(tmp_path / "in", n=6, info_first=False)
    s = process_bag(src, tmp_path / "out", params=PARAMS, engine=make_engine(), mode="causal")
    assert s.clouds == 6


def test_no_scale_source_writes_disparity_only(tmp_path: Path) -> None:
    src = make_bag(tmp_path / "in", n=6)
    s = process_bag(src, tmp_path / "out", params={"scale_source": "none"}, engine=make_engine(), mode="offline")
    msgs = read_bag(tmp_path / "out")
    assert "/depth" not in msgs and "/points" not in msgs and len(msgs["/disparity"]) == 6
    assert s.clouds_skipped == 0  # nothing to skip without depth
    assert any("only disparity" in n for n in s.notes)


def _short_range_sensor_bag(path: Path, reach: float, frames: int = 24) -> Path:
    """`test_ros_metric.py`'s RGB-D scene (16-pixel blocks, depth 0.5 / (0.1 + luminance): 0.5 to 2.8 m, what the
    tiny model sees) at 320x240 (640x480 told the same, at twice the test's time), 10 Hz, its depth camera measuring up
    to `reach` metres (10 % holes)."""
    rng = np.random.default_rng(1)
    blocks = np.random.default_rng(0).integers(20, 236, (241 // 16 + 1, 321 // 16 + 1, 3), dtype=np.uint8)
    base = blocks.repeat(16, 0).repeat(16, 1)[:240, :320]
    rgb = [np.roll(base, 4 * (k % 8), axis=1) for k in range(frames)]
    depth = []
    for frame in rgb:
        z = (0.5 / (0.1 + (frame.astype(np.float32) / 255) @ np.array([0.299, 0.587, 0.114], np.float32))).astype(
            np.float32
        )
        z[(rng.random(z.shape) < 0.1) | (z > reach)] = np.nan
        depth.append(z)
    write_image_bag(path, rgb, fps=10.0, start_ns=START, sparse_depth=depth)
    return path


@pytest.mark.parametrize("mode", ["causal", "offline"])
def test_a_fit_on_a_short_range_sensor_is_told_as_the_node_tells_it(
    tmp_path: Path, mode: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A depth camera reaching 0.8 m in a 2.8 m scene: the node WARNs that /depth beyond the samples is extrapolated
    and keeps it in "problems" (`test_ros_metric.py`). `vdepth-bag --mode offline` said nothing (its second pass
    refitted the scale without the check), and neither mode's summary (text or --json) had it: the WARN had
    scrolled away at the end of a long bag. Now both modes log the node's WARN and the summary notes it with the
    samples' span; a sensor that sees the whole scene gets neither."""
    from fakes import write_tiny_onnx

    model = write_tiny_onnx(tmp_path, frames=8)
    params = tmp_path / "params.yaml"
    params.write_text(
        f"/**:\n  ros__parameters:\n    model: {str(model)!r}\n    backend: onnxruntime\n    scale_source: sparse\n"
        "    sparse_depth: image\n    sparse_min_points: 20\n"
    )
    for reach, told in ((0.8, True), (np.inf, False)):
        src = _short_range_sensor_bag(tmp_path / f"in_{reach}", reach)
        args = [str(src), "-o", str(tmp_path / f"out_{reach}"), "--params", str(params), "--mode", mode]
        caplog.clear()
        assert bagcli.main([*args, "--sparse-depth-topic", "/sparse_depth", "--no-progress", "--json"]) == 0
        notes = json.loads(capsys.readouterr().out)["notes"]
        spans = [n for n in notes if "/depth beyond them is extrapolated" in n]
        warned = [r for r in caplog.records if "depth is extrapolated" in r.getMessage()]
        assert bool(spans) == told and bool(warned) == told, (notes, caplog.text)
        if told:
            span = r"^24 of 24 frames: .*samples from 0\.[45]\d to 0\.[78]\d m, up to \d\d% of a frame"
            assert re.search(span, spans[0]), spans[0]
            assert warned[0].levelno == logging.WARNING


def test_sparse_depth_topic_is_a_scale_source(tmp_path: Path) -> None:
    depth = fitting_depth(8)  # a scale source only once it fits: depth the model agrees with
    src = make_bag(tmp_path / "in", n=8, sparse_depth=depth, sparse_depth_topic="/lidar_depth")
    s = process_bag(
        src,
        tmp_path / "out",
        params={"sparse_min_points": 10},
        engine=make_engine(),
        mode="offline",
        sparse_depth_topic="/lidar_depth",
    )
    assert set(s.scale_sources) == {"sparse"}


@pytest.mark.parametrize("params", [None, {"scale_source": "range"}])
def test_a_metric_topic_given_on_the_command_line_makes_depth_metric(tmp_path: Path, params: Any) -> None:
    """docs/offline.md's `vdepth-bag IN -o OUT --sparse-depth-topic /lidar/...` "for metric depth offline",
    with the bundled parameters (scale_source: range, the default since it replaced "none"): the depth topic
    was read and ignored, the output was the assumed near..far range, not metric, without a word. A metric
    input named on the command line now makes the scale source sparse, and a note says so."""
    depth = fitting_depth(8)  # a scale source only once it fits: depth the model agrees with
    src = make_bag(tmp_path / "in", n=8, sparse_depth=depth, sparse_depth_topic="/lidar_depth")
    s = process_bag(src, tmp_path / "out", params=params, engine=make_engine(), sparse_depth_topic="/lidar_depth")
    assert set(s.scale_sources) == {"sparse"}
    assert any("scale_source set to 'sparse'" in n and "/lidar_depth" in n for n in s.notes)


def test_a_params_file_asking_for_sparse_input_but_range_scale_stays_as_the_node_runs(tmp_path: Path) -> None:
    """`sparse_depth: image` beside `scale_source: range` in the params file: the node warns and keeps the
    range; the bag run does the same (the causal bag equals the node), and its summary says why."""
    depth = [np.full((H, W), 2.0, np.float32) for _ in range(8)]
    src = make_bag(tmp_path / "in", n=8, sparse_depth=depth, sparse_depth_topic="/sparse_depth")
    params = {"scale_source": "range", "sparse_depth": "image"}
    s = process_bag(src, tmp_path / "out", params=params, engine=make_engine())
    assert set(s.scale_sources) == {"range"}
    assert any("not used" in n and "scale_source: sparse" in n for n in s.notes)


def test_pointcloud_sparse_depth_is_projected_as_the_node_does(tmp_path: Path) -> None:
    """`sparse_depth: pointcloud` (a LiDAR in the camera's optical frame): the bag's PointCloud2 is
    projected with the camera, so the output equals a bag carrying the same samples as a depth image;
    points behind the camera or outside the image are ignored."""
    rng = np.random.default_rng(3)
    fx, fy, cx, cy = default_intrinsics(W, H)
    clouds, images = [], []
    for rgb in synthetic_frames(10, H, W):  # depths the luminance "model" agrees with, up to an affine
        pix = rng.choice(H * W, 80, replace=False)
        v, u = np.divmod(pix, W)
        lum = rgb[v, u] @ np.array([0.299, 0.587, 0.114]) / 255.0
        z = (1.0 / (0.6 * (0.1 + lum) + 0.05)).astype(np.float32)
        xyz = np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], axis=1).astype(np.float32)
        stray = np.array([[0.1, 0.1, -2.0], [50.0, 0.0, 1.0], [np.nan, 0.0, 1.0]], np.float32)
        clouds.append(np.concatenate([xyz, stray]))
        depth = np.full((H, W), np.nan, np.float32)
        depth[v, u] = z
        images.append(depth)
    params = {**PARAMS, "scale_source": "sparse", "sparse_min_points": 10}
    make_bag(tmp_path / "in_cloud", n=10, sparse_points=clouds)
    make_bag(tmp_path / "in_image", n=10, sparse_depth=images)
    s = process_bag(
        tmp_path / "in_cloud", tmp_path / "out_cloud", params={**params, "sparse_depth": "pointcloud"},
        engine=make_engine(), mode="causal",
    )  # fmt: skip
    ref = process_bag(
        tmp_path / "in_image", tmp_path / "out_image", params={**params, "sparse_depth": "image"},
        engine=make_engine(), mode="causal",
    )  # fmt: skip
    assert set(s.scale_sources) == {"sparse"} and s.frames_out == ref.frames_out > 0
    got, expected = read_bag(tmp_path / "out_cloud")["/depth"], read_bag(tmp_path / "out_image")["/depth"]
    assert len(got) == len(expected)
    for (_, a), (_, b) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(img(a), img(b))
    # without camera_info a cloud cannot be projected: its depth is ignored and counted, frames kept
    make_bag(tmp_path / "in_noinfo", n=10, sparse_points=clouds, camera_info_topic=None)
    s2 = process_bag(
        tmp_path / "in_noinfo", tmp_path / "out_noinfo", params={**params, "sparse_depth": "pointcloud"},
        engine=make_engine(), mode="causal",
    )  # fmt: skip
    assert (s2.frames_in, s2.frames_out, s2.dropped) == (s.frames_in, s.frames_out, 0)
    assert "sparse depth on /sparse_depth ignored on 10 frames: a PointCloud2 needs camera_info" in " ".join(s2.notes)


def test_camera_pose_topic_gives_the_nodes_triangulated_metric_depth(tmp_path: Path) -> None:
    """`sparse_depth: pose`: the bag's PoseStamped topic is triangulated exactly as the node does
    (same `PoseTriangulator`, same matching), so the causal bag output equals the pipeline fed the
    same points; a bag without the topic is refused with the bag's topic list."""
    synthetic = pytest.importorskip("vdepth_training.data.synthetic", reason="renders need the train extra")
    from vdepth_ros.stream.cloud import CameraModel
    from vdepth_ros.triangulate import PoseTriangulator

    clip = synthetic.render_clip(3, frames=20, height=180, width=240, kind="room", style="rich")
    K = clip.intrinsics
    write_image_bag(
        tmp_path / "in", clip.rgb, start_ns=START, intrinsics=(K[0, 0], K[1, 1], K[0, 2], K[1, 2]),
        camera_poses=clip.poses,
    )  # fmt: skip
    params = {**PARAMS, "scale_source": "sparse", "sparse_depth": "pose", "sparse_min_points": 20}
    s = process_bag(tmp_path / "in", tmp_path / "out", params=params, engine=make_engine(), mode="causal")
    assert any("20 of 20 frames triangulated" in n for n in s.notes), s.notes
    cam = CameraModel(fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2], width=240, height=180)
    pipe = DepthPipeline(PipelineConfig.from_params(params)[0], engine=make_engine())
    tri, expected = PoseTriangulator(), []
    for i, rgb in enumerate(clip.rgb):
        sparse = tri.push(rgb, clip.poses[i], cam.matrix)
        t = START + round(i * 1e9 / 30)
        expected += pipe.push(FrameInput(rgb=rgb, stamp_ns=t, camera=cam, sparse_depth=sparse))
    expected += pipe.flush()
    expected = [f for f in expected if f.depth is not None]
    got = read_bag(tmp_path / "out")["/depth"]
    assert expected and expected[-1].fit.scale_source == "sparse" and len(got) == len(expected)
    for (_, d), f in zip(got, expected, strict=True):
        np.testing.assert_array_equal(img(d), f.depth)
    # an invalid pose message (NaN) is counted and skipped: its frame's pose comes from its neighbours
    broken = clip.poses.copy()
    broken[5] = np.nan
    write_image_bag(
        tmp_path / "in_nan", clip.rgb, start_ns=START, intrinsics=(K[0, 0], K[1, 1], K[0, 2], K[1, 2]),
        camera_poses=broken,
    )  # fmt: skip
    s2 = process_bag(tmp_path / "in_nan", tmp_path / "out_nan", params=params, engine=make_engine())
    assert any("20 of 20 frames triangulated, 1 invalid pose messages ignored" in n for n in s2.notes), s2.notes
    # --flicker: with camera poses the summary also carries TAE (metric depth, the bag's own poses)
    s3 = process_bag(tmp_path / "in", tmp_path / "out_fl", params=params, engine=make_engine(), flicker=True)
    note = next(n for n in s3.notes if n.startswith("flicker of /depth"))
    assert "flow warping error" in note and "TAE x100 with the camera poses" in note
    make_bag(tmp_path / "plain", n=4)
    with pytest.raises(MissingTopicError, match="camera pose topic '/camera_pose' not found"):
        process_bag(tmp_path / "plain", tmp_path / "out2", params=params, engine=make_engine())


def _yaml(tmp_path: Path) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text("/**:\n  ros__parameters:\n    scale_source: range\n    near: 0.5\n    far: 5.0\n")
    return p


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI builds its pipeline with the LuminanceEngine instead of a model."""
    monkeypatch.setattr(bagcli, "build_pipeline", lambda config, engine=None: DepthPipeline(config, make_engine()))


def test_cli_overwrite_rules(tmp_path: Path, fake_model: None, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_bag(tmp_path / "in", n=5)
    before = digest(src)
    args = [str(src), "-o", str(tmp_path / "out"), "--params", str(_yaml(tmp_path)), "--no-progress"]
    assert bagcli.main(args) == 0
    assert "5 frames in, 5 out" in capsys.readouterr().out
    first = digest(tmp_path / "out")
    assert bagcli.main([*args, "--mode", "offline"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert digest(tmp_path / "out") == first  # untouched
    assert bagcli.main([*args, "--overwrite", "--storage", "sqlite3"]) == 0
    assert (tmp_path / "out" / "out_0.db3").is_file() and not (tmp_path / "out" / "out_0.mcap").exists()
    assert bagcli.main([str(src), "-o", str(src), "--params", str(_yaml(tmp_path)), "--overwrite"]) == 2
    assert "overlaps the input" in capsys.readouterr().err
    assert digest(src) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(STAGING_PREFIX)]


def test_cli_rectify_undistorts_with_the_camera_info(
    tmp_path: Path, fake_model: None, caplog: pytest.LogCaptureFixture
) -> None:
    """`--rectify` (the node's `rectify`) undistorts each image before the pipeline; without it a
    distorted camera_info is noted once and the images are taken as rectified."""
    d = [-0.3, 0.1, 0.0, 0.0, 0.0]
    src = make_bag(tmp_path / "in", n=N, distortion=d)
    args = [str(src), "--params", str(_yaml(tmp_path)), "--no-progress"]
    with caplog.at_level(logging.INFO):
        assert bagcli.main([*args, "-o", str(tmp_path / "plain")]) == 0
    assert sum("lens distortion" in r.getMessage() for r in caplog.records) == 1
    assert bagcli.main([*args, "-o", str(tmp_path / "rect"), "--rectify"]) == 0

    from vdepth_ros.rectify import Rectifier

    info = read_bag(src)["/camera_info"][0][1]
    view = Rectifier().view(info, W, H)
    assert not view.is_identity
    params = {"scale_source": "range", "near": 0.5, "far": 5.0}
    pipe = DepthPipeline(PipelineConfig.from_params(params)[0], engine=make_engine())
    expected = []
    for f in _pipeline_frames():
        expected += pipe.push(
            FrameInput(rgb=view.image(f.rgb), stamp_ns=f.stamp_ns, camera=view.camera, valid=view.valid)
        )
    expected += pipe.flush()
    got = read_bag(tmp_path / "rect")["/depth"]
    plain = read_bag(tmp_path / "plain")["/depth"]
    assert len(got) == len(expected) == len(plain)
    for (_, msg), f in zip(got, expected, strict=True):
        np.testing.assert_array_equal(img(msg), f.depth)
    assert not np.array_equal(img(got[0][1]), img(plain[0][1]), equal_nan=True)
    out_info = read_bag(tmp_path / "rect")["/depth/camera_info"][0][1]
    assert not any(out_info.d) and camera_from_info(out_info) == expected[0].camera


def test_cli_rectify_on_an_image_rect_topic_is_named_once(
    tmp_path: Path, fake_model: None, caplog: pytest.LogCaptureFixture
) -> None:
    """A bag of image_proc's output (`/cam/image_rect`, with the camera's camera_info, D and all) run with
    `--rectify` undistorted the images a second time without a word; it is named once, and the run goes on."""
    src = make_bag(tmp_path / "in", n=N, distortion=[-0.3, 0.1, 0.0, 0.0, 0.0], image_topic="/cam/image_rect")
    args = [str(src), "--params", str(_yaml(tmp_path)), "--no-progress", "--image-topic", "/cam/image_rect"]
    with caplog.at_level(logging.INFO):
        assert bagcli.main([*args, "-o", str(tmp_path / "rect"), "--rectify"]) == 0
    named = [r for r in caplog.records if "already rectified" in r.getMessage()]
    assert len(named) == 1 and named[0].levelno == logging.WARNING
    assert "without --rectify" in named[0].getMessage() and "/cam/image_rect" in named[0].getMessage()
    assert len(read_bag(tmp_path / "rect")["/depth"]) == N


def test_flicker_note_measures_the_written_depth(tmp_path: Path) -> None:
    """`vdepth-bag --flicker`: vdepth-flicker on the finished output with its input, as a note."""
    src = make_bag(tmp_path / "in")
    s = process_bag(src, tmp_path / "out", params=PARAMS, engine=make_engine(), flicker=True)
    note = next(n for n in s.notes if n.startswith("flicker of /depth"))
    from vdepth_ros.offline.flicker import measure_flicker

    (r,) = measure_flicker([tmp_path / "out", src], "/image", ["/depth"])
    assert f"{r.mean:.4f} over {N - 1} pairs" in note and "TAE" not in note  # no poses, no TAE
    s2 = process_bag(
        src, tmp_path / "rel", params={**PARAMS, "scale_source": "none"}, engine=make_engine(), flicker=True
    )
    assert "flicker: not measured (no depth was written: no scale source)" in s2.notes


def test_camera_info_file_stands_in_for_a_bag_without_camera_info(tmp_path: Path) -> None:
    """A bag recorded without camera_info gets its clouds from a calibration file."""
    src = make_bag(tmp_path / "in", camera_info_topic=None)
    fx, fy, cx, cy = default_intrinsics(W, H)
    cal = tmp_path / "cam.yaml"
    cal.write_text(f"fx: {fx}\nfy: {fy}\ncx: {cx}\ncy: {cy}\nwidth: {W}\nheight: {H}\n")
    plain = process_bag(src, tmp_path / "plain", params=PARAMS, engine=make_engine())
    assert "/points" not in read_bag(tmp_path / "plain") and plain.clouds_skipped
    s = process_bag(src, tmp_path / "out", params=PARAMS, engine=make_engine(), camera_info_file=cal)
    assert any("camera_info from" in n for n in s.notes) and not any("never seen" in n for n in s.notes)
    msgs = read_bag(tmp_path / "out")
    assert len(msgs["/points"]) == N
    # the same output as a bag that carried this camera_info itself
    process_bag(make_bag(tmp_path / "with_info"), tmp_path / "ref", params=PARAMS, engine=make_engine())
    ref = read_bag(tmp_path / "ref")
    for (_, a), (_, b) in zip(msgs["/points"], ref["/points"], strict=True):
        np.testing.assert_array_equal(cloud(a), cloud(b))
    assert camera_from_info(msgs["/depth/camera_info"][0][1]) == camera_from_info(ref["/depth/camera_info"][0][1])
    with pytest.raises(VdepthError, match="not both"):
        process_bag(
            src, tmp_path / "x", params=PARAMS, engine=make_engine(), camera_info_file=cal, camera_info_topic="/c"
        )


def test_rectify_names_the_bags_fix_for_images_before_its_first_camera_info(tmp_path: Path) -> None:
    """A driver that publishes camera_info only after its first images: with --rectify those images were dropped
    with the node's fix ("remap camera_info to this camera's ... vdepth-bag: without --rectify"), no remap being
    possible on a bag. Now the summary names the bag's: --camera-info-file, which rectifies every frame."""
    from rosbags.typesys import get_typestore

    from vdepth_ros.offline.bag_types import CAMERA_INFO, TYPESTORES
    from vdepth_ros.offline.bag_writer import new_bag_writer
    from vdepth_ros.offline.synth import _camera_info, _image_raw

    ts = get_typestore(TYPESTORES["kilted"])
    T = ts.types
    frames, late = 40, 30  # (images wait a little for their camera_info: only those that waited longer are dropped)
    with new_bag_writer(tmp_path / "in", "mcap", version=9) as w:
        image, info = (
            w.add_connection("/image", "sensor_msgs/msg/Image", typestore=ts),
            w.add_connection("/camera_info", CAMERA_INFO, typestore=ts),
        )
        for k, rgb in enumerate(synthetic_frames(frames, H, W)):
            t = 1_700_000_000_000_000_000 + k * 33_333_333
            stamp = T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9)
            header = T["std_msgs/msg/Header"](stamp=stamp, frame_id="cam")
            w.write(image, t, _image_raw(ts, rgb, "rgb8", header, k))
            if k >= late:
                raw = ts.serialize_cdr(_camera_info(T, header, W, H, default_intrinsics(W, H), None), CAMERA_INFO)
                w.write(info, t + 1, raw)
    s = process_bag(tmp_path / "in", tmp_path / "out", params={**PARAMS, "rectify": True}, engine=make_engine())
    [dropped] = [n for n in s.notes if n.startswith("dropped")]
    assert s.dropped >= 1 and "--camera-info-file CALIB.yaml" in dropped and "remap" not in dropped, dropped
    fx, fy, cx, cy = default_intrinsics(W, H)
    cal = tmp_path / "cam.yaml"
    cal.write_text(f"fx: {fx}\nfy: {fy}\ncx: {cx}\ncy: {cy}\nwidth: {W}\nheight: {H}\n")
    s = process_bag(
        tmp_path / "in",
        tmp_path / "all",
        params={**PARAMS, "rectify": True},
        engine=make_engine(),
        camera_info_file=cal,
    )
    assert (s.dropped, s.frames_out) == (0, frames)


def test_cli_missing_topic_lists_topics(tmp_path: Path, fake_model: None, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_bag(tmp_path / "in", n=3)
    rc = bagcli.main(
        [str(src), "-o", str(tmp_path / "out"), "--params", str(_yaml(tmp_path)), "--image-topic", "/cam/image_raw"]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert "'/cam/image_raw' not found" in err and "/image [sensor_msgs/msg/Image]" in err and "/camera_info" in err
    assert not (tmp_path / "out").exists()


def test_cli_applies_the_params_files_blas_threads(
    tmp_path: Path, fake_model: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`vdepth-bag --params` sets numpy's OpenBLAS threads from the node's `blas_threads`, as the
    node does (0 = leave as is); OPENBLAS_NUM_THREADS still wins (vdepth_ros/blas.py)."""
    from vdepth_ros.blas import blas_threads, set_blas_threads

    if not blas_threads():
        pytest.skip("numpy is not linked against OpenBLAS here")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    src = make_bag(tmp_path / "in", n=3)
    params = tmp_path / "params.yaml"
    before = set_blas_threads(1)
    try:
        for n, expect in ((2, 2), (0, 2), (1, 1)):
            params.write_text(f"/**:\n  ros__parameters:\n    scale_source: range\n    blas_threads: {n}\n")
            out = tmp_path / f"out{n}"
            assert bagcli.main([str(src), "-o", str(out), "--params", str(params), "--no-progress"]) == 0
            assert set(blas_threads().values()) == {expect}, n
    finally:
        for k in set(before.values()):
            set_blas_threads(k)
    capsys.readouterr()


class _Crash(LuminanceEngine):
    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self.calls >= 1:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the bag
        return super()._run(batch)


@pytest.mark.parametrize("mode", ["causal", "offline"])
def test_interrupt_leaves_no_partial_output(tmp_path: Path, mode: str) -> None:
    src = make_bag(tmp_path / "in", n=20)
    before = digest(src)
    with pytest.raises(KeyboardInterrupt):
        process_bag(src, tmp_path / "out", params=PARAMS, engine=_Crash(48, 64, 8, 3), mode=mode)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(STAGING_PREFIX)]
    assert digest(src) == before


def test_crash_keeps_previous_output_with_overwrite(tmp_path: Path) -> None:
    src = make_bag(tmp_path / "in", n=20)
    process_bag(src, tmp_path / "out", params=PARAMS, engine=make_engine())
    previous = digest(tmp_path / "out")
    with pytest.raises(KeyboardInterrupt):
        process_bag(src, tmp_path / "out", params=PARAMS, engine=_Crash(48, 64, 8, 3), overwrite=True)
    assert digest(tmp_path / "out") == previous


def test_causal_gap_restarts_like_the_node(tmp_path: Path) -> None:
    stamps = [START + round(i * 1e9 / 30) for i in range(10)] + [
        START + 5_000_000_000 + round(i * 1e9 / 30) for i in range(9)
    ]
    make_bag(tmp_path / "in", n=19, stamps_ns=stamps)
    s = process_bag(tmp_path / "in", tmp_path / "out", params=PARAMS, engine=make_engine(), mode="causal")
    assert any("restarted 1x (gap)" in n for n in s.notes)
    got = [img(m) for _, m in read_bag(tmp_path / "out")["/depth"]]

    pipe = DepthPipeline(PipelineConfig.from_params(PARAMS)[0], engine=make_engine())
    expected = []
    frames = _pipeline_frames(19)
    for i, f in enumerate(frames):
        f.stamp_ns = stamps[i]
        if i == 10:  # the node flushes the old stream and resets at the gap
            expected += pipe.flush()
            pipe.reset("gap")
        expected += pipe.push(f)
    expected += pipe.flush()
    assert len(got) == len(expected) == 19
    for a, f in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, f.depth)


def test_progress_bar_shows_rate_and_eta(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_bag(tmp_path / "in", n=6)
    process_bag(src, tmp_path / "out", params=PARAMS, engine=make_engine(), progress=True)
    err = capsys.readouterr().err
    assert "vdepth-bag" in err and "6/6" in err and "frame/s" in err and "<" in err  # elapsed<remaining (ETA)


def test_malformed_frame_is_dropped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from rosbags.typesys import Stores, get_typestore

    from vdepth_ros.offline.bag_writer import new_bag_writer

    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types
    path = tmp_path / "in"
    with new_bag_writer(path, "sqlite3", version=9) as w:
        conn = w.add_connection("/image", "sensor_msgs/msg/Image", typestore=ts)
        for i, rgb in enumerate(synthetic_frames(8, H, W)):
            data = rgb.reshape(-1) if i != 3 else rgb.reshape(-1)[:100]  # frame 3: truncated buffer
            t = START + i * 33_000_000
            hdr = T["std_msgs/msg/Header"](
                stamp=T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9), frame_id=FRAME_ID
            )
            msg = T["sensor_msgs/msg/Image"](
                header=hdr, height=H, width=W, encoding="rgb8", is_bigendian=0, step=W * 3, data=data
            )
            w.write(conn, t, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    with caplog.at_level(logging.WARNING):
        s = process_bag(path, tmp_path / "out", params=PARAMS, engine=make_engine(), mode="offline")
    assert (s.frames_in, s.dropped, s.frames_out) == (8, 1, 7)
    assert "1 dropped" in s.format()
    assert any("dropping a frame" in r.getMessage() and "needs" in r.getMessage() for r in caplog.records)
    assert len(read_bag(tmp_path / "out")["/depth"]) == 7


def test_offline_tools_do_not_import_rclpy(tmp_path: Path, repo_root: Path) -> None:
    import subprocess
    import sys

    code = f"""
import sys
sys.path.insert(0, {str(repo_root / "test")!r})
from fakes import LuminanceEngine
from vdepth_ros.offline.bag import process_bag
from vdepth_ros.offline.errors import MissingTopicError
from vdepth_ros.offline.synth import synthetic_frames, write_image_bag
import vdepth_ros.offline.video, vdepth_ros.demo
write_image_bag({str(tmp_path / "in")!r}, synthetic_frames(4, 12, 16))
process_bag({str(tmp_path / "in")!r}, {str(tmp_path / "out")!r}, params={{}}, engine=LuminanceEngine())
assert "rclpy" not in sys.modules, "offline tools imported rclpy"
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr


def test_bare_mcap_file_and_topic_fallbacks(tmp_path: Path) -> None:
    src = make_bag(tmp_path / "in", n=5, image_topic="/cam/image_raw", camera_info_topic="/cam/camera_info")
    s = process_bag(src / "in_0.mcap", tmp_path / "out", params=PARAMS, engine=make_engine())
    assert s.frames_out == 5 and s.clouds == 5  # both topics found although the node's names differ
    assert sum("only colour image topic" in n or "'/cam/camera_info', the image topic's own" in n for n in s.notes) == 2


def test_the_summary_names_the_model_that_ran(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs of `vdepth-bag` on two machines' model folders: the summary did not say which model,
    file or backend made the depth; its `model:` line (and `--json`'s "model") now does."""
    import json

    from fakes import write_tiny_onnx

    model = write_tiny_onnx(tmp_path, frames=4)
    src = make_bag(tmp_path / "in", n=5)
    args = [str(src), "-o", str(tmp_path / "out"), "--params", str(_yaml(tmp_path)), "--no-progress",
            "--model", str(model), "--backend", "onnxruntime"]  # fmt: skip
    assert bagcli.main(args) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("model: ")]
    assert (
        f"fake (relative disparity, no unit) from {model}" in line
        and "on onnxruntime" in line
        and "windows of 4 frames" in line
    ), line
    assert bagcli.main([*args, "--overwrite", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"]["model"] == str(model) and summary["model"]["backend"].startswith("onnxruntime")


def test_an_output_bag_folder_records_which_model_made_it(tmp_path: Path) -> None:
    """A depth bag found months later did not say which model made it; its metadata.yaml does now."""
    import yaml
    from fakes import write_tiny_onnx

    model = write_tiny_onnx(tmp_path, frames=4)
    src = make_bag(tmp_path / "in", n=5)
    out = tmp_path / "out"
    process_bag(src, out, params={"scale_source": "range", "model": str(model), "backend": "onnxruntime"})
    custom = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["custom_data"]
    assert custom["vdepth_ros.model"] == str(model) and custom["vdepth_ros.backend"].startswith("onnxruntime")
    assert custom["vdepth_ros.windows"].startswith("4 frames")
    with AnyReader([out]) as reader:  # still a bag every reader opens
        assert reader.message_count > 0


def test_max_input_rate_leaves_out_the_images_the_live_node_leaves_out(tmp_path: Path) -> None:
    """A 60 Hz recording with the node's `max_input_rate: 20` (params file): vdepth-bag takes every third
    image, as the node does (`inputs.sync.InputRate`), and says how many it left out."""
    make_bag(tmp_path / "in", n=24, fps=60.0)
    params = {**PARAMS, "max_input_rate": 20.0}
    s = process_bag(tmp_path / "in", tmp_path / "out", params=params, engine=make_engine(), mode="causal")
    stamps = [stamp(m) for _, m in read_bag(tmp_path / "out")["/depth"]]
    assert stamps == [START + round(k * 1e9 / 60) for k in range(0, 24, 3)]
    assert any("16 images left out by max_input_rate" in note for note in s.notes), s.notes
