"""The node's threads: a bounded drop-oldest queue, a supervised worker and logging that cannot raise.

Executor callbacks put frames in the queue and never wait; one worker thread takes them. The worker
is supervised: nothing a frame does (bad data, a model error, a bug, a logging failure) ends the
thread; the error is reported and the next frame is processed.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from vdepth_ros.ros.diagnostics import CurrentProblems

T = TypeVar("T")


class DropOldestQueue(Generic[T]):
    """A bounded FIFO: `put` never blocks; when full the oldest item is dropped and counted.

    Executor callbacks put, the worker thread gets, so callbacks never wait for inference.
    """

    def __init__(self, maxsize: int, drain_after_s: float = 0.0, drain_to: int = 1) -> None:
        if maxsize < 1:
            raise ValueError(f"queue maxsize must be >= 1, got {maxsize}")
        self.maxsize = int(maxsize)
        self._items: deque[T] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self.dropped = 0  # every item dropped, `drained` ones included
        self.drained = 0  # dropped from a standing backlog (`put`)
        self.put_count = 0
        self.got_count = 0  # items the worker took (`get`)
        # A standing backlog is a queue that has not been down to `drain_to` items for `drain_after_s`: after a
        # burst of load a worker as fast as the camera keeps it for good, and every later item waits behind it
        # (the "standing queue" of CoDel, RFC 8289, whose rule this is: act on the queue's minimum over an interval,
        # not on its length at one moment, so a healthy window-at-a-time worker's bursts are left alone).
        self.drain_after_s, self.drain_to = float(drain_after_s), max(1, int(drain_to))
        self._short_at = time.monotonic()  # when it last held at most `drain_to` items

    def put(self, item: T) -> bool:
        """Append `item`; returns True if older items were dropped: one to make room when full, or a standing
        backlog down to `drain_to` (counted in `drained` too)."""
        with self._cv:
            dropped = False
            now = time.monotonic()
            if len(self._items) <= self.drain_to:
                self._short_at = now
            elif self.drain_after_s > 0 and now - self._short_at > self.drain_after_s:
                while len(self._items) >= self.drain_to:  # (and the new item makes drain_to)
                    self._items.popleft()
                    self.dropped += 1
                    self.drained += 1
                self._short_at = now
                dropped = True
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
            if not self._items:
                return None
            self.got_count += 1
            item = self._items.popleft()
            if len(self._items) <= self.drain_to:
                self._short_at = time.monotonic()
            return item

    def clear(self) -> int:
        """Drop everything queued (not counted as drops); returns how many."""
        with self._cv:
            n = len(self._items)
            self._items.clear()
            self._short_at = time.monotonic()
            return n

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._cv:
            return len(self._items)


class RateLimitedLog:
    """Logs each message key at most once per `period` seconds, counting what it suppressed; a
    logging call never raises.

    rclpy remembers the severity, name and filters of each *call site* (file and line) and raises
    `ValueError('Logger severity cannot be changed between calls.')` when one line logs at two
    severities; an earlier version shared one line between an error and a warning logger and the
    worker died of it. So every severity below has its own call line, and should the logger still
    fail, the text goes to stderr instead.

    Args:
        logger: an rclpy logger (or anything with `error`, `warning`, `info`).
        period: seconds between two messages of one key.
    """

    def __init__(self, logger: Any, period: float = 5.0) -> None:
        self.logger = logger
        self.period = float(period)
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()
        self.errors = 0  # error() calls, logged or not (the input errors on /diagnostics)
        self.last_error: str | None = None
        #: what is on /diagnostics: the causes named in a WARN that hold now (each check reports there), and
        #: the events this log's `warning` and `error` record
        self.problems = CurrentProblems(lambda key, message: self.warning(key, message, summary=""))

    def admit(self, key: str, message: str) -> str | None:
        """The text to log now for `key`, or None (within `period`: counted)."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            self._last[key] = now
            n = self._suppressed.pop(key, 0)
        return message + (f" ({n} more since last report)" if n else "")

    def error(self, key: str, message: str, summary: str | None = None) -> bool:
        """Log an error under `key` unless one was logged within `period`; returns whether it was. Each call is
        an event on /diagnostics too (`CurrentProblems.event`, kind: `key` up to its first ':'), named by
        `summary` (one text per cause: the status message should not change with every event; None: the
        message), or none where `summary` is "" (a condition, or a count the status names by its own rule)."""
        self.errors += 1
        self.last_error = message
        self._record(key, message, summary)
        text = self.admit(key, message)
        if text is None:
            return False
        try:
            self.logger.error(text)
        except Exception as err:
            _fallback("ERROR", text, err)
        return True

    def warning(self, key: str, message: str, summary: str | None = None) -> bool:
        """As `error`, at WARN."""
        self._record(key, message, summary)
        text = self.admit(key, message)
        if text is None:
            return False
        try:
            self.logger.warning(text)
        except Exception as err:
            _fallback("WARN", text, err)
        return True

    def _record(self, key: str, message: str, summary: str | None) -> None:
        if summary != "":
            self.problems.event(key.split(":")[0], message if summary is None else summary)

    def info(self, key: str, message: str) -> bool:
        """As `error`, at INFO."""
        text = self.admit(key, message)
        if text is None:
            return False
        try:
            self.logger.info(text)
        except Exception as err:
            _fallback("INFO", text, err)
        return True


