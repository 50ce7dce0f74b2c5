"""PyTorch backend: runs a model's fixed-shape export graph (`export_signature(T, H, W).module`)."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
from typing import Any

import numpy as np

from vdepth_ros.errors import BackendUnavailableError, ConfigError, extra_hint
from vdepth_ros.runtime.engine import DepthEngine
from vdepth_ros.runtime.spec import InputSpec

log = logging.getLogger(__name__)

_TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def import_torch() -> Any:
    """`torch`, or `BackendUnavailableError` naming the extra to install.

    If torch is not imported yet, `OMP_WAIT_POLICY` defaults to PASSIVE (the user's value wins):
    spinning OpenMP workers on a loaded 2-core machine made a 2-thread tiny GemDepth window take
    ~3000 ms instead of ~14 ms (measured here); OpenMP reads the variable only when it loads.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except ImportError as err:
        raise BackendUnavailableError(f"the torch backend needs PyTorch: {extra_hint('ml')}") from err
    return torch


_NOTED_CPU_FP16: list[bool] = []


def _note_cpu_fp16() -> None:
    """One warning per process: fp16 asked for on the CPU runs in fp32 (PyTorch's CPU fp16 kernels are
    far slower than fp32: a tiny VDA window at 8x280x504 took 11.8 s instead of 0.9 s here)."""
    if _NOTED_CPU_FP16:
        return
    _NOTED_CPU_FP16.append(True)
    log.warning(
        "precision fp16 is not applied on the CPU: PyTorch's CPU fp16 kernels are about 10x slower than fp32, so "
        "the torch engine computes in fp32. fp16 runs on a GPU (a TensorRT engine: `vdepth-export engine FOLDER "
        "--precision fp16`); on the CPU, precision fp32 (or bf16) silences this"
    )


class TorchEngine(DepthEngine):
    """`DepthEngine` over a `VideoDepthModel` in PyTorch.

    Args:
        model: a `VideoDepthModel` (its `export_signature` graph is what runs, so torch and the
            exported ONNX/TensorRT graphs compute the same function).
        spec: shapes and rules; build it with `runtime.shapes.spec_from_model`.
        device: torch device string ("cpu", "cuda", "cuda:1").
        threads: intra-op thread count (`torch.set_num_threads`, process-wide), or None to keep.
        reuse: run a family with a per-frame split (`models.split.PerFrameSplit`) as its two
            graphs when `infer` gets frame ids, so frames seen in the previous window are not
            encoded again (`runtime/reuse.py`); a causal model (`streamable`) is then run as a
            stream, each new frame once, from a `TemporalCache`. Same output either way.
    """

    backend = "torch"

    def __init__(
        self, model: Any, spec: InputSpec, *, device: str = "cpu", threads: int | None = None, reuse: bool = True
    ) -> None:
        torch = import_torch()
        if spec.precision == "fp16" and torch.device(device).type == "cpu":
            _note_cpu_fp16()
            spec = dataclasses.replace(spec, precision="fp32")
        super().__init__(spec)
        if spec.dynamic_frames:
            raise ConfigError("the torch backend runs a fixed-shape graph; use dynamic_frames=False")
        if threads is not None:
            if int(threads) < 1:
                raise ConfigError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(int(threads))
        self._torch = torch
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError("device='cuda' requested but torch sees no CUDA GPU")
        self._dtype = getattr(torch, _TORCH_DTYPES[spec.precision])
        self._model = model
        self._variants: dict[tuple[int, int], TorchEngine] = {}
        self._variants_lock = threading.Lock()
        sig = model.export_signature(spec.frames, spec.height, spec.width)
        self.module = sig.module.eval().to(device=self.device, dtype=self._dtype)
        self.signature = sig
        self.split = None
        if reuse and hasattr(model, "split_signature"):
            self.split = model.split_signature(spec.frames, spec.height, spec.width)
            self.split.frame_module.to(device=self.device, dtype=self._dtype)
            self.split.window_module.to(device=self.device, dtype=self._dtype)
        self._model = model
        log.info(
            "torch engine: family=%s T=%d %dx%d %s on %s, %d threads",
            spec.family,
            spec.frames,
            spec.height,
            spec.width,
            spec.precision,
            self.device,
            torch.get_num_threads(),
        )

    def resolutions(self) -> list[tuple[int, int]] | None:
        return None  # the module runs any multiple of the family's stride

    def at_resolution(self, height: int, width: int) -> DepthEngine:
        """The same model at another working resolution (its module is shared, not copied)."""
        spec = self.input_spec
        if (height, width) == (spec.height, spec.width):
            return self
        m = spec.multiple_of
        if height % m or width % m:
            raise ConfigError(f"working resolution {height}x{width} is not a multiple of {m}")
        with self._variants_lock:
            engine = self._variants.get((height, width))
            if engine is None:
                shape = dataclasses.replace(spec, height=int(height), width=int(width))
                engine = TorchEngine(self._model, shape, device=str(self.device))
                self._variants[(height, width)] = engine
        return engine

    def infer_channels(self, frames: np.ndarray) -> np.ndarray | None:
        if not hasattr(self._model, "predict_channels"):
            return None
        lo, hi = self.input_spec.value_range
        x = np.asarray(frames)
        x = x.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo) if x.dtype == np.uint8 else x
        torch = self._torch
        with torch.inference_mode():
            batch = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32))
            out = self._model.predict_channels(batch.to(device=self.device, dtype=self._dtype))
            return out.float().cpu().numpy()

    def _run(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(device=self.device, dtype=self._dtype)
            out = self.module(x)
            if isinstance(out, tuple | list):
                out = out[0]
            return out.float().cpu().numpy()

    # -- exact reuse / streaming ------------------------------------------------------------------
    @property
    def supports_reuse(self) -> bool:
        return self.split is not None

    @property
    def streams(self) -> bool:
        return self.split is not None and bool(getattr(self._model, "streamable", False))

    def _encode(self, frames: np.ndarray) -> tuple[Any, ...]:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(frames).to(device=self.device, dtype=self._dtype)
            return tuple(self.split.frame_module(x))

    def _decode(self, features: list[Any]) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            levels = [torch.cat([f[k] for f in features]) for k in range(len(features[0]))]
            return self.split.window_module(*levels).float().cpu().numpy()

    def _new_stream(self) -> Any:
        return self._model.new_stream()

    def _step(self, frames: np.ndarray, state: Any) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(frames).to(device=self.device, dtype=self._dtype)[None]
            return self._model.stream(x, state)[0].float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device": str(self.device), "threads": self._torch.get_num_threads()}

    def close(self) -> None:
        self.module = None  # type: ignore[assignment]
        self.split = None
