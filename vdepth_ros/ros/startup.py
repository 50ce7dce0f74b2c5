"""Start-up: check what the node will read before reading it, warm the model up, and say where the
time to the first `/depth` went.

A bad file stops the node with one line, `cannot start: <file>: <reason>`, and exit status 2 (as
an invalid parameter does), never a traceback: the params files (`check_params_files`, before
rclpy parses them) and every model file (`vdepth_ros.runtime.checks`, as `build_pipeline` loads a
camera's model). The start-up log then breaks the time to the first output into imports, model
load, warm-up inference (one window run at configure, so the first camera window is not the slow
one), discovery (activation to the first image) and the first window (first image to first output).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vdepth_ros.errors import ConfigError, ModelLoadError, VdepthError
from vdepth_ros.paths import bundled_file_hint

if TYPE_CHECKING:
    from vdepth_ros.runtime.shared import EnginePool


class StartupError(VdepthError):
    """The node cannot start; the message is "<file or argument>: <reason>"."""


def process_age_s() -> float | None:
    """Seconds since this process started (Linux: /proc), or None where that is not known."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5), counted after the ")" of the name
        uptime = time.clock_gettime(time.CLOCK_BOOTTIME)
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class StartupClock:
    """Durations of the start-up steps, for the log line and `benchmarks/node_startup.py`."""

    def __init__(self) -> None:
        age = process_age_s()
        self.process_start = time.monotonic() - (age or 0.0)
        self.steps: dict[str, float] = {}

    def imports_done(self) -> None:
        """`vdepth-node`'s `main` runs: the interpreter, rclpy and the node's modules are loaded."""
        age = process_age_s()
        if age is not None:
            self.steps["imports"] = age

    def add(self, step: str, seconds: float) -> None:
        self.steps[step] = self.steps.get(step, 0.0) + seconds

    def since_start(self) -> float:
        return time.monotonic() - self.process_start

    def line(self) -> str:
        parts = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.steps.items())
        return f"start-up: {parts}; ready {self.since_start():.2f} s after the process started"


#: One clock per process: the steps of every camera of `--cameras` add up in it.
CLOCK = StartupClock()


def warm_up(engine: Any) -> float:
    """Run one window of zeros through `engine` (first-call allocations, kernel selection) and
    return the seconds it took; a shared engine is warmed once."""
    loaded = getattr(engine, "inner", engine)  # a SharedEngine: the engine it shares
    if getattr(loaded, "_vdepth_warm", False):
        return 0.0
    spec = engine.input_spec
    t0 = time.monotonic()
    engine.infer(np.zeros((int(spec.frames), int(spec.height), int(spec.width), 3), np.uint8))
    with contextlib.suppress(AttributeError):  # an engine with __slots__: warmed again next time, harmless
        loaded._vdepth_warm = True
    return time.monotonic() - t0


def build_pipeline(
    params: dict[str, Any],
    engine: Any = None,
    engine_pool: EnginePool | None = None,
    params_file: str | None = None,
) -> tuple[Any, bool]:
    """The camera's `DepthPipeline` and whether the engine was built here (then its model is resolved
    and checked first (`runtime.checks.checked_model`, as the offline tools do), timed, warmed up, and
    closed at cleanup; an injected or pooled one is not closed). `params_file`: the params file that
    gave `model` (a relative path there is relative to the file's folder), None for the current folder.

    Raises:
        ConfigError: invalid pipeline parameters. ModelLoadError (`runtime.checks.ModelFileError`):
        a model file is unusable.
    """
    from vdepth_ros.config import PipelineConfig
    from vdepth_ros.pipeline import DepthPipeline
    from vdepth_ros.runtime.checks import checked_model

    try:
        config, _ = PipelineConfig.from_params(params)
    except VdepthError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"invalid pipeline parameters: {err}") from err
    built = engine is None
    pooled = None
    try:
        if built:
            t0 = time.monotonic()
            config.model = checked_model(config.model, params_file)
            if engine_pool is not None:
                engine = pooled = engine_pool.get(
                    config.resolved_model(), config.backend, config.precision, **config.engine_options()
                )
            pipeline = DepthPipeline(config, engine=engine)
            CLOCK.add("model load", time.monotonic() - t0)
            CLOCK.add("warm-up inference", warm_up(pipeline.engine))
        else:
            pipeline = DepthPipeline(config, engine=engine)
    except Exception as err:
        if pooled is not None and engine_pool is not None:
            engine_pool.release(pooled)  # this camera does not use it after all
        if isinstance(err, VdepthError) or not built:
            raise
        # the backend's own failure (onnxruntime's InvalidProtobuf...): one line naming the model
        raise ModelLoadError(f"{config.resolved_model()}: cannot be loaded ({type(err).__name__}: {err})") from err
    return pipeline, built and engine_pool is None


