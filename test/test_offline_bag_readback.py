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
from rosbags.interfaces import Qos
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.metadata import QosReliability

from vdepth_ros.offline.bag import process_bag
from vdepth_ros.offline.bag_writer import new_bag_writer
from vdepth_ros.offline.flicker import measure_flicker
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
    """`src` (a bag rosbags wrote) as Humble's or Foxy's `ros2 bag record -o DST` writes it, metadata.yaml and
    storage agreeing (ros2/rosbag2 humble d256a5ba): `DST/DST_0.db3` or `.mcap`; the camera best effort,
    camera_info reliable, as policies by number. "humble" (sqlite3): metadata version 5 with `files`
    (`rosbag2_storage/src/rosbag2_storage/metadata_io.cpp`), schema version 3 with an empty metadata table and the
    timestamp index, no message definitions nor type hashes (`rosbag2_storage_default_plugins/.../sqlite_storage.cpp`
    `initialize`); "humble_mcap": rosbag2_storage_mcap's `create_topic` (a `ros2msg` schema, `cdr` channels with
    `offered_qos_profiles`, every `sequence` 0) and its `rosbag2` metadata record of ROS_DISTRO alone; "foxy"
    (sqlite3): version 4, no schema table."""
    info = {
        "version": 4 if distro == "foxy" else 5,
        "storage_identifier": "mcap" if distro == "humble_mcap" else "sqlite3",
    }
    dst.mkdir()
    name = f"{dst.name}_0.{'mcap' if distro == 'humble_mcap' else 'db3'}"
    topics, times = [], []
    with Reader(src) as reader:
        messages = [(conn, t, bytes(raw)) for conn, t, raw in reader.messages()]
        conns = sorted(reader.connections, key=lambda c: c.id)
    for conn in conns:
        qos = _qos(2 if conn.topic == IMAGE else 1)
        metadata = {
            "name": conn.topic,
            "type": conn.msgtype,
            "serialization_format": "cdr",
            "offered_qos_profiles": qos,
        }
        topics.append({"topic_metadata": metadata, "message_count": sum(c is conn for c, _, _ in messages)})
    times = [t for _, t, _ in messages]
    if distro == "humble_mcap":
        from mcap.writer import Writer as McapWriter

        with (dst / name).open("wb") as f:
            mcap = McapWriter(f)
            mcap.start(profile="ros2", library="libmcap 0.8.0")
            channels = {}
            for conn, topic in zip(conns, topics, strict=True):
                schema = mcap.register_schema(conn.msgtype, "ros2msg", conn.msgdef.data.encode())
                qos = topic["topic_metadata"]["offered_qos_profiles"]
                channels[conn.id] = mcap.register_channel(conn.topic, "cdr", schema, {"offered_qos_profiles": qos})
            for conn, t, raw in messages:
                mcap.add_message(channels[conn.id], log_time=t, data=raw, publish_time=t, sequence=0)
            mcap.add_metadata("rosbag2", {"ROS_DISTRO": "humble"})
            mcap.finish()
    else:
        with sqlite3.connect(dst / name) as out:
            if distro == "humble":
                out.execute("CREATE TABLE schema(schema_version INTEGER PRIMARY KEY, ros_distro TEXT NOT NULL)")
                out.execute("INSERT INTO schema VALUES (3, 'humble')")
                out.execute("CREATE TABLE metadata(id INTEGER PRIMARY KEY, metadata_version INTEGER NOT NULL, "
                            "metadata TEXT NOT NULL)")  # fmt: skip
            out.execute("CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, "
                        "serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL)")  # fmt: skip
            out.execute("CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, "
                        "timestamp INTEGER NOT NULL, data BLOB NOT NULL)")  # fmt: skip
            out.execute("CREATE INDEX timestamp_idx ON messages (timestamp ASC)")
            for conn, topic in zip(conns, topics, strict=True):
                meta = topic["topic_metadata"]
                out.execute("INSERT INTO topics VALUES (?, ?, ?, ?, ?)",
                            (conn.id, conn.topic, conn.msgtype, "cdr", meta["offered_qos_profiles"]))  # fmt: skip
            out.executemany("INSERT INTO messages (topic_id, timestamp, data) VALUES (?, ?, ?)",
                            [(conn.id, t, raw) for conn, t, raw in messages])  # fmt: skip
    span = {"duration": {"nanoseconds": max(times) - min(times)},
            "starting_time": {"nanoseconds_since_epoch": min(times)}, "message_count": len(messages)}  # fmt: skip
    info.update(span)
    info.update(
        topics_with_message_count=topics, compression_format="", compression_mode="", relative_file_paths=[name]
    )
    if distro != "foxy":
        info["files"] = [{"path": name, **span}]
    (dst / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False))
    return dst


