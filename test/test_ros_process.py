"""Cross-process smoke test: the installed `vdepth-node` console script with `--ros-args --params-file`.

The child loads a tiny ONNX "luminance" model written here (no default model is needed), runs in a
namespace matched by the params file's `/**:` wildcard, and must publish at least one output
(reliable QoS both ways: best-effort large images are lossy across processes on this platform).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from vdepth_ros.ros import conversions as conv
from vdepth_ros.ros.qos import qos_profile
from vdepth_ros.runtime.spec import InputSpec

pytestmark = pytest.mark.ros


def write_tiny_onnx(folder: Path, frames: int = 4, height: int = 48, width: int = 64) -> Path:
    """`model.onnx` + `model.onnx.json`: disparity = 0.1 + luminance, fixed (1, T, 3, H, W)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")

    class Lum(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 0.1 + 0.299 * x[:, :, 0] + 0.587 * x[:, :, 1] + 0.114 * x[:, :, 2]

    path = folder / "model.onnx"
    with warnings.catch_warnings():  # the legacy exporter is deprecated but fast (0.3 s vs ~5 s)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            Lum(),
            (torch.zeros(1, frames, 3, height, width),),
            str(path),
            input_names=["frames"],
            output_names=["disparity"],
            opset_version=17,
            dynamo=False,
        )
    InputSpec(family="fake", frames=frames, height=height, width=width, window=frames, overlap=1).save(
        folder / "model.onnx.json"
    )
    return path


def test_vdepth_node_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "vdepth-node"
    if not script.is_file():
        pytest.skip("vdepth-node console script not installed in this environment (pip install -e .)")
    model = write_tiny_onnx(tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n"
        f"    model: {str(model)!r}\n    backend: onnxruntime\n    input_qos: reliable\n    scale_source: range\n"
        "/**/depth_node:\n  ros__parameters:\n    queue_size: 64\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            str(script),
            "--ros-args",
            "--params-file",
            str(params),
            "-r",
            "__ns:=/robot7",
            "-r",
            "image:=/cam/image",
            "-r",
            "camera_info:=/cam/camera_info",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    peer = Node("smoke_peer", context=ctx)
    got: dict[str, list] = {"depth": [], "points": []}
    rel = qos_profile("reliable", 10)
    peer.create_subscription(Image, "/robot7/depth", got["depth"].append, rel)
    peer.create_subscription(PointCloud2, "/robot7/points", got["points"].append, rel)
    pub = peer.create_publisher(Image, "/cam/image", rel)
    ipub = peer.create_publisher(CameraInfo, "/cam/camera_info", rel)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(peer)
    rng = np.random.default_rng(0)
    try:
        deadline = time.monotonic() + 90
        k = 0
        while time.monotonic() < deadline and not (got["depth"] and got["points"]):
            assert proc.poll() is None, f"vdepth-node exited early:\n{proc.stdout.read()}"
            h = Header(stamp=conv.ns_to_stamp(1_000_000_000 + k * 50_000_000), frame_id="cam_optical")
            pub.publish(conv.image_msg(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), "rgb8", h))
            ipub.publish(CameraInfo(header=h, width=160, height=120, k=[100.0, 0, 79.5, 0, 100.0, 59.5, 0, 0, 1]))
            k += 1
            end = time.monotonic() + 0.05
            while time.monotonic() < end:
                ex.spin_once(timeout_sec=0.01)
        assert got["depth"], "no /robot7/depth received from the vdepth-node process"
        d = got["depth"][0]
        assert (d.encoding, d.height, d.width, d.header.frame_id) == ("32FC1", 48, 64, "cam_optical")
        assert np.isfinite(conv.image_array(d)).all()
        assert got["points"][0].height * got["points"][0].width == 48 * 64
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        ex.shutdown()
        peer.destroy_node()
        rclpy.shutdown(context=ctx)
    assert "/robot7/depth" in out  # the startup line names the resolved topics
    assert proc.returncode == 0, out


def test_vdepth_node_rejects_bad_params_file(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "vdepth-node"
    if not script.is_file():
        pytest.skip("vdepth-node console script not installed")
    params = tmp_path / "bad.yaml"
    params.write_text("/**:\n  ros__parameters:\n    output_qos: fastest\n")
    res = subprocess.run(
        [str(script), "--ros-args", "--params-file", str(params)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert res.returncode == 2
    assert "invalid configuration" in res.stderr and "output_qos" in res.stderr


def test_main_usage(capsys: pytest.CaptureFixture[str]) -> None:
    from vdepth_ros.ros.node import main

    assert main(["vdepth-node", "--help"]) == 0
    assert "--params-file" in capsys.readouterr().out
    assert main(["vdepth-node", "--bogus", "--ros-args", "-p", "queue_size:=3"]) == 2
    assert "unrecognized arguments ['--bogus']" in capsys.readouterr().err