def params_files(argv: list[str]) -> list[str]:
    """The `--params-file` arguments inside `--ros-args` sections of `argv`."""
    files, in_ros = [], False
    for i, arg in enumerate(argv):
        if arg == "--ros-args":
            in_ros = True
        elif arg == "--":
            in_ros = False
        elif in_ros and arg == "--params-file" and i + 1 < len(argv):
            files.append(argv[i + 1])
    return files


#: This process's command line (`vdepth-node` sets it before building its nodes): a relative `model:` path
#: written in one of its `--params-file`s is relative to that file's folder (`params_file_of`), and a value
#: rcl dropped for an earlier one of another type is taken as given (`values_rcl_dropped`).
ROS_ARGV: list[str] = []


def params_file_of(node: str, name: str, value: Any) -> str | None:
    """The params file of this process (`ROS_ARGV`) that gave node `node` (fully qualified) `value`
    for parameter `name`: the last one setting it, as rcl applies them; None when none did (a `-p`
    override, the default). A temporary copy a launch tool wrote is returned too: `resolve_model` knows
    it (`runtime.registry.is_rewritten_params_file`) and says so.
    """
    from vdepth_ros.config import load_params

    source = None
    for path in params_files(ROS_ARGV):
        try:
            values = load_params(path, node)
        except VdepthError:  # no section for this node (refused files stopped start-up already)
            continue
        if name in values:
            source = path if values[name] == value else None
    return source


