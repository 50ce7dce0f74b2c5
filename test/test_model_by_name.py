"""`model: vda-small` (the registry's name) once the release is in the model cache: `vdepth-video`,
`vdepth-bag` and the node resolve it to the cached folder and run it.

A tiny VDA in the released key layout is imported (`vdepth-export import`'s code path) into a
temporary `$VDEPTH_MODEL_CACHE` under `vda-small`, where `vdepth-export pull vda-small` puts it.
The `vda` family runs in the `reference` inference mode (`inference: auto`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vdepth_ros.models.vda import VideoDepthAnything
from vdepth_ros.runtime.registry import CACHE_ENV, cached_model_dir, resolve_model

N = 10
pytestmark = pytest.mark.slow  # ~2 min together under load (three processes load the model)


@pytest.fixture(scope="module")
def cache(module_tmp: Path) -> Path:
    from export.import_released import import_released

    root = module_tmp / "cache"
    torch.manual_seed(4)
    tiny = VideoDepthAnything(**VideoDepthAnything.tiny_config()).eval()
    ckpt = root.parent / "video_depth_anything_vits.pth"
    torch.save(tiny.released_state_dict(), ckpt)
    import_released("vda", [ckpt], cached_model_dir("vda-small", root), overrides=VideoDepthAnything.tiny_config())
    return root


@pytest.fixture
def env(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(cache))
    assert resolve_model("vda-small") == str(cache / "vda-small")
    return cache


def _params(tmp_path: Path) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text("/**:\n  ros__parameters:\n    model: vda-small\n    backend: torch\n    scale_source: none\n")
    return p


def test_vdepth_video_runs_the_cached_release(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import cv2

    from vdepth_ros.offline import video as videocli
    from vdepth_ros.offline.synth import synthetic_frames

    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (64, 48))
    for rgb in synthetic_frames(N):
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    args = [str(clip), "-o", str(tmp_path / "out"), "--params", str(_params(tmp_path)), "--no-progress", "--json"]
    assert videocli.main(args) == 0
    assert json.loads(capsys.readouterr().out)["frames_out"] == N


def test_vdepth_bag_runs_the_cached_release(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from rosbags.highlevel import AnyReader

    from vdepth_ros.encodings import image_array_from_fields
    from vdepth_ros.offline import bag as bagcli
    from vdepth_ros.offline.synth import synthetic_frames, write_image_bag

    src = tmp_path / "in"
    write_image_bag(src, synthetic_frames(N), storage="mcap", start_ns=1_000_000_000)
    out = tmp_path / "out"
    assert bagcli.main([str(src), "-o", str(out), "--params", str(_params(tmp_path)), "--no-progress"]) == 0
    assert f"{N} frames in, {N} out" in capsys.readouterr().out
    with AnyReader([out]) as reader:
        msgs = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages() if c.topic == "/disparity"]
    assert len(msgs) == N
    disp = np.stack([image_array_from_fields(m.encoding, m.height, m.width, m.step, m.data) for m in msgs])
    assert np.isfinite(disp).all() and float(disp.std()) > 0  # the model's output, not a constant


@pytest.mark.ros
def test_the_node_starts_with_the_cached_release(env: Path, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "vdepth-node"
    if not script.is_file():
        pytest.skip("vdepth-node console script not installed in this environment (pip install -e .)")
    proc_env = {**os.environ, "OMP_NUM_THREADS": "1", "ROS_LOG_DIR": str(tmp_path / "log")}
    args = [str(script), "--ros-args", "-p", "model:=vda-small", "-p", "backend:=torch"]
    proc = subprocess.Popen(args, env=proc_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "subscribed to" in line:
                break
        assert any("subscribed to" in line for line in lines), "".join(lines)
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        lines.append(rest)
    assert proc.returncode == 0, "".join(lines)
    assert "cannot start" not in "".join(lines)