def _recording(tmp_path: Path, distro: str) -> Path:
    src = tmp_path / "synth"
    typestore = "kilted" if distro == "kilted" else "humble"
    write_image_bag(src, synthetic_frames(N, 48, 64), typestore=typestore, encoding="jpeg",
                    image_topic=IMAGE, camera_info_topic=INFO)  # fmt: skip
    return src if distro == "kilted" else _older_distro_bag(src, tmp_path / f"rec_{distro}", distro)


def _run(src: Path, out: Path, storage: str, typestore: str) -> None:
    params = {"scale_source": "range", "near": 0.5, "far": 5.0, "cloud_stride": 4}
    s = process_bag(src, out, params=params, engine=LuminanceEngine(48, 64, 4, 2), storage=storage,
                    copy_input_topics=True, namespace="est", typestore=typestore)  # fmt: skip
    assert s.frames_out == N


@pytest.mark.parametrize("distro", ["kilted", "humble", "humble_mcap", "foxy"])
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


@pytest.mark.parametrize("distro", ["humble", "humble_mcap"])
def test_a_humble_recording_is_read_by_vdepth_bag_and_vdepth_flicker(tmp_path: Path, distro: str) -> None:
    """A recording as Humble's `ros2 bag record` writes it (`_older_distro_bag`), its folder or its storage file
    alone, read by vdepth-bag and then by vdepth-flicker beside vdepth-bag's output, as `vdepth-flicker OUT IN` and
    `vdepth-bag --flicker` read them. A Humble sqlite3 recording holds no message definitions, and rosbags takes its
    default typestore only where no bag read defines a type: beside the output, which defines its own, every image
    of the recording "cannot deserialize" and vdepth-flicker scored no pair."""
    rec = _recording(tmp_path, distro)
    for i, src in enumerate([rec, next(rec.glob("rec_*_0.*"))]):
        out = tmp_path / f"out{i}"
        summary = process_bag(src, out, params={"cloud_stride": 4}, engine=LuminanceEngine(48, 64, 4, 2),
                              namespace="est", typestore="humble")  # fmt: skip
        assert summary.frames_out == N and not summary.skipped, summary.notes
        (flicker,) = measure_flicker([out, src], IMAGE, ["/est/depth"], typestore="humble")
        assert (flicker.frames, flicker.pairs, flicker.skipped_images) == (N, N - 1, {}), flicker


#: A params file's QoS settings for the outputs: best effort, and two topics' qos_overrides as a user sets them.
QOS_PARAMS = {
    "output_qos": "best_effort",
    "qos_overrides./est/depth.publisher.durability": "transient_local",
    "qos_overrides./est/points.publisher.depth": 3,
}


