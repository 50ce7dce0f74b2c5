"""A ROS 2 parameter file (`--params-file`) read exactly as the node's rcl reads it.

The offline tools (`vdepth-bag`, `vdepth-video`, `vdepth-eval`) promise to reproduce the node, so
they must get the parameters the node gets from the same file. `parse_param_file` + `node_params`
apply rcl's rules in pure Python, and that is how the file is always read (`read_node_params`):
an offline tool must not touch the user's ROS network. Asking rcl itself needs a context and a
node (rclpy has no public call that parses a parameter file by rcl's rules;
`rclpy.parameter.parameter_dict_from_yaml_file` is `ros2 param load`'s reader, with other rules),
and that node joins the user's ROS domain, and an `RMW_IMPLEMENTATION` this install lacks makes rcl
exit the process (102). `test/test_param_file.py` asks rcl itself (a throw-away node given the file
as `--params-file`) and checks that these rules give the same parameters on the same files.

The rules (rcl_yaml_param_parser `parse.c` and rclpy `node.cpp`, Kilted; checked against rclpy):
- A section is `<node name>: ros__parameters: {...}`; the name may be nested
  (`front: depth_node: ros__parameters:` is `front/depth_node`). A missing leading `/` is added.
- A node `/ns/name` takes every section whose name matches it, `/**` standing for any number of
  namespace levels and `/*` for exactly one (`/**`, `/**/depth_node`, `/*`); an un-namespaced
  `depth_node` therefore matches only a node with no namespace.
- Sections apply in the order their names first appear in the file, a later one overriding an
  earlier one parameter by parameter; the same name written twice is one section. So
  `/**: window: 8` followed by `/front/depth_node: window: 16` gives 16, the reverse order 8.
- Values: plain scalars `y/yes/true/on` (and capitalisations) are true, `n/no/false/off` false;
  integers as C's `strtol(.., 0)` (`0x1F`, and `010` is octal 8), then floats as `strtod`
  (`1e3`, `.inf`, `0x1p3`); everything else, and every quoted scalar, is a string (`~` and
  `null` too: there is no null). Lists must hold one type; `[]` gives no value (None). Nested
  mappings are dotted names (`qos: depth:` is `qos.depth`). Anchors/aliases are refused.
- A parameter given again overrides the earlier value, whatever their types. rcl does not: it keeps
  one field per type in the parameter's slot of a section name (the same name in several files and
  `-p`, which is `/**`, share one slot) and rclpy reads the first present in the order bool, integer,
  double, string, then the array types, so `far: 6` in a params file silently beat a later `-p
  far:=4.5` or `far: 4.5` in a later file. `node_params(..., as_given=False)` is rcl's reading (what
  `test/test_param_file.py` checks against rcl); the node replaces such a value by the one given last
  (`ros.startup.values_rcl_dropped`), and the offline tools read the file as the node then has it.

Deliberately stricter than rcl, where rcl's own parser mis-reads the file: keys after
`ros__parameters` in the same mapping and an empty mapping as a parameter value are refused here;
so are a file without any `ros__parameters` and a node name with nothing under it, which rcl
ignores (the file's values would never arrive). This is the one structure check: the node checks
each `--params-file` with it before rcl parses it (`ros.startup.check_params_files`), and the
offline tools read the node's file through it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from vdepth_ros.errors import ConfigError, closest_name
from vdepth_ros.paths import bundled_file_hint

PARAMS_KEY = "ros__parameters"
_TRUE = frozenset(["Y", "y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"])
_FALSE = frozenset(["N", "n", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"])
_SPECIAL_FLOATS = {
    **{s: math.nan for s in (".nan", ".NaN", ".NAN")},
    **{p + s: (-math.inf if p == "-" else math.inf) for p in ("", "+", "-") for s in (".inf", ".Inf", ".INF")},
}
# what C's strtol(s, &end, 0) and strtod consume, anchored at both ends (the whole value must parse)
_STRTOL = re.compile(r"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", re.ASCII)
_STRTOD_DEC = re.compile(r"[ \t\n\v\f\r]*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
_STRTOD_HEX = re.compile(
    r"[ \t\n\v\f\r]*[+-]?0[xX]([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)([pP][+-]?[0-9]+)?", re.ASCII
)
_STRTOD_WORD = re.compile(r"[ \t\n\v\f\r]*([+-]?)(inf|infinity|nan(\([0-9a-zA-Z_]*\))?)", re.ASCII | re.IGNORECASE)
#: rcl_variant_t's fields in the order rclpy reads them: the first one present is the value
_KIND_ORDER = ("bool", "int", "float", "str", "bool[]", "int[]", "float[]", "str[]")
_NODE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)

Section = dict[str, dict[str, Any]]  # parameter name -> {kind: value}

#: ROS 2 launch's substitutions (`$(var far)`, `$(find-pkg-share pkg)`): only `ros2 launch` evaluates them,
#: in a params file it loads with `ParameterFile(..., allow_substs=True)`; rcl reads them as text
_LAUNCH_SUBSTITUTION = re.compile(
    r"\$\((var|env|optenv|find-pkg-share|find-pkg-prefix|find-exec|exec-in-pkg|command|dirname|filename|anon|eval"
    r"|not|and|or|equals|not-equals|if|unless)\b[^)]*\)"
)


def _scalar(text: str, quoted: bool) -> tuple[str, Any]:
    """(kind, value) of one scalar, by rcl's `get_value`."""
    if quoted:
        return "str", text
    if text in _TRUE or text in _FALSE:
        return "bool", text in _TRUE
    if match := _STRTOL.fullmatch(text):
        sign, digits = match.groups()
        base = 16 if digits[1:2] in ("x", "X") else 8 if digits.startswith("0") else 10
        value = int(sign + digits, base)
        if -(2**63) <= value < 2**63:  # strtol sets ERANGE outside int64: then it is tried as a double
            return "int", value
    if text in _SPECIAL_FLOATS:
        return "float", _SPECIAL_FLOATS[text]
    value = _strtod(text)
    return ("float", value) if value is not None else ("str", text)


