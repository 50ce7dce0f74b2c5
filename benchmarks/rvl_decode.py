"""CPU cost of decoding one RVL compressedDepth frame (`vdepth_ros.encodings.rvl_decode`), old against new.

A depth camera streamed with compressed_depth_image_transport's `rvl` format is decoded on the node's worker,
every frame. This encodes noisy 640x480 depth frames with holes (5% or 40% speckle, and a 100x100 hole) and times,
in the same run, the decoder as it is and the decoder it replaced (its run walk and value unpacking in
Python, kept below as the baseline), interleaved, and prints min / median / max of each, their ratio and the
load average (other processes on the machine slow both).

    .venv/bin/python benchmarks/rvl_decode.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from vdepth_ros.encodings import rvl_decode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
from fakes import rvl_encode  # (the spec encoder the tests check the decoder with)


def old_rvl_decode(data: bytes, num_pixels: int) -> np.ndarray:
    """The decoder before vectorising (a value place at a time, then a Python step per run over all values)."""
    word_bytes = np.frombuffer(data, np.uint8, count=len(data) // 4 * 4).reshape(-1, 4)[:, ::-1]
    nibbles = np.stack([word_bytes >> 4, word_bytes & 0xF], axis=-1).ravel()
    ends = np.flatnonzero(nibbles < 8)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    values = (nibbles[starts] & 7).astype(np.int64)
    for place in range(1, min(int(lengths.max()), 21)):
        longer = np.flatnonzero(lengths > place)
        values[longer] |= (nibbles[starts[longer] + place] & 7).astype(np.int64) << (3 * place)
    listed, heads, i = [*values.tolist(), 0], [], 0
    while i < len(values):
        heads.append(i)
        i += 2 + listed[i + 1]
    head = np.array(heads, np.int64)
    padded = np.append(values, 0)
    zeros, nonzeros = padded[head], padded[np.minimum(head + 1, len(values))]
    ends = np.cumsum(zeros + nonzeros)
    last = int(np.searchsorted(ends, num_pixels))
    counts, ends = nonzeros[: last + 1], ends[: last + 1]

    def ranges(s: np.ndarray, n: np.ndarray) -> np.ndarray:
        return np.repeat(s - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))

    coded = values[ranges(head[: last + 1] + 2, counts)]
    out = np.zeros(num_pixels, np.uint16)
    out[ranges(ends - counts, counts)] = np.cumsum((coded >> 1) ^ -(coded & 1)) & 0xFFFF
    return out


def noisy_frame(height: int = 480, width: int = 640, holes: float = 0.05, seed: int = 0) -> np.ndarray:
    """A tilted plane in millimetres with sensor noise, speckle holes (a share `holes` of the pixels) and one
    large hole."""
    rng = np.random.default_rng(seed)
    plane = 1500 + 3 * np.arange(width) + 2 * np.arange(height)[:, None] + rng.normal(0, 8, (height, width))
    depth = np.clip(plane, 1, 65534).astype(np.uint16)
    depth[rng.random((height, width)) < holes] = 0
    depth[100:200, 300:400] = 0
    return depth


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args(argv)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} (before)")
    for holes in (0.05, 0.4):  # a depth camera's speckle; a stereo camera on low texture
        depth = noisy_frame(holes=holes)
        data = rvl_encode(depth)
        for decode in (rvl_decode, old_rvl_decode):
            np.testing.assert_array_equal(decode(data, depth.size), depth.ravel())
        times: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(args.repeats):  # interleaved: a burst of load slows both alike
            for name, decode in (("old", old_rvl_decode), ("new", rvl_decode)):
                t0 = time.perf_counter()
                decode(data, depth.size)
                times[name].append((time.perf_counter() - t0) * 1e3)
        runs = int(np.count_nonzero(np.diff((depth.ravel() == 0).astype(np.int8)) == 1)) + 1
        print(f"RVL 640x480, {holes:.0%} speckle holes ({runs} runs), {len(data)} bytes, {args.repeats} repeats:")
        for name, ms in times.items():
            print(f"  {name}: min {min(ms):.2f}  median {statistics.median(ms):.2f}  max {max(ms):.2f} ms")
        ratios = [o / n for o, n in zip(times["old"], times["new"], strict=True)]
        print(
            f"  old / new: {min(times['old']) / min(times['new']):.2f}x of the minima, "
            f"{statistics.median(times['old']) / statistics.median(times['new']):.2f}x of the medians "
            f"(pairwise: min {min(ratios):.2f} median {statistics.median(ratios):.2f} max {max(ratios):.2f})"
        )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} (after)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
