"""The node's parameters: one table for the ROS-side keys, the pipeline keys derived from `PipelineConfig`.

Every parameter is declared once with a description and, where it applies, a range or a list of
choices. ROS keys are validated here; pipeline keys are validated by building a `PipelineConfig`
(so the node, `config/depth.yaml` and the offline tools share one set of rules). Only the keys
marked `dynamic` may change while the node runs; any other change is rejected with
"restart required". No ROS import here, so the offline tools read the node's ROS-side keys of a
params file (`vdepth-bag`: the sync slops, `rectify`, ...) by this table too (`ros_param_values`);
the rclpy descriptors are `vdepth_ros.ros.params`'.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vdepth_ros.encodings import COLOR_INPUT_ENCODINGS
from vdepth_ros.errors import ConfigError, closest_name
from vdepth_ros.values import conform, kind_of, kind_of_type, type_problem

#: Accepted values of the `*_qos` parameters (`ros.qos.PRESETS` maps each to an rclpy preset).
QOS_PRESETS: tuple[str, ...] = ("sensor_data", "reliable", "best_effort")
#: Each preset's reliability (rclpy's SENSOR_DATA is best effort, its DEFAULT reliable; all keep_last, volatile).
PRESET_RELIABILITY = {"sensor_data": "best_effort", "reliable": "reliable", "best_effort": "best_effort"}


def largest_burst(schedule: Mapping[str, Any]) -> int:
    """The most frames one `DepthPipeline.push` (or a reset's flush) publishes on one topic: a
    whole window (the first window, or a flushed one)."""
    return max(int(schedule["window"]), int(schedule.get("first_window") or 0), 1)


def auto_depth(burst: int) -> int:
    """`output_qos_depth: 0`: two bursts, since a worker catching up on a backlog publishes two
    windows back to back (seen across processes on a loaded machine)."""
    return 2 * int(burst)


def output_qos(params: Mapping[str, Any], burst: int, topic: str) -> dict[str, Any]:
    """The QoS the node's output publisher on `topic` (its resolved name, `/depth`) offers, in the words of
    `qos_overrides.<topic>.publisher.*`: {"history", "depth", "reliability", "durability"}. `output_qos` and
    `output_qos_depth` (0: `auto_depth(burst)`), then that topic's `qos_overrides` in `params` (a flat parameter
    dict, as `config.load_params` reads a params file), as rclpy applies them when the node creates it; the live
    node's publishers are created from the same values (`ros.outputs`), and `vdepth-bag` records them as the
    output bag's offered QoS, so `ros2 bag play` offers what the node did."""
    values = ros_param_values(params)
    qos: dict[str, Any] = {
        "history": "keep_last",
        "depth": int(values["output_qos_depth"] or auto_depth(burst)),
        "reliability": PRESET_RELIABILITY[values["output_qos"]],
        "durability": "volatile",
    }
    for policy in qos:
        value = params.get(f"qos_overrides.{topic}.publisher.{policy}")
        if value is not None:
            qos[policy] = int(value) if policy == "depth" else str(value).lower()
    return qos


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter.

    Attributes:
        name: parameter name.
        default: default value; its Python type is the parameter type (None: dynamically typed).
        description: one line for `ros2 param describe` (`ros.params.descriptor`) and docs/node.md.
        choices: allowed string values.
        min, max: inclusive numeric range.
        step: an integer range's step: only min + k * step (`ros2 param describe`, rqt's slider).
        dynamic: may change at runtime; otherwise changes are rejected ("restart required").
        group: "ros" (this node) or "pipeline" (forwarded to `DepthPipeline.from_dict`).
        kind: the value's kind for `vdepth_ros.values` (a pipeline field's type, e.g. `list[int]`);
            None: the default's kind (`values.kind_of`).
    """

    name: str
    default: Any
    description: str
    choices: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    step: int | None = None
    dynamic: bool = False
    group: str = "ros"
    kind: Any = None

    @property
    def value_kind(self) -> Any:
        """The kind `vdepth_ros.values` judges this parameter's values by."""
        return self.kind if self.kind is not None else kind_of(self.default)

    @property
    def type_name(self) -> str:
        if self.default is None:
            return "any"
        if isinstance(self.default, list):
            return "int[]" if all(isinstance(v, int) for v in self.default) else "double[]"
        return {bool: "bool", int: "int", float: "double", str: "string"}[type(self.default)]

    @property
    def example(self) -> str | None:
        """A value of this parameter as it is typed after `ros2 param set` or `-p name:=` (a choice, the
        default, or a value of the kind where the default is empty), for an error's fix; None for
        a parameter of any type."""
        kind = self.value_kind
        kind = typing.get_args(kind)[0] if typing.get_origin(kind) is typing.Union else kind  # Optional[X]: X
        if kind is None:
            return None
        if self.choices:
            return str(self.choices[-1] if self.default == self.choices[0] else self.choices[0])
        if kind is bool:
            return "true" if not self.default else "false"
        if kind in (int, float, str):
            typical = self.default if self.default is not None else {int: 1, float: 1.0, str: "text"}[kind]
            return repr(kind(typical)) if kind is not str else str(typical)
        item = (typing.get_args(kind) or (None,))[0]
        values = list(self.default or []) or {int: [0, 8], float: [0.5, 1.0], str: ["a", "b"]}.get(item, [0, 8])
        return "[" + ", ".join(v if isinstance(v, str) else repr(v) for v in values) + "]"

    def coerce(self, value: Any) -> Any:
        """`value` as this parameter's type where the one type rule (`vdepth_ros.values`) takes it: an
        integer given for a double (`-p far:=6`, `far: 6` in a params file, `ros2 param set
        /depth_node far 6`) is that double, as the offline tools read the same file; rclpy alone
        refuses it ("expecting type 'DOUBLE'"). Anything else is returned unchanged (and judged by
        `validate`)."""
        kind = self.value_kind
        if type_problem(kind, value) is not None:
            return value
        converted = conform(kind, value)
        return value if converted == value and type(converted) is type(value) else converted

    def validate(self, value: Any) -> str | None:
        """None if `value` is acceptable, else the reason."""
        problem = type_problem(self.value_kind, value)
        if problem is not None:
            return f"{self.name} must be {problem}"
        if self.choices is not None and value not in self.choices:
            return f"{self.name}={value!r} is not one of {', '.join(self.choices)}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and math.isnan(value):
                return f"{self.name} must be a number, got NaN"
            if self.min is not None and value < self.min:
                return f"{self.name}={value} is below the minimum {self.min}"
            if self.max is not None and value > self.max:
                return f"{self.name}={value} is above the maximum {self.max}"
            if self.step and (value - (self.min or 0)) % self.step:
                allowed = range(int(self.min or 0), int(self.max if self.max is not None else 0) + 1, self.step)
                return f"{self.name}={value} is not one of {', '.join(map(str, allowed))}"
        return None


