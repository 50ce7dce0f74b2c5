"""The node's parameters as rclpy declares them: the value to declare and the descriptor of each
`vdepth_ros.node_params.ParamSpec` (the table itself, its types, ranges and rules, has no ROS
import, so the offline tools use it too)."""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from vdepth_ros.node_params import ParamSpec


def declare_value(spec: ParamSpec) -> Any:
    """What to pass to `declare_parameter`: an empty list has no ROS type, so give the type."""
    if isinstance(spec.default, list) and not spec.default:
        from rclpy.parameter import Parameter

        return Parameter.Type.INTEGER_ARRAY
    return spec.default


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The rclpy descriptor (`ros2 param describe`; ranges are enforced by rclpy too)."""
    extra = []
    if spec.choices:
        extra.append("one of: " + ", ".join(spec.choices))
    if not spec.dynamic:
        extra.append("restart required to change")
    d = ParameterDescriptor(
        name=spec.name,
        description=spec.description,
        additional_constraints="; ".join(extra),
        dynamic_typing=spec.default is None,
    )
    if isinstance(spec.default, bool):
        return d
    if isinstance(spec.default, int) and (spec.min is not None or spec.max is not None):
        d.integer_range = [
            IntegerRange(
                from_value=int(spec.min if spec.min is not None else -(2**62)),
                to_value=int(spec.max if spec.max is not None else 2**62),
                step=0,
            )
        ]
    elif isinstance(spec.default, float) and (spec.min is not None or spec.max is not None):
        d.floating_point_range = [
            FloatingPointRange(
                from_value=float(spec.min if spec.min is not None else -1e300),
                to_value=float(spec.max if spec.max is not None else 1e300),
                step=0.0,
            )
        ]
    return d
