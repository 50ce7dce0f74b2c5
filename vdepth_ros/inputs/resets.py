"""When a live stream must restart (time jumps back, long gaps, new intrinsics, new resolution) and
when it has paused (`PauseRule`).

ROS-free (plain stamps and tuples), so `vdepth-bag`'s causal mode can restart exactly where the
live node does. A gap is measured between *input* stamps: the node passes the stamp of the image it
received before this one, so frames it dropped under overload (oldest first) never make a gap.
The pipeline restarts on a resolution change by itself; the reason is still
reported so callers can log it.
"""

from __future__ import annotations

from collections import Counter, deque

#: `pause_flush: 0` (auto): a stream has paused after this many of its frame periods without a frame
#: (the mean time between its last frames, on the clock they arrive by), at least `PAUSE_MIN_S`
#: (delivery across processes jitters by tens of ms), at most `max_gap`; `PAUSE_UNKNOWN_S` until
#: `PAUSE_MIN_GAPS` steps were seen.
PAUSE_PERIODS = 4
PAUSE_MIN_S = 0.2
PAUSE_UNKNOWN_S = 0.5
PAUSE_MIN_GAPS = 5


class StreamResets:
    """Remembers the last frame and names the reason the next one must start a new stream.

    Args:
        max_gap_ns: a larger gap between consecutive stamps restarts the stream; 0 disables it.
    """

    def __init__(self, max_gap_ns: int) -> None:
        self.max_gap_ns = int(max_gap_ns)
        self.size: tuple[int, int] | None = None
        self.stamp: int | None = None
        self.info: tuple | None = None
        self.counts: Counter[str] = Counter()

    def update(
        self, size: tuple[int, int], stamp: int, info: tuple | None, previous_input: int | None = None
    ) -> str | None:
        """The reset reason for a new frame, or None. State always moves to the new frame.

        Args:
            size: `(H, W)` of the input image.
            stamp: its stamp in nanoseconds.
            info: `vdepth_ros.encodings.info_signature` of its camera_info, or None.
            previous_input: stamp of the input received just before this frame (processed or
                not); None: the previous frame given here.

        Returns:
            "<kind>: <detail>" with kind one of "resolution", "time jump", "gap", "camera_info".
        """
        reason = None
        if self.stamp is not None and self.size is not None:
            if size != self.size:
                reason = f"resolution: {self.size[1]}x{self.size[0]} -> {size[1]}x{size[0]}"
            elif stamp < self.stamp:
                reason = f"time jump: stamp went back {(self.stamp - stamp) / 1e9:.3f} s (bag loop?)"
            elif self.max_gap_ns > 0 and stamp - self._gap_start(previous_input) > self.max_gap_ns:
                reason = f"gap: {(stamp - self._gap_start(previous_input)) / 1e9:.3f} s without input"
            elif info is not None and self.info is not None and info != self.info:
                reason = "camera_info: intrinsics or size changed"
        self.size, self.stamp = size, stamp
        if info is not None:
            self.info = info
        if reason:
            self.counts[reason.split(":")[0]] += 1
        return reason

    def _gap_start(self, previous_input: int | None) -> int:
        """Where the gap before this frame starts: the last input received, at the earliest the
        last frame given here."""
        assert self.stamp is not None
        return self.stamp if previous_input is None else max(self.stamp, int(previous_input))


class PauseRule:
    """When a stream has paused, so the frames held for its next window should be run in a window
    now (`DepthPipeline.early_window`): after `pause_after_s` without a frame. The live node feeds it
    the images' arrival times on its clock (a bag played at half speed arrives at half the rate its
    stamps say), `vdepth-bag` the stamps, so a causal bag run makes the windows the live node made.

    Args:
        pause_flush_s: the node's `pause_flush`: seconds, or 0 for auto (`PAUSE_PERIODS` frame periods).
        max_gap_s: the node's `max_gap` (0: none): caps the auto value (a longer pause restarts the
            stream anyway), and longer steps are pauses, not periods.
    """

    def __init__(self, pause_flush_s: float, max_gap_s: float) -> None:
        self.pause_flush_s, self.max_gap_s = float(pause_flush_s), float(max_gap_s)
        self.last_ns: int | None = None
        self._steps: deque[int] = deque(maxlen=30)

    def note(self, t_ns: int) -> None:
        """A frame at `t_ns`."""
        last, self.last_ns = self.last_ns, int(t_ns)
        step = self.last_ns - last if last is not None else -1
        if step >= 0 and (self.max_gap_s <= 0 or step <= self.max_gap_s * 1e9):  # a pause is no period
            self._steps.append(step)

    @property
    def period_ns(self) -> float | None:
        """The mean step between the last 30 frames (pauses left out); None until `PAUSE_MIN_GAPS`."""
        steps = tuple(self._steps)  # one copy: the live node notes arrivals in another thread
        return sum(steps) / len(steps) if len(steps) >= PAUSE_MIN_GAPS else None

    def pause_after_s(self) -> float:
        """Seconds without a frame after which the stream counts as paused."""
        if self.pause_flush_s > 0:
            return self.pause_flush_s
        period = self.period_ns
        auto = max(PAUSE_PERIODS * period / 1e9, PAUSE_MIN_S) if period else PAUSE_UNKNOWN_S
        return min(auto, self.max_gap_s) if self.max_gap_s > 0 else auto

    def paused_for(self, now_ns: int) -> float:
        """Seconds since the last frame (0 before the first)."""
        return 0.0 if self.last_ns is None else (int(now_ns) - self.last_ns) / 1e9

    def paused_before(self, t_ns: int) -> bool:
        """Whether a frame at `t_ns` comes after a pause (then call `note(t_ns)`)."""
        return self.last_ns is not None and self.paused_for(t_ns) >= self.pause_after_s()
