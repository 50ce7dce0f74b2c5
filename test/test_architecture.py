"""The layer table of docs/architecture.md, enforced on every module's imports (parsed, not run).

`LAYERS` below IS that table: the doc shows it, this test holds the code to it, and
`test_the_doc_shows_this_table` fails when the two drift apart; change both together.

Every `import` and `from ... import` counts, at module level or inside a function (a lazy import is
still a dependency), relative ones resolved. Imports whose module name is computed at run time
(`importlib.import_module(name)`) cannot be read and are not checked.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: layer -> (the modules it holds, the layers it may import). A module is a dotted prefix; the
#: longest matching prefix places a module. Imports inside one layer are free.
LAYERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "base": (
        (
            "vdepth_ros",
            "vdepth_ros.errors",
            "vdepth_ros.values",
            "vdepth_ros.paths",
            "vdepth_ros.blas",
            "vdepth_ros.colormap",
        ),
        (),
    ),
    "stream": (("vdepth_ros.stream",), ("base",)),
    "models": (("vdepth_ros.models",), ("base",)),
    "runtime": (("vdepth_ros.runtime",), ("models", "base")),
    "pipeline": (
        (
            "vdepth_ros.pipeline",
            "vdepth_ros.pipeline_types",
            "vdepth_ros.pipeline_input",
            "vdepth_ros.pipeline_windows",
            "vdepth_ros.pipeline_output",
            "vdepth_ros.pipeline_offline",
            "vdepth_ros.config",
            "vdepth_ros.node_params",
            "vdepth_ros.param_file",
            "vdepth_ros.resize",
            "vdepth_ros.encodings",
            "vdepth_ros.pointcloud2",
            "vdepth_ros.camera_info",
            "vdepth_ros.triangulate",
            "vdepth_ros.rectify",
            "vdepth_ros.consistency",
        ),
        ("stream", "runtime", "base"),
    ),
    "inputs": (("vdepth_ros.inputs",), ("pipeline", "stream", "runtime", "base")),
    "ros": (("vdepth_ros.ros",), ("inputs", "pipeline", "stream", "runtime", "base")),
    "offline": (("vdepth_ros.offline",), ("inputs", "pipeline", "stream", "runtime", "base")),
    "apps": (("vdepth_ros.eval", "vdepth_ros.demo"), ("offline", "inputs", "pipeline", "stream", "runtime", "base")),
    "export": (("vdepth_export",), ("apps", "offline", "inputs", "pipeline", "stream", "runtime", "models", "base")),
    "training": (
        ("vdepth_training",),
        ("apps", "offline", "inputs", "pipeline", "stream", "runtime", "models", "base"),
    ),
}

#: Third-party packages a layer may not import. ROS (rclpy and message packages) only in `ros`.
ROS_PACKAGE = re.compile(r"^(rclpy|rcl_.*|rosidl.*|rmw.*|.*_msgs|.*_srvs|.*_interfaces)$")
FORBIDDEN_THIRD_PARTY: dict[str, tuple[str, ...]] = {"stream": ("torch", "cv2", "onnxruntime", "tensorrt")}
#: `stream` is numpy-only: besides the standard library and the package, only these.
STREAM_THIRD_PARTY = {"numpy"}

#: Deliberate exceptions, each with its reason (kept in docs/architecture.md's table notes too).
ALLOWED: dict[tuple[str, str], str] = {}

#: The only import cycles between modules, each deliberate and broken at import time (a lazy or
#: type-only import on one side); any other cycle fails `test_no_import_cycles_but_the_known_ones`.
KNOWN_CYCLES: dict[frozenset[str], str] = {
    frozenset(
        ("vdepth_ros.pipeline", "vdepth_ros.pipeline_offline")
    ): "pipeline_offline names DepthPipeline for types only",
    frozenset(("vdepth_ros.runtime.shapes", "vdepth_ros.runtime.spec")): "spec reads PRECISIONS lazily",
    frozenset(
        ("vdepth_ros.ros.cli", "vdepth_ros.ros.cameras", "vdepth_ros.ros.entry", "vdepth_ros.ros.node")
    ): "lazy: the node module's main() runs the entry, the CLI loads the nodes (cameras) as it runs",
}

#: Source folders and the package names they are installed as (setup.py package_dir).
SOURCES = {"vdepth_ros": "vdepth_ros", "export": "vdepth_export", "training": "vdepth_training"}
OURS = set(SOURCES.values())


def _modules() -> dict[str, Path]:
    """Dotted name (as installed) -> file, for every module of the package and its tools."""
    out = {}
    for folder, package in SOURCES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([package, *parts])] = path
    return out


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """(imported module, line) of every import statement in the file, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from pkg import sub` may name a submodule: check the finer target when it is one of ours
            found += [(f"{module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _layer_of(module: str) -> str | None:
    best, best_len = None, -1
    for layer, (prefixes, _may) in LAYERS.items():
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = layer, len(prefix)
    return best


def _own_target(imported: str, modules: dict[str, Path]) -> str | None:
    """The module of ours that an import names (the longest existing prefix), or None."""
    parts = imported.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def _violations() -> list[tuple[str, str, int, str]]:
    """(importer, imported, line, rule) for every import the table forbids."""
    modules = _modules()
    bad = []
    for name, path in modules.items():
        layer = _layer_of(name)
        assert layer is not None, f"{name} is on no layer: add it to LAYERS and to docs/architecture.md"
        may = {layer, *LAYERS[layer][1]}
        for imported, line in _imports(name, path):
            top = imported.split(".")[0]
            target = _own_target(imported, modules) if top in OURS else None
            if target is not None:
                if _layer_of(target) not in may:
                    bad.append((name, target, line, f"{layer} may not import {_layer_of(target)}"))
                continue
            if top in OURS or top in sys.stdlib_module_names or top == "__future__":
                continue
            rule = _third_party_rule(layer, top)
            if rule and (name, top) not in ALLOWED:
                bad.append((name, top, line, rule))
    return bad


def _third_party_rule(layer: str, top: str) -> str | None:
    if ROS_PACKAGE.match(top) and layer != "ros":
        return f"only ros/ imports ROS ({top})"
    if top in FORBIDDEN_THIRD_PARTY.get(layer, ()) or (layer == "stream" and top not in STREAM_THIRD_PARTY):
        return f"{layer} is numpy-only ({top})"
    return None


def _report(bad: list[tuple[str, str, int, str]]) -> str:
    return "\n".join(f"{a} (line {line}) imports {b}: {rule}" for a, b, line, rule in bad)


def test_every_module_is_on_a_layer() -> None:
    unplaced = [name for name in _modules() if _layer_of(name) is None]
    assert not unplaced, f"add these to LAYERS and docs/architecture.md: {unplaced}"


def test_no_import_goes_up_or_sideways() -> None:
    bad = _violations()
    assert not bad, "imports the layer table of docs/architecture.md forbids:\n" + _report(bad)


def test_the_checker_sees_a_forbidden_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upward import planted in a copy of stream/ is reported (the test can fail)."""
    modules = _modules()
    planted = tmp_path / "windows.py"
    planted.write_text("import numpy\nfrom ..pipeline import DepthPipeline\n\ndef f():\n    import torch\n")
    modules["vdepth_ros.stream.windows"] = planted
    monkeypatch.setattr(sys.modules[__name__], "_modules", lambda: modules)
    bad = {(a, b, rule.split(" (")[0]) for a, b, _line, rule in _violations()}
    assert ("vdepth_ros.stream.windows", "vdepth_ros.pipeline", "stream may not import pipeline") in bad
    assert ("vdepth_ros.stream.windows", "torch", "stream is numpy-only") in bad


def test_the_doc_shows_this_table() -> None:
    """docs/architecture.md's layer table names the same modules and allowed imports as LAYERS."""
    doc = (REPO / "docs" / "architecture.md").read_text()
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3 and cells[0].strip("`") in LAYERS:
            rows[cells[0].strip("`")] = (
                set(re.findall(r"`([\w.]+)`", cells[1])),
                set(re.findall(r"`(\w+)`", cells[2])),
            )
    assert set(rows) == set(LAYERS), "docs/architecture.md layer table rows != LAYERS"
    for layer, (prefixes, may) in LAYERS.items():
        assert rows[layer][0] == set(prefixes), f"{layer}: modules differ from LAYERS"
        assert rows[layer][1] == set(may), f"{layer}: allowed layers differ from LAYERS"


