"""TensorRT backend up to the GPU point: IO planning by name against parsed ONNX graphs, cache-key
verification before deserializing, and clear errors without tensorrt/GPU.

`FakeTensorRT` mimics the TensorRT 10 Python API surface the project uses. Its ONNX parser
reads the real graph with `onnx`, and its "serialized engine" is a JSON record of the build
(flags, workspace, profiles, IO tensors), so tests can inspect what the builder asked for.
"""

from __future__ import annotations

import json
import sys
import types
from dataclasses import asdict
from enum import Enum, IntEnum
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from test_runtime_tinynet import TinyVideoNet, tiny_registry  # noqa: F401 - pytest fixture
from vdepth_export.export_onnx import export_onnx

from vdepth_ros.errors import BackendUnavailableError, ModelLoadError
from vdepth_ros.runtime import create_engine
from vdepth_ros.runtime import tensorrt_backend as trb
from vdepth_ros.runtime.spec import InputSpec, spec_path_for
from vdepth_ros.runtime.trt_cache import (
    EngineCacheKey,
    EngineMismatchError,
    key_path_for,
    onnx_sha256,
    read_key,
    rebuild_reason,
    verify_engine,
    write_key,
)

T, H, W = 4, 24, 40
GPU = ("NVIDIA RTX 4000 Ada", "8.9")


# -- a fake of the tensorrt module --------------------------------------------------------------
class _DataType(Enum):
    FLOAT = 0
    HALF = 1
    BF16 = 7
    INT64 = 9


_ONNX_TO_TRT = {TensorProto.FLOAT: "FLOAT", TensorProto.FLOAT16: "HALF", TensorProto.BFLOAT16: "BF16"}


class _Tensor:
    def __init__(self, name: str, shape: tuple[int, ...], dtype: str) -> None:
        self.name, self.shape, self.dtype = name, shape, dtype


def _onnx_io(path: str) -> tuple[list[_Tensor], list[_Tensor]]:
    proto = onnx.load(path, load_external_data=False)

    def conv(vi: Any) -> _Tensor:
        tt = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tt.shape.dim)
        return _Tensor(vi.name, dims, _ONNX_TO_TRT.get(tt.elem_type, "INT64"))

    inits = {i.name for i in proto.graph.initializer}
    return [conv(v) for v in proto.graph.input if v.name not in inits], [conv(v) for v in proto.graph.output]


