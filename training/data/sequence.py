"""The one on-disk training-sequence format, and its reader/writer.

Every source layout (TartanAir, Virtual KITTI 2, Hypersim, Dynamic Replica, PointOdyssey, the
synthetic renderer) is either converted to this format (`write_sequence`) or read straight into the
in-memory `Sequence` by a loader in `vdepth_training.data.layouts`. Training only sees `Sequence`.

Folder layout (one folder per sequence)::

    <seq>/sequence.json      {"format": "vdepth-seq/1", "num_frames", "height", "width",
                              "target_kind": "depth"|"disparity", "metric": bool, "source", "name",
                              "depth_scale": units per metre of a depth target (optional, default 1:
                              metres; 1000 for millimetres, divided out when read)}
    <seq>/rgb/000000.png     (H, W, 3) uint8 RGB (PNG; JPEG also accepted when reading)
    <seq>/target/000000.npy  (H, W) float32: depth in metres (`target_kind="depth"`) or disparity;
                             non-finite or <= 0 marks an invalid pixel
    <seq>/valid/000000.png   optional (H, W) uint8, 0 = invalid (ANDed with the finite/positive test)
    <seq>/intrinsics.npy     optional (T, 3, 3) float64 pinhole K at (H, W)
    <seq>/poses.npy          optional (T, 4, 4) float64 camera-to-world, OpenCV axes (x right, y down,
                             z forward)

A single image is a sequence with `num_frames == 1` (DVD/FiffDepth image sources).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from vdepth_training.ranks import first_to_say

from vdepth_ros.encodings import read_image_file
from vdepth_ros.errors import ConfigError
from vdepth_ros.offline.atomic import AtomicOutput, disk_full_error
from vdepth_ros.offline.videoio import write_png

log = logging.getLogger("vdepth_training")

FORMAT = "vdepth-seq/1"
META_NAME = "sequence.json"
TargetKind = Literal["depth", "disparity"]
#: `sequence.json` key: a depth target's units per metre (default 1); declared, the unit is trusted
DEPTH_SCALE_KEY = "depth_scale"
#: a median depth beyond this many metres may be millimetres read as metres (or aerial footage)
FAR_MEDIAN_M = 200.0
_far_warned: list[bool] = [False]  # the magnitude warning, once per process and run (one per sequence would flood)


def check_depth_unit(path: str | Path, metres: np.ndarray, *, declared: bool, fix: str) -> None:
    """Whether depth read as metres is in another unit, from the first file of a sequence.

    Whole numbers only with a median beyond 10 m are a sensor's integer units (millimetres, or
    centimetres), not metres: no metric depth source gives whole metres, so this refuses (unless
    `declared`). A median beyond `FAR_MEDIAN_M` alone is not evidence (aerial footage is that far):
    one warning naming the fix, unless the unit was `declared`.

    Args:
        path: the file, named in the message.
        metres: the depth as it would train (after any declared scale).
        declared: the user gave the unit (`depth_scale`): trusted, nothing checked.
        fix: how to declare or convert the unit, appended to the message.

    Raises:
        ConfigError: whole-number depth (the unit, the median and `fix` named).
    """
    if declared:
        return
    d = np.asarray(metres, dtype=np.float64)
    d = d[np.isfinite(d) & (d > 0)]
    if not d.size:
        return
    median = float(np.median(d))
    if median > 10.0 and bool(np.all(d == np.round(d))):
        raise ConfigError(
            f"{path}: depth in whole numbers only (median {median:.0f}), read as metres: that is a sensor's unit "
            f"(millimetres?), and would train on depth {median:.0f} m away; {fix}"
        )
    if median > FAR_MEDIAN_M and not _far_warned[0]:
        _far_warned[0] = True
        if first_to_say("median depth beyond FAR_MEDIAN_M"):  # every rank opens the folders: said once for them all
            log.warning(
                "%s: median depth %.0f m: if that is millimetres, %s; if it is metres (aerial footage), declare it "
                "to silence this (warned once)", path, median, fix,
            )  # fmt: skip


@dataclass
class Sequence:
    """A video (or single image) with dense supervision, in memory.

    Attributes:
        rgb: (T, H, W, 3) uint8 RGB frames.
        target: (T, H, W) float32 depth (metres if `metric`) or disparity, per `target_kind`.
        valid: (T, H, W) bool; False where `target` must not supervise.
        target_kind: "depth" or "disparity".
        intrinsics: optional (T, 3, 3) pinhole matrices at (H, W).
        poses: optional (T, 4, 4) camera-to-world transforms, OpenCV camera axes.
        metric: whether `target` is in metres (depth) / metric disparity.
        name: identifier (e.g. "tartanair/abandonedfactory/Easy/P000").
        source: dataset layout it came from.
    """

    rgb: np.ndarray
    target: np.ndarray
    valid: np.ndarray
    target_kind: TargetKind = "depth"
    intrinsics: np.ndarray | None = None
    poses: np.ndarray | None = None
    metric: bool = True
    name: str = ""
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rgb.ndim != 4 or self.rgb.shape[-1] != 3 or self.rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be (T,H,W,3) uint8, got {self.rgb.shape} {self.rgb.dtype}")
        t, h, w = self.rgb.shape[:3]
        if self.target.shape != (t, h, w):
            raise ValueError(f"target shape {self.target.shape} != rgb frames {(t, h, w)}")
        if self.valid.shape != (t, h, w):
            raise ValueError(f"valid shape {self.valid.shape} != {(t, h, w)}")
        if self.target_kind not in ("depth", "disparity"):
            raise ValueError(f"target_kind must be 'depth' or 'disparity', got {self.target_kind!r}")
        for key, shape in (("intrinsics", (t, 3, 3)), ("poses", (t, 4, 4))):
            arr = getattr(self, key)
            if arr is not None and arr.shape != shape:
                raise ValueError(f"{key} shape {arr.shape} != {shape}")
        self.target = self.target.astype(np.float32, copy=False)
        self.valid = self.valid.astype(bool, copy=False) & np.isfinite(self.target) & (self.target > 0)

    @property
    def num_frames(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[2])

    def select(self, indices: SequenceABC[int] | np.ndarray) -> Sequence:
        """The frames at `indices`, in that order (a new `Sequence`)."""
        idx = np.asarray(indices, dtype=np.int64)
        return Sequence(
            rgb=self.rgb[idx],
            target=self.target[idx],
            valid=self.valid[idx],
            target_kind=self.target_kind,
            intrinsics=None if self.intrinsics is None else self.intrinsics[idx],
            poses=None if self.poses is None else self.poses[idx],
            metric=self.metric,
            name=self.name,
            source=self.source,
            extra=dict(self.extra),
        )


def write_sequence(directory: str | Path, seq: Sequence) -> Path:
    """Write `seq` in the on-disk format (see module docstring); returns the folder.

    `sequence.json` is written last: a folder without it is incomplete (readers skip it, the tools
    that write sequences write it again).

    Raises:
        OfflineError: the disk (or quota) is full; nothing is left looking complete.
    """
    out = Path(directory)
    try:
        _write_sequence_files(out, seq)
    except OSError as err:
        full = disk_full_error(err, out, f"{META_NAME} was not written, so the folder counts as incomplete; free space "
                               "on its disk or choose another folder, then run again")  # fmt: skip
        if full is not None:
            raise full from err
        raise
    return out


def _write_sequence_files(out: Path, seq: Sequence) -> None:
    for sub in ("rgb", "target", "valid"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for i in range(seq.num_frames):
        # not cv2.imwrite: it reports success for a file cut short by a full disk
        write_png(out / "rgb" / f"{i:06d}.png", cv2.cvtColor(seq.rgb[i], cv2.COLOR_RGB2BGR))
        np.save(out / "target" / f"{i:06d}.npy", seq.target[i].astype(np.float32))
        write_png(out / "valid" / f"{i:06d}.png", seq.valid[i].astype(np.uint8) * 255)
    if seq.intrinsics is not None:
        np.save(out / "intrinsics.npy", seq.intrinsics.astype(np.float64))
    if seq.poses is not None:
        np.save(out / "poses.npy", seq.poses.astype(np.float64))
    h, w = seq.size
    meta = {
        "format": FORMAT,
        "num_frames": seq.num_frames,
        "height": h,
        "width": w,
        "target_kind": seq.target_kind,
        "metric": seq.metric,
        "name": seq.name,
        "source": seq.source,
        **({"extra": seq.extra} if seq.extra else {}),  # how it was made (a renderer's settings), JSON values
    }
    (out / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")


def is_sequence_dir(path: str | Path) -> bool:
    return (Path(path) / META_NAME).is_file()


def not_sequences(path: Path) -> str | None:
    """What an existing `path` is instead of a folder of sequences (`write_sequences`: every entry a
    sequence folder), or None: `--overwrite` replaces only such a folder, never one of the user's."""
    if not path.is_dir():
        return "a file, not a folder of sequences"
    other = sorted(p.name for p in path.iterdir() if not is_sequence_dir(p))
    return f"not a folder of sequences (it holds {', '.join(other[:3])})" if other else None


