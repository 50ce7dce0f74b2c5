"""vdepth-bag on bag folders as `ros2 bag record` leaves them: split into several files, without
metadata.yaml (a recorder that was killed, a folder copied without it), or written by a newer rosbag2."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes import LuminanceEngine

from vdepth_ros.offline.bag import process_bag
from vdepth_ros.offline.errors import BagReadError, OfflineError
from vdepth_ros.offline.synth import join_split_bag, synthetic_frames, write_image_bag

PARAMS = {"scale_source": "range", "near": 0.5, "far": 5.0, "max_depth": 3.0}
START = 1_700_000_000_000_000_000
EXT = {"mcap": ".mcap", "sqlite3": ".db3"}


def _engine() -> LuminanceEngine:
    return LuminanceEngine(height=48, width=64, frames=8, overlap=3)


def _split_recording(folder: Path, storage: str, parts: int = 3, per_part: int = 8, listed: int = 0) -> Path:
    """A split recording's storage files (`rec_0`, `rec_1`, ... as rosbag2 names them), its metadata.yaml listing
    the first `listed` of them (0: none, a recorder killed before it wrote it)."""
    frames = list(synthetic_frames(parts * per_part, 36, 52))
    for k in range(parts):
        part = folder.parent / f"part{k}"
        start = START + k * per_part * 33_333_333
        write_image_bag(part, frames[k * per_part : (k + 1) * per_part], storage=storage, start_ns=start)
    return join_split_bag(folder, [folder.parent / f"part{k}" for k in range(parts)], listed=listed)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_recording_without_metadata_yaml_is_read_from_its_storage_files(tmp_path: Path, storage: str) -> None:
    """A recorder killed before it wrote metadata.yaml (or a folder copied without it): the storage
    files are complete, but the run failed calling the bag "truncated or corrupt"."""
    rec = _split_recording(tmp_path / "rec", storage)
    summary = process_bag(rec, tmp_path / "out", params=PARAMS, engine=_engine())
    assert summary.frames_in == 24 and summary.frames_out == 24
    assert any("metadata.yaml" in n and "3 storage files" in n for n in summary.notes), summary.notes


def test_a_newer_rosbag2_metadata_version_is_read_from_the_storage_files(tmp_path: Path) -> None:
    """rosbags refuses metadata.yaml versions it does not know yet; the storage file itself is fine."""
    from vdepth_ros.offline.bag_types import BAG_VERSION

    bag = tmp_path / "in"
    write_image_bag(bag, synthetic_frames(10, 36, 52))
    meta = bag / "metadata.yaml"
    meta.write_text(meta.read_text().replace(f"version: {BAG_VERSION}", "version: 11"))
    summary = process_bag(bag, tmp_path / "out", params=PARAMS, engine=_engine())
    assert summary.frames_out == 10
    assert any("version 11" in n for n in summary.notes), summary.notes


@pytest.mark.parametrize("metadata", [False, True])
def test_a_cut_off_mcap_is_read_up_to_the_cut(tmp_path: Path, metadata: bool) -> None:
    """The last file of a killed recording, or of one still being written, has no MCAP footer: the
    run failed (naming `mcap recover`, a Go tool most users do not have) although every chunk before
    the cut was whole. Newer rosbag2 rewrites metadata.yaml at each split, so it may be there."""
    import hashlib

    rec = tmp_path / "rec"
    write_image_bag(rec, synthetic_frames(24, 240, 320), start_ns=START)  # ~1 MiB chunks: several
    last = rec / "rec_0.mcap"
    if not metadata:
        (rec / "metadata.yaml").unlink()
    data = last.read_bytes()
    last.write_bytes(data[: len(data) * 2 // 3])
    before = hashlib.sha256(last.read_bytes()).hexdigest()
    summary = process_bag(rec, tmp_path / "out", params=PARAMS, engine=_engine())
    assert 8 <= summary.frames_in < 24 and summary.frames_out == summary.frames_in
    assert any("rec_0.mcap is cut off" in n and "recovered copy" in n for n in summary.notes), summary.notes
    assert hashlib.sha256(last.read_bytes()).hexdigest() == before  # the recording is not touched
    assert not [p for p in tmp_path.iterdir() if p.name not in ("rec", "meta", "out")]  # no copy left behind


def test_a_folder_that_is_not_a_bag_says_so(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    with pytest.raises(BagReadError, match=r"no metadata\.yaml and no \.mcap or \.db3 storage files in it$"):
        process_bag(tmp_path / "photos", tmp_path / "out", params=PARAMS, engine=_engine())
    write_image_bag(tmp_path / "photos" / "run1", synthetic_frames(2, 36, 52))  # the folder bags are recorded into
    with pytest.raises(BagReadError, match=r"in it; it holds the bag run1: pass one"):
        process_bag(tmp_path / "photos", tmp_path / "out", params=PARAMS, engine=_engine())


def _strip_definitions(bag: Path, keep_text: bool = False) -> None:
    """Make a sqlite3 bag look recorded before Iron: no type hashes, and no message definitions
    (`keep_text`: the definitions stay, as pre-Iron MCAP bags carry them)."""
    import sqlite3

    db = next(bag.glob("*.db3"))
    with sqlite3.connect(db) as con:
        if keep_text:
            con.execute("UPDATE message_definitions SET type_description_hash=''")
        else:
            con.execute("DELETE FROM message_definitions")
        con.execute("UPDATE topics SET type_description_hash=''")
    meta = bag / "metadata.yaml"
    lines = meta.read_text().splitlines()
    meta.write_text("\n".join(ln for ln in lines if "RIHS01_" not in ln and "type_description_hash" not in ln) + "\n")


@pytest.mark.parametrize("definitions", [True, False])
def test_the_robots_own_message_types_in_an_old_bag_are_copied_or_named(tmp_path: Path, definitions: bool) -> None:
    """--copy-input-topics on a bag recorded before Iron (no type hashes) with the robot's own
    message type died with rosbags' TypesysError traceback ('Type ... is unknown'). With the
    definition in the bag it is now copied byte for byte; without one (pre-Iron sqlite3) rosbags
    cannot write the type: the run completes, and the summary names what stayed in the input."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from vdepth_ros.offline.bag_writer import new_bag_writer

    bag = tmp_path / "in"
    write_image_bag(bag, synthetic_frames(10, 36, 52), storage="sqlite3", start_ns=START)
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg("int32 a\nstring b\n", "my_robot_msgs/msg/Thing"))
    thing = store.types["my_robot_msgs/msg/Thing"]
    raws = [store.serialize_cdr(thing(a=i, b="x" * i), "my_robot_msgs/msg/Thing") for i in range(10)]
    extra = tmp_path / "extra"
    with new_bag_writer(extra, "sqlite3", version=9) as w:
        conn = w.add_connection("/robot/thing", "my_robot_msgs/msg/Thing", typestore=store)
        for i, raw in enumerate(raws):
            w.write(conn, START + i * 33_333_333, raw)
    _strip_definitions(bag, keep_text=definitions)
    _strip_definitions(extra, keep_text=definitions)
    combined = tmp_path / "combined"
    combined.mkdir()
    shutil.move(next(bag.glob("*.db3")), combined / "combined_0.db3")
    shutil.move(next(extra.glob("*.db3")), combined / "combined_1.db3")  # no metadata.yaml: read directly
    for storage in ("mcap", "sqlite3"):
        out = tmp_path / f"out_{storage}"
        summary = process_bag(combined, out, params=PARAMS, engine=_engine(), copy_input_topics=True, storage=storage)
        with AnyReader([out]) as reader:
            topics = {c.topic for c in reader.connections}
            assert {"/image", "/camera_info", "/depth"} <= topics
            conns = [c for c in reader.connections if c.topic == "/robot/thing"]
            images = [c for c in reader.connections if c.topic == "/image"]
            assert sum(1 for _ in reader.messages(connections=images)) == 10
            if definitions:
                assert [bytes(raw) for _, _, raw in reader.messages(connections=conns)] == raws
                assert conns[0].digest == store.hash_rihs01("my_robot_msgs/msg/Thing")
            else:
                assert not conns
                assert any("/robot/thing" in n and "not copied" in n for n in summary.notes), summary.notes


