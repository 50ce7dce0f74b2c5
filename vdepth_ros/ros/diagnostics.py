"""`/diagnostics` for the node (no diagnostic_updater in pip ROS): rates, latency, drops, fit quality."""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


class RateMeter:
    """Events per second, thread-safe: the events after an anchor event over the time since it.

    The anchor is the newest event at least `window_s` old (about `window_s` of events, as a plain
    sliding window), or an older one where fewer than `min_events` events came after it: a slow
    stream (a camera or trigger at 0.3 Hz, a slow-motion replay: fewer than two images in `window_s`)
    reads its rate, not 0, and a bursty one given its burst as `min_events` (a window's outputs, 8
    frames a few ms apart every 27 s of a 0.3 Hz camera) its mean rate, not 0 between the bursts or a
    burst's count over the seconds since it; while the silence since the last event is no longer than a
    recent step, the rate up to that event (it does not fall between a slow camera's images). 0 until
    `min_events` + 1 events came, and once the stream stopped: nothing for `window_s` and for two of its
    longest recent steps (`ros.intake`'s "no input" rule: a slow camera is not stopped between two images).

    Args:
        window_s: the time the rate is measured over, at least.
        min_events: the events it is measured over, at least (a burst's size for a bursty stream).
    """

    def __init__(self, window_s: float = 5.0, min_events: int = 1) -> None:
        self.window_s, self.min_events = float(window_s), max(1, int(min_events))
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self.total = 0
        self.last: float | None = None  # time.monotonic() of the last event

    def tick(self, n: int = 1, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            for _ in range(n):
                self._times.append(now)
            self.total += n
            self.last = now
            self._trim(now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            times = self._times  # times[0] is the anchor (`_trim`)
            if len(times) <= self.min_events:
                return 0.0
            recent = list(times)[-self.min_events - 1 :]
            longest = max(later - earlier for earlier, later in itertools.pairwise(recent))
            if now - times[-1] > max(self.window_s, 2 * longest):
                return 0.0  # stopped
            # up to the last event while the silence since is no longer than a step seen (between two bursts, two
            # images of a slow camera: the rate is what it was), up to now (less that step) once it is longer
            return (len(times) - 1) / max(times[-1] - times[0], now - times[0] - longest, 1e-9)

    def _trim(self, now: float) -> None:
        """Drop the oldest event while the next one is also `window_s` old and `min_events` events follow that."""
        times = self._times
        while len(times) - 2 >= self.min_events and now - times[1] >= self.window_s:
            times.popleft()


#: Image stamps on the node's clock arrive at most this far ahead of it (two machines' clocks synced by NTP or PTP
#: are ms apart; a simulator's coarse /clock lags its stamps by a step) ...
STAMPS_AHEAD_LIMIT_NS = 100_000_000
#: ... and at most this far behind it (exposure, a USB or network transfer, a driver's own queue): an image that
#: waited longer before the node is stamped on another clock (a camera's device time, a recording without its clock).
STAMPS_BEHIND_LIMIT_NS = 1_000_000_000


class StampClock:
    """How far each image's stamp is from the node's clock when it arrives (the median of the last `size`
    images), and whether that says the stamps are on another clock. The latency from an image's stamp is
    what a subscriber measures from its header, so it means something only on the node's clock; on another
    one it is the clocks' offset (a camera's device clock seconds off gave a /diagnostics latency of
    seconds, or a negative one). Thread-safe."""

    def __init__(self, size: int = 31) -> None:
        self._delays: deque[int] = deque(maxlen=size)
        self._lock = threading.Lock()

    def note(self, arrival_ns: int, stamp_ns: int) -> None:
        """An image stamped `stamp_ns` arrived at `arrival_ns`, both on the node's clock (ROS time)."""
        with self._lock:
            self._delays.append(arrival_ns - stamp_ns)

    def delay_ns(self) -> int | None:
        """The median of the recent images' arrival less their stamp (None before the first image)."""
        with self._lock:
            if not self._delays:
                return None
            return int(np.median(np.asarray(self._delays)))

    def offset_ns(self) -> int | None:
        """The offset of the stamps' clock behind the node's (negative: ahead), or None while the stamps are on
        the node's clock (their median delay within `STAMPS_AHEAD_LIMIT_NS` / `STAMPS_BEHIND_LIMIT_NS`)."""
        delay = self.delay_ns()
        if delay is None or -STAMPS_AHEAD_LIMIT_NS <= delay <= STAMPS_BEHIND_LIMIT_NS:
            return None
        return delay


class WorkerThroughput:
    """The input rate the worker keeps up with: frames per second of its busy time (the time it spends on
    them, not waiting for them) in a whole window, the fastest of the last `recent` windows.

    By whole windows, as a window's frames are cheap until the one that runs its inference; the busy time
    leaves out the waits, so the rate is right from the first windows on, whether the camera outpaces the
    worker or not. The fastest of a few, as slower ones were slowed by something else: a stream's first
    windows (about twice as long as the later ones in
    `test_ros_user_cameras.py::test_a_realsense_colour_stream_faster_than_inference_is_named_with_one_fix`),
    or another process's burst. (The frames taken over the time since the first image, start-up included,
    advised well below the later WARNs' value in that test's first WARN.)"""

    def __init__(self, recent: int = 3) -> None:
        self._lock = threading.Lock()
        self._frames, self._busy_s = 0, 0.0  # since the last window
        self._rates: deque[float] = deque(maxlen=max(1, int(recent)))  # frames per busy second, a window each

    def add(self, busy_s: float, window_ended: bool) -> None:
        """One frame the worker spent `busy_s` on; `window_ended`: its window's inference ran with it."""
        with self._lock:
            self._frames, self._busy_s = self._frames + 1, self._busy_s + float(busy_s)
            if window_ended:
                if self._busy_s > 0:
                    self._rates.append(self._frames / self._busy_s)
                self._frames, self._busy_s = 0, 0.0

    @property
    def windows(self) -> int:
        """The windows `rate` is taken from (`recent` once that many have run: until then a provisional rate)."""
        with self._lock:
            return len(self._rates)

    @property
    def recent(self) -> int:
        return self._rates.maxlen or 1

    def rate(self) -> float:
        """Frames per busy second, the fastest recent window's; 0 before the first window ends."""
        with self._lock:
            return max(self._rates, default=0.0)


class LatencyStats:
    """Median / p95 / max over the last `size` samples (seconds). Thread-safe."""

    def __init__(self, size: int = 300) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._samples.append(float(seconds))

    def summary(self) -> dict[str, float]:
        with self._lock:
            if not self._samples:
                return {"median": float("nan"), "p95": float("nan"), "max": float("nan"), "n": 0}
            a = np.asarray(self._samples)
        return {
            "median": float(np.median(a)),
            "p95": float(np.percentile(a, 95)),
            "max": float(a.max()),
            "n": int(a.size),
        }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def make_status(name: str, hardware_id: str, level: bytes, message: str, values: Mapping[str, Any]) -> DiagnosticStatus:
    """A DiagnosticStatus (`level` is `DiagnosticStatus.OK`/`WARN`/`ERROR`) with `values` as strings."""
    st = DiagnosticStatus(name=name, hardware_id=hardware_id, message=message, level=level)
    st.values = [KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()]
    return st


def make_array(stamp: Any, statuses: list[DiagnosticStatus]) -> DiagnosticArray:
    """A DiagnosticArray with `stamp` (builtin_interfaces/Time) in its header."""
    arr = DiagnosticArray()
    arr.header.stamp = stamp
    arr.status = statuses
    return arr


#: diagnostic_aggregator's analyzers mark a status STALE when none came for this long (their default `timeout`):
#: a longer `diagnostics_period` shows the node as stale between two of its messages.
AGGREGATOR_TIMEOUT_S = 5.0

#: How long an event (a stream restart, a frame dropped with an error, input dropped for a full queue) keeps
#: /diagnostics at its level after it happened, at least: longer than a status tick, so that a monitor sees it,
#: and long enough that events a few seconds apart hold one WARN instead of flapping between WARN and OK.
EVENT_HOLD_S = 10.0

#: Added to a cause found on the images (`report(..., on_images=True)`) once the input has stopped: it was true
#: of the last images, which is all that is known now.
STALE = " (as of the last image: the input has stopped)"


class CurrentProblems:
    """What the node names in a log WARN or ERROR, on /diagnostics too: conditions for as long as they hold,
    start-up warnings for as long as the configuration does, events for `hold_s` and then counted.

    A condition's WARN (what is wrong and the fix) is logged once, the first time a check finds it, but an
    operator who connects later, or a fleet monitor, sees only /diagnostics: there every cause that holds
    now makes the status WARN, named in its message and in its "problems" value, until a later check no
    longer finds it. Each check reports all it finds now under its `group` (`report`); the group's causes
    it no longer finds have cleared. A cause found on the images (`on_images`) is marked stale (`STALE`) once
    the input stops: it was last seen, not seen now. A start-up warning (`startup`: a parameter adjusted or
    ignored, a model's fallback) holds until the node is configured again. An event (`event`: a stream
    restart, a frame dropped with an error; everything the node's `RateLimitedLog` logs at WARN or ERROR
    that is no condition) is one moment: the status is WARN, naming it, for `hold_s` after the last of its
    kind, and its count and the last one, with its age, stay in the values. Thread-safe (the status timer,
    the callbacks and the worker report).

    Args:
        warn: `warn(key, message)`, the node's rate-limited log (`RateLimitedLog.warning`).
        hold_s: how long an event holds the status at WARN.
    """

    def __init__(self, warn: Callable[[str, str], Any], hold_s: float = EVENT_HOLD_S) -> None:
        self._warn = warn
        self.hold_s = float(hold_s)
        self._lock = threading.Lock()
        self._now: dict[tuple[str, str], tuple[str, bool]] = {}  # (group, key) -> (summary, on_images), as found
        self._named: set[tuple[str, str]] = set()  # whose WARN has been logged (since `restart`)
        self._startup: dict[str, str] = {}  # key -> summary: until the next configure (a new instance)
        self._events: dict[str, tuple[int, str, float]] = {}  # kind -> (count, its last summary, when: monotonic)
        self._last_event: tuple[str, float] | None = None  # the last event's summary, when

    def report(
        self, group: str, found: Mapping[str, tuple[str, str]] | None = None, *, on_images: bool = False
    ) -> None:
        """What the check `group` finds now: key -> (one line for /diagnostics, the WARN for the log, with the
        fix, or empty where it is logged elsewhere); nothing (None, {}): the group's causes have gone. A key's
        WARN is logged the first time it is found (once until `restart`). `on_images`: found on the images
        (the worker's per-frame checks), so only as current as the last image (`current(input_stopped=True)`)."""
        found = found or {}
        new = []
        with self._lock:
            for gone in [k for k in self._now if k[0] == group and k[1] not in found]:
                del self._now[gone]
            for key, (summary, message) in found.items():
                self._now[(group, key)] = (summary, on_images)
                if message and (group, key) not in self._named:  # (empty: logged where it was found)
                    self._named.add((group, key))
                    new.append((f"{group}:{key}", message))
        for log_key, message in new:
            self._warn(log_key, message)

    def found(self, group: str) -> set[str]:
        """The keys of `group` that hold now (a check that runs per frame skips what it has reported)."""
        with self._lock:
            return {key for g, key in self._now if g == group}

    def startup(self, key: str, summary: str) -> None:
        """A start-up warning (logged by the caller): on /diagnostics until the node is configured again."""
        with self._lock:
            self._startup[key] = summary

    def event(self, kind: str, summary: str, now: float | None = None) -> None:
        """One event of `kind` (logged by the caller): WARN on /diagnostics, named by `summary` (the same text
        each time for one cause: the status message should not change with every event), for `hold_s`."""
        now = time.monotonic() if now is None else now
        with self._lock:
            count = self._events.get(kind, (0, "", 0.0))[0]
            self._events[kind] = (count + 1, summary, now)
            self._last_event = (summary, now)

    def current(self, input_stopped: bool = False, now: float | None = None) -> list[str]:
        """What holds now: the conditions in the order found (`STALE` added to those found on the images once
        the input has stopped), the start-up warnings, and the kinds of event within `hold_s`, newest first."""
        now = time.monotonic() if now is None else now
        with self._lock:
            held = [
                summary + (STALE if on_images and input_stopped else "") for summary, on_images in self._now.values()
            ]
            recent = sorted((at, summary) for _, summary, at in self._events.values() if now - at < self.hold_s)
            return [*held, *self._startup.values(), *dict.fromkeys(s for _, s in reversed(recent))]

    def event_values(self, now: float | None = None) -> dict[str, Any]:
        """The events so far, for /diagnostics' values (the same keys in every message): "events" (count by kind),
        "last event" and "last event age [s]"."""
        now = time.monotonic() if now is None else now
        with self._lock:
            counts = ", ".join(f"{kind} {count}" for kind, (count, _, _) in sorted(self._events.items()))
            last = self._last_event
        return {
            "events": counts or "none",
            "last event": last[0] if last else "none",
            "last event age [s]": round(now - last[1], 1) if last else "none",
        }

    def restart(self) -> None:
        """A new activation: no condition holds, every one's WARN is logged again when found; the start-up
        warnings (the configuration's) and the events' counts stay."""
        with self._lock:
            self._now.clear()
            self._named.clear()


class RecentRise:
    """Whether a running count (drops, losses) rose within the last `hold_s`: an event's hold
    (`CurrentProblems.event`) for counts that only the status timer reads.

    Args:
        total: the count now (what rose before is not recent).
        hold_s: how long a rise counts as recent.
    """

    def __init__(self, total: int = 0, hold_s: float = EVENT_HOLD_S) -> None:
        self.hold_s = float(hold_s)
        self._total = self._since = int(total)  # `_since`: the count when the current hold started
        self._rose_at = -float("inf")

    def update(self, total: int, now: float | None = None) -> int:
        """The count now; returns what it rose by since the start of the current hold (0: not within `hold_s`)."""
        now = time.monotonic() if now is None else now
        if total < self._since:  # (the count started again)
            self._since = int(total)
        if total > self._total:
            if now - self._rose_at >= self.hold_s:
                self._since = self._total
            self._rose_at = now
        self._total = int(total)
        return self._total - self._since if now - self._rose_at < self.hold_s else 0


class Watchdog:
    """Says when images arrive but nothing is published: the node is alive but producing nothing.

    The silence is counted from the last output, or from the first image after a (re)start, or
    after a pause of the input longer than the timeout (a camera that stopped for a while: its next
    window needs its images first), when nothing was published since; images skipped for lack of
    subscribers do not count as input. A window publishes nothing until its frames have arrived, so
    the silence starts only once `wait_frames` more images came: a slow camera, or a recording
    replayed in slow motion (a frame a second, 7 to a window's output), is waiting for its frames,
    not stalled.

    Args:
        timeout_s: silence that counts as a stall; 0 turns the watchdog off.
        wait_frames: images an output may wait for after the one before (the window's length less
            one: `largest_burst(schedule) - 1`); 0: none.
    """

    def __init__(self, timeout_s: float, wait_frames: int = 0) -> None:
        self.timeout_s, self.wait_frames = float(timeout_s), int(wait_frames)
        self._lock = threading.Lock()
        self.restart()

    def restart(self) -> None:
        with self._lock:
            self._first_input: float | None = None
            self._last_input: float | None = None
            self._last_output: float | None = None
            self._waited: list[float] = []  # arrivals of the next output's frames (up to `wait_frames`)

    def input(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._last_input is not None and now - self._last_input > self.timeout_s:
                self._first_input = self._last_output = None  # the input resumes after a pause
                self._waited.clear()
            self._last_input = now
            if self._first_input is None:
                self._first_input = now
            elif len(self._waited) < self.wait_frames:
                self._waited.append(now)

    def output(self, now: float | None = None) -> None:
        with self._lock:
            self._last_output = time.monotonic() if now is None else now
            self._waited.clear()

    def stalled_s(self, now: float | None = None) -> float | None:
        """Seconds without output while images keep arriving, when longer than the timeout; else None."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self.timeout_s <= 0 or self._last_input is None or self._first_input is None:
                return None
            if now - self._last_input > self.timeout_s:
                return None  # no input either: "no input images", not a stall
            if len(self._waited) < self.wait_frames:
                return None  # the next output's frames have not all arrived
            since = max(self._first_input, self._last_output or self._first_input)
            silent = now - (self._waited[-1] if self.wait_frames else since)  # (the waited-for frames came after)
        return silent if silent > self.timeout_s else None


def level_for(
    input_rate: float,
    output_rate: float,
    drops_recent: int,
    degenerate_fit: bool,
    receiving: bool,
    *,
    stalled_s: float | None = None,
    lost_recent: int = 0,
    last_error: str | None = None,
    dropped_outputs: str = "",
    slow_outputs: str = "",
    compare_from_hz: float = 0.0,
    problems: Sequence[str] = (),
) -> tuple[bytes, str]:
    """Overall level and message: ERROR when images arrive but nothing is published (`stalled_s`);
    WARN on no input, drops, outputs slow to publish (`slow_outputs`, e.g. "/points": a subscriber
    in a stopped process, which also makes frames go lost before the node), frames lost before the
    node, outputs dropped for a subscriber that does not take them, a degenerate fit or output far
    below input (compared from an input of `compare_from_hz`: windows publish in bursts, so a slower
    camera or a slow-motion replay has too few of them in the rates' window for a fair comparison); at
    least WARN while one of `problems` holds (`CurrentProblems.current`), each named after the message.
    The counts (`drops_recent`, `lost_recent`) and the topics whose outputs were dropped (`dropped_outputs`,
    e.g. "/points") are those of the last `EVENT_HOLD_S` (`RecentRise`), and the message names causes, not
    numbers (those are in the values): a monitor's aggregator sees one WARN with one text while drops go on
    every few seconds, not one that flaps or changes its text at every tick."""

    def without_problems() -> tuple[bytes, str]:
        if stalled_s is not None:
            why = f"; last error: {last_error}" if last_error else ""  # (how long: "silent for [s]" in the values)
            return DiagnosticStatus.ERROR, f"nothing published for watchdog_timeout while images arrive{why}"
        if not receiving:
            return DiagnosticStatus.WARN, "no input images"
        if drops_recent > 0:
            return DiagnosticStatus.WARN, "dropping input: the queue is full"
        if slow_outputs:
            return DiagnosticStatus.WARN, (
                f"publishing takes most of the time on {slow_outputs}: a subscriber in a stopped process? "
                "(docs/node.md, Threads, queue, drops, faults)"
            )
        if lost_recent > 0:
            return DiagnosticStatus.WARN, ("frames lost before the node (docs/node.md#across-processes)")
        if dropped_outputs:
            return DiagnosticStatus.WARN, f"outputs dropped on {dropped_outputs}: a subscriber does not take them"
        if degenerate_fit:
            return DiagnosticStatus.WARN, "scale fit degenerate"
        if input_rate > 0 and input_rate >= compare_from_hz and output_rate < 0.5 * input_rate:
            return DiagnosticStatus.WARN, "output rate below half the input rate"
        return DiagnosticStatus.OK, "ok"

    level, message = without_problems()
    if not problems:
        return level, message
    named = "; ".join(problems)
    return (DiagnosticStatus.WARN, named) if level == DiagnosticStatus.OK else (level, f"{message}; {named}")
