"""A user's own camera driver meeting the live node, as deployed: the driver (test/deployed_peers.py, publishing
as the real one does), `vdepth-node` and viewers (RViz's QoS) in separate processes, the node stopped with SIGINT.
Each driver's output comes out right, or the node says once why not and what to change, and keeps running.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from test_ros_replay import _diagnostics_during
from test_ros_stream_ends import rig  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.ros]

_RATES = ("input rate [Hz]", "output rate [Hz]", "dropped (queue full)", "lost before the node")


def test_a_realsense_colour_stream_faster_than_inference_is_named_with_one_fix(rig: Any, tmp_path: Path) -> None:  # noqa: F811
    """A RealSense colour stream, 1280x720 rgb8 at 30 Hz, reliable (its driver's default), on a machine whose node keeps
    up with about 12 Hz (here). The queue-full WARN named max_input_rate with a value, but the standing-backlog WARN
    said "inference keeps pace with the camera but not with a backlog (left by a burst of load...)": two causes for
    one. Now each says the camera outpaces inference and gives max_input_rate with a value; /diagnostics says the
    queue is full, with the output rate below the input rate, and no frame is lost before the node."""
    r = rig("    diagnostics_period: 1.0\n")
    played, statuses = _diagnostics_during(r, tmp_path, 12.0, "--size", "1280x720", "--rate", "30", values=_RATES)
    r.interrupt_node()
    log = r.node_log.read_text()
    assert played["sent"] == 360, log
    level, message, values = statuses[-1]
    assert level == 1 and "the queue is full" in message, statuses[-1]
    assert float(values["output rate [Hz]"]) < 0.8 * float(values["input rate [Hz]"]), values
    assert values["lost before the node"] == "0", values
    warned = [line for line in log.splitlines() if "[WARN]" in line and "input queue" in line]
    assert warned and all(
        re.search(r"set max_input_rate below the output rate .*\(e\.g\. [\d.]+", w) for w in warned[1:]
    )
    assert not [w for w in warned if "keeps pace" in w], warned
    assert "[ERROR]" not in log and "Traceback" not in log, log
