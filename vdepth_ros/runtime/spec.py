"""The input spec an exporter writes next to every model file (`<model>.json`).

The runtime knows nothing about families: it reads this spec to know the fixed window shape,
pixel range, output kind and the window/alignment rules the stream core must apply.
"""

from __future__ import annotations

import functools
import json
import logging
import numbers
import re
import typing
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from vdepth_ros.errors import ConfigError

log = logging.getLogger(__name__)

SPEC_VERSION = 1
#: `extra` key of the sha256 of the weights a graph was exported from (`vdepth-export onnx`)
#: old spec files (no max_frames) already noted, so a file loaded again (variants, checks) is noted once
_NOTED_OLD_SPECS: set[str] = set()


class SpecError(ConfigError):
    """A model's spec file is missing or unusable; the message is "input spec <file> <reason>"."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"input spec {path} {reason}")
        self.path, self.reason = path, reason


@dataclass(frozen=True)
class InputSpec:
    """Shapes and rules of one exported/loaded model.

    Attributes:
        family: model family registry name ("vda", "dvd", ...).
        frames: window length T the graph was built for (fixed-shape graphs).
        height, width: working resolution (H, W) of the graph.
        value_range: RGB input range the graph expects (after `/255` scaling).
        output_kind: "disparity" (relative) or "depth" (metric metres).
        window, overlap: default streaming schedule.
        keyframes: keyframe slots for keyframe alignment, or None.
        alignment: default stitching strategy ("chain_ls" | "keyframe" | "graph" | "none").
        frames_rule: "any" or "4n+1".
        multiple_of: H, W multiple the architecture needs.
        input_name, output_name: graph tensor names (bound by name in ORT/TensorRT).
        dynamic_frames: True if the graph accepts any T (then `frames` is the export example).
        max_frames: the longest window the model takes (a temporal position table), or None (no
            limit known); a dynamic graph is never run past it.
        precision: "fp32" | "fp16" | "bf16".
    """

    family: str
    frames: int
    height: int
    width: int
    value_range: tuple[float, float] = (0.0, 1.0)
    output_kind: Literal["disparity", "depth"] = "disparity"
    window: int = 32
    overlap: int = 10
    keyframes: tuple[int, ...] | None = None
    alignment: Literal["chain_ls", "keyframe", "graph", "none"] = "chain_ls"
    frames_rule: Literal["any", "4n+1"] = "any"
    multiple_of: int = 1
    input_name: str = "frames"
    output_name: str = "disparity"
    dynamic_frames: bool = False
    max_frames: int | None = None
    precision: str = "fp32"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Every field's type and range, so a wrong value (a spec edited by hand, a file from another
        tool) stops loading with the field named, not later inside the pipeline or as wrong output."""
        for name, ok, want in _field_checks(self):
            if not ok:
                raise ConfigError(f"InputSpec.{name} must be {want}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spec_version"] = SPEC_VERSION
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        data = dict(data)
        data.pop("spec_version", None)
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown InputSpec fields {sorted(unknown)}")
        if data.get("value_range") is not None:
            data["value_range"] = tuple(data["value_range"])
        if data.get("keyframes") is not None:
            data["keyframes"] = tuple(data["keyframes"])
        return cls(**data)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> InputSpec:
        """The spec file `path`. One written before specs recorded `max_frames` (the model's longest
        window) and with a dynamic frame axis (run past the model's limit, such a graph fails inside
        ONNX Runtime) takes the limit of the model folder's `config.json` beside it; without one it
        is limited to the longest window it names (its `window`, or the export's example length),
        marked `extra["max_frames_assumed"]` (`window_limit_fix`), with one note saying to re-export."""
        path = Path(path)
        if not path.is_file():
            graph = path.with_name(path.name.removesuffix(".json"))
            fix = (
                f"{path.parent} holds the model's config.json: export its graph with the spec, "
                f"`vdepth-export onnx {path.parent} --overwrite` (replaces this {graph.name}), or use backend 'torch'"
                if graph.suffix == ".onnx" and (path.parent / "config.json").is_file()
                else "For an ONNX file from another tool, convert the checkpoint instead: "
                "`vdepth-export import FAMILY CHECKPOINT -o FOLDER`, then `vdepth-export onnx FOLDER`"
            )
            raise SpecError(
                path,
                "not found: a graph runs only with the spec vdepth-export writes beside it (window, pixel range, "
                f"tensor names). {fix}",
            )
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ConfigError(f"it holds a {type(data).__name__}, not a JSON object of fields")
            if "max_frames" not in data and data.get("dynamic_frames") is True:
                data = _old_spec_data(path, data)
            return cls.from_dict(data)
        except (ConfigError, ValueError, TypeError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
            raise SpecError(path, f"is not valid: {err}; {_spec_fix(path)}") from None

    def window_limit_fix(self) -> str:
        """For a spec whose `max_frames` was assumed (`load` of an old dynamic export), why the limit
        is what it is and how to lift it; "" otherwise."""
        if not self.extra.get("max_frames_assumed"):
            return ""
        return (
            f" (not the model's own limit: the export's spec was written before exports recorded it, so its graph "
            f"is limited to its own window of {self.max_frames} frames; {OLD_SPEC_FIX})"
        )


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)  # numpy's integers too, not JSON's "4"


