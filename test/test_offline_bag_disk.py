"""vdepth-bag / vdepth-video against the disks a user has: a full one, a small or RAM-backed /tmp."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from fakes import LuminanceEngine

from vdepth_ros.offline import bag as bagcli
from vdepth_ros.offline import video as videocli
from vdepth_ros.offline.atomic import STAGING_PREFIX
from vdepth_ros.offline.bag import process_bag
from vdepth_ros.offline.synth import synthetic_frames, write_image_bag
from vdepth_ros.pipeline import DepthPipeline

PARAMS = {"scale_source": "range", "near": 0.5, "far": 5.0, "max_depth": 3.0}


def _engine() -> LuminanceEngine:
    return LuminanceEngine(height=48, width=64, frames=8, overlap=3)


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLIs build their pipeline with the LuminanceEngine instead of a model."""
    for cli in (bagcli, videocli):
        monkeypatch.setattr(cli, "build_pipeline", lambda config, engine=None: DepthPipeline(config, _engine()))


@contextmanager
def file_size_limit(nbytes: int) -> Iterator[None]:
    """Writes past `nbytes` fail with an OSError (EFBIG), as on a full disk or a FAT32 stick."""
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def _params_file(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    body = "\n".join(f"    {k}: {v}" for k, v in PARAMS.items())
    path.write_text(f"depth_node:\n  ros__parameters:\n{body}\n")
    return path


@pytest.mark.parametrize("mode", ["causal", "offline"])
def test_a_write_that_does_not_fit_before_any_frame_is_one_error_naming_the_output_and_the_fix(
    tmp_path: Path, fake_models: None, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    """The output's file cannot hold even its first chunk of frames: the CLI used to die with an OSError traceback
    (exit 1); it is one line naming the output, the cause and the fix, nothing left under its name."""
    src = tmp_path / "in"
    write_image_bag(src, synthetic_frames(40, 36, 52))
    out = tmp_path / "out"
    args = [str(src), "-o", str(out), "--params", str(_params_file(tmp_path)), "--no-progress", "--mode", mode]
    with file_size_limit(150_000):
        rc = bagcli.main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("vdepth-bag:")]
    assert str(out) in line and "ulimit -f" in line and "exFAT" in line, line
    # (offline mode's temporary files beside the output fill the file before any of it)
    assert mode == "offline" or "before any frame was written" in line, line
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((STAGING_PREFIX, ".out"))]


def _bag_messages(path: Path) -> dict[str, list[int]]:
    """Each topic's messages' log times, read by rosbags (metadata.yaml) and by the MCAP reference reader from the
    file's own summary: both must read the whole bag."""
    from mcap.reader import make_reader
    from rosbags.highlevel import AnyReader

    with AnyReader([path]) as reader:
        times: dict[str, list[int]] = {c.topic: [] for c in reader.connections}
        for conn, t, _raw in reader.messages():
            times[conn.topic].append(t)
        assert {c.topic: c.msgcount for c in reader.connections} == {k: len(v) for k, v in times.items()}
    (storage,) = path.glob("*.mcap")
    with storage.open("rb") as f:
        mcap = make_reader(f)
        stats = mcap.get_summary().statistics
        assert stats is not None and stats.message_count == sum(map(len, times.values()))
        assert [m.log_time for _s, _c, m in mcap.iter_messages(topics=["/depth"])] == times["/depth"]
    return times