def values_rcl_dropped(node: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of node `node` (fully qualified) whose value given last on this process's command line
    (`ROS_ARGV`) rcl dropped for an earlier one of another type, each with the value given last: rcl keeps
    one field per type in a parameter's slot and rclpy reads the first present (bool, integer, double, ...),
    so `far: 6` in config/depth.yaml beat a later `-p far:=4.5`, `far: 4.5` in a second params file, or a
    launch file's `parameters=[params_file, {'far': 4.5}]`, without a word (`vdepth_ros.param_file`).
    Only a parameter whose override (`overrides`: rclpy's, name -> value) is rcl's reading of the same
    command line is replaced, so nothing rcl read otherwise is second-guessed."""
    from vdepth_ros.param_file import node_params, ros_args_sections

    try:
        sections = ros_args_sections(ROS_ARGV)
    except VdepthError:  # rcl refused it already (check_params_files, rclpy.init)
        return {}
    by_rcl, as_given = node_params(sections, node), node_params(sections, node, as_given=True)

    def same(a: Any, b: Any) -> bool:
        return bool(a == b and type(a) is type(b))

    return {
        name: value
        for name, value in as_given.items()
        if name in overrides
        and name in by_rcl
        and same(overrides[name], by_rcl[name])
        and not same(value, by_rcl[name])
    }


#: The largest ROS_DOMAIN_ID Fast DDS (the wheels' only middleware) opens ports for: its UDP ports are
#: 7400 + 250 x domain (+ up to 11), which must stay below 65536.
MAX_DOMAIN_ID = 232


def check_domain_id(environ: Mapping[str, str]) -> None:
    """Refuse a `ROS_DOMAIN_ID` that is not a whole number 0-`MAX_DOMAIN_ID` before rclpy creates the node. Above
    it, Fast DDS logs "Calculated port number is too high" and the process ended with exit status 1 inside rclpy,
    without a word from the node; a word ("robot1") ended in rclpy's traceback; and rcl reads "-1" as domain 0
    and "1e3" as domain 1, so a node meant to be apart silently joined another domain.

    Raises:
        StartupError: naming the variable, its value and the fix.
    """
    value = environ.get("ROS_DOMAIN_ID", "").strip()
    fix = (
        f"set ROS_DOMAIN_ID to 0-{MAX_DOMAIN_ID} (0-101 on Linux keeps clear of its ephemeral ports), the same in "
        "every process of the robot"
    )
    if value and not value.isdigit():
        raise StartupError(f"ROS_DOMAIN_ID={value!r} is not a whole number (rcl reads '-1' as domain 0): {fix}")
    if value and int(value) > MAX_DOMAIN_ID:
        raise StartupError(
            f"ROS_DOMAIN_ID={value} is above {MAX_DOMAIN_ID}, the largest domain Fast DDS can open its UDP ports for "
            f"(7400 + 250 x domain): {fix}"
        )


#: ROS arguments followed by a rule NAME:=VALUE (a parameter) or FROM:=TO (a remap).
RULE_ARGUMENTS = {"-p": "a parameter", "--param": "a parameter", "-r": "a remap", "--remap": "a remap"}


def check_ros_rules(argv: list[str]) -> None:
    """Refuse a `-p` or `-r` rule without `:=` (`-p far=4.0`, `-p far:4.0`, `-r image=/cam/image`) or a relative
    namespace (`-r __ns:=front`), naming the rule as it should be written: rcl says only "Couldn't parse
    parameter override rule ... Expected lexeme type (22) not found, search ended at index 3".

    Raises:
        StartupError: "-p far=4.0: a parameter is written with ':=' (NAME:=VALUE): -p far:=4.0".
    """
    in_ros = False
    for i, arg in enumerate(argv[:-1]):
        if arg == "--ros-args":
            in_ros = True
        elif arg == "--":
            in_ros = False
        elif in_ros and arg in ("-r", "--remap") and re.fullmatch(r"(\w+:)?__ns:=[^/].*", argv[i + 1]):
            node, _, namespace = argv[i + 1].partition("__ns:=")
            raise StartupError(
                f"{arg} {argv[i + 1]}: a namespace is absolute (it starts with '/'): {arg} {node}__ns:=/{namespace}"
            )
        elif in_ros and arg in ("-r", "--remap") and (fixed := _valid_name_rule(argv[i + 1])) is not None:
            raise StartupError(f"{arg} {argv[i + 1]}: {fixed[0]}: {arg} {fixed[1]}")
        elif in_ros and arg in RULE_ARGUMENTS and ":=" not in argv[i + 1] and not argv[i + 1].startswith("-"):
            rule = argv[i + 1]
            form = "NAME:=VALUE" if RULE_ARGUMENTS[arg] == "a parameter" else "FROM:=TO"
            sep = "=" if "=" in rule else ":" if ":" in rule else None
            if sep is None:  # `-p far`: no value at all
                fixed = f"{arg} {rule}:={form.split(':=')[1]}"
            else:
                name, _, value = rule.rpartition(sep) if sep == ":" else rule.partition(sep)
                fixed = f"{arg} {name}:={value}"
            raise StartupError(f"{arg} {rule}: {RULE_ARGUMENTS[arg]} is written with ':=' ({form}): {fixed}")


#: A token of a ROS name (a namespace's part between '/', a node name): rcl's rule.
NAME_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _valid_name_rule(rule: str) -> tuple[str, str] | None:
    """For a `__ns:=` or `__node:=` (`__name:=`) remap whose value rcl refuses, (what is wrong, the rule with a
    valid name): a namespace ending in '/' (`/robot1/`), a '-' or '.' (`/robot-1`, `depth-node`), or a part
    starting with a digit; rcl said "invalid node namespace: namespace must not end with a '/'" in an RCLError
    with a RuntimeWarning, or only "Couldn't parse remap rule ... Expected lexeme type (1) not found". None: the
    rule is not one of these, or its name is valid."""
    match = re.fullmatch(r"((?:\w+:)?)(__ns|__node|__name):=(.*)", rule)
    if match is None:
        return None
    node, which, value = match.groups()
    if which == "__ns":
        if value == "/" or not value.startswith("/"):
            return None  # (a relative one: named above)
        tokens = value.strip("/").split("/")
        if not value.endswith("/") and all(NAME_TOKEN.fullmatch(t) for t in tokens):
            return None
        fixed = "/" + "/".join(_name_token(t) for t in tokens if t)
        why = "a namespace is '/' and names of letters, digits and '_', each not starting with a digit"
    else:
        if NAME_TOKEN.fullmatch(value):
            return None
        fixed = _name_token(value.strip("/"))
        why = "a node name is letters, digits and '_', not starting with a digit (no '/': set the namespace with __ns)"
    return why, f"{node}{which}:={fixed}"


def _name_token(text: str) -> str:
    """`text` as a valid ROS name token: every other character '_', a leading digit behind a '_'."""
    token = re.sub(r"[^A-Za-z0-9_]", "_", text) or "_"
    return f"_{token}" if token[0].isdigit() else token


def check_params_files(argv: list[str]) -> None:
    """Check every `--params-file` before rcl reads it, by the rules the offline tools read it with
    (`vdepth_ros.param_file.parse_param_file`: YAML, node names, `ros__parameters` mappings,
    values), so the node refuses exactly the files `vdepth-bag --params` refuses, in the same words.

    Raises:
        StartupError: "<file>: <reason>" (a missing file), else the parameter file's reason, which
            names the file and line.
    """
    from vdepth_ros.errors import ConfigError
    from vdepth_ros.param_file import parse_param_file

    for name in params_files(argv):
        if not Path(name).is_file():
            raise StartupError(f"{name}: no such params file{bundled_file_hint(name)}")
        try:
            parse_param_file(name)
        except ConfigError as err:
            raise StartupError(str(err)) from None


def unused_params_file_sections(files: list[str], nodes: list[str]) -> list[str]:
    """One warning per `--params-file` whose values none of this process's nodes (fully qualified
    names) gets, which rcl would skip without a word: a file none of whose sections applies to any
    of them (written for another node, or `depth_node:` for a node pushed into a namespace), and,
    in a file that does apply, a section for one of these nodes that leaves out the start of its
    namespace (`depth_node:` or `/front/depth_node:` for `/robot1/front/depth_node`, as when a launch
    file's namespace prefixes the cameras), named with the section to write. Sections for other nodes
    (a file shared by a whole launch, another camera's `/rear/depth_node:`, another robot's
    `/robot2/front/depth_node:`) are left alone."""
    from vdepth_ros.errors import ConfigError
    from vdepth_ros.param_file import matches, parse_param_file

    out = []
    for path in files:
        try:
            sections = list(parse_param_file(path))
        except ConfigError:  # check_params_files refused it at start-up (by the same rules)
            continue
        used = [s for s in sections if any(matches(s, node) for node in nodes)]
        meant = {s: _meant_node(s, nodes) for s in sections if s not in used}
        meant = {s: node for s, node in meant.items() if node is not None}
        if sections and not used:
            fix = (
                f"name the section /** (every node) or {meant.get(sections[0], nodes[0])} (a section applies "
                "only to the node of its exact namespace; docs/node.md, Parameters)"
            )
            out.append(
                f"params file {path}: none of its sections ({', '.join(sections)}) applies to "
                f"{', '.join(nodes)}, so none of its values is used; {fix}"
            )
        elif meant:
            rename = ", ".join(f"{s} as {node}" for s, node in meant.items())
            out.append(
                f"params file {path}: section(s) {', '.join(meant)} apply to no node of this process "
                f"({', '.join(nodes)}), so their values are not used; name {rename} (a section applies "
                "only to the node of its exact namespace; docs/node.md, Parameters)"
            )
    return out


def ignored_ros_namespace(environ: Mapping[str, str], nodes: list[str]) -> list[str]:
    """One warning when `ROS_NAMESPACE` is set (a ROS 1 habit: rosrun and roslaunch read it) but no node of the
    process runs in it: ROS 2 does not read it, so the node ran in '/' without a word, its topics and parameter
    services where the robot's others did not look."""
    namespace = environ.get("ROS_NAMESPACE", "").strip()
    if not namespace or namespace == "/":
        return []
    wanted = "/" + namespace.strip("/")
    if any(node.rsplit("/", 1)[0] == wanted or node.startswith(wanted + "/") for node in nodes):
        return []
    return [
        f"ROS_NAMESPACE={namespace} is set, but ROS 2 does not read it (ROS 1 did): this process's nodes run in "
        f"{', '.join(nodes)}; to run in {wanted}, start with --ros-args -r __ns:={wanted} (or a launch file's "
        "namespace)"
    ]


def unused_node_rules(argv: list[str], nodes: list[str]) -> list[str]:
    """One warning per `-p NODE:NAME:=VALUE` rule that applies to none of this process's nodes (fully
    qualified names), which rcl skips without a word: its NODE is a node name without namespace, so
    `-p depth_node:far:=4.0` never reaches `/front/depth_node` (`-r __ns:=/front`, `--cameras`, a launch
    file's namespace); rules for other nodes' names are left alone (a command line shared by several)."""
    from vdepth_ros.param_file import matches

    out = []
    for i, arg in enumerate(argv[:-1]):
        rule = argv[i + 1]
        if arg not in ("-p", "--param") or ":=" not in rule:
            continue
        node = rule.partition(":=")[0].rpartition(":")[0]
        if not node or any(matches("/" + node, n) for n in nodes):
            continue
        meant = [n for n in nodes if n.rsplit("/", 1)[-1] == node]
        if meant:
            out.append(
                f"{arg} {rule} applies to none of this process's nodes ({', '.join(nodes)}): a -p rule's node name "
                f"matches only a node of that name without a namespace; write {arg} {rule.split(':', 1)[1]} (every "
                f"node of the process) or give it in a {meant[0] if len(meant) == 1 else '/**/' + node}: section of "
                "the params file"
            )
    return out


def _meant_node(section: str, nodes: list[str]) -> str | None:
    """The node a section that matches none of `nodes` was most likely written for: the one whose
    fully qualified name ends with the section's whole name (a namespace prefix left out); None for
    sections of other nodes. Meant for several (`depth_node:` beside `--cameras`): `/**` and the section,
    which matches each of them."""
    if "*" in section:
        return None
    meant = [node for node in nodes if node.endswith(section)]
    return meant[0] if len(meant) == 1 else f"/**{section}" if meant else None
