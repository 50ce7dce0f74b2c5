"""Pure helpers of the ROS layer: drop-oldest queue, throttled log, QoS presets, rates, param specs."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Literal

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from fakes import RecordingLogger
from rclpy.qos import ReliabilityPolicy

from vdepth_ros import node_params as P
from vdepth_ros.errors import ConfigError
from vdepth_ros.ros.diagnostics import (
    STALE,
    CurrentProblems,
    LatencyStats,
    RateMeter,
    RecentRise,
    StampClock,
    Watchdog,
    WorkerThroughput,
    level_for,
    make_status,
)
from vdepth_ros.ros.params import descriptor
from vdepth_ros.ros.qos import qos_profile
from vdepth_ros.ros.worker import DropOldestQueue, RateLimitedLog, SupervisedWorker


def test_drop_oldest_queue_counts_and_keeps_newest():
    q: DropOldestQueue[int] = DropOldestQueue(3)
    assert [q.put(i) for i in range(5)] == [False, False, False, True, True]
    assert q.dropped == 2
    assert [q.get(0), q.get(0), q.get(0), q.get(0)] == [2, 3, 4, None]


def test_a_standing_backlog_is_drained_and_a_worker_keeping_pace_is_left_alone(monkeypatch):
    """After a burst of load a worker as fast as the camera never catches up: the queue stays full and every
    later frame waits behind it for good (subscriber latency 0.8 s before a 5 s burst, 2.6 s after it,
    `benchmarks/subscriber_latency.py --load 3`). A queue that has not been down to a window's new frames
    (`drain_to`) for `drain_after_s` drops its oldest to that; one that gets there once per window is never
    drained, however long it runs; 0 never drains."""
    import vdepth_ros.ros.worker as worker

    now = [100.0]
    monkeypatch.setattr(worker.time, "monotonic", lambda: now[0])
    q: DropOldestQueue[int] = DropOldestQueue(32, drain_after_s=5.0, drain_to=4)
    item = 0
    for _ in range(200):  # 60 s at 10 Hz in, a window of 4 taken every 0.4 s: the queue goes 0..4 and back
        for _ in range(4):
            now[0] += 0.1
            assert not q.put(item)
            item += 1
        assert [q.get(0) for _ in range(4)] == list(range(item - 4, item))
    assert q.dropped == q.drained == 0
    for _ in range(20):  # a burst of load: 2 s without a window
        now[0] += 0.1
        q.put(item)
        item += 1
    backlog = len(q)
    assert backlog == 20
    drained_at = None
    for step in range(100):  # then the worker keeps pace again, 4 in, 4 out: the backlog stands
        for _ in range(4):
            now[0] += 0.1
            if q.put(item) and drained_at is None:
                drained_at = step
            item += 1
        newest = [q.get(0) for _ in range(4)]
        if drained_at is not None and step > drained_at:
            assert len(q) <= 4 and newest[-1] >= item - 8  # later frames wait behind a window at most
    assert drained_at is not None and q.drained >= backlog - 4 and q.dropped == q.drained
    assert 5.0 <= drained_at * 0.4 + 2.0 <= 5.0 + 0.8  # once it had stood drain_after_s, not before
    never: DropOldestQueue[int] = DropOldestQueue(32, drain_after_s=0.0, drain_to=4)
    for k in range(30):
        now[0] += 1.0
        never.put(k)
    assert never.dropped == 0 and len(never) == 30


def test_drop_oldest_queue_wakes_consumer_and_close():
    q: DropOldestQueue[str] = DropOldestQueue(2)
    got = []
    t = threading.Thread(target=lambda: got.append(q.get(timeout=5)))
    t.start()
    time.sleep(0.05)
    q.put("x")
    t.join(2)
    assert got == ["x"]
    q.close()
    assert q.get(timeout=5) is None  # returns at once after close


def test_rate_limited_log_per_key():
    out = RecordingLogger()
    log = RateLimitedLog(out, period=60)
    assert log.error("a", "bad a")
    assert not log.error("a", "bad a")
    assert log.warning("b", "odd b")
    assert out.lines == [("error", "bad a"), ("warning", "odd b")]
    assert log.errors == 2 and log.last_error == "bad a"
    log.period = 0
    log.error("a", "bad a")
    assert out.lines[-1] == ("error", "bad a (1 more since last report)")


def test_rate_limited_log_never_raises_and_mixes_severities_on_a_real_rclpy_logger(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The issue's sequence: a queue-full warning, then an error, through one helper. rclpy raises
    "Logger severity cannot be changed between calls" when one call line logs at two severities."""
    import rclpy
    from rclpy.node import Node

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        node = Node("log_probe", context=ctx)
        log = RateLimitedLog(node.get_logger(), period=0)
        for _ in range(3):
            assert log.warning("drop", "input queue full")
            assert log.error("input", "dropping input frame")
            assert log.info("note", "camera_info has lens distortion")

        class Broken:
            def error(self, text: str) -> None:
                raise ValueError("Logger severity cannot be changed between calls.")

        log.logger = Broken()
        assert log.error("x", "still reported")  # does not raise: the text goes to stderr
        assert "still reported" in capsys.readouterr().err
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_supervised_worker_survives_any_exception():
    q: DropOldestQueue[int] = DropOldestQueue(10)
    done: list[int] = []
    reported: list[tuple[int, str]] = []

    def process(i: int) -> None:
        if i == 1:
            raise RuntimeError("model exploded")
        if i == 2:
            raise SystemExit(3)  # a bug calling sys.exit in a thread
        if i == 3:
            raise KeyError("bug")
        done.append(i)

    def on_error(i: int, err: BaseException) -> None:
        reported.append((i, type(err).__name__))
        if i == 3:
            raise ValueError("the report itself fails")

    worker = SupervisedWorker(q, process, on_error)
    worker.start()
    for i in range(6):
        q.put(i)
    deadline = time.monotonic() + 10
    while len(done) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert done == [0, 4, 5] and worker.is_alive()
    assert reported == [(1, "RuntimeError"), (2, "SystemExit"), (3, "KeyError")] and worker.errors == 3
    assert worker.join(timeout=5)


