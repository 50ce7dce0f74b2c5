"""export_onnx: files, checker, InputSpec, parity report, external data, dynamic frames, CLI."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
import vdepth_export.export_onnx as export_module
from test_runtime_tinynet import TinyVideoNet, tiny_registry  # noqa: F401 - pytest fixture
from torch import nn
from vdepth_export.cli import main as cli_main
from vdepth_export.export_onnx import ExportError, export_onnx, parity_path_for
from vdepth_export.parity import CONSTANT_OUTPUT, compare, parity_clips, parity_report, synthetic_clip

from vdepth_ros.errors import ModelLoadError
from vdepth_ros.models import ExportSignature, InputConstraints, VideoDepthModel, family_class, register_to_config
from vdepth_ros.runtime import create_engine
from vdepth_ros.runtime.spec import InputSpec, SpecError, spec_path_for
from vdepth_ros.runtime.trt_cache import (
    EXTERNAL_DATA_KEY,
    external_data_path,
    file_sha256,
    onnx_sha256,
    ort_trt_cache_dir,
)

T, H, W = 4, 24, 40  # non-square, not the model's default window (6)


def foldable_nodes(proto: onnx.ModelProto) -> list[str]:
    """The ops of nodes that compute from initializers and constants alone (constant folding left them)."""
    const = {t.name for t in proto.graph.initializer}
    const |= {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.op_type for n in proto.graph.node if n.op_type != "Constant" and set(n.input) <= const]


def test_export_writes_checked_graph_spec_and_parity(tmp_path, evaldata) -> None:
    model = TinyVideoNet(channels=4).eval()
    res = export_onnx(model, tmp_path, frames=T, height=H, width=W, threads=1)
    onnx_path = tmp_path / "model.onnx"
    assert res.onnx_path == onnx_path
    onnx.checker.check_model(str(onnx_path))
    proto = onnx.load(str(onnx_path))
    assert proto.opset_import[0].version >= 17
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, T, 3, H, W]
    assert res.dynamic_axes == {}
    assert not external_data_path(onnx_path).exists()
    assert foldable_nodes(proto) == []  # e.g. the model's 1/std

    spec = InputSpec.load(spec_path_for(onnx_path))
    assert (spec.family, spec.frames, spec.height, spec.width) == ("tinytest", T, H, W)
    assert spec.multiple_of == 4
    assert spec.extra["exporter"] == "legacy"

    report = json.loads(parity_path_for(onnx_path).read_text())
    assert report["passed"] is True
    assert len(report["checks"]) == 2
    assert len(report["inputs"]) == 2
    assert all(name.startswith("evaldata:") for name in report["inputs"])  # real frames when present
    for check in report["checks"]:
        assert check["max_abs_rel"] <= 1e-4
        assert check["ref_range"] > 0
    assert report["constant_reference"] == []
    # the folder is complete: model saved, so every backend loads it
    assert (tmp_path / "config.json").is_file()


@pytest.mark.usefixtures("tiny_registry")
def test_export_from_folder_reloads_with_create_engine(tmp_path) -> None:
    model = TinyVideoNet(channels=4).eval()
    model.save_pretrained(tmp_path)
    rc = cli_main(["onnx", str(tmp_path), "--frames", "3", "--height", "20", "--width", "28", "--synthetic"])
    assert rc == 0
    report = json.loads(parity_path_for(tmp_path / "model.onnx").read_text())
    assert report["inputs"] == ["synthetic:seed0", "synthetic:seed1"]
    clip = synthetic_clip(3, 20, 28, seed=7)
    with (
        create_engine(tmp_path, backend="onnxruntime") as ort_eng,
        create_engine(tmp_path, backend="torch", frames=3, height=20, width=28) as torch_eng,
    ):
        a, b = ort_eng.infer(clip), torch_eng.infer(clip)
        assert compare("x", a, b, 1e-4).passed


def test_external_data_for_large_graphs(tmp_path) -> None:
    model = TinyVideoNet(channels=4).eval()
    res = export_onnx(model, tmp_path, frames=T, height=H, width=W, external_data_threshold=1, evaldata=None)
    assert res.external_data
    data = external_data_path(res.onnx_path)
    assert data.is_file()
    assert data.stat().st_size > 0
    proto = onnx.load(str(res.onnx_path), load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert res.parity["passed"] is True  # ONNX Runtime resolves the external file
    # onnx wrote the data file for its owner alone (0600) beside a graph of the umask's mode: a node or
    # container of another user read the graph and failed on its weights
    assert data.stat().st_mode & 0o777 == res.onnx_path.stat().st_mode & 0o777
    # moved to another folder with its data file it runs; without it the error names that file, not a re-export
    clip = np.random.default_rng(0).integers(0, 255, (T, H, W, 3), dtype=np.uint8)
    moved, bare = tmp_path / "moved", tmp_path / "bare"
    for folder, names in ((moved, (res.onnx_path, data)), (bare, (res.onnx_path,))):
        folder.mkdir()
        for path in (*names, spec_path_for(res.onnx_path)):
            (folder / path.name).write_bytes(path.read_bytes())
    with create_engine(moved / "model.onnx") as moved_engine, create_engine(tmp_path, backend="onnxruntime") as eng:
        assert np.array_equal(moved_engine.infer(clip), eng.infer(clip))
    with pytest.raises(ModelLoadError, match=r"move or copy model\.onnx\.data with the graph") as err:
        create_engine(bare / "model.onnx")
    assert "vdepth-export onnx" not in str(err.value)
    # renamed after export (`mine.onnx`, its data still model.onnx.data): the engine cache key and the TensorRT EP
    # cache folder hash the weights the graph reads, so new weights in that file build a new engine
    assert InputSpec.load(spec_path_for(res.onnx_path)).extra[EXTERNAL_DATA_KEY] == "model.onnx.data"
    mine = moved / "mine.onnx"
    (moved / "model.onnx").rename(mine)
    spec_path_for(moved / "model.onnx").rename(spec_path_for(mine))
    platform = {"onnxruntime": "1", "tensorrt": "10", "gpu": "x"}
    before = (onnx_sha256(mine), ort_trt_cache_dir(tmp_path, mine, "fp16", platform))
    (moved / "model.onnx.data").write_bytes(b"retrained" + data.read_bytes())
    assert onnx_sha256(mine) != before[0]
    assert ort_trt_cache_dir(tmp_path, mine, "fp16", platform) != before[1]
    (moved / "model.onnx.data").unlink()  # the recorded file gone: one error naming it, not a key without weights
    with pytest.raises(ModelLoadError, match=r"mine\.onnx keeps its weights in model\.onnx\.data .*move or copy"):
        onnx_sha256(mine)
    # a spec from before the record keeps the naming rule (`<graph>.data` where it exists)
    spec = json.loads(spec_path_for(res.onnx_path).read_text())
    del spec["extra"][EXTERNAL_DATA_KEY]
    for folder in (tmp_path, bare):
        spec_path_for(folder / "model.onnx").write_text(json.dumps(spec))
    assert onnx_sha256(res.onnx_path) == file_sha256(res.onnx_path, data)
    assert onnx_sha256(bare / "model.onnx") == file_sha256(bare / "model.onnx")


def test_dynamic_frames_checked_at_two_lengths(tmp_path) -> None:
    model = TinyVideoNet(channels=4).eval()
    res = export_onnx(model, tmp_path, frames=T, height=H, width=W, dynamic_frames=True, evaldata=None)
    assert res.spec.dynamic_frames
    assert res.dynamic_axes == {"frames": [1], "disparity": [1]}
    names = [c["name"] for c in res.parity["checks"]]
    assert any(n.endswith(f"@T={T}") for n in names)
    assert any(n.endswith(f"@T={T - 1}") for n in names)


class _BakedBranch(nn.Module):
    """Python control flow on data: tracing bakes the branch taken by the example input."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        lum = frames.mean(dim=2)
        if float(frames.mean()) > 0.45:
            return lum
        return 1.0 - lum