def test_a_bag_whose_files_overlap_in_time_is_read_in_time_order(tmp_path: Path) -> None:
    """rosbags reads a bag folder's storage files one after another: with the images in one file and camera_info in
    another (a bag split or merged by topic), every image came before any camera_info, so none had a camera (0
    clouds, no depth/camera_info). The files are merged by log time now, as the messages reached the recorder."""
    from rosbags.rosbag2 import Reader

    from vdepth_ros.offline.bag_writer import new_bag_writer

    whole = tmp_path / "whole"
    write_image_bag(whole, synthetic_frames(12, 36, 52), start_ns=START)
    parts = [tmp_path / "images", tmp_path / "infos"]
    for part, topic in zip(parts, ("/image", "/camera_info"), strict=True):
        with Reader(whole) as reader, new_bag_writer(part) as writer:
            (conn,) = [c for c in reader.connections if c.topic == topic]
            out = writer.add_connection(topic, conn.msgtype, msgdef=conn.msgdef.data, rihs01=conn.digest)
            for _, t, raw in reader.messages(connections=[conn]):
                writer.write(out, t, raw)
    rec = join_split_bag(tmp_path / "rec", parts)
    summary = process_bag(rec, tmp_path / "out", params=PARAMS, engine=_engine())
    assert summary.frames_out == 12 and summary.clouds == 12, summary.notes


def test_one_file_of_a_split_bag_says_the_bag_has_more(tmp_path: Path) -> None:
    """A user passing rec_0.mcap of a split recording got a third of it without a word."""
    rec = _split_recording(tmp_path / "rec", "mcap", listed=3)
    summary = process_bag(rec / "rec_0.mcap", tmp_path / "out", params=PARAMS, engine=_engine())
    assert summary.frames_out == 8
    assert any("1 of the 3 files" in n and str(rec) in n for n in summary.notes), summary.notes


@pytest.mark.parametrize(("name", "storage"), [("depth.mcap", "mcap"), ("depth.db3", "sqlite3")])
def test_an_output_named_like_a_storage_file_is_that_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, storage: str
) -> None:
    """`-o depth.mcap` made a folder depth.mcap/ holding depth.mcap.mcap; the input side takes a
    bare .mcap/.db3 file, so the output does too: one storage file, readable as a bag."""
    from rosbags.highlevel import AnyReader

    from vdepth_ros.offline import bag as bagcli
    from vdepth_ros.pipeline import DepthPipeline

    monkeypatch.setattr(bagcli, "build_pipeline", lambda config, engine=None: DepthPipeline(config, _engine()))
    src = tmp_path / "in"
    write_image_bag(src, synthetic_frames(10, 36, 52))
    params = tmp_path / "params.yaml"
    params.write_text("depth_node:\n  ros__parameters:\n" + "".join(f"    {k}: {v}\n" for k, v in PARAMS.items()))
    out = tmp_path / name
    assert bagcli.main([str(src), "-o", str(out), "--params", str(params), "--no-progress"]) == 0
    assert out.is_file()
    with AnyReader([out]) as reader:
        assert {c.topic: c.msgcount for c in reader.connections}["/depth"] == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in", "params.yaml", name])
    other = "sqlite3" if storage == "mcap" else "mcap"
    rc = bagcli.main([str(src), "-o", str(tmp_path / f"x{out.suffix}"), "--storage", other, "--params", str(params)])
    assert rc == 2
    assert "--storage" in capsys.readouterr().err


def test_the_summary_says_what_the_output_holds_of_the_input(tmp_path: Path) -> None:
    """The output holds the depth outputs only unless --copy-input-topics: the summary says so,
    so nobody deletes the recording believing the output kept its other topics."""
    src = tmp_path / "in"
    write_image_bag(src, synthetic_frames(10, 36, 52))
    summary = process_bag(src, tmp_path / "out", params=PARAMS, engine=_engine())
    assert any("--copy-input-topics" in n and "2 topics" in n for n in summary.notes), summary.notes
    # where it plays: "play both together" sent a user of ROS from pip wheels to a ros2 CLI it does not have
    assert any("ROS 2 distro install" in n and "pip wheels has no ros2 CLI" in n for n in summary.notes), summary.notes
    copied = process_bag(src, tmp_path / "out2", params=PARAMS, engine=_engine(), copy_input_topics=True)
    assert any("copied" in n and "2 topics" in n for n in copied.notes), copied.notes


