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
from itertools import pairwise
from statistics import median_low

#: `pause_flush: 0` (auto): a stream has paused after this many of its frame periods without a frame
#: (the mean time between its last frames, on the clock they arrive by), at least `PAUSE_MIN_S`
#: (delivery across processes jitters by tens of ms), at most `max_gap`; `PAUSE_UNKNOWN_S` until
#: `PAUSE_MIN_GAPS` steps were seen.
PAUSE_PERIODS = 4
PAUSE_MIN_S = 0.2
PAUSE_UNKNOWN_S = 0.5
PAUSE_MIN_GAPS = 5
#: `PauseRule.stretch`: the replay's speed is measured over spans of this many frame steps.
STRETCH_SPAN = 5
#: After a stream's first frame alone (its speed unknown) a pause ends it after this many `max_gap`:
#: a slow-motion replay's first step is no pause, and a single image (`publish: final`) still comes out.
UNKNOWN_SPEED_GAPS = 5


#: A stamp step this much longer than the image's arrival after the one before, at least, is the clock stepping
#: (`clock_step_ns`), with at least `CLOCK_STEP_STEPS` of the images' usual arrival steps.
CLOCK_STEP_MIN_NS = 200_000_000
CLOCK_STEP_STEPS = 4


def clock_step_ns(stamp_step_ns: int, arrival_step_ns: int, usual_arrival_step_ns: int | None) -> int:
    """How far the stamps' clock stepped forward between two images, or 0: the stamps moved on by
    `stamp_step_ns` while the image arrived on time, `arrival_step_ns` after the one before (at most two
    usual steps apart, `usual_arrival_step_ns` on the steady clock), so the time between them did not pass:
    a camera driver's clock set by NTP (chrony's makestep, ntpdate) or a PTP re-lock mid-stream. A pause
    or lost frames take time to arrive (frames a camera drops are not captured sooner, and a replay's
    pause arrives as one too); before, such a step was "gap: 3.067 s without input" and the frames its
    span would hold were counted lost before the node."""
    if usual_arrival_step_ns is None or arrival_step_ns > 2 * usual_arrival_step_ns:
        return 0
    jump = int(stamp_step_ns) - int(arrival_step_ns)
    return jump if jump > max(CLOCK_STEP_MIN_NS, CLOCK_STEP_STEPS * usual_arrival_step_ns) else 0


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
        self,
        size: tuple[int, int],
        stamp: int,
        info: tuple | None,
        previous_input: int | None = None,
        clock_step: int = 0,
    ) -> str | None:
        """The reset reason for a new frame, or None. State always moves to the new frame.

        Args:
            size: `(H, W)` of the input image.
            stamp: its stamp in nanoseconds.
            info: `vdepth_ros.camera_info.info_signature` of its camera_info, or None.
            previous_input: stamp of the input received just before this frame (processed or
                not); None: the previous frame given here.
            clock_step: how far the stamps' clock stepped forward before this frame (`clock_step_ns`):
                a longer stamp step than `max_gap` is then that, not a gap without input.

        Returns:
            "<kind>: <detail>" with kind one of "resolution", "time jump", "clock step", "gap", "camera_info".
        """
        reason = None
        if self.stamp is not None and self.size is not None:
            if size != self.size:
                reason = f"resolution: {self.size[1]}x{self.size[0]} -> {size[1]}x{size[0]}"
            elif stamp < self.stamp:
                back = (self.stamp - stamp) / 1e9
                reason = f"time jump: stamp went back {back:.3f} s (a bag loop, or the driver's clock set back: NTP?)"
            elif self.max_gap_ns > 0 and stamp - self._gap_start(previous_input) > self.max_gap_ns:
                gap = (stamp - self._gap_start(previous_input)) / 1e9
                reason = (
                    f"clock step: the image stamps jumped {clock_step / 1e9:.3f} s forward while images kept arriving "
                    "(the camera driver's clock was set: NTP?)"
                    if clock_step
                    else f"gap: {gap:.3f} s without input"
                )
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


class ReplaySpeed:
    """How much slower than their stamps images arrive on some clock (`stretch`: that clock's
    seconds per second of stamps, at least 1): 4 for a recording replayed at 0.25x without its clock,
    1 for a live camera, a recording played with its clock, a bag read by `vdepth-bag`. The lower
    median over the last 30 frames of spans of `STRETCH_SPAN` steps, so a pause among them (a player
    paused, a driver stall) does not count and a clock ticking coarser than the frames (a /clock at
    10 Hz under 15 Hz images) averages out; a stamp or clock going back (a bag loop) starts a new
    timeline, keeping the speed measured before (a player keeps its rate)."""

    def __init__(self) -> None:
        self._timeline: deque[tuple[int, int]] = deque(maxlen=31)  # (t, stamp) of the last frames
        self._before: float | None = None  # the stretch measured before the stamps went back

    def note(self, t_ns: int, stamp_ns: int) -> None:
        """A frame stamped `stamp_ns` arrived at `t_ns` on the clock measured."""
        t, stamp = int(t_ns), int(stamp_ns)
        if self._timeline and (stamp < self._timeline[-1][1] or t < self._timeline[-1][0]):
            self._before = self.stretch if self.known else self._before
            self._timeline.clear()
        if not self._timeline or stamp > self._timeline[-1][1]:  # (a repeated stamp tells no speed)
            self._timeline.append((t, stamp))

    @property
    def stretch(self) -> float:
        """Seconds of the clock measured per second of stamps, at least 1 (class docstring)."""
        timeline = tuple(self._timeline)  # one copy: the live node notes arrivals in another thread
        span = min(STRETCH_SPAN, len(timeline) - 1)
        # after a loop, the speed before it until a whole span is measured anew: one or two steps are one
        # late frame's (a loaded player's), and a 0.2x replay read from one step as 0.83x was "paused"
        if span < 1 or (span < STRETCH_SPAN and self._before is not None):
            return self._before or 1.0
        ratios = [(b[0] - a[0]) / (b[1] - a[1]) for a, b in zip(timeline, timeline[span:], strict=False)]
        return max(1.0, median_low(ratios))

    @property
    def step_ns(self) -> int | None:
        """The median step between the last frames on the clock measured (None before two)."""
        timeline = tuple(self._timeline)
        steps = [b[0] - a[0] for a, b in pairwise(timeline)]
        return int(median_low(steps)) if steps else None

    @property
    def measured(self) -> bool:
        """Whether `stretch` spans `STRETCH_SPAN` steps of this timeline: from fewer, one late frame (a live
        driver's first, slow to publish or to be delivered) reads as a slow replay."""
        return len(self._timeline) > STRETCH_SPAN

    @property
    def known(self) -> bool:
        """Whether `stretch` was measured: a step seen (before a loop too)."""
        return len(self._timeline) > 1 or self._before is not None


