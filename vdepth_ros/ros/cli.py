"""`vdepth-node`: the process around the depth node(s): arguments, start-up checks, spin, clean exit.

Exit status: 0 after SIGINT/SIGTERM (what a launch system sends), 2 when the node cannot start
(one line on stderr, `invalid configuration: ...` or `cannot start: <file>: <reason>`, no traceback).

Shutdown is ordered so nothing publishes into a dead context (rclpy's own SIGINT handler shuts the
context down at once, while the worker may be publishing a window): rclpy's handlers are off, and
on a signal the process stops taking input, lets the worker finish the frames queued and publish
every frame the stream holds, as at the end of a bag (or abandons them after a few seconds, or at a
second signal), then destroys the nodes, the executor and the context. A signal
before that, while the model loads and warms up, stops the start-up at once (exit 0, one line);
during the imports before this module runs, `vdepth_ros.ros.entry` does the same.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import rclpy

from vdepth_ros.errors import ConfigError, VdepthError
from vdepth_ros.paths import config_dir
from vdepth_ros.ros import startup
from vdepth_ros.ros.entry import STOPS_BEFORE_START
from vdepth_ros.ros.startup import (
    CLOCK,
    StartupError,
    check_domain_id,
    check_params_files,
    check_ros_rules,
    ignored_ros_namespace,
    params_files,
    unused_node_rules,
    unused_params_file_sections,
)
from vdepth_ros.ros.transport import use_large_segment_profile

DESCRIPTION = """Live video depth: subscribes to image (+ camera_info, optional sparse_depth or camera_pose),
publishes depth, disparity, points, depth/camera_info, depth/image_rect (depth again, where RViz and
depth_image_proc look for the image of depth/camera_info) and /diagnostics. Parameters and topics:
docs/node.md; defaults: {params_file}.
ROS arguments go after --ros-args: [--params-file FILE] [-p NAME:=VALUE] [-r FROM:=TO] ..."""

EPILOG = """per-camera parameters go in /front/depth_node: sections of the params file (docs/node.md);
remap a camera's topics with full names: -r /front/image:=/cam_front/image_rect"""

PARAMETERS_HEADING = """parameters (-p NAME:=VALUE, or a params file's /**: ros__parameters: section), each with
its type and default; "runtime": applied at once when set on the running node through its SetParameters
service (rqt_reconfigure; with a ROS distro install, ros2 param set /depth_node NAME VALUE; without the ros2
CLI, this command, VALUE a Python value such as True, 5.0 or 'text', on the node's ROS_DOMAIN_ID:
{set_command}
), every other needs a restart; what each does: docs/node.md, Parameters:"""


def _epilog() -> str:
    """The parameters of depth_node with their defaults, then the per-camera notes."""
    from vdepth_ros.node_params import node_param_specs, parameter_lines, set_parameter_command

    heading = PARAMETERS_HEADING.format(set_command=set_parameter_command("/depth_node", "NAME", "VALUE"))
    return "\n".join([heading, *parameter_lines(node_param_specs()), "", EPILOG])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vdepth-node",
        usage="vdepth-node [--managed] [--cameras NAME [NAME ...]] [--ros-args ...]",
        # the bundled file's own path: a pip install keeps it under <venv>/share, which users do not guess
        description=DESCRIPTION.format(params_file=config_dir() / "depth.yaml"),
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--cameras",
        nargs="+",
        action="extend",  # `--cameras front --cameras rear` is both, not only the last
        metavar="NAME",
        default=[],
        help="one depth_node per camera, in namespaces /NAME (topics /front/image -> /front/depth, ...), "
        "sharing one loaded model",
    )
    p.add_argument(
        "--managed",
        action="store_true",
        help="a ROS 2 managed (lifecycle) node: starts unconfigured and waits for the configure / activate "
        "transitions (e.g. from Nav2's lifecycle_manager)",
    )
    return p


class StartupInterrupted(BaseException):
    """A signal while the nodes are still being built (model load, warm-up), or while a managed node's
    configure loads its model: unwinds the start-up (or the configure) at once. A BaseException, so no
    `except Exception` on the way turns it into a load error. Args: the signal's name, and what it
    stopped."""


#: A signal this soon after the first is the same request delivered twice, not a second one: Ctrl-C reaches every
#: process of the terminal's process group, and `ros2 launch --noninteractive` (launch_testing, a service) then
#: forwards its own SIGINT to each of them too (launch's ExecuteLocal: `send_sigint=not due_to_sigint or
#: noninteractive`); taken as "stop at once", it abandoned the frames the node still held.
SAME_REQUEST_S = 0.3


