"""StreamResets and PauseRule: the ROS-free rules for restarting the stream and for a paused one (shared
with vdepth-bag's causal mode)."""

from __future__ import annotations

import pytest

from vdepth_ros.inputs.resets import PauseRule, StreamResets, clock_step_ns

S = 1_000_000_000


def test_reasons_in_priority_order_and_counts():
    r = StreamResets(max_gap_ns=S)
    assert r.update((48, 64), 0, ("a",)) is None
    assert r.update((48, 64), S // 2, ("a",)) is None
    assert r.update((48, 64), S // 4, ("a",)).startswith("time jump: stamp went back 0.250 s")
    assert r.update((48, 64), 3 * S, None).startswith("gap: 2.750 s")
    assert r.update((48, 64), 3 * S + 1, None) is None  # no camera_info: keep the last signature
    assert r.update((48, 64), 3 * S + 2, ("b",)) == "camera_info: intrinsics or size changed"
    assert r.update((24, 32), 3 * S + 3, ("c",)) == "resolution: 64x48 -> 32x24"  # wins over camera_info
    assert dict(r.counts) == {"time jump": 1, "gap": 1, "camera_info": 1, "resolution": 1}


def test_gap_check_can_be_disabled():
    r = StreamResets(max_gap_ns=0)
    r.update((2, 2), 0, None)
    assert r.update((2, 2), 1000 * S, None) is None


def test_gap_is_measured_between_input_stamps_not_processed_frames():
    """Under overload the node drops the oldest queued frames: the processed stamps then jump, but
    the inputs did not stop, so no gap reset (the input before each processed frame is given)."""
    resets = StreamResets(max_gap_ns=100)
    assert resets.update((4, 4), 0, None) is None
    assert resets.update((4, 4), 500, None, previous_input=490) is None  # frames 10..480 dropped
    assert resets.update((4, 4), 700, None, previous_input=550).startswith("gap: ")  # inputs did stop
    assert resets.update((4, 4), 900, None).startswith("gap: ")  # no input stamp known: frame to frame


def test_a_pause_is_four_frame_periods_of_the_frames_as_they_arrive():
    """`pause_flush: 0` (auto): 4 periods of the frames' arrival (the live node feeds its clock: a bag
    played at half speed arrives at half the rate its stamps say, and a slow-motion replay must not
    count every frame as a pause), at least 0.2 s, at most max_gap; an earlier pause is no period."""
    period = 66_666_667
    rule = PauseRule(0.0, 1.0)
    assert rule.pause_after_s() == 0.5 and not rule.paused_before(0)  # nothing arrived yet
    for k in range(10):
        rule.note(k * period)
    assert rule.pause_after_s() == pytest.approx(4 * period / 1e9)
    assert not rule.paused_before(13 * period - 1) and rule.paused_before(13 * period)
    t = 9 * period + 3 * S
    rule.note(t)  # a pause: not a period
    assert rule.pause_after_s() == pytest.approx(4 * period / 1e9)
    for k in range(30):  # the same stamps played at half speed
        rule.note(t + (k + 1) * 2 * period)
    assert rule.pause_after_s() == pytest.approx(8 * period / 1e9)
    for k in range(30):  # at 100 Hz: at least 0.2 s
        rule.note(20 * S + k * 10_000_000)
    assert rule.pause_after_s() == 0.2
    for k in range(31):  # at 2 Hz: at most max_gap (a longer pause restarts the stream anyway)
        rule.note(30 * S + k * S // 2)
    assert rule.pause_after_s() == 1.0
    assert PauseRule(0.7, 1.0).pause_after_s() == 0.7  # set: as set
    assert PauseRule(0.0, 0.0).pause_after_s() == 0.5  # no max_gap: no cap


def test_a_slow_motion_replay_stretches_the_pause_bounds_by_its_speed():
    """A 15 Hz recording replayed at 0.1x without its clock: each frame arrives 0.67 s after the one
    before while max_gap is 0.2 s of stamps. Its frames are no pauses and no gaps: every bound in
    seconds is stretched by 10 (the windows and restarts real time makes); a faster replay keeps the
    real-time bounds; a paused player among the steps does not change the speed; the stamps alone
    (vdepth-bag) are real time; after a stream's first frame alone the speed is unknown and a pause
    ends it only after 5 max_gap."""
    period = 66_666_667
    rule = PauseRule(0.0, 0.2)
    rule.note(0, 5 * S)
    assert rule.ends_after_s() == pytest.approx(1.0) and rule.pause_after_s() == 0.5  # speed unknown: 5 max_gap
    for k in range(1, 10):
        rule.note(k * 10 * period, 5 * S + k * period)
    assert rule.stretch == pytest.approx(10.0)
    assert rule.ends_after_s() == pytest.approx(2.0)  # max_gap: 0.2 s of stamps
    assert rule.pause_after_s() == pytest.approx(2.0)  # 4 of its periods (2.67 s), capped there
    assert not rule.paused_before(10 * period * 10 - 1)
    rule.note(50 * S, 5 * S + 10 * period)  # the player paused for 44 s: the stamps went on
    assert rule.stretch == pytest.approx(10.0)
    assert PauseRule(0.3, 1.0).pause_after_s() == 0.3
    fast, slow, bag = PauseRule(0.0, 1.0), PauseRule(0.3, 1.0), PauseRule(0.0, 1.0)
    for k in range(10):
        fast.note(k * period // 4, k * period)  # 4x
        slow.note(k * 4 * period, k * period)  # 0.25x, pause_flush 0.3 s
        bag.note(k * period)
    assert fast.stretch == 1.0 and fast.ends_after_s() == 1.0 and fast.pause_after_s() == 0.2
    assert slow.pause_after_s() == pytest.approx(1.2) and slow.ends_after_s() == pytest.approx(4.0)
    assert bag.stretch == 1.0 and bag.ends_after_s() == 1.0
    coarse = PauseRule(0.0, 1.0)  # use_sim_time with a /clock at 10 Hz: arrivals on 100 ms ticks, 67 ms apart
    for k in range(30):
        coarse.note((k * period) // 100_000_000 * 100_000_000, k * period)
    assert coarse.stretch < 1.1
    coarse.note(0, 0)  # the player loops: its /clock goes back, the speed is measured anew from here
    assert coarse.speed.known and coarse.stretch < 1.1  # (the loop's first frame: the speed before it)
    rule.note(0, 0)  # the 0.1x replay loops (its stamps and this clock went back)
    assert rule.stretch == pytest.approx(10.0) and rule.ends_after_s() == pytest.approx(2.0)
    # its player, on a loaded machine, sends the loop's second frame late, right before its third: the speed
    # measured before the loop holds until the new timeline has a whole span (one step read 1.2: "paused")
    rule.note(12 * period, period)
    rule.note(13 * period, 2 * period)
    assert rule.stretch == pytest.approx(10.0)
    for k in range(3, 8):
        rule.note(k * 10 * period, k * period)
    assert rule.stretch == pytest.approx(10.0)


def test_a_driver_clock_stepped_forward_is_named_not_a_gap() -> None:
    """A live driver's clock set by NTP mid-stream (+3 s) while its images keep arriving every 66.7 ms: the restart
    was named "gap: 3.067 s without input", and the frames its span would hold were counted lost. The arrival on
    the steady clock tells it from a pause (which takes its time to arrive) and from a fast replay's gap."""
    period = 66_666_667
    assert clock_step_ns(3_066_666_667, period + 2_000_000, period) == 3_066_666_667 - period - 2_000_000
    assert clock_step_ns(3_066_666_667, 3_066_000_000, period) == 0  # a pause: it arrived late too
    assert clock_step_ns(2 * period, period, period) == 0  # one frame lost: no step
    assert clock_step_ns(2_000_000_000, 200_000_000, 6_666_667) == 0  # a 10x replay's 2 s gap arrives 0.2 s later
    assert clock_step_ns(3_000_000_000, period, None) == 0  # (the arrival step not known yet)
    resets = StreamResets(max_gap_ns=1_000_000_000)
    resets.update((48, 64), 0, None)
    reason = resets.update((48, 64), 3_066_666_667, None, clock_step=3_000_000_000)
    assert reason is not None and reason.startswith("clock step: the image stamps jumped 3.000 s forward"), reason
    assert resets.update((48, 64), 6_066_666_667, None) == "gap: 3.000 s without input"
