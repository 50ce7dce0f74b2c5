"""Rendered clips on disk: the training sequence format (`write_synthetic_dataset`) and the demo's
sample video."""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from vdepth_training.data.synthetic.renderer import SyntheticClip, render_clip

if TYPE_CHECKING:
    from vdepth_training.data import sequence

log = logging.getLogger("vdepth_training")


def to_sequence(clip: SyntheticClip, style: str | None = None) -> sequence.Sequence:
    """The clip as a training `Sequence` (metric depth target, sky invalid, K and poses per frame;
    `style`, the renderer's, recorded in its `extra`)."""
    from vdepth_training.data.sequence import Sequence

    t = clip.rgb.shape[0]
    return Sequence(
        rgb=clip.rgb,
        target=clip.depth,
        valid=clip.valid,
        target_kind="depth",
        intrinsics=np.repeat(clip.intrinsics[None], t, axis=0),
        poses=clip.poses,
        metric=True,
        name=f"synthetic/{clip.kind}/{clip.seed:06d}",
        source="synthetic",
        extra={"render": {"style": style}} if style is not None else {},
    )


def _not_a_sequence(path: Path) -> str | None:
    from vdepth_training.data.sequence import META_NAME

    return None if (path / META_NAME).is_file() else f"not a rendered clip (no {META_NAME})"


def write_synthetic_dataset(
    root: str | Path,
    seeds: Sequence[int],
    frames: int = 24,
    height: int = 168,
    width: int = 224,
    skip_existing: bool = True,
    style: str = "basic",
) -> list[Path]:
    """Render `seeds` into `root/<seed>/` in the training sequence format; returns the folders.

    Existing complete folders are kept (`skip_existing`), so an interrupted run resumes.
    """
    from vdepth_training.data.sequence import META_NAME, write_sequence

    from vdepth_ros.offline.atomic import check_output_path

    if skip_existing:
        check_rendered_with(Path(root), seeds, frames, height, width, style)
    out = []
    for seed in seeds:
        d = Path(root) / f"{int(seed):06d}"
        if not (skip_existing and (d / META_NAME).is_file()):
            # a rendered clip is replaced, never a folder of the user's that has its name (--out ~/data)
            check_output_path(d, overwrite=True, replaceable=_not_a_sequence)
            tmp = d.with_name(f"{d.name}.{os.getpid()}.tmp")  # several processes may render into root
            if tmp.exists():
                shutil.rmtree(tmp)
            write_sequence(tmp, to_sequence(render_clip(int(seed), frames, height, width, style=style), style))
            if d.exists():
                shutil.rmtree(d)
            tmp.rename(d)
        out.append(d)
    return out


def render_dataset(
    root: str | Path,
    seeds: Sequence[int],
    frames: int,
    height: int,
    width: int,
    style: str = "basic",
    *,
    rank: int = 0,
    world: int = 1,
    workers: int = 1,
) -> list[Path]:
    """Render the seeds missing from `root`, shared between `world` processes and `workers` local
    processes each; returns every seed's folder in seed order.

    Resumable (complete folders are kept; a clip is renamed into place when done) and parallel:
    process `rank` renders the missing ones of every `world`-th seed, so ranks of a training job (or several
    nodes on a shared folder) split the work. Before the bulk, the first clip is timed and the
    expected wall time logged (a warning above ten minutes); the caller waits for all ranks.
    """
    from vdepth_training.data.sequence import META_NAME

    root = Path(root)
    check_rendered_with(root, seeds, frames, height, width, style)
    missing = [int(s) for s in seeds if not (root / f"{int(s):06d}" / META_NAME).is_file()]
    mine = [int(s) for s in list(seeds)[rank::world] if int(s) in set(missing)]  # by position: no race
    if mine:
        start = time.perf_counter()
        write_synthetic_dataset(root, mine[:1], frames, height, width, style=style)
        per_clip = time.perf_counter() - start
        eta = per_clip * math.ceil(len(missing) / (world * max(1, workers)))
        if rank == 0:
            level = logging.WARNING if eta > 600 else logging.INFO
            log.log(level, "rendering %d missing synthetic clips (%d frames %dx%d, style %s) into %s on %d process(es) "
                    "x %d worker(s): %.1f s per clip measured, about %.0f min", len(missing), frames, height, width,
                    style, root, world, workers, per_clip, eta / 60)  # fmt: skip
        render = partial(write_synthetic_dataset, root, frames=frames, height=height, width=width, style=style)
        if workers > 1 and len(mine) > 2:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                list(pool.map(render, [[s] for s in mine[1:]]))
        else:
            render(mine[1:])
    return [root / f"{int(s):06d}" for s in seeds]


