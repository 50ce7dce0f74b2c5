"""One engine for several camera streams in one process (`vdepth-node --cameras front rear`).

Every camera keeps its own `DepthPipeline` (windows, alignment, scale) and worker thread; only
the model is shared. Its windows run one at a time, in the order they were asked for, so N
cameras cost one model's memory (on a GPU: one CUDA context, one TensorRT engine and its
buffers) instead of N processes' worth, and no camera's inference competes with another's for
the cores. The pre-processing in `DepthEngine.infer` (normalising, padding) stays outside the
lock, in each camera's own thread; only the backend's `_run` is serialised, which TensorRT
needs anyway (one execution context and one set of bound buffers per engine).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np

from vdepth_ros.runtime.engine import DepthEngine


class FairLock:
    """A first-come, first-served lock: waiters acquire it in the order they asked.

    `threading.Lock` makes no such promise; a camera whose worker asks again right after
    releasing could take the model several windows in a row while another camera waits.
    """

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._queue: deque[object] = deque()

    def __enter__(self) -> FairLock:
        ticket = object()
        with self._cv:
            self._queue.append(ticket)
            self._cv.wait_for(lambda: self._queue[0] is ticket)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cv:
            self._queue.popleft()
            self._cv.notify_all()

    @property
    def waiting(self) -> int:
        """Callers holding or waiting for the lock."""
        with self._cv:
            return len(self._queue)


class SharedEngine(DepthEngine):
    """A handle on an engine that other handles share: `_run` calls take turns (`FairLock`).

    `close()` of a handle does nothing: the engine belongs to its `EnginePool`, which closes it
    once, after every camera has stopped.
    """

    def __init__(self, engine: DepthEngine, lock: FairLock) -> None:
        super().__init__(engine.input_spec)
        self.inner = engine
        self.backend = engine.backend
        self._lock = lock
        self.calls = 0
        self.wait_s = 0.0  # time this handle spent waiting for other handles' windows
        self._counts: SharedEngine = self  # a resolution variant counts on the handle it came from

    @contextlib.contextmanager
    def _turn(self, counts: bool = True) -> Iterator[None]:
        """Hold the engine (waiting for other handles' calls first); `counts`: one model call."""
        t0 = time.perf_counter()
        with self._lock:
            self._counts.wait_s += time.perf_counter() - t0
            self._counts.calls += int(counts)
            yield

    def _run(self, batch: np.ndarray) -> np.ndarray:
        with self._turn():
            return self.inner._run(batch)

    def resolutions(self) -> list[tuple[int, int]] | None:
        return self.inner.resolutions()

    def at_resolution(self, height: int, width: int) -> DepthEngine:
        """A handle on the shared engine's variant, taking turns on the same lock."""
        inner = self.inner.at_resolution(height, width)
        if inner is self.inner:
            return self
        handle = SharedEngine(inner, self._lock)
        handle._counts = self._counts
        return handle

    # Exact reuse and streaming: the per-frame cache and the stream state are this handle's (its
    # camera's); only the backend calls on the shared engine take turns.
    @property
    def supports_reuse(self) -> bool:
        return self.inner.supports_reuse

    @property
    def streams(self) -> bool:
        return self.inner.streams

    def _encode(self, frames: np.ndarray) -> Any:
        with self._turn(counts=False):  # part of the window call `_decode` counts
            return self.inner._encode(frames)

    def _decode(self, features: list[Any]) -> np.ndarray:
        with self._turn():
            return self.inner._decode(features)

    def _new_stream(self) -> Any:
        return self.inner._new_stream()

    def _step(self, frames: np.ndarray, state: Any) -> np.ndarray:
        with self._turn():
            return self.inner._step(frames, state)

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "shared": True}

    def close(self) -> None:
        """The pool owns the engine (see class docstring)."""


class EnginePool:
    """Engines of one process, one per (model, backend, precision, options), each shared by its cameras.

    `get(...)` builds the engine on its first request (`vdepth_ros.runtime.create_engine`) and
    returns a new `SharedEngine` handle on it every time; cameras whose parameters name another
    model, backend, precision or engine option (threads, GPU) get an engine of their own.
    """

    def __init__(self) -> None:
        self._engines: dict[tuple[Any, ...], tuple[DepthEngine, FairLock]] = {}
        self._users: dict[tuple[Any, ...], int] = {}
        self._lock = threading.Lock()

    def get(self, model: str, backend: str = "auto", precision: str = "fp32", **opts: Any) -> SharedEngine:
        """A handle on the engine for `model` (a resolved path), `backend`, `precision` and the
        `create_engine` options `opts`."""
        from vdepth_ros.runtime import create_engine

        key = (str(model), str(backend), str(precision), *sorted(opts.items()))
        with self._lock:
            if key not in self._engines:
                engine = create_engine(model, backend=backend, precision=precision, **opts)
                self._engines[key] = (engine, FairLock())
            self._users[key] = self._users.get(key, 0) + 1
            engine, lock = self._engines[key]
        return SharedEngine(engine, lock)

    def release(self, handle: SharedEngine) -> None:
        """`handle`'s camera stops using it (a managed node's cleanup, a failed configure). The
        engine stays loaded while other cameras use it; the last one's release closes it."""
        closing = None
        with self._lock:
            for key, (engine, _) in self._engines.items():
                if engine is handle.inner and self._users.get(key, 0) > 0:
                    self._users[key] -= 1
                    if self._users[key] == 0:
                        closing = engine
                        del self._engines[key], self._users[key]
                    break
        if closing is not None:
            closing.close()

    def users(self, handle: SharedEngine) -> int:
        """How many handles share `handle`'s engine."""
        with self._lock:
            return next((self._users[k] for k, (e, _) in self._engines.items() if e is handle.inner), 0)

    def __len__(self) -> int:
        return len(self._engines)

    def close(self) -> None:
        """Close every engine (after the cameras using them have stopped)."""
        with self._lock:
            engines = [e for e, _ in self._engines.values()]
            self._engines.clear()
            self._users.clear()
        for engine in engines:
            engine.close()
