"""`DepthEngine`: a window of frames in, per-frame disparity out. Backends subclass it."""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from vdepth_ros.errors import ConfigError, InputError
from vdepth_ros.runtime.spec import InputSpec


class DepthEngine(abc.ABC):
    """One interface over torch, ONNX Runtime and TensorRT.

    `infer(frames)` takes `(T, H, W, 3)` RGB at the spec's working resolution, either uint8
    or float32 already in `value_range`, with `1 <= T <= spec.frames` for fixed-shape graphs
    (shorter windows are padded by repeating the last frame and the padding is cut from the
    output). It returns `(T, H, W)` float32. Engines are context managers.
    """

    backend: str = ""

    def __init__(self, spec: InputSpec) -> None:
        self.input_spec = spec

    # -- to implement ------------------------------------------------------------------------
    @abc.abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray:
        """`(1, T, 3, H, W)` float32 -> `(1, T, H, W)` float32, T == graph frames."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions/buffers."""

    def resolutions(self) -> list[tuple[int, int]] | None:
        """The working (H, W) this engine runs; None = any multiple of `input_spec.multiple_of`."""
        return [(self.input_spec.height, self.input_spec.width)]

    def at_resolution(self, height: int, width: int) -> DepthEngine:
        """The engine for working resolution `height x width` (one of `resolutions()`)."""
        if (height, width) == (self.input_spec.height, self.input_spec.width):
            return self
        raise ConfigError(
            f"this {self.backend or 'engine'} runs {self.input_spec.height}x{self.input_spec.width} only, "
            f"not {height}x{width}"
        )

    # -- shared ------------------------------------------------------------------------------
    def infer(self, frames: np.ndarray) -> np.ndarray:
        spec = self.input_spec
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise InputError(f"infer expects (T, H, W, 3) RGB frames, got shape {frames.shape}")
        t, h, w, _ = frames.shape
        if (h, w) != (spec.height, spec.width):
            raise InputError(f"frames are {h}x{w}, the model works at {spec.height}x{spec.width}; resize first")
        if t < 1 or (not spec.dynamic_frames and t > spec.frames):
            raise InputError(f"window of {t} frames; this model accepts 1..{spec.frames}")
        lo, hi = spec.value_range
        if frames.dtype == np.uint8:
            x = frames.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)
        else:
            x = frames.astype(np.float32, copy=False)
        n = t if spec.dynamic_frames else spec.frames
        if n > t:  # pad by repeating the last frame; its outputs are discarded
            x = np.concatenate([x, np.repeat(x[-1:], n - t, axis=0)], axis=0)
        batch = np.ascontiguousarray(x.transpose(0, 3, 1, 2)[None])
        out = self._run(batch)
        out = np.asarray(out, dtype=np.float32).reshape(n, spec.height, spec.width)
        return out[:t]

    def warmup(self, runs: int = 1) -> None:
        dummy = np.zeros((self.input_spec.frames, self.input_spec.height, self.input_spec.width, 3), np.uint8)
        for _ in range(runs):
            self.infer(dummy)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, **self.input_spec.to_dict()}

    def __enter__(self) -> DepthEngine:
        return self

    def __exit__(self, *exc: object) -> bool:
        self.close()
        return False
