"""TensorRT reuse and stream-step paths up to the GPU, and their data flow on the CPU.

No GPU and no TensorRT here. The build of the split engines is checked against `FakeTensorRT`
(profiles: a frame batch of 1..T, tuned for one stride), the backend against it up to the first
CUDA allocation, and `SplitEngines`' data flow (frame engine with any batch, window engine with its
bound buffers, exact reuse across windows) with a fake whose execution contexts run the real split
ONNX graphs with ONNX Runtime on the memory the engine binds (CPU tensors' addresses). A causal model's
stream step (`model.stream.engine`) the same way: built by `vdepth-export engine FOLDER`, taken by the
backend, and its cache bindings (`tensorrt_stream.StreamStep`) stepping as ONNX Runtime's stream does.
"""

from __future__ import annotations

import ctypes
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_runtime_reuse import frames, rel, schedule, tiny_model
from test_runtime_tensorrt import GPU

from vdepth_ros.errors import ModelLoadError
from vdepth_ros.models.vda_lite import VideoDepthAnythingLite
from vdepth_ros.runtime import create_engine
from vdepth_ros.runtime import tensorrt_backend as trb
from vdepth_ros.runtime.reuse import SplitMeta, split_files_for
from vdepth_ros.runtime.spec import InputSpec, spec_path_for
from vdepth_ros.runtime.tensorrt_split import SplitEngines
from vdepth_ros.runtime.trt_cache import key_path_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def split_export(module_tmp: Path) -> Path:
    """The tiny model's whole and split graphs, exported once per module; tests only read it."""
    from vdepth_export.export_onnx import export_onnx
    from vdepth_export.export_split import export_split_onnx

    folder = module_tmp / "export"
    _, h, w = VideoDepthAnythingLite.tiny_input_shape()
    export_onnx(tiny_model(VideoDepthAnythingLite), folder, frames=8, height=h, width=w, parity=False)
    export_split_onnx(folder, folder / "model.onnx", parity=False)
    return folder


@pytest.fixture
def split_model(split_export: Path, tmp_path: Path) -> Path:
    """Each test's own copy of the export: tests write engine files beside the graphs (a fake's
    engine bytes, a tampered key), and sharing one folder made them depend on their order: the data
    flow test's hand-written engine files, which carry no build record, were refused by a later
    build as a file vdepth-export did not write (OutputExistsError, whenever it ran first)."""
    folder = tmp_path / "model"
    shutil.copytree(split_export, folder)
    return folder


def _view(address: int, shape: tuple[int, ...], ctype: Any = ctypes.c_float) -> np.ndarray:
    n = int(np.prod(shape))
    return np.ctypeslib.as_array((ctype * n).from_address(address)).reshape(shape)


_CTYPES = {"tensor(float)": ctypes.c_float, "tensor(int64)": ctypes.c_int64}


class OrtContext:
    """An execution context that runs an ONNX graph with ONNX Runtime on the bound host memory."""

    def __init__(self, onnx_path: Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        self.address: dict[str, int] = {}
        self.shapes = {a.name: tuple(a.shape) for a in self.session.get_inputs()}
        self.ctypes = {a.name: _CTYPES[a.type] for a in self.session.get_inputs()}
        self.executions = 0

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name: str, address: int) -> None:
        self.address[name] = address

    def execute_async_v3(self, stream: int) -> bool:
        feed = {
            a.name: _view(self.address[a.name], self.shapes[a.name], self.ctypes[a.name]).copy()
            for a in self.session.get_inputs()
        }
        outs = self.session.run(None, feed)
        for arg, out in zip(self.session.get_outputs(), outs, strict=True):
            _view(self.address[arg.name], out.shape)[...] = out
        self.executions += 1
        return True


class OrtRuntime:
    """`deserialize_cuda_engine` of "engine files" that hold the path of their ONNX graph."""

    def __init__(self, fake_trt: Any) -> None:
        self.trt = fake_trt
        self.contexts: list[OrtContext] = []

    def deserialize_cuda_engine(self, blob: bytes) -> Any:
        onnx_path = Path(blob.decode())
        engine = self.trt.engine_from_onnx(onnx_path)

        def context() -> OrtContext:
            self.contexts.append(OrtContext(onnx_path))
            return self.contexts[-1]

        engine.create_execution_context = context
        return engine


