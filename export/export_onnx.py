"""Export a model family to ONNX at a fixed (T, H, W) and precision, with a parity report.

Writes, next to each other:

* `model.onnx` (+ `model.onnx.data` when the weights exceed the 2 GB protobuf limit),
* `model.onnx.json`: the `InputSpec` (the model's `input_constraints` + export shape),
* `model.onnx.parity.json`: ONNX Runtime (CPU EP) vs PyTorch fp32 max-abs / mean-abs difference
  on two different real clips (evaldata) or deterministic synthetic ones.

The graph's IO stays float32 for every precision; fp16/bf16 cast inside, so one spec/engine
interface serves all. Exporter: the legacy TorchScript exporter is tried first (seconds, and
fine for most graphs), the dynamo exporter when it fails (`exporter="auto"`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from vdepth_export.parity import TOLERANCE, compare, parity_clips

from vdepth_ros.errors import ConfigError, ModelLoadError, VdepthError
from vdepth_ros.models import VideoDepthModel, family_class, load_model
from vdepth_ros.runtime import ONNX_NAME
from vdepth_ros.runtime.onnx_backend import OnnxRuntimeEngine
from vdepth_ros.runtime.shapes import check_precision, resolve_frames, spec_from_model
from vdepth_ros.runtime.spec import InputSpec, spec_path_for, variant_path
from vdepth_ros.runtime.torch_backend import TorchEngine
from vdepth_ros.runtime.trt_cache import external_data_path

log = logging.getLogger(__name__)

EXPORTERS = ("auto", "legacy", "dynamo")
MIN_OPSET = 17
PROTOBUF_LIMIT = 2 * 1024**3  # bytes; larger graphs must keep weights in an external-data file
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class ExportError(VdepthError):
    """Export failed, or the exported graph does not match PyTorch."""


def parity_path_for(onnx_path: str | Path) -> Path:
    """`model.onnx` -> `model.onnx.parity.json`."""
    p = Path(onnx_path)
    return p.with_name(p.name + ".parity.json")


@dataclass
class ExportResult:
    """What `export_onnx` wrote and measured."""

    onnx_path: Path
    spec: InputSpec
    exporter: str
    opset: int
    seconds: float
    external_data: bool
    dynamic_axes: dict[str, list[int]]
    parity: dict[str, Any] | None = None
    files: list[Path] = field(default_factory=list)


class _CastIO(nn.Module):
    """Float32 IO around a reduced-precision module."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module.to(dtype)
        self.dtype = dtype

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.module(frames.to(self.dtype)).float()


# -- model sources -------------------------------------------------------------------------------
def load_source(source: str | Path | VideoDepthModel, *, tiny: bool = False, seed: int = 0) -> VideoDepthModel:
    """A model instance from an instance, a model folder, or a family name (+ `tiny`)."""
    if isinstance(source, VideoDepthModel):
        return source.eval()
    path = Path(source)
    if path.is_dir():
        if tiny:
            raise ConfigError("--tiny builds a random tiny model from a family name; got a model folder")
        return load_model(path)
    try:
        cls = family_class(str(source))
    except ConfigError:
        raise ModelLoadError(f"{source!r} is neither a model folder nor a known family name") from None
    torch.manual_seed(seed)
    if tiny:
        if not hasattr(cls, "tiny_config"):
            raise ConfigError(f"family {cls.family!r} defines no tiny_config()")
        return cls(**cls.tiny_config()).eval()
    log.warning("building %s with its default config and RANDOM weights (no checkpoint given)", cls.family)
    return cls().eval()


def default_shape(model: VideoDepthModel, tiny: bool) -> tuple[int | None, int | None, int | None]:
    """(T, H, W) for an export with no explicit shape: the family's tiny shape, else None (defaults)."""
    if tiny and hasattr(type(model), "tiny_input_shape"):
        t, h, w = type(model).tiny_input_shape()
        return int(t), int(h), int(w)
    return None, None, None


