"""A CLI's stdout carries only its own output (`--json`, the eval table), whatever the libraries it
runs write there.

ONNX Runtime prints its execution-provider fallback ("EP Error ... Falling back to
['CPUExecutionProvider'] and retrying.") with Python's `print`, and native libraries (ONNX Runtime,
TensorRT, torch, OpenCV) write to file descriptor 1 directly or through C stdio's buffer, flushed
whenever the process exits. Any of those in the middle of `vdepth-bag --json > summary.json` made
the file unreadable. Each tool is run here as the user runs it, in its own process, with libraries
that write to stdout in each of these ways while the tool works; stdout must then parse.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from fakes import write_tiny_onnx

#: what the fake libraries write (none of it may reach stdout)
NOISE = "NOISE-FROM-A-LIBRARY"


def run_noisy(entry: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`entry` (`module:function`, a console script's target) run with `args` in its own process, where
    ONNX Runtime's sessions (created and run) and OpenCV's optical flow write `NOISE` to stdout through
    Python's print, a raw write to fd 1, C's buffered printf and Python's buffered stdout object."""
    module, function = entry.split(":")
    code = textwrap.dedent(
        f"""
        import ctypes, os, sys
        libc = ctypes.CDLL(None)

        def noise(where):
            print("{NOISE} print", where)  # as ONNX Runtime's EP fallback
            os.write(1, b"{NOISE} fd1 " + where.encode() + b"\\n")  # a native library's write(1, ...)
            libc.printf(b"{NOISE} printf %s\\n", where.encode())  # C stdio: buffered until exit
            sys.__stdout__.write("{NOISE} held " + where + "\\n")  # a handler made on sys.stdout: buffered

        import onnxruntime
        Session = onnxruntime.InferenceSession

        class NoisySession(Session):
            def __init__(self, *a, **kw):
                noise("session")
                super().__init__(*a, **kw)

            def run(self, *a, **kw):
                noise("run")
                return super().run(*a, **kw)

        onnxruntime.InferenceSession = NoisySession
        import cv2
        Dis = cv2.DISOpticalFlow_create

        def noisy_flow(*a):
            noise("flow")
            return Dis(*a)

        cv2.DISOpticalFlow_create = noisy_flow
        from {module} import {function} as main
        sys.exit(main({args!r}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # Python's stdout buffered, as usual
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def _check(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert NOISE not in proc.stdout, proc.stdout[:3000]
    assert f"{NOISE} fd1 session" in proc.stderr  # not lost: on stderr, with the logs
    return proc.stdout


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    write_tiny_onnx(folder, frames=4, height=48, width=64)
    return folder


def test_vdepth_video_json_is_only_the_summary(tmp_path: Path, model: Path) -> None:
    clip = tmp_path / "frames"
    clip.mkdir()
    for i in range(6):
        cv2.imwrite(str(clip / f"{i:04d}.png"), np.full((48, 64, 3), 20 + 30 * i, np.uint8))
    args = [str(clip), "-o", str(tmp_path / "out"), "--model", str(model), "--backend", "onnxruntime"]
    proc = run_noisy("vdepth_ros.offline.entry:video", [*args, "--no-progress", "--no-preview", "--json"], tmp_path)
    assert json.loads(_check(proc))["frames_out"] == 6


def test_vdepth_bag_and_vdepth_flicker_json_are_only_their_results(tmp_path: Path, model: Path) -> None:
    from vdepth_ros.offline.synth import synthetic_frames, write_image_bag

    write_image_bag(tmp_path / "in", synthetic_frames(8, 48, 64))
    args = [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(model), "--backend", "onnxruntime"]
    proc = run_noisy("vdepth_ros.offline.entry:bag", [*args, "--no-progress", "--json"], tmp_path)
    assert json.loads(_check(proc))["frames_out"] == 8
    args = [str(tmp_path / "out"), str(tmp_path / "in"), "--image-topic", "/image", "--depth-topic", "/depth", "--json"]
    proc = run_noisy("vdepth_ros.offline.entry:flicker", args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert NOISE not in proc.stdout and f"{NOISE} fd1 flow" in proc.stderr, proc.stdout[:3000]
    assert json.loads(proc.stdout)[0]["pairs"] > 0


def test_vdepth_export_onnx_json_is_only_the_summary(tmp_path: Path) -> None:
    args = ["onnx", "vda_lite", "--tiny", "-o", str(tmp_path / "tiny"), "--synthetic"]
    summary = json.loads(_check(run_noisy("vdepth_export.cli:main", args, tmp_path)))
    assert summary["parity"]["passed"] is True


def test_vdepth_eval_prints_only_its_table(tmp_path: Path, model: Path) -> None:
    seq = tmp_path / "evaldata" / "dvmvs_hololens_000"
    (seq / "images").mkdir(parents=True)
    (seq / "depth").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(seq / "images" / f"{i:05d}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        cv2.imwrite(str(seq / "depth" / f"{i:05d}.png"), rng.integers(500, 4000, (48, 64), dtype=np.uint16))
    np.savetxt(seq / "K.txt", [[40.0, 0, 32], [0, 40.0, 24], [0, 0, 1]])
    np.savetxt(seq / "poses.txt", np.tile(np.eye(4).reshape(1, 16), (6, 1)))
    args = ["--evaldata", str(tmp_path / "evaldata"), "--datasets", "hololens", "--model", str(model)]
    args += ["--backend", "onnxruntime", "--out", str(tmp_path / "eval")]
    out = _check(run_noisy("vdepth_ros.eval.cli:main", args, tmp_path))
    assert out == (tmp_path / "eval" / "results.md").read_text()
