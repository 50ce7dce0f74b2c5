"""ONNX Runtime backend: TensorRT EP > CUDA EP > CPU EP among the available providers."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from vdepth_ros.errors import BackendUnavailableError, ConfigError, ModelLoadError, extra_hint
from vdepth_ros.runtime.engine import DepthEngine
from vdepth_ros.runtime.reuse import STREAM_STEP_KEY, SplitMeta, split_files_for
from vdepth_ros.runtime.spec import (
    WEIGHTS_KEY,
    InputSpec,
    note_failed_parity,
    spec_path_for,
    variant_files,
    variant_mismatch,
)
from vdepth_ros.runtime.trt_cache import external_data_path, graph_data_file, onnx_sha256

log = logging.getLogger(__name__)

TRT_EP = "TensorrtExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"
PREFERRED_PROVIDERS: tuple[str, ...] = (TRT_EP, CUDA_EP, CPU_EP)
_PROVIDER_ALIASES = {"tensorrt": TRT_EP, "trt": TRT_EP, "cuda": CUDA_EP, "cpu": CPU_EP}
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}

ProviderEntry = str | tuple[str, dict[str, Any]]


def import_onnxruntime() -> Any:
    """`onnxruntime`, or `BackendUnavailableError` naming the extra to install."""
    try:
        import onnxruntime
    except ImportError as err:
        raise BackendUnavailableError(
            f"the onnxruntime backend needs ONNX Runtime: {extra_hint('onnx')}; for GPU providers, {extra_hint('trt')}"
        ) from err
    return onnxruntime


#: model folders already warned about a precision their providers do not apply
_WARNED_PRECISION: set[str] = set()


def _note_precision_not_applied(path: Path, precision: str | None, spec: InputSpec, providers: list[str]) -> None:
    """One warning per folder when `precision` (fp16 asked for on the CPU, say) is not what runs: only
    the TensorRT EP lowers a graph's precision; the CUDA and CPU EPs run it as it was exported."""
    if precision in (None, spec.precision) or "TensorrtExecutionProvider" in providers:
        return
    if str(path.parent.resolve()) in _WARNED_PRECISION:
        return
    _WARNED_PRECISION.add(str(path.parent.resolve()))
    if precision == "bf16" and "CUDAExecutionProvider" not in providers:
        how = "ONNX Runtime's CPU EP has no bf16 kernels: use fp16 or fp32 here"
    else:
        how = f"for {precision} here, export it so: `vdepth-export onnx {path.parent} --precision {precision}`"
    log.warning(
        "precision %s is not applied: %s runs %s as exported (%s); only TensorRT lowers a graph's precision. %s "
        "(precision %s silences this)", precision, ", ".join(providers), path.name, spec.precision, how, spec.precision,
    )  # fmt: skip


def _load_failure(graph: Path, spec: InputSpec, providers: list[str], err: Exception) -> str:
    """Why ONNX Runtime could not open `graph`, and the fix: a graph exported in reduced precision on the CPU
    EP alone (it has no bf16 kernels, and not every fp16 one) runs as an fp32 export, its precision then
    lowered on the GPU by TensorRT; otherwise ONNX Runtime's own message."""
    why = " ".join(str(err).split())[:400]
    fix = "export the graph again from its model folder: `vdepth-export onnx MODEL_FOLDER`"
    if "external data" in why.lower():  # a graph over 2 GB moved or copied without its weights file
        named = re.search(r'does not exist: "?([^"\s]+)', why)
        recorded = graph_data_file(graph)
        data = Path(named.group(1)).name if named else (recorded or external_data_path(graph)).name
        fix = (
            f"the graph keeps its weights in {data}, written beside it by the export, and {graph.parent} lacks it: "
            f"move or copy {data} with the graph (and its spec {spec_path_for(graph).name})"
        )
    elif spec.precision != "fp32" and not {TRT_EP, CUDA_EP} & set(providers):
        fix = (
            f"it was exported in {spec.precision}, which ONNX Runtime's CPU EP cannot run: export it in fp32 for the "
            "CPU (`vdepth-export onnx MODEL_FOLDER`, without --precision; a GPU lowers the precision itself: "
            f"`vdepth-export engine MODEL_FOLDER --precision {spec.precision}`)"
        )
    return f"ONNX Runtime cannot load {graph} on {', '.join(providers)} ({why}): {fix}"


