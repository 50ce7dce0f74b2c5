"""Frames lost before they reached us, estimated from the gaps in the image stamps.

Best-effort images across processes are dropped by DDS without a trace (a 640x480 camera at 15 Hz
delivered 101 of 375 frames to a best-effort subscriber here), so the node counts what its input
stamps say is missing: the camera's frame period is estimated from the recent positive stamp steps
(the median of the shortest cluster of them, since under heavy loss most steps are multiples of
the period), and a step of `n` periods means `n - 1` frames never arrived. A step longer than `max_gap` is a
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

    def reset(self) -> None:
        """Forget the stamps (a new stream); the totals stay."""
        self._steps.clear()
        self._last = None

    @property
    def period_ns(self) -> int | None:
        """The camera's frame period (None until 4 steps were seen): the median of the steps within
        1.5x the shortest one, if they are at least a quarter of the steps (else a stray short step
        would halve it: then the median of all)."""
        if len(self._steps) < 4:
            return None
        steps = np.asarray(self._steps)
        short = steps[steps < 1.5 * steps.min()]
        return int(np.median(short if 4 * short.size >= steps.size else steps))

    def add(self, stamp_ns: int) -> int:
        """Record one received stamp; returns how many frames are missing before it."""
        self.received += 1
        last, self._last = self._last, int(stamp_ns)
        if last is None or stamp_ns == last:
            return 0
        if stamp_ns < last:  # clock or bag restarted: a new sequence
            self._steps.clear()
            return 0
        step = int(stamp_ns) - last
        period = self.period_ns
        missing = 0
        if self.max_gap_ns > 0 and step > self.max_gap_ns:
            return 0  # a pause: the stream restarts
        self._steps.append(step)
        if period is not None and step > 1.5 * period:
            missing = round(step / period) - 1
            self.lost += missing
        return missing

    @property
    def fraction(self) -> float:
        """Lost / (received + lost) so far."""
        total = self.received + self.lost
        return self.lost / total if total else 0.0
