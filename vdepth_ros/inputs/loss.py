"""Frames lost before they reached us, estimated from the gaps in the image stamps.

Best-effort images across processes are dropped by DDS without a trace (a 640x480 camera at 15 Hz
delivered 101 of 375 frames to a best-effort subscriber here), so the node counts what its input
stamps say is missing: the camera's frame period is estimated from the recent positive stamp steps
(under heavy loss few steps are one period long, but all are multiples of it), and a step of `n`
periods means `n - 1` frames never arrived. A step longer than `max_gap` is a
pause (the stream restarts), not loss; a stamp going backwards (more than `inputs.sync.OUT_OF_ORDER_NS`:
less is an out-of-order frame, ignored) restarts the estimate.

A camera that changes its frame rate is not loss: a webcam or a RealSense lowering its rate in dim
light (auto exposure), a reconfigured driver, a simulator slowing down. Its steps become longer
all at once and stay alike, which random loss almost never does (8 steps of the same length in a row
at 50 % loss: about 1 in 65,000), so a missing count is confirmed only `STEADY_STEPS` steps later,
and a run of that many alike steps longer than the period restarts the estimate at the new rate
instead. From stamps alone a transport losing exactly every other frame looks the same as a camera at
half the rate; so where the middleware numbers its messages (`PublisherSequences`: Fast DDS and Cyclone
DDS number every message a publisher sends), the messages a step's gap in those numbers says were sent
and never arrived are lost for certain (`InputLossMeter.add`'s `sent`): counted at once, and the step
is split among them, so the stamps' period stays the camera's.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from itertools import islice

import numpy as np

from vdepth_ros.inputs.sync import OUT_OF_ORDER_NS

#: Steps alike in a row (within `STEADY_TOLERANCE` of their median) that mean a new frame rate.
STEADY_STEPS = 8
STEADY_TOLERANCE = 0.2
#: Steps whose missing counts are held unconfirmed at most (while a burst of late frames goes on; and no
#: more than the meter's `history`).
MAX_HELD = 4 * STEADY_STEPS
#: Steps shorter than a period in a row that make a burst of late frames (`InputLossMeter._late_arrivals`).
BURST_STEPS = 3
#: A step shorter than this many periods brings a frame that was late: judged with the step before it
#: (`InputLossMeter.period_ns`, `InputLossMeter._late_arrivals`); shorter than `LATE_STEP`, it was a whole frame late.
LATE_BURST, LATE_STEP = 0.8, 0.5
#: Images in a row without a steady frame period that make the loss not measurable (`InputLossMeter.measurable`).
UNMEASURED_RUN = 16
#: Steps up to this many periods long are judged for fitting a candidate period (`_fits_most`); longer ones
#: are heavy loss or a stall, which any small fraction of the period would fit.
MAX_JUDGED = 25


class InputLossMeter:
    """Counts frames missing between received image stamps.

    Args:
        max_gap_ns: steps longer than this are pauses, not loss (the node's `max_gap`; 0: none).
        history: stamp steps the period is estimated from.
    """

    def __init__(self, max_gap_ns: int = 1_000_000_000, history: int = 31) -> None:
        self.max_gap_ns = int(max_gap_ns)
        self._steps: deque[int] = deque(maxlen=history)
        self._pending: deque[int] = deque()  # missing counts of the last steps, not yet confirmed
        # (no more than the steps kept: `_late_arrivals` reads the held counts' steps from them)
        self._max_held = min(MAX_HELD, history)
        self._misstamped = 0  # frames received since the last step with a stamp not after it
        self._period_of: tuple[tuple[int, ...], int] = ((), 0)  # `period_ns`'s last history and result
        self._last: int | None = None
        self.received = 0
        self._confirmed = 0  # missing frames confirmed (`STEADY_STEPS` steps later, or at a pause)
        self.first: int | None = None  # stamps of the first and last image of the current sequence
        self._fresh = True
        #: frames the publisher sent that never arrived, by its sequence numbers (`add`'s `sent`); in `lost` too
        self.in_transport = 0
        # frames per step the stamps may say are missing for a steady period (`_steady`): at most 4 in 5 lost,
        # and where the publisher numbers its messages (its transport loss is known) half, before publishing
        self._most_missing = 4
        self._counted_at: int | None = None  # the period the last step was counted at
        #: images received while the stamps had no steady frame period (`measurable`): their loss is unknown
        self.unmeasured = 0
        self._no_period_run = 0  # images in a row without a steady period
        # the steps counted since the stream (re)started or changed its rate, their span, and what the stamps
        # confirmed missing in them: the frames such a span holds bound what can be missing (`_bounded`)
        self._counted_steps, self._counted_periods, self._counted_lost = 0, 0.0, 0
        self._warming = True  # no period known yet in this stream: once there is one, the steps before count
        self._known_for = 0  # steps since the period was first known in this stream

    def reset(self) -> None:
        """Forget the stamps (a new stream); the totals (and the last span, for a summary) stay."""
        self._confirm_pending()
        self._steps.clear()
        self._fresh = True

    @property
    def measurable(self) -> bool:
        """False while the stamps keep no steady frame period (`period_ns`): a driver stalled or catching up
        most of the time, whose stamps say nothing about frames missing. Then nothing is counted (`unmeasured`
        counts the images), and the node reports the loss as not measurable rather than a number."""
        return self._no_period_run < UNMEASURED_RUN

    @property
    def last(self) -> int | None:
        return self._last

    @property
    def period_ns(self) -> int | None:
        """The camera's frame period (None until 12 steps were seen: fewer can all be multiples of a
        longer one by chance; None too while the stamps keep no period, `measurable`).

        Under heavy loss few steps are one period long, but all are whole multiples of it: the
        period is the largest candidate `base / m` (m = 1..12) that nine in ten steps up to 6 of it are
        multiples of (within a fifth of it), `base` being the shortest step that is not a stray
        (shorter than 0.6x the median: a jittered or duplicated frame), the median of those, or the
        median of the longer half of the steps; then
        refined as the median of step / multiple, and kept only if nine in ten of *all* the steps are
        multiples of that: a few short steps of a jittered camera fit a small fraction of its period by
        chance (25-28 ms steps of a 30 Hz camera are all "6 of 4.3 ms"), which would count every frame as
        several lost. Without such a period, the median step, where four in five steps lie within half of it
        (a jittered camera). A period is taken only where the stamps keep it (`_steady`); otherwise None:
        the stamps have no steady frame period, and no loss is counted from them (`measurable`).

        A step shorter than a candidate (`LATE_BURST` of it) is a frame late in a burst: it is judged
        together with the step before it, as their mean. A driver that stamps as it publishes catches
        up after a stall in a burst of frames 1 ms apart; judged alone those steps fitted no period,
        and the stall's step (4.5 periods) fitted only half of it, so with a stall or two in the history
        half the period was taken and every later step counted one frame lost (14 of 90 in a CI run, with
        a WARN about transport loss); together they are the period again. For the same reason the
        shortest step alone is no `base`: the burst's last, partial step (0.75 periods) made every
        candidate fail but a tiny one, and where bursts are most of the steps the period is in the
        longer half only.
        """
        if len(self._steps) < 12:
            return None
        key = tuple(self._steps)  # (asked several times per image: computed once per history)
        if self._period_of[0] != key:
            self._period_of = (key, self._estimated_period())
        return self._period_of[1]

    def _estimated_period(self) -> int | None:
        steps = np.asarray(self._steps, dtype=np.float64)
        regular = steps[steps >= 0.6 * np.median(steps)]
        # (the longer steps' median too: where bursts of late frames are most steps, their steps are "regular",
        # and the upper half's median is one of them)
        longer = steps[steps > np.median(steps)]
        bases = (float(regular.min()), float(np.median(regular)), float(np.median(longer if len(longer) else steps)))
        for candidate in sorted({base / m for base in bases for m in range(1, 13)}, reverse=True):
            judged = _bursts_merged(steps, LATE_BURST * candidate)
            multiples = judged / candidate
            short = multiples < 6.5  # long steps would multiply the jitter of `base`: judged by the short ones
            near = short & (np.round(multiples) >= 1) & (np.abs(multiples - np.round(multiples)) < 0.2)
            if short.sum() >= 4 and near.sum() >= 0.9 * short.sum():
                period = float(np.median(judged[near] / np.round(multiples[near])))
                # (the largest period that fits and that the stamps keep: a longer one may take the steps of the
                # camera's old rate for bursts of late frames, and the fractions of one that fit any stamps are
                # no period of theirs, `_steady`)
                if self._counted_at and period < 0.7 * self._counted_at and not _sped_up(steps, period):
                    continue  # (a fraction of the period counted at: the camera's rate doubled, or nothing)
                if _fits_most(_bursts_merged(steps, LATE_BURST * period) / period):
                    if _steady(steps, period, self._most_missing):
                        return int(period)
                    if _catching_up(steps, period):
                        return None  # (its fractions fit the bursts' steps: no period of the camera's either)
        median = float(np.median(steps))
        # a camera whose steps jitter too much for whole multiples still has a period when they gather around
        # one step; steps of stalls and bursts of late frames, most of them far from their median, have none
        gathered = np.mean(np.abs(steps - median) <= 0.5 * median) >= 0.8
        return int(median) if gathered and _steady(steps, median, self._most_missing) else None

    @property
    def lost(self) -> int:
        """Frames missing so far: confirmed ones, and those of the last steps that a change of the
        camera's frame rate may still explain (module docstring)."""
        return self._confirmed + sum(self._pending)

    @property
    def confirmed(self) -> int:
        """Frames missing so far that no change of the camera's frame rate can explain any more."""
        return self._confirmed

    def add(self, stamp_ns: int, sent: int | None = None, new_publisher: bool = False) -> int:
        """Record one received stamp; returns how many missing frames this confirms (of a step
        `STEADY_STEPS` back, or of all pending steps when the stream ends here, and `sent` - 1).

        Args:
            stamp_ns: the image's stamp.
            sent: messages its publisher sent since the one before that arrived, this one included
                (`PublisherSequences.add`; 1: none lost), or None where unknown.
            new_publisher: the image came from another publisher than the one before it
                (`PublisherSequences.switched`: a camera driver restarted, respawned by its launch file):
                the step since that one's last image is the driver's downtime, in which it sent nothing,
                not frames lost on the way (they were counted, and warned about as transport loss).
        """
        self.received += 1
        if sent is not None:
            self._most_missing = 1
        in_transport = max(0, (sent or 1) - 1)
        self.in_transport += in_transport
        self._confirmed += in_transport
        return in_transport + self._add(stamp_ns, sent or 1, new_publisher)

    def _add(self, stamp_ns: int, sent: int, new_publisher: bool = False) -> int:
        last, self._last = self._last, int(stamp_ns)
        if new_publisher and last is not None and not self._fresh:
            self._misstamped = 0  # no step across the restart; the camera's period stays known
            return 0
        if last is not None and not self._fresh and last - OUT_OF_ORDER_NS <= stamp_ns <= last:
            # repeated or slightly out of order (`inputs.sync`): neither loss nor a restart; the next
            # step, which looks a frame too long, has this frame in it (it is split in equal parts)
            self._last, self._misstamped = last, self._misstamped + sent  # (with those lost before it)
            return 0
        misstamped, self._misstamped = self._misstamped, 0
        if self._fresh or last is None or stamp_ns < last:  # the first image, or the clock or bag restarted
            confirmed = self._confirm_pending()
            self._steps.clear()
            self.first, self._fresh, self._counted_at = int(stamp_ns), False, None
            return confirmed
        step = int(stamp_ns) - last
        if self.max_gap_ns > 0 and step > self.max_gap_ns:
            return self._confirm_pending()  # a pause: the stream restarts
        # frames in this step: those received without a later stamp, and those sent that never arrived
        frames = misstamped + sent
        parts = [step // frames] * frames
        parts[-1] += step - sum(parts)
        self._steps.extend(parts)
        period = self.period_ns
        if period is None:
            if len(self._steps) >= 12:  # no steady period: what the last steps counted is no loss either
                self._no_period_run += 1
                # (a few images without one are a change of rate being learnt: not yet "cannot measure")
                self.unmeasured += UNMEASURED_RUN if self._no_period_run == UNMEASURED_RUN else 0
                self.unmeasured += 1 if self._no_period_run > UNMEASURED_RUN else 0
                self._pending.clear()
                self._counted_steps, self._counted_periods, self._counted_lost = 0, 0.0, 0
            return 0
        self._no_period_run = 0
        # (judged at the period the held counts were made with: the estimate may follow the new rate at once)
        counted_at, self._counted_at = self._counted_at or period, period
        if self._rate_changed(min(counted_at, period)):
            # the camera's rate changed: the estimate restarts on the new steps, which were not loss
            recent = list(self._steps)[-STEADY_STEPS:]
            self._steps.clear()
            self._steps.extend(recent)
            self._pending.clear()
            self._counted_steps, self._counted_periods, self._counted_lost = 0, 0.0, 0
            self._warming = True
            return 0
        # once the period is first known, the steps seen before it count too (not those of a time without a
        # steady period, `measurable`: their loss is unknown)
        if self._pending and period >= 1.5 * counted_at:
            # the held counts were made at a fraction of this period (jittered steps fit 3 of 0.32 periods better
            # than 1 of it while the estimate was learnt: 24 "lost" of 40 received): counted again at this one
            window = list(self._steps)[-len(self._pending) - len(parts) : -len(parts)]
            self._pending = deque(self._missing(s, period) for s in window)
        warming, self._warming = self._warming, False
        self._known_for = 0 if warming else self._known_for + len(parts)
        steps = list(self._steps) if warming else parts
        self._pending.extend(self._missing(s, period) for s in steps)
        self._counted_steps += len(steps)
        self._counted_periods += sum(steps) / period
        self._late_arrivals(period, sum(1 for s in steps if s < LATE_STEP * period))
        self._jitter_taken_back(period)
        self._bounded()
        confirmed = 0
        # (not while a burst of late frames goes on: they are taken back from the stall's step, at the start)
        # (nor for `STEADY_STEPS` steps after the period was first known: the estimate is new, and may still be a
        # fraction of it)
        steady = parts[-1] >= LATE_BURST * period and self._known_for >= STEADY_STEPS
        held = STEADY_STEPS - 1 if steady else self._max_held
        while len(self._pending) > held:
            confirmed += self._pending.popleft()
        self._confirmed += confirmed
        self._counted_lost += confirmed
        return confirmed

    def _bounded(self) -> None:
        """The sanity bound: steps spanning `P` periods hold `P` frames, so with the `n` that arrived at most
        `P - n` are missing; a count above that (frames late in a burst after a stall, which the stall's step
        counted missing) is taken back from the unconfirmed steps, latest first. Counted at each step's own
        period, so a camera changing its rate keeps its bound."""
        excess = self._counted_lost + sum(self._pending) - max(0, round(self._counted_periods) - self._counted_steps)
        self._take_back(excess)

    def _take_back(self, excess: int) -> None:
        """Take `excess` missing frames back from the unconfirmed steps, latest first."""
        for i in range(len(self._pending) - 1, -1, -1):
            if excess <= 0:
                return
            taken = min(excess, self._pending[i])
            self._pending[i] -= taken
            excess -= taken

    def _rate_changed(self, period: int) -> bool:
        """The last `STEADY_STEPS` steps are alike and longer than `period` would make them."""
        if len(self._steps) < STEADY_STEPS:
            return False
        recent = np.asarray(list(self._steps)[-STEADY_STEPS:], dtype=np.float64)
        median = float(np.median(recent))
        return median > 1.5 * period and bool(np.all(np.abs(recent - median) <= STEADY_TOLERANCE * median))

    def _late_arrivals(self, period: int, early: int) -> None:
        """Frames that came less than a period after the one before are late: a driver that stamps as
        it publishes, catching up after a stall (a loaded machine) in a burst. The stall's long step
        counted them missing; they were late, not lost (every frame of a 15 Hz camera stalling 0.3 s
        every 10 frames arrived, and half of them were counted lost before the node, with a WARN about
        transport loss). Taken back, latest first: one frame for each of the `early` new steps shorter
        than half a period, and, during a burst (`BURST_STEPS` steps shorter than a period in a row),
        what the unconfirmed steps counted as a whole (the periods their time spans, less the frames
        that arrived in it) do not find missing: so a burst slower than half a period (a driver taking
        40 ms per frame at 15 Hz) is late frames too."""
        held = sum(self._pending)
        if not held:
            return
        window = list(self._steps)[-len(self._pending) :]
        # (a burst is several short steps in a row: a jittered camera's one short step is no burst, and taking
        # back on it only, never adding on a long one, undercounted real loss)
        if len(window) < BURST_STEPS or max(window[-BURST_STEPS:]) >= LATE_BURST * period:
            excess = early
        else:
            excess = max(early, held - max(0, round(sum(window) / period) - len(window)))
        self._take_back(excess)

    def _jitter_taken_back(self, period: int) -> None:
        """A long step is a frame late, not one missing, where the frames after it come back near their times:
        over it and the next `BURST_STEPS` steps, the stamps span nearer to as many periods as frames came than to
        one more. A jittery driver on a loaded machine stamped one frame 0.78 periods late and the next two 0.52
        and 0.71 periods after (3.01 periods for 3 frames): its 1.78-period step was counted a frame lost, with all
        40 of 40 frames received. Real loss moves every later stamp a period on, and stays counted."""
        window = list(self._steps)[-len(self._pending) :] if self._pending else []
        for i, held in enumerate(self._pending):
            if held and i + BURST_STEPS < len(window):
                frames = BURST_STEPS + 1
                missing = max(0, round(sum(window[i : i + frames]) / period) - frames)
                others = sum(islice(self._pending, i + 1, i + frames))
                self._pending[i] = min(held, max(0, missing - others))

    def _confirm_pending(self) -> int:
        """The stream ended (a pause, a restart): what its last steps missed is loss."""
        confirmed = sum(self._pending)
        self._pending.clear()
        self._confirmed += confirmed
        self._counted_steps, self._counted_periods, self._counted_lost = 0, 0.0, 0  # (the stream ends here)
        self._warming = True
        return confirmed

    @staticmethod
    def _missing(step: int, period: int) -> int:
        """Frames missing in `step`: one less than the whole periods in it. A step of no whole number of periods
        (a quarter of one either way) says no frames are missing: a stall's (its late frames follow), or one at
        another rate (the first 66.7 ms steps after a burst of frames 40 ms apart, taken for a 25 Hz camera)."""
        multiple = step / period
        return round(multiple) - 1 if multiple > 1.5 and abs(multiple - round(multiple)) < 0.25 else 0

    @property
    def fraction(self) -> float:
        """Lost / (received + lost) so far."""
        total = self.received + self.lost
        return self.lost / total if total else 0.0


class PublisherSequences:
    """Gaps in each publisher's message sequence numbers: the messages it sent that never arrived.

    rmw hands every message's `publication_sequence_number` and `publisher_gid` to a subscription
    callback that takes the message info (rclpy's `MessageInfo`; None where the middleware has none).

    Memory is bounded: the last numbers of the `MAX_PUBLISHERS` publishers heard from most recently
    are kept (least recently heard forgotten first), so a driver respawned every few seconds for days,
    each time with a new GID, does not grow the node. A forgotten publisher that sends again is treated as
    new (its first message: no loss counted).
    """

    #: publishers whose last sequence number is kept (a topic has one or two live ones)
    MAX_PUBLISHERS = 64

    #: Two publishers are taking turns (`taking_turns`) while each has sent within this long: a driver that
    #: stopped sending but stays in the ROS graph (paused, hung, its camera unplugged) takes no more turns.
    #: Seconds of a camera's periods (a 1 Hz one sends several times in it).
    TURN_GONE_S = 3.0

    def __init__(self) -> None:
        self._last: OrderedDict[Hashable, int] = OrderedDict()
        self._heard_at: dict[Hashable, float] = {}  # when each publisher in `_last` last sent (monotonic s)
        self._previous: Hashable | None = None  # the publisher of the last message
        #: the last message came from another publisher than the one before it (a restarted driver's new
        #: publisher, or one of two publishers taking turns): the step between them is no loss
        self.switched = False
        #: the first two publishers seen taking turns (a message from one that had sent before, after
        #: another's): two streams interleaved on one topic; None while the messages come one publisher at
        #: a time (a driver restarted, even several times, never sends from its old publisher again)
        self.interleaved: tuple[Hashable, Hashable] | None = None
        #: a message has named its publisher (the middleware gives GIDs: Fast DDS, Cyclone DDS)
        self.identified = False

    def add(self, publisher: Hashable | None, sequence: int | None, now: float | None = None) -> int | None:
        """Messages `publisher` sent since its last one that arrived, this one included (1: none
        lost); None for its first, without numbers, or when they went back (a publisher restarted).
        `now`: when it arrived (monotonic seconds; now if None)."""
        previous, self.switched = self._previous, False
        if publisher is None or sequence is None:
            return None
        self._heard_at[publisher] = time.monotonic() if now is None else now
        self._previous, self.identified = publisher, True
        self.switched = previous is not None and publisher != previous
        if self.switched and publisher in self._last and self.interleaved is None:
            self.interleaved = (previous, publisher)
        last, self._last[publisher] = self._last.get(publisher), int(sequence)
        self._last.move_to_end(publisher)
        while len(self._last) > self.MAX_PUBLISHERS:
            forgotten, _ = self._last.popitem(last=False)  # the publisher heard from least recently
            self._heard_at.pop(forgotten, None)
        return None if last is None or sequence <= last else int(sequence) - last

    def taking_turns(self, now: float | None = None) -> bool:
        """The `interleaved` pair still takes turns: each of the two has sent within `TURN_GONE_S` (what is
        said while it holds; that they took turns at all is said once, `interleaved`)."""
        if self.interleaved is None:
            return False
        now = time.monotonic() if now is None else now
        return all(now - self._heard_at.get(gid, -math.inf) < self.TURN_GONE_S for gid in self.interleaved)

    def reset(self) -> None:
        """Forget the publishers (the subscription was re-created: what was sent meanwhile is not loss)."""
        self._last.clear()
        self._heard_at.clear()
        self._previous, self.switched, self.interleaved = None, False, None


def _steady(steps: np.ndarray, period: float, most_missing: int) -> bool:
    """The stamps keep `period`: no more than a third of the steps bring frames late after a stall
    (`_catching_up`), two thirds of their time is in steps of whole periods (a quarter of one either way;
    a stall and the burst after it as one, `_bursts_merged`), and they say no more than `most_missing`
    frames per step never arrived (4: the stamps of 4 in 5 lost; 1 where the publisher numbers its
    messages, so its transport loss is known: a camera driver that published less than half its frames is
    a driver stalling, not a camera). A driver stalled or catching up most of the time (0.8 s every 15-20
    frames at 15 Hz, or sending 35-45 ms a frame) fails one of them at every period: at its own, most of
    its steps are late frames; at the period of its bursts (9 steps of 30 ms and a stall of 830 ms), most
    of its time is stalls of no whole period, which counted 27 frames lost each; and the small fractions of
    its period that all its steps are multiples of (3.3 ms for steps of 10 and 66.7 ms) counted 10-20
    frames for every step: 2,093 "lost" of 300 sent."""
    if _catching_up(steps, period):
        return False
    totals, frames = _burst_groups(steps, LATE_BURST * period)
    multiples = totals / frames / period
    whole = np.round(multiples)
    fits = (whole >= 1) & (np.abs(multiples - whole) < 0.25)
    missing = np.maximum(np.round(steps / period) - 1, 0).sum()
    # (all the steps' time: the short ones before any longer, which no group takes, fit no whole period of it)
    return bool(totals[fits].sum() >= 2 / 3 * steps.sum() and missing <= most_missing * len(steps))


def _sped_up(steps: np.ndarray, period: float) -> bool:
    """The last `STEADY_STEPS` steps are alike and `period` long (a tenth either way): the camera raised its
    rate (`InputLossMeter._rate_changed` in the other direction). A shorter period is taken only so: a fraction
    of the period counted at fits the frames late in a burst after a stall too (40 ms steps of a 15 Hz driver,
    33.3 ms), and counted its every later frame period as one frame lost."""
    recent = steps[-STEADY_STEPS:]
    return len(recent) == STEADY_STEPS and bool(np.all(np.abs(recent - period) <= 0.1 * period))


def _catching_up(steps: np.ndarray, period: float) -> bool:
    """A third of the steps bring frames late after a stall at `period`: shorter than `LATE_BURST` of it, in a
    run after a step of 1.5 periods or more: a driver catching up most of the time. Short steps that follow
    no stall are no such frames but a camera's other rate (auto exposure lowering it in the dark, or
    raising it again), whose period is a fraction of this one."""
    late, after_stall = 0, False
    for step in steps:
        if step >= LATE_BURST * period:
            after_stall = step >= 1.5 * period
        elif after_stall:
            late += 1
    return late > len(steps) / 3


def _fits_most(multiples: np.ndarray) -> bool:
    """Nine in ten of the steps (`multiples` of a candidate period, bursts merged) are whole multiples of it,
    the steps up to `MAX_JUDGED` periods long being most of them: a step of 13.3 periods fits none, and a
    candidate that leaves most steps too long to judge (a tenth of the period of a driver catching up 10 ms a
    frame, which every burst step fits) explains nothing. The tolerance grows with the multiple (2 % of it:
    a period refined from jittered steps is a little off, and the error adds up along a long step)."""
    judged = multiples < MAX_JUDGED
    whole = np.round(multiples)
    fits = judged & (whole >= 1) & (np.abs(multiples - whole) < np.maximum(0.2, 0.02 * multiples))
    return judged.sum() >= max(4, 0.75 * len(multiples)) and fits.sum() >= 0.9 * judged.sum()


def _bursts_merged(steps: np.ndarray, shortest: float) -> np.ndarray:
    """`steps`, each shorter than `shortest` joined with those before it into their mean (a burst of late
    frames after a stall, and the stall: `InputLossMeter.period_ns`); those at the start, whose stall is
    no longer in the history, left out."""
    totals, frames = _burst_groups(steps, shortest)
    return totals / frames


def _burst_groups(steps: np.ndarray, shortest: float) -> tuple[np.ndarray, np.ndarray]:
    """The time and the frames of each group of `_bursts_merged`: a step and the shorter ones after it."""
    totals: list[float] = []
    frames: list[int] = []
    for step in steps:
        if step < shortest:
            if not totals:
                continue
            totals[-1] += float(step)
            frames[-1] += 1
        else:
            totals.append(float(step))
            frames.append(1)
    return np.asarray(totals, dtype=np.float64), np.asarray(frames, dtype=np.float64)