#: variant files already warned about as unusable (stale or broken), so each is named once per process
_WARNED_VARIANTS: set[str] = set()


def _usable_variants(path: Path, spec: InputSpec) -> dict[tuple[int, int], Path]:
    """`spec.variant_files(path)` less those that are not `spec` at another resolution (a variant
    exported with other options, or left from before `model.onnx` was exported again): each is named
    once in a warning with the command that exports it again, and never picked for a camera."""
    usable = {}
    for hw, file in variant_files(path).items():
        try:
            theirs = InputSpec.load(spec_path_for(file))
            why = ", ".join(
                "exported from other weights"
                if k == WEIGHTS_KEY
                else f"{k} {getattr(theirs, k)!r} (not {getattr(spec, k)!r})"
                for k in variant_mismatch(spec, theirs)
            )
        except ConfigError as err:
            why = str(err)
        if not why:
            usable[hw] = file
        elif str(file.resolve()) not in _WARNED_VARIANTS:
            _WARNED_VARIANTS.add(str(file.resolve()))
            again = (  # a causal model's stream graph has its own variants
                "`vdepth-export stream %s --variant --height %d --width %d`"
                if STREAM_STEP_KEY in spec.extra
                else "`vdepth-export onnx %s --variant --height %d --width %d ...`"
            )
            log.warning(
                "%s is not used: it is not %s at another resolution (%s); export it again with the options %s was "
                "exported with: " + again,
                file.name, path.name, why, path.name, file.parent, hw[0], hw[1],
            )  # fmt: skip
    return usable


#: sets of execution providers already warned about as listed but not started, each named once per process
_WARNED_NOT_STARTED: set[tuple[str, ...]] = set()


def _check_started(graph: Path, chosen: list[str], started: list[str], *, requested: bool) -> None:
    """Compare the providers a session was given with those it runs. onnxruntime-gpu lists the CUDA and
    TensorRT EPs whether or not their libraries (CUDA, cuDNN, TensorRT) load and a GPU is visible; when
    one does not start, ONNX Runtime goes on without it (the CPU EP at worst) and says so only in its
    own log. Requested providers (`providers=`) that did not start: `BackendUnavailableError`; the
    default order's: one warning per process naming them and what runs instead."""
    missing = [n for n in chosen if n not in started]
    if not missing:
        return
    import onnxruntime

    why = (
        f"onnxruntime {onnxruntime.__version__} lists {', '.join(missing)} but could not start "
        f"{'it' if len(missing) == 1 else 'them'} for {graph.name}: the CUDA, cuDNN or TensorRT libraries it "
        "needs did not load, or no GPU is visible (ONNX Runtime's own log above says which); see "
        "https://onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html#requirements"
    )
    if requested:
        raise BackendUnavailableError(
            f"{why}. Requested providers must run: fix the libraries, or request the ones that run here "
            f"({', '.join(started)})"
        )
    if tuple(missing) not in _WARNED_NOT_STARTED:
        _WARNED_NOT_STARTED.add(tuple(missing))
        log.warning("%s. Running on %s instead, much slower than on the GPU", why, ", ".join(started))


#: TensorRT EP cache folders that could not be created, each named once per process
_WARNED_CACHE: set[str] = set()


