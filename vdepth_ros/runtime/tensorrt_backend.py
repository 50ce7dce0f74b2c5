"""Native TensorRT (>= 10) backend: a serialized engine, IO tensors bound by name, one CUDA stream,
pinned host staging buffers. CUDA memory and streams come from `torch.cuda`.

Nothing here has been executed on a GPU by this project (no GPU, and TensorRT cannot be installed
on its machines); the name-based IO planning and the cache-key checks are tested with fakes, the
split engines' data flow (`tensorrt_split.py`) with a fake that executes the graphs on the CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vdepth_ros.errors import BackendUnavailableError, ModelLoadError, extra_hint
from vdepth_ros.runtime.engine import DepthEngine
from vdepth_ros.runtime.reuse import STREAM_STEP_KEY, SplitMeta, split_files_for
from vdepth_ros.runtime.spec import InputSpec, note_failed_parity, spec_path_for
from vdepth_ros.runtime.tensorrt_split import SplitEngines
from vdepth_ros.runtime.tensorrt_stream import StreamState, StreamStep
from vdepth_ros.runtime.trt_cache import (
    PLATFORM_PREFIX,
    EngineMismatchError,
    machine_engine,
    onnx_sha256,
    platform_key,
    verify_engine,
)

log = logging.getLogger(__name__)

# TensorRT DataType member name -> (numpy dtype name, torch dtype name)
_TRT_DTYPES = {"FLOAT": ("float32", "float32"), "HALF": ("float16", "float16"), "BF16": (None, "bfloat16")}


def import_tensorrt() -> Any:
    """`tensorrt` (>= 10), or `BackendUnavailableError` naming the extra to install."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise BackendUnavailableError(f"the tensorrt backend needs TensorRT: {extra_hint('trt')}") from err
    major = int(str(getattr(trt, "__version__", "0")).split(".")[0] or 0)
    if major < 10:
        raise BackendUnavailableError(f"TensorRT {trt.__version__} found; >= 10 is required: {extra_hint('trt')}")
    return trt


def cuda_identity(device: int = 0) -> tuple[str, str]:
    """(GPU name, "major.minor" compute capability) of CUDA device `device`, via torch.cuda."""
    try:
        import torch
    except ImportError as err:
        raise BackendUnavailableError(f"CUDA access needs torch with CUDA: {extra_hint('trt')}") from err
    if not torch.cuda.is_available():
        raise BackendUnavailableError("no CUDA GPU visible to torch; the tensorrt backend needs one")
    props = torch.cuda.get_device_properties(device)
    return str(props.name), f"{props.major}.{props.minor}"


def this_machines_engine(engine_path: Path, device: int = 0) -> Path:
    """`trt_cache.machine_engine` for the running TensorRT and GPU `device`: a model folder's
    `model.<platform>.engine` where this machine built its own beside another machine's, else `engine_path`
    (also where TensorRT or a GPU is missing: loading it then says so). Only where machines' engines lie beside
    it are TensorRT and CUDA asked who this machine is: a run on ONNX Runtime creates no torch CUDA context."""
    if not any(engine_path.parent.glob(f"{engine_path.stem}.{PLATFORM_PREFIX}*{engine_path.suffix}")):
        return engine_path
    try:
        trt = import_tensorrt()
        gpu_name, cc = cuda_identity(device)
    except BackendUnavailableError:
        return engine_path
    return machine_engine(engine_path, platform_key(str(trt.__version__), gpu_name, cc))


def tensorrt_status(device: int = 0) -> tuple[bool, str]:
    """Whether the native TensorRT backend can run here, and why not."""
    try:
        trt = import_tensorrt()
        name, cc = cuda_identity(device)
    except BackendUnavailableError as err:
        return False, str(err)
    return True, f"TensorRT {trt.__version__} on {name} (sm {cc})"


@dataclass(frozen=True)
class TensorBinding:
    """One engine IO tensor, resolved by name."""

    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: str  # TensorRT DataType member name: FLOAT, HALF, BF16, ...


def _dtype_name(dtype: Any) -> str:
    return str(getattr(dtype, "name", dtype)).split(".")[-1]