class FakeTensorRT(types.ModuleType):
    """Records builder calls in `self.calls`; `fail_parse`/`fail_build` simulate TensorRT errors."""

    def __init__(self, version: str = "10.13.0.35") -> None:
        super().__init__("tensorrt")
        self.__version__ = version
        self.calls: list[tuple] = []
        self.fail_parse = False
        self.fail_build = False
        trt = self
        self.DataType = _DataType
        self.TensorIOMode = Enum("TensorIOMode", "NONE INPUT OUTPUT")
        self.NetworkDefinitionCreationFlag = IntEnum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 1})
        self.MemoryPoolType = Enum("MemoryPoolType", "WORKSPACE")
        self.BuilderFlag = Enum("BuilderFlag", "FP16 BF16 TF32")

        class Logger:
            WARNING = 2

            def __init__(self, level: int) -> None:
                self.level = level

        class Network:
            def __init__(self, flags: int) -> None:
                self.flags, self.inputs, self.outputs = flags, [], []

            @property
            def num_inputs(self) -> int:
                return len(self.inputs)

            def get_input(self, i: int) -> _Tensor:
                return self.inputs[i]

        class OnnxParser:
            def __init__(self, network: Network, logger: Logger) -> None:
                self.network, self.errors = network, []

            def parse_from_file(self, path: str) -> bool:
                trt.calls.append(("parse_from_file", path))
                if trt.fail_parse:
                    self.errors = ["In node 3 (Foo): UNSUPPORTED_NODE"]
                    return False
                self.network.inputs, self.network.outputs = _onnx_io(path)
                return True

            @property
            def num_errors(self) -> int:
                return len(self.errors)

            def get_error(self, i: int) -> str:
                return self.errors[i]

        class Profile:
            def __init__(self) -> None:
                self.shapes: dict[str, list] = {}

            def set_shape(self, name: str, mn: tuple, opt: tuple, mx: tuple) -> None:
                self.shapes[name] = [list(mn), list(opt), list(mx)]

        class TimingCache:
            def __init__(self, blob: bytes) -> None:
                self.blob = bytes(blob)

            def serialize(self) -> bytes:
                return self.blob + b"+timings"

        class Config:
            def __init__(self) -> None:
                self.flags, self.pools, self.profiles, self.cache = {"TF32"}, {}, [], None

            def set_memory_pool_limit(self, pool: Any, size: int) -> None:
                self.pools[pool.name] = size

            def set_flag(self, flag: Any) -> None:
                self.flags.add(flag.name)

            def clear_flag(self, flag: Any) -> None:
                self.flags.discard(flag.name)

            def add_optimization_profile(self, profile: Profile) -> int:
                self.profiles.append(profile)
                return len(self.profiles) - 1

            def create_timing_cache(self, blob: bytes) -> TimingCache:
                trt.calls.append(("create_timing_cache", bytes(blob)))
                return TimingCache(blob)

            def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
                trt.calls.append(("set_timing_cache", ignore_mismatch))
                # as TensorRT: a cache of another version or GPU (here: one this fake did not write) is refused
                if cache.blob and not cache.blob.endswith(b"+timings") and not ignore_mismatch:
                    return False
                self.cache = cache
                return True

            def get_timing_cache(self) -> TimingCache:
                return self.cache

        class Builder:
            def __init__(self, logger: Logger) -> None:
                trt.calls.append(("Builder",))

            def create_network(self, flags: int) -> Network:
                trt.calls.append(("create_network", flags))
                self.network = Network(flags)
                return self.network

            def create_builder_config(self) -> Config:
                return Config()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
                trt.calls.append(("build_serialized_network",))
                if trt.fail_build:
                    return None
                rec = {
                    "flags": sorted(config.flags),
                    "network_flags": network.flags,
                    "pools": config.pools,
                    "profiles": [p.shapes for p in config.profiles],
                    "io": [[t.name, True, list(t.shape), t.dtype] for t in network.inputs]
                    + [[t.name, False, list(t.shape), t.dtype] for t in network.outputs],
                }
                return json.dumps(rec).encode()

        class Engine:
            def __init__(self, rec: dict) -> None:
                self.rec = rec
                self.io = rec["io"]

            @property
            def num_io_tensors(self) -> int:
                return len(self.io)

            def get_tensor_name(self, i: int) -> str:
                return self.io[i][0]

            def _find(self, name: str) -> list:
                return next(t for t in self.io if t[0] == name)

            def get_tensor_mode(self, name: str) -> Any:
                return trt.TensorIOMode.INPUT if self._find(name)[1] else trt.TensorIOMode.OUTPUT

            def get_tensor_shape(self, name: str) -> tuple[int, ...]:
                return tuple(self._find(name)[2])

            def get_tensor_dtype(self, name: str) -> Any:
                return _DataType[self._find(name)[3]]

            def create_execution_context(self) -> Any:
                trt.calls.append(("create_execution_context",))
                return types.SimpleNamespace()

        class Runtime:
            def __init__(self, logger: Logger) -> None:
                pass

            def deserialize_cuda_engine(self, blob: bytes) -> Engine:
                trt.calls.append(("deserialize_cuda_engine", len(blob)))
                return Engine(json.loads(blob))

        self.Logger, self.Builder, self.OnnxParser, self.Runtime = Logger, Builder, OnnxParser, Runtime

    def engine_from_onnx(self, path: Path) -> Any:
        """An engine object whose IO tensors are the parsed ONNX graph's."""
        ins, outs = _onnx_io(str(path))
        io = [[t.name, True, list(t.shape), t.dtype] for t in ins] + [
            [t.name, False, list(t.shape), t.dtype] for t in outs
        ]
        return self.Runtime(None).deserialize_cuda_engine(json.dumps({"io": io}).encode())


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    out = tmp_path / "onnx"
    export_onnx(TinyVideoNet(channels=4).eval(), out, frames=T, height=H, width=W, parity=False)
    return out / "model.onnx"


