"""The offline tools never touch the user's ROS network: reading the node's parameter file (the
bundled one, or `--params`) creates no ROS context, node or DDS participant, so a run on a robot
does not join its ROS domain, and works whatever middleware `RMW_IMPLEMENTATION` names.

Before, the file was read through rclpy (a throw-away node in the user's ROS_DOMAIN_ID), and with
`RMW_IMPLEMENTATION=rmw_cyclonedds_cpp` (a robot's setting, not in this install) rcl ended every
offline run at start with exit code 102 and "Expected RMW implementation identifier ...".
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

BIN = Path(sys.executable).parent


def _frames(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:03d}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return folder


@pytest.mark.parametrize(
    ("tool", "params"), [("vdepth-video", "bundled"), ("vdepth-video", "own"), ("vdepth-bag", "own")]
)
def test_offline_tools_run_under_a_middleware_this_install_lacks(tool: str, params: str, tmp_path: Path) -> None:
    if tool == "vdepth-bag":
        from vdepth_ros.offline.synth import synthetic_frames, write_image_bag

        source = tmp_path / "bag"
        write_image_bag(source, synthetic_frames(3, 48, 64))
    else:
        source = _frames(tmp_path / "frames")
    args = [str(BIN / tool), str(source), "-o", str(tmp_path / "out"), "--no-progress"]
    if params == "own":
        (tmp_path / "p.yaml").write_text("/**:\n  ros__parameters:\n    cloud_stride: 2\n")
        args += ["--params", str(tmp_path / "p.yaml")]
    env = {**os.environ, "RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rcl" not in proc.stderr and "RMW" not in proc.stderr, proc.stderr[-2000:]
    assert "3 frames in, 3 out" in proc.stdout, proc.stdout


def test_reading_a_params_file_creates_no_ros_context(tmp_path: Path) -> None:
    """What every offline tool does with the file (`runner.load_node_params`), in a fresh
    interpreter: rclpy, which would create the context and the node, is never even imported."""
    (tmp_path / "p.yaml").write_text(
        "/**:\n  ros__parameters:\n    window: 8\n/front/depth_node:\n  ros__parameters:\n    window: 16\n"
    )
    code = f"""
        import sys
        from vdepth_ros.offline.runner import load_node_params
        assert load_node_params({str(tmp_path / "p.yaml")!r}, "/front/depth_node")["window"] == 16
        assert load_node_params(None)  # the bundled config/depth.yaml
        assert not [m for m in sys.modules if m.split(".")[0] in ("rclpy", "rmw", "rcl")], "rclpy imported"
        """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
