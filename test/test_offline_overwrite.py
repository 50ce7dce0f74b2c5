"""--overwrite replaces an earlier output of the same tool, never a folder of the user's other files."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from fakes import LuminanceEngine

from vdepth_ros.offline.bag import process_bag
from vdepth_ros.offline.errors import OutputExistsError
from vdepth_ros.offline.synth import synthetic_frames, write_image_bag
from vdepth_ros.offline.video import process_video

PARAMS = {"scale_source": "range", "near": 0.5, "far": 5.0, "max_depth": 3.0}


def _engine() -> LuminanceEngine:
    return LuminanceEngine(height=48, width=64, frames=8, overlap=3)


def _users_folder(path: Path) -> Path:
    path.mkdir()
    (path / "thesis.tex").write_text("years of work")
    return path


def test_bag_overwrite_refuses_a_folder_that_is_not_a_bag(tmp_path: Path) -> None:
    """`-o ~/data --overwrite` (a slip for ~/data/run3) deleted the whole folder once the run was done."""
    src = tmp_path / "in"
    write_image_bag(src, synthetic_frames(10, 36, 52))
    mine = _users_folder(tmp_path / "data")
    with pytest.raises(OutputExistsError, match="not a bag"):
        process_bag(src, mine, params=PARAMS, engine=_engine(), overwrite=True)
    assert (mine / "thesis.tex").read_text() == "years of work"
    process_bag(src, tmp_path / "out", params=PARAMS, engine=_engine())
    process_bag(src, tmp_path / "out", params=PARAMS, engine=_engine(), overwrite=True)  # an earlier output: fine


def test_video_overwrite_refuses_a_folder_that_is_not_a_vdepth_video_output(tmp_path: Path) -> None:
    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    for i, rgb in enumerate(synthetic_frames(10, 36, 52)):
        cv2.imwrite(str(frames / f"{i:03d}.png"), rgb[..., ::-1])
    mine = _users_folder(tmp_path / "data")
    kw = {"params": PARAMS, "engine": _engine(), "preview": False, "formats": ("npy",)}
    with pytest.raises(OutputExistsError, match="not a vdepth-video output"):
        process_video(frames, mine, overwrite=True, **kw)
    assert (mine / "thesis.tex").read_text() == "years of work"
    process_video(frames, tmp_path / "out", **kw)
    process_video(frames, tmp_path / "out", overwrite=True, **{**kw, "engine": _engine()})
    # a folder of the user's that has a meta.json of its own (a dataset's, a camera app's): it was taken for
    # an earlier output by that file name alone, and replaced whole
    dataset = _users_folder(tmp_path / "dataset")
    (dataset / "meta.json").write_text('{"sensor": "d435", "frames": 300}\n')
    with pytest.raises(OutputExistsError, match="not a vdepth-video output"):
        process_video(frames, dataset, overwrite=True, **{**kw, "engine": _engine()})
    assert (dataset / "thesis.tex").read_text() == "years of work"


@pytest.mark.parametrize("output", ["run2", "run2.mcap", "run2.db3"])
def test_bag_overwrite_refuses_a_recording_it_did_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str
) -> None:
    """`vdepth-bag ~/bags/run1 -o ~/bags/run2 --overwrite` (a slip for run3, after reruns with
    --overwrite): any bag was an output it could replace, so the recording run2 was deleted. The refusal as the user
    meets it (its own process); the replacing runs in this one (the same `main`: 6 processes fewer, ~15 s)."""
    import hashlib
    import shutil

    from fakes import run_offline_cli

    from vdepth_ros.offline import bag as bagcli
    from vdepth_ros.pipeline import DepthPipeline

    (tmp_path / "params.yaml").write_text("depth_node:\n  ros__parameters:\n    scale_source: range\n")
    write_image_bag(tmp_path / "run1", synthetic_frames(10, 36, 52))
    storage = {".mcap": "mcap", ".db3": "sqlite3"}.get(Path(output).suffix, "mcap")
    write_image_bag(tmp_path / "rec2", synthetic_frames(12, 36, 52, seed=2), storage=storage)
    if output == "run2":
        shutil.move(tmp_path / "rec2", tmp_path / output)
    else:
        shutil.move(next((tmp_path / "rec2").glob(f"*{Path(output).suffix}")), tmp_path / output)
        shutil.rmtree(tmp_path / "rec2")

    def digest() -> dict[str, str]:
        target = tmp_path / output
        files = sorted(target.iterdir()) if target.is_dir() else [target]
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    before = digest()
    args = ["run1", "-o", output, "--params", "params.yaml", "--overwrite"]
    proc = run_offline_cli("bag", args, tmp_path)
    assert proc.returncode == 2, proc.stdout
    assert "a bag vdepth-bag did not write" in proc.stderr and "move it away" in proc.stderr, proc.stderr
    assert digest() == before
    # its own earlier output is replaced, in every form
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bagcli, "build_pipeline", lambda config, engine=None: DepthPipeline(config, _engine()))
    out = "out" + Path(output).suffix
    assert bagcli.main(["run1", "-o", out, "--params", "params.yaml", "--no-progress"]) == 0
    again = ["run2" if output == "run2" else "run1", "-o", out, "--params", "params.yaml", "--overwrite"]
    assert bagcli.main([*again, "--copy-input-topics", "--no-progress"]) == 0


def test_overwrite_keeps_an_earlier_output_that_holds_the_users_files(tmp_path: Path) -> None:
    """An earlier output folder the user has put files in (notes beside the depth bag, a copy of the recording,
    an analysis folder in vdepth-video's results): `--overwrite` recognised the output and replaced the folder
    whole, the user's files with it. Now such an output is refused, naming the files; one holding only what the
    tool wrote is replaced as before."""
    import cv2

    src = tmp_path / "in"
    write_image_bag(src, synthetic_frames(10, 36, 52))
    out = tmp_path / "out"
    process_bag(src, out, params=PARAMS, engine=_engine())
    (out / "notes.txt").write_text("what I saw")
    shutil.copy(next(src.glob("*.mcap")), out / "recording.mcap")
    with pytest.raises(OutputExistsError, match=r"files it did not write beside it \(notes\.txt, recording\.mcap\)"):
        process_bag(src, out, params=PARAMS, engine=_engine(), overwrite=True)
    assert (out / "notes.txt").read_text() == "what I saw" and (out / "recording.mcap").is_file()
    (out / "notes.txt").unlink()
    (out / "recording.mcap").unlink()
    process_bag(src, out, params=PARAMS, engine=_engine(), overwrite=True)
    (out / "out_0.mcap").rename(out / "out.mcap")  # as vdepth-bag named its file before it named it as rosbag2 does
    (out / "metadata.yaml").write_text((out / "metadata.yaml").read_text().replace("out_0.mcap", "out.mcap"))
    process_bag(src, out, params=PARAMS, engine=_engine(), overwrite=True)  # still its own output: replaced
    assert {p.name for p in out.iterdir()} == {"out_0.mcap", "metadata.yaml"}

    frames = tmp_path / "frames"
    frames.mkdir()
    for i, rgb in enumerate(synthetic_frames(10, 36, 52)):
        cv2.imwrite(str(frames / f"{i:03d}.png"), rgb[..., ::-1])
    kw = {"params": PARAMS, "preview": False, "formats": ("npy", "png")}
    process_video(frames, tmp_path / "vout", engine=_engine(), **kw)
    (tmp_path / "vout" / "analysis").mkdir()
    (tmp_path / "vout" / "analysis" / "plot.py").write_text("import matplotlib")
    per_frame = next(p for p in (tmp_path / "vout").iterdir() if p.name in ("depth", "disparity"))
    (per_frame / "README").write_text("mine")
    with pytest.raises(
        OutputExistsError, match=rf"files it did not write in it \(analysis/, {per_frame.name}/README\)"
    ):
        process_video(frames, tmp_path / "vout", engine=_engine(), overwrite=True, **kw)
    assert (tmp_path / "vout" / "analysis" / "plot.py").is_file()
    shutil.rmtree(tmp_path / "vout" / "analysis")
    (per_frame / "README").unlink()
    process_video(frames, tmp_path / "vout", engine=_engine(), overwrite=True, **kw)


@pytest.mark.parametrize(
    ("output", "form"),
    [
        ("new/sub/run", "folder"),  # folders above it are created, as `ros2 bag record -o` creates them
        ("new/run.mcap", "mcap"),
        ("run.db3", "db3"),
        ("empty.mcap", "folder"),  # an existing (empty) folder: a bag folder, never replaced by a file
        ("slash.mcap/", "folder"),  # a trailing "/" says a folder
    ],
)
def test_every_output_path_form_writes_what_its_name_says(tmp_path: Path, output: str, form: str) -> None:
    """An output named like a file, a folder that exists, a path under folders that do not: one rule
    (`bag_outputs.output_storage`), and the summary says which form was written. `-o x.mcap` where the user had
    made the folder x.mcap replaced that folder with a file, and `-o x.mcap/` wrote a file."""
    src = tmp_path / "in"
    write_image_bag(src, synthetic_frames(6, 36, 52))
    (tmp_path / "empty.mcap").mkdir()
    summary = process_bag(src, f"{tmp_path}/{output}", params=PARAMS, engine=_engine())  # (a str: its "/" kept)
    out = tmp_path / output.rstrip("/")
    if form == "folder":  # as `ros2 bag record -o OUT` names its file, OUT_0.mcap (rosbags': OUT.mcap)
        assert {p.name for p in out.iterdir()} == {f"{out.name}_0.mcap", "metadata.yaml"}
        assert summary.outputs["output bag"] == f"{out} (a bag folder: metadata.yaml and {out.name}_0.mcap)"
        info = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        assert info["relative_file_paths"] == [f["path"] for f in info["files"]] == [f"{out.name}_0.mcap"]
        # what `ros2 bag reindex` takes (rosbag2_cpp/src/rosbag2_cpp/reindexer.cpp: regex_bag_pattern_)
        assert re.fullmatch(r".+_(\d+)\.([a-zA-Z0-9])+", f"{out.name}_0.mcap")
    else:
        assert out.is_file() and out.read_bytes()[:4] in (b"\x89MCA", b"SQLi")
        assert summary.outputs["output bag"].startswith(f"{out} (one {'mcap' if form == 'mcap' else 'sqlite3'} file")


@pytest.mark.parametrize(
    ("existing", "said"),
    [
        ("notes.mcap", "not a bag (named .mcap, but not an MCAP file): it is kept"),
        ("notes.db3", "not a bag (named .db3, but not an SQLite file): it is kept"),
        ("notes.txt", "not a bag (a file, neither .mcap nor .db3): it is kept"),
        ("data", "not a bag (a folder without metadata.yaml): it is kept"),
    ],
)
def test_a_users_file_or_folder_at_the_output_is_named_as_what_it_is(tmp_path: Path, existing: str, said: str) -> None:
    """It was answered "exists; pass --overwrite to replace it", and the run with --overwrite then refused it
    ("a bag vdepth-bag did not write (a recording?)" for a text file named notes.mcap): now both runs say what it
    is, that it is kept, and never to pass --overwrite."""
    src = tmp_path / "in"
    write_image_bag(src, synthetic_frames(6, 36, 52))
    mine = _users_folder(tmp_path / existing) if existing == "data" else tmp_path / existing
    if existing != "data":
        mine.write_text("my notes")
    for overwrite in (False, True):
        with pytest.raises(OutputExistsError, match=re.escape(said)) as err:
            process_bag(src, mine, params=PARAMS, engine=_engine(), overwrite=overwrite)
        assert "pass --overwrite" not in str(err.value)
    assert (mine / "thesis.tex").is_file() if existing == "data" else mine.read_text() == "my notes"