def plan_io(engine: Any, trt: Any, spec: InputSpec) -> tuple[TensorBinding, TensorBinding]:
    """Resolve the engine's input and output tensors **by name** and their concrete shapes.

    Uses the TensorRT 10 tensor API (`num_io_tensors`, `get_tensor_name`, `get_tensor_mode`,
    `get_tensor_shape`, `get_tensor_dtype`); indices only enumerate names. The spec's
    `input_name`/`output_name` are required unless the engine has exactly one of each. Dynamic
    dims (-1) are filled from the spec (1, T, 3, H, W) / (1, T, H, W); static dims must agree.
    """
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def pick(candidates: Sequence[str], wanted: str, kind: str) -> str:
        if wanted in candidates:
            return wanted
        if len(candidates) == 1:
            log.warning("engine %s is named %r, the spec says %r; using the only %s", kind, candidates[0], wanted, kind)
            return candidates[0]
        raise ModelLoadError(f"engine has no {kind} tensor named {wanted!r} (has {list(candidates)})")

    in_name = pick(inputs, spec.input_name, "input")
    out_name = pick(outputs, spec.output_name, "output")
    extra_inputs = [n for n in inputs if n != in_name]
    if extra_inputs:
        raise ModelLoadError(f"engine has extra inputs {extra_inputs}; a depth graph takes only {in_name!r}")
    want_in = (1, spec.frames, 3, spec.height, spec.width)
    want_out = (1, spec.frames, spec.height, spec.width)

    def concrete(name: str, want: tuple[int, ...]) -> tuple[int, ...]:
        shape = tuple(int(d) for d in engine.get_tensor_shape(name))
        if len(shape) != len(want):
            raise ModelLoadError(f"engine tensor {name!r} has shape {shape}, expected rank {len(want)} like {want}")
        for got, exp in zip(shape, want, strict=True):
            if got not in (-1, exp):
                raise ModelLoadError(f"engine tensor {name!r} has shape {shape}, the spec says {want}")
        return want

    return (
        TensorBinding(in_name, True, concrete(in_name, want_in), _dtype_name(engine.get_tensor_dtype(in_name))),
        TensorBinding(out_name, False, concrete(out_name, want_out), _dtype_name(engine.get_tensor_dtype(out_name))),
    )


def torch_dtype_for(binding: TensorBinding) -> str:
    """torch dtype name for a binding (FLOAT/HALF/BF16), or ModelLoadError."""
    try:
        return _TRT_DTYPES[binding.dtype][1]
    except KeyError:
        raise ModelLoadError(f"engine tensor {binding.name!r} has unsupported dtype {binding.dtype}") from None


