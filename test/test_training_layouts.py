"""Each public-layout loader on a few generated files in that layout (values decoded by hand)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from vdepth_training.data.layouts import (
    convert,
    hypersim_distance_to_depth,
    load_dynamic_replica,
    load_hypersim,
    load_layout,
    load_pointodyssey,
    load_tartanair,
    load_vkitti2,
    quat_to_matrix,
)
from vdepth_training.data.sequence import SequenceReader

H, W = 6, 8


def _rgb(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((H, W, 3), value, np.uint8)
    img[..., 0] = 10  # R channel distinct so an RGB/BGR swap is caught
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def _png16(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr.astype(np.uint16))


def test_quaternion() -> None:
    # 90° about z: (0, 0, sin45, cos45) maps x to y
    r = quat_to_matrix(np.array([0.0, 0.0, np.sqrt(0.5), np.sqrt(0.5)]))
    np.testing.assert_allclose(r @ [1, 0, 0], [0, 1, 0], atol=1e-12)


def test_tartanair(tmp_path: Path) -> None:
    traj = tmp_path / "abandonedfactory" / "abandonedfactory" / "Easy" / "P000"
    for i in range(3):
        _rgb(traj / "image_left" / f"{i:06d}_left.png", 50 + i)
        (traj / "depth_left").mkdir(parents=True, exist_ok=True)
        d = np.full((H, W), 2.0 + i, np.float32)
        d[0, 0] = 10000.0  # sky: large finite value, stays valid
        np.save(traj / "depth_left" / f"{i:06d}_left_depth.npy", d)
    # identity orientation in NED, moving 1 m forward (NED x) per frame
    poses = np.array([[i, 0, 0, 0, 0, 0, 1] for i in range(3)], dtype=np.float64)
    np.savetxt(traj / "pose_left.txt", poses)
    (seq,) = load_tartanair(tmp_path)
    clip = seq.read([1, 2])
    assert clip.rgb.shape == (2, H, W, 3) and clip.rgb[0, 0, 0].tolist() == [10, 51, 51]
    assert clip.target[0, 1, 1] == pytest.approx(3.0) and clip.target[0, 0, 0] == pytest.approx(10000.0)
    assert clip.valid.all()
    assert clip.intrinsics[0, 0, 0] == 320.0 and clip.intrinsics[0, 1, 2] == 240.0
    # OpenCV camera z (forward) is NED x: camera-to-world maps (0,0,1) to (1,0,0); position x = 2
    np.testing.assert_allclose(clip.poses[1, :3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(clip.poses[1, :3, 3], [2, 0, 0])
    assert seq.name == "tartanair/abandonedfactory/abandonedfactory/Easy/P000"


def test_vkitti2(tmp_path: Path) -> None:
    var = Path("Scene01") / "clone"
    for i in range(2):
        _rgb(tmp_path / "vkitti_2.0.3_rgb" / var / "frames/rgb/Camera_0" / f"rgb_{i:05d}.jpg", 100)
        d = np.full((H, W), 1234 + i, np.uint16)
        d[0, 0] = 65535  # sky
        d[0, 1] = 0
        _png16(tmp_path / "vkitti_2.0.3_depth" / var / "frames/depth/Camera_0" / f"depth_{i:05d}.png", d)
    text = tmp_path / "vkitti_2.0.3_textgt" / var
    text.mkdir(parents=True)
    lines = ["frame cameraID K[0,0] K[1,1] K[0,2] K[1,2]"]
    ext = ["frame cameraID r1,1 r1,2 r1,3 t1 r2,1 r2,2 r2,3 t2 r3,1 r3,2 r3,3 t3 0 0 0 1"]
    for i in range(2):
        for cam in (0, 1):
            lines.append(f"{i} {cam} 725.0087 725.0087 620.5 187")
            # world-to-camera: translation -i along z -> camera at +i along z in the world
            ext.append(f"{i} {cam} 1 0 0 0 0 1 0 0 0 0 1 {-i} 0 0 0 1")
    (text / "intrinsic.txt").write_text("\n".join(lines) + "\n")
    (text / "extrinsic.txt").write_text("\n".join(ext) + "\n")
    (seq,) = load_vkitti2(tmp_path)
    clip = seq.read()
    assert clip.target[1, 2, 2] == pytest.approx(12.35)  # 1235 cm
    assert clip.target[0, 0, 0] == pytest.approx(655.35) and clip.valid[0, 0, 0]
    assert not clip.valid[0, 0, 1]
    assert clip.intrinsics[0, 0, 0] == pytest.approx(725.0087) and clip.intrinsics[0, 0, 2] == pytest.approx(620.5)
    np.testing.assert_allclose(clip.poses[1, :3, 3], [0, 0, 1])
    assert seq.name == "vkitti2/Scene01/clone/Camera_0"


def test_hypersim(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    scene = tmp_path / "ai_001_001"
    imgs = scene / "images"
    dist = np.full((H, W), 5.0, np.float32)
    dist[0, 0] = np.nan
    for i in (0, 1):
        _rgb(imgs / "scene_cam_00_final_preview" / f"frame.{i:04d}.tonemap.jpg", 80)
        geo = imgs / "scene_cam_00_geometry_hdf5"
        geo.mkdir(parents=True, exist_ok=True)
        with h5py.File(geo / f"frame.{i:04d}.depth_meters.hdf5", "w") as f:
            f["dataset"] = dist
    cam = scene / "_detail" / "cam_00"
    cam.mkdir(parents=True)
    with h5py.File(cam / "camera_keyframe_positions.hdf5", "w") as f:
        f["dataset"] = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    with h5py.File(cam / "camera_keyframe_orientations.hdf5", "w") as f:
        f["dataset"] = np.tile(np.eye(3), (2, 1, 1))
    (scene / "_detail" / "metadata_scene.csv").write_text(
        "parameter_name,parameter_value\nmeters_per_asset_unit,0.0254\n"
    )
    (seq,) = load_hypersim(tmp_path)
    clip = seq.read()
    assert not clip.valid[0, 0, 0] and clip.valid[0, 1, 1]
    # planar depth at pixel (row 2, col 3): ray (3 - 3.5, 2 - 2.5, f)
    f = 1024 / 2 / np.tan(np.pi / 6)
    expected = 5.0 * f / np.sqrt(0.25 + 0.25 + f * f)
    assert clip.target[0, 2, 3] == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(clip.poses[1, :3, 3], [0.254, 0, 0])
    np.testing.assert_allclose(clip.poses[0, :3, :3] @ [0, 0, 1], [0, 0, -1])  # looks down -z
    # the image-plane correction is exactly 1 on the optical axis
    assert hypersim_distance_to_depth(np.full((3, 3), 2.0, np.float32), focal=10.0)[1, 1] == pytest.approx(2.0)


def test_dynamic_replica(tmp_path: Path) -> None:
    split = tmp_path / "train"
    frames = []
    for i in range(2):
        rel_img = f"seqA_source_left/images/seqA_source_left-{i:04d}.png"
        rel_dep = f"seqA_source_left/depths/seqA_source_left_{i:04d}.geometric.png"
        _rgb(split / rel_img, 30)
        depth = np.full((H, W), 1.5 + i, np.float16)
        _png16(split / rel_dep, depth.view(np.uint16))
        frames.append(
            {
                "sequence_name": "seqA",
                "camera_name": "left",
                "frame_number": i,
                "image": {"path": rel_img, "size": [H, W]},
                "depth": {"path": rel_dep, "scale_adjustment": 1.0},
                "viewpoint": {
                    "R": np.eye(3).tolist(),
                    "T": [0.0, 0.0, float(i)],
                    "focal_length": [2.0, 2.0],
                    "principal_point": [0.0, 0.0],
                    "intrinsics_format": "ndc_isotropic",
                },
            }
        )
    frames.append({**frames[0], "camera_name": "right"})
    with gzip.open(split / "frame_annotations_train.jgz", "wt", encoding="utf8") as f:
        json.dump(frames, f)
    (seq,) = load_dynamic_replica(tmp_path)
    clip = seq.read()
    assert len(seq) == 2
    assert clip.target[1, 3, 3] == pytest.approx(2.5)
    # isotropic NDC: scale min(H, W)/2 = 3 -> f = 6 px, principal point at the centre
    np.testing.assert_allclose(clip.intrinsics[0], [[6, 0, 4], [0, 6, 3], [0, 0, 1]])
    # PyTorch3D X_view = X_world R + T with T = (0,0,1): camera centre at world z = -1
    np.testing.assert_allclose(clip.poses[1, :3, 3], [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(np.diag(clip.poses[1, :3, :3]), [-1, -1, 1])


def test_pointodyssey(tmp_path: Path) -> None:
    seq_dir = tmp_path / "train" / "ani"
    for i in range(3):
        _rgb(seq_dir / "rgbs" / f"rgb_{i:05d}.jpg", 120)
        v = np.full((H, W), 655 * (i + 1), np.uint16)
        v[1, 1] = 0
        _png16(seq_dir / "depths" / f"depth_{i:05d}.png", v)
    k = np.tile(np.array([[100.0, 0, 4], [0, 100.0, 3], [0, 0, 1]]), (3, 1, 1))
    ext = np.tile(np.eye(4), (3, 1, 1))
    ext[:, 0, 3] = [0.0, -1.0, -2.0]  # world-to-camera
    np.savez(seq_dir / "anno.npz", intrinsics=k, extrinsics=ext)
    (seq,) = load_pointodyssey(tmp_path)
    clip = seq.read([2])
    assert clip.target[0, 0, 0] == pytest.approx(655 * 3 / 65535 * 1000, rel=1e-6)
    assert not clip.valid[0, 1, 1]
    np.testing.assert_allclose(clip.poses[0, :3, 3], [2, 0, 0])
    assert clip.intrinsics[0, 0, 0] == 100.0


def test_convert_and_registry(tmp_path: Path) -> None:
    seq_dir = tmp_path / "po" / "s1"
    for i in range(2):
        _rgb(seq_dir / "rgbs" / f"rgb_{i:05d}.jpg", 60)
        _png16(seq_dir / "depths" / f"depth_{i:05d}.png", np.full((H, W), 1000, np.uint16))
    (folder,) = convert("pointodyssey", tmp_path / "po", tmp_path / "out")
    back = SequenceReader(folder).read()
    assert back.target[0, 0, 0] == pytest.approx(1000 / 65535 * 1000, rel=1e-6)
    assert len(load_layout("sequence", tmp_path / "out")) == 1
    with pytest.raises(ValueError, match="unknown dataset layout"):
        load_layout("nyu", tmp_path)
    with pytest.raises(ValueError, match="no tartanair sequences"):
        load_layout("tartanair", tmp_path / "out")


def test_convert_keeps_two_sequences_whose_names_make_the_same_folder_name(tmp_path: Path) -> None:
    """`a b.png` and `a_b.png` both became the folder `images_a_b.png`: the second overwrote the first."""
    images = tmp_path / "images"
    images.mkdir()
    for i, name in enumerate(("a b.png", "a_b.png")):
        cv2.imwrite(str(images / name), np.full((8, 8, 3), 40 * (i + 1), np.uint8))
    folders = convert("images", images, tmp_path / "out")
    assert len(folders) == 2 and len({f.name for f in folders}) == 2
    assert sorted(SequenceReader(f).read().rgb.mean() for f in folders) == [40, 80]


def test_image_folders_take_the_same_image_files_as_vdepth_video(tmp_path: Path) -> None:
    """A folder of .tif frames (a machine-vision camera's export) is frames for `vdepth-video` and
    images for training's `images` layout alike, and macOS's "._name" files are neither: before,
    training found none of the .tif images and failed on the "._" file."""
    from vdepth_ros.offline.video_source import VideoFrameSource

    images = tmp_path / "images"
    images.mkdir()
    for i, name in enumerate(("a.tif", "b.tiff", "c.png")):
        cv2.imwrite(str(images / name), np.full((8, 8, 3), 40 * (i + 1), np.uint8))
    (images / "notes.txt").write_text("not an image")
    (images / "._c.png").write_bytes(b"\0\5\26\7")  # macOS's metadata beside c.png on a USB stick
    with VideoFrameSource(images) as src:
        frames = src.frame_count
    assert frames == 3
    assert sorted(s.read().rgb.mean() for s in load_layout("images", images)) == [40, 80, 120]
