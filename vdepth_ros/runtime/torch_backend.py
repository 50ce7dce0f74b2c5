"""PyTorch backend: runs a model's fixed-shape export graph (`export_signature(T, H, W).module`)."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import numpy as np

from vdepth_ros.errors import BackendUnavailableError, ConfigError, InputError
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
        raise BackendUnavailableError(
            "the torch backend needs PyTorch: pip install 'vdepth_ros[ml]' "
            "(with PIP_CONSTRAINT=constraints.txt to keep the CPU wheel)"
        ) from err
    return torch


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
        super().__init__(spec)
        torch = import_torch()
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
        sig = model.export_signature(spec.frames, spec.height, spec.width)
        self.module = sig.module.eval().to(device=self.device, dtype=self._dtype)
        self.signature = sig
        self.split = None
        if reuse and hasattr(model, "split_signature"):
            self.split = model.split_signature(spec.frames, spec.height, spec.width)
            self.split.frame_module.to(device=self.device, dtype=self._dtype)
            self.split.window_module.to(device=self.device, dtype=self._dtype)
        self._model = model
        self._stream: Any = None  # TemporalCache of a causal model's stream
        self._stream_out: dict[Any, np.ndarray] = {}
        self._stream_last: Any = None
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
    def streaming(self) -> bool:
        """True when windows with frame ids run as a stream of a causal model."""
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

    def reset_stream(self) -> None:
        super().reset_stream()
        self._stream = None
        self._stream_out.clear()
        self._stream_last = None

    def _infer_reusing(self, frames: np.ndarray, ids: list[Any]) -> np.ndarray:
        if not self.streaming:
            return super()._infer_reusing(frames, ids)
        return self._infer_streaming(frames, ids)

    def _infer_streaming(self, frames: np.ndarray, ids: list[Any]) -> np.ndarray:
        """Causal model: frames not seen before are the stream's next frames (in id order); each is
        inferred once, attending to the stream's earlier frames; seen frames keep their output."""
        torch = self._torch
        new = list(dict.fromkeys(i for i in ids if i not in self._stream_out))
        last = self._stream_last
        if last is not None and any(isinstance(i, int) and i <= last for i in new):
            self.reset_stream()  # the ids restarted: a new stream that was not announced
            new = list(dict.fromkeys(ids))
        if all(isinstance(i, int) for i in new) and new != sorted(new):
            raise InputError(f"a stream's new frames must come in order, got ids {new}")
        if new:
            if self._stream is None:
                self._stream = self._model.new_stream()
            x = torch.from_numpy(np.ascontiguousarray(frames[[ids.index(i) for i in new]]))
            with torch.inference_mode():
                out = self._model.stream(x.to(device=self.device, dtype=self._dtype)[None], self._stream)
            for j, i in enumerate(new):
                self._stream_out[i] = out[0, j].float().cpu().numpy()
            self._stream_last = new[-1]
        self.feature_cache.misses += len(new)
        self.feature_cache.hits += len(set(ids)) - len(new)
        result = np.stack([self._stream_out[i] for i in ids])[None]
        keep = set(ids)
        for i in [i for i in self._stream_out if i not in keep]:
            del self._stream_out[i]
        return result

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device": str(self.device), "threads": self._torch.get_num_threads()}

    def close(self) -> None:
        self.module = None  # type: ignore[assignment]
        self.split = None
        self._stream = None