# -- export --------------------------------------------------------------------------------------
@contextlib.contextmanager
def _stdout_to_stderr() -> Any:
    """Send fd 1 to stderr: the legacy exporter dumps the whole TorchScript graph to C++ stdout on
    failure, which would corrupt JSON printed by the CLI and the benchmark."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):  # Python-level prints too
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _export_legacy(
    module: nn.Module, example: torch.Tensor, path: Path, opset: int, names, dynamic_frames, fuse_bn: bool = True
) -> None:
    """TorchScript-based export. `fuse_bn=False` keeps BatchNorm as its own op (ONNX Runtime fuses
    it when it loads the model) so that the stored weights stay the module's own values, which
    `store_weights_fp16` can then keep as float16 losslessly; it skips the exporter's eval-mode
    peephole pass by exporting with `TrainingMode.PRESERVE` (the module is in eval mode)."""
    in_name, out_name = names
    axes = {in_name: {1: "frames"}, out_name: {1: "frames"}} if dynamic_frames else None
    mode = {} if fuse_bn else {"training": torch.onnx.TrainingMode.PRESERVE}
    with warnings.catch_warnings(), _stdout_to_stderr():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="It is recommended that constant folding be turned off")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            do_constant_folding=True,
            input_names=[in_name],
            output_names=[out_name],
            dynamic_axes=axes,
            **mode,
        )


def _export_dynamo(
    module: nn.Module, example: torch.Tensor, path: Path, opset: int, names, dynamic_frames, max_frames: int
) -> None:
    in_name, out_name = names
    dyn = None
    if dynamic_frames:
        dyn = ({1: torch.export.Dim("frames", min=1, max=max_frames)},)
    with _stdout_to_stderr():  # the dynamo exporter prints its progress
        prog = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            opset_version=opset,
            optimize=True,  # onnxscript optimizer: constant folding and dead-code removal
            input_names=[in_name],
            output_names=[out_name],
            dynamic_shapes=dyn,
        )
    prog.save(str(path), external_data=True)


def _finalize(tmp: Path, path: Path, threshold: int, weights_fp16: bool = False) -> bool:
    """Re-save `tmp` as `path`, weights in `path.data` when over `threshold` bytes; run the checker."""
    import onnx

    proto = onnx.load(str(tmp), load_external_data=True)
    weight_bytes = sum(len(t.raw_data) for t in proto.graph.initializer)
    proto = _fold_constants(proto, shape_inference=weight_bytes < threshold)
    if weights_fp16:
        proto = store_weights_fp16(proto)
    ext = external_data_path(path)
    ext.unlink(missing_ok=True)
    external = weight_bytes >= threshold
    if external:
        onnx.save_model(
            proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=ext.name,
            size_threshold=1024,
        )  # fmt: skip
    else:
        onnx.save_model(proto, str(path))
    onnx.checker.check_model(str(path))  # path form: handles external data and > 2 GB
    return external


def store_weights_fp16(proto: Any, min_elements: int = 16) -> Any:
    """Store float32 initializers (of at least `min_elements` values) whose values are all exactly
    representable in float16 as float16, read through a `Cast(to=FLOAT)` node under the old name.

    Lossless by construction: the graph computes exactly what it computed before, in float32
    (ONNX Runtime folds the casts when it loads the model). It shrinks a file when the model's
    weights were rounded to float16 first (`save_pretrained(weights_dtype=torch.float16)`);
    initializers the exporter computed from several weights (a BatchNorm folded into a conv) are
    not float16 values and stay float32.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    keep, casts = [], []
    for init in proto.graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            keep.append(init)
            continue
        w = numpy_helper.to_array(init)
        w16 = w.astype(np.float16)
        if not np.array_equal(w16.astype(np.float32), w):  # not a float16 value: keep it exact
            keep.append(init)
            continue
        half = numpy_helper.from_array(w16, name=init.name + "__fp16")
        keep.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT))
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)
    nodes = list(proto.graph.node)
    del proto.graph.node[:]
    proto.graph.node.extend(casts + nodes)  # casts first: the graph stays topologically sorted
    return proto  # `_finalize` runs the checker on the saved file


