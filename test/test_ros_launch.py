"""launch/depth.launch.py and config/depth.yaml: checked statically (no launch_ros in pip ROS)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from vdepth_ros.config import load_params
from vdepth_ros.node_params import ROS_PARAMS, node_param_specs


def _launch(repo_root: Path) -> ast.Module:
    return ast.parse((repo_root / "launch" / "depth.launch.py").read_text())


def _strings(tree: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_launch_file_is_valid_and_uses_installed_config_and_executable(repo_root: Path) -> None:
    tree = _launch(repo_root)
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in funcs
    strings = _strings(tree)
    assert "depth_node" in strings  # executable (setup.py console script) and node name
    assert {"vdepth_ros", "config", "depth.yaml"} <= set(strings)  # share/vdepth_ros/config/depth.yaml
    calls = {
        n.func.id if isinstance(n.func, ast.Name) else getattr(n.func, "attr", "")
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
    }
    assert {"get_package_share_directory", "Node", "DeclareLaunchArgument", "LaunchConfiguration"} <= calls
    for remap in ("image", "camera_info", "depth", "points"):
        assert remap in strings


def test_launch_executable_is_a_console_script(repo_root: Path) -> None:
    assert "depth_node = vdepth_ros.ros.entry:main" in (repo_root / "setup.py").read_text()


def test_launch_file_runs_where_launch_ros_exists(repo_root: Path) -> None:
    pytest.importorskip("launch_ros", reason="launch_ros is not available from pip; full launch untestable here")
    import importlib.util

    spec = importlib.util.spec_from_file_location("depth_launch", repo_root / "launch" / "depth.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.generate_launch_description().entities


def test_config_has_every_parameter_with_its_default(repo_root: Path) -> None:
    path = repo_root / "config" / "depth.yaml"
    doc = yaml.safe_load(path.read_text())
    assert list(doc) == ["/**"]  # wildcard: matches namespaced nodes
    params = doc["/**"]["ros__parameters"]
    specs = {s.name: s for s in node_param_specs()}
    empty_lists = {n for n, s in specs.items() if s.default == []}
    assert set(params) == set(specs) - empty_lists
    for name, value in params.items():
        assert value == specs[name].default, name
    loaded = load_params(path)  # what the offline tools read
    assert loaded["output_qos"] == "reliable"


def test_docs_list_every_parameter(repo_root: Path) -> None:
    text = (repo_root / "docs" / "node.md").read_text()
    for spec in node_param_specs():
        assert f"`{spec.name}`" in text, spec.name
    # the tables' runtime column is what `ros2 param set` meets: "yes" applied live, "restart" refused
    runtime = dict(re.findall(r"^\| `([a-z_]+)` \| [^|]+ \| [^|]+ \| (yes|restart) \|", text, re.M))
    assert {n: runtime.get(n) for n in (s.name for s in node_param_specs())} == {
        s.name: "yes" if s.dynamic else "restart" for s in node_param_specs()
    }
    for topic in (
        "`image`",
        "`camera_info`",
        "`sparse_depth`",
        "`depth`",
        "`disparity`",
        "`points`",
        "`depth/camera_info`",
        "`~/depth_colormap`",
        "`/diagnostics`",
        "`provisional/depth`",
    ):
        assert topic in text
    assert len(ROS_PARAMS) > 10


def _parameter_rows(repo_root: Path) -> list[tuple[str, str, str, str, str]]:
    """(name, type, default, runtime, description) of every row of docs/node.md's parameter tables."""
    text = (repo_root / "docs" / "node.md").read_text()
    section = text[text.index("\n## Parameters") :]
    return re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \| ([^|]+) \| (yes|restart) \| (.*) \|$", section, re.M)


