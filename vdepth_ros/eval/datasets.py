"""Loaders for the RGB-D evaluation data in `../shared/evaldata` (formats in each folder's README).

| name       | folder                                   | depth PNG       | invalid        | poses          | cap  |
|------------|------------------------------------------|-----------------|----------------|----------------|------|
| `7scenes`  | 7scenes_tsdf_fusion/data                 | uint16 mm       | 0, 65535       | per-frame c2w  | 10 m |
| `hololens` | dvmvs_hololens_000/.../hololens-dataset/000 | uint16 mm    | 0              | poses.txt c2w  | 10 m |
| `kitti`    | metric3d_kitti_nyu_demo/data/kitti_demo  | uint16 / 256    | 0              | -              | 80 m |
| `nyu`      | metric3d_kitti_nyu_demo/data/nyu_demo    | uint16 mm       | 0              | -              | 10 m |

KITTI and NYU demo frames are not consecutive: each frame is its own one-frame sequence. A frame whose image,
depth or pose file is missing or damaged (a copy cut short) is left out (of its video, or of the dataset's
one-frame sequences), named in `EvalSequence.skipped` and warned about once per sequence or dataset, as the
training loader skips a damaged clip; none readable is an `EvalDataError`.
`stride` subsamples the GT depth grid (every `stride`-th pixel; intrinsics follow exactly); RGB
is kept at full resolution because the model resizes it anyway.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vdepth_ros.encodings import read_image_file
from vdepth_ros.errors import VdepthError

log = logging.getLogger("vdepth.eval")


class EvalDataError(VdepthError, FileNotFoundError):
    """A dataset is missing or incomplete in the evaluation data folder; the message names the path."""


@dataclass
class EvalSequence:
    """One evaluation video.

    Attributes:
        name: e.g. "7scenes/redkitchen-300".
        rgb: (T, H, W, 3) uint8 RGB at the camera's resolution.
        depth: (T, h, w) float32 GT metres (0 = invalid) on the (possibly subsampled) GT grid.
        intrinsics: (3, 3) pinhole matrix of the GT grid (h, w).
        rgb_intrinsics: (3, 3) pinhole matrix of the RGB frames (H, W).
        poses: (T, 4, 4) camera-to-world in metres, OpenCV axes, or None.
        max_depth: evaluation cap in metres.
        fps: nominal frame rate (stamps for the pipeline).
        mask: optional (h, w) bool evaluation region (e.g. NYU Eigen crop).
        skipped: the frames left out, one line each naming its file and why (missing or damaged).
    """

    name: str
    rgb: np.ndarray
    depth: np.ndarray
    intrinsics: np.ndarray
    rgb_intrinsics: np.ndarray
    poses: np.ndarray | None
    max_depth: float
    fps: float = 30.0
    mask: np.ndarray | None = None
    skipped: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        """Frames in the sequence."""
        return int(self.rgb.shape[0])

    @property
    def gt_size(self) -> tuple[int, int]:
        """(height, width) of the ground-truth depth, the grid every prediction is scored on."""
        return int(self.depth.shape[1]), int(self.depth.shape[2])


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as `(H, W, 3)` uint8 RGB (`EvalDataError` when it is missing or damaged: a JPEG cut
    short too, which `cv2.imread` decodes half grey)."""
    img = read_image_file(path, cv2.IMREAD_COLOR)
    if img is None:
        raise EvalDataError(f"cannot read image {path} (missing, or damaged: not a decodable image)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_depth_png(path: str | Path, scale: float, invalid: tuple[int, ...] = (0,)) -> np.ndarray:
    """uint16 depth PNG -> float32 metres (`value / scale`), 0 where the raw value is in `invalid`."""
    raw = read_image_file(path, cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise EvalDataError(f"cannot read depth {path} (missing, or damaged: not a decodable image)")
    if raw.dtype != np.uint16:
        raise EvalDataError(f"cannot read depth {path} (damaged, or not the dataset's: {raw.dtype}, not a uint16 PNG)")
    bad = np.isin(raw, invalid)
    depth = raw.astype(np.float32) / np.float32(scale)
    depth[bad] = 0.0
    return depth


def read_pose(path: str | Path) -> np.ndarray:
    """A 4x4 camera-to-world matrix from a text file (`EvalDataError` when it is missing or damaged)."""
    try:
        pose = np.loadtxt(path, ndmin=2)
    except (OSError, ValueError) as err:
        raise EvalDataError(f"cannot read pose {path} (missing, or damaged: {err})") from None
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        raise EvalDataError(f"cannot read pose {path} (damaged: {pose.shape} values, expected a finite 4x4 matrix)")
    return pose


def subsample_intrinsics(K: np.ndarray, stride: int) -> np.ndarray:
    """Intrinsics of the grid `img[::stride, ::stride]` (pixel j of it is pixel stride*j)."""
    out = np.asarray(K, np.float64).copy()
    out[:2] /= stride
    return out


@dataclass
class _Frames:
    """The readable frames of a video sequence: their stacked arrays, which of the listed frames they are, and
    the frames left out (one line each)."""

    rgb: np.ndarray
    depth: np.ndarray
    kept: list[int]
    skipped: list[str]


def _read_frames(
    name: str,
    frames: list[tuple[Path, Path, Path | None]],
    scale: float,
    invalid: tuple[int, ...],
    stride: int,
) -> tuple[_Frames, list[np.ndarray]]:
    """Each frame's (image, depth PNG, pose file or None); a frame any of whose files is missing or damaged is
    left out, named in the result and warned about once for the sequence; the poses read (one per kept frame).

    Raises:
        EvalDataError: no frame of the sequence can be read.
    """
    rgb, depth, poses, kept, skipped = [], [], [], [], []
    for index, (image, depth_png, pose_file) in enumerate(frames):
        try:
            frame = (read_rgb(image), read_depth_png(depth_png, scale, invalid)[::stride, ::stride])
            pose = None if pose_file is None else read_pose(pose_file)
        except EvalDataError as err:
            skipped.append(str(err))
            continue
        rgb.append(frame[0])
        depth.append(frame[1])
        if pose is not None:
            poses.append(pose)
        kept.append(index)
    _tell_skipped(name, skipped, len(frames))
    return _Frames(np.stack(rgb), np.ascontiguousarray(np.stack(depth)), kept, skipped), poses


def _tell_skipped(name: str, skipped: list[str], total: int) -> None:
    """One warning for the frames of `name` left out (`EvalDataError` when that is all `total` of them)."""
    if len(skipped) == total:
        raise EvalDataError(f"{name}: none of its {total} frames can be read ({skipped[0]})")
    if skipped:
        log.warning(
            "%s: %d of %d frames left out, a file missing or damaged (%s%s); the metrics are over the other "
            "frames: replace the files (copy the data again) to score them all",
            name,
            len(skipped),
            total,
            skipped[0],
            f"; {len(skipped) - 1} more in results.json" if len(skipped) > 1 else "",
        )


def load_7scenes(root: str | Path, frames: int = 300, stride: int = 2) -> list[EvalSequence]:
    """7-Scenes (tsdf-fusion subset): `frame-XXXXXX.{color.jpg,depth.png,pose.txt}` + intrinsics."""
    root = Path(root)
    data = root / "data" if (root / "data").is_dir() else root
    colors = sorted(data.glob("frame-*.color.jpg"))[:frames]
    if not colors:
        raise EvalDataError(f"no frame-*.color.jpg under {data}")
    stems = [p.name.replace(".color.jpg", "") for p in colors]
    name = f"7scenes/redkitchen-{len(stems)}"
    listed = [(c, data / f"{s}.depth.png", data / f"{s}.pose.txt") for c, s in zip(colors, stems, strict=True)]
    frames, poses = _read_frames(name, listed, 1000.0, (0, 65535), stride)
    K = _read_intrinsics(data / "camera-intrinsics.txt")
    return [
        EvalSequence(
            name=name,
            rgb=frames.rgb,
            depth=frames.depth,
            intrinsics=subsample_intrinsics(K, stride),
            rgb_intrinsics=K,
            poses=np.stack(poses),
            max_depth=10.0,
            skipped=frames.skipped,
        )
    ]


def load_hololens(root: str | Path, frames: int = 120, stride: int = 1) -> list[EvalSequence]:
    """DeepVideoMVS HoloLens sample: `images/`, `depth/` (uint16 mm), `K.txt`, `poses.txt` (c2w rows)."""
    root = Path(root)
    cands = [root, root / "sample-data" / "hololens-dataset" / "000"]
    seq = next((c for c in cands if (c / "images").is_dir()), None)
    if seq is None:
        raise EvalDataError(f"no images/ folder under {root}")
    images = sorted((seq / "images").glob("*.png"))[:frames]
    name = f"hololens/000-{len(images)}"
    poses_txt = seq / "poses.txt"
    try:  # one file for the sequence: damaged, it is the sequence's error, not a frame's
        poses = np.loadtxt(poses_txt, ndmin=2).reshape(-1, 4, 4)
    except (OSError, ValueError) as err:
        raise EvalDataError(f"{name}: cannot read {poses_txt} (missing, or damaged: {err})") from None
    if len(poses) < len(images):
        raise EvalDataError(f"{name}: {poses_txt} holds {len(poses)} poses for {len(images)} images (cut short?)")
    frames, _ = _read_frames(name, [(p, seq / "depth" / p.name, None) for p in images], 1000.0, (0,), stride)
    K = _read_intrinsics(seq / "K.txt")
    return [
        EvalSequence(
            name=name,
            rgb=frames.rgb,
            depth=frames.depth,
            intrinsics=subsample_intrinsics(K, stride),
            rgb_intrinsics=K,
            poses=poses[frames.kept],
            max_depth=10.0,
            skipped=frames.skipped,
        )
    ]


def _read_intrinsics(path: Path) -> np.ndarray:
    """A sequence's 3x3 camera matrix from a text file (`EvalDataError` when it is missing or damaged)."""
    try:
        K = np.loadtxt(path, ndmin=2)
    except (OSError, ValueError) as err:
        raise EvalDataError(f"cannot read the intrinsics {path} (missing, or damaged: {err})") from None
    if K.shape != (3, 3):
        raise EvalDataError(f"cannot read the intrinsics {path} (damaged: {K.shape} values, expected 3x3)")
    return K


def _single_frames(root: Path, kind: str, cap: float, stride: int) -> list[EvalSequence]:
    """Frames listed in `<root>/data/<kind>_demo/test_annotations.json` (paths relative to `root`)."""
    ann_path = root / "data" / f"{kind}_demo" / "test_annotations.json"
    if not ann_path.is_file():
        raise EvalDataError(f"no {ann_path}")
    ann = json.loads(ann_path.read_text())
    items = sorted(ann["files"], key=lambda it: it["rgb"])
    out, skipped = [], []
    for it in items:
        try:
            rgb = read_rgb(root / it["rgb"])
            depth = read_depth_png(root / it["depth"], float(it.get("depth_scale", 1000.0)))[::stride, ::stride]
        except EvalDataError as err:  # that frame is left out, as a video's (`_read_frames`)
            skipped.append(str(err))
            continue
        fx, fy, cx, cy = it["cam_in"]
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64)
        mask = None
        if kind == "nyu":  # Eigen crop on the 480x640 grid
            m = np.zeros(rgb.shape[:2], bool)
            m[45:471, 41:601] = True
            mask = m[::stride, ::stride]
        out.append(
            EvalSequence(
                name=f"{kind}/{Path(it['rgb']).stem}",
                rgb=rgb[None],
                depth=np.ascontiguousarray(depth[None]),
                intrinsics=subsample_intrinsics(K, stride),
                rgb_intrinsics=K,
                poses=None,
                max_depth=cap,
                mask=mask,
            )
        )
    _tell_skipped(kind, skipped, len(items))
    if skipped:  # (one-frame sequences: the dataset's first carries them for the report)
        out[0].skipped = skipped
    return out


def load_kitti_demo(root: str | Path, stride: int = 1) -> list[EvalSequence]:
    """Metric3D KITTI demo frames (GT /256, 80 m cap); each frame is a one-frame sequence."""
    return _single_frames(Path(root), "kitti", 80.0, stride)


def load_nyu_demo(root: str | Path, stride: int = 1) -> list[EvalSequence]:
    """Metric3D NYU demo frames (GT /1000, 10 m cap, Eigen crop); each frame is a one-frame sequence."""
    return _single_frames(Path(root), "nyu", 10.0, stride)


#: dataset name -> (folder under evaldata, loader)
DATASETS: dict[str, tuple[str, Callable[..., list[EvalSequence]]]] = {
    "7scenes": ("7scenes_tsdf_fusion", load_7scenes),
    "hololens": ("dvmvs_hololens_000", load_hololens),
    "kitti": ("metric3d_kitti_nyu_demo", load_kitti_demo),
    "nyu": ("metric3d_kitti_nyu_demo", load_nyu_demo),
}


def dataset_dir(name: str, evaldata: str | Path) -> Path:
    """The folder of dataset `name` (a key of `DATASETS`) in the evaldata root.

    Raises:
        ValueError: `name` is not a known dataset.
        EvalDataError: the folder is not there (checked before any work, so a run does not fail late).
    """
    try:
        folder = DATASETS[name][0]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}") from None
    path = Path(evaldata) / folder
    if not path.is_dir():
        raise EvalDataError(f"dataset {name}: no folder {path} in the evaluation data")
    return path


def load_dataset(name: str, evaldata: str | Path, **kwargs: Any) -> list[EvalSequence]:
    """Load dataset `name` (a key of `DATASETS`) from the evaldata root (`EvalDataError` if it is missing)."""
    path = dataset_dir(name, evaldata)
    return DATASETS[name][1](path, **kwargs)


__all__ = [
    "DATASETS",
    "EvalDataError",
    "EvalSequence",
    "dataset_dir",
    "load_7scenes",
    "load_dataset",
    "load_hololens",
    "load_kitti_demo",
    "load_nyu_demo",
    "read_depth_png",
    "read_pose",
    "read_rgb",
    "subsample_intrinsics",
]
