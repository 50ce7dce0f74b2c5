"""AtomicOutput: outputs appear under their final name only when complete; nothing existing is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from vdepth_ros.offline.atomic import STAGING_PREFIX, AtomicOutput, check_output_path
from vdepth_ros.offline.errors import OfflineError, OutputExistsError


def _staging(parent: Path) -> list[Path]:
    return [p for p in parent.iterdir() if p.name.startswith(STAGING_PREFIX)]


def test_commit_renames_into_place(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with AtomicOutput(final) as tmp:
        assert tmp.parent.parent == tmp_path and tmp.name == "out"
        tmp.mkdir()
        (tmp / "a.txt").write_text("new")
        assert not final.exists()
    assert (final / "a.txt").read_text() == "new"
    assert _staging(tmp_path) == []


def test_exception_leaves_nothing_under_final_name(tmp_path: Path) -> None:
    final = tmp_path / "out"

    def run() -> None:
        with AtomicOutput(final) as tmp:
            tmp.mkdir()
            (tmp / "half").write_text("x")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run()
    assert not final.exists()
    assert _staging(tmp_path) == []


def test_existing_output_refused_without_overwrite(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "mine.txt").write_text("user data")
    with pytest.raises(OutputExistsError, match="--overwrite"), AtomicOutput(final) as tmp:
        tmp.mkdir()
    assert (final / "mine.txt").read_text() == "user data"


def test_overwrite_replaces_only_after_success(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")

    def crash() -> None:
        with AtomicOutput(final, overwrite=True) as tmp:
            tmp.mkdir()
            raise RuntimeError("crash mid-way")

    with pytest.raises(RuntimeError):
        crash()
    assert (final / "old.txt").read_text() == "old"  # a failed run keeps the previous output
    with AtomicOutput(final, overwrite=True) as tmp:
        tmp.mkdir()
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert _staging(tmp_path) == []


def test_empty_existing_folder_is_reused(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    with AtomicOutput(final) as tmp:
        tmp.mkdir()
        (tmp / "f").write_text("1")
    assert (final / "f").exists()


def test_output_may_not_overlap_input(tmp_path: Path) -> None:
    bag = tmp_path / "in_bag"
    bag.mkdir()
    for out in (bag, bag / "sub", tmp_path):
        with pytest.raises(OfflineError, match="overlaps the input"):
            check_output_path(out, overwrite=True, inputs=[bag])


def test_an_output_that_cannot_be_created_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file where the output's folder must be, or a read-only folder: an OfflineError (one line from
    the CLIs, exit status 2), not an OSError traceback; nothing is left behind."""
    (tmp_path / "notes.txt").write_text("user data")
    with (
        pytest.raises(OfflineError, match=r"cannot create the output .*notes.txt is a file, not a folder"),
        AtomicOutput(tmp_path / "notes.txt" / "out"),
    ):
        pass
    assert (tmp_path / "notes.txt").read_text() == "user data"

    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)  # chmod 555 does not stop root, who runs CI
    with (
        pytest.raises(OfflineError, match=r"cannot create the output .*Permission denied"),
        AtomicOutput(tmp_path / "out"),
    ):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("tool", ["bag", "video"])
