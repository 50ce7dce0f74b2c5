"""A user's own training data as it trains: depth in another unit than metres is caught by evidence
or taken as declared (never by a blanket distance rule), and no sequence of theirs is left out in silence."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from training_support import CONFIGS, fresh_accelerate, torchrun  # noqa: F401 - autouse fixture
from vdepth_training.data import sequence as sequence_module
from vdepth_training.data.layouts import load_layout
from vdepth_training.data.sequence import Sequence, SequenceReader, write_sequence

from vdepth_ros.errors import ConfigError

H, W, T = 32, 48, 6


def _seq(folder: Path, depth: np.ndarray, **meta: object) -> Path:
    """A sequence folder as a user writes one: `write_sequence`, then their own `sequence.json` keys."""
    rng = np.random.default_rng(0)
    write_sequence(folder, Sequence(rgb=rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8), target=depth,
                                    valid=np.ones((T, H, W), bool), name=folder.name))  # fmt: skip
    if meta:
        path = folder / "sequence.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **meta}))
    return folder


def _depth(median: float, whole: bool) -> np.ndarray:
    ramp = np.linspace(0.8, 1.2, W, dtype=np.float32) * median
    d = np.broadcast_to(ramp, (T, H, W)).astype(np.float32)
    return np.round(d) if whole else d + np.float32(0.37)


def test_float_millimetres_in_a_sequence_are_refused_and_a_declared_unit_trains(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`np.save(target, depth_mm.astype(np.float32))` trained on depth 1000x too far in silence. Whole
    numbers are a sensor's unit, never metres: refused, naming `depth_scale`; declared, it trains in
    metres. Aerial footage in metres (median 400 m) is not refused: one warning, none once declared."""
    mm = _seq(tmp_path / "mm", _depth(2500.0, whole=True))
    with pytest.raises(ConfigError, match=r'whole numbers.*"depth_scale": 1000'):
        SequenceReader(mm)
    declared = _seq(tmp_path / "mm_declared", _depth(2500.0, whole=True), depth_scale=1000)
    target = SequenceReader(declared).read([0]).target
    assert 1.9 < float(np.median(target)) < 3.1  # metres

    sequence_module._far_warned[0] = False
    with caplog.at_level(logging.WARNING, logger="vdepth_training"):
        aerial = SequenceReader(_seq(tmp_path / "aerial", _depth(400.0, whole=False)))
        SequenceReader(_seq(tmp_path / "aerial2", _depth(400.0, whole=False)))
    assert float(np.median(aerial.read([0]).target)) == pytest.approx(400.37, rel=1e-3)
    assert sum("median depth 400 m" in r.getMessage() for r in caplog.records) == 1  # once, not per sequence
    with pytest.raises(ConfigError, match="depth_scale must be a number"):
        SequenceReader(_seq(tmp_path / "bad", _depth(2.0, whole=False), depth_scale="mm"))
    # a typo in sequence.json stopped the run when a clip of it was first drawn (a traceback, hours in)
    for i, meta in enumerate(({"target_kind": "Depth"}, {"metric": "false"})):
        with pytest.raises(ConfigError, match="target_kind must be"):
            SequenceReader(_seq(tmp_path / f"typo{i}", _depth(2.0, whole=False), **meta))


def test_rgbd_frames_in_float_millimetres_are_refused_and_aerial_metres_load(tmp_path: Path) -> None:
    """The `rgbd` layout refused any float depth with a median beyond 200 m (legitimate aerial footage
    in metres too) and let float millimetres with a median below it through. Now whole numbers are
    refused and far metres load (`depth_scale: 1` declares them)."""

    def folder(name: str, depth: np.ndarray) -> Path:
        seq = tmp_path / name / "run1"
        (seq / "rgb").mkdir(parents=True)
        (seq / "depth").mkdir()
        for i in range(T):
            cv2.imwrite(str(seq / "rgb" / f"{i:06d}.png"), np.full((H, W, 3), 90, np.uint8))
            np.save(seq / "depth" / f"{i:06d}.npy", depth[i])
        return tmp_path / name

    with pytest.raises(ConfigError, match=r"whole numbers.*depth_scale"):
        load_layout(
            "rgbd", folder("mm", _depth(150.0, whole=True))
        )  # 150 mm read as 150 m: under the former 200 m rule
    aerial = folder("aerial", _depth(400.0, whole=False))
    (seq,) = load_layout("rgbd", aerial, depth_scale=1)
    assert float(np.median(seq.read([0]).target)) == pytest.approx(400.37, rel=1e-3)
    (seq,) = load_layout("rgbd", aerial)  # undeclared: a warning, not a refusal
    assert len(seq) == T


