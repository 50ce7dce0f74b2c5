"""What the ranks of one launch tell each other without a collective, and what they know of their launcher.

torchrun (and `accelerate launch`, which runs it) gives each launch attempt a folder shared by the
ranks of a node (`launch_folder`). The ranks leave notes there: why a rank ended
(`leave_failure_note`), what it does now (`note_doing`, read by `late_rank` to name a rank that hung),
and which lines were said already (`first_to_say`: a line every rank or loader worker would say is
said once). `launcher_grace_seconds` is how long torchrun lets a rank save after its SIGTERM.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import weakref
from contextlib import suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

from vdepth_training.checkpoints import resume_hint

from vdepth_ros.errors import ConfigError, VdepthError
from vdepth_ros.offline.runner import cli_errors

log = logging.getLogger("vdepth_training")

PROG = "python -m vdepth_training.train"

#: torchrun's seconds between the SIGTERM it forwards to its ranks and its SIGKILL, when nothing sets them
TORCHRUN_GRACE_SECONDS = 30.0
#: torchrun's flag for that window (both spellings); only the torchrun process sees it (`launcher_grace_seconds`)
_SHUTDOWN_FLAGS = ("--shutdown-timeout", "--shutdown_timeout")


def launch_folder() -> Path | None:
    """torchrun's folder of this launch attempt, shared by the ranks of a node (`TORCHELASTIC_ERROR_FILE`
    is `<folder>/attempt_N/<rank>/error.json`; `accelerate launch` runs torchrun), or None (one
    process, another launcher). The ranks leave notes there without a collective."""
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not error_file or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    return Path(error_file).parent.parent


def first_to_say(line: str, folder: Path | None = None) -> bool:
    """Should this process say `line`? The first process to say a line says it, the others of the same
    `folder` (default `launch_folder`: the ranks of a node and their data-loader workers) do not. They
    agree through a marker file created exclusively, with no collective: a rank stopping before or
    instead of joining the process group can still say it. Without a folder every line is said."""
    folder = folder if folder is not None else launch_folder()
    if folder is None:
        return True
    marker = folder / f"said-{hashlib.sha256(line.encode()).hexdigest()[:20]}"
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    except OSError:
        return True  # no folder to agree through: say it
    return True


def said_folder(owner: object) -> Path:
    """The folder through which a process and the data-loader workers it starts say a line once
    (`first_to_say`): `launch_folder` under torchrun (all ranks of the node too), else a temporary
    folder made now, in the process that makes `owner` (the workers get its path with `owner`),
    removed with `owner` by that process only."""
    folder = launch_folder()
    if folder is not None:
        return folder
    made, pid = Path(tempfile.mkdtemp(prefix="vdepth-said-")), os.getpid()
    weakref.finalize(owner, lambda: os.getpid() == pid and shutil.rmtree(made, ignore_errors=True))
    return made


def _launcher_flag(cmdline: list[str]) -> float | None:
    """The value of torchrun's `--shutdown-timeout` in its command line `cmdline`, or None."""
    for i, arg in enumerate(cmdline):
        name, _, value = arg.partition("=")
        if name in _SHUTDOWN_FLAGS:
            with suppress(ValueError, IndexError):
                return float(value if value else cmdline[i + 1])
    return None


