"""A recording replayed under `use_sim_time`, as users do: a bag player publishing /clock and the
images, `vdepth-node` with `use_sim_time: true` and a viewer with RViz's QoS, in three processes
(docs/node.md, "Pauses and the end of the input").

Under `use_sim_time` the node's clock is the player's /clock, so when the player ends the clock
stops: a pause on that clock never comes, and the frames the node held for its next window came out
only when the node was stopped, or never (a node killed, a launch system's patience run out).
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from test_ros_stream_ends import rig  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.ros]

SIM_TIME = "    use_sim_time: true\n"


def _wait_quiet(r: Any, seconds: float) -> None:
    """Let the node run `seconds` of wall time after the player ended (it must not have exited)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert r.node.poll() is None, r.node_log.read_text()
        time.sleep(0.2)


@pytest.mark.parametrize("publish", ["default", "final"])
def test_a_bag_ending_under_sim_time_publishes_its_last_frames_while_the_node_runs(
    rig: Any,  # noqa: F811
    publish: str,
) -> None:
    """45 frames at 15 Hz with /clock at 40 Hz, then the player exits (the end of the bag): windows end
    at frames 8, 15, ..., 43, so 2 frames wait for a window (with `publish: final` the 1 of the
    overlap too). Before: the clock stopped with the player, no pause ever came on it, and those frames
    reached the viewer only after the node was stopped. Now they arrive within a few seconds of the
    bag's end, while the node runs, each once and in order."""
    r = rig(SIM_TIME + ("    publish: final\n" if publish == "final" else ""))
    played = r.camera(3.0, "--clock", "40")
    assert played["sent"] == 45
    _wait_quiet(r, 6.0)
    stopped = time.monotonic()
    r.interrupt_node()
    got, log = r.received(), r.node_log.read_text()
    received = int(re.search(r"stopped: (\d+) images received", log).group(1))
    stamps = [s for s, _ in got]
    assert received >= 44 and stamps == sorted(set(stamps)) and len(stamps) == received, log
    late = [s for s, t in got if t >= stopped]
    assert not late, (late, log)
    assert "[ERROR]" not in log and "Traceback" not in log, log


def test_a_paused_player_under_sim_time_is_no_end(rig: Any) -> None:  # noqa: F811
    """A player paused for 3 s (its /clock held, still published, the stamps go on where they stopped)
    is no end and no pause of the stream: no early window, no restart, every frame published once."""
    r = rig(SIM_TIME)
    played = r.camera(4.0, "--clock", "40", "--pause-after", "30", "--pause", "3.0", "--hold")
    r.interrupt_node()
    got, log = r.received(), r.node_log.read_text()
    stamps = [s for s, _ in got]
    assert played["sent"] == 60 and stamps == sorted(set(stamps)) and len(stamps) >= 59, log
    during = log.split("stopped:")[0]
    assert "no image for" not in during and "restarting the depth stream" not in during, log
    assert "[ERROR]" not in log and "Traceback" not in log, log