def test_rgbd_depth_not_registered_to_the_colour_image_is_named(tmp_path: Path) -> None:
    """Depth at another size than its colour image (a depth stream recorded unaligned) opened fine and
    stopped the run when a clip of it was drawn: `ValueError: target shape (2, 24, 32) != rgb frames
    (2, 48, 64)`, no file named. Now the folder is refused when opened (a later frame when read),
    naming both files and what registered depth is."""
    seq = tmp_path / "raw" / "run1"
    (seq / "rgb").mkdir(parents=True)
    (seq / "depth").mkdir()
    for i in range(4):
        cv2.imwrite(str(seq / "rgb" / f"{i:06d}.jpg"), np.full((H, W, 3), 90, np.uint8))
        cv2.imwrite(str(seq / "depth" / f"{i:06d}.png"), np.full((H // 2, W // 2), 1500, np.uint16))
    with pytest.raises(ConfigError, match=r"000000.png is 24x16, its colour image .*000000.jpg 48x32.*registered"):
        load_layout("rgbd", tmp_path / "raw", depth_scale=1000)
    for i in range(3):
        cv2.imwrite(str(seq / "depth" / f"{i:06d}.png"), np.full((H, W), 1500, np.uint16))
    (reader,) = load_layout("rgbd", tmp_path / "raw", depth_scale=1000)
    with pytest.raises(ConfigError, match=r"depth/000003.png is 24x16"):
        reader.read([2, 3])


def _rgb(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((H, W, 3), 90, np.uint8))


def _png16(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((H, W), 1300, np.uint16))


def _pointodyssey(root: Path) -> None:
    for name in ("ani", "cab", "dancing"):
        for i in range(3):
            _rgb(root / "train" / name / "rgbs" / f"rgb_{i:05d}.jpg")
            if name != "cab" and (name, i) != ("dancing", 2):
                _png16(root / "train" / name / "depths" / f"depth_{i:05d}.png")


def _tartanair(root: Path) -> None:
    for name in ("P000", "P001", "P002"):
        traj = root / "env" / "Easy" / name
        for i in range(3):
            _rgb(traj / "image_left" / f"{i:06d}_left.png")
            if name != "P001" and (name, i) != ("P002", 2):
                (traj / "depth_left").mkdir(parents=True, exist_ok=True)
                np.save(traj / "depth_left" / f"{i:06d}_left_depth.npy", np.full((H, W), 2.5, np.float32))


def _vkitti2(root: Path) -> None:
    for scene in ("Scene01", "Scene02", "Scene06"):
        for i in range(3):
            _rgb(root / "vkitti_2.0.3_rgb" / scene / "clone" / "frames/rgb/Camera_0" / f"rgb_{i:05d}.jpg")
            if scene != "Scene02" and (scene, i) != ("Scene06", 2):
                _png16(root / "vkitti_2.0.3_depth" / scene / "clone" / "frames/depth/Camera_0" / f"depth_{i:05d}.png")


@pytest.mark.parametrize(
    ("layout", "make", "named"),
    [
        ("pointodyssey", _pointodyssey, ("train/cab (3 of 3 frames)", "train/dancing (1 of 3 frames)")),
        ("tartanair", _tartanair, ("env/Easy/P001 (3 of 3 frames)", "env/Easy/P002 (1 of 3 frames)")),
        ("vkitti2", _vkitti2, ("Scene02/clone/Camera_0 (3 of 3 frames)", "Scene06/clone/Camera_0 (1 of 3 frames)")),
    ],
)
def test_a_sequence_without_its_depth_files_is_named_not_left_out(
    tmp_path: Path, layout: str, make: object, named: tuple[str, ...]
) -> None:
    """A sequence whose depth files were missing (an archive not downloaded or extracted, a copy cut
    short) was skipped in silence: the run trained on part of the user's data. Now the source is
    refused before the model is built, naming how many and which, and the fix."""
    make(tmp_path)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=r"2 of 3 .* sequences lack depth files") as info:
        load_layout(layout, tmp_path)
    assert all(n in str(info.value) for n in named) and "move those sequences out" in str(info.value)


def test_declared_millimetres_train_on_two_ranks_and_undeclared_ones_stop_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from vdepth_training.train import main as train_main

    data = tmp_path / "mine"
    for i in range(2):
        _seq(data / f"seq{i}", _depth(1800.0 + 300 * i, whole=True))
    cfg = yaml.safe_load((CONFIGS / "vda.yaml").read_text())
    cfg["tiny"]["data"]["sources"] = [{"name": "mine", "layout": "sequence", "root": str(data)}]
    cfg["tiny"]["stages"][0]["steps"] = 2
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert train_main(["--config", str(path), "--tiny", "--output", str(run)]) == 2
    assert "whole numbers" in capsys.readouterr().err and not (run / "final").exists()
    for i in range(2):
        meta = data / f"seq{i}" / "sequence.json"
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "depth_scale": 1000}))
    out = torchrun(["-m", "vdepth_training.train", "--config", str(path), "--tiny", "--output", str(run)])
    assert "process 1 of 2" in out and (run / "final" / "config.json").is_file()


