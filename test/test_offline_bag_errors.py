"""vdepth-bag input errors: each one fails early with a message naming the problem."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from vdepth_ros.offline.bag_reader import BagFrameSource
from vdepth_ros.offline.bag_types import CAMERA_INFO, COMPRESSED, IMAGE
from vdepth_ros.offline.bag_writer import new_bag_writer
from vdepth_ros.offline.errors import BagReadError, EmptyBagError, MissingTopicError, UnsupportedEncodingError
from vdepth_ros.offline.synth import _camera_info, synthetic_frames, write_image_bag

TS = get_typestore(Stores.ROS2_KILTED)


def _bag(tmp_path: Path, storage: str = "mcap", n: int = 3, **kw) -> Path:
    path = tmp_path / f"in_{storage}"
    write_image_bag(path, synthetic_frames(n, 12, 16), storage=storage, **kw)
    return path


def _raw_image_bag(path: Path, encoding: str, dtype: str, channels: int) -> Path:
    with new_bag_writer(path, "mcap", version=9) as w:
        conn = w.add_connection("/image", "sensor_msgs/msg/Image", typestore=TS)
        T = TS.types
        arr = np.zeros((4, 6, channels), dtype).squeeze()
        msg = T["sensor_msgs/msg/Image"](
            header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="c"),
            height=4,
            width=6,
            encoding=encoding,
            is_bigendian=0,
            step=6 * arr.itemsize * channels,
            data=np.frombuffer(arr.tobytes(), np.uint8),
        )
        w.write(conn, 1, TS.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    return path


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_missing_topic_lists_existing_topics(tmp_path: Path, storage: str) -> None:
    bag = _bag(tmp_path, storage, image_topic="/cam/image_raw", camera_info_topic="/cam/camera_info")
    with pytest.raises(MissingTopicError, match=r"'/front/image' not found.*/cam/camera_info.*/cam/image_raw"):
        BagFrameSource(bag, image_topic="/front/image").open()


def test_default_topic_falls_back_to_the_only_image_topic(tmp_path: Path) -> None:
    bag = _bag(tmp_path, image_topic="/cam/image_raw", camera_info_topic="/cam/camera_info")
    with BagFrameSource(
        bag,
        image_topic="/image",
        image_topic_explicit=False,
        camera_info_topic="/camera_info",
        camera_info_topic_explicit=False,
    ) as src:
        assert src.image_topic == "/cam/image_raw"
        assert src.frame_count == 3
        assert any("only colour image topic" in n for n in src.notes)


def test_explicit_camera_info_topic_missing_is_an_error(tmp_path: Path) -> None:
    bag = _bag(tmp_path)
    with pytest.raises(MissingTopicError, match="camera_info topic '/nope'"):
        BagFrameSource(bag, image_topic="/image", camera_info_topic="/nope").open()


@pytest.mark.parametrize(("encoding", "dtype", "channels"), [("16UC1", "u2", 1), ("i420", "u1", 1)])
def test_unsupported_encoding(tmp_path: Path, encoding: str, dtype: str, channels: int) -> None:
    bag = _raw_image_bag(tmp_path / "bag", encoding, dtype, channels)
    with pytest.raises(UnsupportedEncodingError, match=rf"{encoding}.*(needs|supported:) (one of )?rgb8"):
        BagFrameSource(bag, image_topic="/image").open()


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2"])
def test_yuv_camera_bags_are_read(tmp_path: Path, encoding: str) -> None:
    """What v4l2_camera records: packed YUV 4:2:2 frames decode to RGB images of the same size."""
    bag = _raw_image_bag(tmp_path / "bag", encoding, "u1", 2)
    with BagFrameSource(bag, image_topic="/image", camera_info_topic=None) as src:
        (frame,) = list(src.frames())
    assert frame.rgb.shape == (4, 6, 3) and frame.rgb.dtype == np.uint8


def test_wrong_message_type_on_image_topic(tmp_path: Path) -> None:
    bag = _bag(tmp_path)
    with pytest.raises(UnsupportedEncodingError, match="CameraInfo; expected sensor_msgs/msg/Image"):
        BagFrameSource(bag, image_topic="/camera_info").open()


def test_a_compressed_depth_topic_named_as_the_image_is_called_depth_before_any_work(tmp_path: Path) -> None:
    """A depth camera's `.../compressedDepth` topic (a CompressedImage too) given as the colour image:
    each frame was "malformed" (its PNG follows a 12-byte header), and the run failed only after the
    model had loaded, saying no image could be used."""
    depth = np.full((12, 16), 1500, np.uint16)
    ok, png = cv2.imencode(".png", depth)
    assert ok
    topic = "/cam/depth/image_raw/compressedDepth"
    with new_bag_writer(tmp_path / "in", "mcap", version=9) as w:
        conn = w.add_connection(topic, "sensor_msgs/msg/CompressedImage", typestore=TS)
        T = TS.types
        for i in range(3):
            msg = T["sensor_msgs/msg/CompressedImage"](
                header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=i), frame_id="c"),
                format="16UC1; compressedDepth png",
                data=np.frombuffer(bytes(12) + png.tobytes(), np.uint8),
            )
            w.write(conn, 1_000_000_000 + i, TS.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage"))
    with pytest.raises(UnsupportedEncodingError, match=r"compressedDepth\), not a colour image.*--image-topic"):
        BagFrameSource(tmp_path / "in", image_topic=topic).open()


def test_a_depth_png_amid_a_compressed_colour_stream_is_a_bad_message_named_with_the_tools_fix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 16UC1 png (a depth camera's frame of the compressed plugin) amid a camera's compressed colour
    frames was decoded by the node's assembler as a grey picture of millimetres and run as a frame.
    Now it is a bad message: skipped, told once with vdepth-bag's fix (--image-topic, not the node's
    remap), counted; the colour frames go on."""
    import logging

    colour = cv2.imencode(".png", np.full((12, 16, 3), 120, np.uint8))[1]
    depth = cv2.imencode(".png", np.full((12, 16), 1500, np.uint16))[1]
    T = TS.types
    with new_bag_writer(tmp_path / "in", "mcap", version=9) as w:
        conn = w.add_connection("/image/compressed", "sensor_msgs/msg/CompressedImage", typestore=TS)
        for i in range(5):
            fmt, data = ("16UC1; png compressed", depth) if i in (2, 3) else ("rgb8; png compressed bgr8", colour)
            msg = T["sensor_msgs/msg/CompressedImage"](
                header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=i), frame_id="c"),
                format=fmt,
                data=np.frombuffer(data.tobytes(), np.uint8),
            )
            w.write(conn, 1_000_000_000 + i, TS.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage"))
    caplog.set_level(logging.WARNING)
    with BagFrameSource(tmp_path / "in", image_topic="/image/compressed", camera_info_topic=None) as src:
        frames = list(src.frames())
        assert [f.stamp_ns for f in frames] == [1_000_000_000, 1_000_000_001, 1_000_000_004]
        ((cause, count),) = src.stats.drops.by_cause().items()
    assert count == 2 and "16UC1 png), not a colour image" in cause and "--image-topic" in cause
    told = [r.getMessage() for r in caplog.records if "16UC1" in r.getMessage()]
    assert len(told) == 1 and "--image-topic" in told[0] and "remap" not in told[0]


def test_an_unregistered_sparse_depth_names_the_bags_fix_not_the_nodes_remap(tmp_path: Path) -> None:
    """A depth camera's own stream (another aspect ratio than the image) given as `--sparse-depth-topic`:
    the shared cause named the node's remap, which vdepth-bag rewrote into "read the depth registered to
    this camera", naming no option. It names `--sparse-depth-topic` now, from the cause itself."""
    frames = synthetic_frames(3, 48, 64)
    write_image_bag(tmp_path / "in", frames, sparse_depth=[np.full((48, 48), 2.0, np.float32)] * 3)
    with BagFrameSource(tmp_path / "in", image_topic="/image", sparse_depth_topic="/sparse_depth") as src:
        assert len(list(src.frames())) == 3
        ((reason, count),) = src.stats.sparse_depth_ignored.items()
    assert count == 3 and "another aspect ratio" in reason
    assert "with --sparse-depth-topic (e.g. a RealSense's" in reason and "remap" not in reason


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_empty_bag(tmp_path: Path, storage: str) -> None:
    path = tmp_path / "empty"
    with new_bag_writer(path, storage, version=9) as w:
        w.add_connection("/image", "sensor_msgs/msg/Image", typestore=TS)
    with pytest.raises(EmptyBagError, match="no messages"):
        BagFrameSource(path, image_topic="/image").open()


def test_image_topic_without_messages(tmp_path: Path) -> None:
    path2 = tmp_path / "bag2"
    with new_bag_writer(path2, "mcap", version=9) as w:
        w.add_connection("/image", "sensor_msgs/msg/Image", typestore=TS)
        c = w.add_connection("/x", "std_msgs/msg/String", typestore=TS)
        w.write(c, 1, TS.serialize_cdr(TS.types["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String"))
    with pytest.raises(EmptyBagError, match="'/image' holds no messages"):
        BagFrameSource(path2, image_topic="/image").open()


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag(tmp_path: Path, storage: str) -> None:
    bag = _bag(tmp_path, storage, n=6)
    f = next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(BagReadError, match="truncated or corrupt"):
        BagFrameSource(bag, image_topic="/image").open()


def test_unknown_storage(tmp_path: Path) -> None:
    bag = _bag(tmp_path)
    meta = bag / "metadata.yaml"
    meta.write_text(meta.read_text().replace("storage_identifier: mcap", "storage_identifier: rosbag_v3"))
    with pytest.raises(BagReadError, match=r"unknown bag storage.*rosbag_v3"):
        BagFrameSource(bag, image_topic="/image").open()


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        BagFrameSource(tmp_path / "nope", image_topic="/image").open()


def test_an_error_in_the_frame_code_is_not_blamed_on_the_bag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the reader's own failures read "truncated or corrupt": a bug downstream keeps its type."""

    def broken(*args: object) -> None:
        raise ValueError("a bug in frame building")

    monkeypatch.setattr(BagFrameSource, "_frame", broken)
    bag = _bag(tmp_path, n=20)  # enough frames that some are built while the reader is still reading
    with BagFrameSource(bag, image_topic="/image") as src, pytest.raises(ValueError, match="a bug") as exc:
        list(src.frames())
    assert not isinstance(exc.value, BagReadError)


def test_a_bag_whose_every_image_is_dropped_is_an_error_not_an_empty_output(tmp_path: Path) -> None:
    """Every image malformed (here each buffer is half its size): the run used to succeed with exit
    status 0 and an output bag with no messages; now it fails naming why, and writes nothing."""
    from fakes import LuminanceEngine

    from vdepth_ros.offline.bag import process_bag
    from vdepth_ros.offline.errors import OfflineError

    bag = tmp_path / "bag"
    with new_bag_writer(bag, "mcap", version=9) as w:
        conn = w.add_connection("/image", "sensor_msgs/msg/Image", typestore=TS)
        T = TS.types
        for i in range(3):
            stamp = T["builtin_interfaces/msg/Time"](sec=1, nanosec=i * 1000)
            msg = T["sensor_msgs/msg/Image"](
                header=T["std_msgs/msg/Header"](stamp=stamp, frame_id="c"), height=4, width=6, encoding="rgb8",
                is_bigendian=0, step=18, data=np.zeros(36, np.uint8),
            )  # fmt: skip
            w.write(conn, 1 + i, TS.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    engine = LuminanceEngine(height=48, width=64, frames=8, overlap=3)
    with pytest.raises(OfflineError, match=r"none of the 3 images on '/image' could be used \(3x .*\)"):
        process_bag(bag, tmp_path / "out", params={"scale_source": "range"}, engine=engine)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]  # no staging folder left either


def _two_camera_bag(path: Path, *, encoding: str = "rgb8", infos: tuple[str, str] = ("/cam1/camera_info",
                    "/cam2/camera_info")) -> Path:  # fmt: skip
    """A bag with two cameras (`/cam1/image_raw`, `/cam2/image_raw`, or `.../compressed`), each with
    its camera_info topic (`infos`) in its own optical frame."""
    from rosbags.rosbag2 import Reader

    messages = []
    with new_bag_writer(path, "mcap", version=9) as w:
        for i, cam in enumerate(("cam1", "cam2")):
            part = path.parent / f"{path.name}_{cam}"
            image = f"/{cam}/image_raw" + ("/compressed" if encoding in ("jpeg", "png") else "")
            write_image_bag(part, synthetic_frames(3, 12, 16, seed=i), image_topic=image, camera_info_topic=infos[i],
                            frame_id=f"{cam}_optical", encoding=encoding)  # fmt: skip
            with Reader(part) as r:
                conns = {c.id: w.add_connection(c.topic, c.msgtype, typestore=TS) for c in r.connections}
                messages += [(t, conns[c.id], raw) for c, t, raw in r.messages()]
        for t, conn, raw in sorted(messages, key=lambda m: m[0]):
            w.write(conn, t, raw)
    return path


@pytest.mark.parametrize("encoding", ["rgb8", "jpeg"])
def test_a_chosen_camera_gets_its_own_camera_info_in_a_two_camera_bag(tmp_path: Path, encoding: str) -> None:
    """`vdepth-bag IN --image-topic /cam2/image_raw` on a two-camera bag ran without any camera_info
    (default `/camera_info` absent, two candidates): no point clouds, no /depth/camera_info, although
    `/cam2/camera_info` was right beside the image topic."""
    bag = _two_camera_bag(tmp_path / "two", encoding=encoding)
    image = "/cam2/image_raw" + ("/compressed" if encoding == "jpeg" else "")
    kw = {"camera_info_topic": "/camera_info", "camera_info_topic_explicit": False}
    with BagFrameSource(bag, image_topic=image, **kw) as src:
        assert src.camera_info_topic == "/cam2/camera_info"
        assert any("'/cam2/camera_info', the image topic's own" in n for n in src.notes)
        frames = list(src.frames())
        assert len(frames) == 3 and all(f.camera is not None for f in frames)


def test_an_ambiguous_camera_info_topic_is_an_error_naming_the_choices(tmp_path: Path) -> None:
    """With several CameraInfo topics and none beside the image topic, the run went on without one."""
    bag = _two_camera_bag(tmp_path / "two", infos=("/left/info/camera_info", "/right/info/camera_info"))
    choices = r"several: /left/info/camera_info, /right/info/camera_info \(choose one with --camera-info-topic"
    with pytest.raises(MissingTopicError, match=choices):
        BagFrameSource(bag, image_topic="/cam2/image_raw", camera_info_topic="/camera_info",
                       camera_info_topic_explicit=False).open()  # fmt: skip


def test_another_cameras_camera_info_names_the_bag_option_not_a_remap(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The camera_info of another camera (another frame_id) is named with vdepth-bag's way to choose
    one, `--camera-info-topic`, not the node's remap."""
    bag = _two_camera_bag(tmp_path / "two")
    with caplog.at_level("WARNING"), BagFrameSource(bag, image_topic="/cam2/image_raw",
                                                    camera_info_topic="/cam1/camera_info") as src:  # fmt: skip
        assert len(list(src.frames())) == 3
    warned = [r.getMessage() for r in caplog.records if "the camera_info is in frame 'cam1_optical'" in r.getMessage()]
    assert len(warned) == 1 and "--camera-info-topic" in warned[0] and "remap" not in warned[0], warned


_RECORDER = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("PRAGMA journal_mode=MEMORY")  # rosbag2's sqlite3 storage without the resilient preset
con.execute("PRAGMA synchronous=OFF")
rows = con.execute("SELECT topic_id, timestamp, data FROM messages").fetchall()
stamp = max(r[1] for r in rows)
print("recording", flush=True)
for _ in range(20000):  # bounded: ~1 GB if never stopped
    con.execute("BEGIN")
    for topic_id, _, data in rows[:8]:
        stamp += 33_000_000
        con.execute("INSERT INTO messages (topic_id, timestamp, data) VALUES (?, ?, ?)", (topic_id, stamp, data))
    con.execute("COMMIT")
"""


def test_a_sqlite3_bag_still_being_recorded_is_not_called_corrupt(tmp_path: Path) -> None:
    """`vdepth-bag` on a .db3 bag a recorder is still writing (sqlite's default journal, not WAL):
    rosbags reads the file as immutable, sees pages mid-write, and the user was told the bag "looks
    truncated or corrupt (database disk image is malformed)", about a bag that is fine. Now: it is
    being written, stop the recorder. Run as the user runs it, beside a writing process."""
    import subprocess
    import sys

    bag = tmp_path / "rec"
    write_image_bag(bag, synthetic_frames(40, 120, 160), storage="sqlite3")
    db3 = next(bag.glob("*.db3"))
    recorder = subprocess.Popen([sys.executable, "-c", _RECORDER, str(db3)], stdout=subprocess.PIPE, text=True)
    try:
        assert recorder.stdout is not None and recorder.stdout.readline() == "recording\n"
        vdepth_bag = str(Path(sys.executable).parent / "vdepth-bag")
        proc = subprocess.run(
            [vdepth_bag, str(bag), "-o", str(tmp_path / "out"), "--no-progress"],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
    finally:
        recorder.kill()
        recorder.wait()
    if proc.returncode == 0:  # read between two of the recorder's writes: what was recorded so far
        return
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    assert "being written" in proc.stderr and "Stop the recorder" in proc.stderr, proc.stderr
    assert "corrupt" not in proc.stderr, proc.stderr


def test_several_cameras_without_the_default_topic_name_the_candidates_not_every_topic(tmp_path: Path) -> None:
    """A robot's bag of two cameras (each raw and compressed) beside many other topics: the error listed every
    topic of the bag with its type, the camera topics buried among tf, imu and camera_infos. Now it names the
    colour image topics to choose from, as vdepth-flicker does."""
    from vdepth_ros.offline.synth import _image_raw

    path = tmp_path / "robot"
    T = TS.types
    with new_bag_writer(path, "mcap", version=9) as w:
        conns = [
            (w.add_connection(f"/{cam}/image_raw{sub}", COMPRESSED if sub else IMAGE, typestore=TS), sub)
            for cam in ("front", "rear")
            for sub in ("", "/compressed")
        ]
        info = w.add_connection("/front/camera_info", CAMERA_INFO, typestore=TS)
        stamp = T["builtin_interfaces/msg/Time"](sec=1, nanosec=0)
        header = T["std_msgs/msg/Header"](stamp=stamp, frame_id="cam")
        rgb = np.zeros((12, 16, 3), np.uint8)
        for conn, sub in conns:
            w.write(conn, 1, _image_raw(TS, rgb, "jpeg" if sub else "rgb8", header, 0))
        w.write(info, 1, TS.serialize_cdr(_camera_info(T, header, 16, 12, (10.0, 10.0, 8.0, 6.0), None), CAMERA_INFO))
    with pytest.raises(MissingTopicError) as exc:
        BagFrameSource(path, image_topic="/image", image_topic_explicit=False).open()
    text = str(exc.value)
    assert text.endswith(
        "several colour image topics: /front/image_raw, /rear/image_raw (choose one with --image-topic; one run per "
        "camera)"
    ), text
    assert "camera_info" not in text


def test_a_raw_image_topic_without_messages_names_its_transport_that_has_them(tmp_path: Path) -> None:
    """A camera recorded through /compressed only (the raw topic advertised, but too heavy to record):
    `--image-topic /cam/image_raw` said it "holds no messages", not where the images are."""
    from vdepth_ros.offline.synth import _image_raw

    path = tmp_path / "bag"
    with new_bag_writer(path, "mcap", version=9) as w:
        w.add_connection("/cam/image_raw", IMAGE, typestore=TS)
        jpeg = w.add_connection("/cam/image_raw/compressed", COMPRESSED, typestore=TS)
        header = TS.types["std_msgs/msg/Header"](
            stamp=TS.types["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="c"
        )
        w.write(jpeg, 1, _image_raw(TS, np.zeros((12, 16, 3), np.uint8), "jpeg", header, 0))
    with pytest.raises(
        EmptyBagError, match=r"'/cam/image_raw' holds no messages \(its transport /cam/image_raw/compressed does"
    ):
        BagFrameSource(path, image_topic="/cam/image_raw").open()


def _video_stream_bag(path: Path) -> Path:
    """A camera recorded as Foxglove's H.264 stream (and its camera_info), as ffmpeg_image_transport or Foxglove's
    recorder leave it: no Image or CompressedImage topic."""
    from rosbags.typesys import get_types_from_msg

    ts = get_typestore(Stores.ROS2_KILTED)
    video = "foxglove_msgs/msg/CompressedVideo"
    ts.register(
        get_types_from_msg("builtin_interfaces/Time timestamp\nstring frame_id\nuint8[] data\nstring format", video)
    )
    T = ts.types
    with new_bag_writer(path, "mcap", version=9) as w:
        vc = w.add_connection("/cam/image_raw/h264", video, typestore=ts)
        cc = w.add_connection("/cam/camera_info", CAMERA_INFO, typestore=ts)
        for k in range(3):
            t = 1_700_000_000_000_000_000 + k * 33_333_333
            stamp = T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9)
            packet = T[video](timestamp=stamp, frame_id="cam", data=np.zeros(10, np.uint8), format="h264")
            w.write(vc, t, ts.serialize_cdr(packet, video))
            header = T["std_msgs/msg/Header"](stamp=stamp, frame_id="cam")
            w.write(
                cc, t, ts.serialize_cdr(_camera_info(T, header, 64, 48, (50.0, 50.0, 32.0, 24.0), None), CAMERA_INFO)
            )
    return path


@pytest.mark.parametrize("image_topic", [None, "/cam/image_raw/h264"])
def test_a_camera_recorded_as_a_video_stream_is_named_with_what_to_do(tmp_path: Path, image_topic: str | None) -> None:
    """A bag whose camera is an H.264 stream: "image topic '/image' not found ... (choose one with --image-topic)"
    sent the user to choose the stream, which then was "expected sensor_msgs/msg/Image or CompressedImage" with no
    way on. Both now say it is a video stream and what to record or run instead; vdepth-flicker says the same."""
    from vdepth_ros.offline import flicker

    bag = _video_stream_bag(tmp_path / "rec")
    kind = MissingTopicError if image_topic is None else UnsupportedEncodingError
    with pytest.raises(kind, match=r"h264 \[foxglove_msgs/msg/CompressedVideo\] is a video stream .* vdepth-video"):
        BagFrameSource(bag, image_topic=image_topic).open()
    with pytest.raises(MissingTopicError, match=r"is a video stream .* record the camera's raw or `compressed`"):
        flicker.measure_flicker([bag], image_topic or None, ["/depth"])


def test_a_cameras_base_topic_reads_its_only_image_transport(tmp_path: Path) -> None:
    """`--image-topic /cam2/image_raw` on a bag that recorded only `/cam2/image_raw/compressed` (bandwidth), the
    camera named as image_transport's subscribers name it: "not found", with every topic of the bag listed. Now its
    transport is read, with a note, and paired with the camera's own camera_info."""
    bag = _two_camera_bag(tmp_path / "rec", encoding="jpeg")
    kw = {"camera_info_topic": "/camera_info", "camera_info_topic_explicit": False}
    with BagFrameSource(bag, image_topic="/cam2/image_raw", **kw) as src:
        assert src.image_topic == "/cam2/image_raw/compressed"
        assert src.camera_info_topic == "/cam2/camera_info"
        assert any("reading its image_transport topic '/cam2/image_raw/compressed'" in n for n in src.notes)
        frames = list(src.frames())
        assert len(frames) == 3 and all(f.camera is not None for f in frames)