def test_docs_parameter_tables_match_the_node_and_depth_yaml(repo_root: Path) -> None:
    """docs/node.md's parameter tables hold one row per parameter the node declares and no other, each
    with the node's type, default (the value config/depth.yaml holds), range and choices: a user who
    copies a default or a range from the docs gets the node's."""
    rows = _parameter_rows(repo_root)
    specs = {s.name: s for s in node_param_specs()}
    names = [row[0] for row in rows]
    assert len(names) == len(set(names)), f"parameters in two rows: {sorted(n for n in names if names.count(n) > 1)}"
    assert set(names) == set(specs), (
        f"rows for no parameter: {sorted(set(names) - set(specs))}; parameters without a row: "
        f"{sorted(set(specs) - set(names))}"
    )
    in_yaml = yaml.safe_load((repo_root / "config" / "depth.yaml").read_text())["/**"]["ros__parameters"]
    for name, type_name, default, _runtime, description in rows:
        spec = specs[name]
        assert type_name.strip() == spec.type_name, name
        value = yaml.safe_load(default.strip().strip("`"))
        assert (value, type(value)) == (spec.default, type(spec.default)), f"{name}: docs {default.strip()}"
        if name in in_yaml:  # `keyframes` ([]) cannot be written in a params file
            assert (value, type(value)) == (in_yaml[name], type(in_yaml[name])), f"{name}: depth.yaml differs"
        bounds = [f"{side} {v}" for side, v in (("min", spec.min), ("max", spec.max)) if v is not None]
        bounds += [f"step {spec.step}"] if spec.step else []
        shown = re.search(r"Range: (.*?)\.(?: |$)", description)
        assert (shown.group(1) if shown else None) == (", ".join(bounds) or None), f"{name}: range"
        listed = re.search(r"One of: (.*?)\.(?: |$)", description)
        assert (tuple(re.findall(r"`([^`]+)`", listed.group(1))) if listed else None) == spec.choices, name


