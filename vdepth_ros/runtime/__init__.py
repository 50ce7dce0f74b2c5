"""Runtime: one `DepthEngine` interface over torch, ONNX Runtime and TensorRT.

`create_engine(model, backend="auto", precision="fp32", **opts)` accepts

* a model folder: `config.json` + `model.safetensors` (torch), optionally `model.onnx` +
  `model.onnx.json` (ONNX Runtime) and `model.engine` + `model.engine.json` +
  `model.engine.key.json` (TensorRT);
* an `.onnx` file or an `.engine`/`.plan` file (with its `.json` spec next to it);
* a `VideoDepthModel` instance (torch backend).

`backend="auto"` picks TensorRT if tensorrt and a GPU are present and a valid engine exists,
else ONNX Runtime if an `.onnx` exists and onnxruntime imports, else torch, and logs the choice.
Backend libraries are imported lazily; a missing one raises `BackendUnavailableError`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from vdepth_ros.errors import BackendUnavailableError, ConfigError, ModelLoadError, extra_hint
from vdepth_ros.runtime.engine import DepthEngine
from vdepth_ros.runtime.shapes import check_precision, spec_from_model
from vdepth_ros.runtime.spec import InputSpec, spec_path_for

log = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("auto", "torch", "onnxruntime", "tensorrt")
ONNX_NAME = "model.onnx"
ENGINE_NAME = "model.engine"
ENGINE_SUFFIXES = (".engine", ".plan")
_BACKEND_ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "trt": "tensorrt", "pytorch": "torch"}
# create_engine options each backend understands (others are rejected, not silently dropped).
_TORCH_OPTS = {"frames", "height", "width", "threads", "device", "reuse"}
_ORT_OPTS = {"threads", "providers", "cache_dir", "device_id", "spinning", "reuse"}
_TRT_OPTS = {"device_id", "onnx_path", "reuse"}


def _import_ok(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def available_backends() -> dict[str, str | None]:
    """backend -> None if usable here, else the reason it is not."""
    from vdepth_ros.runtime.tensorrt_backend import tensorrt_status

    trt_ok, trt_why = tensorrt_status()
    return {
        "torch": None if _import_ok("torch") else f"torch not installed: {extra_hint('ml')}",
        "onnxruntime": None if _import_ok("onnxruntime") else f"onnxruntime not installed: {extra_hint('onnx')}",
        "tensorrt": None if trt_ok else trt_why,
    }


def _check_opts(backend: str, opts: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise ConfigError(f"options {unknown} do not apply to the {backend} backend (accepted: {sorted(allowed)})")


def _torch_engine(model: Any, opts: dict[str, Any], precision: str) -> DepthEngine:
    from vdepth_ros.runtime.torch_backend import TorchEngine

    _check_opts("torch", opts, _TORCH_OPTS)
    spec = spec_from_model(model, opts.get("frames"), opts.get("height"), opts.get("width"), precision=precision)
    return TorchEngine(
        model, spec, device=opts.get("device", "cpu"), threads=opts.get("threads"), reuse=bool(opts.get("reuse", True))
    )


def _ort_engine(path: Path, precision: str, opts: dict[str, Any]) -> DepthEngine:
    from vdepth_ros.runtime.onnx_backend import OnnxRuntimeEngine

    _check_opts("onnxruntime", opts, _ORT_OPTS)
    return OnnxRuntimeEngine(
        path,
        threads=opts.get("threads"),
        providers=opts.get("providers"),
        precision=precision,
        cache_dir=opts.get("cache_dir"),
        device_id=int(opts.get("device_id", 0)),
        spinning=bool(opts.get("spinning", False)),
        reuse=bool(opts.get("reuse", True)),
    )


def _trt_engine(path: Path, precision: str | None, opts: dict[str, Any]) -> DepthEngine:
    from vdepth_ros.runtime.tensorrt_backend import TensorRTEngine

    _check_opts("tensorrt", opts, _TRT_OPTS)
    return TensorRTEngine(
        path,
        device=int(opts.get("device_id", 0)),
        precision=precision,
        onnx_path=opts.get("onnx_path"),
        reuse=bool(opts.get("reuse", True)),
    )


def _load_torch_model(folder: Path, opts: dict[str, Any], graph: Path | None = None) -> tuple[Any, dict[str, Any]]:
    """The folder's model, and `opts` with the working shape defaulted to the exported graph's
    (`graph`'s spec, default `model.onnx.json`) so torch and the exported backends run the same window and
    resolution. Without torch (an ONNX-only install): `BackendUnavailableError` naming what to install."""
    from vdepth_ros.runtime.torch_backend import import_torch

    import_torch()  # before the model code, which imports torch at its top
    from vdepth_ros.models import load_model

    exported = spec_path_for(graph if graph is not None else folder / ONNX_NAME)
    if exported.is_file() and not {"frames", "height", "width"} & set(opts):
        spec = InputSpec.load(exported)
        opts = {**opts, "frames": spec.frames, "height": spec.height, "width": spec.width}
        log.info("torch engine uses the exported shape T=%d %dx%d from %s", spec.frames, spec.height, spec.width,
                 exported.name)  # fmt: skip
    return load_model(folder), opts


def _split_opts(opts: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    return {k: v for k, v in opts.items() if k in allowed}


def create_engine(
    model: Any,
    backend: str = "auto",
    precision: str = "fp32",
    **opts: Any,
) -> DepthEngine:
    """Build a `DepthEngine` for `model` (folder, `.onnx`/`.engine` file or `VideoDepthModel`).

    Args:
        model: model folder, exported file, or `VideoDepthModel` instance.
        backend: "auto" | "torch" | "onnxruntime" | "tensorrt" (aliases "ort", "trt").
        precision: "fp32" | "fp16" | "bf16": torch compute dtype; TensorRT EP flag for ONNX
            Runtime; for a native engine the precision it must have been built with.
        **opts: torch: `frames`, `height`, `width` (working window/resolution, default from the
            exported graph's spec in a folder, else the model's constraints), `threads`, `device`.
            onnxruntime: `threads`, `providers`, `cache_dir` (TensorRT EP caches), `device_id`,
            `spinning` (busy-wait threads, default off). tensorrt: `device_id`, `onnx_path`
            (engine must be built from this file). Every backend: `reuse` (default True): with
            split graphs, `infer(frame_ids=...)` encodes only frames the previous window did not
            have (`runtime/reuse.py`). In "auto" mode each backend takes its own.

    Raises:
        BackendUnavailableError: the requested backend's library (or GPU) is missing.
        ModelLoadError: files are missing or do not match.
        ConfigError: unknown backend/option or invalid shape.
    """
    backend = _BACKEND_ALIASES.get(backend.lower(), backend.lower())
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    check_precision(precision)

    if hasattr(model, "export_signature") and hasattr(model, "input_constraints"):  # VideoDepthModel
        if backend not in ("auto", "torch"):
            raise ConfigError(
                f"a VideoDepthModel instance runs on torch; export it first for {backend} (`vdepth-export onnx`)"
            )
        if backend == "auto":
            log.info("auto backend: torch (a model instance was given)")
        return _torch_engine(model, opts if backend == "torch" else _split_opts(opts, _TORCH_OPTS), precision)

    path = Path(model)
    if not path.exists():
        raise ModelLoadError(f"{path} does not exist (expected a model folder, .onnx or .engine file)")

    if path.is_file():
        if path.suffix == ".onnx":
            if backend not in ("auto", "onnxruntime"):
                raise ConfigError(f"{path.name} is an ONNX file; use backend 'onnxruntime' (or build an engine)")
            return _ort_engine(path, precision, opts if backend != "auto" else _split_opts(opts, _ORT_OPTS))
        if path.suffix in ENGINE_SUFFIXES:
            if backend not in ("auto", "tensorrt"):
                raise ConfigError(f"{path.name} is a TensorRT engine; use backend 'tensorrt'")
            return _trt_engine(path, precision, opts if backend != "auto" else _split_opts(opts, _TRT_OPTS))
        from vdepth_ros.paths import released_checkpoint_problem

        why = released_checkpoint_problem(path)
        raise ModelLoadError(why or f"{path}: unknown model file type (expected .onnx, .engine or a model folder)")

    return _folder_engine(path, backend, precision, opts)


def _folder_engine(path: Path, backend: str, precision: str, opts: dict[str, Any]) -> DepthEngine:
    """The engine of a model folder for `backend` (a causal model: `_stream_engine`)."""
    onnx_file = path / ONNX_NAME
    if causal_folder(path):
        return _stream_engine(path, backend, precision, opts)
    if backend == "torch":
        return _torch_engine(*_load_torch_model(path, opts), precision)
    if backend == "onnxruntime":
        if not onnx_file.is_file():
            raise ModelLoadError(f"{path} has no {ONNX_NAME}; export one with `vdepth-export onnx {path}`")
        if stale := _stale_export(path, onnx_file):
            raise ModelLoadError(stale)
        return _ort_engine(onnx_file, precision, opts)
    if backend == "tensorrt":
        engine_file = _folder_engine_file(path, opts)
        if not engine_file.is_file():
            raise ModelLoadError(f"{path} has no {ENGINE_NAME}; build one with `vdepth-export engine {onnx_file}`")
        if stale := _stale_export(path, engine_file):
            raise ModelLoadError(stale)
        return _trt_engine(engine_file, precision, _with_folder_onnx(path, opts))
    return _auto_folder(path, precision, opts)


def _stream_engine(path: Path, backend: str, precision: str, opts: dict[str, Any]) -> DepthEngine:
    """A causal model folder's engine: its stream-step engine (`model.stream.engine`, `vdepth-export engine`) on
    TensorRT, its stream-step graph (`model.stream.onnx`, `vdepth-export stream`) on ONNX Runtime, else torch
    (`auto` takes the first that is there and up to date). Its whole-window graphs (`model.onnx`, `model.engine`)
    hold no stream state, so they never run it."""
    from vdepth_ros.runtime.reuse import stream_file_for

    stream_file = stream_file_for(path / ONNX_NAME)
    stream_engine = _folder_engine_file(path, opts, stream_file.with_suffix(".engine").name)
    export = f"`vdepth-export stream {path}`"
    build = f"{export}, then `vdepth-export engine {path}`"
    trt_opts = opts if "onnx_path" in opts or not stream_file.is_file() else {**opts, "onnx_path": stream_file}
    if backend == "tensorrt":
        if not stream_engine.is_file():
            raise ModelLoadError(
                f"{path} holds a causal (streaming) model and no TensorRT stream-step engine {stream_engine.name}: "
                f"build one with {build}, or use backend 'onnxruntime' or 'torch'"
            )
        if stale := _stale_export(path, stream_engine, build):
            raise ModelLoadError(stale)
        return _trt_engine(stream_engine, precision, trt_opts)
    if backend == "onnxruntime":
        if not stream_file.is_file():
            raise ModelLoadError(
                f"{path} holds a causal (streaming) model and no stream-step graph {stream_file.name} for ONNX "
                f"Runtime: export one with {export}, or use backend 'torch'"
            )
        if stale := _stale_export(path, stream_file, export):
            raise ModelLoadError(stale)
        return _ort_engine(stream_file, precision, opts)
    why = "a causal model"
    if backend == "auto" and (engine := _auto_stream_engine(path, stream_engine, build, precision, trt_opts)):
        return engine
    if backend == "auto":
        if not stream_file.is_file():
            why = f"a causal model without {stream_file.name}"
        elif stale := _stale_export(path, stream_file, export):
            log.warning("auto backend: not using %s: %s", stream_file.name, stale)
            why = f"{stream_file.name} is older than the weights"
        elif not _import_ok("onnxruntime"):
            why = "onnxruntime not installed"
        else:
            engine = _ort_engine(stream_file, precision, _split_opts(opts, _ORT_OPTS))
            log.info("auto backend: onnxruntime %s (the stream-step graph %s)", engine.describe()["providers"],
                     stream_file.name)  # fmt: skip
            return engine
        log.info("auto backend: torch (%s)", why)
        opts = _split_opts(opts, _TORCH_OPTS)
    # the stream graph's shape, so that torch and ONNX Runtime run the stream alike
    graph = stream_file if stream_file.is_file() else None
    return _torch_engine(*_load_torch_model(path, opts, graph), precision)


def _auto_stream_engine(
    path: Path, stream_engine: Path, build: str, precision: str, opts: dict[str, Any]
) -> DepthEngine | None:
    """`auto` for a causal folder: its stream-step engine on TensorRT when it is there, up to date and runs here,
    else None (ONNX Runtime's stream graph or torch then), the reason logged."""
    from vdepth_ros.runtime.tensorrt_backend import tensorrt_status
    from vdepth_ros.runtime.trt_cache import EngineMismatchError

    if not stream_engine.is_file():
        return None
    if stale := _stale_export(path, stream_engine, build):
        log.warning("auto backend: not using %s: %s", stream_engine.name, stale)
        return None
    ok, why = tensorrt_status(int(opts.get("device_id", 0)))
    if not ok:
        log.info("auto backend: not using %s: tensorrt unavailable: %s", stream_engine.name, why)
        return None
    try:
        engine = _trt_engine(stream_engine, precision, _split_opts(opts, _TRT_OPTS))
    except EngineMismatchError as err:
        log.warning("auto backend: not using %s: %s", stream_engine, err)
        return None
    log.info("auto backend: tensorrt (the stream-step engine %s; %s)", stream_engine.name, why)
    return engine


def _folder_engine_file(folder: Path, opts: dict[str, Any], name: str = ENGINE_NAME) -> Path:
    """The folder's TensorRT engine `name` for this machine: `model.engine` (a causal model's
    `model.stream.engine`), or this machine's beside another machine's (`tensorrt_backend.this_machines_engine`)."""
    from vdepth_ros.runtime.tensorrt_backend import this_machines_engine

    return this_machines_engine(folder / name, int(opts.get("device_id", 0)))


def _with_folder_onnx(folder: Path, opts: dict[str, Any]) -> dict[str, Any]:
    """`opts` with the folder's model.onnx as the graph its engine must have been built from (checked by the
    ONNX sha256 of the engine's cache key): a graph exported again without rebuilding the engine, at another
    size, say, makes the engine stale, never silently run."""
    onnx_file = folder / ONNX_NAME
    return opts if "onnx_path" in opts or not onnx_file.is_file() else {**opts, "onnx_path": onnx_file}


def _stale_export(folder: Path, graph: Path, again: str | None = None) -> str | None:
    """Why `graph` (the folder's model.onnx or model.engine) must not run: it was exported from other
    weights than the folder's `model.safetensors` now holds (retrained or replaced since), so it would
    run the old ones. None when its spec records no weights (older exports) or they are the same.
    `again`: the command that exports it again (default: `vdepth-export onnx` with its shape)."""
    from vdepth_ros.paths import WEIGHTS_NAME
    from vdepth_ros.runtime.spec import weights_changed

    spec_file = spec_path_for(graph)
    try:
        spec = InputSpec.load(spec_file) if spec_file.is_file() else None
    except ConfigError:  # a damaged spec: loading the graph reports it
        return None
    if spec is None or not weights_changed(spec, folder / WEIGHTS_NAME):
        return None
    again = again if again is not None else _export_again(folder, graph, spec)
    return (
        f"{graph} was exported from other weights than {folder / WEIGHTS_NAME} holds now (changed since the "
        f"export), so it would run the old ones: export it again ({again}), or use backend 'torch'"
    )


def _export_again(folder: Path, graph: Path, spec: InputSpec) -> str:
    """The `vdepth-export` command(s) that write `graph` again with `spec`'s shape and precision."""
    shape = f"--frames {spec.frames} --height {spec.height} --width {spec.width}"
    extra = (" --dynamic-frames" if spec.dynamic_frames else "") + (
        f" --precision {spec.extra.get('onnx_precision', spec.precision)}"
        if spec.extra.get("onnx_precision", spec.precision) != "fp32" else ""
    )  # fmt: skip
    return f"`vdepth-export onnx {folder} {shape}{extra}`" + (
        f", then `vdepth-export engine {folder} --precision {spec.precision}`"
        if graph.suffix in ENGINE_SUFFIXES
        else ""
    )


def causal_folder(folder: Path) -> bool:
    """True when the folder's model is causal (`causal_context` > 0 in its config.json)."""
    config = folder / "config.json"
    if not config.is_file():
        return False
    try:
        return int(json.loads(config.read_text()).get("causal_context") or 0) > 0
    except (ValueError, TypeError, AttributeError):
        return False


def _auto_exported(path: Path, precision: str, opts: dict[str, Any], reasons: list[str]) -> DepthEngine | None:
    """The folder's TensorRT engine, else its ONNX graph on ONNX Runtime, or None (why: in `reasons`)."""
    from vdepth_ros.runtime.tensorrt_backend import tensorrt_status
    from vdepth_ros.runtime.trt_cache import EngineMismatchError

    onnx_file, engine_file = path / ONNX_NAME, _folder_engine_file(path, opts)
    if engine_file.is_file():
        ok, why = tensorrt_status(int(opts.get("device_id", 0)))
        if ok:
            try:
                engine = _trt_engine(engine_file, precision, _with_folder_onnx(path, _split_opts(opts, _TRT_OPTS)))
            except EngineMismatchError as err:
                reasons.append(f"tensorrt skipped: {err}")
                log.warning("auto backend: not using %s: %s", engine_file, err)
            else:
                log.info("auto backend: tensorrt (%s; %s)", engine_file, why)
                return engine
        else:
            reasons.append(f"tensorrt unavailable: {why}")
    else:
        reasons.append(f"no {ENGINE_NAME}")
    if onnx_file.is_file():
        if _import_ok("onnxruntime"):
            engine = _ort_engine(onnx_file, precision, _split_opts(opts, _ORT_OPTS))
            log.info("auto backend: onnxruntime %s (%s)", engine.describe()["providers"], "; ".join(reasons))
            return engine
        reasons.append("onnxruntime not installed")
    else:
        reasons.append(f"no {ONNX_NAME}")
    return None


def _auto_folder(path: Path, precision: str, opts: dict[str, Any]) -> DepthEngine:
    reasons: list[str] = []
    stale = _stale_export(path, path / ONNX_NAME) or _stale_export(path, _folder_engine_file(path, opts))
    if stale is not None:  # the exports would run the old weights: the folder's own weights run on torch
        log.warning("auto backend: not using the exported graphs: %s", stale)
        reasons.append("the exported graphs are older than the weights")
    elif (engine := _auto_exported(path, precision, opts, reasons)) is not None:
        return engine
    if not (path / "config.json").is_file():
        from vdepth_ros.paths import released_checkpoint_problem

        why = released_checkpoint_problem(path)
        raise ModelLoadError(why or f"{path} holds no usable model ({'; '.join(reasons)}; no config.json for torch)")
    try:
        engine = _torch_engine(*_load_torch_model(path, _split_opts(opts, _TORCH_OPTS)), precision)
    except BackendUnavailableError as err:
        raise BackendUnavailableError(f"no backend can run {path}: {'; '.join(reasons)}; {err}") from err
    log.info("auto backend: torch (%s)", "; ".join(reasons))
    return engine


__all__ = [
    "BACKENDS",
    "ENGINE_NAME",
    "ONNX_NAME",
    "DepthEngine",
    "InputSpec",
    "available_backends",
    "causal_folder",
    "create_engine",
    "spec_from_model",
    "spec_path_for",
]