def _live_node_qos(params: dict, burst: int) -> dict[str, tuple[str, int, str, str]]:
    """Output topic -> (history, depth, reliability, durability) the live node's publishers offer with `params`
    (in this process: the node's own `OutputPublishers`, its qos_overrides applied by rclpy)."""
    import rclpy
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from vdepth_ros.node_params import ros_param_values
    from vdepth_ros.ros.outputs import OutputPublishers
    from vdepth_ros.ros.qos import IncompatibleQosReporter
    from vdepth_ros.ros.worker import RateLimitedLog

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        overrides = [Parameter(k, value=v) for k, v in params.items() if k.startswith("qos_overrides.")]
        node = Node("depth_node", namespace="est", context=context, parameter_overrides=overrides)
        values = {**ros_param_values(params), "publish_colormap": False}
        outputs = OutputPublishers(
            node, values, "final", burst, IncompatibleQosReporter(lambda _: None), lambda _: None,
            RateLimitedLog(node.get_logger()),
        )  # fmt: skip
        return {
            pub.topic_name: tuple(
                p.name.lower() if hasattr(p, "name") else p
                for p in (pub.qos_profile.history, pub.qos_profile.depth, pub.qos_profile.reliability,
                          pub.qos_profile.durability)
            )
            for pub in outputs.main.all()
        }  # fmt: skip
    finally:
        rclpy.shutdown(context=context)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_output_topics_carry_the_qos_the_live_node_offers(tmp_path: Path, storage: str) -> None:
    """`ros2 bag play` offers each topic with the QoS profiles the bag recorded for it (rosbag2: metadata.yaml,
    and an MCAP channel's `offered_qos_profiles`, which the ros2 profile requires). vdepth-bag wrote none for its
    outputs, so the player offered its defaults, not the node's (best effort, a user's transient_local depth for
    late joiners). Now each output topic carries what the live node's publisher on it offers."""
    from vdepth_ros.node_params import largest_burst
    from vdepth_ros.offline.runner import build_pipeline, pipeline_config

    src = _recording(tmp_path, "kilted")
    out = tmp_path / "out"
    engine = LuminanceEngine(48, 64, 4, 2)
    params = {"scale_source": "range", "near": 0.5, "far": 5.0, "cloud_stride": 4, **QOS_PARAMS}
    process_bag(src, out, params=params, engine=engine, storage=storage, namespace="est")
    burst = largest_burst(build_pipeline(pipeline_config(params, check_model=False), engine=engine).schedule)
    live = _live_node_qos(params, burst)
    assert live["/est/depth"][3] == "transient_local" and live["/est/points"][1] == 3  # (the overrides applied)
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    recorded = {t["topic_metadata"]["name"]: t["topic_metadata"]["offered_qos_profiles"]
                for t in meta["topics_with_message_count"]}  # fmt: skip
    assert set(recorded) == set(OUTPUTS)
    for topic, profiles in recorded.items():  # version 8 metadata: a YAML string of profiles, policies by number
        (profile,) = yaml.safe_load(profiles)
        named = {policy: QOS_POLICIES[policy][profile[policy]] for policy in QOS_POLICIES}
        assert (named["history"], profile["depth"], named["reliability"], named["durability"]) == live[topic]
        assert named["liveliness"] == "automatic" and profile["deadline"] == {"sec": 9223372036, "nsec": 854775807}
    with Reader(out) as reader:  # what a reader of the storage file itself gets (MCAP channel metadata, sqlite3)
        for conn in reader.connections:
            (qos,) = conn.ext.offered_qos_profiles
            got = (qos.history.name.lower(), qos.depth, qos.reliability.name.lower(), qos.durability.name.lower())
            assert got == live[conn.topic], conn.topic
    if storage == "mcap":  # the ros2 profile's required channel metadata, as the MCAP reference reader sees it
        from mcap.reader import make_reader

        with next(out.glob("*.mcap")).open("rb") as f:
            channels = make_reader(f).get_summary().channels.values()
            profiles = {c.topic: yaml.safe_load(c.metadata["offered_qos_profiles"]) for c in channels}
            assert all(QOS_POLICIES["reliability"][p["reliability"]] == live[t][2] for t, (p,) in profiles.items())


#: What rosbag2's own readers require of a bag, from their source (ros2/rosbag2: rolling at 25304dd, 2024-10-16, the
#: newest stored here, and the humble branch at d256a5ba): rmw's numbers of the QoS policies (`rmw/types.h`), as
#: version 8 metadata holds them, which every rosbag2 reads: Humble's player (`rosbag2_transport/src/qos.cpp`:
#: `node["history"].as<int>()`, ...) and Jazzy's and later (`rosbag2_storage/src/rosbag2_storage/qos.cpp`: a number
#: is version 8's). Version 9's names ("keep_last") only Jazzy and later read. Only the values Humble's rmw creates a
#: publisher with (ros2/rmw humble `types.h`: no best_available, which Iron added as 4, 4 and 5; ros2/rmw_fastrtps
#: humble `rmw_fastrtps_shared_cpp/src/qos.cpp`: "Unknown QoS reliability policy" for any other, so Humble's player
#: failed on the topic; ros2/rmw_cyclonedds humble `rmw_node.cpp` `create_readwrite_qos`: `unreachable()`).
QOS_POLICIES = {
    "history": {0: "system_default", 1: "keep_last", 2: "keep_all"},
    "reliability": {0: "system_default", 1: "reliable", 2: "best_effort"},
    "durability": {0: "system_default", 1: "transient_local", 2: "volatile"},
    "liveliness": {0: "system_default", 1: "automatic", 3: "manual_by_topic"},
}


