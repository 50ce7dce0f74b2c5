"""ONNX -> serialized TensorRT engine with the TensorRT (>= 10) Python API, cached by key.

An engine is valid only for the ONNX file, TensorRT version, GPU (name + compute capability)
and precision it was built with. That key is written to `<engine>.key.json`; an existing engine
is reused only when its stored key equals the current one (`force_engine_update` rebuilds
anyway). The runtime (`vdepth_ros.runtime.tensorrt_backend`) verifies the same key before it
deserializes, so a mismatched engine is never loaded silently.

Not executed on this project's machines (no GPU, TensorRT not installable); the build logic is
tested against a fake `tensorrt` module that records the API calls.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdepth_ros.errors import ConfigError, ModelLoadError, VdepthError
from vdepth_ros.offline.atomic import AtomicOutput, check_writable
from vdepth_ros.offline.errors import OfflineError, OutputExistsError
from vdepth_ros.runtime import ENGINE_NAME, ONNX_NAME
from vdepth_ros.runtime.shapes import check_precision
from vdepth_ros.runtime.spec import InputSpec, has_export_spec, spec_path_for
from vdepth_ros.runtime.tensorrt_backend import cuda_identity, import_tensorrt
from vdepth_ros.runtime.trt_cache import (
    PLATFORM_FIELDS,
    EngineCacheKey,
    EngineMismatchError,
    engine_beside,
    key_path_for,
    machine_engine,
    onnx_sha256,
    platform_name,
    read_key,
    rebuild_reason,
    write_key,
)

log = logging.getLogger(__name__)

MIN_CC = {"fp32": (0, 0), "fp16": (5, 3), "bf16": (8, 0)}  # compute capability a precision needs


class EngineBuildError(VdepthError):
    """TensorRT could not parse or build the network."""


@dataclass(frozen=True)
class EngineBuildResult:
    """Outcome of `build_engine`."""

    engine_path: Path
    key: EngineCacheKey
    rebuilt: bool
    reason: str  # why it was (re)built, or why the cached one was reused
    seconds: float = 0.0
    timing_cache: Path | None = None


def default_engine_path(onnx_path: Path) -> Path:
    """`model.onnx` -> `model.engine` next to it (what `create_engine(folder)` looks for)."""
    return onnx_path.with_name(ENGINE_NAME) if onnx_path.name == ONNX_NAME else onnx_path.with_suffix(".engine")


def own_engine_paths(onnx_path: Path, key: EngineCacheKey) -> tuple[Path, Path]:
    """The engines a graph has in its folder: `model.engine` and, for this machine (`key`) beside another
    machine's, `model.<platform>.engine` (`trt_cache.engine_beside`). Both are rebuilt as their key says (the
    graph exported again) and have the split engines beside them; an engine at another path is the user's."""
    default = default_engine_path(onnx_path)
    return default, engine_beside(default, key)


def _not_an_engine(path: Path) -> str | None:
    """What an existing engine path is instead of an engine `build_engine` wrote (its spec or cache key
    beside it), or None: a rebuild never replaces a folder or a file of the user's."""
    if path.is_file():  # by what its sidecars hold, not their names: another tool may write `X.engine.json`
        try:
            if read_key(path) is not None:
                return None
        except EngineMismatchError:  # no key of ours: its spec may still be
            pass
        if has_export_spec(path):
            return None
    what = "a folder" if path.is_dir() else "a file"
    return (
        f"{what}, not an engine vdepth-export built (no {key_path_for(path).name} or {spec_path_for(path).name} "
        "of vdepth-export beside it)"
    )


#: the build options of engines built before they were recorded in the engine's spec (`extra["build"]`)
_DEFAULT_OPTIONS = {"tf32": False, "workspace_gib": 4.0}


def _options_changed(engine_path: Path, options: dict[str, Any]) -> str | None:
    """Why an engine whose cache key matches must still be rebuilt: it was built with other options
    (`--tf32`, `--workspace-gib`), which the key leaves out (the runtime need not match them) but the
    user asked for; None when they are the same. An engine from before they were recorded counts as
    built with the defaults."""
    try:
        built = InputSpec.load(spec_path_for(engine_path)).extra.get("build") or _DEFAULT_OPTIONS
    except ConfigError:
        return None  # a damaged spec: the runtime says so
    diff = [f"{k} {built.get(k)!r} -> {v!r}" for k, v in options.items() if built.get(k) != v]
    return "build options differ: " + ", ".join(diff) if diff else None


