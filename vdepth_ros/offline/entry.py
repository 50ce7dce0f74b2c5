"""Console-script entry points of the offline tools (`vdepth-bag`, `vdepth-video`, `vdepth-flicker`).

Bags need the `bag` extra (rosbags, mcap), which the smallest install (`.[ros,onnx]`, docs/install.md)
leaves out. Without it these commands say so in one line (exit status 2) instead of an import traceback.
Importing a tool takes seconds (torch): Ctrl-C meanwhile is the tools' one line too (exit status 130).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

#: the import names of the `bag` extra's packages (setup.py)
BAG_PACKAGES = ("rosbags", "mcap", "mcap_ros2")
BAG_EXTRA_HINT = "install the 'bag' extra: pip install -c constraints.txt -e '.[bag]' (docs/install.md)"


def missing_bag_package(err: ModuleNotFoundError) -> str | None:
    """The `bag` extra's package whose absence `err` reports, or None for any other missing module."""
    root = (err.name or "").split(".")[0]
    return root if root in BAG_PACKAGES else None


def run_tool(prog: str, module: str, argv: Sequence[str] | None = None) -> int:
    """Import `module` and run its `main(argv)`; a missing `bag` package is one line on stderr, exit 2,
    and Ctrl-C during the import is the tools' interrupted line, exit 130."""
    try:
        tool = importlib.import_module(module)
    except KeyboardInterrupt:
        from vdepth_ros.offline.errors import interrupted_line

        print(interrupted_line(prog), file=sys.stderr)
        return 130
    except ModuleNotFoundError as err:
        package = missing_bag_package(err)
        if package is None:
            raise
        print(
            f"{prog}: needs the Python package '{package}', which is not installed; {BAG_EXTRA_HINT}", file=sys.stderr
        )
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