def _cycles() -> list[set[str]]:
    """The strongly connected groups of modules (more than one) in the graph of our imports, lazy and
    type-only ones included (Tarjan's algorithm)."""
    modules = _modules()
    graph = {
        name: {t for imported, _ in _imports(name, path) if (t := _own_target(imported, modules)) not in (None, name)}
        for name, path in modules.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in graph:
        if v not in index:
            visit(v)
    return groups


def test_no_import_cycles_but_the_known_ones() -> None:
    """Inside a layer imports go one way too: a new cycle (two modules importing each other, however
    lazily) is a layering mistake; move the shared piece down instead."""
    unknown = [sorted(group) for group in _cycles() if frozenset(group) not in KNOWN_CYCLES]
    assert not unknown, f"import cycles outside KNOWN_CYCLES: {unknown}"


def test_the_doc_names_every_module() -> None:
    """docs/architecture.md says what each file of the package and of `export/` is for: a new module
    that it does not name fails here (training/ is described in training/README.md)."""
    doc = (REPO / "docs" / "architecture.md").read_text()
    spans = " ".join(re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", doc, flags=re.S)))  # inline code
    unnamed = [
        str(path.relative_to(REPO))
        for folder in ("vdepth_ros", "export")
        for path in sorted((REPO / folder).rglob("*.py"))
        if path.name != "__init__.py" and not re.search(rf"\b{re.escape(path.stem)}\b", spans)
    ]
    assert not unnamed, f"docs/architecture.md does not name: {unnamed}"


def test_the_layers_below_models_load_no_torch() -> None:
    """`runtime` loads torch only for the torch backend (the table's "lazily"): the pipeline, the input
    side and the offline tools import without it, so an ONNX Runtime or TensorRT user never pays its
    import (seconds) nor needs it installed to read a bag."""
    import subprocess

    modules = ["vdepth_ros.runtime", "vdepth_ros.pipeline", "vdepth_ros.inputs.assembly", "vdepth_ros.offline.bag"]
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False", f"importing {modules} loaded torch"
