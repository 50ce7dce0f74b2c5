"""Test doubles shared by the stream, pipeline, ROS and offline tests.

`GroundTruthEngine` is a real `DepthEngine` whose "model" returns a known disparity per frame,
corrupted by a per-window affine, so tests can check that stitching recovers the truth.
"""

from __future__ import annotations

import resource
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from vdepth_ros.runtime.engine import DepthEngine
from vdepth_ros.runtime.spec import InputSpec


def luminance_disparity(batch: np.ndarray) -> np.ndarray:
    """Deterministic image -> disparity map: (1,T,3,H,W) in [0,1] -> (1,T,H,W) in [0.1, 1.1]."""
    lum = batch[:, :, 0] * 0.299 + batch[:, :, 1] * 0.587 + batch[:, :, 2] * 0.114
    return (0.1 + lum).astype(np.float32)


class LuminanceEngine(DepthEngine):
    """Disparity = 0.1 + luminance: deterministic, cheap, depends only on the pixels."""

    backend = "fake"

    def __init__(self, height: int = 48, width: int = 64, frames: int = 8, overlap: int = 3, **kw) -> None:
        spec = InputSpec(family="fake", frames=frames, height=height, width=width, window=frames, overlap=overlap, **kw)
        super().__init__(spec)
        self.calls = 0

    def _run(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        return luminance_disparity(batch)


class PastSummingEngine(LuminanceEngine):
    """A causal model's stream, as a fake: each frame's output is its luminance plus that of every earlier frame
    of its stream (the state), so a frame stepped on another camera's state comes out wrong."""

    @property
    def streams(self) -> bool:
        return True

    def _new_stream(self) -> dict[str, np.ndarray]:
        return {"past": np.zeros((self.input_spec.height, self.input_spec.width), np.float32)}

    def _step(self, frames: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
        out = []
        for frame in luminance_disparity(frames[None])[0]:
            state["past"] = state["past"] + frame
            out.append(state["past"].copy())
        return np.stack(out)


class AffineCorruptingEngine(LuminanceEngine):
    """Like LuminanceEngine, but every call applies a random affine (scale, shift) to its output,
    as a real relative-disparity model does from window to window."""

    def __init__(self, *args, seed: int = 0, scale_range=(0.5, 2.0), shift_range=(-0.2, 0.2), **kw) -> None:
        super().__init__(*args, **kw)
        self._rng = np.random.default_rng(seed)
        self.scale_range, self.shift_range = scale_range, shift_range
        self.affines: list[tuple[float, float]] = []

    def _run(self, batch: np.ndarray) -> np.ndarray:
        s = float(self._rng.uniform(*self.scale_range))
        t = float(self._rng.uniform(*self.shift_range))
        self.affines.append((s, t))
        return s * super()._run(batch) + t


def write_tiny_onnx(folder: Path, frames: int = 4, height: int = 48, width: int = 64, row_ramp: float = 0.0) -> Path:
    """`model.onnx` + `model.onnx.json`: disparity = 0.1 + luminance, fixed (1, T, 3, H, W); plus
    `row_ramp` x (row / (H - 1)), a "nearer at the bottom" prior, as real models learn from upright scenes."""
    import warnings

    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")

    class Lum(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            lum = 0.1 + 0.299 * x[:, :, 0] + 0.587 * x[:, :, 1] + 0.114 * x[:, :, 2]
            if row_ramp:
                lum = lum + torch.linspace(0.0, row_ramp, height)[:, None]
            return lum

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


class RecordingLogger:
    """A logger (rclpy's error/warning/info) that records (severity, text), e.g. under RateLimitedLog."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def error(self, text: str) -> None:
        self.lines.append(("error", text))

    def warning(self, text: str) -> None:
        self.lines.append(("warning", text))

    def info(self, text: str) -> None:
        self.lines.append(("info", text))


def run_node_main(params: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`vdepth-node --ros-args --params-file PARAMS` in this process, for start-up failures: ROS logs go
    beside the file, and the SIGINT/SIGTERM handlers `main` installs are put back afterwards.
    Returns (exit code, stderr)."""
    import signal

    from vdepth_ros.ros.node import main

    monkeypatch.setenv("ROS_LOG_DIR", str(params.parent))
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = main(["vdepth-node", "--ros-args", "--params-file", str(params)])
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return code, capsys.readouterr().err


#: broken model folders (`broken_model`) -> what the start-up check says (the node and every offline tool)
MODEL_FAULTS = {
    "truncated safetensors beside a valid ONNX": "not a complete safetensors file",
    "garbage model.onnx": "is not an ONNX model",
    "invalid config.json": "is not valid JSON",
    "missing model.onnx.json": "model.onnx.json: not found",
    "invalid model.onnx.json": "model.onnx.json: is not valid",
    "empty model.engine beside a valid ONNX": "model.engine: is empty",
}


def broken_model(tmp_path: Path, what: str) -> Path:
    """`tmp_path/model`: a tiny ONNX model folder with the fault `what` (a `MODEL_FAULTS` key)."""
    folder = tmp_path / "model"
    folder.mkdir()
    write_tiny_onnx(folder)
    (folder / "config.json").write_text('{"_family": "vda_lite", "window": 8}')
    if what == "truncated safetensors beside a valid ONNX":
        (folder / "model.safetensors").write_bytes(struct.pack("<Q", 400) + b'{"w": {"dtype": "F32", "sh')
    elif what == "garbage model.onnx":
        (folder / "model.onnx").write_bytes(b"not an onnx graph")
    elif what == "invalid config.json":
        (folder / "config.json").write_text('{"_family": "vda_lite", window: 8')
    elif what == "missing model.onnx.json":
        (folder / "model.onnx.json").unlink()
    elif what == "invalid model.onnx.json":
        (folder / "model.onnx.json").write_text('{"family": "fake", "frames": "many"}')
    elif what == "empty model.engine beside a valid ONNX":
        (folder / "model.engine").write_bytes(b"")
        (folder / "model.engine.json").write_text((folder / "model.onnx.json").read_text())
    return folder


def run_offline_cli(
    tool: str, args: list[str], cwd: Path, at_windows: tuple[int, ...] = (), file_size_limit: int | None = None
) -> subprocess.CompletedProcess:
    """`vdepth-<tool>` (bag or video) run as the user runs it, in its own process, with the fake
    `LuminanceEngine` (8-frame windows) as its model, which presses Ctrl-C (SIGINT to its
    own process, as the terminal sends it) while it runs the windows numbered `at_windows` (twice
    for a number given twice); with `file_size_limit` (bytes), as under `ulimit -f` (a write past it
    fails with EFBIG, as on a FAT32 stick past 4 GiB)."""
    code = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from fakes import LuminanceEngine
        from vdepth_ros.offline import {tool} as cli
        from vdepth_ros.pipeline import DepthPipeline

        class CtrlC(LuminanceEngine):
            def _run(self, batch):
                for _ in range({list(at_windows)!r}.count(self.calls + 1)):
                    os.kill(os.getpid(), signal.SIGINT)
                return super()._run(batch)

        engine = CtrlC(height=48, width=64, frames=8, overlap=3)
        cli.build_pipeline = lambda config, **kw: DepthPipeline(config, engine)
        sys.exit(cli.main({args!r} + ["--no-progress"]))
        """
    )

    def limit_file_size() -> None:
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd, preexec_fn=limit_file_size
    )


def rvl_pack(values: list[int]) -> bytes:
    """RVL's variable-length coding of `values` as its paper and compressed_depth_image_transport write it,
    plainly: every value in 3-bit groups (low first, bit 3 = more follow), 8 nibbles to a little-endian uint32,
    the first in its top bits, the last word padded with zero nibbles."""
    nibbles: list[int] = []
    for value in values:
        while True:
            group, value = value & 7, value >> 3
            nibbles.append(group | (8 if value else 0))
            if not value:
                break
    nibbles += [0] * (-len(nibbles) % 8)
    words = [sum(n << (28 - 4 * k) for k, n in enumerate(nibbles[j : j + 8])) for j in range(0, len(nibbles), 8)]
    return np.array(words, "<u4").tobytes()


def rvl_encode(samples: np.ndarray) -> bytes:
    """RVL as its paper and compressed_depth_image_transport specify it, written plainly (one value
    at a time) to check the vectorised decoder: runs of zeros and of non-zero pixels, each non-zero
    pixel as the zigzag code of its difference from the previous one, each value `rvl_pack`ed."""
    values: list[int] = []
    flat, previous, i = [int(v) for v in samples.ravel()], 0, 0
    while i < len(flat):
        start = i
        while i < len(flat) and flat[i] == 0:
            i += 1
        values.append(i - start)
        start = i
        while i < len(flat) and flat[i] != 0:
            i += 1
        values.append(i - start)
        for v in flat[start:i]:
            d = v - previous
            values.append(2 * d if d >= 0 else -2 * d - 1)
            previous = v
    return rvl_pack(values)


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """`jpeg` with an EXIF APP1 segment holding only its orientation tag (big-endian TIFF), as a phone writes it."""
    tiff = b"MM\x00\x2a" + struct.pack(">IH", 8, 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + bytes(4)
    app1 = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]
