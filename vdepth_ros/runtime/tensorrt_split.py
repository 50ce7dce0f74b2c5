"""TensorRT's reuse path: the per-frame and per-window engines of a split model on one stream.

`vdepth-export split` writes `model.frame.onnx` / `model.window.onnx`, `vdepth-export engine`
builds `model.frame.engine` (frame batch 1..T) and `model.window.engine` from them. `SplitEngines`
runs them: `encode` puts new frames through the frame engine and returns their feature maps as
device tensors (they stay on the GPU in the engine's `FrameFeatureCache`), `decode` gathers one
window's maps into the window engine's bound inputs and returns the disparity on the host.

Nothing here has run on a GPU in this project (no GPU, TensorRT not installable here). The data
flow is tested on the CPU with a fake TensorRT whose execution contexts run the same ONNX graphs
with ONNX Runtime on the bound addresses (`test/test_runtime_tensorrt_split.py`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from vdepth_ros.errors import ModelLoadError
from vdepth_ros.runtime.reuse import SplitFiles, SplitMeta
from vdepth_ros.runtime.spec import InputSpec

log = logging.getLogger(__name__)

#: TensorRT DataType member name -> torch dtype name (INT64: a stream step's `n_past`)
TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT32": "int32", "INT64": "int64"}


def engine_io(engine: Any, trt: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(inputs, outputs): tensor name -> TensorRT dtype name, by the TensorRT 10 tensor API."""
    ins: dict[str, Any] = {}
    outs: dict[str, Any] = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        dtype = str(getattr(engine.get_tensor_dtype(name), "name", engine.get_tensor_dtype(name))).split(".")[-1]
        (ins if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outs)[name] = dtype
    return ins, outs


class SplitEngines:
    """The frame and window engines of one model, IO bound by name (see module docstring).

    Args:
        runtime: a `tensorrt.Runtime`.
        trt: the `tensorrt` module (for `TensorIOMode`).
        files: the `.engine` `SplitFiles`; their keys must have been verified by the caller.
        meta: `model.split.json`.
        spec: the model's window spec (T, H, W).
        torch: the torch module; `device`: where buffers live (CUDA; the CPU in tests).
    """

    def __init__(
        self, runtime: Any, trt: Any, files: SplitFiles, meta: SplitMeta, spec: InputSpec, torch: Any, device: Any
    ) -> None:
        self.meta, self._torch, self.device = meta, torch, device
        self.frame = runtime.deserialize_cuda_engine(files.frame.read_bytes())
        self.window = runtime.deserialize_cuda_engine(files.window.read_bytes())
        if self.frame is None or self.window is None:
            raise ModelLoadError(f"TensorRT could not deserialize {files.frame.name} / {files.window.name}")
        f_in, f_out = engine_io(self.frame, trt)
        w_in, w_out = engine_io(self.window, trt)
        names = list(meta.feature_names)
        if list(f_in) != ["frames"] or sorted(f_out) != sorted(names):
            raise ModelLoadError(f"frame engine IO {list(f_in)} -> {list(f_out)}; expected frames -> {names}")
        if sorted(w_in) != sorted(names) or list(w_out) != ["disparity"]:
            raise ModelLoadError(f"window engine IO {list(w_in)} -> {list(w_out)}; expected {names} -> disparity")
        self._dtype = {n: getattr(torch, TORCH_DTYPES[d]) for n, d in {**f_in, **f_out, **w_in, **w_out}.items()}
        self.frame_ctx = self.frame.create_execution_context()
        self.window_ctx = self.window.create_execution_context()
        t = meta.frames
        # The window engine's buffers are bound once; the frame engine's are per call (any batch).
        self._window_in = [
            torch.empty((t, *shape), dtype=self._dtype[n], device=device)
            for n, shape in zip(names, meta.feature_shapes, strict=True)
        ]
        self._window_out = torch.empty((1, t, spec.height, spec.width), dtype=self._dtype["disparity"], device=device)
        for name, buf in zip(names, self._window_in, strict=True):
            self.window_ctx.set_tensor_address(name, int(buf.data_ptr()))
        self.window_ctx.set_tensor_address("disparity", int(self._window_out.data_ptr()))
        self._stream = torch.cuda.Stream(device=device) if device.type == "cuda" else None

    def _execute(self, context: Any) -> None:
        handle = self._stream.cuda_stream if self._stream is not None else 0
        if not context.execute_async_v3(handle):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        if self._stream is not None:
            self._stream.synchronize()

    def encode(self, frames: np.ndarray) -> tuple[Any, ...]:
        """`(N, 3, H, W)` float32 on the host -> the N frames' feature maps, on the device."""
        torch = self._torch
        x = torch.from_numpy(frames).to(device=self.device, dtype=self._dtype["frames"])
        if not self.frame_ctx.set_input_shape("frames", tuple(x.shape)):
            raise ModelLoadError(f"frame engine rejected a batch of {len(x)} frames (profile 1..{self.meta.frames})")
        self.frame_ctx.set_tensor_address("frames", int(x.data_ptr()))
        outs = tuple(
            torch.empty((len(x), *shape), dtype=self._dtype[n], device=self.device)
            for n, shape in zip(self.meta.feature_names, self.meta.feature_shapes, strict=True)
        )
        for name, buf in zip(self.meta.feature_names, outs, strict=True):
            self.frame_ctx.set_tensor_address(name, int(buf.data_ptr()))
        self._execute(self.frame_ctx)
        return outs

    def decode(self, features: list[Any]) -> np.ndarray:
        """One window's per-frame maps (leading axis 1 each, on the device) -> `(1, T, H, W)` host float32."""
        torch = self._torch
        for k, buf in enumerate(self._window_in):
            torch.cat([f[k] for f in features], out=buf)
        self._execute(self.window_ctx)
        return self._window_out.float().cpu().numpy()


__all__ = ["TORCH_DTYPES", "SplitEngines", "engine_io"]
