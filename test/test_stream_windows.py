"""Window schedules against the papers' released inference code (DVD demo, VDA/GemDepth)."""

from __future__ import annotations

import itertools

import pytest

from vdepth_ros.errors import ConfigError
from vdepth_ros.stream.windows import WindowScheduler, interp_length, pad_for_rule

VDA_KF = (0, 12, 24, 25, 26, 27, 28, 29, 30, 31)


def dvd() -> WindowScheduler:
    return WindowScheduler(45, 9, frames_rule="4n+1")


def vda() -> WindowScheduler:
    return WindowScheduler(32, 10, schedule="keyframe", keyframes=VDA_KF)


def _check_cover(windows, n):
    """Every frame is output as new exactly once, in order."""
    new = [f for w in windows for f in w.new_frames]
    assert new == list(range(n))


@pytest.mark.parametrize("n", [1, 44, 45, 46, 3 * 45 + 7])
def test_dvd_schedule_matches_demo_get_window_index(n):
    w_len, ov = 45, 9
    windows = dvd().plan(n)
    # DVD demo: starts 0, 36, 72, ...; the last window moved back to [T-W, T) when T > W.
    expected = []
    start = 0
    while start + w_len < n:
        expected.append((start, start + w_len))
        start += w_len - ov
    expected.append((max(0, n - w_len), n) if expected else (0, n))
    assert [(w.slots[0], w.slots[-1] + 1) for w in windows] == expected
    for w in windows:
        assert (len(w.slots) + w.pad - 1) % 4 == 0  # 4n+1 after padding
        assert w.slots == tuple(range(w.slots[0], w.slots[-1] + 1))
    for prev, w in itertools.pairwise(windows):
        assert w.overlap == prev.slots[-1] + 1 - w.slots[0]  # the demo's real_overlap
    # Built at end of stream (flush) unless the stream ended exactly at a window boundary.
    assert windows[-1].is_last == (n % 36 != 45 % 36 or n < 45)
    assert windows[-1].slots[-1] + 1 == n
    _check_cover(windows, n)


def test_dvd_specific_lengths():
    assert [(w.slots[0], len(w.slots), w.pad) for w in dvd().plan(1)] == [(0, 1, 0)]
    assert [(w.slots[0], len(w.slots), w.pad) for w in dvd().plan(44)] == [(0, 44, 1)]
    w46 = dvd().plan(46)
    assert [(w.slots[0], len(w.slots), w.overlap) for w in w46] == [(0, 45, 0), (1, 45, 44)]
    w142 = dvd().plan(142)
    assert [(w.slots[0], w.overlap) for w in w142] == [(0, 0), (36, 9), (72, 9), (97, 20)]


@pytest.mark.parametrize("n", [1, 31, 32, 33, 3 * 32 + 7])
def test_vda_keyframe_schedule(n):
    windows = vda().plan(n)
    first = windows[0]
    assert first.n_context == 0
    assert first.slots[: min(n, 32)] == tuple(range(min(n, 32)))
    for k, w in enumerate(windows[1:], start=1):
        # VDA: slot 0 = frame 0, slot 1 = frame 22k - 10, slots 2..9 = frames 22k+2 .. 22k+9.
        assert w.n_context == 2 and w.overlap == 8
        assert w.slots[0] == 0
        assert w.slots[1] == 22 * k - 10
        assert w.slots[2:10] == tuple(range(22 * k + 2, 22 * k + 10))
        assert len(w.slots) + w.pad == 32  # padded like VDA pads the video
    _check_cover(windows, n)


def test_vda_lengths_and_padding():
    assert [(len(w.slots), w.pad) for w in vda().plan(1)] == [(1, 31)]
    assert [(len(w.slots), w.pad) for w in vda().plan(31)] == [(31, 1)]
    assert [(len(w.slots), w.pad, w.is_last) for w in vda().plan(32)] == [(32, 0, False)]
    w33 = vda().plan(33)
    assert w33[1].slots == (0, 12, *range(24, 33)) and w33[1].pad == 21


def test_keyframe_memory_presets():
    # VDA lower-memory preset: 16 / 6 / [0,6,12..15] / interp 4.
    s = WindowScheduler(16, 6, schedule="keyframe", keyframes=(0, 6, 12, 13, 14, 15))
    assert (s.interp, s.n_context, s.stride) == (4, 2, 10)
    w = s.plan(40)
    assert w[1].slots[:2] == (0, 6) and w[1].slots[2:6] == (12, 13, 14, 15)


