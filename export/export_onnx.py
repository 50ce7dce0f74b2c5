"""Export a model family to ONNX at a fixed (T, H, W) and precision, with a parity report.

Writes, next to each other:

* `model.onnx` (+ `model.onnx.data` when the weights exceed the 2 GB protobuf limit),
* `model.onnx.json`: the `InputSpec` (the model's `input_constraints` + export shape),
* `model.onnx.parity.json`: ONNX Runtime (CPU EP) vs PyTorch fp32 max-abs / mean-abs difference
  on two different real clips (evaldata) or deterministic synthetic ones.

The graph's IO stays float32 for every precision; fp16/bf16 cast inside, so one spec/engine
interface serves all. Exporter: the legacy TorchScript exporter is tried first (seconds, and
fine for most graphs), the dynamo exporter when it fails (`exporter="auto"`); a family whose
signature names its exporter (`ExportSignature.extra["exporter"]`, DVD) gets that one only.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from vdepth_export.onnx_graph import ExportError, dynamic_axes_of, finalize_graph
from vdepth_export.parity import TOLERANCE, compare, parity_clips, parity_report

from vdepth_ros.errors import ConfigError, ModelLoadError
from vdepth_ros.models import CONFIG_NAME, WEIGHTS_NAME, VideoDepthModel, family_class, load_model
from vdepth_ros.offline.atomic import AtomicOutput, check_writable
from vdepth_ros.offline.errors import OutputExistsError
from vdepth_ros.offline.runner import stdout_for_results
from vdepth_ros.paths import not_a_model_folder
from vdepth_ros.runtime import ONNX_NAME
from vdepth_ros.runtime.onnx_backend import OnnxRuntimeEngine
from vdepth_ros.runtime.reuse import SplitMeta, split_files_for
from vdepth_ros.runtime.shapes import check_precision, resolve_frames, spec_from_model
from vdepth_ros.runtime.spec import (
    WEIGHTS_KEY,
    InputSpec,
    has_export_spec,
    parity_path_for,
    spec_path_for,
    variant_mismatch,
    variant_path,
    weights_record,
)
from vdepth_ros.runtime.torch_backend import TorchEngine
from vdepth_ros.runtime.trt_cache import (
    EXTERNAL_DATA_KEY,
    EngineMismatchError,
    external_data_path,
    onnx_sha256,
    read_key,
)

log = logging.getLogger(__name__)

EXPORTERS = ("auto", "legacy", "dynamo")
MIN_OPSET = 17
PROTOBUF_LIMIT = 2 * 1024**3  # bytes; larger graphs must keep weights in an external-data file
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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
        from vdepth_ros.paths import released_checkpoint_problem

        why = released_checkpoint_problem(path)
        exists = "" if path.exists() else " (no such file or folder)"
        raise ModelLoadError(why or f"{source!r} is neither a model folder nor a known family name{exists}") from None
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
def _export_legacy(
    module: nn.Module,
    example: torch.Tensor,
    path: Path,
    opset: int,
    names: tuple[str, str],
    dynamic_frames: bool,
    fuse_bn: bool = True,
) -> None:
    """TorchScript-based export. `fuse_bn=False` keeps BatchNorm as its own op (ONNX Runtime fuses
    it when it loads the model) so that the stored weights stay the module's own values, which
    `store_weights_fp16` can then keep as float16 losslessly; it skips the exporter's eval-mode
    peephole pass by exporting with `TrainingMode.PRESERVE` (the module is in eval mode)."""
    in_name, out_name = names
    axes = {in_name: {1: "frames"}, out_name: {1: "frames"}} if dynamic_frames else None
    mode = {} if fuse_bn else {"training": torch.onnx.TrainingMode.PRESERVE}
    with warnings.catch_warnings(), stdout_for_results():
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
    module: nn.Module,
    example: torch.Tensor,
    path: Path,
    opset: int,
    names: tuple[str, str],
    dynamic_frames: bool,
    max_frames: int,
) -> None:
    in_name, out_name = names
    dyn = None
    if dynamic_frames:
        dyn = ({1: torch.export.Dim("frames", min=1, max=max_frames)},)
    with stdout_for_results():  # the dynamo exporter prints its progress
        prog = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            opset_version=opset,
            # not torch's `optimize=True` (onnxscript's whole optimizer, rewrite rules in repeated passes):
            # `finalize_graph` folds the constants and drops dead nodes anyway (`_fold_constants`), and ONNX
            # Runtime and TensorRT fuse the rest when they load the graph (export/README.md: the time it cost)
            optimize=False,
            input_names=[in_name],
            output_names=[out_name],
            dynamic_shapes=dyn,
        )
    prog.save(str(path), external_data=True)


def second_frames(spec: InputSpec, max_window: int | None) -> int:
    """A second, different window length allowed by the family's frames rule."""
    step = 4 if spec.frames_rule == "4n+1" else 1
    if spec.frames - step >= 1:
        return spec.frames - step
    cand = spec.frames + step
    if max_window is not None and cand > max_window:
        raise ConfigError("cannot check a dynamic frame axis: no second window length fits this family")
    return cand