def _jazzy_recording(tmp_path: Path, profiles: dict[str, Qos]) -> Path:
    """A recording as Jazzy's `ros2 bag record` writes it (metadata version 9, QoS policies by name), each topic
    offered `profiles[topic]`: a publisher's actual QoS that rmw reports as best_available, or `unknown`."""
    src, dst = tmp_path / "synth", tmp_path / "rec_jazzy"
    write_image_bag(src, synthetic_frames(N, 48, 64), encoding="jpeg", image_topic=IMAGE, camera_info_topic=INFO)
    with Reader(src) as reader, new_bag_writer(dst, "mcap", version=9) as writer:
        out = {
            c.id: writer.add_connection(
                c.topic, c.msgtype, msgdef=c.msgdef.data, rihs01=c.digest, offered_qos_profiles=[profiles[c.topic]]
            )
            for c in reader.connections
        }
        for conn, t, raw in reader.messages():
            writer.write(out[conn.id], t, raw)
    return dst


def test_a_jazzy_recordings_best_available_qos_is_copied_as_humbles_player_can_offer_it(tmp_path: Path) -> None:
    """A Jazzy recording's best_available QoS (rmw reports a publisher's so) was copied by --copy-input-topics as
    number 4, which Humble's player casts to rmw's enum and its rmw refuses: `ros2 bag play` failed creating the
    topic's publisher. Now it is what a publisher offering best_available offers (rmw_dds_common's
    `qos_profile_get_best_available_for_publisher`: reliable, transient_local, automatic, default deadline and
    lease), what Jazzy's player then offers too; an `unknown` policy is system_default; the summary says so."""
    from rosbags.interfaces import QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    forever, best = QosTime(9223372036, 854775807), QosTime(9223372036, 854775806)
    offered = Qos(QosHistory.KEEP_LAST, 5, QosReliability.BEST_AVAILABLE, QosDurability.BEST_AVAILABLE, best, forever,
                  QosLiveliness.BEST_AVAILABLE, best, False)  # fmt: skip
    unknown = offered._replace(
        reliability=QosReliability.UNKNOWN,
        durability=QosDurability.VOLATILE,
        liveliness=QosLiveliness.AUTOMATIC,
        deadline=forever,
        liveliness_lease_duration=forever,
    )
    src = _jazzy_recording(tmp_path, {IMAGE: offered, INFO: unknown})
    out = tmp_path / "out"
    summary = process_bag(src, out, params={"cloud_stride": 4}, engine=LuminanceEngine(48, 64, 4, 2),
                          namespace="est", copy_input_topics=True)  # fmt: skip
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    _check_bag_metadata(meta, "mcap")  # every profile's policies are numbers Humble's rmw takes
    recorded = {t["topic_metadata"]["name"]: yaml.safe_load(t["topic_metadata"]["offered_qos_profiles"])
                for t in meta["topics_with_message_count"]}  # fmt: skip
    (image,) = recorded[IMAGE]
    assert (image["reliability"], image["durability"], image["liveliness"]) == (1, 1, 1)  # reliable, transient_local
    assert image["deadline"] == image["liveliness_lease_duration"] == {"sec": 0, "nsec": 0}  # rmw's default
    assert image["depth"] == 5 and image["lifespan"] == {"sec": 9223372036, "nsec": 854775807}  # the rest as recorded
    (info,) = recorded[INFO]
    assert (info["reliability"], info["durability"], info["liveliness"]) == (0, 2, 1)  # unknown: system_default
    from mcap.reader import make_reader

    with next(out.glob("*.mcap")).open("rb") as f:  # the MCAP channels, which a single .mcap is played by, alike
        channels = make_reader(f).get_summary().channels.values()
        assert {c.topic: yaml.safe_load(c.metadata["offered_qos_profiles"]) for c in channels if c.topic in INPUTS} == {
            IMAGE: [image],
            INFO: [info],
        }
    said = sorted(n for n in summary.notes if "its recorded QoS copied as every distro" in n)
    assert len(said) == 2 and "reliability best_available as reliable" in said[1], summary.notes


def _check_qos_profiles(profiles: object, topic: str) -> None:
    """As every rosbag2 reads a topic's offered QoS profiles of version 8: a YAML string (Humble's
    `convert<TopicMetadata>::decode`: `as<std::string>()`, whatever the version; a list refused the whole
    metadata.yaml) of a sequence of maps, policies by number (empty for a copied topic recorded without any, which
    the player offers with its defaults; never for an output)."""
    assert isinstance(profiles, str), (topic, profiles)
    parsed = yaml.safe_load(profiles) if profiles else []
    assert isinstance(parsed, list) and (parsed or not topic.startswith("/est/")), topic
    for profile in parsed:
        for policy, numbers in QOS_POLICIES.items():
            assert type(profile[policy]) is int and profile[policy] in numbers, (policy, profile[policy])
        assert isinstance(profile["depth"], int) and isinstance(profile["avoid_ros_namespace_conventions"], bool)
        for duration in ("deadline", "lifespan", "liveliness_lease_duration"):
            assert set(profile[duration]) == {"sec", "nsec"}
            assert all(isinstance(v, int) and v >= 0 for v in profile[duration].values())