def test_interp_and_pad_rules():
    assert interp_length(32, VDA_KF) == 8
    assert [pad_for_rule(n, "4n+1") for n in (1, 2, 3, 4, 5, 45)] == [0, 3, 2, 1, 0, 0]
    assert pad_for_rule(7, "any") == 0


def test_low_latency_first_window():
    s = WindowScheduler(45, 9, frames_rule="4n+1", first_window=29)
    ws = s.plan(120)
    assert len(ws[0].slots) == 29
    assert ws[1].slots[0] == 29 - 9 and len(ws[1].slots) == 45
    _check_cover(ws, 120)
    k = WindowScheduler(32, 10, schedule="keyframe", keyframes=VDA_KF, first_window=21)
    kw = k.plan(100)
    assert len(kw[0].slots) == 21
    assert kw[1].slots[0] == 0 and kw[1].slots[1] == 21 - 20  # same spacing from the window end
    _check_cover(kw, 100)


def test_causal_emits_window_when_complete_and_needed_frames_are_bounded():
    s = dvd()
    got = []
    for i in range(200):
        s.add_frame()
        while (w := s.next_window()) is not None:
            got.append((i, w))
        assert len(s.needed_frames()) <= 45
    assert [i for i, _ in got] == [44, 80, 116, 152, 188]
    k = vda()
    for _ in range(100):
        k.add_frame()
        while k.next_window() is not None:
            pass
        assert 0 in k.needed_frames() or k.n_frames < 32  # the persistent anchor stays
        assert len(k.needed_frames()) <= 32


def test_anchor_refresh_changes_context():
    s = vda()
    for _ in range(54):
        s.add_frame()
    assert s.next_window() is not None and s.next_window() is not None
    s.set_anchor(40)
    for _ in range(22):
        s.add_frame()
    w = s.next_window()
    assert w is not None and w.slots[0] == 40


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": 0, "overlap": 0}, "window"),
        ({"window": 8, "overlap": 8}, "overlap"),
        ({"window": 44, "overlap": 9, "frames_rule": "4n+1"}, "4n\\+1"),
        ({"window": 32, "overlap": 10, "schedule": "keyframe", "keyframes": (1, 12)}, "keyframes"),
        ({"window": 32, "overlap": 2, "schedule": "keyframe", "keyframes": (30, 31)}, "keyframes"),
        ({"window": 32, "overlap": 10, "first_window": 5}, "first_window"),
    ],
)
def test_bad_schedules_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        WindowScheduler(**kwargs)


def test_anchor_keyframes_give_vdas_layout_at_the_same_model_cost():
    from vdepth_ros.stream.windows import anchor_keyframes

    assert anchor_keyframes(32, 10) == (0, 12, 24, 25, 26, 27, 28, 29, 30, 31)  # VDA's own
    assert anchor_keyframes(8, 4) == (0, 3, 6, 7)  # the bundled model's preset
    assert anchor_keyframes(45, 9) == (0, 17, *range(38, 45))
    assert anchor_keyframes(4, 2) == (0, 3)
    with pytest.raises(ConfigError, match="anchor slots"):
        anchor_keyframes(8, 1)
    released = WindowScheduler(45, 9, frames_rule="4n+1").plan(1000)
    anchored = WindowScheduler(45, 9, schedule="keyframe", keyframes=anchor_keyframes(45, 9), frames_rule="4n+1")
    windows = anchored.plan(1000)
    assert abs(len(windows) - len(released)) <= 1  # same stride: the same number of model calls
    assert all(w.slots[0] == 0 for w in windows)  # every window holds the anchor frame


def test_graph_alignment_gives_chain_families_anchor_slots_unless_disabled():
    from fakes import LuminanceEngine

    from vdepth_ros.config import PipelineConfig
    from vdepth_ros.pipeline import DepthPipeline

    def schedule(**cfg):
        engine = LuminanceEngine(frames=9, overlap=3, frames_rule="4n+1", alignment="chain_ls")
        return DepthPipeline(PipelineConfig(**cfg), engine).schedule

    assert schedule()["schedule"] == "chain"  # the family's default alignment keeps its layout
    graph = schedule(alignment="graph")
    assert graph["schedule"] == "keyframe" and graph["keyframes"] == [0, 3, 8] and graph["stride"] == 6
    assert schedule(alignment="graph", anchor_slots=False)["schedule"] == "chain"