def _strtod(text: str) -> float | None:
    """`strtod` over the whole text, or None where it stops early or sets ERANGE."""
    if _STRTOD_DEC.fullmatch(text):
        value = float(text)
    elif _STRTOD_HEX.fullmatch(text):
        stripped = text.strip()
        sign = -1.0 if stripped.startswith("-") else 1.0
        value = sign * float.fromhex(stripped.lstrip("+-"))
    elif match := _STRTOD_WORD.fullmatch(text):
        return float(match.group(1) + ("nan" if match.group(2).lower().startswith("nan") else "inf"))
    else:
        return None
    mantissa = re.sub(r"[eEpP].*", "", text.strip().lower().replace("0x", ""))
    overflow = math.isinf(value)
    underflow = (value == 0.0 and any(c not in "0.+-" for c in mantissa)) or 0.0 < abs(value) < 2.2250738585072014e-308
    return None if overflow or underflow else value


def _events_to_tree(text: str, path: Path) -> list[Any]:
    """The YAML documents as nested ('map', [(key, value)]) / ('seq', [..]) / ('scalar', str, quoted, line)."""
    import yaml

    stack: list[tuple[str, list[Any], int]] = []
    docs: list[Any] = []

    def add(node: Any) -> None:
        (stack[-1][1] if stack else docs).append(node)

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            line = event.start_mark.line + 1
            if isinstance(event, yaml.AliasEvent):
                raise ConfigError(f"parameter file {path}: aliases are not supported (line {line})")
            if isinstance(event, yaml.ScalarEvent):
                add(("scalar", event.value, event.style in ("'", '"'), line))
            elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                stack.append(("map" if isinstance(event, yaml.MappingStartEvent) else "seq", [], line))
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                kind, items, start = stack.pop()
                add((kind, list(zip(items[::2], items[1::2], strict=True)) if kind == "map" else items, start))
    except yaml.YAMLError as err:  # one line: what and where, without PyYAML's snippet
        mark = getattr(err, "problem_mark", None)
        reason = getattr(err, "problem", None) or str(err).splitlines()[0]
        context = getattr(err, "context_mark", None)
        if reason == "could not find expected ':'" and context is not None:  # PyYAML marks the line after it
            mark = context
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        hint = _yaml_slip(reason, text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else "")
        raise ConfigError(f"parameter file {path} is not valid YAML: {reason}{where}{hint}") from err
    return docs


def _yaml_slip(reason: str, line: str) -> str:
    """The usual slip behind PyYAML's words for a params file's line, as '; <fix>', or ''."""
    if "'\\t'" in reason:
        return "; YAML indents with spaces, never tabs: replace the tab"
    if reason == "could not find expected ':'":
        if re.search(r"^\s*[\w.]+:\S", line):
            return f"; {line.strip()!r} needs a space after the ':' (NAME: VALUE)"
        return f"; {line.strip()!r} needs a ':' after its name (NAME: VALUE)"
    if reason == "mapping values are not allowed here":
        return (
            "; the line above it has no ':' after its name, or this line is indented further than the one above "
            "it (every parameter of a section starts in the same column)"
        )
    return ""


