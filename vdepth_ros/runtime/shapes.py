"""Working shape of a model (window T, resolution H x W) and the `InputSpec` it implies.

Shared by `create_engine` (torch backend on a `VideoDepthModel`) and the ONNX exporter, so the
spec written next to an exported graph and the one a live torch engine uses are the same.
Only duck-typed access to the model is needed here (`family`, `input_constraints`), so this
module does not import torch.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
from collections.abc import Iterator
from typing import Any

from vdepth_ros.errors import ConfigError
from vdepth_ros.runtime.spec import InputSpec

log = logging.getLogger(__name__)

# Working resolution used when neither the caller nor the model says otherwise (rounded to the
# family's `multiple_of`). 280x504 keeps a 16:9-ish aspect and is a multiple of 14 and 8.
DEFAULT_RESOLUTION: tuple[int, int] = (280, 504)
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16")
#: `InputSpec.extra` key of the (H, W) a trained model was trained at (`trained_resolution`): an
#: exported graph's spec records it, and the pipeline names it when told to run at another size
TRAINED_SIZE_KEY = "trained_size"


def round_to_multiple(value: int, multiple: int) -> int:
    """Nearest positive multiple of `multiple` (ties round up)."""
    multiple = max(1, int(multiple))
    return max(multiple, int((int(value) + multiple / 2) // multiple) * multiple)


def check_precision(precision: str) -> str:
    """Validate a precision name ("fp32" | "fp16" | "bf16")."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def resolve_frames(frames: int | None, constraints: Any) -> int:
    """Window length: `frames`, else the family's default window; checked against its rules."""
    t = int(frames) if frames is not None else int(constraints.window)
    if t < 1:
        raise ConfigError(f"frames must be >= 1, got {t}")
    if getattr(constraints, "frames_rule", "any") == "4n+1" and (t - 1) % 4 != 0:
        raise ConfigError(f"this family needs a window of 4n+1 frames (5, 9, 13, ...), got {t}")
    max_window = getattr(constraints, "max_window", None)
    if max_window is not None and t > int(max_window):
        raise ConfigError(f"window of {t} frames exceeds this family's max_window {max_window}")
    return t


def resolve_resolution(height: int | None, width: int | None, constraints: Any) -> tuple[int, int]:
    """Working (H, W): given values must be multiples of `multiple_of`; missing ones default."""
    m = int(getattr(constraints, "multiple_of", 1) or 1)
    if height is None or width is None:
        h0, w0 = DEFAULT_RESOLUTION
        height = round_to_multiple(h0, m) if height is None else height
        width = round_to_multiple(w0, m) if width is None else width
        log.info("working resolution not given; using %dx%d (multiple of %d)", height, width, m)
    h, w = int(height), int(width)
    if h <= 0 or w <= 0:
        raise ConfigError(f"working resolution must be positive, got {h}x{w}")
    if h % m or w % m:
        raise ConfigError(
            f"working resolution {h}x{w} is not a multiple of {m} for this family; "
            f"try {round_to_multiple(h, m)}x{round_to_multiple(w, m)}"
        )
    return h, w


_noted: set[tuple[Any, ...]] = set()  # (what, trained, asked) said once per process


_deliberate: contextvars.ContextVar[bool] = contextvars.ContextVar("vdepth_deliberate_shape", default=False)


@contextlib.contextmanager
def deliberate_shape() -> Iterator[None]:
    """Engines built within are of a shape their caller chose on purpose (the evaluator's one-frame
    twin of the model for its per-frame baseline): a window or size other than the trained one is not
    warned about, as the user cannot act on it (and a later engine of the user's at that shape still is)."""
    token = _deliberate.set(True)
    try:
        yield
    finally:
        _deliberate.reset(token)


def _note_once(key: tuple[Any, ...], msg: str, *args: Any) -> None:
    if _deliberate.get():
        return
    if key not in _noted:
        _noted.add(key)
        log.warning(msg, *args)


