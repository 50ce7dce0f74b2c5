"""The depth node's parameters as rclpy sees them: declared with values, an integer given for a double
taken as that double (command line, params file, `ros2 param set`), every change checked before rclpy's
own checks with the package's reasons (`node_params`), the ones that need a restart read-only while
configured, and a dynamic one's new value handed to the collaborators that read it.
"""

from __future__ import annotations

import copy
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterUninitializedException
from rclpy.parameter import Parameter

from vdepth_ros.errors import ConfigError, closest_name
from vdepth_ros.node_params import ParamSpec, node_param_specs, runtime_change_error, set_value_error, yaml_text
from vdepth_ros.ros.params import declare_value, descriptor
from vdepth_ros.ros.python_logs import forward_python_logging
from vdepth_ros.ros.startup import values_rcl_dropped
from vdepth_ros.values import kind_of, misread_number, type_problem


class ParameterSide:
    """Mixed into the depth node (`node._DepthNodeCore`, before `rclpy.node.Node` or `LifecycleNode`):
    `_declare_params` at construction, `_param_values` at configure, `set_parameters(_atomically)` and
    the pre-set and set callbacks afterwards. Reads the node's `_configured`, `p`, `pipeline_params`,
    `processor`, `watchdog` and `log` once configured."""

    # -- construction and configure -----------------------------------------------------------
    def _declare_params(self) -> None:
        """Declare every parameter with a value (so `ros2 param get/dump` can read each one), taking
        an integer given for a double as that double, on the command line, in a params file
        (`_parameter_overrides`) and when set later (a pre-set callback), as the offline tools do."""
        forward_python_logging()  # the pipeline's and runtime's own lines, into the ROS log
        self._specs: dict[str, ParamSpec] = {s.name: s for s in node_param_specs()}
        overrides: dict[str, Parameter] = getattr(self, "_parameter_overrides", {})
        plain = {name: param.value for name, param in overrides.items()}
        for name, value in values_rcl_dropped(self.get_fully_qualified_name(), plain).items():
            overrides[name] = Parameter(name, value=value)  # the value given last, as the user wrote it
        for spec in self._specs.values():
            given = overrides.get(spec.name)
            if given is not None and spec.coerce(given.value) is not given.value:
                overrides[spec.name] = Parameter(spec.name, value=spec.coerce(given.value))
            try:
                self.declare_parameter(spec.name, declare_value(spec), descriptor(spec))
            except Exception as err:  # rclpy's range/type exceptions: re-raise with our message
                reason = spec.validate(overrides[spec.name].value) if spec.name in overrides else None
                raise ConfigError(reason or f"parameter {spec.name}: {err}") from err
            if isinstance(spec.default, list) and not self._has_value(spec.name):
                # an empty list has no ROS type: declared by type, then given its empty value (a
                # parameter without a value empties every `ros2 param dump` and multi-name get)
                self.set_parameters([Parameter(spec.name, declare_value(spec), [])])
        self.add_pre_set_parameters_callback(self._coerce_parameters)

    def _has_value(self, name: str) -> bool:
        try:
            self.get_parameter(name)
        except ParameterUninitializedException:
            return False
        return True

    def _coerce_parameters(self, params: list[Parameter]) -> list[Parameter]:
        """rclpy's pre-set hook: an integer set for a double parameter becomes that double, and so does
        the text `ros2 param set` sends for `1e-3` (`_set_value`)."""
        out = []
        for param in params:
            spec = self._specs.get(param.name)
            value = self._set_value(spec, param.value) if spec is not None else param.value
            out.append(param if value is param.value else Parameter(param.name, value=value))
        return out

    @staticmethod
    def _set_value(spec: ParamSpec, value: Any) -> Any:
        """A value set at runtime as the parameter takes it: `spec.coerce` (an integer for a double),
        and for a double the text '1e-3' as 0.001: `ros2 param set /depth_node colormap_min 1e-3` (and
        `ros2 param load`) read the value with PyYAML, which takes scientific notation without a dot
        for a string, where rcl reads the same `1e-3` in a params file or `-p` as a double."""
        number = misread_number(value)
        if number is not None and spec.value_kind is not None and type_problem(spec.value_kind, number) is None:
            return spec.coerce(number)
        return spec.coerce(value)

    def _param_values(self) -> dict[str, Any]:
        values = {}
        for spec in self._specs.values():
            try:
                value = self.get_parameter(spec.name).value
            except ParameterUninitializedException:  # declared by type only (an empty list default)
                value = None
            if isinstance(spec.default, list):
                value = [] if value is None else list(value)
            values[spec.name] = value
        return values

    # -- set at runtime -----------------------------------------------------------------------
    def set_parameters_atomically(self, parameter_list: list[Parameter]) -> SetParametersResult:
        """rclpy's, with the package's reasons first: `ros2 param set` (the SetParameters service calls
        this for each parameter) of a wrong type, a value out of range, a parameter that needs a
        restart or one the node does not have is refused in one line that names the parameter, what
        it must be and a command that works (rclpy would answer a type or range check first, in its
        own words: "Wrong parameter type, expected '3' got '4'"). Nothing of a refused list is applied.
        The refusal is logged too (rate-limited), for whoever watches the node rather than the caller."""
        reason = self._unknown_name(parameter_list) or self._set_refusal(parameter_list)
        if reason is not None:
            log = getattr(self, "log", None)
            if log is not None:
                log.warning(f"param set {parameter_list[0].name}", f"parameter change refused: {reason}")
            return SetParametersResult(successful=False, reason=reason)
        changing = [param for param in parameter_list if not self._unchanged_read_only(param)]
        if not changing:
            return SetParametersResult(successful=True)
        return super().set_parameters_atomically(changing)  # type: ignore[misc]

    def _mark_restart_only(self, configured: bool) -> None:
        """Describe every parameter that cannot change while the node is configured as read-only (`ros2
        param describe`: "Read only: true"), so rqt_reconfigure greys it out: it showed the new value in
        an editable field while the node refused it (rqt drops the refusal's reason); writable again
        when a managed node is cleaned up (its next configure reads them)."""
        for spec in self._specs.values():
            if spec.dynamic:
                continue
            marked = copy.copy(self.describe_parameter(spec.name))  # as declared: its type, range, text
            marked.read_only = configured
            # rclpy's set_descriptor refuses to touch a read-only parameter's descriptor at all, so the
            # node's descriptor table is written directly (what set_descriptor stores, the value unchanged)
            self._descriptors[spec.name] = marked

    def _unchanged_read_only(self, param: Parameter) -> bool:
        """A read-only parameter set to the value it has (`ros2 param load` of the node's own dump, rqt's
        Load): nothing to change, rather than rclpy's refusal "Trying to set a read-only parameter"."""
        if not self.has_parameter(param.name) or not self.describe_parameter(param.name).read_only:
            return False
        spec = getattr(self, "_specs", {}).get(param.name)
        value = self._set_value(spec, param.value) if spec is not None else param.value
        current = self.get_parameter(param.name).value

        def plain(v: Any) -> Any:  # rclpy gives arrays as array.array or lists
            return list(v) if hasattr(v, "__len__") and not isinstance(v, (str, bytes)) else v

        current, value = plain(current), plain(value)
        return bool(current == value and type(current) is type(value))

    def set_parameters(self, parameter_list: list[Parameter]) -> list[SetParametersResult]:
        """rclpy's (each parameter set on its own), through `set_parameters_atomically`'s checks."""
        return [self.set_parameters_atomically([param]) for param in parameter_list]

    def _unknown_name(self, params: list[Parameter]) -> str | None:
        """'<node> has no parameter <name> (did you mean ...?)' for the first name the node lacks."""
        node = self.get_fully_qualified_name()
        for param in params:
            if not self.has_parameter(param.name):
                close = closest_name(param.name, list(getattr(self, "_specs", {})), cutoff=0.6)
                hint = f" (did you mean {close}?)" if close else ""
                return f"{node} has no parameter {param.name!r}{hint}; its parameters: docs/node.md, Parameters"
        return None

    def _set_refusal(self, params: list[Parameter]) -> str | None:
        """Why `params` may not be set now (None: they may): a deleted parameter, a bad value
        (`set_value_error`), or, once configured, a change that needs a restart
        (`runtime_change_error`). Values are taken as the pre-set hook will (an integer for a double);
        a parameter not in the table (rclpy's own: use_sim_time) is held to its value's kind."""
        specs: dict[str, ParamSpec] = getattr(self, "_specs", {})
        node = self.get_fully_qualified_name()
        for param in params:
            spec = specs.get(param.name)
            if spec is None:  # rclpy's own (use_sim_time): its value's kind, as rclpy would, in these words
                current = self.get_parameter(param.name).value if self.has_parameter(param.name) else None
                problem = None if current is None else type_problem(kind_of(current), param.value)
                if problem is not None:
                    return f"{param.name} must be {problem}; e.g. {param.name} {yaml_text(current)}"
                declared = self.has_parameter(param.name)  # not yet while a publisher declares it
                if declared and self.describe_parameter(param.name).read_only and not self._unchanged_read_only(param):
                    what = (  # rclpy's words: "Trying to set a read-only parameter"
                        "a publisher's QoS is read when the node starts"
                        if param.name.startswith("qos_overrides.")
                        else "rclpy reads it when the node starts"  # start_type_description_service
                    )
                    return (
                        f"{param.name}: {what}; restart required (set it with -p {param.name}:=... or in the "
                        "params file)"
                    )
                continue
            if param.type_ == Parameter.Type.NOT_SET:
                return f"{param.name} cannot be deleted: it is one of {node}'s parameters (set a value instead)"
            value = self._set_value(spec, param.value)
            if not self._configured:  # a managed node before configure: anything valid, read at configure
                reason = set_value_error(spec, value, node)
            else:
                old = self.p.get(param.name, self.pipeline_params.get(param.name))
                reason = runtime_change_error(param.name, old, value, specs, node)
            if reason:
                return reason
        return None

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        reason = self._set_refusal(params)  # refused before rclpy's checks already; kept for any other way in
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        if not self._configured:
            return SetParametersResult(successful=True)
        for param in params:
            if param.name in self.p:
                self.p[param.name] = param.value
            if param.name == "flicker_period":
                self.processor.flicker.period = float(param.value)
            if param.name == "watchdog_timeout":
                self.watchdog.timeout_s = float(param.value)
            if param.name == "use_sim_time" and param.value != self.get_parameter("use_sim_time").value:
                self.intake.clock_changed()  # (rclpy's TimeSource switches the node's clock as this returns)
        return SetParametersResult(successful=True)