def _check_bag_metadata(info: dict, storage: str) -> None:
    """As `convert<rosbag2_storage::BagMetadata>::decode` (rolling: rosbag2_storage/include/rosbag2_storage/yaml.hpp;
    humble: rosbag2_storage/src/rosbag2_storage/metadata_io.cpp) reads metadata.yaml's `rosbag2_bagfile_information`,
    an MCAP file's `rosbag2` metadata record and a `.db3` file's metadata table: every field of version 8, which
    `ros2 bag play` needs, from Humble's (which ignores the fields it does not know) to rolling's."""
    assert info["version"] == 8 and info["storage_identifier"] == storage
    assert isinstance(info["duration"]["nanoseconds"], int)
    assert isinstance(info["starting_time"]["nanoseconds_since_epoch"], int)
    assert info["message_count"] == sum(t["message_count"] for t in info["topics_with_message_count"])
    for topic in info["topics_with_message_count"]:
        meta = topic["topic_metadata"]
        assert meta["serialization_format"] == "cdr" and "/msg/" in meta["type"]
        assert meta["type_description_hash"].startswith("RIHS01_")  # (version >= 7: a string, read as one)
        _check_qos_profiles(meta["offered_qos_profiles"], meta["name"])
    assert isinstance(info["compression_format"], str) and isinstance(info["compression_mode"], str)
    assert [f["path"] for f in info["files"]] == info["relative_file_paths"]
    for f in info["files"]:
        assert {"path", "starting_time", "duration", "message_count"} <= set(f)
    assert all(isinstance(v, str) for v in info["custom_data"].values()) and isinstance(info["ros_distro"], str)


@pytest.mark.parametrize(("storage", "compression"), [("mcap", "none"), ("sqlite3", "none"), ("mcap", "file")])
def test_every_bag_the_package_writes_is_named_as_ros2_bag_record_names_it(
    tmp_path: Path, storage: str, compression: str
) -> None:
    """The demo's input bag and the tests' and benchmarks' recordings (`write_image_bag`, `new_bag_writer`) were
    rosbags' `rec/rec.mcap`, which no robot records and `ros2 bag reindex` does not find (it takes `.+_(\\d+)\\.ext`);
    as `ros2 bag record -o rec` they are `rec/rec_0.mcap`, named so in metadata.yaml and in the storage file's own
    metadata. A write that fails leaves nothing."""
    import re

    from mcap.reader import make_reader

    bag = tmp_path / "rec"
    write_image_bag(bag, synthetic_frames(2, 12, 16), storage=storage, compression_mode=compression)
    name = "rec_0" + {"mcap": ".mcap", "sqlite3": ".db3"}[storage] + (".zstd" if compression == "file" else "")
    assert sorted(p.name for p in bag.iterdir()) == ["metadata.yaml", name]
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["relative_file_paths"] == [f["path"] for f in info["files"]] == [name]
    if compression == "none":
        assert re.fullmatch(r".+_(\d+)\.([a-zA-Z0-9])+", name)  # rosbag2's reindexer.cpp
        if storage == "mcap":
            with (bag / name).open("rb") as f:
                (record,) = [m for m in make_reader(f).iter_metadata() if m.name == "rosbag2"]
            embedded = yaml.safe_load(record.metadata["serialized_metadata"])
        else:
            with sqlite3.connect(bag / name) as db:
                embedded = yaml.safe_load(db.execute("SELECT metadata FROM metadata").fetchone()[0])
        assert embedded["relative_file_paths"] == [name]
    with pytest.raises(RuntimeError), new_bag_writer(tmp_path / "failed", storage):
        raise RuntimeError("a write that fails")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec"]  # (no folder it was written in left beside it)


def test_bags_are_written_through_new_bag_writer_alone() -> None:
    """One way to write a bag: a fixture or benchmark that made its own rosbags `Writer` named its file as rosbags
    does (`rec/rec.mcap`), not as a recording is named."""
    import re

    root = Path(__file__).resolve().parents[1]
    made_here = re.compile(r"from rosbags\.rosbag2 import [^\n]*\bWriter\b|rosbag2\.Writer\b")
    files = [p for d in ("vdepth_ros", "test", "benchmarks", "training", "export") for p in (root / d).rglob("*.py")]
    own = [str(p.relative_to(root)) for p in files if made_here.search(p.read_text(encoding="utf-8"))]
    assert own == ["vdepth_ros/offline/bag_writer.py"], own


