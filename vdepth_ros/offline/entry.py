"""Console-script entry points of the offline tools (`vdepth-bag`, `vdepth-video`, `vdepth-flicker`).

Bags need the `bag` extra (rosbags, mcap), and `vdepth-export pull` the `ml` extra (huggingface_hub),
which the smallest install (`.[ros,onnx]`, docs/install.md) leaves out. Without it these commands say so
in one line (exit status 2) instead of an import traceback; `--help` still prints the options (and that line
on stderr), exit status 0.
Importing a tool takes seconds (torch): Ctrl-C meanwhile is the tools' one line too (exit status 130).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from typing import Any

from vdepth_ros.errors import EXTRA_PACKAGES, extra_hint, missing_extra

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
        args = sys.argv[1:] if argv is None else list(argv)
        if "-h" in args or "--help" in args:
            print(help_without_extras(module))
            print(line, file=sys.stderr)
            return 0
        print(line, file=sys.stderr)
        return 2
    return tool.main(argv)


class _Absent(type):
    """Stands in for any name of a package that is not installed: a class whose attributes, instances and
    instances' attributes are stand-ins too, so a tool module imports and builds its parser (which needs names only)."""

    def __getattr__(cls, name: str) -> Any:
        return _absent(name)


def _absent(name: str) -> Any:
    return _Absent(name, (), {"__init__": lambda self, *a, **k: None, "__getattr__": lambda self, n: _absent(n)})


class _AbsentPackages(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports the extras' packages (and their submodules) as modules of stand-ins."""

    roots = frozenset(name for packages in EXTRA_PACKAGES.values() for name in packages)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".")[0] not in self.roots:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name)
        module.__getattr__ = _absent  # type: ignore[attr-defined]  # PEP 562: any name is a stand-in
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def help_without_extras(module: str) -> str:
    """The `--help` text of the tool `module` where a package of an extra is missing: the tool modules import
    their bag libraries at the top, so they are imported here with stand-ins for those packages, and the
    stand-ins and every vdepth_ros module imported meanwhile are forgotten afterwards (nothing runs against them)."""
    finder = _AbsentPackages()
    before = dict(sys.modules)
    for name in [n for n in sys.modules if n.split(".")[0] in finder.roots]:
        del sys.modules[name]  # a failed import (or a test's None) would stop the finder being asked
    sys.meta_path.insert(0, finder)
    try:
        return importlib.import_module(module).build_parser().format_help()
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n not in before]:
            if name.split(".")[0] in finder.roots or name.startswith("vdepth_ros."):
                parent, _, child = name.rpartition(".")
                if getattr(sys.modules.get(parent), child, None) is sys.modules[name]:
                    delattr(sys.modules[parent], child)
                del sys.modules[name]
        sys.modules.update({n: m for n, m in before.items() if n.split(".")[0] in finder.roots})


def bag(argv: Sequence[str] | None = None) -> int:
    """`vdepth-bag` (vdepth_ros.offline.bag)."""
    return run_tool("vdepth-bag", "vdepth_ros.offline.bag", argv)


def video(argv: Sequence[str] | None = None) -> int:
    """`vdepth-video` (vdepth_ros.offline.video)."""
    return run_tool("vdepth-video", "vdepth_ros.offline.video", argv)


def flicker(argv: Sequence[str] | None = None) -> int:
    """`vdepth-flicker` (vdepth_ros.offline.flicker)."""
    return run_tool("vdepth-flicker", "vdepth_ros.offline.flicker", argv)
