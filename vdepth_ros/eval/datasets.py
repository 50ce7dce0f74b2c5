"""Loaders for the RGB-D evaluation data in `../shared/evaldata` (formats in each folder's README).

| name       | folder                                   | depth PNG       | invalid        | poses          | cap  |
|------------|------------------------------------------|-----------------|----------------|----------------|------|
| `7scenes`  | 7scenes_tsdf_fusion/data                 | uint16 mm       | 0, 65535       | per-frame c2w  | 10 m |
| `hololens` | dvmvs_hololens_000/.../hololens-dataset/000 | uint16 mm    | 0              | poses.txt c2w  | 10 m |
| `kitti`    | metric3d_kitti_nyu_demo/data/kitti_demo  | uint16 / 256    | 0              | -              | 80 m |
| `nyu`      | metric3d_kitti_nyu_demo/data/nyu_demo    | uint16 mm       | 0              | -              | 10 m |

KITTI and NYU demo frames are not consecutive: each frame is its own one-frame sequence.
`stride` subsamples the GT depth grid (every `stride`-th pixel; intrinsics follow exactly); RGB
is kept at full resolution because the model resizes it anyway.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vdepth_ros.errors import VdepthError


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

    @property
    def num_frames(self) -> int:
        """Frames in the sequence."""
        return int(self.rgb.shape[0])

    @property
    def gt_size(self) -> tuple[int, int]:
        """(height, width) of the ground-truth depth, the grid every prediction is scored on."""
        return int(self.depth.shape[1]), int(self.depth.shape[2])


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as `(H, W, 3)` uint8 RGB (`EvalDataError` when it cannot be read)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise EvalDataError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_depth_png(path: str | Path, scale: float, invalid: tuple[int, ...] = (0,)) -> np.ndarray:
    """uint16 depth PNG -> float32 metres (`value / scale`), 0 where the raw value is in `invalid`."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise EvalDataError(f"cannot read depth {path}")
    if raw.dtype != np.uint16:
        raise ValueError(f"{path}: expected a uint16 depth PNG, got {raw.dtype}")
    bad = np.isin(raw, invalid)
    depth = raw.astype(np.float32) / np.float32(scale)
    depth[bad] = 0.0
    return depth


def subsample_intrinsics(K: np.ndarray, stride: int) -> np.ndarray:
    """Intrinsics of the grid `img[::stride, ::stride]` (pixel j of it is pixel stride*j)."""
    out = np.asarray(K, np.float64).copy()
    out[:2] /= stride
    return out


def _stack(
    paths_rgb: list[Path], paths_depth: list[Path], scale: float, invalid: tuple[int, ...], stride: int
) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.stack([read_rgb(p) for p in paths_rgb])
    depth = np.stack([read_depth_png(p, scale, invalid)[::stride, ::stride] for p in paths_depth])
    return rgb, np.ascontiguousarray(depth)


def load_7scenes(root: str | Path, frames: int = 300, stride: int = 2) -> list[EvalSequence]:
    """7-Scenes (tsdf-fusion subset): `frame-XXXXXX.{color.jpg,depth.png,pose.txt}` + intrinsics."""
    root = Path(root)
    data = root / "data" if (root / "data").is_dir() else root
    colors = sorted(data.glob("frame-*.color.jpg"))[:frames]
    if not colors:
        raise EvalDataError(f"no frame-*.color.jpg under {data}")
    stems = [p.name.replace(".color.jpg", "") for p in colors]
    rgb, depth = _stack(colors, [data / f"{s}.depth.png" for s in stems], 1000.0, (0, 65535), stride)
    poses = np.stack([np.loadtxt(data / f"{s}.pose.txt") for s in stems])
    K = np.loadtxt(data / "camera-intrinsics.txt")
    return [
        EvalSequence(
            name=f"7scenes/redkitchen-{len(stems)}",
            rgb=rgb,
            depth=depth,
            intrinsics=subsample_intrinsics(K, stride),
            rgb_intrinsics=K,
            poses=poses,
            max_depth=10.0,
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
    rgb, depth = _stack(images, [seq / "depth" / p.name for p in images], 1000.0, (0,), stride)
    poses = np.loadtxt(seq / "poses.txt").reshape(-1, 4, 4)[: len(images)]
    K = np.loadtxt(seq / "K.txt")
    return [
        EvalSequence(
            name=f"hololens/000-{len(images)}",
            rgb=rgb,
            depth=depth,
            intrinsics=subsample_intrinsics(K, stride),
            rgb_intrinsics=K,
            poses=poses,
            max_depth=10.0,
        )
    ]


def _single_frames(root: Path, kind: str, cap: float, stride: int) -> list[EvalSequence]:
    """Frames listed in `<root>/data/<kind>_demo/test_annotations.json` (paths relative to `root`)."""
    ann_path = root / "data" / f"{kind}_demo" / "test_annotations.json"
    if not ann_path.is_file():
        raise EvalDataError(f"no {ann_path}")
    ann = json.loads(ann_path.read_text())
    items = sorted(ann["files"], key=lambda it: it["rgb"])
    out = []
    for it in items:
        rgb = read_rgb(root / it["rgb"])
        depth = read_depth_png(root / it["depth"], float(it.get("depth_scale", 1000.0)))[::stride, ::stride]
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
    "read_rgb",
    "subsample_intrinsics",
]