#: Parameters of the ROS layer itself (topics are remapped, not parameterised).
ROS_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "image_transport",
        "auto",
        "input image transport; compressed reads '<image>/compressed' as image_transport does (an 'image' "
        "topic already ending in /compressed is taken as it is); auto = compressed if the resolved 'image' "
        "topic ends in /compressed, else raw",
        choices=("auto", "raw", "compressed"),
    ),
    ParamSpec(
        "input_qos",
        "auto",
        "QoS of the image and sparse_depth subscriptions: auto = each follows its publishers' reliability (reliable "
        "when every publisher of the topic is, as most drivers' defaults: usb_cam, RealSense, ZED; best effort, which "
        "matches any publisher, otherwise), since across processes a best-effort subscription gets few of a reliable "
        "driver's large images; sensor_data = best effort",
        choices=("auto", *QOS_PRESETS),
    ),
    ParamSpec("input_qos_depth", 5, "history depth of the input subscriptions", min=1, max=1000),
    ParamSpec(
        "output_qos",
        "reliable",
        "QoS of the output publishers (reliable matches reliable and best-effort subscribers, e.g. RViz defaults)",
        choices=QOS_PRESETS,
    ),
    ParamSpec(
        "output_qos_depth",
        0,
        "history depth of the output publishers; 0 = auto: two windows (a window's frames leave in one burst, "
        "and a worker catching up publishes two), so a reliable subscriber in another process (RViz) gets every "
        "frame; a depth below one window is warned about at start-up",
        min=0,
        max=1000,
    ),
    ParamSpec(
        "output_pacing",
        True,
        "publish a window's frames spread at the camera's rate (0.9 of its frame period apart, at most 0.25 s), "
        "not back to back: RViz (its default QoS depth 5, messages taken once per rendered frame) gets every "
        "frame and viewers show a smooth stream; each frame leaves with its window's oldest frame's latency. "
        "false: all at once, the newest frame soonest (a robot that wants the freshest depth)",
        dynamic=True,
    ),
    ParamSpec(
        "sync_slop", 0.02, "largest image/camera_info stamp difference paired as the same time [s]", min=0.0, max=10.0
    ),
    ParamSpec("sync_queue_size", 10, "images held while waiting for their camera_info", min=1, max=1000),
    ParamSpec(
        "camera_info_timeout",
        1.0,
        "after this long without camera_info the last one is reused [s]",
        min=0.0,
        max=3600.0,
    ),
    ParamSpec(
        "rectify",
        False,
        "undistort each image with its camera_info (K, D, R, P; plumb_bob, rational_polynomial, equidistant, "
        "also named fisheye/kannala_brandt) before inference, as image_proc makes image_rect: set it when 'image' "
        "is a raw, distorted image; "
        "false = the image is already rectified (image_rect)",
    ),
    ParamSpec(
        "sparse_depth",
        "none",
        "optional metric scale input: none, image (topic 'sparse_depth', 32FC1 m / 16UC1 mm, same camera; a "
        "topic named .../compressedDepth or .../compressed is read as image_transport's compressed depth: "
        "compressedDepth png or rvl, or a 16UC1 png), "
        "pointcloud (topic 'sparse_depth', PointCloud2 in the camera optical frame) or pose (topic "
        "'camera_pose', geometry_msgs/PoseStamped of the camera optical frame in a fixed frame, metres: "
        "tracked image points are triangulated with it; needs camera_info)",
        choices=("none", "image", "pointcloud", "pose"),
    ),
    ParamSpec(
        "sparse_depth_slop",
        0.1,
        "largest image/sparse_depth (or camera_pose) stamp difference used for scale [s]",
        min=0.0,
        max=10.0,
    ),
    ParamSpec(
        "max_input_rate",
        0.0,
        "take images at most this often, by their stamps: every n-th image, evenly spaced (an image is taken once "
        "its stamp is 1 / max_input_rate after the last one taken, less a quarter of the camera's frame step for "
        "jitter; the others are counted on /diagnostics), for a camera faster "
        "than inference (60-120 Hz), which would otherwise fill the input queue (its oldest frames dropped: about "
        "queue_size frames of latency, uneven frame steps); set it below the output rate the node keeps up with "
        "[Hz]; 0 = every image",
        min=0.0,
        max=10000.0,
    ),
    ParamSpec(
        "queue_size",
        32,
        "input frames buffered for the worker; when full the oldest is dropped (counted)",
        min=1,
        max=10000,
    ),
    ParamSpec(
        "queue_drain_after",
        5.0,
        "when the input queue has held more than a window's new frames for this long (a standing backlog: after "
        "a burst of load the worker keeps pace with the camera but never catches up, so every later frame waits "
        "behind it), the oldest beyond them are dropped (counted) and the latency comes back down [s]; 0 = never "
        "(every frame the queue holds is processed: a recording replayed with a large queue_size)",
        min=0.0,
        max=3600.0,
    ),
    ParamSpec(
        "image_bit_depth",
        0,
        "significant bits of 16-bit images (mono16, bayer_*16, rgb16...): a 12-bit camera publishing values "
        "0-4095 is 12, and bits 11..4 become the model's 8-bit image; 0 = auto: found from the images (low "
        "bits used or top bits filled), raised by 3 frames in a row that need more bits (a flash does not darken "
        "every later frame), lowered by 15 that need 4 fewer (a camera switched to fewer bits), found anew at a "
        "new stream (max_gap, time jump, size or encoding), each choice logged once at INFO",
        min=0,
        max=16,
    ),
    ParamSpec(
        "image_encoding",
        "auto",
        "read each raw image's bytes as this encoding instead of the one the message names, for a driver that "
        "cannot be changed: an IR camera publishing 16UC1 (kinect2_bridge's image_ir: mono16), OpenCV frames "
        "published as 8UC3 without a channel order (bgr8), a driver naming bgr8 what is rgb8; an image whose "
        "bytes per pixel it does not fit is refused naming both; auto = as each message names it; compressed "
        "images are unaffected",
        choices=("auto", *COLOR_INPUT_ENCODINGS),
    ),
    ParamSpec(
        "max_input_pixels",
        4096 * 4096,
        "larger images (width x height; the colour image, and a sparse_depth image, which is then not used) are "
        "refused before decoding, with a rate-limited error (a 97 KB PNG can decode to 10000x10000); 0 = no limit",
        min=0,
        max=1_000_000_000,
    ),
    ParamSpec("skip_when_unsubscribed", True, "skip inference while no output topic has a subscriber", dynamic=True),
    ParamSpec("max_gap", 1.0, "a larger gap between input stamps resets the stream [s]", min=0.0, max=3600.0),
    ParamSpec(
        "pause_flush",
        0.0,
        "after this long without an image (a camera that paused) the frames held for the next window are "
        "inferred and published at once, with their own stamps; the stream goes on when the camera resumes [s, of "
        "the stamps' time: a recording replayed at 0.25x without use_sim_time waits 4x as long]; 0 = auto: 4 of the "
        "camera's frame periods as its images arrive, at least 0.2 s (0.5 s until the rate is known), at most max_gap",
        min=0.0,
        max=3600.0,
    ),
    ParamSpec("publish_colormap", False, "publish ~/depth_colormap (bgr8, for viewing)", dynamic=True),
    ParamSpec(
        "colormap_min",
        0.0,
        "colormap range lower bound (depth m, or disparity without scale); min >= max means per-frame auto range",
        dynamic=True,
    ),
    ParamSpec("colormap_max", 0.0, "colormap range upper bound", dynamic=True),
    ParamSpec(
        "watchdog_timeout",
        5.0,
        "/diagnostics goes ERROR when images arrive but nothing was published for this long once the next "
        "window's images have arrived (a slow camera or a slow-motion replay waiting for them is no stall), and back "
        "to OK when output resumes [s]; set it above the model's first-window time; 0 = off",
        min=0.0,
        max=3600.0,
        dynamic=True,
    ),
    ParamSpec(
        "diagnostics_period",
        1.0,
        "seconds between /diagnostics messages; keep it below 5 s, a diagnostic_aggregator's default timeout, "
        "or rqt_robot_monitor shows the node STALE between them (a start-up warning says so)",
        min=0.05,
        max=3600.0,
    ),
    ParamSpec(
        "flicker_period",
        0.0,
        "seconds between flicker measurements reported on /diagnostics (the flow warping error of one pair "
        "of consecutive output frames, ~9 ms of CPU each at 640x480, docs/performance.md; "
        "vdepth_ros.consistency); 0 = off",
        min=0.0,
        max=3600.0,
        dynamic=True,
    ),
    ParamSpec(
        "blas_threads",
        1,
        "threads of numpy's OpenBLAS in this process (set at start-up, process-wide); "
        "the node's numpy work is small and a BLAS thread pool busy-waits, competing with inference "
        "for the cores; 0 = leave as is",
        min=0,
        max=1024,
    ),
)

