"""vdepth-bag on bag folders as `ros2 bag record` leaves them: split into several files, without
metadata.yaml (a recorder that was killed, a folder copied without it), or written by a newer rosbag2."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fakes import LuminanceEngine

from vdepth_ros.offline.bag import process_bag
from vdepth_ros.offline.errors import BagReadError
from vdepth_ros.offline.synth import synthetic_frames, write_image_bag

PARAMS = {"scale_source": "range", "near": 0.5, "far": 5.0, "max_depth": 3.0}
START = 1_700_000_000_000_000_000
EXT = {"mcap": ".mcap", "sqlite3": ".db3"}


def _engine() -> LuminanceEngine:
    return LuminanceEngine(height=48, width=64, frames=8, overlap=3)


def _split_recording(folder: Path, storage: str, parts: int = 3, per_part: int = 8) -> Path:
    """A split recording's storage files (`rec_0`, `rec_1`, ... as rosbag2 names them), no metadata.yaml."""
    folder.mkdir()
    for k in range(parts):
        part = folder.parent / f"part{k}"
        frames = list(synthetic_frames(parts * per_part, 36, 52))[k * per_part : (k + 1) * per_part]
        write_image_bag(part, frames, storage=storage, start_ns=START + k * per_part * 33_333_333)
        shutil.move(next(part.glob(f"*{EXT[storage]}")), folder / f"rec_{k}{EXT[storage]}")
        shutil.rmtree(part)
    return folder


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
    bag = tmp_path / "in"
    write_image_bag(bag, synthetic_frames(10, 36, 52))
    meta = bag / "metadata.yaml"
    meta.write_text(meta.read_text().replace("version: 9", "version: 11"))
    summary = process_bag(bag, tmp_path / "out", params=PARAMS, engine=_engine())
    assert summary.frames_out == 10
    assert any("version 11" in n for n in summary.notes), summary.notes


@pytest.mark.parametrize("metadata", [False, True])
def test_a_cut_off_mcap_names_the_file_and_how_to_recover_it(tmp_path: Path, metadata: bool) -> None:
    """The last file of a killed recording has no MCAP footer: say which one and how to recover it
    (newer rosbag2 rewrites metadata.yaml at each split, so it may be there)."""
    rec = _split_recording(tmp_path / "rec", "mcap")
    if metadata:
        write_image_bag(tmp_path / "meta", synthetic_frames(1, 36, 52))
        text = (tmp_path / "meta" / "metadata.yaml").read_text().replace("meta.mcap", "rec_2.mcap")
        (rec / "metadata.yaml").write_text(text)
    last = rec / "rec_2.mcap"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(BagReadError) as exc:
        process_bag(rec, tmp_path / "out", params=PARAMS, engine=_engine())
    assert "rec_2.mcap" in str(exc.value) and "mcap recover" in str(exc.value)
    assert not (tmp_path / "out").exists()


def test_a_folder_that_is_not_a_bag_says_so(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    with pytest.raises(BagReadError, match=r"no metadata\.yaml and no \.mcap or \.db3"):
        process_bag(tmp_path / "photos", tmp_path / "out", params=PARAMS, engine=_engine())
