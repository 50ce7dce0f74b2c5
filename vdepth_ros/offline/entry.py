"""Console-script entry points of the offline tools (`vdepth-bag`, `vdepth-video`, `vdepth-flicker`).

Bags need the `bag` extra (rosbags, mcap), and `vdepth-export pull` the `ml` extra (huggingface_hub),
which the smallest install (`.[ros,onnx]`, docs/install.md) leaves out. Without it these commands say so
in one line (exit status 2) instead of an import traceback; `--help` still prints the options (and that line
on stderr), exit status 0, and a wrong option is argparse's usage error as with the extra: the tool modules
import rosbags only once the arguments are parsed.
Importing a tool takes seconds (torch): Ctrl-C meanwhile is the tools' one line too (exit status 130).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence

from vdepth_ros.errors import EXTRA_PACKAGES, extra_hint, missing_extra

BAG_EXTRA_HINT = extra_hint("bag")


def missing_extra_line(prog: str, err: ModuleNotFoundError) -> str | None:
    """The one line saying which extra's package `err` reports missing, or None for any other module."""
    why = missing_extra(err)
    return None if why is None else f"{prog}: {why}"


def run_tool(prog: str, module: str, argv: Sequence[str] | None = None, extra: str | None = None) -> int:
    """Import `module` and run its `main(argv)`; a missing extra's package is one line on stderr, exit 2,
    and Ctrl-C during the import is the tools' interrupted line, exit 130.

    The tool modules import their extra's packages only where they read or write (`bag_types.require_bag_library`
    once the arguments are parsed), so `--help` and argument errors come from argparse with or without `extra`;
    `--help` where `extra` is missing adds the line naming it on stderr."""
    try:
        tool = importlib.import_module(module)
    except KeyboardInterrupt:
        from vdepth_ros.offline.errors import interrupted_line

        print(interrupted_line(prog), file=sys.stderr)
        return 130
    except ModuleNotFoundError as err:
        return _missing_extra_exit(prog, err)
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        return tool.main(argv)
    except ModuleNotFoundError as err:
        return _missing_extra_exit(prog, err)
    finally:
        missing = _missing_package(extra)
        if missing is not None and ("-h" in args or "--help" in args):
            print(missing_extra_line(prog, ModuleNotFoundError(name=missing)), file=sys.stderr)


def _missing_extra_exit(prog: str, err: ModuleNotFoundError) -> int:
    """Exit status 2 after the line naming the missing extra; `err` raised again when it is no extra's package."""
    line = missing_extra_line(prog, err)
    if line is None:
        raise err
    print(line, file=sys.stderr)
    return 2


def _missing_package(extra: str | None) -> str | None:
    """The first package of `extra` that cannot be imported, or None."""
    for name in EXTRA_PACKAGES.get(extra or "", ()):
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except ValueError:  # a module without a spec (a test's stand-in): it is there
            continue
    return None


def bag(argv: Sequence[str] | None = None) -> int:
    """`vdepth-bag` (vdepth_ros.offline.bag)."""
    return run_tool("vdepth-bag", "vdepth_ros.offline.bag", argv, extra="bag")


def video(argv: Sequence[str] | None = None) -> int:
    """`vdepth-video` (vdepth_ros.offline.video)."""
    return run_tool("vdepth-video", "vdepth_ros.offline.video", argv)


def flicker(argv: Sequence[str] | None = None) -> int:
    """`vdepth-flicker` (vdepth_ros.offline.flicker)."""
    return run_tool("vdepth-flicker", "vdepth_ros.offline.flicker", argv, extra="bag")