def _two_output_graph(path: Path, *, dynamic: bool = False) -> Path:
    """An ONNX graph whose IO order differs from the names' meaning: outputs ('aux', 'disparity')."""
    t = "T" if dynamic else T
    x = helper.make_tensor_value_info("frames", TensorProto.FLOAT, [1, t, 3, H, W])
    aux = helper.make_tensor_value_info("aux", TensorProto.FLOAT, [1, t, 3, H, W])
    disp = helper.make_tensor_value_info("disparity", TensorProto.FLOAT, [1, t, H, W])
    nodes = [
        helper.make_node("Identity", ["frames"], ["aux"]),
        helper.make_node("ReduceMean", ["frames"], ["disparity"], axes=[2], keepdims=0),
    ]
    graph = helper.make_graph(nodes, "g", [x], [aux, disp])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _spec(**kw: Any) -> InputSpec:
    return InputSpec(family="tinytest", frames=T, height=H, width=W, window=T, overlap=1, **kw)


# -- IO planning by name -------------------------------------------------------------------------
def test_plan_io_binds_by_name_not_index(tmp_path, fake_trt) -> None:
    engine = fake_trt.engine_from_onnx(_two_output_graph(tmp_path / "g.onnx"))
    assert [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)] == ["frames", "aux", "disparity"]
    inp, out = trb.plan_io(engine, fake_trt, _spec())
    assert (inp.name, inp.is_input, inp.shape, inp.dtype) == ("frames", True, (1, T, 3, H, W), "FLOAT")
    assert (out.name, out.is_input, out.shape) == ("disparity", False, (1, T, H, W))  # not index 1 ('aux')
    with pytest.raises(ModelLoadError, match="no output tensor named 'depth'"):
        trb.plan_io(engine, fake_trt, _spec(output_name="depth"))


def test_plan_io_fills_dynamic_dims_and_checks_static_ones(tmp_path, fake_trt, exported) -> None:
    engine = fake_trt.engine_from_onnx(_two_output_graph(tmp_path / "d.onnx", dynamic=True))
    inp, out = trb.plan_io(engine, fake_trt, _spec())
    assert inp.shape == (1, T, 3, H, W)
    assert out.shape == (1, T, H, W)
    real = fake_trt.engine_from_onnx(exported)  # the exporter's real graph
    inp, out = trb.plan_io(real, fake_trt, InputSpec.load(spec_path_for(exported)))
    assert (inp.name, out.name) == ("frames", "disparity")
    with pytest.raises(ModelLoadError, match="the spec says"):
        trb.plan_io(real, fake_trt, InputSpec(family="x", frames=T, height=H + 4, width=W, window=T, overlap=1))
    assert trb.torch_dtype_for(inp) == "float32"


def test_single_io_with_other_names_is_accepted(tmp_path, fake_trt, caplog) -> None:
    x = helper.make_tensor_value_info("input.1", TensorProto.FLOAT16, [1, T, 3, H, W])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT16, [1, T, H, W])
    g = helper.make_graph([helper.make_node("ReduceMax", ["input.1"], ["output"], axes=[2], keepdims=0)], "g", [x], [y])
    path = tmp_path / "s.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    inp, out = trb.plan_io(fake_trt.engine_from_onnx(path), fake_trt, _spec())
    assert (inp.name, out.name, inp.dtype) == ("input.1", "output", "HALF")
    assert trb.torch_dtype_for(inp) == "float16"
    assert "using the only input" in caplog.text


# -- cache keys ----------------------------------------------------------------------------------
def _key(onnx_path: Path, **kw: str) -> EngineCacheKey:
    base = {"tensorrt_version": "10.13.0.35", "gpu_name": GPU[0], "compute_capability": GPU[1], "precision": "fp16"}
    return EngineCacheKey(onnx_sha256(onnx_path), **{**base, **kw})


def test_cache_key_hash_covers_onnx_and_external_data(tmp_path, exported) -> None:
    h1 = onnx_sha256(exported)
    assert len(h1) == 64
    assert onnx_sha256(exported) == h1
    data = exported.with_name(exported.name + ".data")
    data.write_bytes(b"weights")
    # its spec records that its weights are in the graph: a stray `.data` beside it is not part of it
    assert onnx_sha256(exported) == h1
    spec_file = exported.with_name(exported.name + ".json")
    spec = json.loads(spec_file.read_text())
    assert spec["extra"].pop("external_data", "absent") is None, spec["extra"]
    spec_file.write_text(json.dumps(spec))  # a spec from before that record: `<graph>.data` is its weights
    h2 = onnx_sha256(exported)
    data.write_bytes(b"weights2")
    assert len({h1, h2, onnx_sha256(exported)}) == 3
    data.unlink()
    k = _key(exported)
    assert EngineCacheKey.from_dict(json.loads(json.dumps(k.to_dict()))) == k
    assert k.digest() != _key(exported, precision="fp32").digest()


