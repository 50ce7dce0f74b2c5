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


#: The widest integer range a descriptor gives: rqt_reconfigure shows an integer parameter with a range as a
#: Qt slider and validator, which take 32-bit ints (a wider bound raises OverflowError there, and the node's
#: parameters never show up); a side without a limit is this one.
INT32_MAX = 2**31 - 1


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The rclpy descriptor (`ros2 param describe`, rqt_reconfigure; ranges are enforced by rclpy too).
    A configured node marks the parameters that need a restart read-only (`_mark_restart_only`)."""
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
                from_value=max(int(spec.min), -INT32_MAX - 1) if spec.min is not None else -INT32_MAX - 1,
                to_value=min(int(spec.max), INT32_MAX) if spec.max is not None else INT32_MAX,
                step=spec.step or 0,
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