def launcher_grace_seconds() -> tuple[float, str] | None:
    """(seconds, where they come from): how long torchrun (or `accelerate launch`, which runs it) lets a
    rank finish after forwarding a SIGTERM or SIGINT before it SIGKILLs it, by torchrun's order of
    precedence: its `--shutdown-timeout` flag (read from the command line of the rank's parent, the
    torchrun process: the flag is not passed on to the ranks), `PET_SHUTDOWN_TIMEOUT`,
    `TORCH_ELASTIC_SHUTDOWN_TIMEOUT`, else its default of 30 s. None without torchrun."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    with suppress(OSError):
        parent = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode(errors="replace").split("\0")
        if (seconds := _launcher_flag(parent)) is not None:
            return seconds, "--shutdown-timeout"
    for name in ("PET_SHUTDOWN_TIMEOUT", "TORCH_ELASTIC_SHUTDOWN_TIMEOUT"):
        with suppress(KeyError, ValueError):
            return float(os.environ[name]), name
    return TORCHRUN_GRACE_SECONDS, "torchrun's default"


def check_gpus_per_node() -> None:
    """Refuse a launch of more processes on this node than it has GPUs: each rank trains on the GPU of
    its local rank, so the surplus ranks failed at start-up in CUDA's "invalid device ordinal" (a
    traceback per rank) while the others waited for them. The same line on every rank of the node.

    Raises:
        ConfigError: naming the processes, the GPUs seen and the launcher settings that fix it.
    """
    import torch  # here, not at module import: a rank's start-up helpers (`launcher_grace_seconds`) need no torch

    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # set by torchrun and accelerate launch
    if processes <= 1 or not torch.cuda.is_available() or processes <= (gpus := torch.cuda.device_count()):
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    seen = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
    raise ConfigError(
        f"the launcher started {processes} processes on this node but it has {gpus} GPU(s){seen}: each process "
        f"trains on a GPU of its own; start {gpus} per node (torchrun --nproc_per_node {gpus}, accelerate launch "
        f"--num_processes {gpus} on one node; training/launch/one_node.sh: GPUS={gpus}; slurm.sbatch: --gpus-per-node)"
    )


_start_store: list[Any] = []  # [store or None], made once per process (`_launch_store`)
#: seconds a rank tries to reach the launch's store: torchrun's agent serves it from before the ranks start
STORE_CONNECT_S = 10.0
#: seconds a rank that could not start waits for every rank to have read so (`tell_start_failed`)
TOLD_WAIT_S = 20.0


class StoppedWithoutCheckpointError(Exception):
    """This rank could not finish its step because another rank had ended: a collective with it
    failed, or torchrun (which stops the others when one fails) sent SIGTERM. The failing rank said
    why; this one only ends, naming it when the failing rank left its note on this node."""


class TerminatedError(BaseException):
    """SIGTERM before the steps (`stops.RunStops._terminated_as_error`): the launcher ends this rank as
    another one ended, or as its store's host did, or the scheduler cancels the job. A BaseException, as
    KeyboardInterrupt: it is no failure of this rank to tell the others (`tell_start_failed`)."""


def say_end(err: BaseException, output_dir: Path) -> int:
    """Say the one line of a run that ends with `err` (once per node: `first_to_say`) on stderr and return its
    exit code: 2 a mistake in the command, config or data; 1 the run failed (`TrainingFailedError`); 143 this
    rank stopped as another one ended (`StoppedWithoutCheckpointError`); 130 Ctrl-C. A stop names what
    `--resume` would do (`checkpoints.resume_hint`). Anything else is raised again (a traceback: a bug)."""
    if isinstance(err, (VdepthError, FileNotFoundError, FileExistsError)):
        tell_launcher(f"{PROG}: error: {err}")
        return cli_errors(PROG, err) if first_to_say(f"error: {err}") else 2  # one line, exit 2, as every console tool
    if isinstance(err, TrainingFailedError):  # a non-finite loss (said by every rank), or this rank's own failure
        line, key, code = f"{PROG}: error: {err}", f"error: {err}", 1
    elif isinstance(err, StoppedWithoutCheckpointError):  # the rank that failed said why; this one only ends
        line = key = f"{PROG}: {err}; {resume_hint(output_dir)}"
        code = 143
    elif isinstance(err, KeyboardInterrupt):  # Ctrl-C outside the steps (start-up, export) or a second one within
        line = key = f"{PROG}: interrupted; {resume_hint(output_dir)}"
        code = 130
    else:
        raise err
    tell_launcher(line)
    if first_to_say(key):
        print(line, file=sys.stderr, flush=True)
    return code


def tell_launcher(line: str) -> None:
    """Leave this rank's one line where torchrun reads why a rank ended (its `TORCHELASTIC_ERROR_FILE`, the
    file `torch.distributed.elastic`'s `@record` writes a traceback to): torchrun's failure summary then
    shows it instead of "To enable traceback see: ...", and `vdepth_training.torchrun` ends the launch with
    it. Nothing without a launcher, or where the file cannot be written."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        with suppress(OSError):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(json.dumps({"message": line, "timestamp": int(time.time())}))


def store_gone() -> str:
    """Why a rank cannot reach the launch's store (`_launch_store`), in words."""
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    return (f"the launch's store at {where} (torchrun's rendezvous, served by the launcher of the node at "
            "--rdzv_endpoint) cannot be reached: that launcher ended, its node's log says why")  # fmt: skip