class PauseRule:
    """When a stream has paused, so the frames held for its next window should be run in a window
    now (`DepthPipeline.early_window`): after `pause_after_s` without a frame, and when the pause is
    as long as a `max_gap` gap (`ends_after_s`: the live node ends the stream then). The live node
    feeds it the images' arrival times on its clock with their stamps, `vdepth-bag` the stamps
    alone, so a causal bag run makes the windows the live node made.

    A recording replayed in slow motion without `use_sim_time` (a bag player at 0.25x) arrives
    slower than its stamps say: its frames are not pauses, and a step that is short in stamps is no
    gap. So the rule measures the replay's `stretch` (`ReplaySpeed` on the clock it is fed) and
    stretches every bound given in seconds (`pause_flush`, `max_gap`, the
    unknown-period default) by it, so a replay at any slower speed makes the windows and restarts
    that real time makes. A faster replay (2x) keeps the real-time bounds (never shortened below
    them: delivery jitter is on the node's clock).

    Args:
        pause_flush_s: the node's `pause_flush`: seconds, or 0 for auto (`PAUSE_PERIODS` frame periods).
        max_gap_s: the node's `max_gap` (0: none): caps the auto value (a longer pause restarts the
            stream anyway), and longer steps are pauses, not periods.
    """

    def __init__(self, pause_flush_s: float, max_gap_s: float) -> None:
        self.pause_flush_s, self.max_gap_s = float(pause_flush_s), float(max_gap_s)
        self.last_ns: int | None = None
        self._steps: deque[int] = deque(maxlen=30)
        self.speed = ReplaySpeed()  # on the clock the frames are noted by

    def note(self, t_ns: int, stamp_ns: int | None = None) -> None:
        """A frame at `t_ns` (stamped `stamp_ns`; None: `t_ns`, the stamps are the clock)."""
        last, self.last_ns = self.last_ns, int(t_ns)
        self.speed.note(self.last_ns, self.last_ns if stamp_ns is None else stamp_ns)
        step = self.last_ns - last if last is not None else -1
        if step >= 0 and (self.max_gap_s <= 0 or step <= self.max_gap_s * self.stretch * 1e9):  # a pause is no period
            self._steps.append(step)

    @property
    def stretch(self) -> float:
        """The replay's `ReplaySpeed.stretch` on the clock the frames are noted by."""
        return self.speed.stretch

    @property
    def period_ns(self) -> float | None:
        """The mean step between the last 30 frames (pauses left out); None until `PAUSE_MIN_GAPS`."""
        steps = tuple(self._steps)  # one copy: the live node notes arrivals in another thread
        return sum(steps) / len(steps) if len(steps) >= PAUSE_MIN_GAPS else None

    def ends_after_s(self) -> float:
        """Seconds without a frame after which the stream ends (a pause as long as a `max_gap` gap
        in stamps; 0: never). After a stream's first frame alone its speed is unknown: `UNKNOWN_SPEED_GAPS`
        times that (a replay at 0.05x would end there, a single image must still come out)."""
        if self.max_gap_s <= 0:
            return 0.0
        return self.max_gap_s * (self.stretch if self.speed.known else UNKNOWN_SPEED_GAPS)

    def pause_after_s(self) -> float:
        """Seconds without a frame after which the stream counts as paused."""
        stretch = self.stretch
        if self.pause_flush_s > 0:
            return self.pause_flush_s * stretch
        period = self.period_ns
        auto = max(PAUSE_PERIODS * period / 1e9, PAUSE_MIN_S) if period else PAUSE_UNKNOWN_S * stretch
        return min(auto, self.ends_after_s()) if self.max_gap_s > 0 else auto

    def paused_for(self, now_ns: int) -> float:
        """Seconds since the last frame (0 before the first)."""
        return 0.0 if self.last_ns is None else (int(now_ns) - self.last_ns) / 1e9

    def paused_before(self, t_ns: int) -> bool:
        """Whether a frame at `t_ns` comes after a pause (then call `note(t_ns)`)."""
        return self.last_ns is not None and self.paused_for(t_ns) >= self.pause_after_s()