def test_rebuild_decisions(tmp_path, exported) -> None:
    engine = tmp_path / "model.engine"
    key = _key(exported)
    assert "no engine" in rebuild_reason(engine, key)
    engine.write_bytes(b"x")
    assert "no cache key" in rebuild_reason(engine, key)
    write_key(engine, key)
    assert rebuild_reason(engine, key) is None
    assert rebuild_reason(engine, key, force=True) == "force_engine_update requested"
    for field, value in [
        ("tensorrt_version", "10.7.0"),
        ("gpu_name", "NVIDIA Jetson AGX Orin"),
        ("compute_capability", "8.7"),
        ("precision", "fp32"),
        ("onnx_sha256", "0" * 64),
    ]:
        reason = rebuild_reason(engine, EngineCacheKey(**{**asdict(key), field: value}))
        assert reason is not None
        assert field in reason
    key_path_for(engine).write_text("{not json")
    assert "unreadable" in rebuild_reason(engine, key)


def test_verify_engine_refuses_mismatch(tmp_path, exported) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"x")
    with pytest.raises(EngineMismatchError, match="no cache key"):
        verify_engine(engine, tensorrt_version="10.13.0.35", gpu_name=GPU[0], compute_capability=GPU[1])
    write_key(engine, _key(exported))
    ok = verify_engine(engine, tensorrt_version="10.13.0.35", gpu_name=GPU[0], compute_capability=GPU[1])
    assert ok == read_key(engine)
    verify_engine(engine, tensorrt_version="10.13.0.35", gpu_name=GPU[0], compute_capability=GPU[1], onnx_path=exported)
    with pytest.raises(EngineMismatchError, match=r"tensorrt_version: engine '10\.13\.0\.35' vs now '10\.7\.0'"):
        verify_engine(engine, tensorrt_version="10.7.0", gpu_name=GPU[0], compute_capability=GPU[1])
    with pytest.raises(EngineMismatchError, match="precision"):
        verify_engine(
            engine, tensorrt_version="10.13.0.35", gpu_name=GPU[0], compute_capability=GPU[1], precision="fp32"
        )
    other = tmp_path / "other.onnx"
    other.write_bytes(exported.read_bytes() + b"\0")
    with pytest.raises(EngineMismatchError, match="onnx_sha256"):
        verify_engine(
            engine, tensorrt_version="10.13.0.35", gpu_name=GPU[0], compute_capability=GPU[1], onnx_path=other
        )


# -- the backend class up to the GPU ------------------------------------------------------------
def _engine_files(tmp_path: Path, trt: FakeTensorRT, exported: Path, key: EngineCacheKey) -> Path:
    engine = tmp_path / "model.engine"
    engine.write_bytes(
        json.dumps(
            {"io": [["frames", True, [1, T, 3, H, W], "FLOAT"], ["disparity", False, [1, T, H, W], "FLOAT"]]}
        ).encode()
    )
    write_key(engine, key)
    InputSpec.load(spec_path_for(exported)).save(spec_path_for(engine))
    return engine


def test_mismatched_engine_is_never_deserialized(tmp_path, fake_trt, exported, monkeypatch) -> None:
    monkeypatch.setattr(trb, "cuda_identity", lambda device=0: GPU)
    engine = _engine_files(tmp_path, fake_trt, exported, _key(exported, tensorrt_version="10.7.0"))
    with pytest.raises(EngineMismatchError, match="tensorrt_version"):
        trb.TensorRTEngine(engine)
    assert not [c for c in fake_trt.calls if c[0] == "deserialize_cuda_engine"]


