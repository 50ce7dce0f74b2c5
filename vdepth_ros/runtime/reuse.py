"""Exact reuse of per-frame work across overlapping windows (`DepthEngine.infer(frame_ids=...)`).

A window of a VDA-style schedule repeats frames of the previous one: the overlap and keyframe
slots (VDA 32/10: 10 of 32 frames; the bundled model 8/4: 4 of 8). For a family whose work before
the first temporal layer is per frame (`models.split.PerFrameSplit`), a backend that runs the model
as a per-frame graph and a per-window graph can keep those frames' features and encode only the
new frames. The result is the same computation, so the output equals the uncached path (to the
float rounding of a different batch size; tested within 1e-5).

The cache belongs to one stream: frames are keyed by the identity the caller gives (the pipeline's
frame index since its last reset), `DepthEngine.reset_stream()` empties it (the pipeline calls it on
every reset), and only the frames of the latest window are kept (every frame a VDA or chain window
reuses was in the window before it), so memory is bounded by one window of features.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vdepth_ros.errors import ConfigError, InputError
from vdepth_ros.runtime.spec import InputSpec

log = logging.getLogger(__name__)


class FrameFeatureCache:
    """Per-frame features of the current stream, keyed by frame identity.

    Entries are whatever the backend's `_encode` returns per frame (a tuple of arrays or tensors
    with a leading axis of 1). `hits` and `misses` count frames served from the cache and encoded.
    """

    def __init__(self) -> None:
        self._entries: dict[Hashable, Any] = {}
        self._newest: Any = None  # the largest identity ever encoded in this stream (ints in the pipeline)
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, frame_id: Hashable) -> bool:
        return frame_id in self._entries

    def missing(self, frame_ids: Sequence[Hashable]) -> list[Hashable]:
        """Identities in `frame_ids` not cached, first occurrence order, each once.

        An uncached identity that does not come after every identity encoded so far (ordered
        identities, as the pipeline's frame indices) means the caller started a new stream without
        `clear()`: the cache is dropped rather than trusted.
        """
        new = list(dict.fromkeys(i for i in frame_ids if i not in self._entries))
        newest = self._newest
        if newest is not None and any(_ordered(i, newest) and i <= newest for i in new):
            self.clear()
            new = list(dict.fromkeys(frame_ids))
        return new

    def put(self, frame_id: Hashable, features: Any) -> None:
        self._entries[frame_id] = features
        self.misses += 1
        if self._newest is None or (_ordered(frame_id, self._newest) and frame_id > self._newest):
            self._newest = frame_id

    def get(self, frame_ids: Sequence[Hashable], new: Sequence[Hashable] = ()) -> list[Any]:
        """Features of `frame_ids` in order (`new`: those just encoded, not counted as hits)."""
        try:
            out = [self._entries[i] for i in frame_ids]
        except KeyError as err:
            raise InputError(f"frame {err.args[0]!r} is neither cached nor in this window") from None
        fresh = set(new)
        self.hits += sum(1 for i in dict.fromkeys(frame_ids) if i not in fresh)
        return out

    def retain(self, frame_ids: Sequence[Hashable]) -> None:
        """Keep only `frame_ids` (the latest window)."""
        keep = set(frame_ids)
        for i in [i for i in self._entries if i not in keep]:
            del self._entries[i]

    def clear(self) -> None:
        self._entries.clear()
        self._newest = None


def _ordered(a: Any, b: Any) -> bool:
    return isinstance(a, int) and isinstance(b, int)


def window_ids(frame_ids: Sequence[Hashable], frames: int, padded: int) -> list[Hashable]:
    """The identity of every slot of a padded window: padding repeats the last frame, so its id."""
    ids = list(frame_ids)
    if len(ids) != frames:
        raise InputError(f"{len(ids)} frame ids for a window of {frames} frames")
    return ids + [ids[-1]] * (padded - frames)


# -- split graph files (ONNX Runtime, TensorRT) ---------------------------------------------------
@dataclass(frozen=True)
class SplitFiles:
    """The per-frame and per-window graphs exported next to a whole-window graph.

    `model.onnx` -> `model.frame.onnx` (input `frames (N, 3, H, W)`, N dynamic; outputs the feature
    maps), `model.window.onnx` (the feature maps of one window -> `disparity (1, T, H, W)`) and
    `model.split.json` (`SplitMeta`). The same stems with `.engine` for TensorRT.
    """

    frame: Path
    window: Path
    meta: Path

    def exist(self) -> bool:
        return self.frame.is_file() and self.window.is_file() and self.meta.is_file()


def split_files_for(model_file: str | Path, suffix: str = ".onnx") -> SplitFiles:
    """`model.onnx` (or `.engine`) -> its `SplitFiles` (`suffix`: the graphs' file type).

    What lies between the stem and the file type stays: one machine's engine beside another's,
    `model.<platform>.engine` (`trt_cache.engine_beside`), has its split engines beside theirs,
    `model.frame.<platform>.engine` and `model.window.<platform>.engine`, by the same rule.
    """
    p = Path(model_file)
    stem, _, rest = p.name.partition(".")
    middle = "".join(f".{part}" for part in rest.rsplit(".", 1)[:-1])
    return SplitFiles(
        p.with_name(f"{stem}.frame{middle}{suffix}"),
        p.with_name(f"{stem}.window{middle}{suffix}"),
        p.with_name(f"{stem}.split.json"),
    )


@dataclass(frozen=True)
class SplitMeta:
    """What `model.split.json` records: the window shape, the feature maps, and the sha256 of the
    whole-window ONNX the split was exported with (a re-exported `model.onnx` makes it stale)."""

    frames: int
    height: int
    width: int
    precision: str
    feature_names: tuple[str, ...]
    feature_shapes: tuple[tuple[int, ...], ...]
    onnx_sha256: str | None = None
    parity: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, path: str | Path) -> SplitMeta:
        """The file `path`.

        Raises:
            ConfigError: it cannot be read or is not a split record (cut off, edited by hand), naming
                the file and the command that writes it again.
        """
        path = Path(path)
        try:
            d = json.loads(path.read_text())
            d["feature_names"] = tuple(str(n) for n in d["feature_names"])
            d["feature_shapes"] = tuple(tuple(int(x) for x in s) for s in d["feature_shapes"])
            meta = cls(**d)
            if not all(isinstance(v, int) and v > 0 for v in (meta.frames, meta.height, meta.width)):
                raise ValueError("frames, height and width must be positive integers")
            if len(meta.feature_names) != len(meta.feature_shapes) or not meta.feature_names:
                raise ValueError("feature_names and feature_shapes must pair up")
            return meta
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
            raise ConfigError(f"{path} is not a valid split record ({err.__class__.__name__}: {err}); export the "
                              f"split graphs again: `vdepth-export split {path.parent}`") from None  # fmt: skip

    @classmethod
    def usable(cls, files: SplitFiles, spec: InputSpec, onnx_sha256: str | None) -> SplitMeta | None:
        """The split record of `files` if those graphs can stand in for the graph with `spec` (whose
        file has `onnx_sha256`); else None, with one warning saying why (a stale or damaged record
        means the whole-window graph runs, as without split graphs)."""
        try:
            meta = cls.load(files.meta)
        except ConfigError as err:
            log.warning("not reusing overlap work: %s", err)
            return None
        why = meta.mismatch(spec, onnx_sha256, files.meta.parent)
        if why is not None:
            log.warning("not reusing overlap work: %s (%s)", why, files.meta)
            return None
        return meta

    def mismatch(self, spec: InputSpec, onnx_sha256: str | None, folder: Path | None = None) -> str | None:
        """Why these split graphs (in `folder`, named in the fix) cannot stand in for a graph with `spec` (None:
        they can)."""
        want = (spec.frames, spec.height, spec.width, spec.precision)
        have = (self.frames, self.height, self.width, self.precision)
        if want != have:
            return f"split graphs are (frames, height, width, precision) {have}, the model is {want}"
        again = f"re-export them with `vdepth-export split {folder or 'FOLDER'} --overwrite`"
        if onnx_sha256 is not None and self.onnx_sha256 is not None and onnx_sha256 != self.onnx_sha256:
            return f"split graphs were exported with another model.onnx ({again})"
        if self.parity is not None and self.parity.get("passed") is False:
            return f"split graphs failed their parity check against PyTorch when exported ({again})"
        return None


# -- stream-step graph (ONNX Runtime) -----------------------------------------------------------
#: `InputSpec.extra` key of a stream-step graph (`vdepth-export stream`): `{"context": k, "states": [names]}`
STREAM_STEP_KEY = "stream_step"


def stream_file_for(model_file: str | Path) -> Path:
    """`model.onnx` -> `model.stream.onnx`: a causal model's stream step with its cache as explicit
    inputs and outputs (`models.split.StreamSignature`), written by `vdepth-export stream`."""
    p = Path(model_file)
    return p.with_name(f"{p.name.split('.')[0]}.stream.onnx")


__all__ = [
    "STREAM_STEP_KEY",
    "FrameFeatureCache",
    "SplitFiles",
    "SplitMeta",
    "split_files_for",
    "stream_file_for",
    "window_ids",
]
