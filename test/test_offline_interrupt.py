"""Ctrl-C at any moment of an offline tool is one line and exit status 130, also while it starts."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from fakes import LuminanceEngine, run_offline_cli

from vdepth_ros.offline.bag import process_bag
from vdepth_ros.offline.errors import OutputExistsError
from vdepth_ros.offline.runner import stamp_ns

SETUP = Path(__file__).resolve().parents[1] / "setup.py"


def _console_script(prog: str) -> tuple[str, str]:
    """The `module:function` setup.py installs as `prog` (what the user's shell runs)."""
    found = re.search(rf'"{re.escape(prog)} = ([\w.]+):(\w+)"', SETUP.read_text())
    assert found, prog
    return found.group(1), found.group(2)


@pytest.mark.parametrize("prog", ["vdepth-bag", "vdepth-video", "vdepth-flicker"])
def test_ctrl_c_while_the_tool_starts_is_one_line_and_exit_130(tmp_path: Path, prog: str) -> None:
    """Importing torch takes seconds, so Ctrl-C right after a typo'd command lands in an import:
    it printed a 30-line KeyboardInterrupt traceback through importlib."""
    module, function = _console_script(prog)
    code = textwrap.dedent(
        f"""
        import sys

        class CtrlC:  # SIGINT arriving while numpy (every tool needs it) is being imported
            def find_spec(self, name, path=None, target=None):
                if name == "numpy":
                    raise KeyboardInterrupt
                return None

        sys.meta_path.insert(0, CtrlC())
        from {module} import {function}
        sys.exit({function}([{str(tmp_path / "in")!r}, "-o", {str(tmp_path / "out")!r}]))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: interrupted"), proc.stderr
    assert not (tmp_path / "out").exists()


def test_ctrl_c_after_the_output_is_complete_says_it_was_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C during --flicker, which measures the finished output: the line said "no output was
    written under the final name" while the output bag was complete and in place."""
    from fakes import LuminanceEngine

    from vdepth_ros.offline import bag as bagcli
    from vdepth_ros.offline import flicker
    from vdepth_ros.offline.synth import synthetic_frames, write_image_bag
    from vdepth_ros.pipeline import DepthPipeline

    def interrupted(*args: object, **kw: object) -> None:
        raise KeyboardInterrupt

    engine = LuminanceEngine(height=48, width=64, frames=8, overlap=3)
    monkeypatch.setattr(bagcli, "build_pipeline", lambda config, **kw: DepthPipeline(config, engine))
    monkeypatch.setattr(flicker, "measure_flicker", interrupted)
    src = tmp_path / "in"
    write_image_bag(src, synthetic_frames(10, 36, 52))
    params = tmp_path / "params.yaml"
    params.write_text("depth_node:\n  ros__parameters:\n    scale_source: range\n")
    out = tmp_path / "out"
    rc = bagcli.main([str(src), "-o", str(out), "--params", str(params), "--flicker", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 130
    (line,) = [x for x in err.splitlines() if x.startswith("vdepth-bag:")]
    assert str(out) in line and "no output was written" not in line, line
    assert out.is_dir()


def _recording_with_tf(folder: Path, n: int) -> None:
    """A camera's recording as a robot makes it: images, camera_info, /tf and a latched /tf_static."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
    from rosbags.typesys import Stores, get_typestore

    from vdepth_ros.offline.bag_writer import new_bag_writer
    from vdepth_ros.offline.synth import synthetic_frames, write_image_bag

    write_image_bag(folder.with_name("camera"), synthetic_frames(n, 36, 52))
    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types
    forever = QosTime(2147483647, 4294967295)
    latched = Qos(
        QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, forever, forever,
        QosLiveliness.AUTOMATIC, forever, False,
    )  # fmt: skip
    tf = "tf2_msgs/msg/TFMessage"

    def transforms(t: int) -> bytes:
        stamp = T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9)
        moved = T["geometry_msgs/msg/Transform"](
            translation=T["geometry_msgs/msg/Vector3"](x=0.1, y=0.0, z=0.5),
            rotation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
        )
        header = T["std_msgs/msg/Header"](stamp=stamp, frame_id="base_link")
        one = T["geometry_msgs/msg/TransformStamped"](header=header, child_frame_id="camera", transform=moved)
        return ts.serialize_cdr(T[tf](transforms=[one]), tf)

    from rosbags.highlevel import AnyReader

    with (
        AnyReader([folder.with_name("camera")]) as reader,
        new_bag_writer(folder, "mcap", version=9) as w,
    ):
        static = w.add_connection("/tf_static", tf, typestore=ts, offered_qos_profiles=[latched])
        moving = w.add_connection("/tf", tf, typestore=ts)
        out = {c.id: w.add_connection(c.topic, c.msgtype, typestore=ts) for c in reader.connections}
        first = True
        for conn, t, raw in reader.messages():
            if first:
                w.write(static, t - 1, transforms(t))
                first = False
            if conn.topic == "/image":
                w.write(moving, t, transforms(t))
            w.write(out[conn.id], t, raw)


def _depth_stamps(bag: Path, topic: str = "/depth") -> list[int]:
    """The header stamps of `topic` in `bag`, in order."""
    from rosbags.highlevel import AnyReader

    with AnyReader([bag]) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        stamps = []
        for conn, _, raw in reader.messages(connections=conns):
            stamp = reader.deserialize(raw, conn.msgtype).header.stamp
            stamps.append(stamp.sec * 10**9 + stamp.nanosec)
    return stamps


def _bag_counts(bag: Path) -> dict[str, int]:
    from rosbags.highlevel import AnyReader

    with AnyReader([bag]) as reader:
        counts = {c.topic: 0 for c in reader.connections}
        for conn, _, _ in reader.messages():  # every message readable, the file complete
            counts[conn.topic] += 1
    return counts


PARAMS_RANGE = "depth_node:\n  ros__parameters:\n    scale_source: range\n"


@pytest.mark.parametrize("mode", ["causal", "offline"])
def test_ctrl_c_during_a_long_bag_keeps_what_was_done_as_a_readable_bag(tmp_path: Path, mode: str) -> None:
    """Ctrl-C an hour into a long bag threw the whole run away ("no output was written"), without
    saying how far it had got; now the input ends there, as if the bag ended, and the output holds
    every frame read, a complete bag with the copied /tf_static still latched."""
    import yaml

    rec = tmp_path / "rec"
    _recording_with_tf(rec, 120)
    (tmp_path / "params.yaml").write_text(PARAMS_RANGE)
    out = tmp_path / "out"
    args = [str(rec), "-o", str(out), "--params", "params.yaml", "--copy-input-topics", "--mode", mode]
    proc = run_offline_cli("bag", args, tmp_path, (3,))
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("vdepth-bag: interrupted after") and str(out) in last and "of 120" in last, proc.stderr
    counts = _bag_counts(out)
    written = counts["/depth"]
    assert 8 <= written < 120 and f"holds the {written} frames" in last, (counts, last)
    # every frame read was finished (the window held was run), with its copied input
    assert counts["/image"] == counts["/depth/camera_info"] == written and counts["/tf_static"] == 1
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert f"holds the {written} frames" in meta["custom_data"]["vdepth_ros.interrupted"]
    (static,) = [t for t in meta["topics_with_message_count"] if t["topic_metadata"]["name"] == "/tf_static"]
    (latched_offer,) = yaml.safe_load(static["topic_metadata"]["offered_qos_profiles"])  # (metadata version 8)
    assert latched_offer["durability"] == 1  # rmw's RMW_QOS_POLICY_DURABILITY_TRANSIENT_LOCAL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["camera", "out", "params.yaml", "rec"]
    # run again: the output is kept, and the refusal says it is a stopped run's (it said "exists" alone)
    with pytest.raises(OutputExistsError, match=r"stopped after .* of 120 .* does not resume: pass --overwrite"):
        process_bag(rec, out, params={}, engine=LuminanceEngine(), mode=mode)
    assert _bag_counts(out) == counts
    # the rest alone, as the line says (the user had to run the whole bag again): each frame once in the two outputs
    found = re.search(r"the rest: run again with the same options .*--start (\d+\.\d{9}) into another output", last)
    assert found, last
    rest = process_bag(
        rec, tmp_path / "rest", params={"scale_source": "range"}, engine=LuminanceEngine(), mode=mode,
        start_ns=stamp_ns(found.group(1)),
    )  # fmt: skip
    assert rest.interrupted is None and any("starts anew" in n and f"{written} frames before" in n for n in rest.notes)
    assert _depth_stamps(out) + _depth_stamps(tmp_path / "rest") == _depth_stamps(rec, "/image")


def test_ctrl_c_twice_aborts_and_keeps_nothing(tmp_path: Path) -> None:
    from vdepth_ros.offline.synth import synthetic_frames, write_image_bag

    write_image_bag(tmp_path / "rec", synthetic_frames(120, 36, 52))
    (tmp_path / "params.yaml").write_text(PARAMS_RANGE)
    proc = run_offline_cli("bag", ["rec", "-o", "out", "--params", "params.yaml"], tmp_path, (3, 3))
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "vdepth-bag: interrupted; no output was written under the final name"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "rec"]


def test_ctrl_c_of_an_overwrite_run_keeps_the_earlier_output(tmp_path: Path) -> None:
    """A complete earlier output is not traded for a part of the new one."""
    from vdepth_ros.offline.synth import synthetic_frames, write_image_bag

    write_image_bag(tmp_path / "rec", synthetic_frames(120, 36, 52))
    (tmp_path / "params.yaml").write_text(PARAMS_RANGE)
    args = ["rec", "-o", "out", "--params", "params.yaml"]
    # the earlier output, made in this process (as the CLI's own process would: one process fewer, ~3 s)
    process_bag(tmp_path / "rec", tmp_path / "out", params={"scale_source": "range"}, engine=LuminanceEngine())
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    proc = run_offline_cli("bag", [*args, "--overwrite"], tmp_path, (3,))
    assert proc.returncode == 130, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "earlier output" in last and "is kept" in last, last
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "params.yaml", "rec"]


def test_ctrl_c_during_a_long_video_keeps_the_frames_done(tmp_path: Path) -> None:
    """vdepth-video: the frames read are written, with meta.json and a complete preview.mp4, and the
    summary does not call the clip cut short (it was the reading that stopped)."""
    import json

    import cv2

    from vdepth_ros.offline.synth import synthetic_frames

    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (52, 36))
    for rgb in synthetic_frames(120, 36, 52):
        writer.write(np.ascontiguousarray(rgb[..., ::-1]))
    writer.release()
    proc = run_offline_cli("video", ["clip.mp4", "-o", "out", "--depth-range", "0.5", "5"], tmp_path, (3,))
    assert proc.returncode == 130, proc.stderr
    written = len(list((tmp_path / "out" / "depth").glob("*.png")))
    assert 8 <= written < 120, written
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("vdepth-video: interrupted after") and f"holds the {written} frames" in last, last
    assert "cut short" not in proc.stdout
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["interrupted"]
    cap = cv2.VideoCapture(str(tmp_path / "out" / "preview.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == written
    cap.release()


_STALLED_FLOW = """
import sys, time
from pathlib import Path
import cv2
Dis = cv2.DISOpticalFlow_create

class Stalled:
    def __init__(self, *a):
        self.flow = Dis(*a)

    def __getattr__(self, name):
        return getattr(self.flow, name)

    def calc(self, *a):
        Path(sys.argv[1]).touch()  # working: the test stops it now
        time.sleep(60)

cv2.DISOpticalFlow_create = Stalled
from vdepth_ros.offline.entry import flicker
sys.exit(flicker(sys.argv[2:]))
"""


def test_vdepth_flicker_stopped_by_sigterm_leaves_no_copy_of_a_recording_in_tmpdir(tmp_path: Path) -> None:
    """vdepth-flicker reads a recording its recorder did not close from a whole copy in TMPDIR (GBs for a
    long one). `timeout 600 vdepth-flicker ...`, a systemd stop or `kill` (SIGTERM) killed it outright, so the
    copy was left in TMPDIR at every such run; Ctrl-C removed it. SIGTERM is now Ctrl-C, as in the others."""
    import os
    import signal
    import time

    from fakes import LuminanceEngine

    from vdepth_ros.offline.bag import process_bag
    from vdepth_ros.offline.synth import synthetic_frames, write_image_bag

    rec = tmp_path / "rec"
    write_image_bag(rec, synthetic_frames(24, 240, 320))
    (rec / "metadata.yaml").unlink()
    storage = next(rec.glob("*.mcap"))
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size * 2 // 3])  # no footer: still recording
    process_bag(rec, tmp_path / "out", engine=LuminanceEngine(), params={"scale_source": "none"})
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    working = tmp_path / "working"
    args = [str(working), str(tmp_path / "out"), str(rec), "--image-topic", "/image", "--depth-topic", "/disparity"]
    proc = subprocess.Popen(
        [sys.executable, "-c", _STALLED_FLOW, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp)},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not working.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert working.exists(), proc.communicate(timeout=10)
        assert list(tmp.iterdir())  # the copy it reads
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("vdepth-flicker: interrupted"), err[-2000:]
    assert not list(tmp.iterdir())


def test_ctrl_c_after_the_input_was_read_says_the_whole_output_is_being_finished(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """vdepth-video and `--mode offline` read the whole input before they write: a Ctrl-C while they wrote said
    "stopping: the frames read so far are finished", then ran for minutes over all of them and ended with exit 0
    and nothing about the Ctrl-C. Now the line says the input had been read and all of it is being finished."""
    import os
    import signal

    from vdepth_ros.offline.runner import StopAtCtrlC

    with StopAtCtrlC("vdepth-video") as stop:
        assert list(stop.frames(range(3))) == [0, 1, 2]
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and not stop.cut
        err = capsys.readouterr().err
        assert "the input was read to its end before Ctrl-C: finishing the output of all of it" in err, err
        assert "stopping" not in err
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
