"""Loaders for the public dataset layouts the papers train on, read lazily into `Sequence`s.

Each `load_<layout>(root, **options)` returns a list of `FileSequence` (one per video / camera
trajectory) that loads only the frames a clip asks for. `LAYOUTS` maps the names used in the YAML
configs to loaders; `convert(...)` writes any of them in the one on-disk format (`sequence.py`).

Conventions of the output: depth in metres (`target_kind="depth"`), invalid pixels False in
`valid`, intrinsics (T, 3, 3) at the image resolution, poses (T, 4, 4) camera-to-world with OpenCV
camera axes (x right, y down, z forward). Facts per layout are in each loader's docstring.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import re
from collections import defaultdict
from collections.abc import Callable
from collections.abc import Sequence as SequenceABC
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from vdepth_training.data.pseudo import load_images
from vdepth_training.data.sequence import (
    Sequence,
    SequenceReader,
    check_depth_unit,
    find_sequences,
    write_sequences,
)

from vdepth_ros.encodings import read_image_file
from vdepth_ros.errors import ConfigError
from vdepth_ros.offline.video_source import is_image_file

DepthReader = Callable[[Path], tuple[np.ndarray, np.ndarray]]
"""path -> (depth (H, W) float32 metres, valid (H, W) bool)."""


class FileSequence:
    """A sequence whose frames are files: RGB paths, depth paths, a depth decoder, optional camera.

    Args:
        rgb: per-frame image paths.
        depth: per-frame depth paths (same length).
        read_depth: decoder of one depth file.
        intrinsics: optional (T, 3, 3).
        poses: optional (T, 4, 4) camera-to-world, OpenCV axes.
        name, source: identifiers.
    """

    def __init__(
        self,
        rgb: list[Path],
        depth: list[Path],
        read_depth: DepthReader,
        *,
        intrinsics: np.ndarray | None = None,
        poses: np.ndarray | None = None,
        name: str = "",
        source: str = "",
    ) -> None:
        if len(rgb) != len(depth) or not rgb:
            raise ValueError(f"{name}: {len(rgb)} images vs {len(depth)} depth maps")
        self.rgb, self.depth, self.read_depth = rgb, depth, read_depth
        self.intrinsics, self.poses = intrinsics, poses
        self.name, self.source = name, source

    def __len__(self) -> int:
        return len(self.rgb)

    @property
    def files(self) -> list[Path]:
        """The frames' image and depth files (`Source.contents` fingerprints them)."""
        return [*self.rgb, *self.depth]

    def read(self, indices: SequenceABC[int] | np.ndarray | None = None) -> Sequence:
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        rgb, depth, valid = [], [], []
        for i in idx:
            rgb.append(read_rgb(self.rgb[int(i)]))
            d, v = self.read_depth(self.depth[int(i)])
            if d.shape != rgb[-1].shape[:2]:
                raise ConfigError(unregistered(self.rgb[int(i)], rgb[-1].shape[:2], self.depth[int(i)], d.shape))
            depth.append(d)
            valid.append(v)
        return Sequence(
            rgb=np.stack(rgb),
            target=np.stack(depth),
            valid=np.stack(valid),
            target_kind="depth",
            intrinsics=None if self.intrinsics is None else self.intrinsics[idx],
            poses=None if self.poses is None else self.poses[idx],
            metric=True,
            name=self.name,
            source=self.source,
        )


def unregistered(image: Path, image_size: tuple[int, ...], depth: Path, depth_size: tuple[int, ...]) -> str:
    """The message for a depth map of another size than its colour image."""
    return (
        f"{depth} is {depth_size[1]}x{depth_size[0]}, its colour image {image} {image_size[1]}x{image_size[0]}: "
        "depth must be registered to the colour image, pixel for pixel (e.g. RealSense aligned_depth_to_color, "
        "Azure Kinect transformed depth, both at the colour stream's size)"
    )


