"""Each test process takes a ROS domain no other one on this machine holds (conftest.py).

With localhost discovery, test processes that share a domain see each other's topics: a node of one
test took another's camera images, a viewer counted another node's /depth. Two pytest sessions at
once (two clones, a CI runner's parallel jobs, xdist's workers) must never share one, whatever their
pids: before, the domain came from the session's pid alone, and two sessions whose pids agreed modulo
50 took the same domain.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import conftest
import pytest

#: A test process that imports conftest as pytest does, with `getpid`/`getppid` returning the same pid as
#: every other one started so (the pids of concurrent sessions that collided before), prints its domain and
#: holds it until its stdin closes.
_SESSION = """
import os, sys
os.getpid = os.getppid = lambda: 4242
sys.path.insert(0, sys.argv[1])
import conftest
print(os.environ["ROS_DOMAIN_ID"], flush=True)
sys.stdin.read()
"""


def test_concurrent_test_processes_take_distinct_domains_whatever_their_pids() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ROS_DOMAIN_ID", "PYTEST_XDIST_WORKER")}
    here = str(Path(__file__).parent)
    sessions = [
        subprocess.Popen(
            [sys.executable, "-c", _SESSION, here], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(3)
    ]
    try:
        domains = [int(s.stdout.readline()) for s in sessions]
    finally:
        for s in sessions:
            s.stdin.close()
            s.wait(timeout=30)
    mine = int(os.environ["ROS_DOMAIN_ID"])
    assert len({*domains, mine}) == 4, (domains, mine)
    assert all(d in conftest.TEST_DOMAINS for d in [*domains, mine])
    # released at exit: the next process may take them again
    again = subprocess.run(
        [sys.executable, "-c", _SESSION, here], input="", capture_output=True, text=True, env=env, timeout=30
    )
    assert int(again.stdout) in domains


def test_a_domain_fast_dds_has_no_ports_for_is_refused_in_words() -> None:
    """ROS_DOMAIN_ID 233 and above: Fast DDS logged "Calculated port number is too high" and the node's process
    ended with exit status 1 inside rclpy, without a word of its own. Now it refuses to start, naming the variable
    and the range, with the exit status of every other start-up refusal."""
    script = Path(sys.executable).parent / "vdepth-node"
    env = {**os.environ, "ROS_DOMAIN_ID": "240"}
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "cannot start: ROS_DOMAIN_ID=240 is above 232" in done.stderr, done.stderr
    assert "Calculated port number" not in done.stderr + done.stdout


@pytest.mark.parametrize("value", ["-1", "1e3", "robot1"])
def test_a_domain_that_is_not_a_whole_number_is_refused_in_words(value: str) -> None:
    """rcl reads ROS_DOMAIN_ID "-1" as domain 0 and "1e3" as domain 1 (a node meant to be apart joined another
    domain without a word), and a word ended in rclpy's traceback. Each is refused naming the value and the
    range, with exit status 2."""
    script = Path(sys.executable).parent / "vdepth-node"
    env = {**os.environ, "ROS_DOMAIN_ID": value}
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert f"cannot start: ROS_DOMAIN_ID='{value}' is not a whole number" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