#: what to do when a model folder exported in place cannot be written (a read-only or shared model cache)
UNWRITABLE_MODEL_FOLDER_FIX = "export it into a file of yours with `-o FILE.onnx` and run that as `model: FILE.onnx`"


def _refuse_stream_model(model: VideoDepthModel, source: Any) -> None:
    """A causal model's whole-window graph would let each frame attend to its window only, not to its context."""
    if getattr(model, "streamable", False):
        where = source if isinstance(source, str | Path) and Path(source).is_dir() else "MODEL_FOLDER"
        raise ConfigError(
            f"this is a causal (streaming) model (causal_context {model.head.causal_context}): a whole-window graph "
            f"holds no stream state, so each frame would see only its window; export its stream step instead: "
            f"`vdepth-export stream {where}`"
        )


def _variant_graph_path(source: Any, main: Any, spec: Any, onnx_path: Path, overwrite: bool) -> Path:
    """Where a `--variant` of `main` (model.onnx's spec) goes; refused when it differs from main in more than
    its resolution (checked as every export's path is: `_check_graph_path`)."""
    if diff := variant_mismatch(main, spec):
        raise ConfigError(
            f"--variant exports {ONNX_NAME} at another resolution, so only --height and --width may differ from "
            f"it; this export differs in "
            + ", ".join(f"{k} ({getattr(spec, k)!r}, {ONNX_NAME} has {getattr(main, k)!r})" for k in diff)
            + f": give the options {ONNX_NAME} was exported with, or export {ONNX_NAME} again first"
        )
    path = variant_path(onnx_path, spec.height, spec.width)
    _check_graph_path(source, path, overwrite)
    return path