def test_watchdog_errors_while_input_arrives_without_output():
    w = Watchdog(2.0)
    assert w.stalled_s(now=0.0) is None  # nothing yet
    for t in (0.0, 1.0, 2.5):
        w.input(now=t)
    assert w.stalled_s(now=2.5) == pytest.approx(2.5)  # first input at 0, nothing published
    w.output(now=2.6)
    assert w.stalled_s(now=3.0) is None  # output resumed
    w.input(now=4.0)
    assert w.stalled_s(now=4.0) is None  # 1.4 s since the output
    w.input(now=4.5)
    assert w.stalled_s(now=4.7) == pytest.approx(2.1)  # images since the output at 2.6, nothing published
    assert w.stalled_s(now=8.0) is None  # input stopped too: "no input", not a stall
    # a camera that paused longer than the timeout: its next window needs its images first, so the
    # silence counts from its first image after the pause (was: from the output before the pause, an
    # ERROR on /diagnostics the moment the camera came back)
    w.output(now=9.0)
    for t in (20.0, 20.5, 21.0):
        w.input(now=t)
        assert w.stalled_s(now=t) is None
    for t in (21.5, 22.0, 22.5):
        w.input(now=t)
    assert w.stalled_s(now=22.5) == pytest.approx(2.5)  # a real stall after the pause is still one
    w.timeout_s = 0
    w.input(now=9.0)
    assert w.stalled_s(now=20.0) is None  # off


