"""--overwrite of the export and training tools replaces an earlier output of the same tool, never a
folder or file of the user's (a slip such as `-o ~/data --overwrite` used to delete the user's folder).

Each case runs the tool as users do (console script / python -m) and checks the user's files survive.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from training_support import CONFIGS

EXPORT = str(Path(sys.executable).parent / "vdepth-export")


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VDEPTH_MODEL_CACHE": str(cwd / "cache")}
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _users_folder(path: Path) -> dict[str, bytes]:
    """A folder of the user's (photos, notes), nothing any tool wrote; returns its contents."""
    (path / "photos").mkdir(parents=True)
    (path / "photos" / "robot.jpg").write_bytes(b"\xff\xd8 my photo")
    (path / "notes.txt").write_text("calibration of robot 3\n")
    return _contents(path)


def _contents(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _refused(proc: subprocess.CompletedProcess, where: Path, what: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if str(where) in x]
    assert len(lines) == 1 and what in lines[0], proc.stderr


def test_export_import_overwrite_never_replaces_a_users_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    before = _users_folder(data)
    ckpt = tmp_path / "video_depth_anything_vits.pth"
    ckpt.write_bytes(b"not read: the output is checked first")
    proc = _run(EXPORT, "import", "vda", str(ckpt), "-o", str(data), "--overwrite", cwd=tmp_path)
    _refused(proc, data, "not a model folder")
    assert _contents(data) == before


def test_export_pull_overwrite_never_replaces_a_users_folder_in_the_cache(tmp_path: Path) -> None:
    mine = tmp_path / "models" / "vda-small"  # `--cache ~/models`, where the user keeps their own folder
    before = _users_folder(mine)
    proc = _run(EXPORT, "pull", "vda-small", "--cache", str(mine.parent), "--overwrite", cwd=tmp_path)
    _refused(proc, mine, "not a model folder")
    assert _contents(mine) == before


def test_export_onnx_overwrite_never_replaces_a_users_config_or_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    before = _users_folder(data)
    (data / "config.json").write_text('{"camera": "my robot settings"}\n')
    before = _contents(data)
    proc = _run(EXPORT, "onnx", "vda_lite", "--tiny", "-o", str(data), "--overwrite", "--no-parity", cwd=tmp_path)
    _refused(proc, data, "not a model folder")
    assert _contents(data) == before
    as_graph = tmp_path / "data.onnx"  # a folder of the user's named like the graph
    before = _users_folder(as_graph)
    proc = _run(EXPORT, "onnx", "vda_lite", "--tiny", "-o", str(as_graph), "--overwrite", "--no-parity", cwd=tmp_path)
    _refused(proc, as_graph, "a folder, not an ONNX file")
    assert _contents(as_graph) == before


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_export_engine_never_replaces_a_users_folder_or_file(tmp_path: Path, kind: str) -> None:
    from test_runtime_tinynet import TinyVideoNet
    from vdepth_export.export_onnx import export_onnx

    export_onnx(TinyVideoNet(channels=4).eval(), tmp_path / "m", frames=2, height=16, width=16, parity=False)
    target = tmp_path / ("data" if kind == "folder" else "mine.engine")
    if kind == "folder":
        before = _users_folder(target)
    else:
        target.write_bytes(b"an engine built by the user's own script")
        before = {"": target.read_bytes()}
    proc = _run(EXPORT, "engine", str(tmp_path / "m" / "model.onnx"), "-o", str(target), cwd=tmp_path)
    _refused(proc, target, "not an engine vdepth-export built")
    assert (_contents(target) if kind == "folder" else {"": target.read_bytes()}) == before


def test_training_overwrite_never_deletes_a_users_checkpoints_folder(tmp_path: Path) -> None:
    """`--output ~/work --overwrite`: a run deletes its metrics.jsonl, checkpoints/ and final/ there; a
    `checkpoints` folder of the user's (other projects' weights) went with them."""
    work = tmp_path / "work"
    before = _users_folder(work / "checkpoints")
    config = str(CONFIGS / "vda.yaml")
    proc = _run(sys.executable, "-m", "vdepth_training.train", "--config", config, "--tiny", "--output", str(work),
                "--max-steps", "1", "--overwrite", cwd=tmp_path)  # fmt: skip
    _refused(proc, work / "checkpoints", "not a run's checkpoints folder")
    assert _contents(work / "checkpoints") == before
    assert sorted(p.name for p in work.iterdir()) == ["checkpoints"]


def test_training_export_checkpoint_overwrite_never_replaces_a_users_export_folder(tmp_path: Path) -> None:
    work = tmp_path / "work"
    before = _users_folder(work / "export")
    ckpt = tmp_path / "checkpoint.safetensors"
    ckpt.write_bytes(b"not read: the output is checked first")
    config = str(CONFIGS / "vda.yaml")
    proc = _run(sys.executable, "-m", "vdepth_training.train", "--config", config, "--tiny", "--output", str(work),
                "--export-checkpoint", str(ckpt), "--overwrite", cwd=tmp_path)  # fmt: skip
    _refused(proc, work / "export", "not a model folder")
    assert _contents(work / "export") == before
