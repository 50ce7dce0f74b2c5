"""A user's own camera: mounted upside down or on its side, or with non-square pixels.

The models learned upright scenes with square pixels. This runs the causal `DepthPipeline` (the
bundled model, as `vdepth-eval`: relative output, one affine per sequence) on the development set's
HoloLens clip and held-out renders (`alignment_dev.py`'s; 7-Scenes, the acceptance set, is not
offered) made into such cameras, and prints AbsRel / δ1 on the camera's own pixels for each case and
sequence, and their means, with and without the package's handling:

* `upright`: the clip as recorded (the reference);
* `upside_down`: every image turned 180 degrees (a camera mounted upside down), without and with
  `image_rotation: 180`;
* `on_its_side`: every image turned 90 degrees clockwise (a camera rolled onto its side: a portrait
  image), without and with `image_rotation: 270` (turning it back upright);
* `binned_2x1`: every image binned 2x horizontally (INTER_AREA to half the width; camera_info
  `fx` halved), given to the pipeline without its camera (the pixels taken as square: the model sees
  the scene squashed) and with it (the working resolution follows the scene's shape, `fy / fx`).

The torch backend is used (the exports have one fixed shape, so a working shape that follows the
camera only shows there; `--backend onnxruntime` for the export's numbers).

    .venv/bin/python benchmarks/camera_mounting.py --json out/camera_mounting.json   # ~10 min
    .venv/bin/python benchmarks/camera_mounting.py --frames 24 --renders 1           # quick
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from vdepth_ros.eval.datasets import load_dataset
from vdepth_ros.eval.metrics import evaluate_sequence
from vdepth_ros.eval.runs import _to_gt_grid, make_pipeline
from vdepth_ros.paths import default_model_dir, evaldata_dir
from vdepth_ros.pipeline import FrameInput
from vdepth_ros.stream.cloud import CameraModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alignment_dev import development_sequences  # the same development set

CASES = (
    ("upright", "as recorded", 0, 0, False),
    ("upside_down", "without image_rotation", 2, 0, False),
    ("upside_down", "image_rotation: 180", 2, 180, False),
    ("on_its_side", "without image_rotation", 1, 0, False),
    ("on_its_side", "image_rotation: 270", 1, 270, False),
    ("binned_2x1", "pixels taken as square (no camera)", 0, 0, True),
    ("binned_2x1", "with its camera (fx halved)", 0, 0, True),
)


def turned(a: np.ndarray, quarter_turns: int) -> np.ndarray:
    """`(T, H, W, ...)` frames turned `quarter_turns` x 90 degrees clockwise."""
    return np.ascontiguousarray(np.rot90(a, -quarter_turns, axes=(1, 2)))


def run_case(engine, seq, turns: int, rotation: int, binned: bool, with_camera: bool) -> dict:
    rgb, depth, K = turned(seq.rgb, turns), turned(seq.depth, turns), np.array(seq.rgb_intrinsics, np.float64)
    T, H, W = rgb.shape[:3]
    if turns % 2:
        K = np.array([[K[1, 1], 0, K[1, 2]], [0, K[0, 0], K[0, 2]], [0, 0, 1]])  # (the centre is turned too)
    if binned:
        W //= 2
        rgb = np.stack([cv2.resize(f, (W, H), interpolation=cv2.INTER_AREA) for f in rgb])
        K = K.copy()
        K[0, 0] /= 2
        K[0, 2] = (K[0, 2] + 0.5) / 2 - 0.5
    camera = CameraModel.from_matrix(K, W, H) if with_camera else None
    pipe = make_pipeline(engine, {"image_rotation": rotation})
    out = np.zeros(depth.shape, np.float32)
    seen = np.zeros(T, bool)
    step = round(1e9 / seq.fps)
    frames = []
    for i in range(T):
        frames += pipe.push(FrameInput(rgb=rgb[i], stamp_ns=i * step, camera=camera))
    frames += pipe.flush()
    for f in frames:
        if not seen[f.index]:
            out[f.index] = _to_gt_grid(f.disparity, depth.shape[1:3])
            seen[f.index] = True
    assert seen.all(), f"{seen.sum()} of {T} frames"
    m = evaluate_sequence(out, depth, seq.max_depth)
    return {"abs_rel": float(m.abs_rel), "delta1": float(m.delta1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=96, help="frames per sequence")
    ap.add_argument("--renders", type=int, default=4, help="held-out renders")
    ap.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if evaldata_dir() is None:
        print("no evaluation data (set VDEPTH_EVALDATA)", file=sys.stderr)
        return 2
    from vdepth_ros.blas import limit_blas_threads_for_tool
    from vdepth_ros.runtime import create_engine

    limit_blas_threads_for_tool()
    engine = create_engine(str(default_model_dir()), backend=args.backend)
    hololens = load_dataset("hololens", evaldata_dir(), frames=args.frames)
    seqs = hololens + development_sequences(args.renders, frames=args.frames, hololens=False)
    load0, t0 = os.getloadavg()[0], time.time()
    rows = []
    for case, way, turns, rotation, binned in CASES:
        with_camera = way.startswith("with its camera")
        per = [run_case(engine, seq, turns, rotation, binned, with_camera) for seq in seqs]
        for seq, r in zip(seqs, per, strict=True):
            rows.append({"case": case, "way": way, "sequence": seq.name, **r})
        mean = {k: float(np.mean([r[k] for r in per])) for k in ("abs_rel", "delta1")}
        detail = "  ".join(f"{seq.name} {r['abs_rel']:.4f}" for seq, r in zip(seqs, per, strict=True))
        print(f"{case:12s} {way:36s} AbsRel {mean['abs_rel']:.4f}  δ1 {mean['delta1']:.4f}   ({detail})", flush=True)
    took, load1 = time.time() - t0, os.getloadavg()[0]
    print(f"{len(seqs)} sequences, backend {args.backend}; {took:.0f} s, load {load0:.1f} -> {load1:.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"sequences": [seq.name for seq in seqs], "backend": args.backend, "seconds": took}
        args.json.write_text(json.dumps({"rows": rows, **meta, "load": [load0, load1]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
