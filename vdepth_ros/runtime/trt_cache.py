"""TensorRT engine cache keys: an engine is only valid for the ONNX, TensorRT version, GPU and
precision it was built for (engines from another TensorRT version can load and give garbage).

The key is stored in a sidecar `<engine>.key.json`; the builder compares it to decide whether to
rebuild, and the runtime verifies it before `deserialize_cuda_engine`. Pure Python: no tensorrt
or CUDA import here, so the logic is testable anywhere.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, Any

from vdepth_ros.errors import ModelLoadError

try:
    import fcntl
except ImportError:  # not POSIX: caches are never seen as in use, so never removed
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
KEY_VERSION = 1


class EngineMismatchError(ModelLoadError):
    """A cached TensorRT engine does not match the current ONNX/TensorRT/GPU/precision."""


@dataclass(frozen=True)
class EngineCacheKey:
    """Everything a serialized engine depends on.

    Attributes:
        onnx_sha256: hash of the ONNX file (and its external-data file, if any).
        tensorrt_version: `tensorrt.__version__` of the builder.
        gpu_name: CUDA device name.
        compute_capability: "major.minor".
        precision: "fp32" | "fp16" | "bf16".
    """

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str

    def to_dict(self) -> dict[str, Any]:
        return {"key_version": KEY_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineCacheKey:
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise EngineMismatchError(f"engine cache key lacks {missing}")
        return cls(**{n: str(data[n]) for n in names})

    def digest(self) -> str:
        """Short stable id of the key (for file names and logs)."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def differences(self, other: EngineCacheKey, *, ignore: tuple[str, ...] = ()) -> dict[str, tuple[str, str]]:
        """Fields whose values differ: name -> (self value, other value)."""
        return {
            f.name: (getattr(self, f.name), getattr(other, f.name))
            for f in fields(self)
            if f.name not in ignore and getattr(self, f.name) != getattr(other, f.name)
        }


#: the fields of an engine's key that tell the machine it was built on (not the graph nor the precision)
PLATFORM_FIELDS = ("tensorrt_version", "gpu_name", "compute_capability")


#: how every `platform_name` begins
PLATFORM_PREFIX = "trt"


def platform_name(key: EngineCacheKey) -> str:
    """`trt<version>-<gpu>-sm<cc>`: the TensorRT version and GPU a file TensorRT built is only valid for (the
    names of timing caches, and of an engine built beside another machine's)."""
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", key.gpu_name).strip("-").lower() or "gpu"
    return f"{PLATFORM_PREFIX}{key.tensorrt_version}-{gpu}-sm{key.compute_capability}"


def engine_beside(engine_path: Path, key: EngineCacheKey) -> Path:
    """`model.engine` -> `model.<platform_name>.engine`: this machine's engine beside another machine's (the
    split engines' too: `model.frame.engine` -> `model.frame.<platform_name>.engine`, `reuse.split_files_for`)."""
    return engine_path.with_name(f"{engine_path.stem}.{platform_name(key)}{engine_path.suffix}")


def platform_key(tensorrt_version: str, gpu_name: str, compute_capability: str) -> EngineCacheKey:
    """A key holding only the machine's fields (`PLATFORM_FIELDS`), for naming its files (`engine_beside`)."""
    return EngineCacheKey("", tensorrt_version, gpu_name, compute_capability, "")


def machine_engine(engine_path: Path, key: EngineCacheKey) -> Path:
    """The engine of `engine_path`'s graph for the machine of `key` (its TensorRT version and GPU): the one
    beside another machine's (`engine_beside`) when that exists, else `engine_path`. The one rule by which the
    builder's default output, a model folder's engine at run time and its split engines are found, so a folder
    shared by two machines (NFS, a synced folder) runs each one's own engine as `model: FOLDER`."""
    beside = engine_beside(engine_path, key)
    return beside if beside.is_file() else engine_path


def _onnx_of(engine_path: Path) -> Path:
    """The ONNX graph an engine was built from: the one its spec names (`extra.onnx`) beside it, else the
    engine's name with `.onnx`."""
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError, AttributeError):
        name = json.loads(engine_path.with_name(engine_path.name + ".json").read_text())["extra"]["onnx"]
        if isinstance(name, str) and name and (engine_path.parent / name).is_file():
            return engine_path.parent / name
    return engine_path.with_suffix(".onnx")


def key_path_for(engine_path: str | Path) -> Path:
    """`model.engine` -> `model.engine.key.json`."""
    p = Path(engine_path)
    return p.with_name(p.name + ".key.json")


def external_data_path(onnx_path: str | Path) -> Path:
    """The external-data file the exporter writes for graphs over 2 GB (`model.onnx.data`): the name it gives
    the file it writes. Which file an existing graph's weights are in is `graph_data_file`."""
    p = Path(onnx_path)
    return p.with_name(p.name + ".data")


#: `InputSpec.extra` key of the external-data file a graph's weights are in (its name beside the graph; null: in
#: the graph), recorded by the export because the graph keeps that name when it is renamed
EXTERNAL_DATA_KEY = "external_data"