def test_a_file_size_limit_mid_run_ends_the_input_there_keeping_a_readable_bag(tmp_path: Path) -> None:
    """A long run onto a FAT32 stick (4 GiB a file) or under `ulimit -f`: the write past the limit (EFBIG) lost the
    whole run: one error, nothing kept. Now the input ends before the limit, as Ctrl-C ends it: the bag keeps every
    frame read, each complete (all its topics), with its summary and metadata.yaml, read back by rosbags and the
    MCAP reference reader; one line names the cause and the fix, exit status 2. As the user runs it: its own
    process, the limit set as `ulimit -f` sets it."""
    from fakes import run_offline_cli

    write_image_bag(tmp_path / "in", synthetic_frames(40, 36, 52))  # outputs ~45 kB a frame: 1.8 MB in all
    _params_file(tmp_path)
    proc = run_offline_cli("bag", ["in", "-o", "out", "--params", "params.yaml"], tmp_path, file_size_limit=1_200_000)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    times = _bag_messages(tmp_path / "out")
    written = len(times["/depth"])
    assert 8 <= written < 40 and {len(t) for t in times.values()} == {written}, {k: len(v) for k, v in times.items()}
    assert last.startswith(f"vdepth-bag: stopped after {written} of 40 input frames"), last  # (none lost)
    assert f"holds the {written} frames" in last and "ulimit -f" in last and "exFAT" in last, last
    meta = yaml.safe_load((tmp_path / "out" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert "nears the largest file" in meta["custom_data"]["vdepth_ros.interrupted"]
    assert meta["message_count"] == 4 * written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out", "params.yaml"]


@pytest.mark.parametrize("failure", ["ENOSPC", "EFBIG"])
def test_a_disk_filled_by_another_program_ends_the_run_keeping_a_readable_bag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """Another program fills the disk while offline mode writes (no room check foresees it), or a file system's
    size limit that `file_size_limit` does not know: the write that fails (ENOSPC, EFBIG) ended the run with nothing
    kept. The bag now keeps the frames before it, and room for its summary and metadata.yaml is made by dropping the
    chunks written last (the failing write found the disk full)."""
    import errno

    from vdepth_ros.offline import bag_file_writer

    disk_left = 600_000
    real_write_all = bag_file_writer._write_all

    def fills_up(file: object, data: memoryview) -> None:
        if file.tell() + len(data) > disk_left:  # type: ignore[attr-defined]
            raise OSError(getattr(errno, failure), os.strerror(getattr(errno, failure)))
        real_write_all(file, data)

    monkeypatch.setattr(bag_file_writer, "_write_all", fills_up)
    write_image_bag(tmp_path / "in", synthetic_frames(40, 36, 52))
    summary = process_bag(tmp_path / "in", tmp_path / "out", params=PARAMS, engine=_engine(), mode="offline")
    why = "No space left on device" if failure == "ENOSPC" else "File too large (the largest file"
    assert summary.stopped_by and why in summary.stopped_by, summary.stopped_by
    assert f"after writing {summary.frames_out} of the 40 input frames" in summary.interrupted
    monkeypatch.setattr(bag_file_writer, "_write_all", real_write_all)
    times = _bag_messages(tmp_path / "out")
    assert 4 <= len(times["/depth"]) == summary.frames_out < 40 and {len(t) for t in times.values()} == {
        summary.frames_out
    }
    assert (tmp_path / "out" / "out_0.mcap").stat().st_size < disk_left


@pytest.mark.parametrize("mode", ["causal", "offline"])
def test_a_disk_about_to_fill_ends_the_input_there_keeping_a_readable_bag(
    tmp_path: Path, fake_models: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    """A long recording into a disk with room for part of it: the write that did not fit lost the whole run (one
    error, nothing kept). The input now ends where the disk has room left for the frames held and for closing, as
    Ctrl-C ends it: the output is a complete bag of the frames up to there, with its metadata.yaml; the summary and
    the exit status (2) say the disk stopped it. Here a disk of 16 MiB (free: what the files on it leave), whose
    writes past that fail as on a full one. Offline mode, which writes once the whole input is read, ends its
    output there."""
    import os
    import shutil

    from rosbags.highlevel import AnyReader

    capacity = 16 << 20
    disk = tmp_path / "disk"
    disk.mkdir()

    def usage(path: object) -> object:
        used = sum(f.stat().st_size for f in disk.rglob("*") if f.is_file())
        return shutil._ntuple_diskusage(capacity, used, capacity - used)  # type: ignore[attr-defined]

    monkeypatch.setattr(shutil, "disk_usage", usage)
    src = tmp_path / "in"
    write_image_bag(src, synthetic_frames(40, 120, 160))  # ~0.46 MB of outputs a frame: 18 MB in all
    out = disk / "out"
    args = [str(src), "-o", str(out), "--params", str(_params_file(tmp_path)), "--no-progress", "--json"]
    with file_size_limit(capacity):
        rc = bagcli.main([*args, "--mode", mode])
    captured = capsys.readouterr()
    assert rc == 2, captured.err
    summary = json.loads(captured.out)
    assert 8 <= summary["frames_out"] < 40 and "disk is nearly full" in summary["stopped_by"], captured.err
    done = f"{summary['frames_in']} of 40" if mode == "causal" else f"writing {summary['frames_out']} of the 40"
    assert f"after {done} input frames" in summary["interrupted"], summary["interrupted"]
    assert sorted(os.listdir(out)) == ["metadata.yaml", "out_0.mcap"] and sorted(os.listdir(disk)) == ["out"]
    with AnyReader([out]) as reader:
        assert {c.topic: c.msgcount for c in reader.connections}["/depth"] == summary["frames_out"]
        assert sum(1 for _ in reader.messages()) == 4 * summary["frames_out"]
    custom_data = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["custom_data"]
    assert "disk is nearly full" in custom_data["vdepth_ros.interrupted"]


def test_a_sqlite3_output_keeps_the_frames_before_a_write_that_does_not_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--storage sqlite3`: rosbags wrote the whole bag in one transaction, so a write that did not fit (a size limit
    not foreseen here, or another program filling the disk) lost it all. It now commits where frames end: the bag
    keeps the frames committed before, complete, with its metadata row and metadata.yaml."""
    import sqlite3

    from rosbags.highlevel import AnyReader

    from vdepth_ros.offline import atomic

    monkeypatch.setattr(atomic, "file_size_limit", lambda folder: None)  # (not foreseen)
    write_image_bag(tmp_path / "in", synthetic_frames(40, 36, 52))
    with file_size_limit(1_000_000):
        summary = process_bag(tmp_path / "in", tmp_path / "out", params=PARAMS, engine=_engine(), storage="sqlite3")
    assert summary.stopped_by and "disk I/O error" in summary.stopped_by, summary.stopped_by  # (sqlite's EFBIG)
    assert "ulimit -f" in summary.stopped_by, summary.stopped_by
    with AnyReader([tmp_path / "out"]) as reader:
        counts = {c.topic: 0 for c in reader.connections}
        for conn, _t, _raw in reader.messages():
            counts[conn.topic] += 1
        assert {c.topic: c.msgcount for c in reader.connections} == counts
    assert 8 <= summary.frames_out < 40 and set(counts.values()) == {summary.frames_out}, (summary.frames_out, counts)
    with sqlite3.connect(tmp_path / "out" / "out_0.db3") as db:
        assert db.execute("SELECT COUNT(*) FROM metadata").fetchone()[0] == 1


def _video_run(tmp_path: Path, frames: int = 20, height: int = 36, width: int = 52) -> tuple[Path, list[str]]:
    """A folder of `frames` frames for vdepth-video: (its output path, the arguments without the options a test
    adds)."""
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, rgb in enumerate(synthetic_frames(frames, height, width)):
        cv2.imwrite(str(folder / f"{i:04d}.png"), rgb[..., ::-1])
    out = tmp_path / "out"
    return out, [str(folder), "-o", str(out), "--params", str(_params_file(tmp_path)), "--no-progress"]


def _video_output_frames(out: Path) -> int:
    """The frames a vdepth-video output holds, checked to agree everywhere: depth files, frames.csv, meta.json and
    preview.mp4 as a player reads it."""
    import cv2

    files = len(list((out / "depth").glob("*.png")))
    rows = len((out / "frames.csv").read_text().splitlines()) - 1
    cap = cv2.VideoCapture(str(out / "preview.mp4"))
    played = 0
    while cap.read()[0]:
        played += 1
    cap.release()
    assert files == rows == json.loads((out / "meta.json").read_text())["frames"] == played, (files, rows, played)
    return files


@pytest.mark.parametrize("cause", ["file size limit", "disk filled by another program"])
def test_vdepth_video_ends_where_a_write_does_not_fit_keeping_the_frames_before(
    tmp_path: Path, fake_models: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cause: str
) -> None:
    """vdepth-video kept nothing on a full disk (one error, the output removed), and under a file size limit
    OpenCV's writer left preview.mp4 cut short. Now the run ends there as Ctrl-C ends it: the frames before keep
    all their files, frames.csv and meta.json agree, and preview.mp4 plays them all (it stops before the limit);
    one line names the cause and the fix, exit status 2."""
    import errno

    from vdepth_ros.offline import videoio

    out, args = _video_run(tmp_path, 40, 120, 160)
    if cause == "file size limit":
        limit = file_size_limit(80_000)  # each PNG fits; preview.mp4 (~2 kB a frame) does not
    else:
        real_write_png, pngs = videoio.write_png, []

        def fills_up(path: Path, image: object, params: object = ()) -> None:
            pngs.append(path)
            if len(pngs) > 12:
                raise OSError(errno.ENOSPC, "No space left on device")
            real_write_png(path, image, params)  # type: ignore[arg-type]

        monkeypatch.setattr(videoio, "write_png", fills_up)
        limit = contextlib.nullcontext()
    with limit:
        rc = videocli.main([*args, "--mode", "causal", "--depth-range", "0.5", "5"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    written = _video_output_frames(out)
    assert 1 <= written < 40 and last.startswith("vdepth-video: stopped after"), (written, last)
    assert f"holds the {written} frames" in last, last
    assert ("ulimit -f" in last) if cause == "file size limit" else ("No space left" in last), last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "out", "params.yaml"]


def test_offline_mode_keeps_its_temporary_files_beside_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The offline pass spills every frame to disk: that goes on the output's disk (which the user
    chose with -o and is cleaned with the output), not the system temp folder, which may be small or
    RAM-backed (tmpfs: the spill would then fill memory). Here the temp folder is unusable."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-temp-folder"))
    src = tmp_path / "in"
    write_image_bag(src, synthetic_frames(20, 36, 52))
    summary = process_bag(src, tmp_path / "out", params=PARAMS, engine=_engine(), mode="offline")
    assert summary.frames_out == 20
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(STAGING_PREFIX)]


def test_offline_mode_spills_in_parts_no_larger_than_a_usb_stick_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline mode's spill held every frame's RGB in one file (tens of GB for a long bag): on a FAT32 stick (4 GiB
    a file) the run failed there, nothing kept. It is cut into parts (`SPILL_PART_BYTES`, 1 GiB; here 20 kB, so that
    20 small frames take several), read back to the same output as one file gave."""
    from rosbags.highlevel import AnyReader

    from vdepth_ros import pipeline_offline

    write_image_bag(tmp_path / "in", synthetic_frames(20, 36, 52))
    process_bag(tmp_path / "in", tmp_path / "whole", params=PARAMS, engine=_engine(), mode="offline")
    largest: list[int] = []
    real_open_reads = pipeline_offline._PartedFile.open_reads

    def open_reads(self: pipeline_offline._PartedFile) -> None:
        largest.extend([os.path.getsize(self.part(k)) for k in range(len(self._parts))])
        real_open_reads(self)

    monkeypatch.setattr(pipeline_offline, "SPILL_PART_BYTES", 20_000)
    monkeypatch.setattr(pipeline_offline._PartedFile, "open_reads", open_reads)
    process_bag(tmp_path / "in", tmp_path / "parts", params=PARAMS, engine=_engine(), mode="offline")
    assert largest and max(largest) <= 20_000 + 48 * 64 * 4 * 8, largest  # (a record alone in a part may be larger)

    def messages(bag: Path) -> list[tuple[str, bytes]]:
        with AnyReader([bag]) as reader:
            return [(c.topic, bytes(raw)) for c, _t, raw in reader.messages()]

    assert messages(tmp_path / "parts") == messages(tmp_path / "whole")


def _file_compressed_bag(src: Path, frames: int = 20) -> Path:
    """A bag as `ros2 bag record --compression-mode file` writes it: each storage file zstd-compressed whole."""
    write_image_bag(src, synthetic_frames(frames, 36, 52), compression_mode="file")
    return src


def test_no_room_to_unpack_a_file_compressed_bag_names_tmpdir_not_a_corrupt_bag(tmp_path: Path) -> None:
    """rosbags unpacks a `compression_mode: file` bag whole into the temp folder before reading it;
    when that does not fit, the error used to call the user's bag "truncated or corrupt"."""
    from vdepth_ros.offline.bag_reader import BagFrameSource
    from vdepth_ros.offline.errors import BagReadError

    src = _file_compressed_bag(tmp_path / "in")
    assert next(src.glob("*.mcap.zstd")).stat().st_size < 60_000
    with file_size_limit(60_000), pytest.raises(BagReadError) as exc:
        BagFrameSource(src, image_topic="/image").open()
    assert "TMPDIR" in str(exc.value) and "corrupt" not in str(exc.value)


def test_vdepth_bag_unpacks_a_file_compressed_bag_beside_its_output_not_in_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file-compressed bag was unpacked whole into /tmp (often small or RAM-backed: a big bag
    filled it, or memory) whatever disk -o named; it goes beside the output now, removed with the
    staging folder. Here the temp folder is unusable."""
    src = _file_compressed_bag(tmp_path / "in")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-temp-folder"))
    summary = process_bag(src, tmp_path / "out", params=PARAMS, engine=_engine())
    assert summary.frames_out == 20
    assert tempfile.tempdir == str(tmp_path / "no-temp-folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # nothing left beside the output


def test_storage_files_compressed_whole_are_read_without_their_metadata_yaml(tmp_path: Path) -> None:
    """A `--compression-mode file` recording's storage file given alone (`rec_0.mcap.zstd`) was "unknown bag
    storage"; a folder of them without metadata.yaml (its recorder killed: the closed files compressed, the last
    one not) was read from its last file alone, the compressed ones left out without a word."""
    rec = _file_compressed_bag(tmp_path / "rec", frames=12)
    (rec / "metadata.yaml").unlink()  # the recorder killed before it wrote it
    write_image_bag(tmp_path / "last", synthetic_frames(8, 36, 52), start_ns=1_700_000_000_400_000_000)
    (tmp_path / "last" / "last_0.mcap").rename(rec / "rec_1.mcap")
    alone = process_bag(rec / "rec_0.mcap.zstd", tmp_path / "alone", params=PARAMS, engine=_engine())
    assert alone.frames_out == 12
    assert any("rec_0.mcap.zstd is compressed whole" in n for n in alone.notes), alone.notes
    killed = process_bag(rec, tmp_path / "killed", params=PARAMS, engine=_engine())
    assert killed.frames_out == 20, killed.notes
    assert sorted(p.name for p in rec.iterdir()) == ["rec_0.mcap.zstd", "rec_1.mcap"]  # the input untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alone", "killed", "last", "rec"]  # no copies left


def test_no_room_beside_the_output_to_unpack_a_bag_is_one_error_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the storage files record their unpacked size (rosbag2 compresses each file whole), a
    disk without room for it is named at once, not after minutes of unpacking."""
    import shutil

    from backports import zstd

    from vdepth_ros.offline.errors import BagReadError

    src = _file_compressed_bag(tmp_path / "in")
    packed = next(src.glob("*.zstd"))
    packed.write_bytes(zstd.compress(zstd.decompress(packed.read_bytes())))  # one frame with its size
    unpacked = zstd.get_frame_info(packed.read_bytes()).decompressed_size
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=unpacked // 2))
    with pytest.raises(BagReadError, match=r"no room to unpack .* beside the output") as exc:
        process_bag(src, tmp_path / "out", params=PARAMS, engine=_engine())
    assert "GB" in str(exc.value) and "corrupt" not in str(exc.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_vdepth_video_png_files_on_a_full_disk_are_an_error_not_missing_files(
    tmp_path: Path, fake_models: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """OpenCV's imwrite reports success for a PNG the disk had no room for (the file is cut short):
    on a full disk the run exited 0 with truncated depth PNGs."""
    out, args = _video_run(tmp_path)
    args.append("--no-preview")
    with file_size_limit(1_500):  # each 16-bit PNG is over 2 kB, frames.csv and meta.json fit
        rc = videocli.main([*args, "--max-frames", "5", "--mode", "causal"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("vdepth-video:")]
    assert str(out) in line, line
    assert not out.exists()


def test_a_fat_usb_sticks_largest_file_is_known(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The output on a FAT32 stick (mounted where its label says, spaces escaped in mountinfo): its 4 GiB - 1 per
    file is the limit the tools stop before; `ulimit -f` when lower; none on another file system."""
    from vdepth_ros.offline import atomic

    stick = tmp_path / "MY STICK"
    mounts = (
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        f"98 22 8:17 / {str(stick).replace(' ', chr(92) + '040')} rw,nosuid - vfat /dev/sdb1 rw,uid=1000\n"
    )
    real_read_text = Path.read_text
    monkeypatch.setattr(
        Path, "read_text", lambda p, *a, **k: mounts if str(p) == "/proc/self/mountinfo" else real_read_text(p, *a, **k)
    )
    assert atomic.file_size_limit(stick / "runs" / "out") == (1 << 32) - 1
    assert atomic.file_size_limit(tmp_path / "MY STICKER") is None
    with file_size_limit(1 << 20):  # (`ulimit -f`, lower)
        assert atomic.file_size_limit(stick) == 1 << 20
