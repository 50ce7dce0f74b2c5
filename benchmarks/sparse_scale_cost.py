"""CPU cost of one window's metric scale fit (`SparseScale.update`), as it is against the fit it replaced.

`scale_source: sparse` refits the metric scale on every window's samples. Its fit now starts with a robust fit
in log residuals (`FitOptions.residual="log"`) that rejects a depth sensor's wild samples before the usual fit.
This times, in the same run and interleaved, the fit as it is and with `residual="absolute"` (the fit before) on
the windows of `test/test_stream_scale.py` (4 frames of 224x160, a dense depth camera's samples, 0 % and 40 %
wild), and prints min / median / max [ms] of each, the median /depth over the truth of each, and the load average
(other processes on the machine slow both).

    .venv/bin/python benchmarks/sparse_scale_cost.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from vdepth_ros.stream.scale import SparseScale

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
from test_stream_scale import depth_over_truth, window  # (the scene the unit test checks the fit on)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    for wild in (0.0, 0.4):
        disparity, sparse, _ = window(0, wild, np.inf, np.random.default_rng(1))
        now = SparseScale(20)
        before = SparseScale(20, replace(now.options, residual="absolute"))
        times: dict[str, list[float]] = {"now": [], "before": []}
        for _ in range(args.repeats):
            for name, source in (("now", now), ("before", before)):
                start = time.perf_counter()
                source.update(disparity, sparse)
                times[name].append(1e3 * (time.perf_counter() - start))
        ratio_now = depth_over_truth(wild)[0]
        for name, ms in times.items():
            print(
                f"wild {wild:.0%} {name:6s}: {min(ms):6.1f} / {statistics.median(ms):6.1f} / {max(ms):6.1f} ms "
                f"(min / median / max of {args.repeats})"
            )
        print(f"wild {wild:.0%}: /depth over the truth now {ratio_now:.3f}")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
