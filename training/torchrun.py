"""`python -m vdepth_training.torchrun ARGS`: torchrun (`python -m torch.distributed.run ARGS`, the same
arguments), whose failed launch ends with one line instead of torchrun's traceback.

A launch whose rank ended with an error (a mistake in the config, a rank's failure, a node lost) printed the
rank's one line, then torchrun's own traceback and failure table, some 40 lines that buried it. Here the
launch ends with `torchrun: rank R (the first to leave its line, else the first to end) exited with code C: <its line>`
(the line the rank left for torchrun, `ranks.tell_launcher`) and the exit code of that rank (2 a mistake,
1 a failure, 143 stopped by another rank, as the training command's own), or 128 + the signal that stopped
the launcher (SIGTERM: 143; 0 where every rank still completed the run: a SIGTERM in its last step, which torchrun
ended with its traceback or 143 although `final/` was written). `training/launch/` scripts run it.

A launcher that loses its rendezvous (the store served by the first node's launcher: that node lost, or its
launcher ended) ends its ranks as after a rank's failure and ends with the first rank's line too
(`_ranks_end_when_the_rendezvous_is_lost`), where torchrun raised `RendezvousConnectionError` (its traceback)
whenever its poll of the store came before it saw its own ranks end.
"""

from __future__ import annotations

import os
import sys
from typing import Any

#: torchrun's `error_file` of a rank that left none
NO_FILE = "<N/A>"


#: the agent of this launch (`_ranks_end_when_the_rendezvous_is_lost`), for its ranks' exit codes after a signal
_agents: list[Any] = []


def _ranks_exit_codes() -> list[int | None]:
    """The exit codes of this launcher's ranks (None: still running), or [] where torch's agent does not say."""
    try:
        handlers = _agents[0]._pcontext.subprocess_handlers
        return [handler.proc.poll() for handler in handlers.values()]
    except (IndexError, AttributeError):
        return []


def _ranks_end_when_the_rendezvous_is_lost() -> None:
    """Make torchrun's agent (in this process only) end as after a rank's failure when its rendezvous is lost
    while its ranks run. Its monitoring loop polls the rendezvous's store between checks of its ranks; when
    the store's host is gone it raised, SIGTERMed its ranks on the way out and ended in a traceback, so
    whether the launch ended with its failing rank's line or with torchrun's traceback depended on which
    of the two it saw first (on a loaded node, the poll). Now it stops its ranks as torchrun does for a
    failure (SIGTERM, its `--shutdown-timeout`, then SIGKILL) and returns their failures: `main` then
    names the rank's line either way. A loss with no rank failed (they ended well) is raised as before."""
    from torch.distributed.elastic.agent.server.api import RunResult, SimpleElasticAgent, WorkerState
    from torch.distributed.elastic.rendezvous.api import RendezvousError, RendezvousGracefulExitError

    if not all(hasattr(SimpleElasticAgent, name) for name in ("_invoke_run", "_shutdown", "_monitor_workers")):
        return  # a torch whose agent has other private methods: its own ending (the traceback), not a broken launch
    invoke_run = SimpleElasticAgent._invoke_run
    if getattr(invoke_run, "ends_ranks_on_rendezvous_loss", False):
        return

    def _invoke_run(self: SimpleElasticAgent, role: str = "default") -> RunResult:
        _agents[:] = [self]
        try:
            return invoke_run(self, role)
        except RendezvousGracefulExitError:
            raise
        except RendezvousError:
            if getattr(self, "_pcontext", None) is None:  # no ranks started yet: nothing of theirs to name
                raise
            self._shutdown(timeout=self._shutdown_timeout)  # the ranks say why they end (their error files)
            result = self._monitor_workers(self._worker_group)
            if not result.is_failed():
                raise
            self._worker_group.state = WorkerState.FAILED
            return result

    _invoke_run.ends_ranks_on_rendezvous_loss = True  # type: ignore[attr-defined]
    SimpleElasticAgent._invoke_run = _invoke_run  # type: ignore[method-assign]