class ShutdownRequest:
    """SIGINT/SIGTERM set a flag (and wake the executor); the main loop then shuts down in order.

    While `starting` (the model loads and warms up in the main thread, which can take many seconds
    for a large model, longer than a launch system waits before it escalates to SIGKILL) a signal
    instead raises `StartupInterrupted`: nothing is published yet, so nothing needs an ordered stop.
    So does a signal while a managed node's configure loads the model (`loading`: a lifecycle manager
    configures it at any time, e.g. as the launch system stops the robot), which would otherwise be
    acted on only once the load and warm-up had finished. A second signal while the nodes stop (they
    publish what the stream holds, for a few seconds at most) stops them at once: nothing more is
    published or waited for (`hurry_up`); one within `SAME_REQUEST_S` of the first is that one again."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.executor: Any = None
        self.signal: str | None = None
        self.starting = True
        self.unwinding = False
        self.nodes: list[Any] = []
        self.first_at = 0.0  # time.monotonic() of the first signal

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    @staticmethod
    def stop_if_signalled_before() -> None:
        """Raises StartupInterrupted where a signal came before these handlers and a library swallowed its unwinding
        (`entry.STOPS_BEFORE_START`)."""
        if STOPS_BEFORE_START:
            raise StartupInterrupted(STOPS_BEFORE_START[0], "during start-up (nothing was published)")

    def _handle(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if self.event.is_set() and now - self.first_at < SAME_REQUEST_S:
            return  # one Ctrl-C delivered twice (the terminal's process group, and `ros2 launch --noninteractive`)
        self.signal = signal.Signals(signum).name
        if not self.event.is_set():
            self.first_at = now
        if self.event.is_set() and not self.starting:  # the second: no more waiting
            for node in self.nodes:
                if hasattr(node, "hurry_up") and getattr(node, "_configured", False):
                    node.hurry_up()
        self.event.set()
        loading = [node for node in self.nodes if getattr(node, "loading", False)]
        if self.starting or (loading and not self.unwinding):
            what = "during start-up (nothing was published)"
            if not self.starting:
                what = f"while {loading[0].get_fully_qualified_name()} was configuring (loading its model)"
            self.starting, self.unwinding = False, True  # a second signal while unwinding only sets the flag
            raise StartupInterrupted(self.signal, what)
        if self.executor is not None:
            self.executor.wake()


def _init_rclpy(argv: list[str]) -> None:
    """rclpy with its signal handlers off (ours order the shutdown).

    Raises:
        StartupError: rcl refused the ROS arguments.
    """
    from rclpy.signals import SignalHandlerOptions

    try:
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as err:  # RCLInvalidROSArgsError and friends: a bad --ros-args section
        raise StartupError(f"ROS arguments {' '.join(argv[1:])!r}: {' '.join(str(err).split())}") from None


def _spin(nodes: list[Any], shutdown: ShutdownRequest) -> None:
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    executor = SingleThreadedExecutor()  # callbacks only enqueue; each node's worker thread does the work
    shutdown.executor = executor
    for node in nodes:
        executor.add_node(node)
    try:
        while not shutdown.event.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    finally:
        for node in nodes:
            node.stop_input()  # 1. no new frames
        executor.shutdown(timeout_sec=1.0)


def _close(nodes: list[Any], pool: Any) -> None:
    """2. finish or abandon the windows in progress, stop the workers, destroy the nodes; 3. the context."""
    for node in nodes:
        try:
            node.close()
        except Exception as err:  # the others must still be closed; one line, not a traceback
            print(f"depth_node: closing {node.get_name()}: {err!r}", file=sys.stderr)
    if pool is not None:
        pool.close()
    if rclpy.ok():
        rclpy.shutdown()


def run(args: list[str] | None = None) -> int:
    """`vdepth-node [--managed] [--cameras ...] --ros-args --params-file config/depth.yaml ...`."""
    from rclpy.utilities import remove_ros_args

    from vdepth_ros.ros.cameras import build_nodes, warn_every_camera

    CLOCK.imports_done()
    argv = list(sys.argv if args is None else args)
    try:
        check_ros_rules(argv)  # before rcl parses them (it would raise RCLInvalidROSArgsError, in its words)
        check_params_files(argv)
        check_domain_id(os.environ)
        own_args = remove_ros_args(args=argv)[1:]
    except StartupError as err:
        print(f"cannot start: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # rcl refused the --ros-args section
        print(f"cannot start: ROS arguments: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    options = _own_options(argv, own_args)
    if isinstance(options, int):
        return options
    shutdown = ShutdownRequest()
    shutdown.install()
    nodes: list[Any] = []
    pool = None
    try:
        shutdown.stop_if_signalled_before()
        t0 = time.monotonic()
        transport = use_large_segment_profile(os.environ, Path.cwd())  # before rclpy creates the participant
        _init_rclpy(argv)
        CLOCK.add("rclpy init", time.monotonic() - t0)
        startup.ROS_ARGV[:] = argv  # its params files (a relative `model:` in one is relative to its folder)
        nodes, pool = build_nodes(options.cameras, managed=options.managed)
        if transport:
            nodes[0].get_logger().info(transport)
        names = [n.get_fully_qualified_name() for n in nodes]
        warnings = unused_params_file_sections(params_files(argv), names) + unused_node_rules(argv, names)
        for warning in warnings + ignored_ros_namespace(os.environ, names):
            warn_every_camera(nodes, warning)
        shutdown.nodes = nodes
        shutdown.starting = False
        _spin(nodes, shutdown)
    except StartupInterrupted as stop:
        print(f"vdepth-node: stopped by {stop.args[0]} {stop.args[-1]}", file=sys.stderr)
        return 0
    except ConfigError as err:
        print(f"invalid configuration: {err}{_rewritten_strings_hint(err, argv)}", file=sys.stderr)
        return 2
    except VdepthError as err:  # a bad file, a model that cannot load, a missing backend...
        print(f"cannot start: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # anything else at start-up: one line; the traceback at --log-level debug
        if nodes:
            raise
        problem = _rclpy_parameter_type(err)
        if problem is not None:  # rclpy's own parameters (use_sim_time), refused in rclpy's words
            print(f"invalid configuration: {problem}{_rewritten_strings_hint(problem, argv)}", file=sys.stderr)
            return 2
        print(f"cannot start: {type(err).__name__}: {err}", file=sys.stderr)
        _debug_traceback()
        return 2
    finally:
        _close(nodes, pool)
        startup.ROS_ARGV.clear()  # this run's arguments: not another run's in the same process (tests)
    return 0


_RCLPY_TYPE = re.compile(r"Trying to set parameter '(.+?)' to '(.*)' of type '(\w+)', expecting type '(\w+)'", re.S)


#: ROS arguments that mean nothing before --ros-args (`ros2 run` habits: `-r image:=...`, `-p far:=6`).
ROS_ARGUMENTS = ("-r", "--remap", "-p", "--param", "--params-file", "-e", "--enclave", "--log-level")


def _own_options(argv: list[str], own_args: list[str]) -> argparse.Namespace | int:
    """vdepth-node's own arguments, or the exit status after --help or a bad one (ROS arguments
    before --ros-args: the command line as it should be)."""
    if (fixed := _ros_args_outside_ros_args(argv, own_args)) is not None:
        print(f"cannot start: ROS arguments go after --ros-args: {fixed}", file=sys.stderr)
        return 2
    try:
        return parser().parse_args(own_args)
    except SystemExit as done:  # --help (0), or a bad argument (2, after argparse's usage line)
        return int(done.code or 0)


def _ros_args_outside_ros_args(argv: list[str], own_args: list[str]) -> str | None:
    """The command line written as it should be when ROS arguments come before `--ros-args` (argparse
    would only say "unrecognized arguments: -r"), a params file given alone (`vdepth-node config/depth.yaml`)
    as `--params-file` after it; None when there are none."""

    def misplaced(arg: str) -> bool:
        return arg in ROS_ARGUMENTS or ":=" in arg or _is_params_file_name(arg)

    if not any(misplaced(a) for a in own_args):
        return None
    rest = argv[1:]
    first = next(i for i, a in enumerate(rest) if misplaced(a))
    ros: list[str] = []
    for arg in rest[first:]:
        if arg != "--ros-args":
            alone = _is_params_file_name(arg) and (not ros or ros[-1] != "--params-file")
            ros += ["--params-file", arg] if alone else [arg]
    return " ".join(["vdepth-node", *rest[:first], "--ros-args", *ros])


def _is_params_file_name(arg: str) -> bool:
    return not arg.startswith("-") and arg.lower().endswith((".yaml", ".yml"))


def _rclpy_parameter_type(err: Exception) -> str | None:
    """rclpy's refusal of a value for one of its own parameters (`use_sim_time: 'true'` in a params file:
    "InvalidParameterTypeException: Trying to set parameter 'use_sim_time' to 'true' of type 'STRING',
    expecting type 'BOOL'") in the words of the node's own parameters; None for anything else."""
    from rclpy.exceptions import InvalidParameterTypeException

    from vdepth_ros.values import type_problem

    match = _RCLPY_TYPE.match(str(err)) if isinstance(err, InvalidParameterTypeException) else None
    kinds = {"BOOL": bool, "INTEGER": int, "DOUBLE": float, "STRING": str}
    if match is None or match.group(3) not in kinds or match.group(4) not in kinds:
        return None
    name, text, given, expected = match.groups()
    try:  # the value, from the text rclpy shows of it
        value = text == "True" if given == "BOOL" else kinds[given](text)
    except ValueError:
        return None
    problem = type_problem(kinds[expected], value)
    return None if problem is None else f"{name} must be {problem}"


def _rewritten_strings_hint(err: object, argv: list[str]) -> str:
    """For a value refused as a string, when a params file is a temporary copy a launch tool wrote: such
    tools write launch arguments as strings (the user never wrote the quotes)."""
    from vdepth_ros.runtime.registry import is_rewritten_params_file

    copies = [f for f in params_files(argv) if is_rewritten_params_file(f)]
    if "a string" not in str(err) or not copies:
        return ""
    return (
        f"; {copies[-1]} is a temporary copy a launch tool wrote, which gives launch arguments as strings: with "
        "Nav2's RewrittenYaml pass convert_types=True, or give the value its type in the launch file"
    )


def _debug_traceback() -> None:
    """The start-up failure's traceback, only when the user asked for debug logs."""
    if "debug" in " ".join(sys.argv).lower():
        traceback.print_exc()