def test_watchdog_waits_for_the_next_windows_frames_before_counting_silence():
    """A window publishes nothing until its frames arrived: a recording replayed at 0.05x (a frame
    every 1.33 s) needs 9 s for a window of 8, which a 5 s watchdog called a stall between every two
    outputs. With `wait_frames` (the window less one) the silence counts from the last of them."""
    w = Watchdog(5.0, wait_frames=7)
    for k in range(8):  # the first window's frames: nothing published yet, no stall
        w.input(now=k * 1.33)
        assert w.stalled_s(now=k * 1.33 + 1.0) is None
    for k in range(8, 13):  # images go on, nothing is published: a stall, counted from the window's last frame
        w.input(now=k * 1.33)
    assert w.stalled_s(now=12 * 1.33) == pytest.approx(5 * 1.33)
    w.output(now=12 * 1.33 + 0.3)
    for k in range(13, 19):  # the next output's frames are still arriving
        w.input(now=k * 1.33)
        assert w.stalled_s(now=k * 1.33 + 1.2) is None


def test_qos_presets():
    assert qos_profile("sensor_data", 5).reliability == ReliabilityPolicy.BEST_EFFORT
    assert qos_profile("reliable", 1).reliability == ReliabilityPolicy.RELIABLE
    with pytest.raises(ConfigError, match="not one of"):
        qos_profile("fast", 1)
    with pytest.raises(ConfigError, match="depth must be >= 1"):
        qos_profile("reliable", 0)


def test_rate_meter_and_latency_stats():
    r = RateMeter(window_s=10)
    for k in range(31):
        r.tick(now=100 + k / 15)
    assert r.rate(now=102) == pytest.approx(15, rel=0.02)
    assert r.rate(now=1000) == 0.0
    s = LatencyStats()
    for v in range(1, 101):
        s.add(v / 100)
    summ = s.summary()
    assert summ["median"] == pytest.approx(0.505)
    assert summ["p95"] == pytest.approx(0.9505)


def test_worker_throughput_is_frames_per_busy_second_of_whole_windows_the_fastest_recent() -> None:
    """max_input_rate's advice: a window's cheap frames count with the one that ran its inference; a stream's slow
    first windows (start-up) no longer set the value once a faster one has run; nothing before a window ends."""
    meter = WorkerThroughput(recent=3)
    for _ in range(7):
        meter.add(0.01, window_ended=False)
    assert meter.rate() == 0.0 and meter.windows == 0
    meter.add(0.93, window_ended=True)  # 8 frames in 1.0 s of work (a slow first window)
    assert meter.rate() == pytest.approx(8.0) and meter.windows == 1
    for _ in range(6):
        meter.add(0.01, window_ended=False)
    meter.add(0.44, window_ended=True)  # 7 frames in 0.5 s
    assert meter.rate() == pytest.approx(14.0) and meter.windows == 2
    for _ in range(3):  # only the last 3 count: a worker that got slower (more load) is told its new rate
        meter.add(1.0, window_ended=True)
    assert meter.rate() == pytest.approx(1.0) and meter.windows == 3


def test_rate_meter_reads_slow_and_bursty_streams_at_their_rate():
    """A 0.3 Hz camera has fewer than two images in the 5 s window half the time: its rate read 0 then; a window's
    outputs (8 a few ms apart every 26.7 s) read 8 over the seconds since the burst (up to hundreds of Hz)."""
    slow = RateMeter(window_s=5)
    for k in range(6):
        slow.tick(now=100 + k / 0.3)
    for now in np.linspace(100 + 5 / 0.3, 100 + 5 / 0.3 + 3.3, 12):
        assert slow.rate(now=now) == pytest.approx(0.3), now
    assert slow.rate(now=100 + 5 / 0.3 + 6.7) == 0.0  # nothing for two steps: stopped, "no input"
    bursts = RateMeter(window_s=5, min_events=8)
    for b in range(4):
        for k in range(8):
            bursts.tick(now=100 + b * 8 / 0.3 + k * 0.002)
    for now in np.linspace(100 + 3 * 8 / 0.3 + 0.1, 100 + 4 * 8 / 0.3, 12):
        assert bursts.rate(now=now) == pytest.approx(0.3, rel=0.01), now
    assert bursts.rate(now=100 + 5 * 8 / 0.3 - 0.1) == pytest.approx(8 / (2 * 8 / 0.3), rel=0.01)  # slowing
    assert bursts.rate(now=100 + 3 * 8 / 0.3 + 2 * 8 / 0.3 + 1) == 0.0  # stopped
    one = RateMeter(window_s=5)
    one.tick(now=100)
    assert one.rate(now=101) == 0.0