def check_rendered_with(root: Path, seeds: Sequence[int], frames: int, height: int, width: int, style: str) -> None:
    """Raise ConfigError when a complete clip of `seeds` in `root` was rendered with other settings
    (frames, size, or a recorded style): it would be kept, and a run would train on a mix of old and
    new clips without a word (a changed `render_size`, `frames` or `style` over the same data root)."""
    import json

    from vdepth_training.data.sequence import META_NAME

    from vdepth_ros.errors import ConfigError

    want = {"frames": int(frames), "size": f"{int(height)}x{int(width)}", "style": style}
    other = []
    for seed in seeds:
        meta_path = root / f"{int(seed):06d}" / META_NAME
        if not meta_path.is_file():
            continue
        try:
            meta = json.loads(meta_path.read_text())
            have = {"frames": int(meta["num_frames"]), "size": f"{int(meta['height'])}x{int(meta['width'])}",
                    "style": ((meta.get("extra") or {}).get("render") or {}).get("style", style)}  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not readable here: the reader names it
        if have != want:
            other.append((meta_path.parent.name, have))
    if other:
        name, have = other[0]
        show = lambda d: f"{d['frames']} frames {d['size']}, style {d['style']}"  # noqa: E731
        raise ConfigError(
            f"{root} holds {len(other)} clip(s) rendered with other settings ({name}: {show(have)}; this config "
            f"renders {show(want)}): they would be kept and mixed with new ones; set data.root (or --data) to "
            "another folder, or move those clips away"
        )


def write_sample_video(
    path: str | Path, seed: int = 90004, frames: int = 90, height: int = 240, width: int = 320, fps: float = 30.0
) -> Path:
    """The demo's bundled clip: one rendered room as an MP4 plus `<name>.json` (the demo's sidecar:
    fx, fy, cx, cy, width, height, near, far, fps) and `<name>_camera.yaml` (fx fy cx cy width height)."""
    import json

    import cv2

    from vdepth_ros.offline.atomic import AtomicOutput, check_output_path

    path = Path(path)
    sidecars = [path.with_suffix(".json"), path.with_name(path.stem + "_camera.yaml")]
    for p in (path, *sidecars):  # an earlier sample is replaced (the documented command), nothing else
        check_output_path(p, overwrite=True, replaceable=lambda _p: _not_a_sample(path))
    clip = render_clip(seed, frames, height, width, kind="room")
    K = clip.intrinsics
    cam = {
        "fx": float(K[0, 0]),
        "fy": float(K[1, 1]),
        "cx": float(K[0, 2]),
        "cy": float(K[1, 2]),
        "width": width,
        "height": height,
    }
    valid = clip.depth[clip.depth > 0]
    meta = {
        **cam,
        "near": round(float(np.percentile(valid, 1)), 2),
        "far": round(float(np.percentile(valid, 99)), 2),
        "fps": fps,
        "source": f"{SAMPLE_SOURCE}(seed={seed}, kind='room')",
    }
    with AtomicOutput(path, overwrite=True, companions=[p.name for p in sidecars],
                      replaceable=lambda _p: _not_a_sample(path)) as tmp:  # fmt: skip
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise RuntimeError(f"cannot open an mp4v writer for {path}")
        for img in clip.rgb:
            writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        writer.release()
        tmp.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
        tmp.with_name(tmp.stem + "_camera.yaml").write_text("".join(f"{k}: {v}\n" for k, v in cam.items()))
    return path


#: the `source` of a sample clip's sidecar json: how an earlier sample (replaceable) is recognised
SAMPLE_SOURCE = "vdepth_training.data.synthetic.render_clip"


def _not_a_sample(path: Path) -> str | None:
    """What is at `path` (or its sidecars) instead of a sample clip this tool wrote, or None."""
    import json

    try:
        ours = str(json.loads(path.with_suffix(".json").read_text())["source"]).startswith(SAMPLE_SOURCE)
    except (OSError, ValueError, KeyError, TypeError):
        ours = False
    return None if ours else f"not a sample clip this tool wrote (no {path.with_suffix('.json').name} from it)"