def default_timing_cache(engine_path: Path, key: EngineCacheKey) -> Path:
    """Timing caches are per TensorRT version and GPU: name them so."""
    return engine_path.parent / f"timing-{platform_name(key)}.cache"


def _another_machines_engine(engine_path: Path, onnx_path: Path, key: EngineCacheKey) -> str | None:
    """Why the engine at `engine_path` must not be rebuilt in place without `--overwrite`: it was built from
    this same graph for another TensorRT version or GPU, so another machine may run it (a model folder shared
    over NFS, or synced, between a workstation and a Jetson). Rebuilding it here replaced that machine's
    engine without a word, and that machine's next `vdepth-export engine FOLDER` replaced this one's: each
    rebuilt the other's engine, minutes each time, for good. None when it may be rebuilt (no engine there,
    no readable key, the same platform, or another graph: then it is stale on every machine)."""
    try:
        stored = read_key(engine_path) if engine_path.is_file() else None
    except EngineMismatchError:
        return None
    if (
        stored is None
        or stored.onnx_sha256 != key.onnx_sha256
        or not stored.differences(key).keys() & set(PLATFORM_FIELDS)
    ):
        return None
    beside = engine_beside(engine_path, key)
    precision = f" --precision {key.precision}" if key.precision != "fp32" else ""
    # a model folder's engine: the folder then runs this machine's (`machine_engine`), split engines with it
    run = f"`model: {onnx_path.parent}` then runs it" if onnx_path.name == ONNX_NAME else f"run `model: {beside}`"
    theirs, ours = (", ".join(f"{f} {getattr(k, f)!r}" for f in PLATFORM_FIELDS) for k in (stored, key))
    return (
        f"{engine_path} was built from this graph for another machine ({theirs}; this one: {ours}), which may "
        "still run it; rebuilding it here "
        "would replace that machine's engine (and its next rebuild this one's). Build this machine's beside it: "
        f"`vdepth-export engine {onnx_path}{precision} -o {beside}`, and {run}; or, when that "
        "engine is no longer used (TensorRT or the GPU upgraded here), pass --overwrite to replace it"
    )


def profile_shapes(network: Any, spec: InputSpec) -> dict[str, tuple[int, ...]]:
    """Fixed shape for each network input with dynamic (-1) dims, filled from the spec."""
    want = (1, spec.frames, 3, spec.height, spec.width)
    out: dict[str, tuple[int, ...]] = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = tuple(int(d) for d in tensor.shape)
        if -1 not in dims:
            continue
        if len(dims) != len(want):
            raise EngineBuildError(f"input {tensor.name!r} has rank {len(dims)}; expected (1, T, 3, H, W)")
        bad = [(a, b) for a, b in zip(dims, want, strict=True) if a not in (-1, b)]
        if bad:
            raise EngineBuildError(f"input {tensor.name!r} has shape {dims}, the spec says {want}")
        out[tensor.name] = want
    return out