def test_diagnostic_levels():
    assert level_for(15, 15, 0, False, True) == (DiagnosticStatus.OK, "ok")
    assert level_for(15, 15, 3, False, True)[0] == DiagnosticStatus.WARN
    assert level_for(30, 5, 0, False, True)[0] == DiagnosticStatus.WARN
    # a replay at 0.05x (0.75 Hz): outputs come 7 at a time every 9 s, a 5 s rate window sees 0 or 7
    assert level_for(0.75, 0.0, 0, False, True, compare_from_hz=3.2) == (DiagnosticStatus.OK, "ok")
    assert level_for(30, 5, 0, False, True, compare_from_hz=3.2)[0] == DiagnosticStatus.WARN
    assert level_for(0, 0, 0, False, False)[1] == "no input images"
    level, message = level_for(15, 0, 0, False, True, stalled_s=6.0, last_error="dropping input frame: bad")
    assert level == DiagnosticStatus.ERROR and "watchdog_timeout" in message and "dropping input frame" in message
    assert "across-processes" in level_for(15, 15, 0, False, True, lost_recent=4)[1]
    # the message names the cause, not numbers that change at every tick (a diagnostic_aggregator, rqt_robot_monitor:
    # one WARN with one text while it lasts); the numbers are in the values
    assert level_for(15, 0, 0, False, True, stalled_s=6.0) == level_for(15, 0, 0, False, True, stalled_s=7.5)
    assert "/points" in level_for(15, 15, 0, False, True, dropped_outputs="/points")[1]
    for counts in ({"drops_recent": 3}, {"lost_recent": 4}):
        more = {k: v + 5 for k, v in counts.items()}
        assert level_for(15, 15, **{"drops_recent": 0, **counts}, degenerate_fit=False, receiving=True) == level_for(
            15, 15, **{"drops_recent": 0, **more}, degenerate_fit=False, receiving=True
        )
    st = make_status("n", "hw", DiagnosticStatus.OK, "ok", {"rate": 1.23456, "n": 3})
    assert [(kv.key, kv.value) for kv in st.values] == [("rate", "1.235"), ("n", "3")]
    # a cause that holds (`CurrentProblems`): at least WARN, named after whatever else the status says
    assert level_for(15, 15, 0, False, True, problems=["no /clock"]) == (DiagnosticStatus.WARN, "no /clock")
    assert level_for(0, 0, 0, False, False, problems=["a", "b"]) == (DiagnosticStatus.WARN, "no input images; a; b")
    level, message = level_for(15, 0, 0, False, True, stalled_s=6.0, problems=["a"])
    assert level == DiagnosticStatus.ERROR and message.endswith("; a")


