"""build_engine against a fake TensorRT 10 module: API calls, precision flags, profiles, timing
cache, cache-key reuse/rebuild, and the sidecar files the runtime reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_runtime_tensorrt import GPU, FakeTensorRT
from test_runtime_tinynet import TinyVideoNet
from vdepth_export.build_engine import EngineBuildError, build_engine, default_timing_cache
from vdepth_export.cli import main as cli_main
from vdepth_export.export_onnx import export_onnx

from vdepth_ros.errors import BackendUnavailableError, ConfigError
from vdepth_ros.offline.errors import OutputExistsError
from vdepth_ros.runtime import create_engine
from vdepth_ros.runtime import tensorrt_backend as trb
from vdepth_ros.runtime.spec import InputSpec, spec_path_for
from vdepth_ros.runtime.trt_cache import key_path_for, onnx_sha256, read_key

T, H, W = 4, 24, 40


@pytest.fixture
def onnx_file(tmp_path) -> Path:
    export_onnx(TinyVideoNet(channels=4).eval(), tmp_path, frames=T, height=H, width=W, parity=False)
    return tmp_path / "model.onnx"


def _record(engine: Path) -> dict:
    return json.loads(engine.read_bytes())


def test_build_fp16_writes_engine_key_spec_and_timing_cache(onnx_file, fake_trt) -> None:
    res = build_engine(onnx_file, precision="fp16", workspace_gib=2, trt=fake_trt, gpu=GPU)
    engine = onnx_file.with_name("model.engine")
    assert res.engine_path == engine
    assert res.rebuilt
    assert "no engine" in res.reason
    rec = _record(engine)
    assert rec["flags"] == ["FP16"]  # TF32 cleared, FP16 set
    assert rec["network_flags"] == 0  # fp32 ONNX: not strongly typed
    assert rec["pools"] == {"WORKSPACE": 2 * 1024**3}
    assert rec["profiles"] == []  # static graph: nothing to profile
    key = read_key(engine)
    assert key.to_dict() == {
        "key_version": 1,
        "onnx_sha256": onnx_sha256(onnx_file),
        "tensorrt_version": "10.13.0.35",
        "gpu_name": GPU[0],
        "compute_capability": GPU[1],
        "precision": "fp16",
    }
    spec = InputSpec.load(spec_path_for(engine))
    assert spec.precision == "fp16"
    assert spec.extra["onnx_precision"] == "fp32"
    assert res.timing_cache == default_timing_cache(engine, key)
    assert res.timing_cache.name == "timing-trt10.13.0.35-nvidia-rtx-4000-ada-sm8.9.cache"
    assert res.timing_cache.read_bytes() == b"+timings"
    assert ("set_timing_cache", False) in fake_trt.calls  # ignore_mismatch=False


def test_reuse_rebuild_and_force(onnx_file, fake_trt) -> None:
    build_engine(onnx_file, precision="fp16", trt=fake_trt, gpu=GPU)
    builds = lambda: sum(c[0] == "build_serialized_network" for c in fake_trt.calls)  # noqa: E731
    assert builds() == 1
    again = build_engine(onnx_file, precision="fp16", trt=fake_trt, gpu=GPU)
    assert not again.rebuilt
    assert builds() == 1
    # the second build loads the saved timing cache
    forced = build_engine(onnx_file, precision="fp16", trt=fake_trt, gpu=GPU, force_engine_update=True)
    assert forced.rebuilt
    assert forced.reason == "force_engine_update requested"
    assert ("create_timing_cache", b"+timings") in fake_trt.calls
    # another GPU, TensorRT version (with --overwrite: another machine's engine), precision or ONNX file:
    # rebuild, and say why
    orin = ("NVIDIA Jetson AGX Orin", "8.7")
    other = build_engine(onnx_file, precision="fp16", trt=fake_trt, gpu=orin, overwrite=True)
    assert other.rebuilt
    assert "gpu_name" in other.reason
    assert "compute_capability" in other.reason
    newer = build_engine(onnx_file, precision="fp16", trt=FakeTensorRT("10.14.1"), gpu=orin, overwrite=True)
    assert "tensorrt_version" in newer.reason
    build_engine(onnx_file, precision="fp16", trt=fake_trt, gpu=GPU, overwrite=True)
    fp32 = build_engine(onnx_file, precision="fp32", trt=fake_trt, gpu=GPU)
    assert "precision" in fp32.reason
    assert "TF32" not in _record(fp32.engine_path)["flags"]
    assert build_engine(onnx_file, precision="fp32", trt=fake_trt, gpu=GPU, tf32=True, force_engine_update=True)
    assert "TF32" in _record(fp32.engine_path)["flags"]
    export_onnx(TinyVideoNet(channels=5).eval(), onnx_file.parent, frames=T, height=H, width=W, parity=False,
                overwrite=True)  # fmt: skip
    changed = build_engine(onnx_file, precision="fp32", trt=fake_trt, gpu=GPU)
    assert "onnx_sha256" in changed.reason


def test_dynamic_frames_get_a_fixed_profile(tmp_path, fake_trt) -> None:
    export_onnx(TinyVideoNet(channels=4), tmp_path, frames=T, height=H, width=W, dynamic_frames=True, parity=False)
    res = build_engine(tmp_path / "model.onnx", trt=fake_trt, gpu=GPU)
    shape = [1, T, 3, H, W]
    assert _record(res.engine_path)["profiles"] == [{"frames": [shape, shape, shape]}]
    assert InputSpec.load(spec_path_for(res.engine_path)).dynamic_frames is False


def test_reduced_precision_onnx_builds_strongly_typed(tmp_path, fake_trt) -> None:
    export_onnx(TinyVideoNet(channels=4), tmp_path, frames=T, height=H, width=W, precision="fp16", parity=False)
    with pytest.raises(ConfigError, match="exported in fp16"):
        build_engine(tmp_path / "model.onnx", precision="fp32", trt=fake_trt, gpu=GPU)
    # without --precision the graph's: `vdepth-export engine FOLDER` of an fp16 export was refused, naming fp16
    res = build_engine(tmp_path / "model.onnx", trt=fake_trt, gpu=GPU)
    assert res.key.precision == "fp16" and res.rebuilt
    assert not build_engine(tmp_path / "model.onnx", precision="fp16", trt=fake_trt, gpu=GPU).rebuilt
    rec = _record(res.engine_path)
    assert rec["network_flags"] == 1 << 1  # 1 << STRONGLY_TYPED
    assert rec["flags"] == ["TF32"]  # no precision flags on a strongly typed network


def test_builder_errors(onnx_file, fake_trt) -> None:
    with pytest.raises(ConfigError, match=r"bf16 needs compute capability >= 8\.0"):
        build_engine(onnx_file, precision="bf16", trt=fake_trt, gpu=("Tesla T4", "7.5"))
    fake_trt.fail_parse = True
    with pytest.raises(EngineBuildError, match="UNSUPPORTED_NODE"):
        build_engine(onnx_file, trt=fake_trt, gpu=GPU)
    fake_trt.fail_parse, fake_trt.fail_build = False, True
    with pytest.raises(EngineBuildError, match="failed to build"):
        build_engine(onnx_file, trt=fake_trt, gpu=GPU)
    engine = onnx_file.with_name("model.engine")
    assert not engine.exists()
    assert not key_path_for(engine).exists()  # no key without an engine


def test_failed_rebuild_drops_the_old_key(onnx_file, fake_trt) -> None:
    res = build_engine(onnx_file, trt=fake_trt, gpu=GPU)
    fake_trt.fail_build = True
    # a rebuild for other options (or another GPU, TensorRT version) that fails or is interrupted dropped the key
    # of an engine that still works where it was built: it is kept as it was
    key = key_path_for(res.engine_path).read_bytes()
    with pytest.raises(EngineBuildError):
        build_engine(onnx_file, trt=fake_trt, gpu=GPU, tf32=True)
    assert key_path_for(res.engine_path).read_bytes() == key
    # asked to rebuild the matching engine (distrusted), a failure leaves it untrusted
    with pytest.raises(EngineBuildError):
        build_engine(onnx_file, trt=fake_trt, gpu=GPU, force_engine_update=True)
    assert res.engine_path.exists()
    assert not key_path_for(res.engine_path).exists()  # the old engine will not be trusted blindly


def test_built_engine_plans_io_by_name(onnx_file, fake_trt) -> None:
    res = build_engine(onnx_file, trt=fake_trt, gpu=GPU)
    engine = fake_trt.Runtime(None).deserialize_cuda_engine(res.engine_path.read_bytes())
    inp, out = trb.plan_io(engine, fake_trt, InputSpec.load(spec_path_for(res.engine_path)))
    assert (inp.name, inp.shape, out.name, out.shape) == ("frames", (1, T, 3, H, W), "disparity", (1, T, H, W))


def test_cli_engine_without_tensorrt_names_the_extra(onnx_file, capsys, monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert cli_main(["engine", str(onnx_file.parent)]) == 2
    assert "install the 'trt' extra" in capsys.readouterr().err
    with pytest.raises(BackendUnavailableError):
        build_engine(onnx_file)


def test_other_build_options_rebuild_a_matching_engine(onnx_file, fake_trt) -> None:
    """`vdepth-export engine FOLDER --tf32` (or another --workspace-gib) over an engine built without it said
    'cache key matches' and kept the old engine: the option asked for was dropped without a word."""
    first = build_engine(onnx_file, precision="fp32", trt=fake_trt, gpu=GPU)
    assert "TF32" not in _record(first.engine_path)["flags"]
    tf32 = build_engine(onnx_file, precision="fp32", tf32=True, trt=fake_trt, gpu=GPU)
    assert tf32.rebuilt
    assert "tf32 False -> True" in tf32.reason
    assert "TF32" in _record(tf32.engine_path)["flags"]
    assert not build_engine(onnx_file, precision="fp32", tf32=True, trt=fake_trt, gpu=GPU).rebuilt
    bigger = build_engine(onnx_file, precision="fp32", tf32=True, workspace_gib=8, trt=fake_trt, gpu=GPU)
    assert "workspace_gib 4.0 -> 8.0" in bigger.reason
    assert _record(bigger.engine_path)["pools"] == {"WORKSPACE": 8 * 1024**3}


def test_a_timing_cache_given_that_does_not_match_is_not_overwritten(onnx_file, fake_trt, caplog) -> None:
    """`--timing-cache FILE` holding another GPU's or TensorRT version's timings (a cache shared over NFS by
    two machines), or a file that is no timing cache at all (a wrong path): the build started a new cache,
    as it should, but then wrote it over FILE, destroying the user's file. The file is kept now; the build
    runs, its timings unsaved, with a warning naming a path for this GPU's cache."""
    import logging

    mine = onnx_file.parent / "shared.cache"
    mine.write_bytes(b"the other machine's timings")
    with caplog.at_level(logging.WARNING, logger="vdepth_export.build_engine"):
        res = build_engine(onnx_file, precision="fp16", timing_cache=mine, trt=fake_trt, gpu=GPU)
    assert res.rebuilt and res.engine_path.is_file()
    assert mine.read_bytes() == b"the other machine's timings"
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "shared.cache" in said and "not updated" in said, said
    # the default cache, named for this TensorRT version and GPU, is the tool's own: a bad one is replaced
    default = default_timing_cache(res.engine_path, res.key)
    default.write_bytes(b"damaged")
    build_engine(onnx_file, precision="fp16", trt=fake_trt, gpu=GPU, force_engine_update=True)
    assert default.read_bytes() == b"+timings"


