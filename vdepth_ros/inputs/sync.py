"""Approximate-time pairing of images with camera_info (no message_filters in pip ROS).

Images drive the output: every image is emitted exactly once, paired with the camera_info whose
stamp is nearest within `slop`, or, when camera_info has stopped arriving (none newer than
`info_timeout` before the image), with the last one received (cached, like Isaac ROS's
`cache_camera_info`). An image waits for its camera_info only while that can still arrive (not
when a newer one already passed it, nor when camera_info comes slower than the images and the next
one is not due until after it); the wait is bounded by `queue_size` pending images and by
`info_timeout` of image time.

The class is plain Python over integer nanosecond stamps, so it is unit-tested without ROS and
is not thread-safe (the node calls it under its own lock).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import pairwise
from statistics import median_low
from typing import Any, Generic, Literal, TypeVar

I = TypeVar("I")  # image payload
C = TypeVar("C")  # camera_info payload

InfoSource = Literal["synced", "cached", "none"]


def stamp_to_ns(stamp: Any) -> int:
    """A message's `builtin_interfaces/Time` (rclpy's or rosbags', duck-typed on `sec`/`nanosec`) in
    integer nanoseconds: the stamps this package pairs and orders, for the node and the bag tools."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


#: An image stamped at most this much before the previous image is out of order, not a new timeline:
#: a driver whose clock steps back a little (a camera's hardware time mapped to ROS time, known to go
#: back by a few ms), or frames stamped in another order than they are sent. It is dropped and the
#: stream goes on; further back is a bag loop or a clock reset, which restarts it.
OUT_OF_ORDER_NS = 50_000_000

#: Why an image whose stamp repeats the previous image's, or lies up to `OUT_OF_ORDER_NS` before it,
#: is dropped (`ApproximateTimeSync.admit_image`).
REPEATED_STAMP = (
    "its stamp repeats the previous image's, or lies up to 0.05 s before it: each frame needs its own capture "
    "time, later than the one before (is the camera driver stamping its images? does its clock step back?)"
)


