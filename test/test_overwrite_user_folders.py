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


def _images(folder: Path, n: int, seed: int = 0) -> Path:
    import cv2
    import numpy as np

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        cv2.imwrite(str(folder / f"im {i}.png"), rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    return folder


def _labeller(path: Path, seed: int) -> Path:
    import torch

    from vdepth_ros.models import build_model, family_class

    torch.manual_seed(seed)
    build_model("vda", **family_class("vda").tiny_config()).save_pretrained(path)
    return path


def _labels(contents: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in contents.items() if "/target/" in k}


def test_pseudo_labels_of_two_models_are_never_mixed_in_one_folder(tmp_path: Path) -> None:
    """The labelling tool kept the labels already in --out and added the new images' only: a second
    model's labels went into the first one's folder, one folder with labels of two models (and of
    images no longer in the set). Now an existing output is refused, or replaced whole."""
    images = _images(tmp_path / "images", 3)
    first, second = _labeller(tmp_path / "m1", 0), _labeller(tmp_path / "m2", 1)
    out = tmp_path / "labels"
    pseudo = [sys.executable, "-m", "vdepth_training.data.pseudo", "--images", str(images), "--out", str(out)]
    proc = _run(*pseudo, "--model", str(first), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    before = _contents(out)
    assert len(_labels(before)) == 3
    (images / "im 0.png").unlink()
    _images(tmp_path / "more", 2, seed=5).rename(images / "more")
    proc = _run(*pseudo, "--model", str(second), cwd=tmp_path)
    _refused(proc, out, "--overwrite")
    assert _contents(out) == before
    proc = _run(*pseudo, "--model", str(second), "--overwrite", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [  # the second model's labels, of today's images only
        "images_im_1.png", "images_im_2.png", "images_more_im_0.png", "images_more_im_1.png"
    ]  # fmt: skip
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".vdepth-partial")]


def test_pseudo_labels_overwrite_never_replaces_a_users_folder(tmp_path: Path) -> None:
    images = _images(tmp_path / "images", 1)
    data = tmp_path / "data"
    before = _users_folder(data)
    proc = _run(sys.executable, "-m", "vdepth_training.data.pseudo", "--images", str(images), "--model",
                str(tmp_path / "no-model"), "--out", str(data), "--overwrite", cwd=tmp_path)  # fmt: skip
    _refused(proc, data, "not a folder of sequences")
    assert _contents(data) == before


def test_layout_convert_refuses_an_existing_output_and_a_users_folder(tmp_path: Path) -> None:
    """`convert` wrote its sequences into whatever folder --out named, among the user's files."""
    data = tmp_path / "data"
    before = _users_folder(data)
    images = _images(tmp_path / "images", 2)
    convert = [sys.executable, "-m", "vdepth_training.data.layouts", "images", str(images), "--out", str(data)]
    _refused(_run(*convert, cwd=tmp_path), data, "--overwrite")
    _refused(_run(*convert, "--overwrite", cwd=tmp_path), data, "not a folder of sequences")
    assert _contents(data) == before
    out = tmp_path / "seqs"
    convert[-1] = str(out)
    assert _run(*convert, cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["images_im_0.png", "images_im_1.png"]
    (images / "im 1.png").unlink()
    assert _run(*convert, "--overwrite", cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["images_im_0.png"]  # replaced whole, not mixed


def _split_files(folder: Path) -> dict[str, bytes]:
    import json

    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"graph")
    (folder / "model.onnx.json").write_text("{}")
    for name in ("model.frame.onnx", "model.window.onnx"):
        (folder / name).write_bytes(b"an earlier split graph")
        (folder / f"{name}.json").write_text("{}")
    meta = {"frames": 8, "height": 16, "width": 16, "precision": "fp32", "feature_names": ["a"],
            "feature_shapes": [[1, 2, 3, 4]], "onnx_sha256": "0" * 64}  # fmt: skip
    (folder / "model.split.json").write_text(json.dumps(meta))
    return _contents(folder)


def test_export_split_refuses_to_replace_split_graphs_without_overwrite(tmp_path: Path) -> None:
    """`vdepth-export split` replaced the folder's split graphs (e.g. the fp16 ones a Jetson runs)
    without a word; now it names --overwrite, and never replaces files it did not write."""
    folder = tmp_path / "m"
    before = _split_files(folder)
    _refused(_run(EXPORT, "split", str(folder), cwd=tmp_path), folder, "--overwrite")
    assert _contents(folder) == before
    (folder / "model.frame.onnx.json").unlink()  # a graph of the user's own, not vdepth-export's
    before = _contents(folder)
    proc = _run(EXPORT, "split", str(folder), "--overwrite", cwd=tmp_path)
    _refused(proc, folder / "model.frame.onnx", "not written by `vdepth-export split`")
    assert _contents(folder) == before