def read_rgb(path: Path) -> np.ndarray:
    img = read_image_file(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot decode image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _read_png16(path: Path) -> np.ndarray:
    v = read_image_file(path, cv2.IMREAD_ANYDEPTH)
    if v is None or v.dtype != np.uint16:
        raise ValueError(f"{path} is not a 16-bit PNG")
    return v


def _finite_positive(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    valid = np.isfinite(d) & (d > 0)
    return np.where(valid, d, 0.0).astype(np.float32), valid


def pinhole(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(…, 4) quaternions (x, y, z, w) -> (…, 3, 3) rotation matrices (normalised first)."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def _frame_number(path: Path) -> int:
    nums = re.findall(r"\d+", path.stem)
    if not nums:
        raise ValueError(f"no frame number in {path.name}")
    return int(nums[-1])


# -- TartanAir ----------------------------------------------------------------------------------------

TARTANAIR_K = pinhole(320.0, 320.0, 320.0, 240.0)  # 640x480, 90° FoV (tartanair_tools data_type.md)
# TartanAir camera frame is NED (x forward, y right, z down); OpenCV (x right, y down, z forward)
# vectors map into it by this matrix.
_CV_TO_NED = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


log = logging.getLogger("vdepth_training")


def _warn_uncovered(layout: str, root: Path, uncovered: list[str]) -> None:
    """One warning for the camera files (`uncovered`: "<file> (<what>)") that do not cover their
    sequence's frames: those sequences train without cameras (a recipe's camera loss skips them)."""
    if uncovered:
        more = f" and {len(uncovered) - 3} more" if len(uncovered) > 3 else ""
        log.warning(
            "%s: %d %s camera file(s) do not cover their sequence's frames, so those sequences train without "
            "cameras (no camera loss): %s%s; complete or remove the files to silence this",
            root, len(uncovered), layout, ", ".join(uncovered[:3]), more,
        )  # fmt: skip


def _refuse_incomplete(layout: str, root: Path, found: int, incomplete: list[tuple[str, int, int]]) -> None:
    """Refuse a root with sequences whose depth files are missing (`incomplete`: name, frames without
    depth, frames): left out, the user's data would train without them in silence (a depth archive
    not downloaded or extracted, a copy cut short).

    Raises:
        ConfigError: how many of the `found` sequences, which (the first three) and the fix.
    """
    if not incomplete:
        return
    shown = ", ".join(f"{name} ({missing} of {total} frames)" for name, missing, total in incomplete[:3])
    more = f" and {len(incomplete) - 3} more" if len(incomplete) > 3 else ""
    raise ConfigError(
        f"{root}: {len(incomplete)} of {found} {layout} sequences lack depth files: {shown}{more}; download or "
        f"extract their depth, or move those sequences out of {root} to train without them"
    )


def load_tartanair(root: str | Path, camera: str = "left") -> list[FileSequence]:
    """TartanAir (v1): `<env>/[<env>/]<Easy|Hard>/P###/image_<cam>/000000_<cam>.png`,
    `depth_<cam>/000000_<cam>_depth.npy` (float32 metres; the sky is a large finite value, e.g.
    10000, capped later by the recipe's `max_depth`), `pose_<cam>.txt` (one line per frame:
    tx ty tz qx qy qz qw, camera-to-world in NED axes). Fixed intrinsics fx=fy=320, cx=320, cy=240.
    """
    root = Path(root)
    out, incomplete, found, uncovered = [], [], 0, []
    for img_dir in sorted(root.rglob(f"image_{camera}")):
        traj = img_dir.parent
        rgb = sorted(img_dir.glob(f"*_{camera}.png"))
        depth = [traj / f"depth_{camera}" / f"{p.stem}_depth.npy" for p in rgb]
        found += bool(rgb)
        if missing := sum(not d.is_file() for d in depth):
            incomplete.append((traj.relative_to(root).as_posix(), missing, len(rgb)))
        if not rgb or missing:
            continue
        poses = None
        pose_file = traj / f"pose_{camera}.txt"
        if pose_file.is_file():
            vals = np.loadtxt(pose_file, ndmin=2)
            if len(vals) == len(rgb):
                poses = np.tile(np.eye(4), (len(vals), 1, 1))
                poses[:, :3, :3] = quat_to_matrix(vals[:, 3:7]) @ _CV_TO_NED
                poses[:, :3, 3] = vals[:, :3]
            else:
                uncovered.append(f"{pose_file} ({len(vals)} poses, {len(rgb)} frames)")
        out.append(
            FileSequence(
                rgb,
                depth,
                lambda p: _finite_positive(np.load(p).astype(np.float32)),
                intrinsics=np.tile(TARTANAIR_K, (len(rgb), 1, 1)),
                poses=poses,
                name=f"tartanair/{traj.relative_to(root).as_posix()}",
                source="tartanair",
            )
        )
    _refuse_incomplete("tartanair", root, found, incomplete)
    _warn_uncovered("tartanair", root, uncovered)
    return out


# -- Virtual KITTI 2 -------------------------------------------------------------------------------------

VKITTI2_SKY_CM = 65535  # depth PNGs are uint16 centimetres; the sky is saturated at 655.35 m


def _vkitti2_depth(path: Path) -> tuple[np.ndarray, np.ndarray]:
    v = _read_png16(path)
    d = v.astype(np.float32) / 100.0
    return d, v > 0  # the sky (65535) stays valid: a far value, capped by the recipe's max_depth


def _vkitti2_table(path: Path) -> dict[tuple[int, int], np.ndarray]:
    """`intrinsic.txt` / `extrinsic.txt`: a header line, then "frame cameraID values...".

    Returns:
        (frame, camera) -> values (float64).
    """
    table = {}
    with path.open() as f:
        next(f)  # header: frame cameraID K[0,0] ... or r1,1 ...
        for line in f:
            parts = line.split()
            if parts:
                table[(int(parts[0]), int(parts[1]))] = np.array([float(x) for x in parts[2:]])
    return table


def load_vkitti2(root: str | Path, cameras: tuple[int, ...] = (0,)) -> list[FileSequence]:
    """Virtual KITTI 2: `vkitti_2.0.3_rgb/SceneXX/<variation>/frames/rgb/Camera_k/rgb_00000.jpg`,
    `vkitti_2.0.3_depth/.../frames/depth/Camera_k/depth_00000.png` (uint16 cm, sky 65535),
    `vkitti_2.0.3_textgt/SceneXX/<variation>/{intrinsic,extrinsic}.txt` (header + "frame cameraID
    fx fy cx cy" / "frame cameraID" + row-major 4x4 world-to-camera). The `vkitti_2.0.3_` prefixes
    may be absent (all modalities under one tree).
    """
    root = Path(root)
    out, incomplete, found, uncovered = [], [], 0, []
    for rgb_dir in sorted(root.rglob("frames/rgb/Camera_*")):
        cam = int(rgb_dir.name.split("_")[-1])
        if cam not in cameras:
            continue
        variation_dir = rgb_dir.parent.parent.parent  # .../SceneXX/<variation>
        rel = Path(variation_dir.parent.name) / variation_dir.name
        rgb = sorted(rgb_dir.glob("rgb_*.jpg")) + sorted(rgb_dir.glob("rgb_*.png"))
        if not rgb:
            continue
        found += 1
        depth_dir = _vkitti2_find(root, rel, f"frames/depth/Camera_{cam}")
        depth = [(depth_dir or rgb_dir) / f"depth_{_frame_number(p):05d}.png" for p in rgb]
        if missing := sum(not d.is_file() for d in depth):
            incomplete.append((f"{rel.as_posix()}/Camera_{cam}", missing, len(rgb)))
            continue
        frames = [_frame_number(p) for p in rgb]
        intr = poses = None
        text_dir = _vkitti2_find(root, rel, "intrinsic.txt")
        if text_dir is not None:
            k = _vkitti2_table(text_dir / "intrinsic.txt")
            if all((f, cam) in k for f in frames):
                intr = np.stack([pinhole(*k[(f, cam)][:4]) for f in frames])
            else:
                uncovered.append(f"{text_dir / 'intrinsic.txt'} (camera {cam})")
            ext_file = text_dir / "extrinsic.txt"
            if ext_file.is_file():
                e = _vkitti2_table(ext_file)
                if all((f, cam) in e for f in frames):
                    poses = np.linalg.inv(np.stack([e[(f, cam)].reshape(4, 4) for f in frames]))
                else:
                    uncovered.append(f"{ext_file} (camera {cam})")
        out.append(
            FileSequence(
                rgb,
                depth,
                _vkitti2_depth,
                intrinsics=intr,
                poses=poses,
                name=f"vkitti2/{rel.as_posix()}/Camera_{cam}",
                source="vkitti2",
            )
        )
    _refuse_incomplete("vkitti2", root, found, incomplete)
    _warn_uncovered("vkitti2", root, uncovered)
    return out


def _vkitti2_find(root: Path, rel: Path, leaf: str) -> Path | None:
    """`<m>/<rel>/<leaf>` where `<m>` is `root` or a folder in it (e.g. `vkitti_2.0.3_depth`).

    Returns:
        The folder holding `leaf` when it is a file, the leaf itself when it is a folder, or None.
    """
    for cand in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        path = cand / rel / leaf
        if path.exists():
            return path.parent if path.is_file() else path
    return None


# -- Hypersim ------------------------------------------------------------------------------------------

HYPERSIM_WIDTH, HYPERSIM_HEIGHT = 1024, 768
HYPERSIM_FOCAL = HYPERSIM_WIDTH / 2 / np.tan(np.pi / 6)  # 60° horizontal FoV -> 886.81 px


def hypersim_distance_to_depth(distance: np.ndarray, focal: float = HYPERSIM_FOCAL) -> np.ndarray:
    """Hypersim `depth_meters` holds the Euclidean distance to the camera centre, not planar depth:
    z = dist · f / ||(u − cx, v − cy, f)|| with the image-plane ray of each pixel centre."""
    h, w = distance.shape
    u = np.arange(w, dtype=np.float64) - (w - 1) / 2
    v = np.arange(h, dtype=np.float64) - (h - 1) / 2
    norm = np.sqrt(u[None, :] ** 2 + v[:, None] ** 2 + focal**2)
    return (distance * focal / norm).astype(np.float32)


def _hypersim_depth(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as f:
        dist = np.asarray(f["dataset"], dtype=np.float32)
    return _finite_positive(hypersim_distance_to_depth(dist))


def load_hypersim(root: str | Path) -> list[FileSequence]:
    """Hypersim: `ai_VVV_NNN/images/scene_cam_XX_final_preview/frame.IIII.tonemap.jpg` (tone-mapped
    RGB), `scene_cam_XX_geometry_hdf5/frame.IIII.depth_meters.hdf5` (dataset "dataset": distance to
    the camera centre in metres, NaN invalid -> converted to planar depth), camera trajectory in
    `_detail/cam_XX/camera_keyframe_{positions,orientations}.hdf5` (asset units; orientation columns
    are the camera axes, OpenGL convention: camera looks down −z) and `_detail/metadata_scene.csv`
    (`meters_per_asset_unit`). One sequence per camera trajectory; 1024x768, 60° horizontal FoV.
    """
    root = Path(root)
    out = []
    incomplete, found = [], 0
    for prev in sorted(root.rglob("scene_cam_*_final_preview")):
        cam = prev.name[len("scene_") : -len("_final_preview")]  # "cam_XX"
        geo = prev.parent / f"scene_{cam}_geometry_hdf5"
        rgb = sorted(prev.glob("frame.*.tonemap.jpg"))
        depth = [geo / f"frame.{_frame_number(p):04d}.depth_meters.hdf5" for p in rgb]
        found += bool(rgb)
        if missing := sum(not d.is_file() for d in depth):
            incomplete.append((f"{prev.parent.parent.name}/{cam}", missing, len(rgb)))
        if not rgb or missing:
            continue
        scene = prev.parent.parent
        frames = [_frame_number(p) for p in rgb]
        k = pinhole(HYPERSIM_FOCAL, HYPERSIM_FOCAL, (HYPERSIM_WIDTH - 1) / 2, (HYPERSIM_HEIGHT - 1) / 2)
        out.append(
            FileSequence(
                rgb,
                depth,
                _hypersim_depth,
                intrinsics=np.tile(k, (len(rgb), 1, 1)),
                poses=_hypersim_poses(scene, cam, frames),
                name=f"hypersim/{scene.name}/{cam}",
                source="hypersim",
            )
        )
    _refuse_incomplete("hypersim", root, found, incomplete)
    return out


def _hypersim_poses(scene: Path, cam: str, frames: list[int]) -> np.ndarray | None:
    detail = scene / "_detail"
    pos_file = detail / cam / "camera_keyframe_positions.hdf5"
    rot_file = detail / cam / "camera_keyframe_orientations.hdf5"
    if not (pos_file.is_file() and rot_file.is_file()):
        return None
    import h5py

    scale = 1.0
    meta = detail / "metadata_scene.csv"
    if meta.is_file():
        with meta.open() as f:
            for row in csv.DictReader(f):
                if row.get("parameter_name") == "meters_per_asset_unit":
                    scale = float(row["parameter_value"])
    with h5py.File(pos_file, "r") as f:
        pos = np.asarray(f["dataset"], dtype=np.float64)
    with h5py.File(rot_file, "r") as f:
        rot = np.asarray(f["dataset"], dtype=np.float64)
    if max(frames) >= len(pos):
        return None
    poses = np.tile(np.eye(4), (len(frames), 1, 1))
    poses[:, :3, :3] = rot[frames] @ np.diag([1.0, -1.0, -1.0])  # OpenGL -> OpenCV camera axes
    poses[:, :3, 3] = pos[frames] * scale
    return poses


# -- Dynamic Replica -----------------------------------------------------------------------------------------


def load_16bit_float_png(path: Path) -> np.ndarray:
    """Dynamic Replica depth: float16 values stored bit-for-bit in a 16-bit PNG."""
    return _read_png16(path).view(np.float16).astype(np.float32)


def _dynamic_replica_depth(path: Path) -> tuple[np.ndarray, np.ndarray]:
    return _finite_positive(load_16bit_float_png(path))


def _pytorch3d_to_opencv(vp: dict[str, Any], size_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch3D camera (X_view = X_world·R + T; view axes +x left, +y up, +z forward; NDC
    intrinsics) -> OpenCV (K, camera-to-world)."""
    h, w = size_hw
    fl = vp["focal_length"]
    fx, fy = (fl, fl) if np.isscalar(fl) else fl
    px, py = vp["principal_point"]
    if vp.get("intrinsics_format", "ndc_norm_image_bounds") == "ndc_isotropic":
        sx = sy = min(h, w) / 2.0
    else:  # ndc_norm_image_bounds
        sx, sy = w / 2.0, h / 2.0
    k = pinhole(fx * sx, fy * sy, w / 2.0 - px * sx, h / 2.0 - py * sy)
    r = np.asarray(vp["R"], dtype=np.float64)
    t = np.asarray(vp["T"], dtype=np.float64)
    flip = np.diag([-1.0, -1.0, 1.0])
    w2c = np.eye(4)
    w2c[:3, :3] = flip @ r.T
    w2c[:3, 3] = flip @ t
    return k, np.linalg.inv(w2c)


def load_dynamic_replica(root: str | Path, camera: str = "left") -> list[FileSequence]:
    """Dynamic Replica: a split folder with `frame_annotations_<split>.jgz` (gzip JSON list; per
    frame `sequence_name`, `camera_name`, `frame_number`, `image.path`, `image.size` [H, W],
    `depth.path` (`*.geometric.png`: float16 bits in a 16-bit PNG), `viewpoint` {R, T,
    focal_length, principal_point, intrinsics_format} in PyTorch3D conventions). Paths are relative
    to the split folder or its parent.
    """
    root = Path(root)
    out = []
    for ann_file in sorted(root.rglob("frame_annotations_*.jgz")):
        with gzip.open(ann_file, "rt", encoding="utf8") as f:
            frames = json.load(f)
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for fr in frames:
            if fr.get("camera_name", camera) == camera:
                groups[fr["sequence_name"]].append(fr)
        base = ann_file.parent
        for name, frs in sorted(groups.items()):
            frs.sort(key=lambda fr: fr["frame_number"])
            rgb = [_resolve(base, fr["image"]["path"]) for fr in frs]
            depth = [_resolve(base, fr["depth"]["path"]) for fr in frs]
            cams = [_pytorch3d_to_opencv(fr["viewpoint"], tuple(fr["image"]["size"])) for fr in frs]
            out.append(
                FileSequence(
                    rgb,
                    depth,
                    _dynamic_replica_depth,
                    intrinsics=np.stack([k for k, _ in cams]),
                    poses=np.stack([c2w for _, c2w in cams]),
                    name=f"dynamic_replica/{name}/{camera}",
                    source="dynamic_replica",
                )
            )
    return out


def _resolve(base: Path, rel: str) -> Path:
    for cand in (base / rel, base.parent / rel):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"{rel} not found under {base} or {base.parent}")


# -- PointOdyssey --------------------------------------------------------------------------------------------


def _pointodyssey_depth(path: Path) -> tuple[np.ndarray, np.ndarray]:
    v = _read_png16(path)
    return v.astype(np.float32) / 65535.0 * 1000.0, v > 0  # uint16 over a 1000 m range


def load_pointodyssey(root: str | Path) -> list[FileSequence]:
    """PointOdyssey: `<split>/<seq>/rgbs/rgb_00000.jpg`, `depths/depth_00000.png` (uint16,
    depth = v / 65535 · 1000 m, 0 invalid), `anno.npz` with `intrinsics` (T, 3, 3) and
    `extrinsics` (T, 4, 4) world-to-camera (OpenCV)."""
    root = Path(root)
    out, incomplete, found, uncovered = [], [], 0, []
    for rgb_dir in sorted(root.rglob("rgbs")):
        seq = rgb_dir.parent
        rgb = sorted(rgb_dir.glob("rgb_*.jpg")) + sorted(rgb_dir.glob("rgb_*.png"))
        depth = [seq / "depths" / f"depth_{_frame_number(p):05d}.png" for p in rgb]
        found += bool(rgb)
        if missing := sum(not d.is_file() for d in depth):
            incomplete.append((seq.relative_to(root).as_posix(), missing, len(rgb)))
        if not rgb or missing:
            continue
        intr = poses = None
        anno = seq / "anno.npz"
        if anno.is_file():
            with np.load(anno) as a:
                frames = [_frame_number(p) for p in rgb]
                if "intrinsics" in a and len(a["intrinsics"]) > max(frames):
                    intr = np.asarray(a["intrinsics"], dtype=np.float64)[frames]
                if "extrinsics" in a and len(a["extrinsics"]) > max(frames):
                    poses = np.linalg.inv(np.asarray(a["extrinsics"], dtype=np.float64)[frames])
                short = [k for k in ("intrinsics", "extrinsics") if k in a and len(a[k]) <= max(frames)]
                if short:
                    uncovered.append(
                        f"{anno} ({', '.join(short)} of {len(a[short[0]])} frames, {max(frames) + 1} needed)"
                    )
        out.append(
            FileSequence(
                rgb,
                depth,
                _pointodyssey_depth,
                intrinsics=intr,
                poses=poses,
                name=f"pointodyssey/{seq.relative_to(root).as_posix()}",
                source="pointodyssey",
            )
        )
    _refuse_incomplete("pointodyssey", root, found, incomplete)
    _warn_uncovered("pointodyssey", root, uncovered)
    return out


# -- the user's own RGB-D frames -------------------------------------------------------------------------------

RGB_DIRS = ("rgb", "color", "image", "images")
DEPTH_SUFFIXES = (".png", ".npy", ".tif", ".tiff", ".exr")
#: the usual integer depth units (units per metre), named when a 16-bit depth image has none given
DEPTH_SCALES = "1000 for millimetres (RealSense, Azure Kinect, ROS 16UC1), 5000 for TUM RGB-D"


def _raw_depth(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        d = np.load(path, allow_pickle=False)
    else:
        d = read_image_file(path, cv2.IMREAD_ANYDEPTH)
        if d is None:
            raise ValueError(f"cannot decode depth image {path}")
    if d.ndim != 2:
        raise ValueError(f"{path}: depth must be one channel (H, W), got shape {d.shape}")
    return d


class _RgbdDepth:
    """Decoder of one depth file of the `rgbd` layout: metres = value / `scale`, <= 0 invalid."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def __call__(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        return _finite_positive(_raw_depth(path).astype(np.float32) / self.scale)


def _check_depth_units(path: Path, depth_scale: float | None) -> float:
    """The scale for a sequence's depth files from its first one: integer images need `depth_scale`;
    depth in another unit than metres is refused or warned about by `sequence.check_depth_unit` (a
    `depth_scale` given for float files declares their unit: trusted)."""
    raw = _raw_depth(path)
    integer = np.issubdtype(raw.dtype, np.integer)
    if integer and depth_scale is None:
        raise ConfigError(
            f"{path} holds integer depth ({raw.dtype}): give its units per metre with depth_scale "
            f"(--depth-scale; {DEPTH_SCALES})"
        )
    scale = float(depth_scale) if depth_scale is not None else 1.0
    if not scale > 0:
        raise ConfigError(f"depth_scale must be > 0 (units per metre), got {depth_scale}")
    fix = f"set depth_scale to the units per metre ({DEPTH_SCALES}; depth_scale: 1 declares float files in metres)"
    check_depth_unit(path, raw.astype(np.float64) / scale, declared=depth_scale is not None and not integer, fix=fix)
    return scale


def load_rgbd(root: str | Path, depth_scale: float | None = None) -> list[FileSequence]:
    """The user's own RGB-D frames: every folder under `root` with an `rgb/` (or `color/`, `image/`,
    `images/`) and a `depth/` subfolder is one sequence, frames in name order, each colour image
    paired with the depth file of the same stem (`.png`/`.tif` 16-bit integers with `depth_scale`
    units per metre, e.g. 1000 for millimetres; `.npy`/`.tif`/`.exr` floats in metres). An optional
    `intrinsics.txt` (`fx fy cx cy`) beside them gives the camera.

    Raises:
        ConfigError: a sequence whose colour and depth files do not pair one to one (naming the
            unpaired ones), integer depth without `depth_scale`, or a unit that is not metres.
    """
    root = Path(root)
    out = []
    for depth_dir in sorted(p for p in root.rglob("depth") if p.is_dir()):
        seq = depth_dir.parent
        rgb_dir = next((seq / n for n in RGB_DIRS if (seq / n).is_dir()), None)
        if rgb_dir is None:
            continue
        rgb = {p.stem: p for p in rgb_dir.iterdir() if is_image_file(p)}
        depth = {p.stem: p for p in depth_dir.iterdir() if p.suffix.lower() in DEPTH_SUFFIXES}
        if rgb.keys() != depth.keys():
            no_depth, no_rgb = sorted(rgb.keys() - depth.keys()), sorted(depth.keys() - rgb.keys())
            raise ConfigError(
                f"{seq}: {len(rgb)} colour images in {rgb_dir.name}/ and {len(depth)} depth files in depth/ do not "
                f"pair by name: {len(no_depth)} without depth {no_depth[:3]}, {len(no_rgb)} without colour "
                f"{no_rgb[:3]}; give each frame both files under the same name (e.g. 000042.jpg and 000042.png)"
            )
        if not rgb:
            continue
        stems = sorted(rgb)
        scale = _check_depth_units(depth[stems[0]], depth_scale)
        first = read_rgb(rgb[stems[0]]).shape[:2]
        if (size := _raw_depth(depth[stems[0]]).shape) != first:  # when opened, not when a clip of it is drawn
            raise ConfigError(unregistered(rgb[stems[0]], first, depth[stems[0]], size))
        intr = None
        if (seq / "intrinsics.txt").is_file():
            fx, fy, cx, cy = (float(v) for v in (seq / "intrinsics.txt").read_text().split()[:4])
            intr = np.repeat(pinhole(fx, fy, cx, cy)[None], len(stems), axis=0)
        out.append(
            FileSequence(
                [rgb[s] for s in stems],
                [depth[s] for s in stems],
                _RgbdDepth(scale),
                intrinsics=intr,
                name=f"rgbd/{seq.relative_to(root).as_posix()}",
                source="rgbd",
            )
        )
    return out


# -- registry ---------------------------------------------------------------------------------------------


def load_sequences(root: str | Path) -> list[SequenceReader]:
    """Folders in the project's own format (`sequence.py`), e.g. `convert` output or the renderer's."""
    return [SequenceReader(p) for p in find_sequences(root)]


LAYOUTS: dict[str, Callable[..., list[Any]]] = {
    "sequence": load_sequences,
    "tartanair": load_tartanair,
    "vkitti2": load_vkitti2,
    "hypersim": load_hypersim,
    "dynamic_replica": load_dynamic_replica,
    "pointodyssey": load_pointodyssey,
    "rgbd": load_rgbd,  # the user's own frames: rgb/ + depth/ per sequence
    "images": load_images,  # real images without depth (FiffDepth's pseudo-labelled t = -1 data)
}


def load_layout(layout: str, root: str | Path, **options: Any) -> list[Any]:
    """Sequences of `root` read with the named layout.

    Raises:
        ValueError: unknown layout, or no sequence found (a wrong root is a config error).
    """
    if layout == "rosbag":  # streamed once into sequences, never read during training
        raise ConfigError(
            f"a rosbag ({root}) is converted once, not read during training: "
            f"python -m vdepth_training.data.layouts rosbag {root} --out DIR --depth-topic TOPIC, "
            "then `layout: sequence, root: DIR`"
        )
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown dataset layout {layout!r}; known: {sorted(LAYOUTS)}")
    seqs = LAYOUTS[layout](root, **options)
    if not seqs:
        where = Path(root)
        if not where.is_absolute():  # a launcher or another terminal may start in another folder
            where_text = f"{root} (relative to the current folder: {Path.cwd() / where})"
        else:
            where_text = str(root)
        missing = "; the folder does not exist" if not where.exists() else ""
        what = "sequence folders (sequence.json)" if layout == "sequence" else f"{layout} sequences"
        raise ConfigError(
            f"no {what} found under {where_text}{missing} (data roots in the committed configs are placeholders: "
            "point them at your copies, as absolute paths to run from any folder)"
        )
    return seqs


def convert(
    layout: str, root: str | Path, out_dir: str | Path, *, overwrite: bool = False, **options: Any
) -> list[Path]:
    """Write every sequence of a public layout in the on-disk format into the new folder `out_dir`
    (`write_sequences`: built under a temporary name, renamed when complete; an existing one is
    refused unless `overwrite`, which replaces only a folder of sequences); returns the folders.

    Raises:
        ConfigError: unknown layout or no sequence under `root`.
        OutputExistsError: `out_dir` exists (see `write_sequences`).
    """
    if layout == "rosbag":  # the user's own RGB-D recording, streamed (`rosbag.rosbag_sequences`)
        from vdepth_training.data.rosbag import rosbag_sequences

        if not options.get("depth_topic"):
            raise ConfigError("a rosbag needs --depth-topic (its sensor_msgs/Image depth, 16UC1 mm or 32FC1 m)")
        return write_sequences(out_dir, rosbag_sequences(root, **options), overwrite=overwrite, inputs=[root])
    seqs = load_layout(layout, root, **options)
    return write_sequences(out_dir, (s.read() for s in seqs), overwrite=overwrite, inputs=[root])


def main(argv: list[str] | None = None) -> int:
    """`python -m vdepth_training.data.layouts LAYOUT ROOT --out DIR [--overwrite]` (+ rosbag/rgbd options).
    Exit status 2 with one line for a mistake (unknown layout, no sequences, an existing output)."""
    import argparse

    from vdepth_ros.errors import VdepthError
    from vdepth_ros.offline.runner import add_image_reading_options, cli_errors, image_reading_options
    from vdepth_ros.paths import expand_home

    prog = "python -m vdepth_training.data.layouts"
    ap = argparse.ArgumentParser(
        prog=prog,
        description="write a public dataset layout, or your own recordings (rosbag, rgbd), in the sequence format",
    )
    ap.add_argument("layout", choices=[*sorted(LAYOUTS), "rosbag"], help="the dataset's layout (rosbag: your own)")
    ap.add_argument("root", type=Path, help="the dataset's folder (rosbag: a bag folder or .mcap/.db3 file)")
    ap.add_argument("--out", required=True, type=Path, help="output folder (new; sequence format)")
    ap.add_argument("--overwrite", action="store_true", help="replace an earlier output (a folder of sequences)")
    bag = ap.add_argument_group("rosbag (an RGB-D recording)")
    bag.add_argument("--depth-topic", help="depth Image topic (16UC1 mm or 32FC1 m, at the colour image's size)")
    bag.add_argument("--image-topic", help="colour topic (default: the only image topic besides the depth)")
    bag.add_argument("--camera-info-topic", help="camera_info topic (default: the image topic's own)")
    bag.add_argument("--frames-per-sequence", type=int, default=300, help="split longer runs (default 300)")
    bag.add_argument("--max-stamp-gap", type=float, default=0.02, help="largest colour/depth stamp gap paired [s]")
    add_image_reading_options(bag)
    ap.add_argument("--depth-scale", type=float, help="rgbd: integer depth units per metre (1000: millimetres)")
    args = ap.parse_args(argv)
    expand_home(args)
    options: dict[str, Any] = {}
    if args.layout == "rosbag":
        try:
            reading = image_reading_options(args)
        except VdepthError as err:
            return cli_errors(prog, err)
        options = {
            **reading,
            "depth_topic": args.depth_topic,
            "image_topic": args.image_topic,
            "camera_info_topic": args.camera_info_topic,
            "frames_per_sequence": args.frames_per_sequence,
            "max_stamp_gap": args.max_stamp_gap,
        }
    elif args.layout == "rgbd" and args.depth_scale is not None:
        options = {"depth_scale": args.depth_scale}
    elif args.depth_topic or args.image_topic or args.camera_info_topic:
        ap.error("--depth-topic, --image-topic and --camera-info-topic are for the rosbag layout")
    if args.depth_scale is not None and args.layout != "rgbd":
        ap.error("--depth-scale is for the rgbd layout")
    try:
        folders = convert(args.layout, args.root, args.out, overwrite=args.overwrite, **options)
    except (VdepthError, FileNotFoundError, KeyboardInterrupt) as err:
        return cli_errors(prog, err)
    print(f"{len(folders)} sequences in {args.out}")
    return 0


__all__ = [
    "LAYOUTS",
    "FileSequence",
    "convert",
    "hypersim_distance_to_depth",
    "load_16bit_float_png",
    "load_dynamic_replica",
    "load_hypersim",
    "load_layout",
    "load_pointodyssey",
    "load_rgbd",
    "load_sequences",
    "load_tartanair",
    "load_vkitti2",
    "quat_to_matrix",
]

if __name__ == "__main__":
    raise SystemExit(main())