#: Pipeline keys that need a new engine/pipeline: rejected at runtime with "restart required".
RESTART_REQUIRED: frozenset[str] = frozenset({"model", "backend", "precision", "engine_threads", "device_id"})


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else tp), len(args) < len(typing.get_args(tp))
    return tp, False


def pipeline_param_specs(config_cls: type) -> tuple[ParamSpec, ...]:
    """Parameter specs for every field of the pipeline's config dataclass.

    Descriptions come from field metadata `description` (`vdepth_ros.config.param`), choices from
    metadata `choices` or `Literal[...]` annotations, ranges from metadata `min`/`max`. Fields
    defaulting to None are declared dynamically typed (rcl has no None), their values still held to
    the field's type (`float | None`: a number).
    """
    hints = typing.get_type_hints(config_cls)
    specs = []
    for f in dataclasses.fields(config_cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        if isinstance(default, tuple):
            default = list(default)
        tp, _ = _unwrap_optional(hints.get(f.name))
        allowed = f.metadata.get("choices")
        kind = kind_of_type(tp) if default is not None else kind_of_type(hints.get(f.name))  # X | None: None or X
        if allowed is None and typing.get_origin(tp) is typing.Literal:
            allowed = tuple(typing.get_args(tp))
        description = f.metadata.get("description") or f.name.replace("_", " ")
        specs.append(
            ParamSpec(
                f.name,
                default,
                description,
                choices=tuple(allowed) if allowed else None,
                min=f.metadata.get("min"),
                max=f.metadata.get("max"),
                step=f.metadata.get("step"),
                dynamic=False,
                group="pipeline",
                kind=kind,  # None default: dynamically typed for rcl, values still held to the field's type
            )
        )
    return tuple(specs)


def all_param_specs(config_cls: type) -> tuple[ParamSpec, ...]:
    """ROS keys followed by the pipeline keys; a name clash is a programming error."""
    pipeline = pipeline_param_specs(config_cls)
    clash = {s.name for s in ROS_PARAMS} & {s.name for s in pipeline}
    if clash:
        raise ConfigError(f"parameter names used by both the node and PipelineConfig: {sorted(clash)}")
    return ROS_PARAMS + pipeline


def validate_ros_params(values: Mapping[str, Any]) -> None:
    """Check every ROS-side value and their combinations.

    Raises:
        ConfigError: naming the first bad parameter and why.
    """
    by_name = {s.name: s for s in ROS_PARAMS}
    for name, value in values.items():
        spec = by_name.get(name)
        if spec is not None:
            reason = spec.validate(value)
            if reason:
                raise ConfigError(reason)
    bits = values.get("image_bit_depth", 0)
    if isinstance(bits, int) and 0 < bits < 8:
        raise ConfigError(f"image_bit_depth={bits}: a 16-bit image holds 8 to 16 significant bits (0 = auto)")


def ros_param_values(params: Mapping[str, Any]) -> dict[str, Any]:
    """The node's ROS-side parameters as the node gets them from a flat parameter dict (a params file
    as `config.load_params` reads it): each given value by the type rule (an integer for a double is
    that double), the default for each one not given; other keys are ignored. The offline tools read
    the ones they reproduce (sync slops, `rectify`, `max_gap`, ...) through it.

    Raises:
        ConfigError: the first bad value, in the words the node stops with (`validate_ros_params`).
    """
    values = {s.name: s.coerce(params[s.name]) if s.name in params else s.default for s in ROS_PARAMS}
    validate_ros_params(values)
    return values


def set_value_error(spec: ParamSpec, value: Any, node: str = "/depth_node") -> str | None:
    """None if `value` is acceptable for `spec`, else the reason (`ParamSpec.validate`: the parameter,
    what it must be, what it got) with a value it takes, e.g. "watchdog_timeout must be a number,
    got 'abc'; e.g. watchdog_timeout 5.0": the answer to a SetParameters call (rqt_reconfigure, a
    parameter client, `ros2 param set`) of a wrong value, instead of rclpy's "Wrong parameter type,
    expected '3' got '4'". A value, not a command: the caller has a way to set it already."""
    reason = spec.validate(value)
    if reason is None or spec.example is None:
        return reason
    return f"{reason}; e.g. {spec.name} {spec.example}"


def runtime_set_advice(node: str, name: str, value: str, python: str | None = None) -> str:
    """How to set parameter `name` to `value` (as `-p name:=` takes it) on the running node `node`, in words that
    work where the node runs: ROS from pip wheels has no `ros2` CLI, so `ros2 param set` comes last, for a ROS
    distro install. First the way that always works (a restart with `-p`), then the node's SetParameters service
    from `python` (the node's own interpreter by default: rclpy imports only from its venv), or rqt_reconfigure.
    Only for a parameter marked runtime (`ParamSpec.dynamic`)."""
    import yaml

    literal = repr(yaml.safe_load(value))
    return (
        f"restart with --ros-args -p {name}:={value} (or put it in the params file), or set it at runtime through "
        f"its SetParameters service: rqt_reconfigure, or {set_parameter_command(node, name, literal, python)}, or "
        f"with a ROS distro install: ros2 param set {node} {name} {value}"
    )


def set_parameter_command(node: str, name: str, literal: str, python: str | None = None) -> str:
    """A shell command that sets `name` to the Python value `literal` on `node` through rclpy's parameter client
    (what `ros2 param set` does, where there is no `ros2`) and prints the node's answer; run with the node's
    ROS_DOMAIN_ID."""
    import sys

    script = (
        "import rclpy; from rclpy.parameter import Parameter; from rclpy.parameter_client import AsyncParameterClient; "
        f"rclpy.init(); n = rclpy.create_node('param_set'); c = AsyncParameterClient(n, '{node}'); "
        # (half a second more: the node's reply writer may match this client's reader after it saw the service)
        f"f = c.set_parameters([Parameter('{name}', value={literal})]) if c.wait_for_services(10.0) "
        "and not rclpy.spin_once(n, timeout_sec=0.5) else None; "
        "f and rclpy.spin_until_future_complete(n, f, timeout_sec=10.0); "
        f"print(f.result() if f and f.done() else 'no answer from {node} (not running on this ROS_DOMAIN_ID?)')"
    )
    return f'{python or sys.executable} -c "{script}"'


def runtime_change_error(
    name: str, old: Any, new: Any, specs: Mapping[str, ParamSpec], node: str = "/depth_node"
) -> str | None:
    """None if `name` may change from `old` to `new` while running, else the reason: a parameter that
    is not `dynamic` needs a restart (whatever the value), a dynamic one a valid value
    (`set_value_error`)."""
    spec = specs.get(name)
    if spec is None:
        return None  # not ours (e.g. use_sim_time)
    if old == new and type(old) is type(new):
        return None
    if not spec.dynamic:
        what = "the engine (model, backend, precision, threads, GPU)" if name in RESTART_REQUIRED else name
        dynamic = ", ".join(s.name for s in specs.values() if s.dynamic)
        return (
            f"{name}: changing {what} at runtime is not supported; restart required (set it with -p {name}:=... or "
            f"in the params file; the parameters that change at runtime: {dynamic})"
        )
    return set_value_error(spec, new, node)


def node_param_specs() -> tuple[ParamSpec, ...]:
    """All parameters of `depth_node`: the ROS table plus `vdepth_ros.config.PipelineConfig`."""
    from vdepth_ros import config

    return all_param_specs(config.PipelineConfig)


def yaml_text(value: Any) -> str:
    """A parameter value as it is written after `-p NAME:=` or in a params file (`true`, `0.02`, `auto`,
    `[0, 8]`; a string YAML would read as another type is quoted)."""
    import yaml

    if isinstance(value, str):
        return value if value and yaml.safe_load(value) == value else f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(yaml_text(v) for v in value) + "]"
    return "true" if value is True else "false" if value is False else repr(value)


def parameter_lines(specs: Iterable[ParamSpec]) -> list[str]:
    """One line per parameter for `vdepth-node --help`: name, type, default (as `-p NAME:=` takes it),
    whether `ros2 param set` applies it at runtime, and its choices or range."""
    rows = []
    for spec in specs:
        if spec.choices:
            allowed = " | ".join(spec.choices)
        elif spec.min is not None and spec.max is not None:
            allowed = f"{yaml_text(spec.min)} to {yaml_text(spec.max)}" + (f" step {spec.step}" if spec.step else "")
        elif spec.min is not None or spec.max is not None:
            allowed = f">= {yaml_text(spec.min)}" if spec.min is not None else f"<= {yaml_text(spec.max)}"
        else:
            allowed = ""
        rows.append((spec.name, spec.type_name, yaml_text(spec.default), "runtime" if spec.dynamic else "", allowed))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(row, [*widths, 0], strict=True)).rstrip() for row in rows]