def trained_resolution(model: Any) -> tuple[int, int] | None:
    """The (H, W) a trained model ran at in training (`VideoDepthModel.trained`), rounded to its
    family's `multiple_of`; None when not recorded. Of several crop sizes (multi-aspect training),
    the one whose aspect is closest to `DEFAULT_RESOLUTION`'s."""
    sizes = (getattr(model, "trained", None) or {}).get("sizes")
    if not sizes:
        return None
    aspect = DEFAULT_RESOLUTION[1] / DEFAULT_RESOLUTION[0]
    h, w = min(sizes, key=lambda s: (abs(math.log((s[1] / s[0]) / aspect)), -s[0] * s[1]))
    m = int(getattr(model.input_constraints, "multiple_of", 1) or 1)
    runs = round_to_multiple(h, m), round_to_multiple(w, m)
    if runs != (h, w):
        what = "this model was trained at %dx%d, not a multiple of %d: it runs at %dx%d"
        _note_once((getattr(model, "family", ""), "rounded", h, w), what, h, w, m, *runs)
    return runs


def trained_window(model: Any) -> int | None:
    """The window a trained model defaults to: the clip length its training fixed (every stage drew
    clips of that one length), when it is not the family's window, made to fit the family's rules
    (4n+1, `max_window`); None when not recorded, not fixed (clips of several lengths: the family's
    window stays) or the same."""
    c = model.input_constraints
    lengths = (getattr(model, "trained", None) or {}).get("clip_length")
    if not lengths or int(lengths[0]) != int(lengths[1]) or int(lengths[1]) == int(c.window):
        return None
    t = int(lengths[1])
    if getattr(c, "max_window", None):
        t = min(t, int(c.max_window))
    if getattr(c, "frames_rule", "any") == "4n+1":
        t = max(1, t - (t - 1) % 4)
    return t if t > 1 else None


def spec_from_model(
    model: Any,
    frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    *,
    precision: str = "fp32",
    dynamic_frames: bool = False,
    input_name: str = "frames",
    output_name: str = "disparity",
    extra: dict[str, Any] | None = None,
) -> InputSpec:
    """The `InputSpec` of `model` (a `VideoDepthModel`) run at window `frames` and `height x width`.

    Missing `frames`/`height`/`width` default to what the model was trained at when its training
    recorded it (`trained_window`, `trained_resolution`), else to the family's window and
    `DEFAULT_RESOLUTION`; an explicit shape other than the trained one runs, with one warning.

    The streaming window equals the graph's frames; the default overlap and keyframe slots come
    from the family's `input_constraints`, clipped to fit the window.
    """
    c = model.input_constraints
    t_trained, hw_trained = trained_window(model), trained_resolution(model)
    family = getattr(model, "family", "")
    if frames is None and t_trained is not None:
        frames = t_trained
    elif frames is not None and t_trained is not None and int(frames) != t_trained:
        _note_once((family, "frames", t_trained, int(frames)),
                   "running windows of %d frames; this model was trained on clips of %d (its default window)",
                   int(frames), t_trained)  # fmt: skip
    if hw_trained is not None:
        if height is None and width is None:
            height, width = hw_trained
        elif (height, width) != hw_trained:
            _note_once((family, "size", hw_trained, height, width),
                       "running at %sx%s; this model was trained at %dx%d (its default size)",
                       height if height is not None else "?", width if width is not None else "?",
                       *hw_trained)  # fmt: skip
    t = resolve_frames(frames, c)
    h, w = resolve_resolution(height, width, c)
    overlap = int(c.overlap) if int(c.overlap) < t else t // 3
    keyframes = None if c.keyframes is None else tuple(k for k in c.keyframes if 0 <= k < t) or None
    return InputSpec(
        family=str(getattr(model, "family", "") or type(model).__name__),
        frames=t,
        height=h,
        width=w,
        value_range=tuple(float(v) for v in c.value_range),
        output_kind=c.output_kind,
        window=t,
        overlap=overlap,
        keyframes=keyframes,
        alignment=c.alignment,
        frames_rule=c.frames_rule,
        multiple_of=int(c.multiple_of),
        input_name=input_name,
        output_name=output_name,
        dynamic_frames=bool(dynamic_frames),
        max_frames=int(c.max_window) if getattr(c, "max_window", None) else None,
        precision=check_precision(precision),
        extra={**({TRAINED_SIZE_KEY: list(hw_trained)} if hw_trained else {}), **(extra or {})},
    )
