"""Pure helpers of the ROS layer: drop-oldest queue, throttled log, QoS presets, rates, param specs."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Literal

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.qos import ReliabilityPolicy

from vdepth_ros.errors import ConfigError
from vdepth_ros.ros import params as P
from vdepth_ros.ros.diagnostics import LatencyStats, RateMeter, level_for, make_status
from vdepth_ros.ros.qos import qos_profile
from vdepth_ros.ros.worker import DropOldestQueue, ThrottledLog


def test_drop_oldest_queue_counts_and_keeps_newest():
    q: DropOldestQueue[int] = DropOldestQueue(3)
    assert [q.put(i) for i in range(5)] == [False, False, False, True, True]
    assert q.dropped == 2
    assert [q.get(0), q.get(0), q.get(0), q.get(0)] == [2, 3, 4, None]


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


def test_throttled_log_rate_limits_per_key():
    lines: list[str] = []
    log = ThrottledLog(lines.append, period=60)
    assert log("a", "bad a")
    assert not log("a", "bad a")
    assert log("b", "bad b")
    assert lines == ["bad a", "bad b"]
    assert log.count == 3
    log.period = 0
    log("a", "bad a")
    assert lines[-1] == "bad a (1 more since last report)"


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


def test_diagnostic_levels():
    assert level_for(15, 15, 0, False, True) == (DiagnosticStatus.OK, "ok")
    assert level_for(15, 15, 3, False, True)[0] == DiagnosticStatus.WARN
    assert level_for(30, 5, 0, False, True)[0] == DiagnosticStatus.WARN
    assert level_for(0, 0, 0, False, False)[1] == "no input images"
    st = make_status("n", "hw", DiagnosticStatus.OK, "ok", {"rate": 1.23456, "n": 3})
    assert [(kv.key, kv.value) for kv in st.values] == [("rate", "1.235"), ("n", "3")]


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
    assert specs["max_depth"].descriptor().dynamic_typing
    assert specs["sizes"].default == [1, 2]
    assert all(s.group == "pipeline" and not s.dynamic for s in specs.values())
    assert specs["window"].descriptor().integer_range[0].from_value == 2


def test_param_validation_reasons():
    by = {s.name: s for s in P.ROS_PARAMS}
    assert by["queue_size"].validate(0) == "queue_size=0 is below the minimum 1"
    assert "is not one of" in by["output_qos"].validate("fast")
    assert "must be int" in by["queue_size"].validate(2.5)
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


def test_name_clash_is_rejected():
    @dataclasses.dataclass
    class Bad:
        queue_size: int = 3

    with pytest.raises(ConfigError, match="queue_size"):
        P.all_param_specs(Bad)
