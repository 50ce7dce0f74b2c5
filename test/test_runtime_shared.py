"""One engine shared by several camera streams: turn order, no overlapping runs, one load per key."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fakes import LuminanceEngine, PastSummingEngine, write_tiny_onnx

from vdepth_ros.runtime.engine import DepthEngine
from vdepth_ros.runtime.shared import EnginePool, FairLock, SharedEngine


def wait_until(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.001)
    return cond()


def test_fair_lock_serves_waiters_in_arrival_order() -> None:
    lock = FairLock()
    order: list[int] = []
    release = threading.Semaphore(0)

    def waiter(k: int) -> None:
        with lock:
            order.append(k)
            release.acquire()  # hold the lock until the test lets go

    threads = []
    with lock:
        for k in range(5):
            threads.append(threading.Thread(target=waiter, args=(k,)))
            threads[-1].start()
            assert wait_until(lambda k=k: lock.waiting == k + 2)  # queued behind the test and the earlier ones
    for k in range(5):
        assert wait_until(lambda k=k: len(order) == k + 1)
        release.release()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4]
    assert lock.waiting == 0


class OverlapDetectingEngine(LuminanceEngine):
    """Counts how many `_run` calls are in flight at once (a real backend's buffers allow one)."""

    def __init__(self) -> None:
        super().__init__(frames=4, overlap=1)
        self.active = 0
        self.max_active = 0
        self._count = threading.Lock()

    def _run(self, batch: np.ndarray) -> np.ndarray:
        with self._count:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(0.01)
        out = super()._run(batch)
        with self._count:
            self.active -= 1
        return out


def test_shared_handles_never_run_the_engine_concurrently_and_return_their_own_results() -> None:
    inner = OverlapDetectingEngine()
    lock = FairLock()
    handles = [SharedEngine(inner, lock) for _ in range(3)]
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 255, (4, 48, 64, 3), dtype=np.uint8) for _ in handles]
    results: dict[int, list[np.ndarray]] = {k: [] for k in range(3)}

    def camera(k: int) -> None:
        for _ in range(6):
            results[k].append(handles[k].infer(inputs[k]))

    threads = [threading.Thread(target=camera, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert inner.max_active == 1  # without the lock three threads overlap in the 10 ms sleep
    assert inner.calls == 18 and [h.calls for h in handles] == [6, 6, 6]
    for k in range(3):  # each camera got the output of its own frames
        expected = LuminanceEngine(frames=4, overlap=1).infer(inputs[k])
        for got in results[k]:
            np.testing.assert_array_equal(got, expected)
    assert sum(h.wait_s for h in handles) > 0.0  # someone waited for someone else's window
    assert handles[0].input_spec == inner.input_spec and handles[0].describe()["shared"] is True


def test_cameras_sharing_a_stream_engine_each_keep_their_own_stream() -> None:
    """`--cameras` on a causal model (one engine, e.g. `model.stream.onnx` on ONNX Runtime): the stream state is
    each handle's, so interleaved cameras get what each camera alone gets; a restart resets one camera only."""
    inner, lock = PastSummingEngine(frames=2, overlap=1), FairLock()
    rng = np.random.default_rng(1)
    clips = [rng.integers(0, 255, (6, 48, 64, 3), dtype=np.uint8) for _ in range(2)]

    def stream(engine: DepthEngine, clip: np.ndarray, t: int) -> np.ndarray:
        ids = [max(0, t - 1), t]
        return engine.infer(clip[ids], frame_ids=ids)[-1]

    alone = []
    for clip in clips:
        engine = PastSummingEngine(frames=2, overlap=1)
        alone.append([stream(engine, clip, t) for t in range(6)])
    front, rear = SharedEngine(inner, lock), SharedEngine(inner, lock)
    for t in range(6):
        for handle, clip, expected in zip((front, rear), clips, alone, strict=True):
            np.testing.assert_array_equal(stream(handle, clip, t), expected[t])
    front.reset_stream()  # front's stream restarts (a gap); rear's goes on
    np.testing.assert_array_equal(stream(front, clips[0], 0), alone[0][0])
    assert not np.array_equal(stream(rear, clips[1], 6 - 1), alone[1][0])


def test_pool_loads_each_model_once_and_closes_it_once(tmp_path: Path) -> None:
    model = str(write_tiny_onnx(tmp_path))
    pool = EnginePool()
    a = pool.get(model, "onnxruntime")
    b = pool.get(model, "onnxruntime")
    assert a is not b and a.inner is b.inner  # two handles, one loaded session
    assert len(pool) == 1 and pool.users(a) == 2
    c = pool.get(model, "auto")  # another backend key: an engine of its own
    assert len(pool) == 2 and c.inner is not a.inner and pool.users(c) == 1
    frames = np.random.default_rng(1).integers(0, 255, (4, 48, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(a.infer(frames), b.infer(frames))
    pool.release(b)  # b's camera was cleaned up: a still uses the engine, which stays loaded
    assert pool.users(a) == 1 and len(pool) == 2
    b = pool.get(model, "onnxruntime")  # configured again: the same engine
    assert b.inner is a.inner and pool.users(a) == 2
    a.close()  # a handle's close leaves the engine to the pool
    np.testing.assert_array_equal(b.infer(frames), c.infer(frames))
    closed: list[object] = []
    for handle in (a, c):
        original = handle.inner.close
        handle.inner.close = lambda original=original, h=handle: (closed.append(h.inner), original())[1]
    pool.close()
    assert len(closed) == 2 and len(pool) == 0


def test_pool_reports_a_model_that_cannot_load(tmp_path: Path) -> None:
    from vdepth_ros.errors import VdepthError

    with pytest.raises(VdepthError):
        EnginePool().get(str(tmp_path / "missing"), "onnxruntime")