def _launch_store() -> Any | None:
    """A client of torchrun's own store (the agent's `TCPStore` every rank of every node reaches, at
    `MASTER_ADDR:MASTER_PORT`), under a prefix of this launch attempt; None without one (one process,
    another launcher): the ranks then start as before, without word.

    Raises:
        StoppedWithoutCheckpointError: the launch has a store and it cannot be reached: the launcher that
            serves it (on the first node) ended; the process group, which starts through it, would fail too.
    """
    import torch  # as in `check_gpus_per_node`

    if not _start_store:
        store = None
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            try:
                address, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
                client = torch.distributed.TCPStore(address, port, is_master=False,
                                                    timeout=timedelta(seconds=STORE_CONNECT_S))  # fmt: skip
            except (KeyError, ValueError):  # no address to reach: start as before
                client = None
            except RuntimeError as err:
                raise StoppedWithoutCheckpointError(f"stopped before training: {store_gone()}") from err
            attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
            store = torch.distributed.PrefixStore(f"vdepth-start/attempt_{attempt}", client) if client else None
        _start_store.append(store)
    return _start_store[0]


def tell_start_failed(err: BaseException) -> None:
    """Tell the ranks of every node that this rank cannot start (its data, its GPUs), before the process
    group exists: they wait for it there without a timeout of their own (30 min), in silence, when it is
    on another node (on one node torchrun ends them). The first rank to fail is the one they name. It then
    waits (at most `TOLD_WAIT_S`) until every rank has read it: the launcher of the first node serves the
    store and ends with its ranks, so a rank there that left at once left the others with nothing to read."""
    with suppress(RuntimeError, StoppedWithoutCheckpointError):  # no store to tell: nothing more to do
        store = _launch_store()
        if store is not None:
            text = str(err).strip().splitlines()
            what = text[0] if text else type(err).__name__
            rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
            store.compare_set("failed", "", f"rank {rank} of {world} could not start: {what}")
            store.add("told", 1)
            deadline = time.monotonic() + TOLD_WAIT_S
            while store.add("told", 0) < world and time.monotonic() < deadline:
                time.sleep(0.1)


def _start_failure(store: Any) -> ConfigError | None:
    """The error naming the rank that told the launch's `store` it could not start, or None."""
    if store.check(["failed"]):
        return ConfigError(f"{store.get('failed').decode()}; the other ranks stop before training")
    return None


def wait_for_ranks_to_start(timeout: float | None) -> None:
    """Wait until every rank has started (opened its data) or one could not (`tell_start_failed`),
    at most `timeout` seconds (None: the process group's 30 min; the process group then waits and
    fails as without this).

    Raises:
        ConfigError: naming the rank that could not start and why (the same line on every rank).
        StoppedWithoutCheckpointError: the launch's store cannot be reached (`store_gone`).
    """
    store = _launch_store()
    if store is None:
        return
    world = int(os.environ.get("WORLD_SIZE", "1"))
    deadline = time.monotonic() + (float(timeout) if timeout else 1800.0)
    try:
        store.add("started", 1)
        while True:
            if (failure := _start_failure(store)) is not None:
                store.add("told", 1)
                raise failure
            if store.add("started", 0) >= world or time.monotonic() > deadline:
                return
            time.sleep(0.1)
    except RuntimeError as err:  # its host is gone: it may have said which rank could not start, first
        raise StoppedWithoutCheckpointError(f"stopped before training: {store_gone()}") from err


def told_start_failure() -> ConfigError | None:
    """The error naming a rank that told the launch's store it could not start (`tell_start_failed`), or None
    (none did, or there is no store to ask)."""
    with suppress(RuntimeError, StoppedWithoutCheckpointError):
        store = _launch_store()
        return _start_failure(store) if store is not None else None
    return None


def store_reachable() -> bool:
    """Can this rank reach the launch's store (`_launch_store`)? True without one (nothing to miss). Asked with
    a connection of its own, not through the store's client: a request on a connection the store's host
    closed is a C++ warning with some 30 frames of c10d's on stderr, above the rank's one line."""
    try:
        if _launch_store() is None:
            return True
        with socket.create_connection((os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])), STORE_CONNECT_S):
            return True
    except (OSError, KeyError, ValueError, RuntimeError, StoppedWithoutCheckpointError):
        return False


#: seconds a rank whose peer on another node ended without a word waits for the store's host to be seen gone
STORE_LOSS_WAIT_S = 5.0