def test_camera_files_that_do_not_cover_the_frames_are_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A pose file of another length (TartanAir) or annotations shorter than the frames (PointOdyssey)
    were dropped in silence: those sequences trained without cameras, GemDepth's camera loss skipping
    them. Now one warning names the files (the sequences still train)."""
    _tartanair(tmp_path / "ta")
    for name in ("P001", "P002"):  # complete the depth, then give P001 a short pose file
        for i in range(3):
            (tmp_path / "ta" / "env" / "Easy" / name / "depth_left").mkdir(parents=True, exist_ok=True)
            np.save(tmp_path / "ta" / "env" / "Easy" / name / "depth_left" / f"{i:06d}_left_depth.npy",
                    np.full((H, W), 2.5, np.float32))  # fmt: skip
    np.savetxt(tmp_path / "ta" / "env" / "Easy" / "P001" / "pose_left.txt", np.tile([0, 0, 0, 0, 0, 0, 1.0], (2, 1)))
    np.savetxt(tmp_path / "ta" / "env" / "Easy" / "P002" / "pose_left.txt", np.tile([0, 0, 0, 0, 0, 0, 1.0], (3, 1)))
    po = tmp_path / "po" / "train" / "ani"
    for i in range(3):
        _rgb(po / "rgbs" / f"rgb_{i:05d}.jpg")
        _png16(po / "depths" / f"depth_{i:05d}.png")
    np.savez(po / "anno.npz", intrinsics=np.tile(np.eye(3), (2, 1, 1)), extrinsics=np.tile(np.eye(4), (3, 1, 1)))
    with caplog.at_level(logging.WARNING, logger="vdepth_training"):
        seqs = load_layout("tartanair", tmp_path / "ta")
        (po_seq,) = load_layout("pointodyssey", tmp_path / "po")
    assert [s.poses is not None for s in seqs] == [False, False, True]  # P000 has no pose file: not named
    said = [r.getMessage() for r in caplog.records]
    assert any("1 tartanair camera file(s)" in m and "P001/pose_left.txt (2 poses, 3 frames)" in m for m in said)
    assert any("anno.npz (intrinsics of 2 frames, 3 needed)" in m for m in said)
    assert po_seq.intrinsics is None and po_seq.poses is not None


def test_clips_with_a_damaged_file_are_skipped_counted_and_drawn_the_same_everywhere(tmp_path: Path, caplog) -> None:
    """A few damaged files in a large folder (a PNG and a depth file cut short by an interrupted copy)
    stopped the run at the first clip that met one, hours in, and the resumed run met the same clip
    again. Now that clip is drawn again from the same source, deterministically (a rank, a loader
    worker, a resumed run get the same item for an index, so the ranks never desynchronise), counted
    in the item, and each damaged file named once; a source whose draws all meet damage still stops."""
    import torch
    from vdepth_training.data.dataset import SKIPPED_KEY, ClipDataset, ClipSampling, Source
    from vdepth_training.data.stream import ClipBatches

    folders = [_seq(tmp_path / f"seq{i}", _depth(3.0, whole=False)) for i in range(4)]
    png = folders[1] / "rgb" / "000002.png"
    png.write_bytes(png.read_bytes()[:60])
    npy = folders[2] / "target" / "000004.npy"
    npy.write_bytes(npy.read_bytes()[:100])

    def batches() -> ClipBatches:
        source = Source([SequenceReader(p) for p in folders], name="mine")
        sampling = ClipSampling(length_range=(T, T), size=(16, 24), normalization="per_frame")
        return ClipBatches(ClipDataset([source], sampling, num_samples=16, batch_size=2, seed=3))

    with caplog.at_level(logging.WARNING):
        first = [batches()[b] for b in range(8)]
    again = batches()
    for b, batch in enumerate(first):
        assert batch.keys() == again[b].keys() and all(torch.equal(batch[k], again[b][k]) for k in batch), b
    assert sum(int(batch[SKIPPED_KEY].sum()) for batch in first) > 0
    warned = [r.getMessage() for r in caplog.records if "skipped: the clip is drawn again" in r.getMessage()]
    assert any(str(png) in w for w in warned) and any(str(npy) in w for w in warned), warned
    assert len(warned) == len(set(warned))  # each once
    source = Source([SequenceReader(folders[1])], name="mine")  # only damaged clips to draw
    dataset = ClipDataset([source], ClipSampling(length_range=(T, T), size=(16, 24)), num_samples=4, seed=3)
    with pytest.raises(ConfigError, match=f"{png} is damaged.*met damaged files"):
        dataset[0]


def test_a_frame_without_valid_depth_is_warned_once_per_run_on_two_ranks_with_loader_workers(
    tmp_path: Path,
) -> None:
    """ "frame has no valid depth (warned once per sequence)" was said by every loader worker of every
    rank (each a process of its own, started again for each stage): one sequence, four warnings on two
    ranks with two workers. Now once per sequence for the run, whichever process meets it first; and
    the far-depth note (every rank opens the folders) once, not once per rank."""
    data = tmp_path / "mine"
    folders = []
    for i in range(2):
        depth = _depth(300.0, whole=False).copy()  # beyond FAR_MEDIAN_M: aerial footage, or millimetres
        depth[2] = 0.0  # a failed export's frame: no valid depth
        folders.append(_seq(data / f"seq{i}", depth))
    cfg = yaml.safe_load((CONFIGS / "vda.yaml").read_text())
    cfg["tiny"]["data"]["sources"] = [{"name": "mine", "layout": "sequence", "root": str(data)}]
    cfg["tiny"]["data"]["num_samples"] = 2
    cfg["tiny"]["training"]["num_workers"] = 2
    cfg["tiny"]["stages"][0]["steps"] = 2
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = torchrun(["-m", "vdepth_training.train", "--config", str(path), "--tiny", "--output", str(tmp_path / "run")])
    assert "process 1 of 2" in out
    warned = [line for line in out.splitlines() if "has no valid depth" in line]
    assert warned, out[-3000:]
    for folder in folders:
        assert sum(f"{folder}: frame" in line for line in warned) <= 1, warned
    assert sum("median depth 3" in line for line in out.splitlines()) == 1, out[-3000:]


def test_a_checkpoints_data_listing_names_every_source_a_run_draws_from(tmp_path: Path) -> None:
    """`--resume` compares what the sources held when the checkpoint was saved (`Recipe.data_listing`):
    FiffDepth's real images (`data.pseudo.sources`) are drawn by index too, so they are listed with
    `data.sources`; a folder's sequences by their path under its root, named in the difference."""
    from vdepth_training.checkpoints import data_changes
    from vdepth_training.config import load_config
    from vdepth_training.recipes import get_recipe
    from vdepth_training.stages import plan_stages

    cfg = load_config(CONFIGS / "fiffdepth.yaml", tiny=True)
    cfg.pop("tiny")
    for i in range(2):
        _seq(tmp_path / "real" / f"clip{i}", np.full((T, H, W), 2.0, np.float32))
    cfg["data"]["pseudo"]["sources"] = [{"name": "real", "layout": "sequence", "root": str(tmp_path / "real")}]
    recipe, stage = get_recipe(cfg), plan_stages(cfg)[0]
    recipe.open_data(stage)
    listing = recipe.data_listing(stage)
    assert listing["stage 'unet' data.pseudo.sources['real']"] == {"clip0": T, "clip1": T}
    assert "stage 'unet' data.sources['toy']" in listing
    now = {**listing, "stage 'unet' data.pseudo.sources['real']": {"clip0": T - 2, "clip2": T}}
    assert data_changes(listing, now) == [
        "stage 'unet' data.pseudo.sources['real']: 1 sequence(s) added (clip2), 1 removed (clip1), "
        f"1 of another length (clip0: {T} -> {T - 2} frames)"
    ]


