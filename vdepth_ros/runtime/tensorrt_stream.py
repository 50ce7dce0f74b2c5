"""TensorRT's stream step: a causal model's `model.stream.engine`, built from `model.stream.onnx`.

`vdepth-export stream` writes the stream step with the cache as explicit graph inputs and outputs
(`frame`, `n_past`, `past0..` -> `disparity`, `new_past0..`; `models.split.StreamSignature`), and
`vdepth-export engine FOLDER` builds it for a causal folder. `StreamStep` binds its IO by name: the frame,
`n_past` and the disparity once, each stream's cache per step. A stream's cache is two sets of device
buffers, the one read (`pastJ`) and the one written (`new_pastJ`), swapped after every step, so the cache never
leaves the GPU and is never copied; each stream (a camera of `--cameras`) has its own.

Nothing here has run on a GPU in this project (no GPU, TensorRT not installable here). The data flow is tested
on the CPU with a fake TensorRT whose execution contexts run the stream-step ONNX graph with ONNX Runtime on the
bound addresses, against `OnnxRuntimeEngine`'s stream of the same graph (`test/test_runtime_tensorrt_split.py`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from vdepth_ros.errors import ModelLoadError
from vdepth_ros.runtime.reuse import STREAM_STEP_KEY
from vdepth_ros.runtime.spec import InputSpec
from vdepth_ros.runtime.tensorrt_split import TORCH_DTYPES, engine_io


@dataclass
class StreamState:
    """One stream's cache on the device: `past` (read by the next step), `written` (its new values go there),
    and how many of its slots hold real frames (`n_past`)."""

    past: list[Any]
    written: list[Any]
    n_past: int = 0


class StreamStep:
    """A stream-step engine, IO bound by name (see the module docstring).

    Args:
        engine: the deserialized `model.stream.engine` (its cache key verified by the caller).
        trt: the `tensorrt` module (for `TensorIOMode`).
        spec: the engine's spec (`extra["stream_step"]`: the context and the state names).
        torch: the torch module; `device`: where buffers live (CUDA; the CPU in tests).
        again: the command that builds the engine again, named when its IO is not the stream step's.
    """

    def __init__(self, engine: Any, trt: Any, spec: InputSpec, torch: Any, device: Any, again: str) -> None:
        record = spec.extra[STREAM_STEP_KEY]
        self.names = tuple(str(n) for n in record.get("states", ())) if isinstance(record, dict) else ()
        self.context_frames = int(record.get("context", 0)) if isinstance(record, dict) else 0
        ins, outs = engine_io(engine, trt)
        want_in, want_out = ["frame", "n_past", *self.names], ["disparity", *(f"new_{n}" for n in self.names)]
        shapes = {n: tuple(int(d) for d in engine.get_tensor_shape(n)) for n in [*ins, *outs]}
        if not self.names or sorted(ins) != sorted(want_in) or sorted(outs) != sorted(want_out):
            raise ModelLoadError(
                f"the engine's IO {sorted(ins)} -> {sorted(outs)} is not the stream step its spec describes "
                f"({want_in} -> {want_out}): {again}"
            )
        frame_shape = (1, 3, spec.height, spec.width)
        if shapes["frame"] != frame_shape or any(-1 in s for s in shapes.values()):
            raise ModelLoadError(
                f"the stream engine's frame is {shapes['frame']}, its spec says {frame_shape}: {again}"
            )
        self._torch, self.device, self._shapes = torch, device, shapes
        self._dtype = {n: getattr(torch, TORCH_DTYPES[d]) for n, d in {**ins, **outs}.items()}
        self.context = engine.create_execution_context()
        self._frame = torch.empty(frame_shape, dtype=self._dtype["frame"], device=device)
        self._n_past = torch.zeros(shapes["n_past"], dtype=self._dtype["n_past"], device=device)
        self._disparity = torch.empty(shapes["disparity"], dtype=self._dtype["disparity"], device=device)
        for name, buf in (("frame", self._frame), ("n_past", self._n_past), ("disparity", self._disparity)):
            self.context.set_tensor_address(name, int(buf.data_ptr()))
        self._stream = torch.cuda.Stream(device=device) if device.type == "cuda" else None

    def new_state(self) -> StreamState:
        """A new stream: no past frames, a zero cache (as `OnnxRuntimeEngine`'s and torch's)."""
        torch = self._torch

        def buffers() -> list[Any]:
            return [torch.zeros(self._shapes[n], dtype=self._dtype[n], device=self.device) for n in self.names]

        return StreamState(buffers(), buffers())

    def step(self, frames: np.ndarray, state: StreamState) -> np.ndarray:
        """The stream's next frames `(N, 3, H, W)` float32 on the host -> `(N, H, W)`, `state` moved on."""
        torch = self._torch
        out = []
        for frame in frames:  # the engine takes one frame: each step attends to the ones before
            with torch.cuda.stream(self._stream) if self._stream is not None else contextlib.nullcontext():
                self._frame.copy_(torch.from_numpy(np.ascontiguousarray(frame[None])))
                self._n_past.fill_(state.n_past)
                for name, past, written in zip(self.names, state.past, state.written, strict=True):
                    self.context.set_tensor_address(name, int(past.data_ptr()))
                    self.context.set_tensor_address(f"new_{name}", int(written.data_ptr()))
                if not self.context.execute_async_v3(self._stream.cuda_stream if self._stream is not None else 0):
                    raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
                # a copy (the buffer is the next step's output), on the host; waits for the step on its stream
                disparity = self._disparity.to("cpu", torch.float32, copy=True)
            state.past, state.written = state.written, state.past
            state.n_past = min(state.n_past + 1, self.context_frames - 1)
            out.append(disparity.numpy().reshape(frame.shape[-2:]))
        return np.stack(out)


__all__ = ["StreamState", "StreamStep"]