def store_lost(wait: float = 0.0) -> bool:
    """Is the launch's store (`_launch_store`) gone with its host, or does it go within `wait` seconds? A node
    lost takes its ranks and its launcher at once, but a peer's closed connection and the store's refused
    one are seen one after the other, in either order: a rank that asked once, as soon as its exchange with
    the lost rank failed, could still reach the store and named no lost node."""
    deadline = time.monotonic() + wait
    while store_reachable():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _on_several_nodes() -> bool:
    """Do the launch's ranks run on more than this node (torchrun's `WORLD_SIZE` over `LOCAL_WORLD_SIZE`)?"""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world > int(os.environ.get("LOCAL_WORLD_SIZE", world))


def why_terminated() -> str:
    """Why this rank got SIGTERM before training (`TerminatedError`) when no rank told why: the launch's
    store gone with its host, else the launcher or the scheduler."""
    if not store_reachable():
        return store_gone()
    return ("SIGTERM before training: from the launcher, which ends the ranks when one of them ended (its summary "
            "names it), or from the scheduler (the job cancelled or preempted)")  # fmt: skip


def leave_failure_note(rank: int, what: str) -> None:
    """Tell the other ranks of this node why rank `rank` ends (`end_rank` reads the notes from
    `launch_folder`); nothing where there is no such folder or it cannot be written (they then say that
    another rank ended)."""
    folder = launch_folder()
    if folder is not None:
        with suppress(OSError):
            (folder / f"failed-rank{rank}").write_text(what)


def note_doing(rank: int, doing: str) -> None:
    """Leave what rank `rank` does now, and since when, for the other ranks of this node (`launch_folder`):
    a rank whose exchange with the others timed out names the one that hung (`late_rank`)."""
    folder = launch_folder()
    if folder is not None:
        with suppress(OSError):
            (folder / f"doing-rank{rank}").write_text(json.dumps({"doing": doing, "since": time.time()}))


def late_rank(mine: int, world: int, settle: float = 2.0) -> str | None:
    """After rank `mine`'s exchange with the others timed out: `rank r of W, in <doing> for N s` for
    the ranks of this node that did not time out too (the ones that hung), or None. Every rank that
    waited times out at about the same moment and says so (`timedout-rank<r>` in `launch_folder`);
    `settle` seconds later, a rank that has not is the one they waited for."""
    folder = launch_folder()
    if folder is None:
        return None
    with suppress(OSError):
        (folder / f"timedout-rank{mine}").write_text("")
    time.sleep(settle)
    hung = []
    for path in sorted(folder.glob("doing-rank*")):
        with suppress(OSError, ValueError, KeyError):
            rank, note = int(path.name[len("doing-rank") :]), json.loads(path.read_text())
            if rank != mine and not (folder / f"timedout-rank{rank}").exists():
                age = time.time() - float(note["since"])
                hung.append(f"rank {rank} of {world}, in {note['doing']} for {age:.0f} s")
    return "; ".join(hung) or None


class PeerEndedError(RuntimeError):
    """What this rank was doing was undone by another rank's failure, not a failure of its own: the main process
    removed the checkpoint folder its own save failed in (a full disk) while this rank still wrote its part
    into it. `end_rank` takes it as another rank ending (waiting briefly for that rank's note)."""


#: how long a rank whose work another rank's failure undid (`PeerEndedError`) waits for that rank's note
PEER_NOTE_WAIT_S = 10.0


class TrainingFailedError(Exception):
    """The run failed and stopped (its last complete checkpoint is intact): a non-finite loss (the
    same error on every rank), or one rank's own failure under a launcher (out of memory, a disk
    that refuses the checkpoint), named with the rank, what it was doing and the cause."""


#: a collective failed because another rank is gone (gloo and NCCL raise RuntimeError, or torch's DistError)
_PEER_GONE = re.compile(r"gloo|nccl|connection (closed|reset) by peer", re.IGNORECASE)


def _timed_out(err: BaseException | None) -> bool:
    """Is `err` (or what caused it) an exchange between the ranks that timed out (gloo: "Timed out waiting")?"""
    while err is not None:
        if "timed out" in str(err).lower():
            return True
        err = err.__cause__ or err.__context__
    return False


