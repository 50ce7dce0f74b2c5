"""How a run of several ranks stops early: a rank stalled waiting for its data ends the run (the others
end as after any rank's failure), and SIGINT or SIGTERM stops every rank after the same step with a
checkpoint.

A mixin of `trainer.Trainer`, which sets the attributes these steps read (`train_cfg`, `output_dir`,
`_waiting`, `_save_seconds`, `_step_seconds`, `_exchange_lock`, `_steps_over`) and the flags they set
(`_stop_requested`, read by the step loop, `steps.StepLoop`; `_in_exchange` and `_ending_in_thread`, of a SIGTERM at
start-up).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vdepth_training.checkpoints import resume_hint
from vdepth_training.ranks import (
    StoppedWithoutCheckpointError,
    TerminatedError,
    TrainingFailedError,
    end_rank,
    first_to_say,
    launcher_grace_seconds,
    leave_failure_note,
    say_end,
)

from vdepth_ros.errors import ConfigError

log = logging.getLogger("vdepth_training")


@contextmanager
def sigterm_ignored() -> Iterator[None]:
    """SIGTERM ignored in the main thread while this rank finds out why it ends (`ranks.end_rank` waits up to
    `PEER_NOTE_WAIT_S` for another rank's note), then as before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


#: seconds a DeepSpeed start may spend building its ops before `build_lock_watch` names the locks it may wait on
BUILD_LOCK_WARN_S = 60.0


def torch_build_locks() -> list[Path]:
    """The lock files in torch's folder of JIT-built extensions (`TORCH_EXTENSIONS_DIR`, else
    ~/.cache/torch_extensions/py<ver>_<device>/): one per op being built, or left by a build that was killed."""
    from torch.utils.cpp_extension import get_default_build_root

    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())
    return sorted({*root.glob("*/lock"), *root.glob("*/*/lock")})


@contextmanager
def build_lock_watch(seconds: float = BUILD_LOCK_WARN_S) -> Iterator[None]:
    """DeepSpeed's start JIT-builds its ops (on CPU ranks its shared-memory op, ~1 min on 2 cores) under a lock
    file in torch's extensions folder, which every run and checkout of the machine shares. A build killed before
    it ended (a timeout, SIGKILL) leaves the file, and every later start waited on it forever, in silence (torch
    polls it). A start still inside after `seconds` names the lock files there in one warning per node."""

    ended = threading.Event()

    def warn() -> None:
        locks = torch_build_locks()
        if locks and not ended.is_set():  # (a timer that fired as the start ended stays silent)
            line = (f"DeepSpeed's start has waited {seconds:.0f} s in building its ops, which waits on "
                    f"{', '.join(map(str, locks))} until the process building there ends: if no compiler runs "
                    "on this node, a build killed before it ended left the file: delete it")  # fmt: skip
            if first_to_say(line):
                log.warning(line)

    timer = threading.Timer(seconds, warn)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        ended.set()
        timer.cancel()


def _wait_to_be_ended() -> None:
    """Block this (main) thread for good: another thread says this rank's line and ends the process."""
    while True:
        time.sleep(60)