def _fold_constants(proto: Any, *, shape_inference: bool) -> Any:
    """Fold constant subgraphs the exporter left (the legacy exporter misses e.g. `1 / buffer`).

    Only onnxscript's constant folding and dead-node removal run: its full `optimize()` (rewrite
    rules, repeated passes) took 124-334 s on the tiny one-step/DepthCrafter graphs (10-17k
    nodes), folding alone about 1 s. Large constant generators (`ConstantOfShape` over the size
    limit) are left unfolded on purpose.
    """
    try:
        import onnx_ir as ir
        from onnx_ir.passes.common import RemoveUnusedNodesPass
        from onnxscript import optimizer
    except ImportError:
        log.warning("onnxscript not installed: only the exporter's own constant folding was applied")
        return proto
    names = ([i.name for i in proto.graph.input], [o.name for o in proto.graph.output])
    model = ir.serde.deserialize_model(proto)
    noisy = logging.getLogger("onnxscript.optimizer._constant_folding")  # one warning per skipped node
    level = noisy.level
    noisy.setLevel(logging.ERROR)
    try:
        optimizer.fold_constants(model, onnx_shape_inference=shape_inference)
    finally:
        noisy.setLevel(level)
    RemoveUnusedNodesPass()(model)
    folded = ir.serde.serialize_model(model)
    if ([i.name for i in folded.graph.input], [o.name for o in folded.graph.output]) != names:
        raise ExportError(f"constant folding renamed the graph IO {names}")
    return folded


def dynamic_axes_of(onnx_path: Path) -> dict[str, list[int]]:
    """Graph IO name -> axes that are symbolic (not a fixed size)."""
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    out: dict[str, list[int]] = {}
    for vi in list(proto.graph.input) + list(proto.graph.output):
        dims = vi.type.tensor_type.shape.dim
        axes = [i for i, d in enumerate(dims) if not d.HasField("dim_value") or d.dim_value <= 0]
        if axes:
            out[vi.name] = axes
    return out


def second_frames(spec: InputSpec, max_window: int | None) -> int:
    """A second, different window length allowed by the family's frames rule."""
    step = 4 if spec.frames_rule == "4n+1" else 1
    if spec.frames - step >= 1:
        return spec.frames - step
    cand = spec.frames + step
    if max_window is not None and cand > max_window:
        raise ConfigError("cannot check a dynamic frame axis: no second window length fits this family")
    return cand