def _one_line(err: BaseException) -> str:
    """`Type: first line of the message` (a CUDA OOM's message runs over several lines)."""
    text = str(err).strip().splitlines()
    first = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\] ", "", text[0] if text else "")  # gloo's source location
    first = first.split(". This is typically caused", 1)[0]  # gloo's advice to read the other rank's log
    return f"{type(err).__name__}: {first}".rstrip(": ")


def _peer_gone(err: BaseException) -> bool:
    """Is `err` (or what caused it) a collective that failed because another rank ended?"""
    import torch  # as in `check_gpus_per_node`

    while err is not None:
        if isinstance(err, (torch.distributed.DistError, PeerEndedError)):
            return True
        if isinstance(err, RuntimeError) and _PEER_GONE.search(str(err)):
            return True
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return False


def end_rank(err: BaseException, *, rank: int, world: int, doing: str, step: int | None, stop_requested: bool,
             collective_timeout: float | None, output_dir: Path) -> None:  # fmt: skip
    """Rank `rank` of `world` (after `step` steps, None: before training; in `doing`) ends with `err`: raise
    StoppedWithoutCheckpointError when another rank ended first (a collective with it failed, or the
    launcher's SIGTERM came: `TerminatedError` before the steps), naming that rank when it left its note on
    this node (or, before training, told the launch's store it could not start: that ConfigError); otherwise
    this rank failed on its own: leave the note for the others, log the traceback and raise TrainingFailedError
    naming the rank, what it was doing and the cause (a ConfigError, a mistake in this rank's data,
    stays itself: it is one line already)."""
    folder = launch_folder()
    stopped = f"stopped after step {step} without a checkpoint" if step is not None else "stopped before training"
    if _peer_gone(err) and _timed_out(err) and not sorted(folder.glob("failed-rank*") if folder else []):
        # no rank ended: one hung (a stuck kernel, disk or lock) and this one waited for it in an exchange
        late = late_rank(rank, world) or "a rank on another node (its log names its step)"
        within = f"{float(collective_timeout):.0f} s" if collective_timeout else "the process group's timeout"
        what = f"{late} did not join the other ranks within {within} (training.collective_timeout): hung?"
        leave_failure_note(rank, what)
    terminated = isinstance(err, TerminatedError)
    if (stop_requested and not isinstance(err, ConfigError)) or _peer_gone(err) or terminated:
        notes = sorted(folder.glob("failed-rank*")) if folder is not None else []
        deadline = time.monotonic() + PEER_NOTE_WAIT_S
        while isinstance(err, PeerEndedError) and folder is not None and not notes and time.monotonic() < deadline:
            time.sleep(0.1)  # (the failing rank is still on its way to leave its note)
            notes = sorted(folder.glob("failed-rank*"))
        if terminated and not notes and (failure := told_start_failure()) is not None:
            raise failure from None  # a rank on another node could not start: its line, on every rank
        # none: the rank was killed (SIGKILL), or it is on another node (its own line names it), or that node was lost
        gone = f"another rank ended without a word on this node (torchrun's summary names it; {_one_line(err)})"
        wait = STORE_LOSS_WAIT_S if _on_several_nodes() else 0.0  # (on one node, its launcher serves the store)
        if not notes and not terminated and store_lost(wait):  # the first node's launcher went with it
            gone = f"another rank ended without a word, and {store_gone()} ({_one_line(err)})"
        why = notes[0].read_text() if notes else (why_terminated() if terminated else gone)
        raise StoppedWithoutCheckpointError(f"{stopped}: {why}") from None if terminated else err
    what = f"rank {rank} of {world} failed in {doing} ({_one_line(err)})"
    leave_failure_note(rank, what)
    if isinstance(err, ConfigError):
        return
    log.error("rank %d failed in %s", rank, doing, exc_info=err)
    raise TrainingFailedError(f"{what}; the other ranks stop; {resume_hint(output_dir)}") from err


__all__ = [
    "PEER_NOTE_WAIT_S",
    "PROG",
    "TORCHRUN_GRACE_SECONDS",
    "PeerEndedError",
    "StoppedWithoutCheckpointError",
    "TerminatedError",
    "TrainingFailedError",
    "check_gpus_per_node",
    "end_rank",
    "first_to_say",
    "late_rank",
    "launch_folder",
    "launcher_grace_seconds",
    "leave_failure_note",
    "note_doing",
    "said_folder",
    "say_end",
    "tell_launcher",
    "tell_start_failed",
    "wait_for_ranks_to_start",
]