def _rendezvous_port_taken(args: Any) -> str | None:
    """Why this launcher must not start: it is to serve the rendezvous (its endpoint is this machine, and for
    torchrun's default `static` backend, it is node 0; for c10d, a launch of one node) on a port another process
    listens on, or None. torchrun's c10d agent then silently joined the store of whatever served it, e.g. another
    job's launcher on a shared node (`slurm.sbatch`'s port was 29500 for every job), and its ranks were killed when
    that job ended; the static agent failed in a traceback. A c10d launch of several nodes may have two of them on
    one machine, the second joining the first's store as it must: those are let through (refused, they never met:
    test_training_rank_faults' two-node tests); `slurm.sbatch` gives each job a port of its own for them."""
    import socket

    from torch.distributed.elastic.rendezvous.utils import _matches_machine_hostname, parse_rendezvous_endpoint
    from torch.distributed.run import get_rdzv_endpoint, parse_min_max_nnodes

    if args.standalone or (args.rdzv_backend == "static" and int(args.node_rank or 0) != 0):
        return None  # (a free port of its own; another node serves it)
    if args.rdzv_backend != "static" and parse_min_max_nnodes(args.nnodes)[1] > 1:
        return None  # (another node's launcher of this launch may serve it on this machine: c10d joins it, as it must)
    endpoint = get_rdzv_endpoint(args)
    try:
        host, port = parse_rendezvous_endpoint(endpoint, default_port=29400)
    except ValueError:
        return None  # torchrun says what is wrong with it
    if port == 0 or not _matches_machine_hostname(host):
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed run's TIME_WAIT is no listener
        try:
            probe.bind(("", port))
        except OSError as err:
            return (f"the rendezvous endpoint {endpoint} is this node's and its port {port} is in use "
                    f"({err.strerror}): another process listens there (another job's launcher?), whose rendezvous "
                    "this launch would join; give it another port "
                    "(MASTER_PORT=... for training/launch/slurm.sbatch, --rdzv_endpoint HOST:PORT or --master_port for "
                    "torchrun; one node alone: --standalone)")  # fmt: skip
    return None


def main(argv: list[str] | None = None) -> int:
    """Run torchrun with `argv` (default: the command line); returns the launch's exit code."""
    # The agent's own C++ warnings (c10d's "recvValue failed" with ~30 C++ frames when another node's
    # launcher is gone) go; its ranks, started after this, keep the user's level (read when torch loads)
    quiet = "TORCH_CPP_LOG_LEVEL" not in os.environ
    if quiet:
        os.environ["TORCH_CPP_LOG_LEVEL"] = "ERROR"
    import torch  # noqa: F401 - loaded here, at the agent's level

    if quiet:
        del os.environ["TORCH_CPP_LOG_LEVEL"]
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    _ranks_end_when_the_rendezvous_is_lost()
    args = parse_args(argv)
    if (taken := _rendezvous_port_taken(args)) is not None:
        print(f"torchrun: {taken}", file=sys.stderr, flush=True)
        return 2
    try:
        run(args)  # torchrun's `main` without `@record`, which re-raises into a traceback
    except ChildFailedError as err:
        told = {r: f for r, f in err.failures.items() if f.error_file != NO_FILE}  # ranks that left their line
        rank, failure = min(told.items(), key=lambda rf: (rf[1].timestamp, rf[0])) if told else err.get_first_failure()
        if failure.exitcode < 0:
            how = f"was killed by {failure.signal_name()}" + (" (out of memory?)" if failure.exitcode == -9 else "")
        else:
            how = f"exited with code {failure.exitcode}"
        said = failure.message if isinstance(failure.message, str) else failure.message.get("message", "")
        print(f"torchrun: rank {rank} {how}: {said if told else 'its output above says why'}", file=sys.stderr,
              flush=True)  # fmt: skip
        return failure.exitcode if 0 < failure.exitcode < 256 else 1
    except SignalException as err:  # the scheduler's SIGTERM (preemption, time limit), Ctrl-C: forwarded to the ranks
        codes = _ranks_exit_codes()
        if codes and all(code == 0 for code in codes):  # it came in the run's last step: the ranks completed it
            print(f"torchrun: {err.sigval.name} came as the run ended: every rank completed it (exit code 0)",
                  file=sys.stderr, flush=True)  # fmt: skip
            return 0
        print(f"torchrun: stopped by {err.sigval.name}; the ranks' lines above say where", file=sys.stderr, flush=True)
        return 128 + int(err.sigval)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