def test_current_problems_log_each_cause_once_and_hold_it_until_its_check_no_longer_finds_it() -> None:
    logged: list[tuple[str, str]] = []
    problems = CurrentProblems(lambda key, message: logged.append((key, message)))
    problems.report("stamps", {"zero": ("stamped 0", "camera_info stamped 0: fix it")})
    problems.report("types", {"/a x": ("a is x", "'/a' is x: fix"), "/b y": ("b is y", "'/b' is y: fix")})
    problems.report("stamps", {"zero": ("stamped 0", "camera_info stamped 0: fix it")})  # still: not logged again
    assert logged == [
        ("stamps:zero", "camera_info stamped 0: fix it"),
        ("types:/a x", "'/a' is x: fix"),
        ("types:/b y", "'/b' is y: fix"),
    ]
    assert problems.current() == ["stamped 0", "a is x", "b is y"] and problems.found("types") == {"/a x", "/b y"}
    problems.report("types", {"/b y": ("b is y", "")})  # /a's publisher gone
    problems.report("stamps")  # pairs again
    assert problems.current() == ["b is y"] and len(logged) == 3
    problems.report("stamps", {"zero": ("stamped 0", "again")})  # back: on /diagnostics, the log said it once
    assert problems.current() == ["b is y", "stamped 0"] and len(logged) == 3
    problems.restart()  # a new activation: nothing holds, each is logged again when found
    assert problems.current() == []
    problems.report("stamps", {"zero": ("stamped 0", "again")})
    assert logged[-1] == ("stamps:zero", "again")


def test_events_hold_a_warn_for_a_while_then_stay_counted_and_startup_warnings_outlive_an_activation() -> None:
    """A stream restart or a frame dropped with an error was only in the log (a WARN every 5 s, /diagnostics OK);
    a start-up warning (parameters ignored, a model's fallback) too. Now an event names itself for `hold_s`, then
    stays in the counts and as the last event with its age; a start-up warning holds until the next configure."""
    problems = CurrentProblems(lambda key, message: None, hold_s=10.0)
    problems.startup("unknown parameters", "unknown parameter 'widnow'")
    problems.event("restart", "stream restarted (gap)", now=100.0)
    problems.event("restart", "stream restarted (gap)", now=104.0)
    problems.event("input", "dropping input frames (16UC1)", now=105.0)
    assert problems.current(now=106.0) == [
        "unknown parameter 'widnow'",
        "dropping input frames (16UC1)",
        "stream restarted (gap)",
    ]
    assert problems.current(now=114.5) == ["unknown parameter 'widnow'", "dropping input frames (16UC1)"]
    problems.restart()  # an activation: conditions go, the configuration's warnings and the counts stay
    assert problems.current(now=120.0) == ["unknown parameter 'widnow'"]
    assert problems.event_values(now=120.0) == {
        "events": "input 1, restart 2",
        "last event": "dropping input frames (16UC1)",
        "last event age [s]": 15.0,
    }
    fresh = CurrentProblems(lambda key, message: None).event_values()
    assert fresh == {"events": "none", "last event": "none", "last event age [s]": "none"}  # (the same keys)


def test_a_cause_found_on_the_images_is_marked_stale_once_the_input_stops() -> None:
    """A cause the worker found on the last images stayed on /diagnostics as if it held now after the camera
    stopped; now it says it is as of the last image while the input is stopped."""
    problems = CurrentProblems(lambda key, message: None)
    problems.report("stamp-clock", {"": ("stamps 500 s behind", "")}, on_images=True)
    problems.report("qos", {"x": ("incompatible QoS", "")})
    assert problems.current() == ["stamps 500 s behind", "incompatible QoS"]
    assert problems.current(input_stopped=True) == ["stamps 500 s behind" + STALE, "incompatible QoS"]


def test_a_recent_rise_holds_while_a_count_keeps_rising_and_ends_hold_s_after_the_last() -> None:
    rise = RecentRise(total=5, hold_s=10.0)
    assert rise.update(5, now=100.0) == 0  # (what came before is not recent)
    assert rise.update(7, now=101.0) == 2
    assert rise.update(7, now=105.0) == 2  # between two drops: still WARN, the same text
    assert rise.update(8, now=109.0) == 3
    assert rise.update(8, now=118.9) == 3
    assert rise.update(8, now=119.0) == 0
    assert rise.update(9, now=130.0) == 1  # a new hold counts from its start


