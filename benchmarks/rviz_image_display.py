"""What RViz's Image display shows of the node's `depth` (32FC1, REP 118: NaN / +Inf / -Inf), per clip.

RViz's Image display (rviz_default_plugins' `ROSImageTexture`) with its defaults (Normalize Range on, Median window
5) stretches each image from its smallest to its largest value, `std::min`/`std::max` over every pixel: NaN never
wins, but one +Inf (beyond the far limit) or -Inf (nearer than `min_depth`) makes the range infinite and every pixel
black. This runs `vdepth-video --mode causal` (what the live node does) in range mode on each clip, keeps the depth
as `.npy`, and counts the frames with ±Inf, the frames the display shows all black with its defaults, and with the
settings the node advises (Normalize Range off, Min Value 0, Max Value the farthest finite depth rounded up).

    .venv/bin/python benchmarks/rviz_image_display.py [--json out/rviz_image_display.json]

Clips: the bundled sample clip (its own near/far) and DAVIS' rollercoaster (real video, the default near/far
0.3..10 m), both on the default model.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DAVIS = Path("/work/shared/evaldata/vda_example_videos/assets/example_videos/davis_rollercoaster.mp4")


def image_display(images: list[np.ndarray], normalize: bool = True, lo: float = 0.0, hi: float = 1.0) -> list:
    """What RViz's Image display shows of each 32FC1 image (`ROSImageTexture`), as uint8 grey. Normalize Range on
    (its default): each image's min and max by `std::min`/`std::max` over every pixel from FLT_MAX / FLT_MIN (NaN
    never wins, ±Inf do), each the median of the last 5 images' (Median window 5; `nth_element` at size / 2); then
    `(value - min) / (max - min)` clamped to 0..1 times 255, and all 0 unless `max - min > 0`; NaN (NaN pixels, and
    Inf / Inf) converts to 0 (x86's float to integer). Normalize Range off: Min Value `lo`, Max Value `hi`."""
    shown, mins, maxs = [], [], []
    for image in images:
        if normalize:
            values = image[~np.isnan(image)]
            mins.insert(0, float(values.min(initial=np.finfo(np.float32).max)))
            maxs.insert(0, float(values.max(initial=np.finfo(np.float32).tiny)))
            del mins[5:], maxs[5:]
            low, high = sorted(mins)[len(mins) // 2], sorted(maxs)[len(maxs) // 2]
        else:
            low, high = lo, hi
        span = high - low
        if not span > 0:
            shown.append(np.zeros(image.shape, np.uint8))
            continue
        with np.errstate(invalid="ignore"):
            value = np.clip((image.astype(np.float64) - low) / span, 0.0, 1.0) * 255
        shown.append(np.where(np.isnan(value), 0, value).astype(np.uint8))
    return shown


def advised_max(image: np.ndarray) -> float:
    """The Max Value the node advises for `image`: its farthest finite depth, rounded up to a whole metre."""
    finite = image[np.isfinite(image)]
    return float(math.ceil(finite.max())) if finite.size and finite.max() > 0 else 10.0


def count(images: list[np.ndarray]) -> dict[str, int]:
    """Frames; with ±Inf; shown all black by RViz's defaults; shown all black with the advised settings."""
    advised = advised_max(next((i for i in images if np.isinf(i).any()), images[0]))
    return {
        "frames": len(images),
        "with_inf": sum(bool(np.isinf(i).any()) for i in images),
        "black_by_default": sum(not s.any() for s in image_display(images)),
        "black_as_advised": sum(not s.any() for s in image_display(images, normalize=False, lo=0.0, hi=advised)),
        "advised_max_value_m": advised,
    }


def depth_of(clip: Path, near: float, far: float, folder: Path) -> list[np.ndarray]:
    """`vdepth-video --mode causal` in range mode (`near`..`far`) on `clip`: its depth images."""
    video = Path(sys.executable).parent / "vdepth-video"
    command = [str(video), str(clip), "-o", str(folder), "--mode", "causal", "--depth-range", str(near), str(far)]
    subprocess.run([*command, "--format", "npy", "--no-preview", "--no-progress"], check=True, capture_output=True)
    return [np.load(f) for f in sorted((folder / "depth").glob("*.npy"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the counts here")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from vdepth_ros.demo import find_sample

    sample = find_sample()
    meta = json.loads(sample.with_suffix(".json").read_text())
    clips = {"sample": (sample, meta["near"], meta["far"]), "davis_rollercoaster": (DAVIS, 0.3, 10.0)}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (clip, near, far) in clips.items():
            if not clip.exists():
                print(f"{name}: {clip} not found, skipped")
                continue
            results[name] = count(depth_of(clip, near, far, Path(tmp) / name)) | {"near": near, "far": far}
            print(name, results[name], flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