def test_matching_engine_runs_until_cuda_memory(tmp_path, fake_trt, exported, monkeypatch) -> None:
    """Key verified, engine deserialized, IO planned by name; then CUDA buffers are needed."""
    import torch

    if torch.cuda.is_available():  # pragma: no cover
        pytest.skip("a GPU is present; this test covers the CPU-only path")
    monkeypatch.setattr(trb, "cuda_identity", lambda device=0: GPU)
    engine = _engine_files(tmp_path, fake_trt, exported, _key(exported))
    with pytest.raises((RuntimeError, AssertionError), match=r"(?i)cuda"):
        trb.TensorRTEngine(engine, precision="fp16", onnx_path=exported)
    names = [c[0] for c in fake_trt.calls]
    assert names == ["deserialize_cuda_engine", "create_execution_context"]


def test_without_gpu_the_backend_says_so(tmp_path, fake_trt, exported) -> None:
    engine = _engine_files(tmp_path, fake_trt, exported, _key(exported))
    ok, why = trb.tensorrt_status()
    assert not ok
    assert "no CUDA GPU" in why
    with pytest.raises(BackendUnavailableError, match="no CUDA GPU"):
        create_engine(engine, backend="tensorrt")


def test_old_tensorrt_is_refused(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT(version="8.6.1"))
    with pytest.raises(BackendUnavailableError, match=">= 10"):
        trb.import_tensorrt()


def test_missing_tensorrt_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails like an absent package
    with pytest.raises(BackendUnavailableError, match="install the 'trt' extra"):
        trb.import_tensorrt()


def test_auto_skips_engine_without_tensorrt(tmp_path, exported, caplog) -> None:
    folder = exported.parent
    (folder / "model.engine").write_bytes(b"stale")
    import logging

    caplog.set_level(logging.INFO, logger="vdepth_ros.runtime")
    with create_engine(folder) as eng:
        assert eng.backend == "onnxruntime"
    assert "tensorrt unavailable" in caplog.text
    (folder / "model.engine").unlink()
    x = np.zeros((T, H, W, 3), np.uint8)
    with create_engine(folder) as eng:
        assert eng.infer(x).shape == (T, H, W)


def test_auto_falls_back_when_the_engine_key_mismatches(tmp_path, fake_trt, exported, monkeypatch, caplog) -> None:
    """With TensorRT + GPU present, a stale engine is skipped (warning), never deserialized."""
    import logging

    folder = exported.parent
    monkeypatch.setattr(trb, "cuda_identity", lambda device=0: GPU)
    engine = _engine_files(folder, fake_trt, exported, _key(exported, gpu_name="NVIDIA Jetson AGX Orin"))
    assert engine == folder / "model.engine"
    caplog.set_level(logging.INFO, logger="vdepth_ros.runtime")
    with create_engine(folder, precision="fp16") as eng:
        assert eng.backend == "onnxruntime"
    assert "tensorrt skipped" in caplog.text
    assert "gpu_name" in caplog.text
    assert not [c for c in fake_trt.calls if c[0] == "deserialize_cuda_engine"]
    with pytest.raises(EngineMismatchError, match="gpu_name"):
        create_engine(folder, backend="tensorrt", precision="fp16")


def test_an_engine_of_another_precision_names_the_parameter_not_a_rebuild(
    tmp_path, fake_trt, exported, monkeypatch, caplog
) -> None:
    """The README builds `--precision fp16` engines, and the node's `precision` defaults to fp32: the engine
    was skipped with 'rebuild with `vdepth-export engine --force-engine-update`' (no model, and a rebuild at
    the default fp32 replaces the fp16 engine the user built). The fix is the parameter, or an engine of the
    precision asked for; any other mismatch names the full rebuild command."""
    import logging

    folder = exported.parent
    monkeypatch.setattr(trb, "cuda_identity", lambda device=0: GPU)
    _engine_files(folder, fake_trt, exported, _key(exported, precision="fp16"))
    caplog.set_level(logging.WARNING, logger="vdepth_ros.runtime")
    with create_engine(folder) as eng:  # precision fp32, the default
        assert eng.backend == "onnxruntime"
    assert "precision: fp16" in caplog.text
    with pytest.raises(
        EngineMismatchError, match=rf"precision: fp16.*`vdepth-export engine {folder} --precision fp32`"
    ):
        create_engine(folder, backend="tensorrt")
    _engine_files(folder, fake_trt, exported, _key(exported, precision="fp16", tensorrt_version="10.7.0"))
    # another machine's engine (a shared folder): the rebuild that replaces it (`engine FOLDER` keeps it without
    # --overwrite), and the one beside it for this machine
    with pytest.raises(
        EngineMismatchError, match=rf"`vdepth-export engine {folder} --precision fp16 --overwrite`"
    ) as err:
        create_engine(folder, backend="tensorrt", precision="fp16")
    beside = folder / "model.trt10.13.0.35-nvidia-rtx-4000-ada-sm8.9.engine"
    assert f"`vdepth-export engine {folder} --precision fp16 -o {beside}`" in str(err.value)
    assert f"`model: {folder}` then runs it" in str(err.value)  # the folder finds this machine's engine


