"""The package's Python `logging` records, into the ROS log.

The layers below the node (pipeline, runtime, inputs) know nothing of ROS and log with Python's
`logging`: a scene cut, the working resolution of a stream, the backend `auto` chose, a model that
runs the camera's frames stretched, overlap work not reused. In the node nothing handled those
records, so Python's last-resort handler printed warnings as bare lines on stderr (no severity, not
on /rosout, not in the ROS log files) and dropped everything below WARNING. `forward_python_logging`
hands them to rcutils, so they carry a severity, reach the log files and follow `--log-level`.

Records logged while a node works (its worker thread, its configure/activate/deactivate/cleanup:
`logging_as`) go under that node's child logger (`front.depth_node.vdepth_ros.pipeline`): with
`vdepth-node --cameras front rear` a scene cut, a covered lens's alignment fallback or a stretched
model then names its camera, and only a node's loggers and their children reach /rosout (a bare
`vdepth_ros.pipeline` logger never did). Records outside any node keep their own name.

Each call site is rate-limited as the node's own lines are (`worker.RateLimitedLog`: once per 5 s per
node and call site, then "... (N more since last report)"): the pipeline logs at every stream start
("depth pipeline reset", "stream of WxH frames") and scene cut, so a camera whose resolution alternated
every few frames, or a flickering scene, wrote thousands of lines a minute into the log files and /rosout
of a robot running for hours. The limiter's memory is bounded by the package's call sites (times nodes).

rclpy has no such bridge (its `rclpy.logging` is rcutils only), hence this small handler.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import rclpy.logging

from vdepth_ros.ros.worker import RateLimitedLog

_METHODS = ((logging.ERROR, "error"), (logging.WARNING, "warning"), (logging.INFO, "info"))
_current = threading.local()  # .logger: the node logger this thread's records go under
_children: dict[tuple[str, str], Any] = {}  # kept: a child logger that is collected leaves /rosout
_children_lock = threading.Lock()
_limit = RateLimitedLog(None)  # only its `admit`: one record per node and call site per period, the rest counted


@contextlib.contextmanager
def logging_as(node_logger: Any, on_warning: Callable[[logging.LogRecord], None] | None = None) -> Iterator[None]:
    """Inside, this thread's forwarded records go under `node_logger`'s child of the record's name, and each
    at WARNING or above is also handed to `on_warning` (every one, logged or rate-limited away: the node puts
    it on /diagnostics, a model's fallback at start-up as a start-up warning, one in the worker as an event unless
    it is about a state the status reports as a condition, `pipeline_input.HELD_AS_STATE`)."""
    previous = getattr(_current, "logger", None), getattr(_current, "on_warning", None)
    _current.logger, _current.on_warning = node_logger, on_warning
    try:
        yield
    finally:
        _current.logger, _current.on_warning = previous


def _logger_for(name: str) -> Any:
    """A fresh logger per record (rclpy's refuses another severity from the same call site), under the
    thread's node logger if any; that one's child is made once and kept, which registers it for /rosout."""
    parent = getattr(_current, "logger", None)
    if parent is None:
        return rclpy.logging.get_logger(name)
    with _children_lock:
        key = (parent.name, name)
        if key not in _children:
            _children[key] = parent.get_child(name)
        return rclpy.logging.get_logger(_children[key].name)


class _RosLogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            method = next((name for level, name in _METHODS if record.levelno >= level), "debug")
            parent = getattr(getattr(_current, "logger", None), "name", "")
            text = _limit.admit(f"{parent}:{record.pathname}:{record.lineno}:{method}", self.format(record))
            if text is not None:
                getattr(_logger_for(record.name), method)(text)
        except Exception:  # a log line must never take the node down
            self.handleError(record)
        on_warning = getattr(_current, "on_warning", None)
        if on_warning is not None and record.levelno >= logging.WARNING:
            try:  # (after the line: it is logged whatever this does)
                on_warning(record)
            except Exception:
                self.handleError(record)


def forward_python_logging(package: str = "vdepth_ros") -> None:
    """Forward `package`'s Python log records (INFO and above) to the ROS log; idempotent."""
    logger = logging.getLogger(package)
    if any(isinstance(h, _RosLogHandler) for h in logger.handlers):
        return
    logger.addHandler(_RosLogHandler())  # Python's last-resort handler then stays silent for them
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