def test_a_checkpoints_listing_holds_the_frozen_teacher_it_does_not_save(tmp_path: Path) -> None:
    """OneStep's frozen teacher (`model.teacher.init_from`) is read at every start and is no part of a
    checkpoint: its folder's files are listed, so another model there is a change `--resume` names."""
    from vdepth_training.checkpoints import data_changes
    from vdepth_training.config import load_config
    from vdepth_training.recipes import get_recipe
    from vdepth_training.stages import plan_stages

    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "config.json").write_text('{"family": "depthcrafter"}')
    (teacher / "model.safetensors").write_bytes(bytes(range(256)) * 4096)
    teacher_from = {"model": {"teacher": {"init_from": str(teacher)}}}
    cfg = load_config(CONFIGS / "onestep.yaml", tiny=True, overrides=teacher_from)
    recipe, stage = get_recipe(cfg), plan_stages(cfg)[0]
    saved = recipe.data_listing(stage)
    where = f"stage {stage.name!r} model.teacher.init_from {teacher}"
    assert where in saved and data_changes(saved, recipe.data_listing(stage)) == []
    shutil.move(teacher, tmp_path / "original")  # a node-local copy made later: other times, the same model
    shutil.copytree(tmp_path / "original", teacher, copy_function=shutil.copy)
    assert data_changes(saved, recipe.data_listing(stage)) == []
    (teacher / "model.safetensors").write_bytes(bytes(range(255, -1, -1)) * 4096)  # trained again: same size
    assert data_changes(saved, recipe.data_listing(stage)) == [
        f"{where}: another model there (its config.json or weight files changed)"
    ]


