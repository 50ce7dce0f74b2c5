"""The package's Python `logging` records, into the ROS log.

The layers below the node (pipeline, runtime, inputs) know nothing of ROS and log with Python's
`logging`: a scene cut, the working resolution of a stream, the backend `auto` chose, a model that
runs the camera's frames stretched, overlap work not reused. In the node nothing handled those
records, so Python's last-resort handler printed warnings as bare lines on stderr (no severity, not
on /rosout, not in the ROS log files) and dropped everything below WARNING. `forward_python_logging`
hands them to rcutils under the record's own logger name (`vdepth_ros.pipeline`, ...), so they
carry a severity, reach /rosout and the log files, and follow `--log-level`.

rclpy has no such bridge (its `rclpy.logging` is rcutils only), hence this small handler.
"""

from __future__ import annotations

import logging

import rclpy.logging

_METHODS = ((logging.ERROR, "error"), (logging.WARNING, "warning"), (logging.INFO, "info"))


class _RosLogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            method = next((name for level, name in _METHODS if record.levelno >= level), "debug")
            getattr(rclpy.logging.get_logger(record.name), method)(self.format(record))
        except Exception:  # a log line must never take the node down
            self.handleError(record)


def forward_python_logging(package: str = "vdepth_ros") -> None:
    """Forward `package`'s Python log records (INFO and above) to the ROS log; idempotent."""
    logger = logging.getLogger(package)
    if any(isinstance(h, _RosLogHandler) for h in logger.handlers):
        return
    logger.addHandler(_RosLogHandler())  # Python's last-resort handler then stays silent for them
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