@pytest.mark.parametrize("output", ["out", "out.mcap", "out.db3", "out_sqlite"])
def test_output_bags_hold_what_rosbag2_reads(tmp_path: Path, output: str) -> None:
    """`ros2 bag play` cannot run here (no ros2 CLI), so our bags are checked against what rosbag2's reader
    takes, from its source (ros2/rosbag2 at 25304dd, and Humble's, the humble branch at d256a5ba, which refused
    version 9's metadata.yaml: "Exception on parsing info file: yaml-cpp: bad conversion"): metadata.yaml
    (`metadata_io.cpp`: the `rosbag2_bagfile_information` key; `yaml.hpp`, `qos.cpp`: `_check_bag_metadata`); MCAP
    (`rosbag2_storage_mcap/src/mcap_storage.cpp`: profile `ros2`, each channel's message encoding `cdr` and
    `offered_qos_profiles` (a YAML string of the profiles), each schema `ros2msg`, the bag's
    metadata in a `rosbag2` metadata record's `serialized_metadata`, which a single `.mcap` without metadata.yaml
    is read by); sqlite3 (`rosbag2_storage_sqlite3/src/rosbag2_storage_sqlite3/sqlite_storage.cpp`: the tables it
    creates, schema version 4 (`sqlite_storage.hpp`: `kDBSchemaVersion_`), the metadata table a single `.db3` is
    read by). Folder or single file, MCAP or sqlite3."""
    from mcap.reader import make_reader

    src = tmp_path / "rec"
    write_image_bag(src, synthetic_frames(6, 48, 64), image_topic=IMAGE, camera_info_topic=INFO, encoding="jpeg")
    storage = "sqlite3" if output in ("out.db3", "out_sqlite") else "mcap"
    out = tmp_path / output
    process_bag(src, out, params={"cloud_stride": 4}, engine=LuminanceEngine(48, 64, 4, 2), storage=storage,
                namespace="est", copy_input_topics=True)  # fmt: skip
    if out.is_dir():
        info = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        _check_bag_metadata(info, storage)
        assert set(info["relative_file_paths"]) == {p.name for p in out.iterdir() if p.name != "metadata.yaml"}
        [storage_file] = [out / p for p in info["relative_file_paths"]]
    else:
        storage_file = out
    assert storage_file.suffix == {"mcap": ".mcap", "sqlite3": ".db3"}[storage]
    if storage == "mcap":
        with storage_file.open("rb") as f:
            reader = make_reader(f)
            assert reader.get_header().profile == "ros2"
            summary = reader.get_summary()
            for channel in summary.channels.values():
                assert channel.message_encoding == "cdr"  # (`topic_type_hash` is optional: the hash is in the record)
                _check_qos_profiles(channel.metadata["offered_qos_profiles"], channel.topic)
            assert {s.encoding for s in summary.schemas.values()} == {"ros2msg"}
            records = [m for m in reader.iter_metadata() if m.name == "rosbag2"]
            assert len(records) == 1
            _check_bag_metadata(yaml.safe_load(records[0].metadata["serialized_metadata"]), storage)
        return
    with sqlite3.connect(storage_file) as db:
        tables = {name: {c[1] for c in db.execute(f"PRAGMA table_info({name})")}
                  for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}  # fmt: skip
        assert tables == {
            "schema": {"schema_version", "ros_distro"},
            "metadata": {"id", "metadata_version", "metadata"},
            "topics": {"id", "name", "type", "serialization_format", "offered_qos_profiles", "type_description_hash"},
            "message_definitions": {"id", "topic_type", "encoding", "encoded_message_definition",
                                    "type_description_hash"},
            "messages": {"id", "topic_id", "timestamp", "data"},
        }  # fmt: skip
        assert [v for (v,) in db.execute("SELECT schema_version FROM schema")] == [4]
        [(version, serialized)] = db.execute("SELECT metadata_version, metadata FROM metadata ORDER BY id").fetchall()
        assert version == 8
        _check_bag_metadata(yaml.safe_load(serialized), storage)
        for topic, profiles in db.execute("SELECT name, offered_qos_profiles FROM topics"):
            _check_qos_profiles(profiles, topic)
        assert {e for (e,) in db.execute("SELECT encoding FROM message_definitions")} == {"ros2msg"}