def _is_range(v: object) -> bool:
    return (
        isinstance(v, tuple | list)
        and len(v) == 2
        and all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in v)
        and v[0] < v[1]
    )


def _field_checks(spec: InputSpec) -> Iterator[tuple[str, bool, str]]:
    """`(field, valid, what it must be)` for every field of `spec`, in an order where each check
    may rely on the ones before it."""
    for name in ("frames", "height", "width", "window", "multiple_of"):
        yield name, _is_int(getattr(spec, name)) and getattr(spec, name) > 0, "a positive integer"
    yield "overlap", _is_int(spec.overlap) and 0 <= spec.overlap < spec.window, f"in [0, window={spec.window})"
    for name, allowed in _literal_fields().items():
        yield name, getattr(spec, name) in allowed, " or ".join(repr(a) for a in allowed)
    for name in ("family", "input_name", "output_name"):
        yield name, isinstance(getattr(spec, name), str) and bool(getattr(spec, name)), "a non-empty name"
    yield "value_range", _is_range(spec.value_range), "[low, high] with low < high"
    slots = spec.keyframes is None or (
        bool(spec.keyframes) and all(_is_int(k) and 0 <= k < spec.window for k in spec.keyframes)
    )
    yield "keyframes", slots, f"null or frame slots in [0, window={spec.window})"
    yield "dynamic_frames", isinstance(spec.dynamic_frames, bool), "true or false"
    limit = spec.max_frames is None or (_is_int(spec.max_frames) and spec.max_frames > 0)
    yield "max_frames", limit, "null or a positive integer"
    yield "frames", spec.frames_rule != "4n+1" or (spec.frames - 1) % 4 == 0, "4n+1 (frames_rule '4n+1')"
    for name in ("height", "width"):
        yield name, getattr(spec, name) % spec.multiple_of == 0, f"a multiple of multiple_of={spec.multiple_of}"
    yield "extra", isinstance(spec.extra, dict), "a JSON object"