def test_an_engine_of_another_tool_with_its_own_json_is_not_replaced(onnx_file, fake_trt) -> None:
    """`-o detector.engine` where the user keeps another tool's engine with that tool's `detector.engine.json`
    beside it: the JSON's name alone made it pass for an engine vdepth-export built, and it was replaced."""
    from vdepth_ros.offline.errors import OutputExistsError

    theirs = onnx_file.parent / "detector.engine"
    theirs.write_bytes(b"another tool's engine")
    spec_path_for(theirs).write_text('{"classes": ["person", "forklift"], "input": [640, 640]}\n')
    with pytest.raises(OutputExistsError, match="not an engine vdepth-export built"):
        build_engine(onnx_file, theirs, precision="fp16", trt=fake_trt, gpu=GPU)
    assert theirs.read_bytes() == b"another tool's engine"
    ours = build_engine(onnx_file, onnx_file.parent / "depth.engine", precision="fp16", trt=fake_trt, gpu=GPU)
    assert not build_engine(onnx_file, ours.engine_path, precision="fp16", trt=fake_trt, gpu=GPU).rebuilt
    # its own engine at -o, which another key would rebuild (it may be the one another GPU runs), was replaced
    # without a word: now only with overwrite, and kept as it was without it
    built = ours.engine_path.read_bytes()
    with pytest.raises(OutputExistsError, match=r"holds an engine built earlier.*precision.*--overwrite"):
        build_engine(onnx_file, ours.engine_path, precision="fp32", trt=fake_trt, gpu=GPU)
    assert ours.engine_path.read_bytes() == built and key_path_for(ours.engine_path).is_file()
    again = build_engine(onnx_file, ours.engine_path, precision="fp32", trt=fake_trt, gpu=GPU, overwrite=True)
    assert again.rebuilt and ours.engine_path.read_bytes() != built


