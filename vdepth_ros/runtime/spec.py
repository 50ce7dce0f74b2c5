"""The input spec an exporter writes next to every model file (`<model>.json`).

The runtime knows nothing about families: it reads this spec to know the fixed window shape,
pixel range, output kind and the window/alignment rules the stream core must apply.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from vdepth_ros.errors import ConfigError

log = logging.getLogger(__name__)

SPEC_VERSION = 1
#: `extra` key of the sha256 of the weights a graph was exported from (`vdepth-export onnx`)
WEIGHTS_KEY = "weights_sha256"
#: old spec files (no max_frames) already noted, so a file loaded again (variants, checks) is noted once
_NOTED_OLD_SPECS: set[str] = set()


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
        for name in ("frames", "height", "width", "window"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"InputSpec.{name} must be positive, got {getattr(self, name)!r}")
        if not 0 <= self.overlap < self.window:
            raise ConfigError(f"InputSpec.overlap must be in [0, window), got {self.overlap} (window {self.window})")
        if self.output_kind not in ("disparity", "depth"):
            raise ConfigError(f"InputSpec.output_kind must be disparity|depth, got {self.output_kind!r}")

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
            raise ConfigError(f"input spec {path} not found (the exporter writes it next to the model)")
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "max_frames" not in data and data.get("dynamic_frames"):
            known, limit = _folder_limit(path.parent, data.get("family"))
            if known:
                return cls.from_dict({**data, "max_frames": limit})
            longest = max(int(data.get("frames", 0)), int(data.get("window", cls.window)))
            extra = {**(data.get("extra") or {}), "max_frames_assumed": True}
            data = {**data, "max_frames": longest, "extra": extra}
            if str(path.resolve()) not in _NOTED_OLD_SPECS:
                _NOTED_OLD_SPECS.add(str(path.resolve()))
                log.warning(
                    "%s was written before exports recorded the model's longest window (max_frames) and has no "
                    "model folder's config.json beside it to read it from: its graph is run on windows of at most "
                    "%d frames, its window; %s",
                    path, longest, OLD_SPEC_FIX,
                )  # fmt: skip
        return cls.from_dict(data)

    def window_limit_fix(self) -> str:
        """For a spec whose `max_frames` was assumed (`load` of an old dynamic export), why the limit
        is what it is and how to lift it; "" otherwise."""
        if not self.extra.get("max_frames_assumed"):
            return ""
        return (
            f" (not the model's own limit: the export's spec was written before exports recorded it, so its graph "
            f"is limited to its own window of {self.max_frames} frames; {OLD_SPEC_FIX})"
        )


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


def spec_path_for(model_file: str | Path) -> Path:
    """`model.onnx` -> `model.onnx.json` (also for `.engine`, `.plan`)."""
    p = Path(model_file)
    return p.with_name(p.name + ".json")


def variant_path(model_file: str | Path, height: int, width: int) -> Path:
    """The file of a fixed-shape export at another working resolution: `model.onnx` ->
    `model.160x288.onnx` (H x W), next to it (`vdepth-export onnx ... --variant`)."""
    p = Path(model_file)
    return p.with_name(f"{p.stem}.{int(height)}x{int(width)}{p.suffix}")


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