class BakedBranchNet(VideoDepthModel):
    family = "bakedbranch"

    @register_to_config
    def __init__(self) -> None:
        super().__init__()

    @property
    def input_constraints(self) -> InputConstraints:
        return InputConstraints(window=4, overlap=1)

    def export_signature(self, frames: int, height: int, width: int) -> ExportSignature:
        return ExportSignature(_BakedBranch(), frames, height, width)


def test_parity_failure_is_reported_and_raised(tmp_path) -> None:
    """The parity check must catch a graph that differs from PyTorch on some inputs."""
    dark = np.full((T, H, W, 3), 20, np.uint8)
    bright = np.full((T, H, W, 3), 230, np.uint8)

    def fake_clips(t, h, w, evaldata, count=2):
        return [("dark", dark[:t]), ("bright", bright[:t])][:count]

    import vdepth_export.export_onnx as mod

    orig = mod.parity_clips
    mod.parity_clips = fake_clips  # example input = "dark": tracing bakes the dark branch
    try:
        with pytest.raises(ExportError, match="differs from PyTorch"):
            export_onnx(BakedBranchNet(), tmp_path, frames=T, height=H, width=W, evaldata=None)
    finally:
        mod.parity_clips = orig
    report = json.loads(parity_path_for(tmp_path / "model.onnx").read_text())
    assert report["passed"] is False
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name[f"dark@T={T}"]["passed"]
    assert not by_name[f"bright@T={T}"]["passed"]


