"""CPU cost of the live flicker measurement (`flicker_period`) against one window of the default model.

`vdepth_ros.consistency.FlickerMonitor` computes the flow warping error of one pair of consecutive
output frames every `flicker_period` seconds. This times one such pair at 640x480 (a textured
panning scene) and, in the same run, one window of the bundled model through ONNX Runtime, and
prints both and their ratio: the share of a second the measurement takes is pair cost / period.

    .venv/bin/python benchmarks/flicker_cost.py [--pairs 40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import cv2
import numpy as np

from vdepth_ros.consistency import FlickerMonitor
from vdepth_ros.paths import default_model_dir
from vdepth_ros.runtime import create_engine

W, H = 640, 480


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=40)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    scene = cv2.resize(rng.integers(0, 256, (60, 100, 3), dtype=np.uint8), (W + 4 * args.pairs, H))
    depth = np.tile(np.linspace(1.0, 3.0, W + 4 * args.pairs, dtype=np.float32), (H, 1))
    mon = FlickerMonitor(period=1e-9)
    pair_ms = []
    for t in range(args.pairs + 1):
        mon.add_image(t, scene[:, 4 * t : 4 * t + W])
        t0 = time.process_time()
        err = mon.add_depth(t, t, depth[:, 4 * t : 4 * t + W], now=float(t))
        if err is not None:
            pair_ms.append(1000 * (time.process_time() - t0))
    engine = create_engine(default_model_dir(), backend="onnxruntime")
    spec = engine.input_spec
    clip = rng.integers(0, 256, (spec.frames, spec.height, spec.width, 3), dtype=np.uint8)
    engine.infer(clip)
    window_ms = []
    for _ in range(10):
        t0 = time.process_time()
        engine.infer(clip)
        window_ms.append(1000 * (time.process_time() - t0))
    pair, window = statistics.median(pair_ms), statistics.median(window_ms)
    print(f"flicker pair at {W}x{H}: {pair:.1f} ms CPU (median of {len(pair_ms)})")
    print(f"default model window {spec.frames}x{spec.height}x{spec.width}: {window:.1f} ms CPU (median of 10)")
    print(f"ratio pair / window: {pair / window:.3f}; at flicker_period 1 s: {pair / 10:.2f} % of one core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