def parse_param_file(path: str | Path) -> dict[str, Section]:
    """Every section of a parameter file: node name (with a leading `/`) -> its parameters, in
    the order the names first appear. Values are `{kind: value}` (see `resolve`).

    Raises:
        ConfigError: unreadable file, invalid YAML, or a file rcl refuses (with rcl's reason).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read parameter file {path}: {err}") from err
    sections: dict[str, Section] = {}
    for doc in _events_to_tree(text, path):
        if doc[0] != "map":
            raise ConfigError(f"parameter file {path} must map node names (or /**) to {PARAMS_KEY}")
        _read_names(doc, [], sections, path)
    if not sections:
        raise ConfigError(
            f"parameter file {path} has no '{PARAMS_KEY}:' mapping: it must map node names (or /**) to "
            f"{PARAMS_KEY} (e.g. '/**:' then '  {PARAMS_KEY}:' then '    window: 8')"
        )
    return sections


def _fail(path: Path, line: int, why: str) -> ConfigError:
    return ConfigError(f"parameter file {path}, line {line}: {why}")


def _read_names(mapping: Any, names: list[str], sections: dict[str, Section], path: Path) -> None:
    """A mapping above `ros__parameters`: its keys are node names or namespaces."""
    seen_params = False
    if names and not mapping[1]:
        raise _fail(path, mapping[-1], f"section {'/'.join(names)!r} has no '{PARAMS_KEY}:' mapping")
    for key, value in mapping[1]:
        if key[0] != "scalar" or not key[1]:
            raise _fail(path, key[-1], "a node name must be a non-empty plain key")
        if seen_params:
            raise _fail(path, key[3], f"keys after {PARAMS_KEY} in the same mapping are not read reliably by rcl")
        if key[1].startswith(PARAMS_KEY):  # rcl compares only the prefix
            if not names:
                raise _fail(
                    path,
                    key[3],
                    f"there are no node names before {PARAMS_KEY}: write '/**:' (every node) above it and indent "
                    "the rest under it",
                )
            if value[0] == "scalar" and not value[1] and not value[2]:  # `ros__parameters:` then `far: 6` below it
                raise _fail(
                    path,
                    key[3],
                    f"{PARAMS_KEY} has nothing under it: indent its parameters further than '{PARAMS_KEY}:' "
                    f"(e.g. '  {PARAMS_KEY}:' then '    far: 6.0')",
                )
            if value[0] != "map":
                slip = re.match(r"[\w.]+:\S", value[1]) if value[0] == "scalar" else None  # `far:6.0`: one word
                fix = f": {value[1]!r} needs a space after the ':' (NAME: VALUE)" if slip else ""
                raise _fail(path, value[-1], f"{PARAMS_KEY} must be a mapping of parameters{fix}")
            name = "/".join(names)
            _check_name(name, path, key[3])
            node = "/" + name.lstrip("/") if not name.startswith("/") else name
            _read_params(value, "", sections.setdefault(node, {}), path)
            seen_params = True
        elif value[0] == "map":
            if names and key[1].startswith("/"):
                raise _nested_absolute_name(path, key[3], names, key[1])
            _read_names(value, [*names, key[1]], sections, path)
        else:
            raise _value_outside_section(path, names, key, value)


def _value_outside_section(path: Path, names: list[str], key: Any, value: Any) -> ConfigError:
    """A parameter outside any node's `ros__parameters:`, named with the slip that put it there."""
    if names and closest_name(names[-1], [PARAMS_KEY], cutoff=0.8):  # ros_parameters, ros__parameter
        return _fail(
            path,
            key[-1],
            f"{names[-1]!r} is not {PARAMS_KEY!r}: rcl reads parameters only under '{PARAMS_KEY}:' (two "
            f"underscores), so it took {names[-1]!r} for a namespace and {key[1]!r} for a value outside any "
            f"node's parameters; write '{PARAMS_KEY}:'",
        )
    if names:
        return _fail(
            path,
            key[-1],
            f"section {'/'.join(names)!r} has no '{PARAMS_KEY}:' mapping: {key[1]!r} is a value outside one "
            f"(is the node's section indented right?): write '{PARAMS_KEY}:' under {names[-1] + ':'!r} and its "
            "parameters indented under that",
        )
    if value[0] == "scalar" and not value[1] and not value[2]:  # `/**:` then `ros__parameters:` not indented
        return _fail(
            path,
            key[-1],
            f"{key[1]!r} has nothing under it: indent '{PARAMS_KEY}:' under {key[1] + ':'!r}, and the "
            f"parameters under that (e.g. '/**:' then '  {PARAMS_KEY}:' then '    far: 6.0')",
        )
    return _fail(  # a flat file of parameters (`far: 6.0` at the top)
        path,
        key[-1],
        f"{key[1]!r} is a value, not a node name with a '{PARAMS_KEY}:' mapping: a params file puts the "
        f"parameters under a node name and '{PARAMS_KEY}:', e.g. '/**:' (every node) then "
        f"'  {PARAMS_KEY}:' then '    {key[1]}: {value[1] if value[0] == 'scalar' else '...'}'",
    )