def _old_spec_data(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """`data` of a dynamic graph whose spec predates `max_frames`, with the limit of the model
    folder's `config.json` beside it, or else the longest window the spec names (its `window`, or the
    export's example length), marked `extra["max_frames_assumed"]` and noted once per file."""
    known, limit = _folder_limit(path.parent, data.get("family"))
    if known:
        return {**data, "max_frames": limit}
    longest = max(int(data.get("frames", 0)), int(data.get("window", InputSpec.window)))
    extra = {**(data.get("extra") or {}), "max_frames_assumed": True}
    if str(path.resolve()) not in _NOTED_OLD_SPECS:
        _NOTED_OLD_SPECS.add(str(path.resolve()))
        log.warning(
            "%s was written before exports recorded the model's longest window (max_frames) and has no "
            "model folder's config.json beside it to read it from: its graph is run on windows of at most "
            "%d frames, its window; %s",
            path, longest, OLD_SPEC_FIX,
        )  # fmt: skip
    return {**data, "max_frames": longest, "extra": extra}


def _spec_fix(path: Path) -> str:
    """What to run about a spec file that cannot be used: write it again with the tool that wrote it."""
    model = path.with_name(path.name.removesuffix(".json"))
    if model.suffix in (".engine", ".plan"):
        return f"correct the field, or rebuild: `vdepth-export engine {model.parent} --force-engine-update`"
    return f"correct the field, or export again: `vdepth-export onnx {model.parent}` (from its model folder)"


@functools.cache
def _literal_fields() -> dict[str, tuple[object, ...]]:
    """`InputSpec`'s fields of `Literal[...]` type and their allowed values (`precision` from
    `shapes.PRECISIONS`, the one list of them)."""
    from vdepth_ros.runtime.shapes import PRECISIONS

    hints = typing.get_type_hints(InputSpec)
    found = {n: typing.get_args(t) for n, t in hints.items() if typing.get_origin(t) is Literal}
    return {**found, "precision": PRECISIONS}


#: how to lift the window limit of a dynamic export made before specs recorded `max_frames`
OLD_SPEC_FIX = (
    "re-export it from its model folder (`vdepth-export onnx MODEL_FOLDER --dynamic-frames` with the export's "
    '--height and --width), or add the model\'s longest window as "max_frames" to its .onnx.json'
)


def _folder_limit(folder: Path, family: Any) -> tuple[bool, int | None]:
    """(known, limit): the longest window of the model folder `folder` of `family` (`folder_max_window`)."""
    from vdepth_ros.paths import CONFIG_NAME

    try:
        if json.loads((folder / CONFIG_NAME).read_text()).get("_family") != family:
            return False, None
    except (OSError, ValueError, AttributeError):
        return False, None
    from vdepth_ros.models import folder_max_window

    return folder_max_window(folder)


#: `InputSpec.extra` key of the weights a graph was exported from (`weights_record`)
WEIGHTS_KEY = "weights"


def weights_record(weights: Path) -> dict[str, Any]:
    """What an export records of the weights file beside it: size, modification time, sha256."""
    from vdepth_ros.runtime.trt_cache import file_sha256

    st = weights.stat()
    return {"file": weights.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": file_sha256(weights)}


def weights_changed(spec: InputSpec, weights: Path) -> bool:
    """True when `weights` is not the file `spec`'s graph was exported from (its record, when the
    export made one): replaced since, by retrained or other weights. The same size and modification
    time count as unchanged without reading the file; otherwise its sha256 decides."""
    from vdepth_ros.runtime.trt_cache import file_sha256

    record = spec.extra.get(WEIGHTS_KEY)
    if not isinstance(record, dict) or not weights.is_file():
        return False
    st = weights.stat()
    if (st.st_size, st.st_mtime_ns) == (record.get("size"), record.get("mtime_ns")):
        return False
    return st.st_size != record.get("size") or file_sha256(weights) != record.get("sha256")


def spec_path_for(model_file: str | Path) -> Path:
    """`model.onnx` -> `model.onnx.json` (also for `.engine`, `.plan`)."""
    p = Path(model_file)
    return p.with_name(p.name + ".json")


def has_export_spec(model_file: str | Path) -> bool:
    """Whether `spec_path_for(model_file)` is a spec vdepth-export wrote (a readable `InputSpec`), not another
    tool's JSON of that name (a Piper voice's `voice.onnx.json`): what tells the tools' own graphs and
    engines, which they may replace, from the user's."""
    try:
        InputSpec.load(spec_path_for(model_file))
    except ConfigError:
        return False
    return True


def parity_path_for(onnx_path: str | Path) -> Path:
    """`model.onnx` -> `model.onnx.parity.json`, the report `vdepth-export onnx` writes (ONNX Runtime vs PyTorch)."""
    p = Path(onnx_path)
    return p.with_name(p.name + ".parity.json")


#: graphs already warned about as having failed their parity check, each named once per process
_WARNED_PARITY: set[str] = set()


def note_failed_parity(onnx_path: Path, runs: Path | None = None) -> None:
    """One warning per graph when its export's parity report says it failed (`vdepth-export onnx --no-strict`
    installs such a graph): its output differs from the PyTorch model's beyond the tolerance, and a node
    running it much later would otherwise say nothing. `runs`: the file that runs (an engine built from
    `onnx_path`), named in the warning. A missing or unreadable report (older exports) says nothing."""
    report = parity_path_for(onnx_path)
    key = str((runs or onnx_path).resolve())
    if key in _WARNED_PARITY or not report.is_file():
        return
    try:
        data = json.loads(report.read_text())
        if data.get("passed") is not False:
            return
        worst = max(data["checks"], key=lambda c: c["max_abs_rel"])
        detail = data.get("failure") or (  # a report before `failure` (older exports) names its worst check
            f"max-abs {worst['max_abs']:.3g}, {worst['max_abs_rel']:.3g} of the output range > "
            f"{data['tolerance_rel']}, on {worst['name']}"
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return
    _WARNED_PARITY.add(key)
    log.warning(
        "%s%s failed its parity check against PyTorch when exported (%s; %s): its depth differs from the model's. "
        "Export it again without --no-strict once the cause is fixed, or use backend 'torch'",
        (runs or onnx_path).name, "" if runs is None else f" (built from {onnx_path.name})", detail, report,
    )  # fmt: skip


def variant_path(model_file: str | Path, height: int, width: int) -> Path:
    """The file of a fixed-shape export at another working resolution: `model.onnx` ->
    `model.160x288.onnx` (H x W), next to it (`vdepth-export onnx ... --variant`)."""
    p = Path(model_file)
    return p.with_name(f"{p.stem}.{int(height)}x{int(width)}{p.suffix}")


def variant_mismatch(spec: InputSpec, variant: InputSpec) -> list[str]:
    """The fields in which `variant` is not `spec` at another resolution (only H, W and the export
    notes in `extra` may differ, not the weights recorded there); empty when it is a variant of the
    same export."""
    ours, theirs = spec.to_dict(), variant.to_dict()
    diff = [k for k in ours if k not in ("height", "width", "extra") and ours[k] != theirs[k]]
    sums = [(s.extra.get(WEIGHTS_KEY) or {}).get("sha256") for s in (spec, variant)]
    if None not in sums and sums[0] != sums[1]:  # exported from other weights (before a retraining, say)
        diff.append(WEIGHTS_KEY)
    return sorted(diff)


def variant_files(model_file: str | Path) -> dict[tuple[int, int], Path]:
    """`(H, W) -> file` of the variants of `model_file` that have their spec next to them."""
    p = Path(model_file)
    pattern = re.compile(rf"^{re.escape(p.stem)}\.(\d+)x(\d+){re.escape(p.suffix)}$")
    found = {}
    for cand in sorted(p.parent.glob(f"{p.stem}.*x*{p.suffix}")):
        m = pattern.match(cand.name)
        if m and spec_path_for(cand).is_file():
            found[(int(m.group(1)), int(m.group(2)))] = cand
    return found