def export_onnx(
    source: str | Path | VideoDepthModel,
    output: str | Path | None = None,
    *,
    frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    precision: str = "fp32",
    opset: int | None = None,
    exporter: str = "auto",
    dynamic_frames: bool = False,
    tiny: bool = False,
    parity: bool = True,
    strict: bool = True,
    threads: int | None = None,
    evaldata: str | Path | bool | None = True,
    external_data_threshold: int = PROTOBUF_LIMIT,
    weights_fp16: bool = False,
    variant: bool = False,
) -> ExportResult:
    """Export `source` to ONNX, write its InputSpec and (by default) a parity report.

    Args:
        source: model folder (`config.json` + `model.safetensors`), family name (with `tiny`), or
            a `VideoDepthModel`.
        output: folder (writes `model.onnx` there) or `.onnx` path. Default: the model folder
            itself; required for family names and instances. For a family name or instance
            exported into a folder, the model is also saved there (`save_pretrained`), so the
            folder works with every backend.
        frames, height, width: export shape; default: the family's tiny shape with `tiny`, else
            its window and the runtime's default resolution. Prefer non-square shapes.
        precision: "fp32" | "fp16" | "bf16" compute precision inside the graph (IO stays fp32).
        opset: ONNX opset (>= 17); default 17 for the legacy exporter, 18 for dynamo.
        exporter: "auto" (legacy, then dynamo on failure), "legacy" or "dynamo".
        dynamic_frames: declare the frame axis dynamic; checked at two window lengths.
        tiny: with a family name, build its `tiny_config()` with random weights.
        parity: run the ONNX Runtime vs PyTorch check and write the report.
        strict: raise `ExportError` when parity fails (the report is written first).
        threads: ORT/torch threads for the parity run.
        evaldata: folder of real frames; True = autodetect (`vdepth_ros.paths.evaldata_dir`);
            None/False = synthetic clips only.
        external_data_threshold: weight bytes from which weights go to `model.onnx.data`.
        weights_fp16: store float32 weights as float16, each behind a Cast back to float32
            (`store_weights_fp16`): half the file, fp32 compute. Pair it with a model folder saved
            with fp16 weights, so that PyTorch and ONNX hold the same rounded values.
        variant: write `model.<H>x<W>.onnx` (`runtime.spec.variant_path`) next to where `model.onnx`
            would go: a fixed-shape graph for another aspect ratio, which the runtime picks for
            cameras of that aspect (`DepthEngine.at_resolution`).
    """
    check_precision(precision)
    if exporter not in EXPORTERS:
        raise ConfigError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    model = load_source(source, tiny=tiny)
    t0, h0, w0 = default_shape(model, tiny)
    frames = frames if frames is not None else t0
    height = height if height is not None else h0
    width = width if width is not None else w0

    onnx_path, save_model_dir = _output_paths(source, output)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    if save_model_dir is not None:
        model.save_pretrained(save_model_dir)

    constraints = model.input_constraints
    spec = spec_from_model(model, frames, height, width, precision=precision, dynamic_frames=dynamic_frames)
    if variant:
        onnx_path = variant_path(onnx_path, spec.height, spec.width)
    sig = model.export_signature(spec.frames, spec.height, spec.width)
    names = (sig.input_names[0], sig.output_names[0])
    spec = InputSpec.from_dict({**spec.to_dict(), "input_name": names[0], "output_name": names[1]})
    module = sig.module.eval()
    if precision != "fp32":
        module = _CastIO(module, _DTYPES[precision]).eval()
    example = (
        torch.from_numpy(
            parity_clips(spec.frames, spec.height, spec.width, None, 1)[0][1].transpose(0, 3, 1, 2)[None].copy()
        ).float()
        / 255.0
        * (spec.value_range[1] - spec.value_range[0])
        + spec.value_range[0]
    )

    max_frames = int(constraints.max_window or max(64, spec.frames))
    tries = ["legacy", "dynamo"] if exporter == "auto" else [exporter]
    tmp_dir = onnx_path.parent / f".{onnx_path.name}.tmp"
    tmp_dir.mkdir(exist_ok=True)
    tmp = tmp_dir / "raw.onnx"
    errors: list[str] = []
    start = time.perf_counter()
    used, used_opset = "", 0
    try:
        for name in tries:
            used_opset = int(opset if opset is not None else (17 if name == "legacy" else 18))
            if used_opset < MIN_OPSET:
                raise ConfigError(f"opset must be >= {MIN_OPSET}, got {used_opset}")
            try:
                with torch.inference_mode(False), torch.no_grad():
                    if name == "legacy":
                        _export_legacy(module, example, tmp, used_opset, names, dynamic_frames, not weights_fp16)
                    else:
                        _export_dynamo(module, example, tmp, used_opset, names, dynamic_frames, max_frames)
            except Exception as err:  # exporter failures are many types; keep the message, try the next
                errors.append(f"{name}: {type(err).__name__}: {str(err)[:500]}")
                log.warning("%s ONNX export failed (%s)%s", name, err, "; trying dynamo" if name != tries[-1] else "")
                continue
            used = name
            break
        if not used:
            raise ExportError(f"ONNX export failed with every exporter: {' | '.join(errors)}")
        external = _finalize(tmp, onnx_path, external_data_threshold, weights_fp16)
    finally:
        for f in tmp_dir.iterdir():
            f.unlink()
        tmp_dir.rmdir()
    seconds = time.perf_counter() - start

    dyn = dynamic_axes_of(onnx_path)
    frames_dynamic = 1 in dyn.get(names[0], [])
    if dynamic_frames and not frames_dynamic:
        log.warning("frame axis was requested dynamic but the exporter fixed it; the spec says fixed")
    spec = InputSpec.from_dict(
        {
            **spec.to_dict(),
            "dynamic_frames": frames_dynamic,
            "extra": {**spec.extra, "exporter": used, "opset": used_opset, "torch": torch.__version__},
        }
    )
    spec.save(spec_path_for(onnx_path))
    result = ExportResult(onnx_path, spec, used, used_opset, seconds, external, dyn)
    result.files = [onnx_path, spec_path_for(onnx_path)] + ([external_data_path(onnx_path)] if external else [])
    log.info("exported %s (%s, opset %d) in %.1f s; dynamic axes %s", onnx_path, used, used_opset, seconds, dyn)

    if parity:
        if evaldata is True:
            from vdepth_ros.paths import evaldata_dir

            evaldata = evaldata_dir()
        report = parity_report(
            model, onnx_path, spec, dyn, evaldata=Path(evaldata) if evaldata else None, threads=threads,
            max_window=constraints.max_window,
        )  # fmt: skip
        report.update(exporter=used, opset=used_opset, export_seconds=round(seconds, 3))
        ppath = parity_path_for(onnx_path)
        ppath.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        result.parity = report
        result.files.append(ppath)
        if report["skipped"]:
            log.warning("parity NOT checked: %s", report["skipped"])
        if strict and report["passed"] is False:
            worst = max(report["checks"], key=lambda c: c["max_abs_rel"])
            raise ExportError(
                f"ONNX Runtime differs from PyTorch: max-abs {worst['max_abs']:.3g} "
                f"({worst['max_abs_rel']:.3g} of the output range > {report['tolerance_rel']}) on {worst['name']}; "
                f"report: {ppath}"
            )
    return result


