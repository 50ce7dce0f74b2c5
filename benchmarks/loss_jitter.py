"""How often the input-loss meter counts frames lost from a jittery driver that delivered every frame.

A driver on a loaded machine stamps each frame a random delay after its time (exponential, `--delay` periods on
average), 15 Hz, 40 frames a stream, every frame received: any count is a false "lost before the node"
(`vdepth_ros/inputs/loss.py`, `test_a_frame_late_by_most_of_a_period_is_not_loss`).

    .venv/bin/python benchmarks/loss_jitter.py                      # 300 streams per delay, ~10 s
    .venv/bin/python benchmarks/loss_jitter.py --streams 50 --delay 0.2
"""

from __future__ import annotations

import argparse

import numpy as np

from vdepth_ros.inputs.loss import InputLossMeter

PERIOD_NS = 66_666_667


def streams_counted_lost(delay: float, streams: int, frames: int = 40) -> int:
    """Of `streams` seeded streams with every frame received, how many the meter counts any frame lost in."""
    counted = 0
    for seed in range(streams):
        rng, meter, last = np.random.default_rng(seed), InputLossMeter(max_gap_ns=1_000_000_000), 0
        for k in range(frames):
            last = max(last + 1_000_000, int(k * PERIOD_NS + rng.exponential(delay * PERIOD_NS)))
            meter.add(last)
        meter.reset()
        counted += meter.lost > 0
    return counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--delay", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    args = parser.parse_args()
    for delay in args.delay:
        print(f"delay {delay:.2f} periods: {streams_counted_lost(delay, args.streams)} of {args.streams} counted lost")


if __name__ == "__main__":
    main()
