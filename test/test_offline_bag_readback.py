"""vdepth-bag's output read back by stock readers, not by the code that wrote it: the MCAP reference decoder
(`mcap_ros2`, which decodes with the schema text each file carries), rosbags, and the sqlite3 layout rosbag2
reads. Every topic with its type, message count and, for the copied ones, the recording's QoS profiles; inputs
recorded the way Humble and Foxy write them (metadata.yaml versions 5 and 4, QoS as a YAML string, no
message definitions)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml
from fakes import LuminanceEngine
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.metadata import QosReliability

from vdepth_ros.offline.bag import process_bag
from vdepth_ros.offline.synth import synthetic_frames, write_image_bag

N = 12
IMAGE, INFO = "/cam/image_raw/compressed", "/cam/camera_info"
OUTPUTS = {
    "/est/depth": "sensor_msgs/msg/Image",
    "/est/disparity": "sensor_msgs/msg/Image",
    "/est/points": "sensor_msgs/msg/PointCloud2",
    "/est/depth/camera_info": "sensor_msgs/msg/CameraInfo",
}
INPUTS = {IMAGE: "sensor_msgs/msg/CompressedImage", INFO: "sensor_msgs/msg/CameraInfo"}
_FOREVER = "    sec: 9223372036\n    nsec: 854775807\n"


def _qos(reliability: int) -> str:
    """One QoS profile as Humble's rosbag2 writes it into metadata.yaml and the topics table (a YAML string)."""
    return (
        f"- history: 3\n  depth: 0\n  reliability: {reliability}\n  durability: 2\n  deadline:\n{_FOREVER}"
        f"  lifespan:\n{_FOREVER}  liveliness: 1\n  liveliness_lease_duration:\n{_FOREVER}"
        "  avoid_ros_namespace_conventions: false"
    )


def _older_distro_bag(src: Path, dst: Path, distro: str) -> Path:
    """`src` (a sqlite3 bag rosbags wrote) as Humble (metadata version 5, schema 3) or Foxy (version 4, no schema
    table) record it: no message definitions, no type hashes; the camera best effort, camera_info reliable."""
    meta = yaml.safe_load((src / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    dst.mkdir()
    name = f"{dst.name}_0.db3"
    with sqlite3.connect(next(src.glob("*.db3"))) as db_in, sqlite3.connect(dst / name) as out:
        if distro == "humble":
            out.execute("CREATE TABLE schema(schema_version INTEGER PRIMARY KEY, ros_distro TEXT NOT NULL)")
            out.execute("INSERT INTO schema VALUES (3, 'humble')")
        out.execute("CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, "
                    "serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL)")  # fmt: skip
        out.execute("CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, "
                    "timestamp INTEGER NOT NULL, data BLOB NOT NULL)")  # fmt: skip
        topics = []
        for tid, topic, msgtype, fmt in db_in.execute("SELECT id, name, type, serialization_format FROM topics"):
            qos = _qos(2 if topic == IMAGE else 1)
            out.execute("INSERT INTO topics VALUES (?, ?, ?, ?, ?)", (tid, topic, msgtype, fmt, qos))
            count = db_in.execute("SELECT count(*) FROM messages WHERE topic_id = ?", (tid,)).fetchone()[0]
            metadata = {"name": topic, "type": msgtype, "serialization_format": fmt, "offered_qos_profiles": qos}
            topics.append({"topic_metadata": metadata, "message_count": count})
        out.executemany("INSERT INTO messages VALUES (?, ?, ?, ?)", db_in.execute("SELECT * FROM messages"))
    info = {
        "version": 5 if distro == "humble" else 4,
        "storage_identifier": "sqlite3",
        "relative_file_paths": [name],
        "duration": meta["duration"],
        "starting_time": meta["starting_time"],
        "message_count": meta["message_count"],
        "topics_with_message_count": topics,
        "compression_format": "",
        "compression_mode": "",
    }
    (dst / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False))
    return dst


def _recording(tmp_path: Path, distro: str) -> Path:
    storage = "mcap" if distro == "kilted" else "sqlite3"
    src = tmp_path / f"rec_{storage}"
    typestore = "kilted" if distro == "kilted" else "humble"
    write_image_bag(src, synthetic_frames(N, 48, 64), storage=storage, typestore=typestore, encoding="jpeg",
                    image_topic=IMAGE, camera_info_topic=INFO)  # fmt: skip
    return src if distro == "kilted" else _older_distro_bag(src, tmp_path / f"rec_{distro}", distro)


def _run(src: Path, out: Path, storage: str, typestore: str) -> None:
    params = {"scale_source": "range", "near": 0.5, "far": 5.0, "cloud_stride": 4}
    s = process_bag(src, out, params=params, engine=LuminanceEngine(48, 64, 4, 2), storage=storage,
                    copy_input_topics=True, namespace="est", typestore=typestore)  # fmt: skip
    assert s.frames_out == N


@pytest.mark.parametrize("distro", ["kilted", "humble", "foxy"])
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_every_output_topic_reads_back_with_its_type_count_and_qos(tmp_path: Path, distro: str, storage: str) -> None:
    src = _recording(tmp_path, distro)
    out = tmp_path / "out"
    _run(src, out, storage, "kilted" if distro == "kilted" else "humble")
    expected = {**OUTPUTS, **INPUTS}
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    listed = {t["topic_metadata"]["name"]: (t["topic_metadata"]["type"], t["message_count"])
              for t in meta["topics_with_message_count"]}  # fmt: skip
    assert listed == {topic: (msgtype, N) for topic, msgtype in expected.items()}
    assert meta["message_count"] == N * len(expected)
    [storage_file] = [out / p for p in meta["relative_file_paths"]]
    counted: dict[str, int] = {}
    if storage == "mcap":  # the reference decoder, from the schemas in the file alone
        from mcap.reader import make_reader
        from mcap_ros2.decoder import DecoderFactory

        with storage_file.open("rb") as f:
            for schema, channel, _, _ in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
                assert schema is not None and schema.name == expected[channel.topic]
                counted[channel.topic] = counted.get(channel.topic, 0) + 1
    else:  # rosbag2's sqlite3 layout: the topics table, a definition for every type, the messages
        with sqlite3.connect(storage_file) as db:
            types = dict(db.execute("SELECT name, type FROM topics"))
            defined = {t for (t,) in db.execute("SELECT topic_type FROM message_definitions")}
            for topic, n in db.execute(
                "SELECT topics.name, count(*) FROM messages JOIN topics ON topics.id = topic_id GROUP BY topic_id"
            ):
                counted[topic] = n
        assert types == expected and defined >= set(expected.values())
    assert counted == dict.fromkeys(expected, N)
    with Reader(out) as reader:  # and rosbags: every message deserializes; the recording's QoS kept on its topics
        qos = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
    with AnyReader([out]) as any_reader:
        for conn, _, raw in any_reader.messages():
            any_reader.deserialize(raw, conn.msgtype)
    if distro != "kilted":
        assert qos[IMAGE][0].reliability == QosReliability.BEST_EFFORT
        assert qos[INFO][0].reliability == QosReliability.RELIABLE