def test_a_failing_idle_hook_is_one_rate_limited_error_in_the_log_not_a_logging_failure(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """`on_idle` runs every `idle_s`; one that raised (a bug outside its own reporting) was printed on stderr
    on every call, as "... (logging failed: <the hook's error>)" although logging had not failed, and not in
    the node's log (/rosout). Now it is an error in the log (`python_logs` forwards it to the node's), once per
    5 s, counted in the worker's errors; the worker goes on."""
    q: DropOldestQueue[int] = DropOldestQueue(4)
    done: list[int] = []

    def idle() -> None:
        raise RuntimeError("idle bug")

    worker = SupervisedWorker(q, done.append, lambda i, e: None, on_idle=idle, idle_s=0.01)
    with caplog.at_level("ERROR", logger="vdepth_ros.ros.worker"):
        worker.start()
        deadline = time.monotonic() + 10
        while worker.errors < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        q.put(7)
        while not done and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.join(timeout=5)
    assert done == [7] and worker.errors >= 5
    said = [r.getMessage() for r in caplog.records if r.name == "vdepth_ros.ros.worker"]
    assert len(said) == 1 and "on_idle: RuntimeError: idle bug" in said[0], said
    assert "logging failed" not in capsys.readouterr().err


@dataclasses.dataclass
class _Cfg:
    model: str = "default"
    window: int = dataclasses.field(default=16, metadata={"min": 2, "description": "frames per window"})
    align: Literal["chain_ls", "none"] = "chain_ls"
    max_depth: float | None = None
    sizes: tuple[int, ...] = (1, 2)


def test_pipeline_specs_from_dataclass():
    specs = {s.name: s for s in P.pipeline_param_specs(_Cfg)}
    assert specs["window"].min == 2
    assert specs["window"].description == "frames per window"
    assert specs["align"].choices == ("chain_ls", "none")
    assert specs["max_depth"].default is None
    assert descriptor(specs["max_depth"]).dynamic_typing
    assert specs["sizes"].default == [1, 2]
    assert all(s.group == "pipeline" and not s.dynamic for s in specs.values())
    assert descriptor(specs["window"]).integer_range[0].from_value == 2


def test_param_validation_reasons():
    by = {s.name: s for s in P.ROS_PARAMS}
    assert by["queue_size"].validate(0) == "queue_size=0 is below the minimum 1"
    assert "is not one of" in by["output_qos"].validate("fast")
    assert by["queue_size"].validate(2.5) == "queue_size must be an integer, got 2.5"
    assert "got True" in by["queue_size"].validate(True)  # a bool is no integer
    assert by["sync_slop"].validate(1) is None  # ints are fine for doubles
    with pytest.raises(ConfigError, match="input_qos"):
        P.validate_ros_params({"input_qos": "nope"})


def test_runtime_changes():
    specs = {s.name: s for s in P.all_param_specs(_Cfg)}
    assert "restart required" in P.runtime_change_error("model", "a", "b", specs)
    assert "the engine (model, backend, precision, threads, GPU)" in P.runtime_change_error("model", "a", "b", specs)
    assert "restart required" in P.runtime_change_error("input_qos", "reliable", "sensor_data", specs)
    assert P.runtime_change_error("publish_colormap", False, True, specs) is None
    assert P.runtime_change_error("use_sim_time", False, True, specs) is None
    assert P.runtime_change_error("model", "a", "a", specs) is None


def test_every_parameters_example_is_a_value_it_takes():
    """The example a refused `ros2 param set` names (`set_value_error`) is one the parameter takes, as
    `ros2 param set` reads it (YAML), for every parameter of the node."""
    import yaml

    for spec in P.node_param_specs():
        assert spec.example is not None, spec.name
        value = spec.coerce(yaml.safe_load(spec.example))
        assert spec.validate(value) is None, (spec.name, spec.example, spec.validate(value))


def test_name_clash_is_rejected():
    @dataclasses.dataclass
    class Bad:
        queue_size: int = 3

    with pytest.raises(ConfigError, match="queue_size"):
        P.all_param_specs(Bad)


@pytest.mark.parametrize(
    ("remaps", "namespace", "image_rect"),
    [
        ([], None, "/depth/image_rect"),
        (["depth:=/front_cam/depth"], None, "/front_cam/depth/image_rect"),  # follows depth, as its camera_info
        ([], "/robot", "/robot/depth/image_rect"),
        (["depth/camera_info:=/cam/depth/camera_info"], None, "/cam/depth/image_rect"),  # beside the camera_info
        (["depth/camera_info:=/cam/info"], None, "/depth/image_rect"),  # no camera_info name: beside depth
        (["depth/image_rect:=/x/y"], None, "/x/y"),  # remapped itself
        (["depth:=/cam/depth/image_rect", "depth/camera_info:=/cam/depth/camera_info"], None, None),  # depth is there
    ],
)
def test_depth_image_rect_goes_where_image_transport_looks_for_the_image_of_depth_camera_info(
    remaps: list[str], namespace: str | None, image_rect: str | None
) -> None:
    """image_transport takes the camera_info of an image topic from its parent namespace: the node's depth/image_rect
    is the image of wherever its depth/camera_info goes, and is left out where depth itself is that image (else the
    one topic would carry every depth image twice)."""
    import rclpy
    from rclpy.node import Node

    from vdepth_ros.ros.outputs import output_topic, pair_is_needed

    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=["--ros-args", *(a for r in remaps for a in ("-r", r))] if remaps else None)
    try:
        node = Node("depth_node", namespace=namespace, context=ctx)
        assert pair_is_needed(node) == (image_rect is not None)
        if image_rect is not None:
            assert output_topic(node, "depth/image_rect") == image_rect
            info = output_topic(node, "depth/camera_info")
            if info.endswith("/camera_info") and not any(r.startswith("depth/image_rect:=") for r in remaps):
                assert info.rpartition("/")[0] == image_rect.rpartition("/")[0]  # the pair
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_stamps_are_on_another_clock_only_beyond_a_transfer_delay() -> None:
    """A network camera's half-second transfer, a few late images after a stall, or two machines' clocks a few ms
    apart keep the latency from the stamps; a device clock seconds off (either way) takes it from arrival."""
    s = 1_000_000_000

    def clock(delays_s: list[float]) -> StampClock:
        c = StampClock()
        for k, d in enumerate(delays_s):
            c.note(100 * s + k * s // 10 + round(d * s), 100 * s + k * s // 10)
        return c

    assert StampClock().offset_ns() is None and StampClock().delay_ns() is None  # (no image yet)
    assert clock([0.5] * 20).offset_ns() is None  # a slow transfer, on the node's clock
    assert clock([-0.05] * 20).offset_ns() is None  # another machine's clock, 50 ms ahead
    assert clock([0.01] * 20 + [3.0] * 10).offset_ns() is None  # a stall of 10 images: the median holds
    assert clock([1.5] * 20).offset_ns() == round(1.5 * s)  # a device clock 1.5 s behind
    assert clock([-5.0] * 20).offset_ns() == -5 * s  # ... or 5 s ahead
    assert clock([-5.0] * 20 + [0.01] * 31).offset_ns() is None  # the driver restamped with ROS time


def test_this_test_file_has_a_ros_domain_no_other_process_holds() -> None:
    """conftest's `_ros_domain_of_its_own`: this file's domain is not the worker's own (whose earlier files may have
    left a node in it) and its reservation is held, so no other test process takes it meanwhile."""
    import fcntl
    import os
    import sys

    conftest = sys.modules["conftest"]  # (the one pytest loaded: importing it again would reserve another domain)
    domain = int(os.environ["ROS_DOMAIN_ID"])
    assert domain in conftest.TEST_DOMAINS and domain != conftest.WORKER_DOMAIN
    fd = os.open(conftest.DOMAIN_LOCKS / f"{domain}.lock", os.O_RDONLY)
    try:
        with pytest.raises(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
