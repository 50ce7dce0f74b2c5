"""When a live stream must restart: time jumps back, long gaps, new intrinsics, new resolution.

ROS-free (plain stamps and tuples), so `vdepth-bag`'s causal mode can restart exactly where the
live node does. A gap is measured between *input* stamps: the node passes the stamp of the image it
received before this one, so frames it dropped under overload (oldest first) never make a gap.
The pipeline restarts on a resolution change by itself; the reason is still
reported so callers can log it.
"""

from __future__ import annotations

from collections import Counter


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
