"""Console entry point of the node (`vdepth-node`; `depth_node` under colcon), light on imports.

A launch system may stop the node at any moment, also in the first half second, while Python is
still importing rclpy, numpy and the runtime. Until `vdepth_ros.ros.cli.run` installs the node's
own handlers (which shut down in order), SIGINT and SIGTERM end the process quietly with exit
status 0, as they do later: nothing has started, so there is nothing to shut down. Without this a
SIGINT then printed a KeyboardInterrupt traceback (exit status 1) and a SIGTERM killed the process
by the signal. Only the standard library is imported here, so the handlers are in place before
anything slow runs.
"""

from __future__ import annotations

import signal

#: The signals `_stop_before_start` took. Its SystemExit unwinds the imports, but a library's bare `except:` on the
#: way swallows it and the start-up goes on: `cli.run` stops at once when one is here, or the node ran on, its stop
#: request lost (a node signalled 0.3 s after its spawn at a load of 25 ran for 42 minutes).
STOPS_BEFORE_START: list[str] = []


def _stop_before_start(signum: int, frame: object) -> None:
    STOPS_BEFORE_START.append(signal.Signals(signum).name)
    raise SystemExit(0)  # unwinds the import in progress; no traceback for SystemExit


def main(args: list[str] | None = None) -> int:
    """`vdepth-node`: see `vdepth_ros.ros.cli`."""
    previous = {sig: signal.signal(sig, _stop_before_start) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        from vdepth_ros.ros.cli import run

        code = run(args)
    finally:  # `--help` or a bad argument returns before the node's own handlers replace these
        for sig, handler in previous.items():
            if signal.getsignal(sig) is _stop_before_start:
                signal.signal(sig, handler)
    if args is None:  # run as a program (console script, `python -m`), never under a caller's own process
        _exit_past_abandoned_threads(code)
    return code


def _exit_past_abandoned_threads(code: int) -> None:
    """End the process now, with `code`, when a thread the shutdown abandoned still runs: a worker left
    inside its window after the 5 s the node waits for it at SIGINT (a large model, or a loaded machine),
    or after a second signal. Such a thread is usually inside the model's own code (onnxruntime, torch, with
    threads of their own), and the interpreter's normal exit, which tears down their objects under it,
    aborted the process ("terminate called without an active exception", exit status -6 and a core
    dump) after the node had stopped cleanly. Everything is already published, logged and shut down; the
    process's own output is flushed first. Returns when no such thread is left."""
    import threading

    # the node's own threads only (`SupervisedWorker`: "vdepth-..."): a library's daemon threads (a test
    # runner's, tqdm's) are no reason to leave past the interpreter's exit
    if not any(t.daemon and t.is_alive() and t.name.startswith("vdepth-") for t in threading.enumerate()):
        return
    import contextlib
    import logging
    import os
    import sys

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can be said anyway
            stream.flush()
    os._exit(code)