def test_a_jpeg_cut_short_is_a_damaged_file_in_every_training_loader(tmp_path: Path) -> None:
    """`cv2.imread` decodes a JPEG cut short (an interrupted copy) with its missing rows grey and says so
    only on standard error, so the training loaders trained on it as a picture. Each loader (a sequence
    folder with JPEG frames, a dataset layout's colour reader, a folder of images for pseudo labels) now
    calls it damaged, which the clip sampler skips, counts and names (test above)."""
    from vdepth_training.data.layouts import read_rgb
    from vdepth_training.data.pseudo import ImageSequence

    rng = np.random.default_rng(1)
    picture = cv2.GaussianBlur(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), (9, 9), 3)
    jpeg = tmp_path / "cut.jpg"
    data = cv2.imencode(".jpg", picture)[1].tobytes()
    jpeg.write_bytes(data[: len(data) // 2])
    assert cv2.imread(str(jpeg), cv2.IMREAD_COLOR) is not None  # what made it silent: OpenCV decodes it
    with pytest.raises(ValueError, match=r"cut\.jpg"):
        read_rgb(jpeg)
    with pytest.raises(OSError, match=r"cut\.jpg"):
        ImageSequence(jpeg, "images/cut.jpg").read()
    folder = _seq(tmp_path / "seq", _depth(3.0, whole=False))
    frame = sorted((folder / "rgb").iterdir())[1]
    frame.unlink()
    small = cv2.imencode(".jpg", cv2.resize(picture, (W, H)))[1].tobytes()
    frame.with_suffix(".jpg").write_bytes(small[: len(small) // 2])
    reader = SequenceReader(folder)
    with pytest.raises(ValueError, match="is damaged"):
        reader.read([1])
