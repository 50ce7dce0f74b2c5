"""Which sparse depth message (or camera pose) belongs to an image: one rule for the node and the bag.

A depth sensor or an odometry source rarely shares the camera's clock ticks, and its message can
arrive before or after the image. The rule, the same live and offline:

* an image (stamp `t`, arrived at `a`) is **decided** once a sample stamped at or after `t` has
  arrived (a later one can only be further away), or `slop` after the image arrived, whichever is
  first (never before the image itself arrived);
* it then takes, among the samples that had **arrived by that moment**, the sparse depth nearest to
  `t` within `slop` (`nearest`), or the pose interpolated at `t` (`pose_at`, `triangulate.PoseBuffer`).

Arrival times, in nanoseconds, are the node's receive clock (`time.monotonic_ns()` in its
callbacks) or a bag's log times, so `vdepth-bag` replays what the node saw; and because a sample that arrived after the
decision is never used, a busy worker that takes the frame late gets the same answer as an idle one.
"""

from __future__ import annotations

import bisect
from typing import Any, Generic, TypeVar

import numpy as np

from vdepth_ros.triangulate import PoseBuffer

T = TypeVar("T")


class TimedSamples(Generic[T]):
    """Samples by stamp with their arrival times, and the images' share of them (module docstring).

    Args:
        slop_ns: largest stamp distance of a usable sample, and the longest an image waits for one
            (`sparse_depth_slop`).
        capacity: samples kept (the oldest stamps go first): depth messages are large, poses small.
    """

    def __init__(self, slop_ns: int, capacity: int = 32) -> None:
        self.slop_ns, self.capacity = int(slop_ns), int(capacity)
        self._stamps: list[int] = []
        self._arrivals: list[int] = []
        self._samples: list[T] = []

    def __len__(self) -> int:
        return len(self._stamps)

    def clear(self) -> None:
        self._stamps, self._arrivals, self._samples = [], [], []

    def add(self, stamp_ns: int, arrival: int, sample: T) -> None:
        """Store one sample (any stamp order; a repeated stamp replaces the earlier sample)."""
        i = bisect.bisect_left(self._stamps, int(stamp_ns))
        if i < len(self._stamps) and self._stamps[i] == stamp_ns:
            self._arrivals[i], self._samples[i] = int(arrival), sample
        else:
            self._stamps.insert(i, int(stamp_ns))
            self._arrivals.insert(i, int(arrival))
            self._samples.insert(i, sample)
        if len(self._stamps) > self.capacity:
            del self._stamps[0], self._arrivals[0], self._samples[0]

    def decided_at(self, stamp_ns: int, arrival: int, stretch: float = 1.0) -> int:
        """When the image (stamp, arrival) is decided: the first arrival of a sample stamped at or
        after it, or `slop` after the image arrived; never before the image itself. `stretch`: the
        arrival clock's seconds per second of stamps (`inputs.resets.ReplaySpeed`; a recording
        replayed at 0.25x arrives 4x slower, its samples too): the wait is `slop` of stamp time."""
        deadline = int(arrival) + round(self.slop_ns * stretch)
        i = bisect.bisect_left(self._stamps, int(stamp_ns))
        covering = min(self._arrivals[i:], default=deadline)
        return max(int(arrival), min(deadline, covering))

    def ready(self, stamp_ns: int, arrival: int, now: int) -> bool:
        """True when waiting longer cannot change this image's sample."""
        return now >= self.decided_at(stamp_ns, arrival)

    def _arrived(self, stamp_ns: int, arrival: int, stretch: float) -> list[int]:
        by = self.decided_at(stamp_ns, arrival, stretch)
        return [i for i, a in enumerate(self._arrivals) if a <= by]

    def nearest(self, stamp_ns: int, arrival: int, stretch: float = 1.0) -> T | None:
        """The sample nearest `stamp_ns` within `slop` among those arrived by the decision, or None
        (ties: the earlier arrival)."""
        best = min(
            (i for i in self._arrived(stamp_ns, arrival, stretch) if abs(self._stamps[i] - stamp_ns) <= self.slop_ns),
            key=lambda i: (abs(self._stamps[i] - stamp_ns), self._arrivals[i]),
            default=None,
        )
        return None if best is None else self._samples[best]

    def newest_stamp_ns(self) -> int | None:
        """The stamp of the newest sample kept, or None: how far the samples are from an image that
        found none (another clock)."""
        return self._stamps[-1] if self._stamps else None

    def pose_at(self, stamp_ns: int, arrival: int, stretch: float = 1.0) -> Any:
        """Camera poses only: the pose at `stamp_ns` from the poses arrived by the decision
        (interpolated between the two around it, else the nearest within `slop`), or None."""
        buffer = PoseBuffer(self.slop_ns, capacity=max(self.capacity, 2))
        reach = max(self.slop_ns, buffer.max_gap_ns)  # only poses this close can be used
        for i in self._arrived(stamp_ns, arrival, stretch):
            if abs(self._stamps[i] - stamp_ns) <= reach:
                buffer.add(self._stamps[i], self._samples[i])  # type: ignore[arg-type]
        pose: np.ndarray | None = buffer.at(int(stamp_ns))
        return pose
