"""Frames lost before they reached us, estimated from the gaps in the image stamps.

Best-effort images across processes are dropped by DDS without a trace (a 640x480 camera at 15 Hz
delivered 101 of 375 frames to a best-effort subscriber here), so the node counts what its input
stamps say is missing: the camera's frame period is estimated from the recent positive stamp steps
(under heavy loss few steps are one period long, but all are multiples of it), and a step of `n`
periods means `n - 1` frames never arrived. A step longer than `max_gap` is a
pause (the stream restarts), not loss; a stamp going backwards restarts the estimate.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class InputLossMeter:
    """Counts frames missing between received image stamps.

    Args:
        max_gap_ns: steps longer than this are pauses, not loss (the node's `max_gap`; 0: none).
        history: stamp steps the period is estimated from.
    """

    def __init__(self, max_gap_ns: int = 1_000_000_000, history: int = 31) -> None:
        self.max_gap_ns = int(max_gap_ns)
        self._steps: deque[int] = deque(maxlen=history)
        self._last: int | None = None
        self.received = 0
        self.lost = 0
        self.first: int | None = None  # stamps of the first and last image of the current sequence
        self._fresh = True

    def reset(self) -> None:
        """Forget the stamps (a new stream); the totals (and the last span, for a summary) stay."""
        self._steps.clear()
        self._fresh = True

    @property
    def last(self) -> int | None:
        return self._last

    @property
    def period_ns(self) -> int | None:
        """The camera's frame period (None until 12 steps were seen: fewer can all be multiples of a
        longer one by chance).

        Under heavy loss few steps are one period long, but all are whole multiples of it: the
        period is the largest `base / m` (m = 1..12) that nine in ten steps up to 6 of it are
        multiples of (within a fifth of it), `base` being the shortest step that is not a stray
        (shorter than 0.6x the median: a jittered or duplicated frame); then refined as the median
        of step / multiple.
        """
        if len(self._steps) < 12:
            return None
        steps = np.asarray(self._steps, dtype=np.float64)
        base = steps[steps >= 0.6 * np.median(steps)].min()
        for m in range(1, 13):
            multiples = steps / (base / m)
            short = multiples < 6.5  # long steps would multiply the jitter of `base`: judged by the short ones
            near = short & (np.round(multiples) >= 1) & (np.abs(multiples - np.round(multiples)) < 0.2)
            if short.sum() >= 4 and near.sum() >= 0.9 * short.sum():
                return int(np.median(steps[near] / np.round(multiples[near])))
        return int(np.median(steps))

    def add(self, stamp_ns: int) -> int:
        """Record one received stamp; returns how many frames are missing before it."""
        self.received += 1
        last, self._last = self._last, int(stamp_ns)
        if self._fresh or last is None or stamp_ns < last:  # the first image, or the clock or bag restarted
            self._steps.clear()
            self.first, self._fresh = int(stamp_ns), False
            return 0
        if stamp_ns == last:
            return 0
        step = int(stamp_ns) - last
        if self.max_gap_ns > 0 and step > self.max_gap_ns:
            return 0  # a pause: the stream restarts
        known = self.period_ns is not None
        self._steps.append(step)
        period = self.period_ns
        if period is None:
            return 0
        # once the period is first known, the steps seen before it count too
        missing = sum(self._missing(s, period) for s in (self._steps if not known else [step]))
        self.lost += missing
        return missing

    @staticmethod
    def _missing(step: int, period: int) -> int:
        return round(step / period) - 1 if step > 1.5 * period else 0

    @property
    def fraction(self) -> float:
        """Lost / (received + lost) so far."""
        total = self.received + self.lost
        return self.lost / total if total else 0.0