class TensorRTEngine(DepthEngine):
    """`DepthEngine` over a serialized TensorRT engine.

    Before deserializing, the engine's sidecar cache key (`<engine>.key.json`) is checked against
    the running TensorRT version, GPU name, compute capability and (if given) the precision and
    the ONNX file; any difference raises `EngineMismatchError`.

    Args:
        engine_path: the `.engine` file; its `InputSpec` is `<engine_path>.json` unless `spec` is given.
        spec: overrides the sidecar spec.
        device: CUDA device index.
        precision: expected precision (None: accept the one recorded in the key).
        onnx_path: if given, the engine must have been built from exactly this ONNX file.
        reuse: when `model.frame.engine` + `model.window.engine` (built from `vdepth-export split`
            graphs) and `model.split.json` lie beside the engine and match it, run those instead,
            so `infer(frame_ids=...)` encodes only frames the previous window did not have
            (`runtime/tensorrt_split.py`); their cache keys are verified like the engine's.

    An engine built from a causal model's stream-step graph (`model.stream.engine`; its spec's
    `extra["stream_step"]`) runs as a stream (`streams`), as `OnnxRuntimeEngine` runs `model.stream.onnx`:
    `infer(frame_ids=...)` steps each new frame once, its cache kept on the GPU (`runtime/tensorrt_stream.py`).
    """

    backend = "tensorrt"

    def __init__(
        self,
        engine_path: str | Path,
        spec: InputSpec | None = None,
        *,
        device: int = 0,
        precision: str | None = None,
        onnx_path: str | Path | None = None,
        reuse: bool = True,
    ) -> None:
        trt = import_tensorrt()
        import torch

        path = Path(engine_path)
        if not path.is_file():
            raise ModelLoadError(f"TensorRT engine {path} not found")
        spec = spec if spec is not None else InputSpec.load(spec_path_for(path))
        super().__init__(spec)
        gpu_name, cc = cuda_identity(device)

        def verify(engine: Path, onnx: str | Path | None, engine_precision: str | None = precision) -> Any:
            return verify_engine(engine, tensorrt_version=str(trt.__version__), gpu_name=gpu_name,
                                 compute_capability=cc, precision=engine_precision, onnx_path=onnx)  # fmt: skip

        self.key = verify(path, onnx_path)
        if isinstance(spec.extra.get("onnx"), str):  # the graph it was built from, when it lies beside it
            note_failed_parity(path.with_name(spec.extra["onnx"]), runs=path)
        self._torch = torch
        self.path = path
        self.device = torch.device("cuda", device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.stream_step: StreamStep | None = None
        if STREAM_STEP_KEY in spec.extra:  # a causal model's stream step: never split
            self.split = None
            self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if self.engine is None:
                raise ModelLoadError(f"TensorRT could not deserialize {path} (see the TensorRT log above)")
            again = f"export it again (`vdepth-export stream {path.parent} --overwrite`), then `vdepth-export engine`"
            self.stream_step = StreamStep(self.engine, trt, spec, torch, self.device, again)
            log.info("tensorrt engine: %s, a stream step (%s), %s on %s", path.name, self.key.precision,
                     trt.__version__, gpu_name)  # fmt: skip
            return
        self.split = self._load_split(trt, verify, onnx_path) if reuse else None
        if self.split is not None:
            log.info("tensorrt engine: %s as its frame + window engines, %s on %s", path.name, trt.__version__,
                     gpu_name)  # fmt: skip
            return
        self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ModelLoadError(f"TensorRT could not deserialize {path} (see the TensorRT log above)")
        self.context = self.engine.create_execution_context()
        self.input, self.output = plan_io(self.engine, trt, spec)
        in_dtype = getattr(torch, torch_dtype_for(self.input))
        out_dtype = getattr(torch, torch_dtype_for(self.output))
        # Device buffers, pinned host staging, one stream; addresses bound once, by name.
        self._d_in = torch.empty(self.input.shape, dtype=in_dtype, device=self.device)
        self._d_out = torch.empty(self.output.shape, dtype=out_dtype, device=self.device)
        self._h_in = torch.empty(self.input.shape, dtype=torch.float32, pin_memory=True)
        self._h_out = torch.empty(self.output.shape, dtype=torch.float32, pin_memory=True)
        self._stream = torch.cuda.Stream(device=self.device)
        if not self.context.set_input_shape(self.input.name, self.input.shape):
            raise ModelLoadError(f"engine rejected input shape {self.input.shape} for {self.input.name!r}")
        self.context.set_tensor_address(self.input.name, int(self._d_in.data_ptr()))
        self.context.set_tensor_address(self.output.name, int(self._d_out.data_ptr()))
        log.info("tensorrt engine: %s (%s), %s on %s", path.name, self.key.precision, trt.__version__, gpu_name)

    def _load_split(self, trt: Any, verify: Any, onnx_path: str | Path | None) -> SplitEngines | None:
        """The split engines beside this one, keys verified, or None (the reason logged)."""
        files = split_files_for(self.path, ".engine")
        if not files.exist():
            return None
        # the split graphs are the ONNX graph's: exported at its precision, whatever TensorRT built it at (the
        # engine's spec holds the build precision: an fp16 engine of an fp32 graph never took its split engines)
        graph_spec = InputSpec.from_dict(
            {**self.input_spec.to_dict(), "precision": self.input_spec.extra.get("onnx_precision", self.key.precision)}
        )
        meta = SplitMeta.usable(files, graph_spec, onnx_sha256(onnx_path) if onnx_path is not None else None)
        if meta is None:
            return None
        graphs = split_files_for(onnx_path) if onnx_path is not None else None
        try:  # against the split graphs they were built from, where those lie beside the engines, and at the
            # precision of the engine they stand in for
            verify(files.frame, graphs.frame if graphs and graphs.frame.is_file() else None, self.key.precision)
            verify(files.window, graphs.window if graphs and graphs.window.is_file() else None, self.key.precision)
        except EngineMismatchError as err:  # the whole-window engine is still valid: run it
            log.warning("not reusing overlap work: %s", err)
            return None
        return SplitEngines(self._runtime, trt, files, meta, self.input_spec, self._torch, self.device)

    @property
    def supports_reuse(self) -> bool:
        return self.split is not None

    @property
    def streams(self) -> bool:
        return self.stream_step is not None

    def _new_stream(self) -> StreamState:
        return self.stream_step.new_state()  # type: ignore[union-attr]

    def _step(self, frames: np.ndarray, state: StreamState) -> np.ndarray:
        return self.stream_step.step(frames, state)  # type: ignore[union-attr]

    def _encode(self, frames: np.ndarray) -> tuple[Any, ...]:
        return self.split.encode(frames)  # type: ignore[union-attr]

    def _decode(self, features: list[Any]) -> np.ndarray:
        return self.split.decode(features)  # type: ignore[union-attr]

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self.stream_step is not None:  # a window without frame ids: a new stream of its frames
            return self.stream_step.step(batch[0], self.stream_step.new_state())[None]
        if self.split is not None:
            return self.split.decode([self.split.encode(batch[0])])
        torch = self._torch
        self._h_in.copy_(torch.from_numpy(batch))
        with torch.cuda.stream(self._stream):
            self._d_in.copy_(self._h_in, non_blocking=True)  # casts to the engine's input dtype on device
            if not self.context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
            self._h_out.copy_(self._d_out, non_blocking=True)
        self._stream.synchronize()
        return self._h_out.numpy().copy()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "path": str(self.path), "cache_key": self.key.to_dict()}

    def close(self) -> None:
        self.context = None
        self.engine = None
        self.split = None
        self.stream_step = None