class InputRate:
    """`max_input_rate`: which images a stream takes, by their stamps, when the camera is faster than
    inference (a 60-120 Hz camera): every n-th image, evenly spaced, at most `max_rate_hz`. An image
    is taken once its stamp is `1 / max_rate_hz` after the last one taken, less a slack for stamp
    jitter: a quarter of the camera's frame step (the median of its last steps), at most a tenth of
    that period (a 60 Hz camera at 20 Hz gives every third image, at 30 every second, a 120 Hz one at
    10 every twelfth). Without it the input queue fills and drops its oldest frames: about
    `queue_size` frames of latency, and windows of consecutive frames with jumps between them. The
    live node and `vdepth-bag` take the same images (a stamp going back starts over); 0 takes every image.
    """

    def __init__(self, max_rate_hz: float) -> None:
        self.period_ns = round(1e9 / max_rate_hz) if max_rate_hz > 0 else 0
        self._last_ns: int | None = None  # the last image taken
        self._previous_ns: int | None = None  # the last image seen
        self._steps: deque[int] = deque(maxlen=9)  # the camera's last frame steps

    def take(self, stamp_ns: int) -> bool:
        """Whether the image stamped `stamp_ns` (admitted: `ApproximateTimeSync.admit_image`) is taken."""
        if not self.period_ns:
            return True
        stamp_ns = int(stamp_ns)
        if self._previous_ns is not None and stamp_ns > self._previous_ns:
            self._steps.append(stamp_ns - self._previous_ns)
        self._previous_ns = stamp_ns
        if self._last_ns is not None and 0 <= stamp_ns - self._last_ns < self.period_ns - self._slack_ns():
            return False
        self._last_ns = stamp_ns
        return True

    def _slack_ns(self) -> int:
        step = median_low(self._steps) if self._steps else 0
        return min(self.period_ns // 10, step // 4)

    def reset(self) -> None:
        """A new stream: its first image is taken."""
        self._last_ns = self._previous_ns = None
        self._steps.clear()


@dataclass
class Pair(Generic[I, C]):
    """One image with the camera_info chosen for it."""

    stamp_ns: int
    image: I
    info: C | None
    source: InfoSource


class ApproximateTimeSync(Generic[I, C]):
    """Pairs each image with the nearest camera_info.

    Args:
        slop_ns: largest stamp difference accepted as "the same time".
        queue_size: images held while waiting for their camera_info (oldest emitted first).
        info_timeout_ns: after this much image time without a matching camera_info, the last
            one is reused (cached) and images are emitted without waiting.
    """

    def __init__(self, slop_ns: int, queue_size: int = 10, info_timeout_ns: int = 1_000_000_000) -> None:
        if slop_ns < 0 or queue_size < 1 or info_timeout_ns < 0:
            raise ValueError(f"bad sync settings slop={slop_ns} queue_size={queue_size} timeout={info_timeout_ns}")
        self.slop_ns = int(slop_ns)
        self.queue_size = int(queue_size)
        self.info_timeout_ns = int(info_timeout_ns)
        self._infos: deque[tuple[int, C]] = deque(maxlen=queue_size)
        self._pending: deque[tuple[int, I]] = deque()
        self._last_info: C | None = None
        self._last_info_stamp: int | None = None
        self._first_image_stamp: int | None = None
        self.counts = {"synced": 0, "cached": 0, "none": 0}

    # -- inputs ------------------------------------------------------------------------------
    def add_info(self, stamp_ns: int, info: C) -> list[Pair[I, C]]:
        """Add a camera_info; returns the images it completes."""
        self._infos.append((int(stamp_ns), info))
        self._last_info, self._last_info_stamp = info, int(stamp_ns)
        out: list[Pair[I, C]] = []
        while self._pending:
            stamp, image = self._pending[0]
            match = self._nearest(stamp)
            if match is not None:
                out.append(self._emit(stamp, image, match, "synced"))
            elif stamp < int(stamp_ns) - self.slop_ns:  # infos only move forward: it will never match
                out.append(self._emit_fallback(stamp, image))
            else:
                break
            self._pending.popleft()
        return out

    def admit_image(self, stamp_ns: int, last_ns: int | None) -> bool:
        """The intake rules for an image stamped `stamp_ns` after the last admitted one, stamped
        `last_ns` (None: the first), shared by the live node and `vdepth-bag` so both take the same
        frames: a stamp going back further than `OUT_OF_ORDER_NS` (a bag loop, a clock reset) forgets
        the camera_infos and images waiting to pair, whose stamps would mis-pair; a repeated stamp, or
        one out of order by less, is not admitted (False, `REPEATED_STAMP`): restarting the stream for
        a driver's clock stepping back a millisecond lost its temporal consistency each time."""
        if last_ns is not None and stamp_ns < last_ns - OUT_OF_ORDER_NS:
            self.clear()
            return True
        return last_ns is None or stamp_ns > last_ns

    def add_image(self, stamp_ns: int, image: I) -> list[Pair[I, C]]:
        """Add an image; returns the images ready to process (this one and/or older ones), in order."""
        stamp_ns = int(stamp_ns)
        if self._first_image_stamp is None:
            self._first_image_stamp = stamp_ns
        self._pending.append((stamp_ns, image))
        out: list[Pair[I, C]] = []
        while self._pending:
            stamp, image_i = self._pending[0]
            match = self._nearest(stamp)
            if match is not None:
                out.append(self._emit(stamp, image_i, match, "synced"))
            elif self._gave_up(stamp, stamp_ns) or len(self._pending) > self.queue_size:
                out.append(self._emit_fallback(stamp, image_i))
            else:
                break
            self._pending.popleft()
        return out

    def flush(self) -> list[Pair[I, C]]:
        """End of the input: every image still waiting for a camera_info gets the cached one (or none)."""
        out = [self._emit_fallback(stamp, image) for stamp, image in self._pending]
        self._pending.clear()
        return out

    def clear(self) -> None:
        """Forget buffered camera_infos and pending images (time jumped backwards). Keeps the cache."""
        self._infos.clear()
        self._pending.clear()
        self._first_image_stamp = None
        if self._last_info_stamp is not None:
            self._last_info_stamp = None  # stamps restart; keep the cached message itself

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def last_info(self) -> C | None:
        return self._last_info

    # -- helpers -----------------------------------------------------------------------------
    def _nearest(self, stamp: int) -> C | None:
        best: tuple[int, C] | None = None
        for s, info in self._infos:
            d = abs(s - stamp)
            if d <= self.slop_ns and (best is None or d < best[0]):
                best = (d, info)
        return None if best is None else best[1]

    def _gave_up(self, stamp: int, newest_image: int) -> bool:
        """True when waiting longer for this image's camera_info is pointless."""
        if self._last_info_stamp is not None and self._last_info_stamp > stamp + self.slop_ns:
            return True  # newer infos already arrived and none matched
        if self._last_info_stamp is not None and newest_image - self._last_info_stamp > self.info_timeout_ns:
            return True  # camera_info stopped arriving: use the cache immediately
        period = self._info_period()
        if (
            period is not None
            and self._last_info_stamp is not None
            and stamp + self.slop_ns < self._last_info_stamp + period
        ):
            return True  # camera_info slower than the images: the next one is due after this image's slop
        first = newest_image if self._first_image_stamp is None else self._first_image_stamp
        if self._last_info_stamp is None and newest_image - first > self.info_timeout_ns:
            return True  # no camera_info at all so far: do not delay every image
        return newest_image - stamp > self.info_timeout_ns

    def _info_period(self) -> int | None:
        """The shortest interval between the buffered camera_infos' stamps (None before two): a
        camera_info slower than the images (a driver or throttle at 1 Hz) is not due again sooner,
        so an image between two of them is not held waiting for one (up to `queue_size` images of
        latency each), and goes out at once with the last one."""
        stamps = [s for s, _ in self._infos]
        gaps = [b - a for a, b in pairwise(stamps) if b > a]
        return min(gaps) if gaps else None

    def _emit_fallback(self, stamp: int, image: I) -> Pair[I, C]:
        if self._last_info is None:
            return self._emit(stamp, image, None, "none")
        return self._emit(stamp, image, self._last_info, "cached")

    def _emit(self, stamp: int, image: I, info: C | None, source: InfoSource) -> Pair[I, C]:
        self.counts[source] += 1
        return Pair(stamp, image, info, source)
