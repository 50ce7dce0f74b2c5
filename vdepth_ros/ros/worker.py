"""Threading helpers of the node: a bounded drop-oldest queue and a keyed, rate-limited logger."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class DropOldestQueue(Generic[T]):
    """A bounded FIFO: `put` never blocks; when full the oldest item is dropped and counted.

    Executor callbacks put, the worker thread gets, so callbacks never wait for inference.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"queue maxsize must be >= 1, got {maxsize}")
        self.maxsize = int(maxsize)
        self._items: deque[T] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.put_count = 0

    def put(self, item: T) -> bool:
        """Append `item`; returns True if an older item was dropped to make room."""
        with self._cv:
            dropped = False
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
                dropped = True
            self._items.append(item)
            self.put_count += 1
            self._cv.notify()
            return dropped

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest item, or None on timeout or after `close()`."""
        with self._cv:
            if not self._cv.wait_for(lambda: self._items or self._closed, timeout=timeout):
                return None
            return self._items.popleft() if self._items else None

    def clear(self) -> int:
        """Drop everything queued (not counted as drops); returns how many."""
        with self._cv:
            n = len(self._items)
            self._items.clear()
            return n

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def __len__(self) -> int:
        with self._cv:
            return len(self._items)


class ThrottledLog:
    """Logs each message key at most once per `period` seconds, counting what it suppressed.

    Bad input can arrive at camera rate; the first occurrence is logged at once, repeats are
    summarised ("... (37 more since last report)").
    """

    def __init__(self, log: Callable[[str], None], period: float = 5.0) -> None:
        self._log = log
        self.period = float(period)
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()
        self.count = 0
        self.last_message: str | None = None

    def __call__(self, key: str, message: str) -> bool:
        """Log `message` under `key` unless logged within `period`; returns whether it was logged."""
        now = time.monotonic()
        with self._lock:
            self.count += 1
            self.last_message = message
            last = self._last.get(key)
            if last is not None and now - last < self.period:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            n = self._suppressed.pop(key, 0)
        self._log(message + (f" ({n} more since last report)" if n else ""))
        return True