class RunStops:
    """Mixed into `trainer.Trainer`: the stall watch and the signal handlers around its steps."""

    @contextmanager
    def _watch_for_stalls(self, acc: Any) -> Iterator[None]:
        """On a rank of several, end the run when this rank has waited `training.stall_timeout`
        seconds for one batch (a loader hung on a network disk, a worker stuck): the other ranks
        would wait in their next collective for the process group's timeout (30 min) without a word.
        A thread watches the wait; the main thread, blocked in the loader, cannot. The rank leaves its
        note for the others, says one line (exit code 1) and exits; the others then end as after any
        rank's failure. Only the wait for data is timed: a long step, save or rendering is not a stall."""
        timeout = float(self.train_cfg.get("stall_timeout") or 0)
        if acc.num_processes == 1 or timeout <= 0:
            yield
            return
        done = threading.Event()

        def watch() -> None:
            while not done.wait(min(5.0, timeout / 4)):
                waiting = self._waiting
                if waiting is None or time.monotonic() - waiting[0] < timeout:
                    continue
                what = (f"rank {acc.process_index} of {acc.num_processes} stalled: it waited {timeout:.0f} s for "
                        f"{waiting[1]} (its data loader: a hung disk or worker?; training.stall_timeout)")  # fmt: skip
                leave_failure_note(acc.process_index, what)
                log.error("%s", what)
                failed = TrainingFailedError(f"{what}; the other ranks stop; {resume_hint(self.output_dir)}")
                code = say_end(failed, self.output_dir)
                sys.stdout.flush()
                os._exit(code)  # the main thread is blocked in the loader: nothing else ends it

        thread = threading.Thread(target=watch, name="vdepth-stall-watch", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()

    @contextmanager
    def _terminated_as_error(self) -> Iterator[None]:
        """Before the steps (start-up: the checks, the process group, the model), SIGTERM raises
        `TerminatedError` instead of ending the process in silence: the launcher sends it to the
        survivors when a rank ended, or when the launcher serving its store did, and the rank then says
        why in one line (`ranks.end_rank`); there is nothing to save yet. A rank blocked in an exchange
        with the others (`_exchange`: Python runs no handler until it returns, and the launcher kills
        the rank after its grace) is ended by a thread instead, which the signal wakes
        (`signal.set_wakeup_fd`): it says the same line and exits (`_end_in_exchange`). SIGINT is left
        alone: Ctrl-C at start-up stops at once (KeyboardInterrupt). Only where Python's own handler is in place."""
        ours = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        if threading.current_thread() is not threading.main_thread() or not ours:
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self._ending_in_thread:  # the exchange returned as the thread ends this rank: it says the line
                _wait_to_be_ended()
            if sys.exc_info()[1] is None:  # else this rank is already ending with an error: its line first
                raise TerminatedError

        signal.signal(signal.SIGTERM, handler)
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        before = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        watcher = threading.Thread(target=self._watch_terminated, args=(wake_read,), name="vdepth-sigterm-watch",
                                   daemon=True)  # fmt: skip
        watcher.start()
        try:
            yield
        finally:
            signal.set_wakeup_fd(before)
            os.close(wake_write)  # the watcher reads the end of the pipe and stops
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def _watch_terminated(self, wake_read: int) -> None:
        """Read the signals that woke the pipe of `_terminated_as_error`; a SIGTERM that finds the main thread
        in an exchange (`_exchange`) ends this rank here (`_end_in_exchange`)."""
        try:
            while chunk := os.read(wake_read, 64):
                if signal.SIGTERM not in chunk:
                    continue
                with self._exchange_lock:
                    if self._in_exchange is None or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
                        continue  # the main thread runs Python: its handler raises TerminatedError
                    self._ending_in_thread = True
                self._end_in_exchange()
        finally:
            os.close(wake_read)

    def _end_in_exchange(self) -> None:
        """Say this rank's line for a SIGTERM in an exchange (as `trainer.Trainer._ended_as_one` would once
        the exchange returned: `ranks.end_rank` names the rank that ended, or why the launcher ended this
        one) and exit: the main thread is blocked in the exchange."""
        code = 143
        try:
            try:
                end_rank(TerminatedError(), rank=int(os.environ.get("RANK", "0")),
                         world=int(os.environ.get("WORLD_SIZE", "1")), doing=str(self._in_exchange), step=None,
                         stop_requested=False, collective_timeout=self.train_cfg.get("collective_timeout"),
                         output_dir=self.output_dir)  # fmt: skip
            except (StoppedWithoutCheckpointError, ConfigError) as err:
                code = say_end(err, self.output_dir)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    @contextmanager
    def _exchange(self, doing: str) -> Iterator[None]:
        """An exchange between the ranks before the steps (`doing`: the process group's start, the ranks
        comparing their data, a barrier), in which this rank may wait for another for a long time: a SIGTERM
        then ends it at once (`_terminated_as_error`)."""
        self._doing = doing
        with self._exchange_lock:
            self._in_exchange = doing
        try:
            yield
        finally:
            with self._exchange_lock:
                self._in_exchange = None
                ending = self._ending_in_thread
            if ending:  # the exchange returned as the watcher ends this rank: it says the line
                _wait_to_be_ended()

    @contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """While the steps and their checkpoints run, a first SIGINT (Ctrl-C) or SIGTERM (what
        SLURM sends at a time limit or a preemption, what torchrun forwards to its ranks) asks to
        stop after the current step: the ranks agree on it through the step's reduction (`_step`),
        so all stop at the same step and save one checkpoint. A repeat of SIGINT within 2 s is the
        same Ctrl-C forwarded by torchrun to its ranks; a later one aborts at once
        (KeyboardInterrupt). A repeated SIGTERM (SLURM signals every process of the step, torchrun
        forwards it again) never interrupts the checkpoint. Only where Python's own handlers are in place."""
        ours = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        ours = {sig: default for sig, default in ours.items() if signal.getsignal(sig) is default}
        first: list[float] = []

        def handler(signum: int, frame: Any) -> None:
            now = time.monotonic()
            if first and signum == signal.SIGINT and now - first[0] > 2.0:
                raise KeyboardInterrupt
            if not first:
                first.append(now)
                self._stop_requested = True
                if int(os.environ.get("RANK", "0")) != 0:  # every rank gets it: rank 0 says it once
                    return
                again = " (Ctrl-C again to abort at once)" if signum == signal.SIGINT else ""
                name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
                if self._steps_over:  # the run ends as it would have: its final/ (or --max-steps checkpoint) stays
                    log.warning("%s after the last step: the run ends as planned%s", name, again)
                    return
                grace = launcher_grace_seconds()
                if grace is not None and self._save_seconds:
                    again += (f" (the last save took {self._save_seconds:.0f} s and a step {self._step_seconds:.0f} s; "
                              f"torchrun kills the ranks {grace[0]:.0f} s ({grace[1]}) after its signal)")  # fmt: skip
                log.warning("%s: stopping after this step with a checkpoint%s", name, again)

        for sig in ours:
            signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, default in ours.items():
                signal.signal(sig, default)
