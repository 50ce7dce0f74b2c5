"""`load_params` reads a parameter file as the node's rcl does: rclpy's own reading and the
pure-Python rules agree, and both agree with a real rclpy node's declared parameters."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pytest

from vdepth_ros.config import load_params
from vdepth_ros.errors import ConfigError
from vdepth_ros.param_file import matches, node_params, parse_param_file, read_node_params, ros_args_sections

NODES = ("/depth_node", "/front/depth_node", "/robot/front/depth_node", "/front/other_node")

FILES = {
    "issue_25": "/**:\n  ros__parameters:\n    window: 8\n/front/depth_node:\n  ros__parameters:\n    window: 16\n",
    "issue_25_reversed": (
        "/front/depth_node:\n  ros__parameters:\n    window: 16\n/**:\n  ros__parameters:\n    window: 8\n"
    ),
    "wildcards": (
        "/**/depth_node:\n  ros__parameters:\n    a: 1\n    qos:\n      depth: 5\n      reliability: reliable\n"
        "/*:\n  ros__parameters:\n    b: 2\n/*/depth_node:\n  ros__parameters:\n    c: 3\n"
        "/front/*:\n  ros__parameters:\n    d: [1, 2, 3]\n/**:\n  ros__parameters:\n    a: 9\n"
    ),
    "plain_name_and_nested_namespace": (
        "depth_node:\n  ros__parameters:\n    window: 5\n"
        "front:\n  depth_node:\n    ros__parameters:\n      window: 6\n"
        "  other_node:\n    ros__parameters:\n      x: y\n"
        "robot:\n  front:\n    depth_node:\n      ros__parameters:\n        window: 7\n"
    ),
    "repeated_section_names": (
        "/**:\n  ros__parameters:\n    a: 1\n/depth_node:\n  ros__parameters:\n    a: 2\n"
        "/**:\n  ros__parameters:\n    a: 3\n    b: 3\n/front/depth_node:\n  ros__parameters:\n    b: 4\n"
    ),
    "scalar_types": (
        "/**:\n  ros__parameters:\n    b1: y\n    b2: Off\n    i1: 010\n    i2: 0x1F\n    i3: -42\n"
        "    f1: 08\n    f2: 1e3\n    f3: .inf\n    f4: -.Inf\n    f5: 0x1p3\n    f6: 9223372036854775808\n"
        "    f7: 1.\n    s1: ~\n    s2: null\n    s3: '5'\n    s4: 1_000\n    s5: 2001-01-01\n    s6: 1e999\n"
        '    s7: "true"\n    s8: |\n      5\n    s9: 1e-310\n    l1: [a, b]\n    l2: [1.5, 2.0]\n    l3: [true, n]\n'
        "    l4: []\n    n1: nan\n"
    ),
    "two_documents": "/**:\n  ros__parameters:\n    a: 1\n---\n/**:\n  ros__parameters:\n    a: 2\n",
    "type_changed_in_one_section": (
        "/**:\n  ros__parameters:\n    a: 1\n    b: x\n---\n/**:\n  ros__parameters:\n    a: 2.5\n    b: 7\n"
    ),
    "bundled": None,  # config/depth.yaml
}

REFUSED = {
    "no_value": "/**:\n  ros__parameters:\n    a:\n",
    "mixed_list": "/**:\n  ros__parameters:\n    a: [1, 2.0]\n",
    "no_section": "foo:\n  bar: 1\n",
    "bad_yaml": "a: [1, 2\n",
    "alias": "/**:\n  ros__parameters:\n    a: &x 1\n    b: *x\n",
    "bad_node_name": "/9node:\n  ros__parameters:\n    a: 1\n",
    "bad_namespace": "/a-b/depth_node:\n  ros__parameters:\n    a: 1\n",
    "repeated_slash": "/ns//depth_node:\n  ros__parameters:\n    a: 1\n",
    "params_not_a_mapping": "/**:\n  ros__parameters: 5\n",
    "nested_absolute_name": "robot1:\n  /**:\n    ros__parameters:\n      a: 1\n",  # RewrittenYaml(root_key=)
}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) and type(a[k]) is type(b[k]) for k in a)
    return a == b


def rcl_node_params(path: str | Path, node: str) -> dict[str, Any]:
    """The parameters rcl itself gives the node `node` from the file (rclpy must be importable): the oracle
    the pure-Python rules (`vdepth_ros.param_file`) are checked against.

    A private context and a node with no parameter services and no rosout are created and
    destroyed (~0.1 s; the node joins DDS discovery for that time, as any ROS process does).

    Raises:
        ConfigError: rcl refuses the file (its reason in the message).
    """
    from rclpy.context import Context
    from rclpy.node import Node

    namespace, _, name = node.rpartition("/")
    context = Context()
    try:
        context.init(["vdepth", "--ros-args", "--params-file", str(path)], initialize_logging=False)
    except Exception as err:  # rclpy's RCLError carries rcl's reason
        raise ConfigError(f"parameter file {path}: rcl cannot parse it: {err}") from err
    try:
        ros_node = Node(
            name, namespace=namespace or "/", context=context, start_parameter_services=False, enable_rosout=False
        )
        try:
            # rclpy keeps what rcl matched for this node here; it has no public accessor for it
            return {key: param.value for key, param in ros_node._parameter_overrides.items()}
        finally:
            ros_node.destroy_node()
    finally:
        context.try_shutdown()


def _file(tmp_path: Path, name: str, repo_root: Path) -> Path:
    if FILES.get(name) is None and name in FILES:
        return repo_root / "config" / "depth.yaml"
    path = tmp_path / f"{name}.yaml"
    path.write_text(FILES.get(name) or REFUSED[name])
    return path


@pytest.mark.ros
@pytest.mark.parametrize("name", sorted(FILES))
def test_rclpy_and_the_pure_python_rules_give_every_node_the_same_parameters(
    name: str, tmp_path: Path, repo_root: Path
) -> None:
    pytest.importorskip("rclpy")
    path = _file(tmp_path, name, repo_root)
    sections = parse_param_file(path)
    for node in NODES:
        if not any(matches(s, node) for s in sections):
            assert rcl_node_params(path, node) == {}, node
            continue
        ours, rcl = node_params(sections, node), rcl_node_params(path, node)  # rcl's reading, type quirk and all
        assert _same(ours, rcl), (node, ours, rcl)


def test_the_issue_case_later_sections_win_in_file_order(tmp_path: Path, repo_root: Path) -> None:
    """Checked against rclpy by the test above; here without it (the offline tools' route)."""
    forward, reverse = _file(tmp_path, "issue_25", repo_root), _file(tmp_path, "issue_25_reversed", repo_root)
    assert read_node_params(forward, "/front/depth_node") == {"window": 16}
    assert read_node_params(reverse, "/front/depth_node") == {"window": 8}
    assert read_node_params(forward, "/depth_node") == {"window": 8}
    assert load_params(forward, "/front/depth_node") == {"window": 16}


def test_a_value_given_again_with_another_type_overrides_the_earlier_one(tmp_path: Path, repo_root: Path) -> None:
    """rcl keeps the first value in its type order (an integer before a double, a double before a string),
    checked against rcl above; the tools read the value given last, as the node now runs it."""
    path = _file(tmp_path, "type_changed_in_one_section", repo_root)
    assert node_params(parse_param_file(path), "/depth_node") == {"a": 1, "b": 7}  # rcl's reading
    assert read_node_params(path, "/depth_node") == {"a": 2.5, "b": 7}


@pytest.mark.ros
def test_a_command_lines_params_files_and_p_values_are_read_as_rcl_reads_them(tmp_path: Path) -> None:
    """`ros_args_sections` replays `--params-file` and `-p` in order as rcl does (checked against rcl's
    reading of the whole command line, type quirk and all); `as_given` takes the value given last."""
    import rclpy
    from rclpy.node import Node

    robot = tmp_path / "robot.yaml"
    robot.write_text("/**:\n  ros__parameters:\n    far: 6\n    near: 0.5\n    flag: true\n"
                     "/**/depth_node:\n  ros__parameters:\n    window: 8\n")  # fmt: skip
    mine = tmp_path / "mine.yaml"
    mine.write_text("/**:\n  ros__parameters:\n    near: 1\n    window: 4\n    far: 2.5\n")
    argv = ["node", "--ros-args", "--params-file", str(robot), "--params-file", str(mine),
            "-p", "far:=4.5", "-p", "near:=0.25", "-p", "keys:=[1, 2]", "-p", "flag:=no", "-p", "depth_node:gap:=1",
            "-p", "other_node:gap:=3", "-p", "gap:=2.5"]  # fmt: skip
    context = rclpy.Context()
    rclpy.init(args=argv, context=context)
    try:
        node = Node("depth_node", context=context, start_parameter_services=False, enable_rosout=False)
        by_rcl = {key: param.value for key, param in node._parameter_overrides.items()}
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    sections = ros_args_sections(argv)
    assert _same(node_params(sections, "/depth_node"), by_rcl), (node_params(sections, "/depth_node"), by_rcl)
    assert by_rcl["far"] == 6 and by_rcl["near"] == 1  # the later doubles were dropped
    assert node_params(sections, "/depth_node", as_given=True) == {
        "far": 4.5, "near": 0.25, "flag": False, "window": 8, "keys": [1, 2],  # /**/depth_node comes after /**
        "gap": 1,  # so does -p depth_node:gap
    }  # fmt: skip


def test_scalars_are_typed_as_rcl_types_them(tmp_path: Path, repo_root: Path) -> None:
    got = read_node_params(_file(tmp_path, "scalar_types", repo_root), "/depth_node")
    assert (got["b1"], got["b2"], got["i1"], got["i2"], got["f1"], got["f5"]) == (True, False, 8, 31, 8.0, 8.0)
    assert got["f6"] == 2.0**63 and isinstance(got["f6"], float)
    assert [got[k] for k in ("s1", "s2", "s3", "s4", "s6", "s7", "s8", "s9")] == [
        "~", "null", "5", "1_000", "1e999", "true", "5\n", "1e-310",
    ]  # fmt: skip
    assert (got["l2"], got["l3"], got["l4"]) == ([1.5, 2.0], [True, False], None)


def test_a_plain_node_name_matches_only_a_node_without_namespace(tmp_path: Path, repo_root: Path) -> None:
    path = _file(tmp_path, "plain_name_and_nested_namespace", repo_root)
    assert read_node_params(path, "/depth_node") == {"window": 5}
    assert read_node_params(path, "/front/depth_node") == {"window": 6}
    assert read_node_params(path, "/robot/front/depth_node") == {"window": 7}
    with pytest.raises(ConfigError, match="no ros__parameters for node /rear/depth_node"):
        read_node_params(path, "/rear/depth_node")


@pytest.mark.ros
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_files_rcl_refuses_are_refused_with_one_clear_error(name: str, tmp_path: Path, repo_root: Path) -> None:
    pytest.importorskip("rclpy")
    path = _file(tmp_path, name, repo_root)
    with pytest.raises(ConfigError, match=str(path)) as ours:
        load_params(path)
    assert "\n" not in str(ours.value)
    with pytest.raises(ConfigError, match="rcl cannot parse"):  # and rcl's own parser refuses it too
        rcl_node_params(path, "/depth_node")


def test_a_missing_or_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "missing.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=r"binary\.yaml"):
        load_params(binary)


def test_the_offline_cli_reports_a_bad_params_file_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from vdepth_ros.offline.bag import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(REFUSED["mixed_list"])
    for params in (bad, tmp_path / "missing.yaml"):
        assert main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--params", str(params)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and str(params) in err, err


def _random_file(rng: random.Random) -> str:
    """A random valid parameter file: wildcard, namespaced and plain sections, nested values."""
    names = ["/**", "/**/depth_node", "/*", "/*/depth_node", "depth_node", "/front/depth_node", "/front/*"]
    scalars = ["1", "-3", "0x10", "010", "2.5", "1e2", ".inf", "yes", "Off", "abc", "'7'", '"x y"', "~", "0.0"]
    keys = ["window", "overlap", "qos.depth", "model", "flag"]
    out = []
    for _ in range(rng.randint(1, 5)):
        lines = [f"{rng.choice(names)}:", "  ros__parameters:"]
        for key in rng.sample(keys, rng.randint(1, len(keys))):
            head, _, leaf = key.rpartition(".")
            indent = "    "
            if head:
                lines.append(f"{indent}{head}:")
                indent += "  "
            value = rng.choice(scalars)
            if rng.random() < 0.2:
                value = "[" + ", ".join([rng.choice(["1", "2", "3"])] * rng.randint(1, 3)) + "]"
            lines.append(f"{indent}{leaf}: {value}")
        out += lines
    return "\n".join(out) + "\n"


@pytest.mark.ros
@pytest.mark.slow
def test_random_files_read_the_same_by_rclpy_and_by_the_rules(tmp_path: Path) -> None:
    pytest.importorskip("rclpy")
    rng = random.Random(25)
    for i in range(20):
        path = tmp_path / f"random{i}.yaml"
        path.write_text(_random_file(rng))
        sections = parse_param_file(path)
        for node in ("/depth_node", "/front/depth_node"):
            ours = node_params(sections, node)
            assert _same(ours, rcl_node_params(path, node)), (path.read_text(), node)


def _declared(node: str, ros_args: list[str]) -> dict[str, Any]:
    """The parameters a plain rclpy node started with these `--ros-args` declares from overrides."""
    import rclpy
    from rclpy.node import Node

    namespace, _, name = node.rpartition("/")
    context = rclpy.Context()
    rclpy.init(args=["node", "--ros-args", *ros_args], context=context)
    try:
        ros_node = Node(
            name, namespace=namespace or "/", context=context, automatically_declare_parameters_from_overrides=True
        )
        declared = {n: ros_node.get_parameter(n).value for n in ros_node.list_parameters([], 0).names}
        ros_node.destroy_node()
        return declared
    finally:
        rclpy.shutdown(context=context)


@pytest.mark.ros
@pytest.mark.parametrize("node", ["/depth_node", "/front/depth_node"])
def test_a_real_rclpy_node_declares_what_load_params_returns(node: str, tmp_path: Path, repo_root: Path) -> None:
    """A node started the way a launch file starts ours (`--ros-args --params-file`), declaring its
    parameters from the file (public API only), sees what `load_params` returns."""
    pytest.importorskip("rclpy")
    path = _file(tmp_path, "wildcards", repo_root)
    builtin = _declared(node, [])  # use_sim_time and the like, which rclpy declares itself
    from_file = {n: v for n, v in _declared(node, ["--params-file", str(path)]).items() if n not in builtin}
    assert from_file and _same(from_file, load_params(path, node)), (from_file, load_params(path, node))
