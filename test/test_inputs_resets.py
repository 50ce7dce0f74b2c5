"""StreamResets: the ROS-free rule for restarting the stream (shared with vdepth-bag's causal mode)."""

from __future__ import annotations

from vdepth_ros.inputs.resets import StreamResets

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
