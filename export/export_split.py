"""Export a model's per-frame and per-window graphs next to its `model.onnx` (exact reuse).

`vdepth-export split MODEL` (after `vdepth-export onnx MODEL`) writes

* `model.frame.onnx`: `frames (N, 3, H, W)` float32 in the model's value range, N dynamic ->
  the per-frame feature maps `level1..level4 (N, C_i, h_i, w_i)`;
* `model.window.onnx`: the maps of one window (N = T) -> `disparity (1, T, H, W)`;
* `model.split.json` (`runtime.reuse.SplitMeta`): shapes, the sha256 of the `model.onnx` they
  belong to, and an ONNX Runtime vs PyTorch parity report of the two graphs composed.

ONNX Runtime (`create_engine`) then encodes only the frames a window does not share with the one
before (`runtime/reuse.py`); `vdepth-export engine` builds TensorRT engines from the same graphs.
Only families with a per-frame split (`split_signature`: vda, vda_lite, gemdepth) can be split.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from vdepth_export.export_onnx import load_source
from vdepth_export.onnx_graph import ExportError, finalize_graph
from vdepth_export.parity import TOLERANCE, compare, parity_clips, parity_report

from vdepth_ros.errors import ConfigError
from vdepth_ros.models import VideoDepthModel
from vdepth_ros.offline.atomic import AtomicOutput, check_writable
from vdepth_ros.offline.errors import OutputExistsError
from vdepth_ros.offline.runner import stdout_for_results
from vdepth_ros.runtime.reuse import SplitMeta, split_files_for
from vdepth_ros.runtime.spec import InputSpec, has_export_spec, spec_path_for
from vdepth_ros.runtime.trt_cache import EXTERNAL_DATA_KEY, external_data_path, onnx_sha256

log = logging.getLogger(__name__)

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class _Float32IO(nn.Module):
    """Float32 inputs and outputs around a stage computing in `dtype` (as the whole-window export)."""

    def __init__(self, stage: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.stage, self.dtype = stage, dtype

    def forward(self, *inputs: torch.Tensor) -> Any:
        out = self.stage(*(x.to(self.dtype) for x in inputs))
        return tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()


def _export(
    module: nn.Module, example: tuple[torch.Tensor, ...], path: Path, names: tuple, axes: dict | None, fuse_bn: bool
) -> None:
    """Legacy (TorchScript) export at opset 17, the exporter the whole-window graph uses first
    (`fuse_bn=False` keeps BatchNorm weights as they are, for `weights_fp16`, as `export_onnx`)."""
    inputs, outputs = names
    mode = {} if fuse_bn else {"training": torch.onnx.TrainingMode.PRESERVE}
    with warnings.catch_warnings(), stdout_for_results(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks traced as constants
        torch.onnx.export(
            module,
            example,
            str(path),
            dynamo=False,
            opset_version=17,
            do_constant_folding=True,
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes=axes,
            **mode,
        )


#: the split graphs go beside model.onnx: a read-only model folder (a shared model cache) is copied first
UNWRITABLE_FIX = (
    "export the model into a folder of yours (`vdepth-export onnx MODEL -o DIR`), split that "
    "(`vdepth-export split DIR`) and run it as `model: DIR`"
)


def export_split_onnx(
    source: str | Path | VideoDepthModel,
    onnx_path: str | Path,
    *,
    parity: bool = True,
    strict: bool = True,
    threads: int | None = None,
    evaldata: Path | None = None,
    weights_fp16: bool = False,
    overwrite: bool = False,
) -> SplitMeta:
    """Write the split graphs for the whole-window graph `onnx_path` (its `.json` spec gives T, H, W).

    Args:
        source: the model (folder or instance) `onnx_path` was exported from.
        onnx_path: its `model.onnx`, already exported (`export_onnx`).
        parity: check ONNX Runtime (CPU) on the two graphs against PyTorch's whole forward.
        strict: raise `ExportError` when parity fails (after writing the report).
        threads, evaldata, weights_fp16: as `export_onnx`.
        overwrite: replace split graphs already beside `onnx_path` (only ones vdepth-export wrote).

    Raises:
        ConfigError: the family has no per-frame split.
        OutputExistsError: split graphs exist and `overwrite` is false, or they were not written by
            vdepth-export (checked first).
    """
    onnx_path = Path(onnx_path)
    _check_split_outputs(onnx_path, overwrite)
    files = split_files_for(onnx_path)
    check_writable(files.meta, UNWRITABLE_FIX)  # before the export: a read-only model cache says what to do
    spec = InputSpec.load(spec_path_for(onnx_path))
    model = load_source(source)
    if not hasattr(model, "split_signature"):
        raise ConfigError(f"family {model.family!r} has no per-frame split (vda, vda_lite and gemdepth do)")
    sig = model.split_signature(spec.frames, spec.height, spec.width)
    names = sig.feature_names
    dtype = _DTYPES[spec.precision]
    frame_stage, window_stage = sig.frame_module, sig.window_module
    if spec.precision != "fp32":
        model.to(dtype)
        frame_stage, window_stage = _Float32IO(frame_stage, dtype), _Float32IO(window_stage, dtype)
    example = torch.rand(2, 3, spec.height, spec.width, generator=torch.Generator().manual_seed(0))
    lo, hi = spec.value_range
    example = example * (hi - lo) + lo
    meta = SplitMeta(
        frames=spec.frames,
        height=spec.height,
        width=spec.width,
        precision=spec.precision,
        feature_names=names,
        feature_shapes=sig.feature_shapes,
        onnx_sha256=onnx_sha256(onnx_path),
    )
    # Both graphs, their specs (`build_split_engines` reads the shapes from them) and model.split.json
    # are written beside the staged meta and moved into place together (`AtomicOutput`; the meta last):
    # a failure or Ctrl-C leaves a previous split as it was. The parity check loads the split graphs
    # beside `model.onnx`, so it runs on the installed files and then adds its report to the meta.
    graphs = (files.frame, files.window)
    companions = [q.name for g in graphs for q in (g, external_data_path(g), spec_path_for(g))]
    with AtomicOutput(files.meta, overwrite=True, companions=companions, fix=UNWRITABLE_FIX) as staged_meta:
        staged = {g: staged_meta.with_name(g.name) for g in graphs}
        raw = staged_meta.with_name(".exporter-raw.onnx")  # the exporter's own file(s), left in the staging folder
        axes = {"frames": {0: "frames"}, **{n: {0: "frames"} for n in names}}
        _export(frame_stage, (example,), raw, (("frames",), names), axes, not weights_fp16)
        data_files = {files.frame: finalize_graph(raw, staged[files.frame], 2 * 1024**3, weights_fp16)}
        with torch.no_grad():
            feats = frame_stage(example[[0] * spec.frames])
        _export(window_stage, tuple(feats), raw, (names, ("disparity",)), None, not weights_fp16)
        data_files[files.window] = finalize_graph(raw, staged[files.window], 2 * 1024**3, weights_fp16)
        for graph, staged_graph in staged.items():  # each split graph's own data file, not model.onnx's
            extra = {**spec.extra, EXTERNAL_DATA_KEY: data_files[graph]}
            InputSpec.from_dict({**spec.to_dict(), "extra": extra}).save(spec_path_for(staged_graph))
        staged_meta.write_text(json.dumps(meta.to_dict(), indent=2, sort_keys=True) + "\n")
    model.float()
    report = split_parity(model, onnx_path, spec, threads=threads, evaldata=evaldata) if parity else None
    meta = SplitMeta(**{**meta.to_dict(), "parity": report})
    with AtomicOutput(files.meta, overwrite=True, fix=UNWRITABLE_FIX) as staged_meta:
        staged_meta.write_text(json.dumps(meta.to_dict(), indent=2, sort_keys=True) + "\n")
    log.info("split graphs %s, %s written", files.frame.name, files.window.name)
    if strict and report is not None and not report["passed"]:
        raise ExportError(f"split ONNX graphs failed parity against PyTorch: {report['failure']}")
    return meta


def _check_split_outputs(onnx_path: Path, overwrite: bool) -> None:
    """Refuse to replace split graphs beside `onnx_path` unless `overwrite`, and never files that are
    not a split vdepth-export wrote (a graph without its spec, a `model.split.json` it cannot read)."""
    files = split_files_for(onnx_path)
    held = [p for p in (files.frame, files.window, files.meta) if p.exists() or p.is_symlink()]
    if not held:
        return
    meta: SplitMeta | None = None
    foreign = [p.name for p in (files.frame, files.window) if p in held and not has_export_spec(p)]
    if files.meta in held:
        try:
            meta = SplitMeta.load(files.meta)
        except (OSError, ValueError, TypeError, KeyError):
            foreign.append(files.meta.name)
    if foreign:
        raise OutputExistsError(
            f"{', '.join(str(onnx_path.parent / n) for n in foreign)} exist but were not written by "
            "`vdepth-export split`: --overwrite replaces only its own split graphs; move them away"
        )
    if not overwrite:
        stale = meta is not None and meta.onnx_sha256 not in (None, onnx_sha256(onnx_path))
        raise OutputExistsError(
            f"{onnx_path.parent} already holds split graphs"
            f"{' (exported for an earlier model.onnx)' if stale else ''}: {', '.join(p.name for p in held)}; "
            "pass --overwrite to replace them"
        )


def split_parity(
    model: VideoDepthModel, onnx_path: Path, spec: InputSpec, *, threads: int | None, evaldata: Path | None
) -> dict[str, Any]:
    """ONNX Runtime's split graphs, composed and with reuse across two windows, vs PyTorch."""
    from vdepth_ros.runtime.onnx_backend import OnnxRuntimeEngine
    from vdepth_ros.runtime.torch_backend import TorchEngine

    tol = TOLERANCE[spec.precision]
    checks = []
    ref_spec = InputSpec.from_dict({**spec.to_dict(), "precision": "fp32", "dynamic_frames": False})
    overlap = max(1, spec.overlap)
    with (
        OnnxRuntimeEngine(onnx_path, spec, providers=["cpu"], threads=threads, reuse=True) as split,
        TorchEngine(model, ref_spec, threads=threads, reuse=False) as ref,
    ):
        if not split.supports_reuse:
            raise ExportError("the split graphs just written do not load")
        for name, clip in parity_clips(2 * spec.frames - overlap, spec.height, spec.width, evaldata, 2):
            split.reset_stream()
            windows = [list(range(spec.frames)), list(range(spec.frames - overlap, 2 * spec.frames - overlap))]
            for k, ids in enumerate(windows):  # the second window reuses `overlap` frames of the first
                stats = compare(f"{name}/window{k}", ref.infer(clip[ids]), split.infer(clip[ids], frame_ids=ids), tol)
                checks.append(stats.to_dict())
    return parity_report("torch fp32 whole forward", tol, checks)


