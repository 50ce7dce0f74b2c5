"""Sequence format round trip, target normalisations, clip sampling/augmentation, ClipDataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from vdepth_training.data.dataset import ClipDataset, ClipSampling, InMemorySequence, Source, collate_clips, make_loader
from vdepth_training.data.sequence import Sequence, SequenceReader, find_sequences, write_sequence
from vdepth_training.data.targets import minmax_sequence, normalize_target, per_frame, quantile_clip, to_disparity
from vdepth_training.data.transforms import hflip, resize_and_crop, sample_clip_indices


def make_seq(t: int = 4, h: int = 6, w: int = 8, seed: int = 0, camera: bool = True) -> Sequence:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(1.0, 10.0, size=(t, h, w)).astype(np.float32)
    depth[0, 0, 0] = 0.0  # invalid
    k = np.tile(np.array([[4.0, 0, 3.5], [0, 4.0, 2.5], [0, 0, 1]]), (t, 1, 1))
    poses = np.tile(np.eye(4), (t, 1, 1))
    poses[:, 0, 3] = np.arange(t)
    return Sequence(
        rgb=rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8),
        target=depth,
        valid=np.ones((t, h, w), dtype=bool),
        intrinsics=k if camera else None,
        poses=poses if camera else None,
        name="toy",
        source="test",
    )


def test_write_read_round_trip(tmp_path: Path) -> None:
    seq = make_seq()
    write_sequence(tmp_path / "a", seq)
    reader = SequenceReader(tmp_path / "a")
    assert len(reader) == 4
    back = reader.read()
    np.testing.assert_array_equal(back.rgb, seq.rgb)
    np.testing.assert_array_equal(back.target, seq.target)
    assert not back.valid[0, 0, 0]  # zero depth is invalid
    assert back.valid.sum() == seq.valid.sum()
    np.testing.assert_allclose(back.intrinsics, seq.intrinsics)
    part = reader.read([3, 1])
    np.testing.assert_array_equal(part.target, seq.target[[3, 1]])
    np.testing.assert_allclose(part.poses[:, 0, 3], [3, 1])
    assert find_sequences(tmp_path) == [tmp_path / "a"]


def test_reader_rejects_other_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"sequence\.json"):
        SequenceReader(tmp_path)
    (tmp_path / "sequence.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="format"):
        SequenceReader(tmp_path)


def test_sequence_validates_shapes() -> None:
    with pytest.raises(ValueError, match="target shape"):
        Sequence(rgb=np.zeros((2, 4, 4, 3), np.uint8), target=np.ones((2, 4, 5)), valid=np.ones((2, 4, 5), bool))


def test_normalizations_hand_values() -> None:
    depth = np.array([[[1.0, 2.0, 4.0, 0.0]]], dtype=np.float32)  # (1,1,4); last invalid
    valid = np.ones_like(depth, dtype=bool)
    disp, v = to_disparity(depth, valid, "depth")
    assert disp.ravel().tolist() == pytest.approx([1.0, 0.5, 0.25, 0.0])
    assert v.ravel().tolist() == [True, True, True, False]
    # (d - 0.25) / 0.75
    assert minmax_sequence(disp, v).ravel().tolist() == pytest.approx([1.0, 1 / 3, 0.0, 0.0], abs=1e-6)
    # sky cap: 1000 m -> 400 m before inversion
    capped, _ = to_disparity(np.array([[[1000.0]]], np.float32), np.ones((1, 1, 1), bool), "depth", max_depth=400)
    assert capped.item() == pytest.approx(1 / 400)


def test_minmax_is_per_clip_and_per_frame_is_per_frame() -> None:
    disp = np.array([[[1.0, 2.0]], [[3.0, 5.0]]], dtype=np.float32)  # two frames
    valid = np.ones_like(disp, dtype=bool)
    assert minmax_sequence(disp, valid).ravel().tolist() == pytest.approx([0.0, 0.25, 0.5, 1.0])
    assert per_frame(disp, valid).ravel().tolist() == pytest.approx([0.0, 1.0, 0.0, 1.0])


def test_quantile_clip() -> None:
    disp = np.arange(1, 102, dtype=np.float32).reshape(1, 1, 101)  # q2 = 3, q98 = 99 (0 would be invalid)
    out = quantile_clip(disp, np.ones_like(disp, dtype=bool))
    assert out[0, 0, 50] == pytest.approx(48 / 96, abs=1e-6)
    assert out[0, 0, 0] == 0.0 and out[0, 0, 100] == 1.0  # clipped
    n, _ = normalize_target(disp, np.ones_like(disp, dtype=bool), "disparity", "quantile_clip")
    np.testing.assert_allclose(n, out)


def test_sample_clip_indices() -> None:
    rng = np.random.default_rng(0)
    lengths = set()
    for _ in range(200):
        idx = sample_clip_indices(30, (1, 25), rng)
        assert 1 <= len(idx) <= 25 and idx[0] >= 0 and idx[-1] < 30
        assert (np.diff(idx) == 1).all()
        lengths.add(len(idx))
    assert min(lengths) == 1 and max(lengths) == 25
    assert len(sample_clip_indices(5, (45, 45), rng)) == 5  # capped by the sequence
    strided = sample_clip_indices(10, (4, 4), rng, stride=3)
    assert strided.tolist() == [0, 3, 6, 9]
    with pytest.raises(ValueError, match="lo <= hi"):
        sample_clip_indices(10, (5, 2), rng)


def test_hflip_and_resize_camera() -> None:
    seq = make_seq(t=2, h=4, w=8)
    f = hflip(seq)
    np.testing.assert_array_equal(f.rgb[:, :, 0], seq.rgb[:, :, -1])
    assert f.intrinsics[0, 0, 2] == pytest.approx(7 - 3.5)
    assert f.poses[1, 0, 3] == pytest.approx(-1.0)  # x translation mirrored
    r = resize_and_crop(seq, (2, 4))
    assert r.rgb.shape == (2, 2, 4, 3) and r.target.shape == (2, 2, 4)
    # scale 0.5: fx 4 -> 2, cx (3.5+0.5)·0.5-0.5 = 1.5 (still the image centre)
    assert r.intrinsics[0, 0, 0] == pytest.approx(2.0)
    assert r.intrinsics[0, 0, 2] == pytest.approx(1.5)
    # crop to a square from the 4x8 frame: centre crop removes 2 columns left
    c = resize_and_crop(seq, (4, 4))
    np.testing.assert_array_equal(c.target, seq.target[:, :, 2:6])
    assert c.intrinsics[0, 0, 2] == pytest.approx(1.5)


def test_clip_dataset_deterministic_and_batch_consistent() -> None:
    video = Source([InMemorySequence(make_seq(t=12, h=12, w=16, seed=1))], weight=1.0)
    image = Source([InMemorySequence(make_seq(t=1, h=12, w=16, seed=2, camera=False))], weight=0.0, length_range=(1, 1))
    ds = ClipDataset(
        [video, image],
        ClipSampling(length_range=(2, 6), size=(8, 8), normalization="per_frame"),
        num_samples=8,
        batch_size=2,
        seed=3,
    )
    a, b = ds[5], ds[5]
    for key in a:
        assert torch.equal(a[key], b[key])
    assert a["frames"].shape[1:] == (3, 8, 8) and a["frames"].dtype == torch.float32
    assert float(a["target"].max()) == pytest.approx(1.0)
    assert bool(a["has_camera"])
    batches = list(make_loader(ds))
    assert len(batches) == 4
    for batch in batches:
        assert batch["frames"].shape[0] == 2 and 2 <= batch["frames"].shape[1] <= 6
        assert (batch["source"] == 0).all()  # weight-0 source never drawn
    # index 8 + 5 is item 5 of epoch 1: a different clip; with fixed_clips the same clip, and the
    # key (the latent-cache identity) is the clip's content: equal exactly when the clip is
    assert not torch.equal(ds[13]["frames"], a["frames"]) and ds[13]["key"].tolist() != a["key"].tolist()
    ds.fixed_clips = True
    assert torch.equal(ds[13]["frames"], a["frames"]) and ds[13]["key"].tolist() == a["key"].tolist()
    stream = make_loader(ds, start_batch=3)
    first = next(iter(stream))
    assert torch.equal(first["key"], torch.stack([ds[6]["key"], ds[7]["key"]]))
    # whatever drew the clip (another seed, stage or rank) its content gives the key; a cut clip is another
    from vdepth_training.data.dataset import clip_key

    assert torch.equal(clip_key({**a, "source": torch.tensor(1)}), a["key"])
    cut = {k: v[:1] if k in ("frames", "target", "valid") else v for k, v in a.items()}
    assert not torch.equal(clip_key(cut), a["key"])


def test_multi_aspect_crops_shared_within_a_batch() -> None:
    src = Source([InMemorySequence(make_seq(t=3, h=20, w=28, seed=4))])
    aspects = ((14, 14), (8, 14))
    ds = ClipDataset([src], ClipSampling(length_range=(2, 2), aspects=aspects), num_samples=16, batch_size=2)
    shapes = set()
    for batch in make_loader(ds):
        shapes.add(tuple(batch["frames"].shape[-2:]))
    assert shapes <= {(14, 14), (8, 14)} and len(shapes) == 2


def test_collate_cuts_to_shortest() -> None:
    a = {"frames": torch.zeros(3, 3, 2, 2), "target": torch.zeros(3, 2, 2), "source": torch.tensor(0)}
    b = {"frames": torch.zeros(2, 3, 2, 2), "target": torch.zeros(2, 2, 2), "source": torch.tensor(0)}
    out = collate_clips([a, b])
    assert out["frames"].shape == (2, 2, 3, 2, 2) and out["source"].shape == (2,)


def test_loader_workers_do_not_change_the_stream() -> None:
    src = Source([InMemorySequence(make_seq(t=6, h=12, w=16, seed=5))])
    ds = ClipDataset([src], ClipSampling(length_range=(2, 4), size=(8, 8)), num_samples=4, batch_size=2, seed=1)
    it0, it2 = iter(make_loader(ds, start_batch=1)), iter(make_loader(ds, start_batch=1, num_workers=2))
    for _ in range(3):
        a, b = next(it0), next(it2)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_per_source_batch_size() -> None:
    """DVD draws 8 images or 1 video per micro-step: a source may fill fewer slots of a batch."""
    video = Source([InMemorySequence(make_seq(t=6, h=12, w=16, seed=6))], weight=1.0, batch_size=1, name="video")
    image = Source([InMemorySequence(make_seq(t=1, h=12, w=16, seed=7))], length_range=(1, 1), name="image")
    ds = ClipDataset([video, image], ClipSampling(length_range=(3, 3), size=(8, 8)), num_samples=40, batch_size=4)
    seen = {}
    for batch in make_loader(ds):
        src = int(batch["source"][0])
        assert (batch["source"] == src).all()
        seen[src] = tuple(batch["frames"].shape[:2])
    assert seen == {0: (1, 3), 1: (4, 1)}
    with pytest.raises(ValueError, match="batch_size 5"):
        ClipDataset([Source(video.sequences, batch_size=5)], ClipSampling(), num_samples=4, batch_size=4)


@pytest.mark.parametrize(
    ("mistake", "when", "message"),
    [
        ("missing_depth", "open", r"1 of 4 frames have no depth \(target/000002\.npy\)"),
        ("png_depth", "open", r"not PNG: convert a 16-bit millimetre PNG"),
        ("empty", "open", r"an empty sequence"),
        ("poses", "open", r"poses\.npy: shape \(3, 4, 4\), expected \(4, 4, 4\)"),
        ("frame_size", "read", r"rgb/000001\.png: 9x12, but .*sequence\.json says 6x8"),
        ("uint16_depth", "read", r"target/000000\.npy holds uint16; .*depth_mm / 1000"),
    ],
)
def test_reader_names_each_mistake_in_a_users_sequence_folder(
    mistake: str, when: str, message: str, tmp_path: Path
) -> None:
    """A user's own folder with a mistake failed mid-run (FileNotFoundError, numpy's "all input
    arrays must have the same shape" or "need at least one array to stack", on whichever rank drew
    the frame) or trained in silence (uint16 millimetres read as metres). Structural mistakes are now
    found when the folder is opened, per-frame ones name the file and the fix."""
    import cv2

    from vdepth_ros.errors import ConfigError

    folder = write_sequence(tmp_path / "seq", make_seq())
    if mistake == "missing_depth":
        (folder / "target" / "000002.npy").unlink()
    elif mistake == "png_depth":
        for p in sorted((folder / "target").glob("*.npy")):
            cv2.imwrite(str(p.with_suffix(".png")), (np.load(p) * 1000).astype(np.uint16))
            p.unlink()
    elif mistake == "empty":
        for p in (folder / "rgb").iterdir():
            p.unlink()
    elif mistake == "poses":
        np.save(folder / "poses.npy", np.load(folder / "poses.npy")[:3])
    elif mistake == "frame_size":
        cv2.imwrite(str(folder / "rgb" / "000001.png"), np.zeros((9, 12, 3), np.uint8))
    elif mistake == "uint16_depth":
        np.save(folder / "target" / "000000.npy", (np.load(folder / "target" / "000000.npy") * 1000).astype(np.uint16))
    with pytest.raises(ConfigError, match=message):
        SequenceReader(folder).read()
    if when == "read":
        SequenceReader(folder)  # opening is cheap: only the frames read are checked


def test_a_frame_without_valid_depth_is_warned_once_per_sequence(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Depth that is all NaN, inf or zero (a failed export, a wrong scale) trained in silence: such
    frames add nothing to the loss."""
    seq = make_seq()
    seq.target[1] = np.nan
    seq.target[2] = 0.0
    reader = SequenceReader(write_sequence(tmp_path / "seq", seq))
    with caplog.at_level("WARNING", logger="vdepth_training"):
        reader.read()
        reader.read([2])
        SequenceReader(write_sequence(tmp_path / "fine", make_seq())).read()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "seq: frame 000001 has no valid depth" in warnings[0], warnings