def _serialize_network(
    trt: Any,
    onnx_path: Path,
    spec: InputSpec,
    precision: str,
    workspace_bytes: int,
    timing_cache: Path,
    tf32: bool,
    profiles: dict[str, tuple[tuple[int, ...], ...]] | None = None,
    own_timing_cache: bool = True,
) -> bytes:
    """The serialized engine; `timing_cache` is read, and written with the build's timings unless it holds
    another TensorRT version's or GPU's (or is no timing cache) and is not `own_timing_cache` (the default
    file named for this version and GPU, which is the tool's to replace)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # ONNX exported in reduced precision carries its own types: build it strongly typed.
    strongly_typed = spec.precision != "fp32"
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # resolves external data next to the file
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT cannot parse {onnx_path.name}: " + " | ".join(errors))

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if not strongly_typed:
        if precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif precision == "bf16":
            config.set_flag(trt.BuilderFlag.BF16)
        if not tf32:  # keep fp32 layers true fp32, as the parity report measured
            config.clear_flag(trt.BuilderFlag.TF32)
    # min = opt = max: the fixed window, unless the caller gives (min, opt, max) per input
    ranges = profiles if profiles is not None else {n: (s, s, s) for n, s in profile_shapes(network, spec).items()}
    if ranges:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in ranges.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)

    cache_blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_blob)
    save = True
    if not config.set_timing_cache(cache, False):  # ignore_mismatch=False: never reuse another GPU's timings
        # a file the user named is theirs (another machine's cache, or no cache at all): never written over
        save = own_timing_cache
        fix = "" if save else f"; {timing_cache} is kept and not updated (give another --timing-cache to save them)"
        log.warning("timing cache %s does not match this TensorRT/GPU; starting a new one%s", timing_cache, fix)
        config.set_timing_cache(config.create_timing_cache(b""), False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build {onnx_path.name} (see the TensorRT log above)")
    # shared by builds: never half-written; a folder given as --timing-cache is never replaced
    not_a_file = lambda p: "a folder, not a timing cache" if p.is_dir() else None  # noqa: E731
    if save:
        try:
            with AtomicOutput(timing_cache, overwrite=True, replaceable=not_a_file) as staged:
                staged.write_bytes(bytes(config.get_timing_cache().serialize()))
        except OfflineError as err:  # a cache shared read-only, a full disk: the built engine is not lost for it
            log.warning("timing cache not updated (%s); the engine is built and saved", err)
    return bytes(serialized)


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path | None = None,
    *,
    precision: str | None = None,
    workspace_gib: float = 4.0,
    timing_cache: str | Path | None = None,
    force_engine_update: bool = False,
    overwrite: bool = False,
    device: int = 0,
    tf32: bool = False,
    trt: Any = None,
    gpu: tuple[str, str] | None = None,
    profiles: dict[str, tuple[tuple[int, ...], ...]] | None = None,
) -> EngineBuildResult:
    """Build (or reuse) the TensorRT engine of an exported ONNX graph.

    Args:
        onnx_path: graph from `export_onnx`; its `InputSpec` (`<onnx>.json`) gives the shapes.
        engine_path: output; default `model.engine` next to `model.onnx`, or this machine's engine beside it
            where it built one beside another machine's (`trt_cache.machine_engine`).
        precision: "fp32" | "fp16" | "bf16" builder precision (fp16 needs sm >= 5.3, bf16 sm >= 8.0); default
            the graph's: fp32, or the one a reduced-precision graph was exported in (it builds at no other).
        workspace_gib: builder workspace memory pool limit.
        timing_cache: timing cache file (read if present, updated after the build); default
            `timing-trt<version>-<gpu>-sm<cc>.cache` next to the engine.
        force_engine_update: rebuild even if a matching engine exists.
        overwrite: replace an engine at an `engine_path` other than the default (`-o`) that must be built again
            (another key, or `force_engine_update`): it may be the one built on another GPU or TensorRT version,
            used there. The graph's own engines (`own_engine_paths`: the default, and this machine's beside
            another's) are rebuilt as the key says, except one built from the same graph for another GPU or
            TensorRT version (`_another_machines_engine`).
        device: CUDA device index whose name/compute capability enter the key.
        tf32: allow TF32 in fp32 layers (off by default to stay close to the parity report).
        trt, gpu: injected `tensorrt` module and (name, "major.minor") for tests.
        profiles: (min, opt, max) shape per dynamic input (the split graphs' frame batch); default
            the spec's fixed window.

    Returns:
        `EngineBuildResult`; `rebuilt` is False when a cached engine with the same key was reused.
    """
    if precision is not None:
        check_precision(precision)
    if workspace_gib <= 0:
        raise ConfigError(f"workspace_gib must be > 0, got {workspace_gib}")
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        folder = onnx_path.parent if onnx_path.name == ONNX_NAME else "MODEL_FOLDER"
        raise ModelLoadError(f"ONNX model {onnx_path} not found; export it with `vdepth-export onnx {folder}`")
    spec = InputSpec.load(spec_path_for(onnx_path))
    precision = precision if precision is not None else spec.precision
    # before TensorRT and minutes of building: an engine replaces only an engine this tool built
    early_path = Path(engine_path) if engine_path is not None else default_engine_path(onnx_path)
    if (early_path.exists() or early_path.is_symlink()) and (why := _not_an_engine(early_path)) is not None:
        raise OutputExistsError(f"{early_path} exists and is {why}; move it away or choose another -o")
    # a read-only model folder (a shared model cache) would fail only after the build
    unwritable_fix = (
        "build it into a file of yours with `-o FILE.engine` and run that as `model: FILE.engine`"
        if engine_path is None
        else "choose another -o (an engine path of yours)"
    )
    check_writable(early_path, unwritable_fix)
    if spec.dynamic_frames:
        log.info("graph has a dynamic frame axis; the engine is built for T=%d only", spec.frames)
    trt = trt if trt is not None else import_tensorrt()
    gpu_name, cc = gpu if gpu is not None else cuda_identity(device)
    major, minor = (int(x) for x in cc.split("."))
    if (major, minor) < MIN_CC[precision]:
        need = ".".join(map(str, MIN_CC[precision]))
        raise ConfigError(f"{precision} needs compute capability >= {need}; {gpu_name} is sm {cc}")
    if spec.precision != "fp32" and spec.precision != precision:
        raise ConfigError(
            f"{onnx_path.name} was exported in {spec.precision}; build it with precision={spec.precision!r} "
            "(or export in fp32 and let TensorRT choose reduced precision)"
        )

    key = EngineCacheKey(onnx_sha256(onnx_path), str(trt.__version__), gpu_name, cc, precision)
    # by default the engine this machine runs for the folder: its own beside another machine's once built
    engine_path = Path(engine_path) if engine_path is not None else machine_engine(default_engine_path(onnx_path), key)
    # the graph's own engine beside it (its folder's, rebuilt as its key says) or one at a path of the user's
    engine_path_given = engine_path.absolute() not in [p.absolute() for p in own_engine_paths(onnx_path, key)]
    options = {"tf32": bool(tf32), "workspace_gib": float(workspace_gib)}
    reason = rebuild_reason(engine_path, key, force=force_engine_update) or _options_changed(engine_path, options)
    tc = Path(timing_cache) if timing_cache is not None else default_timing_cache(engine_path, key)
    if reason is None:
        log.info("reusing %s (cache key %s matches)", engine_path, key.digest())
        return EngineBuildResult(engine_path, key, False, "cache key matches", 0.0, tc)

    if not engine_path_given and not overwrite and (why := _another_machines_engine(engine_path, onnx_path, key)):
        raise OutputExistsError(why)
    if engine_path_given and engine_path.exists() and not overwrite:  # the one output rule (`_check_graph_path`)
        raise OutputExistsError(
            f"{engine_path} holds an engine built earlier, which would be rebuilt ({reason}) and replaced; it may be "
            "the one another GPU or TensorRT version runs: pass --overwrite to replace it (it stays until the new "
            "one is complete), or -o another path"
        )
    log.info("building %s: %s", engine_path, reason)
    if force_engine_update:  # asked to rebuild a matching engine (distrusted): a rebuild that fails leaves it untrusted
        key_path_for(engine_path).unlink(missing_ok=True)
    # otherwise the engine there (another key, or other build options) stays as it was until the new one is
    # complete: a failed or interrupted rebuild (Ctrl-C) keeps an engine another GPU or TensorRT version runs
    start = time.perf_counter()
    blob = _serialize_network(
        trt, onnx_path, spec, precision, int(workspace_gib * 1024**3), tc, tf32, profiles,
        own_timing_cache=timing_cache is None,
    )  # fmt: skip
    engine_spec = InputSpec.from_dict(
        {
            **spec.to_dict(),
            "precision": precision,
            "dynamic_frames": False,
            "extra": {**spec.extra, "onnx": onnx_path.name, "onnx_precision": spec.precision, "build": options},
        }
    )
    # the engine, its cache key and its spec move into place together, the engine last: a failed build
    # or Ctrl-C never leaves a half-written engine, nor an old spec beside a new engine
    sidecars = [key_path_for(engine_path).name, spec_path_for(engine_path).name]
    with AtomicOutput(
        engine_path, overwrite=True, companions=sidecars, replaceable=_not_an_engine, fix=unwritable_fix
    ) as staged:
        staged.write_bytes(blob)
        write_key(staged, key)
        engine_spec.save(spec_path_for(staged))
    seconds = time.perf_counter() - start
    log.info("built %s (%d bytes) in %.1f s", engine_path, len(blob), seconds)
    return EngineBuildResult(engine_path, key, True, reason, seconds, tc)