def test_split_engines_are_built_with_a_frame_batch_profile(split_model, fake_trt) -> None:
    from vdepth_export.export_split import build_split_engines

    results = build_split_engines(split_model / "model.onnx", precision="fp16", trt=fake_trt, gpu=GPU)
    assert [r.engine_path.name for r in results] == ["model.frame.engine", "model.window.engine"]
    frame_rec, window_rec = (json.loads(r.engine_path.read_bytes()) for r in results)
    _, h, w = VideoDepthAnythingLite.tiny_input_shape()
    # a stream adds 1 frame, a window of the 8/4 schedule 4, a first window 8
    assert frame_rec["profiles"] == [{"frames": [[1, 3, h, w], [4, 3, h, w], [8, 3, h, w]]}]
    assert window_rec["profiles"] == []  # the window graph is static
    assert "FP16" in frame_rec["flags"] and [t[0] for t in frame_rec["io"]][:1] == ["frames"]
    assert sorted(t[0] for t in window_rec["io"]) == ["disparity", "level1", "level2", "level3", "level4"]


def test_split_engine_data_flow_equals_the_whole_model(split_model, fake_trt) -> None:
    """SplitEngines on CPU tensors: encode new frames (any batch), decode windows, reuse the rest."""
    files = split_files_for(split_model / "model.onnx")
    engines = split_files_for(split_model / "model.onnx", ".engine")
    for graph, engine in ((files.frame, engines.frame), (files.window, engines.window)):
        engine.write_bytes(str(graph).encode())
    spec = InputSpec.load(spec_path_for(split_model / "model.onnx"))
    runtime = OrtRuntime(fake_trt)
    split = SplitEngines(runtime, fake_trt, engines, SplitMeta.load(files.meta), spec, torch, torch.device("cpu"))

    class CpuSplitEngine(trb.DepthEngine):  # TensorRTEngine's reuse hooks, without its CUDA set-up
        backend = "tensorrt-fake"
        supports_reuse = True

        def _encode(self, x):
            return split.encode(x)

        def _decode(self, features):
            return split.decode(features)

        def _run(self, batch):
            return split.decode([split.encode(batch[0])])

    engine = CpuSplitEngine(spec)
    whole = create_engine(split_model, backend="onnxruntime", reuse=False)
    windows = schedule(spec.window, spec.overlap, spec.keyframes, 3)
    clip = frames(max(max(w) for w in windows) + 1, spec.height, spec.width)
    for ids in windows:
        assert rel(engine.infer(clip[ids], frame_ids=ids), whole.infer(clip[ids])) <= 1e-5
    frame_ctx = runtime.contexts[0]
    assert frame_ctx.executions == 3 and frame_ctx.shapes["frames"][0] == 4  # 8, then 4 new frames twice
    assert engine.feature_cache.hits == 8
    assert rel(engine.infer(clip[:8]), whole.infer(clip[:8])) <= 1e-5  # no ids: both engines on all frames


