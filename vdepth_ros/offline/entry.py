"""Console-script entry points of the offline tools (`vdepth-bag`, `vdepth-video`, `vdepth-flicker`).

Bags need the `bag` extra (rosbags, mcap), and `vdepth-export pull` the `ml` extra (huggingface_hub),
which the smallest install (`.[ros,onnx]`, docs/install.md) leaves out. Without it these commands say so
in one line (exit status 2) instead of an import traceback.
Importing a tool takes seconds (torch): Ctrl-C meanwhile is the tools' one line too (exit status 130).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from vdepth_ros.errors import extra_hint, missing_extra

BAG_EXTRA_HINT = extra_hint("bag")


def missing_extra_line(prog: str, err: ModuleNotFoundError) -> str | None:
    """The one line saying which extra's package `err` reports missing, or None for any other module."""
    why = missing_extra(err)
    return None if why is None else f"{prog}: {why}"


def run_tool(prog: str, module: str, argv: Sequence[str] | None = None) -> int:
    """Import `module` and run its `main(argv)`; a missing extra's package is one line on stderr, exit 2,
    and Ctrl-C during the import is the tools' interrupted line, exit 130."""
    try:
        tool = importlib.import_module(module)
    except KeyboardInterrupt:
        from vdepth_ros.offline.errors import interrupted_line

        print(interrupted_line(prog), file=sys.stderr)
        return 130
    except ModuleNotFoundError as err:
        line = missing_extra_line(prog, err)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 2
    return tool.main(argv)


def bag(argv: Sequence[str] | None = None) -> int:
    """`vdepth-bag` (vdepth_ros.offline.bag)."""
    return run_tool("vdepth-bag", "vdepth_ros.offline.bag", argv)


def video(argv: Sequence[str] | None = None) -> int:
    """`vdepth-video` (vdepth_ros.offline.video)."""
    return run_tool("vdepth-video", "vdepth_ros.offline.video", argv)


def flicker(argv: Sequence[str] | None = None) -> int:
    """`vdepth-flicker` (vdepth_ros.offline.flicker)."""
    return run_tool("vdepth-flicker", "vdepth_ros.offline.flicker", argv)
