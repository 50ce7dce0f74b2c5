"""What the data digest at `--resume` costs and what it sees (`checkpoints.files_digest`).

Every start lists each sequence of every `data.sources` folder and digests its files on every rank
(`Source.contents`), so `--resume` and the ranks can tell data exported again under the same names and
frame counts. This measures, on a sequence folder like a user's RGB-D recording (480x640, the `rosbag`
layout's output) and on the two-rank tests' fixture (`_users_folder`: 3 sequences of 6 frames at 32x48):

- the seconds per 1000 frames of the digest as shipped (names and sizes, and 3 chunks of 4 KiB of every
  file but the compressed images), of the one before it (3 chunks of 4 files of each sequence), and of a
  hash of every byte, each with the files
  in the page cache (a second start on the same node) and dropped from it (`posix_fadvise`, the first
  start after a copy: this is what a node reading a network disk meets);
- which of the changes a re-export makes each one sees: every frame's depth rescaled (another
  `--depth-scale`), one depth map replaced (a frame re-exported), one colour image replaced, a patch of
  one depth map edited.

    .venv/bin/python benchmarks/data_digest.py [--frames 120] [--json out/data_digest.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from vdepth_training.checkpoints import _sampled_bytes, files_digest
from vdepth_training.data.sequence import Sequence, SequenceReader, write_sequence


def four_files_digest(paths: list[Path], samples: int = 4, chunk: int = 4096) -> int:
    """The digest before this one: 3 chunks from `samples` files spread over the sequence, the others by size."""
    h = hashlib.sha256()
    picked = {paths[(len(paths) - 1) * i // max(samples - 1, 1)] for i in range(samples)} if paths else set()
    for path in paths:
        h.update(f"{path.name}:{path.stat().st_size}".encode())
        if path in picked:
            h.update(_sampled_bytes(path, 3, chunk))
    return int(h.hexdigest()[:15], 16)


def full_digest(paths: list[Path]) -> int:
    """Every byte of every file."""
    h = hashlib.sha256()
    for path in paths:
        h.update(f"{path.name}:".encode())
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    return int(h.hexdigest()[:15], 16)


DIGESTS = {"shipped": files_digest, "before (4 files)": four_files_digest, "full": full_digest}


def recording(folder: Path, frames: int, height: int, width: int, seed: int = 0) -> list[Path]:
    """A sequence like a converted RGB-D recording: smooth textured colour, metric depth, all valid."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.empty((frames, height, width, 3), np.uint8)
    depth = np.empty((frames, height, width), np.float32)
    for t in range(frames):
        base = 128 + 60 * np.sin(xx / 37.0 + t * 0.1)[..., None] * np.cos(yy / 53.0)[..., None]
        rgb[t] = np.clip(base + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
        depth[t] = 1.0 + 3.0 * (yy / height) + 0.2 * np.sin(xx / 41.0 + t * 0.05) + rng.normal(0, 0.01, (height, width))
    write_sequence(folder, Sequence(rgb=rgb, target=depth, valid=np.ones(depth.shape, bool)))
    return SequenceReader(folder).files


def drop_cache(paths: list[Path]) -> None:
    """Evict the files from the page cache (clean pages: written and synced), as on a first read."""
    os.sync()
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def seconds(fn: Any, paths: list[Path], cold: bool, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        if cold:
            drop_cache(paths)
        t0 = time.perf_counter()
        fn(paths)
        best = min(best, time.perf_counter() - t0)
    return best


def seen(folder: Path) -> dict[str, dict[str, bool]]:
    """For each re-export, whether each digest changes (True: `--resume` refuses it)."""

    def rescale_all(targets: list[Path]) -> None:  # another depth scale
        for t in targets:
            np.save(t, np.load(t) * 1.25)

    def replace_one_frame(targets: list[Path]) -> None:  # not one of the 4 files the earlier digest read
        t = targets[len(targets) // 3 + 1]
        np.save(t, np.load(t) + 0.5)

    def edit_a_patch(targets: list[Path]) -> None:  # 32x32 pixels of one depth map, between its sampled chunks
        t = targets[len(targets) // 3 + 2]
        d = np.load(t)
        d[d.shape[0] // 4 : d.shape[0] // 4 + 32, 100:132] += 0.5
        np.save(t, d)

    def replace_one_image(rgb: list[Path]) -> None:  # another colour image (a re-synchronised frame)
        image = cv2.imread(str(rgb[len(rgb) // 3 + 1]))
        cv2.imwrite(str(rgb[len(rgb) // 3 + 1]), cv2.GaussianBlur(image, (3, 3), 0))

    out = {}
    for name, kind, edit in (("every depth map rescaled", "target", rescale_all),
                             ("one depth map replaced", "target", replace_one_frame),
                             ("one colour image replaced", "rgb", replace_one_image),
                             ("a 32x32 patch of one depth map", "target", edit_a_patch)):  # fmt: skip
        copy = folder.parent / f"{folder.name}_edit"
        shutil.copytree(folder, copy)
        before = {k: fn(SequenceReader(copy).files) for k, fn in DIGESTS.items()}
        edit(sorted((copy / kind).glob("*.*")))
        out[name] = {k: fn(SequenceReader(copy).files) != before[k] for k, fn in DIGESTS.items()}
        shutil.rmtree(copy)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=120, help="frames of the 480x640 recording")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:  # a real disk, not a tmpfs
        for name, frames, size, count in (("recording 480x640", args.frames, (480, 640), 1),
                                          ("test fixture 32x48", 6, (32, 48), 3)):  # fmt: skip
            paths = [f for i in range(count) for f in recording(Path(tmp) / name / f"seq{i}", frames, *size, seed=i)]
            mib = sum(p.stat().st_size for p in paths) / 2**20
            n = frames * count
            row: dict[str, Any] = {"frames": n, "files": len(paths), "MiB": round(mib, 1)}
            for key, fn in DIGESTS.items():
                for cold in (False, True):
                    s = seconds(fn, paths, cold)
                    row[f"{key}, {'cold' if cold else 'cached'}: s per 1000 frames"] = round(s * 1000 / n, 3)
            report[name] = row
            print(name, json.dumps(row, indent=1))
        report["seen"] = seen(Path(tmp) / "recording 480x640" / "seq0")
        print("changes seen:", json.dumps(report["seen"], indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