def _output_paths(source: Any, output: str | Path | None) -> tuple[Path, Path | None]:
    """(onnx path, folder to save the model into or None)."""
    src_dir = Path(source) if isinstance(source, str | Path) and Path(source).is_dir() else None
    if output is None:
        if src_dir is None:
            raise ConfigError("give an output folder or .onnx path (-o) when exporting a family name or instance")
        return src_dir / ONNX_NAME, None
    out = Path(output)
    if out.suffix == ".onnx":
        return out, None
    same = src_dir is not None and src_dir.resolve() == out.resolve()
    return out / ONNX_NAME, None if same else out


def parity_report(
    model: VideoDepthModel,
    onnx_path: Path,
    spec: InputSpec,
    dynamic_axes: dict[str, list[int]],
    *,
    evaldata: Path | None,
    threads: int | None = None,
    max_window: int | None = None,
) -> dict[str, Any]:
    """ONNX Runtime (CPU EP) vs PyTorch fp32 on two different clips, at the export window length
    and, if the frame axis is dynamic, at a second one."""
    import onnxruntime as ort

    tol = TOLERANCE[spec.precision]
    shapes = [spec.frames]
    if spec.dynamic_frames:
        shapes.append(second_frames(spec, max_window))
    other_dyn = {k: [a for a in v if a != 1] for k, v in dynamic_axes.items() if any(a != 1 for a in v)}
    checks: list[dict[str, Any]] = []
    skipped: str | None = None
    sources: list[str] = []
    ort_engine: OnnxRuntimeEngine | None = None
    try:
        ort_engine = OnnxRuntimeEngine(onnx_path, spec, providers=["cpu"], threads=threads)
    except Exception as err:  # e.g. no CPU kernel for a reduced-precision op
        skipped = f"onnxruntime cannot load the graph on the CPU EP: {type(err).__name__}: {str(err)[:300]}"
    if ort_engine is not None:
        with ort_engine:
            for t in shapes:
                ref_spec = spec_from_model(model, resolve_frames(t, model.input_constraints), spec.height, spec.width)
                clips = parity_clips(t, spec.height, spec.width, evaldata, 2)
                with TorchEngine(model, ref_spec, threads=threads) as ref:
                    for name, clip in clips:
                        sources.append(name)
                        try:
                            out = ort_engine.infer(clip)
                        except Exception as err:
                            raise ExportError(
                                f"ONNX Runtime fails at T={t} ({err}); the exporter baked a shape into a graph "
                                "declared dynamic: export without --dynamic-frames"
                            ) from err
                        stats = compare(f"{name}@T={t}", ref.infer(clip), out, tol)
                        checks.append(stats.to_dict())
    # A reference that is one constant (a randomly initialised tiny model whose last ReLU clips every
    # pixel) agrees with any graph that outputs the same constant: such a check proves little.
    constant = sorted(c["name"] for c in checks if c["ref_range"] == 0.0)
    if constant:
        log.warning(
            "parity: the PyTorch reference output is constant on %d of %d inputs (%s); those checks only "
            "compare one value (expected for random tiny weights, not for a trained model)",
            len(constant),
            len(checks),
            ", ".join(constant[:3]),
        )
    return {
        "onnx": onnx_path.name,
        "precision": spec.precision,
        "reference": "torch fp32, same export_signature graph",
        "constant_reference": constant,
        "tolerance_rel": tol,
        "input_shape": [1, spec.frames, 3, spec.height, spec.width],
        "dynamic_axes": dynamic_axes,
        "unchecked_dynamic_axes": other_dyn,
        "inputs": sorted(set(sources)),
        "checks": checks,
        "passed": None if skipped else all(c["passed"] for c in checks),
        "skipped": skipped,
        "torch_version": torch.__version__,
        "onnxruntime_version": ort.__version__,
        "providers": ["CPUExecutionProvider"],
        "max_abs": max((c["max_abs"] for c in checks), default=None),
        "mean_abs": float(np.mean([c["mean_abs"] for c in checks])) if checks else None,
    }