def graph_data_file(onnx_path: str | Path) -> Path | None:
    """The external-data file `onnx_path`'s weights are in, None when they are in the graph: the one its spec
    (`<graph>.json`) records (`EXTERNAL_DATA_KEY`: a graph renamed after its export still reads its first name's
    file), else, for a spec from before that record or none, `external_data_path` where that file exists. Read
    as plain JSON: the runtime layer parses no ONNX."""
    p = Path(onnx_path)
    # no spec, or another tool's JSON of that name (a Piper voice's): today's naming rule
    # (the name `spec.spec_path_for` gives: importing runtime.spec here closes a cycle through runtime.shapes)
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        extra = json.loads(p.with_name(p.name + ".json").read_text())["extra"]
        if EXTERNAL_DATA_KEY in extra:
            name = extra[EXTERNAL_DATA_KEY]
            return p.parent / name if isinstance(name, str) and name else None
    data = external_data_path(p)
    return data if data.is_file() else None


def sha256_of(path: Path) -> str:
    """`file_sha256` of one file, hashed once per content (path, size, modification time): a pull checks a
    multi-GB file against the hub's checksum and the registry's, and its import against the known releases."""
    real = Path(path).resolve()
    st = real.stat()
    return _sha256_cached(str(real), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(Path(path))


def file_sha256(*paths: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of the files' bytes, one after the other, read in 1 MiB chunks."""
    h = hashlib.sha256()
    for path in paths:
        with Path(path).open("rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()


def onnx_sha256(onnx_path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of the ONNX file followed by its external-data file (`graph_data_file`), if any: new weights in
    that file are a new graph (a new engine, a new TensorRT EP cache folder).

    Raises:
        ModelLoadError: the graph, or the external-data file its spec records, is missing.
    """
    if not Path(onnx_path).is_file():
        raise ModelLoadError(f"ONNX model {onnx_path} not found")
    data = graph_data_file(onnx_path)
    if data is not None and not data.is_file():
        raise ModelLoadError(
            f"{Path(onnx_path).name} keeps its weights in {data.name} (its spec {Path(onnx_path).name}.json says), "
            f"and {data.parent} lacks it: move or copy {data.name} with the graph"
        )
    return file_sha256(onnx_path, *([data] if data is not None else []), chunk=chunk)


def write_key(engine_path: str | Path, key: EngineCacheKey) -> Path:
    """Write `key` to the engine's sidecar (`key_path_for`); returns the sidecar's path."""
    path = key_path_for(engine_path)
    path.write_text(json.dumps(key.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def read_key(engine_path: str | Path) -> EngineCacheKey | None:
    """The stored key, or None when the sidecar is missing."""
    path = key_path_for(engine_path)
    if not path.is_file():
        return None
    try:
        return EngineCacheKey.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as err:
        raise EngineMismatchError(f"engine cache key {path} is unreadable: {err}") from err


def rebuild_reason(engine_path: str | Path, key: EngineCacheKey, *, force: bool = False) -> str | None:
    """Why the engine at `engine_path` must be (re)built for `key`, or None to reuse it."""
    engine_path = Path(engine_path)
    if force:
        return "force_engine_update requested"
    if not engine_path.is_file():
        return f"no engine at {engine_path}"
    try:
        stored = read_key(engine_path)
    except EngineMismatchError as err:
        return str(err)
    if stored is None:
        return f"no cache key next to {engine_path.name} (cannot tell what it was built for)"
    diff = stored.differences(key)
    if diff:
        return "cache key differs: " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in diff.items())
    return None


def verify_engine(
    engine_path: str | Path,
    *,
    tensorrt_version: str,
    gpu_name: str,
    compute_capability: str,
    precision: str | None = None,
    onnx_path: str | Path | None = None,
) -> EngineCacheKey:
    """Check an engine's stored key against the running platform before deserializing it.

    Raises:
        EngineMismatchError: no key, or any field differs (never load such an engine silently).
    """
    engine_path = Path(engine_path)
    stored = read_key(engine_path)
    if stored is None:
        raise EngineMismatchError(
            f"{engine_path} has no cache key ({key_path_for(engine_path).name}); rebuild it with "
            "`vdepth-export engine` so its TensorRT version and GPU are recorded"
        )
    current = EngineCacheKey(
        onnx_sha256=onnx_sha256(onnx_path) if onnx_path is not None else stored.onnx_sha256,
        tensorrt_version=tensorrt_version,
        gpu_name=gpu_name,
        compute_capability=compute_capability,
        precision=precision if precision is not None else stored.precision,
    )
    diff = stored.differences(current)
    if diff:
        detail = ", ".join(f"{k}: engine {a!r} vs now {b!r}" for k, (a, b) in diff.items())
        # the command that builds this engine again: a model folder's engines (model.engine and the split
        # graphs' model.frame/window.engine) come from the folder, another from its ONNX file
        own = engine_path.name in ("model.engine", "model.frame.engine", "model.window.engine")
        source = engine_path.parent if own else _onnx_of(engine_path)
        whole = engine_path.with_name("model.engine") if own else engine_path  # split engines come with it
        build = f"vdepth-export engine {source} --precision {current.precision}" + ("" if own else f" -o {engine_path}")
        if set(diff) == {"precision"}:  # the engine is fine: the run asked for another precision
            fix = (
                f"run it at the precision it was built for (precision: {stored.precision}, the node's and the "
                f"offline tools' parameter), or build a {current.precision} engine: `{build}`"
            )
        elif diff.keys() & set(PLATFORM_FIELDS):  # another machine's engine, which that machine may still run
            beside = engine_beside(whole, current)
            run = f"`model: {source}` then runs it" if own else f"run that (model: {beside})"
            graph = source if own else _onnx_of(whole)
            fix = (
                f"rebuild it on this machine: `{build} --overwrite`; or, where another machine still runs it (a "
                f"shared folder), build this machine's beside it, `vdepth-export engine {graph} "
                f"--precision {current.precision} -o {beside}`, and {run}"
            )
        else:  # another graph: stale on every machine
            fix = f"rebuild it: `{build}`" + ("" if own else " --overwrite")
        raise EngineMismatchError(f"{engine_path.name} was built for another setup ({detail}); {fix}")
    return stored


def ort_trt_cache_dir(root: str | Path, onnx_path: str | Path, precision: str, platform: dict[str, str]) -> Path:
    """The folder under `root` for ONNX Runtime's TensorRT EP engine and timing caches of `onnx_path`.

    The EP names its engine files by a hash of the model's path (else its node names), not its weights: a
    retrained model exported again (same layers, same file name) would load the old weights' engine from a
    shared cache folder. The folder is therefore named by the ONNX file's sha256 (with its external data), the
    precision and the platform (`platform`: ONNX Runtime and TensorRT versions, GPU), so an engine is only
    ever found for the graph, precision and setup it was built from."""
    blob = json.dumps({"onnx_sha256": onnx_sha256(onnx_path), "precision": precision, **platform}, sort_keys=True)
    return Path(root) / f"{Path(onnx_path).stem}-{precision}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


#: ONNX Runtime TensorRT EP cache folders kept under one cache root: the most recently used ones, and any in use
ORT_TRT_CACHE_KEEP = 8
#: the file that marks a cache folder as the package's (only such folders are ever removed); its modification
#: time is the folder's last use, and a session holds a shared lock on it while it runs
ORT_TRT_CACHE_MARKER = "vdepth_ros-cache.json"


def use_ort_trt_cache(folder: Path, about: dict[str, str]) -> IO[bytes] | None:
    """Mark `folder` (just created or found) as the package's TensorRT EP cache, used now: its marker file
    (`about`: what it caches) is written if missing and touched, and a shared lock taken on it, held until
    the returned file is closed (the session's life). None where no lock is held: locks not available, or a
    folder that cannot be written (a read-only cache, used as it is, never pruned when it has no marker).

    Raises:
        OSError: the folder cannot be created.
    """
    marker = folder / ORT_TRT_CACHE_MARKER
    for _ in range(3):  # a pruning process may remove the folder between its creation and the lock
        folder.mkdir(parents=True, exist_ok=True)
        if not marker.is_file():
            with contextlib.suppress(OSError):  # read-only: the folder is used unmarked
                marker.write_text(json.dumps(about, indent=2, sort_keys=True) + "\n")
        try:
            lease = marker.open("rb")
        except FileNotFoundError:
            if folder.is_dir():  # no marker could be written
                return None
            continue  # removed meanwhile: make it again
        except OSError:
            return None
        if fcntl is not None:
            fcntl.flock(lease.fileno(), fcntl.LOCK_SH)
        if marker.is_file():  # not removed while the lock was awaited
            with contextlib.suppress(OSError):  # read-only: its last use stays as it was
                os.utime(marker)
            if fcntl is None:
                lease.close()
                return None
            return lease
        lease.close()
    raise OSError(f"TensorRT EP cache folder {folder} keeps being removed by another process")


#: cache folders that could not be removed, each named once per process
_WARNED_PRUNE: set[Path] = set()


def prune_ort_trt_caches(root: Path, keep: int | None = None) -> list[Path]:
    """Remove the package's TensorRT EP cache folders under `root` beyond the `keep` (default
    `ORT_TRT_CACHE_KEEP`) most recently used, least recently used first; a folder in use (a session of this or
    another process holds its lock) and any folder without the package's marker (the user's own) are never
    removed. Returns the folders removed."""
    keep = ORT_TRT_CACHE_KEEP if keep is None else keep
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    found.append((os.stat(Path(entry.path) / ORT_TRT_CACHE_MARKER).st_mtime_ns, Path(entry.path)))
    removed = []
    for _, folder in sorted(found, reverse=True)[keep:]:
        try:
            with (folder / ORT_TRT_CACHE_MARKER).open("rb") as lock:
                if fcntl is None:
                    continue  # cannot tell whether it is in use: keep it
                try:
                    fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # in use
                shutil.rmtree(folder)
            removed.append(folder)
        except OSError as err:
            if folder not in _WARNED_PRUNE:
                _WARNED_PRUNE.add(folder)
                log.warning("could not remove the unused TensorRT EP cache %s: %s", folder, err)
    return removed