#: parameters rclpy declares on every node (`use_sim_time`...); the publishers' QoS overrides
#: (`qos_overrides./depth.publisher.depth`) are declared by the node's publishers
RCLPY_PARAMETERS = frozenset(("use_sim_time", "start_type_description_service"))


def is_node_parameter(name: str) -> bool:
    """Does `depth_node` have this parameter (its table, rclpy's own, a publisher's `qos_overrides.*`)?
    What the node's `has_parameter` answers once running, for the offline tools' reading of its file."""
    return (
        name in RCLPY_PARAMETERS
        or name.startswith("qos_overrides.")
        or any(spec.name == name for spec in node_param_specs())
    )


def unknown_parameters_warning(
    overridden: Iterable[str],
    is_declared: Callable[[str], bool],
    where: str = "the -p arguments and params file sections",
    qos_overrides: Iterable[str] = (),
) -> str | None:
    """The start-up warning for parameters set on the command line or in a params file that the node
    does not have (a typo such as `-p rectfy:=true` would otherwise be ignored without a word, as rcl
    ignores any override nobody declares), each with the closest parameter name; None if all are known.

    Args:
        overridden: the names given to the node (`-p`, `--params-file` sections that match it).
        is_declared: the node's `has_parameter` (this node's parameters, rclpy's own such as
            `use_sim_time`, and the publishers' `qos_overrides.*`).
        where: where the names were given, for the fix (the offline tools read one params file).
        qos_overrides: the node's declared `qos_overrides.*` names: an unknown one (`qos_overrides.depth...`
            without the topic's leading '/', or the topic's name before a remap) is told the names there are.
    """
    unknown = sorted(name for name in set(overridden) if not is_declared(name))
    if not unknown:
        return None
    qos_names = sorted(qos_overrides)
    names = [spec.name for spec in node_param_specs()] + qos_names
    parts = []
    for name in unknown:
        close = closest_name(name, names, cutoff=0.75)
        parts.append(f"{name} (did you mean {close}?)" if close else name)
    qos_hint = ""
    if qos_names and any(name.startswith("qos_overrides.") for name in unknown):
        topics = sorted({name.split(".publisher.")[0].removeprefix("qos_overrides.") for name in qos_names})
        policies = sorted({name.rsplit(".", 1)[1] for name in qos_names})
        qos_hint = (
            f"; qos_overrides.<topic>.publisher.<policy> names an output topic as it resolves (after remaps and "
            f"the namespace): {', '.join(topics)}; policies {', '.join(policies)}"
        )
    return (
        f"ignoring {len(unknown)} parameter(s) this node does not have: {', '.join(parts)}{qos_hint}; check {where} "
        "for depth_node (every parameter: docs/node.md, Parameters)"
    )
