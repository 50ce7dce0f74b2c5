"""Export a causal model's stream step to ONNX, its cache as explicit inputs and outputs.

`vdepth-export stream MODEL` (a model folder built with `causal_context > 0`) writes

* `model.stream.onnx`: `frame (1, 3, H, W)` float32 in the model's value range, `n_past` (int64: how
  many of the cache's slots hold real frames) and `past0..` (each causal attention layer's inputs of
  the last `context - 1` frames) -> `disparity (1, 1, H, W)` and `new_past0..`
  (`models.split.StreamSignature`);
* `model.stream.onnx.json`: its `InputSpec` (windows of 2 frames with overlap 1, as the torch stream;
  `extra["stream_step"]`: the context and the state names; the weights it was exported from);
* `model.stream.onnx.parity.json`: ONNX Runtime's stream against PyTorch's over a sequence longer
  than the context (`stream_parity`).

ONNX Runtime then runs the stream as torch does, one step per new frame (`create_engine(folder,
backend="onnxruntime")`, the node's `backend: onnxruntime`; `auto` takes it too). The whole-window
`model.onnx` of a causal model holds no stream state, so it never runs it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from vdepth_export.export_onnx import _weights_beside, load_source
from vdepth_export.export_split import _export
from vdepth_export.onnx_graph import ExportError, finalize_graph
from vdepth_export.parity import TOLERANCE, compare, parity_clips, parity_report

from vdepth_ros.errors import ConfigError
from vdepth_ros.offline.atomic import AtomicOutput, check_writable
from vdepth_ros.offline.errors import OutputExistsError
from vdepth_ros.runtime import ONNX_NAME
from vdepth_ros.runtime.reuse import STREAM_STEP_KEY, stream_file_for
from vdepth_ros.runtime.shapes import spec_from_model
from vdepth_ros.runtime.spec import (
    InputSpec,
    has_export_spec,
    parity_path_for,
    spec_path_for,
    variant_mismatch,
    variant_path,
)
from vdepth_ros.runtime.trt_cache import EXTERNAL_DATA_KEY, external_data_path

log = logging.getLogger(__name__)

#: the stream graph goes into the model folder: a read-only one (a shared model cache) is copied first
UNWRITABLE_FIX = "copy the model folder to one of yours and export that (`vdepth-export stream DIR`)"


def export_stream_onnx(
    folder: str | Path,
    *,
    height: int | None = None,
    width: int | None = None,
    parity: bool = True,
    strict: bool = True,
    threads: int | None = None,
    evaldata: Path | None = None,
    overwrite: bool = False,
    variant: bool = False,
) -> dict[str, Any]:
    """Write `model.stream.onnx`, its spec and parity report into the causal model folder `folder`.

    Args:
        folder: model folder (`config.json` with `causal_context > 0`, `model.safetensors`).
        height, width: working resolution; default the folder's `model.onnx.json`'s, else the model's
            trained one, else the runtime's default (`spec_from_model`).
        parity: check ONNX Runtime's stream against PyTorch's and write the report.
        strict: raise `ExportError` when parity fails (the graph is then not installed).
        threads: threads for the parity run.
        evaldata: folder of real frames for the parity clips (None: synthetic).
        overwrite: replace a stream graph vdepth-export wrote before (never another tool's file).
        variant: write `model.stream.<H>x<W>.onnx` beside `model.stream.onnx` (which must exist: the variant is
            it at another resolution): the runtime runs, for each camera, the stream graph closest to its aspect
            (`OnnxRuntimeEngine.at_resolution`), as it does the window graph's `--variant`s.

    Returns:
        A summary: the graph, its shape, context and state count, the parity report.

    Raises:
        ConfigError: the model is not causal (nothing to stream); a `variant` without its height and width, or
            without `model.stream.onnx`.
        OutputExistsError: a stream graph exists and `overwrite` is false, or it is not vdepth-export's.
    """
    folder = Path(folder)
    main_path = stream_file_for(folder / ONNX_NAME)
    main = _main_stream_spec(main_path, height, width) if variant else None
    onnx_path = variant_path(main_path, height, width) if main is not None else main_path
    _check_output(onnx_path, overwrite)
    check_writable(onnx_path, UNWRITABLE_FIX)
    model = load_source(folder)
    if not getattr(model, "streamable", False):
        raise ConfigError(
            f"{folder} is not a causal model (causal_context 0): it runs windows, exported with "
            f"`vdepth-export onnx {folder}`; a stream step needs a model built with causal_context > 0"
        )
    window = InputSpec.load(spec_path_for(folder / ONNX_NAME)) if has_export_spec(folder / ONNX_NAME) else None
    if window is not None and height is None and width is None:
        height, width = window.height, window.width
    spec = spec_from_model(model, 2, height, width)
    sig = model.stream_signature(spec.height, spec.width)
    names = sig.state_names
    spec = InputSpec.from_dict({
        **spec.to_dict(),
        "input_name": "frame",
        "extra": {
            **spec.extra,
            STREAM_STEP_KEY: {"context": sig.context, "states": list(names)},
            "exporter": "legacy",
            "opset": 17,
            "torch": torch.__version__,
            **_weights_beside(folder, onnx_path, None),
        },
    })  # fmt: skip
    if main is not None and (diff := variant_mismatch(main, spec)):
        raise ConfigError(
            f"--variant exports {main_path.name} at another resolution, but it differs from {main_path.name} in "
            f"{', '.join(diff)}: export {main_path.name} again first (`vdepth-export stream {folder} --overwrite`)"
        )
    lo, hi = spec.value_range
    frame = torch.rand(1, 3, spec.height, spec.width, generator=torch.Generator().manual_seed(0)) * (hi - lo) + lo
    example = (frame, torch.tensor(1, dtype=torch.int64), *(torch.rand(s) for s in sig.state_shapes))
    report: dict[str, Any] | None = None
    companions = [p.name for p in (external_data_path(onnx_path), spec_path_for(onnx_path), parity_path_for(onnx_path))]
    with AtomicOutput(onnx_path, overwrite=True, companions=companions, fix=UNWRITABLE_FIX) as staged:
        raw = staged.with_name(".exporter-raw.onnx")  # the exporter's own file(s), left in the staging folder
        io_names = (["frame", "n_past", *names], ["disparity", *(f"new_{n}" for n in names)])
        _export(sig.module, example, raw, io_names, None, fuse_bn=True)
        data_file = finalize_graph(raw, staged, 2 * 1024**3)
        spec = InputSpec.from_dict({**spec.to_dict(), "extra": {**spec.extra, EXTERNAL_DATA_KEY: data_file}})
        spec.save(spec_path_for(staged))
        if parity:
            report = stream_parity(model, staged, spec, threads=threads, evaldata=evaldata)
            parity_path_for(staged).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
            if strict and not report["passed"]:
                raise ExportError(
                    f"the stream-step graph failed parity against PyTorch's stream: {report['failure']}; "
                    "nothing was installed"
                )
    log.info("stream-step graph %s written (context %d, %d state tensors)", onnx_path, sig.context, len(names))
    return {
        "onnx": str(onnx_path),
        "shape": [1, 3, spec.height, spec.width],
        "context": sig.context,
        "states": len(names),
        "parity": None if report is None else {k: report[k] for k in ("passed", "max_abs_rel", "tolerance_rel")},
    }


def _main_stream_spec(main_path: Path, height: int | None, width: int | None) -> InputSpec:
    """The spec of the `model.stream.onnx` a `--variant` goes beside, or `ConfigError` saying what is missing."""
    if height is None or width is None:
        raise ConfigError("--variant exports the stream graph at another resolution: give --height and --width")
    if not has_export_spec(main_path):
        raise ConfigError(
            f"--variant exports another resolution of {main_path}, which does not exist: export it first "
            f"(`vdepth-export stream {main_path.parent}`, without --variant)"
        )
    return InputSpec.load(spec_path_for(main_path))


def _check_output(onnx_path: Path, overwrite: bool) -> None:
    """Refuse to replace a stream graph unless `overwrite`, and never a file vdepth-export did not write."""
    if not (onnx_path.exists() or onnx_path.is_symlink()):
        return
    if not has_export_spec(onnx_path):
        raise OutputExistsError(f"{onnx_path} exists but was not written by `vdepth-export stream`: move it away")
    if not overwrite:
        raise OutputExistsError(f"{onnx_path} exists: pass --overwrite to replace it")


def stream_parity(
    model: Any, onnx_path: Path, spec: InputSpec, *, threads: int | None, evaldata: Path | None
) -> dict[str, Any]:
    """ONNX Runtime's stream against PyTorch's, frame by frame over clips longer than the context
    (so the cache fills, then slides), each window a new frame as the pipeline sends it."""
    from vdepth_ros.runtime.onnx_backend import OnnxRuntimeEngine
    from vdepth_ros.runtime.torch_backend import TorchEngine

    tol = TOLERANCE[spec.precision]
    context = int(spec.extra[STREAM_STEP_KEY]["context"])
    length = context + 3
    checks = []
    ref_spec = InputSpec.from_dict({**spec.to_dict(), "input_name": "frames", "extra": {}})
    with (
        OnnxRuntimeEngine(onnx_path, spec, providers=["cpu"], threads=threads) as ort_engine,
        TorchEngine(model, ref_spec, threads=threads) as torch_engine,
    ):
        for name, clip in parity_clips(length, spec.height, spec.width, evaldata, 2):
            outs = []
            for engine in (torch_engine, ort_engine):
                engine.reset_stream()
                windows = [[max(0, t - 1), t] for t in range(length)]
                outs.append(np.stack([engine.infer(clip[ids], frame_ids=ids)[-1] for ids in windows]))
            checks.append(compare(f"{name}/stream{length}", outs[0], outs[1], tol).to_dict())
    return parity_report("torch fp32 stream (TemporalCache)", tol, checks)


__all__ = ["export_stream_onnx", "stream_parity"]