def _nested_absolute_name(path: Path, line: int, names: list[str], key: str) -> ConfigError:
    """rcl joins nested names with '/': `robot1:` then `/**:` is the node name `robot1//**`, which it refuses.
    That is what a launch tool makes of a file with absolute section names when it nests the file under a
    namespace (Nav2's `RewrittenYaml(root_key=...)`)."""
    outer = "/".join(names)
    return _fail(
        path,
        line,
        f"section {key!r} is nested under {outer!r}, which makes the node name {outer + '/' + key!r}: rcl refuses "
        f"it (a name starting with '/' is absolute and cannot be nested). If a launch tool nested this file under "
        f"the namespace {outer!r} (Nav2's RewrittenYaml(root_key=...)), give it the file without root_key: '/**:' "
        f"already matches a node in any namespace; or write the nested name without the leading '/' "
        f"({key.lstrip('/')!r})",
    )


def _check_name(name: str, path: Path, line: int) -> None:
    """rcl's name check; `*` and `**` are the only wildcard tokens it lets through."""
    if name == "/**":
        return
    namespace, _, node = name.rpartition("/")
    if node not in ("*", "**") and not _NODE_NAME.fullmatch(node):
        raise _fail(path, line, f"invalid node name {node!r} in {name!r}")
    tokens = namespace.lstrip("/").split("/") if namespace else []
    if not all(t in ("*", "**") or _NODE_NAME.fullmatch(t) for t in tokens):
        raise _fail(path, line, f"invalid namespace {namespace!r} in {name!r}")


def _read_params(mapping: Any, prefix: str, params: Section, path: Path) -> None:
    for key, value in mapping[1]:
        if key[0] != "scalar" or not key[1]:
            raise _fail(path, key[-1], "a parameter name must be a non-empty plain key")
        name = prefix + key[1]
        if value[0] == "map":
            if not value[1]:
                raise _fail(path, value[-1], f"{name}: an empty mapping is not a parameter value")
            _read_params(value, name + ".", params, path)
        elif value[0] == "scalar":
            if not value[2] and not value[1]:
                raise _fail(path, value[3], f"{name}: no value")
            _refuse_launch_substitution(name, value, path)
            _give(params, name, *_scalar(value[1], value[2]))
        else:
            params.setdefault(name, {})  # `[]`: a parameter without a value
            for kind, values in _sequence(name, value, path).items():
                _give(params, name, kind, values)


def _give(params: Section, name: str, kind: str, value: Any) -> None:
    """Set a parameter's value of one kind in its slot, as rcl does (the other kinds stay); the slot's
    last entry is the value given last (`resolve(..., as_given=True)`)."""
    slot = params.setdefault(name, {})
    slot.pop(kind, None)
    slot[kind] = value


def _refuse_launch_substitution(name: str, scalar: Any, path: Path) -> None:
    """A value holding a launch substitution (`far: $(var far)`) is refused with what it is: rcl reads it as
    text, so the node said only "far must be a number, got '$(var far)'" (a model path: "does not exist")."""
    substitution = _LAUNCH_SUBSTITUTION.search(scalar[1])
    if substitution is not None:
        raise _fail(
            path,
            scalar[3],
            f"{name}: {scalar[1]!r} holds the launch substitution {substitution.group(0)}, which only ros2 launch "
            "evaluates (a params file given as ParameterFile(..., allow_substs=True)); rcl, the node and the "
            "offline tools read the file as it is: write the value itself here, or start the node with the "
            "launch file that fills it in",
        )