def build_split_engines(
    onnx_path: str | Path, precision: str = "fp32", *, engine_path: str | Path | None = None, **options: Any
) -> list[Any]:
    """TensorRT engines of the split graphs beside `onnx_path`, named after the whole-window engine
    `engine_path` (default `model.engine`: `model.frame.engine`, `model.window.engine`; this machine's
    `model.<platform>.engine` beside another machine's: `model.frame.<platform>.engine`, ...), where the
    runtime looks for them beside it (`reuse.split_files_for`).

    The frame engine's batch profile spans 1 (a stream) .. the window length, tuned for one stride
    (the frames a window adds); the window engine has the fixed window. `options` go to
    `build_engine` (workspace, timing cache, device, tf32, force_engine_update, trt/gpu for tests).
    """
    from vdepth_export.build_engine import build_engine, default_engine_path

    onnx_path = Path(onnx_path)
    whole = Path(engine_path) if engine_path is not None else default_engine_path(onnx_path)
    files, engines = split_files_for(onnx_path), split_files_for(whole, ".engine")
    if not files.exist():
        raise ConfigError(f"no split graphs beside {onnx_path}; write them with `vdepth-export split`")
    spec = InputSpec.load(spec_path_for(files.frame))
    stride = max(1, spec.window - spec.overlap)
    shape = (3, spec.height, spec.width)
    batch = {"frames": ((1, *shape), (min(stride, spec.frames), *shape), (spec.frames, *shape))}
    return [
        build_engine(files.frame, engines.frame, precision=precision, profiles=batch, **options),
        build_engine(files.window, engines.window, precision=precision, **options),
    ]


__all__ = ["build_split_engines", "export_split_onnx", "split_parity"]
