"""benchmarks/node_latency.py stays runnable (a short run; the real numbers are in docs/node.md)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.ros,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:rclpy.event_handler"),
]


def test_node_latency_benchmark_short_run(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("node_latency", repo_root / "benchmarks" / "node_latency.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--frames", "40", "--rates", "15", "--burst", "40", "--engine", "luminance", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (r,) = report["results"]
    assert r["outputs_received"] > 0 and r["dropped"] == 0
    assert r["latency_median_s"] > 0
    assert report["burst_100hz"]["max_queue"] <= report["burst_100hz"]["queue_size"]
    assert report["burst_100hz"]["diagnostics_received"] >= 1
    assert set(report["goals"]["15Hz"]) == {"keeps_up", "latency_budget_s", "latency_ok"}