def test_a_read_only_timing_cache_does_not_lose_the_built_engine(onnx_file, fake_trt, caplog, monkeypatch) -> None:
    """`--timing-cache` in a folder shared read-only (prepared once for this GPU): the build ran, then
    saving the timings failed and the engine built for minutes was lost with that error. The engine
    is saved now, the cache is kept as it was, with one warning."""
    import logging

    shared = onnx_file.parent / "shared"
    shared.mkdir()
    real_mkdir = Path.mkdir

    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        if self.parent == shared:  # chmod does not stop root, who runs CI
            raise PermissionError(13, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", read_only)
    with caplog.at_level(logging.WARNING, logger="vdepth_export.build_engine"):
        res = build_engine(onnx_file, timing_cache=shared / "timing.cache", trt=fake_trt, gpu=GPU)
    assert res.rebuilt and res.engine_path.is_file() and read_key(res.engine_path) == res.key
    assert list(shared.iterdir()) == []
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "timing cache not updated" in said[0] and "Permission denied" in said[0], said


def test_a_folder_shared_by_two_machines_keeps_each_ones_engine(onnx_file, fake_trt, capsys, monkeypatch) -> None:
    """A model folder shared by a workstation and a Jetson (NFS, a synced folder): `vdepth-export engine FOLDER`
    on each rebuilt `model.engine` in place for its own GPU without a word, replacing the other's; each
    machine's next run rebuilt it again, for good. The engine of the same graph built for another GPU or
    TensorRT version is now kept unless --overwrite, and the error names the -o path beside it that this
    machine's engine can have; a changed graph still rebuilds in place (its engine is stale everywhere)."""
    from vdepth_export import build_engine as be

    orin = ("NVIDIA Jetson AGX Orin", "8.7")
    folder, engine = onnx_file.parent, onnx_file.with_name("model.engine")
    theirs = build_engine(onnx_file, precision="fp16", trt=fake_trt, gpu=GPU)
    before = engine.read_bytes(), key_path_for(engine).read_text()
    with pytest.raises(OutputExistsError, match="another machine") as err:
        build_engine(onnx_file, precision="fp16", trt=fake_trt, gpu=orin)
    assert (engine.read_bytes(), key_path_for(engine).read_text()) == before  # the workstation's engine is kept
    beside = folder / "model.trt10.13.0.35-nvidia-jetson-agx-orin-sm8.7.engine"
    assert f"-o {beside}" in str(err.value) and "--overwrite" in str(err.value)
    with pytest.raises(OutputExistsError):  # --force-engine-update is no licence to replace another's
        build_engine(onnx_file, precision="fp16", trt=fake_trt, gpu=orin, force_engine_update=True)
    # the CLI: exit 2, the same line, nothing rebuilt
    monkeypatch.setattr(be, "cuda_identity", lambda device=0: orin)
    builds = sum(c[0] == "build_serialized_network" for c in fake_trt.calls)
    assert cli_main(["engine", str(folder), "--precision", "fp16"]) == 2
    assert f"-o {beside}" in capsys.readouterr().err
    assert sum(c[0] == "build_serialized_network" for c in fake_trt.calls) == builds
    # the command it names: each machine keeps its own engine, neither is rebuilt again
    mine = build_engine(onnx_file, beside, precision="fp16", trt=fake_trt, gpu=orin)
    assert mine.rebuilt and read_key(beside).gpu_name == orin[0]
    assert not build_engine(onnx_file, precision="fp16", trt=fake_trt, gpu=GPU).rebuilt
    assert not build_engine(onnx_file, beside, precision="fp16", trt=fake_trt, gpu=orin).rebuilt
    assert theirs.engine_path == engine and read_key(engine).gpu_name == GPU[0]
    monkeypatch.setattr(trb, "cuda_identity", lambda device=0: orin)
    import torch

    if not torch.cuda.is_available():  # `model: <beside>` on the Jetson: key verified, deserialized, then CUDA
        calls = len(fake_trt.calls)
        with pytest.raises((RuntimeError, AssertionError), match=r"(?i)cuda"):
            create_engine(str(beside), backend="tensorrt", precision="fp16")
        assert [c[0] for c in fake_trt.calls[calls:]][:1] == ["deserialize_cuda_engine"]
    # another graph exported into the folder: the engine is stale for every machine, rebuilt in place
    export_onnx(TinyVideoNet(channels=5).eval(), folder, frames=T, height=H, width=W, parity=False, overwrite=True)
    assert "onnx_sha256" in build_engine(onnx_file, precision="fp16", trt=fake_trt, gpu=orin).reason
