"""The one rule for the type of a setting's value, wherever a user gives one.

Every way in goes through it: the node's parameters (`-p`, `--params-file`, `ros2 param set`:
`node_params.ParamSpec`), the YAML the offline tools and `DepthPipeline.from_dict` read
(`config.PipelineConfig`), and a model family's constructor config (`config.json`,
`vdepth-export import --set`, a recipe's `model.config`: `models.config_type_problem`). So one
value is taken, or refused in the same words, by all of them.

The rule, deliberately:
- a value must be of its setting's kind: true/false, an integer, a number, a string, or a list
  (of one of those);
- the one widening: an integer is taken for a number (`far: 6` is 6.0: YAML, JSON and the ROS
  command line write whole numbers without a decimal point); nothing else is converted;
- true/false is never a number (Python's bool is an int: `window: true` would be 1);
- a decimal is never an integer, even a whole one (`window: 8.0`): rcl types it a double, so the
  node could not take it, and the message says to write `8`;
- a string is never true/false or a number (`"false"` in quotes is a non-empty, truthy string),
  and the message says to write it without quotes;
- a list is a JSON/YAML list (a tuple from Python too); with a known item kind each item obeys the
  rules above;
- a mapping (a model's sub-config such as `unet`) is a JSON object / YAML mapping;
- null (None) only where the setting's type allows it (`overlap: int | None`); a setting whose
  default is None is still held to its declared type (`kind_of_type`), not taken as anything;
- from Python, numpy's integers, floats and bools count as Python's (`window=np.int64(16)` is 16);
- in a YAML file the package reads itself (a training recipe: `load_yaml`), `1e-4` is a number, as
  in JSON, YAML 1.2 and rcl's params files (PyYAML alone reads a string); at runtime the node takes
  the text `ros2 param set` sends for it (`misread_number`).
"""

from __future__ import annotations

import array
import collections.abc
import math
import numbers
import types
import typing
from typing import Any

#: what each scalar kind is called in an error ("must be ...", "expects ...")
_WORDS: dict[type, str] = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_LIST_WORDS: dict[type, str] = {
    bool: "a list of true/false values",
    int: "a list of integers",
    float: "a list of numbers",
    str: "a list of strings",
}
_BOOL_WORDS = frozenset(("true", "false", "yes", "no", "on", "off"))
_FLOAT_MAX = 1.7976931348623157e308
#: what a list may come as: JSON/YAML lists, Python tuples, and rclpy's integer/double arrays
_SEQUENCES = (list, tuple, array.array)


def kind_of(default: Any) -> Any:
    """The kind a default value stands for: `bool`, `int`, `float`, `str`, `list[<one of them>]`
    (a list or tuple whose items share a kind; integers and numbers mixed are numbers), `list`
    (items of any kind, e.g. an empty default), or None (anything: a None default, or one of no
    such kind)."""
    for kind in (bool, int, float, str):  # bool first: it is an int too
        if isinstance(default, kind):
            return kind
    if isinstance(default, list | tuple):
        kinds = {kind_of(item) for item in default}
        if kinds == {int, float}:
            kinds = {float}
        item = kinds.pop() if len(kinds) == 1 else None
        return list[item] if item in _WORDS else list
    return None


def kind_of_type(tp: Any) -> Any:
    """The kind a type annotation stands for: `bool`, `int`, `float`, `str`; `list[int]` (a list,
    tuple or sequence of one of them: `tuple[int, ...]`, `Sequence[int]`), `list` (of anything);
    `dict` (a mapping: a JSON object, a YAML mapping); `Optional[<one of them>]` for `X | None` (None
    or a value of X's kind). None for one without a type rule here (a `Literal`'s choices are judged
    by its caller; `Any`, a class, a union of two kinds: anything)."""
    if tp in _WORDS or tp is list or tp is dict:
        return tp
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        inner = kind_of_type(rest[0]) if len(rest) == 1 else None
        return None if inner is None else typing.Optional[inner]  # noqa: UP045 (a kind, not an annotation)
    if origin in (list, tuple, collections.abc.Sequence) or tp in (tuple, collections.abc.Sequence):
        items = [a for a in args if a is not Ellipsis]
        if origin is tuple and len(set(items)) > 1:
            return list
        return list[items[0]] if items and items[0] in _WORDS else list
    if origin in (dict, collections.abc.Mapping) or tp is collections.abc.Mapping:
        return dict
    return None


def _optional(kind: Any) -> Any:
    """X for a kind `Optional[X]`, else None."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in typing.get_args(kind):
        return next(a for a in typing.get_args(kind) if a is not type(None))
    return None


def _is_numpy_bool(value: Any) -> bool:
    return type(value).__module__ == "numpy" and type(value).__name__ == "bool"  # np.bool_ (numpy 2 names it bool)


def _fits(kind: type, value: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool) or _is_numpy_bool(value)
    if isinstance(value, bool) or _is_numpy_bool(value):
        return False
    if kind is int:  # numpy's integers too (a value computed in a script)
        return isinstance(value, numbers.Integral)
    if kind is float:  # infinity and NaN pass every range check and leave a setting no value can use
        if isinstance(value, numbers.Integral):
            return abs(value) <= _FLOAT_MAX
        return isinstance(value, numbers.Real) and math.isfinite(value)
    return isinstance(value, kind)


def _reads_as(kind: type, text: str) -> bool:
    """Would `text` be a value of `kind` written without quotes?"""
    if kind is bool:
        return text.strip().lower() in _BOOL_WORDS
    try:
        number = kind(text.strip())
    except (TypeError, ValueError):
        return False
    return kind in (int, float) and math.isfinite(number)


def _is_finite_number(value: Any) -> bool:
    """False for infinity or NaN, as a number or as the text PyYAML leaves `inf`/`nan` as; else True."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return True
    return not isinstance(value, numbers.Real) or math.isfinite(value)