def test_tensorrt_engine_takes_the_split_engines_until_cuda_memory(split_model, fake_trt, monkeypatch, caplog) -> None:
    from vdepth_export.build_engine import build_engine
    from vdepth_export.export_split import build_split_engines

    if torch.cuda.is_available():  # pragma: no cover
        pytest.skip("a GPU is present; this test covers the CPU-only path")
    monkeypatch.setattr(trb, "cuda_identity", lambda device=0: GPU)
    onnx = split_model / "model.onnx"
    # fp16, as the README builds them: the engines' spec holds the build precision, the split graphs' record
    # the graph's fp32, and the split engines were refused as "(..., 'fp32') ... the model is (..., 'fp16')"
    build_engine(onnx, precision="fp16", trt=fake_trt, gpu=GPU, force_engine_update=True)
    build_split_engines(onnx, precision="fp16", trt=fake_trt, gpu=GPU, force_engine_update=True)
    fake_trt.calls.clear()
    with pytest.raises((RuntimeError, AssertionError), match=r"(?i)cuda"):
        trb.TensorRTEngine(split_model / "model.engine", onnx_path=onnx)
    deserialized = [c for c in fake_trt.calls if c[0] == "deserialize_cuda_engine"]
    assert len(deserialized) == 2  # the frame and window engines, not the whole-window one
    # a split engine built from another graph fails its key check: never deserialized, the
    # whole-window engine runs instead (a warning says why)
    fake_trt.calls.clear()
    key_file = key_path_for(split_files_for(onnx, ".engine").frame)
    key_file.write_text(json.dumps({**json.loads(key_file.read_text()), "onnx_sha256": "0" * 64}))
    caplog.set_level(logging.WARNING, logger="vdepth_ros.runtime")
    with pytest.raises((RuntimeError, AssertionError), match=r"(?i)cuda"):
        trb.TensorRTEngine(split_model / "model.engine", onnx_path=onnx)
    assert len([c for c in fake_trt.calls if c[0] == "deserialize_cuda_engine"]) == 1
    assert "not reusing overlap work" in caplog.text and "onnx_sha256" in caplog.text


def test_a_folder_shared_by_two_machines_has_each_ones_split_engines(split_model, fake_trt, monkeypatch) -> None:
    """A model folder shared by a workstation and a Jetson: the Jetson's engine went beside the workstation's
    (`-o FOLDER/model.<platform>.engine`, the command the refusal names), but its split engines were not built
    (only without -o), and run as `model: FOLDER` or as that file it looked for `model.frame.engine` (the
    workstation's: key mismatch, no overlap reuse) and, as the folder, ran the workstation's `model.engine`
    check (fallback to ONNX Runtime). One rule now names and finds all three per machine."""
    from vdepth_export import build_engine as be
    from vdepth_export.cli import main as cli_main

    orin = ("NVIDIA Jetson AGX Orin", "8.7")
    monkeypatch.setattr(be, "cuda_identity", lambda device=0: GPU)
    assert build_engine_cli(cli_main, split_model) == 0  # the workstation: model.engine and its split engines
    theirs = {p.name: p.read_bytes() for p in split_model.glob("*.engine")}
    assert sorted(theirs) == ["model.engine", "model.frame.engine", "model.window.engine"]
    monkeypatch.setattr(be, "cuda_identity", lambda device=0: orin)
    monkeypatch.setattr(trb, "cuda_identity", lambda device=0: orin)
    assert build_engine_cli(cli_main, split_model) == 2  # refused: the workstation's engines are kept
    plat = "trt10.13.0.35-nvidia-jetson-agx-orin-sm8.7"
    beside = split_model / f"model.{plat}.engine"
    assert build_engine_cli(cli_main, split_model, "-o", str(beside)) == 0
    mine = [f"model.{plat}.engine", f"model.frame.{plat}.engine", f"model.window.{plat}.engine"]
    assert sorted(p.name for p in split_model.glob(f"*{plat}.engine")) == sorted(mine)
    assert {p: (split_model / p).read_bytes() for p in theirs} == theirs
    builds = sum(c[0] == "build_serialized_network" for c in fake_trt.calls)
    assert build_engine_cli(cli_main, split_model) == 0  # `engine FOLDER` now finds this machine's: reused
    assert sum(c[0] == "build_serialized_network" for c in fake_trt.calls) == builds

    loaded: list[Any] = []

    class LoadedError(Exception):
        pass

    def split_engines(runtime, trt, files, *args):  # the files the runtime takes, before any CUDA
        loaded.append(files)
        raise LoadedError

    monkeypatch.setattr(trb, "SplitEngines", split_engines)
    for model in (split_model, beside):  # the folder and this machine's engine file find the same split engines
        with pytest.raises(LoadedError):
            create_engine(model, backend="tensorrt", precision="fp16")
    assert [(f.frame.name, f.window.name) for f in loaded] == [tuple(mine[1:])] * 2
    with pytest.raises(LoadedError):  # auto: the Jetson's engine, not the workstation's mismatch and a fallback
        create_engine(split_model, precision="fp16")