def _sequence(name: str, seq: Any, path: Path) -> dict[str, list[Any]]:
    kinds, values = set(), []
    for item in seq[1]:
        if item[0] != "scalar":
            raise _fail(path, item[-1], f"{name}: a list may hold only scalars")
        if not item[2] and not item[1]:
            raise _fail(path, item[3], f"{name}: no value")
        kind, value = _scalar(item[1], item[2])
        kinds.add(kind)
        if len(kinds) > 1:
            raise _fail(path, item[3], f"{name}: a list must hold one type")
        values.append(value)
    return {f"{kinds.pop()}[]": values} if values else {}


def matches(section: str, node: str) -> bool:
    """Does the section name (leading `/`) apply to the node with this fully qualified name?"""
    pattern = re.escape(section).replace(re.escape("/*"), r"(/\w+)").replace(r"\*", "*")
    return re.fullmatch(pattern, node, re.ASCII) is not None


def resolve(variants: dict[str, Any], as_given: bool = False) -> Any:
    """A parameter's value from its `{kind: value}`: the first kind in rcl's order (what rcl gives), or
    with `as_given` the value given last; None if none."""
    if as_given:
        return next(reversed(variants.values()), None)
    return next((variants[k] for k in _KIND_ORDER if k in variants), None)


def node_params(sections: dict[str, Section], node: str, as_given: bool = False) -> dict[str, Any]:
    """The flat parameters the node `node` (fully qualified, e.g. `/front/depth_node`) gets: as rcl
    gives them, or with `as_given` each parameter's value given last in its slot (`resolve`)."""
    out: dict[str, Any] = {}
    for section, params in sections.items():
        if matches(section, node):
            out.update({name: resolve(variants, as_given) for name, variants in params.items()})
    return out


def ros_args_sections(argv: list[str]) -> dict[str, Section]:
    """The sections rcl builds from a command line's `--ros-args` parts: every `--params-file` and `-p
    NAME:=VALUE` (section `/**`; `-p NODE:NAME:=VALUE`: section `/NODE`) in the order given, the same
    section name in several of them one section (in the order names first appear), its parameters'
    values set kind by kind (`_give`).

    Raises:
        ConfigError: a params file or a `-p` value rcl would refuse too.
    """
    sections: dict[str, Section] = {}
    in_ros = False
    for i, arg in enumerate(argv):
        if arg == "--ros-args":
            in_ros = True
        elif arg == "--":
            in_ros = False
        elif in_ros and i + 1 < len(argv) and arg == "--params-file":
            for name, params in parse_param_file(argv[i + 1]).items():
                for param, variants in params.items():
                    sections.setdefault(name, {}).setdefault(param, {})
                    for kind, value in variants.items():
                        _give(sections.setdefault(name, {}), param, kind, value)
        elif in_ros and i + 1 < len(argv) and arg in ("-p", "--param") and ":=" in argv[i + 1]:
            param, _, text = argv[i + 1].partition(":=")
            node, _, param = param.rpartition(":")  # `-p depth_node:far:=4.5`: that node's section
            value = _events_to_tree(text, Path("-p " + argv[i + 1]))
            if not value or value[0][0] not in ("scalar", "seq"):
                continue  # rcl refuses it (rclpy.init raised before a node is made)
            kinds = [_scalar(value[0][1], value[0][2])] if value[0][0] == "scalar" else []
            kinds += list(_sequence(param, value[0], Path("-p")).items()) if value[0][0] == "seq" else []
            for kind, parsed in kinds:
                _give(sections.setdefault("/" + node if node else "/**", {}), param, kind, parsed)
    return sections


def read_node_params(path: str | Path, node: str) -> dict[str, Any]:
    """The node's flat parameters from the file, by rcl's rules in pure Python: no ROS context,
    node or DDS participant is created. Raises `ConfigError` for a missing or invalid file and when
    no section of the file applies to `node`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"parameter file {path} not found{bundled_file_hint(path)}")
    sections = parse_param_file(path)  # validates first, so rcl never logs its own errors
    if not any(matches(section, node) for section in sections):
        raise ConfigError(
            f"parameter file {path} has no {PARAMS_KEY} for node {node} (its sections: {list(sections) or 'none'}); "
            "a section '/**:' applies to every node"
        )
    return node_params(sections, node, as_given=True)


def fully_qualified(node_name: str) -> str:
    """`depth_node` -> `/depth_node`; `/front/depth_node` stays."""
    return node_name if node_name.startswith("/") else "/" + node_name


__all__ = ["fully_qualified", "matches", "node_params", "parse_param_file", "read_node_params", "ros_args_sections"]
