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

#: the import names of the packages of the extras the smallest install leaves out (setup.py), by extra
EXTRA_PACKAGES = {
    "bag": ("rosbags", "mcap", "mcap_ros2"),
    "ml": ("huggingface_hub", "diffusers", "transformers", "peft"),
}


def extra_hint(extra: str) -> str:
    """How to install `extra`, for a message naming what it lacks."""
    return f"install the '{extra}' extra: pip install -c constraints.txt -e '.[{extra}]' (docs/install.md)"


BAG_EXTRA_HINT = extra_hint("bag")


def missing_extra_line(prog: str, err: ModuleNotFoundError) -> str | None:
    """The one line saying which extra's package `err` reports missing, or None for any other module."""
    root = (err.name or "").split(".")[0]
    for extra, packages in EXTRA_PACKAGES.items():
        if root in packages:
            return f"{prog}: needs the Python package '{root}', which is not installed; {extra_hint(extra)}"
    return None


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