def _hint(kind: type, value: Any) -> str:
    """The fix for the usual ways of getting a kind wrong ("" if none)."""
    number = misread_number(value) if kind in (int, float) else None
    if number is not None and (kind is float or number.is_integer()):  # not quoted: PyYAML read it so
        fix = repr(number) if kind is float else str(int(number))
        return f"a string: PyYAML (YAML 1.1) reads {value} without a dot as text; write {fix}"
    if isinstance(value, str) and kind is not str and _reads_as(kind, value):
        return "a string: write " + ("true or false" if kind is bool else "the number") + ", without quotes"
    if kind is float and not _is_finite_number(value):
        return "not finite: infinity and NaN are not values a setting can use; give a finite number"
    if kind is int and isinstance(value, float) and value.is_integer():
        return f"write {int(value)}, without a decimal point"
    if kind is str and isinstance(value, int | float):  # bools too
        return "put it in quotes to give it as a string"
    return ""


def type_problem(kind: Any, value: Any) -> str | None:
    """None if `value` is of `kind` (`kind_of`'s kinds, or a field's type such as `list[int]`), else
    what it must be and what it got, with the fix where it is a usual slip: e.g.
    "true or false, got 'false' (a string: write it without quotes)". Callers put the setting's
    name before it ("window must be ...", "--set window expects ...")."""
    if kind is None:
        return None
    if isinstance(value, array.array):  # rclpy's integer/double arrays: shown as the list they are
        value = value.tolist()
    if kind in _WORDS:
        if _fits(kind, value):
            return None
        hint = _hint(kind, value)
        return f"{_WORDS[kind]}, got {value!r}" + (f" ({hint})" if hint else "")
    if (inner := _optional(kind)) is not None:
        if value is None:
            return None
        problem = type_problem(inner, value)
        return None if problem is None else problem.replace(", got ", " (or null), got ", 1)
    if kind is dict:
        return None if isinstance(value, collections.abc.Mapping) else f"a mapping such as {{key: 1}}, got {value!r}"
    if kind is list or typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind) or (None,)
        words = _LIST_WORDS.get(item, "a list such as [1, 2]")
        if not isinstance(value, _SEQUENCES):
            return f"{words}, got {value!r}"
        for i, entry in enumerate(value):
            if item is not None and not _fits(item, entry):
                hint = _hint(item, entry)
                return f"{words}, got {list(value)!r} (item {i} is {entry!r}" + (f": {hint})" if hint else ")")
        return None
    raise TypeError(f"no type rule for {kind!r}")


def conform(kind: Any, value: Any) -> Any:
    """`value`, which `type_problem` accepted, in the form of `kind`: an integer given for a number
    as that number (`far: 6` -> 6.0), numpy's numbers and bools as Python's, a tuple as a list; anything
    else unchanged."""
    if (inner := _optional(kind)) is not None:
        return None if value is None else conform(inner, value)
    if kind in (bool, int, float) and type(value) is not kind:
        return kind(value)
    if kind is list or typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind) or (None,)
        return [conform(item, entry) for entry in value]
    return value


#: a YAML 1.2 float (what JSON, C and Python read as one): `1e-4`, `5E3`, `-2.5e+3`, `.5`; PyYAML follows
#: YAML 1.1, which needs a dot and a signed exponent, and reads `lr: 1e-4` as the string '1e-4'
_FLOAT_12 = (
    r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?"  # 1.5, 1., 1.0e-4
    r"|\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?"  # .5, .5e3
    r"|[0-9][0-9_]*[eE][-+]?[0-9]+)$"  # 1e-4, 5E3
)


def load_yaml(text: str) -> Any:
    """YAML as a user means it (`yaml.safe_load` otherwise): a number in scientific notation
    without a dot (`lr: 1e-4`, `eps: 1e-8`, `steps: 1e5`) is that number, a float, as in JSON and
    YAML 1.2, not a string (PyYAML's YAML 1.1 reading). A quoted `"1e-4"` stays a string.

    Raises:
        yaml.YAMLError: not valid YAML.
    """
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(_FLOAT_12), list("-+0123456789."))
    return yaml.load(text, Loader=Loader)


def misread_number(text: Any) -> float | None:
    """The number `text` is where it is a number that PyYAML (YAML 1.1) reads as a string: scientific
    notation without a dot or sign (`1e-3`, `5E3`, `1.0e5`), which `load_yaml`, JSON, C and rcl read
    as a float. `ros2 param set NODE NAME 1e-3` and `ros2 param load` parse with PyYAML and so send
    the text '1e-3'. None for anything else (`"0.05"` in quotes stays a string, by the rule above)."""
    import re

    import yaml

    if not isinstance(text, str) or not re.fullmatch(_FLOAT_12, text.strip()):
        return None
    return float(text.replace("_", "")) if isinstance(yaml.safe_load(text), str) else None


__all__ = ["conform", "kind_of", "kind_of_type", "load_yaml", "misread_number", "type_problem"]