def _trt_ep_cache(
    graph: Path, precision: str, cache_dir: str | Path | None, device_id: int
) -> tuple[Path | None, IO[bytes] | None]:
    """The folder for the TensorRT EP's engine and timing caches of `graph` (`trt_cache.ort_trt_cache_dir`
    under `cache_dir`, default `<cache root>/ort-trt`): without one the EP builds the engine again at every
    start (minutes for a ViT), and one folder shared across exports of one path would hand a
    re-exported model the old weights' engine. With it, the lease that marks it in use (close it when the
    session closes; `trt_cache.use_ort_trt_cache`); the package's caches under that root beyond the most
    recently used `trt_cache.ORT_TRT_CACHE_KEEP` are removed then, never one in use. (None, None): no
    cache, one warning, when it cannot be created."""
    import onnxruntime

    from vdepth_ros.runtime.registry import cache_root
    from vdepth_ros.runtime.tensorrt_backend import cuda_identity
    from vdepth_ros.runtime.trt_cache import ort_trt_cache_dir, prune_ort_trt_caches, use_ort_trt_cache

    platform = {"onnxruntime": onnxruntime.__version__, "device": str(device_id)}
    try:
        import tensorrt

        platform["tensorrt"] = str(tensorrt.__version__)
    except ImportError:  # the EP loads TensorRT's libraries itself; the python package is optional
        pass
    with contextlib.suppress(BackendUnavailableError):
        platform["device"] = " sm".join(cuda_identity(device_id))
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "ort-trt"
    folder = ort_trt_cache_dir(root, graph, precision, platform)
    try:
        lease = use_ort_trt_cache(folder, {"graph": str(graph.resolve()), "precision": precision, **platform})
    except OSError as err:
        if str(root) not in _WARNED_CACHE:
            _WARNED_CACHE.add(str(root))
            log.warning("TensorRT EP engines are not cached (%s): every start builds them again; give "
                        "create_engine a writable cache_dir", err)  # fmt: skip
        return None, None
    for gone in prune_ort_trt_caches(root):
        log.info("removed the least recently used TensorRT EP cache %s", gone)
    return folder, lease


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (taskset, a container's cpuset), at most its
    cgroup v2 CPU quota rounded up (`docker --cpus`, a systemd `CPUQuota`). ONNX Runtime's default thread
    count ignores both (measured: pinned to 1 of 2 cores, it still started a second thread), so a node pinned
    to 4 of 16 cores would run 16 intra-op threads on 4."""
    import math
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        own = Path("/proc/self/cgroup").read_text().splitlines()
        rel = next((line[3:] for line in own if line.startswith("0::")), "/").lstrip("/")
        quota, period = (Path("/sys/fs/cgroup") / rel / "cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):  # no cgroup v2 (or not Linux): the affinity alone
        pass
    return max(1, cores)


def _provider_name(entry: ProviderEntry) -> str:
    name = entry[0] if isinstance(entry, tuple) else entry
    return _PROVIDER_ALIASES.get(name.lower(), name)


def select_providers(
    available: Sequence[str],
    requested: Sequence[ProviderEntry] | None = None,
    *,
    precision: str = "fp32",
    cache_dir: str | Path | None = None,
    device_id: int = 0,
) -> list[tuple[str, dict[str, Any]]]:
    """Execution providers (with options) for an ORT session, in priority order.

    Default: TensorRT EP > CUDA EP > CPU EP, keeping those in `available`. `requested`
    overrides the order (names, aliases "tensorrt"/"cuda"/"cpu", or `(name, options)` pairs);
    a requested provider that is not available raises `BackendUnavailableError`.

    The TensorRT EP gets the precision flag, and an engine + timing cache under `cache_dir`
    (defaults to no on-disk cache) so later sessions skip the build.
    """
    available = list(available)
    if requested is None:
        entries: list[ProviderEntry] = [p for p in PREFERRED_PROVIDERS if p in available]
        if not entries:
            raise BackendUnavailableError(f"onnxruntime offers none of {PREFERRED_PROVIDERS} (has {available})")
    else:
        entries = list(requested)
        if not entries:
            raise ConfigError("providers must not be empty")
        missing = [_provider_name(e) for e in entries if _provider_name(e) not in available]
        if missing:
            gpu = any(m in (TRT_EP, CUDA_EP) for m in missing)
            hint = f" for a GPU provider, {extra_hint('trt')}" if gpu else ""
            raise BackendUnavailableError(
                f"requested execution providers {missing} are unavailable ({available});{hint}"
            )
    out: list[tuple[str, dict[str, Any]]] = []
    for entry in entries:
        name = _provider_name(entry)
        opts: dict[str, Any] = dict(entry[1]) if isinstance(entry, tuple) else {}
        if name == TRT_EP:
            defaults: dict[str, Any] = {"device_id": device_id}
            if precision == "fp16":
                defaults["trt_fp16_enable"] = True
            elif precision == "bf16":
                defaults["trt_bf16_enable"] = True
            if cache_dir is not None:
                cache = str(cache_dir)
                defaults.update(
                    trt_engine_cache_enable=True,
                    trt_engine_cache_path=cache,
                    trt_timing_cache_enable=True,
                    trt_timing_cache_path=cache,
                )
            opts = {**defaults, **opts}
        elif name == CUDA_EP:
            opts = {"device_id": device_id, **opts}
        out.append((name, opts))
    return out


class OnnxRuntimeEngine(DepthEngine):
    """`DepthEngine` over an exported `.onnx` graph.

    Args:
        onnx_path: the graph; its `InputSpec` is read from `<onnx_path>.json` unless `spec` is given.
        spec: overrides the sidecar spec.
        providers: execution providers (see `select_providers`), default TensorRT > CUDA > CPU.
        threads: intra-op threads of the session (None: ORT default = all cores).
        spinning: let idle intra-op threads busy-wait for work (ORT's default). Off by default:
            spinning threads steal the cores from everything else in the process (ROS callbacks,
            torch), measured as a 10-190x slowdown of torch running next to an ORT session on 2 cores.
        precision: precision hint for the TensorRT EP (default: the spec's).
        cache_dir: TensorRT EP cache folder (default `~/.cache/vdepth_ros/ort-trt`); each graph's engine and
            timing caches go into a subfolder named by its sha256, the precision, the ONNX Runtime and
            TensorRT versions and the GPU, so a re-exported graph or another setup never loads a stale engine;
            the 8 most recently used folders are kept, and those in use (`trt_cache.prune_ort_trt_caches`).
        device_id: CUDA device for the GPU providers.
        reuse: when `model.frame.onnx`, `model.window.onnx` and `model.split.json` lie next to
            `onnx_path` and match it (`vdepth-export split`), run those two graphs instead,
            so that `infer(frame_ids=...)` encodes only frames the previous window did not have
            (`runtime/reuse.py`). Off when constructed directly (the export parity check must test
            `onnx_path` itself); `create_engine` turns it on.

    A causal model's stream-step graph (`model.stream.onnx`, `vdepth-export stream`; its spec's
    `extra["stream_step"]`) runs as a stream (`streams`): `infer(frame_ids=...)` steps each new frame once,
    passing the cache in and taking it back (`models.split.StreamSignature`), so it equals torch's stream.
    Without frame ids a window is a new stream of its frames.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        onnx_path: str | Path,
        spec: InputSpec | None = None,
        *,
        providers: Sequence[ProviderEntry] | None = None,
        threads: int | None = None,
        precision: str | None = None,
        cache_dir: str | Path | None = None,
        device_id: int = 0,
        spinning: bool = False,
        reuse: bool = False,
    ) -> None:
        ort = import_onnxruntime()
        path = Path(onnx_path)
        if not path.is_file():
            raise ModelLoadError(f"ONNX model {path} not found")
        spec = spec if spec is not None else InputSpec.load(spec_path_for(path))
        super().__init__(spec)
        self.path = path
        self._options = {
            "providers": providers, "threads": threads, "precision": precision, "cache_dir": cache_dir,
            "device_id": device_id, "spinning": spinning,
        }  # fmt: skip
        self._variants: dict[tuple[int, int], OnnxRuntimeEngine] = {}
        self._variants_lock = threading.Lock()
        self._cache_leases: list[IO[bytes]] = []  # the TensorRT EP caches this engine's sessions use
        chosen = select_providers(
            ort.get_available_providers(),
            providers,
            precision=precision or spec.precision,
            device_id=device_id,
        )
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        if threads is not None and int(threads) < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        # default: one per core this process may use (ONNX Runtime's own default counts every core)
        so.intra_op_num_threads = int(threads) if threads is not None else usable_cores()
        so.inter_op_num_threads = 1

        def session(graph: Path) -> Any:
            entries = chosen
            if TRT_EP in (n for n, _ in chosen):  # its engines: cached under the graph's own key
                trt_cache, lease = _trt_ep_cache(graph, precision or spec.precision, cache_dir, device_id)
                if lease is not None:
                    self._cache_leases.append(lease)
                entries = select_providers(
                    ort.get_available_providers(), providers, precision=precision or spec.precision,
                    cache_dir=trt_cache, device_id=device_id,
                )  # fmt: skip
            names, options = [n for n, _ in entries], [o for _, o in entries]
            try:
                sess = ort.InferenceSession(str(graph), sess_options=so, providers=names, provider_options=options)
            except Exception as err:  # ONNX Runtime's own exception types (InvalidGraph, NotImplemented, Fail...)
                raise ModelLoadError(_load_failure(graph, spec, names, err)) from err
            _check_started(graph, names, list(sess.get_providers()), requested=providers is not None)
            return sess

        stream_step = STREAM_STEP_KEY in spec.extra  # a causal model's stream step: never split
        self._stream_states: tuple[str, ...] | None = None
        self._split = self._load_split(path, spec, session) if reuse and not stream_step else None
        # a dynamic-frames graph keeps its whole session too: windows of another length than the split
        # graphs' run on it (`_reuses`)
        if self._split is not None and not spec.dynamic_frames:
            self.session = None
            self.providers = list(self._split[0].get_providers())
            _note_precision_not_applied(path, precision, spec, self.providers)
            note_failed_parity(path)
            log.info("onnxruntime engine: %s as its per-frame + per-window graphs, providers %s", path.name,
                     self.providers)  # fmt: skip
            return
        self.session = session(path)
        self.providers = list(self.session.get_providers())
        _note_precision_not_applied(path, precision, spec, self.providers)
        note_failed_parity(path)
        self._stream_states = self._stream_state_names() if stream_step else None
        if self._stream_states is None:
            self._in_name, self._in_dtype = self._resolve_io(self.session.get_inputs(), spec.input_name, "input")
            self._out_name, _ = self._resolve_io(self.session.get_outputs(), spec.output_name, "output")
            self._check_input_shape()
        split = "" if self._split is None else f" (windows of {self._split[2].frames} frames: its split graphs)"
        log.info("onnxruntime engine: %s%s, providers %s, %d threads", path.name, split, self.providers,
                 so.intra_op_num_threads)  # fmt: skip

    @staticmethod
    def _resolve_io(args: Sequence[Any], wanted: str, kind: str) -> tuple[str, Any]:
        by_name = {a.name: a for a in args}
        if wanted in by_name:
            arg = by_name[wanted]
        elif len(args) == 1:
            arg = args[0]
            log.warning("graph %s is named %r, the spec says %r; using the only %s", kind, arg.name, wanted, kind)
        else:
            raise ModelLoadError(f"graph has no {kind} named {wanted!r} (has {sorted(by_name)})")
        return arg.name, _ORT_TYPES.get(getattr(arg, "type", "tensor(float)"), np.float32)

    def _check_input_shape(self) -> None:
        spec = self.input_spec
        arg = next(a for a in self.session.get_inputs() if a.name == self._in_name)
        want = (1, spec.frames, 3, spec.height, spec.width)
        shape = list(arg.shape)
        if len(shape) != 5:
            raise ModelLoadError(f"graph input {arg.name} has rank {len(shape)}, expected 5 (1,T,3,H,W)")
        for axis, (got, exp) in enumerate(zip(shape, want, strict=True)):
            if isinstance(got, int) and got != exp and not (axis == 1 and spec.dynamic_frames):
                raise ModelLoadError(f"graph input {arg.name} has shape {shape}, the spec says {list(want)}")

    @staticmethod
    def _load_split(path: Path, spec: InputSpec, session: Any) -> tuple[Any, Any, SplitMeta] | None:
        """The split graphs' sessions if they exist and belong to `path` (else None, with the reason logged)."""
        files = split_files_for(path)
        if not files.exist():
            return None
        meta = SplitMeta.usable(files, spec, onnx_sha256(path))
        if meta is None:
            return None
        return session(files.frame), session(files.window), meta

    def _stream_state_names(self) -> tuple[str, ...]:
        """The state inputs of a stream-step graph (`models.split.StreamSignature`), checked against its
        spec: `frame (1, 3, H, W)`, `n_past` and one `pastJ` per causal attention layer, whose new values
        come back as `new_pastJ` after `disparity`."""
        spec = self.input_spec
        record = spec.extra[STREAM_STEP_KEY]
        names = tuple(str(n) for n in record.get("states", ())) if isinstance(record, dict) else ()
        inputs = {a.name: a for a in self.session.get_inputs()}
        outputs = [a.name for a in self.session.get_outputs()]
        want_in = ["frame", "n_past", *names]
        want_out = ["disparity", *(f"new_{n}" for n in names)]
        frame = inputs.get("frame")
        if (
            not names
            or sorted(inputs) != sorted(want_in)
            or outputs != want_out
            or list(frame.shape) != [1, 3, spec.height, spec.width]
        ):
            raise ModelLoadError(
                f"{self.path} is not the stream-step graph its spec {spec_path_for(self.path).name} describes "
                f"(inputs {sorted(inputs)}, outputs {outputs}): export it again with `vdepth-export stream "
                f"{self.path.parent}`"
            )
        self._state_shapes = {n: tuple(int(d) for d in inputs[n].shape) for n in names}
        return names

    @property
    def streams(self) -> bool:
        return self._stream_states is not None

    def _new_stream(self) -> dict[str, Any]:
        """A stream-step graph's state: no past frames (`n_past` 0), zero buffers."""
        return {"n_past": 0, **{n: np.zeros(shape, np.float32) for n, shape in self._state_shapes.items()}}

    def _step(self, frames: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        names = self._stream_states
        context = int(self.input_spec.extra[STREAM_STEP_KEY]["context"])
        out = []
        for frame in frames:  # the graph takes one frame: each frame's step attends to the ones before
            feed = {"frame": frame[None], "n_past": np.array(state["n_past"], np.int64), **{n: state[n] for n in names}}
            disparity, *past = self.session.run(None, feed)
            state.update(zip(names, past, strict=True), n_past=min(state["n_past"] + 1, context - 1))
            out.append(np.asarray(disparity, np.float32).reshape(self.input_spec.height, self.input_spec.width))
        return np.stack(out)

    @property
    def supports_reuse(self) -> bool:
        return self._split is not None

    def _reuses(self, frames: int) -> bool:
        # the window graph has the exported window's length: a dynamic-frames graph's shorter or longer
        # windows (a stream's first and last ones) run whole; ONNX Runtime refused them ("Got: 5 Expected: 6")
        return self._split is not None and frames == self._split[2].frames

    def _encode(self, frames: np.ndarray) -> list[np.ndarray]:
        frame_graph, _, meta = self._split  # type: ignore[misc]
        return frame_graph.run(list(meta.feature_names), {"frames": frames})

    def _decode(self, features: list[Any]) -> np.ndarray:
        _, window_graph, meta = self._split  # type: ignore[misc]
        feed = {name: np.concatenate([f[k] for f in features]) for k, name in enumerate(meta.feature_names)}
        (out,) = window_graph.run(["disparity"], feed)
        return np.asarray(out, dtype=np.float32)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self._stream_states is not None:  # a window without frame ids: a new stream of its frames
            return self._step(batch[0], self._new_stream())[None]
        if self._reuses(batch.shape[1]):
            return self._decode([self._encode(batch[0])])
        x = batch if batch.dtype == self._in_dtype else batch.astype(self._in_dtype)
        (out,) = self.session.run([self._out_name], {self._in_name: x})
        return np.asarray(out, dtype=np.float32)

    def resolutions(self) -> list[tuple[int, int]] | None:
        """This graph's shape and those of its variants next to it (`spec.variant_files`)."""
        own = (self.input_spec.height, self.input_spec.width)
        return [own, *(hw for hw in _usable_variants(self.path, self.input_spec) if hw != own)]

    def at_resolution(self, height: int, width: int) -> DepthEngine:
        """The variant graph exported at `height x width` (opened once, with this engine's options)."""
        if (height, width) == (self.input_spec.height, self.input_spec.width):
            return self
        path = _usable_variants(self.path, self.input_spec).get((height, width))
        if path is None:
            return super().at_resolution(height, width)  # raises, naming what exists
        with self._variants_lock:
            engine = self._variants.get((height, width))
            if engine is None:
                engine = OnnxRuntimeEngine(path, **self._options)  # its spec passed `_usable_variants`
                self._variants[(height, width)] = engine
        return engine

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "providers": self.providers, "path": str(self.path)}

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
        for engine in self._variants.values():
            engine.close()
        self._variants.clear()
        self._split = None
        for lease in self._cache_leases:
            lease.close()
        self._cache_leases.clear()