def test_a_camera_that_does_not_stamp_its_images_can_use_the_bags_receive_times(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A driver that leaves every header stamp at zero: the node (and so the bag tool) drops each
    image after the first, and the run wrote 1 of 30 frames with nothing to do about it. The bag
    knows when each message arrived: --log-time-stamps uses that, for every input topic."""
    src = tmp_path / "in"
    write_image_bag(src, synthetic_frames(30, 36, 52), header_stamps_ns=[0] * 30)
    with caplog.at_level("WARNING"):
        summary = process_bag(src, tmp_path / "out", params=PARAMS, engine=_engine())
    assert summary.frames_out == 1 and summary.dropped == 29
    assert "--log-time-stamps" in caplog.text
    summary = process_bag(src, tmp_path / "out2", params=PARAMS, engine=_engine(), log_time_stamps=True, flicker=True)
    assert summary.frames_out == 30 and summary.dropped == 0 and summary.clouds == 30
    assert any("flicker of /depth" in n and "over 29 pairs" in n for n in summary.notes), summary.notes


def test_a_bags_metadata_yaml_stands_for_its_folder(tmp_path: Path) -> None:
    """`vdepth-bag rec/metadata.yaml` (tab completion ends there) said "unknown bag storage '.yaml'",
    and an output inside rec/ was not seen as overlapping the input."""
    src = tmp_path / "rec"
    write_image_bag(src, synthetic_frames(10, 36, 52))
    summary = process_bag(src / "metadata.yaml", tmp_path / "out", params=PARAMS, engine=_engine())
    assert summary.frames_out == 10
    with pytest.raises(OfflineError, match="overlaps the input"):
        process_bag(src / "metadata.yaml", src / "out", params=PARAMS, engine=_engine())


def test_a_ros1_bag_is_refused_naming_the_converter(tmp_path: Path) -> None:
    """rosbags reads ROS 1 bags too, but their messages are ROS 1's: a camera_info (K, not k) died
    with an AttributeError traceback, and --copy-input-topics wrote ROS 1 bytes as CDR (an output
    nothing can read). One error naming rosbags-convert, which comes with rosbags."""
    from rosbags.rosbag1 import Writer as Ros1Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS1_NOETIC)
    T = store.types
    bag = tmp_path / "old.bag"
    with Ros1Writer(bag) as w:
        conn = w.add_connection("/image", "sensor_msgs/msg/Image", typestore=store)
        for i, rgb in enumerate(synthetic_frames(3, 12, 16)):
            stamp = T["builtin_interfaces/msg/Time"](sec=1 + i, nanosec=0)
            header = T["std_msgs/msg/Header"](seq=i, stamp=stamp, frame_id="cam")
            msg = T["sensor_msgs/msg/Image"](
                header=header, height=12, width=16, encoding="rgb8", is_bigendian=0, step=48, data=rgb.reshape(-1)
            )
            w.write(conn, (1 + i) * 1_000_000_000, store.serialize_ros1(msg, "sensor_msgs/msg/Image"))
    with pytest.raises(BagReadError, match="ROS 1 bag") as exc:
        process_bag(bag, tmp_path / "out", params=PARAMS, engine=_engine())
    assert "rosbags-convert --src" in str(exc.value) and "--dst-typestore ros2_kilted" in str(exc.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("profile", "schema", "encoding", "message"),
    [
        ("", "jsonschema", "json", "is an MCAP file but not a ROS 2 bag (profile '', written by 'foxglove', json"),
        ("ros2", "protobuf", "protobuf", "is an MCAP file but not a ROS 2 bag (profile 'ros2', written by 'foxglove'"),
        ("ros1", "ros1msg", "ros1", "is an MCAP file of ROS 1 messages (profile 'ros1'"),
    ],
)
def test_an_mcap_file_that_is_not_a_ros2_bag_says_what_it_is(
    tmp_path: Path, profile: str, schema: str, encoding: str, message: str
) -> None:
    """An MCAP file of Foxglove's JSON or protobuf messages, or of ROS 1 messages, was "truncated or corrupt"
    (rosbags: "Profile is not ros2.", or a KeyError on the schema encoding): the user went looking for damage.
    Now the error names what the file holds and what the tools read; vdepth-flicker says the same."""
    from mcap.writer import Writer as McapWriter

    from vdepth_ros.offline import flicker

    path = tmp_path / "drive.mcap"
    with path.open("wb") as f:
        w = McapWriter(f)
        w.start(profile=profile, library="foxglove")
        channel = w.register_channel(
            topic="/cam/image",
            message_encoding=encoding,
            schema_id=w.register_schema(name="foxglove.CompressedImage", encoding=schema, data=b"{}"),
        )
        for i in range(3):
            w.add_message(channel_id=channel, log_time=START + i, publish_time=START + i, data=b"{}")
        w.finish()
    with pytest.raises(BagReadError) as exc:
        process_bag(path, tmp_path / "out", params=PARAMS, engine=_engine())
    assert f"{path}: it {message}" in str(exc.value) and "corrupt" not in str(exc.value), exc.value
    assert not (tmp_path / "out").exists()
    with pytest.raises(BagReadError, match=r"not a ROS 2 bag|ROS 1 messages"):
        flicker.measure_flicker([path])


def test_copying_a_bag_that_already_has_the_output_topics_names_the_way_out(tmp_path: Path) -> None:
    """A recording made while the live node ran holds /depth already: with --copy-input-topics the
    run failed at the first output frame saying only that the outputs 'need other names'."""
    src = tmp_path / "in"
    write_image_bag(src, synthetic_frames(10, 36, 52))
    first = tmp_path / "first"
    process_bag(src, first, params=PARAMS, engine=_engine(), copy_input_topics=True)  # now holds /depth too
    with pytest.raises(OfflineError, match="--namespace") as exc:
        process_bag(first, tmp_path / "again", params=PARAMS, engine=_engine(), copy_input_topics=True)
    assert "/depth" in str(exc.value)
    summary = process_bag(
        first,
        tmp_path / "again",
        params=PARAMS,
        engine=_engine(),
        copy_input_topics=True,
        namespace="rerun",
        image_topic="/image",
        camera_info_topic="/camera_info",
    )
    assert summary.frames_out == 10


@pytest.mark.parametrize("jump", ["gap", "time jump"])
def test_offline_mode_starts_again_where_causal_restarts(tmp_path: Path, jump: str) -> None:
    """A recording with a 5 s hole, or two sessions merged so the stamps go back: causal mode
    restarts the stream there as the node does, but offline mode stitched across the discontinuity
    as if the frames were continuous. Now each part is solved on its own."""
    shift = 5_000_000_000 if jump == "gap" else -2_000_000_000
    stamps = [START + round(i * 1e9 / 30) for i in range(12)] + [START + shift + round(i * 1e9 / 30) for i in range(12)]
    frames = list(synthetic_frames(24, 36, 52))
    logged = [START + round(i * 1e9 / 30) for i in range(24)]  # the bag's own order: received in sequence
    write_image_bag(tmp_path / "in", frames, stamps_ns=logged, header_stamps_ns=stamps)
    summary = process_bag(tmp_path / "in", tmp_path / "out", params=PARAMS, engine=_engine(), mode="offline")
    assert summary.frames_out == 24
    assert any(f"restarted 1x ({jump})" in n for n in summary.notes), summary.notes
    write_image_bag(tmp_path / "second", frames[12:], stamps_ns=logged[12:], header_stamps_ns=stamps[12:])
    process_bag(tmp_path / "second", tmp_path / "alone", params=PARAMS, engine=_engine(), mode="offline")
    from rosbags.highlevel import AnyReader

    def depth(bag: Path) -> list[bytes]:
        with AnyReader([bag]) as reader:
            conns = [c for c in reader.connections if c.topic == "/depth"]
            return [bytes(raw) for _, _, raw in reader.messages(connections=conns)]

    assert depth(tmp_path / "out")[12:] == depth(tmp_path / "alone")


def _killed_resilient_recording(folder: Path, n: int = 24) -> tuple[Path, dict[str, str]]:
    """A sqlite3 recording as rosbag2 leaves it when killed with `--storage-preset-profile resilient`
    (sqlite's write-ahead log): the newer half of its messages only in `rec_0.db3-wal`, no
    metadata.yaml. Returns the folder and the checksums of its files."""
    import hashlib
    import subprocess
    import sys

    write_image_bag(folder, synthetic_frames(n, 36, 52), storage="sqlite3", start_ns=START)
    (folder / "metadata.yaml").unlink()
    db3 = next(folder.glob("*.db3")).rename(folder / "rec_0.db3")
    recorder = f"""
import os, sqlite3
con = sqlite3.connect({str(db3)!r})
con.execute("PRAGMA journal_mode=WAL")
con.execute("PRAGMA wal_autocheckpoint=0")
rows = con.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY timestamp").fetchall()
half = rows[len(rows) // 2][1]
con.execute("DELETE FROM messages WHERE timestamp >= ?", (half,))
con.commit()
con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
con.executemany("INSERT INTO messages(topic_id, timestamp, data) VALUES (?, ?, ?)", [r for r in rows if r[1] >= half])
con.commit()
os._exit(0)  # killed: the log is never folded into the file
"""
    subprocess.run([sys.executable, "-c", recorder], check=True, timeout=60)
    assert (folder / "rec_0.db3-wal").stat().st_size > 10_000
    return folder, {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_a_killed_resilient_sqlite_recording_is_read_with_the_messages_in_its_wal(tmp_path: Path) -> None:
    """rosbags opens a .db3 as immutable, which ignores its -wal file: half of this recording was
    missing from vdepth-bag's output and vdepth-flicker's count, without a word."""
    import hashlib
    import json
    import subprocess
    import sys

    rec, before = _killed_resilient_recording(tmp_path / "rec")
    summary = process_bag(rec, tmp_path / "out", params=PARAMS, engine=_engine())
    assert summary.frames_in == 24 and summary.frames_out == 24
    assert any("rec_0.db3-wal" in n and "resilient" in n for n in summary.notes), summary.notes
    script = Path(sys.executable).parent / "vdepth-flicker"
    for bag in (rec, rec / "rec_0.db3"):  # the folder, or its storage file
        proc = subprocess.run(
            [str(script), str(tmp_path / "out"), str(bag), "--json"], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)[0]["frames"] == 24 and "rec_0.db3-wal" in proc.stderr
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in rec.iterdir()}
    assert after == before  # the recording is read from a copy, never changed
    assert not list(tmp_path.glob(".vdepth-partial*")) and sorted(p.name for p in tmp_path.iterdir()) == ["out", "rec"]


def test_a_topic_whose_definition_rosbags_cannot_use_is_named_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--copy-input-topics on an MCAP recording with one topic whose embedded definition lacks a type
    it uses (written by a tool that left out a dependency): the run died with rosbags' KeyError
    traceback while hashing it, and nothing was written."""
    from mcap.reader import make_reader
    from mcap.writer import Writer

    from vdepth_ros.offline import bag as bagcli
    from vdepth_ros.pipeline import DepthPipeline

    monkeypatch.setattr(bagcli, "build_pipeline", lambda config, engine=None: DepthPipeline(config, _engine()))
    recorded = tmp_path / "recorded"
    write_image_bag(recorded, synthetic_frames(10, 36, 52), start_ns=START)
    bag = tmp_path / "in"
    bag.mkdir()
    with next(recorded.glob("*.mcap")).open("rb") as f, (bag / "in_0.mcap").open("wb") as g:
        reader, writer = make_reader(f), Writer(g)
        writer.start(profile="ros2", library="another recorder")
        summary = reader.get_summary()
        schemas = {i: writer.register_schema(s.name, s.encoding, s.data) for i, s in summary.schemas.items()}
        channels = {
            i: writer.register_channel(c.topic, c.message_encoding, schemas[c.schema_id], c.metadata)
            for i, c in summary.channels.items()
        }
        status = writer.register_schema("my_msgs/msg/Status", "ros2msg", b"my_msgs/Other other\nint32 x\n")
        status_channel = writer.register_channel("/robot/status", "cdr", status, {"offered_qos_profiles": ""})
        for _, channel, message in reader.iter_messages():
            writer.add_message(channels[channel.id], message.log_time, message.data, message.publish_time)
        writer.add_message(status_channel, START, b"\x00\x01\x00\x00" + bytes(8), START)
        writer.finish()
    out = tmp_path / "out"
    params = tmp_path / "params.yaml"
    params.write_text("depth_node:\n  ros__parameters:\n    scale_source: range\n")
    rc = bagcli.main([str(bag), "-o", str(out), "--params", str(params), "--copy-input-topics", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Traceback" not in captured.err
    assert "/robot/status (my_msgs/msg/Status) not copied: rosbags cannot use the type's definition" in captured.out
    assert "my_msgs/msg/Other" in captured.out
    from rosbags.highlevel import AnyReader

    with AnyReader([out]) as r:
        assert {"/image", "/camera_info", "/depth"} <= {c.topic for c in r.connections}


def test_a_split_recording_copied_in_part_is_read_from_the_files_there(tmp_path: Path) -> None:
    """A split recording whose metadata.yaml lists a file that was not copied (only the first parts
    taken off the robot) failed as "truncated or corrupt", although the files there are whole."""
    rec = _split_recording(tmp_path / "rec", "mcap", listed=3)
    (rec / "rec_2.mcap").unlink()
    summary = process_bag(rec, tmp_path / "out", params=PARAMS, engine=_engine())
    assert summary.frames_in == 16 and summary.frames_out == 16
    assert any("rec_2.mcap: copied in part?" in n and "2 storage files" in n for n in summary.notes), summary.notes


def _two_cameras(folder: Path) -> None:
    """A robot's recording of two cameras of the same size: the front one on the node's default names
    (`/image`, `/camera_info`, fx 40), the rear one as image_transport names it (`/rear/image_raw`,
    `/rear/camera_info`, fx 80)."""
    from rosbags.typesys import get_typestore

    from vdepth_ros.offline.bag_types import CAMERA_INFO, IMAGE, TYPESTORES
    from vdepth_ros.offline.bag_writer import new_bag_writer
    from vdepth_ros.offline.synth import _camera_info, _image_raw

    ts = get_typestore(TYPESTORES["kilted"])
    T = ts.types
    cameras = {
        "front": ("/image", "/camera_info", (40.0, 40.0, 26.0, 18.0), list(synthetic_frames(24, 36, 52, seed=0))),
        "rear": (
            "/rear/image_raw",
            "/rear/camera_info",
            (80.0, 80.0, 20.0, 15.0),
            list(synthetic_frames(24, 36, 52, 1)),
        ),
    }
    with new_bag_writer(folder, "mcap", version=9) as w:
        conns = {
            name: (w.add_connection(img, IMAGE, typestore=ts), w.add_connection(info, CAMERA_INFO, typestore=ts))
            for name, (img, info, _, _) in cameras.items()
        }
        for i in range(24):
            t = START + i * 33_333_333
            header = T["std_msgs/msg/Header"](
                stamp=T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9), frame_id="cam"
            )
            for name, (_, _, k, frames) in cameras.items():
                w.write(conns[name][1], t, ts.serialize_cdr(_camera_info(T, header, 52, 36, k, None), CAMERA_INFO))
                w.write(conns[name][0], t, _image_raw(ts, frames[i], "rgb8", header, i))


def _written_fx(bag: Path) -> set[float]:
    from rosbags.highlevel import AnyReader

    with AnyReader([bag]) as reader:
        conns = [c for c in reader.connections if c.topic.endswith("depth/camera_info")]
        return {float(reader.deserialize(raw, c.msgtype).k[0]) for c, _, raw in reader.messages(connections=conns)}


def test_the_camera_named_by_image_topic_gets_its_own_camera_info_not_the_default_ones(tmp_path: Path) -> None:
    """`--image-topic /rear/image_raw` in a bag whose front camera is on the default names: the rear
    images were paired with /camera_info, the front camera's calibration (same size, so no word),
    and every cloud and depth/camera_info of the rear camera was the front one's."""
    from fakes import run_offline_cli

    _two_cameras(tmp_path / "rec")
    (tmp_path / "params.yaml").write_text("/**:\n  ros__parameters:\n    scale_source: range\n")
    args = ["rec", "--params", "params.yaml", "--image-topic", "/rear/image_raw", "-o", "rear"]
    proc = run_offline_cli("bag", args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "'/rear/camera_info'" in proc.stdout, proc.stdout
    assert _written_fx(tmp_path / "rear") == {80.0}
    # each camera in one run, chained into one output, as docs/offline.md shows
    args = ["rec", "--params", "params.yaml", "--copy-input-topics", "-o", "front"]
    assert run_offline_cli("bag", args, tmp_path).returncode == 0
    args = ["front", "--params", "params.yaml", "--copy-input-topics", "-o", "both", "--namespace", "rear"]
    proc = run_offline_cli("bag", [*args, "--image-topic", "/rear/image_raw"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _written_fx(tmp_path / "front") == {40.0}
    from rosbags.highlevel import AnyReader

    with AnyReader([tmp_path / "both"]) as reader:
        fx = {}
        for c, _, raw in reader.messages(connections=[c for c in reader.connections if "depth/camera_info" in c.topic]):
            fx.setdefault(c.topic, set()).add(float(reader.deserialize(raw, c.msgtype).k[0]))
    assert fx == {"/depth/camera_info": {40.0}, "/rear/depth/camera_info": {80.0}}, fx
    # the camera_info named is used as named
    args = ["rec", "--params", "params.yaml", "--image-topic", "/rear/image_raw", "-o", "named"]
    proc = run_offline_cli("bag", [*args, "--camera-info-topic", "/camera_info"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _written_fx(tmp_path / "named") == {40.0}


def _depth_camera_recording(
    folder: Path, encoding: str, metres: Any, depth_clock_ns: int = 0, codec: str = "png"
) -> None:
    """A depth camera's recording as a robot streams it: colour + camera_info, and the aligned depth
    as image_transport's compressedDepth plugin sends it (`<encoding>; compressedDepth png`: a 12-byte
    header, then a 16-bit PNG of millimetres, or of quantized inverse depth for 32FC1).
    `metres(rgb)` gives each frame's depth; `depth_clock_ns`: the depth's stamps are this far ahead
    (a depth sensor stamping with another clock); `codec`: the plugin's format, png or rvl."""
    import struct

    import cv2
    from fakes import rvl_encode
    from rosbags.typesys import get_typestore

    from vdepth_ros.offline.bag_types import CAMERA_INFO, COMPRESSED, IMAGE, TYPESTORES
    from vdepth_ros.offline.bag_writer import new_bag_writer
    from vdepth_ros.offline.synth import _camera_info, _image_raw
    from vdepth_ros.offline.videoio import default_intrinsics

    ts = get_typestore(TYPESTORES["kilted"])
    T = ts.types
    quant_a, quant_b = 100.0, 10.0  # the plugin's depth_quantization 100, depth_max 10
    with new_bag_writer(folder, "mcap", version=9) as w:
        image = w.add_connection("/camera/color/image_raw", IMAGE, typestore=ts)
        info = w.add_connection("/camera/color/camera_info", CAMERA_INFO, typestore=ts)
        depth = w.add_connection("/camera/aligned_depth_to_color/image_raw/compressedDepth", COMPRESSED, typestore=ts)
        for i, rgb in enumerate(synthetic_frames(24, 36, 52)):
            t = START + i * 33_333_333
            header = T["std_msgs/msg/Header"](
                stamp=T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9), frame_id="color"
            )
            w.write(
                info,
                t,
                ts.serialize_cdr(_camera_info(T, header, 52, 36, default_intrinsics(52, 36), None), CAMERA_INFO),
            )
            w.write(image, t, _image_raw(ts, rgb, "rgb8", header, i))
            z = metres(rgb)
            samples = np.round(z * 1000 if encoding == "16UC1" else quant_a / z + quant_b).astype(np.uint16)
            if codec == "rvl":
                coded = struct.pack("<II", samples.shape[1], samples.shape[0]) + rvl_encode(samples)
            else:
                coded = cv2.imencode(".png", samples)[1].tobytes()
            data = struct.pack("<iff", 0, quant_a, quant_b) + coded
            td = t + depth_clock_ns
            depth_header = T["std_msgs/msg/Header"](
                stamp=T["builtin_interfaces/msg/Time"](sec=td // 10**9, nanosec=td % 10**9), frame_id="color"
            )
            msg = T[COMPRESSED](
                header=depth_header, format=f"{encoding}; compressedDepth {codec}", data=np.frombuffer(data, np.uint8)
            )
            w.write(depth, t, ts.serialize_cdr(msg, COMPRESSED))


def _luminance_depth(rgb: np.ndarray) -> np.ndarray:
    """Metres whose inverse is the fake model's disparity (0.1 + luminance) over 0.5: a depth camera
    that agrees with the model, so the metric fit is exact."""
    lum = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
    return 1.0 / ((0.1 + lum) / 0.5)


@pytest.mark.parametrize(("encoding", "codec"), [("16UC1", "png"), ("32FC1", "png"), ("32FC1", "rvl")])
def test_a_depth_camera_recorded_as_compressed_depth_is_a_metric_input(
    tmp_path: Path, encoding: str, codec: str
) -> None:
    """A RealSense recorded over wifi keeps its depth as `.../compressedDepth` (CompressedImage):
    `vdepth-bag --sparse-depth-topic` refused it ("must be Image or PointCloud2, not CompressedImage")
    and so did `vdepth-flicker --depth-topic`, although it is the depth camera the user wants to scale by
    and compare with."""
    import json

    from fakes import run_offline_cli
    from rosbags.highlevel import AnyReader

    topic = "/camera/aligned_depth_to_color/image_raw/compressedDepth"
    _depth_camera_recording(tmp_path / "rec", encoding, _luminance_depth, codec=codec)
    (tmp_path / "params.yaml").write_text("depth_node:\n  ros__parameters:\n    sparse_min_points: 10\n")
    proc = run_offline_cli(
        "bag", ["rec", "-o", "out", "--params", "params.yaml", "--sparse-depth-topic", topic], tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "/depth (24)" in proc.stdout and "scale source: sparse (24 frames)" in proc.stdout, proc.stdout
    with AnyReader([tmp_path / "out"]) as reader:
        conns = [c for c in reader.connections if c.topic == "/depth"]
        c, _, raw = next(reader.messages(connections=conns))
        msg = reader.deserialize(raw, c.msgtype)
    written = np.frombuffer(msg.data, np.float32).reshape(msg.height, msg.width)
    truth = _luminance_depth(next(synthetic_frames(1, 36, 52)))
    assert np.nanmedian(np.abs(written - truth) / truth) < 0.05
    script = Path(sys.executable).parent / "vdepth-flicker"
    proc = subprocess.run([str(script), "rec", "--depth-topic", topic, "--json"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["frames"] == 24


def test_metric_input_that_never_fits_is_named_not_counted_as_the_scale_source(tmp_path: Path) -> None:
    """A depth topic whose depth does not fit the images (here: far where the model sees near): the
    summary said "scale source: sparse (24 frames)" while no /depth was written, without a word why."""
    from fakes import run_offline_cli

    topic = "/camera/aligned_depth_to_color/image_raw/compressedDepth"
    _depth_camera_recording(tmp_path / "rec", "16UC1", lambda rgb: 1.0 / _luminance_depth(rgb))
    (tmp_path / "params.yaml").write_text("depth_node:\n  ros__parameters:\n    sparse_min_points: 10\n")
    proc = run_offline_cli(
        "bag", ["rec", "-o", "out", "--params", "params.yaml", "--sparse-depth-topic", topic], tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "/depth (" not in proc.stdout and "scale source: sparse (" not in proc.stdout, proc.stdout
    assert (
        f"24 of 24 frames have no metric depth (disparity only, no cloud): the metric input on {topic}" in proc.stdout
    )


def test_a_depth_topic_on_another_clock_is_named_in_the_summary(tmp_path: Path) -> None:
    """A depth sensor stamping with its own clock (2.5 s ahead of the camera's): no frame found a depth
    sample within sparse_depth_slop, and the summary blamed the fit ("fewer than sparse_min_points
    samples in a window, or a fit of negative scale"), not the stamps. Now a note says how many frames
    found no sample and how far the depth's stamps are from theirs."""
    from fakes import run_offline_cli

    topic = "/camera/aligned_depth_to_color/image_raw/compressedDepth"
    _depth_camera_recording(tmp_path / "rec", "16UC1", _luminance_depth, depth_clock_ns=2_500_000_000)
    (tmp_path / "params.yaml").write_text("depth_node:\n  ros__parameters:\n    sparse_min_points: 10\n")
    proc = run_offline_cli(
        "bag", ["rec", "-o", "out", "--params", "params.yaml", "--sparse-depth-topic", topic], tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert f"24 of 24 frames had no sample on {topic} stamped within sparse_depth_slop" in proc.stdout, proc.stdout
    assert "s after it: a sensor stamping with another clock" in proc.stdout, proc.stdout


def test_asking_for_two_cameras_in_one_run_names_the_way_to_run_both(tmp_path: Path) -> None:
    """`--image-topic /image --image-topic /rear/image_raw`: argparse kept the last one, so the run
    wrote the rear camera's depth only, as if the front one had been asked for by mistake."""
    from fakes import run_offline_cli

    _two_cameras(tmp_path / "rec")
    for option, topics in [("--image-topic", ["/image", "/rear/image_raw"]),
                           ("--camera-info-topic", ["/camera_info", "/rear/camera_info"])]:  # fmt: skip
        args = ["rec", "-o", "out", option, topics[0], option, topics[1]]
        proc = run_offline_cli("bag", args, tmp_path)
        assert proc.returncode == 2, proc.stdout
        assert f"{option} given twice ({topics[0]}, {topics[1]}): one camera per run" in proc.stderr, proc.stderr
        assert "--namespace" in proc.stderr and "Several cameras" in proc.stderr
        assert not (tmp_path / "out").exists()


def test_the_summary_says_why_images_were_dropped_and_the_fix(tmp_path: Path) -> None:
    """A driver that stamps every image 0: the run ends "30 frames in, 1 out, 29 dropped", and the one
    WARNING saying why (and naming --log-time-stamps) was printed at the start, hours of progress bar
    before the summary on a long bag, and not in --json at all."""
    import json

    from fakes import run_offline_cli

    write_image_bag(tmp_path / "rec", synthetic_frames(30, 36, 52), header_stamps_ns=[0] * 30)
    (tmp_path / "params.yaml").write_text("depth_node:\n  ros__parameters:\n    scale_source: range\n")
    proc = run_offline_cli("bag", ["rec", "-o", "out", "--params", "params.yaml", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    notes = [n for n in json.loads(proc.stdout)["notes"] if n.startswith("dropped 29 of the 30 images: its stamp")]
    assert len(notes) == 1 and "--log-time-stamps" in notes[0], proc.stdout


@pytest.mark.parametrize("metadata", [True, False])
def test_an_output_beside_one_file_of_a_recording_is_refused_but_not_beside_a_lone_file(
    tmp_path: Path, metadata: bool
) -> None:
    """`vdepth-bag rec/rec_0.mcap -o rec/depth.mcap` wrote the output into the user's recording folder: read
    again without its metadata.yaml (a killed recorder's folder, or `ros2 bag reindex`), the depth was one more
    file of the recording. The folder is the input then, and the output may not go in it; a lone .mcap among
    others in a folder of the user's (~/bags/run1.mcap) is its own recording, with outputs beside it."""
    rec = _split_recording(tmp_path / "rec", "mcap", listed=3 if metadata else 0)
    before = sorted(p.name for p in rec.iterdir())
    with pytest.raises(OfflineError, match=f"overlaps the input {rec}"):
        process_bag(rec / "rec_0.mcap", rec / "depth.mcap", params=PARAMS, engine=_engine())
    assert sorted(p.name for p in rec.iterdir()) == before
    bags = tmp_path / "bags"
    bags.mkdir()
    shutil.copy(rec / "rec_1.mcap", bags / "run1.mcap")
    shutil.copy(rec / "rec_2.mcap", bags / "run2.mcap")
    summary = process_bag(bags / "run1.mcap", bags / "run1_depth.mcap", params=PARAMS, engine=_engine())
    assert summary.frames_out == 8 and (bags / "run1_depth.mcap").is_file()


def _realsense_recording(path: Path, n: int = 12) -> Path:
    """What `ros2 bag record -a` keeps of a RealSense with image_transport's plugins: the colour camera raw and
    `/compressed`, the depth camera raw (16UC1), `/compressed` (a 16-bit PNG, "16UC1; png compressed") and
    `/compressedDepth`, and the colour camera_info."""
    import cv2
    from rosbags.typesys import get_typestore

    from vdepth_ros.offline.bag_types import CAMERA_INFO, COMPRESSED, IMAGE, TYPESTORES
    from vdepth_ros.offline.bag_writer import image_message, new_bag_writer
    from vdepth_ros.offline.synth import _camera_info, _image_raw
    from vdepth_ros.offline.videoio import default_intrinsics

    ts = get_typestore(TYPESTORES["kilted"])
    T = ts.types
    colour, depth = "/camera/color/image_raw", "/camera/depth/image_rect_raw"
    with new_bag_writer(path, "mcap", version=9) as w:
        conns = {
            "rgb": w.add_connection(colour, IMAGE, typestore=ts),
            "jpeg": w.add_connection(f"{colour}/compressed", COMPRESSED, typestore=ts),
            "info": w.add_connection("/camera/color/camera_info", CAMERA_INFO, typestore=ts),
            "depth": w.add_connection(depth, IMAGE, typestore=ts),
            "png": w.add_connection(f"{depth}/compressed", COMPRESSED, typestore=ts),
            "cdepth": w.add_connection(f"{depth}/compressedDepth", COMPRESSED, typestore=ts),
        }
        for k, rgb in enumerate(synthetic_frames(n, 48, 64)):
            t = START + k * 33_333_333
            stamp = T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9)
            header = T["std_msgs/msg/Header"](stamp=stamp, frame_id="camera_color_optical_frame")
            mm = np.full((48, 64), 1500 + k, np.uint16)
            png = cv2.imencode(".png", mm)[1].reshape(-1)
            raws = {
                "rgb": _image_raw(ts, rgb, "rgb8", header, k),
                "jpeg": _image_raw(ts, rgb, "jpeg", header, k),
                "info": ts.serialize_cdr(
                    _camera_info(T, header, 64, 48, default_intrinsics(64, 48), None), CAMERA_INFO
                ),
                "depth": ts.serialize_cdr(image_message(ts, header, mm, "16UC1"), IMAGE),
                "png": ts.serialize_cdr(
                    T[COMPRESSED](header=header, format="16UC1; png compressed ", data=png), COMPRESSED
                ),
                "cdepth": ts.serialize_cdr(
                    T[COMPRESSED](
                        header=header,
                        format="16UC1; compressedDepth png",
                        data=np.concatenate([np.zeros(12, np.uint8), png]),
                    ),
                    COMPRESSED,
                ),
            }
            for key, raw in raws.items():
                w.write(conns[key], t, raw)
    return path


def test_a_camera_recorded_raw_and_compressed_is_one_camera_to_choose(tmp_path: Path) -> None:
    """`ros2 bag record -a` of one RealSense keeps each camera raw and as image_transport's `/compressed` (and
    `/compressedDepth`): vdepth-bag called the colour camera ambiguous with itself ("several colour image
    topics"), and took the depth camera's 16-bit PNG `/compressed` for a colour camera; vdepth-flicker likewise.
    Now a camera's transports are that camera, and a 16UC1 PNG is depth: the raw colour topic is chosen."""
    from vdepth_ros.offline import flicker
    from vdepth_ros.offline.bag_messages import open_reader

    bag = _realsense_recording(tmp_path / "rs")
    summary = process_bag(bag, tmp_path / "out", params=PARAMS, engine=_engine())
    assert summary.frames_out == 12
    assert any(
        "using its only colour image topic '/camera/color/image_raw' (the same camera as "
        "/camera/color/image_raw/compressed, read raw)" in n
        for n in summary.notes
    ), summary.notes
    assert any("'/camera/color/camera_info', the image topic's own" in n for n in summary.notes), summary.notes
    reader = open_reader([bag], "kilted")
    try:
        image, depth = flicker.default_topics(reader, None, None)
    finally:
        reader.close()
    assert (image, depth) == ("/camera/color/image_raw", ["/camera/depth/image_rect_raw"])


def test_a_depth_cameras_compressed_png_named_as_the_image_is_called_depth_before_any_work(tmp_path: Path) -> None:
    """`--image-topic /camera/depth/image_rect_raw/compressed` (a 16UC1 PNG of millimetres): its depth ran through
    the model as a grey picture, without a word. Now it is refused as a depth image, as its raw topic is."""
    bag = _realsense_recording(tmp_path / "rs")
    for topic in ("/camera/depth/image_rect_raw/compressed", "/camera/depth/image_rect_raw"):
        with pytest.raises(OfflineError, match=r"is a depth image.*not a colour image.*--image-topic") as exc:
            process_bag(bag, tmp_path / "out", params=PARAMS, engine=_engine(), image_topic=topic)
        assert topic in str(exc.value)
    assert not (tmp_path / "out").exists()


def test_a_camera_changing_its_image_size_mid_bag_is_in_the_summary(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A camera switching modes mid-recording (here between two sizes): each change restarts the stream, as the
    node's does, but the summary said nothing of it (the restarts were in the INFO log alone), while a gap or a
    time jump is counted there. The log had two INFO lines per change (the reset, the new stream's sizes): they
    are rate-limited now (`PeriodicLog`), the count in the summary."""
    import logging

    frames = [np.ascontiguousarray(f if k < 8 or k % 2 else f[::2, ::2]) for k, f in enumerate(synthetic_frames(20))]
    write_image_bag(tmp_path / "rec", frames)
    with caplog.at_level(logging.INFO, logger="vdepth_ros"):
        summary = process_bag(tmp_path / "rec", tmp_path / "out", params=PARAMS, engine=_engine())
    assert summary.frames_out == 20
    assert "stream restarted 12x (the image size changed), as the live node would" in summary.notes, summary.notes
    lines = [r.getMessage() for r in caplog.records]
    assert sum(line.startswith("depth pipeline reset: input resolution") for line in lines) <= 1, lines
    assert sum(line.startswith("stream of ") for line in lines) == 2, lines  # each size's, once


def test_a_split_file_its_metadata_yaml_does_not_list_is_read(tmp_path: Path) -> None:
    """A split recording whose metadata.yaml was written before its last file (the recorder killed, or still
    recording, in rec_2): rosbags reads the files listed alone, so the last part was missing without a word
    (16 of 24 frames). Now the folder is read from its storage files, with a note naming the file."""
    rec = _split_recording(tmp_path / "rec", "mcap", listed=2)
    summary = process_bag(rec, tmp_path / "out", params=PARAMS, engine=_engine())
    assert summary.frames_in == 24 and summary.frames_out == 24
    assert any("does not list (rec_2.mcap" in n for n in summary.notes), summary.notes


def test_a_kinect2_recording_of_its_compressed_tiff_streams_is_read(tmp_path: Path) -> None:
    """kinect2_bridge compresses its IR and depth itself, as TIFF by default: "16UC1; tiff compressed" on
    sd/image_ir/compressed and sd/image_depth/compressed. vdepth-bag refused its IR as a depth image even with
    `image_encoding: mono16` (as its raw IR is read), and every depth sample as an undecodable compressedDepth png.
    The IR is read as the camera and the depth as its metric scale, every frame."""
    import cv2
    from rosbags.typesys import get_typestore

    from vdepth_ros.offline.bag_types import CAMERA_INFO, COMPRESSED, TYPESTORES
    from vdepth_ros.offline.bag_writer import new_bag_writer
    from vdepth_ros.offline.synth import _camera_info
    from vdepth_ros.offline.videoio import default_intrinsics

    ts = get_typestore(TYPESTORES["kilted"])
    T = ts.types
    ir, depth, n = "/kinect2/sd/image_ir/compressed", "/kinect2/sd/image_depth/compressed", 12
    with new_bag_writer(tmp_path / "rec") as w:
        conns = {
            t: w.add_connection(t, m, typestore=ts)
            for t, m in ((ir, COMPRESSED), (depth, COMPRESSED), ("/kinect2/sd/camera_info", CAMERA_INFO))
        }
        for k, rgb in enumerate(synthetic_frames(n, 36, 52)):
            t = START + k * 33_333_333
            stamp = T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9)
            header = T["std_msgs/msg/Header"](stamp=stamp, frame_id="kinect2_ir_optical_frame")
            grey = rgb.mean(axis=2).astype(np.uint8)
            for topic, samples in ((ir, grey.astype(np.uint16) << 4), (depth, np.round(_luminance_depth(rgb) * 1000))):
                tiff = cv2.imencode(".tif", samples.astype(np.uint16))[1].reshape(-1)
                msg = T[COMPRESSED](header=header, format="16UC1; tiff compressed", data=tiff)
                w.write(conns[topic], t, ts.serialize_cdr(msg, COMPRESSED))
            info = _camera_info(T, header, 52, 36, default_intrinsics(52, 36), None)
            w.write(conns["/kinect2/sd/camera_info"], t, ts.serialize_cdr(info, CAMERA_INFO))
    summary = process_bag(
        tmp_path / "rec",
        tmp_path / "out",
        params={**PARAMS, "scale_source": "sparse", "sparse_min_points": 10, "image_encoding": "mono16"},
        image_topic=ir,
        camera_info_topic="/kinect2/sd/camera_info",
        sparse_depth_topic=depth,
        engine=_engine(),
    )
    assert summary.frames_in == summary.frames_out == n and summary.dropped == 0, summary
    assert summary.scale_sources == {"sparse": n}, summary.scale_sources
