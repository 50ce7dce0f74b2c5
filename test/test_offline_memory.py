"""vdepth-bag streams: peak RSS does not grow with a 10x longer bag (fresh process per run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vdepth_ros.offline.synth import synthetic_frames, write_image_bag

SHORT, LONG = 40, 400
# 320x240 frames: a leak of one decoded frame each would still add ~83 MB over 360 frames, ten times
# the bound below; at 640x480 the two output bags took 3 GB of a CI machine's disk.
HEIGHT, WIDTH = 240, 320


def _peak_rss_mb(repo: Path, bag: Path, out: Path, mode: str) -> dict[str, float]:
    cmd = [
        sys.executable,
        str(repo / "benchmarks" / "bag_throughput.py"),
        "--child",
        str(bag),
        str(out),
        mode,
        "--engine",
        "stand-in",
    ]
    res = subprocess.run(
        cmd, capture_output=True, text=True, check=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["frames_out"] == report["frames"]
    return {k: float(report[k]) for k in ("peak_rss_mb", "peak_anon_mb", "peak_file_mb")}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["causal", "offline"])
def test_peak_rss_independent_of_bag_length(tmp_path: Path, repo_root: Path, mode: str) -> None:
    peaks = {}
    for n in (SHORT, LONG):
        bag = tmp_path / f"bag{n}"
        write_image_bag(bag, synthetic_frames(n, HEIGHT, WIDTH), encoding="jpeg")
        peaks[n] = _peak_rss_mb(repo_root, bag, tmp_path / f"out{n}", mode)
    # Neither the heap nor total RSS may grow with the bag, in either mode (offline spill files are
    # read back with pread, so no file-backed mapping accumulates either).
    assert peaks[LONG]["peak_anon_mb"] - peaks[SHORT]["peak_anon_mb"] < 8.0, peaks
    assert peaks[LONG]["peak_rss_mb"] - peaks[SHORT]["peak_rss_mb"] < 10.0, peaks
