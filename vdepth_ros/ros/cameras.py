"""The process's depth nodes (`vdepth-node`): one, or one per `--cameras` namespace around one
`EnginePool`, checked before any model is loaded that the process's remaps keep the cameras apart.
"""

from __future__ import annotations

import re
from typing import Any

from rclpy.node import Node

from vdepth_ros.errors import ConfigError, VdepthError
from vdepth_ros.ros.node import NODE_NAME, DepthNode, ManagedDepthNode
from vdepth_ros.ros.outputs import OUTPUT_TOPICS, output_topic
from vdepth_ros.ros.startup import CLOCK
from vdepth_ros.runtime.shared import EnginePool

_NAME_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # one part of a ROS 2 namespace


def camera_namespaces(names: list[str]) -> list[str]:
    """`--cameras` names as absolute namespaces ("front" -> "/front", "robot1/front" -> "/robot1/front").

    Raises:
        ConfigError: a name is not a valid ROS namespace, or two name the same camera.
    """
    out: list[str] = []
    for name in names:
        tokens = name.strip("/").split("/")
        if not all(_NAME_TOKEN.fullmatch(t) for t in tokens):
            raise ConfigError(
                f"--cameras {name!r}: a camera name must be a ROS namespace (ASCII letters, digits, '_' and '/', "
                "each part starting with a letter or '_')"
            )
        ns = "/" + "/".join(tokens)
        if ns in out:
            raise ConfigError(f"--cameras names {ns} twice")
        out.append(ns)
    return out


def _check_cameras_apart(namespaces: list[str], context: Any = None) -> list[str]:
    """Check before any model is loaded that the process's remaps keep the cameras apart: a bare
    node of the depth node's name per camera (nothing declared, no services) shows where they put
    its namespace and topics. Returns a warning when several cameras resolve `image` to one topic
    (each would process the same stream: a relative rule such as `-r image:=/cam/image` applies to
    every camera; wanted only to run two configurations on one camera; other inputs, such as one
    odometry topic, may be shared).

    Raises:
        ConfigError: a `__ns` remap moves a camera out of the namespace it was named with, or two
            cameras would publish on one output topic (every subscriber would get both streams).
    """
    resolved: dict[str, dict[str, str]] = {}  # topic -> {camera namespace: resolved name}
    for ns in namespaces:
        probe = Node(NODE_NAME, namespace=ns, context=context, start_parameter_services=False, enable_rosout=False)
        try:
            actual = probe.get_namespace()
            for topic in ("image", *OUTPUT_TOPICS):
                resolved.setdefault(topic, {})[ns] = output_topic(probe, topic)
        finally:
            probe.destroy_node()
        if actual != ns:  # a global remap overrides every node's namespace
            raise ConfigError(
                f"camera {ns} was put in namespace {actual} by a '__ns' remap, which applies to every node of "
                "the process; name the cameras with their full namespaces instead (--cameras robot1/front robot1/rear)"
            )
    warnings = []
    for topic, by_camera in resolved.items():
        cameras: dict[str, list[str]] = {}
        for ns, name in by_camera.items():
            cameras.setdefault(name, []).append(ns)
        for name, shared in cameras.items():
            if len(shared) < 2:
                continue
            what = (
                f"cameras {', '.join(shared)} all resolve '{topic}' to {name}: a relative remap (-r {topic}:={name}) "
                f"applies to every camera of --cameras; remap each camera's topic by full name instead "
                f"(-r {shared[0]}/{topic}:=...; docs/node.md, Several cameras in one process)"
            )
            if topic != "image":
                raise ConfigError(f"{what}. Two cameras cannot publish on one topic: subscribers get both streams")
            warnings.append(f"{what}; each of these cameras processes the same stream")
    return warnings


def warn_every_camera(nodes: list[Any], warning: str) -> None:
    """A warning about the whole process (a params-file section that matches no node, cameras that share a
    process-wide value): logged once, and on every camera's /diagnostics for as long as the process runs
    (`hold_lasting_warning`): an operator watching the rear camera's status is told as well as the front's."""
    nodes[0].get_logger().warning(warning)
    for node in nodes:
        node.hold_lasting_warning(warning, warning)


def _process_wide_differences(nodes: list[Any]) -> list[str]:
    """A warning per process-wide parameter (`blas_threads`) that the cameras' sections set apart: the
    process can have one value, the one each configure sets last, whatever the other camera asked."""
    values = {node.get_namespace(): node.get_parameter("blas_threads").value for node in nodes}
    if len(set(values.values())) < 2:
        return []
    asked = ", ".join(f"{ns} {value}" for ns, value in values.items())
    return [
        f"blas_threads is process-wide (numpy's OpenBLAS), but the cameras ask for different values ({asked}): "
        f"the last camera configured sets it for all; set it once, in the params file's /** section"
    ]


def build_nodes(
    cameras: list[str], *, managed: bool = False, **kwargs: Any
) -> tuple[list[DepthNode | ManagedDepthNode], EnginePool | None]:
    """The process's depth nodes: one, or one per `--cameras` namespace sharing an `EnginePool`;
    `ManagedDepthNode`s (unconfigured) with `managed`, else running `DepthNode`s.

    `kwargs` go to every node (tests pass `context`, `parameter_overrides`...). On an error the
    nodes built so far are closed before it propagates.

    Raises:
        ConfigError: a camera name is invalid, a `__ns` remap puts every camera in one namespace, or a
            remap puts two cameras' outputs on one topic. A camera's node that cannot start raises its
            own error (`VdepthError`), prefixed with the camera (`camera /rear (/rear/depth_node): ...`).
    """
    node_cls: type[DepthNode | ManagedDepthNode] = ManagedDepthNode if managed else DepthNode
    namespaces = camera_namespaces(cameras)
    if not namespaces:
        return [node_cls(**kwargs)], None
    warnings = _check_cameras_apart(namespaces, kwargs.get("context"))
    pool = EnginePool()
    nodes: list[DepthNode | ManagedDepthNode] = []
    try:
        for ns in namespaces:
            try:
                nodes.append(node_cls(namespace=ns, engine_pool=pool, **kwargs))
            except VdepthError as err:  # which camera's values (its params-file section) or model
                err.args = (f"camera {ns} ({ns}/{NODE_NAME}): {err}", *err.args[1:])
                raise
    except BaseException:
        for node in nodes:
            node.close()
        pool.close()
        raise
    for warning in [*warnings, *_process_wide_differences(nodes)]:
        warn_every_camera(nodes, warning)
    if managed:
        nodes[0].get_logger().info(f"{len(nodes)} managed cameras ({', '.join(namespaces)}), unconfigured")
    else:
        shared = f"{len(nodes)} cameras ({', '.join(namespaces)}) share {len(pool)} loaded model(s)"
        nodes[0].get_logger().info(f"{shared}; {CLOCK.line()}")  # once, with every camera up
    return nodes, pool