def test_cli_output_in_a_read_only_folder(
    tmp_path: Path, tool: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vdepth_ros.offline import bag, video
    from vdepth_ros.offline.synth import synthetic_frames, write_image_bag

    src = tmp_path / "in"
    if tool == "bag":
        write_image_bag(src, synthetic_frames(2, 12, 16))
    else:
        import cv2

        src.mkdir()
        for i, rgb in enumerate(synthetic_frames(2, 12, 16)):
            cv2.imwrite(str(src / f"{i}.png"), rgb)
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:
        if self.parent == tmp_path / "ro":
            raise PermissionError(13, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(Path, "mkdir", mkdir)
    main = bag.main if tool == "bag" else video.main
    assert main([str(src), "-o", str(tmp_path / "ro" / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "error: cannot create the output" in err and "Permission denied" in err and "Traceback" not in err


def test_a_killed_runs_partial_output_is_removed_by_the_next_run(tmp_path: Path) -> None:
    """SIGKILL leaves no chance to clean up: its staging folder stayed beside the output for good.
    The next run for the same output removes it; a live run's or another output's staging stays."""
    import os
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f"{STAGING_PREFIX}{dead_pid}-0000abcd"
    (stale / "out.bag").mkdir(parents=True)
    (stale / "out.bag" / "half.mcap").write_text("half")
    live = tmp_path / f"{STAGING_PREFIX}{os.getpid()}-0000beef"
    (live / "out.bag").mkdir(parents=True)
    other = tmp_path / f"{STAGING_PREFIX}{dead_pid}-0000cafe"
    (other / "other.bag").mkdir(parents=True)
    with AtomicOutput(tmp_path / "out.bag") as path:
        path.write_text("done")
    assert (tmp_path / "out.bag").read_text() == "done"
    assert not stale.exists() and live.exists() and other.exists()


def test_companions_move_with_the_output_and_are_put_back_when_a_move_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An output made of a file and its sidecars (a graph, its external data and spec) is replaced
    as one: every sidecar written moves with it, one not written removes the old namesake (it
    described the replaced output), a failed move puts everything back, and other files beside the
    output are never touched."""
    import os

    final = tmp_path / "model.onnx"
    for name, text in (("model.onnx", "old graph"), ("model.onnx.data", "old data"), ("model.onnx.json", "old spec"),
                       ("notes.txt", "mine")):  # fmt: skip
        (tmp_path / name).write_text(text)
    with AtomicOutput(final, overwrite=True, companions=["model.onnx.data", "model.onnx.json"]) as tmp:
        tmp.write_text("new graph")
        tmp.with_name("model.onnx.json").write_text("new spec")  # no external data this time
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        "model.onnx": "new graph", "model.onnx.json": "new spec", "notes.txt": "mine"}  # fmt: skip
    real_replace = os.replace

    failed: list[object] = []

    def full_disk(src: object, dst: object) -> None:
        if Path(str(dst)) == final and not failed:  # the output's own move fails, once
            failed.append(src)
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk)
    out = AtomicOutput(final, overwrite=True, companions=["model.onnx.data", "model.onnx.json"])
    tmp = out.__enter__()
    tmp.write_text("newer graph")
    tmp.with_name("model.onnx.data").write_text("newer data")
    tmp.with_name("model.onnx.json").write_text("newer spec")
    with pytest.raises(OSError, match="No space"):
        out.__exit__(None, None, None)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        "model.onnx": "new graph", "model.onnx.json": "new spec", "notes.txt": "mine"}  # fmt: skip
    with pytest.raises(OfflineError, match="plain file names"):
        AtomicOutput(final, companions=["../elsewhere"])


_KILLED_COMMIT = """
import os, signal, sys
from pathlib import Path
from vdepth_ros.offline.atomic import AtomicOutput

final, kill_after = Path(sys.argv[1]), sys.argv[2]
real_replace = os.replace


def replace(src, dst):
    real_replace(src, dst)
    if Path(dst).name == final.name and Path(dst).parent.name == kill_after:  # SIGKILL: no clean-up runs
        os.kill(os.getpid(), signal.SIGKILL)


os.replace = replace
with AtomicOutput(final, overwrite=True, companions=["out.bag.json"]) as tmp:
    tmp.mkdir()
    (tmp / "new.mcap").write_text("new")
    tmp.with_name("out.bag.json").write_text("new spec")
"""


@pytest.mark.parametrize("kill_after", [".previous", "parent"])
def test_an_overwrite_killed_during_its_commit_never_loses_the_earlier_output(tmp_path: Path, kill_after: str) -> None:
    """`--overwrite` sets the earlier output aside, then moves the new one in: a SIGKILL between the
    two left neither under the output's name, and the next run's clean-up of the killed run's staging
    deleted the earlier output with it. Now it is put back (with its companion); once the new output
    was in place, the new one is kept."""
    import subprocess
    import sys

    final = tmp_path / "out.bag"
    final.mkdir()
    (final / "old.mcap").write_text("old")
    (tmp_path / "out.bag.json").write_text("old spec")
    (tmp_path / "notes.txt").write_text("mine")
    # kill after the output was set aside in ".previous", or after the new one was moved in (its parent)
    where = tmp_path.name if kill_after == "parent" else kill_after
    killed = subprocess.run([sys.executable, "-c", _KILLED_COMMIT, str(final), where], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    assert len(_staging(tmp_path)) == 1  # what the killed run left
    if kill_after == ".previous":
        assert not final.exists()  # the moment the kill caught: neither output under the name
        with pytest.raises(OutputExistsError, match="--overwrite"):
            AtomicOutput(final).__enter__()  # the earlier output is back, and protected as before
        expected = {"out.bag": "old", "out.bag.json": "old spec", "notes.txt": "mine"}
    else:
        with pytest.raises(OutputExistsError, match="--overwrite"):
            AtomicOutput(final).__enter__()
        expected = {"out.bag": "new", "out.bag.json": "new spec", "notes.txt": "mine"}
    assert not _staging(tmp_path)
    found = {p.name: next(p.iterdir()).read_text() if p.is_dir() else p.read_text() for p in tmp_path.iterdir()}
    assert found == expected
    with AtomicOutput(final, overwrite=True, companions=["out.bag.json"]) as tmp:  # and --overwrite goes on as ever
        tmp.mkdir()
        (tmp / "newer.mcap").write_text("newer")
    assert [p.name for p in final.iterdir()] == ["newer.mcap"] and not (tmp_path / "out.bag.json").exists()
    assert not _staging(tmp_path)


_KILLED_AFTER = """
import os, signal, sys
from pathlib import Path
from vdepth_ros.offline.atomic import AtomicOutput

final, when = Path(sys.argv[1]), sys.argv[2]
real_replace = os.replace


def replace(src, dst):
    real_replace(src, dst)
    if Path(dst) == final:  # the output is in place; SIGKILL: no clean-up runs
        os.kill(os.getpid(), signal.SIGKILL)


os.replace = replace
output = AtomicOutput(final)
with output as tmp:
    (output.scratch / "spill.npy").write_bytes(bytes(1024))  # a tool's large temporary file
    if when == "before writing":
        os.kill(os.getpid(), signal.SIGKILL)
    tmp.write_text("new")
"""


@pytest.mark.parametrize("when", ["before writing", "after its commit"])
def test_a_killed_runs_staging_that_holds_no_output_is_removed_by_the_next_run(tmp_path: Path, when: str) -> None:
    """A run killed after its commit (no earlier output set aside) or before it wrote its output left
    a staging folder holding only scratch files, which named no output: no later run removed it. Its
    marker now names the output, so the next run for that output removes it; a folder without a
    marker (not ours) stays."""
    import subprocess
    import sys

    final = tmp_path / "out.bag"
    foreign = tmp_path / f"{STAGING_PREFIX}1-0000cafe"  # a dead pid's folder naming no output: left alone
    (foreign / ".scratch").mkdir(parents=True)
    killed = subprocess.run([sys.executable, "-c", _KILLED_AFTER, str(final), when], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    left = [p for p in _staging(tmp_path) if p != foreign]
    assert len(left) == 1 and (left[0] / ".scratch" / "spill.npy").exists()  # what the killed run left
    assert final.exists() == (when == "after its commit")
    with AtomicOutput(tmp_path / "other.bag") as tmp:  # another output's run leaves it alone
        tmp.write_text("other")
    assert left[0].exists()
    with AtomicOutput(final, overwrite=True) as tmp:
        tmp.write_text("newer")
    assert final.read_text() == "newer"
    assert _staging(tmp_path) == [foreign]


def test_an_output_may_not_take_a_staging_folders_own_names(tmp_path: Path) -> None:
    with pytest.raises(OfflineError, match="may not be named"):
        AtomicOutput(tmp_path / ".scratch")


def test_a_companion_a_killed_commit_moved_in_beside_no_output_is_taken_back(tmp_path: Path) -> None:
    """A run killed after its commit moved a companion in (an engine's spec, an ONNX graph's external data) but
    before the output itself, with no earlier output: the next run removed the killed run's staging, output and
    all, and left the companion beside nothing for good. Now the next run takes it back too; the user's files
    stay, and so does a file put under the companion's name since."""
    import subprocess
    import sys

    final = tmp_path / "out.bag"
    (tmp_path / "notes.txt").write_text("mine")
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_COMMIT.replace("final.name and", "'out.bag.json' and"), str(final),
         tmp_path.name],
        capture_output=True, text=True,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    assert (tmp_path / "out.bag.json").read_text() == "new spec" and not final.exists()  # what the kill left
    with AtomicOutput(tmp_path / "other.bag") as tmp:  # another output's run: the staging is not its own
        tmp.write_text("other")
    assert (tmp_path / "out.bag.json").exists()
    with AtomicOutput(final) as tmp:  # the next run for the output: no --overwrite needed, nothing was there
        tmp.write_text("newer")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "other.bag", "out.bag"]
    assert not _staging(tmp_path)