def build_engine_cli(cli_main: Any, folder: Path, *args: str) -> int:
    return cli_main(["engine", str(folder), "--precision", "fp16", *args])


def test_split_graphs_the_runtime_would_not_use_get_no_engines(split_model, fake_trt, monkeypatch, caplog) -> None:
    """Split graphs left from an earlier model.onnx: `vdepth-export engine FOLDER` built their engines (minutes
    each on a Jetson) without a word, and every start then warned that they were not used. The builder now
    applies the runtime's rule (`SplitMeta.usable`): one warning naming `vdepth-export split`, no split engines."""
    from vdepth_export import build_engine as be
    from vdepth_export.cli import main as cli_main

    monkeypatch.setattr(be, "cuda_identity", lambda device=0: GPU)
    meta = split_files_for(split_model / "model.onnx").meta
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "onnx_sha256": "0" * 64}))
    caplog.set_level(logging.WARNING)
    assert build_engine_cli(cli_main, split_model) == 0
    assert sorted(p.name for p in split_model.glob("*.engine")) == ["model.engine"]
    assert "another model.onnx" in caplog.text and f"vdepth-export split {split_model} --overwrite" in caplog.text


# -- a causal model's stream step ----------------------------------------------------------------------------
def _stream_step_folder(folder: Path, context: int = 3) -> Path:
    """A causal model folder with a hand-written stream-step graph (no export: a second of work, not minutes):
    disparity = the frame's channel mean + half the cached means + n_past / 10; the cache slides by one frame."""
    import onnx
    from onnx import TensorProto, helper

    from vdepth_ros.runtime.reuse import STREAM_STEP_KEY

    _, h, w = VideoDepthAnythingLite.tiny_input_shape()
    k = context - 1
    tensor = helper.make_tensor_value_info
    const = helper.make_tensor
    nodes = [
        helper.make_node("ReduceMean", ["frame"], ["mean"], axes=[1], keepdims=0),  # (1, H, W)
        helper.make_node("ReduceSum", ["past0", "axis0"], ["past_sum"], keepdims=1),
        helper.make_node("Mul", ["past_sum", "half"], ["past_half"]),
        helper.make_node("Cast", ["n_past"], ["n_float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["n_float", "tenth"], ["n_term"]),
        helper.make_node("Add", ["mean", "past_half"], ["partial"]),
        helper.make_node("Add", ["partial", "n_term"], ["step"]),
        helper.make_node("Unsqueeze", ["step", "axis0"], ["disparity"]),
        helper.make_node("Slice", ["past0", "one", "big", "axis0"], ["older"]),
        helper.make_node("Concat", ["older", "mean"], ["new_past0"], axis=0),
    ]
    inits = [
        const("axis0", TensorProto.INT64, [1], [0]),
        const("one", TensorProto.INT64, [1], [1]),
        const("big", TensorProto.INT64, [1], [k + 1]),
        const("half", TensorProto.FLOAT, [], [0.5]),
        const("tenth", TensorProto.FLOAT, [], [0.1]),
    ]
    graph = helper.make_graph(
        nodes, "stream_step",
        [tensor("frame", TensorProto.FLOAT, [1, 3, h, w]), tensor("n_past", TensorProto.INT64, []),
         tensor("past0", TensorProto.FLOAT, [k, h, w])],
        [tensor("disparity", TensorProto.FLOAT, [1, 1, h, w]), tensor("new_past0", TensorProto.FLOAT, [k, h, w])],
        inits,
    )  # fmt: skip
    folder.mkdir(parents=True)
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
        folder / "model.stream.onnx",
    )
    spec = InputSpec(family="vda_lite", frames=2, height=h, width=w, window=2, overlap=1, input_name="frame",
                     extra={STREAM_STEP_KEY: {"context": context, "states": ["past0"]}})  # fmt: skip
    spec.save(spec_path_for(folder / "model.stream.onnx"))
    (folder / "config.json").write_text(json.dumps({"causal_context": context}))
    return folder


def test_a_causal_folders_stream_step_is_built_and_run_on_tensorrt(tmp_path, fake_trt, monkeypatch) -> None:
    """`vdepth-export engine FOLDER` of a causal model builds its stream step (`model.stream.engine`, static IO:
    no profile); `backend: tensorrt` takes it (it was refused: 'use backend onnxruntime or torch') up to the
    first CUDA allocation; its cache bindings, run by a fake whose contexts execute the graph on the bound CPU
    memory, step a stream (and a restarted one, and a window without ids) as ONNX Runtime's stream does."""
    from vdepth_export import build_engine as be
    from vdepth_export.cli import main as cli_main

    from vdepth_ros.runtime.onnx_backend import OnnxRuntimeEngine
    from vdepth_ros.runtime.tensorrt_stream import StreamStep

    folder = _stream_step_folder(tmp_path / "causal")
    monkeypatch.setattr(be, "cuda_identity", lambda device=0: GPU)
    monkeypatch.setattr(trb, "cuda_identity", lambda device=0: GPU)
    assert cli_main(["engine", str(folder)]) == 0
    record = json.loads((folder / "model.stream.engine").read_bytes())
    assert record["profiles"] == [] and sorted(t[0] for t in record["io"]) == [
        "disparity", "frame", "n_past", "new_past0", "past0"
    ]  # fmt: skip
    assert InputSpec.load(folder / "model.stream.engine.json").extra["stream_step"]["states"] == ["past0"]
    if not torch.cuda.is_available():  # the backend takes the stream engine: deserialized, then CUDA buffers
        fake_trt.calls.clear()
        with pytest.raises((RuntimeError, AssertionError), match=r"(?i)cuda"):
            create_engine(folder, backend="tensorrt")
        assert [c[0] for c in fake_trt.calls].count("deserialize_cuda_engine") == 1
    (folder / "model.stream.engine").rename(tmp_path / "elsewhere.engine")
    with pytest.raises(ModelLoadError, match=f"no TensorRT stream-step engine.*`vdepth-export engine {folder}`"):
        create_engine(folder, backend="tensorrt")

    spec = InputSpec.load(spec_path_for(folder / "model.stream.onnx"))
    runtime = OrtRuntime(fake_trt)
    step = StreamStep(runtime.deserialize_cuda_engine(str(folder / "model.stream.onnx").encode()), fake_trt, spec,
                      torch, torch.device("cpu"), "rebuild it")  # fmt: skip

    class CpuStreamEngine(trb.DepthEngine):  # TensorRTEngine's stream hooks, without its CUDA set-up
        backend = "tensorrt-fake"
        streams = True

        def _new_stream(self):
            return step.new_state()

        def _step(self, frames, state):
            return step.step(frames, state)

        def _run(self, batch):
            return step.step(batch[0], step.new_state())[None]

    engine, ort_engine = CpuStreamEngine(spec), OnnxRuntimeEngine(folder / "model.stream.onnx", threads=1)
    clip = frames(7, spec.height, spec.width)
    windows = [[max(0, t - 1), t] for t in range(7)]
    for _ in range(2):  # the second pass: a restarted stream (ids from 0)
        got = [np.stack([e.infer(clip[ids], frame_ids=ids)[-1] for ids in windows]) for e in (engine, ort_engine)]
        np.testing.assert_allclose(got[0], got[1], rtol=1e-6, atol=1e-6)
    assert runtime.contexts[0].executions == 14  # each frame stepped once per pass
    np.testing.assert_allclose(engine.infer(clip[3:5]), ort_engine.infer(clip[3:5]), rtol=1e-6, atol=1e-6)
    with pytest.raises(ModelLoadError, match="rebuild it"):  # an engine that is not the stream step it claims
        StreamStep(runtime.deserialize_cuda_engine(str(folder / "model.stream.onnx").encode()), fake_trt,
                   InputSpec.from_dict({**spec.to_dict(), "extra": {"stream_step": {"context": 3, "states": ["a"]}}}),
                   torch, torch.device("cpu"), "rebuild it")  # fmt: skip
