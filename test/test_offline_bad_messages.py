"""A few bad messages in the middle of a long recording: each offline tool skips them, says so once per
kind (topic, stamp, cause), counts them in its summary and --json, and keeps going."""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from fakes import LuminanceEngine, rvl_encode, rvl_pack
from rosbags.typesys import get_typestore

from vdepth_ros.offline import flicker
from vdepth_ros.offline.bag import process_bag
from vdepth_ros.offline.bag_types import CAMERA_INFO, COMPRESSED, POSE_STAMPED, TYPESTORES
from vdepth_ros.offline.bag_writer import new_bag_writer
from vdepth_ros.offline.synth import _camera_info, synthetic_frames
from vdepth_ros.offline.videoio import default_intrinsics

START = 1_700_000_000_000_000_000
PERIOD = 33_333_333
N = 40
IMAGE, INFO, DEPTH = "/cam/image_raw/compressed", "/cam/camera_info", "/cam/depth/compressedDepth"
POSE = "/cam/pose"


def _stamp(k: int) -> float:
    return (START + k * PERIOD) / 1e9


def _recording(path: Path, bad: dict[int, str]) -> Path:
    """A camera's JPEG stream, its camera_info and its depth camera's compressedDepth (rvl), `N` frames; frame
    `k` of `bad` carries that kind of bad message (or several, joined by " + "), as real recordings do now and then."""
    ts = get_typestore(TYPESTORES["kilted"])
    T = ts.types
    with new_bag_writer(path, "mcap", version=9) as w:
        image = w.add_connection(IMAGE, COMPRESSED, typestore=ts)
        info = w.add_connection(INFO, CAMERA_INFO, typestore=ts)
        depth = w.add_connection(DEPTH, COMPRESSED, typestore=ts)
        pose = w.add_connection(POSE, POSE_STAMPED, typestore=ts)
        for k, rgb in enumerate(synthetic_frames(N, 48, 64)):
            kinds, t = set(bad.get(k, "").split(" + ")), START + k * PERIOD
            st = 0 if "stamp 0" in kinds else t  # a driver's glitch: header.stamp left unset on one frame
            header = T["std_msgs/msg/Header"](
                stamp=T["builtin_interfaces/msg/Time"](sec=st // 10**9, nanosec=st % 10**9), frame_id="cam"
            )
            if "image of another size" in kinds:
                rgb = np.ascontiguousarray(rgb[::2, ::2])
            jpeg = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]))[1].reshape(-1)
            if "truncated jpeg" in kinds:  # cut at a length of its own: each such message has its own size
                jpeg = jpeg[: len(jpeg) // 3 + k]
            fmt = "16UC1; compressedDepth rvl" if "formats swapped" in kinds else "jpeg"  # a misrouted frame
            raw = ts.serialize_cdr(T[COMPRESSED](header=header, format=fmt, data=jpeg), COMPRESSED)
            w.write(image, t, raw[:30] if "image cut short" in kinds else raw)
            intrinsics = (0, 0, 0, 0) if "camera_info all zero" in kinds else default_intrinsics(64, 48)
            raw = ts.serialize_cdr(_camera_info(T, header, 64, 48, intrinsics, None), CAMERA_INFO)
            w.write(info, t, raw[:40] if "camera_info cut short" in kinds else raw)
            mm = (1000 + 10 * cv2.resize(rgb, (64, 48)).mean(axis=2)).astype(np.uint16)
            width, height, coded = 64, 48, rvl_encode(mm)
            if "depth header claims 17 MP" in kinds:
                width, height, coded = 4200, 4100, rvl_pack([4200 * 4100, 0])
            if "depth header corrupt" in kinds:
                width, height = 1234567, 7
            if "depth rvl truncated" in kinds:
                coded = coded[: len(coded) // 3]
            data = struct.pack("<iff", 0, 0.0, 0.0) + struct.pack("<II", width, height) + coded
            fmt = "jpeg" if "formats swapped" in kinds else "16UC1; compressedDepth rvl"
            msg = T[COMPRESSED](header=header, format=fmt, data=np.frombuffer(data, np.uint8))
            raw = ts.serialize_cdr(msg, COMPRESSED)
            w.write(depth, t, raw[:30] if "depth cut short" in kinds else raw)
            where = T["geometry_msgs/msg/Pose"](
                position=T["geometry_msgs/msg/Point"](x=0.01 * k, y=0.0, z=0.0),
                orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
            )
            raw = ts.serialize_cdr(T[POSE_STAMPED](header=header, pose=where), POSE_STAMPED)
            w.write(pose, t, raw[:20] if "pose cut short" in kinds else raw)
    return path


def _flicker_json(bag: Path, capsys: pytest.CaptureFixture[str], *more: str) -> tuple[int, dict, str]:
    rc = flicker.main([str(bag), "--image-topic", IMAGE, "--depth-topic", DEPTH, "--json", *more])
    out, err = capsys.readouterr()
    return rc, (json.loads(out)[0] if rc == 0 else {}), err


@pytest.mark.parametrize(
    "kind", ["depth header claims 17 MP", "depth header corrupt", "depth rvl truncated", "depth cut short"]
)
def test_flicker_skips_a_bad_depth_message_and_counts_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """One bad depth message in an hour of recording stopped vdepth-flicker (exit 2, no measurement at all):
    now it is skipped with one warning naming the topic, the stamp and the cause, counted in the report and
    --json, and the rest is measured (exit 0, as vdepth-bag and vdepth-video drop a bad frame)."""
    bag = _recording(tmp_path / "rec", {N // 2: kind})
    with caplog.at_level(logging.WARNING):
        rc, row, err = _flicker_json(bag, capsys, "--max-input-pixels", "1000000")
    assert rc == 0, err
    assert row["skipped_depth"] == 1 and row["skipped_images"] == 0
    assert row["frames"] == N - 1 and row["pairs"] >= N - 3
    ((cause, n),) = [(s["cause"], s["count"]) for s in row["skipped"]]
    assert n == 1 and cause
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert DEPTH in warning and f"{_stamp(N // 2):.6f}" in warning and cause in warning
    rc = flicker.main([str(bag), "--image-topic", IMAGE, "--depth-topic", DEPTH, "--max-input-pixels", "1000000"])
    assert rc == 0 and "skipped 1 depth message(s): " + cause in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["truncated jpeg", "image cut short"])
def test_flicker_counts_and_tells_a_bad_colour_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """An undecodable colour image was skipped without a word (its depth silently unmatched), and one cut short
    in the file stopped the measurement: now both are skipped, told once and counted."""
    bag = _recording(tmp_path / "rec", {N // 2: kind})
    with caplog.at_level(logging.WARNING):
        rc, row, err = _flicker_json(bag, capsys)
    assert rc == 0, err
    assert (row["skipped_images"], row["skipped_depth"], row["unmatched_depth"]) == (1, 0, 1)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert IMAGE in warning and f"{_stamp(N // 2):.6f}" in warning


def test_many_bad_messages_of_different_sizes_are_one_warning_and_one_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Truncated JPEGs each of its own length ("cannot decode compressed image (840 bytes...)", 841, ...): each
    was a new reason to vdepth-bag, so a recording with a flaky link printed one warning and one summary line per
    bad frame. Now a kind of cause (its numbers aside) is one warning and one count, in both tools."""
    bad = dict.fromkeys(range(10, 30, 2), "truncated jpeg")
    bag = _recording(tmp_path / "rec", bad)
    engine = LuminanceEngine(height=48, width=64, frames=4, overlap=2)
    with caplog.at_level(logging.WARNING):
        s = process_bag(bag, tmp_path / "out", params={"scale_source": "none"}, engine=engine, image_topic=IMAGE)
    assert (s.frames_in, s.dropped, s.frames_out) == (N, len(bad), N - len(bad))
    drops = [n for n in s.notes if n.startswith("dropped")]
    assert len(drops) == 1 and drops[0].startswith(f"dropped {len(bad)} of the {N} images: cannot decode"), drops
    warnings = [r.getMessage() for r in caplog.records if "cannot decode" in r.getMessage()]
    assert len(warnings) == 1 and IMAGE in warnings[0] and f"{_stamp(10):.6f}" in warnings[0], warnings
    assert s.to_dict()["skipped_messages"] == [{"topic": IMAGE, "cause": drops[0].split(": ", 1)[1], "count": 10}]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        rc, row, _ = _flicker_json(bag, capsys)
    assert rc == 0 and row["skipped_images"] == len(bad) and len(row["skipped"]) == 1
    assert len([r for r in caplog.records if "cannot decode" in r.getMessage()]) == 1


@pytest.mark.parametrize("kind", ["image cut short", "camera_info cut short", "depth cut short"])
def test_vdepth_bag_goes_on_over_a_message_cut_short(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """One message that cannot be deserialized (cut short in the file) ended a vdepth-bag run of hours with
    "cannot deserialize", exit 2 and no output. Now it is skipped, told with its topic and log time, and counted:
    an image as a dropped frame, another input in the summary's notes and --json."""
    bag = _recording(tmp_path / "rec", {N // 2: kind})
    engine = LuminanceEngine(height=48, width=64, frames=4, overlap=2)
    sparse = DEPTH if kind.startswith("depth") else None
    with caplog.at_level(logging.WARNING):
        s = process_bag(
            bag,
            tmp_path / "out",
            params={"scale_source": "none"},
            engine=engine,
            image_topic=IMAGE,
            camera_info_topic=INFO,
            sparse_depth_topic=sparse,
        )
    topic = {"image": IMAGE, "camera_info": INFO, "depth": DEPTH}[kind.split()[0]]
    image = kind.startswith("image")
    assert (s.frames_in, s.dropped, s.frames_out) == (N, int(image), N - int(image))
    ((entry),) = s.to_dict()["skipped_messages"]
    assert entry["topic"] == topic and entry["count"] == 1 and "cannot deserialize" in entry["cause"]
    note = f"dropped 1 of the {N} images: cannot deserialize" if image else f"skipped 1 message on {topic}: cannot"
    assert any(n.startswith(note) for n in s.notes), s.notes
    (warning,) = [r.getMessage() for r in caplog.records if "deserialize" in r.getMessage()]
    assert topic in warning and f"logged at {_stamp(N // 2):.6f}" in warning
    assert (tmp_path / "out" / "metadata.yaml").is_file()


def test_flicker_counts_an_image_of_another_size_as_a_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An image of another size mid-stream (a driver reconfigured for a moment) breaks the chain of pairs (no
    flow between two sizes): two pairs went unmeasured without a word; now the chain's restarts count them."""
    bag = _recording(tmp_path / "rec", {N // 2: "image of another size"})
    rc, row, err = _flicker_json(bag, capsys)
    assert rc == 0, err
    assert (row["frames"], row["pairs"], row["restarts"]) == (N, N - 3, 2)


def test_one_message_stamped_zero_is_dropped_not_taken_for_a_clock_reset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """One frame of an hour whose header.stamp was left 0 (image, camera_info and depth): vdepth-bag took it for a
    clock reset and restarted the stream twice (back to 0, then a "gap" of 54 years forward), and vdepth-flicker
    restarted its chain twice. Now the frame is dropped as unstamped, told and counted, and the stream goes on."""
    bag = _recording(tmp_path / "rec", {N // 2: "stamp 0"})
    engine = LuminanceEngine(height=48, width=64, frames=4, overlap=2)
    with caplog.at_level(logging.WARNING):
        s = process_bag(bag, tmp_path / "out", params={"scale_source": "none"}, engine=engine, image_topic=IMAGE)
    assert (s.frames_in, s.dropped, s.frames_out) == (N, 1, N - 1)
    assert not [n for n in s.notes if "restarted" in n], s.notes
    assert any(n.startswith("dropped 1 of the 40 images: its header.stamp is not set") for n in s.notes), s.notes
    rc, row, err = _flicker_json(bag, capsys)
    assert rc == 0, err
    assert (row["frames"], row["pairs"], row["restarts"]) == (N - 1, N - 2, 0)
    assert (row["skipped_images"], row["skipped_depth"]) == (1, 1)


def test_one_uncalibrated_camera_info_amid_calibrated_ones_keeps_the_calibration(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One all-zero camera_info in an hour of calibrated ones (a driver that failed to read its calibration file
    once): vdepth-bag (as the node) took it as new intrinsics, restarted the stream twice and wrote that frame
    without a cloud. Now it is refused as the other unusable camera_infos are: the last good one is used, counted
    in the summary, told once; no restart."""
    bag = _recording(tmp_path / "rec", {N // 2: "camera_info all zero"})
    engine = LuminanceEngine(height=48, width=64, frames=4, overlap=2)
    params = {"scale_source": "range", "near": 0.5, "far": 5.0}
    with caplog.at_level(logging.WARNING):
        s = process_bag(bag, tmp_path / "out", params=params, engine=engine, image_topic=IMAGE)
    assert (s.frames_out, s.clouds) == (N, N)
    assert not [n for n in s.notes if "restarted" in n], s.notes
    assert any(n.startswith("1 frames came with an unusable camera_info") for n in s.notes), s.notes
    (told,) = [r.getMessage() for r in caplog.records if "all zero (uncalibrated) after calibrated" in r.getMessage()]
    assert told.startswith(f"{INFO}: refusing a camera_info"), told


def test_vdepth_bag_flicker_does_not_tell_the_bad_messages_twice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`vdepth-bag --flicker` reads the input again to measure the written depth: every bad message the run had
    told was told a second time, and the flicker line did not say its pairs lacked those frames."""
    bag = _recording(tmp_path / "rec", {N // 2: "truncated jpeg"})
    engine = LuminanceEngine(height=48, width=64, frames=4, overlap=2)
    params = {"scale_source": "range", "near": 0.5, "far": 5.0}
    with caplog.at_level(logging.WARNING):
        s = process_bag(bag, tmp_path / "out", params=params, engine=engine, image_topic=IMAGE, flicker=True)
    assert len([r for r in caplog.records if "cannot decode" in r.getMessage()]) == 1
    (note,) = [n for n in s.notes if n.startswith("flicker of")]
    assert note.endswith("(1 input images skipped there too)"), note


@pytest.mark.parametrize("kind", ["pose cut short", "camera_info cut short"])
def test_flicker_with_poses_goes_on_over_a_pose_or_camera_info_cut_short(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """`vdepth-flicker --pose-topic` (TAE) read the poses and camera_infos first without a guard: one cut short in
    the file ended the run with a Python traceback. Now it is skipped, told and counted, and TAE is computed."""
    bag = _recording(tmp_path / "rec", {N // 2: kind})
    more = ("--pose-topic", POSE, "--camera-info-topic", INFO)
    rc, row, err = _flicker_json(bag, capsys, *more)
    assert rc == 0 and "Traceback" not in err, err
    assert row["tae_pairs"] >= N - 3 and row["tae_x100"] is not None
    topic = POSE if kind.startswith("pose") else INFO
    ((cause, n),) = [(r["cause"], r["count"]) for r in row["skipped"]]
    assert n == 1 and cause.startswith(f"on {topic}: cannot deserialize"), cause


def test_a_topic_whose_first_message_is_bad_is_still_chosen_by_what_it_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The topics are chosen by what an image topic holds, and that was read from its first message only: a
    recording whose first JPEG and first compressedDepth were cut short in the file (a recorder started mid-write)
    had "no colour image topic" for vdepth-bag and no depth topic for vdepth-flicker, exit 2. Now the topic's
    first readable message tells its kind, and the bad one is skipped and counted like any other bad message."""
    bag = _recording(tmp_path / "rec", {0: "image cut short + depth cut short"})
    engine = LuminanceEngine(height=48, width=64, frames=4, overlap=2)
    with caplog.at_level(logging.WARNING):
        s = process_bag(bag, tmp_path / "out", params={"scale_source": "none"}, engine=engine)
    assert (s.frames_in, s.dropped, s.frames_out) == (N, 1, N - 1)
    assert any(f"using its only colour image topic {IMAGE!r}" in n for n in s.notes), s.notes
    ((entry),) = s.to_dict()["skipped_messages"]
    assert entry["topic"] == IMAGE and entry["count"] == 1 and "cannot deserialize" in entry["cause"]
    rc = flicker.main([str(bag), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    (row,) = json.loads(out)
    assert row["topic"] == DEPTH and row["frames"] == N - 1
    assert (row["skipped_images"], row["skipped_depth"]) == (1, 1)


def test_an_image_of_an_encoding_that_cannot_be_read_amid_the_stream_is_a_bad_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A raw camera stream in which a driver's glitch left a frame's encoding unset (the first one among them),
    or published one depth frame on the colour topic: the whole run of hours ended with "unsupported image
    encoding ''", exit 2, no output. Now each is a bad message: dropped, told once per kind, counted; a topic
    whose images are all of such an encoding is still refused before any work."""
    from vdepth_ros.offline.bag_types import IMAGE as IMAGE_TYPE
    from vdepth_ros.offline.errors import UnsupportedEncodingError

    ts = get_typestore(TYPESTORES["kilted"])
    T = ts.types
    glitches = {0: "", 20: "", 22: "", 30: "16UC1"}
    bag = tmp_path / "raw"
    with new_bag_writer(bag, "mcap", version=9) as w:
        image = w.add_connection("/cam/image_raw", IMAGE_TYPE, typestore=ts)
        for k, rgb in enumerate(synthetic_frames(N, 48, 64)):
            t = START + k * PERIOD
            stamp = T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9)
            header = T["std_msgs/msg/Header"](stamp=stamp, frame_id="cam")
            enc = glitches.get(k, "rgb8")
            step = 128 if enc == "16UC1" else 192
            data = rgb.reshape(-1)[: 48 * step]
            msg = T[IMAGE_TYPE](header=header, height=48, width=64, encoding=enc, is_bigendian=0, step=step, data=data)
            w.write(image, t, ts.serialize_cdr(msg, IMAGE_TYPE))
    engine = LuminanceEngine(height=48, width=64, frames=4, overlap=2)
    with caplog.at_level(logging.WARNING):
        s = process_bag(bag, tmp_path / "out", params={"scale_source": "none"}, engine=engine)
    assert (s.frames_in, s.dropped, s.frames_out) == (N, 4, N - 4)
    counts = {e["cause"].split(";")[0]: e["count"] for e in s.to_dict()["skipped_messages"]}
    assert counts == {"unsupported image encoding ''": 3, "encoding 16UC1 is a depth image, not a colour image": 1}
    told = [m for r in caplog.records if (m := r.getMessage()).startswith("/cam/image_raw:") and "encoding" in m]
    assert len(told) == 2 and f"stamped {_stamp(0):.6f}" in told[0], told  # (this test's folder says "encoding")
    depth_only = tmp_path / "depth_only"
    with new_bag_writer(depth_only, "mcap", version=9) as w:
        image = w.add_connection("/image", IMAGE_TYPE, typestore=ts)
        for k in range(3):
            stamp = T["builtin_interfaces/msg/Time"](sec=k + 1, nanosec=0)
            msg = T[IMAGE_TYPE](
                header=T["std_msgs/msg/Header"](stamp=stamp, frame_id=""),
                height=4, width=4, encoding="16UC1", is_bigendian=0, step=8, data=np.zeros(32, np.uint8),
            )  # fmt: skip
            w.write(image, (k + 1) * 10**9, ts.serialize_cdr(msg, IMAGE_TYPE))
    with pytest.raises(UnsupportedEncodingError, match="16UC1"):
        process_bag(depth_only, tmp_path / "out2", params={"scale_source": "none"}, engine=engine)
    assert not (tmp_path / "out2").exists()


def test_flicker_skips_a_colour_or_depth_frame_of_the_other_kind_amid_the_stream(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """One frame routed to the other topic (a depth frame among the colour images, a JPEG among the depth ones;
    here the first of each): vdepth-flicker stopped with "is a depth image, not a colour one", exit 2, nothing
    measured. Now each is a bad message, skipped, told once and counted; the rest is measured."""
    bag = _recording(tmp_path / "rec", {0: "formats swapped", N // 2: "formats swapped"})
    with caplog.at_level(logging.WARNING):
        rc, row, err = _flicker_json(bag, capsys)
    assert rc == 0, err
    assert (row["skipped_images"], row["skipped_depth"], row["frames"]) == (2, 2, N - 2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2 and all(f"{_stamp(0):.6f}" in w for w in warnings), warnings