def _fallback(severity: str, text: str, err: Exception) -> None:
    """The logger failed: the message still reaches the console."""
    with contextlib.suppress(Exception):  # a closed stderr: nothing more can be done, the worker goes on
        print(f"[{severity}] {text} (logging failed: {err!r})", file=sys.stderr, flush=True)


class SupervisedWorker(Generic[T]):
    """One thread that takes items from a queue and hands each to `process`; no exception ends it.

    Args:
        queue: where the items come from.
        process: called with each item, in this thread.
        on_error: called with the item and the exception when `process` raised (report it, reset
            the stream); an exception from it is printed to stderr and the loop goes on.
        name: the thread's name.
        on_idle: called in the thread every `idle_s` while the queue is empty and open.
        on_end: called in the thread once the queue is closed and every item in it processed
            (`finish`), not after `join` or an abandoned `finish`.
        idle_s: how often `on_idle` is called while idle.
        context: entered by the thread around all of the above (the node's `logging_as`).
    """

    def __init__(
        self,
        queue: DropOldestQueue[T],
        process: Callable[[T], None],
        on_error: Callable[[T, BaseException], None],
        name: str = "vdepth-worker",
        *,
        on_idle: Callable[[], None] | None = None,
        on_end: Callable[[], None] | None = None,
        idle_s: float = 0.1,
        context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        self.queue, self._process, self._on_error = queue, process, on_error
        self._context = context
        self._on_idle, self._on_end, self.idle_s = on_idle, on_end, float(idle_s)
        self.stop = threading.Event()
        self.busy = threading.Event()  # inside `process`: a window may be running
        self.errors = 0
        # a hook's failure, into the log of the node whose `context` the thread runs in (`python_logs`),
        # rate-limited: `on_idle` runs every `idle_s`
        self._hook_log = RateLimitedLog(logging.getLogger(__name__))
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        with self._context():
            self._loop()

    def _loop(self) -> None:
        while not self.stop.is_set():
            item = self.queue.get(timeout=self.idle_s)
            if item is None and self.queue.closed:  # input stopped and nothing left
                if self._on_end is not None and not self.stop.is_set():
                    self._call(self._on_end)
                return
            if item is None:
                if self._on_idle is not None and not self.stop.is_set():
                    self._call(self._on_idle)
            elif not self.stop.is_set():
                self.handle(item)

    def _call(self, hook: Callable[[], None]) -> None:
        """`on_idle` / `on_end` (they report their own errors): whatever escapes is logged (rate-limited; on
        stderr only should logging fail), never raised."""
        self.busy.set()
        try:
            hook()
        except BaseException as err:
            self.errors += 1
            what = "on_end" if hook is self._on_end else "on_idle"
            self._hook_log.error(
                f"{what}:{type(err).__name__}",
                f"the depth worker failed between frames ({what}: {type(err).__name__}: {err}); it goes on",
            )
        finally:
            self.busy.clear()

    def handle(self, item: T) -> None:
        """Process one item in the calling thread; whatever it raises is reported, never raised."""
        self.busy.set()
        try:
            self._process(item)
        except BaseException as err:  # supervised: even SystemExit from a bug is reported, not fatal
            self.errors += 1
            try:
                self._on_error(item, err)
            except Exception as report_err:
                _fallback("ERROR", f"the depth worker failed on a frame: {err!r}", report_err)
        finally:
            self.busy.clear()

    def finish(self, timeout: float | None = None, hurry: threading.Event | None = None) -> bool:
        """Process what is queued, then `on_end`, then stop (the queue is closed), waiting at most
        `timeout` seconds (None: as long as it takes) or until `hurry` is set; then whatever is left
        is abandoned (the item in progress ends in the background, nothing more is taken). True if
        the thread has ended."""
        self.queue.close()
        if not self._thread.is_alive() and self._thread.ident is None:  # never started (tests): here
            self._run()
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._thread.is_alive():
            if (hurry is not None and hurry.is_set()) or (deadline is not None and time.monotonic() >= deadline):
                self.stop.set()
                break
            self._thread.join(timeout=0.05)
        return not self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Stop after the item in progress (the queue is closed); True if the thread has ended."""
        self.stop.set()
        self.queue.close()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
        return not self._thread.is_alive()