def test_synthetic_dataset_on_a_full_disk_is_one_error_and_no_complete_looking_sequence(tmp_path: Path) -> None:
    """cv2.imwrite reports success for a PNG a full disk had no room for: the renderer used to write
    truncated frames, then sequence.json, and training later read a 'complete' but broken sequence."""
    import resource
    import signal
    import subprocess
    import sys

    out = tmp_path / "synthetic"

    def small_disk() -> None:  # writes past 3 kB fail (EFBIG), as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (3_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    cmd = [sys.executable, "-m", "vdepth_training.data.synthetic", "--out", str(out), "--seeds", "0:1",
           "--frames", "2", "--size", "64", "96"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, preexec_fn=small_disk)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if "error" in x]
    assert str(out) in line and "free space" in line, line
    assert not list(out.rglob("sequence.json"))


def test_synthetic_dataset_never_replaces_a_users_folder_with_a_clips_name(tmp_path: Path) -> None:
    """`--out ~/data`: a folder of the user's named like a seed's clip (000000) was deleted and rendered over."""
    import subprocess
    import sys

    mine = tmp_path / "data" / "000000"
    mine.mkdir(parents=True)
    (mine / "thesis.tex").write_text("precious")
    cmd = [sys.executable, "-m", "vdepth_training.data.synthetic", "--out", str(tmp_path / "data"), "--seeds", "0:1",
           "--frames", "2", "--size", "32", "48"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and str(mine) in proc.stderr and "not a rendered clip" in proc.stderr
    assert (mine / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize("mine", ["run.mp4", "run.json", "run_camera.yaml"])
def test_synthetic_sample_never_replaces_a_users_video_or_sidecar(tmp_path: Path, mine: str) -> None:
    """`--sample ~/run.mp4` wrote the rendered clip and its two sidecars over the user's own files."""
    import subprocess
    import sys

    (tmp_path / mine).write_text("the user's own")
    cmd = [sys.executable, "-m", "vdepth_training.data.synthetic", "--sample", str(tmp_path / "run.mp4")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "not a sample clip this tool wrote" in proc.stderr, proc.stderr
    assert (tmp_path / mine).read_text() == "the user's own"
    assert sorted(p.name for p in tmp_path.iterdir()) == [mine]


def test_clips_rendered_with_other_settings_are_not_mixed_with_new_ones(tmp_path: Path) -> None:
    """A changed `frames`, `render_size` or `style` over the same data root kept the clips already
    there (resume) and rendered only the missing seeds: one dataset of two renders, without a word.
    Now the run stops first, naming the settings that differ."""
    import subprocess
    import sys

    from vdepth_training.data.synthetic import render_dataset

    from vdepth_ros.errors import ConfigError

    root = tmp_path / "data"
    render_dataset(root, range(0, 2), 2, 32, 48, style="basic")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    render_dataset(root, range(0, 3), 2, 32, 48, style="basic")  # the same settings: resumed
    with pytest.raises(ConfigError, match=r"3 clip\(s\) rendered with other settings.*3 frames 32x48"):
        render_dataset(root, range(0, 3), 3, 32, 48, style="basic")
    with pytest.raises(ConfigError, match=r"style basic; this config renders 2 frames 32x48, style rich"):
        render_dataset(root, range(0, 3), 2, 32, 48, style="rich")
    cmd = [sys.executable, "-m", "vdepth_training.data.synthetic", "--out", str(root), "--seeds", "0:4",
           "--frames", "2", "--size", "40", "48"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "other settings" in proc.stderr, proc.stderr
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and "000002" not in p.parts} == before
    assert sorted(p.name for p in root.iterdir()) == ["000000", "000001", "000002"]


def test_the_data_digest_tells_any_depth_map_exported_again_but_not_a_copy(tmp_path: Path) -> None:
    """`--resume` compares each sequence's `files_digest`. It read 3 chunks of 4 of a sequence's files, so one
    depth map exported again (same name, same size: a header and H x W floats) among 9 frames went unseen
    unless it was one of those 4. Now every file whose size does not follow its content is sampled (the
    compressed images are told by their size); a copy of the folder elsewhere, with other file times, is the
    same data. (Cost and what a patch inside one large depth map escapes: benchmarks/data_digest.py.)"""
    import shutil

    from vdepth_training.checkpoints import files_digest

    write_sequence(tmp_path / "seq", make_seq(t=9, h=32, w=48))
    shutil.copytree(tmp_path / "seq", tmp_path / "node_copy")  # another path, other file times
    saved = files_digest(SequenceReader(tmp_path / "seq").files)
    assert files_digest(SequenceReader(tmp_path / "node_copy").files) == saved
    for frame in range(9):  # each frame re-exported in turn: seen whichever it is
        target = tmp_path / "seq" / "target" / f"{frame:06d}.npy"
        depth = np.load(target)
        np.save(target, depth * 1.5)
        assert files_digest(SequenceReader(tmp_path / "seq").files) != saved, frame
        np.save(target, depth)
    assert files_digest(SequenceReader(tmp_path / "seq").files) == saved