def _load_launch_with_fakes(repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Import the launch file against minimal stand-ins for launch / launch_ros (not in pip ROS); the
    stand-ins implement only what the file calls, and `Node(...)` returns its keyword arguments."""
    import importlib.util
    import types

    class LaunchConfiguration:
        def __init__(self, name: str) -> None:
            self.name = name

        def perform(self, context: Any) -> str:
            return context.launch_configurations[self.name]

    fakes = {
        "launch": types.SimpleNamespace(LaunchDescription=lambda entities: list(entities)),
        "launch.actions": types.SimpleNamespace(
            DeclareLaunchArgument=lambda name, **kw: ("arg", name, kw.get("default_value")),
            OpaqueFunction=lambda function: ("opaque", function),
        ),
        "launch.substitutions": types.SimpleNamespace(LaunchConfiguration=LaunchConfiguration),
        "launch_ros": types.SimpleNamespace(),
        "launch_ros.actions": types.SimpleNamespace(Node=lambda **kwargs: kwargs),
        "ament_index_python": types.SimpleNamespace(),
        "ament_index_python.packages": types.SimpleNamespace(get_package_share_directory=lambda pkg: f"/opt/{pkg}"),
    }
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("depth_launch_faked", repo_root / "launch" / "depth.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _context(entities: list, **overrides: str) -> Any:
    import types

    defaults = {e[1]: e[2] for e in entities if e[0] == "arg"}
    return types.SimpleNamespace(launch_configurations={**defaults, **overrides})


def test_launch_one_camera_remaps_its_topics(repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _load_launch_with_fakes(repo_root, monkeypatch)
    entities = mod.generate_launch_description()
    (opaque,) = [e for e in entities if e[0] == "opaque"]
    ctx = _context(entities, log_level="debug")
    assert ctx.launch_configurations["params_file"] == "/opt/vdepth_ros/config/depth.yaml"
    (node,) = opaque[1](ctx)
    assert node["executable"] == "depth_node" and node["name"] == "depth_node"
    assert node["namespace"].name == "namespace"
    assert [k for k, _ in node["remappings"]] == [
        "image",
        "camera_info",
        "sparse_depth",
        "camera_pose",
        "depth",
        "disparity",
        "points",
    ]  # depth/camera_info only with depth_camera_info:= (else the node puts it beside depth)
    assert node["arguments"] == ["--ros-args", "--log-level", "debug"]


def test_launch_cameras_start_one_process_without_shared_remaps(
    repo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mod = _load_launch_with_fakes(repo_root, monkeypatch)
    entities = mod.generate_launch_description()
    (opaque,) = [e for e in entities if e[0] == "opaque"]
    (node,) = opaque[1](_context(entities, cameras="front  rear", namespace="/robot1/"))
    # the node's own --cameras parser must accept what the launch file passes
    assert node["arguments"][: node["arguments"].index("--ros-args")] == ["--cameras", "robot1/front", "robot1/rear"]
    assert "namespace" not in node and "remappings" not in node  # both would apply to every camera
    from vdepth_ros.ros.cameras import camera_namespaces

    assert camera_namespaces(node["arguments"][1:3]) == ["/robot1/front", "/robot1/rear"]
    (plain,) = opaque[1](_context(entities, cameras="front"))
    assert plain["arguments"][:2] == ["--cameras", "front"]
    (managed,) = opaque[1](_context(entities, cameras="front", managed="true"))
    assert managed["arguments"][:3] == ["--managed", "--cameras", "front"]
    (single,) = opaque[1](_context(entities, managed="True"))
    assert single["arguments"][:2] == ["--managed", "--ros-args"] and "remappings" in single


def _load_launch_file(repo_root: Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("depth_launch_probe", repo_root / "launch" / "depth.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_launch_file_without_launch_ros_says_what_to_run_instead(repo_root: Path, monkeypatch) -> None:
    """With ROS from pip there is no launch/launch_ros: the error names the missing package and vdepth-node."""
    monkeypatch.setitem(sys.modules, "launch", None)
    monkeypatch.setitem(sys.modules, "launch_ros", None)
    with pytest.raises(ModuleNotFoundError) as err:
        _load_launch_file(repo_root)
    assert "ROS 2 install" in str(err.value) and "vdepth-node" in str(err.value)


def test_launch_file_nodes_and_arguments_with_stand_in_launch(repo_root: Path, monkeypatch) -> None:
    """The launch file's logic (arguments, `cameras`, `namespace`, `managed`) run against minimal stand-ins
    for launch/launch_ros, since the real ones are not on pip."""
    import types

    class Named:
        def __init__(self, *args: Any, **kw: Any) -> None:
            self.args, self.kw = args, kw

    class LaunchConfiguration:
        def __init__(self, name: str) -> None:
            self.name = name

        def perform(self, context: dict[str, str]) -> str:
            return context[self.name]

    mods = {
        "launch": types.ModuleType("launch"),
        "launch.actions": types.ModuleType("launch.actions"),
        "launch.substitutions": types.ModuleType("launch.substitutions"),
        "launch_ros": types.ModuleType("launch_ros"),
        "launch_ros.actions": types.ModuleType("launch_ros.actions"),
        "ament_index_python": types.ModuleType("ament_index_python"),
        "ament_index_python.packages": types.ModuleType("ament_index_python.packages"),
    }
    mods["launch"].LaunchDescription = lambda entities: entities
    mods["launch.actions"].DeclareLaunchArgument = Named
    mods["launch.actions"].OpaqueFunction = lambda function: function
    mods["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    mods["launch_ros.actions"].Node = Named
    mods["ament_index_python.packages"].get_package_share_directory = lambda pkg: f"/opt/share/{pkg}"
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    entities = _load_launch_file(repo_root).generate_launch_description()
    *args, nodes_for = entities
    defaults = {a.args[0]: a.kw["default_value"] for a in args}
    documented = {"image", "camera_info", "sparse_depth", "camera_pose", "depth", "disparity", "points"}
    documented |= {"depth_camera_info"}
    assert set(defaults) == documented | {"namespace", "params_file", "log_level", "cameras", "managed", "use_sim_time"}
    assert defaults["params_file"] == "/opt/share/vdepth_ros/config/depth.yaml"

    def node(**over: str) -> Any:
        (n,) = nodes_for({**defaults, **over})
        assert n.kw["executable"] == "depth_node" and n.kw["package"] == "vdepth_ros"
        return n

    single = node(image="/cam/image_rect")
    assert single.kw["arguments"] == ["--ros-args", "--log-level", "info"]
    assert {r[0] for r in single.kw["remappings"]} == documented - {"depth_camera_info"}
    assert ("depth/camera_info", "/cam/info") in node(depth_camera_info="/cam/info").kw["remappings"]
    assert node(managed="true").kw["arguments"][0] == "--managed"
    multi = node(cameras="front rear", namespace="/robot1/", managed="True")
    assert multi.kw["arguments"] == [
        "--managed", "--cameras", "robot1/front", "robot1/rear", "--ros-args", "--log-level", "info",
    ]  # fmt: skip
    assert "namespace" not in multi.kw and "remappings" not in multi.kw


@pytest.mark.parametrize("argument", ["image", "camera_info", "depth", "points"])
def test_launch_cameras_refuse_a_single_camera_topic_argument(
    repo_root: Path, monkeypatch: pytest.MonkeyPatch, argument: str
) -> None:
    """`cameras:="front rear" image:=/cam_front/image_rect` used to start the node with the remap
    dropped without a word: /front/image has no publisher, and nothing said why. The launch now
    stops with one error naming the argument and the full-name remap to write instead."""
    mod = _load_launch_with_fakes(repo_root, monkeypatch)
    entities = mod.generate_launch_description()
    (opaque,) = [e for e in entities if e[0] == "opaque"]
    with pytest.raises(RuntimeError) as err:
        opaque[1](_context(entities, cameras="front rear", namespace="robot1", **{argument: "/cam_front/x"}))
    msg = str(err.value)
    assert f"{argument}:=/cam_front/x" in msg and f"('/robot1/front/{argument}', '/cam_front/x')" in msg
    assert "leave cameras empty" in msg
    (node,) = opaque[1](_context(entities, cameras="front rear", namespace="robot1"))  # defaults: no error
    assert node["arguments"][:3] == ["--cameras", "robot1/front", "robot1/rear"]
    (single,) = opaque[1](_context(entities, **{argument: "/cam_front/x"}))  # one camera: the remap
    assert (argument, argument) in [(k, getattr(v, "name", v)) for k, v in single["remappings"]]


def test_launch_depth_camera_info_follows_depth(repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`depth:=/front_cam/depth` moved depth but left its intrinsics on /depth/camera_info (no launch
    argument reached that topic), apart from the depth image depth_image_proc and RViz pair it with.
    They now follow depth (the node puts them beside wherever depth resolves, as for any remap:
    test_ros_consumers.py), and `depth_camera_info:=` puts them anywhere."""
    mod = _load_launch_with_fakes(repo_root, monkeypatch)
    entities = mod.generate_launch_description()
    (opaque,) = [e for e in entities if e[0] == "opaque"]

    def info_remap(**over: str) -> list[str]:
        (node,) = opaque[1](_context(entities, **over))
        return [v for k, v in node["remappings"] if k == "depth/camera_info"]

    assert info_remap() == [] and info_remap(depth="/front_cam/depth") == []  # the node's: beside depth
    assert info_remap(depth="/front_cam/depth", depth_camera_info="/front_cam/info") == ["/front_cam/info"]
    with pytest.raises(RuntimeError, match="depth_camera_info:=/x"):
        opaque[1](_context(entities, cameras="front rear", depth_camera_info="/x"))


def test_launch_use_sim_time_reaches_the_node_only_when_given(repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ros2 launch vdepth_ros depth.launch.py use_sim_time:=true`, what every bag replay and simulation passes,
    was an undeclared launch argument, which launch ignores without a word: the node ran on the wall clock. It
    is now the node's parameter after the params file, and left out when not given (a params file's own
    `use_sim_time: true` stays); a value that is no bool stops the launch naming it."""
    mod = _load_launch_with_fakes(repo_root, monkeypatch)
    entities = mod.generate_launch_description()
    (opaque,) = [e for e in entities if e[0] == "opaque"]

    def parameters(**over: str) -> list:
        (node,) = opaque[1](_context(entities, **over))
        return [getattr(p, "name", p) for p in node["parameters"]]

    assert parameters() == ["params_file"]
    assert parameters(use_sim_time="true") == ["params_file", {"use_sim_time": True}]
    assert parameters(use_sim_time="False", cameras="front rear") == ["params_file", {"use_sim_time": False}]
    with pytest.raises(RuntimeError, match="use_sim_time:=sim must be true or false"):
        parameters(use_sim_time="sim")
