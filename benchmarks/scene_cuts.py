"""Scene-cut detector on the development clips: false cuts inside clips, cuts found between clips.

Runs `vdepth_ros.stream.SceneCutDetector` (as the pipeline does, on frames resized to 224x160)
over every development clip with real images in `../shared/evaldata` (HoloLens, the DAVIS and Sora
demo videos, the DeepV2D NYU/ScanNet/KITTI clips and golf.mov; 7-Scenes is the acceptance set and
is not used): every flagged frame inside a clip is a false cut. Then, for every ordered pair of
different clips, the detector sees the last `--history` frames of the first clip followed by the
first frame of the second: that frame should be flagged.

Usage:
    .venv/bin/python benchmarks/scene_cuts.py [--threshold 0.5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from vdepth_ros.paths import evaldata_dir
from vdepth_ros.stream.cuts import SceneCutDetector

SIZE = (224, 160)  # the bundled model's working resolution (W, H)


def _video(path: Path, limit: int) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    out = []
    while len(out) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(cv2.resize(frame[..., ::-1], SIZE, interpolation=cv2.INTER_AREA))
    return out


def _images(paths: list[Path]) -> list[np.ndarray]:
    import cv2

    return [cv2.resize(cv2.imread(str(p))[..., ::-1], SIZE, interpolation=cv2.INTER_AREA) for p in paths]


def load_clips(root: Path, limit: int = 400) -> dict[str, list[np.ndarray]]:
    """The development clips with images, each as a list of `(160, 224, 3)` uint8 RGB frames."""
    hololens = root / "dvmvs_hololens_000/sample-data/hololens-dataset/000/images"
    clips = {"hololens": _images(sorted(hololens.glob("*")))}
    videos = root / "vda_example_videos/assets/example_videos"
    clips["davis"] = _video(videos / "davis_rollercoaster.mp4", limit)
    clips["sora"] = _video(videos / "Tokyo-Walk_rgb.mp4", limit)
    demos = root / "deepv2d_demo_clips/data/demos"
    clips["golf"] = _video(demos / "golf.mov", limit)
    for folder in sorted(p for p in demos.iterdir() if p.is_dir()):
        clips[folder.name] = _images(sorted(folder.glob("*.png")))
    return {k: v for k, v in clips.items() if v}


def evaluate(clips: dict[str, list[np.ndarray]], threshold: float, history: int) -> dict:
    """False cuts per clip and the detection of every join between two different clips."""
    false = {}
    for name, frames in clips.items():
        det = SceneCutDetector(threshold)
        false[name] = [k for k, f in enumerate(frames) if det.update(f)]
    joins = []
    for a, fa in clips.items():
        for b, fb in clips.items():
            if a == b:
                continue
            det = SceneCutDetector(threshold)
            for f in fa[-history:]:
                det.update(f)
            joins.append({"from": a, "to": b, "detected": det.update(fb[0]), "score": det.last_score})
    pairs = sum(max(len(f) - 1, 0) for f in clips.values())
    return {
        "threshold": threshold,
        "consecutive_pairs": pairs,
        "false_cuts": sum(len(v) for v in false.values()),
        "false_cut_frames": false,
        "joins": len(joins),
        "joins_detected": sum(j["detected"] for j in joins),
        "missed": [j for j in joins if not j["detected"]],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--history", type=int, default=30, help="frames of the first clip seen before a join")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    root = evaldata_dir()
    if root is None:
        print("evaldata not found: nothing to measure", file=sys.stderr)
        return 0
    res = evaluate(load_clips(root), args.threshold, args.history)
    pairs = res["consecutive_pairs"]
    print(f"threshold {res['threshold']}: false cuts {res['false_cuts']} in {pairs} consecutive pairs")
    print(f"joins between clips detected: {res['joins_detected']} / {res['joins']}")
    for j in res["missed"]:
        print(f"  missed {j['from']} -> {j['to']} (score {j['score']:.3f})")
    print(f"load average: {os.getloadavg()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res | {"loadavg": os.getloadavg()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