@pytest.mark.parametrize("precision", ["fp16"])
def test_reduced_precision_export_keeps_fp32_io(tmp_path, precision) -> None:
    model = TinyVideoNet(channels=4).eval()
    res = export_onnx(model, tmp_path, frames=T, height=H, width=W, precision=precision, evaldata=None)
    proto = onnx.load(str(res.onnx_path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(
        n.op_type == "Cast" and any(a.i == onnx.TensorProto.FLOAT16 for a in n.attribute) for n in proto.graph.node
    )
    assert res.spec.precision == precision
    report = res.parity
    assert report["tolerance_rel"] == 1e-2
    assert report["passed"] is True  # measured against torch fp32
    assert report["max_abs"] > 0  # really ran in reduced precision


def test_parity_clips_fallback_and_difference(tmp_path) -> None:
    clips = parity_clips(3, 16, 24, None)
    assert [n for n, _ in clips] == ["synthetic:seed0", "synthetic:seed1"]
    assert clips[0][1].shape == (3, 16, 24, 3)
    assert clips[0][1].dtype == np.uint8
    assert np.abs(clips[0][1].astype(int) - clips[1][1]).mean() > 10
    np.testing.assert_array_equal(synthetic_clip(3, 16, 24, 0), clips[0][1])  # deterministic
    assert parity_clips(3, 16, 24, tmp_path)[0][0] == "synthetic:seed0"  # empty evaldata folder


def test_cli_errors_are_clear(tmp_path, capsys) -> None:
    assert cli_main(["onnx", "nosuchfamily", "-o", str(tmp_path)]) == 2
    assert "neither a model folder nor a known family" in capsys.readouterr().err
    assert cli_main(["engine", str(tmp_path / "missing.onnx")]) == 2
    assert "not found" in capsys.readouterr().err


def test_export_requires_output_for_instances(tmp_path) -> None:
    from vdepth_ros.errors import ConfigError

    with pytest.raises(ConfigError, match="output"):
        export_onnx(TinyVideoNet(), None, frames=T, height=H, width=W)
    with pytest.raises(ConfigError, match="multiple of 4"):
        export_onnx(TinyVideoNet(), tmp_path, frames=T, height=H + 1, width=W)


def test_onnx_file_output_path(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "custom.onnx"
    res = export_onnx(TinyVideoNet(channels=4), out, frames=T, height=H, width=W, parity=False)
    assert res.onnx_path == out
    assert spec_path_for(out).is_file()
    assert not (tmp_path / "sub" / "config.json").exists()


class _RMSGraph(nn.Module):
    """`nn.RMSNorm` (aten::rms_norm) has no legacy-exporter symbolic at opset 17 (as in Wan/DVD)."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(3)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.norm(frames.transpose(2, -1)).transpose(2, -1)
        return torch.relu(x).mean(dim=2) + 0.1


class RMSNet(VideoDepthModel):
    family = "rmsnet"

    @register_to_config
    def __init__(self) -> None:
        super().__init__()
        self.graph = _RMSGraph()

    @property
    def input_constraints(self) -> InputConstraints:
        return InputConstraints(window=4, overlap=1)

    def export_signature(self, frames: int, height: int, width: int) -> ExportSignature:
        return ExportSignature(self.graph, frames, height, width)


def test_auto_falls_back_to_dynamo_and_keeps_stdout_clean(tmp_path, capfd) -> None:
    res = export_onnx(RMSNet().eval(), tmp_path, frames=T, height=H, width=W, evaldata=None)
    out, err = capfd.readouterr()
    assert res.exporter == "dynamo"
    assert res.opset == 18
    assert res.parity["passed"] is True
    assert "Torch IR graph" not in out  # the legacy failure dump went to stderr
    assert "[torch.onnx]" not in out
    assert "rms_norm" in err
    # the dynamo graph goes through `finalize_graph`'s folding, not torch's whole onnxscript optimizer
    assert foldable_nodes(onnx.load(str(res.onnx_path))) == []


def test_a_family_naming_its_exporter_skips_the_other(tmp_path, monkeypatch) -> None:
    """DVD's graph holds aten::rms_norm (Wan's RMSNorm), which the legacy exporter cannot take, and its
    signature said so (`extra["exporter"]`), but `auto` tried legacy first anyway: every DVD export paid
    a failed legacy trace (4 s of the tiny export's 21) before dynamo. Now `auto` uses the exporter
    the family names; a family naming none still tries legacy first. (Exporters stubbed: cheap.)"""
    tried: list[str] = []

    def stub(name: str) -> Any:
        def export(*args: Any, **kwargs: Any) -> None:
            tried.append(name)
            raise RuntimeError(f"{name} stub")

        return export

    monkeypatch.setattr(export_module, "_export_legacy", stub("legacy"))
    monkeypatch.setattr(export_module, "_export_dynamo", stub("dynamo"))
    dvd = family_class("dvd")
    t, h, w = dvd.tiny_input_shape()
    with pytest.raises(ExportError, match="dynamo stub"):
        export_onnx(dvd(**dvd.tiny_config()).eval(), tmp_path / "dvd", frames=t, height=h, width=w, evaldata=None)
    assert tried == ["dynamo"]
    tried.clear()
    with pytest.raises(ExportError):
        export_onnx(RMSNet().eval(), tmp_path / "rms", frames=T, height=H, width=W, evaldata=None)
    assert tried == ["legacy", "dynamo"]


@pytest.mark.usefixtures("tiny_registry")
def test_bf16_parity_is_reported_as_not_run_on_cpu(tmp_path, capsys) -> None:
    """ORT's CPU EP has no bf16 Conv: the export still succeeds, the report says why it is unchecked."""
    TinyVideoNet(channels=4).eval().save_pretrained(tmp_path)
    shape = ["--frames", "4", "--height", "24", "--width", "40"]
    assert cli_main(["onnx", str(tmp_path), *shape, "--precision", "bf16"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["parity"]["passed"] is None
    assert "bfloat16" in summary["parity"]["skipped"]
    assert InputSpec.load(tmp_path / "model.onnx.json").precision == "bf16"


def test_fp16_weight_storage_halves_both_files_and_keeps_parity(tmp_path: Path) -> None:
    """`save_pretrained(weights_dtype=float16)` + `--weights-fp16`: both files about half as large,
    PyTorch and ONNX Runtime hold the same rounded weights (parity as tight as fp32), compute and IO
    stay float32."""
    from vdepth_ros.models import build_model, load_model
    from vdepth_ros.models.vda_lite import VideoDepthAnythingLite

    model = build_model("vda_lite", **VideoDepthAnythingLite.tiny_config()).eval()
    full, half = tmp_path / "fp32", tmp_path / "fp16"
    model.save_pretrained(full)
    model.save_pretrained(half, weights_dtype=torch.float16)
    size = {d.name: (d / "model.safetensors").stat().st_size for d in (full, half)}
    assert 0.45 < size["fp16"] / size["fp32"] < 0.55
    assert next(load_model(half).parameters()).dtype == torch.float32
    shape = ["--frames", "4", "--height", "64", "--width", "96", "--synthetic", "--threads", "1"]
    assert cli_main(["onnx", str(half), *shape, "--weights-fp16"]) == 0
    # against the float32 weights file rather than a second, float32 export (~14 s): a float32 graph holds the
    # same float32 weights (12.58 MB graph for 12.46 MB of safetensors, measured on this model)
    assert 0.45 < (half / "model.onnx").stat().st_size / size["fp32"] < 0.6
    proto = onnx.load(str(half / "model.onnx"))
    assert {t.data_type for t in proto.graph.initializer if np.prod(t.dims) >= 16} == {onnx.TensorProto.FLOAT16}
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    report = json.loads(parity_path_for(half / "model.onnx").read_text())
    assert report["passed"] is True and max(c["max_abs"] for c in report["checks"]) < 1e-5


def test_store_weights_fp16_is_lossless() -> None:
    """Only initializers whose values are exactly float16 are converted; the rest stay float32."""
    from onnx import TensorProto, helper, numpy_helper
    from vdepth_export.onnx_graph import store_weights_fp16

    exact = np.arange(32, dtype=np.float32).reshape(4, 8) / 4  # representable in float16
    inexact = exact + np.float32(1e-4)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "a"], ["y0"]), helper.make_node("Add", ["y0", "b"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])],
        [numpy_helper.from_array(exact, "a"), numpy_helper.from_array(inexact, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    proto = store_weights_fp16(model)
    types = {t.name: t.data_type for t in proto.graph.initializer}
    assert types == {"a__fp16": TensorProto.FLOAT16, "b": TensorProto.FLOAT}
    ort = pytest.importorskip("onnxruntime")
    x = np.ones((4, 8), np.float32)
    (y,) = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_array_equal(y, x + exact + inexact)


def test_a_constant_output_is_refused_not_taken_as_evidence(tmp_path: Path) -> None:
    """A model whose output is one value everywhere "passes" parity with any graph that outputs that value: the
    report fails it, saying so, and a strict export installs nothing. One rule (`parity.parity_report`) for the
    window, split and stream exports; a reference constant on some inputs only is flagged, not refused."""
    import torch

    model = TinyVideoNet(channels=4).eval()
    with torch.no_grad():  # the last conv outputs its bias only: one constant
        model.net[-1].weight.zero_()
        model.net[-1].bias.fill_(0.5)
    with pytest.raises(ExportError, match=f"parity refused: {CONSTANT_OUTPUT}"):
        export_onnx(model, tmp_path, frames=T, height=H, width=W, threads=1, evaldata=None)
    assert not (tmp_path / "model.onnx").exists()
    report = json.loads(parity_path_for(tmp_path / "model.onnx").read_text())
    assert report["passed"] is False and report["constant_output"] is True
    assert len(report["constant_reference"]) == len(report["checks"]) == 2 and CONSTANT_OUTPUT in report["failure"]
    zero = {"name": "a", "max_abs": 0.0, "max_abs_rel": 0.0, "ref_range": 0.0, "passed": True}
    varied = {**zero, "name": "b", "ref_range": 1.0}
    assert parity_report("torch", 1e-4, [zero, {**zero, "name": "b"}])["passed"] is False  # all zero: refused
    assert parity_report("torch", 1e-4, [zero, varied])["passed"] is True
    assert parity_report("torch", 1e-4, [zero, {**varied, "max_abs_rel": 0.1, "passed": False}])["failure"].startswith(
        "max-abs"
    )


@pytest.mark.usefixtures("tiny_registry")
def test_variant_export_is_picked_for_its_aspect(tmp_path) -> None:
    """`--variant` writes `model.<H>x<W>.onnx` beside `model.onnx`; the runtime finds it and runs it."""
    TinyVideoNet(channels=4).eval().save_pretrained(tmp_path)
    export_onnx(tmp_path, frames=4, height=16, width=20, parity=False)
    assert (
        cli_main(
            ["onnx", str(tmp_path), "--frames", "4", "--height", "12", "--width", "24", "--variant", "--synthetic"]
        )
        == 0
    )
    variant = tmp_path / "model.12x24.onnx"
    assert variant.is_file() and spec_path_for(variant).is_file() and parity_path_for(variant).is_file()
    assert InputSpec.load(tmp_path / "model.onnx.json").width == 20  # model.onnx untouched
    with create_engine(tmp_path, backend="onnxruntime", threads=1) as eng:
        assert eng.resolutions() == [(16, 20), (12, 24)]
        assert eng.at_resolution(12, 24).infer(np.zeros((4, 12, 24, 3), np.uint8)).shape == (4, 12, 24)


@pytest.mark.usefixtures("tiny_registry")
def test_a_variant_takes_model_onnx_options_and_a_stale_one_is_never_picked(tmp_path, capsys, caplog) -> None:
    """`--variant --height H --width W` without repeating `--frames` exported the family's default
    window (6 here, model.onnx has 4): the export passed, then the runtime refused the variant when a
    camera of its aspect came. Now the variant takes model.onnx's window, other options that differ
    are refused before exporting, and a variant left from before model.onnx was exported again is
    not offered (one warning naming it and the command), instead of failing at the camera."""
    TinyVideoNet(channels=4).eval().save_pretrained(tmp_path)
    export_onnx(tmp_path, frames=4, height=16, width=20, parity=False)
    assert cli_main(["onnx", str(tmp_path), "--height", "12", "--width", "24", "--variant", "--no-parity"]) == 0
    with create_engine(tmp_path, backend="onnxruntime", threads=1) as eng:
        assert eng.resolutions() == [(16, 20), (12, 24)]
        assert eng.at_resolution(12, 24).infer(np.zeros((4, 12, 24, 3), np.uint8)).shape == (4, 12, 24)

    capsys.readouterr()
    args = ["onnx", str(tmp_path), "--height", "8", "--width", "24", "--variant", "--no-parity", "--frames", "5"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "frames (5, model.onnx has 4)" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "model.8x24.onnx").exists()
    empty = tmp_path / "empty"
    TinyVideoNet(channels=4).eval().save_pretrained(empty)
    assert cli_main(["onnx", str(empty), "--height", "8", "--width", "24", "--variant", "--no-parity"]) == 2
    assert "export it first" in capsys.readouterr().err

    export_onnx(tmp_path, frames=5, height=16, width=20, parity=False)  # model.onnx again, another window
    with caplog.at_level(logging.WARNING), create_engine(tmp_path, backend="onnxruntime", threads=1) as eng:
        assert eng.resolutions() == [(16, 20)]
        assert eng.resolutions() == [(16, 20)]
    warned = [r.getMessage() for r in caplog.records if "model.12x24.onnx is not used" in r.getMessage()]
    assert len(warned) == 1 and "frames 4 (not 5)" in warned[0] and "--variant --height 12 --width 24" in warned[0]
    # the precision and frame axis too: a variant of an fp16, dynamic-frames model.onnx was refused until both
    # were given again ("differs in dynamic_frames (False, model.onnx has True), precision ('fp32', ...)")
    dyn = tmp_path / "dyn"
    TinyVideoNet(channels=4).eval().save_pretrained(dyn)
    export_onnx(dyn, frames=4, height=16, width=20, parity=False, precision="fp16", dynamic_frames=True)
    assert cli_main(["onnx", str(dyn), "--height", "12", "--width", "24", "--variant", "--no-parity"]) == 0
    variant = InputSpec.load(spec_path_for(dyn / "model.12x24.onnx"))
    assert (variant.precision, variant.dynamic_frames, variant.frames) == ("fp16", True, 4)


@pytest.mark.usefixtures("tiny_registry")
def test_exports_older_than_the_folders_weights_are_not_run(tmp_path, caplog) -> None:
    """Retrained weights saved into a folder that holds exports (model.onnx, a variant): `auto` ran the
    old model.onnx without a word. Now the exports record the weights they were made from; `auto`
    runs the folder's weights on torch with one warning naming the command, `onnxruntime` refuses
    with it, a variant exported before the new weights is not used, and re-exporting ends it."""
    torch.manual_seed(0)
    TinyVideoNet(channels=4).eval().save_pretrained(tmp_path)
    export_onnx(tmp_path, frames=4, height=16, width=20, parity=False)
    export_onnx(tmp_path, frames=4, height=12, width=24, parity=False, variant=True)
    (tmp_path / "model.safetensors").touch()  # copied back unchanged (new mtime): still the same weights
    with create_engine(tmp_path) as eng:
        assert eng.backend == "onnxruntime" and eng.resolutions() == [(16, 20), (12, 24)]

    TinyVideoNet(channels=4).eval().save_pretrained(tmp_path)  # retrained (other random weights)
    clip = np.random.default_rng(0).integers(0, 255, (4, 16, 20, 3), dtype=np.uint8)
    with caplog.at_level(logging.WARNING), create_engine(tmp_path) as eng:
        assert eng.backend == "torch"
        with create_engine(tmp_path, backend="torch", frames=4, height=16, width=20) as new:
            reference = new.infer(clip)
        np.testing.assert_allclose(eng.infer(clip), reference, atol=1e-6)
    assert f"vdepth-export onnx {tmp_path} --frames 4 --height 16 --width 20`" in caplog.text  # the same shape again
    with pytest.raises(ModelLoadError, match="exported from other weights"):
        create_engine(tmp_path, backend="onnxruntime")

    export_onnx(tmp_path, frames=4, height=16, width=20, parity=False)  # exported again: used again
    with caplog.at_level(logging.WARNING), create_engine(tmp_path) as eng:
        assert eng.backend == "onnxruntime" and eng.resolutions() == [(16, 20)]  # the variant is the old weights'
        np.testing.assert_allclose(eng.infer(clip), reference, atol=1e-5)
    assert "model.12x24.onnx is not used" in caplog.text and "exported from other weights" in caplog.text


@pytest.mark.usefixtures("tiny_registry")
def test_export_never_replaces_another_model_or_a_foreign_onnx_without_overwrite(tmp_path, capsys) -> None:
    """`vdepth-export onnx vda --tiny -o FOLDER` used to replace FOLDER's config.json and
    model.safetensors (e.g. a pulled release) with random weights, and `-o file.onnx` replaced any
    file of that name."""
    folder = tmp_path / "real"
    TinyVideoNet(channels=4).eval().save_pretrained(folder)
    (folder / "release.json").write_text("{}")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert cli_main(["onnx", "vda", "--tiny", "-o", str(folder), "--no-parity"]) == 2
    err = capsys.readouterr().err
    assert "already holds a model (config.json, model.safetensors)" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing written, no scratch folder
    mine = tmp_path / "mine.onnx"
    mine.write_text("mine")
    shape = ["--frames", "4", "--height", "24", "--width", "40"]
    assert cli_main(["onnx", str(folder), "-o", str(mine), *shape, "--no-parity"]) == 2
    assert "not written by vdepth-export" in capsys.readouterr().err and mine.read_text() == "mine"
    # in place, a previous export of the folder itself is replaced as before; --overwrite replaces the rest
    res = export_onnx(folder, frames=T, height=H, width=W, parity=False)
    assert export_onnx(folder, frames=T, height=H, width=W, parity=False).onnx_path == res.onnx_path
    assert export_onnx(folder, mine, frames=T, height=H, width=W, parity=False, overwrite=True).onnx_path == mine
    export_onnx(TinyVideoNet(channels=5).eval(), folder, frames=T, height=H, width=W, parity=False, overwrite=True)
    assert json.loads((folder / "config.json").read_text())["channels"] == 5


@pytest.mark.usefixtures("tiny_registry")
def test_a_failed_re_export_keeps_the_working_graph(tmp_path: Path, capsys, monkeypatch) -> None:
    """Re-exporting a folder in place (other frames, an opset) whose graph then failed the ONNX
    checker used to leave the broken model.onnx in place of the working one, beside the old
    model.onnx.json, so the runtime loaded a broken graph with a stale spec; the error was a
    ValidationError traceback. An opset newer than the installed onnx knows was also a traceback."""
    model = TinyVideoNet(channels=4).eval()
    model.save_pretrained(tmp_path)
    shape = ["--frames", "3", "--height", "20", "--width", "28", "--synthetic"]
    assert cli_main(["onnx", str(tmp_path), *shape]) == 0
    capsys.readouterr()
    good = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    newest = onnx.defs.onnx_opset_version()
    assert cli_main(["onnx", str(tmp_path), *shape, "--opset", str(newest + 2)]) == 2
    err = capsys.readouterr().err
    assert f"opset must be between 17 and {newest}" in err and err.count("\n") == 1, err

    def broken(*args: object, **kwargs: object) -> None:
        raise onnx.checker.ValidationError("No Op registered for Attention with domain_version of 18")

    monkeypatch.setattr(onnx.checker, "check_model", broken)
    assert cli_main(["onnx", str(tmp_path), *shape]) == 2
    err = capsys.readouterr().err
    assert "fails the ONNX checker" in err and "No Op registered" in err and err.count("\n") == 1, err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == good  # nothing replaced
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_dynamic_graph_is_not_run_past_its_models_longest_window(tmp_path: Path) -> None:
    """`--dynamic-frames` graphs of a family with a temporal position table (VDA: 32 frames) accepted
    any `window:`; past the table ONNX Runtime failed inside the graph ('Attempting to broadcast an
    axis by a dimension other than 1. 8 by 12'), a traceback in vdepth-video and the node."""
    from vdepth_ros.errors import ConfigError, InputError
    from vdepth_ros.models.vda import VideoDepthAnything
    from vdepth_ros.pipeline import DepthPipeline, PipelineConfig

    torch.manual_seed(0)
    tiny = VideoDepthAnything(**VideoDepthAnything.tiny_config()).eval()  # max_frames 8
    res = export_onnx(tiny, tmp_path, frames=4, height=70, width=98, dynamic_frames=True, parity=False)
    assert res.spec.dynamic_frames and res.spec.max_frames == 8
    engine = create_engine(tmp_path / "model.onnx", backend="onnxruntime")
    clip = (np.random.default_rng(0).random((12, 70, 98, 3)) * 255).astype(np.uint8)
    assert engine.infer(clip[:8]).shape == (8, 70, 98)
    with pytest.raises(InputError, match=r"window of 12 frames; this model accepts 1\.\.8"):
        engine.infer(clip)
    config = PipelineConfig(window=12, overlap=4, alignment="chain_ls", inference="package")
    with pytest.raises(ConfigError, match=r"window 12 exceeds the model's longest window of 8 frames"):
        DepthPipeline(config, engine)


def test_a_dynamic_export_from_before_max_frames_is_limited_to_its_window_with_one_note(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`model.onnx.json` of exports made before specs recorded `max_frames` has no such key: such a
    dynamic graph loaded as 'no limit known', and a window past the model's temporal position table
    failed inside ONNX Runtime (a broadcast error, a traceback in vdepth-video and the node). In its
    model folder it takes the limit of the folder's config.json; a graph without its folder is
    limited to the window its spec names, with one note, and an error past it says why and how to
    lift it (it said "the model's longest window", which it is not)."""
    import shutil

    from vdepth_ros.errors import ConfigError, InputError
    from vdepth_ros.models.vda import VideoDepthAnything
    from vdepth_ros.pipeline import DepthPipeline, PipelineConfig

    torch.manual_seed(0)
    tiny = VideoDepthAnything(**VideoDepthAnything.tiny_config()).eval()  # max_frames 8
    folder = tmp_path / "m"
    export_onnx(tiny, folder, frames=4, height=70, width=98, dynamic_frames=True, parity=False)
    spec_file = folder / "model.onnx.json"
    old = json.loads(spec_file.read_text())
    del old["max_frames"]  # as exports before the field wrote it
    spec_file.write_text(json.dumps(old))
    alone = tmp_path / "graph"  # the graph copied to the robot without its model folder
    alone.mkdir()
    for name in ("model.onnx", "model.onnx.json"):
        shutil.copy(folder / name, alone / name)
    clip = (np.random.default_rng(0).random((12, 70, 98, 3)) * 255).astype(np.uint8)
    caplog.set_level(logging.WARNING)
    with create_engine(folder / "model.onnx", backend="onnxruntime", threads=1) as engine:
        assert engine.input_spec.max_frames == 8  # the model's own limit, from config.json
        assert engine.infer(clip[:8]).shape[0] == 8
    assert not [r for r in caplog.records if "max_frames" in r.getMessage()]
    with create_engine(alone / "model.onnx", backend="onnxruntime", threads=1) as engine:
        assert engine.input_spec.max_frames == max(4, old["window"]) < 8
        assert engine.infer(clip[: engine.input_spec.max_frames]).shape[0] == engine.input_spec.max_frames
        with pytest.raises(InputError, match=r"window of 12 frames; this model accepts 1\.\..*not the model's own"):
            engine.infer(clip)
        config = PipelineConfig(window=8, overlap=2, alignment="chain_ls", inference="package")
        with pytest.raises(ConfigError, match=r"not the model's own limit.*--dynamic-frames.*\"max_frames\""):
            DepthPipeline(config, engine)
    InputSpec.load(alone / "model.onnx.json")  # loaded again (a variant lookup, a check): not noted again
    notes = [r.getMessage() for r in caplog.records if "max_frames" in r.getMessage()]
    assert len(notes) == 1 and "re-export" in notes[0], notes


@pytest.mark.usefixtures("tiny_registry")
def test_an_interrupted_or_parity_failing_re_export_keeps_the_working_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-exporting a deployed folder moved the new graph over the working one before its spec and
    parity report were written: Ctrl-C at that point left the new graph (4 frames) beside the old
    spec (3 frames), and a re-export that failed the (strict) parity check exited 2 with the failing
    graph installed. The graph, its data, spec and report are now moved into place together, once
    the check passed (`AtomicOutput`); the user's other files are never touched."""
    import vdepth_export.export_onnx as mod

    model = TinyVideoNet(channels=4).eval()
    model.save_pretrained(tmp_path)
    (tmp_path / "NOTES.md").write_text("deployed on robot 3\n")
    assert cli_main(["onnx", str(tmp_path), "--frames", "3", "--height", "20", "--width", "28", "--synthetic"]) == 0
    capsys.readouterr()
    good = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    again = ["onnx", str(tmp_path), "--frames", "4", "--height", "20", "--width", "28", "--synthetic"]

    def ctrl_c(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(InputSpec, "save", ctrl_c)  # Ctrl-C while the spec is written
        assert cli_main(again) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == good

    def failing(*args: object, **kwargs: object) -> dict:
        check = {"name": "bright@T=4", "max_abs": 0.5, "max_abs_rel": 0.5, "passed": False}
        return {"passed": False, "checks": [check], "tolerance_rel": 0.01, "skipped": None, "max_abs": 0.5,
                "mean_abs": 0.1, "inputs": ["synthetic:seed0"], "constant_reference": [], "constant_output": False,
                "failure": "max-abs 0.5"}  # fmt: skip

    monkeypatch.setattr(mod, "window_parity", failing)
    assert cli_main(again) == 2
    err = capsys.readouterr().err
    assert "differs from PyTorch" in err and "left as they were" in err and err.count("\n") == 1, err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == good
    assert cli_main([*again, "--no-strict"]) == 1  # asked for: installed, with its report
    assert InputSpec.load(tmp_path / "model.onnx.json").frames == 4
    assert json.loads(parity_path_for(tmp_path / "model.onnx").read_text())["passed"] is False
    assert (tmp_path / "NOTES.md").read_text() == "deployed on robot 3\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.usefixtures("tiny_registry")
def test_a_failing_export_into_a_model_folder_keeps_its_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`vdepth-export onnx OTHER -o FOLDER --overwrite` wrote OTHER's config.json and weights into
    FOLDER before exporting: when the export then failed (parity, Ctrl-C), FOLDER held the new
    weights beside the old graph, one folder of two models. They now move in with the graph."""
    import vdepth_export.export_onnx as mod

    folder = tmp_path / "m"
    torch.manual_seed(0)
    export_onnx(TinyVideoNet(channels=4).eval(), folder, frames=2, height=16, width=16, parity=False)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def failing(*args: object, **kwargs: object) -> dict:
        check = {"name": "bright@T=2", "max_abs": 0.5, "max_abs_rel": 0.5, "passed": False}
        return {"passed": False, "checks": [check], "tolerance_rel": 0.01, "skipped": None, "max_abs": 0.5,
                "mean_abs": 0.1, "inputs": ["synthetic:seed0"], "constant_reference": [], "constant_output": False,
                "failure": "max-abs 0.5"}  # fmt: skip

    monkeypatch.setattr(mod, "window_parity", failing)
    torch.manual_seed(1)
    other = TinyVideoNet(channels=4).eval()
    with pytest.raises(ExportError):
        export_onnx(other, folder, frames=2, height=16, width=16, overwrite=True, evaldata=False)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "model.onnx.parity.json"} == {
        k: v for k, v in before.items() if k != "model.onnx.parity.json"
    }


@pytest.mark.usefixtures("tiny_registry")
def test_exporting_a_folder_in_place_never_replaces_a_graph_of_the_users(tmp_path, capsys) -> None:
    """A model folder holding the user's own model.onnx (torch.onnx.export by hand, another tool: no
    model.onnx.json beside it): `vdepth-export onnx FOLDER` replaced it without a word, while `-o` the same
    file was refused. Now refused the same way in place; --overwrite replaces it."""
    folder = tmp_path / "model"
    TinyVideoNet(channels=4).eval().save_pretrained(folder)
    (folder / "model.onnx").write_text("my own graph")
    shape = ["--frames", str(T), "--height", str(H), "--width", str(W), "--no-parity"]
    assert cli_main(["onnx", str(folder), *shape]) == 2
    err = capsys.readouterr().err
    assert "not written by vdepth-export" in err and "--overwrite" in err and err.count("\n") == 1
    assert (folder / "model.onnx").read_text() == "my own graph"
    assert not (folder / "model.onnx.json").exists()
    # the runtime, meeting that graph, names the same command (not `vdepth-export import`: this is a model folder)
    with pytest.raises(SpecError, match=rf"`vdepth-export onnx {folder} --overwrite`.*backend 'torch'"):
        create_engine(folder)
    assert cli_main(["onnx", str(folder), *shape, "--overwrite"]) == 0
    with create_engine(folder) as eng:
        assert eng.backend == "onnxruntime"
    assert (folder / "model.onnx.json").is_file()
    assert cli_main(["onnx", str(folder), *shape]) == 0  # its own export is replaced in place, as before


@pytest.mark.usefixtures("tiny_registry")
def test_a_bf16_graph_on_a_cpu_only_machine_is_one_error_naming_the_fp32_export(tmp_path, caplog) -> None:
    """`vdepth-export onnx FOLDER --precision bf16` (the README's choice for diffusion VAEs on a GPU) run on a
    CPU-only machine: ONNX Runtime's raw `InvalidGraph ... tensor(bfloat16) ... is invalid` came out of
    create_engine (the node's `cannot start:` line), after a warning saying precision bf16 would silence it."""
    TinyVideoNet(channels=4).eval().save_pretrained(tmp_path)
    export_onnx(tmp_path, frames=T, height=H, width=W, precision="bf16", parity=False)
    with caplog.at_level(logging.WARNING), pytest.raises(ModelLoadError) as err:
        create_engine(tmp_path)
    msg = str(err.value)
    assert "exported in bf16" in msg and "`vdepth-export onnx MODEL_FOLDER`, without --precision" in msg
    assert "silences this" not in caplog.text


def test_a_graph_installed_despite_failing_parity_is_named_when_it_runs(tmp_path, monkeypatch, caplog) -> None:
    """`vdepth-export onnx --no-strict` installs a graph that differs from PyTorch (exit code 1, the report
    beside it); the node or a tool running it later said nothing. Now one warning per graph names the
    difference and the report."""
    import vdepth_export.export_onnx as mod

    from vdepth_ros.runtime import spec as spec_mod

    dark = np.full((T, H, W, 3), 20, np.uint8)
    bright = np.full((T, H, W, 3), 230, np.uint8)
    monkeypatch.setattr(
        mod, "parity_clips", lambda t, h, w, evaldata, count=2: [("dark", dark[:t]), ("bright", bright[:t])][:count]
    )
    monkeypatch.setattr(spec_mod, "_WARNED_PARITY", set(), raising=False)
    res = export_onnx(BakedBranchNet(), tmp_path, frames=T, height=H, width=W, evaldata=None, strict=False)
    assert res.parity["passed"] is False
    with caplog.at_level(logging.WARNING, logger="vdepth_ros.runtime"):
        for _ in range(2):
            with create_engine(tmp_path / "model.onnx") as eng:
                eng.infer(bright)
    said = [r.getMessage() for r in caplog.records if "failed its parity check" in r.getMessage()]
    assert len(said) == 1
    assert f"bright@T={T}" in said[0] and str(parity_path_for(tmp_path / "model.onnx")) in said[0]


def test_an_onnx_file_with_another_tools_json_beside_it_is_not_replaced(tmp_path, capsys) -> None:
    """Other tools keep their own `NAME.onnx.json` beside a graph (a Piper voice: `voice.onnx` +
    `voice.onnx.json`): the JSON's name alone made the graph pass for one vdepth-export wrote, and `-o` there
    replaced it without --overwrite."""
    theirs = tmp_path / "voice.onnx"
    theirs.write_text("another tool's graph")
    spec_path_for(theirs).write_text('{"audio": {"sample_rate": 22050}, "espeak": {"voice": "en-us"}}\n')
    args = ["onnx", "vda_lite", "--tiny", "-o", str(theirs), "--no-parity"]
    assert cli_main(args) == 2
    assert "not written by vdepth-export" in capsys.readouterr().err
    assert theirs.read_text() == "another tool's graph"


@pytest.mark.usefixtures("tiny_registry")
def test_an_earlier_export_at_o_is_replaced_only_with_overwrite(tmp_path, capsys) -> None:
    """`vdepth-export onnx ... -o PATH` replaced its own earlier export at PATH without a word: the graph of
    another model (here one with other weights, as a `--tiny` random one or a folder since deleted) was lost.
    Now one line names it and --overwrite; in place, a folder's own export is still made again from its weights."""
    first, second = tmp_path / "first", tmp_path / "second"
    TinyVideoNet(channels=4).eval().save_pretrained(first)
    TinyVideoNet(channels=5).eval().save_pretrained(second)
    out = tmp_path / "exports" / "mine.onnx"
    shape = ["--frames", str(T), "--height", str(H), "--width", str(W), "--no-parity"]
    assert cli_main(["onnx", str(first), "-o", str(out), *shape]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    assert cli_main(["onnx", str(second), "-o", str(out), *shape]) == 2
    err = capsys.readouterr().err
    assert "holds an earlier export" in err and "--overwrite" in err and err.count("\n") == 1, err
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before  # nothing written, nothing left
    assert cli_main(["onnx", str(second), "-o", str(out), *shape, "--overwrite"]) == 0
    assert out.read_bytes() != before[out.name]
    for folder in (None, str(first)):  # in place, with or without -o naming the folder: made again
        assert cli_main(["onnx", str(first), *(["-o", folder] if folder else []), *shape]) == 0


@pytest.mark.usefixtures("tiny_registry")
def test_a_read_only_model_folder_names_the_export_elsewhere(tmp_path, capsys, monkeypatch) -> None:
    """`vdepth-export onnx|split|engine NAME` on a model in a read-only (shared) model cache said only
    "choose another output path", with no hint that `-o` exists for it, nor how to run the result.
    Each now names the command that writes elsewhere and the `model:` that runs it; the folder stays
    as it was, and the `-o FILE.onnx` it names works."""
    folder = tmp_path / "cache" / "tiny"
    TinyVideoNet(channels=4).eval().save_pretrained(folder)
    shape = ["--frames", str(T), "--height", str(H), "--width", str(W), "--no-parity"]
    assert cli_main(["onnx", str(folder), *shape]) == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    real_mkdir = Path.mkdir

    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        if self.parent == folder:  # chmod does not stop root, who runs CI
            raise PermissionError(13, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", read_only)
    capsys.readouterr()
    for command, fix in (
        (["onnx", str(folder), *shape], "with `-o FILE.onnx` and run that as `model: FILE.onnx`"),
        (["split", str(folder)], "(`vdepth-export onnx MODEL -o DIR`), split that (`vdepth-export split DIR`) "
                                 "and run it as `model: DIR`"),
        (["engine", str(folder)], "with `-o FILE.engine` and run that as `model: FILE.engine`"),
    ):  # fmt: skip
        assert cli_main(command) == 2, command
        err = capsys.readouterr().err
        assert "Permission denied" in err and fix in err and err.count("\n") == 1, err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    mine = tmp_path / "mine.onnx"
    assert cli_main(["onnx", str(folder), *shape, "-o", str(mine)]) == 0
    with create_engine(mine) as eng:
        assert eng.backend == "onnxruntime"


def test_split_and_engine_given_a_checkpoint_say_to_import_it(tmp_path, capsys) -> None:
    """`vdepth-export split video_depth_anything_vits.pth` said 'has no model.onnx: export it first with
    `vdepth-export onnx video_depth_anything_vits.pth`', a command that then fails (a release file is imported
    first); `engine` said 'export it with `vdepth-export onnx`' without the folder. Both now say what `onnx` says."""
    release = tmp_path / "video_depth_anything_vits.pth"
    release.write_bytes(b"weights")
    for command in ("split", "engine"):
        assert cli_main([command, str(release)]) == 2
        err = capsys.readouterr().err
        assert "is a released checkpoint, not a model folder" in err and "vdepth-export import FAMILY" in err, err
        assert err.count("\n") == 1
    folder = tmp_path / "model"
    TinyVideoNet(channels=4).eval().save_pretrained(folder)
    assert cli_main(["engine", str(folder)]) == 2
    assert f"export it with `vdepth-export onnx {folder}`" in capsys.readouterr().err


@pytest.mark.usefixtures("tiny_registry")
def test_an_export_made_again_in_place_names_what_it_replaced_and_left_stale(tmp_path, caplog) -> None:
    """`vdepth-export onnx FOLDER` at another shape replaced the folder's export without a word (in place needs
    no --overwrite), and the split graphs and TensorRT engine built from the old graph were found stale only at
    the next start (or, as engines, never used). One warning now names the export replaced, one what no longer
    matches and the commands that rebuild it."""
    from vdepth_ros.runtime.reuse import SplitMeta, split_files_for
    from vdepth_ros.runtime.trt_cache import EngineCacheKey, onnx_sha256, write_key

    folder = tmp_path / "model"
    TinyVideoNet(channels=4).eval().save_pretrained(folder)
    export_onnx(folder, frames=T, height=H, width=W, parity=False)
    old = onnx_sha256(folder / "model.onnx")
    files = split_files_for(folder / "model.onnx")
    files.frame.write_text("frame graph")
    files.window.write_text("window graph")
    meta = SplitMeta(T, H, W, "fp32", ("f",), ((1, 2, 3),), onnx_sha256=old)
    files.meta.write_text(json.dumps(meta.to_dict()))
    (folder / "model.engine").write_text("engine")
    write_key(folder / "model.engine", EngineCacheKey(old, "10.13.0.35", "NVIDIA RTX 4000 Ada", "8.9", "fp16"))
    with caplog.at_level(logging.WARNING, logger="vdepth_export"):
        export_onnx(folder, frames=T, height=16, width=20, parity=False)
    said = [r.getMessage() for r in caplog.records]
    assert said[0] == f"replaced the earlier export {folder / 'model.onnx'} (T={T} {H}x{W} fp32) with T={T} 16x20 fp32"
    assert said[1].startswith(f"model.frame.onnx, model.window.onnx, model.engine in {folder} were built from")
    assert f"`vdepth-export split {folder} --overwrite`" in said[1]
    assert f"`vdepth-export engine {folder / 'model.onnx'} --precision fp16 -o {folder / 'model.engine'}`" in said[1]
    assert len(said) == 2