@pytest.mark.usefixtures("tiny_registry")
def test_an_engine_built_from_an_older_model_onnx_is_not_run_for_the_folder(
    tmp_path, fake_trt, exported, monkeypatch, caplog
) -> None:
    """model.onnx exported again (another resolution, or a graph copied in from elsewhere) and the engine not
    rebuilt: `create_engine(folder)` checked the engine against the GPU and TensorRT only, and ran the old
    graph's engine. Its key's ONNX sha256 is now checked against the folder's model.onnx."""
    import logging

    folder = exported.parent
    monkeypatch.setattr(trb, "cuda_identity", lambda device=0: GPU)
    _engine_files(folder, fake_trt, exported, _key(exported))
    export_onnx(folder, frames=T, height=H * 2, width=W * 2, parity=False)  # its own weights, another size
    caplog.set_level(logging.WARNING, logger="vdepth_ros.runtime")
    with create_engine(folder, precision="fp16") as eng:
        assert eng.backend == "onnxruntime"
        assert (eng.input_spec.height, eng.input_spec.width) == (H * 2, W * 2)
    assert "onnx_sha256" in caplog.text
    assert f"vdepth-export engine {folder} --precision fp16" in caplog.text
    assert not [c for c in fake_trt.calls if c[0] == "deserialize_cuda_engine"]
    with pytest.raises(EngineMismatchError, match="onnx_sha256"):
        create_engine(folder, backend="tensorrt", precision="fp16")


def test_an_engine_built_from_a_graph_that_failed_parity_is_named(
    tmp_path, fake_trt, exported, monkeypatch, caplog
) -> None:
    """An engine of a graph installed with `vdepth-export onnx --no-strict` after failing its parity check."""
    import logging

    import torch

    from vdepth_ros.runtime import spec as spec_mod
    from vdepth_ros.runtime.spec import parity_path_for

    if torch.cuda.is_available():  # pragma: no cover
        pytest.skip("a GPU is present; this test covers the CPU-only path")
    monkeypatch.setattr(trb, "cuda_identity", lambda device=0: GPU)
    monkeypatch.setattr(spec_mod, "_WARNED_PARITY", set())
    engine = _engine_files(exported.parent, fake_trt, exported, _key(exported))
    spec = InputSpec.load(spec_path_for(engine))
    InputSpec.from_dict({**spec.to_dict(), "extra": {**spec.extra, "onnx": exported.name}}).save(spec_path_for(engine))
    check = {"name": "bright@T=4", "max_abs": 0.5, "max_abs_rel": 0.5, "passed": False}
    parity_path_for(exported).write_text(json.dumps({"passed": False, "tolerance_rel": 1e-4, "checks": [check]}))
    caplog.set_level(logging.WARNING, logger="vdepth_ros.runtime")
    with pytest.raises((RuntimeError, AssertionError), match=r"(?i)cuda"):  # past the checks: CUDA memory
        trb.TensorRTEngine(engine, precision="fp16")
    assert "model.engine (built from model.onnx) failed its parity check" in caplog.text


def test_a_folder_without_machines_engines_asks_no_gpu_who_it_is(fake_trt, exported, monkeypatch) -> None:
    """Finding this machine's engine beside another's (`model.<platform>.engine`) needs the GPU's name, which
    torch reads by creating a CUDA context: a folder run on ONNX Runtime must not pay for that (memory on a
    Jetson) where no machine's engine lies beside `model.engine`."""

    def asked(device: int = 0) -> tuple[str, str]:
        raise AssertionError("CUDA queried")

    monkeypatch.setattr(trb, "cuda_identity", asked)
    with create_engine(exported.parent) as engine:
        assert engine.backend == "onnxruntime"