def sequence_folder_name(name: str) -> str:
    """A sequence's folder name from its `name` (characters other than letters, digits, `_.-` -> `_`)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_sequences(
    out: str | Path,
    sequences: Iterable[Sequence],
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
) -> list[Path]:
    """Write `sequences` (each read when its turn comes) as the sequence folders of a new folder
    `out`, built under a temporary name and renamed into place when all are written (`AtomicOutput`):
    an interrupted or failed run leaves nothing under `out`, and a folder is never filled with a mix
    of old and new sequences. Two names that make the same folder name get `~2`, `~3`, ...

    Args:
        out: the output folder; an existing non-empty one is refused unless `overwrite`, and even
            then replaced only when it is a folder of sequences (`not_sequences`).
        sequences: the sequences to write.
        overwrite: replace an earlier output (once the new one is complete).
        inputs: input files/folders `out` may not overlap.

    Returns:
        The sequence folders under `out`.

    Raises:
        OutputExistsError: `out` exists and `overwrite` is false, or it is not a folder of sequences.
        OfflineError: `out` overlaps an input, or its disk is full.
    """
    out = Path(out)
    names: list[str] = []
    with AtomicOutput(out, overwrite=overwrite, inputs=[Path(p) for p in inputs], replaceable=not_sequences) as tmp:
        tmp.mkdir()
        for seq in sequences:
            base = name = sequence_folder_name(seq.name)
            n = 1
            while name in names:
                n += 1
                name = f"{base}~{n}"
            write_sequence(tmp / name, seq)
            names.append(name)
    return [out / name for name in names]


class SequenceReader:
    """Random access to the frames of one on-disk sequence without loading all of it.

    Args:
        directory: a folder written by `write_sequence`.

    Raises:
        FileNotFoundError: no `sequence.json` in `directory`.
        ValueError: the format tag or the frame files do not match the metadata.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        meta_path = self.directory / META_NAME
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} not found: not a {FORMAT} sequence folder")
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"{meta_path} is not valid JSON: {err}") from None
        if self.meta.get("format") != FORMAT:
            raise ConfigError(f"{meta_path}: format {self.meta.get('format')!r}, expected {FORMAT!r}")
        rgb_dir = self.directory / "rgb"
        files = sorted(rgb_dir.iterdir()) if rgb_dir.is_dir() else []
        self._rgb = [p for p in files if p.suffix.lower() in (".png", ".jpg")]
        if not self._rgb or not self.meta.get("num_frames"):
            raise ConfigError(
                f"{self.directory}: an empty sequence (no frames in rgb/); remove the folder or add frames"
            )
        if len(self._rgb) != self.meta["num_frames"]:
            raise ConfigError(
                f"{self.directory}: {len(self._rgb)} rgb files, sequence.json says num_frames {self.meta['num_frames']}"
            )
        self._check_targets()
        kind, metric = self.meta.get("target_kind", "depth"), self.meta.get("metric", True)
        if kind not in ("depth", "disparity") or not isinstance(metric, bool):
            raise ConfigError(
                f'{meta_path}: target_kind must be "depth" or "disparity" and metric true or false (JSON), got '
                f"target_kind {kind!r}, metric {metric!r}"
            )  # when opened: read, a clip drawn hours into a run would stop it
        self._scale = self._depth_scale()
        self._warned_invalid = False
        #: the folder through which the loader workers and ranks of a run warn of a sequence once (`first_to_say`);
        #: set by the `ClipDataset` that reads it (its `said_folder`), else the launch's folder
        self.said: Path | None = None
        intr = self.directory / "intrinsics.npy"
        poses = self.directory / "poses.npy"
        self._intrinsics = np.load(intr) if intr.is_file() else None
        self._poses = np.load(poses) if poses.is_file() else None
        for path, arr, shape in ((intr, self._intrinsics, (3, 3)), (poses, self._poses, (4, 4))):
            if arr is not None and arr.shape != (len(self._rgb), *shape):
                raise ConfigError(f"{path}: shape {arr.shape}, expected {(len(self._rgb), *shape)} (one per frame)")

    def _check_targets(self) -> None:
        """Every rgb frame has its `target/<stem>.npy` (one listing, no file opened): a missing one
        would otherwise stop a run hours in, on whichever rank first drew that frame."""
        target_dir = self.directory / "target"
        present = {p.name for p in target_dir.iterdir()} if target_dir.is_dir() else set()
        missing = [p.stem for p in self._rgb if f"{p.stem}.npy" not in present]
        if not missing:
            return
        shown = ", ".join(f"target/{m}.npy" for m in missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        hint = "every rgb/<frame> needs target/<frame>.npy, float32 depth in metres (or disparity)"
        if any(f"{m}.png" in present for m in missing):
            hint = ("the format holds target/<frame>.npy, float32 depth in metres, not PNG: convert a 16-bit "
                    "millimetre PNG with np.save(npy, png.astype(np.float32) / 1000)")  # fmt: skip
        raise ConfigError(
            f"{self.directory}: {len(missing)} of {len(self._rgb)} frames have no depth ({shown}); {hint}"
        )

    def _depth_scale(self) -> float:
        """The declared units per metre of a depth target (1: metres), checked against the first frame."""
        meta = self.directory / META_NAME
        declared = self.meta.get(DEPTH_SCALE_KEY)
        if declared is not None and (isinstance(declared, bool) or not isinstance(declared, int | float)
                                     or not declared > 0):  # fmt: skip
            raise ConfigError(f"{meta}: {DEPTH_SCALE_KEY} must be a number > 0 (units per metre: 1000 for "
                              f"millimetres), got {declared!r}")  # fmt: skip
        scale = float(declared or 1.0)
        if self.meta.get("target_kind", "depth") != "depth" or not self.meta.get("metric", True):
            return 1.0 if declared is None else scale
        first = self.directory / "target" / f"{self._rgb[0].stem}.npy"
        target = np.load(first)
        if np.issubdtype(target.dtype, np.floating):  # integer targets are refused when read (`read`)
            fix = (f'add "{DEPTH_SCALE_KEY}": 1000 to {meta} (units per metre; 1 declares metres), or save '
                   "depth_mm / 1000")  # fmt: skip
            check_depth_unit(first, target / scale, declared=declared is not None, fix=fix)
        return scale

    def __len__(self) -> int:
        return int(self.meta["num_frames"])

    @property
    def files(self) -> list[Path]:
        """The files of the folder, in order (`Source.contents` fingerprints them)."""
        return sorted(p for p in self.directory.rglob("*") if p.is_file())

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.directory.name)

    @property
    def target_kind(self) -> str:
        """What the targets hold, "depth" or "disparity" (`sequence.json`), known without reading them."""
        return str(self.meta.get("target_kind", "depth"))

    def read(self, indices: SequenceABC[int] | np.ndarray | None = None) -> Sequence:
        """Load the frames at `indices` (all frames when None) as a `Sequence`."""
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        rgb, target, valid = [], [], []
        size = (int(self.meta["height"]), int(self.meta["width"])) if "height" in self.meta else None
        for i in idx:
            path = self._rgb[int(i)]
            img = read_image_file(path, cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"{path} is damaged (not a decodable image)")  # cut short, like a target below
            rgb.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
            stem = path.stem
            tpath = self.directory / "target" / f"{stem}.npy"
            try:
                target.append(np.load(tpath, allow_pickle=False))
            except (ValueError, EOFError) as err:  # cut short (a copy interrupted) or not an .npy
                raise ValueError(f"{tpath} is damaged ({err})") from None
            if not np.issubdtype(target[-1].dtype, np.floating):
                raise ConfigError(
                    f"{tpath} holds {target[-1].dtype}; the format holds float32 depth in metres (or disparity): "
                    "save millimetres as (depth_mm / 1000).astype(np.float32)"
                )
            if self._scale != 1.0:
                target[-1] = (target[-1] / np.float32(self._scale)).astype(np.float32)
            vpath = self.directory / "valid" / f"{stem}.png"
            if vpath.is_file():
                valid_mask = read_image_file(vpath, cv2.IMREAD_GRAYSCALE)
                if valid_mask is None:
                    raise ValueError(f"{vpath} is damaged (not a decodable image)")
                valid.append(valid_mask > 0)
            else:
                valid.append(np.ones(target[-1].shape, dtype=bool))
            size = size or img.shape[:2]
            for file, shape in ((path, img.shape[:2]), (tpath, target[-1].shape), (vpath, valid[-1].shape)):
                if shape != size:
                    raise ConfigError(
                        f"{file}: {shape[0]}x{shape[1]}, but {self.directory / META_NAME} says {size[0]}x{size[1]} "
                        "(every frame of a sequence has its size; resize it, or make it a sequence of its own)"
                    )
        seq = Sequence(
            rgb=np.stack(rgb),
            target=np.stack(target),
            valid=np.stack(valid),
            target_kind=self.meta.get("target_kind", "depth"),
            intrinsics=None if self._intrinsics is None else self._intrinsics[idx],
            poses=None if self._poses is None else self._poses[idx],
            metric=bool(self.meta.get("metric", True)),
            name=self.name,
            source=str(self.meta.get("source", "")),
        )
        empty = [self._rgb[int(i)].stem for i, v in zip(idx, seq.valid, strict=True) if not v.any()]
        if empty and not self._warned_invalid:
            self._warned_invalid = True  # this process asks once; `first_to_say`: once for all of the run's
            if first_to_say(f"no valid depth: {self.directory}", self.said):
                log.warning(
                    "%s: frame %s has no valid depth (every pixel NaN, inf, <= 0 or masked): such frames supervise "
                    "nothing (warned once per sequence)",
                    self.directory,
                    empty[0],
                )
        return seq


def find_sequences(root: str | Path) -> list[Path]:
    """All sequence folders at or below `root`, sorted."""
    root = Path(root)
    if is_sequence_dir(root):
        return [root]
    return sorted(p.parent for p in root.rglob(META_NAME))


__all__ = [
    "DEPTH_SCALE_KEY",
    "FORMAT",
    "Sequence",
    "SequenceReader",
    "TargetKind",
    "check_depth_unit",
    "find_sequences",
    "is_sequence_dir",
    "not_sequences",
    "sequence_folder_name",
    "write_sequence",
    "write_sequences",
]