def export_onnx(
    source: str | Path | VideoDepthModel,
    output: str | Path | None = None,
    *,
    frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    precision: str | None = None,
    opset: int | None = None,
    exporter: str = "auto",
    dynamic_frames: bool | None = None,
    tiny: bool = False,
    parity: bool = True,
    strict: bool = True,
    threads: int | None = None,
    evaldata: str | Path | bool | None = True,
    external_data_threshold: int = PROTOBUF_LIMIT,
    weights_fp16: bool = False,
    variant: bool = False,
    overwrite: bool = False,
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
        precision: "fp32" | "fp16" | "bf16" compute precision inside the graph (IO stays fp32); default fp32,
            for a `variant` model.onnx's.
        opset: ONNX opset (>= 17); default 17 for the legacy exporter, 18 for dynamo.
        exporter: "auto" (the family's own, else legacy, then dynamo on failure), "legacy" or "dynamo".
        dynamic_frames: declare the frame axis dynamic; checked at two window lengths (default: no, for a
            `variant` as model.onnx).
        tiny: with a family name, build its `tiny_config()` with random weights.
        parity: run the ONNX Runtime vs PyTorch check and write the report.
        strict: raise `ExportError` when parity fails; the failing graph is then not installed (a
            working export at the output stays as it was; with none there, the report is written).
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
        overwrite: replace a model (`config.json`, `model.safetensors`) already in the output
            folder when a family name or instance is saved there, an `.onnx` file that
            vdepth-export did not write (no `.onnx.json` spec of its own beside it), and an earlier
            export at `output` (`_check_graph_path`). A model folder's own export made again in place is
            replaced either way.

    Raises:
        OutputExistsError: one of those is in the way and `overwrite` is false (checked first).
    """
    # 1. Check the options; the model, its export shape and where the files go.
    if exporter not in EXPORTERS:
        raise ConfigError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    _check_outputs(source, output, overwrite)
    model = load_source(source, tiny=tiny)
    _refuse_stream_model(model, source)
    t0, h0, w0 = default_shape(model, tiny)
    main = _main_spec(_output_paths(source, output)[0]) if variant else None
    if main is not None:  # a variant runs windows as model.onnx does: its T, precision and frame axis unless given
        t0 = main.frames
    precision = precision if precision is not None else (main.precision if main is not None else "fp32")
    dynamic_frames = bool(main is not None and main.dynamic_frames if dynamic_frames is None else dynamic_frames)
    check_precision(precision)
    frames = frames if frames is not None else t0
    height = height if height is not None else h0
    width = width if width is not None else w0
    onnx_path, save_model_dir = _output_paths(source, output)
    # before minutes of export: a model folder that is read-only (a shared model cache) says how to export elsewhere
    unwritable_fix = (
        UNWRITABLE_MODEL_FOLDER_FIX if output is None else "choose another -o (a folder or .onnx path of yours)"
    )
    check_writable(onnx_path, unwritable_fix)
    constraints = model.input_constraints
    spec = spec_from_model(model, frames, height, width, precision=precision, dynamic_frames=dynamic_frames)
    if main is not None:
        onnx_path = _variant_graph_path(source, main, spec, onnx_path, overwrite)
    previous = _export_at(onnx_path)  # what this export replaces, named when it is done
    # 2. The module to trace (float32 IO around the precision) and an example input.
    spec, names, module, example, tries = _traced_module(model, spec, precision, exporter)
    # 3. Export with the first exporter that succeeds, then finish the graph file. Everything is
    # written beside the staged graph and moved into place together, once complete (`AtomicOutput`):
    # a failure or Ctrl-C leaves the working graph, its spec and report as they were.
    max_frames = int(constraints.max_window or max(64, spec.frames))
    start = time.perf_counter()
    written = [external_data_path(onnx_path), spec_path_for(onnx_path), parity_path_for(onnx_path)]
    if save_model_dir is not None:  # the model's config and weights move in with its graph, not before it
        written += [save_model_dir / CONFIG_NAME, save_model_dir / WEIGHTS_NAME]
    report: dict[str, Any] | None = None
    try:
        # overwrite: `_check_outputs` decided what may be replaced (a previous export's files are)
        with AtomicOutput(
            onnx_path,
            overwrite=True,
            companions=[p.name for p in written],
            replaceable=_not_an_onnx_file,
            fix=unwritable_fix,
        ) as staged:
            raw = staged.with_name(".exporter-raw.onnx")  # the exporter's own file(s), left in the staging folder
            if save_model_dir is not None:
                model.save_pretrained(staged.parent)
            used, used_opset = _export_first(
                tries, opset, module, example, raw, names, dynamic_frames, max_frames, weights_fp16
            )
            data_file = finalize_graph(raw, staged, external_data_threshold, weights_fp16)
            seconds = time.perf_counter() - start
            # 4. The spec with what the exporter made of the frame axis.
            dyn = dynamic_axes_of(staged)
            frames_dynamic = 1 in dyn.get(names[0], [])
            if dynamic_frames and not frames_dynamic:
                log.warning("frame axis was requested dynamic but the exporter fixed it; the spec says fixed")
            spec = InputSpec.from_dict(
                {
                    **spec.to_dict(),
                    "dynamic_frames": frames_dynamic,
                    "extra": {
                        **spec.extra,
                        "exporter": used,
                        "opset": used_opset,
                        "torch": torch.__version__,
                        EXTERNAL_DATA_KEY: data_file,
                        **_weights_beside(
                            source, onnx_path, None if save_model_dir is None else staged.parent / WEIGHTS_NAME
                        ),
                    },
                }
            )
            spec.save(spec_path_for(staged))
            result = ExportResult(staged, spec, used, used_opset, seconds, data_file is not None, dyn)
            # 5. ONNX Runtime against PyTorch, written as the parity report.
            if parity:
                report = _parity(result, model, evaldata, threads, constraints.max_window)
                parity_path_for(staged).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
                _check_parity(report, parity_path_for(onnx_path), strict)
    except ExportError:
        if report is not None and not onnx_path.exists():  # nothing kept there: the report says what failed
            parity_path_for(onnx_path).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        raise
    result.onnx_path = onnx_path
    result.files = [onnx_path, *(p for p in written if p.is_file())]
    log.info("exported %s (%s, opset %d) in %.1f s; dynamic axes %s", onnx_path, used, used_opset, seconds, dyn)
    _note_replaced(onnx_path, previous, result.spec)
    return result


def _shape_of(spec: InputSpec) -> str:
    dynamic = " dynamic frames" if spec.dynamic_frames else ""
    return f"T={spec.frames}{dynamic} {spec.height}x{spec.width} {spec.precision}"


def _export_at(onnx_path: Path) -> InputSpec | None:
    """The spec of the export of vdepth-export at `onnx_path`, or None (nothing there, or not readable)."""
    try:
        return InputSpec.load(spec_path_for(onnx_path)) if onnx_path.is_file() else None
    except ConfigError:
        return None


def _note_replaced(onnx_path: Path, previous: InputSpec | None, spec: InputSpec) -> None:
    """One warning when this export replaced one of another shape or precision (a folder's own export is
    replaced in place without --overwrite: the user is told what went), and one naming what was built from the
    replaced graph and no longer matches it (split graphs, TensorRT engines), with the commands that rebuild
    them; the runtime would otherwise say so only when it starts, or run without them."""
    if previous is not None and _shape_of(previous) != _shape_of(spec):
        log.warning("replaced the earlier export %s (%s) with %s", onnx_path, _shape_of(previous), _shape_of(spec))
    files = split_files_for(onnx_path)
    built = sorted(onnx_path.parent.glob(f"{onnx_path.stem}.*engine"))
    if not files.exist() and not built:
        return  # nothing built from a graph here: no hash of a multi-GB graph to take
    sha = onnx_sha256(onnx_path)
    stale, again = [], []
    if files.exist():
        try:
            built_for = SplitMeta.load(files.meta).onnx_sha256
        except ConfigError:
            built_for = None
        if built_for not in (None, sha):
            stale += [files.frame.name, files.window.name]
            again.append(f"vdepth-export split {onnx_path.parent} --overwrite")
    engines = split_files_for(onnx_path, ".engine")
    for engine in built:
        try:
            key = read_key(engine)
        except EngineMismatchError:
            continue
        is_split = engine.name.startswith((engines.frame.stem, engines.window.stem))
        if key is not None and key.onnx_sha256 != sha and not is_split:
            stale.append(engine.name)
            again.append(f"vdepth-export engine {onnx_path} --precision {key.precision} -o {engine}")
    if stale:
        log.warning(
            "%s in %s were built from the graph this export replaced and no longer match it (the runtime does not "
            "use them): %s", ", ".join(stale), onnx_path.parent, "; ".join(f"`{c}`" for c in again),
        )  # fmt: skip


def _traced_module(
    model: VideoDepthModel, spec: InputSpec, precision: str, exporter: str
) -> tuple[InputSpec, tuple[str, str], nn.Module, torch.Tensor, list[str]]:
    """The model's export signature at `spec`'s shape: (spec with the IO names, (input, output)
    names, the module in eval mode with float32 IO, an example input in the model's value range,
    the exporters to try in order for `exporter`)."""
    sig = model.export_signature(spec.frames, spec.height, spec.width)
    # "auto" tries the legacy exporter first (seconds where it works), dynamo when it fails; a family
    # whose graph the legacy exporter cannot take names the exporter in its signature (DVD: Wan's
    # aten::rms_norm has no legacy symbolic), so its export does not pay a failed legacy trace first
    # (4 s of the tiny DVD export; `test_export_onnx.py::test_a_family_naming_its_exporter_skips_the_other`).
    tries = (
        ([sig.extra["exporter"]] if "exporter" in sig.extra else ["legacy", "dynamo"])
        if exporter == "auto"
        else [exporter]
    )
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
    return spec, names, module, example, tries


def _newest_opset() -> int:
    """The newest ONNX opset the installed `onnx` package knows."""
    import onnx

    return int(onnx.defs.onnx_opset_version())


def _export_first(
    tries: list[str],
    opset: int | None,
    module: nn.Module,
    example: torch.Tensor,
    tmp: Path,
    names: tuple[str, str],
    dynamic_frames: bool,
    max_frames: int,
    weights_fp16: bool,
) -> tuple[str, int]:
    """Export to `tmp` with the first of `tries` that succeeds; returns (exporter, opset)."""
    errors: list[str] = []
    for name in tries:
        used_opset = int(opset if opset is not None else (17 if name == "legacy" else 18))
        newest = _newest_opset()
        if not MIN_OPSET <= used_opset <= newest:
            raise ConfigError(f"opset must be between {MIN_OPSET} and {newest} (the installed onnx), got {used_opset}")
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
        return name, used_opset
    raise ExportError(f"ONNX export failed with every exporter: {' | '.join(errors)}")


def _parity(
    result: ExportResult,
    model: VideoDepthModel,
    evaldata: str | Path | bool | None,
    threads: int | None,
    max_window: int | None,
) -> dict[str, Any]:
    """`window_parity` on the exported graph, also put into `result`."""
    if evaldata is True:
        from vdepth_ros.paths import evaldata_dir

        evaldata = evaldata_dir()
    report = window_parity(
        model, result.onnx_path, result.spec, result.dynamic_axes,
        evaldata=Path(evaldata) if evaldata else None, threads=threads, max_window=max_window,
    )  # fmt: skip
    report.update(exporter=result.exporter, opset=result.opset, export_seconds=round(result.seconds, 3))
    result.parity = report
    if report["skipped"]:
        log.warning("parity NOT checked: %s", report["skipped"])
    return report


def _check_parity(report: dict[str, Any], ppath: Path, strict: bool) -> None:
    """With `strict`, `ExportError` when the parity check failed; it says why (`failure`: the worst check, or an
    output that is one constant), and that a working graph at the output was kept, else where the report is."""
    if not strict or report["passed"] is not False:
        return
    graph = ppath.with_name(ppath.name.removesuffix(".parity.json"))
    where = (
        f"{graph} and its files were left as they were (--no-strict installs the new graph anyway, with its report)"
        if graph.exists()
        else f"report: {ppath}"
    )
    what = "parity refused" if report["constant_output"] else "ONNX Runtime differs from PyTorch"
    raise ExportError(f"{what}: {report['failure']}; {where}")


def _check_outputs(source: Any, output: str | Path | None, overwrite: bool) -> None:
    """Refuse to replace another model's weights, or an ONNX file this tool did not write (unless
    `overwrite`); never, even with `overwrite`, a folder or files of the user's that are not a model. In
    place (no `output`), the folder's `model.onnx` is checked the same way: a graph of the user's there (no
    spec beside it) is not replaced without `overwrite`."""
    if output is None and not (isinstance(source, str | Path) and Path(source).is_dir()):
        return  # a family name or an instance without -o: `_output_paths` says to give one
    onnx_path, save_model_dir = _output_paths(source, output)
    if (why := _not_an_onnx_file(onnx_path)) is not None and onnx_path.exists():
        raise OutputExistsError(f"{onnx_path} exists and is {why}; choose another -o")
    if save_model_dir is not None:
        held = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if (save_model_dir / n).exists()]
        if held and not overwrite:
            raise OutputExistsError(
                f"{save_model_dir} already holds a model ({', '.join(held)}), which exporting "
                f"{getattr(source, 'family', source)!s} there would replace: pass --overwrite, or export "
                "that folder itself (vdepth-export onnx FOLDER)"
            )
        if held and (why := not_a_model_folder(save_model_dir)) is not None:
            raise OutputExistsError(
                f"{save_model_dir} holds {', '.join(held)} but is {why}: --overwrite replaces only a model "
                "the tools wrote; move those files away or choose another -o"
            )
    _check_graph_path(source, onnx_path, overwrite)


def _check_graph_path(source: Any, onnx_path: Path, overwrite: bool) -> None:
    """The one rule of every `vdepth-export` output: what exists at an output path is replaced only with
    `overwrite` (and then only once the new output is complete). The one exception is a model folder's own
    export made again in place (`onnx FOLDER`, or `-o` naming that folder): it is made again from the weights
    that stay beside it, so nothing is lost, and the runtime's messages name that command to refresh it. An
    earlier export at another `-o` may be the only copy of what it was exported from (another model, a
    `--tiny` random one, a folder since deleted)."""
    if not (onnx_path.exists() or onnx_path.is_symlink()) or overwrite:
        return
    if not has_export_spec(onnx_path):
        raise OutputExistsError(
            f"{onnx_path} exists and was not written by vdepth-export (no {spec_path_for(onnx_path).name} of "
            "vdepth-export beside it); pass --overwrite to replace it, or -o another folder or .onnx path"
        )
    src_dir = Path(source) if isinstance(source, str | Path) and Path(source).is_dir() else None
    if src_dir is not None and onnx_path.parent.resolve() == src_dir.resolve():
        return  # in place: the folder's own export, made again from its weights
    raise OutputExistsError(
        f"{onnx_path} holds an earlier export ({spec_path_for(onnx_path).name} beside it), which may be the only "
        "copy of what it was exported from: pass --overwrite to replace it (it stays until the new one is "
        "complete), or -o another folder or .onnx path"
    )


def _not_an_onnx_file(path: Path) -> str | None:
    """What an existing graph path is instead of a file (an ONNX graph), or None: a folder is never replaced."""
    return "a folder, not an ONNX file" if path.is_dir() else None


def _weights_beside(source: Any, onnx_path: Path, staged_weights: Path | None) -> dict[str, Any]:
    """`{WEIGHTS_KEY: record}` of the weights the graph was exported from, when they lie beside it
    (exported in its model folder, or saved with it: `staged_weights`, moved in with the graph, a
    rename that keeps the file's time): the runtime then sees weights changed since the export
    (`spec.weights_changed`), and variants of other weights. Empty otherwise."""
    folder = onnx_path.parent.resolve()
    if staged_weights is not None:
        weights = staged_weights
    elif isinstance(source, str | Path) and Path(source).is_dir() and Path(source).resolve() == folder:
        weights = folder / WEIGHTS_NAME
    else:
        return {}
    return {WEIGHTS_KEY: weights_record(weights)} if weights.is_file() else {}


def _main_spec(onnx_path: Path) -> InputSpec:
    """The spec of the `model.onnx` a `--variant` export goes beside (the variant must match it)."""
    if not onnx_path.is_file():
        raise ConfigError(f"--variant exports another resolution of {onnx_path}, which does not exist: export it "
                          "first (without --variant)")  # fmt: skip
    return InputSpec.load(spec_path_for(onnx_path))


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


def window_parity(
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
    and, if the frame axis is dynamic, at a second one (`parity.parity_report`, and what was checked)."""
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
        cause = err.__cause__ or err  # ONNX Runtime's own error, under the runtime's ModelLoadError
        skipped = f"onnxruntime cannot load the graph on the CPU EP: {type(cause).__name__}: {str(cause)[:300]}"
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
    return {
        **parity_report("torch fp32, same export_signature graph", tol, checks, skipped=skipped),
        "onnx": onnx_path.name,
        "precision": spec.precision,
        "input_shape": [1, spec.frames, 3, spec.height, spec.width],
        "dynamic_axes": dynamic_axes,
        "unchecked_dynamic_axes": other_dyn,
        "inputs": sorted(set(sources)),
        "torch_version": torch.__version__,
        "onnxruntime_version": ort.__version__,
        "providers": ["CPUExecutionProvider"],
        "max_abs": max((c["max_abs"] for c in checks), default=None),
        "mean_abs": float(np.mean([c["mean_abs"] for c in checks])) if checks else None,
    }
